//! Protocol scenarios on the two-iocom simulator: the §4.3 shell exchange byte for byte,
//! link-level answers, thousands of interleaved transactions, link loss, partial writes.

use h2msg::LinkEnd;
use h2msg::trans::{MSG_ERR_LOSTLINK, Side as TransSide, TransUpdate};
use h2msg::wire::{Cmd, MSG_ERR_UNKNOWN, MsgFlags, MsgHeader, Protocol, WireOrder};
use h2msg_tests::read_vector;
use h2msg_tests::sim::{App, OwnedEvent, Pair, Side, SideConfig, SimIocom};

/// The debug shell service of §4.3: one output line per command (none for an empty
/// line), then a final reply without aux, which the client shows as its prompt.
fn shell_service() -> App {
    Box::new(|io: &mut SimIocom, ev: &OwnedEvent| {
        let Some(m) = ev.message() else { return };
        if m.header.cmd.is_reply() || !m.header.cmd.same_handler(Cmd::DBG_SHELL) {
            return;
        }
        let text = m.aux.split(|&b| b == 0).next().unwrap_or_default();
        let word = std::str::from_utf8(text).unwrap().split_whitespace().next();
        let line = match word {
            None => None,
            Some("help" | "?") => Some("help        Command help\n".to_string()),
            Some(w) => Some(format!("Unrecognized command: {w}\n")),
        };
        if let Some(line) = line {
            let mut aux = line.into_bytes();
            aux.push(0);
            io.reply(&m.header, 0, &aux, false).unwrap();
        }
        io.reply(&m.header, 0, &[], true).unwrap();
    })
}

fn shell_pair(client: SideConfig, service: SideConfig, transfer: usize) -> Pair {
    let mut a = Side::new(&client, None);
    let mut b = Side::new(&service, Some(shell_service()));
    a.io.accept(Cmd::DBG_SHELL).unwrap();
    b.io.accept(Cmd::DBG_SHELL).unwrap();
    Pair::new(a, b, transfer)
}

fn shell_line(io: &mut SimIocom, line: &str) {
    let mut aux = line.as_bytes().to_vec();
    if !aux.is_empty() {
        aux.push(0);
    }
    io.send(MsgHeader::new(Cmd::DBG_SHELL), &[], &aux).unwrap();
}

#[test]
fn shell_exchange_is_byte_exact_with_v1_to_v4() {
    let spec = read_vector("spec/v1-v6.bin");
    // The spec's salts are glibc random() values with the low byte replaced by the
    // sequence: the RNG supplies bits 8..31.
    let client = SideConfig {
        salts: vec![0x006B_8B45, 0x0032_7B23],
        ..SideConfig::default()
    };
    let mut pair = shell_pair(client, SideConfig::default(), 7);
    shell_line(&mut pair.a.io, ""); // V1: ask for a prompt
    shell_line(&mut pair.a.io, "help"); // V2
    pair.run(10_000);
    assert_eq!(pair.a.wrote, &spec[..96], "client bytes are V1 then V2");

    let service = SideConfig {
        salts: vec![0x0064_3C98, 0x0066_3348],
        ..SideConfig::default()
    };
    let mut pair = shell_pair(SideConfig::default(), service, 5);
    shell_line(&mut pair.a.io, "foo");
    pair.run(10_000);
    assert_eq!(pair.b.wrote, &spec[96..192], "service bytes are V3 then V4");
    let texts: Vec<Vec<u8>> = pair.a.messages().iter().map(|m| m.aux.clone()).collect();
    assert_eq!(texts.len(), 2);
    assert!(texts[0].starts_with(b"Unrecognized command: foo\n\0"));
    assert!(texts[1].is_empty(), "the final reply is the prompt");
}

