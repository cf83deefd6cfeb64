//! A blocking, full-duplex driver: the core's handshake and connection over a socket
//! (TCP, Unix) with a hardware CRC-32C, run by the core's one driver loop
//! ([`h2msg::drive::Link`]).
//!
//! # Why two I/O threads
//!
//! Full duplex needs the driver to read while a write waits. With std alone a socket
//! cannot be polled (`poll(2)` needs `libc`, `rustix` or `nix`), and a non-blocking
//! socket without a poll can only be spun on. So each [`Duplex`] has a reader thread and
//! a writer thread, each blocking in the kernel on its own handle of the socket
//! ([`DuplexStream::try_clone`]); the caller's thread owns the connection alone and sees
//! the socket as non-blocking: [`Duplex`] implements [`Transport`] over two bounded byte
//! buffers shared under one mutex, with one condition variable for "bytes came, room
//! freed, a thread ended" that also serves as the timed wait for the core's timers. The
//! core itself is never shared, so nothing in it needs a lock; the price is one copy per
//! byte each way and two threads per link.
//!
//! Once the handshake is over, a link's reader reads ahead ([`Duplex::read_ahead`]): it
//! fills up to [`READ_AHEAD`] bytes while the caller's thread decodes what came before,
//! so a bulk transfer's reads and its checks run at once instead of taking turns.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use h2msg::drive::{IoInterest, Transport, TryIoError};
use h2msg::wire::Crc32c;
use h2msg::wire::limits::{DMSG_AUX_MAX, DMSG_HDR_MAX, MSGAUX_MAX, MSGBUF_SIZE, MSGHDR_MAX};
use h2msg::{
    Config, CounterSalt, DmsgIocom, Handshake, Instant, Iocom, IocomMemory, LinkSetup, MemoryError,
    RawRsa, Session,
};

mod handle_driver;
pub use handle_driver::{HandleDriver, into_handle};

/// CRC-32C in hardware where the CPU has it (SSE4.2, ARMv8), from the `crc32c` crate.
#[derive(Clone, Copy, Debug, Default)]
pub struct HwCrc32c;

impl Crc32c for HwCrc32c {
    fn append(&self, crc: u32, bytes: &[u8]) -> u32 {
        crc32c::crc32c_append(crc, bytes)
    }
}

/// Transactions per direction a std connection tracks unless told otherwise: `T` of
/// [`StdIocom`] and [`Link`], [`LinkOptions::transactions`](crate::link::LinkOptions::transactions).
///
/// Past it, our [`Iocom::open`] fails with [`SendError::NoFreeMsgid`](h2msg::SendError)
/// (nothing sent), and the peer's CREATE is answered at once with error 0x22
/// [`MSG_ERR_TABLE_FULL`](h2msg::wire::MSG_ERR_TABLE_FULL) (§4.4).
pub const TRANSACTIONS: usize = 64;

/// The connection type of the std adapter: heap buffers, `T` open transactions per
/// direction ([`TRANSACTIONS`] unless chosen). The tables are arrays inside the
/// connection: on x86_64 each unit of `T` adds 48 bytes (both tables and the deadlines),
/// so the connection is about 6 KB at 64 and 52 KB at 1024. It is built on the stack and
/// moved into its link: tables of many thousands want a thread with a large stack.
pub type StdIocom<const T: usize = TRANSACTIONS> = Iocom<Vec<u8>, CounterSalt, HwCrc32c, T>;

/// The DMSG connection type of the std adapter: heap buffers, `T` open transactions per
/// side ([`TRANSACTIONS`] unless chosen).
pub type StdDmsgIocom<const T: usize = TRANSACTIONS> = DmsgIocom<Vec<u8>, CounterSalt, HwCrc32c, T>;

/// A DMSG connection with a 64 KiB FIFO, aux storage for the largest DMSG aux (1 MiB) and
/// room to queue one largest message (dmsg.md 2.7). The buffers are allocated zeroed, so
/// their pages are touched only as a link fills them.
///
/// # Errors
/// Never with these sizes; the type says what the core checks.
pub fn std_dmsg_iocom(
    setup: LinkSetup,
    salt_start: u32,
    config: Config,
) -> Result<StdDmsgIocom, MemoryError> {
    std_dmsg_iocom_sized(setup, salt_start, config)
}

