//! Protocol scenarios on the two-iocom simulator: the §4.3 shell exchange byte for byte,
//! link-level answers, thousands of interleaved transactions, link loss, partial writes —
//! each also under DMSG (`dmsg_…`, `SimDmsg`), with DMSG's own expected values from
//! docs/dmsg.md; the seed byte-exact V1–V4 exchange has a DMSG counterpart in V1–V3.

use h2msg::LinkEnd;
use h2msg::trans::DmsgKey;
use h2msg::trans::{MSG_ERR_LOSTLINK, Side as TransSide};
use h2msg::wire::{Cmd, MSG_ERR_UNKNOWN, MsgFlags, MsgHeader, Protocol, WireOrder};
use h2msg_tests::read_vector;
use h2msg_tests::sim::{
    App, DmsgOwnedEvent, Echo, OwnedEvent, Pair, SIM_TRANSACTIONS, Side, SideConfig, SimDmsg,
    SimEvent, SimIocom, SimMessage,
};

// DMSG constants as the specification writes them (dmsg.md 2.3, 3.5, 5; its appendix).
const LNK_PAD: u32 = 0x0000_0001;
const LNK_PING: u32 = 0x0000_0101;
const LNK_CONN: u32 = 0x0000_1106;
const LNK_SPAN: u32 = 0x0000_1207;
const LNK_ERROR: u32 = 0x000F_FF01;
const DBG_SHELL: u32 = 0x0010_0101;
/// A DBG command nobody accepts (number 2).
const DBG_OTHER: u32 = 0x0010_0201;
const DELETE: u32 = 0x4000_0000;
const REPLY: u32 = 0x2000_0000;

/// The debug shell service of §4.3: one output line per command (none for an empty
/// line), then a final reply without aux, which the client shows as its prompt.
fn shell_service() -> App {
    Box::new(|io: &mut SimIocom, ev: &OwnedEvent| {
        let Some(m) = ev.message() else { return };
        if m.header.cmd.is_reply() || !m.header.cmd.same_handler(Cmd::DBG_SHELL) {
            return;
        }
        for line in shell_output(&m.aux) {
            io.reply(&m.header, 0, &line, false).unwrap();
        }
        io.reply(&m.header, 0, &[], true).unwrap();
    })
}

/// The output of one shell line, each line a NUL-terminated aux: one line for a command
/// (none for an empty line). The seed service then closes with a prompt reply; the DMSG
/// service sends the prompt as one more line.
fn shell_output(aux: &[u8]) -> Vec<Vec<u8>> {
    let text = aux.split(|&b| b == 0).next().unwrap_or_default();
    let word = std::str::from_utf8(text).unwrap().split_whitespace().next();
    let line = match word {
        None => None,
        Some("help" | "?") => Some("help        Command help\n".to_string()),
        Some(w) => Some(format!("Unrecognized command: {w}\n")),
    };
    let mut out: Vec<Vec<u8>> = line.into_iter().map(String::into_bytes).collect();
    for l in &mut out {
        l.push(0);
    }
    out
}

/// The debug shell of either revision: how a client sends a line and how the service
/// answers (seed §4.3: replies on the line's transaction; DMSG: one-way `DBG_SHELL` lines,
/// answered by one-way `DBG_SHELL|REPLY` lines, dmsg.md 3.5).
trait Shell: Echo {
    fn shell_service() -> App<Self>;
    fn shell_line(&mut self, line: &str);
    fn accept_shell(&mut self);
    fn side(cfg: &SideConfig, app: Option<App<Self>>) -> Side<Self>;
}

impl Shell for SimIocom {
    fn shell_service() -> App<Self> {
        shell_service()
    }
    fn shell_line(&mut self, line: &str) {
        shell_line(self, line);
    }
    fn accept_shell(&mut self) {
        self.accept(Cmd::DBG_SHELL).unwrap();
    }
    fn side(cfg: &SideConfig, app: Option<App<Self>>) -> Side<Self> {
        Side::new(cfg, app)
    }
}

