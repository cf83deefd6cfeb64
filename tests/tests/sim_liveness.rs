//! The liveness rules and deadlines on the simulator's virtual clock (issue 12 item 7), in
//! both revisions: DMSG's keepalive is a one-way `LNK_PING` answered by the peer's
//! connection (D11), the dead-peer and write-stall rules are the shared channel's.
//! Transaction deadlines exist only in the seed era (`DmsgIocom` has no `set_deadline`):
//! those scenarios, and the handshake's, stay seed-only.
//! Every expected time is computed from the configured [`Liveness`] values and the times
//! the simulator itself recorded (when bytes moved), never from the code under test.

use std::time::Duration;

use h2msg::SendError;
use h2msg::trans::TransKey;
use h2msg::wire::{Cmd, MsgFlags, MsgHeader};
use h2msg::{Instant, LinkEnd, Liveness};
use h2msg_tests::OwnedMessage;
use h2msg_tests::sim::{
    App, DmsgOwnedMessage, Echo, OwnedEvent, Pair, Side, SideConfig, SimDmsg, SimIocom, SimMsg,
    echo_cmd,
};

const IDLE: Duration = Duration::from_millis(1_000);
const DEAD: Duration = Duration::from_millis(500);
const STALL: Duration = Duration::from_millis(2_000);

/// Distinct values, so that a rule measured from the wrong start or with the wrong limit
/// gives a different time.
const RULES: Liveness = Liveness {
    idle: Some(IDLE),
    dead: Some(DEAD),
    stall: Some(STALL),
};

