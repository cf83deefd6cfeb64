//! One iocom whose peer is the fuzzer (`hostile_peer`): the peer's bytes are written
//! straight into the connection — any frames, in any order — while the application opens,
//! answers and aborts transactions and sets deadlines, and time moves in fuzzer-chosen
//! steps.

use std::cell::RefCell;
use std::time::Duration;

use h2msg::wire::{Cmd, MsgFlags, MsgHeader, Protocol, SoftCrc32c, WireOrder};
use h2msg::{Config, CounterSalt, Event, Instant, Iocom, IocomMemory, LinkSetup, Liveness};

/// Transaction table capacity: small, so that a full table is reached quickly.
const NODE_TRANSACTIONS: usize = 16;
/// The node's memory: aux storage smaller than the largest aux, so `AuxStorageTooSmall`
/// happens; bigger storage can be lent then.
const NODE_FIFO: usize = 4096;
const NODE_AUX: usize = 2048;
const NODE_TX_RING: usize = 4096;
const LENT_AUX: usize = 65536;
const NODE_MEMORY: usize = NODE_FIFO + NODE_AUX + NODE_TX_RING + LENT_AUX;
/// Most peer bytes waiting to be fed: the peer cannot make the test's memory grow.
const PEER_BACKLOG_MAX: usize = 1 << 16;
/// Most requests and opened transactions remembered for the application's calls.
const REMEMBERED: usize = 32;
/// Time steps (ms) the fuzzer chooses from: around the short liveness rules' edges, and
/// past the default ones.
const TIME_STEPS_MS: [u64; 16] = [
    0, 1, 10, 100, 499, 500, 999, 1000, 1001, 1500, 2000, 2001, 5000, 30_000, 60_000, 61_000,
];
/// Largest aux the application sends.
const APP_FILLER: [u8; 15 * 40] = [b'a'; 15 * 40];

thread_local! {
    static MEMORY: RefCell<Vec<u8>> = RefCell::new(vec![0; NODE_MEMORY]);
}

type NodeIocom<'m> = Iocom<&'m mut [u8], CounterSalt, SoftCrc32c, NODE_TRANSACTIONS>;

