//! # h2msg-kshim — the h2msg core behind a C ABI, for kernel modules
//!
//! One connection (an *iocom*) lives in one memory block the kernel allocates:
//! `h2msg_iocom_size()` bytes aligned to `h2msg_iocom_align()`. The state sits at the
//! start; the receive FIFO (8 KiB), the aux buffer (64 KiB) and the transmit ring
//! (66 KiB) follow. Nothing is allocated and nothing large goes on the stack.
//!
//! The kernel moves the bytes: it feeds what the socket delivered
//! ([`h2msg_iocom_feed`], or [`h2msg_iocom_read_buf`] + [`h2msg_iocom_commit_read`]),
//! writes what [`h2msg_iocom_pending`] lists and reports it with
//! [`h2msg_iocom_advance_write`], and waits for what [`h2msg_iocom_wait_for`] says. The
//! application side polls events ([`h2msg_iocom_poll`]) and sends
//! ([`h2msg_iocom_open`], [`h2msg_iocom_reply`], [`h2msg_iocom_send`],
//! [`h2msg_iocom_abort`]).
//!
//! Every function returns an `int`: 0 (`H2MSG_OK`), a spec IOQ code (1–14), or a negative
//! `H2MSG_ERR_*` for a call refused before anything changed. Every pointer is checked for
//! NULL and alignment (and against the iocom's own block where it would alias what the
//! call changes), every length against its limit. The handshake is not here: the
//! kernel receives sockets whose handshake userland completed (see the README).
//!
//! The C header `include/h2msg.h` is generated from this crate by cbindgen. Build the
//! static library with the `panic-handler` feature: it defines the `#[panic_handler]`,
//! which calls the kernel's `h2msg_kernel_panic` and which no export can reach.
//!
//! An iocom is not thread-safe: the kernel serialises calls on one iocom (a lock per
//! link). The kernel's callbacks must not call back into h2msg; a call on the same iocom
//! from inside one is refused (`H2MSG_ERR_BUSY`).
//!
//! With the `linux-attach` feature (std, Linux only) the crate also has
//! `linux_attach`: user space's call that hands a socket to `/dev/h2msg`. The static
//! library for a kernel is built without it.
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]

// std's panic handler and ours would collide; the two builds are for different worlds.
#[cfg(all(feature = "linux-attach", feature = "panic-handler"))]
compile_error!(
    "features `linux-attach` (std, user space) and `panic-handler` (the kernel's static \
     library) exclude each other"
);

#[cfg(all(feature = "linux-attach", target_os = "linux"))]
extern crate std;

mod abi;
mod block;
mod kernel;
#[cfg(all(feature = "linux-attach", target_os = "linux"))]
#[cfg_attr(docsrs, doc(cfg(all(feature = "linux-attach", target_os = "linux"))))]
pub mod linux_attach;

use core::ffi::{c_int, c_void};
use core::ops::{Deref, DerefMut};
use core::ptr::{self, NonNull};
use core::slice;
use core::time::Duration;

use h2msg::wire::limits::{BASE_HEADER_LEN, MSGAUX_MAX, MSGHDR_MAX};
use h2msg::wire::{Cmd, MsgHeader};
use h2msg::{Config, Instant, IocomMemory, LinkSetup, Liveness};

pub use abi::*;
pub use block::H2msgIocom;
use block::{
    AUX_LEN, AUX_OFFSET, BUSY, CallerBytes, FIFO_LEN, FIFO_OFFSET, IOCOM_SIZE, IocomState, LIVE,
    ReadOffer, ShimIocom, TX_RING_LEN, TX_RING_OFFSET, send_error_code,
};
use kernel::{KernelCrc, KernelRandom};

/// Largest extended header: the largest header less the base header.
const EXT_MAX: usize = MSGHDR_MAX - BASE_HEADER_LEN;

/// The live iocom behind a handle, for any call but `read_buf` and `commit_read`: the
/// room the last `read_buf` offered is withdrawn, so a later `commit_read` is refused
/// (`H2MSG_ERR_STALE`). Most calls could move or stop what that room is (`poll` releases
/// the last message and may reset or compact the FIFO, `feed` fills it, `end_input`,
/// `transport_failed`, `close` stop input, `fini` wipes the block); the rest (sending,
/// `accept`, `pending`, `advance_write`, `write_would_block`, `wait_for`) do not touch
/// the receive side, but withdrawing there too keeps the rule one sentence ("valid until
/// the next call"), and a kernel that holds its link lock from `read_buf` through
/// `commit_read` makes no call in between.
///
/// # Safety
/// As [`live_keeping_offer`].
unsafe fn live<'a>(io: *mut H2msgIocom) -> Result<Busy<'a>, c_int> {
    // SAFETY: forwarded contract.
    let mut iocom = unsafe { live_keeping_offer(io) }?;
    iocom.read_offer = None;
    Ok(iocom)
}

