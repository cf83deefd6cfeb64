//! Two sessions recorded between libdmsg nodes (`vectors/dmsg-peer`, dmsg.md 5.1): both
//! directions decode, in every chunking, to exactly what an independent decoder printed in
//! `PREFIX.decoded.txt`; every frame is re-created byte for byte by the transmit queue; and
//! the proxy's `.segments` show the service writing on after its peer went away, never
//! closing.
//!
//! Expected values come from the `.decoded.txt` text (a separate Python decoder with its
//! own CRC-32C), parsed here; the recorded `.bin` bytes are the only other input. Nothing
//! expected is produced by h2msg.

use std::collections::{BTreeMap, VecDeque};

use h2msg::ioq::{DmsgRxDecoder, DmsgTxQueue, RxDecoder, RxPoll, TxQueue};
use h2msg::rand_core::{Rng, TryRng};
use h2msg::wire::{
    Cmd, DMSG_ERR_NOSUPP, DmsgHeader, DmsgReceivedHeader, LnkConn, LnkSpan, MessageView, PeerType,
    SoftCrc32c, Uuid, WireOrder,
};
use h2msg_tests::{TestRng, read_vector};

const SESSIONS: [&str; 2] = ["none-AB", "none-shell"];

// ---------------------------------------------------------------------------------------
// The decoded text

/// One message as the independent decoder printed it.
#[derive(Clone, Debug)]
struct Expected {
    /// `B->A` and so on.
    dir: String,
    /// Milliseconds since the proxy accepted the connection.
    time_ms: f64,
    /// Offset in its direction's stream.
    offset: usize,
    /// Index in its direction (the salt's sequence).
    seq: usize,
    cmd: u32,
    /// The decoder's name, e.g. `LNK_ERROR(RESULT)`.
    name: String,
    /// Header region bytes (`size=6(384B)`).
    region_len: usize,
    msgid: u64,
    circuit: u64,
    error: u32,
    aux_bytes: usize,
    /// `aux='…'`, unescaped.
    aux: Option<Vec<u8>>,
    /// The `header:` line's fields, when the decoder printed one.
    header: BTreeMap<String, String>,
    /// Payload fields (`peer_type=…` and so on).
    payload: BTreeMap<String, String>,
}

/// A decoded-text file: the two directions' names and lengths, and the messages.
#[derive(Debug)]
struct Decoded {
    /// (name, bytes) of the client → service direction, then the other.
    c2s: (String, usize),
    s2c: (String, usize),
    messages: Vec<Expected>,
}

impl Decoded {
    fn direction(&self, c2s: bool) -> (&str, Vec<&Expected>) {
        let name = if c2s { &self.c2s.0 } else { &self.s2c.0 };
        let msgs = self.messages.iter().filter(|m| &m.dir == name).collect();
        (name, msgs)
    }
}

/// Splits a line into `(key, value)` tokens; a bare word has key `None`. Values may be
/// Python string literals (`'…'` or `"…"`), which keep their spaces and are unescaped.
fn tokens(line: &str) -> Vec<(Option<String>, String)> {
    let chars: Vec<char> = line.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && !chars[i].is_whitespace() && chars[i] != '=' {
            i += 1;
        }
        let word: String = chars[start..i].iter().collect();
        if i < chars.len() && chars[i] == '=' {
            i += 1;
            let value = if i < chars.len() && (chars[i] == '\'' || chars[i] == '"') {
                let (text, next) = python_string(&chars, i);
                i = next;
                text
            } else {
                let vstart = i;
                while i < chars.len() && !chars[i].is_whitespace() {
                    i += 1;
                }
                chars[vstart..i].iter().collect()
            };
            out.push((Some(word), value));
        } else {
            out.push((None, word));
        }
    }
    out
}