/// [`std_dmsg_iocom`] with a table of `T` transactions per side.
///
/// # Errors
/// Never with these sizes; the type says what the core checks.
pub fn std_dmsg_iocom_sized<const T: usize>(
    setup: LinkSetup,
    salt_start: u32,
    config: Config,
) -> Result<StdDmsgIocom<T>, MemoryError> {
    let memory = IocomMemory {
        fifo: vec![0u8; STD_FIFO_SIZE],
        aux: vec![0u8; DMSG_AUX_MAX],
        tx_ring: vec![0u8; 2 * DMSG_HDR_MAX + DMSG_AUX_MAX],
    };
    DmsgIocom::new(
        setup,
        memory,
        CounterSalt::after(salt_start),
        HwCrc32c,
        config,
    )
}

/// The std adapter's receive FIFO: 8 times the C size (`MSGBUF_SIZE`, 8 KiB). A daemon can
/// spare 56 KiB per link, and one read then takes up to 2048 small messages where the
/// C size took 256: header-only messages over loopback cross about 1.5 times faster
/// (`h2msg bench`). The pages are touched only as a link fills them.
pub const STD_FIFO_SIZE: usize = 8 * MSGBUF_SIZE;

/// A connection with a 64 KiB FIFO ([`STD_FIFO_SIZE`]), 64 KiB aux storage and room to
/// queue any message twice.
///
/// # Errors
/// Never with these sizes; the type says what the core checks.
pub fn std_iocom(setup: LinkSetup, salt_start: u32) -> Result<StdIocom, MemoryError> {
    std_iocom_with(setup, salt_start, Config::default())
}

/// [`std_iocom`] with a chosen [`Config`] (liveness rules, header order).
///
/// # Errors
/// Never with these sizes; the type says what the core checks.
pub fn std_iocom_with(
    setup: LinkSetup,
    salt_start: u32,
    config: Config,
) -> Result<StdIocom, MemoryError> {
    std_iocom_sized(setup, salt_start, config)
}

/// [`std_iocom_with`] with a table of `T` transactions per direction
/// (`std_iocom_sized::<256>(...)`).
///
/// # Errors
/// Never with these sizes; the type says what the core checks.
pub fn std_iocom_sized<const T: usize>(
    setup: LinkSetup,
    salt_start: u32,
    config: Config,
) -> Result<StdIocom<T>, MemoryError> {
    let memory = IocomMemory {
        fifo: vec![0u8; STD_FIFO_SIZE],
        aux: vec![0u8; MSGAUX_MAX],
        tx_ring: vec![0u8; 2 * (MSGHDR_MAX + MSGAUX_MAX)],
    };
    let salt = CounterSalt::after(salt_start);
    Iocom::with_config(setup, memory, salt, HwCrc32c, config)
}

/// Why a driver stopped, with the IOQ code that applies ([`DriveError::code`]): the
/// transport's [`io::Error`] is SOCK (3). `?` turns it into an [`io::Error`] where a caller
/// wants one (the transport's own error unchanged, the core's verdicts wrapped).
pub type DriveError = h2msg::drive::DriveError<io::Error>;

/// One connection over a socket: the core's driver loop over a [`Duplex`]. For requests
/// from several threads, each awaiting its own reply, turn it into a
/// [`Handle`](crate::handle::Handle) ([`into_handle`]); this is the low-level loop.
///
/// An alias: its methods — [`io`](h2msg::drive::Link::io) to send,
/// [`next_event`](h2msg::drive::Link::next_event) to wait, [`flush`](h2msg::drive::Link::flush)
/// before dropping it — are documented on [`h2msg::drive::Link`].
///
/// ```no_run
/// use std::net::TcpStream;
/// use std::time::Duration;
///
/// use h2msg::drive::reply_error;
/// use h2msg::{Handshake, KeyMode, LinkSetup, ModeChoice, NoRsa};
/// use h2msg::wire::{Cmd, MsgHeader, WireOrder};
/// use h2msg_std::blocking::{Duplex, Link, READ_AHEAD, drive_handshake, now, std_iocom};
///
/// let mut duplex = Duplex::new(TcpStream::connect("127.0.0.1:987")?)?;
/// let hs = Handshake::new(
///     KeyMode::<NoRsa>::Plaintext, // a `.none` peer
///     &mut getrandom::SysRng,
///     WireOrder::Little,
///     Some(now() + Duration::from_secs(10)), // the deadline, on the driver's clock
/// )?;
/// let session = drive_handshake(&mut duplex, hs)?;
///
/// let mut io = std_iocom(LinkSetup::negotiate(session, ModeChoice::Auto)?, 0)?;
/// io.accept(Cmd::LNK_PING)?; // to see the reply to our ping
/// duplex.read_ahead(READ_AHEAD); // the handshake is over (as `link::connect` does)
/// let mut link = Link::new(duplex, io);
/// let mut ping = MsgHeader::new(Cmd::LNK_PING);
/// ping.msgid = 1;
/// link.io().send(ping, &[], &[])?;
/// // Events until the reply to msgid 1 (the error field of each that is one).
/// while let Some(answer) = link.next_event(|event| reply_error(&event, 1))? {
///     if let Some(error) = answer {
///         assert_eq!(error, 0);
///         break;
///     }
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub type Link<S, const T: usize = TRANSACTIONS> = h2msg::drive::Link<Duplex<S>, StdIocom<T>>;

