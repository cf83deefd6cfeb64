//! Stream protection after the handshake (§2.7–§2.9): [`StreamMode`].

pub mod keys;

#[cfg(feature = "stream-crypto")]
mod cbc;
#[cfg(feature = "stream-crypto")]
mod gcm;

/// Hex test vectors for the cipher tests.
#[cfg(test)]
#[cfg(feature = "stream-crypto")]
mod test_hex {
    extern crate std;
    use std::vec::Vec;

    pub(crate) fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}

use core::fmt;
use core::str::FromStr;

use crate::wire::handshake_block::SESS_LEN;
use crate::wire::limits::MSGHDR_MAX;
use crate::wire::{DecodeError, IoqError};

/// The bit of the handshake block's `flags` field by which an h2msg node says it can run
/// the `gcm` mode in records (§2.9). C nodes send 0 and ignore the field.
pub const FLAG_GCM: u32 = 0x0000_0002;

/// The bit by which h2msg builds before the record framing offered `gcm` in 64-byte
/// chunks. It is no longer sent, and a peer that offers only it is treated as one that
/// cannot do `gcm` (`auto`: `seed`; `gcm`: refused with ALGO): the two framings never
/// meet on one link.
pub const RETIRED_FLAG_GCM_CHUNKS: u32 = 0x0000_0001;

