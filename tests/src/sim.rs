//! A deterministic in-memory simulator of two connected iocoms (after quinn-proto's
//! `Pair`): bytes move between them in transfers of a configurable size, so every partial
//! read and write happens, and each side's application is a closure that sees every event.
//!
//! Time is virtual: the pair has a clock ([`Pair::now`]), calls `handle_timeout(now)` on
//! both sides every step, and when nothing moves jumps to the earliest `poll_timeout` (or
//! the next held-back segment's arrival) — see [`Pair::run_until`]. Each direction is a
//! [`Wire`] that holds bytes in flight and can be cut; a seeded [`FaultInjector`] (after
//! smoltcp's `fault_injector`) varies transfer sizes, delays and corrupts segments, and the
//! seed reproduces a run exactly.

use std::collections::VecDeque;
use std::fmt::Debug;
use std::time::Duration;

use h2msg::drive::Connection;
use h2msg::ioq::RxFailure;
use h2msg::rand_core::TryRng;
use h2msg::trans::{DmsgLost, Received, Side as TransSide, TransError, TransKey, TransUpdate};
use h2msg::wire::{
    Cmd, DmsgHeader, DmsgReceivedHeader, MessageView, MsgFlags, MsgHeader, ReceivedFrame,
    ReceivedHeader, SoftCrc32c, WireOrder,
};
use h2msg::{
    Config, CounterSalt, DmsgEvent, DmsgIocom, Event, Instant, Iocom, IocomMemory, IocomStats,
    LinkEnd, LinkSetup, SendError, Session,
};

use crate::{OwnedMessage, TestRng};

/// Transaction table capacity of simulated connections.
pub const SIM_TRANSACTIONS: usize = 256;

/// The seed-era connection the simulator runs.
pub type SimIocom = Iocom<Vec<u8>, Salts, SoftCrc32c, SIM_TRANSACTIONS>;

/// The DMSG connection the simulator runs (its table holds ours and theirs together).
pub type SimDmsg = DmsgIocom<Vec<u8>, Salts, SoftCrc32c, SIM_TRANSACTIONS>;

