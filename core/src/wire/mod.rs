//! The wire layer: exact byte layouts, the `cmd` field, limits, error codes and CRCs.
//!
//! Everything here is a pure function of its inputs: no state, no allocation, no panics,
//! and no read past the slice it is given. The receive and transmit state machines build
//! on these pieces.
//!
//! | Module | What it holds | Spec |
//! |---|---|---|
//! | [`limits`] | alignment, size limits, magic values, port | §3.5, App. A |
//! | `cmd` | the typed `cmd` field, flags, protocols, named commands | §3.4, §4.1–4.2 |
//! | `error` | IOQ status codes, wire error values, typed decode/encode errors | §4.4 |
//! | `crc` | CRC-32C, `fold16`, the injectable [`Crc32c`] trait | §3.6, App. B |
//! | `checksums` | `icrc1`, `icrc2`, `aux_icrc` over exactly their bytes | §3.6 |
//! | `order` | byte-order detection from the magic | §3.2 |
//! | `header` | the 32-byte message header: layout, decode, seal | §3.1, §3.6 |
//! | `message` | a whole contiguous message as a borrowed view | §3.1 |
//! | `dmsg` | the DMSG revision's 64-byte header: layout, decode, seal | dmsg.md 2 |
//! | `dmsg_link` | DMSG's `LNK_CONN`/`LNK_SPAN` payloads, peer types, UUIDs, command and error constants | dmsg.md 5.1 |
//! | `framing` | [`Revision`] and the framing traits the decoder and queue are generic over | dmsg.md 3.1–3.2 |
//! | `handshake_block` | the 512-byte handshake block and its verifier | §2.1 |

pub(crate) mod checksums;
pub(crate) mod cmd;
pub(crate) mod crc;
pub(crate) mod dmsg;
pub(crate) mod dmsg_link;
pub(crate) mod error;
pub(crate) mod framing;
pub(crate) mod handshake_block;
pub(crate) mod header;
pub mod limits;
pub(crate) mod message;
pub(crate) mod order;

pub use checksums::{compute_aux_icrc, compute_icrc1, compute_icrc2};
pub use cmd::{Cmd, MsgFlags, Protocol, number};
pub use crc::{Crc32c, SoftCrc32c, fold16};
pub use dmsg::{
    DmsgHdr, DmsgHeader, DmsgReceivedHeader, compute_aux_crc, compute_hdr_crc, dmsg_padded_len,
};
pub use dmsg_link::{
    DMSG_ERR_CANTCIRC, DMSG_ERR_IO, DMSG_ERR_LOSTLINK, DMSG_ERR_NOSUPP, DMSG_ERR_PARAM,
    DMSG_LABEL_MAX, DMSG_LABEL_SIZE, DMSG_SPAN_MAXDIST, DMSG_SPAN_PROTO_1, LabelError, LnkConn,
    LnkSpan, PayloadLenError, PeerType, Uuid,
};
pub use error::{DecodeError, EncodeError, IoqError, MSG_ERR_TABLE_FULL, MSG_ERR_UNKNOWN};
pub use framing::{FrameSizes, Outgoing, ReceivedFrame, Revision, SendFrame};
pub use handshake_block::{HandshakeBlock, SESS_LEN, VERF_LEN, verifier};
pub use header::{MsgHdr, MsgHeader, ReceivedHeader};
pub use message::MessageView;
pub use order::WireOrder;

/// `bytes` up to their first NUL (all of them if there is none): the C strings of the
/// protocol — `DBG_SHELL` lines, the handshake's `quickmsg`.
#[must_use]
pub fn until_nul(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    bytes.get(..end).unwrap_or_default()
}
