//! An async driver: the core's handshake and connection over any tokio
//! `AsyncRead + AsyncWrite` (TCP, Unix sockets, in-memory duplex streams), with vectored
//! writes and a hardware CRC-32C. The same decisions as [`blocking`](crate::blocking),
//! made once in [`h2msg::drive`]'s pumps; the loop awaits instead of blocking.
//!
//! Full duplex: each turn polls the write and the read side of the stream (and the
//! timer) in one future, so a pending write never keeps a read from running. Time comes
//! from [`blocking::now`](crate::blocking::now), the clock of every std driver, and a
//! tokio sleep wakes the loop at the core's `poll_timeout`. A runtime without its time
//! driver (`enable_time`) can still run links that need no timer (no handshake deadline,
//! [`Liveness::OFF`](h2msg::Liveness::OFF)); one that needs a timer gets a clear error
//! ([`NO_TIME_DRIVER`]) instead of tokio's panic.

use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use h2msg::drive::{HandshakeNext, HandshakePump, IoInterest, NextIo, Pump, PumpIo};
use h2msg::{Event, Handshake, Instant, RawRsa, Session};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Sleep;

use crate::blocking::{DriveError, StdIocom, TRANSACTIONS, now};

mod handle_driver;
mod setup;
pub use handle_driver::{HandleDriver, into_handle};
pub use setup::{accept, accept_peer, connect};

/// The message of the error a link that needs a timer gets on a runtime without tokio's
/// time driver.
pub const NO_TIME_DRIVER: &str =
    "the tokio runtime has no time driver: build it with `enable_time()` (or `enable_all()`)";

type StdPump<const T: usize> = Pump<StdIocom<T>>;