/// The Python string literal starting at `chars[at]` (its quote), unescaped, and the index
/// after its closing quote. Non-ASCII characters do not occur in these files.
fn python_string(chars: &[char], at: usize) -> (String, usize) {
    let quote = chars[at];
    let mut out = String::new();
    let mut i = at + 1;
    loop {
        let c = *chars.get(i).expect("unterminated string literal");
        i += 1;
        match c {
            c if c == quote => return (out, i),
            '\\' => {
                let e = chars[i];
                i += 1;
                match e {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    '0' => out.push('\0'),
                    '\\' | '\'' | '"' => out.push(e),
                    'x' => {
                        let hex: String = chars[i..i + 2].iter().collect();
                        i += 2;
                        out.push(char::from(u8::from_str_radix(&hex, 16).expect("\\x")));
                    }
                    other => panic!("escape \\{other} not expected in a decoded file"),
                }
            }
            c => out.push(c),
        }
    }
}

fn hex_u64(text: &str) -> u64 {
    u64::from_str_radix(text.trim_start_matches("0x"), 16)
        .unwrap_or_else(|_| panic!("bad hex {text:?}"))
}

/// A number as the decoder prints it: `0x…` in hex, otherwise decimal.
fn number(text: &str) -> u64 {
    match text.strip_prefix("0x") {
        Some(hex) => hex_u64(hex),
        None => text
            .parse()
            .unwrap_or_else(|_| panic!("bad number {text:?}")),
    }
}

fn parse_decoded(prefix: &str) -> Decoded {
    let text = String::from_utf8(read_vector(&format!("dmsg-peer/{prefix}.decoded.txt")))
        .expect("decoded text is UTF-8");
    let mut lines = text.lines();
    // "# none-AB: B->A 1472 bytes, A->B 1152 bytes"
    let first = lines.next().expect("a first line");
    let words: Vec<&str> = first.split_whitespace().collect();
    assert_eq!(words[..2], ["#", &format!("{prefix}:")], "{first}");
    let c2s = (words[2].to_string(), words[3].parse().expect("bytes"));
    let s2c = (words[5].to_string(), words[6].parse().expect("bytes"));
    assert_eq!((words[4], words[7]), ("bytes,", "bytes"), "{first}");

    let mut messages: Vec<Expected> = Vec::new();
    let mut trailer = None;
    for line in lines {
        if let Some(rest) = line.strip_prefix("# ") {
            trailer = Some(rest.to_string());
            continue;
        }
        let toks = tokens(line);
        if toks.get(1).map(|t| t.1.as_str()) == Some("ms") {
            messages.push(parse_message_line(&toks, line));
            continue;
        }
        let current = messages.last_mut().expect("a detail line after a message");
        if toks.first().map(|t| t.1.as_str()) == Some("header:") {
            for (key, value) in &toks[1..] {
                let key = key.clone().unwrap_or_else(|| panic!("bare word in {line}"));
                current.header.insert(key, value.clone());
            }
            continue;
        }
        for (key, value) in toks {
            let key = key.unwrap_or_else(|| panic!("bare word in {line}"));
            if key == "aux" {
                current.aux = Some(value.into_bytes());
            } else {
                current.payload.insert(key, value);
            }
        }
    }
    // "# 13 messages, 0 with problems"
    let trailer = trailer.expect("a trailer line");
    assert_eq!(
        trailer,
        format!("{} messages, 0 with problems", messages.len()),
        "{prefix}"
    );
    Decoded { c2s, s2c, messages }
}