/// What the simulator and its scenarios need of a connection besides the driver side:
/// how to build one, bytes in and out by copy, and its events as owned values.
pub trait SimConnection: Connection + Sized {
    /// An event, owned.
    type Owned: SimEvent;
    /// The revision's received header, to decode what a side wrote.
    type Frame: ReceivedFrame;
    /// A connection in the stream mode of `setup`, built from `cfg`.
    fn build(cfg: &SideConfig, setup: LinkSetup) -> Self;
    /// Copies received bytes in; returns how many were taken.
    fn feed(&mut self, bytes: &[u8]) -> usize;
    /// Copies pending bytes out; returns how many.
    fn copy_pending(&self, out: &mut [u8]) -> usize;
    /// The next event, owned.
    fn next_event(&mut self) -> Option<Self::Owned>;
    /// The owned copy of a message decoded from what a side wrote.
    fn own(m: &MessageView<'_, Self::Frame>) -> SimMsg<Self>;
    /// Counters.
    fn stats(&self) -> IocomStats;
}

/// The owned message of connection `I`.
pub type SimMsg<I> = <<I as SimConnection>::Owned as SimEvent>::Message;

/// What scenarios observe of an event, whatever the revision.
pub trait SimEvent: Clone + Debug + PartialEq {
    /// The revision's owned message.
    type Message: SimMessage;
    /// The message, if this is one.
    fn message(&self) -> Option<&Self::Message>;
    /// How the link ended, if this is `LinkDown`.
    fn link_end(&self) -> Option<LinkEnd>;
}

/// What scenarios observe of a message, whatever the revision.
pub trait SimMessage: Clone + Debug + PartialEq {
    /// The raw `cmd` field.
    fn cmd(&self) -> Cmd;
    /// The transaction id (0 for a one-way DMSG message).
    fn msgid(&self) -> u64;
    /// The aux data as delivered (padded in the seed era, exact in DMSG).
    fn aux(&self) -> &[u8];
    /// The sender's byte order.
    fn order(&self) -> WireOrder;
}

impl SimMessage for OwnedMessage {
    fn cmd(&self) -> Cmd {
        self.header.cmd
    }
    fn msgid(&self) -> u64 {
        u64::from(self.header.msgid)
    }
    fn aux(&self) -> &[u8] {
        &self.aux
    }
    fn order(&self) -> WireOrder {
        self.order
    }
}

fn memory(cfg: &SideConfig) -> IocomMemory<Vec<u8>> {
    IocomMemory {
        fifo: vec![0u8; cfg.fifo],
        aux: vec![0u8; cfg.aux],
        tx_ring: vec![0u8; cfg.tx_ring],
    }
}

fn config(cfg: &SideConfig) -> Config {
    Config {
        order: cfg.order,
        liveness: cfg.liveness,
    }
}

/// Implements [`SimConnection`] for a connection type by forwarding to its inherent
/// methods; `$ctor` builds it from (setup, memory, salts, crc, config).
macro_rules! sim_connection {
    ($alias:ty, $conn:ident, $ctor:ident, $owned:ident, $frame:ty, $own:expr) => {
        impl SimConnection for $alias {
            type Owned = $owned;
            type Frame = $frame;
            fn build(cfg: &SideConfig, setup: LinkSetup) -> Self {
                let salts = Salts::scripted(&cfg.salts);
                $conn::$ctor(setup, memory(cfg), salts, SoftCrc32c, config(cfg))
                    .expect("memory fits the mode")
            }
            fn feed(&mut self, bytes: &[u8]) -> usize {
                $conn::feed(self, bytes)
            }
            fn copy_pending(&self, out: &mut [u8]) -> usize {
                $conn::copy_pending(self, out)
            }
            fn next_event(&mut self) -> Option<$owned> {
                $conn::poll_event(self).map(|e| $owned::of_event(&e))
            }
            fn own(m: &MessageView<'_, $frame>) -> SimMsg<Self> {
                $own(m)
            }
            fn stats(&self) -> IocomStats {
                $conn::stats(self)
            }
        }
    };
}

sim_connection!(
    SimIocom,
    Iocom,
    with_config,
    OwnedEvent,
    ReceivedHeader,
    OwnedMessage::of
);
sim_connection!(
    SimDmsg,
    DmsgIocom,
    new,
    DmsgOwnedEvent,
    DmsgReceivedHeader,
    |m| DmsgOwnedMessage::of(m, None)
);

/// The echo transaction of the scenarios in either revision: the opener sends
/// [`echo_cmd`] with its aux and closes its direction at once; the echo service answers
/// with the same aux in one final reply (seed: `reply(.., last)`; DMSG: `send` with
/// REPLY|CREATE|DELETE).
pub trait Echo: SimConnection {
    /// Accepts [`echo_cmd`].
    fn accept_echo(&mut self);
    /// Opens an echo transaction carrying `aux`, closing our direction with it when
    /// `close`; its msgid.
    ///
    /// # Errors
    /// The connection's refusal (queue or table full, link down).
    fn open_echo(&mut self, aux: &[u8], close: bool) -> Result<u64, SendError>;
    /// If `ev` is an echo command whose opener closed its direction, answers it with its
    /// aux in one final reply and says how that went.
    fn answer_echo(&mut self, ev: &Self::Owned) -> Option<Result<(), SendError>>;
    /// If `ev` is the reply that closed an echo transaction of ours: its msgid and aux.
    fn echo_closed(ev: &Self::Owned) -> Option<(u64, &[u8])>;
    /// Open transactions, ours and theirs.
    fn open_transactions(&self) -> usize;
}

fn is_echo(cmd: Cmd) -> bool {
    cmd.clear(MsgFlags::ALL).same_handler(echo_cmd())
}

impl Echo for SimIocom {
    fn accept_echo(&mut self) {
        self.accept(echo_cmd()).expect("room to accept");
    }
    fn open_echo(&mut self, aux: &[u8], close: bool) -> Result<u64, SendError> {
        self.open(echo_cmd(), &[], aux, close)
            .map(|h| u64::from(h.msgid))
    }
    fn answer_echo(&mut self, ev: &OwnedEvent) -> Option<Result<(), SendError>> {
        let OwnedEvent::Message(m, TransUpdate::Closed(_) | TransUpdate::DirectionClosed(_)) = ev
        else {
            return None;
        };
        if m.header.cmd.is_reply() || !is_echo(m.header.cmd) {
            return None;
        }
        Some(self.reply(&m.header, 0, &m.aux, true).map(drop))
    }
    fn echo_closed(ev: &OwnedEvent) -> Option<(u64, &[u8])> {
        match ev {
            OwnedEvent::Message(m, TransUpdate::Closed(el)) if m.header.cmd.is_reply() => {
                assert_eq!(el.key.side, TransSide::Local, "a reply closes one of ours");
                Some((u64::from(m.header.msgid), &m.aux))
            }
            _ => None,
        }
    }
    fn open_transactions(&self) -> usize {
        self.local_transactions().len() + self.remote_transactions().len()
    }
}

impl Echo for SimDmsg {
    fn accept_echo(&mut self) {
        self.accept(echo_cmd()).expect("room to accept");
    }
    fn open_echo(&mut self, aux: &[u8], close: bool) -> Result<u64, SendError> {
        let cmd = if close {
            echo_cmd().set(MsgFlags::DELETE)
        } else {
            echo_cmd()
        };
        self.open(cmd, None, &[], aux).map(|h| h.msgid)
    }
    fn answer_echo(&mut self, ev: &DmsgOwnedEvent) -> Option<Result<(), SendError>> {
        let DmsgOwnedEvent::Message(m) = ev else {
            return None;
        };
        let Some(Received::Element {
            key, effective_cmd, ..
        }) = m.received
        else {
            return None;
        };
        let closed_by_opener = effective_cmd.flags().contains(MsgFlags::DELETE);
        if effective_cmd.is_reply() || !is_echo(effective_cmd) || !closed_by_opener {
            return None;
        }
        let answer = echo_cmd().set(MsgFlags::CREATE | MsgFlags::DELETE);
        Some(self.send(key, answer, &[], &m.aux).map(drop))
    }
    fn echo_closed(ev: &DmsgOwnedEvent) -> Option<(u64, &[u8])> {
        match ev {
            DmsgOwnedEvent::Message(m) => match m.received {
                Some(Received::Element {
                    key, closed: true, ..
                }) if m.header.command().is_reply() => {
                    assert_eq!(key.side, TransSide::Local, "a reply closes one of ours");
                    Some((m.header.msgid, &m.aux))
                }
                _ => None,
            },
            _ => None,
        }
    }
    fn open_transactions(&self) -> usize {
        self.transactions().len()
    }
}

/// An event copied out of the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnedEvent {
    /// A message for the application.
    Message(OwnedMessage, TransUpdate),
    /// A rule-breaking element was dropped.
    Rejected(MsgHeader, TransError),
    /// Aux storage too small.
    AuxStorageTooSmall(usize, usize),
    /// A transaction ended by link loss.
    Aborted(TransKey, MsgHeader),
    /// A transaction we opened passed its deadline.
    TimedOut(TransKey),
    /// The link is down.
    LinkDown(LinkEnd),
}

