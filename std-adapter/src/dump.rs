//! `h2msg dump`: decodes a captured byte stream of messages, one line (or one JSON object)
//! per message, with every header field, the decoded `cmd`, and the aux data as text when
//! printable, else hex. A damaged frame is reported with its offset and IOQ error, and
//! decoding stops there. The input is decoded as it is read, through the decoder's own
//! fixed buffers, so memory stays bounded whatever its size, and an endless bad input
//! stops at its first bad frame.
//!
//! Both revisions are read ([`DumpProto`]): the 2012 seed era (32-byte header) and DMSG
//! (64-byte header, dmsg.md 2), whose lines name the DMSG commands and flags (REVTRANS,
//! REVCIRC) and show the `LNK_CONN` / `LNK_SPAN` payloads (dmsg.md 5.1). `auto` decides
//! from the first header which revision checks out ([`detect`]).

use std::fmt::Write as _;
use std::io::{self, Read, Write};

use h2msg::ioq::{RxDecoder, RxFailure, RxPoll};
use h2msg::wire::limits::{
    DMSG_AUX_MAX, DMSG_BASE_HEADER_LEN, HANDSHAKE_LEN, MSGAUX_MAX, MSGBUF_SIZE,
};
use h2msg::wire::{
    Cmd, DecodeError, DmsgReceivedHeader, LnkConn, LnkSpan, MessageView, MsgFlags, PeerType,
    ReceivedFrame, ReceivedHeader, Uuid, WireOrder, until_nul,
};
use serde_json::json;

use crate::blocking::HwCrc32c;
use crate::proto::Proto;
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
/// cut-short frame without reading further. Seed-era framing; see [`dump_as`] for DMSG.
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
    match dump_as(DumpProto::Seed, input, skip_handshake, as_json, out) {
        Ok(dumped) => Ok(dumped.end),
        Err(DumpError::Io(e)) => Err(e),
        // Only `auto` decides, and it was not asked for.
        Err(e) => Err(crate::other(e)),
    }
}

/// Which revision `dump` reads (`--proto`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DumpProto {
    /// The 2012 seed era: 32-byte headers.
    #[default]
    Seed,
    /// DMSG: 64-byte headers (dmsg.md 2).
    Dmsg,
    /// Whichever revision's first header checks out, if exactly one does ([`detect`]).
    Auto,
}

impl DumpProto {
    /// The name `--proto` takes.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Seed => "seed",
            Self::Dmsg => "dmsg",
            Self::Auto => "auto",
        }
    }
}

impl From<Proto> for DumpProto {
    fn from(proto: Proto) -> Self {
        match proto {
            Proto::Seed => Self::Seed,
            Proto::Dmsg => Self::Dmsg,
        }
    }
}

impl std::fmt::Display for DumpProto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for DumpProto {
    type Err = crate::proto::UnknownProto;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            other => other.parse::<Proto>().map(Self::from),
        }
    }
}

/// What [`detect`] found at the start of a capture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detected {
    /// No byte at all: nothing to decide, and nothing to decode in either revision.
    Empty,
    /// Exactly this revision's first header checks out.
    Proto(Proto),
    /// Both check out (a seed `icrc1` and a DMSG `hdr_crc` over the same bytes): refused.
    Both,
    /// Neither does; why, for each.
    Neither {
        /// Why the bytes are no seed-era header.
        seed: DecodeError,
        /// Why they are no DMSG header region.
        dmsg: DecodeError,
    },
}

/// Why `dump` stopped before decoding anything, or could not go on.
#[derive(Debug)]
pub enum DumpError {
    /// Reading the input or writing the output failed.
    Io(io::Error),
    /// `auto` could not decide ([`Detected::Both`] or [`Detected::Neither`]).
    Undecided(Detected),
}

impl std::fmt::Display for DumpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(e) => e.fmt(f),
            Self::Undecided(Detected::Both) => f.write_str(
                "both a seed header (icrc1) and a DMSG header (hdr_crc) check out at the \
                 start: not guessing; use --proto seed or --proto dmsg",
            ),
            Self::Undecided(Detected::Neither { seed, dmsg }) => write!(
                f,
                "neither revision's header checks out at the start (seed: {seed}; dmsg: \
                 {dmsg}); a capture from the handshake on needs --skip-handshake, else use \
                 --proto seed or --proto dmsg to see where it breaks"
            ),
            Self::Undecided(other) => write!(f, "undecided: {other:?}"),
        }
    }
}

impl std::error::Error for DumpError {}

