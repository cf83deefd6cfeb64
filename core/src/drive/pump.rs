//! The transport-independent half of a connection driver: what to do next, and what a
//! read or write result means for the connection.

use super::{Connection, DriveError, PollEvent};
use crate::iocom::{Event, LinkEnd};
use crate::time::Instant;

/// Which directions a driver waits on, once [`Pump::poll_event`] has nothing to report.
/// Both may be set: a driver reads while a write is pending, so two peers that flood
/// each other past their socket buffers keep draining each other instead of both
/// blocking in a write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoInterest {
    /// Read into [`Pump::read_buf`] (never empty when this is set) and report with
    /// [`Pump::on_read`].
    pub read: bool,
    /// Write [`Pump::pending`] and report with [`Pump::on_write`].
    pub write: bool,
}

/// What a driver does next, once [`Pump::poll_event`] has nothing to report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextIo {
    /// Wait for whichever of these directions is ready, or until
    /// [`Pump::poll_timeout`], then do what is ready (both, if both are) and call
    /// [`Pump::handle_timeout`]. Neither direction is set only while a timer runs.
    Wait(IoInterest),
    /// The peer closed the link cleanly and everything was said and written.
    Closed,
}

/// A connection and the decisions every driver shares, whatever its transport.
///
/// A driver loops: [`poll_event`](Self::poll_event) until it says `None`, then waits on
/// what [`next_io`](Self::next_io) says — read and write interest independently, and the
/// time until [`poll_timeout`](Self::poll_timeout) — reporting each transport result with
/// [`on_write`](Self::on_write) or [`on_read`](Self::on_read) (after retrying what its
/// transport calls "try again") and the time with [`handle_timeout`](Self::handle_timeout)
/// after every wake. How the link ended is the connection's own ([`Connection::link_end`]), so
/// events may be taken through either. [`Link`](super::Link) is that loop, written once.
///
/// ```
/// use core::convert::Infallible;
///
/// use h2msg::drive::{IoInterest, NextIo, Pump};
/// use h2msg::{CounterSalt, Event, Iocom, IocomMemory, LinkSetup};
/// use h2msg::wire::{Cmd, MsgHeader, SoftCrc32c};
///
/// // No allocator needed: the memory can be slices of the caller's own buffers.
/// let (mut fifo, mut ring) = ([0u8; 2048], [0u8; 256]);
/// let memory = IocomMemory { fifo: &mut fifo[..], aux: &mut [][..], tx_ring: &mut ring[..] };
/// let setup = LinkSetup::plaintext();
/// let io: Iocom<_, _, _, 4> = Iocom::new(setup, memory, CounterSalt::default(), SoftCrc32c)?;
/// let mut pump = Pump::new(io);
/// pump.io().send(MsgHeader::new(Cmd::LNK_PING), &[], &[])?;
///
/// assert!(pump.poll_event().is_none());
/// // Reading is wanted while the ping waits to be written.
/// let both = IoInterest { read: true, write: true };
/// assert_eq!(pump.next_io::<Infallible>(), Ok(NextIo::Wait(both)));
/// let [first, _] = pump.pending();
/// let n = first.len(); // a transport that took everything
/// pump.on_write::<Infallible>(Ok(n))?;
/// let read = IoInterest { read: true, write: false };
/// assert_eq!(pump.next_io::<Infallible>(), Ok(NextIo::Wait(read)));
/// pump.on_read::<Infallible>(Ok(0))?; // the peer closed
/// assert!(matches!(pump.poll_event(), Some(Event::LinkDown(_))));
/// assert_eq!(pump.next_io::<Infallible>(), Ok(NextIo::Closed));
/// # Ok::<(), Box<dyn core::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Pump<I> {
    io: I,
}

impl<I: Connection> Pump<I> {
    /// Drives `io` — an [`Iocom`](crate::Iocom) or a [`DmsgIocom`](crate::DmsgIocom) —
    /// which has completed its handshake.
    pub const fn new(io: I) -> Self {
        Self { io }
    }

    /// The connection, to send on or inspect.
    pub const fn io(&mut self) -> &mut I {
        &mut self.io
    }

    /// The connection back.
    pub fn into_io(self) -> I {
        self.io
    }

    /// How the link ended, once its `LinkDown` event was given.
    #[must_use]
    pub fn link_end(&self) -> Option<LinkEnd> {
        self.io.link_end()
    }