/// One DMSG connection over a socket: the same driver loop over a [`Duplex`].
pub type DmsgLink<S, const T: usize = TRANSACTIONS> =
    h2msg::drive::Link<Duplex<S>, StdDmsgIocom<T>>;

/// Runs a handshake over `duplex` ([`h2msg::drive::drive_handshake`]); give `hs` its
/// deadline on this driver's clock ([`now`]). Reads nothing past the peer's block, so
/// the same `duplex` then carries the [`Link`].
///
/// # Errors
/// [`DriveError`]: the transport's (SOCK) or the handshake's (12–14; KEYXCHGFAIL at the
/// deadline).
pub fn drive_handshake<S: DuplexStream, K: RawRsa>(
    duplex: &mut Duplex<S>,
    hs: Handshake<K>,
) -> Result<Session, DriveError> {
    h2msg::drive::drive_handshake(duplex, hs)
}

/// This driver's clock: milliseconds since the first call in this process, monotonic
/// (std's `Instant`). Deadlines given to the core ([`Handshake::new`],
/// [`Iocom::set_deadline`]) are on it.
#[must_use]
pub fn now() -> Instant {
    static ORIGIN: OnceLock<std::time::Instant> = OnceLock::new();
    let elapsed = ORIGIN.get_or_init(std::time::Instant::now).elapsed();
    Instant::from_millis(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
}

/// A socket that the duplex driver can split between its reader and writer threads.
pub trait DuplexStream: Read + Write + Send + Sized + 'static {
    /// A second handle on the same socket.
    ///
    /// # Errors
    /// The socket's error.
    fn try_clone(&self) -> io::Result<Self>;

    /// Shuts directions of the socket down; a thread blocked on it wakes.
    ///
    /// # Errors
    /// The socket's error.
    fn shutdown(&self, how: Shutdown) -> io::Result<()>;
}

/// The socket types of std, which have every call the trait names under the same name.
macro_rules! duplex_stream {
    ($($socket:ty),*) => {$(
        impl DuplexStream for $socket {
            fn try_clone(&self) -> io::Result<Self> {
                Self::try_clone(self)
            }
            fn shutdown(&self, how: Shutdown) -> io::Result<()> {
                Self::shutdown(self, how)
            }
        }
    )*};
}

duplex_stream!(TcpStream, UnixStream);

/// Bytes the caller may queue for the writer thread while it writes the batch it took
/// before (at most as many again): two batches, so the caller fills the next while the
/// last is written — enough to keep a loopback socket busy, small enough to bound a
/// link and to let the core's write-stall rule see a peer that stopped reading soon
/// (bytes this buffer takes count as written).
pub const DUPLEX_WRITE_BUFFER: usize = 64 * 1024;

/// Bytes a link's reader thread may hold before the caller asks for them
/// ([`Duplex::read_ahead`]): eight FIFOs' worth (512 KiB), read at most one FIFO at a
/// time. With one FIFO's worth a 64 MiB transfer over loopback on this driver ran at
/// 0.33–0.38× a raw copy, with eight at 0.46–0.52×, with 32 no faster (`transfer_bench`,
/// seed, blocking rows, before the 62 KiB parts): the reader
/// must stay well ahead of the decoding thread so that neither waits on the other's
/// wake-up. The buffer is given back once such a stream is over and read.
pub const READ_AHEAD: usize = 8 * STD_FIFO_SIZE;