/// What a link does with its bytes after the handshake.
///
/// Stream protection after the handshake: which bytes travel between the transport and the
/// ioq once the 512-byte exchange is done (§2.7–§2.9).
///
/// # The three modes
///
/// | [`StreamMode`] | Era | On the wire | Receiver checks |
/// |---|---|---|---|
/// | [`Seed`](StreamMode::Seed) | the seed (§2.7, §11 H11) | plaintext, exactly as in 2012 | nothing beyond the ioq's CRCs |
/// | [`Cbc`](StreamMode::Cbc) | the successor (§2.8) | AES-256-CBC, no padding, one chain per direction, key and IV from both `sess` (XOR), the same in both directions | `salt & 0xFF` against its message counter (MSGSEQ 15) |
/// | [`Gcm`](StreamMode::Gcm) | after libdmsg (§2.9), h2msg's default between h2msg nodes | records: 4-byte big-endian plaintext length (1..=16384) ‖ that many AES-256-GCM ciphertext bytes ‖ 16-byte tag, the length header as associated data; each direction keyed by both sessions, `K(S→R) = S.sess[0..32] ⊕ R.sess[32..64]` (libdmsg used the sender's alone, which lets a recorded session be replayed: see [`keys`]); nonce = the sender's `sess[32..36]` ‖ 64-bit big-endian record counter from 0 | the length (MACFAIL 19 outside 1..=16384, before anything is waited for), the tag of every record (MACFAIL 19), the counter's end (IVWRAP 18), and MSGSEQ 15 as libdmsg does |
///
/// With the feature `dmsg-gcm-unverified`, `LinkSetup::dmsg_gcm_unverified` builds a
/// [`Gcm`](StreamMode::Gcm) link keyed as libdmsg keyed it, for a DMSG peer after a `.pub`
/// handshake (dmsg.md 1.4) — never checked against a running DragonFly.
///
/// The mode sits inside [`Iocom`](crate::iocom::Iocom): a driver keeps handing wire bytes
/// in through `read_buf`/`commit_read`/`feed` and taking them out through
/// `pending`/`advance_write`; a connection is built already in its mode, from the
/// [`LinkSetup`](crate::LinkSetup) that negotiation made of the handshake's session.
/// Nothing allocates: received bytes are decrypted in place in the receive FIFO (for
/// `gcm` the length headers and tags are squeezed out as each record is opened),
/// transmitted bytes are encrypted in place in the transmit ring.
///
/// The `cbc` and `gcm` ciphers need the `stream-crypto` feature (the RustCrypto `aes`,
/// `cbc` and `aes-gcm` crates); without it only `seed` can be set up and the others are
/// refused by negotiation ([`NegotiateError::Unsupported`], ALGO 20).
///
/// # `gcm` records and when they are sealed
///
/// Messages are copied into the transmit ring as plaintext, into the record being filled
/// (its length header's room in front, its tag's room reserved). The record is sealed in
/// place — and only then offered to the transport — when it holds 16384 bytes, when its
/// body reaches the ring's end (a record never wraps, so it is sealed in one piece), or
/// when nothing sealed waits for the transport: at the end of the
/// [`Iocom`](crate::iocom::Iocom) call that queued it if the transmit side was idle, else
/// as soon as the transport has taken the bytes before it (`advance_write`). A lone
/// message therefore leaves at once in a record of its own, and messages queued while
/// the transport is busy share records: one tag and one GCM setup per up to 16 KiB. The
/// receive side needs no timer. A record may end anywhere inside a message.
///
/// # Failures
///
/// A record length outside 1..=16384 fails the stream with MACFAIL as soon as its four
/// bytes arrive, before the record is waited for or decrypted. A record whose tag does not
/// verify fails it with MACFAIL: its plaintext is never released (the tag is checked
/// before decryption), nothing after it is decoded, and the receive counter advances only
/// on an authenticated record — so a replayed, reordered, dropped or modified record
/// fails too, and so does a changed length header (it is the associated data). A whole
/// recorded session replayed into a new one fails as well, because each session's keys
/// mix in the receiver's fresh `sess`; a peer's own records sent back to it fail because
/// the two directions have different keys. Messages that were complete before the
/// damaged record are delivered first. After 2⁶⁴ records the counter is exhausted:
/// IVWRAP, on either side (the C check compared the counter's address and could never
/// fire).
///
/// # Negotiation
///
/// The handshake block's `flags` field is sent as 0 by the C nodes and ignored by their
/// receivers (§2.1, §2.5). An h2msg node that can do `gcm` sets [`FLAG_GCM`] there
/// ([`ModeChoice::handshake_flags`]). When both blocks carry it the link uses `gcm`;
/// otherwise the configured era mode — `seed` by default, `cbc` when asked for — which,
/// as in 2012, both ends must be configured alike for. See [`ModeChoice::select`].
///
/// The flags travel inside the RSA-transformed block: changing a bit of it on the wire
/// changes the whole decoded block, which then fails the verifier (KEYXCHGFAIL), so an
/// attacker cannot strip the flag to force a downgrade. With `.none` peers (no RSA)
/// nothing is protected and no flag is trusted: such links are plaintext
/// ([`ModeChoice::none_peer`]).
///
/// ```
/// use h2msg::{ModeChoice, StreamMode, FLAG_GCM};
///
/// let ours = ModeChoice::Auto;
/// let fifo = 64 * 1024; // our receive FIFO: room for a gcm record
/// // Two h2msg nodes: both advertise gcm.
/// # #[cfg(feature = "stream-crypto")]
/// assert_eq!(ours.select(ours.handshake_flags(fifo), FLAG_GCM), Ok(StreamMode::Gcm));
/// // A 2012 C node sends flags 0: the era mode.
/// assert_eq!(ours.select(ours.handshake_flags(fifo), 0), Ok(StreamMode::Seed));
/// let cbc = ModeChoice::Cbc;
/// assert_eq!(cbc.select(cbc.handshake_flags(fifo), 0), Ok(StreamMode::Cbc));
/// // A FIFO too small for a gcm record: auto does not offer it.
/// assert_eq!(ours.handshake_flags(4096), 0);
/// // Insisting on gcm refuses such a peer.
/// assert!(ModeChoice::Gcm.select(FLAG_GCM, 0).is_err());
/// ```
///
/// # Choices where the spec is silent
///
/// * `cbc` processes whole 32-byte units (the C `HAMMER2_AES_KEY_SIZE`); a partial unit
///   waits for the rest of its bytes.
/// * The MSGSEQ check counts every message the decoder completes, `LNK_PAD` included, and
///   runs in `cbc` and `gcm` (libdmsg checks it under GCM too, "anyway"), not in `seed`.
/// * A `gcm` stream that ends inside a record ends with EOF (2), like a truncated message.
/// * `gcm` record counters start at 0 in each direction, as libdmsg's chunk counters do.
/// * A record of length 0 is refused: no sender makes one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum StreamMode {
    /// Plaintext, as the seed era (§2.7).
    #[default]
    Seed,
    /// AES-256-CBC, the seed's successor (§2.8).
    Cbc,
    /// AES-256-GCM in records of up to 16 KiB (§2.9).
    Gcm,
}