impl OwnedEvent {
    /// The owned copy of an event.
    pub fn of_event(e: &Event<'_>) -> Self {
        match e {
            Event::Message { msg, update } => Self::Message(OwnedMessage::of(msg), *update),
            Event::Rejected { header, error } => Self::Rejected(*header, *error),
            Event::AuxStorageTooSmall { needed, available } => {
                Self::AuxStorageTooSmall(*needed, *available)
            }
            Event::Aborted { key, header } => Self::Aborted(*key, *header),
            Event::TimedOut { key } => Self::TimedOut(*key),
            Event::LinkDown(end) => Self::LinkDown(*end),
            other => panic!("event the simulator does not know: {other:?}"),
        }
    }

    /// The message, if this is one.
    pub fn message(&self) -> Option<&OwnedMessage> {
        match self {
            Self::Message(m, _) => Some(m),
            _ => None,
        }
    }

    /// The failure, if the link went down with one.
    pub fn failure(&self) -> Option<RxFailure> {
        match self {
            Self::LinkDown(LinkEnd::Failed(f)) => Some(*f),
            _ => None,
        }
    }
}

impl SimEvent for OwnedEvent {
    type Message = OwnedMessage;
    fn message(&self) -> Option<&OwnedMessage> {
        Self::message(self)
    }
    fn link_end(&self) -> Option<LinkEnd> {
        match self {
            Self::LinkDown(end) => Some(*end),
            _ => None,
        }
    }
}

/// A DMSG message copied out of the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DmsgOwnedMessage {
    /// The header values.
    pub header: DmsgHeader,
    /// The sender's byte order.
    pub order: WireOrder,
    /// The header region after the base header.
    pub ext: Vec<u8>,
    /// Aux bytes, exactly `aux_bytes` of them.
    pub aux: Vec<u8>,
    /// Where the connection placed it (`None`: decoded from the wire, not received).
    pub received: Option<Received>,
}

impl DmsgOwnedMessage {
    /// Copies a borrowed message and where it belongs.
    pub fn of(m: &MessageView<'_, DmsgReceivedHeader>, received: Option<Received>) -> Self {
        Self {
            header: *m.header(),
            order: m.order(),
            ext: m.ext().to_vec(),
            aux: m.aux().to_vec(),
            received,
        }
    }
}

