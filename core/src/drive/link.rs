//! The driver loop, written once: flush, next event and the handshake,
//! over any [`Transport`] — the blocking std driver, the embedded-io driver and the test
//! doubles all run this code.

use super::{
    Connection, DriveError, HandshakeNext, HandshakePump, IoInterest, NextIo, PollEvent, Pump,
    PumpIo,
};
use crate::handshake::{Handshake, RawRsa, Session};
use crate::time::Instant;

/// Why a transport moved no bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TryIoError<E> {
    /// Not now: the driver waits ([`Transport::wait`]) and tries again.
    WouldBlock,
    /// The transport failed; the link goes down (SOCK).
    Failed(E),
}

/// What the driver loop needs of a transport: reads and writes that never block, a way
/// to sleep until one of them could move bytes or a time comes, and the clock the
/// core's timers run on.
pub trait Transport {
    /// The transport's error.
    type Error;

    /// Reads into `buf`: `Ok(0)` is the end of input. Retries "interrupted" itself.
    ///
    /// # Errors
    /// [`TryIoError::WouldBlock`] when nothing is there yet; the transport's failure.
    fn try_read(&mut self, buf: &mut [u8]) -> Result<usize, TryIoError<Self::Error>>;

    /// Writes from the front of `pending` (the older slice first): how many bytes were
    /// taken. Retries "interrupted" itself.
    ///
    /// # Errors
    /// [`TryIoError::WouldBlock`] when no byte fits now; the transport's failure.
    fn try_write(&mut self, pending: [&[u8]; 2]) -> Result<usize, TryIoError<Self::Error>>;

    /// Pushes written bytes out of any buffer of the transport's own; called whenever
    /// the connection has nothing more to write.
    ///
    /// # Errors
    /// The transport's failure.
    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }

    /// Returns once a direction in `interest` may move bytes, or at `until` (never, if
    /// `None`), or earlier: a spurious return costs one more turn of the loop.
    ///
    /// # Errors
    /// The transport's failure.
    fn wait(&mut self, interest: IoInterest, until: Option<Instant>) -> Result<(), Self::Error>;

    /// The transport's clock: monotonic milliseconds, the origin its own.
    fn now(&mut self) -> Instant;

    /// Whether another thread asked the link's caller to look up since the last call
    /// (the request is cleared): [`Link::next_event_until`] then returns
    /// [`Waited::Woken`]. A transport that can be woken also returns from
    /// [`wait`](Self::wait) when asked. Transports no one wakes keep the default, false.
    fn take_wake(&mut self) -> bool {
        false
    }
}

impl<T: Transport + ?Sized> Transport for &mut T {
    type Error = T::Error;

    fn try_read(&mut self, buf: &mut [u8]) -> Result<usize, TryIoError<Self::Error>> {
        (**self).try_read(buf)
    }

    fn try_write(&mut self, pending: [&[u8]; 2]) -> Result<usize, TryIoError<Self::Error>> {
        (**self).try_write(pending)
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        (**self).flush()
    }

    fn wait(&mut self, interest: IoInterest, until: Option<Instant>) -> Result<(), Self::Error> {
        (**self).wait(interest, until)
    }

    fn now(&mut self) -> Instant {
        (**self).now()
    }

    fn take_wake(&mut self) -> bool {
        (**self).take_wake()
    }
}

/// Runs a handshake over `transport`: writes our 512 bytes while reading the peer's, and
/// gives the handshake the transport's time after every wake, so its deadline (given to
/// [`Handshake::new`] on the transport's clock) ends the exchange with KEYXCHGFAIL (12,
/// §11 H7). Reads nothing past the peer's block.
///
/// # Errors
/// [`DriveError`]: the transport's (SOCK) or the handshake's (12–14).
pub fn drive_handshake<T, K>(
    transport: &mut T,
    hs: Handshake<K>,
) -> Result<Session, DriveError<T::Error>>
where
    T: Transport + ?Sized,
    K: RawRsa,
{
    let mut pump = HandshakePump::new(hs);
    let now = transport.now();
    pump.handle_timeout(now);
    loop {
        let wants = match pump.next_step()? {
            HandshakeNext::Done(session) => return Ok(session),
            HandshakeNext::Wait(wants) => wants,
        };
        turn(transport, &mut pump, wants, None)?;
    }
}

/// What [`Link::next_event_until`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waited<U> {
    /// An event, as the callback made it.
    Event(U),
    /// The peer closed the link cleanly and everything was said.
    Closed,
    /// The deadline came first.
    Elapsed,
    /// Another thread woke the caller ([`Transport::take_wake`]) before anything else.
    Woken,
}

/// One connection over a [`Transport`]: the driver loop every driver shares.
///
/// `T` is the transport, `I` the connection: an [`Iocom`](crate::Iocom) or a
/// [`DmsgIocom`](crate::DmsgIocom).
#[derive(Debug)]
pub struct Link<T, I> {
    transport: T,
    pump: Pump<I>,
}