/// `0.341 ms B->A @00000 #0 cmd=80001106 LNK_CONN CREATE size=6(384B) msgid=… circuit=0
/// error=0 aux_bytes=0 crc ok`
fn parse_message_line(toks: &[(Option<String>, String)], line: &str) -> Expected {
    let bare = |i: usize| -> &str {
        assert!(toks[i].0.is_none(), "token {i} of {line}");
        &toks[i].1
    };
    let keyed = |key: &str| -> &str {
        toks.iter()
            .find(|t| t.0.as_deref() == Some(key))
            .map(|t| t.1.as_str())
            .unwrap_or_else(|| panic!("no {key} in {line}"))
    };
    let size = keyed("size"); // "6(384B)"
    let (units, bytes) = size
        .strip_suffix("B)")
        .and_then(|s| s.split_once('('))
        .unwrap_or_else(|| panic!("size {size:?}"));
    let region_len: usize = bytes.parse().expect("region bytes");
    assert_eq!(units.parse::<usize>().expect("units") * 64, region_len);
    let cmd_at = toks
        .iter()
        .position(|t| t.0.as_deref() == Some("cmd"))
        .expect("cmd");
    assert_eq!(
        toks[toks.len() - 2..]
            .iter()
            .map(|t| t.1.as_str())
            .collect::<Vec<_>>(),
        ["crc", "ok"],
        "{line}"
    );
    Expected {
        time_ms: bare(0).parse().expect("time"),
        dir: bare(2).to_string(),
        offset: hex_u64(bare(3).strip_prefix('@').expect("@offset")) as usize,
        seq: bare(4)
            .strip_prefix('#')
            .expect("#seq")
            .parse()
            .expect("seq"),
        cmd: hex_u64(keyed("cmd")) as u32,
        name: bare(cmd_at + 1).to_string(),
        region_len,
        msgid: hex_u64(keyed("msgid")),
        circuit: number(keyed("circuit")),
        error: number(keyed("error")) as u32,
        aux_bytes: number(keyed("aux_bytes")) as usize,
        aux: None,
        header: BTreeMap::new(),
        payload: BTreeMap::new(),
    }
}

/// The wire bytes of a UUID printed in the usual text form, written from the rule of
/// dmsg.md 5.1 (first three groups little-endian), independently of `Uuid`.
fn uuid_wire_bytes(text: &str) -> [u8; 16] {
    let groups: Vec<&str> = text.split('-').collect();
    let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    assert_eq!(lens, [8, 4, 4, 4, 12], "{text}");
    let mut out = Vec::new();
    for (i, g) in groups.iter().enumerate() {
        let mut bytes: Vec<u8> = (0..g.len())
            .step_by(2)
            .map(|j| u8::from_str_radix(&g[j..j + 2], 16).expect("uuid hex"))
            .collect();
        if i < 3 {
            bytes.reverse();
        }
        out.extend(bytes);
    }
    out.try_into().expect("16 bytes")
}

/// `1(ROUTER)` → (1, "ROUTER").
fn peer_type_text(text: &str) -> (u8, &str) {
    let (num, name) = text
        .strip_suffix(')')
        .and_then(|s| s.split_once('('))
        .unwrap_or_else(|| panic!("peer_type {text:?}"));
    (num.parse().expect("peer_type number"), name)
}

fn label_bytes(text: &str) -> &[u8] {
    text.as_bytes()
}

// ---------------------------------------------------------------------------------------
// Receiving

/// A decoded message copied out of the decoder.
#[derive(Debug)]
struct Got {
    header: DmsgHeader,
    order: WireOrder,
    region_len: usize,
    wire_len: usize,
    ext: Vec<u8>,
    aux: Vec<u8>,
    aux_text: Vec<u8>,
}

impl Got {
    fn of(m: &MessageView<'_, DmsgReceivedHeader>) -> Self {
        Self {
            header: *m.header(),
            order: m.order(),
            region_len: h2msg::wire::ReceivedFrame::sizes(m.received()).region_len,
            wire_len: m.wire_len(),
            ext: m.ext().to_vec(),
            aux: m.aux().to_vec(),
            aux_text: m.aux_until_nul().to_vec(),
        }
    }
}

/// Feeds `stream` in pieces of the sizes `pieces` yields (the last piece takes whatever
/// is left when the sizes run out), and requires a clean end after the last message.
fn decode(stream: &[u8], pieces: &mut dyn Iterator<Item = usize>, ctx: &str) -> Vec<Got> {
    let mut rx: DmsgRxDecoder<_, _, _> =
        RxDecoder::new_framed(vec![0u8; 8192], vec![0u8; 0], SoftCrc32c).expect("fifo");
    let mut rest = stream;
    let mut piece = 0;
    let mut out = Vec::new();
    loop {
        match rx.poll() {
            RxPoll::Message(m) => out.push(Got::of(&m)),
            RxPoll::NeedInput if rest.is_empty() => rx.end_input(),
            RxPoll::NeedInput => {
                if piece == 0 {
                    piece = pieces.next().unwrap_or(rest.len()).clamp(1, rest.len());
                }
                let taken = rx.feed(&rest[..piece]);
                assert!(
                    taken > 0,
                    "{ctx}: the decoder asked for input and took none"
                );
                rest = &rest[taken..];
                piece -= taken;
            }
            RxPoll::Closed => return out,
            other => panic!("{ctx}: {other:?} after {} messages", out.len()),
        }
    }
}

