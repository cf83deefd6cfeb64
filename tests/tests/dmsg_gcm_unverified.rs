//! libdmsg's AES-256-GCM stream, GCM-T (dmsg.md 1.4), behind core's feature
//! `dmsg-gcm-unverified`: two DMSG connections keyed by `LinkSetup::dmsg_gcm_unverified`.
//!
//! The expected ciphertext is `tests/vectors/dmsg-gcm/vectors.txt`, written by `make.py`
//! beside it with Python's `cryptography` AES-GCM and the keying typed from the DMSG
//! specification — not by h2msg. The plaintext is the specification's vector V1
//! (`LNK_CONN|CREATE`, salt 0x12345600, msgid 1), which each side sends first. That the
//! format is what DragonFly sends is UNVERIFIED: these vectors show h2msg does what the
//! specification's reading of libdmsg says, nothing more.

use std::collections::BTreeMap;

use h2msg::wire::{Cmd, IoqError, SoftCrc32c};
use h2msg::{
    CounterSalt, DmsgEvent, DmsgIocom, FLAG_GCM, LinkEnd, LinkSetup, ModeChoice, Session,
    StreamMode,
};

type Node = DmsgIocom<Vec<u8>, CounterSalt, SoftCrc32c, 16>;

const LNK_CONN_CREATE: u32 = 0x8000_1106;
const LNK_ERROR_RESULT: u32 = 0xA80F_FF01;
const DBG_SHELL: u32 = 0x0010_0101;
const DBG_SHELL_REPLY: u32 = 0x2010_0101;
/// V1's salt is 0x12345600: random part 0x123456, sequence 0.
const V1_SALT_BEFORE: u32 = 0x0012_3455;
/// Wire bytes per chunk: 64 ciphertext, 16 tag.
const RECORD: usize = 80;

/// The committed vector file, by name.
struct Vectors(BTreeMap<String, Vec<u8>>);

impl Vectors {
    fn load() -> Self {
        let bytes = h2msg_tests::read_vector("dmsg-gcm/vectors.txt");
        let text = String::from_utf8(bytes).expect("the vector file is text");
        let map = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| {
                let (name, value) = l.split_once(" = ").expect("name = hex");
                (name.to_string(), h2msg_tests::hex(value))
            })
            .collect();
        Self(map)
    }

    fn get(&self, name: &str) -> &[u8] {
        self.0
            .get(name)
            .unwrap_or_else(|| panic!("{name} is missing from vectors.txt"))
    }

    fn sess(&self, name: &str) -> [u8; 64] {
        self.get(name).try_into().expect("a sess is 64 bytes")
    }

    /// Side A's session and side B's, each with its own key first; flags 0 as libdmsg.
    fn sessions(&self) -> (Session, Session) {
        let (a, b) = (self.sess("sess_a"), self.sess("sess_b"));
        (
            Session::from_parts_for_testing(a, b, 0, 0),
            Session::from_parts_for_testing(b, a, 0, 0),
        )
    }
}

fn node(setup: LinkSetup) -> Node {
    h2msg_tests::dmsg_node_with(
        setup,
        CounterSalt::after(V1_SALT_BEFORE),
        [1 << 15, 1 << 16, 1 << 16],
        &[Cmd::from_raw(DBG_SHELL)],
    )
}

/// Two connections in the libdmsg keying, A's and B's.
fn libdmsg_pair(v: &Vectors) -> (Node, Node) {
    let (sa, sb) = v.sessions();
    let setup = |s| LinkSetup::dmsg_gcm_unverified(s).expect("an RSA session, two keys");
    (node(setup(sa)), node(setup(sb)))
}

/// Everything `from` has queued, as wire bytes.
fn wire(from: &mut Node) -> Vec<u8> {
    let mut bytes = vec![0u8; 1 << 16];
    let n = from.copy_pending(&mut bytes);
    bytes.truncate(n);
    from.advance_write(n).expect("n bytes were pending");
    bytes
}

/// A delivered message: cmd, msgid, ext, aux.
type Delivered = (u32, u64, Vec<u8>, Vec<u8>);

/// What a connection handed its application, and the IOQ code if the link went down.
fn seen(n: &mut Node) -> (Vec<Delivered>, Option<IoqError>) {
    let (mut messages, mut down) = (Vec::new(), None);
    while let Some(event) = n.poll_event() {
        match event {
            DmsgEvent::Message { msg, .. } => {
                let h = msg.header();
                messages.push((h.cmd, h.msgid, msg.ext().to_vec(), msg.aux().to_vec()));
            }
            DmsgEvent::LinkDown(LinkEnd::Failed(f)) => down = Some(f.ioq_error()),
            other => panic!("unexpected {other:?}"),
        }
    }
    (messages, down)
}

/// Each side opens its LNK_CONN with V1's payload: V1 byte for byte (sequence 0, msgid 1).
fn open_v1(n: &mut Node, v: &Vectors) {
    let sent = n
        .open(
            Cmd::from_raw(LNK_CONN_CREATE),
            None,
            &v.get("frame")[64..],
            &[],
        )
        .expect("room for V1");
    assert_eq!((sent.salt, sent.msgid), (0x1234_5600, 1));
}