/// The live iocom behind a handle, its `read_buf` offer untouched, marked busy until the
/// returned guard is dropped.
///
/// # Safety
/// `io` must be NULL, or point to memory that `h2msg_iocom_init` set up (or at least to
/// `size_of::<H2msgIocom>()` initialised bytes); the marker then catches handles that
/// were never set up or were finished, and calls made from inside a call.
unsafe fn live_keeping_offer<'a>(io: *mut H2msgIocom) -> Result<Busy<'a>, c_int> {
    if io.is_null() {
        return Err(H2MSG_ERR_NULL);
    }
    if !io.is_aligned() {
        return Err(H2MSG_ERR_ALIGN);
    }
    // A plain u64, reached without forming a reference to a value that may not be an
    // iocom, nor to the state a running call may hold `&mut` of.
    // SAFETY: non-null and aligned; a place projection, nothing is read yet.
    let marker = unsafe { &raw mut (*io).live };
    // SAFETY: non-null and aligned; the caller vouches for initialised bytes.
    let busy = match unsafe { marker.read() } {
        LIVE => false,
        BUSY => true,
        _ => return Err(H2MSG_ERR_HANDLE),
    };
    // SAFETY: as the marker: `home` follows it in the state `init` wrote, outside `state`.
    if unsafe { (&raw const (*io).home).read() } != io.addr() {
        return Err(H2MSG_ERR_HANDLE); // a moved copy: its slices point at the original
    }
    if busy {
        return Err(H2MSG_ERR_BUSY);
    }
    // SAFETY: as the read; calls on one iocom are serialised (one thread), so nothing
    // else looks at the marker between the read and this write.
    unsafe { marker.write(BUSY) };
    // SAFETY: the marker said `h2msg_iocom_init` wrote an iocom here and no call holds
    // its state (that call would have left BUSY); now BUSY, no other call will form a
    // reference to it until the guard restores LIVE. The reference covers `state` only.
    let state = unsafe { &mut (*io).state };
    Ok(Busy { marker, state })
}

/// A call's hold on an iocom: `&mut` of its state while the marker says BUSY; dropping
/// it says LIVE again.
struct Busy<'a> {
    marker: *mut u64,
    state: &'a mut IocomState,
}

impl Deref for Busy<'_> {
    type Target = IocomState;
    fn deref(&self) -> &IocomState {
        self.state
    }
}

impl DerefMut for Busy<'_> {
    fn deref_mut(&mut self) -> &mut IocomState {
        self.state
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        // SAFETY: `marker` is the aligned marker of the block `live_keeping_offer` checked,
        // which stays valid while the call runs; it is not covered by `state`.
        unsafe { self.marker.write(LIVE) }
    }
}

/// Checks a pointer from C: not NULL, aligned for `T`.
fn checked_ptr<T>(ptr: *mut T) -> Result<*mut T, c_int> {
    if ptr.is_null() {
        Err(H2MSG_ERR_NULL)
    } else if !ptr.is_aligned() {
        Err(H2MSG_ERR_ALIGN)
    } else {
        Ok(ptr)
    }
}

/// A part of the iocom's block, as offsets from its start: `(from, to)`.
type Part = (usize, usize);
/// The whole block.
const WHOLE_BLOCK: Part = (0, IOCOM_SIZE);
/// The state: what `&mut H2msgIocom` covers.
const STATE: Part = (0, FIFO_OFFSET);
/// The transmit ring: what sending writes.
const TX_RING: Part = (TX_RING_OFFSET, IOCOM_SIZE);

/// Whether `len` bytes at `start` share a byte with `part` of the block at `io`. Plain
/// address arithmetic: nothing is dereferenced.
fn overlaps(io: *const H2msgIocom, part: Part, start: *const u8, len: usize) -> bool {
    let (a, b) = (start.addr(), start.addr().saturating_add(len));
    let (from, to) = (
        io.addr().saturating_add(part.0),
        io.addr().saturating_add(part.1),
    );
    len > 0 && a < to && from < b
}

/// Checks a pointer C hands for `count` values of `T` that the call writes (or reads
/// whole): as [`checked_ptr`], and `H2MSG_ERR_OVERLAP` if any of it lies in the block.
fn checked_outside<T>(io: *const H2msgIocom, ptr: *mut T, count: usize) -> Result<*mut T, c_int> {
    let ptr = checked_ptr(ptr)?;
    if overlaps(
        io,
        WHOLE_BLOCK,
        ptr.cast(),
        size_of::<T>().saturating_mul(count),
    ) {
        return Err(H2MSG_ERR_OVERLAP);
    }
    Ok(ptr)
}

/// Where the ext and aux bytes of `send`, `open` and `reply` must not be: the state and
/// the transmit ring. The receive FIFO and the aux buffer are allowed, so that a message
/// just polled (its `ext` and `aux` point there) can be relayed without a copy. That is
/// sound because the core's `send`, `open`, `reply` and `abort` write only the transmit
/// ring (`TxQueue::enqueue`) and the transaction tables in the state, and never view the
/// FIFO or the aux buffer (their `CallerBytes` are not asked for a slice), so no `&mut`
/// of those bytes exists while the input slice lives; the `&mut H2msgIocom` covers the
/// state alone. The message's bytes also stay put: the decoder releases them only at
/// the next `read_buf`, `feed` or `poll`.
const SEND_FORBIDDEN: &[Part] = &[STATE, TX_RING];