impl StreamMode {
    /// The mode's name as the command line spells it: `seed`, `cbc`, `gcm`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Seed => "seed",
            Self::Cbc => "cbc",
            Self::Gcm => "gcm",
        }
    }

    /// Receive FIFO bytes a connection in this mode needs: room for the largest header
    /// (`MSGHDR_MAX`) and, in a protected mode, one whole unit or record that is opened
    /// in place — 32 bytes in `cbc`, 4 + 16 384 + 16 in `gcm` (§2.9). A smaller FIFO
    /// is refused when the connection is built (`MemoryError::FifoTooSmall`).
    #[must_use]
    pub const fn receive_fifo_min(self) -> usize {
        MSGHDR_MAX
            + match self {
                Self::Seed => 0,
                Self::Cbc => CBC_UNIT,
                Self::Gcm => RECORD_HEADER_LEN + RECORD_PLAIN_MAX + TAG_LEN,
            }
    }

    /// True if this build can run the mode (`cbc` and `gcm` need `stream-crypto`).
    #[must_use]
    pub const fn is_available(self) -> bool {
        matches!(self, Self::Seed) || cfg!(feature = "stream-crypto")
    }
}

impl fmt::Display for StreamMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a node is configured to do (`--mode seed|cbc|gcm|auto`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ModeChoice {
    /// `gcm` when the peer can, else `seed` — the default.
    #[default]
    Auto,
    /// Always `seed`; `gcm` is not advertised.
    Seed,
    /// Always `cbc` (for peers of the successor era); `gcm` is not advertised.
    Cbc,
    /// Only `gcm`: a peer that cannot is refused.
    Gcm,
}

impl ModeChoice {
    /// The `flags` value to put in our handshake block for a connection whose receive
    /// FIFO will hold `receive_fifo` bytes: [`FLAG_GCM`] for `gcm`, and for `auto` when
    /// this build has `gcm` and the FIFO can hold a record
    /// ([`StreamMode::receive_fifo_min`]); else 0, exactly what a C node sends. So an
    /// `auto` node with little memory settles on its era mode instead of agreeing to a
    /// mode it cannot receive; `gcm` is advertised as asked, and a FIFO too small for it
    /// is refused when the connection is built.
    #[must_use]
    pub const fn handshake_flags(self, receive_fifo: usize) -> u32 {
        let can_gcm =
            StreamMode::Gcm.is_available() && receive_fifo >= StreamMode::Gcm.receive_fifo_min();
        match self {
            Self::Gcm => FLAG_GCM,
            Self::Auto if can_gcm => FLAG_GCM,
            Self::Auto | Self::Seed | Self::Cbc => 0,
        }
    }

    /// The mode of a link after an RSA handshake in which we sent `own_flags` and received
    /// `peer_flags`: `gcm` if both carry [`FLAG_GCM`], else this choice's era mode.
    /// [`LinkSetup::negotiate`](crate::LinkSetup::negotiate) applies it to a session.
    ///
    /// # Errors
    /// [`NegotiateError::PeerCannotGcm`] when the choice is [`ModeChoice::Gcm`] and the
    /// peer (or our own flags) do not offer it.
    pub const fn select(
        self,
        own_flags: u32,
        peer_flags: u32,
    ) -> Result<StreamMode, NegotiateError> {
        if own_flags & peer_flags & FLAG_GCM != 0 {
            return Ok(StreamMode::Gcm);
        }
        match self {
            Self::Auto | Self::Seed => Ok(StreamMode::Seed),
            Self::Cbc => Ok(StreamMode::Cbc),
            Self::Gcm => Err(NegotiateError::PeerCannotGcm { peer_flags }),
        }
    }

    /// What to do with a peer configured as `remote/<peer>.none` (no RSA, nothing
    /// secret): such a link is always plaintext ([`StreamMode::Seed`]). In the seed era
    /// the plaintext block is still exchanged (§11 H5); the successor (`cbc`) skips the
    /// handshake entirely.
    ///
    /// # Errors
    /// [`NegotiateError::GcmNeedsRsa`] for `gcm`: without RSA there is no secret to key it.
    pub const fn none_peer(self) -> Result<NonePeer, NegotiateError> {
        match self {
            Self::Auto | Self::Seed => Ok(NonePeer::ExchangePlaintextBlock),
            Self::Cbc => Ok(NonePeer::SkipHandshake),
            Self::Gcm => Err(NegotiateError::GcmNeedsRsa),
        }
    }
}

impl FromStr for ModeChoice {
    type Err = UnknownMode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "seed" => Ok(Self::Seed),
            "cbc" => Ok(Self::Cbc),
            "gcm" => Ok(Self::Gcm),
            _ => Err(UnknownMode),
        }
    }
}