impl SimMessage for DmsgOwnedMessage {
    fn cmd(&self) -> Cmd {
        self.header.command()
    }
    fn msgid(&self) -> u64 {
        self.header.msgid
    }
    fn aux(&self) -> &[u8] {
        &self.aux
    }
    fn order(&self) -> WireOrder {
        self.order
    }
}

/// A DMSG event copied out of the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DmsgOwnedEvent {
    /// A message for the application.
    Message(DmsgOwnedMessage),
    /// A transaction ended by link loss (dmsg.md 4.6).
    Lost(DmsgLost),
    /// Aux storage too small.
    AuxStorageTooSmall(usize, usize),
    /// The link is down.
    LinkDown(LinkEnd),
}

impl DmsgOwnedEvent {
    /// The owned copy of an event.
    pub fn of_event(e: &DmsgEvent<'_>) -> Self {
        match e {
            DmsgEvent::Message { msg, received } => {
                Self::Message(DmsgOwnedMessage::of(msg, Some(*received)))
            }
            DmsgEvent::Lost(lost) => Self::Lost(*lost),
            DmsgEvent::AuxStorageTooSmall { needed, available } => {
                Self::AuxStorageTooSmall(*needed, *available)
            }
            DmsgEvent::LinkDown(end) => Self::LinkDown(*end),
            other => panic!("event the simulator does not know: {other:?}"),
        }
    }
}

impl SimEvent for DmsgOwnedEvent {
    type Message = DmsgOwnedMessage;
    fn message(&self) -> Option<&DmsgOwnedMessage> {
        match self {
            Self::Message(m) => Some(m),
            _ => None,
        }
    }
    fn link_end(&self) -> Option<LinkEnd> {
        match self {
            Self::LinkDown(end) => Some(*end),
            _ => None,
        }
    }
}

/// Salt bits: a script of values first, then a counter. Deterministic.
pub struct Salts {
    script: Vec<u32>,
    next: usize,
    counter: CounterSalt,
}

impl Salts {
    /// Yields `script`, then 1, 2, 3, …
    pub fn scripted(script: &[u32]) -> Self {
        Self {
            script: script.to_vec(),
            next: 0,
            counter: CounterSalt::default(),
        }
    }
}

impl TryRng for Salts {
    type Error = std::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        if let Some(&v) = self.script.get(self.next) {
            self.next += 1;
            return Ok(v);
        }
        self.counter.try_next_u32()
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(u64::from(self.try_next_u32()?))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        dst.fill(0x5A);
        Ok(())
    }
}

/// How one side is built.
#[derive(Clone, Debug)]
pub struct SideConfig {
    /// Byte order its headers are sent in.
    pub order: WireOrder,
    /// Receive FIFO size.
    pub fifo: usize,
    /// Receive aux storage size.
    pub aux: usize,
    /// Transmit ring size.
    pub tx_ring: usize,
    /// Salt script.
    pub salts: Vec<u32>,
    /// Liveness rules (they run only when the simulator passes time).
    pub liveness: h2msg::Liveness,
}

impl Default for SideConfig {
    fn default() -> Self {
        Self {
            order: WireOrder::Little,
            fifo: 8192,
            aux: 65536,
            tx_ring: 2048 + 65536,
            salts: Vec::new(),
            liveness: h2msg::Liveness::default(),
        }
    }
}

/// The application of one side: called with every event, may send through the connection.
pub type App<I = SimIocom> = Box<dyn FnMut(&mut I, &<I as SimConnection>::Owned)>;

/// One simulated endpoint running connection `I` (the seed era's by default).
pub struct Side<I: SimConnection = SimIocom> {
    /// The connection.
    pub io: I,
    /// Every event it produced, in order.
    pub events: Vec<I::Owned>,
    /// The virtual time of each event in `events`.
    pub event_times: Vec<Instant>,
    /// Every byte it wrote, in order.
    pub wrote: Vec<u8>,
    /// Each write the transport took: when, and the length of `wrote` after it.
    pub write_log: Vec<(Instant, usize)>,
    /// Each read: when, and the bytes received in all after it.
    pub read_log: Vec<(Instant, usize)>,
    /// The driver reads from the transport (false: it stopped reading).
    pub reading: bool,
    /// The driver writes to the transport (false: it stopped writing).
    pub writing: bool,
    app: Option<App<I>>,
}

