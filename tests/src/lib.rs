//! Helpers shared by the integration tests: where the vectors are, hex decoding, and an
//! independent CRC-32C so that expected values never come from the code under test.

use std::path::PathBuf;

use h2msg::wire::{MessageView, WireOrder};
use serde_json::Value;

/// The vector folder of this crate (`tests/vectors`).
pub fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("vectors")
}

/// Reads a vector file, naming it in the panic if it is missing.
pub fn read_vector(relative: &str) -> Vec<u8> {
    let path = vectors_dir().join(relative);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Decodes hex, ignoring ASCII whitespace (so spec text can be pasted as it is).
pub fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert!(
        digits.len().is_multiple_of(2),
        "odd number of hex digits in {text:?}"
    );
    digits
        .chunks_exact(2)
        .map(|pair| {
            let s = std::str::from_utf8(pair).expect("ascii");
            u8::from_str_radix(s, 16).unwrap_or_else(|_| panic!("bad hex {s:?}"))
        })
        .collect()
}

/// Parses "0x1234" or "1234" as hexadecimal.
pub fn hex_u32(text: &str) -> u32 {
    let digits = text.trim_start_matches("0x");
    u32::from_str_radix(digits, 16).unwrap_or_else(|_| panic!("bad hex number {text:?}"))
}

/// CRC-32C exactly as docs/protocol.md Appendix B describes it, one bit at a time.
pub fn reference_crc32c(bytes: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in bytes {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82F6_3B78
            } else {
                c >> 1
            };
        }
    }
    c ^ 0xFFFF_FFFF
}

/// `fold16` of §3.6, written independently of the core's.
pub fn reference_fold16(crc: u32) -> u16 {
    ((crc & 0xFFFF) ^ (crc >> 16)) as u16
}

/// The byte ranges of the base header fields, from the table of docs/protocol.md §3.1.
pub const HEADER_FIELDS: [(&str, usize, usize); 12] = [
    ("magic", 0x00, 2),
    ("icrc1", 0x02, 2),
    ("salt", 0x04, 4),
    ("source", 0x08, 2),
    ("target", 0x0A, 2),
    ("msgid", 0x0C, 4),
    ("cmd", 0x10, 4),
    ("error", 0x14, 2),
    ("resv05", 0x16, 2),
    ("icrc2", 0x18, 2),
    ("aux_bytes", 0x1A, 2),
    ("aux_icrc", 0x1C, 4),
];

/// The header with every field's bytes reversed: what the other byte order sends.
pub fn swap_header_fields(header: &[u8; 32]) -> [u8; 32] {
    let mut out = *header;
    for (_, offset, len) in HEADER_FIELDS {
        out[offset..offset + len].reverse();
    }
    out
}