    /// The connection's next event.
    pub fn poll_event(&mut self) -> Option<<I as PollEvent<'_>>::Event> {
        self.io.poll_event()
    }

    /// What to wait for next, once [`poll_event`](Self::poll_event) said `None`.
    ///
    /// # Errors
    /// How the link failed, once it is down and everything was written
    /// ([`DriveError::from_link_end`]); [`DriveError::Stalled`] if there is nothing to do,
    /// no timer runs and the link is not finished (the core rules it out; a driver must
    /// not wait forever).
    pub fn next_io<E>(&mut self) -> Result<NextIo, DriveError<E>> {
        let interest = self.io.interest();
        if interest.finished {
            return match self.io.link_end().and_then(DriveError::from_link_end) {
                Some(failure) => Err(failure),
                None => Ok(NextIo::Closed),
            };
        }
        let wants = IoInterest {
            read: interest.read && !self.io.read_buf().is_empty(),
            write: interest.write,
        };
        if !wants.read && !wants.write && self.io.poll_timeout().is_none() {
            return Err(DriveError::Stalled);
        }
        Ok(NextIo::Wait(wants))
    }

    /// Whether bytes wait to be written.
    #[must_use]
    pub fn wants_write(&self) -> bool {
        self.io.interest().write
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called; `None`: no
    /// timer runs.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.io.poll_timeout()
    }

    /// Tells the connection the time: after every wake and at
    /// [`poll_timeout`](Self::poll_timeout).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.io.handle_timeout(now);
    }

    /// The transport would block on a write.
    pub fn write_would_block(&mut self) {
        self.io.write_would_block();
    }

    /// Bytes to write, oldest first, as two slices for a vectored write.
    #[must_use]
    pub fn pending(&self) -> [&[u8]; 2] {
        self.io.pending()
    }

    /// Where to read into.
    pub fn read_buf(&mut self) -> &mut [u8] {
        self.io.read_buf()
    }

    /// Reports a write of [`pending`](Self::pending): `Ok(n)` bytes taken, or the
    /// transport's error (not its "try again", which the driver retries).
    ///
    /// # Errors
    /// The error that failed the link: the transport's ([`DriveError::Io`]), a write that
    /// took nothing ([`DriveError::WriteZero`]) or more than it was given
    /// ([`DriveError::OverCommit`]).
    pub fn on_write<E>(&mut self, result: Result<usize, E>) -> Result<(), DriveError<E>> {
        let failure = match result {
            Ok(0) if self.wants_write() => DriveError::WriteZero,
            Ok(n) => match self.io.advance_write(n) {
                Ok(()) => return Ok(()),
                Err(over) => DriveError::OverCommit(over),
            },
            Err(e) => DriveError::Io(e),
        };
        Err(self.fail(failure))
    }

    /// Reports a read into [`read_buf`](Self::read_buf): `Ok(0)` for the end of input,
    /// `Ok(n)` bytes read, or the transport's error (not its "try again").
    ///
    /// # Errors
    /// The error that failed the link: the transport's ([`DriveError::Io`]) or a read of
    /// more than the room offered ([`DriveError::OverCommit`]).
    pub fn on_read<E>(&mut self, result: Result<usize, E>) -> Result<(), DriveError<E>> {
        let failure = match result {
            Ok(0) => {
                self.io.end_input();
                return Ok(());
            }
            Ok(n) => match self.io.commit_read(n) {
                Ok(()) => return Ok(()),
                Err(over) => DriveError::OverCommit(over),
            },
            Err(e) => DriveError::Io(e),
        };
        Err(self.fail(failure))
    }

    /// Reports a transport error outside a read or write (a flush, say): the link goes
    /// down (SOCK).
    pub fn on_transport_error<E>(&mut self, error: E) -> DriveError<E> {
        self.fail(DriveError::Io(error))
    }

    fn fail<E>(&mut self, failure: DriveError<E>) -> DriveError<E> {
        self.io.transport_failed();
        failure
    }
}

/// The `error` field of `event` if it is a reply to our message `msgid`: for a caller
/// of the low-level loop that waits for one reply (`link.next_event(|e| reply_error(&e,
/// msgid))`); h2msg-std's `handle` routes every reply to its waiter.
#[must_use]
pub fn reply_error(event: &Event<'_>, msgid: u32) -> Option<u16> {
    match event {
        Event::Message { msg, .. }
            if msg.header().cmd.is_reply() && msg.header().msgid == msgid =>
        {
            Some(msg.header().error)
        }
        _ => None,
    }
}

