//! Our keepalive against the 2012 C node, from its recorded session: the node answers a
//! `LNK_PING` it does not know with `LNK_PING|REPLY`, error 0x20 (docs/protocol.md §8.3).
//! Fed that answer, a connection with liveness rules on counts the peer alive, keeps the
//! link up past the dead-peer time, and never hands the keepalive's reply to the
//! application.

use core::time::Duration;

use h2msg::wire::limits::HANDSHAKE_LEN;
use h2msg::wire::{Cmd, MessageView, MsgFlags, SoftCrc32c, WireOrder};
use h2msg::{Config, CounterSalt, Event, Instant, Iocom, IocomMemory, LinkSetup, Liveness};
use h2msg_tests::c_peer_wire;

const IDLE_MS: u64 = 1_000;
const DEAD_MS: u64 = 500;

fn ms(n: u64) -> Instant {
    Instant::from_millis(n)
}

/// A connection with liveness rules on, in the recorded stream's plaintext.
fn connection() -> Iocom<Vec<u8>, CounterSalt, SoftCrc32c, 8> {
    let config = Config {
        order: WireOrder::Little,
        liveness: Liveness {
            idle: Some(Duration::from_millis(IDLE_MS)),
            dead: Some(Duration::from_millis(DEAD_MS)),
            stall: None,
        },
    };
    let memory = IocomMemory {
        fifo: vec![0u8; 8192],
        aux: vec![0u8; 65536],
        tx_ring: vec![0u8; 4096],
    };
    // The recorded stream after its handshake is the seed era's plaintext.
    Iocom::with_config(
        LinkSetup::plaintext(),
        memory,
        CounterSalt::default(),
        SoftCrc32c,
        config,
    )
    .unwrap()
}

#[test]
fn the_c_node_answers_our_keepalive_and_the_link_stays_up() {
    let mut io = connection();
    io.handle_timeout(ms(0));
    io.handle_timeout(ms(IDLE_MS));
    let sent = [io.pending()[0], io.pending()[1]].concat();
    io.advance_write(sent.len()).unwrap();
    let ping = MessageView::parse(&sent, &SoftCrc32c).expect("one whole message");
    assert_eq!(
        ping.wire_len(),
        sent.len(),
        "exactly the keepalive went out"
    );
    assert!(ping.header().cmd.same_handler(Cmd::LNK_PING));
    assert!(!ping.header().cmd.flags().contains(MsgFlags::REPLY));
    // The node's first answer in the recording is to msgid 1, as ours is.
    assert_eq!(ping.header().msgid, 1);

    // Just before the dead-peer time, the node's recorded answers arrive.
    let answers = &c_peer_wire("s2c")[HANDSHAKE_LEN..];
    // The recording itself says what the node answered first: LNK_PING|REPLY to msgid 1,
    // error 0x20 (decoded from its wire bytes: a 32-byte header, no aux).
    let first = MessageView::parse(&answers[..32], &SoftCrc32c)
        .expect("the recording starts with a whole 32-byte message");
    assert_eq!(first.wire_len(), 32);
    assert_eq!(
        first.header().cmd,
        Cmd::LNK_PING.set(MsgFlags::REPLY),
        "the node's first record: {:?}",
        first.header()
    );
    assert_eq!(first.header().msgid, 1);
    assert_eq!(first.header().error, 0x20);
    assert_eq!(io.feed(answers), answers.len());
    let mut delivered = Vec::new();
    while let Some(event) = io.poll_event() {
        match event {
            Event::Message { msg, .. } => delivered.push((msg.header().cmd, msg.header().msgid)),
            Event::LinkDown(end) => panic!("the link went down: {end:?}"),
            other => panic!("nothing but messages: {other:?}"),
        }
    }
    assert!(
        !delivered
            .iter()
            .any(|&(cmd, msgid)| msgid == 1 && cmd.same_handler(Cmd::LNK_PING)),
        "the keepalive's answer is the connection's own: {delivered:x?}"
    );
    io.handle_timeout(ms(IDLE_MS + DEAD_MS - 1));

    // Past the dead-peer time of the first ping the link is still up: the node answered.
    io.handle_timeout(ms(IDLE_MS + DEAD_MS + 100));
    assert!(io.poll_event().is_none());
    assert_eq!(io.link_end(), None);
    assert_eq!(
        io.poll_timeout(),
        Some(ms(IDLE_MS + DEAD_MS - 1 + IDLE_MS)),
        "the silence counts from the answer"
    );
}

/// The node's answer (LNK_PING|REPLY, without CREATE or DELETE) ends the keepalive's
/// transaction, so that the next silence sends the next ping. (It once stayed open: no
/// second ping went out, and a live C node with nothing to say was dropped with
/// PEERTIMEOUT at `idle + dead` after its answer.)
#[test]
fn the_c_nodes_answer_closes_the_keepalive_and_the_next_silence_pings_again() {
    let mut io = connection();
    io.handle_timeout(ms(0));
    io.handle_timeout(ms(IDLE_MS));
    let sent = [io.pending()[0], io.pending()[1]].concat();
    io.advance_write(sent.len()).unwrap();
    let answers = &c_peer_wire("s2c")[HANDSHAKE_LEN..];
    let answered_at = IDLE_MS + DEAD_MS - 1;
    assert_eq!(io.feed(answers), answers.len());
    // A driver tells the time after every read: the answers count as arriving now.
    io.handle_timeout(ms(answered_at));
    while io.poll_event().is_some() {}
    assert!(
        io.local_transactions().is_empty(),
        "the answer left the keepalive's transaction open: {:?}",
        io.local_transactions()
    );
    // The next silence: a second keepalive goes out.
    io.handle_timeout(ms(answered_at + IDLE_MS));
    let sent = [io.pending()[0], io.pending()[1]].concat();
    let ping = MessageView::parse(&sent, &SoftCrc32c).expect("a second keepalive");
    assert!(ping.header().cmd.same_handler(Cmd::LNK_PING));
}