#[test]
fn the_vector_keys_are_each_senders_own_sess() {
    let v = Vectors::load();
    for (dir, sess) in [("a_to_b", "sess_a"), ("b_to_a", "sess_b")] {
        let s = v.sess(sess);
        assert_eq!(v.get(&format!("{dir}.key")), &s[..32], "{dir}");
        assert_eq!(v.get(&format!("{dir}.fixed")), &s[32..36], "{dir}");
        let keys = h2msg::keys::GcmKeys::libdmsg(&s);
        assert_eq!(
            (&keys.key()[..], &keys.fixed_nonce()[..]),
            (&s[..32], &s[32..36])
        );
        assert_eq!(v.get(&format!("{dir}.records")).len(), 3 * RECORD);
    }
    assert_eq!(v.get("frame").len(), 384);
}

/// (a) the first chunks on the wire are the independent vectors byte for byte, in both
/// directions; (b) every message arrives intact, both ways, through the stream.
#[test]
fn both_directions_seal_as_the_independent_vectors_and_deliver() {
    let v = Vectors::load();
    let (mut a, mut b) = libdmsg_pair(&v);
    assert_eq!(
        (a.stream_mode(), b.stream_mode()),
        (StreamMode::Gcm, StreamMode::Gcm)
    );
    open_v1(&mut a, &v);
    open_v1(&mut b, &v);
    let (a_to_b, b_to_a) = (wire(&mut a), wire(&mut b));
    // 384 plaintext bytes: six chunks of 80 wire bytes each.
    assert_eq!((a_to_b.len(), b_to_a.len()), (6 * RECORD, 6 * RECORD));
    assert_eq!(&a_to_b[..3 * RECORD], v.get("a_to_b.records"));
    assert_eq!(&b_to_a[..3 * RECORD], v.get("b_to_a.records"));
    assert_ne!(a_to_b, b_to_a, "each direction has its own key");

    assert_eq!(b.feed(&a_to_b), a_to_b.len());
    assert_eq!(a.feed(&b_to_a), b_to_a.len());
    let v1 = (LNK_CONN_CREATE, 1, v.get("frame")[64..].to_vec(), vec![]);
    assert_eq!(seen(&mut a), (vec![v1.clone()], None));
    assert_eq!(seen(&mut b), (vec![v1], None));

    // The answers each connection gave by itself, then a shell line and its reply with
    // aux data: the counters run on past the vectors' chunks.
    a.send_one_way(Cmd::from_raw(DBG_SHELL), &[], b"tree\0")
        .expect("room");
    let a_to_b = wire(&mut a);
    assert_eq!(b.feed(&a_to_b), a_to_b.len());
    let (got, down) = seen(&mut b);
    assert_eq!(down, None);
    assert_eq!(
        got,
        vec![
            (LNK_ERROR_RESULT, 1, vec![], vec![]),
            (DBG_SHELL, 0, vec![], b"tree\0".to_vec()),
        ]
    );
    let reply = vec![b'x'; 100];
    b.send_one_way(Cmd::from_raw(DBG_SHELL_REPLY), &[], &reply)
        .expect("room");
    let b_to_a = wire(&mut b);
    assert_eq!(a.feed(&b_to_a), b_to_a.len());
    assert_eq!(
        seen(&mut a),
        (
            vec![
                (LNK_ERROR_RESULT, 1, vec![], vec![]),
                (DBG_SHELL_REPLY, 0, vec![], reply),
            ],
            None
        )
    );
}

/// (c) one flipped bit anywhere in a chunk or its tag fails the link with MACFAIL (19),
/// and nothing of the message is delivered.
#[test]
fn a_flipped_bit_fails_the_link_with_macfail() {
    let v = Vectors::load();
    let (mut a, _) = libdmsg_pair(&v);
    open_v1(&mut a, &v);
    let clean = wire(&mut a);
    // First ciphertext byte, a tag bit, the last byte of the third record, the last byte.
    for at in [0, 64 + 3, 3 * RECORD - 1, clean.len() - 1] {
        let (_, mut b) = libdmsg_pair(&v);
        let mut bad = clean.clone();
        bad[at] ^= 0x20;
        b.feed(&bad);
        let (got, down) = seen(&mut b);
        assert_eq!((got.len(), down), (0, Some(IoqError::MacFail)), "byte {at}");
        assert_eq!(IoqError::MacFail.code(), 19);
    }
}

/// The libdmsg keying and h2msg's own `gcm` keying of the same sessions do not
/// interoperate: h2msg's stream is not the vectors, and a libdmsg-keyed receiver fails
/// it with MACFAIL.
#[test]
fn h2msg_gcm_keys_cannot_stand_in_for_libdmsg_keys() {
    let v = Vectors::load();
    let (a, b) = (v.sess("sess_a"), v.sess("sess_b"));
    let h2msg_keyed = Session::from_parts_for_testing(a, b, FLAG_GCM, FLAG_GCM);
    let setup = LinkSetup::negotiate(h2msg_keyed, ModeChoice::Gcm).expect("gcm");
    let mut ours = node(setup);
    open_v1(&mut ours, &v);
    let stream = wire(&mut ours);
    assert_ne!(&stream[..3 * RECORD], v.get("a_to_b.records"));
    let (_, mut libdmsg_b) = libdmsg_pair(&v);
    libdmsg_b.feed(&stream);
    assert_eq!(seen(&mut libdmsg_b), (vec![], Some(IoqError::MacFail)));
}