impl<T, I> Link<T, I>
where
    T: Transport,
    I: Connection,
{
    /// A connection over `transport`, which has completed its handshake.
    pub fn new(mut transport: T, io: I) -> Self {
        let mut pump = Pump::new(io);
        // Starts the timers on the transport's clock.
        pump.handle_timeout(transport.now());
        Self { transport, pump }
    }

    /// The connection, to send on or inspect.
    pub const fn io(&mut self) -> &mut I {
        self.pump.io()
    }

    /// The transport.
    pub const fn transport(&mut self) -> &mut T {
        &mut self.transport
    }

    /// The transport and the connection back.
    pub fn into_parts(self) -> (T, I) {
        (self.transport, self.pump.into_io())
    }

    /// Writes everything queued, then flushes the transport; reads while it waits, so a
    /// peer that writes to us as we write to it is never left blocked. Gives up when the
    /// link goes down.
    ///
    /// # Errors
    /// The transport's (SOCK; the connection is then failed), or how the link failed
    /// (a liveness rule: [`DriveError::WriteStalled`], say).
    pub fn flush(&mut self) -> Result<(), DriveError<T::Error>> {
        while self.pump.wants_write() {
            match self.pump.next_io()? {
                NextIo::Closed => break,
                NextIo::Wait(wants) => self.turn(wants)?,
            }
        }
        Ok(())
    }

    /// Waits for the next event and hands it to `f`, reading and writing as the
    /// transport allows and telling the connection the time after every wake. `None`
    /// once the peer closed the link cleanly and everything was said.
    ///
    /// # Errors
    /// The transport's (SOCK; the connection is then failed), or how the link failed
    /// (the decoder's IOQ code, a liveness rule) once its last event was given.
    pub fn next_event<U>(
        &mut self,
        f: impl for<'e> FnOnce(<I as PollEvent<'e>>::Event) -> U,
    ) -> Result<Option<U>, DriveError<T::Error>> {
        loop {
            if let Some(event) = self.pump.poll_event() {
                return Ok(Some(f(event)));
            }
            match self.pump.next_io()? {
                NextIo::Closed => return Ok(None),
                NextIo::Wait(wants) => self.turn(wants)?,
            }
        }
    }

    /// Like [`next_event`](Self::next_event), but gives up at `deadline` on the
    /// transport's clock: [`Waited::Elapsed`] then, with the link still up and driven
    /// until that moment (pings answered, timers run). A caller that waits for something
    /// else — a person's next line — calls it with short deadlines to keep the link alive.
    ///
    /// # Errors
    /// As [`next_event`](Self::next_event).
    pub fn next_event_until<U>(
        &mut self,
        deadline: Instant,
        f: impl for<'e> FnOnce(<I as PollEvent<'e>>::Event) -> U,
    ) -> Result<Waited<U>, DriveError<T::Error>> {
        loop {
            if let Some(event) = self.pump.poll_event() {
                return Ok(Waited::Event(f(event)));
            }
            if self.transport.take_wake() {
                return Ok(Waited::Woken);
            }
            if self.transport.now() >= deadline {
                return Ok(Waited::Elapsed);
            }
            match self.pump.next_io()? {
                NextIo::Closed => return Ok(Waited::Closed),
                NextIo::Wait(wants) => self.turn_until(wants, Some(deadline))?,
            }
        }
    }

    /// One turn of the loop, for a caller that takes the events itself
    /// (`link.io().poll_event()`) and queues between turns: moves what can move in both
    /// directions — reading too while a write waits — or waits until something could or
    /// a timer is due, then tells the connection the time. False once the peer closed
    /// the link cleanly and everything was said. Take every ready event before each
    /// call: a FIFO holding an untaken message reads no more.
    ///
    /// # Errors
    /// As [`next_event`](Self::next_event).
    pub fn step(&mut self) -> Result<bool, DriveError<T::Error>> {
        match self.pump.next_io()? {
            NextIo::Closed => Ok(false),
            NextIo::Wait(wants) => self.turn(wants).map(|()| true),
        }
    }

    /// One turn of the loop: move what can move in both directions, wait if nothing
    /// could, then tell the connection the time.
    fn turn(&mut self, wants: IoInterest) -> Result<(), DriveError<T::Error>> {
        self.turn_until(wants, None)
    }

    /// [`turn`](Self::turn), waiting no later than `deadline` as well.
    fn turn_until(
        &mut self,
        wants: IoInterest,
        deadline: Option<Instant>,
    ) -> Result<(), DriveError<T::Error>> {
        turn(&mut self.transport, &mut self.pump, wants, deadline)
    }
}

/// One turn of a driver loop, for the handshake and the connection alike: moves what can
/// move in both directions, waits (no later than `deadline`, nor the pump's own timer) if
/// nothing could, then tells the pump the time.
fn turn<T, P>(
    transport: &mut T,
    pump: &mut P,
    wants: IoInterest,
    deadline: Option<Instant>,
) -> Result<(), DriveError<T::Error>>
where
    T: Transport + ?Sized,
    P: PumpIo,
{
    let mut moved = false;
    if wants.write {
        match transport.try_write(pump.pending()) {
            Ok(n) => {
                pump.on_write(Ok(n))?;
                moved = true;
                if pump.pending().iter().all(|part| part.is_empty()) {
                    let flushed = transport.flush();
                    flushed.map_err(|e| pump.on_transport_error(e))?;
                }
            }
            Err(TryIoError::WouldBlock) => pump.write_would_block(),
            Err(TryIoError::Failed(e)) => pump.on_write(Err(e))?,
        }
    }
    if wants.read {
        match transport.try_read(pump.read_buf()) {
            Ok(n) => {
                pump.on_read(Ok(n))?;
                moved = true;
            }
            Err(TryIoError::WouldBlock) => {}
            Err(TryIoError::Failed(e)) => pump.on_read(Err(e))?,
        }
    }
    if !moved {
        let until = crate::time::earliest(pump.poll_timeout(), deadline);
        let waited = transport.wait(wants, until);
        waited.map_err(|e| pump.on_transport_error(e))?;
    }
    let now = transport.now();
    pump.handle_timeout(now);
    Ok(())
}