impl Shell for SimDmsg {
    fn shell_service() -> App<Self> {
        Box::new(|io: &mut SimDmsg, ev: &DmsgOwnedEvent| {
            let Some(m) = SimEvent::message(ev) else {
                return;
            };
            if m.header.cmd != DBG_SHELL {
                return; // one-way lines only: not a reply, not a transaction
            }
            let reply = Cmd::from_raw(DBG_SHELL | REPLY);
            for line in shell_output(&m.aux) {
                io.send_one_way(reply, &[], &line).unwrap();
            }
            io.send_one_way(reply, &[], &[]).unwrap(); // the prompt
        })
    }
    fn shell_line(&mut self, line: &str) {
        self.send_one_way(Cmd::from_raw(DBG_SHELL), &[], &line_aux(line))
            .unwrap();
    }
    fn accept_shell(&mut self) {
        self.accept(Cmd::from_raw(DBG_SHELL)).unwrap();
    }
    fn side(cfg: &SideConfig, app: Option<App<Self>>) -> Side<Self> {
        Side::dmsg(cfg, app)
    }
}

fn shell_pair_of<I: Shell>(client: SideConfig, service: SideConfig, transfer: usize) -> Pair<I> {
    let mut a = I::side(&client, None);
    let mut b = I::side(&service, Some(I::shell_service()));
    a.io.accept_shell();
    b.io.accept_shell();
    Pair::new(a, b, transfer)
}

fn shell_pair(client: SideConfig, service: SideConfig, transfer: usize) -> Pair {
    shell_pair_of(client, service, transfer)
}

fn line_aux(line: &str) -> Vec<u8> {
    let mut aux = line.as_bytes().to_vec();
    if !aux.is_empty() {
        aux.push(0);
    }
    aux
}