impl From<io::Error> for DumpError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// What [`dump_as`] did.
#[derive(Debug, PartialEq, Eq)]
pub struct Dumped {
    /// The revision decoded: the one asked for, or the one `auto` found (`None`: no
    /// message to decide on, or a capture shorter than its handshake).
    pub proto: Option<Proto>,
    /// How it ended.
    pub end: DumpEnd,
}

/// Decides a capture's revision from its first bytes (after any handshake), reading at
/// most one DMSG header region (2048 bytes) of `input`; returns the bytes read, which the
/// decoding must see first, and the verdict.
///
/// The rule: the two revisions share the magic, so it tells nothing. The seed era's first
/// 32 bytes must pass its header checks (magic, `icrc1`, sizes); DMSG's first header
/// region must pass its own (magic, sizes, then `hdr_crc` over the whole region). Each
/// check runs to its end: an input that ends too early fails it (as the decoder would,
/// with EOF). Exactly one passing decides; both or neither is refused: a wrong guess would
/// need the true revision's own check to fail and the other's 32- (DMSG) or 16-bit (seed)
/// CRC to pass by chance on the same bytes.
///
/// # Errors
/// A failure to read `input`.
pub fn detect(input: &mut impl Read) -> io::Result<(Vec<u8>, Detected)> {
    let mut prefix = vec![0u8; DMSG_BASE_HEADER_LEN];
    let n = read_full(input, &mut prefix)?;
    prefix.truncate(n);
    if n == 0 {
        return Ok((prefix, Detected::Empty));
    }
    let seed = ReceivedHeader::parse(&prefix, &HwCrc32c).map(|_| ());
    let dmsg = match DmsgReceivedHeader::parse(&prefix) {
        Ok(header) => {
            let needed = header.sizes().region_len;
            if needed > prefix.len() && prefix.len() == DMSG_BASE_HEADER_LEN {
                let had = prefix.len();
                prefix.resize(needed, 0);
                let more = read_full(input, prefix.get_mut(had..).unwrap_or_default())?;
                prefix.truncate(had + more);
            }
            match prefix.get(..needed) {
                Some(region) => header.check_region(region, &HwCrc32c),
                None => Err(DecodeError::Truncated {
                    needed,
                    available: prefix.len(),
                }),
            }
        }
        Err(e) => Err(e),
    };
    let detected = match (seed, dmsg) {
        (Ok(()), Err(_)) => Detected::Proto(Proto::Seed),
        (Err(_), Ok(())) => Detected::Proto(Proto::Dmsg),
        (Ok(()), Ok(())) => Detected::Both,
        (Err(seed), Err(dmsg)) => Detected::Neither { seed, dmsg },
    };
    Ok((prefix, detected))
}

/// Dumps what `input` gives in revision `proto` (after the 512 handshake bytes if
/// `skip_handshake`) to `out`, each message as soon as its bytes have been read, and stops
/// at the first damaged or cut-short frame without reading further. With
/// [`DumpProto::Auto`] the first header decides ([`detect`]).
///
/// # Errors
/// [`DumpError::Io`] for a failure to read `input` or to write `out`;
/// [`DumpError::Undecided`] when `auto` cannot tell. Damage in the input is a
/// [`DumpEnd::Damaged`].
pub fn dump_as(
    proto: DumpProto,
    input: &mut impl Read,
    skip_handshake: bool,
    as_json: bool,
    out: &mut impl Write,
) -> Result<Dumped, DumpError> {
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
            let proto = match proto {
                DumpProto::Seed => Some(Proto::Seed),
                DumpProto::Dmsg => Some(Proto::Dmsg),
                DumpProto::Auto => None,
            };
            let end = DumpEnd::Damaged {
                messages: 0,
                failure,
            };
            return Ok(Dumped { proto, end });
        }
        base = HANDSHAKE_LEN as u64;
    }
    let (prefix, proto) = match proto {
        DumpProto::Seed => (Vec::new(), Proto::Seed),
        DumpProto::Dmsg => (Vec::new(), Proto::Dmsg),
        DumpProto::Auto => match detect(input)? {
            (prefix, Detected::Proto(proto)) => (prefix, proto),
            (_, Detected::Empty) => {
                let end = DumpEnd::Clean { messages: 0 };
                return Ok(Dumped { proto: None, end });
            }
            (_, undecided) => return Err(DumpError::Undecided(undecided)),
        },
    };
    let mut input = io::Cursor::new(prefix).chain(input);
    let end = match proto {
        Proto::Seed => {
            let rx = RxDecoder::new(vec![0u8; MSGBUF_SIZE], vec![0u8; MSGAUX_MAX], HwCrc32c)
                .map_err(crate::other)?;
            decode(rx, &mut input, base, as_json, out, |offset, m, json| {
                if json {
                    object(offset, m).to_string()
                } else {
                    line(offset, m)
                }
            })?
        }
        Proto::Dmsg => {
            // Every legal DMSG message fits: 1 MiB of aux storage (dmsg.md 2.7), allocated
            // zeroed, so only the pages a capture fills are touched.
            let rx = RxDecoder::<_, _, _, DmsgReceivedHeader>::new_framed(
                vec![0u8; MSGBUF_SIZE],
                vec![0u8; DMSG_AUX_MAX],
                HwCrc32c,
            )
            .map_err(crate::other)?;
            decode(rx, &mut input, base, as_json, out, |offset, m, json| {
                if json {
                    dmsg_object(offset, m).to_string()
                } else {
                    dmsg_line(offset, m)
                }
            })?
        }
    };
    Ok(Dumped {
        proto: Some(proto),
        end,
    })
}

