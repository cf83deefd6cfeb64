//! The one error type of every driver: the transport's error or the core's verdict, each
//! with the IOQ status code of §4.4 that applies.

use core::fmt;

use crate::buf::OverCommit;
use crate::handshake::HandshakeError;
use crate::iocom::LinkEnd;
use crate::ioq::rx::RxFailure;
use crate::trans::DmsgTransError;
use crate::wire::IoqError;

/// Why a driver stopped. `E` is the transport's error type (`std::io::Error`,
/// an `embedded_io::Error`, …); [`ioq_error`](Self::ioq_error) names the spec's code.
///
/// | Variant | IOQ code |
/// |---|---|
/// | [`Io`](Self::Io), [`WriteZero`](Self::WriteZero), [`OverCommit`](Self::OverCommit), [`TransportFailed`](Self::TransportFailed) | SOCK (3) |
/// | [`Stream`](Self::Stream) | the decoder's: SYNC 1, EOF 2, FIELD 4, HCRC 5, XCRC 6, ACRC 7; in a protected stream mode also MSGSEQ 15, IVWRAP 18, MACFAIL 19 |
/// | [`Closed`](Self::Closed) | EOF (2) |
/// | [`Handshake`](Self::Handshake) | KEYXCHGFAIL 12, KEYFMT 13, BADURANDOM 14 |
/// | [`AuxStorageTooSmall`](Self::AuxStorageTooSmall) | FIELD (4) |
/// | [`Stalled`](Self::Stalled) | STATE (8) |
/// | [`PeerTimeout`](Self::PeerTimeout) | PEERTIMEOUT (30, h2msg's own) |
/// | [`WriteStalled`](Self::WriteStalled) | WRSTALL (31, h2msg's own) |
/// | [`TransactionViolation`](Self::TransactionViolation) | TRANS (17, DMSG) |
///
/// ```
/// use h2msg::drive::DriveError;
/// use h2msg::wire::IoqError;
///
/// let e: DriveError<&str> = DriveError::Io("connection reset");
/// assert_eq!(e.ioq_error(), IoqError::Sock);
/// assert_eq!(e.code(), 3);
/// assert_eq!(e.to_string(), "IOQ error 3 (SOCK): connection reset");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DriveError<E> {
    /// The transport failed with this error (SOCK).
    Io(E),
    /// A write took no byte of a non-empty buffer: the transport can take no more (SOCK).
    WriteZero,
    /// The transport reported more bytes moved than it was offered (SOCK).
    OverCommit(OverCommit),
    /// The transport failed earlier; its error was returned then (SOCK).
    TransportFailed,
    /// The received stream failed; the decoder says where and why.
    Stream(RxFailure),
    /// The peer ended the stream at a message boundary while a reply was awaited. A
    /// normal close elsewhere (§11 R4); code 2 (EOF) for diagnostics, as the C code said.
    Closed,
    /// The handshake failed.
    Handshake(HandshakeError),
    /// A message's aux data fit no storage the application lent (FIELD: its size is out
    /// of the range this link accepts).
    AuxStorageTooSmall {
        /// Aux bytes the message carries.
        needed: usize,
        /// Aux storage size.
        available: usize,
    },
    /// The peer sent nothing for the liveness rules' dead-peer time after a keepalive
    /// ping (PEERTIMEOUT, 30).
    PeerTimeout,
    /// Our bytes waited and the transport took none for the write-stall time (WRSTALL,
    /// 31): the peer does not read.
    WriteStalled,
    /// A received DMSG element broke the transaction rules (TRANS, 17).
    TransactionViolation(DmsgTransError),
    /// Nothing to read, write or report, yet the link is not finished; or a handshake
    /// driven after its end (STATE). The core rules both out: this guards the driver
    /// against spinning.
    Stalled,
}