/// Checks one decoded message against the text, field by field.
fn check_message(got: &Got, exp: &Expected, ctx: &str) {
    let h = &got.header;
    assert_eq!(h.cmd, exp.cmd, "{ctx}: cmd");
    let base_name = exp.name.split('(').next().expect("name");
    assert_eq!(
        Cmd::from_raw(h.cmd).dmsg_name(),
        Some(base_name),
        "{ctx}: name"
    );
    assert_eq!(got.region_len, exp.region_len, "{ctx}: header region");
    assert_eq!(h.msgid, exp.msgid, "{ctx}: msgid");
    assert_eq!(h.circuit, exp.circuit, "{ctx}: circuit");
    assert_eq!(h.error, exp.error, "{ctx}: error");
    assert_eq!(h.aux_bytes as usize, exp.aux_bytes, "{ctx}: aux_bytes");
    assert_eq!(got.aux.len(), exp.aux_bytes, "{ctx}: aux delivered");
    assert_eq!(got.order, WireOrder::Little, "{ctx}: order");
    match &exp.aux {
        Some(text) => {
            assert_eq!(&got.aux_text, text, "{ctx}: aux text");
            // The NUL travels inside aux_bytes.
            assert_eq!(got.aux, [&text[..], b"\0"].concat(), "{ctx}: aux bytes");
        }
        None => assert_eq!(exp.aux_bytes, 0, "{ctx}: aux without text"),
    }
    let wire_fields = [
        ("reserved02", u64::from(h.reserved02)),
        ("salt", u64::from(h.salt)),
        ("link_verifier", h.link_verifier),
        ("aux_crc", u64::from(h.aux_crc)),
        ("aux_descr", h.aux_descr),
        ("reserved38", u64::from(h.reserved38)),
        ("hdr_crc", u64::from(h.hdr_crc)),
    ];
    let mut header = exp.header.clone();
    if !header.is_empty() {
        assert_eq!(header.remove("magic").as_deref(), Some("4832"), "{ctx}");
        for (name, value) in wire_fields {
            let text = header
                .remove(name)
                .unwrap_or_else(|| panic!("{ctx}: no {name}"));
            assert_eq!(value, hex_u64(&text), "{ctx}: {name}");
        }
        assert!(header.is_empty(), "{ctx}: unchecked {header:?}");
    }
    assert_eq!(usize::from(h.salt as u8), exp.seq % 256, "{ctx}: sequence");
    check_payload(got, exp, ctx);
}