impl Side<SimIocom> {
    /// A plaintext seed-era side built from `cfg`, with an application.
    pub fn new(cfg: &SideConfig, app: Option<App>) -> Self {
        Self::with_setup(cfg, LinkSetup::plaintext(), app)
    }

    /// A seed-era side in the stream mode of `setup`, built from `cfg`, with an application.
    pub fn with_setup(cfg: &SideConfig, setup: LinkSetup, app: Option<App>) -> Self {
        Self::build(cfg, setup, app)
    }
}

impl Side<SimDmsg> {
    /// A plaintext DMSG side built from `cfg`, with an application.
    pub fn dmsg(cfg: &SideConfig, app: Option<App<SimDmsg>>) -> Self {
        Self::build(cfg, LinkSetup::plaintext(), app)
    }
}

impl<I: SimConnection> Side<I> {
    /// A side in the stream mode of `setup`, built from `cfg`, with an application.
    pub fn build(cfg: &SideConfig, setup: LinkSetup, app: Option<App<I>>) -> Self {
        Self {
            io: I::build(cfg, setup),
            events: Vec::new(),
            event_times: Vec::new(),
            wrote: Vec::new(),
            write_log: Vec::new(),
            read_log: Vec::new(),
            reading: true,
            writing: true,
            app,
        }
    }

    /// When the first event matching `wanted` happened.
    pub fn first_event_time(&self, wanted: impl Fn(&I::Owned) -> bool) -> Option<Instant> {
        self.events
            .iter()
            .zip(&self.event_times)
            .find(|(e, _)| wanted(e))
            .map(|(_, &t)| t)
    }

    /// How and when the link ended, if the side saw `LinkDown`.
    pub fn link_down(&self) -> Option<(Instant, LinkEnd)> {
        self.events
            .iter()
            .zip(&self.event_times)
            .find_map(|(e, &t)| e.link_end().map(|end| (t, end)))
    }

    /// When the transport last took bytes from this side.
    pub fn last_write_time(&self) -> Option<Instant> {
        self.write_log.last().map(|&(t, _)| t)
    }

    /// When this side last received bytes.
    pub fn last_read_time(&self) -> Option<Instant> {
        self.read_log.last().map(|&(t, _)| t)
    }

    /// The bytes received in all.
    pub fn received_len(&self) -> usize {
        self.read_log.last().map_or(0, |&(_, n)| n)
    }

    /// The messages this side wrote, each with the virtual time the transport took its
    /// last byte. Plaintext sides only: the bytes are decoded as they are, by the wire
    /// layer's decoder of the side's revision.
    pub fn sent_messages(&self) -> Vec<(Instant, SimMsg<I>)> {
        use h2msg::ioq::{RxDecoder, RxPoll};
        let room = 1 << 17;
        let mut rx = RxDecoder::<_, _, _, I::Frame>::new_framed(
            vec![0u8; room],
            vec![0u8; room],
            SoftCrc32c,
        )
        .expect("fifo size");
        let mut out = Vec::new();
        let mut start = 0;
        for &(at, end) in &self.write_log {
            let mut rest = &self.wrote[start..end];
            start = end;
            loop {
                match rx.poll() {
                    RxPoll::Message(m) => out.push((at, I::own(&m))),
                    RxPoll::NeedInput if !rest.is_empty() => {
                        let n = rx.feed(rest);
                        rest = &rest[n..];
                    }
                    _ => break,
                }
            }
        }
        out
    }

    /// The messages among the events.
    pub fn messages(&self) -> Vec<&SimMsg<I>> {
        self.events.iter().filter_map(SimEvent::message).collect()
    }

    /// Drains the events, handing each to the application. Returns how many.
    fn handle_events(&mut self, now: Instant) -> usize {
        let mut n = 0;
        while let Some(owned) = self.io.next_event() {
            // Without new input a connection has only so much to say: a flood of events is
            // a connection that repeats itself.
            assert!(n < 100_000, "poll_event does not run dry: last {owned:?}");
            assert!(
                self.events.last().and_then(SimEvent::link_end).is_none(),
                "an event after LinkDown: {owned:?}"
            );
            if let Some(app) = self.app.as_mut() {
                app(&mut self.io, &owned);
            }
            self.events.push(owned);
            self.event_times.push(now);
            n += 1;
        }
        n
    }
}