/// `len` bytes at `bytes` as a slice; NULL is allowed when `len` is 0. A length above
/// `max` is FIELD (the size limits of §3.5); bytes in one of the `forbidden` parts of the
/// block at `io` are `H2MSG_ERR_OVERLAP`.
///
/// # Safety
/// When `len` is not 0 and at most `max`, `bytes` must be valid for reads of `len` bytes
/// until the slice is dropped, and nothing may write them meanwhile: parts of the block
/// the call's core function writes must be among `forbidden`.
unsafe fn bytes_in<'a>(
    io: *const H2msgIocom,
    bytes: *const u8,
    len: usize,
    max: usize,
    forbidden: &[Part],
) -> Result<&'a [u8], c_int> {
    if len == 0 {
        return Ok(&[]);
    }
    if bytes.is_null() {
        return Err(H2MSG_ERR_NULL);
    }
    if len > max || isize::try_from(len).is_err() {
        return Err(H2MSG_IOQ_FIELD);
    }
    if forbidden.iter().any(|&part| overlaps(io, part, bytes, len)) {
        return Err(H2MSG_ERR_OVERLAP);
    }
    // SAFETY: non-null, `u8` needs no alignment, the length fits `isize`, and the caller
    // vouches for `len` readable bytes that nothing writes while the slice lives.
    Ok(unsafe { slice::from_raw_parts(bytes, len) })
}

/// The `int` of a step that either worked or has a code.
fn status(result: Result<(), c_int>) -> c_int {
    result.err().unwrap_or(H2MSG_OK)
}

// ----- life cycle -------------------------------------------------------------------

/// Bytes of memory one iocom needs (state and buffers).
#[unsafe(no_mangle)]
pub extern "C" fn h2msg_iocom_size() -> usize {
    IOCOM_SIZE
}

/// The alignment that memory needs.
#[unsafe(no_mangle)]
pub extern "C" fn h2msg_iocom_align() -> usize {
    align_of::<H2msgIocom>()
}

/// Sets up an iocom in `mem` (`len` bytes, at least `h2msg_iocom_size()`, aligned to
/// `h2msg_iocom_align()`), with the kernel services of `ops` (copied; `random_bytes`
/// required). The block is zeroed first. On success `*io_out` is the handle, which is
/// `mem` itself. Use it after a completed handshake; the iocom accepts `LNK_PING`
/// replies, see `h2msg_iocom_accept` for commands.
///
/// Returns `H2MSG_OK`, `H2MSG_ERR_NULL`, `H2MSG_ERR_ALIGN`, `H2MSG_ERR_SHORT` or
/// `H2MSG_IOQ_FIELD` (the core refused the buffer sizes; cannot happen with this build's
/// sizes, which are above the core's minimums, but the code path exists).
///
/// The handle is tied to `mem`'s address: a copy of the block elsewhere is refused
/// (`H2MSG_ERR_HANDLE`).
///
/// # Safety
/// `mem` must be valid for reads and writes of `len` bytes and stay so, unmoved and
/// untouched by anything else, until `h2msg_iocom_fini`. `ops` must point to a table
/// whose functions are safe to call as documented there for as long as the iocom lives.
/// `io_out` must be valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn h2msg_iocom_init(
    mem: *mut c_void,
    len: usize,
    ops: *const H2msgKernelOps,
    io_out: *mut *mut H2msgIocom,
) -> c_int {
    // SAFETY: forwarded contract.
    status(unsafe { init(mem, len, ops, Liveness::default(), io_out) })
}

/// As `h2msg_iocom_init`, with the liveness rules given in milliseconds, 0 turning a rule
/// off: `idle_ms` without a received byte sends a keepalive `LNK_PING` (0: no pings);
/// `dead_ms` more without one — or, with no pings, `dead_ms` after the last received
/// byte — ends the link with `H2MSG_DOWN_PEER_TIMEOUT`; pending bytes that make no write progress for `stall_ms`
/// end it with `H2MSG_DOWN_WRITE_STALLED`. `h2msg_iocom_init` uses 30000, 30000, 60000.
/// All three 0: the iocom never needs the time (the 2012 C behaviour). The rules run
/// only at `h2msg_iocom_timeout`.
///
/// # Safety
/// As [`h2msg_iocom_init`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn h2msg_iocom_init_liveness(
    mem: *mut c_void,
    len: usize,
    ops: *const H2msgKernelOps,
    idle_ms: u64,
    dead_ms: u64,
    stall_ms: u64,
    io_out: *mut *mut H2msgIocom,
) -> c_int {
    let rule = |ms: u64| (ms != 0).then(|| Duration::from_millis(ms));
    let liveness = Liveness {
        idle: rule(idle_ms),
        dead: rule(dead_ms),
        stall: rule(stall_ms),
    };
    // SAFETY: forwarded contract.
    status(unsafe { init(mem, len, ops, liveness, io_out) })
}