/// Checks the LNK_CONN / LNK_SPAN payload fields the text lists, through the payload
/// types, and that the text lists no field left unchecked.
fn check_payload(got: &Got, exp: &Expected, ctx: &str) {
    let mut fields = exp.payload.clone();
    let mut take = |name: &str| {
        fields
            .remove(name)
            .unwrap_or_else(|| panic!("{ctx}: no {name} in the text"))
    };
    let order = got.order;
    let cmd = Cmd::from_raw(got.header.cmd);
    if cmd.dmsg_name() == Some("LNK_CONN") {
        let conn = LnkConn::ref_from_ext(&got.ext).expect("LNK_CONN payload");
        assert_eq!(conn.media_id.to_string(), take("media_id"), "{ctx}");
        assert_eq!(conn.peer_id.to_string(), take("peer_id"), "{ctx}");
        assert_eq!(
            Uuid(conn.reserved01).to_string(),
            take("reserved01"),
            "{ctx}"
        );
        assert_eq!(conn.peer_mask(order), number(&take("peer_mask")), "{ctx}");
        let peer_type = take("peer_type");
        let (ty, name) = peer_type_text(&peer_type);
        assert_eq!(conn.peer_type(), PeerType(ty), "{ctx}");
        assert_eq!(conn.peer_type().name(), name, "{ctx}");
        assert_eq!(
            u64::from(conn.proto_version(order)),
            number(&take("proto_version")),
            "{ctx}"
        );
        assert_eq!(
            u64::from(conn.status(order)),
            number(&take("status")),
            "{ctx}"
        );
        assert_eq!(u64::from(conn.rnss(order)), number(&take("rnss")), "{ctx}");
        assert_eq!(conn.peer_label(), label_bytes(&take("peer_label")), "{ctx}");
    } else if cmd.dmsg_name() == Some("LNK_SPAN") {
        let span = LnkSpan::ref_from_ext(&got.ext).expect("LNK_SPAN payload");
        assert_eq!(span.peer_id.to_string(), take("peer_id"), "{ctx}");
        assert_eq!(span.pfs_id.to_string(), take("pfs_id"), "{ctx}");
        assert_eq!(
            u64::from(span.pfs_type()),
            number(&take("pfs_type")),
            "{ctx}"
        );
        let peer_type = take("peer_type");
        let (ty, name) = peer_type_text(&peer_type);
        assert_eq!(span.peer_type(), PeerType(ty), "{ctx}");
        assert_eq!(span.peer_type().name(), name, "{ctx}");
        assert_eq!(
            u64::from(span.proto_version(order)),
            number(&take("proto_version")),
            "{ctx}"
        );
        assert_eq!(
            u64::from(span.status(order)),
            number(&take("status")),
            "{ctx}"
        );
        assert_eq!(u64::from(span.dist(order)), number(&take("dist")), "{ctx}");
        assert_eq!(u64::from(span.rnss(order)), number(&take("rnss")), "{ctx}");
        assert_eq!(span.peer_label(), label_bytes(&take("peer_label")), "{ctx}");
        assert_eq!(span.pfs_label(), label_bytes(&take("pfs_label")), "{ctx}");
    }
    assert!(
        fields.is_empty(),
        "{ctx}: fields left unchecked: {fields:?}"
    );
}

/// Decodes one direction with `pieces` and compares every message, in order.
fn check_direction(prefix: &str, c2s: bool, label: &str, pieces: &mut dyn Iterator<Item = usize>) {
    let decoded = parse_decoded(prefix);
    let file = if c2s { "c2s" } else { "s2c" };
    let stream = read_vector(&format!("dmsg-peer/{prefix}.{file}.bin"));
    let (dir, expected) = decoded.direction(c2s);
    let bytes = if c2s { decoded.c2s.1 } else { decoded.s2c.1 };
    assert_eq!(stream.len(), bytes, "{prefix} {dir}: length in the text");
    let ctx = format!("{prefix} {dir} ({label})");
    let got = decode(&stream, pieces, &ctx);
    assert_eq!(got.len(), expected.len(), "{ctx}: message count");
    let mut offset = 0;
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        let ctx = format!("{ctx} #{i}");
        assert_eq!(e.seq, i, "{ctx}: the text's numbering");
        assert_eq!(e.offset, offset, "{ctx}: offset");
        check_message(g, e, &ctx);
        offset += g.wire_len;
    }
    assert_eq!(
        offset,
        stream.len(),
        "{ctx}: nothing after the last message"
    );
}

/// Piece sizes of one direction as the proxy read them (`.segments`).
fn segment_sizes(prefix: &str, c2s: bool) -> Vec<usize> {
    segments(prefix)
        .into_iter()
        .filter_map(|s| match s {
            Segment::Data { c2s: d, len, .. } if d == c2s => Some(len),
            _ => None,
        })
        .collect()
}