/// What the fault injector does to the link, per transfer. Probabilities are in parts per
/// thousand.
#[derive(Clone, Debug)]
pub struct Faults {
    /// The seed: the same seed and configuration give the same run.
    pub seed: u64,
    /// Each write and each read moves a size drawn from `1..=max_transfer` (capped by the
    /// pair's `transfer`).
    pub max_transfer: usize,
    /// Chance that a written segment is held back.
    pub delay_per_mille: u32,
    /// The longest a held-back segment waits (drawn from 1 ms up to this).
    pub max_delay: Duration,
    /// Chance that a written segment has one bit flipped in flight.
    pub corrupt_per_mille: u32,
    /// Virtual time one busy step takes.
    pub step_time: Duration,
}

impl Faults {
    /// Sizes varying from one byte to `transfer`, and nothing else.
    pub fn varying_sizes(seed: u64) -> Self {
        Self {
            seed,
            max_transfer: usize::MAX,
            delay_per_mille: 0,
            max_delay: Duration::ZERO,
            corrupt_per_mille: 0,
            step_time: Duration::ZERO,
        }
    }
}

/// The seeded source of [`Faults`] (after smoltcp's `fault_injector`).
pub struct FaultInjector {
    faults: Faults,
    rng: TestRng,
}

impl FaultInjector {
    /// An injector for `faults`, seeded with its seed.
    pub fn new(faults: Faults) -> Self {
        let rng = TestRng(faults.seed);
        Self { faults, rng }
    }

    fn next(&mut self) -> u64 {
        use h2msg::rand_core::TryRng as _;
        match self.rng.try_next_u64() {
            Ok(v) => v,
            Err(never) => match never {},
        }
    }

    /// A value in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn happens(&mut self, per_mille: u32) -> bool {
        per_mille > 0 && self.below(1000) < u64::from(per_mille)
    }

    pub(crate) fn size(&mut self, cap: usize) -> usize {
        let max = self.faults.max_transfer.min(cap).max(1);
        1 + usize::try_from(self.below(max as u64)).unwrap_or(0)
    }

    fn delay(&mut self) -> Duration {
        let max = u64::try_from(self.faults.max_delay.as_millis()).unwrap_or(u64::MAX);
        if max == 0 || !self.happens(self.faults.delay_per_mille) {
            return Duration::ZERO;
        }
        Duration::from_millis(1 + self.below(max))
    }

    /// Flips one bit of `segment` by chance; true if it did.
    fn corrupt(&mut self, segment: &mut [u8]) -> bool {
        if segment.is_empty() || !self.happens(self.faults.corrupt_per_mille) {
            return false;
        }
        let at = usize::try_from(self.below(segment.len() as u64)).unwrap_or(0);
        let bit = self.below(8);
        segment[at] ^= 1 << bit;
        true
    }
}

/// Bytes on their way: they arrive at `arrives_at`.
#[derive(Clone, Debug)]
struct Segment {
    arrives_at: Instant,
    bytes: Vec<u8>,
    delivered: usize,
    corrupted: bool,
}

/// One direction of the simulated link, like a socket's buffers: it takes written bytes up
/// to its capacity and hands them to the reader, in order, once they arrive.
#[derive(Clone, Debug, Default)]
pub struct Wire {
    in_flight: VecDeque<Segment>,
    /// The most bytes in flight (written, not yet read). `None`: the pair's `transfer`.
    pub capacity: Option<usize>,
    /// Cut: it still takes bytes up to its capacity but delivers none.
    pub cut: bool,
    /// Segments the fault injector corrupted.
    pub corrupted: usize,
    /// The first corrupted segment reached the reader (at least partly).
    pub corruption_delivered: bool,
}

impl Wire {
    /// Bytes written and not yet read.
    pub fn in_flight(&self) -> usize {
        self.in_flight
            .iter()
            .map(|s| s.bytes.len() - s.delivered)
            .sum()
    }

    /// Takes `segment`, written at `now`: it arrives `latency` later plus the injector's
    /// delay (if any), never before the segment ahead of it, perhaps with one bit flipped.
    pub(crate) fn push(
        &mut self,
        now: Instant,
        latency: Duration,
        mut segment: Vec<u8>,
        faults: Option<&mut FaultInjector>,
    ) {
        let mut arrives_at = now + latency;
        let mut corrupted = false;
        if let Some(f) = faults {
            arrives_at = arrives_at + f.delay();
            corrupted = f.corrupt(&mut segment);
            self.corrupted += usize::from(corrupted);
        }
        // A byte stream keeps its order: a segment never overtakes the one before.
        if let Some(last) = self.in_flight.back() {
            arrives_at = arrives_at.max(last.arrives_at);
        }
        self.in_flight.push_back(Segment {
            arrives_at,
            bytes: segment,
            delivered: 0,
            corrupted,
        });
    }