/// Reads field `name` of a raw header in the given order (`big` or little).
pub fn field(header: &[u8], name: &str, big: bool) -> u32 {
    let (_, offset, len) = HEADER_FIELDS
        .iter()
        .find(|f| f.0 == name)
        .expect("known field");
    let bytes = &header[*offset..offset + len];
    let mut value = 0u32;
    if big {
        for &b in bytes {
            value = value << 8 | u32::from(b);
        }
    } else {
        for &b in bytes.iter().rev() {
            value = value << 8 | u32::from(b);
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_crc_has_the_appendix_b_check_values() {
        assert_eq!(reference_crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(reference_crc32c(&[0; 32]), 0x8A91_36AA);
    }

    #[test]
    fn hex_reads_spec_text() {
        assert_eq!(hex("32 48\n97 2e"), [0x32, 0x48, 0x97, 0x2e]);
        assert_eq!(hex_u32("0x2E97"), 0x2E97);
    }

    #[test]
    fn field_table_tiles_the_header() {
        let mut next = 0;
        for (_, offset, len) in HEADER_FIELDS {
            assert_eq!(offset, next);
            next += len;
        }
        assert_eq!(next, 32);
    }
}

/// The recorded C session's `vectors.json`.
pub fn c_peer_recording() -> Value {
    serde_json::from_slice(&read_vector("c-peer/v1-rsa/vectors.json")).expect("valid JSON")
}

/// The frames of one direction (`"c2s"` or `"s2c"`) of the recorded C session.
pub fn c_peer_frames(direction: &str) -> Vec<Value> {
    c_peer_recording()["streams"][direction]["frames"]
        .as_array()
        .expect("frames")
        .clone()
}

/// The bytes of one direction of the recorded C session (handshake included).
pub fn c_peer_wire(direction: &str) -> Vec<u8> {
    read_vector(&format!("c-peer/v1-rsa/wire-{direction}.bin"))
}

/// A hex string or number of `vectors.json` as a `u32`.
pub fn json_u32(v: &Value) -> u32 {
    match v {
        Value::String(s) => hex_u32(s),
        Value::Number(n) => u32::try_from(n.as_u64().expect("unsigned")).expect("fits u32"),
        other => panic!("not a number: {other}"),
    }
}

/// Asserts that a decoded message matches one frame of `vectors.json` in every field.
pub fn assert_frame(m: &MessageView<'_>, frame: &Value, ctx: &str) {
    let h = m.header();
    assert_eq!(m.order(), WireOrder::Little, "{ctx}");
    let fields = [
        ("icrc1", u32::from(h.icrc1)),
        ("salt", h.salt),
        ("source", u32::from(h.source)),
        ("target", u32::from(h.target)),
        ("msgid", h.msgid),
        ("cmd", h.cmd.raw()),
        ("error", u32::from(h.error)),
        ("resv05", u32::from(h.resv05)),
        ("icrc2", u32::from(h.icrc2)),
        ("aux_bytes", u32::from(h.aux_units)),
        ("aux_icrc", h.aux_icrc),
    ];
    for (name, value) in fields {
        assert_eq!(value, json_u32(&frame[name]), "{ctx}: field {name}");
    }
    assert_eq!(
        m.received().header_len() as u64,
        frame["hbytes"].as_u64().unwrap(),
        "{ctx}"
    );
    assert_eq!(
        m.aux(),
        &hex(frame["aux_hex"].as_str().unwrap())[..],
        "{ctx}: aux"
    );
    assert_eq!(
        h.cmd.to_string(),
        frame["name"].as_str().unwrap(),
        "{ctx}: name"
    );
    match frame["aux_text"].as_str() {
        Some(text) => assert_eq!(m.aux_until_nul(), text.as_bytes(), "{ctx}: text"),
        None => assert!(m.aux().is_empty(), "{ctx}: no aux"),
    }
}

/// glibc's `random()` (the TYPE_3 additive feedback generator) seeded as an unseeded
/// program sees it (`srandom(1)`): the source of the 2012 C tools' salts (§11 T7).
/// Written from the published algorithm, independently of h2msg.
pub struct GlibcRandom {
    r: Vec<u32>,
}

impl GlibcRandom {
    /// The generator after `srandom(seed)`.
    pub fn new(seed: u32) -> Self {
        let mut r: Vec<u32> = vec![0; 34];
        r[0] = seed;
        for i in 1..31 {
            // 16807 * r[i-1] % 2147483647 without overflow (Schrage), as glibc does.
            let prev = r[i - 1] as i32;
            let hi = prev / 127_773;
            let lo = prev % 127_773;
            let mut word = 16_807 * lo - 2_836 * hi;
            if word < 0 {
                word += 2_147_483_647;
            }
            r[i] = word as u32;
        }
        for i in 31..34 {
            r[i] = r[i - 31];
        }
        let mut g = Self { r };
        for _ in 34..344 {
            g.step();
        }
        g
    }

    fn step(&mut self) -> u32 {
        let n = self.r.len();
        let v = self.r[n - 31].wrapping_add(self.r[n - 3]);
        self.r.push(v);
        if self.r.len() > 64 {
            self.r.drain(..self.r.len() - 34);
        }
        v
    }

    /// The next value of `random()` (31 bits).
    pub fn random(&mut self) -> u32 {
        self.step() >> 1
    }
}

impl h2msg::rand_core::TryRng for GlibcRandom {
    type Error = std::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(self.random())
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(u64::from(self.random()) << 32 | u64::from(self.random()))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        for b in dst {
            *b = self.random() as u8;
        }
        Ok(())
    }
}

#[cfg(test)]
mod glibc_tests {
    use super::*;

    #[test]
    fn first_values_of_an_unseeded_glibc_random() {
        // The well-known first outputs of glibc random() without srandom().
        let mut g = GlibcRandom::new(1);
        let got: Vec<u32> = (0..5).map(|_| g.random()).collect();
        assert_eq!(
            got,
            [
                1_804_289_383,
                846_930_886,
                1_681_692_777,
                1_714_636_915,
                1_957_747_793
            ]
        );
    }
}

/// A decoded message copied out of the decoder, for comparisons.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedMessage {
    /// The header values.
    pub header: h2msg::wire::MsgHeader,
    /// The sender's byte order.
    pub order: WireOrder,
    /// Extended header bytes.
    pub ext: Vec<u8>,
    /// Aux bytes, padding included.
    pub aux: Vec<u8>,
}

impl OwnedMessage {
    /// Copies a borrowed message.
    pub fn of(m: &MessageView<'_>) -> Self {
        Self {
            header: *m.header(),
            order: m.order(),
            ext: m.ext().to_vec(),
            aux: m.aux().to_vec(),
        }
    }
}

/// How a decoding run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// Clean end at a message boundary.
    Closed,
    /// The stream failed.
    Failed(h2msg::ioq::RxFailure),
    /// A message needs more aux storage than the decoder was given (not a stream error;
    /// the run stops there).
    NeedsAuxStorage {
        /// Aux bytes needed.
        needed: usize,
        /// Aux storage given.
        available: usize,
    },
}

