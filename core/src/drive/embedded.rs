//! A driver over `embedded_io` 0.7: UARTs, USB CDC, a TCP socket of an embedded stack.
//! No allocation. Full duplex through the transport's `ReadReady` / `WriteReady` (a read
//! or write is tried only when it would not block), and time through a [`Clock`] the
//! board supplies; the loop itself is the core's one driver loop ([`super::Link`]).

use embedded_io::{ErrorKind, Read, ReadReady, Write, WriteReady};

use super::{IoInterest, Transport, TryIoError};
use crate::handshake::{Handshake, RawRsa, Session};
use crate::time::Instant;

use super::DriveError;

/// The board's monotonic millisecond clock (a SysTick counter, an RTC).
pub trait Clock {
    /// Milliseconds since an origin of the clock's choice.
    fn now(&mut self) -> Instant;
}

/// A clock that never moves: the core's timers never fall due. For a board without a
/// clock; give its connections [`Liveness::OFF`](crate::Liveness::OFF) and its handshake
/// no deadline, or the driver wakes at once, again and again, for timers that never come
/// due.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoClock;

impl Clock for NoClock {
    fn now(&mut self) -> Instant {
        Instant::ZERO
    }
}

/// An `embedded_io` transport and a clock as a [`Transport`].
///
/// [`wait`](Transport::wait) polls the ready flags and the clock until one says go: a
/// board with interrupts or a low-power wait wraps its own `Transport` instead.
#[derive(Debug)]
pub struct Embedded<T, K> {
    /// The transport.
    pub io: T,
    /// The clock.
    pub clock: K,
}

impl<T, K> Embedded<T, K> {
    /// `io` with `clock`.
    pub const fn new(io: T, clock: K) -> Self {
        Self { io, clock }
    }
}

impl<T, K> Transport for Embedded<T, K>
where
    T: Read + Write + ReadReady + WriteReady,
    K: Clock,
{
    type Error = T::Error;

    fn try_read(&mut self, buf: &mut [u8]) -> Result<usize, TryIoError<T::Error>> {
        if !self.io.read_ready().map_err(TryIoError::Failed)? {
            return Err(TryIoError::WouldBlock);
        }
        retry_interrupted(|| self.io.read(buf))
    }

    fn try_write(&mut self, pending: [&[u8]; 2]) -> Result<usize, TryIoError<T::Error>> {
        if !self.io.write_ready().map_err(TryIoError::Failed)? {
            return Err(TryIoError::WouldBlock);
        }
        // No vectored write in embedded_io: the older slice holds the oldest bytes
        // whenever any wait.
        let [oldest, _] = pending;
        retry_interrupted(|| self.io.write(oldest))
    }

    fn flush(&mut self) -> Result<(), T::Error> {
        self.io.flush()
    }

    fn wait(&mut self, interest: IoInterest, until: Option<Instant>) -> Result<(), T::Error> {
        loop {
            if interest.read && self.io.read_ready()? {
                return Ok(());
            }
            if interest.write && self.io.write_ready()? {
                return Ok(());
            }
            if until.is_some_and(|at| self.clock.now() >= at) {
                return Ok(());
            }
            core::hint::spin_loop();
        }
    }

    fn now(&mut self) -> Instant {
        self.clock.now()
    }
}

/// Repeats a call its transport interrupted (as a signal interrupts a system call);
/// a timeout of the transport is a "not now", never a failure.
fn retry_interrupted<E: embedded_io::Error>(
    mut call: impl FnMut() -> Result<usize, E>,
) -> Result<usize, TryIoError<E>> {
    loop {
        match call() {
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::TimedOut => return Err(TryIoError::WouldBlock),
            Err(e) => return Err(TryIoError::Failed(e)),
            Ok(n) => return Ok(n),
        }
    }
}

/// Runs a handshake over `transport` ([`super::drive_handshake`]); its deadline, given
/// to [`Handshake::new`] on the transport's clock, ends it with KEYXCHGFAIL (12, §11 H7).
///
/// # Errors
/// [`DriveError`]: the transport's (SOCK) or the handshake's (12–14).
pub fn drive_handshake<T, K, R>(
    transport: &mut Embedded<T, K>,
    hs: Handshake<R>,
) -> Result<Session, DriveError<T::Error>>
where
    T: Read + Write + ReadReady + WriteReady,
    K: Clock,
    R: RawRsa,
{
    super::drive_handshake(transport, hs)
}

/// One connection over an `embedded_io` transport and a clock, in the caller's memory:
/// the core's driver loop over [`Embedded`].
///
/// ```
/// use h2msg::drive::embedded::{Embedded, Link, NoClock};
/// use h2msg::{Config, CounterSalt, Event, Iocom, IocomMemory, LinkEnd, LinkSetup, Liveness};
/// use h2msg::wire::{Cmd, MessageView, MsgHeader, SoftCrc32c, WireOrder};
/// # use core::convert::Infallible;
/// # /// Reads a recorded stream, keeps what is written.
/// # struct Recorded<'a> { input: &'a [u8], output: Vec<u8> }
/// # impl embedded_io::ErrorType for Recorded<'_> { type Error = Infallible; }
/// # impl embedded_io::Read for Recorded<'_> {
/// #     fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> { embedded_io::Read::read(&mut self.input, buf) }
/// # }
/// # impl embedded_io::Write for Recorded<'_> {
/// #     fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
/// #         self.output.extend_from_slice(buf);
/// #         Ok(buf.len())
/// #     }
/// #     fn flush(&mut self) -> Result<(), Infallible> { Ok(()) }
/// # }
/// # impl embedded_io::ReadReady for Recorded<'_> {
/// #     fn read_ready(&mut self) -> Result<bool, Infallible> { Ok(true) }
/// # }
/// # impl embedded_io::WriteReady for Recorded<'_> {
/// #     fn write_ready(&mut self) -> Result<bool, Infallible> { Ok(true) }
/// # }
///
/// // The peer sends one LNK_PING, then closes.
/// let ping = MsgHeader::new(Cmd::LNK_PING).seal(WireOrder::Little, &[], &[], &SoftCrc32c)?;
/// let transport = Recorded { input: &ping, output: Vec::new() };
///
/// let memory = IocomMemory { fifo: vec![0u8; 2048], aux: vec![], tx_ring: vec![0u8; 256] };
/// let setup = LinkSetup::plaintext();
/// // A board without a clock: no timers.
/// let config = Config { liveness: Liveness::OFF, ..Config::default() };
/// let io: Iocom<_, _, _, 4> =
///     Iocom::with_config(setup, memory, CounterSalt::default(), SoftCrc32c, config)?;
/// let mut link: Link<_, _, _> = Link::new(Embedded::new(transport, NoClock), io);
///
/// // The core answers the ping by itself; the next event is the close.
/// let end = link.next_event(|e| matches!(e, Event::LinkDown(LinkEnd::Closed)))?;
/// assert_eq!(end, Some(true));
/// assert_eq!(link.next_event(|_| ())?, None);
///
/// let (transport, _) = link.into_parts();
/// let reply = MessageView::parse(&transport.io.output, &SoftCrc32c)?;
/// assert!(reply.header().cmd.is_reply());
/// # Ok::<(), Box<dyn core::error::Error>>(())
/// ```
pub type Link<T, K, I> = super::Link<Embedded<T, K>, I>;