/// The stack of a [`Duplex`]'s threads: they only move bytes between a socket and a
/// buffer, so a small one lets a service run thousands of links.
const DUPLEX_THREAD_STACK: usize = 128 * 1024;

/// Starts a named thread with the small [`DUPLEX_THREAD_STACK`].
fn spawn_small(name: &str, f: impl FnOnce() + Send + 'static) -> io::Result<()> {
    std::thread::Builder::new()
        .name(name.into())
        .stack_size(DUPLEX_THREAD_STACK)
        .spawn(f)
        .map(drop)
}

/// How long a dropped [`Duplex`] keeps writing what it had accepted before it closes the
/// socket regardless.
pub const LINGER: Duration = Duration::from_secs(10);

/// How the input side stands.
#[derive(Debug)]
enum InputEnd {
    Open,
    /// The peer closed its side.
    Eof,
    /// A read failed; the error's kind and text (an `io::Error` is not `Clone`).
    Failed(io::ErrorKind, String),
}

/// What the caller's thread and the two I/O threads share.
#[derive(Debug)]
struct Buffers {
    /// Read by the reader thread, not yet taken by [`Duplex::try_read`].
    incoming: VecDeque<u8>,
    /// How many bytes the reader thread may read next; 0: none asked. Never more than
    /// the connection offered room for, so a handshake reads nothing past its block.
    read_wanted: usize,
    /// Bytes the reader may hold without being asked ([`Duplex::read_ahead`]); 0: it
    /// reads only what is asked.
    read_ahead: usize,
    /// The reader's last read, made while reading ahead was allowed, filled its chunk:
    /// the socket likely has more, so it reads on unasked. After a short read it waits
    /// to be asked, so an idle link's reader is normally not inside a read (and
    /// [`Duplex::into_inner`] can take the socket back) — unless the peer's last bytes
    /// ended exactly where a read did.
    socket_had_more: bool,
    /// The reader thread is in a read (it may bring bytes at any moment).
    reading: bool,
    input: InputEnd,
    /// Accepted by [`Duplex::try_write`], not yet taken by the writer thread.
    outgoing: Vec<u8>,
    /// Taken by the writer thread and being written.
    in_flight: usize,
    write_failed: Option<(io::ErrorKind, String)>,
    /// The [`Duplex`] was dropped: the threads finish.
    closing: bool,
    /// The socket went back to the caller ([`Duplex::into_inner`]): the threads finish
    /// without shutting it down.
    released: bool,
    /// A [`DuplexWaker`] asked the caller to look up: the next wait returns at once.
    woken: bool,
    /// …and `take_wake` reports it (a wait consumes only `woken`, so that a flush
    /// loop that waits again does not spin on one wake).
    wake_noted: bool,
}

impl Buffers {
    fn write_room(&self) -> usize {
        DUPLEX_WRITE_BUFFER.saturating_sub(self.outgoing.len())
    }
}

#[derive(Debug)]
struct Shared {
    buffers: Mutex<Buffers>,
    /// Signalled whenever `buffers` changes.
    changed: Condvar,
}

impl Shared {
    /// The buffers; a thread that panicked while holding them left them consistent
    /// (every update is a single step under the lock), so a poisoned lock is used as is.
    fn lock(&self) -> MutexGuard<'_, Buffers> {
        self.buffers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn wait<'a>(&self, guard: MutexGuard<'a, Buffers>) -> MutexGuard<'a, Buffers> {
        self.changed
            .wait(guard)
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A socket as a non-blocking [`Transport`] with a clock: a reader and a writer thread
/// do the blocking (see the [module](self) docs for why).
#[derive(Debug)]
pub struct Duplex<S: DuplexStream> {
    shared: Arc<Shared>,
    /// The caller's handle: for shutting the socket down.
    stream: S,
}