/// What a driver loop does with either pump — the handshake's or the connection's — for
/// one turn: the bytes to write and where to read, each transport result, and the time.
/// [`Link`](super::Link) and the handshake driver share one turn over it, and so can an
/// adapter's own loop (the tokio driver's does).
pub trait PumpIo {
    /// Bytes to write, oldest first.
    fn pending(&self) -> [&[u8]; 2];
    /// Where to read into.
    fn read_buf(&mut self) -> &mut [u8];
    /// Reports a write ([`Pump::on_write`]).
    ///
    /// # Errors
    /// The error that failed the link.
    fn on_write<E>(&mut self, result: Result<usize, E>) -> Result<(), DriveError<E>>;
    /// Reports a read ([`Pump::on_read`]).
    ///
    /// # Errors
    /// The error that failed the link.
    fn on_read<E>(&mut self, result: Result<usize, E>) -> Result<(), DriveError<E>>;
    /// The transport would block on a write (a connection remembers it as WREQ).
    fn write_would_block(&mut self) {}
    /// A transport failure outside a read or write (a flush, a wait).
    fn on_transport_error<E>(&mut self, error: E) -> DriveError<E> {
        DriveError::Io(error)
    }
    /// When the pump next needs the time.
    fn poll_timeout(&self) -> Option<Instant>;
    /// Tells the pump the time.
    fn handle_timeout(&mut self, now: Instant);
}

impl<I: Connection> PumpIo for Pump<I> {
    fn pending(&self) -> [&[u8]; 2] {
        Self::pending(self)
    }
    fn read_buf(&mut self) -> &mut [u8] {
        Self::read_buf(self)
    }
    fn on_write<E>(&mut self, result: Result<usize, E>) -> Result<(), DriveError<E>> {
        Self::on_write(self, result)
    }
    fn on_read<E>(&mut self, result: Result<usize, E>) -> Result<(), DriveError<E>> {
        Self::on_read(self, result)
    }
    fn write_would_block(&mut self) {
        Self::write_would_block(self);
    }
    fn on_transport_error<E>(&mut self, error: E) -> DriveError<E> {
        Self::on_transport_error(self, error)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Self::poll_timeout(self)
    }
    fn handle_timeout(&mut self, now: Instant) {
        Self::handle_timeout(self, now);
    }
}

#[cfg(test)]
mod tests {
    use core::convert::Infallible;

    use super::*;
    use crate::iocom::{Iocom, IocomMemory};
    use crate::ioq::tx::CounterSalt;
    use crate::trans::TransUpdate;
    use crate::wire::{Cmd, MessageView, MsgFlags, MsgHeader, SoftCrc32c, WireOrder};

    extern crate std;
    use std::vec;
    use std::vec::Vec;

    type TestPump = Pump<Iocom<Vec<u8>, CounterSalt, SoftCrc32c, 4>>;

    const READ: IoInterest = IoInterest {
        read: true,
        write: false,
    };

    fn fresh() -> TestPump {
        fresh_with(crate::Liveness::OFF)
    }

    fn fresh_with(liveness: crate::Liveness) -> TestPump {
        let memory = IocomMemory {
            fifo: vec![0u8; 2048],
            aux: vec![],
            tx_ring: vec![0u8; 256],
        };
        let setup = crate::LinkSetup::plaintext();
        let config = crate::Config {
            liveness,
            ..crate::Config::default()
        };
        Pump::new(
            Iocom::with_config(setup, memory, CounterSalt::default(), SoftCrc32c, config).unwrap(),
        )
    }

    /// WriteZero is a write that took nothing of a non-empty buffer; a write of nothing
    /// when nothing waits is no failure.
    #[test]
    fn a_write_of_nothing_fails_the_link_only_when_bytes_wait() {
        let mut pump = fresh();
        assert_eq!(pump.on_write::<Infallible>(Ok(0)), Ok(()));
        assert_eq!(
            pump.next_io::<Infallible>(),
            Ok(NextIo::Wait(READ)),
            "still up"
        );

        pump.io()
            .send(MsgHeader::new(Cmd::LNK_PING), &[], &[])
            .unwrap();
        assert_eq!(
            pump.on_write::<Infallible>(Ok(0)),
            Err(DriveError::WriteZero)
        );
        assert!(matches!(
            pump.poll_event(),
            Some(Event::LinkDown(LinkEnd::TransportFailed))
        ));
    }