#[test]
fn every_message_decodes_as_the_independent_decoder_says_in_every_chunking() {
    let mut checked = 0;
    for prefix in SESSIONS {
        for c2s in [true, false] {
            let len = read_vector(&format!(
                "dmsg-peer/{prefix}.{}.bin",
                if c2s { "c2s" } else { "s2c" }
            ))
            .len();
            check_direction(prefix, c2s, "whole", &mut std::iter::once(len));
            check_direction(prefix, c2s, "1 byte", &mut std::iter::repeat(1));
            for n in [7, 63, 64, 65, 200] {
                check_direction(
                    prefix,
                    c2s,
                    &format!("{n} bytes"),
                    &mut std::iter::repeat(n),
                );
            }
            let recorded = segment_sizes(prefix, c2s);
            assert_eq!(recorded.iter().sum::<usize>(), len, "{prefix}: segments");
            check_direction(prefix, c2s, "as recorded", &mut recorded.into_iter());
            for seed in 0..8 {
                let mut rng = TestRng(seed);
                let mut sizes = std::iter::from_fn(move || Some(1 + rng.next_u32() as usize % 500));
                check_direction(prefix, c2s, &format!("random seed {seed}"), &mut sizes);
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 4);
}

#[test]
fn the_recordings_hold_what_the_readme_says() {
    let ab = parse_decoded("none-AB");
    let shell = parse_decoded("none-shell");
    assert_eq!(ab.messages.len(), 13);
    assert_eq!(shell.messages.len(), 28);
    for decoded in [&ab, &shell] {
        for c2s in [true, false] {
            let (dir, msgs) = decoded.direction(c2s);
            // Both ends open LNK_CONN first.
            assert_eq!(msgs[0].cmd, 0x8000_1106, "{dir}");
            // Every CONN and SPAN opened is answered first with a result 0xA80FFF01 —
            // except the service's CONN by the shell client, which closes it at once with
            // 0xE80FFF01 and error 0x20 (NOSUPP), as the specification says the shell does
            // (the README's "every CONN and SPAN is answered with a result" overlooks it).
            let (_, answers) = decoded.direction(!c2s);
            for opened in msgs
                .iter()
                .filter(|m| m.cmd == 0x8000_1106 || m.cmd == 0x8000_1207)
            {
                let first = answers
                    .iter()
                    .find(|a| a.msgid == opened.msgid)
                    .unwrap_or_else(|| panic!("{dir}: no answer to {:#x}", opened.msgid));
                let shell_closes_conn = dir == "A->S" && opened.cmd == 0x8000_1106;
                let expected = if shell_closes_conn {
                    (0xE80F_FF01, DMSG_ERR_NOSUPP)
                } else {
                    (0xA80F_FF01, 0)
                };
                assert_eq!(
                    (first.cmd, first.error),
                    expected,
                    "{dir}: {:#x}",
                    opened.msgid
                );
            }
        }
    }
    // The relayed gamma span differs from C's own only in dist and rnss: B relays it to A
    // at dist 2, A relays it to the shell client at dist 3.
    let gamma: Vec<&Expected> = ab
        .messages
        .iter()
        .chain(&shell.messages)
        .filter(|m| m.payload.get("peer_label").map(String::as_str) == Some("gamma"))
        .collect();
    let dists: Vec<&str> = gamma.iter().map(|m| m.payload["dist"].as_str()).collect();
    assert_eq!(dists, ["2", "3"]);
    // The shell's output lines: separate one-way DBG_SHELL|REPLY messages, each block
    // ending with the prompt.
    let (_, from_service) = shell.direction(false);
    let texts: Vec<&[u8]> = from_service
        .iter()
        .filter(|m| m.cmd == 0x2010_0101)
        .map(|m| m.aux.as_deref().expect("shell output text"))
        .collect();
    assert_eq!(texts.first(), Some(&&b"debug> "[..]));
    assert_eq!(texts.iter().filter(|t| **t == b"debug> ").count(), 3);
}

// ---------------------------------------------------------------------------------------
// Transmitting

/// Salt bits replayed from a recording: the queue shifts each value left by 8 and puts
/// its own sequence number in the low byte.
struct ReplaySalt(VecDeque<u32>);

impl TryRng for ReplaySalt {
    type Error = std::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(self.0.pop_front().expect("a recorded salt per message"))
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        self.try_next_u32().map(u64::from)
    }
    fn try_fill_bytes(&mut self, _: &mut [u8]) -> Result<(), Self::Error> {
        unreachable!("the queue draws u32s only")
    }
}

/// The extended header the text describes, built with the payload setters; `None` for a
/// command without a payload the text decodes.
fn build_payload(exp: &Expected) -> Option<Vec<u8>> {
    let p = &exp.payload;
    let le = WireOrder::Little;
    match exp.cmd & 0x00FF_FFFF {
        0x1106 => {
            let mut conn = LnkConn::new();
            conn.media_id = Uuid(uuid_wire_bytes(&p["media_id"]));
            conn.peer_id = Uuid(uuid_wire_bytes(&p["peer_id"]));
            conn.reserved01 = uuid_wire_bytes(&p["reserved01"]);
            conn.set_peer_mask(number(&p["peer_mask"]), le);
            conn.set_peer_type(PeerType(peer_type_text(&p["peer_type"]).0));
            conn.set_proto_version(number(&p["proto_version"]) as u16, le);
            conn.status = (number(&p["status"]) as u32).to_le_bytes();
            conn.rnss = (number(&p["rnss"]) as u32).to_le_bytes();
            conn.set_peer_label(label_bytes(&p["peer_label"]))
                .expect("label fits");
            Some(conn.as_ext().to_vec())
        }
        0x1207 => {
            let mut span = LnkSpan::new();
            span.peer_id = Uuid(uuid_wire_bytes(&p["peer_id"]));
            span.pfs_id = Uuid(uuid_wire_bytes(&p["pfs_id"]));
            span.set_pfs_type(number(&p["pfs_type"]) as u8);
            span.set_peer_type(PeerType(peer_type_text(&p["peer_type"]).0));
            span.set_proto_version(number(&p["proto_version"]) as u16, le);
            span.status = (number(&p["status"]) as u32).to_le_bytes();
            span.set_dist(number(&p["dist"]) as u32, le);
            span.set_rnss(number(&p["rnss"]) as u32, le);
            span.set_peer_label(label_bytes(&p["peer_label"]))
                .expect("label fits");
            span.set_pfs_label(label_bytes(&p["pfs_label"]))
                .expect("label fits");
            Some(span.as_ext().to_vec())
        }
        _ => None,
    }
}

#[test]
fn every_frame_is_recreated_byte_for_byte_by_the_transmit_queue() {
    let mut frames = 0;
    for prefix in SESSIONS {
        let decoded = parse_decoded(prefix);
        for c2s in [true, false] {
            let file = if c2s { "c2s" } else { "s2c" };
            let recorded = read_vector(&format!("dmsg-peer/{prefix}.{file}.bin"));
            let (dir, expected) = decoded.direction(c2s);
            // The salts as recorded (raw little-endian bytes 4..8 of each frame).
            let salt_at =
                |off: usize| u32::from_le_bytes(recorded[off + 4..off + 8].try_into().unwrap());
            let salts = expected.iter().map(|e| salt_at(e.offset) >> 8).collect();
            let mut tx: DmsgTxQueue<_, _, _> = TxQueue::new_framed(
                vec![0u8; 16384],
                ReplaySalt(salts),
                SoftCrc32c,
                WireOrder::Little,
            );
            let mut sent = Vec::new();
            for (i, e) in expected.iter().enumerate() {
                let ctx = format!("{prefix} {dir} #{i}");
                let mut h = DmsgHeader::new(Cmd::from_raw(e.cmd));
                h.msgid = e.msgid;
                h.circuit = e.circuit;
                h.error = e.error;
                let frame_ext = &recorded[e.offset + 64..e.offset + e.region_len];
                let ext = match build_payload(e) {
                    Some(built) => {
                        assert_eq!(built, frame_ext, "{ctx}: payload built from the text");
                        built
                    }
                    None => {
                        assert!(frame_ext.is_empty(), "{ctx}: an extension the text skips");
                        Vec::new()
                    }
                };
                let aux = match &e.aux {
                    Some(text) => [&text[..], b"\0"].concat(),
                    None => Vec::new(),
                };
                let stamped = tx.enqueue(h, &ext, &aux).expect("queued");
                if let Some(salt) = e.header.get("salt") {
                    assert_eq!(u64::from(stamped.salt), hex_u64(salt), "{ctx}: salt");
                }
                if let Some(crc) = e.header.get("hdr_crc") {
                    assert_eq!(u64::from(stamped.hdr_crc), hex_u64(crc), "{ctx}: hdr_crc");
                }
                let mut bytes = vec![0u8; tx.pending_len()];
                tx.copy_pending(&mut bytes);
                tx.advance(bytes.len()).expect("advance");
                let end = e.offset + bytes.len();
                assert_eq!(
                    bytes,
                    recorded[e.offset..end.min(recorded.len())],
                    "{ctx}: frame bytes"
                );
                sent.extend(bytes);
                frames += 1;
            }
            assert_eq!(sent, recorded, "{prefix} {dir}: the whole direction");
        }
    }
    assert_eq!(frames, 13 + 28);
}

// ---------------------------------------------------------------------------------------
// The proxy's view of the connection

#[derive(Debug, PartialEq)]
enum Segment {
    Data {
        time_ms: f64,
        c2s: bool,
        len: usize,
    },
    Eof {
        time_ms: f64,
        c2s: bool,
    },
    /// A closing remark of the proxy (the rest of the line).
    Note(String),
}

fn segments(prefix: &str) -> Vec<Segment> {
    let text =
        String::from_utf8(read_vector(&format!("dmsg-peer/{prefix}.segments"))).expect("UTF-8");
    text.lines()
        .map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let time_ms: f64 = words[0].parse().expect("time");
            match words[1..] {
                [dir @ ("c2s" | "s2c"), "EOF"] => Segment::Eof {
                    time_ms,
                    c2s: dir == "c2s",
                },
                [dir @ ("c2s" | "s2c"), n] => Segment::Data {
                    time_ms,
                    c2s: dir == "c2s",
                    len: n.parse().expect("byte count"),
                },
                _ => Segment::Note(words[1..].join(" ")),
            }
        })
        .collect()
}