fn shell_line(io: &mut SimIocom, line: &str) {
    io.send(MsgHeader::new(Cmd::DBG_SHELL), &[], &line_aux(line))
        .unwrap();
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

/// DMSG: what a connection answers by itself (dmsg.md 3.5), over the simulated link.
#[test]
fn dmsg_the_link_answers_pings_and_unknown_commands_by_itself() {
    let mut a = Side::dmsg(&SideConfig::default(), None);
    let b = Side::dmsg(&SideConfig::default(), None);
    // So that A's application sees the one-way answers (dmsg.md 3.5 row 3).
    a.io.accept(Cmd::from_raw(LNK_PING)).unwrap();
    a.io.accept(Cmd::from_raw(LNK_ERROR)).unwrap();
    let mut pair = Pair::new(a, b, 64);
    let one_way = |io: &mut SimDmsg, cmd: u32| {
        io.send_one_way(Cmd::from_raw(cmd), &[], &[]).unwrap();
    };
    one_way(&mut pair.a.io, LNK_PING); // answered: PING|REPLY
    one_way(&mut pair.a.io, LNK_PAD); // ignored (D10)
    one_way(&mut pair.a.io, DBG_OTHER); // answered: 0x200FFF01, NOSUPP
    one_way(&mut pair.a.io, LNK_ERROR); // never answered (D9)
    one_way(&mut pair.a.io, DBG_OTHER | REPLY); // a stray reply: dropped (D9)
    let refused = pair
        .a
        .io
        .open(Cmd::from_raw(DBG_OTHER | DELETE), None, &[], &[])
        .unwrap()
        .msgid; // closed at once: 0xE80FFF01, NOSUPP
    pair.run(1000);

    assert!(pair.b.events.is_empty(), "nothing reached B's application");
    let answers: Vec<(u64, u32, u32)> = pair
        .a
        .messages()
        .iter()
        .map(|m| (m.header.msgid, m.header.cmd, m.header.error))
        .collect();
    assert_eq!(
        answers,
        [
            (0, 0x2000_0101, 0),
            (0, 0x200F_FF01, 0x20),
            (refused, 0xE80F_FF01, 0x20)
        ]
    );
    let stats = pair.b.io.stats();
    assert_eq!((stats.received, stats.auto_replies), (6, 3));
    assert!(
        pair.a.io.transactions().is_empty() && pair.b.io.transactions().is_empty(),
        "the refused transaction closed both ways"
    );
    assert_eq!(pair.a.link_down(), None);
    assert_eq!(pair.b.link_down(), None);
}

/// DMSG: the first frames of a connection are the specification's V1–V3 (dmsg.md 2.8) when
/// its salts' random bits are theirs: `LNK_CONN` (msgid 1), `LNK_SPAN` (msgid 2), one
/// `DBG_SHELL` line; the peer answers both transactions with a result.
#[test]
fn dmsg_first_frames_are_v1_to_v3_byte_for_byte() {
    let [v1, v2, v3] = [1, 2, 3].map(h2msg_tests::dmsg_vector);
    // The salt is (random << 8) | sequence (dmsg.md 2.6): V1's 0x12345600 etc.
    let client = SideConfig {
        salts: vec![0x0012_3456, 0x009A_BCDE, 0x000B_ADCA],
        ..SideConfig::default()
    };
    let mut pair: Pair<SimDmsg> = shell_pair_of(client, SideConfig::default(), 7);
    let conn = pair
        .a
        .io
        .open(Cmd::from_raw(LNK_CONN), None, &v1[64..], &[])
        .unwrap();
    let span = pair
        .a
        .io
        .open(Cmd::from_raw(LNK_SPAN), None, &v2[64..], &[])
        .unwrap();
    pair.a.io.shell_line("tree");
    pair.run(10_000);
    let expected: Vec<u8> = [v1, v2, v3].concat();
    assert_eq!(pair.a.wrote, expected, "client bytes are V1, V2, V3");
    assert_eq!((conn.msgid, span.msgid), (1, 2));
    let results: Vec<(u64, u32)> = pair
        .b
        .sent_messages()
        .iter()
        .map(|(_, m)| (m.header.msgid, m.header.cmd))
        .filter(|&(_, cmd)| cmd == 0xA80F_FF01)
        .collect();
    assert_eq!(results, [(1, 0xA80F_FF01), (2, 0xA80F_FF01)], "dmsg.md 5.2");
    let texts: Vec<&[u8]> = pair.a.messages().iter().map(|m| &m.aux[..]).collect();
    assert!(
        texts.contains(&&b"Unrecognized command: tree\n\0"[..]),
        "{texts:?}"
    );
}

use h2msg_tests::sim::echo_cmd as echo;

fn echo_service<I: Echo>() -> App<I> {
    Box::new(|io: &mut I, ev: &I::Owned| {
        if let Some(answered) = io.answer_echo(ev) {
            answered.unwrap();
        }
    })
}

/// Each side opens `EACH` echo transactions, as many at a time as its connection takes
/// (at most `in_flight` open), while the pair runs: every one is answered with its own
/// payload, and both tables end empty.
fn interleaved_both_ways<I: Shell>(in_flight: usize) -> Pair<I> {
    const EACH: u32 = 5000;
    let mut a = I::side(&SideConfig::default(), Some(echo_service()));
    let mut b = I::side(&SideConfig::default(), Some(echo_service()));
    a.io.accept_echo();
    b.io.accept_echo();
    let mut pair = Pair::new(a, b, 1500);
    let (mut sent_a, mut sent_b) = (0u32, 0u32);
    let mut payloads = std::collections::HashMap::new();
    let mut rounds = 0;
    while sent_a < EACH || sent_b < EACH {
        for (side, sent, tag) in [
            (&mut pair.a, &mut sent_a, b'A'),
            (&mut pair.b, &mut sent_b, b'B'),
        ] {
            while *sent < EACH && side.io.open_transactions() < in_flight {
                let payload = format!("{}{}", tag as char, *sent).into_bytes();
                match side.io.open_echo(&payload, true) {
                    Ok(msgid) => {
                        payloads.insert((tag, msgid), payload);
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
        let replies: Vec<_> = side.events.iter().filter_map(I::echo_closed).collect();
        assert_eq!(replies.len(), EACH as usize, "side {}", tag as char);
        for (msgid, aux) in replies {
            let expected = &payloads[&(tag, msgid)];
            assert_eq!(&aux[..expected.len()], &expected[..]);
        }
        assert_eq!(side.io.open_transactions(), 0);
        assert_eq!(side.io.stats().dropped, 0);
    }
    pair
}

#[test]
fn ten_thousand_transactions_interleaved_both_ways() {
    interleaved_both_ways::<SimIocom>(usize::MAX);
}

/// DMSG: `open` with CREATE|DELETE, answered by `send` with REPLY|CREATE|DELETE. One
/// table holds ours and theirs (dmsg.md 4.2), so each side keeps at most half of it open
/// of its own: then the peer's opens always find a slot and none is refused with 0x22.
#[test]
fn dmsg_ten_thousand_transactions_interleaved_both_ways() {
    let pair = interleaved_both_ways::<SimDmsg>(SIM_TRANSACTIONS / 2);
    for side in [&pair.a, &pair.b] {
        // On the wire: the echo command (LNK 0x050, size 1: 0x00005001) opened with
        // CREATE|DELETE, answered with REPLY|CREATE|DELETE|REVTRANS (dmsg.md 2.3, 4.2).
        let sent = side.sent_messages();
        let cmds: std::collections::BTreeSet<u32> =
            sent.iter().map(|(_, m)| m.header.cmd).collect();
        assert_eq!(
            cmds.into_iter().collect::<Vec<_>>(),
            [0xC000_5001, 0xE800_5001]
        );
        assert_eq!(sent.len(), 10_000, "5000 opens and 5000 answers each way");
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

/// DMSG link loss (dmsg.md 4.6): every open transaction ends with the simulated
/// `LNK_ERROR|DELETE|ABORT` (+CREATE where the peer never sent CREATE, +REPLY|REVTRANS on
/// ours), creation order, then `LinkDown`.
#[test]
fn dmsg_link_loss_ends_every_open_transaction_with_lostlink() {
    let mut a = Side::dmsg(&SideConfig::default(), None);
    let mut b = Side::dmsg(&SideConfig::default(), None);
    a.io.accept_echo();
    b.io.accept_echo();
    let mut pair = Pair::new(a, b, 100);
    let ids: Vec<u64> = (0..5)
        .map(|_| pair.a.io.open_echo(b"pending", false).unwrap())
        .collect();
    pair.run(1000);
    assert_eq!(pair.b.io.transactions().len(), 5);
    // B answers the first two with a result that keeps them open (REPLY|CREATE).
    for &id in &ids[..2] {
        pair.b
            .io
            .send(
                DmsgKey::theirs(id),
                echo().set(MsgFlags::CREATE),
                &[],
                b"ok",
            )
            .unwrap();
    }
    pair.run(1000);
    pair.a.io.transport_failed();
    pair.b.io.end_input();
    pair.run(1000);

    // Spelled out from dmsg.md 4.6 and 2.3 (LNK_ERROR 0x000FFF01; CREATE 0x80, DELETE
    // 0x40, REPLY 0x20, ABORT 0x10, REVTRANS 0x08): on A, ours answered: 0x780FFF01 (as
    // measured against libdmsg), ours unanswered: 0xF80FFF01; on B, theirs, whose opener
    // sent CREATE: 0x500FFF01.
    let expected_a: Vec<(DmsgKey, u32)> = ids
        .iter()
        .enumerate()
        .map(|(i, &id)| {
            (
                DmsgKey::ours(id),
                if i < 2 { 0x780F_FF01 } else { 0xF80F_FF01 },
            )
        })
        .collect();
    let expected_b: Vec<(DmsgKey, u32)> = ids
        .iter()
        .map(|&id| (DmsgKey::theirs(id), 0x500F_FF01))
        .collect();
    for (side, end, expected) in [
        (&mut pair.a, LinkEnd::TransportFailed, expected_a),
        (&mut pair.b, LinkEnd::Closed, expected_b),
    ] {
        let lost: Vec<(DmsgKey, u32)> = side
            .events
            .iter()
            .filter_map(|e| match e {
                DmsgOwnedEvent::Lost(l) => Some((l.key, l.cmd.raw())),
                _ => None,
            })
            .collect();
        assert_eq!(lost, expected);
        assert_eq!(
            side.events.last(),
            Some(&DmsgOwnedEvent::LinkDown(end)),
            "LinkDown comes last"
        );
        // Unlike the seed era's tables, DMSG keeps each state whose own direction never
        // sent DELETE (after LinkDown nothing can be sent to close it): every one left is
        // dying, its peer's direction ended by the simulated termination, and nothing
        // more goes out on it.
        let left: Vec<DmsgKey> = side.io.transactions().iter().map(|t| t.key()).collect();
        assert!(
            side.io
                .transactions()
                .iter()
                .all(|t| t.is_dying() && t.received_delete()),
            "{:?}",
            side.io.transactions()
        );
        for key in left {
            assert!(side.io.answer(key, true, 0).is_err());
        }
        assert!(side.io.interest().finished);
        assert!(
            side.io
                .send_one_way(Cmd::from_raw(DBG_SHELL), &[], &[])
                .is_err()
        );
    }
}

/// A shell session with a large aux message, run with every transfer size from 1 to 160
/// bytes and some large ones: both sides see the same events and write the same bytes.
fn partial_writes_at_every_offset<I: Shell>() {
    let big: Vec<u8> = (0..65536u32).map(|i| (i % 253) as u8).collect();
    let run = |transfer: usize| {
        let mut pair = shell_pair_of::<I>(SideConfig::default(), SideConfig::default(), transfer);
        pair.a.io.accept_echo();
        pair.b.io.accept_echo();
        for line in ["", "help", "foo bar", "?"] {
            pair.a.io.shell_line(line);
        }
        pair.a.io.open_echo(&big, true).unwrap();
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
        .filter_map(SimEvent::message)
        .find(|m| m.aux().len() == big.len());
    assert_eq!(
        delivered.map(SimMessage::aux),
        Some(&big[..]),
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
fn partial_writes_at_every_offset_change_nothing() {
    partial_writes_at_every_offset::<SimIocom>();
}

#[test]
fn dmsg_partial_writes_at_every_offset_change_nothing() {
    partial_writes_at_every_offset::<SimDmsg>();
}

/// A big-endian client and a little-endian service: each reads the other's order.
fn opposite_byte_orders<I: Shell>() -> Pair<I> {
    let big = SideConfig {
        order: WireOrder::Big,
        ..SideConfig::default()
    };
    let mut pair = shell_pair_of::<I>(big, SideConfig::default(), 13);
    pair.a.io.shell_line("help");
    pair.run(1000);
    let seen_by_b = pair.b.messages();
    assert_eq!(seen_by_b.len(), 1);
    assert_eq!(seen_by_b[0].order(), WireOrder::Big);
    assert_eq!(pair.a.messages().len(), 2);
    assert!(
        pair.a
            .messages()
            .iter()
            .all(|m| m.order() == WireOrder::Little)
    );
    // The magic 0x4832 as a big-endian sender writes it (§3.1; dmsg.md 2.2).
    assert_eq!(&pair.a.wrote[..2], &[0x48, 0x32]);
    pair
}

#[test]
fn opposite_byte_orders_interoperate() {
    opposite_byte_orders::<SimIocom>();
}

#[test]
fn dmsg_opposite_byte_orders_interoperate() {
    let pair = opposite_byte_orders::<SimDmsg>();
    let texts: Vec<&[u8]> = pair.a.messages().iter().map(|m| &m.aux[..]).collect();
    assert_eq!(texts, [&b"help        Command help\n\0"[..], b""]);
    // The big-endian line's cmd field as it travels: 0x00100101 written big-endian at
    // 0x20 (dmsg.md 2.1), the little-endian answers 0x20100101 at 0x20 of each frame.
    assert_eq!(&pair.a.wrote[0x20..0x24], &[0x00, 0x10, 0x01, 0x01]);
    assert_eq!(&pair.b.wrote[0x20..0x24], &[0x01, 0x01, 0x10, 0x20]);
}