#[test]
fn the_link_answers_pings_and_unknown_commands_by_itself() {
    let mut a = Side::new(&SideConfig::default(), None);
    let b = Side::new(&SideConfig::default(), None);
    let unknown = Cmd::new(MsgFlags::NONE, Protocol::CAC, 0x001, 1).unwrap();
    a.io.accept(unknown).unwrap(); // so A sees B's error reply
    let mut pair = Pair::new(a, b, 64);
    let mut ping = MsgHeader::new(Cmd::LNK_PING);
    ping.msgid = 1;
    pair.a.io.send(ping, &[], &[]).unwrap();
    let mut cmd = MsgHeader::new(unknown.set(MsgFlags::CREATE | MsgFlags::DELETE));
    cmd.msgid = 2;
    pair.a.io.send(cmd, &[], &[]).unwrap();
    let mut oob = MsgHeader::new(Cmd::LNK_PING.set(MsgFlags::AUXOOB));
    oob.msgid = 3;
    pair.a.io.send(oob, &[], &[]).unwrap();
    pair.a
        .io
        .send(MsgHeader::new(Cmd::LNK_PAD), &[], &[])
        .unwrap();
    pair.run(1000);

    assert!(pair.b.events.is_empty(), "nothing reached B's application");
    let replies: Vec<(u32, u32, u16)> = pair
        .a
        .messages()
        .iter()
        .map(|m| (m.header.msgid, m.header.cmd.raw(), m.header.error))
        .collect();
    assert_eq!(
        replies,
        [
            (1, Cmd::LNK_PING.set(MsgFlags::REPLY).raw(), 0),
            (
                2,
                unknown
                    .set(MsgFlags::REPLY | MsgFlags::CREATE | MsgFlags::DELETE)
                    .raw(),
                MSG_ERR_UNKNOWN
            ),
            (
                3,
                Cmd::LNK_PING.set(MsgFlags::REPLY | MsgFlags::AUXOOB).raw(),
                MSG_ERR_UNKNOWN
            ),
        ]
    );
    let stats = pair.b.io.stats();
    assert_eq!(
        (stats.received, stats.auto_replies, stats.dropped),
        (4, 3, 1)
    );
    assert!(
        pair.a.io.local_transactions().is_empty(),
        "A's transaction 2 closed by the reply"
    );
}

#[test]
fn unknown_replies_are_dropped() {
    let a = Side::new(&SideConfig::default(), None);
    let b = Side::new(&SideConfig::default(), None);
    let mut pair = Pair::new(a, b, 64);
    // A reply nobody asked for, to a command B does not accept.
    let stray = MsgHeader::new(Cmd::DBG_SHELL.set(MsgFlags::REPLY));
    pair.a.io.send(stray, &[], b"stray\0").unwrap();
    pair.run(100);
    assert!(pair.b.events.is_empty());
    assert_eq!(pair.b.io.stats().dropped, 1);
    assert!(pair.a.events.is_empty(), "and nothing is answered");
}

use h2msg_tests::sim::echo_cmd as echo;

fn echo_service() -> App {
    Box::new(|io: &mut SimIocom, ev: &OwnedEvent| {
        if let OwnedEvent::Message(m, TransUpdate::Closed(_) | TransUpdate::DirectionClosed(_)) = ev
            && !m.header.cmd.is_reply()
        {
            io.reply(&m.header, 0, &m.aux, true).unwrap();
        }
    })
}

#[test]
fn ten_thousand_transactions_interleaved_both_ways() {
    const EACH: u32 = 5000;
    let mut a = Side::new(&SideConfig::default(), Some(echo_service()));
    let mut b = Side::new(&SideConfig::default(), Some(echo_service()));
    a.io.accept(echo()).unwrap();
    b.io.accept(echo()).unwrap();
    let mut pair = Pair::new(a, b, 1500);
    let (mut sent_a, mut sent_b) = (0u32, 0u32);
    let mut payloads = std::collections::HashMap::new();
    let mut rounds = 0;
    while sent_a < EACH || sent_b < EACH {
        for (side, sent, tag) in [
            (&mut pair.a, &mut sent_a, b'A'),
            (&mut pair.b, &mut sent_b, b'B'),
        ] {
            while *sent < EACH {
                let payload = format!("{}{}", tag as char, *sent).into_bytes();
                match side.io.open(echo(), &[], &payload, true) {
                    Ok(h) => {
                        payloads.insert((tag, h.msgid), payload);
                        *sent += 1;
                    }
                    Err(_) => break, // queue or table full: let the pair run
                }
            }
        }
        pair.run(1_000_000);
        rounds += 1;
        assert!(rounds < 1000, "no progress: sent {sent_a}/{sent_b}");
    }
    pair.run(1_000_000);
    for (side, tag) in [(&pair.a, b'A'), (&pair.b, b'B')] {
        let replies: Vec<_> = side
            .events
            .iter()
            .filter_map(|e| match e {
                OwnedEvent::Message(m, TransUpdate::Closed(el)) if m.header.cmd.is_reply() => {
                    assert_eq!(el.key.side, TransSide::Local);
                    Some(m)
                }
                _ => None,
            })
            .collect();
        assert_eq!(replies.len(), EACH as usize, "side {}", tag as char);
        for m in replies {
            let expected = &payloads[&(tag, m.header.msgid)];
            assert_eq!(&m.aux[..expected.len()], &expected[..]);
        }
        assert!(side.io.local_transactions().is_empty());
        assert!(side.io.remote_transactions().is_empty());
        assert_eq!(side.io.stats().dropped, 0);
    }
}