impl fmt::Display for ModeChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Seed => "seed",
            Self::Cbc => "cbc",
            Self::Gcm => "gcm",
        })
    }
}

/// A mode name other than `auto`, `seed`, `cbc`, `gcm`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownMode;

impl fmt::Display for UnknownMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("stream mode must be one of auto, seed, cbc, gcm")
    }
}

impl core::error::Error for UnknownMode {}

/// How to treat a `.none` peer (see [`ModeChoice::none_peer`]); the link is plaintext.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NonePeer {
    /// Exchange the 512-byte block in the clear (seed era, §11 H5).
    ExchangePlaintextBlock,
    /// Skip the handshake (the successor era).
    SkipHandshake,
}

/// Why [`LinkSetup::negotiate`](crate::LinkSetup::negotiate) found no mode both ends
/// accept, or could not key the one they agreed on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NegotiateError {
    /// We insist on `gcm`; the peer's flags do not offer it.
    PeerCannotGcm {
        /// The peer's `flags` field.
        peer_flags: u32,
    },
    /// `gcm` was asked for with a `.none` peer: there is no RSA-protected secret.
    GcmNeedsRsa,
    /// The agreed mode is not in this build (`cbc` and `gcm` need `stream-crypto`).
    Unsupported(StreamMode),
    /// The peer's session key is our own: a reflected handshake block. It would give
    /// `cbc` an all-zero key and `gcm` one key and nonce sequence for both directions.
    ReflectedSession,
}

impl NegotiateError {
    /// The IOQ code: ALGO (20), the libdmsg code for a cipher problem.
    #[must_use]
    pub const fn ioq_error(&self) -> IoqError {
        IoqError::Algo
    }
}

impl fmt::Display for NegotiateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = self.ioq_error();
        match self {
            Self::PeerCannotGcm { peer_flags } => write!(
                f,
                "{code}: gcm required, the peer's handshake flags {peer_flags:#010x} do not offer it"
            ),
            Self::GcmNeedsRsa => write!(f, "{code}: gcm needs an RSA handshake, the peer is .none"),
            Self::Unsupported(mode) => write!(
                f,
                "{code}: stream mode {mode} is not in this build (feature stream-crypto)"
            ),
            Self::ReflectedSession => write!(
                f,
                "{code}: the peer's session key is our own (a reflected handshake block)"
            ),
        }
    }
}

impl core::error::Error for NegotiateError {}

/// What [`RxCipher::open`] did to a region of received wire bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Opened {
    /// Plaintext bytes now at the front of the region.
    pub(crate) plain: usize,
    /// Wire bytes they came from; `region[consumed..]` is still to be opened.
    pub(crate) consumed: usize,
    /// The stream failed at `consumed` (MACFAIL, IVWRAP).
    pub(crate) error: Option<DecodeError>,
}