/// # Safety
/// As [`h2msg_iocom_init`].
unsafe fn init(
    mem: *mut c_void,
    len: usize,
    ops: *const H2msgKernelOps,
    liveness: Liveness,
    io_out: *mut *mut H2msgIocom,
) -> Result<(), c_int> {
    let handle = checked_ptr(mem.cast::<H2msgIocom>())?;
    let io_out = checked_ptr(io_out)?;
    if ops.is_null() {
        return Err(H2MSG_ERR_NULL);
    }
    if !ops.is_aligned() {
        return Err(H2MSG_ERR_ALIGN);
    }
    if len < IOCOM_SIZE {
        return Err(H2MSG_ERR_SHORT);
    }
    // SAFETY: non-null and aligned; the caller vouches for the table.
    let ops = unsafe { ops.read() };
    let random_bytes = ops.random_bytes.ok_or(H2MSG_ERR_NULL)?;
    let base = NonNull::new(mem.cast::<u8>()).ok_or(H2MSG_ERR_NULL)?;
    // SAFETY: the caller vouches for `len` ≥ IOCOM_SIZE writable bytes at `mem`. Zeroing
    // makes every byte the core will view initialised.
    unsafe { base.write_bytes(0, IOCOM_SIZE) };
    // SAFETY: the three ranges lie inside the block (IOCOM_SIZE ends at the ring's end),
    // after the state and apart from each other; the block is initialised, and the caller
    // leaves it to us until `h2msg_iocom_fini`.
    let memory = unsafe {
        IocomMemory {
            fifo: CallerBytes::new(base.add(FIFO_OFFSET), FIFO_LEN),
            aux: CallerBytes::new(base.add(AUX_OFFSET), AUX_LEN),
            tx_ring: CallerBytes::new(base.add(TX_RING_OFFSET), TX_RING_LEN),
        }
    };
    // SAFETY: the caller vouches for the table's functions for the iocom's life.
    let (salt, crc) = unsafe { (KernelRandom::new(random_bytes), KernelCrc::new(ops.crc32c)) };
    // Moved straight from the constructor's result into the block, field by field, so the
    // 2 KB state is not copied through more stack temporaries (kernel stacks are small).
    // The sizes are above the core's minimums, so `new` cannot fail; it is not unwrapped.
    // The kernel gets the link after user space's handshake (seed mode, see README.md).
    let config = Config {
        liveness,
        ..Config::default()
    };
    match ShimIocom::with_config(LinkSetup::plaintext(), memory, salt, crc, config) {
        // SAFETY: `handle` is aligned and the block holds `size_of::<H2msgIocom>()` ≤
        // FIFO_OFFSET bytes; each write goes to one field without reading the old bytes.
        Ok(io) => unsafe {
            (&raw mut (*handle).state.io).write(io);
            (&raw mut (*handle).state.ops).write(ops);
            (&raw mut (*handle).state.closed_locally).write(false);
            (&raw mut (*handle).state.read_offer).write(None);
            (&raw mut (*handle).home).write(handle.addr());
            (&raw mut (*handle).live).write(LIVE);
        },
        Err(_) => return Err(H2MSG_IOQ_FIELD),
    }
    // SAFETY: checked non-null and aligned; the caller vouches for it being writable.
    unsafe { io_out.write(handle) };
    Ok(())
}

/// Ends an iocom: the `h2msg_iocom_size()` bytes of its block are zeroed (with writes the
/// compiler keeps, so no message data is left in memory the kernel frees), the handle is
/// refused from now on and `mem` is the caller's again.
/// Returns `H2MSG_OK`, `H2MSG_ERR_NULL`, `H2MSG_ERR_ALIGN`, `H2MSG_ERR_HANDLE` or (from
/// inside a kernel callback; every function can return it) `H2MSG_ERR_BUSY`.
///
/// # Safety
/// `io` must be NULL or a handle from `h2msg_iocom_init` whose memory is still valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn h2msg_iocom_fini(io: *mut H2msgIocom) -> c_int {
    // SAFETY: forwarded contract.
    status(unsafe { live(io) }.map(|iocom| {
        // No reference into the block may outlive this: the whole block is wiped below,
        // the marker included (the guard would write LIVE back).
        core::mem::forget(iocom);
        // SAFETY: `live` checked that `io` is an aligned, live block of IOCOM_SIZE bytes
        // (a multiple of 8), and nothing refers into it any more.
        unsafe { wipe(io.cast::<u64>(), IOCOM_SIZE / size_of::<u64>()) }
    }))
}

/// Zeroes `words` words at `block` with volatile writes, which the optimiser may not
/// drop as dead stores: the block held message data, and the kernel frees it next.
///
/// # Safety
/// `block` must be aligned and valid for writes of `words` words, referred to by nothing.
unsafe fn wipe(block: *mut u64, words: usize) {
    for i in 0..words {
        // SAFETY: `i` < `words`: in bounds, aligned, writable, by the contract.
        unsafe { block.add(i).write_volatile(0) };
    }
    core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
}

const _: () = assert!(IOCOM_SIZE.is_multiple_of(size_of::<u64>()) && align_of::<H2msgIocom>() >= 8);

/// Closes the link from our side: queued bytes are dropped (no goodbye message exists,
/// §1), and `h2msg_iocom_poll` then reports every open transaction as
/// `H2MSG_EVENT_ABORTED` (error LOSTLINK) and ends with `H2MSG_EVENT_LINK_DOWN`
/// (`H2MSG_DOWN_LOCAL_CLOSE`, unless the link was down already).
///
/// # Safety
/// As [`h2msg_iocom_fini`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn h2msg_iocom_close(io: *mut H2msgIocom) -> c_int {
    // SAFETY: forwarded contract.
    status(unsafe { live(io) }.map(|mut iocom| {
        if !iocom.io.flags().contains(H2MSG_IOF_EOF) {
            iocom.closed_locally = true;
        }
        iocom.io.transport_failed();
    }))
}

// ----- receiving --------------------------------------------------------------------