/// The timer of one driver: a tokio sleep to the core's next deadline, made when first
/// needed.
#[derive(Default)]
struct Timer {
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Timer {
    /// Points the timer at `until` (`None`: no timer).
    ///
    /// # Errors
    /// [`NO_TIME_DRIVER`] on a runtime without the time driver.
    fn set(&mut self, until: Option<Instant>) -> io::Result<()> {
        let Some(until) = until else {
            self.sleep = None;
            return Ok(());
        };
        let deadline = tokio::time::Instant::now() + until.saturating_since(now());
        if let Some(sleep) = &mut self.sleep {
            sleep.as_mut().reset(deadline);
            return Ok(());
        }
        // tokio offers no way to ask whether its time driver is on: making the sleep
        // panics without it. The panic is caught here, once per driver, and becomes an
        // error the caller can report.
        let made = std::panic::catch_unwind(|| tokio::time::sleep_until(deadline));
        let sleep = made.map_err(|_| io::Error::other(NO_TIME_DRIVER))?;
        self.sleep = Some(Box::pin(sleep));
        Ok(())
    }

    /// Whether the timer is due (registering the waker if not).
    fn poll_due(&mut self, cx: &mut Context<'_>) -> bool {
        self.sleep
            .as_mut()
            .is_some_and(|sleep| sleep.as_mut().poll(cx).is_ready())
    }
}

/// One turn of either loop: writes and reads what is wanted and ready — both, if both
/// are — or waits for the stream or the timer, whichever comes first.
async fn turn<S, P>(
    stream: &mut S,
    pump: &mut P,
    timer: &mut Timer,
    wants: IoInterest,
) -> Result<(), DriveError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    P: PumpIo,
{
    poll_fn(|cx| {
        let mut moved = false;
        if wants.write {
            let [older, newer] = pump.pending();
            let slices = [IoSlice::new(older), IoSlice::new(newer)];
            match Pin::new(&mut *stream).poll_write_vectored(cx, &slices) {
                Poll::Ready(result) => {
                    pump.on_write(result)?;
                    moved = true;
                }
                Poll::Pending => pump.write_would_block(),
            }
        }
        if wants.read {
            let mut read = ReadBuf::new(pump.read_buf());
            if let Poll::Ready(result) = Pin::new(&mut *stream).poll_read(cx, &mut read) {
                let n = read.filled().len();
                pump.on_read(result.map(|()| n))?;
                moved = true;
            }
        }
        if moved || timer.poll_due(cx) {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    })
    .await
}

/// Connects over TCP with `TCP_NODELAY`, as the blocking side's endpoints do
/// ([`Endpoint::connect`](crate::transport::Endpoint::connect)): the core hands whole
/// messages to each write, so Nagle's algorithm would only hold small replies back.
///
/// # Errors
/// The connection's or the socket option's.
pub async fn connect_tcp(
    address: impl tokio::net::ToSocketAddrs,
) -> io::Result<tokio::net::TcpStream> {
    let stream = tokio::net::TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Runs a handshake over `stream`: sends our 512 bytes while reading the peer's. Give
/// `hs` its deadline on the std drivers' clock ([`blocking::now`](crate::blocking::now));
/// at it the exchange ends with KEYXCHGFAIL (needs tokio's time driver).
///
/// # Errors
/// [`DriveError`]: the transport's (SOCK; [`NO_TIME_DRIVER`] too) or the handshake's
/// (12–14).
pub async fn drive_handshake<S, K>(stream: &mut S, hs: Handshake<K>) -> Result<Session, DriveError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    K: RawRsa,
{
    let mut pump = HandshakePump::new(hs);
    let mut timer = Timer::default();
    pump.handle_timeout(now());
    loop {
        let wants = match pump.next_step()? {
            HandshakeNext::Done(session) => return Ok(session),
            HandshakeNext::Wait(wants) => wants,
        };
        timer.set(pump.poll_timeout()).map_err(DriveError::Io)?;
        turn(stream, &mut pump, &mut timer, wants).await?;
        pump.handle_timeout(now());
    }
}

/// One connection over an async stream. For requests from several tasks, each awaiting
/// its own reply, turn it into a [`Handle`](crate::handle::Handle) ([`into_handle`]);
/// this is the low-level loop.
///
/// Cancel-safe between awaits: a dropped `next_event` or `flush` loses no byte (a poll
/// moves nothing it does not report), so a `Link` can sit in a `select!`.
///
/// ```
/// use h2msg::LinkSetup;
/// use h2msg::drive::reply_error;
/// use h2msg::wire::{Cmd, MsgHeader};
/// use h2msg_std::blocking::std_iocom;
/// use h2msg_std::tokio_driver::Link;
/// use tokio::io::{AsyncRead, AsyncWrite};
///
/// /// One ping over a stream whose handshake is done (`setup` negotiated from it): the
/// /// reply's error field.
/// async fn ping<S>(stream: S, setup: LinkSetup) -> Result<u16, Box<dyn std::error::Error>>
/// where
///     S: AsyncRead + AsyncWrite + Unpin,
/// {
///     let mut io = std_iocom(setup, 0)?;
///     io.accept(Cmd::LNK_PING)?; // to see the reply
///     let mut link = Link::new(stream, io);
///     let mut ping = MsgHeader::new(Cmd::LNK_PING);
///     ping.msgid = 1;
///     link.io().send(ping, &[], &[])?;
///     // Events until the reply to msgid 1 (the error field of each that is one).
///     while let Some(answer) = link.next_event(|event| reply_error(&event, 1)).await? {
///         if let Some(error) = answer {
///             return Ok(error);
///         }
///     }
///     Err("the peer closed the link first".into())
/// }
/// ```
///
/// `T` is the size of the transaction tables ([`TRANSACTIONS`] unless chosen, see
/// [`LinkOptions::transactions`](crate::link::LinkOptions::transactions)).
pub struct Link<S, const T: usize = TRANSACTIONS> {
    stream: S,
    pump: StdPump<T>,
    timer: Timer,
}

impl<S: AsyncRead + AsyncWrite + Unpin, const T: usize> Link<S, T> {
    /// A connection over `stream`, which has completed its handshake.
    pub fn new(stream: S, io: StdIocom<T>) -> Self {
        let mut pump = Pump::new(io);
        pump.handle_timeout(now());
        Self {
            stream,
            pump,
            timer: Timer::default(),
        }
    }

    /// The connection, to send on or inspect.
    pub fn io(&mut self) -> &mut StdIocom<T> {
        self.pump.io()
    }

    /// The stream, for what the driver does not do (shutting down its write half, say).
    pub fn stream(&mut self) -> &mut S {
        &mut self.stream
    }

    /// Writes everything queued (reading meanwhile while there is room), then flushes
    /// the stream.
    ///
    /// # Errors
    /// The transport's error (SOCK; the connection is then failed), or how the link
    /// failed (a liveness rule).
    pub async fn flush(&mut self) -> Result<(), DriveError> {
        while self.pump.wants_write() {
            match self.pump.next_io()? {
                NextIo::Closed => break,
                NextIo::Wait(wants) => self.turn(wants).await?,
            }
        }
        let result = self.stream.flush().await;
        result.map_err(|e| self.pump.on_transport_error(e))
    }

    /// Waits for the next event and hands it to `f`, reading and writing at once. `None`
    /// once the peer closed the link cleanly and everything was said.
    ///
    /// # Errors
    /// The transport's error (SOCK; the connection is then failed), or how the link failed
    /// (the decoder's IOQ code, a liveness rule) once its last event was given.
    pub async fn next_event<R>(
        &mut self,
        f: impl FnOnce(Event<'_>) -> R,
    ) -> Result<Option<R>, DriveError> {
        loop {
            if let Some(event) = self.pump.poll_event() {
                return Ok(Some(f(event)));
            }
            match self.pump.next_io()? {
                NextIo::Closed => return Ok(None),
                NextIo::Wait(wants) => self.turn(wants).await?,
            }
        }
    }

    /// One turn of the loop for a caller that takes the events itself
    /// (`link.io().poll_event()`), as the blocking link's
    /// [`step`](h2msg::drive::Link::step): moves what can move, or waits until something
    /// could or a timer is due. False once the peer closed the link cleanly and
    /// everything was said. Cancel-safe, as `next_event` is.
    ///
    /// # Errors
    /// As [`next_event`](Self::next_event).
    pub async fn step(&mut self) -> Result<bool, DriveError> {
        match self.pump.next_io()? {
            NextIo::Closed => Ok(false),
            NextIo::Wait(wants) => self.turn(wants).await.map(|()| true),
        }
    }

    /// One turn ([`turn`]), then the time to the connection.
    async fn turn(&mut self, wants: IoInterest) -> Result<(), DriveError> {
        let set = self.timer.set(self.pump.poll_timeout());
        set.map_err(|e| self.pump.on_transport_error(e))?;
        turn(&mut self.stream, &mut self.pump, &mut self.timer, wants).await?;
        self.pump.handle_timeout(now());
        Ok(())
    }
}