/// The receive side of a stream mode.
pub(crate) enum RxCipher {
    Plain,
    #[cfg(feature = "stream-crypto")]
    Cbc(cbc::CbcReceiver),
    /// h2msg's `gcm`: length-prefixed records.
    #[cfg(feature = "stream-crypto")]
    Gcm(gcm::GcmReceiver),
    /// libdmsg's `gcm`: 64-byte chunks, each with its tag.
    #[cfg(feature = "dmsg-gcm-unverified")]
    GcmChunks(gcm::GcmReceiver),
}

impl RxCipher {
    pub(crate) const fn is_plain(&self) -> bool {
        matches!(self, Self::Plain)
    }

    /// Most wire bytes one record occupies: the room a FIFO needs beyond the plaintext it
    /// must assemble, so that the record completing that plaintext fits.
    pub(crate) const fn record_len(&self) -> usize {
        match self {
            Self::Plain => 0,
            #[cfg(feature = "stream-crypto")]
            Self::Cbc(_) => cbc::UNIT,
            #[cfg(feature = "stream-crypto")]
            Self::Gcm(_) => gcm::RECORD_WIRE_MAX,
            #[cfg(feature = "dmsg-gcm-unverified")]
            Self::GcmChunks(_) => gcm::CHUNK_RECORD,
        }
    }

    /// Opens every whole record at the front of `region` in place, moving the plaintext
    /// to the front; stops at a partial record or at the first failure.
    pub(crate) fn open(&mut self, region: &mut [u8]) -> Opened {
        match self {
            Self::Plain => Opened {
                plain: region.len(),
                consumed: region.len(),
                error: None,
            },
            #[cfg(feature = "stream-crypto")]
            Self::Cbc(rx) => {
                let n = rx.decrypt_units(region);
                Opened {
                    plain: n,
                    consumed: n,
                    error: None,
                }
            }
            #[cfg(feature = "stream-crypto")]
            Self::Gcm(rx) => open_records(rx, region),
            #[cfg(feature = "dmsg-gcm-unverified")]
            Self::GcmChunks(rx) => open_chunks(rx, region),
        }
    }
}

/// `gcm`: authenticates and decrypts record after record (§2.9), squeezing the length
/// headers and tags out. A length outside 1..=[`gcm::RECORD_PLAIN_MAX`] fails at once,
/// before the record's bytes are waited for.
#[cfg(feature = "stream-crypto")]
fn open_records(rx: &mut gcm::GcmReceiver, region: &mut [u8]) -> Opened {
    let mut opened = Opened {
        plain: 0,
        consumed: 0,
        error: None,
    };
    while let Some(header) = region.get(opened.consumed..opened.consumed + gcm::RECORD_HEADER) {
        let aad: [u8; gcm::RECORD_HEADER] =
            core::array::from_fn(|i| header.get(i).copied().unwrap_or(0));
        let len = u32::from_be_bytes(aad);
        let body_len = len as usize;
        if body_len == 0 || body_len > gcm::RECORD_PLAIN_MAX {
            opened.error = Some(DecodeError::RecordLen { len });
            break;
        }
        let body_at = opened.consumed + gcm::RECORD_HEADER;
        let Some(record) = region.get_mut(body_at..body_at + body_len + gcm::TAG) else {
            break;
        };
        let (body, tag) = record.split_at_mut(body_len);
        let tag: [u8; gcm::TAG] = core::array::from_fn(|i| tag.get(i).copied().unwrap_or(0));
        if let Err(e) = rx.open(body, &aad, &tag) {
            opened.error = Some(e);
            break;
        }
        region.copy_within(body_at..body_at + body_len, opened.plain);
        opened.consumed = body_at + body_len + gcm::TAG;
        opened.plain += body_len;
    }
    opened
}