/// The decoding loop both revisions share: one printed line per message (`show` makes it,
/// given the offset, the message and whether JSON is wanted).
fn decode<H: ReceivedFrame>(
    mut rx: RxDecoder<Vec<u8>, Vec<u8>, HwCrc32c, H>,
    input: &mut impl Read,
    base: u64,
    as_json: bool,
    out: &mut impl Write,
    show: impl Fn(u64, &MessageView<'_, H>, bool) -> String,
) -> io::Result<DumpEnd> {
    let mut messages = 0;
    loop {
        let offset = base + rx.offset();
        match rx.poll() {
            RxPoll::Message(m) => {
                messages += 1;
                writeln!(out, "{}", show(offset, &m, as_json))?;
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
            // Cannot happen with aux storage of the revision's largest aux; an error, not
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

/// DMSG's names for the flag byte (dmsg.md 2.3): bits 27 and 26 are REVTRANS and REVCIRC,
/// not the seed era's AUXOOB and FLAG2.
const DMSG_FLAGS: [(MsgFlags, &str); 8] = [
    (MsgFlags::CREATE, "CREATE"),
    (MsgFlags::DELETE, "DELETE"),
    (MsgFlags::REPLY, "REPLY"),
    (MsgFlags::ABORT, "ABORT"),
    (MsgFlags::REVTRANS, "REVTRANS"),
    (MsgFlags::REVCIRC, "REVCIRC"),
    (MsgFlags::FLAG1, "FLAG1"),
    (MsgFlags::FLAG0, "FLAG0"),
];

/// `CREATE|REPLY|REVTRANS`, `-` when no flag is set.
fn dmsg_flags(cmd: Cmd) -> String {
    let flags = cmd.flags();
    let names: Vec<&str> = DMSG_FLAGS
        .iter()
        .filter(|(flag, _)| flags.contains(*flag))
        .map(|(_, name)| *name)
        .collect();
    if names.is_empty() {
        "-".to_string()
    } else {
        names.join("|")
    }
}

/// A label's text as a quoted, escaped string.
fn label(text: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(text))
}

/// `1(ROUTER)`, `64(?PEERTYPE?)`.
fn peer_type(t: PeerType) -> String {
    format!("{}({})", t.0, t.name())
}

/// The `LNK_CONN` / `LNK_SPAN` payload fields of `m` as `key=value` pairs, in the order of
/// dmsg.md 5.1 (reserved fields left out but for `reserved01`, a UUID-sized field); none
/// for other commands.
fn payload_fields(m: &MessageView<'_, DmsgReceivedHeader>) -> Vec<(&'static str, String)> {
    let order = m.order();
    let cmd = m.header().command();
    if cmd.dmsg_name() == Cmd::DMSG_LNK_CONN.dmsg_name() {
        let Ok(conn) = LnkConn::ref_from_ext(m.ext()) else {
            return Vec::new();
        };
        vec![
            ("media_id", conn.media_id.to_string()),
            ("peer_id", conn.peer_id.to_string()),
            ("reserved01", Uuid::from_bytes(conn.reserved01).to_string()),
            ("peer_mask", format!("{:#018x}", conn.peer_mask(order))),
            ("peer_type", peer_type(conn.peer_type())),
            ("proto_version", conn.proto_version(order).to_string()),
            ("status", conn.status(order).to_string()),
            ("rnss", format!("{:#x}", conn.rnss(order))),
            ("peer_label", label(conn.peer_label())),
        ]
    } else if cmd.dmsg_name() == Cmd::DMSG_LNK_SPAN.dmsg_name() {
        let Ok(span) = LnkSpan::ref_from_ext(m.ext()) else {
            return Vec::new();
        };
        vec![
            ("peer_id", span.peer_id.to_string()),
            ("pfs_id", span.pfs_id.to_string()),
            ("pfs_type", span.pfs_type().to_string()),
            ("peer_type", peer_type(span.peer_type())),
            ("proto_version", span.proto_version(order).to_string()),
            ("status", span.status(order).to_string()),
            ("dist", span.dist(order).to_string()),
            ("rnss", format!("{:#x}", span.rnss(order))),
            ("peer_label", label(span.peer_label())),
            ("pfs_label", label(span.pfs_label())),
        ]
    } else {
        Vec::new()
    }
}

/// The aux data as shown: `-` when empty; a `DBG_SHELL` line or reply as its text up to
/// the NUL (escaped, whatever it holds); other aux as text when printable, else hex.
fn dmsg_aux(m: &MessageView<'_, DmsgReceivedHeader>) -> String {
    let aux = m.aux();
    if aux.is_empty() {
        return "-".to_string();
    }
    if m.header().command().dmsg_name() == Cmd::DBG_SHELL.dmsg_name() {
        return format!("{:?}", String::from_utf8_lossy(until_nul(aux)));
    }
    aux_text(aux).map_or_else(|| format!("hex:{}", hex(aux)), |t| format!("{t:?}"))
}

fn dmsg_line(offset: u64, m: &MessageView<'_, DmsgReceivedHeader>) -> String {
    let h = m.header();
    let cmd = h.command();
    let order = match m.order() {
        WireOrder::Little => "le",
        WireOrder::Big => "be",
    };
    let mut text = format!(
        "{offset:>8} {order} cmd={:#010x} name={} flags={} [proto={} num={:#05x} size={}] \
         msgid={:#018x} circuit={:#018x} error={:#x} aux_bytes={} salt={:#010x} seq={} \
         aux_crc={:#010x} hdr_crc={:#010x} crc=ok",
        h.cmd,
        cmd.dmsg_name().unwrap_or("?"),
        dmsg_flags(cmd),
        cmd.protocol().nibble(),
        cmd.number(),
        cmd.size_units(),
        h.msgid,
        h.circuit,
        h.error,
        h.aux_bytes,
        h.salt,
        h.salt & 0xFF,
        h.aux_crc,
        h.hdr_crc,
    );
    // Fields every sender leaves 0: shown only when they are not.
    for (name, value) in [
        ("reserved02", u64::from(h.reserved02)),
        ("link_verifier", h.link_verifier),
        ("aux_descr", h.aux_descr),
        ("reserved38", u64::from(h.reserved38)),
    ] {
        if value != 0 {
            let _ = write!(text, " {name}={value:#x}");
        }
    }
    for (name, value) in payload_fields(m) {
        let _ = write!(text, " {name}={value}");
    }
    let _ = write!(text, " aux={}", dmsg_aux(m));
    text
}

fn dmsg_object(offset: u64, m: &MessageView<'_, DmsgReceivedHeader>) -> serde_json::Value {
    let h = m.header();
    let cmd = h.command();
    let payload: serde_json::Map<String, serde_json::Value> = payload_fields(m)
        .into_iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::String(v)))
        .collect();
    let aux_text = if cmd.dmsg_name() == Cmd::DBG_SHELL.dmsg_name() && !m.aux().is_empty() {
        Some(String::from_utf8_lossy(until_nul(m.aux())).into_owned())
    } else {
        aux_text(m.aux())
    };
    json!({
        "offset": offset,
        "order": if m.order() == WireOrder::Little { "little" } else { "big" },
        "magic": h.magic, "reserved02": h.reserved02, "salt": h.salt, "seq": h.salt & 0xFF,
        "msgid": h.msgid, "circuit": h.circuit, "link_verifier": h.link_verifier,
        "cmd": h.cmd, "name": cmd.dmsg_name(), "flags": dmsg_flags(cmd),
        "protocol": cmd.protocol().nibble(), "number": cmd.number(),
        "size_units": cmd.size_units(), "aux_crc": h.aux_crc, "aux_bytes": h.aux_bytes,
        "error": h.error, "aux_descr": h.aux_descr, "reserved38": h.reserved38,
        "hdr_crc": h.hdr_crc, "crc": "ok",
        "payload": payload, "ext_hex": hex(m.ext()), "aux_hex": hex(m.aux()),
        "aux_text": aux_text,
    })
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