/// Copies received bytes in: `*taken` says how many were taken. Fewer than `len` means:
/// poll events, then feed the rest. 0 once the link is down. `H2MSG_ERR_OVERLAP` if any
/// of the bytes lies in the iocom's own block (a polled message's, a `read_buf` room).
///
/// # Safety
/// As [`h2msg_iocom_fini`] for `io`; `bytes` valid for reads of `len` bytes (may be NULL
/// when `len` is 0); `taken` valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn h2msg_iocom_feed(
    io: *mut H2msgIocom,
    bytes: *const u8,
    len: usize,
    taken: *mut usize,
) -> c_int {
    // SAFETY: forwarded contracts.
    status(unsafe { live(io) }.and_then(|mut iocom| {
        let taken = checked_outside(io, taken, 1)?;
        // SAFETY: the caller vouches for `len` readable bytes. None of them is in the
        // block: the core copies them into its FIFO, and a slice into the block would
        // alias the `&mut` it takes of it (and overlap the copy).
        let input = unsafe { bytes_in(io, bytes, len, usize::MAX, &[WHOLE_BLOCK]) }?;
        let n = iocom.io.feed(input);
        // SAFETY: checked non-null and aligned; the caller vouches for it being writable.
        unsafe { taken.write(n) };
        Ok(())
    }))
}

/// Where the socket should read into, to skip a copy: `*buf`, `*len` (0 when no input
/// is wanted now). Report the bytes read with `h2msg_iocom_commit_read`, with no other
/// call on this iocom in between: the kernel holds its link lock from `read_buf` through
/// `commit_read`. Any other call withdraws the offer (the room may move: `poll` resets
/// the FIFO, for one), and `commit_read` is then refused with `H2MSG_ERR_STALE`.
///
/// # Safety
/// As [`h2msg_iocom_fini`] for `io`; `buf` and `len` valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn h2msg_iocom_read_buf(
    io: *mut H2msgIocom,
    buf: *mut *mut u8,
    len: *mut usize,
) -> c_int {
    // SAFETY: forwarded contract.
    status(unsafe { live(io) }.and_then(|mut iocom| {
        let (buf, len) = (checked_outside(io, buf, 1)?, checked_outside(io, len, 1)?);
        let room = iocom.io.read_buf();
        let start = if room.is_empty() {
            ptr::null_mut()
        } else {
            room.as_mut_ptr()
        };
        let room_len = room.len();
        iocom.read_offer = Some(ReadOffer::of(room));
        // SAFETY: both checked non-null and aligned; the caller vouches for them.
        unsafe {
            buf.write(start);
            len.write(room_len);
        }
        Ok(())
    }))
}

/// Reports `n` bytes read into the room the `h2msg_iocom_read_buf` right before offered.
/// Refused, nothing changed: `H2MSG_ERR_STALE` when there is no such offer (another call
/// on this iocom came in between, or the offer was committed already; the bytes are lost
/// and the stream cannot be trusted: call `h2msg_iocom_transport_failed`),
/// `H2MSG_ERR_OVERCOMMIT` if `n` exceeds the room (the offer stays).
///
/// # Safety
/// As [`h2msg_iocom_fini`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn h2msg_iocom_commit_read(io: *mut H2msgIocom, n: usize) -> c_int {
    // SAFETY: forwarded contract.
    status(unsafe { live_keeping_offer(io) }.and_then(|mut iocom| {
        let offer = iocom.read_offer.take().ok_or(H2MSG_ERR_STALE)?;
        // Belt and braces: the room now must be the one offered, or the socket's bytes
        // are somewhere the decoder will not look.
        if ReadOffer::of(iocom.io.read_buf()) != offer {
            return Err(H2MSG_ERR_STALE);
        }
        if n > offer.len() {
            iocom.read_offer = Some(offer);
            return Err(H2MSG_ERR_OVERCOMMIT);
        }
        iocom.io.commit_read(n).map_err(|_| H2MSG_ERR_OVERCOMMIT)
    }))
}

/// The socket's input ended (read returned 0). Complete messages are still delivered;
/// then the link goes down: `H2MSG_DOWN_CLOSED` at a message boundary, else
/// `H2MSG_DOWN_FAILED` with IOQ EOF.
///
/// # Safety
/// As [`h2msg_iocom_fini`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn h2msg_iocom_end_input(io: *mut H2msgIocom) -> c_int {
    // SAFETY: forwarded contract.
    status(unsafe { live(io) }.map(|mut iocom| iocom.io.end_input()))
}

/// The socket failed (not EINTR/EAGAIN): the link goes down with IOQ SOCK, queued bytes
/// are dropped, open transactions are reported aborted.
///
/// # Safety
/// As [`h2msg_iocom_fini`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn h2msg_iocom_transport_failed(io: *mut H2msgIocom) -> c_int {
    // SAFETY: forwarded contract.
    status(unsafe { live(io) }.map(|mut iocom| iocom.io.transport_failed()))
}

/// The next event, written to `*event` (`H2MSG_EVENT_NONE` when there is none until more
/// input arrives or bytes are written). A message's `ext` and `aux` point into the iocom's
/// memory and stay valid until the next call on this iocom; that call may be a `send`,
/// `open` or `reply` on this iocom that relays them. `feed` refuses them
/// (`H2MSG_ERR_OVERLAP`): copy them out first.
///
/// # Safety
/// As [`h2msg_iocom_fini`] for `io`; `event` valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn h2msg_iocom_poll(io: *mut H2msgIocom, event: *mut H2msgEvent) -> c_int {
    // SAFETY: forwarded contract.
    status(unsafe { live(io) }.and_then(|mut iocom| {
        let event = checked_outside(io, event, 1)?;
        let next = iocom.next_event();
        // SAFETY: checked non-null and aligned; the caller vouches for it being writable.
        unsafe { event.write(next) };
        Ok(())
    }))
}