#[test]
fn link_loss_aborts_every_open_transaction() {
    let mut a = Side::new(&SideConfig::default(), None);
    let mut b = Side::new(&SideConfig::default(), None);
    a.io.accept(echo()).unwrap();
    b.io.accept(echo()).unwrap();
    let mut pair = Pair::new(a, b, 100);
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(
            pair.a
                .io
                .open(echo(), &[], b"pending", false)
                .unwrap()
                .msgid,
        );
    }
    pair.run(1000);
    // B saw five opens and answered none; now the connection dies.
    assert_eq!(pair.b.io.remote_transactions().len(), 5);
    pair.a.io.transport_failed();
    pair.b.io.end_input();
    pair.run(1000);

    for (side, end, want_side) in [
        (&mut pair.a, LinkEnd::TransportFailed, TransSide::Local),
        (&mut pair.b, LinkEnd::Closed, TransSide::Remote),
    ] {
        let aborted: Vec<_> = side
            .events
            .iter()
            .filter_map(|e| match e {
                OwnedEvent::Aborted(key, h) => Some((key, h)),
                _ => None,
            })
            .collect();
        assert_eq!(aborted.len(), 5);
        let mut got: Vec<u32> = aborted.iter().map(|(k, _)| k.msgid).collect();
        got.sort_unstable();
        assert_eq!(got, ids);
        for (key, h) in aborted {
            assert_eq!(key.side, want_side);
            assert_eq!(h.error, MSG_ERR_LOSTLINK);
            assert!(h.cmd.flags().contains(MsgFlags::ABORT | MsgFlags::DELETE));
            assert_eq!(h.cmd.is_reply(), want_side == TransSide::Local);
        }
        assert_eq!(
            side.events.last(),
            Some(&OwnedEvent::LinkDown(end)),
            "LinkDown comes last"
        );
        assert!(
            side.io.local_transactions().is_empty() && side.io.remote_transactions().is_empty()
        );
        assert!(side.io.interest().finished);
        assert!(
            side.io
                .send(MsgHeader::new(Cmd::LNK_PING), &[], &[])
                .is_err()
        );
    }
}

/// A shell session with a large aux message, run with every transfer size from 1 to 160
/// bytes and some large ones: both sides see the same events and write the same bytes.
#[test]
fn partial_writes_at_every_offset_change_nothing() {
    let big: Vec<u8> = (0..65536u32).map(|i| (i % 253) as u8).collect();
    let run = |transfer: usize| {
        let mut pair = shell_pair(SideConfig::default(), SideConfig::default(), transfer);
        pair.a.io.accept(echo()).unwrap();
        pair.b.io.accept(echo()).unwrap();
        for line in ["", "help", "foo bar", "?"] {
            shell_line(&mut pair.a.io, line);
        }
        pair.a.io.open(echo(), &[], &big, true).unwrap();
        let steps = pair.run(10_000_000);
        // Each step moves at most `transfer` bytes each way: small sizes really split.
        assert!(
            steps as usize >= pair.a.wrote.len() / transfer,
            "transfer {transfer}"
        );
        (pair.a.events, pair.b.events, pair.a.wrote, pair.b.wrote)
    };
    let reference = run(1 << 20);
    let delivered = reference
        .1
        .iter()
        .filter_map(OwnedEvent::message)
        .find(|m| m.aux.len() == big.len());
    assert_eq!(
        delivered.map(|m| &m.aux),
        Some(&big),
        "the 64 KiB aux arrives as sent"
    );
    assert_eq!(
        reference.1.len(),
        5,
        "the service saw four lines and the big message"
    );
    assert_eq!(
        reference.0.len(),
        7,
        "seven shell replies arrive; the echo gets no answer"
    );
    for transfer in (1..=160).chain([1000, 4096, 8191, 8192, 8193, 30000]) {
        assert!(run(transfer) == reference, "transfer size {transfer}");
    }
}

#[test]
fn opposite_byte_orders_interoperate() {
    let big = SideConfig {
        order: WireOrder::Big,
        ..SideConfig::default()
    };
    let mut pair = shell_pair(big, SideConfig::default(), 13);
    shell_line(&mut pair.a.io, "help");
    pair.run(1000);
    let seen_by_b = pair.b.messages();
    assert_eq!(seen_by_b.len(), 1);
    assert_eq!(seen_by_b[0].order, WireOrder::Big);
    assert_eq!(pair.a.messages().len(), 2);
    assert!(
        pair.a
            .messages()
            .iter()
            .all(|m| m.order == WireOrder::Little)
    );
    assert_eq!(&pair.a.wrote[..2], &[0x48, 0x32]);
}
