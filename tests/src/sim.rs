//! A deterministic in-memory simulator of two connected iocoms (after quinn-proto's
//! `Pair`): bytes move between them in transfers of a configurable size, so every partial
//! read and write happens, and each side's application is a closure that sees every event.

use h2msg::ioq::RxFailure;
use h2msg::rand_core::TryRng;
use h2msg::trans::{TransError, TransKey, TransUpdate};
use h2msg::wire::{MsgHeader, SoftCrc32c, WireOrder};
use h2msg::{Config, CounterSalt, Event, Iocom, IocomMemory, LinkEnd, LinkSetup, Session};

use crate::OwnedMessage;

/// Transaction table capacity of simulated connections.
pub const SIM_TRANSACTIONS: usize = 256;

/// The connection type the simulator runs.
pub type SimIocom = Iocom<Vec<u8>, Salts, SoftCrc32c, SIM_TRANSACTIONS>;

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

/// The application of one side: called with every event, may send through the iocom.
pub type App = Box<dyn FnMut(&mut SimIocom, &OwnedEvent)>;

/// One simulated endpoint.
pub struct Side {
    /// The connection.
    pub io: SimIocom,
    /// Every event it produced, in order.
    pub events: Vec<OwnedEvent>,
    /// Every byte it wrote, in order.
    pub wrote: Vec<u8>,
    app: Option<App>,
}

impl Side {
    /// A plaintext side built from `cfg`, with an application.
    pub fn new(cfg: &SideConfig, app: Option<App>) -> Self {
        Self::with_setup(cfg, LinkSetup::plaintext(), app)
    }

    /// A side in the stream mode of `setup`, built from `cfg`, with an application.
    pub fn with_setup(cfg: &SideConfig, setup: LinkSetup, app: Option<App>) -> Self {
        let memory = IocomMemory {
            fifo: vec![0u8; cfg.fifo],
            aux: vec![0u8; cfg.aux],
            tx_ring: vec![0u8; cfg.tx_ring],
        };
        let config = Config {
            order: cfg.order,
            liveness: cfg.liveness,
        };
        let io = Iocom::with_config(
            setup,
            memory,
            Salts::scripted(&cfg.salts),
            SoftCrc32c,
            config,
        )
        .expect("memory fits the mode");
        Self {
            io,
            events: Vec::new(),
            wrote: Vec::new(),
            app,
        }
    }

    /// The messages among the events.
    pub fn messages(&self) -> Vec<&OwnedMessage> {
        self.events.iter().filter_map(OwnedEvent::message).collect()
    }

    /// Drains the events, handing each to the application. Returns how many.
    fn handle_events(&mut self) -> usize {
        let mut n = 0;
        while let Some(event) = self.io.poll_event() {
            // Without new input a connection has only so much to say: a flood of events is
            // a connection that repeats itself.
            assert!(n < 100_000, "poll_event does not run dry: last {event:?}");
            let owned = OwnedEvent::of_event(&event);
            if let Some(app) = self.app.as_mut() {
                app(&mut self.io, &owned);
            }
            self.events.push(owned);
            n += 1;
        }
        n
    }
}

/// Two sides joined by a simulated byte stream in each direction.
pub struct Pair {
    /// The first side.
    pub a: Side,
    /// The second side.
    pub b: Side,
    /// Largest number of bytes moved by one write (and one read).
    pub transfer: usize,
    /// Steps run so far (the simulator's clock).
    pub steps: u64,
}

impl Pair {
    /// Two sides and the transfer size.
    pub fn new(a: Side, b: Side, transfer: usize) -> Self {
        Self {
            a,
            b,
            transfer: transfer.max(1),
            steps: 0,
        }
    }

    /// Runs until nothing moves (no bytes, no events) and returns the steps taken.
    /// Panics if it does not settle within `limit` steps.
    pub fn run(&mut self, limit: u64) -> u64 {
        let start = self.steps;
        loop {
            let mut progress = self.a.handle_events() + self.b.handle_events();
            progress += transfer(&mut self.a, &mut self.b, self.transfer);
            progress += transfer(&mut self.b, &mut self.a, self.transfer);
            self.steps += 1;
            if progress == 0 {
                return self.steps - start;
            }
            assert!(
                self.steps - start < limit,
                "no quiescence after {limit} steps"
            );
        }
    }
}

/// Moves at most `max` pending bytes of `from` into `to`, as a partial write then a read.
fn transfer(from: &mut Side, to: &mut Side, max: usize) -> usize {
    let mut chunk = vec![0u8; max];
    let n = from.io.copy_pending(&mut chunk);
    if n == 0 {
        return 0;
    }
    let taken = to.io.feed(&chunk[..n]);
    if taken == 0 {
        return 0; // the receiver has no room: like a full socket buffer
    }
    from.io
        .advance_write(taken)
        .expect("advance within pending");
    from.wrote.extend_from_slice(&chunk[..taken]);
    taken
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
    let flags = choice.handshake_flags();
    let (a, b) = session_pair(sess_a, sess_b, flags, flags);
    let negotiate = |s| LinkSetup::negotiate(s, choice).expect("both ends agree");
    (negotiate(a), negotiate(b))
}
