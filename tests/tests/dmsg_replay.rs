//! The client side of a recorded libdmsg shell session (`vectors/dmsg-peer/none-shell`),
//! replayed into a `DmsgIocom` that plays the recorded service: the connection accepts every
//! message a real libdmsg client sent, and gives the answers the recorded service gave —
//! up to msgids and salts, which are the recorded node's heap addresses and random bits.
//!
//! The service's msgids in the client's messages (the ones with REVTRANS, which name the
//! service's transactions) are mapped to the ones this connection allocated, and the
//! client's messages re-sent with the wire layer so that their CRCs and sequence hold.

use std::collections::HashMap;

use h2msg::ioq::DmsgTxQueue;
use h2msg::trans::{DmsgKey, Received};
use h2msg::wire::{Cmd, DmsgHeader, DmsgReceivedHeader, MessageView, SoftCrc32c, WireOrder};
use h2msg::{CounterSalt, DmsgEvent, DmsgIocom, LinkEnd};
use h2msg_tests::read_vector;

type Node = DmsgIocom<Vec<u8>, CounterSalt, SoftCrc32c, 16>;

const REVTRANS: u32 = 0x0800_0000;

/// One recorded message, owned.
#[derive(Clone, Debug)]
struct Msg {
    header: DmsgHeader,
    ext: Vec<u8>,
    aux: Vec<u8>,
}

fn messages(file: &str) -> Vec<Msg> {
    let bytes = read_vector(&format!("dmsg-peer/none-shell.{file}.bin"));
    let mut out = Vec::new();
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        let m: MessageView<'_, DmsgReceivedHeader> =
            MessageView::parse_dmsg(rest, &SoftCrc32c).expect("the recording decodes");
        out.push(Msg {
            header: *m.header(),
            ext: m.ext().to_vec(),
            aux: m.aux().to_vec(),
        });
        rest = &rest[m.wire_len()..];
    }
    out
}

fn node() -> Node {
    h2msg_tests::dmsg_node(8192, 1 << 20, 1 << 16, &[Cmd::DBG_SHELL, Cmd::LNK_PING])
}

/// What the node sent, as (cmd, msgid, error).
fn sent(n: &mut Node) -> Vec<(u32, u64, u32)> {
    let mut bytes = vec![0u8; 1 << 16];
    let len = n.copy_pending(&mut bytes);
    n.advance_write(len).unwrap();
    let mut out = Vec::new();
    let mut rest = &bytes[..len];
    while !rest.is_empty() {
        let m = MessageView::parse_dmsg(rest, &SoftCrc32c).unwrap();
        let h = m.header();
        out.push((h.cmd, h.msgid, h.error));
        rest = &rest[m.wire_len()..];
    }
    out
}

#[derive(Debug, PartialEq, Eq)]
enum Seen {
    /// (cmd, aux text before its NUL, the transaction it belongs to).
    Message(u32, String, Option<DmsgKey>),
    Lost(DmsgKey, u32),
    Down(LinkEnd),
}

fn events(n: &mut Node) -> Vec<Seen> {
    let mut out = Vec::new();
    while let Some(e) = n.poll_event() {
        out.push(match e {
            DmsgEvent::Message { msg, received } => {
                let key = match received {
                    Received::Element { key, .. } => Some(key),
                    _ => None,
                };
                let text = String::from_utf8_lossy(msg.aux_until_nul()).into_owned();
                Seen::Message(msg.header().cmd, text, key)
            }
            DmsgEvent::Lost(lost) => Seen::Lost(lost.key, lost.cmd.raw()),
            DmsgEvent::LinkDown(end) => Seen::Down(end),
            other => panic!("unexpected {other:?}"),
        });
    }
    out
}