impl<E> DriveError<E> {
    /// The IOQ status code (§4.4).
    #[must_use]
    pub const fn ioq_error(&self) -> IoqError {
        match self {
            Self::Io(_) | Self::WriteZero | Self::OverCommit(_) | Self::TransportFailed => {
                IoqError::Sock
            }
            Self::Stream(failure) => failure.ioq_error(),
            Self::Closed => IoqError::Eof,
            Self::Handshake(e) => e.ioq_error(),
            Self::AuxStorageTooSmall { .. } => IoqError::Field,
            Self::Stalled => IoqError::State,
            Self::PeerTimeout => IoqError::PeerTimeout,
            Self::WriteStalled => IoqError::WriteStalled,
            Self::TransactionViolation(_) => IoqError::Trans,
        }
    }

    /// The IOQ status code's number, as the spec's table gives it.
    #[must_use]
    pub const fn code(&self) -> u16 {
        self.ioq_error().code()
    }

    /// The error for how a link ended; `None` for a clean close, which is no error.
    #[must_use]
    pub const fn from_link_end(end: LinkEnd) -> Option<Self> {
        match end {
            LinkEnd::Closed => None,
            LinkEnd::Failed(failure) => Some(Self::Stream(failure)),
            LinkEnd::TransportFailed => Some(Self::TransportFailed),
            LinkEnd::AuxStorageTooSmall { needed, available } => {
                Some(Self::AuxStorageTooSmall { needed, available })
            }
            LinkEnd::PeerTimeout => Some(Self::PeerTimeout),
            LinkEnd::WriteStalled => Some(Self::WriteStalled),
            LinkEnd::TransactionViolation(e) => Some(Self::TransactionViolation(e)),
        }
    }
}

impl<E: fmt::Display> fmt::Display for DriveError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = self.ioq_error();
        match self {
            Self::Io(e) => write!(f, "{code}: {e}"),
            Self::WriteZero => write!(f, "{code}: the transport took no bytes"),
            Self::OverCommit(e) => write!(f, "{code}: the transport misreported: {e}"),
            Self::TransportFailed => write!(f, "{code}: the transport failed earlier"),
            // Both carry their code in their own text.
            Self::Stream(failure) => failure.fmt(f),
            Self::Handshake(e) => e.fmt(f),
            Self::Closed => write!(f, "{code}: the peer closed the link"),
            Self::AuxStorageTooSmall { needed, available } => write!(
                f,
                "{code}: a message carries {needed} aux bytes, the link lends {available}"
            ),
            Self::Stalled => write!(f, "{code}: the link can make no progress"),
            Self::PeerTimeout => write!(
                f,
                "{code}: the peer fell silent (no byte after a keepalive ping)"
            ),
            Self::WriteStalled => write!(f, "{code}: the peer stopped reading (no write progress)"),
            Self::TransactionViolation(e) => write!(f, "{code}: {e}"),
        }
    }
}

impl<E: core::error::Error + 'static> core::error::Error for DriveError<E> {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            Self::OverCommit(e) => Some(e),
            Self::Stream(failure) => Some(failure),
            Self::Handshake(e) => Some(e),
            _ => None,
        }
    }
}