/// libdmsg's `gcm`: authenticates and decrypts chunk after chunk, squeezing the tags out.
#[cfg(feature = "dmsg-gcm-unverified")]
fn open_chunks(rx: &mut gcm::GcmReceiver, region: &mut [u8]) -> Opened {
    let mut opened = Opened {
        plain: 0,
        consumed: 0,
        error: None,
    };
    while let Some(record) = region.get_mut(opened.consumed..opened.consumed + gcm::CHUNK_RECORD) {
        let Some((chunk, tag)) = record.split_at_mut_checked(gcm::CHUNK) else {
            break;
        };
        let tag: [u8; gcm::TAG] = core::array::from_fn(|i| tag.get(i).copied().unwrap_or(0));
        if let Err(e) = rx.open(chunk, &[], &tag) {
            opened.error = Some(e);
            break;
        }
        region.copy_within(opened.consumed..opened.consumed + gcm::CHUNK, opened.plain);
        opened.consumed += gcm::CHUNK_RECORD;
        opened.plain += gcm::CHUNK;
    }
    opened
}

/// How the transmit side frames what it seals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TxFraming {
    /// Plaintext-sized output written in place (`seed`, `cbc`).
    InPlace,
    /// h2msg's `gcm`: length header ‖ up to [`RECORD_PLAIN_MAX`] sealed bytes ‖ tag.
    #[cfg_attr(
        not(feature = "stream-crypto"),
        expect(dead_code, reason = "without stream-crypto nothing is sealed")
    )]
    Records,
    /// libdmsg's `gcm`: [`MAX_CHUNK`]-byte chunks, each followed by its tag.
    #[cfg_attr(
        not(feature = "dmsg-gcm-unverified"),
        expect(dead_code, reason = "only libdmsg's unverified gcm frames in chunks")
    )]
    Chunks,
}

/// The transmit side of a stream mode.
pub(crate) enum TxCipher {
    Plain,
    #[cfg(feature = "stream-crypto")]
    Cbc(cbc::CbcSender),
    /// h2msg's `gcm`: length-prefixed records.
    #[cfg(feature = "stream-crypto")]
    Gcm(gcm::GcmSender),
    /// libdmsg's `gcm`: 64-byte chunks, each with its tag.
    #[cfg(feature = "dmsg-gcm-unverified")]
    GcmChunks(gcm::GcmSender),
}

/// Plaintext bytes of a libdmsg `gcm` chunk (the transmit staging size).
pub(crate) const MAX_CHUNK: usize = 64;
/// Tag bytes after a chunk or record.
pub(crate) const TAG_LEN: usize = 16;
/// `cbc`: bytes of the unit the receiver opens in place (§2.8).
pub(crate) const CBC_UNIT: usize = 32;
/// h2msg `gcm`: bytes of a record's length header (§2.9).
pub(crate) const RECORD_HEADER_LEN: usize = 4;
/// h2msg `gcm`: most plaintext bytes in one record (§2.9).
pub(crate) const RECORD_PLAIN_MAX: usize = 16 * 1024;

// The transmit side frames by these sizes and the ciphers seal by gcm's: they must agree.
#[cfg(feature = "stream-crypto")]
const _: () = assert!(
    MAX_CHUNK == gcm::CHUNK
        && CBC_UNIT == cbc::UNIT
        && TAG_LEN == gcm::TAG
        && RECORD_HEADER_LEN == gcm::RECORD_HEADER
        && RECORD_PLAIN_MAX == gcm::RECORD_PLAIN_MAX
);

impl TxCipher {
    /// How this mode frames its output.
    pub(crate) const fn framing(&self) -> TxFraming {
        match self {
            #[cfg(feature = "stream-crypto")]
            Self::Gcm(_) => TxFraming::Records,
            #[cfg(feature = "dmsg-gcm-unverified")]
            Self::GcmChunks(_) => TxFraming::Chunks,
            _ => TxFraming::InPlace,
        }
    }

    /// Records (or chunks) the mode can still seal (`u64::MAX` for the unsealed modes).
    pub(crate) const fn records_left(&self) -> u64 {
        match self {
            #[cfg(feature = "stream-crypto")]
            Self::Gcm(tx) => tx.units_left(),
            #[cfg(feature = "dmsg-gcm-unverified")]
            Self::GcmChunks(tx) => tx.units_left(),
            _ => u64::MAX,
        }
    }

