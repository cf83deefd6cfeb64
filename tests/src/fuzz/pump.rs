//! Two connected iocoms driven by arbitrary operations (`iocom_pump`, `stream_pump`).
//!
//! Built for speed: both connections borrow their memory from one per-thread buffer (no
//! allocation or zeroing per input), the transaction tables are small, bytes move straight
//! from one transmit ring into the other FIFO, the CRC is the hardware one, the invariants
//! are checked as each event arrives instead of by rescanning a growing event log, and
//! small transfers (down to one byte) run for a bounded number of steps per input, after
//! which bytes move in whole pieces.

use std::cell::RefCell;

use h2msg::wire::{Cmd, MsgHeader};
use h2msg::{CounterSalt, Event, Iocom, IocomMemory, LinkSetup, StreamMode};
use h2msg_std::blocking::HwCrc32c;

/// Transaction table capacity: small, so that a full table is reached quickly.
const PUMP_TRANSACTIONS: usize = 16;

/// Side A's memory: the smallest FIFO a gcm link takes (a largest header plus one record),
/// aux storage below the largest aux the operations send (so `AuxStorageTooSmall` ends
/// links), a transmit ring that fills up.
const SMALL_FIFO: usize = 2048 + 4 + 16_384 + 16;
const SMALL_AUX: usize = 1024;
const SMALL_TX_RING: usize = 4096;
/// Side B's memory: room for every message the operations make (and a gcm record).
const ROOMY_FIFO: usize = SMALL_FIFO + 4096;
const ROOMY_AUX: usize = 4096;
const ROOMY_TX_RING: usize = 8192;
const PUMP_MEMORY: usize =
    SMALL_FIFO + SMALL_AUX + SMALL_TX_RING + ROOMY_FIFO + ROOMY_AUX + ROOMY_TX_RING;

/// Largest aux of operation 1 (`15 · 97`).
const SHELL_FILLER: [u8; 15 * 97] = [b'x'; 15 * 97];
/// Largest aux of operation 2 (`15 · 5`).
const ECHO_FILLER: [u8; 15 * 5] = [7; 15 * 5];
/// Steps of the chosen transfer size per input; later steps move whole pieces, so that
/// one-byte transfers of large messages cannot make an input slow.
const SMALL_TRANSFER_STEPS: u32 = 256;
/// Most distinct received requests remembered per side (what operation 3 answers).
const REMEMBERED_REQUESTS: usize = 64;

thread_local! {
    static MEMORY: RefCell<Vec<u8>> = RefCell::new(vec![0; PUMP_MEMORY]);
}

type PumpIocom<'m> = Iocom<&'m mut [u8], CounterSalt, HwCrc32c, PUMP_TRANSACTIONS>;

struct Peer<'m> {
    io: PumpIocom<'m>,
    /// Requests received (commands, not replies), for operation 3 to answer.
    requests: Vec<MsgHeader>,
    link_down: bool,
}

impl<'m> Peer<'m> {
    fn new(setup: LinkSetup, memory: IocomMemory<&'m mut [u8]>) -> Self {
        let mut io = Iocom::new(setup, memory, CounterSalt::default(), HwCrc32c)
            .expect("memory fits every stream mode");
        io.accept(crate::sim::echo_cmd()).expect("room");
        io.accept(Cmd::DBG_SHELL).expect("room");
        Self {
            io,
            requests: Vec::new(),
            link_down: false,
        }
    }

    /// Takes every event; checks that none follows `LinkDown` and that the connection
    /// runs dry. Returns how many there were.
    fn drain_events(&mut self) -> usize {
        let mut count = 0;
        while let Some(event) = self.io.poll_event() {
            assert!(!self.link_down, "event after LinkDown: {event:?}");
            assert!(count < 100_000, "poll_event does not run dry: {event:?}");
            count += 1;
            match event {
                Event::Message { msg, .. } => {
                    let header = *msg.header();
                    if !header.cmd.is_reply()
                        && self.requests.len() < REMEMBERED_REQUESTS
                        && !self.requests.contains(&header)
                    {
                        self.requests.push(header);
                    }
                }
                Event::LinkDown(_) => self.link_down = true,
                _ => {}
            }
            if self.link_down {
                // Link loss has emptied both tables by the time it is said.
                assert!(
                    self.io.local_transactions().is_empty()
                        && self.io.remote_transactions().is_empty(),
                    "transactions left after LinkDown"
                );
            }
        }
        count
    }
}

/// Moves at most `max` pending bytes of `from` into `to`, as a partial write then a read,
/// straight from the transmit ring (no copy, no stack buffer).
fn transfer(from: &mut Peer<'_>, to: &mut Peer<'_>, max: usize) -> usize {
    let [first, _] = from.io.pending();
    let n = first.len().min(max);
    if n == 0 {
        return 0;
    }
    let taken = to.io.feed(&first[..n]);
    if taken > 0 {
        from.io
            .advance_write(taken)
            .expect("advance within pending");
    }
    taken
}

/// How bytes move: `size` per transfer while `small_steps_left` lasts, then whole pieces.
struct Transfer {
    size: usize,
    small_steps_left: u32,
}

impl Transfer {
    fn next_size(&mut self) -> usize {
        if self.small_steps_left == 0 {
            return usize::MAX;
        }
        self.small_steps_left -= 1;
        self.size
    }
}