#[test]
fn a_recorded_libdmsg_shell_client_is_answered_as_the_recorded_service_answered() {
    let client = messages("c2s");
    let service = messages("s2c");
    let mut n = node();
    let mut peer = DmsgTxQueue::new_framed(
        vec![0u8; 1 << 16],
        CounterSalt::default(),
        SoftCrc32c,
        WireOrder::Little,
    );
    // The recorded service's own transactions, opened here in the same order with the
    // same payloads: its LNK_CONN, then (after the client's) three LNK_SPANs.
    let mut ours: HashMap<u64, u64> = HashMap::new();
    let recorded_conn = &service[0];
    let conn = n
        .open(
            recorded_conn.header.command(),
            None,
            &recorded_conn.ext,
            &[],
        )
        .unwrap();
    ours.insert(recorded_conn.header.msgid, conn.msgid);
    assert_eq!(sent(&mut n), [(0x8000_1106, conn.msgid, 0)]);

    let mut answers = Vec::new();
    let mut seen = Vec::new();
    for (i, m) in client.iter().enumerate() {
        let mut h = DmsgHeader::new(m.header.command());
        h.msgid = m.header.msgid;
        h.circuit = m.header.circuit;
        h.error = m.header.error;
        if m.header.cmd & REVTRANS != 0 {
            h.msgid = ours[&m.header.msgid];
        }
        peer.enqueue(h, &m.ext, &m.aux).unwrap();
        let mut bytes = vec![0u8; peer.pending_len()];
        let len = peer.copy_pending(&mut bytes);
        peer.advance(len).unwrap();
        assert_eq!(n.feed(&bytes), len);
        seen.extend(events(&mut n));
        answers.extend(sent(&mut n));
        if i == 0 {
            // The recorded service sent its spans once the client's LNK_CONN was in.
            for span in &service[2..5] {
                assert_eq!(span.header.cmd, 0x8000_1207, "the recording's order");
                let opened = n.open(span.header.command(), None, &span.ext, &[]).unwrap();
                ours.insert(span.header.msgid, opened.msgid);
                sent(&mut n);
            }
        }
    }
    n.end_input();
    seen.extend(events(&mut n));

    let client_conn = client[0].header.msgid;
    // What the recorded service answered at the connection level (dmsg.md 1.3, 5.2): the
    // result on the client's LNK_CONN, and the close of its own LNK_CONN after the client
    // closed it with 0xE80FFF01 error 0x20. (Its shell output is the application's.)
    assert_eq!(
        (
            service[1].header.cmd,
            service[1].header.msgid,
            service[1].header.error
        ),
        (0xA80F_FF01, client_conn, 0)
    );
    assert_eq!(
        (service[6].header.cmd, service[6].header.error),
        (0x400F_FF01, 0)
    );
    assert_eq!(
        answers,
        [(0xA80F_FF01, client_conn, 0), (0x400F_FF01, conn.msgid, 0)]
    );

    // What the application saw: the client's LNK_CONN, the results on the three spans,
    // the three shell lines (an empty one first, as the libdmsg client sends), the reply
    // to the service's ping; then the link loss of what stayed open.
    let shell_lines: Vec<&str> = seen
        .iter()
        .filter_map(|s| match s {
            Seen::Message(0x0010_0101, text, None) => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(shell_lines, ["", "help", "ping"]);
    assert!(
        seen.contains(&Seen::Message(0x2000_0101, String::new(), None)),
        "{seen:?}"
    );
    let spans: Vec<u64> = service[2..5]
        .iter()
        .map(|s| ours[&s.header.msgid])
        .collect();
    let lost: Vec<&Seen> = seen
        .iter()
        .filter(|s| matches!(s, Seen::Lost(..)))
        .collect();
    assert_eq!(
        lost,
        [
            // The client's LNK_CONN: theirs, its CREATE seen: LNK_ERROR|DELETE|ABORT.
            &Seen::Lost(DmsgKey::theirs(client_conn), 0x500F_FF01),
            // Our spans, answered by the client: D|R|A|REVTRANS (dmsg.md 4.6).
            &Seen::Lost(DmsgKey::ours(spans[0]), 0x780F_FF01),
            &Seen::Lost(DmsgKey::ours(spans[1]), 0x780F_FF01),
            &Seen::Lost(DmsgKey::ours(spans[2]), 0x780F_FF01),
        ]
    );
    assert_eq!(seen.last(), Some(&Seen::Down(LinkEnd::Closed)));
    assert_eq!(n.stats().dropped, 0, "every recorded message was taken");
}