/// Reads the input front to back; zeros once it is used up.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }
    fn take(&mut self, n: usize) -> &[u8] {
        let (taken, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        taken
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

struct Node<'m> {
    io: NodeIocom<'m>,
    /// Storage to lend after `AuxStorageTooSmall`, if the input says so.
    lend: Option<&'m mut [u8]>,
    requests: Vec<MsgHeader>,
    opened: Vec<MsgHeader>,
    link_down: bool,
    /// The peer's bytes not yet taken by the node.
    backlog: Vec<u8>,
    now: u64,
}

impl Node<'_> {
    /// Takes every event; checks that none follows `LinkDown` and that they run dry.
    fn drain_events(&mut self) {
        let mut count = 0;
        let mut lend_now = false;
        while let Some(event) = self.io.poll_event() {
            assert!(!self.link_down, "event after LinkDown: {event:?}");
            assert!(count < 100_000, "poll_event does not run dry: {event:?}");
            count += 1;
            match event {
                Event::Message { msg, .. } => {
                    let header = *msg.header();
                    if !header.cmd.is_reply() && self.requests.len() < REMEMBERED {
                        self.requests.push(header);
                    }
                }
                Event::AuxStorageTooSmall { .. } => lend_now = self.lend.is_some(),
                Event::LinkDown(_) => self.link_down = true,
                _ => {}
            }
            if lend_now && let Some(storage) = self.lend.take() {
                lend_now = false;
                if let Err(refused) = self.io.replace_aux_storage(storage) {
                    self.lend = Some(refused);
                }
            }
            if self.link_down {
                assert!(
                    self.io.local_transactions().is_empty()
                        && self.io.remote_transactions().is_empty(),
                    "transactions left after LinkDown"
                );
            }
        }
    }

    /// Feeds at most `max` backlog bytes; returns how many the node took.
    fn feed(&mut self, max: usize) -> usize {
        let n = max.min(self.backlog.len());
        let taken = self.io.feed(&self.backlog[..n]);
        self.backlog.drain(..taken);
        taken
    }

    /// The peer reads at most `max` of the node's pending bytes.
    fn peer_reads(&mut self, max: usize) {
        let [first, second] = self.io.pending();
        let n = (first.len() + second.len()).min(max);
        self.io.advance_write(n).expect("within pending");
    }

    fn tick(&mut self, step_ms: u64) {
        self.now += step_ms;
        let now = Instant::from_millis(self.now);
        self.io.handle_timeout(now);
        // A driver sleeps until poll_timeout: at or before now it would spin.
        if let Some(next) = self.io.poll_timeout() {
            assert!(next > now, "poll_timeout {next:?} is not after now {now:?}");
        }
    }

    fn queue_peer_bytes(&mut self, bytes: &[u8]) {
        let room = PEER_BACKLOG_MAX.saturating_sub(self.backlog.len());
        self.backlog
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}

/// A command for the peer's frame: those the node accepts, the link's own, an unknown
/// one, any raw value, one with an extended header.
fn peer_cmd(choice: u8, input: &mut Input<'_>) -> Cmd {
    let echo = crate::sim::echo_cmd();
    match choice & 7 {
        0 => echo,
        1 => Cmd::DBG_SHELL,
        2 => Cmd::LNK_PING,
        3 => Cmd::LNK_ERROR,
        4 => Cmd::LNK_PAD,
        5 => Cmd::new(MsgFlags::NONE, Protocol::DBG, 0x077, 1).expect("valid"),
        6 => Cmd::from_raw(input.u32()),
        _ => Cmd::from_raw(echo.raw() + 1),
    }
}

/// A well-formed frame built from the input: command, flags, msgid, error, aux size; its
/// CRCs right unless `damage` flips one byte.
fn peer_frame(op_arg: u8, order: WireOrder, input: &mut Input<'_>) -> Vec<u8> {
    let cmd = peer_cmd(op_arg, input);
    let flags = input.byte();
    let cmd = Cmd::from_raw(cmd.raw() & 0x00FF_FFFF | u32::from(flags & 0xF8) << 24);
    let mut header = MsgHeader::new(cmd);
    let msgid = input.byte();
    header.msgid = if msgid >= 0xF0 {
        input.u32()
    } else {
        u32::from(msgid & 7)
    };
    header.error = u16::from(input.byte() & 0x3F);
    let aux_len = usize::from(input.byte()) * 29;
    let aux: Vec<u8> = (0..aux_len).map(|i| i as u8 ^ 0x5A).collect();
    let ext_len = usize::from(cmd.size_units()).saturating_sub(1) * 32;
    let ext = vec![0u8; ext_len];
    let mut frame = match header.seal(order, &ext, &aux, &SoftCrc32c) {
        Ok(base) => base.to_vec(),
        // Sizes no sender can make: the raw header, as it is.
        Err(_) => header.to_bytes(order).to_vec(),
    };
    frame.extend_from_slice(&ext);
    frame.extend_from_slice(&aux);
    frame.resize(frame.len().next_multiple_of(32), 0);
    if op_arg & 8 != 0 {
        let at = usize::from(input.byte()) % frame.len();
        frame[at] ^= 1 << (input.byte() & 7);
    }
    frame
}

/// Byte 0 configures: bit 0 raw peer bytes (else well-formed frames built from the
/// input), bits 1–2 the liveness rules (off, short, default, keepalive without the dead
/// rule), bit 3 the node's header order, bit 4 the peer's, bit 5 lend big aux storage when
/// asked. Then each byte is an operation (high 4 bits) with its argument (low 4 bits),
/// some taking more bytes. Checks: no panic, no event after `LinkDown`, `poll_event` runs
/// dry, `poll_timeout` never at or before `now` after `handle_timeout`, tables empty at
/// the end, memory bounded.
pub fn hostile_peer(data: &[u8]) {
    let Some((&config, ops)) = data.split_first() else {
        return;
    };
    let raw_bytes = config & 1 != 0;
    let short = |ms| Some(Duration::from_millis(ms));
    let liveness = match config >> 1 & 3 {
        0 => Liveness::OFF,
        1 => Liveness {
            idle: short(1000),
            dead: short(1000),
            stall: short(2000),
        },
        2 => Liveness::default(),
        _ => Liveness {
            idle: short(1000),
            dead: None,
            stall: short(2000),
        },
    };
    let order_of = |bit: bool| {
        if bit {
            WireOrder::Big
        } else {
            WireOrder::Little
        }
    };
    let node_config = Config {
        order: order_of(config & 8 != 0),
        liveness,
    };
    let peer_order = order_of(config & 0x10 != 0);
    let lend_storage = config & 0x20 != 0;

    MEMORY.with(|memory| {
        let mut memory = memory.borrow_mut();
        let (fifo, rest) = memory.split_at_mut(NODE_FIFO);
        let (aux, rest) = rest.split_at_mut(NODE_AUX);
        let (tx_ring, lent) = rest.split_at_mut(NODE_TX_RING);
        let mut io = Iocom::with_config(
            LinkSetup::plaintext(),
            IocomMemory { fifo, aux, tx_ring },
            CounterSalt::default(),
            SoftCrc32c,
            node_config,
        )
        .expect("memory fits the plaintext mode");
        io.accept(crate::sim::echo_cmd()).expect("room");
        io.accept(Cmd::DBG_SHELL).expect("room");
        let mut node = Node {
            io,
            lend: lend_storage.then_some(lent),
            requests: Vec::new(),
            opened: Vec::new(),
            link_down: false,
            backlog: Vec::new(),
            now: 0,
        };
        run_ops(&mut node, Input(ops), raw_bytes, peer_order);
    });
}

fn run_ops(node: &mut Node<'_>, mut input: Input<'_>, raw_bytes: bool, peer_order: WireOrder) {
    let echo = crate::sim::echo_cmd();
    while !input.is_empty() {
        let op = input.byte();
        let arg = op & 0x0F;
        let index = usize::from(arg);
        match op >> 4 {
            0..=5 => {
                if raw_bytes {
                    let n = 1 + usize::from(input.byte()) * usize::from(arg + 1);
                    let bytes = input.take(n).to_vec();
                    node.queue_peer_bytes(&bytes);
                } else {
                    let frame = peer_frame(arg, peer_order, &mut input);
                    node.queue_peer_bytes(&frame);
                }
                node.feed(usize::MAX);
            }
            6 => {
                node.feed(1 + usize::from(input.byte()) * 16);
            }
            7 => node.tick(TIME_STEPS_MS[index]),
            8 => {
                let cmd = if arg & 1 == 0 { echo } else { Cmd::DBG_SHELL };
                if let Ok(header) = node
                    .io
                    .open(cmd, &[], &APP_FILLER[..index * 40], arg & 2 == 0)
                    && node.opened.len() < REMEMBERED
                {
                    node.opened.push(header);
                }
            }
            9 => {
                let known = node.requests.len().max(1);
                if let Some(request) = node.requests.get(index % known).copied() {
                    let _ = node
                        .io
                        .reply(&request, u16::from(arg), b"reply", arg & 1 == 0);
                }
            }
            10 => {
                let known = node.opened.len().max(1);
                match node.opened.get(index % known).copied() {
                    Some(opened) if arg & 1 == 0 => {
                        let _ = node.io.abort(opened.cmd, opened.msgid);
                    }
                    _ => {
                        let _ = node.io.abort(echo, u32::from(arg));
                    }
                }
            }
            11 => {
                let known = node.opened.len().max(1);
                if let Some(opened) = node.opened.get(index % known).copied() {
                    let at = Instant::from_millis(node.now + u64::from(arg) * 250);
                    let _ = node.io.set_deadline(&opened, at);
                }
            }
            12 if arg == 0 => node.io.write_would_block(),
            12 => node.peer_reads(usize::from(input.byte()) * 16 * index),
            13 if arg == 15 => node.io.end_input(),
            13 if arg == 14 => node.io.transport_failed(),
            13 => {
                node.peer_reads(usize::MAX);
                node.feed(usize::MAX);
            }
            _ => {}
        }
        node.drain_events();
    }
    // The end: the peer's input ends after what it has sent; what remains is read.
    for _ in 0..1000 {
        node.peer_reads(usize::MAX);
        let taken = node.feed(usize::MAX);
        node.drain_events();
        if taken == 0 {
            break;
        }
    }
    node.io.end_input();
    node.peer_reads(usize::MAX);
    node.drain_events();
    if !node.link_down {
        node.io.transport_failed();
        node.drain_events();
    }
    assert!(node.link_down, "the link ends");
    assert!(
        node.io.local_transactions().is_empty() && node.io.remote_transactions().is_empty(),
        "transactions left at the end"
    );
}
