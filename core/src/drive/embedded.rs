//! A blocking driver over `embedded_io` 0.7 `Read + Write`: UARTs, USB CDC, a TCP socket
//! of an embedded stack. No allocation, no clock: bound a handshake's wait with the
//! transport's own timeout.

use embedded_io::{ErrorKind, Read, Write};
use rand_core::Rng;

use super::{DriveError, HandshakeNext, HandshakePump, NextIo, Pump, reply_error};
use crate::handshake::{Handshake, RawRsa, Session};
use crate::iocom::{Event, Iocom};
use crate::wire::Crc32c;

/// Whether a transport result asks to be retried (`Interrupted`), as a signal-interrupted
/// system call does.
fn interrupted<E: embedded_io::Error>(result: &Result<usize, E>) -> bool {
    matches!(result, Err(e) if e.kind() == ErrorKind::Interrupted)
}

/// Runs a handshake over `transport`: writes our 512 bytes, then reads the peer's. A read
/// that fails with [`ErrorKind::TimedOut`] — the transport's timeout, this driver's only
/// clock — ends the handshake as its deadline would: KEYXCHGFAIL (12, §11 H7), not SOCK.
///
/// # Errors
/// [`DriveError`]: the transport's (SOCK) or the handshake's (12–14).
pub fn drive_handshake<T, K>(
    transport: &mut T,
    hs: Handshake<K>,
) -> Result<Session, DriveError<T::Error>>
where
    T: Read + Write,
    K: RawRsa,
{
    let mut pump = HandshakePump::new(hs);
    loop {
        match pump.next_step()? {
            HandshakeNext::Write => {
                let result = transport.write(pump.pending());
                if !interrupted(&result) {
                    pump.on_write(result)?;
                    if pump.pending().is_empty() {
                        transport.flush().map_err(DriveError::Io)?;
                    }
                }
            }
            HandshakeNext::Read => {
                let result = transport.read(pump.read_buf());
                if matches!(&result, Err(e) if embedded_io::Error::kind(e) == ErrorKind::TimedOut) {
                    return Err(pump.timed_out());
                }
                if !interrupted(&result) {
                    pump.on_read(result)?;
                }
            }
            HandshakeNext::Done(session) => return Ok(session),
        }
    }
}

/// One connection over a blocking `embedded_io` transport, in the caller's memory.
///
/// `T` is the transport; the rest are the [`Iocom`]'s parameters.
///
/// ```
/// use h2msg::drive::embedded::Link;
/// use h2msg::{CounterSalt, Event, Iocom, IocomMemory, LinkEnd, LinkSetup};
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
///
/// // The peer sends one LNK_PING, then closes.
/// let ping = MsgHeader::new(Cmd::LNK_PING).seal(WireOrder::Little, &[], &[], &SoftCrc32c)?;
/// let transport = Recorded { input: &ping, output: Vec::new() };
///
/// let memory = IocomMemory { fifo: vec![0u8; 2048], aux: vec![], tx_ring: vec![0u8; 256] };
/// let setup = LinkSetup::plaintext();
/// let io: Iocom<_, _, _, 4> = Iocom::new(setup, memory, CounterSalt::default(), SoftCrc32c)?;
/// let mut link = Link::new(transport, io);
///
/// // The core answers the ping by itself; the next event is the close.
/// let end = link.next_event(|e| matches!(e, Event::LinkDown(LinkEnd::Closed)))?;
/// assert_eq!(end, Some(true));
/// assert_eq!(link.next_event(|_| ())?, None);
///
/// let (transport, _) = link.into_parts();
/// let reply = MessageView::parse(&transport.output, &SoftCrc32c)?;
/// assert!(reply.header().cmd.is_reply());
/// # Ok::<(), Box<dyn core::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Link<T, M, R, C, const N: usize> {
    transport: T,
    pump: Pump<M, R, C, N>,
}

impl<T, M, R, C, const N: usize> Link<T, M, R, C, N>
where
    T: Read + Write,
    M: AsRef<[u8]> + AsMut<[u8]>,
    R: Rng,
    C: Crc32c + Clone,
{
    /// A connection over `transport`, which has completed its handshake.
    pub const fn new(transport: T, io: Iocom<M, R, C, N>) -> Self {
        Self {
            transport,
            pump: Pump::new(io),
        }
    }

    /// The connection, to send on or inspect.
    pub const fn io(&mut self) -> &mut Iocom<M, R, C, N> {
        self.pump.io()
    }

    /// The transport.
    pub const fn transport(&mut self) -> &mut T {
        &mut self.transport
    }

    /// The transport and the connection back.
    pub fn into_parts(self) -> (T, Iocom<M, R, C, N>) {
        (self.transport, self.pump.into_io())
    }

    /// Writes everything queued, then flushes the transport. `embedded_io` has no
    /// vectored write: the two pending slices go one after the other.
    ///
    /// # Errors
    /// The transport's (SOCK); the connection is then failed.
    pub fn flush(&mut self) -> Result<(), DriveError<T::Error>> {
        while self.pump.wants_write() {
            // The first slice holds the oldest bytes whenever any wait.
            let [oldest, _] = self.pump.pending();
            let result = self.transport.write(oldest);
            if !interrupted(&result) {
                self.pump.on_write(result)?;
            }
        }
        self.transport
            .flush()
            .map_err(|e| self.pump.on_transport_error(e))
    }

    /// Waits for the next event and hands it to `f`, writing everything queued before it
    /// blocks to read. `None` once the peer closed the link cleanly and everything was
    /// said.
    ///
    /// # Errors
    /// The transport's (SOCK), or how the link failed once its last event was given.
    pub fn next_event<U>(
        &mut self,
        f: impl FnOnce(Event<'_>) -> U,
    ) -> Result<Option<U>, DriveError<T::Error>> {
        loop {
            if let Some(event) = self.pump.poll_event() {
                return Ok(Some(f(event)));
            }
            match self.pump.next_io()? {
                NextIo::Write => self.flush()?,
                NextIo::Read => {
                    let result = self.transport.read(self.pump.read_buf());
                    if !interrupted(&result) {
                        self.pump.on_read(result)?;
                    }
                }
                NextIo::Closed => return Ok(None),
            }
        }
    }

    /// Waits for the reply to our message `msgid` and returns its `error` field; other
    /// events are passed over.
    ///
    /// # Errors
    /// As [`next_event`](Self::next_event); [`DriveError::Closed`] if the peer closed
    /// the link first.
    pub fn wait_for_reply(&mut self, msgid: u32) -> Result<u16, DriveError<T::Error>> {
        loop {
            match self.next_event(|event| reply_error(&event, msgid))? {
                Some(Some(error)) => return Ok(error),
                Some(None) => {}
                None => return Err(DriveError::Closed),
            }
        }
    }
}