// ----- sending ----------------------------------------------------------------------

/// Hands commands matching `cmd` (command number and protocol; flags ignored) and their
/// replies to the application instead of answering them with error 0x20.
/// `H2MSG_ERR_ACCEPT_FULL` beyond 16 commands.
///
/// # Safety
/// As [`h2msg_iocom_fini`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn h2msg_iocom_accept(io: *mut H2msgIocom, cmd: u32) -> c_int {
    // SAFETY: forwarded contract.
    status(unsafe { live(io) }.and_then(|mut iocom| {
        iocom
            .io
            .accept(Cmd::from_raw(cmd))
            .map_err(|_| H2MSG_ERR_ACCEPT_FULL)
    }))
}

/// Queues a message exactly as given (`cmd` with its flags, `msgid`, `error`), after the
/// transaction rules. The bytes are copied: the buffers are free again on return.
/// Errors: `H2MSG_IOQ_FIELD` (sizes: `ext_len` must match `cmd`'s size field, `aux_len`
/// at most 65536), `H2MSG_ERR_AGAIN`, `H2MSG_ERR_TRANSACTION`, `H2MSG_ERR_LINK_DOWN`,
/// `H2MSG_ERR_OVERLAP` (bytes in the iocom's state or transmit ring). The `ext` and `aux`
/// of a message just polled from this iocom may be passed as they are.
///
/// # Safety
/// As [`h2msg_iocom_fini`] for `io`; `ext` and `aux` valid for reads of their lengths
/// (NULL allowed for length 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn h2msg_iocom_send(
    io: *mut H2msgIocom,
    cmd: u32,
    msgid: u32,
    error: u16,
    ext: *const u8,
    ext_len: usize,
    aux: *const u8,
    aux_len: usize,
) -> c_int {
    // SAFETY: forwarded contracts.
    status(unsafe { live(io) }.and_then(|mut iocom| {
        // SAFETY: the caller vouches for the lengths; `SEND_FORBIDDEN` says why bytes
        // in the receive buffers may stay where they are.
        let (ext, aux) = unsafe {
            (
                bytes_in(io, ext, ext_len, EXT_MAX, SEND_FORBIDDEN)?,
                bytes_in(io, aux, aux_len, MSGAUX_MAX, SEND_FORBIDDEN)?,
            )
        };
        let mut header = MsgHeader::new(Cmd::from_raw(cmd));
        header.msgid = msgid;
        header.error = error;
        iocom
            .io
            .send(header, ext, aux)
            .map(|_| ())
            .map_err(send_error_code)
    }))
}

/// Opens a transaction: queues `cmd` with CREATE (and DELETE if `last` is not 0) under a
/// fresh msgid, written to `*msgid_out` (may be NULL). Errors as `h2msg_iocom_send`, and
/// `H2MSG_ERR_NO_MSGID` when 64 transactions of ours are open.
///
/// # Safety
/// As [`h2msg_iocom_send`]; `msgid_out` NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn h2msg_iocom_open(
    io: *mut H2msgIocom,
    cmd: u32,
    ext: *const u8,
    ext_len: usize,
    aux: *const u8,
    aux_len: usize,
    last: c_int,
    msgid_out: *mut u32,
) -> c_int {
    // SAFETY: forwarded contracts.
    status(unsafe { live(io) }.and_then(|mut iocom| {
        if !msgid_out.is_null() {
            checked_outside(io, msgid_out, 1)?;
        }
        // SAFETY: the caller vouches for the lengths; `SEND_FORBIDDEN` says why bytes
        // in the receive buffers may stay where they are.
        let (ext, aux) = unsafe {
            (
                bytes_in(io, ext, ext_len, EXT_MAX, SEND_FORBIDDEN)?,
                bytes_in(io, aux, aux_len, MSGAUX_MAX, SEND_FORBIDDEN)?,
            )
        };
        let sent = iocom
            .io
            .open(Cmd::from_raw(cmd), ext, aux, last != 0)
            .map_err(send_error_code)?;
        if !msgid_out.is_null() {
            // SAFETY: non-null, aligned; the caller vouches for it being writable.
            unsafe { msgid_out.write(sent.msgid) };
        }
        Ok(())
    }))
}

/// Replies to a received command `to` (as delivered in an event): within its transaction
/// if it opened one (CREATE on the first reply, DELETE with `last`), else with the seed
/// era's one-way rules. msgid, source, target and `resv05` are copied from `to`.
/// Errors as `h2msg_iocom_send`.
///
/// # Safety
/// As [`h2msg_iocom_send`]; `to` valid for a read.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn h2msg_iocom_reply(
    io: *mut H2msgIocom,
    to: *const H2msgMessage,
    error: u16,
    aux: *const u8,
    aux_len: usize,
    last: c_int,
) -> c_int {
    // SAFETY: forwarded contracts.
    status(unsafe { live(io) }.and_then(|mut iocom| {
        let to = checked_outside(io, to.cast_mut(), 1)?;
        // SAFETY: checked non-null, aligned and outside the block (which `&mut` covers in
        // part); the caller vouches for a readable message.
        let to = unsafe { to.read() };
        // SAFETY: the caller vouches for the length; see `SEND_FORBIDDEN`.
        let aux = unsafe { bytes_in(io, aux, aux_len, MSGAUX_MAX, SEND_FORBIDDEN) }?;
        let mut header = MsgHeader::new(Cmd::from_raw(to.cmd));
        header.msgid = to.msgid;
        header.source = to.source;
        header.target = to.target;
        header.resv05 = to.resv05;
        iocom
            .io
            .reply(&header, error, aux, last != 0)
            .map(|_| ())
            .map_err(send_error_code)
    }))
}

