//! `h2msg dump`: decodes a captured byte stream of messages, one line (or one JSON object)
//! per message, with every header field, the decoded `cmd`, and the aux data as text when
//! printable, else hex. A damaged frame is reported with its offset and IOQ error, and
//! decoding stops there. The input is decoded as it is read, through the decoder's own
//! fixed buffers, so memory stays bounded whatever its size, and an endless bad input
//! stops at its first bad frame.

use std::fmt::Write as _;
use std::io::{self, Read, Write};

use h2msg::ioq::{RxDecoder, RxFailure, RxPoll};
use h2msg::wire::limits::{HANDSHAKE_LEN, MSGAUX_MAX, MSGBUF_SIZE};
use h2msg::wire::{DecodeError, MessageView, WireOrder, until_nul};
use serde_json::json;

use crate::blocking::HwCrc32c;
use crate::read_full;

/// How the dump ended.
#[derive(Debug, PartialEq, Eq)]
pub enum DumpEnd {
    /// Every byte was a whole, valid message.
    Clean {
        /// Messages printed.
        messages: usize,
    },
    /// A frame was damaged or cut short (a capture shorter than the handshake it was said
    /// to start with is cut short at offset 0).
    Damaged {
        /// Messages printed before it.
        messages: usize,
        /// What was wrong, and where.
        failure: RxFailure,
    },
}

fn aux_text(aux: &[u8]) -> Option<String> {
    if aux.is_empty() {
        return None;
    }
    let text = until_nul(aux);
    let printable = text
        .iter()
        .all(|&b| b == b'\n' || b == b'\t' || (0x20..0x7F).contains(&b));
    printable.then(|| String::from_utf8_lossy(text).into_owned())
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn line(offset: u64, m: &MessageView<'_>) -> String {
    let h = m.header();
    let order = match m.order() {
        WireOrder::Little => "le",
        WireOrder::Big => "be",
    };
    let aux = if m.aux().is_empty() {
        "-".to_string()
    } else {
        aux_text(m.aux()).map_or_else(|| format!("hex:{}", hex(m.aux())), |t| format!("{t:?}"))
    };
    format!(
        "{offset:>8} {order} icrc1={:#06x} salt={:#010x} src={:#06x} tgt={:#06x} msgid={:#010x} cmd={:#010x} \
         [{} flags={} proto={:?} num={:#05x} size={}] error={:#06x} resv05={:#06x} icrc2={:#06x} \
         aux_bytes={} aux_icrc={:#010x} crc=ok aux={aux}",
        h.icrc1,
        h.salt,
        h.source,
        h.target,
        h.msgid,
        h.cmd.raw(),
        h.cmd,
        h.cmd.flags(),
        h.cmd.protocol(),
        h.cmd.number(),
        h.cmd.size_units(),
        h.error,
        h.resv05,
        h.icrc2,
        h.aux_units,
        h.aux_icrc,
    )
}

fn object(offset: u64, m: &MessageView<'_>) -> serde_json::Value {
    let h = m.header();
    json!({
        "offset": offset,
        "order": if m.order() == WireOrder::Little { "little" } else { "big" },
        "icrc1": h.icrc1, "salt": h.salt, "source": h.source, "target": h.target,
        "msgid": h.msgid, "cmd": h.cmd.raw(), "name": h.cmd.to_string(),
        "flags": h.cmd.flags().to_string(), "protocol": h.cmd.protocol().nibble(),
        "number": h.cmd.number(), "size_units": h.cmd.size_units(),
        "error": h.error, "resv05": h.resv05, "icrc2": h.icrc2,
        "aux_bytes": h.aux_units, "aux_icrc": h.aux_icrc, "crc": "ok",
        "ext_hex": hex(m.ext()), "aux_hex": hex(m.aux()), "aux_text": aux_text(m.aux()),
    })
}

/// Dumps `bytes` (after the 512 handshake bytes if `skip_handshake`) to `out`.
///
/// # Errors
/// Only a failure to write to `out`; damage in the input is a [`DumpEnd::Damaged`].
pub fn dump(
    bytes: &[u8],
    skip_handshake: bool,
    as_json: bool,
    out: &mut impl Write,
) -> io::Result<DumpEnd> {
    dump_stream(&mut &*bytes, skip_handshake, as_json, out)
}

/// Dumps what `input` gives (after the 512 handshake bytes if `skip_handshake`) to `out`,
/// each message as soon as its bytes have been read, and stops at the first damaged or
/// cut-short frame without reading further.
///
/// # Errors
/// A failure to read `input` or to write `out`; damage in the input is a
/// [`DumpEnd::Damaged`].
pub fn dump_stream(
    input: &mut impl Read,
    skip_handshake: bool,
    as_json: bool,
    out: &mut impl Write,
) -> io::Result<DumpEnd> {
    let mut base = 0;
    if skip_handshake {
        let mut handshake = [0u8; HANDSHAKE_LEN];
        let available = read_full(input, &mut handshake)?;
        if available < HANDSHAKE_LEN {
            let failure = RxFailure {
                error: DecodeError::Truncated {
                    needed: HANDSHAKE_LEN,
                    available,
                },
                offset: 0,
            };
            report_failure(&failure, as_json, out)?;
            return Ok(DumpEnd::Damaged {
                messages: 0,
                failure,
            });
        }
        base = HANDSHAKE_LEN as u64;
    }
    let mut rx = RxDecoder::new(vec![0u8; MSGBUF_SIZE], vec![0u8; MSGAUX_MAX], HwCrc32c)
        .map_err(crate::other)?;
    let mut messages = 0;
    loop {
        let offset = base + rx.offset();
        match rx.poll() {
            RxPoll::Message(m) => {
                messages += 1;
                if as_json {
                    writeln!(out, "{}", object(offset, &m))?;
                } else {
                    writeln!(out, "{}", line(offset, &m))?;
                }
            }
            RxPoll::NeedInput => {
                // Straight into the decoder's buffer: nothing is read that it has no
                // room for.
                let room = rx.read_buf();
                if room.is_empty() {
                    return Err(crate::other(
                        "the decoder asked for input it has no room for",
                    ));
                }
                match input.read(room) {
                    Ok(0) => rx.end_input(),
                    Ok(n) => rx.commit_read(n).map_err(crate::other)?,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            RxPoll::Failed(mut failure) => {
                failure.offset += base;
                report_failure(&failure, as_json, out)?;
                return Ok(DumpEnd::Damaged { messages, failure });
            }
            RxPoll::Closed | RxPoll::Finished => return Ok(DumpEnd::Clean { messages }),
            // Cannot happen with aux storage of the protocol's largest aux; an error, not
            // a clean end, if it ever does.
            RxPoll::AuxStorageTooSmall { needed, available } => {
                return Err(crate::other(format!(
                    "offset {offset}: {needed} aux bytes do not fit the {available} of the dump"
                )));
            }
            _ => {
                return Err(crate::other(format!(
                    "offset {offset}: unexpected decoder state"
                )));
            }
        }
    }
}

/// Writes the line (or JSON object) that says where and why the stream failed.
fn report_failure(failure: &RxFailure, as_json: bool, out: &mut impl Write) -> io::Result<()> {
    if as_json {
        let code = failure.ioq_error();
        let obj = json!({"offset": failure.offset, "error": code.code(), "error_name": code.name(), "detail": failure.error.to_string()});
        writeln!(out, "{obj}")
    } else {
        writeln!(out, "{:>8} damaged: {}", failure.offset, failure.error)
    }
}