impl<S: DuplexStream> Duplex<S> {
    /// Starts the two I/O threads on handles of `stream`.
    ///
    /// # Errors
    /// The socket's (cloning its handle) or the OS's (starting a thread).
    pub fn new(stream: S) -> io::Result<Self> {
        let shared = Arc::new(Shared {
            buffers: Mutex::new(Buffers {
                incoming: VecDeque::new(),
                read_wanted: 0,
                read_ahead: 0,
                socket_had_more: false,
                reading: false,
                input: InputEnd::Open,
                outgoing: Vec::new(),
                in_flight: 0,
                write_failed: None,
                closing: false,
                released: false,
                woken: false,
                wake_noted: false,
            }),
            changed: Condvar::new(),
        });
        let (reader, writer) = (stream.try_clone()?, stream.try_clone()?);
        // Built before the threads start, so that a failed start drops it: its Drop
        // closes what the thread that did start is waiting on.
        let duplex = Self { shared, stream };
        let for_reader = Arc::clone(&duplex.shared);
        spawn_small("h2msg-read", move || read_loop(reader, &for_reader))?;
        let for_writer = Arc::clone(&duplex.shared);
        spawn_small("h2msg-write", move || write_loop(writer, &for_writer))?;
        Ok(duplex)
    }

    /// Lets the reader thread read up to `bytes` before the caller asks for them (0: only
    /// what is asked, the default), as long as each read fills its chunk (the socket has
    /// more waiting); after a short read it waits to be asked again. Turn it on once the
    /// handshake is done — a handshake must read nothing past its block — as the
    /// [`link`](crate::link) constructors do with [`READ_AHEAD`].
    /// [`into_inner`](Self::into_inner) is refused while the reader is in a read or holds
    /// bytes.
    pub fn read_ahead(&self, bytes: usize) {
        let mut buffers = self.shared.lock();
        buffers.read_ahead = bytes;
        // Reads made before (a handshake's, which fill exactly what they ask) say nothing
        // about what follows: the reader starts again waiting to be asked.
        buffers.socket_had_more = false;
        drop(buffers);
        self.shared.changed.notify_all();
    }

    /// A handle other threads use to wake the caller of this link (its
    /// `next_event_until` returns `Waited::Woken`): to hand it work, such as spans to
    /// relay.
    #[must_use]
    pub fn waker(&self) -> DuplexWaker {
        DuplexWaker(Arc::clone(&self.shared))
    }

    /// The socket, to inspect or set options on (its peer's address) — not to read or
    /// write past the driver. A read timeout set here ends the link at the first quiet
    /// spell; the core's liveness rules are the way to bound silence.
    pub const fn stream(&self) -> &S {
        &self.stream
    }

    /// Waits until the writer thread has written everything it took, or failed, or
    /// [`LINGER`] passed: before the write side is shut.
    ///
    /// # Errors
    /// The write's error; `TimedOut` after [`LINGER`].
    pub(crate) fn finish_writes(&self) -> io::Result<()> {
        let give_up = std::time::Instant::now() + LINGER;
        let mut buffers = self.shared.lock();
        while (!buffers.outgoing.is_empty() || buffers.in_flight > 0)
            && buffers.write_failed.is_none()
        {
            let left = give_up.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the peer took nothing for the linger time",
                ));
            }
            buffers = self
                .shared
                .changed
                .wait_timeout(buffers, left)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|poisoned| poisoned.into_inner().0);
        }
        match &buffers.write_failed {
            Some((kind, text)) => Err(io::Error::new(*kind, text.clone())),
            None => Ok(()),
        }
    }

    /// The socket back, the threads stopped: for a caller that speaks on it without the
    /// driver after the handshake. Waits until what was written is out; refused while a
    /// read is asked for or under way, or read bytes wait, which the socket would lose.
    ///
    /// # Errors
    /// [`io::ErrorKind::WouldBlock`] when the driver is busy so; the socket's error.
    pub fn into_inner(self) -> io::Result<S> {
        let mut buffers = self.shared.lock();
        while (!buffers.outgoing.is_empty() || buffers.in_flight > 0)
            && buffers.write_failed.is_none()
        {
            buffers = self.shared.wait(buffers);
        }
        if let Some((kind, text)) = &buffers.write_failed {
            return Err(io::Error::new(*kind, text.clone()));
        }
        let idle = buffers.read_wanted == 0 && !buffers.reading && buffers.incoming.is_empty();
        if !idle {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "the duplex driver holds bytes or awaits a read",
            ));
        }
        // Released: the threads end without shutting the socket, and so does Drop. The
        // reader, which reads only under this lock's say, sees it before any further read.
        buffers.released = true;
        buffers.read_ahead = 0;
        drop(buffers);
        self.stream.try_clone()
    }
}