/// So that `?` carries a driver's error into `std::io::Result` code: the transport's own
/// error comes back unchanged, the core's verdicts are wrapped (downcast to get them).
#[cfg(feature = "std")]
#[cfg_attr(docsrs, doc(cfg(feature = "std")))]
impl From<DriveError<std::io::Error>> for std::io::Error {
    fn from(e: DriveError<std::io::Error>) -> Self {
        use std::io::ErrorKind;
        match e {
            DriveError::Io(io) => io,
            verdict => {
                let kind = match &verdict {
                    DriveError::WriteZero => ErrorKind::WriteZero,
                    v if v.ioq_error() == IoqError::Eof => ErrorKind::UnexpectedEof,
                    DriveError::Stream(_)
                    | DriveError::Handshake(_)
                    | DriveError::AuxStorageTooSmall { .. } => ErrorKind::InvalidData,
                    DriveError::PeerTimeout | DriveError::WriteStalled => ErrorKind::TimedOut,
                    _ => ErrorKind::Other,
                };
                Self::new(kind, verdict)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::KeyExchangeFailure;
    use crate::wire::DecodeError;

    #[test]
    fn each_variant_has_the_code_of_the_spec_table() {
        extern crate std;
        let stream = |error| DriveError::Stream(RxFailure { error, offset: 96 });
        // §4.4 and §2.6, written out here rather than taken from IoqError.
        let cases: [(DriveError<u8>, u16); 12] = [
            (DriveError::Io(0), 3),
            (DriveError::WriteZero, 3),
            (
                DriveError::OverCommit(OverCommit {
                    reported: 9,
                    room: 8,
                }),
                3,
            ),
            (DriveError::TransportFailed, 3),
            (stream(DecodeError::Sync { found: [0, 0] }), 1),
            (
                stream(DecodeError::Truncated {
                    needed: 32,
                    available: 5,
                }),
                2,
            ),
            (
                stream(DecodeError::Acrc {
                    stored: 1,
                    computed: 2,
                }),
                7,
            ),
            (DriveError::Closed, 2),
            (
                DriveError::Handshake(HandshakeError::KeyExchange(KeyExchangeFailure::Timeout)),
                12,
            ),
            (DriveError::Handshake(HandshakeError::BadRandom), 14),
            (
                DriveError::AuxStorageTooSmall {
                    needed: 4096,
                    available: 0,
                },
                4,
            ),
            (DriveError::Stalled, 8),
        ];
        for (error, code) in cases {
            assert_eq!(error.code(), code, "{error:?}");
            // The message names the same code.
            let text = std::format!("{error}");
            assert!(text.contains(&std::format!("IOQ error {code} (")), "{text}");
        }
    }

    #[test]
    fn a_clean_close_is_no_error_and_every_other_end_is_one() {
        assert_eq!(DriveError::<u8>::from_link_end(LinkEnd::Closed), None);
        assert_eq!(
            DriveError::<u8>::from_link_end(LinkEnd::TransportFailed),
            Some(DriveError::TransportFailed)
        );
        assert_eq!(
            DriveError::<u8>::from_link_end(LinkEnd::AuxStorageTooSmall {
                needed: 100,
                available: 64
            }),
            Some(DriveError::AuxStorageTooSmall {
                needed: 100,
                available: 64
            })
        );
        let failure = RxFailure {
            error: DecodeError::HeaderSize { units: 0 },
            offset: 0,
        };
        assert_eq!(
            DriveError::<u8>::from_link_end(LinkEnd::Failed(failure)),
            Some(DriveError::Stream(failure))
        );
    }

    /// A transport error of the tests' own.
    #[derive(Debug)]
    struct WireCut;

    impl fmt::Display for WireCut {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("wire cut")
        }
    }

    impl core::error::Error for WireCut {}

    #[test]
    fn the_wrapped_error_is_the_source_and_the_core_verdicts_have_none() {
        extern crate std;
        use core::error::Error;
        use std::string::{String, ToString};

        let source_text = |e: &DriveError<WireCut>| e.source().map(ToString::to_string);
        let over = OverCommit {
            reported: 9,
            room: 8,
        };
        let failure = RxFailure {
            error: DecodeError::Sync { found: [0, 0] },
            offset: 96,
        };
        let handshake = HandshakeError::KeyExchange(KeyExchangeFailure::Timeout);
        let wrapped: [(DriveError<WireCut>, String); 4] = [
            (DriveError::Io(WireCut), "wire cut".to_string()),
            (DriveError::OverCommit(over), over.to_string()),
            (DriveError::Stream(failure), failure.to_string()),
            (DriveError::Handshake(handshake), handshake.to_string()),
        ];
        for (error, text) in wrapped {
            assert_eq!(source_text(&error), Some(text), "{error:?}");
        }
        for error in [
            DriveError::WriteZero,
            DriveError::TransportFailed,
            DriveError::Closed,
            DriveError::AuxStorageTooSmall {
                needed: 1,
                available: 0,
            },
            DriveError::Stalled,
        ] {
            assert_eq!(source_text(&error), None, "{error:?}");
        }
    }
}