/// README: "libdmsg never closes its socket after the peer went away". In both sessions
/// the client's side ends (c2s EOF), the service still writes afterwards — the DELETEs of
/// what it had sent on that link — and the proxy's grace period ends with the service's
/// side still open: no s2c EOF at all.
#[test]
fn the_service_keeps_its_socket_open_after_the_peer_went_away() {
    for prefix in SESSIONS {
        let segs = segments(prefix);
        let eofs: Vec<&Segment> = segs
            .iter()
            .filter(|s| matches!(s, Segment::Eof { .. }))
            .collect();
        assert_eq!(eofs.len(), 1, "{prefix}: one EOF");
        let Segment::Eof {
            time_ms: eof_at,
            c2s: true,
        } = *eofs[0]
        else {
            panic!("{prefix}: the EOF is the client's: {:?}", eofs[0]);
        };
        assert_eq!(
            segs.last(),
            Some(&Segment::Note(
                "grace expired, other side still open".to_string()
            )),
            "{prefix}"
        );
        let late: usize = segs
            .iter()
            .filter_map(|s| match s {
                Segment::Data {
                    time_ms,
                    c2s: false,
                    len,
                } if *time_ms > eof_at => Some(*len),
                _ => None,
            })
            .sum();
        assert!(late > 0, "{prefix}: the service wrote after the EOF");
        // What it wrote then: closes of its own transactions (0x400FFF01, error 0), as the
        // independent decoder read them.
        let decoded = parse_decoded(prefix);
        let (_, from_service) = decoded.direction(false);
        let after: Vec<&&Expected> = from_service.iter().filter(|m| m.time_ms > eof_at).collect();
        assert!(!after.is_empty(), "{prefix}");
        assert!(
            after.iter().all(|m| m.cmd == 0x400F_FF01 && m.error == 0),
            "{prefix}: {after:?}"
        );
        assert_eq!(
            after.iter().map(|m| m.region_len).sum::<usize>(),
            late,
            "{prefix}"
        );
    }
}
