//! The DMSG connection (dmsg.md 3.5, 4, 5.2): what it answers by itself, transactions and
//! circuits between two connections, TRANS, and the simulated LOSTLINK on link loss.
//!
//! Expected `cmd` values are the hex the DMSG specification gives (its answer table
//! (dmsg.md 4.4), the link-layer table (dmsg.md 3.5), the measured `0x780FFF01` of
//! dmsg.md 4.6, its appendix of constants), written out here — never computed by the
//! code under test. Peers that must misbehave are written with the wire layer's
//! `DmsgTxQueue` directly, which the vector tests check byte for byte.

use h2msg::drive::DriveError;
use h2msg::ioq::DmsgTxQueue;
use h2msg::trans::{DmsgKey, Received};
use h2msg::wire::{Cmd, DmsgHeader, IoqError, MessageView, SoftCrc32c, WireOrder};
use h2msg::{Config, CounterSalt, DmsgEvent, DmsgIocom, LinkEnd, LinkSetup, Liveness};

type Node = DmsgIocom<Vec<u8>, CounterSalt, SoftCrc32c, 16>;

const LNK_CONN: u32 = 0x0000_1106;
const LNK_SPAN: u32 = 0x0000_1207;
const LNK_PING: u32 = 0x0000_0101;
const LNK_PAD: u32 = 0x0000_0001;
const LNK_ERROR: u32 = 0x000F_FF01;
const DBG_SHELL: u32 = 0x0010_0101;
/// A DBG command nobody accepts (number 2).
const DBG_OTHER: u32 = 0x0010_0201;
const CREATE: u32 = 0x8000_0000;
const DELETE: u32 = 0x4000_0000;
const REPLY: u32 = 0x2000_0000;
const REVTRANS: u32 = 0x0800_0000;
const REVCIRC: u32 = 0x0400_0000;

fn node() -> Node {
    h2msg_tests::dmsg_node(8192, 1 << 20, 1 << 16, &[Cmd::from_raw(DBG_SHELL)])
}

/// One received message, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Wire {
    cmd: u32,
    msgid: u64,
    circuit: u64,
    error: u32,
    aux: Vec<u8>,
}

/// Everything `from` has queued, decoded with the wire layer (not the connection).
fn take_wire(from: &mut Node) -> (Vec<u8>, Vec<Wire>) {
    let mut bytes = vec![0u8; 1 << 16];
    let n = from.copy_pending(&mut bytes);
    bytes.truncate(n);
    from.advance_write(n).unwrap();
    let mut out = Vec::new();
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        let m = MessageView::parse_dmsg(rest, &SoftCrc32c).unwrap();
        let h = m.header();
        out.push(Wire {
            cmd: h.cmd,
            msgid: h.msgid,
            circuit: h.circuit,
            error: h.error,
            aux: m.aux().to_vec(),
        });
        rest = &rest[m.wire_len()..];
    }
    (bytes, out)
}

/// An event, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    Message(Wire, Received),
    Lost { key: DmsgKey, cmd: u32 },
    Down(LinkEnd),
}

fn events(n: &mut Node) -> Vec<Seen> {
    let mut out = Vec::new();
    while let Some(e) = n.poll_event() {
        out.push(match e {
            DmsgEvent::Message { msg, received } => {
                let h = msg.header();
                Seen::Message(
                    Wire {
                        cmd: h.cmd,
                        msgid: h.msgid,
                        circuit: h.circuit,
                        error: h.error,
                        aux: msg.aux().to_vec(),
                    },
                    received,
                )
            }
            DmsgEvent::Lost(lost) => Seen::Lost {
                key: lost.key,
                cmd: lost.cmd.raw(),
            },
            DmsgEvent::LinkDown(end) => Seen::Down(end),
            other => panic!("unexpected {other:?}"),
        });
    }
    out
}

/// Moves `from`'s bytes into `to` and returns what crossed plus `to`'s events.
fn deliver(from: &mut Node, to: &mut Node) -> (Vec<Wire>, Vec<Seen>) {
    let (bytes, wire) = take_wire(from);
    assert_eq!(to.feed(&bytes), bytes.len());
    (wire, events(to))
}

/// A peer that sends exactly the headers it is given (sequence and CRCs stamped by the
/// wire layer).
struct RawPeer {
    tx: DmsgTxQueue<Vec<u8>, CounterSalt, SoftCrc32c>,
}

impl RawPeer {
    fn new() -> Self {
        Self {
            tx: DmsgTxQueue::new_framed(
                vec![0u8; 1 << 16],
                CounterSalt::default(),
                SoftCrc32c,
                WireOrder::Little,
            ),
        }
    }