/// Aborts a transaction we opened: queues `cmd` with ABORT|DELETE under `msgid`.
/// Errors as `h2msg_iocom_send`.
///
/// # Safety
/// As [`h2msg_iocom_fini`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn h2msg_iocom_abort(io: *mut H2msgIocom, cmd: u32, msgid: u32) -> c_int {
    // SAFETY: forwarded contract.
    status(unsafe { live(io) }.and_then(|mut iocom| {
        iocom
            .io
            .abort(Cmd::from_raw(cmd), msgid)
            .map(|_| ())
            .map_err(send_error_code)
    }))
}

// ----- transmitting -------------------------------------------------------------------

/// The bytes to write, oldest first, as up to `iov_cap` (at most 16 are ever used)
/// slices in `iov`; `*iov_count` says how many. Write them (`writev`, `sosend`), then
/// report the count with `h2msg_iocom_advance_write`. Valid until the next call.
///
/// # Safety
/// As [`h2msg_iocom_fini`] for `io`; `iov` valid for writes of `iov_cap` entries (may be
/// NULL when `iov_cap` is 0); `iov_count` valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn h2msg_iocom_pending(
    io: *mut H2msgIocom,
    iov: *mut H2msgIovec,
    iov_cap: usize,
    iov_count: *mut usize,
) -> c_int {
    // SAFETY: forwarded contract.
    status(unsafe { live(io) }.and_then(|iocom| {
        let iov_count = checked_outside(io, iov_count, 1)?;
        if iov_cap > 0 {
            checked_outside(io, iov, iov_cap.min(H2MSG_MAXIOVEC))?;
        }
        let mut count = 0;
        let parts = iocom.io.pending();
        for part in parts.iter().filter(|part| !part.is_empty()) {
            if count == iov_cap.min(H2MSG_MAXIOVEC) {
                break;
            }
            let slot = H2msgIovec {
                iov_base: part.as_ptr().cast(),
                iov_len: part.len(),
            };
            // SAFETY: `iov` is non-null and aligned (checked, since `iov_cap` > `count`)
            // and the caller vouches for `iov_cap` writable entries; `count` < `iov_cap`.
            unsafe { iov.add(count).write(slot) };
            count += 1;
        }
        // SAFETY: checked non-null and aligned; the caller vouches for it being writable.
        unsafe { iov_count.write(count) };
        Ok(())
    }))
}

/// The transport took `n` of the pending bytes. `H2MSG_ERR_OVERCOMMIT` (nothing changed)
/// if `n` exceeds them.
///
/// # Safety
/// As [`h2msg_iocom_fini`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn h2msg_iocom_advance_write(io: *mut H2msgIocom, n: usize) -> c_int {
    // SAFETY: forwarded contract.
    status(
        unsafe { live(io) }
            .and_then(|mut iocom| iocom.io.advance_write(n).map_err(|_| H2MSG_ERR_OVERCOMMIT)),
    )
}

/// The transport would block on write (EAGAIN): WREQ is set until bytes are accepted.
///
/// # Safety
/// As [`h2msg_iocom_fini`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn h2msg_iocom_write_would_block(io: *mut H2msgIocom) -> c_int {
    // SAFETY: forwarded contract.
    status(unsafe { live(io) }.map(|mut iocom| iocom.io.write_would_block()))
}

/// What the link waits for, as the §7 flags in `*flags`: `H2MSG_IOF_RREQ` (read when
/// readable), `H2MSG_IOF_WREQ` (write when writable), `H2MSG_IOF_WIDLE` (nothing to
/// write), `H2MSG_IOF_EOF` (down), plus `H2MSG_IOF_FINISHED` (nothing more will happen).
/// Meaningful after `h2msg_iocom_poll` returned `H2MSG_EVENT_NONE`.
///
/// # Safety
/// As [`h2msg_iocom_fini`] for `io`; `flags` valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn h2msg_iocom_wait_for(io: *mut H2msgIocom, flags: *mut u32) -> c_int {
    // SAFETY: forwarded contract.
    status(unsafe { live(io) }.and_then(|iocom| {
        let flags = checked_outside(io, flags, 1)?;
        let mut bits = iocom.io.flags().bits();
        if iocom.io.interest().finished {
            bits |= H2MSG_IOF_FINISHED;
        }
        // SAFETY: checked non-null and aligned; the caller vouches for it being writable.
        unsafe { flags.write(bits) };
        Ok(())
    }))
}

// ----- time -----------------------------------------------------------------------------