/// Wakes the thread that drives a [`Duplex`] link ([`Duplex::waker`]); cloneable, and
/// harmless once the link is gone.
#[derive(Clone, Debug)]
pub struct DuplexWaker(Arc<Shared>);

impl DuplexWaker {
    /// Asks the link's caller to look up: its wait returns `Waited::Woken`.
    pub fn wake(&self) {
        let mut buffers = self.0.lock();
        buffers.woken = true;
        buffers.wake_noted = true;
        drop(buffers);
        self.0.changed.notify_all();
    }
}

impl<S: DuplexStream> Drop for Duplex<S> {
    fn drop(&mut self) {
        let mut buffers = self.shared.lock();
        buffers.closing = true;
        let nothing_to_write = buffers.outgoing.is_empty() && buffers.in_flight == 0;
        let released = buffers.released;
        drop(buffers);
        self.shared.changed.notify_all();
        if released {
            return;
        }
        if nothing_to_write {
            // Wakes the reader now.
            let _ = self.stream.shutdown(Shutdown::Both);
            return;
        }
        // A peer that stopped reading would hold the writer (and the socket) forever: a
        // watchdog closes the socket once the writer is done or LINGER has passed.
        let (Ok(socket), shared) = (self.stream.try_clone(), Arc::clone(&self.shared)) else {
            let _ = self.stream.shutdown(Shutdown::Both);
            return;
        };
        let spawned = spawn_small("h2msg-linger", move || {
            let give_up = std::time::Instant::now() + LINGER;
            let mut buffers = shared.lock();
            while (!buffers.outgoing.is_empty() || buffers.in_flight > 0)
                && buffers.write_failed.is_none()
            {
                let left = give_up.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    break;
                }
                buffers = shared
                    .changed
                    .wait_timeout(buffers, left)
                    .map(|(guard, _)| guard)
                    .unwrap_or_else(|poisoned| poisoned.into_inner().0);
            }
            drop(buffers);
            let _ = socket.shutdown(Shutdown::Both);
        });
        if spawned.is_err() {
            let _ = self.stream.shutdown(Shutdown::Both);
        }
    }
}

/// The reader thread: reads what the caller asked for, one read at a time, until the
/// input ends or the [`Duplex`] is dropped.
fn read_loop<S: Read>(mut stream: S, shared: &Shared) {
    let mut chunk = Vec::new();
    loop {
        let mut buffers = shared.lock();
        let wanted = loop {
            if buffers.closing || buffers.released {
                return;
            }
            // Asked for bytes, or room to read ahead: that much, at most, and one FIFO
            // at a time ahead (larger reads gained nothing and grow the chunk).
            let ahead = if buffers.socket_had_more {
                buffers.read_ahead.saturating_sub(buffers.incoming.len())
            } else {
                0
            };
            let wanted = buffers.read_wanted.max(ahead.min(STD_FIFO_SIZE));
            if wanted > 0 {
                break wanted;
            }
            buffers = shared.wait(buffers);
        };
        buffers.reading = true;
        let reading_ahead = buffers.read_ahead > 0;
        drop(buffers);
        chunk.resize(wanted, 0);
        let result = loop {
            match stream.read(&mut chunk) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => break other,
            }
        };
        let mut buffers = shared.lock();
        buffers.read_wanted = 0;
        buffers.reading = false;
        // Only once reading ahead is allowed: a read that filled its chunk then says the
        // socket likely has more.
        buffers.socket_had_more = reading_ahead && matches!(result, Ok(n) if n == wanted);
        let ended = match result {
            Ok(0) => Some(InputEnd::Eof),
            Ok(n) => {
                let read = chunk.get(..n).unwrap_or_default();
                buffers.incoming.extend(read);
                None
            }
            Err(e) => Some(InputEnd::Failed(e.kind(), e.to_string())),
        };
        let done = ended.is_some();
        if let Some(end) = ended {
            buffers.input = end;
        }
        drop(buffers);
        shared.changed.notify_all();
        if done {
            return;
        }
    }
}