/// Feeds `stream` to a fresh decoder (FIFO and aux storage of the given sizes) in pieces
/// whose sizes cycle through `pieces`, ends the input, and collects everything it says.
/// Asserts the decoder's own contract on the way: it always takes input when it asks for
/// it, says `Failed`/`Closed` once, then only `Finished`.
pub fn decode_stream(
    stream: &[u8],
    pieces: &[usize],
    fifo: usize,
    aux: usize,
) -> (Vec<OwnedMessage>, Ending) {
    decode_framed::<h2msg::wire::ReceivedHeader, _>(stream, pieces, fifo, aux, OwnedMessage::of)
}

/// [`decode_stream`] for either revision (`H` is the revision's received header), each
/// message kept as `own` makes it.
///
/// # Panics
/// As [`decode_stream`].
pub fn decode_framed<H, T>(
    stream: &[u8],
    pieces: &[usize],
    fifo: usize,
    aux: usize,
    own: impl Fn(&h2msg::wire::MessageView<'_, H>) -> T,
) -> (Vec<T>, Ending)
where
    H: h2msg::wire::ReceivedFrame,
{
    use h2msg::ioq::{RxDecoder, RxPoll};
    let mut rx = RxDecoder::<_, _, _, H>::new_framed(
        vec![0u8; fifo],
        vec![0u8; aux],
        h2msg::wire::SoftCrc32c,
    )
    .expect("fifo size");
    let mut sizes = pieces.iter().cycle();
    let mut rest = stream;
    let mut out = Vec::new();
    let ending = loop {
        match rx.poll() {
            RxPoll::Message(m) => out.push(own(&m)),
            RxPoll::NeedInput if rest.is_empty() => rx.end_input(),
            RxPoll::NeedInput => {
                let n = (*sizes.next().expect("pieces")).clamp(1, rest.len());
                let taken = rx.feed(&rest[..n]);
                assert!(taken > 0, "decoder asked for input but took none");
                rest = &rest[taken..];
            }
            RxPoll::Closed => break Ending::Closed,
            RxPoll::Failed(f) => break Ending::Failed(f),
            RxPoll::AuxStorageTooSmall { needed, available } => {
                // Not fatal: asking again says the same, and nothing was consumed.
                let again = rx.poll();
                assert!(
                    matches!(again, RxPoll::AuxStorageTooSmall { needed: n, available: a }
                        if n == needed && a == available),
                    "{again:?}"
                );
                return (out, Ending::NeedsAuxStorage { needed, available });
            }
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(
        matches!(rx.poll(), RxPoll::Finished),
        "the ending is said once"
    );
    assert_eq!(rx.feed(b"late"), 0, "no input after the end");
    (out, ending)
}

/// A plaintext DMSG connection over heap buffers of these sizes, liveness off,
/// little-endian, taking `accept`: what the DMSG tests and the `dmsg_peer` fuzz body build.
///
/// # Panics
/// If the sizes do not fit (a FIFO below 2048 bytes) or `accept` is too long.
pub fn dmsg_node<const T: usize>(
    fifo: usize,
    aux: usize,
    tx_ring: usize,
    accept: &[h2msg::wire::Cmd],
) -> h2msg::DmsgIocom<Vec<u8>, h2msg::CounterSalt, h2msg::wire::SoftCrc32c, T> {
    dmsg_node_with(
        h2msg::LinkSetup::plaintext(),
        h2msg::CounterSalt::default(),
        [fifo, aux, tx_ring],
        accept,
    )
}

/// As [`dmsg_node`], in the stream mode of `setup` and with salts from `salt`;
/// `sizes` are the FIFO, aux storage and transmit ring.
///
/// # Panics
/// If the sizes do not fit the mode or `accept` is too long.
pub fn dmsg_node_with<const T: usize>(
    setup: h2msg::LinkSetup,
    salt: h2msg::CounterSalt,
    sizes: [usize; 3],
    accept: &[h2msg::wire::Cmd],
) -> h2msg::DmsgIocom<Vec<u8>, h2msg::CounterSalt, h2msg::wire::SoftCrc32c, T> {
    let [fifo, aux, tx_ring] = sizes;
    let memory = h2msg::IocomMemory {
        fifo: vec![0u8; fifo],
        aux: vec![0u8; aux],
        tx_ring: vec![0u8; tx_ring],
    };
    let config = h2msg::Config {
        order: h2msg::wire::WireOrder::Little,
        liveness: h2msg::Liveness::OFF,
    };
    let mut node = h2msg::DmsgIocom::new(setup, memory, salt, h2msg::wire::SoftCrc32c, config)
        .expect("the memory fits");
    for &cmd in accept {
        node.accept(cmd).expect("room in the accept list");
    }
    node
}

/// The DMSG specification's vectors V1–V5 (dmsg.md 2.8), written out from its text and
/// `dmsg_vectors.py`'s printed output: `n` in 1..=5.
///
/// # Panics
/// For any other `n`.
pub fn dmsg_vector(n: usize) -> Vec<u8> {
    match n {
        1 => v1(),
        2 => v2(),
        3 => v3(),
        4 => v4(),
        5 => v5(),
        _ => panic!("no DMSG vector V{n}"),
    }
}

/// Hex rows `"off  b0 b1 …"` into bytes of `len`, zero elsewhere.
fn image(len: usize, rows: &[(usize, &str)]) -> Vec<u8> {
    let mut out = vec![0u8; len];
    for (off, hex) in rows {
        for (i, b) in hex.split_whitespace().enumerate() {
            out[off + i] = u8::from_str_radix(b, 16).unwrap();
        }
    }
    out
}

fn v1() -> Vec<u8> {
    image(
        384,
        &[
            (0x00, "32 48 00 00 00 56 34 12 01 00 00 00 00 00 00 00"),
            (0x20, "06 11 00 80"),
            (0x3c, "f6 96 a4 ca"),
            (0x70, "ff ff ff ff ff ff ff ff 01 00 01 00"),
            (0xc4, "68 32 6d 73 67"),
        ],
    )
}
fn v2() -> Vec<u8> {
    image(
        448,
        &[
            (0x00, "32 48 00 00 01 de bc 9a 02"),
            (0x20, "07 12 00 80"),
            (0x3c, "0a b6 4f 6a"),
            (0x40, "00 11 22 33 44 55 66 77 88 99 aa bb cc dd ee ff"),
            (0x50, "0f 1e 2d 3c 4b 5a 69 78 87 96 a5 b4 c3 d2 e1 f0"),
            (0x60, "00 03 01 00"),
            (0x70, "02 00 00 00 04 03 02 01"),
            (0xb0, "63 6c 75 73 74 65 72 41"),
            (0x130, "6e 6f 64 65 31"),
        ],
    )
}
fn v3() -> Vec<u8> {
    image(
        128,
        &[
            (0x00, "32 48 00 00 02 ca ad 0b"),
            (0x20, "01 01 10 00 e0 ff e3 b1 05"),
            (0x3c, "0d 6c 20 31"),
            (0x40, "74 72 65 65"),
        ],
    )
}
fn v4() -> Vec<u8> {
    image(
        64,
        &[
            (0x00, "32 48 00 00 03 77 aa 55 40 2a 00 1c 5a 7f 00 00"),
            (0x20, "01 ff 0f a8"),
            (0x3c, "00 4e 91 33"),
        ],
    )
}
fn v5() -> Vec<u8> {
    image(
        64,
        &[
            (0x00, "48 32 00 00 55 aa 77 03 00 00 7f 5a 1c 00 2a 40"),
            (0x20, "a8 0f ff 01"),
            (0x3c, "eb f0 26 af"),
        ],
    )
}

pub mod cluster_sim;
pub mod sim;

/// Fuzz target bodies, shared by `fuzz/` (cargo-fuzz, nightly) and by the stable test that
/// replays the seed corpus, so neither can rot without the other noticing.
pub mod fuzz {
    use super::{decode_framed, decode_stream};
    use h2msg::wire::{Crc32c, SoftCrc32c, compute_icrc1};

    mod cluster_pump;
    mod dmsg_peer;
    mod dump;
    mod handshake_rx;
    mod hostile_peer;
    mod key_file;
    mod pump;
    mod reassembler;
    pub use cluster_pump::{LINKS, PumpReach, RELAYS, cluster_pump};
    pub use dmsg_peer::dmsg_peer;
    pub use dump::dump;
    pub use handshake_rx::handshake_rx;
    pub use hostile_peer::hostile_peer;
    pub use key_file::key_file;
    pub use pump::{iocom_pump, stream_pump};
    pub use reassembler::reassembler;

    /// Rewrites every CRC of the frames in `stream` that have a valid magic, so that the
    /// fuzzer reaches the size, extended-header and aux paths behind the checksums.
    pub fn repair_crcs(stream: &mut [u8]) {
        let mut at = 0;
        while let Some(base) = stream.get(at..at + 32) {
            let big = match base[..2] {
                [0x32, 0x48] => false,
                [0x48, 0x32] => true,
                _ => return,
            };
            let rd16 = |b: &[u8]| {
                if big {
                    u16::from_be_bytes([b[0], b[1]])
                } else {
                    u16::from_le_bytes([b[0], b[1]])
                }
            };
            let hlen = usize::from(base[if big { 19 } else { 16 }]) * 32;
            let alen = usize::from(rd16(&base[26..28])) * 32;
            if !(32..=2048).contains(&hlen) || alen > 65536 {
                return;
            }
            let put16 = |v: u16| {
                if big {
                    v.to_be_bytes()
                } else {
                    v.to_le_bytes()
                }
            };
            let put32 = |v: u32| {
                if big {
                    v.to_be_bytes()
                } else {
                    v.to_le_bytes()
                }
            };
            if let Some(ext) = stream.get(at + 32..at + hlen) {
                let icrc2 = h2msg::wire::compute_icrc2(ext, &SoftCrc32c);
                stream[at + 24..at + 26].copy_from_slice(&put16(icrc2));
            }
            if let Some(aux) = stream.get(at + hlen..at + hlen + alen) {
                let c = SoftCrc32c.checksum(aux);
                stream[at + 28..at + 32].copy_from_slice(&put32(c));
            }
            let base: [u8; 32] = stream[at..at + 32].try_into().expect("32 bytes");
            let icrc1 = compute_icrc1(&base, &SoftCrc32c);
            stream[at + 2..at + 4].copy_from_slice(&put16(icrc1));
            at += hlen + alen;
        }
    }

    /// The receive decoder on arbitrary input. Byte 0 chooses CRC repair and the FIFO and
    /// aux storage sizes, bytes 1..4 the piece sizes; the rest is the stream.
    pub fn rx_decoder(data: &[u8]) {
        let Some((&[mode, p1, p2, p3], rest)) = data.split_first_chunk::<4>() else {
            return;
        };
        let mut stream = rest.to_vec();
        let dmsg = mode & 0x10 != 0;
        if mode & 1 != 0 {
            if dmsg {
                dmsg_peer::repair_dmsg_crcs(&mut stream);
            } else {
                repair_crcs(&mut stream);
            }
        }
        let fifo = if mode & 2 != 0 { 2048 } else { 8192 };
        let aux = [0, 100, 4096, 65536][usize::from(mode >> 2 & 3)];
        let pieces = [
            usize::from(p1).max(1),
            usize::from(p2).max(1) * 7,
            usize::from(p3).max(1),
        ];
        if dmsg {
            // The DMSG revision through the same decoder (dmsg.md 3.1).
            let own = |m: &h2msg::wire::MessageView<'_, h2msg::wire::DmsgReceivedHeader>| {
                (*m.header(), m.ext().to_vec(), m.aux().to_vec())
            };
            let (msgs, end) = decode_framed(&stream, &pieces, fifo, aux, own);
            let whole = [stream.len().max(1)];
            let (again, end_again) = decode_framed(&stream, &whole, fifo, aux, own);
            assert_eq!(msgs, again, "chunking changed the DMSG messages");
            assert_eq!(end, end_again, "chunking changed the DMSG ending");
            return;
        }
        let (msgs, end) = decode_stream(&stream, &pieces, fifo, aux);
        // Cross-check with a second, differently chunked run: same result.
        let (again, end_again) = decode_stream(&stream, &[stream.len().max(1)], fifo, aux);
        // The same bytes give the same messages and ending, however they are chunked
        // (a failure's offset and kind included).
        assert_eq!(msgs, again, "chunking changed the messages");
        assert_eq!(end, end_again, "chunking changed the ending");
    }
}

/// A deterministic generator (SplitMix64) that claims to be cryptographic so tests can drive
/// the handshake and RSA blinding reproducibly. **Tests only: it is not secure.**
pub struct TestRng(pub u64);

impl h2msg::rand_core::TryRng for TestRng {
    type Error = std::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(self.try_next_u64()? as u32)
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Ok(z ^ (z >> 31))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        for chunk in dst.chunks_mut(8) {
            let v = self.try_next_u64()?.to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        Ok(())
    }
}

impl h2msg::rand_core::TryCryptoRng for TestRng {}

/// A plaintext-mode (`.none`) handshake whose block comes from [`TestRng`]`(seed)`.
pub fn plaintext_handshake(seed: u64) -> h2msg::Handshake<h2msg::NoRsa> {
    plaintext_handshake_until(seed, None)
}

/// [`plaintext_handshake`] with a deadline on the driver's clock.
pub fn plaintext_handshake_until(
    seed: u64,
    deadline: Option<h2msg::Instant>,
) -> h2msg::Handshake<h2msg::NoRsa> {
    h2msg::Handshake::new(
        h2msg::KeyMode::Plaintext,
        &mut TestRng(seed),
        WireOrder::Little,
        deadline,
    )
    .expect("a plaintext handshake needs only random bytes")
}

/// Feeds the peer's `received` block to `hs` (its own bytes count as sent) and polls.
pub fn receive_block<K: h2msg::RawRsa>(
    hs: &mut h2msg::Handshake<K>,
    received: &[u8],
) -> h2msg::HandshakePoll {
    let n = hs.pending().len();
    hs.advance(n).expect("our whole block counts as sent");
    assert_eq!(hs.feed(received), h2msg::wire::limits::HANDSHAKE_LEN);
    hs.poll()
}

/// 64 KiB of aux data in a pattern that is not periodic in any power of two below it.
pub fn big_aux() -> Vec<u8> {
    (0..65536u32)
        .map(|i| (i % 251) as u8 ^ (i >> 8) as u8)
        .collect()
}