/// Runs until nothing moves (no bytes, no events); panics if that takes `limit` steps.
/// A side's events are polled again only when bytes reached it or left it (nothing else
/// can give it something new to say).
fn run(a: &mut Peer<'_>, b: &mut Peer<'_>, how: &mut Transfer, limit: u64) {
    let (mut poll_a, mut poll_b) = (true, true);
    for _ in 0..limit {
        let mut events = 0;
        if poll_a {
            events += a.drain_events();
        }
        if poll_b {
            events += b.drain_events();
        }
        let size = how.next_size();
        let a_to_b = transfer(a, b, size);
        let b_to_a = transfer(b, a, size);
        if events + a_to_b + b_to_a == 0 {
            return;
        }
        poll_a = a_to_b + b_to_a > 0;
        poll_b = poll_a;
    }
    panic!("no quiescence after {limit} steps");
}

/// Two connected iocoms driven by arbitrary operations, each byte of `data` one step:
/// the high 4 bits choose the operation, the low 4 bits its argument. Bytes in flight
/// can be corrupted, the link cut, transactions opened, answered and aborted. Checks
/// that nothing panics, that the tables stay within bounds, and that after `LinkDown`
/// a side says nothing more.
pub fn iocom_pump(data: &[u8]) {
    pump_in(StreamMode::Seed, data);
}

/// [`iocom_pump`] with both sides in a protected stream mode, chosen by the first
/// byte (`cbc` if even, else `gcm`): corruption in flight must end the link with a
/// typed error, never a panic or an event after `LinkDown`.
pub fn stream_pump(data: &[u8]) {
    let Some((&mode, ops)) = data.split_first() else {
        return;
    };
    let mode = if mode & 1 == 0 {
        StreamMode::Cbc
    } else {
        StreamMode::Gcm
    };
    pump_in(mode, ops);
}

fn pump_in(mode: StreamMode, data: &[u8]) {
    MEMORY.with(|memory| {
        let mut memory = memory.borrow_mut();
        let rest = memory.as_mut_slice();
        let (a_fifo, rest) = rest.split_at_mut(SMALL_FIFO);
        let (a_aux, rest) = rest.split_at_mut(SMALL_AUX);
        let (a_tx_ring, rest) = rest.split_at_mut(SMALL_TX_RING);
        let (b_fifo, rest) = rest.split_at_mut(ROOMY_FIFO);
        let (b_aux, b_tx_ring) = rest.split_at_mut(ROOMY_AUX);
        let session = |seed: u8| core::array::from_fn(|i| (i as u8).wrapping_mul(29) ^ seed);
        let (setup_a, setup_b) = crate::sim::setup_pair(mode, session(3), session(4));
        let a = Peer::new(
            setup_a,
            IocomMemory {
                fifo: a_fifo,
                aux: a_aux,
                tx_ring: a_tx_ring,
            },
        );
        let b = Peer::new(
            setup_b,
            IocomMemory {
                fifo: b_fifo,
                aux: b_aux,
                tx_ring: b_tx_ring,
            },
        );
        pump_ops(a, b, data);
    });
}

fn pump_ops<'m>(mut a: Peer<'m>, mut b: Peer<'m>, data: &[u8]) {
    let echo = crate::sim::echo_cmd();
    let mut how = Transfer {
        size: 64,
        small_steps_left: SMALL_TRANSFER_STEPS,
    };
    // After a run nothing moves until another operation: a second run in a row is skipped.
    let mut settled = false;
    for &op in data {
        let arg = usize::from(op & 0x0F);
        let is_run = op >> 4 >= 8 || (op >> 4 == 7 && arg < 14);
        if is_run && settled {
            continue;
        }
        settled = is_run;
        let (side, other) = if arg & 1 == 0 {
            (&mut a, &mut b)
        } else {
            (&mut b, &mut a)
        };
        match op >> 4 {
            0 => how.size = 1 + arg * arg * 13,
            1 => {
                let aux = &SHELL_FILLER[..arg * 97];
                let _ = side.io.send(MsgHeader::new(Cmd::DBG_SHELL), &[], aux);
            }
            2 => {
                let _ = side
                    .io
                    .open(echo, &[], &ECHO_FILLER[..arg * 5], arg & 2 == 0);
            }
            3 => {
                let known = side.requests.len().max(1);
                if let Some(h) = side.requests.get(arg % known).copied() {
                    let _ = side.io.reply(&h, arg as u16, b"r", arg & 2 == 0);
                }
            }
            4 => {
                let _ = side.io.abort(echo, arg as u32);
            }
            5 => {
                let cmd = Cmd::from_raw(u32::from(op) << 20 | 1);
                let _ = side.io.send(MsgHeader::new(cmd), &[], &[]);
            }
            6 => {
                // Corrupt one byte in flight.
                let mut buf = [0u8; 16];
                let n = side.io.copy_pending(&mut buf);
                if n > 0 {
                    buf[arg % n] ^= 0x40;
                    let taken = other.io.feed(&buf[..n]);
                    let _ = side.io.advance_write(taken);
                }
            }
            7 if arg == 15 => side.io.end_input(),
            7 if arg == 14 => side.io.transport_failed(),
            _ => run(&mut a, &mut b, &mut how, 100_000),
        }
    }
    a.io.end_input();
    b.io.end_input();
    run(&mut a, &mut b, &mut how, 1_000_000);
    // A side whose transmit queue is full stops reading until it can answer; with the
    // peer's input closed its bytes can never leave, which a real driver learns as a
    // failed write. (This makes the ending certain; what is checked after it is that
    // the link-loss path empties both tables and says LinkDown last.)
    for side in [&mut a, &mut b] {
        if !side.link_down {
            side.io.transport_failed();
        }
    }
    run(&mut a, &mut b, &mut how, 1_000_000);
    for side in [&a, &b] {
        assert!(side.link_down, "link ends");
        assert!(
            side.io.local_transactions().is_empty() && side.io.remote_transactions().is_empty()
        );
    }
}