    fn send(&mut self, cmd: u32, msgid: u64, circuit: u64, ext_len: usize, aux: &[u8]) -> Vec<u8> {
        let mut h = DmsgHeader::new(Cmd::from_raw(cmd));
        h.msgid = msgid;
        h.circuit = circuit;
        self.tx.enqueue(h, &vec![0u8; ext_len], aux).unwrap();
        let mut out = vec![0u8; self.tx.pending_len()];
        let n = self.tx.copy_pending(&mut out);
        self.tx.advance(n).unwrap();
        out
    }
}

/// Feeds one raw message into `to`; returns what `to` answered and its events.
fn raw(
    peer: &mut RawPeer,
    to: &mut Node,
    cmd: u32,
    msgid: u64,
    ext: usize,
) -> (Vec<Wire>, Vec<Seen>) {
    let bytes = peer.send(cmd, msgid, 0, ext, &[]);
    assert_eq!(to.feed(&bytes), bytes.len());
    let seen = events(to);
    (take_wire(to).1, seen)
}

fn cmds(wire: &[Wire]) -> Vec<(u32, u64, u32)> {
    wire.iter().map(|w| (w.cmd, w.msgid, w.error)).collect()
}

const CONN_EXT: usize = 384 - 64;
const SPAN_EXT: usize = 448 - 64;

#[test]
fn both_ends_open_lnk_conn_and_answer_with_a_result() {
    let (mut a, mut b) = (node(), node());
    let a_conn = a
        .open(Cmd::from_raw(LNK_CONN), None, &[0u8; CONN_EXT], &[])
        .unwrap();
    let b_conn = b
        .open(Cmd::from_raw(LNK_CONN), None, &[0u8; CONN_EXT], &[])
        .unwrap();
    assert_eq!(
        a_conn.cmd,
        LNK_CONN | CREATE,
        "dmsg.md 1.3 row 1: 0x80001106"
    );
    assert_ne!(a_conn.msgid, 0, "D23: never 0");

    let (crossed, b_seen) = deliver(&mut a, &mut b);
    assert_eq!(cmds(&crossed), [(0x8000_1106, a_conn.msgid, 0)]);
    assert!(
        matches!(&b_seen[..], [Seen::Message(w, Received::Element { opened: true, .. })] if w.cmd == 0x8000_1106)
    );
    assert_eq!(b.peer_conn(), Some(DmsgKey::theirs(a_conn.msgid)));

    // B's own CONN, then its result on A's (dmsg.md 1.3 rows 1 and 3).
    let (crossed, a_seen) = deliver(&mut b, &mut a);
    assert_eq!(
        cmds(&crossed),
        [
            (0x8000_1106, b_conn.msgid, 0),
            (0xA80F_FF01, a_conn.msgid, 0)
        ]
    );
    assert_eq!(a_seen.len(), 2, "{a_seen:?}");
    let (crossed, _) = deliver(&mut a, &mut b);
    assert_eq!(cmds(&crossed), [(0xA80F_FF01, b_conn.msgid, 0)]);
    assert_eq!(a.transactions().len(), 2, "our CONN and theirs stay open");
}

#[test]
fn a_second_lnk_conn_is_closed_with_param_and_the_first_kept() {
    let (mut peer, mut n) = (RawPeer::new(), node());
    let (answers, _) = raw(&mut peer, &mut n, LNK_CONN | CREATE, 0x10, CONN_EXT);
    assert_eq!(cmds(&answers), [(0xA80F_FF01, 0x10, 0)]);
    let (answers, seen) = raw(&mut peer, &mut n, LNK_CONN | CREATE, 0x20, CONN_EXT);
    assert_eq!(cmds(&answers), [(0xE80F_FF01, 0x20, 0x23)], "D19");
    assert!(seen.is_empty(), "not delivered: {seen:?}");
    assert_eq!(n.peer_conn(), Some(DmsgKey::theirs(0x10)));
    assert_eq!(n.link_end(), None, "the link goes on");
}