    /// Wire bytes `plain` bytes take when they are sealed alone (a `gcm` record, or
    /// libdmsg chunks with their pad); `plain` for the unsealed modes.
    pub(crate) const fn sealed_len(&self, plain: usize) -> usize {
        match self.framing() {
            TxFraming::InPlace => plain,
            TxFraming::Records => RECORD_HEADER_LEN + plain + TAG_LEN,
            TxFraming::Chunks => plain.div_ceil(MAX_CHUNK) * (MAX_CHUNK + TAG_LEN),
        }
    }

    /// `cbc`: the unit every message and the ring are a multiple of; 0 otherwise.
    pub(crate) const fn in_place_unit(&self) -> usize {
        match self {
            #[cfg(feature = "stream-crypto")]
            Self::Cbc(_) => cbc::UNIT,
            _ => 0,
        }
    }

    /// `cbc`: encrypts whole units in place (plaintext for `seed`).
    pub(crate) fn encrypt_in_place(&mut self, bytes: &mut [u8]) {
        #[cfg(feature = "stream-crypto")]
        if let Self::Cbc(tx) = self {
            tx.encrypt(bytes);
        }
        let _ = bytes;
    }

    /// `gcm`: seals one record body (`aad`: its length header) or libdmsg chunk (no
    /// `aad`) in place, returning its tag.
    ///
    /// # Errors
    /// [`DecodeError::IvWrap`] once the counter is spent; also for a mode that seals
    /// nothing (never asked), so that plaintext is never sent as if sealed.
    pub(crate) fn seal(
        &mut self,
        unit: &mut [u8],
        aad: &[u8],
    ) -> Result<[u8; TAG_LEN], DecodeError> {
        match self {
            #[cfg(feature = "stream-crypto")]
            Self::Gcm(tx) => tx.seal(unit, aad),
            #[cfg(feature = "dmsg-gcm-unverified")]
            Self::GcmChunks(tx) => tx.seal(unit, aad),
            _ => {
                let _ = (unit, aad);
                Err(DecodeError::IvWrap)
            }
        }
    }
}