    /// Hands the bytes that have arrived by `now`, at most `budget`, to `feed` (which
    /// returns how many it took; fewer means it has no room). Returns the bytes taken.
    pub(crate) fn deliver(
        &mut self,
        now: Instant,
        mut budget: usize,
        mut feed: impl FnMut(&[u8]) -> usize,
    ) -> usize {
        let mut moved = 0;
        while budget > 0 {
            let Some(segment) = self.in_flight.front_mut() else {
                break;
            };
            if segment.arrives_at > now {
                break;
            }
            let rest = &segment.bytes[segment.delivered..];
            let taken = feed(&rest[..rest.len().min(budget)]);
            if taken == 0 {
                break; // the receiver has no room: like a full socket buffer
            }
            segment.delivered += taken;
            self.corruption_delivered |= segment.corrupted;
            budget -= taken;
            moved += taken;
            if segment.delivered == segment.bytes.len() {
                self.in_flight.pop_front();
            }
        }
        moved
    }

    /// Forgets every byte in flight (the connection is gone).
    pub(crate) fn clear(&mut self) {
        self.in_flight.clear();
    }

    /// The next arrival after `now`, if one is waiting and the wire carries bytes.
    pub(crate) fn next_arrival(&self, now: Instant) -> Option<Instant> {
        if self.cut {
            return None;
        }
        self.in_flight
            .iter()
            .map(|s| s.arrives_at)
            .find(|&t| t > now)
    }
}

/// Two sides joined by a simulated byte stream in each direction, on a virtual clock.
pub struct Pair<I: SimConnection = SimIocom> {
    /// The first side.
    pub a: Side<I>,
    /// The second side.
    pub b: Side<I>,
    /// Largest number of bytes moved by one write (and one read).
    pub transfer: usize,
    /// Steps run so far.
    pub steps: u64,
    /// The virtual clock: the `now` every `handle_timeout` gets. Tests may set it, even
    /// backwards (a misbehaving driver clock).
    pub now: Instant,
    /// Bytes from `a` to `b`.
    pub a_to_b: Wire,
    /// Bytes from `b` to `a`.
    pub b_to_a: Wire,
    faults: Option<FaultInjector>,
}

/// Busy steps one settle may take before the simulator calls it a livelock.
const SETTLE_LIMIT: u64 = 10_000_000;

impl<I: SimConnection> Pair<I> {
    /// Two sides and the transfer size; the clock at zero, no faults.
    pub fn new(a: Side<I>, b: Side<I>, transfer: usize) -> Self {
        Self {
            a,
            b,
            transfer: transfer.max(1),
            steps: 0,
            now: Instant::ZERO,
            a_to_b: Wire::default(),
            b_to_a: Wire::default(),
            faults: None,
        }
    }

    /// The same pair with a seeded fault injector.
    #[must_use]
    pub fn with_faults(mut self, faults: Faults) -> Self {
        self.faults = Some(FaultInjector::new(faults));
        self
    }

    /// Cuts or restores both directions.
    pub fn cut_both(&mut self, cut: bool) {
        self.a_to_b.cut = cut;
        self.b_to_a.cut = cut;
    }

    /// One step at `now`: both sides get the time, drain their events, write into their
    /// wire, read what arrived and get the time again. Returns how much moved (events and
    /// bytes).
    pub fn step(&mut self) -> usize {
        let now = self.now;
        self.a.io.handle_timeout(now);
        self.b.io.handle_timeout(now);
        let mut progress = self.a.handle_events(now) + self.b.handle_events(now);
        let cap = self.transfer;
        let mut faults = self.faults.as_mut();
        progress += carry(
            now,
            &mut self.a,
            &mut self.a_to_b,
            &mut self.b,
            cap,
            &mut faults,
        );
        progress += carry(
            now,
            &mut self.b,
            &mut self.b_to_a,
            &mut self.a,
            cap,
            &mut faults,
        );
        // A driver tells the time after its I/O too, so that the bytes it moved count as
        // moving now, not at the next step (which may be later, when busy steps take time).
        self.a.io.handle_timeout(now);
        self.b.io.handle_timeout(now);
        self.steps += 1;
        if progress > 0
            && let Some(f) = self.faults.as_ref()
        {
            self.now = self.now + f.faults.step_time;
        }
        progress
    }