const fn at(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

/// What the liveness scenarios do in either revision: the seed era's exchange is an
/// `LNK_PING` transaction, DMSG's a one-way `LNK_PING` (D11); both answer by themselves.
trait Live: Echo {
    fn side(cfg: &SideConfig, app: Option<App<Self>>) -> Side<Self>;
    /// Sends the ping the peer's connection answers by itself.
    fn ping(&mut self) -> Result<(), SendError>;
    /// The keepalive ping (a command, not its answer).
    fn is_keepalive_ping(m: &SimMsg<Self>) -> bool;
    /// The answer to a ping.
    fn is_ping_answer(m: &SimMsg<Self>) -> bool;
    /// One 960-byte one-way message.
    fn send_bulk(&mut self);
}

impl Live for SimIocom {
    fn side(cfg: &SideConfig, app: Option<App<Self>>) -> Side<Self> {
        Side::new(cfg, app)
    }
    fn ping(&mut self) -> Result<(), SendError> {
        self.open(Cmd::LNK_PING, &[], &[], true).map(drop)
    }
    fn is_keepalive_ping(m: &OwnedMessage) -> bool {
        let cmd = m.header.cmd;
        cmd.same_handler(Cmd::LNK_PING) && !cmd.is_reply()
    }
    fn is_ping_answer(m: &OwnedMessage) -> bool {
        let cmd = m.header.cmd;
        cmd.is_reply() && cmd.clear(MsgFlags::REPLY).same_handler(Cmd::LNK_PING)
    }
    fn send_bulk(&mut self) {
        self.send(MsgHeader::new(Cmd::DBG_SHELL), &[], &[0x55; 960])
            .unwrap();
    }
}

impl Live for SimDmsg {
    fn side(cfg: &SideConfig, app: Option<App<Self>>) -> Side<Self> {
        Side::dmsg(cfg, app)
    }
    fn ping(&mut self) -> Result<(), SendError> {
        self.send_one_way(Cmd::LNK_PING, &[], &[]).map(drop)
    }
    /// dmsg.md 3.5: the one-way `LNK_PING` is 0x00000101, its answer 0x20000101.
    fn is_keepalive_ping(m: &DmsgOwnedMessage) -> bool {
        m.header.cmd == 0x0000_0101
    }
    fn is_ping_answer(m: &DmsgOwnedMessage) -> bool {
        m.header.cmd == 0x2000_0101
    }
    fn send_bulk(&mut self) {
        self.send_one_way(Cmd::DBG_SHELL, &[], &[0x55; 960])
            .unwrap();
    }
}

fn side_of<I: Live>(liveness: Liveness, app: Option<App<I>>) -> Side<I> {
    let cfg = SideConfig {
        liveness,
        ..SideConfig::default()
    };
    I::side(&cfg, app)
}

fn side(liveness: Liveness, app: Option<App>) -> Side {
    side_of(liveness, app)
}

fn pair_of<I: Live>(a: Liveness, b: Liveness) -> Pair<I> {
    Pair::new(side_of(a, None), side_of(b, None), 4096)
}

fn pair(a: Liveness, b: Liveness) -> Pair {
    pair_of(a, b)
}

fn is_keepalive_ping(m: &OwnedMessage) -> bool {
    SimIocom::is_keepalive_ping(m)
}

/// When `side` sent each keepalive ping (not an answer) after `after`.
fn ping_times<I: Live>(side: &Side<I>, after: Instant) -> Vec<Instant> {
    side.sent_messages()
        .into_iter()
        .filter(|&(t, ref m)| t > after && I::is_keepalive_ping(m))
        .map(|(t, _)| t)
        .collect()
}

/// B pings at `t` (A answers it by itself): both sides receive a byte at `t`.
fn exchange_at<I: Live>(pair: &mut Pair<I>, t: Instant) {
    pair.run_until(t);
    pair.b.io.ping().unwrap();
    pair.run(10_000);
}

fn a_cut_link_is_pinged_and_dropped<I: Live>() {
    let mut pair = pair_of::<I>(RULES, RULES);
    exchange_at(&mut pair, at(300));
    pair.cut_both(true);
    let last_a = pair.a.last_read_time().expect("A heard B");
    let last_b = pair.b.last_read_time().expect("B heard A");
    assert_eq!(
        (last_a, last_b),
        (at(300), at(300)),
        "the exchange moved at 300"
    );

    pair.run_until(at(10_000));
    for (name, side, last) in [("A", &pair.a, last_a), ("B", &pair.b, last_b)] {
        assert_eq!(
            ping_times(side, last),
            vec![last + IDLE],
            "{name}: one ping, at idle"
        );
        assert_eq!(
            side.link_down(),
            Some((last + IDLE + DEAD, LinkEnd::PeerTimeout)),
            "{name}: dropped at idle + dead"
        );
    }
    println!(
        "cut link: last byte {last_a}, ping {}, PeerTimeout {}",
        last_a + IDLE,
        last_a + IDLE + DEAD
    );
}

#[test]
fn a_cut_link_is_pinged_at_idle_and_dropped_at_idle_plus_dead_after_the_last_byte() {
    a_cut_link_is_pinged_and_dropped::<SimIocom>();
}

/// DMSG: the keepalive is a one-way `LNK_PING` (D11); the rules are the channel's.
#[test]
fn dmsg_a_cut_link_is_pinged_at_idle_and_dropped_at_idle_plus_dead_after_the_last_byte() {
    a_cut_link_is_pinged_and_dropped::<SimDmsg>();
}

fn a_silent_peer_is_dropped<I: Live>() {
    let mut pair = pair_of::<I>(RULES, Liveness::OFF);
    exchange_at(&mut pair, at(700));
    pair.b.reading = false;
    pair.b.writing = false;
    let last = pair.a.last_read_time().unwrap();
    assert_eq!(last, at(700));

    pair.run_until(at(10_000));
    assert_eq!(ping_times(&pair.a, last), vec![last + IDLE]);
    assert_eq!(
        pair.a.link_down(),
        Some((last + IDLE + DEAD, LinkEnd::PeerTimeout))
    );
    assert_eq!(
        pair.b.link_down(),
        None,
        "B has no rules and saw nothing end"
    );
}

#[test]
fn a_peer_that_stops_reading_and_writing_is_dropped_at_idle_plus_dead() {
    a_silent_peer_is_dropped::<SimIocom>();
}

#[test]
fn dmsg_a_peer_that_stops_reading_and_writing_is_dropped_at_idle_plus_dead() {
    a_silent_peer_is_dropped::<SimDmsg>();
}

/// One exchange every `idle - 1` ms for ten virtual minutes: nobody pings or times out.
fn chatty_peer<I: Live>() -> Pair<I> {
    let mut pair = pair_of::<I>(RULES, RULES);
    let period = IDLE - Duration::from_millis(1);
    let mut t = Instant::ZERO;
    // Ten virtual minutes of one exchange every `idle - 1` ms.
    while t < at(600_000) {
        t = t + period;
        exchange_at(&mut pair, t);
    }
    pair.run_until(t + period);
    assert_eq!(pair.a.link_down(), None);
    assert_eq!(pair.b.link_down(), None);
    assert!(
        ping_times(&pair.a, Instant::ZERO).is_empty(),
        "A never needed a keepalive"
    );
    assert!(pair.a.io.poll_timeout().is_some(), "the rules still run");
    let answers = pair.a.sent_messages();
    let answers = answers.iter().filter(|(_, m)| I::is_ping_answer(m)).count();
    assert!(answers > 600, "A answered every exchange: {answers}");
    pair
}

#[test]
fn a_chatty_peer_never_times_out() {
    let pair = chatty_peer::<SimIocom>();
    assert!(pair.b.messages().len() > 600, "every exchange was answered");
}

#[test]
fn dmsg_a_chatty_peer_never_times_out() {
    let pair = chatty_peer::<SimDmsg>();
    assert!(
        pair.b.events.is_empty(),
        "one-way answers B does not accept: dropped"
    );
}

/// A flood of one-way messages from A, more than B's buffers and the wire hold.
fn flood<I: Live>(io: &mut I) {
    for _ in 0..40 {
        io.send_bulk();
    }
}

/// B stops reading but keeps talking (an `LNK_PING` every 200 ms, which A answers by
/// itself); A keeps writing until the wire is full. Returns the pair after `until`.
fn reader_that_stopped<I: Live>(a_rules: Liveness, until: Instant) -> Pair<I> {
    let mut pair = pair_of::<I>(a_rules, Liveness::OFF);
    pair.a_to_b.capacity = Some(4096);
    pair.run(10);
    pair.b.reading = false;
    flood(&mut pair.a.io);
    let mut t = Instant::ZERO;
    while t < until && pair.a.link_down().is_none() {
        t = t + Duration::from_millis(200);
        pair.run_until(t);
        if pair.b.io.ping().is_err() {
            break;
        }
    }
    pair.run_until(until);
    pair
}

fn talking_non_reader_is_caught_by_the_write_stall<I: Live>() {
    let pair = reader_that_stopped::<I>(RULES, at(20_000));
    let last_progress = pair
        .a
        .last_write_time()
        .expect("A wrote until the wire filled");
    assert_eq!(last_progress, at(0), "the wire filled at once");
    let (down_at, end) = pair.a.link_down().expect("A gave up");
    assert_eq!(end, LinkEnd::WriteStalled);
    assert_eq!(down_at, last_progress + STALL);
    // Its pings kept A's receive side busy to the end: the silence rule never came near.
    let heard = pair.a.last_read_time().unwrap();
    assert!(
        heard + IDLE > down_at,
        "A heard B at {heard}, down at {down_at}"
    );
    assert!(
        ping_times(&pair.a, Instant::ZERO).is_empty(),
        "A never needed a keepalive"
    );
    println!("stalled writer: last progress {last_progress}, WriteStalled {down_at}");
}

#[test]
fn a_peer_that_talks_but_never_reads_is_caught_by_the_write_stall() {
    talking_non_reader_is_caught_by_the_write_stall::<SimIocom>();
}

#[test]
fn dmsg_a_peer_that_talks_but_never_reads_is_caught_by_the_write_stall() {
    talking_non_reader_is_caught_by_the_write_stall::<SimDmsg>();
}

fn without_the_stall_rule<I: Live>() {
    // The control for the test above: the pings alone keep A up.
    let rules = Liveness {
        stall: None,
        ..RULES
    };
    let pair = reader_that_stopped::<I>(rules, at(20_000));
    assert_eq!(pair.a.link_down(), None);
    assert!(pair.a.io.pending()[0].len() + pair.a.io.pending()[1].len() > 0);
}

#[test]
fn without_the_stall_rule_the_talking_non_reader_holds_the_link() {
    without_the_stall_rule::<SimIocom>();
}

#[test]
fn dmsg_without_the_stall_rule_the_talking_non_reader_holds_the_link() {
    without_the_stall_rule::<SimDmsg>();
}

/// An application that keeps every command it receives and answers nothing.
fn silent_service(received: std::rc::Rc<std::cell::RefCell<Vec<MsgHeader>>>) -> App {
    Box::new(move |_io: &mut SimIocom, ev: &OwnedEvent| {
        if let Some(m) = ev.message() {
            received.borrow_mut().push(m.header);
        }
    })
}

#[test]
fn a_transaction_deadline_aborts_at_the_deadline_and_drops_the_late_reply() {
    let received = std::rc::Rc::default();
    let quiet = Liveness {
        idle: Some(Duration::from_secs(3_600)),
        ..RULES
    };
    let mut pair = Pair::new(
        side(quiet, None),
        side(quiet, Some(silent_service(std::rc::Rc::clone(&received)))),
        4096,
    );
    pair.a.io.accept(echo_cmd()).unwrap();
    pair.b.io.accept(echo_cmd()).unwrap();
    pair.run_until(at(100));
    let opened = pair.a.io.open(echo_cmd(), &[], b"hello", false).unwrap();
    let deadline = at(1_234);
    pair.a.io.set_deadline(&opened, deadline).unwrap();
    pair.run(10_000);
    let request = received.borrow()[0];
    // From here B hears nothing more of A (the ABORT stays in flight), so it replies late.
    pair.a_to_b.cut = true;

    pair.run_until(at(deadline.as_millis() - 1));
    assert!(
        pair.a.events.is_empty(),
        "nothing before the deadline: {:?}",
        pair.a.events
    );
    pair.run_until(deadline + Duration::from_millis(100));
    let key = TransKey::local(opened.msgid);
    assert_eq!(
        pair.a.first_event_time(|e| *e == OwnedEvent::TimedOut(key)),
        Some(deadline)
    );
    let abort = pair.a.sent_messages().into_iter().find(|(_, m)| {
        m.header.msgid == opened.msgid && m.header.cmd.flags().contains(MsgFlags::ABORT)
    });
    assert_eq!(
        abort.map(|(t, _)| t),
        Some(deadline),
        "the ABORT left at the deadline"
    );

    // The late reply arrives; the application was told the transaction is over.
    pair.b.io.reply(&request, 0, b"too late", true).unwrap();
    pair.run_until(deadline + Duration::from_millis(500));
    assert!(
        pair.b.last_write_time() > Some(deadline),
        "the late reply was sent"
    );
    assert_eq!(pair.a.events, vec![OwnedEvent::TimedOut(key)]);
    assert_eq!(
        pair.a.io.local_transactions().len(),
        0,
        "the reply closed it"
    );

    // The ABORT reaches B once the wire carries again.
    pair.a_to_b.cut = false;
    pair.run_until(deadline + Duration::from_millis(600));
    let aborts = received
        .borrow()
        .iter()
        .filter(|h| h.cmd.flags().contains(MsgFlags::ABORT))
        .count();
    assert_eq!(aborts, 1);
    assert_eq!(pair.a.link_down(), None);
}

#[test]
fn the_handshake_deadline_fails_at_the_deadline_on_the_same_clock() {
    use h2msg::{HandshakeError, HandshakePoll, KeyExchangeFailure, KeyMode};
    use h2msg_tests::TestRng;
    let deadline = at(5_000);
    let new = |seed| {
        h2msg::Handshake::<h2msg::NoRsa>::new(
            KeyMode::Plaintext,
            &mut TestRng(seed),
            h2msg::wire::WireOrder::Little,
            Some(deadline),
        )
        .unwrap()
    };
    let (mut a, mut b) = (new(1), new(2));
    // B never sends; A sends all its bytes to B in 100-byte pieces.
    let mut now = Instant::ZERO;
    let mut rounds = 0;
    let outcome = loop {
        rounds += 1;
        assert!(
            rounds < 10_000,
            "the handshake neither finished nor failed by {now}"
        );
        a.handle_timeout(now);
        b.handle_timeout(now);
        let chunk = a.pending().len().min(100);
        let taken = b.feed(&a.pending()[..chunk]);
        a.advance(taken).unwrap();
        match a.poll() {
            HandshakePoll::InProgress => {}
            other => break (now, other),
        }
        if taken == 0 {
            let next = a.poll_timeout().expect("a deadline while unfinished");
            assert_eq!(next, deadline);
            // One millisecond before the deadline neither side has failed.
            a.handle_timeout(at(deadline.as_millis() - 1));
            b.handle_timeout(at(deadline.as_millis() - 1));
            assert!(matches!(a.poll(), HandshakePoll::InProgress));
            assert!(matches!(b.poll(), HandshakePoll::InProgress));
            now = next;
        }
    };
    let (failed_at, poll) = outcome;
    assert_eq!(failed_at, deadline);
    match poll {
        HandshakePoll::Failed(e @ HandshakeError::KeyExchange(KeyExchangeFailure::Timeout)) => {
            assert_eq!(e.ioq_error(), h2msg::wire::IoqError::KeyXchgFail);
        }
        other => panic!("expected KEYXCHGFAIL, got {other:?}"),
    }
    // B got all 512 bytes but its own block never left: it times out on the same clock.
    assert!(
        matches!(
            b.poll(),
            HandshakePoll::Failed(HandshakeError::KeyExchange(KeyExchangeFailure::Timeout))
        ),
        "B fails by its own deadline"
    );
}

fn a_clock_that_went_backwards<I: Live>() {
    let mut pair = pair_of::<I>(RULES, Liveness::OFF);
    exchange_at(&mut pair, at(800));
    // The driver's clock jumps back to 5 and bytes arrive "then": no time passed, so they
    // count as arriving at 800, and the keepalive still waits `idle` from 800.
    pair.now = at(5);
    pair.b.io.ping().unwrap();
    pair.run(10_000);
    assert_eq!(
        pair.a.last_read_time(),
        Some(at(5)),
        "the exchange moved at 5"
    );
    pair.cut_both(true);
    assert_eq!(pair.a.io.poll_timeout(), Some(at(800) + IDLE));
    pair.run_until(at(10_000));
    assert_eq!(ping_times(&pair.a, at(5)), vec![at(800) + IDLE]);
    assert_eq!(
        pair.a.link_down(),
        Some((at(800) + IDLE + DEAD, LinkEnd::PeerTimeout))
    );
}

#[test]
fn bytes_received_at_a_now_that_went_backwards_count_as_received_at_the_latest_now() {
    a_clock_that_went_backwards::<SimIocom>();
}

#[test]
fn dmsg_bytes_received_at_a_now_that_went_backwards_count_as_received_at_the_latest_now() {
    a_clock_that_went_backwards::<SimDmsg>();
}

/// The clock jumps from 800 to far ahead on a cut link: one ping, the dead rule counted
/// from it. `between` checks what else the jump fired (the seed era's deadline).
fn a_clock_jumping_far_ahead<I: Live>(mut pair: Pair<I>, between: impl FnOnce(&Side<I>)) {
    pair.cut_both(true);
    pair.now = at(800);
    pair.run(10_000);
    assert!(pair.a.events.is_empty());

    let far = at(1_000_000_000_000);
    pair.now = far;
    pair.run(10_000);
    pair.run(10_000);
    assert_eq!(ping_times(&pair.a, at(800)), vec![far], "one ping");
    between(&pair.a);
    assert_eq!(
        pair.a.link_down(),
        None,
        "the dead rule counts from the ping"
    );
    assert_eq!(pair.a.io.poll_timeout(), Some(far + DEAD));
    pair.run_until(far + DEAD + DEAD);
    assert_eq!(pair.a.link_down(), Some((far + DEAD, LinkEnd::PeerTimeout)));
}

#[test]
fn a_clock_jumping_far_ahead_fires_each_rule_once() {
    let mut pair = pair(RULES, Liveness::OFF);
    pair.run(10);
    let opened = pair.a.io.open(echo_cmd(), &[], &[], false).unwrap();
    pair.a.io.set_deadline(&opened, at(900)).unwrap();
    pair.run(10_000);
    a_clock_jumping_far_ahead(pair, |a| {
        let sent = a.sent_messages();
        let pings = sent.iter().filter(|(_, m)| is_keepalive_ping(m)).count();
        let aborts = sent
            .iter()
            .filter(|(_, m)| m.header.cmd.flags().contains(MsgFlags::ABORT))
            .count();
        assert_eq!((pings, aborts), (1, 1), "one ping, one ABORT");
        assert_eq!(
            a.events,
            vec![OwnedEvent::TimedOut(TransKey::local(opened.msgid))]
        );
    });
}

/// DMSG has no transaction deadlines (`DmsgIocom` has no `set_deadline`): only the
/// keepalive and the dead rule fire.
#[test]
fn dmsg_a_clock_jumping_far_ahead_fires_each_rule_once() {
    let mut pair = pair_of::<SimDmsg>(RULES, Liveness::OFF);
    pair.run(10);
    a_clock_jumping_far_ahead(pair, |a| {
        assert!(a.events.is_empty(), "{:?}", a.events);
        assert_eq!(a.sent_messages().len(), 1, "the ping and nothing else");
    });
}

fn keepalive_reply_stays_in_the_connection<I: Live>() {
    let mut pair = pair_of::<I>(RULES, RULES);
    pair.run_until(at(10_500));
    assert!(pair.a.events.is_empty(), "A's app saw {:?}", pair.a.events);
    assert!(pair.b.events.is_empty(), "B's app saw {:?}", pair.b.events);
    // Both sides ping every `idle` of silence: at 1000, then `idle` after each reply.
    let expected: Vec<Instant> = (1..=10).map(|k| at(k * 1_000)).collect();
    assert_eq!(ping_times(&pair.a, Instant::ZERO), expected);
    assert_eq!(ping_times(&pair.b, Instant::ZERO), expected);
    let replies = pair
        .b
        .sent_messages()
        .into_iter()
        .filter(|(_, m)| I::is_ping_answer(m))
        .count();
    assert_eq!(replies, 10, "B answered every ping of A");
    assert_eq!(pair.a.io.open_transactions(), 0, "every ping closed");
}

#[test]
fn the_keepalive_reply_is_never_handed_to_the_application() {
    keepalive_reply_stays_in_the_connection::<SimIocom>();
}

/// DMSG: the answer is one-way `LNK_PING|REPLY`, dropped unless the application accepts
/// `LNK_PING` (dmsg.md 3.5); these applications do not.
#[test]
fn dmsg_the_keepalive_reply_is_never_handed_to_the_application() {
    keepalive_reply_stays_in_the_connection::<SimDmsg>();
}

#[test]
fn a_deadline_that_expired_just_before_the_link_failed_is_still_reported() {
    // The driver tells the time (the deadline passes), then the transport fails before
    // the application polls: the transaction must still end for the application.
    let mut pair = pair(RULES, Liveness::OFF);
    pair.run(10);
    let opened = pair.a.io.open(echo_cmd(), &[], &[], false).unwrap();
    pair.a.io.set_deadline(&opened, at(500)).unwrap();
    pair.run(10_000);
    pair.a.io.handle_timeout(at(500));
    pair.a.io.transport_failed();
    pair.now = at(500);
    pair.run(10_000);
    let key = TransKey::local(opened.msgid);
    // The deadline passed before the link failed: the application hears TimedOut (not
    // the Aborted a link loss gives), and nothing more about that transaction after it.
    let about: Vec<&OwnedEvent> = pair
        .a
        .events
        .iter()
        .filter(|e| match e {
            OwnedEvent::TimedOut(k) | OwnedEvent::Aborted(k, _) => *k == key,
            _ => false,
        })
        .collect();
    assert_eq!(
        about,
        vec![&OwnedEvent::TimedOut(key)],
        "expected exactly TimedOut and no Aborted after it: {:?}",
        pair.a.events
    );
    assert_eq!(
        pair.a.link_down().map(|(_, end)| end),
        Some(LinkEnd::TransportFailed)
    );
}