/// The writer thread: writes what the caller queued until it fails or the [`Duplex`] is
/// dropped and everything is out; then closes the socket.
fn write_loop<S: DuplexStream>(mut stream: S, shared: &Shared) {
    let mut writing = Vec::new();
    loop {
        let mut buffers = shared.lock();
        while buffers.outgoing.is_empty() && !buffers.closing {
            buffers = shared.wait(buffers);
        }
        if buffers.outgoing.is_empty() {
            break; // closing, everything written
        }
        std::mem::swap(&mut writing, &mut buffers.outgoing);
        buffers.in_flight = writing.len();
        drop(buffers);
        // Room for the next batch while this one is written.
        shared.changed.notify_all();
        let result = stream.write_all(&writing).and_then(|()| stream.flush());
        writing.clear();
        let mut buffers = shared.lock();
        buffers.in_flight = 0;
        let failed = result.err();
        if let Some(e) = &failed {
            buffers.write_failed = Some((e.kind(), e.to_string()));
        }
        drop(buffers);
        shared.changed.notify_all();
        if failed.is_some() {
            // What is left after a failure is lost; the caller hears of it.
            break;
        }
    }
    let mut buffers = shared.lock();
    let closing = buffers.closing && !buffers.released;
    buffers.outgoing.clear();
    drop(buffers);
    if closing {
        let _ = stream.shutdown(Shutdown::Both);
    }
}

impl<S: DuplexStream> Transport for Duplex<S> {
    type Error = io::Error;

    fn try_read(&mut self, buf: &mut [u8]) -> Result<usize, TryIoError<io::Error>> {
        let mut buffers = self.shared.lock();
        if !buffers.incoming.is_empty() {
            let reader_waits_for_room =
                buffers.read_ahead > 0 && buffers.incoming.len() >= buffers.read_ahead;
            // `VecDeque<u8>` reads from its front, across its wrap, and drops what it gave.
            let n = Read::read(&mut buffers.incoming, buf).unwrap_or_default();
            if buffers.incoming.is_empty()
                && !buffers.socket_had_more
                && buffers.incoming.capacity() > STD_FIFO_SIZE
            {
                // A stream that filled the read-ahead is over: give its memory back.
                buffers.incoming = VecDeque::new();
            }
            drop(buffers);
            if reader_waits_for_room {
                self.shared.changed.notify_all();
            }
            return Ok(n);
        }
        match &buffers.input {
            InputEnd::Eof => return Ok(0),
            InputEnd::Failed(kind, text) => {
                return Err(TryIoError::Failed(io::Error::new(*kind, text.clone())));
            }
            InputEnd::Open => {}
        }
        if buffers.read_wanted == 0 && !buf.is_empty() {
            buffers.read_wanted = buf.len();
            drop(buffers);
            self.shared.changed.notify_all();
        }
        Err(TryIoError::WouldBlock)
    }

    fn try_write(&mut self, pending: [&[u8]; 2]) -> Result<usize, TryIoError<io::Error>> {
        let mut buffers = self.shared.lock();
        if let Some((kind, text)) = &buffers.write_failed {
            return Err(TryIoError::Failed(io::Error::new(*kind, text.clone())));
        }
        let mut room = buffers.write_room();
        if room == 0 {
            return Err(TryIoError::WouldBlock);
        }
        let mut taken = 0;
        for slice in pending {
            let part = slice.get(..room.min(slice.len())).unwrap_or_default();
            buffers.outgoing.extend_from_slice(part);
            taken += part.len();
            room -= part.len();
        }
        drop(buffers);
        self.shared.changed.notify_all();
        Ok(taken)
    }

    fn wait(&mut self, interest: IoInterest, until: Option<Instant>) -> Result<(), io::Error> {
        let mut buffers = self.shared.lock();
        loop {
            let readable = !buffers.incoming.is_empty() || !matches!(buffers.input, InputEnd::Open);
            let writable = buffers.write_room() > 0 || buffers.write_failed.is_some();
            if (interest.read && readable) || (interest.write && writable) {
                return Ok(());
            }
            if buffers.woken {
                buffers.woken = false;
                return Ok(());
            }
            let Some(until) = until else {
                buffers = self.shared.wait(buffers);
                continue;
            };
            let left = until.saturating_since(now());
            if left.is_zero() {
                return Ok(());
            }
            buffers = self
                .shared
                .changed
                .wait_timeout(buffers, left)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|poisoned| poisoned.into_inner().0);
        }
    }

    fn now(&mut self) -> Instant {
        now()
    }

    fn take_wake(&mut self) -> bool {
        let mut buffers = self.shared.lock();
        buffers.woken = false;
        std::mem::take(&mut buffers.wake_noted)
    }
}