/// Whether two secrets are equal, in time that does not depend on where they differ.
#[cfg(feature = "stream-crypto")]
fn same_secret(a: &[u8; SESS_LEN], b: &[u8; SESS_LEN]) -> bool {
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// The two directions' ciphers for `mode` after `session`.
pub(crate) fn ciphers(
    mode: StreamMode,
    own_sess: &[u8; SESS_LEN],
    peer_sess: &[u8; SESS_LEN],
) -> Result<(RxCipher, TxCipher), NegotiateError> {
    match mode {
        StreamMode::Seed => Ok((RxCipher::Plain, TxCipher::Plain)),
        // Our own `sess` coming back (a reflected block, possible when both ends hold
        // the same key pair) would give cbc an all-zero key and gcm one key and nonce
        // sequence for both directions.
        #[cfg(feature = "stream-crypto")]
        StreamMode::Cbc | StreamMode::Gcm if same_secret(own_sess, peer_sess) => {
            Err(NegotiateError::ReflectedSession)
        }
        #[cfg(feature = "stream-crypto")]
        StreamMode::Cbc => {
            let keys = keys::CbcKeys::derive(own_sess, peer_sess);
            Ok((
                RxCipher::Cbc(cbc::CbcReceiver::new(&keys)),
                TxCipher::Cbc(cbc::CbcSender::new(&keys)),
            ))
        }
        #[cfg(feature = "stream-crypto")]
        StreamMode::Gcm => Ok((
            RxCipher::Gcm(gcm::GcmReceiver::new(&keys::GcmKeys::for_direction(
                peer_sess, own_sess,
            ))),
            TxCipher::Gcm(gcm::GcmSender::new(&keys::GcmKeys::for_direction(
                own_sess, peer_sess,
            ))),
        )),
        #[cfg(not(feature = "stream-crypto"))]
        StreamMode::Cbc | StreamMode::Gcm => {
            let _ = (own_sess, peer_sess);
            Err(NegotiateError::Unsupported(mode))
        }
    }
}

/// libdmsg's `gcm` (unverified, dmsg.md 1.4): each direction keyed by its sender's
/// `sess` alone. A reflected session is refused as [`ciphers`] refuses it: both
/// directions would share one key and nonce sequence.
#[cfg(feature = "dmsg-gcm-unverified")]
pub(crate) fn libdmsg_gcm_ciphers(
    own_sess: &[u8; SESS_LEN],
    peer_sess: &[u8; SESS_LEN],
) -> Result<(RxCipher, TxCipher), NegotiateError> {
    if same_secret(own_sess, peer_sess) {
        return Err(NegotiateError::ReflectedSession);
    }
    Ok((
        RxCipher::GcmChunks(gcm::GcmReceiver::new(&keys::GcmKeys::libdmsg(peer_sess))),
        TxCipher::GcmChunks(gcm::GcmSender::new(&keys::GcmKeys::libdmsg(own_sess))),
    ))
}

/// A `gcm` pair whose counters start at `counter`, to reach IVWRAP in tests.
#[cfg(all(any(test, feature = "test-util"), feature = "stream-crypto"))]
pub(crate) fn gcm_ciphers_at(
    own_sess: &[u8; SESS_LEN],
    peer_sess: &[u8; SESS_LEN],
    counter: u64,
) -> (RxCipher, TxCipher) {
    let tx = keys::GcmKeys::for_direction(own_sess, peer_sess);
    let rx = keys::GcmKeys::for_direction(peer_sess, own_sess);
    let at = gcm::Counter::starting_at(counter);
    (
        RxCipher::Gcm(gcm::GcmReceiver::with_counter(&rx, at)),
        TxCipher::Gcm(gcm::GcmSender::with_counter(&tx, at)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// §2.9's record vector (computed with Python `cryptography`'s AESGCM): key 32 × 0x11,
    /// fixed part 22222222, counter 0, plaintext 00 01 … 1f.
    #[cfg(feature = "stream-crypto")]
    const RECORD_VECTOR: &str = "00000020\
        fc05e9bbb5d3841c22769cbc1f39a99568342455425dac01dc12b31e3ab2787a\
        3f5b03d43256e45363ca52c3bf7f43ba";

    #[cfg(feature = "stream-crypto")]
    fn vector_keys() -> keys::GcmKeys {
        keys::GcmKeys::from_parts([0x11; 32], [0x22; 4])
    }

    #[cfg(feature = "stream-crypto")]
    #[test]
    fn a_record_seals_and_opens_as_the_spec_vector_says() {
        let plain: [u8; 32] = core::array::from_fn(|i| i as u8);
        let expected = test_hex::hex(RECORD_VECTOR);
        let mut body = plain;
        let tag = gcm::GcmSender::new(&vector_keys())
            .seal(&mut body, &expected[..4])
            .unwrap();
        assert_eq!([&expected[..4], &body[..], &tag[..]].concat(), expected);

        let mut rx = RxCipher::Gcm(gcm::GcmReceiver::new(&vector_keys()));
        let mut region = expected.clone();
        // The header alone, then all but the tag's last byte: nothing opens yet.
        for partial in [4, expected.len() - 1] {
            let opened = rx.open(&mut region[..partial]);
            assert_eq!((opened.plain, opened.consumed, opened.error), (0, 0, None));
        }
        let opened = rx.open(&mut region);
        assert_eq!(
            (opened.plain, opened.consumed, opened.error),
            (32, 52, None)
        );
        assert_eq!(region[..32], plain);
    }

    /// `seed` is always there; `cbc` and `gcm` exactly when the build has `stream-crypto`.
    /// (`cargo test -p h2msg` runs this without the feature, the workspace run with it.)
    #[test]
    fn only_seed_is_available_without_stream_crypto() {
        assert!(StreamMode::Seed.is_available());
        for mode in [StreamMode::Cbc, StreamMode::Gcm] {
            assert_eq!(
                mode.is_available(),
                cfg!(feature = "stream-crypto"),
                "{mode}"
            );
        }
    }
}