#[test]
fn one_way_messages_get_the_link_layer_answers() {
    let (mut peer, mut n) = (RawPeer::new(), node());
    // D10: padding is ignored.
    assert_eq!(raw(&mut peer, &mut n, LNK_PAD, 0, 0), (vec![], vec![]));
    // D11: a ping is answered with a one-way PING|REPLY.
    assert_eq!(
        cmds(&raw(&mut peer, &mut n, LNK_PING, 0, 0).0),
        [(0x2000_0101, 0, 0)]
    );
    // D9: an unknown one-way command gets 0x200FFF01 error 0x20 ...
    assert_eq!(
        cmds(&raw(&mut peer, &mut n, DBG_OTHER, 0, 0).0),
        [(0x200F_FF01, 0, 0x20)]
    );
    // ... but no answer is ever answered.
    assert_eq!(raw(&mut peer, &mut n, LNK_ERROR, 0, 0), (vec![], vec![]));
    assert_eq!(
        raw(&mut peer, &mut n, LNK_ERROR | REPLY, 0, 0),
        (vec![], vec![])
    );
    assert_eq!(
        raw(&mut peer, &mut n, DBG_OTHER | REPLY, 0, 0),
        (vec![], vec![])
    );
    // An accepted one is delivered, unanswered.
    let (answers, seen) = raw(&mut peer, &mut n, DBG_SHELL, 0, 0);
    assert!(answers.is_empty());
    assert!(
        matches!(&seen[..], [Seen::Message(w, Received::OneWay { parent: None })] if w.cmd == DBG_SHELL)
    );
    assert_eq!(n.stats().auto_replies, 2);
}