    /// Runs until nothing moves (no bytes, no events) at the current time and returns the
    /// steps taken. Panics if it does not settle within `limit` steps.
    pub fn run(&mut self, limit: u64) -> u64 {
        let start = self.steps;
        loop {
            if self.step() == 0 {
                return self.steps - start;
            }
            assert!(
                self.steps - start < limit,
                "no quiescence after {limit} steps"
            );
        }
    }

    /// When something next happens by itself: the earliest `poll_timeout` of either side
    /// or arrival of a held-back segment, later than `now`.
    pub fn next_wakeup(&self) -> Option<Instant> {
        let now = self.now;
        [
            self.a.io.poll_timeout(),
            self.b.io.poll_timeout(),
            self.a_to_b.next_arrival(now),
            self.b_to_a.next_arrival(now),
        ]
        .into_iter()
        .flatten()
        .filter(|&t| t > now)
        .min()
    }

    /// Runs to virtual time `end`: settles, jumps to the next wakeup, settles again, …;
    /// the clock ends at `end` (or later, if busy steps take time).
    pub fn run_until(&mut self, end: Instant) {
        loop {
            self.run(SETTLE_LIMIT);
            match self.next_wakeup() {
                Some(t) if t <= end => self.now = t,
                _ => {
                    if self.now < end {
                        self.now = end;
                        self.run(SETTLE_LIMIT);
                    }
                    return;
                }
            }
        }
    }

    /// [`run_until`](Self::run_until) `now + d`.
    pub fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }
}

/// One direction for one step: `from` writes into `wire` (as much as the wire has room
/// for, at most one transfer), then `to` reads what has arrived (at most one transfer).
fn carry<I: SimConnection>(
    now: Instant,
    from: &mut Side<I>,
    wire: &mut Wire,
    to: &mut Side<I>,
    transfer: usize,
    faults: &mut Option<&mut FaultInjector>,
) -> usize {
    let mut moved = 0;
    let capacity = wire.capacity.unwrap_or(transfer);
    let room = capacity.saturating_sub(wire.in_flight());
    if from.writing && room > 0 {
        let size = faults.as_mut().map_or(transfer, |f| f.size(transfer));
        let mut segment = vec![0u8; size.min(room)];
        let n = from.io.copy_pending(&mut segment);
        if n > 0 {
            segment.truncate(n);
            from.io.advance_write(n).expect("advance within pending");
            from.wrote.extend_from_slice(&segment);
            from.write_log.push((now, from.wrote.len()));
            wire.push(now, Duration::ZERO, segment, faults.as_deref_mut());
            moved += n;
        }
    }
    if wire.cut || !to.reading {
        return moved;
    }
    let budget = faults.as_mut().map_or(transfer, |f| f.size(transfer));
    let before = to.received_len();
    let taken = wire.deliver(now, budget, |bytes| to.io.feed(bytes));
    if taken > 0 {
        to.read_log.push((now, before + taken));
    }
    moved + taken
}

/// The two ends' sessions of one handshake, as `Handshake::poll` would give them: side A
/// sent `sess_a` and `flags_a`, side B `sess_b` and `flags_b`.
pub fn session_pair(
    sess_a: [u8; 64],
    sess_b: [u8; 64],
    flags_a: u32,
    flags_b: u32,
) -> (Session, Session) {
    let session = Session::from_parts_for_testing;
    (
        session(sess_a, sess_b, flags_a, flags_b),
        session(sess_b, sess_a, flags_b, flags_a),
    )
}

/// A command for transaction tests that no module of the era defines (LNK 0x050).
pub fn echo_cmd() -> h2msg::wire::Cmd {
    use h2msg::wire::{Cmd, MsgFlags, Protocol};
    Cmd::new(MsgFlags::NONE, Protocol::LNK, 0x050, 1).expect("a valid command")
}

/// Both ends' setups for `mode`, negotiated from sessions with `sess_a` and `sess_b` as a
/// handshake between two h2msg nodes configured for `mode` would give them.
pub fn setup_pair(
    mode: h2msg::StreamMode,
    sess_a: [u8; 64],
    sess_b: [u8; 64],
) -> (LinkSetup, LinkSetup) {
    use h2msg::{ModeChoice, StreamMode};
    let choice = match mode {
        StreamMode::Seed => ModeChoice::Seed,
        StreamMode::Cbc => ModeChoice::Cbc,
        StreamMode::Gcm => ModeChoice::Gcm,
    };
    let flags = choice.handshake_flags(usize::MAX);
    let (a, b) = session_pair(sess_a, sess_b, flags, flags);
    let negotiate = |s| LinkSetup::negotiate(s, choice).expect("both ends agree");
    (negotiate(a), negotiate(b))
}