    #[test]
    fn the_pump_remembers_how_the_link_ended() {
        let mut pump = fresh();
        assert_eq!(pump.link_end(), None);
        pump.on_read::<Infallible>(Ok(0)).unwrap();
        assert_eq!(pump.link_end(), None, "not until the event went through");
        assert!(matches!(pump.poll_event(), Some(Event::LinkDown(_))));
        assert_eq!(pump.link_end(), Some(LinkEnd::Closed));

        let mut pump = fresh();
        assert_eq!(pump.on_read(Err("reset")), Err(DriveError::Io("reset")));
        assert!(pump.poll_event().is_some());
        assert_eq!(pump.link_end(), Some(LinkEnd::TransportFailed));
    }

    /// `reply_error` answers only for a reply, and only for the msgid asked about.
    #[test]
    fn only_a_reply_to_our_msgid_is_the_reply() {
        let wire = |cmd: Cmd, msgid: u32, error: u16| {
            let mut h = MsgHeader::new(cmd);
            h.msgid = msgid;
            h.error = error;
            h.seal(WireOrder::Little, &[], &[], &SoftCrc32c).unwrap()
        };
        let reply = Cmd::DBG_SHELL.set(MsgFlags::REPLY);
        let cases = [
            (wire(reply, 5, 0x13), Some(0x13)),
            (wire(reply, 6, 0x13), None),
            (wire(Cmd::DBG_SHELL, 5, 0x13), None),
            (wire(Cmd::DBG_SHELL, 6, 0x13), None),
        ];
        for (bytes, expect) in cases {
            let msg = MessageView::parse(&bytes, &SoftCrc32c).unwrap();
            let event = Event::Message {
                msg,
                update: TransUpdate::OneWay,
            };
            assert_eq!(reply_error(&event, 5), expect, "{:?}", msg.header());
        }
    }

    /// `Read` is never said with nowhere to read into: a message that fills the FIFO
    /// needs a `poll_event` first, and until then there is nothing to do.
    #[test]
    fn read_is_never_said_with_an_empty_read_buf() {
        let mut pump = fresh();
        pump.io().accept(Cmd::DBG_SHELL).unwrap();
        // A 32-byte header and its aux: 2048 bytes, the whole FIFO.
        let aux = [0x5Au8; 2048 - 32];
        let header = MsgHeader::new(Cmd::DBG_SHELL)
            .seal(WireOrder::Little, &[], &aux, &SoftCrc32c)
            .unwrap();
        let bytes = [&header[..], &aux[..]].concat();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let buf = pump.read_buf();
            let n = buf.len().min(rest.len());
            assert!(n > 0, "the FIFO takes the whole message");
            buf[..n].copy_from_slice(&rest[..n]);
            pump.on_read::<Infallible>(Ok(n)).unwrap();
            rest = &rest[n..];
        }
        assert!(pump.read_buf().is_empty(), "the FIFO is full");
        assert_eq!(pump.next_io::<Infallible>(), Err(DriveError::Stalled));
        assert!(matches!(pump.poll_event(), Some(Event::Message { .. })));
        assert!(pump.poll_event().is_none());
        assert_eq!(pump.next_io::<Infallible>(), Ok(NextIo::Wait(READ)));
        assert!(!pump.read_buf().is_empty());
    }

    /// A pending write does not hide read interest: the write-first policy that let two
    /// flooding peers block each other for good is gone.
    #[test]
    fn read_interest_stays_while_a_write_is_pending() {
        let mut pump = fresh();
        pump.io()
            .send(MsgHeader::new(Cmd::LNK_PING), &[], &[])
            .unwrap();
        assert_eq!(
            pump.next_io::<Infallible>(),
            Ok(NextIo::Wait(IoInterest {
                read: true,
                write: true
            }))
        );
    }

    /// With nothing to read (a full FIFO) a running timer is still something to wait
    /// for; the time goes to the connection through the pump.
    #[test]
    fn a_running_timer_is_worth_waiting_for() {
        let idle = core::time::Duration::from_millis(100);
        let mut pump = fresh_with(crate::Liveness {
            idle: Some(idle),
            dead: Some(idle),
            stall: None,
        });
        pump.handle_timeout(Instant::from_millis(0));
        assert_eq!(pump.poll_timeout(), Some(Instant::from_millis(100)));
        pump.handle_timeout(Instant::from_millis(100));
        assert!(pump.wants_write(), "the keepalive ping is queued");
    }
}