#[test]
fn a_span_is_answered_and_its_withdrawal_closed() {
    let (mut peer, mut n) = (RawPeer::new(), node());
    let (answers, seen) = raw(&mut peer, &mut n, LNK_SPAN | CREATE, 0x77, SPAN_EXT);
    assert_eq!(cmds(&answers), [(0xA80F_FF01, 0x77, 0)], "dmsg.md 5.2");
    assert_eq!(seen.len(), 1);
    // Withdrawn with LNK_ERROR|DELETE (0x400FFF01), closed by 0x680FFF01 (dmsg.md 5.5).
    let (answers, seen) = raw(&mut peer, &mut n, LNK_ERROR | DELETE, 0x77, 0);
    assert_eq!(cmds(&answers), [(0x680F_FF01, 0x77, 0)]);
    match &seen[..] {
        [
            Seen::Message(
                _,
                Received::Element {
                    effective_cmd,
                    closed: true,
                    ..
                },
            ),
        ] => {
            assert_eq!(
                effective_cmd.raw(),
                LNK_SPAN | DELETE,
                "dispatch by the initial command"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(n.transactions().is_empty());
}

#[test]
fn a_transaction_nobody_accepts_is_closed_with_nosupp() {
    let (mut peer, mut n) = (RawPeer::new(), node());
    let (answers, seen) = raw(&mut peer, &mut n, DBG_OTHER | CREATE, 0x5, 0);
    assert_eq!(cmds(&answers), [(0xE80F_FF01, 0x5, 0x20)]);
    assert!(seen.is_empty());
    // The peer never closed its side; at link loss the application, which never saw the
    // transaction, is not told it was lost.
    assert_eq!(n.transactions().len(), 1);
    n.end_input();
    assert_eq!(events(&mut n), [Seen::Down(LinkEnd::Closed)]);
}

#[test]
fn a_duplicate_create_ends_the_link_with_trans() {
    let (mut peer, mut n) = (RawPeer::new(), node());
    raw(&mut peer, &mut n, DBG_SHELL | CREATE, 0x9, 0);
    let (answers, seen) = raw(&mut peer, &mut n, DBG_SHELL | CREATE, 0x9, 0);
    assert!(answers.is_empty(), "nothing is sent on a failed link");
    let Some(Seen::Down(end)) = seen.last() else {
        panic!("{seen:?}")
    };
    assert!(matches!(end, LinkEnd::TransactionViolation(_)));
    let error = DriveError::<()>::from_link_end(*end).unwrap();
    assert_eq!(error.ioq_error(), IoqError::Trans);
    assert_eq!(error.code(), 17, "dmsg.md 3.3");
    // The open transaction was reported lost before the link went down.
    assert!(matches!(seen[0], Seen::Lost { key, .. } if key == DmsgKey::theirs(0x9)));
}

#[test]
fn stacked_transactions_carry_circuit_and_rev_flags() {
    let (mut a, mut b) = (node(), node());
    let parent = a.open(Cmd::from_raw(DBG_SHELL), None, &[], b"p\0").unwrap();
    let child = a
        .open(
            Cmd::from_raw(DBG_SHELL),
            Some(DmsgKey::ours(parent.msgid)),
            &[],
            b"c\0",
        )
        .unwrap();
    assert_eq!(child.circuit, parent.msgid);
    assert_eq!(
        child.cmd,
        DBG_SHELL | CREATE,
        "A opened the parent itself: no REVCIRC"
    );
    let (_, seen) = deliver(&mut a, &mut b);
    let child_key = DmsgKey::theirs(child.msgid);
    assert!(
        matches!(seen[1], Seen::Message(_, Received::Element { key, parent: Some(p), .. })
        if key == child_key && p == DmsgKey::theirs(parent.msgid))
    );
    // B answers the child: REPLY|CREATE, REVTRANS (A allocated the msgid), REVCIRC (and
    // the parent).
    let sent = b
        .send(child_key, Cmd::from_raw(DBG_SHELL | CREATE), &[], b"r\0")
        .unwrap();
    assert_eq!(sent.cmd, DBG_SHELL | CREATE | REPLY | REVTRANS | REVCIRC);
    assert_eq!((sent.msgid, sent.circuit), (child.msgid, parent.msgid));
    let (_, seen) = deliver(&mut b, &mut a);
    assert!(
        matches!(seen[..], [Seen::Message(_, Received::Element { key, .. })]
        if key == DmsgKey::ours(child.msgid))
    );
}

#[test]
fn link_loss_ends_every_open_transaction_parent_first() {
    let (mut a, mut b) = (node(), node());
    let parent = a.open(Cmd::from_raw(DBG_SHELL), None, &[], &[]).unwrap();
    let child = a
        .open(
            Cmd::from_raw(DBG_SHELL),
            Some(DmsgKey::ours(parent.msgid)),
            &[],
            &[],
        )
        .unwrap();
    deliver(&mut a, &mut b);
    // B answers the parent only, so the peer sent CREATE on it but not on the child.
    b.send(
        DmsgKey::theirs(parent.msgid),
        Cmd::from_raw(DBG_SHELL | CREATE),
        &[],
        &[],
    )
    .unwrap();
    deliver(&mut b, &mut a);
    a.end_input();
    let seen = events(&mut a);
    assert_eq!(
        seen,
        [
            // dmsg.md 4.6: D|R|A|REVTRANS where the peer had sent CREATE (0x780FFF01, as
            // measured), plus CREATE where it had not.
            Seen::Lost {
                key: DmsgKey::ours(parent.msgid),
                cmd: 0x780F_FF01
            },
            Seen::Lost {
                key: DmsgKey::ours(child.msgid),
                cmd: 0xF80F_FF01
            },
            Seen::Down(LinkEnd::Closed),
        ]
    );
    assert!(a.poll_event().is_none());
}

#[test]
fn one_way_sends_refuse_transaction_flags() {
    let mut n = node();
    assert!(
        n.send_one_way(Cmd::from_raw(DBG_SHELL | CREATE), &[], &[])
            .is_err()
    );
    let sent = n
        .send_one_way(Cmd::from_raw(DBG_SHELL | REPLY), &[], b"debug> \0")
        .unwrap();
    assert_eq!((sent.cmd, sent.msgid, sent.circuit), (0x2010_0101, 0, 0));
    assert_eq!(sent.aux_bytes, 8, "dmsg.md 2.5: text + NUL, exact");
}

/// The std driver (a reader and a writer thread per link) runs a DMSG connection like a
/// seed-era one: two nodes over loopback TCP exchange `LNK_CONN`s and their results, and
/// a shell line and its answer.
#[test]
fn two_dmsg_nodes_talk_over_loopback_tcp_through_the_blocking_driver() {
    use std::net::{TcpListener, TcpStream};

    use h2msg_std::blocking::{DmsgLink, Duplex, std_dmsg_iocom};

    fn side(stream: TcpStream, first: bool) -> Vec<(u32, Vec<u8>)> {
        let config = Config {
            order: WireOrder::Little,
            liveness: Liveness::OFF,
        };
        let mut io = std_dmsg_iocom(LinkSetup::plaintext(), 0, config).unwrap();
        io.accept(Cmd::from_raw(DBG_SHELL)).unwrap();
        let mut link = DmsgLink::new(Duplex::new(stream).unwrap(), io);
        link.io()
            .open(Cmd::from_raw(LNK_CONN), None, &[0u8; CONN_EXT], &[])
            .unwrap();
        if first {
            link.io()
                .send_one_way(Cmd::from_raw(DBG_SHELL), &[], b"hello\0")
                .unwrap();
        }
        let mut seen = Vec::new();
        while seen.len() < 3 {
            let event = link
                .next_event(|e| match e {
                    DmsgEvent::Message { msg, .. } => {
                        Some((msg.header().cmd, msg.aux_until_nul().to_vec()))
                    }
                    _ => None,
                })
                .unwrap()
                .expect("the link stays up");
            if let Some((cmd, text)) = event {
                if cmd == DBG_SHELL {
                    link.io()
                        .send_one_way(Cmd::from_raw(DBG_SHELL | REPLY), &[], b"hi\0")
                        .unwrap();
                }
                seen.push((cmd, text));
            }
        }
        link.flush().unwrap();
        seen
    }

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || side(listener.accept().unwrap().0, false));
    let client = side(TcpStream::connect(addr).unwrap(), true);
    let server = server.join().unwrap();
    // Each saw the other's LNK_CONN and the result on its own, and one shell message.
    for (seen, shell) in [
        (&client, (DBG_SHELL | REPLY, b"hi".to_vec())),
        (&server, (DBG_SHELL, b"hello".to_vec())),
    ] {
        assert!(seen.contains(&(LNK_CONN | CREATE, vec![])), "{seen:?}");
        assert!(seen.contains(&(0xA80F_FF01, vec![])), "{seen:?}");
        assert!(seen.contains(&shell), "{seen:?}");
    }
}

/// A relay's twin (dmsg.md 4.5, D15): `forward_open` under the peer's transaction sends
/// CREATE with REVCIRC (the peer opened the parent) and the `error` given, whatever
/// command it carries — and the peer is handed it although it accepts no such command,
/// because it is stacked under its own transaction; `forward` on the peer's side answers
/// with REPLY|REVTRANS and its own `error`; `abort` ends with DELETE|ABORT. The expected
/// `cmd` words are written out from the flag table of dmsg.md 2.3 and 4.2.
#[test]
fn forwarded_elements_carry_their_command_and_error_with_our_rev_flags() {
    let (mut a, mut b) = (node(), node());
    // A opens a top-level transaction (a span stands in for it here) that B relays under.
    let parent = a
        .open(Cmd::from_raw(LNK_SPAN), None, &[0; 384], &[])
        .unwrap();
    let _ = deliver(&mut a, &mut b);
    let _ = deliver(&mut b, &mut a); // B's automatic result
    let twin = b
        .forward_open(
            Cmd::from_raw(DBG_OTHER | DELETE),
            Some(DmsgKey::theirs(parent.msgid)),
            7,
            &[],
            b"x\0",
        )
        .unwrap();
    let (wire, seen) = deliver(&mut b, &mut a);
    assert_eq!(wire.len(), 1);
    assert_eq!(wire[0].cmd, DBG_OTHER | CREATE | DELETE | REVCIRC);
    assert_eq!((wire[0].circuit, wire[0].error), (parent.msgid, 7));
    let Seen::Message(
        _,
        Received::Element {
            key,
            parent: p,
            opened: true,
            ..
        },
    ) = &seen[0]
    else {
        panic!("A is handed the stacked transaction: {seen:?}")
    };
    assert_eq!(
        (*key, *p),
        (
            DmsgKey::theirs(twin.msgid),
            Some(DmsgKey::ours(parent.msgid))
        )
    );
    // A answers on it with an error of its own: REPLY|REVTRANS, no REVCIRC (A opened the
    // parent), CREATE as its first answer, DELETE closing.
    a.forward(
        DmsgKey::theirs(twin.msgid),
        Cmd::from_raw(LNK_ERROR | CREATE | DELETE),
        9,
        &[],
        &[],
    )
    .unwrap();
    let (wire, _) = deliver(&mut a, &mut b);
    assert_eq!(wire[0].cmd, LNK_ERROR | CREATE | DELETE | REPLY | REVTRANS);
    assert_eq!(
        (wire[0].msgid, wire[0].circuit, wire[0].error),
        (twin.msgid, parent.msgid, 9)
    );

    // abort: B ends a second twin with DELETE|ABORT and LOSTLINK.
    let second = b
        .forward_open(
            Cmd::from_raw(DBG_OTHER),
            Some(DmsgKey::theirs(parent.msgid)),
            0,
            &[],
            &[],
        )
        .unwrap();
    b.abort(DmsgKey::ours(second.msgid), 0x21).unwrap();
    let (wire, _) = deliver(&mut b, &mut a);
    assert_eq!(wire[1].cmd, LNK_ERROR | DELETE | 0x1000_0000 | REVCIRC);
    assert_eq!((wire[1].msgid, wire[1].error), (second.msgid, 0x21));
    assert!(
        b.abort(DmsgKey::ours(second.msgid), 0x21).is_err(),
        "ours closed already"
    );
}