/// Tells the iocom the time: `now_ms`, milliseconds on a monotonic clock the kernel owns
/// (any origin: `ticks` converted, uptime). Call it when `h2msg_iocom_next_timeout`'s
/// deadline comes and whenever the link wakes for I/O. Due rules fire here, each once: a
/// keepalive `LNK_PING` is queued (write it), the link goes down (`H2MSG_DOWN_PEER_TIMEOUT`,
/// `H2MSG_DOWN_WRITE_STALLED`: poll for it), a transaction past its deadline is aborted
/// (`H2MSG_EVENT_TIMED_OUT`). Bytes fed or written since the last call count as moving at
/// this `now_ms`. A `now_ms` below an earlier one counts as no time passed. Nothing
/// happens once the link is down. Then poll events and write.
///
/// # Safety
/// As [`h2msg_iocom_fini`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn h2msg_iocom_timeout(io: *mut H2msgIocom, now_ms: u64) -> c_int {
    // SAFETY: forwarded contract.
    status(unsafe { live(io) }.map(|mut iocom| {
        iocom.io.handle_timeout(Instant::from_millis(now_ms));
    }))
}

/// When `h2msg_iocom_timeout` must be called next, at the latest, on the clock its
/// `now_ms` uses. Returns 1 and writes the deadline to `*out_ms` (it may be in the past:
/// call at once), or 0 and writes `UINT64_MAX` when nothing is timed (rules off, no
/// transaction deadline, or the link is down); or a negative `H2MSG_ERR_*`. Before the
/// first `h2msg_iocom_timeout` the answer is 0 ms (the clock has not started). Ask again
/// after every call on the iocom: the answer moves.
///
/// # Safety
/// As [`h2msg_iocom_fini`] for `io`; `out_ms` valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn h2msg_iocom_next_timeout(io: *mut H2msgIocom, out_ms: *mut u64) -> c_int {
    // SAFETY: forwarded contract.
    let result = unsafe { live(io) }.and_then(|iocom| {
        let out_ms = checked_outside(io, out_ms, 1)?;
        let next = iocom.io.poll_timeout();
        // SAFETY: checked non-null and aligned; the caller vouches for it being writable.
        unsafe { out_ms.write(next.map_or(u64::MAX, Instant::as_millis)) };
        Ok(c_int::from(next.is_some()))
    });
    match result {
        Ok(has) => has,
        Err(code) => code,
    }
}

/// Gives a transaction we opened (`cmd` as opened, flags ignored but REPLY, and the
/// msgid `h2msg_iocom_open` wrote) a deadline at `at_ms` on the clock of
/// `h2msg_iocom_timeout`: if it is still open then, an ABORT is queued and
/// `H2MSG_EVENT_TIMED_OUT` reported. A second call moves the deadline. Errors:
/// `H2MSG_ERR_NO_TRANSACTION` (no such open transaction of ours, or its deadline passed),
/// `H2MSG_ERR_LINK_DOWN`.
///
/// # Safety
/// As [`h2msg_iocom_fini`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn h2msg_iocom_set_deadline(
    io: *mut H2msgIocom,
    cmd: u32,
    msgid: u32,
    at_ms: u64,
) -> c_int {
    // SAFETY: forwarded contract.
    status(unsafe { live(io) }.and_then(|mut iocom| {
        let mut opened = MsgHeader::new(Cmd::from_raw(cmd));
        opened.msgid = msgid;
        iocom
            .io
            .set_deadline(&opened, Instant::from_millis(at_ms))
            .map_err(send_error_code)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A handle at a made-up address: `overlaps` only does arithmetic on it.
    fn at(addr: usize) -> *const H2msgIocom {
        ptr::without_provenance(addr)
    }

    #[test]
    fn overlap_is_any_shared_byte() {
        let io = at(0x10_000);
        let byte = |off: usize| ptr::without_provenance::<u8>(0x10_000 + off);
        assert!(overlaps(io, WHOLE_BLOCK, byte(0), 1));
        assert!(overlaps(io, WHOLE_BLOCK, byte(IOCOM_SIZE - 1), 1));
        assert!(!overlaps(io, WHOLE_BLOCK, byte(IOCOM_SIZE), 100));
        assert!(!overlaps(
            io,
            WHOLE_BLOCK,
            ptr::without_provenance(0x10_000 - 16),
            16
        ));
        assert!(overlaps(
            io,
            WHOLE_BLOCK,
            ptr::without_provenance(0x10_000 - 16),
            17
        ));
        assert!(
            !overlaps(io, WHOLE_BLOCK, byte(0), 0),
            "no bytes, no overlap"
        );
        // The receive buffers lie between the two parts sending may not read from.
        assert!(!overlaps(
            io,
            STATE,
            byte(FIFO_OFFSET),
            AUX_OFFSET + AUX_LEN - FIFO_OFFSET
        ));
        assert!(!overlaps(
            io,
            TX_RING,
            byte(FIFO_OFFSET),
            TX_RING_OFFSET - FIFO_OFFSET
        ));
        assert!(overlaps(
            io,
            TX_RING,
            byte(FIFO_OFFSET),
            TX_RING_OFFSET - FIFO_OFFSET + 1
        ));
        assert!(overlaps(io, STATE, byte(FIFO_OFFSET - 1), 2));
        // Near the top of the address space the sums saturate instead of wrapping.
        assert!(overlaps(
            at(usize::MAX - 8),
            WHOLE_BLOCK,
            ptr::without_provenance(usize::MAX - 4),
            100
        ));
    }
}
