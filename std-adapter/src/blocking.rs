//! A blocking driver: the core's handshake and connection over any `Read + Write` (TCP,
//! Unix sockets, pipes), with vectored writes and a hardware CRC-32C.

use std::io::{self, IoSlice, Read, Write};
use std::time::{Duration, Instant};

use h2msg::drive::{HandshakeNext, HandshakePump, NextIo, Pump, reply_error};
use h2msg::wire::Crc32c;
use h2msg::wire::limits::{MSGAUX_MAX, MSGBUF_SIZE, MSGHDR_MAX};
use h2msg::{
    CounterSalt, Event, Handshake, Iocom, IocomMemory, LinkSetup, MemoryError, RawRsa, Session,
};

/// CRC-32C in hardware where the CPU has it (SSE4.2, ARMv8), from the `crc32c` crate.
#[derive(Clone, Copy, Debug, Default)]
pub struct HwCrc32c;

impl Crc32c for HwCrc32c {
    fn append(&self, crc: u32, bytes: &[u8]) -> u32 {
        crc32c::crc32c_append(crc, bytes)
    }
}

/// Transactions per direction a std connection tracks.
pub const TRANSACTIONS: usize = 64;

/// The connection type of the std adapter: heap buffers.
pub type StdIocom = Iocom<Vec<u8>, CounterSalt, HwCrc32c, TRANSACTIONS>;

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
    let memory = IocomMemory {
        fifo: vec![0u8; STD_FIFO_SIZE],
        aux: vec![0u8; MSGAUX_MAX],
        tx_ring: vec![0u8; 2 * (MSGHDR_MAX + MSGAUX_MAX)],
    };
    Iocom::new(setup, memory, CounterSalt::after(salt_start), HwCrc32c)
}

/// Why a driver stopped, with the IOQ code that applies ([`DriveError::code`]): the
/// transport's [`io::Error`] is SOCK (3). `?` turns it into an [`io::Error`] where a caller
/// wants one (the transport's own error unchanged, the core's verdicts wrapped).
pub type DriveError = h2msg::drive::DriveError<io::Error>;

/// The shared driver half for the std connection type.
pub(crate) type StdPump = Pump<Vec<u8>, CounterSalt, HwCrc32c, TRANSACTIONS>;

/// Whether a std transport result asks to be retried: a signal interrupted the call.
fn interrupted<T>(result: &io::Result<T>) -> bool {
    matches!(result, Err(e) if e.kind() == io::ErrorKind::Interrupted)
}

/// Runs a handshake over a blocking stream: sends our 512 bytes, reads the peer's. Give
/// the stream a read timeout to bound each wait; `timeout` then bounds the whole (checked
/// between reads).
///
/// # Errors
/// [`DriveError`]: the transport's (SOCK) or the handshake's (12–14; KEYXCHGFAIL when
/// `timeout` passes).
pub fn drive_handshake<S: Read + Write, K: RawRsa>(
    stream: &mut S,
    hs: Handshake<K>,
    timeout: Duration,
) -> Result<Session, DriveError> {
    let start = Instant::now();
    let mut pump = HandshakePump::new(hs);
    loop {
        match pump.next_step()? {
            HandshakeNext::Write => {
                let result = stream.write(pump.pending());
                if !interrupted(&result) {
                    pump.on_write(result)?;
                    if pump.pending().is_empty() {
                        stream.flush().map_err(DriveError::Io)?;
                    }
                }
            }
            HandshakeNext::Read => {
                if start.elapsed() >= timeout {
                    return Err(pump.timed_out());
                }
                let result = stream.read(pump.read_buf());
                let read_timed_out = matches!(
                    &result,
                    Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
                );
                // A read timeout only brings the next look at the clock.
                if !interrupted(&result) && !read_timed_out {
                    pump.on_read(result)?;
                }
            }
            HandshakeNext::Done(session) => return Ok(session),
        }
    }
}

/// One connection over a blocking stream.
///
/// ```no_run
/// use std::net::TcpStream;
/// use std::time::Duration;
///
/// use h2msg::{Handshake, KeyMode, LinkSetup, ModeChoice, NoRsa};
/// use h2msg::wire::{Cmd, MsgHeader, WireOrder};
/// use h2msg_std::blocking::{Link, drive_handshake, std_iocom};
///
/// let mut stream = TcpStream::connect("127.0.0.1:987")?;
/// stream.set_read_timeout(Some(Duration::from_secs(10)))?;
/// let hs = Handshake::new(
///     KeyMode::<NoRsa>::Plaintext, // a `.none` peer
///     &mut getrandom::SysRng,
///     WireOrder::Little,
///     None,
/// )?;
/// let session = drive_handshake(&mut stream, hs, Duration::from_secs(10))?;
/// stream.set_read_timeout(None)?;
///
/// let mut io = std_iocom(LinkSetup::negotiate(session, ModeChoice::Auto)?, 0)?;
/// io.accept(Cmd::LNK_PING)?; // to see the reply to our ping
/// let mut link = Link::new(stream, io);
/// let mut ping = MsgHeader::new(Cmd::LNK_PING);
/// ping.msgid = 1;
/// link.io().send(ping, &[], &[])?;
/// assert_eq!(link.wait_for_reply(1)?, 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Link<S> {
    stream: S,
    pump: StdPump,
}

impl<S: Read + Write> Link<S> {
    /// A connection over `stream`, which has completed its handshake.
    pub fn new(stream: S, io: StdIocom) -> Self {
        Self {
            stream,
            pump: Pump::new(io),
        }
    }

    /// The connection, to send on or inspect.
    pub fn io(&mut self) -> &mut StdIocom {
        self.pump.io()
    }

    /// The transport, to set its options (timeouts) — not to read or write it past the
    /// connection.
    pub const fn stream(&self) -> &S {
        &self.stream
    }

    /// Writes everything queued, with vectored writes.
    ///
    /// # Errors
    /// The transport's error (SOCK); the connection is then failed.
    pub fn flush(&mut self) -> Result<(), DriveError> {
        while self.pump.wants_write() {
            let [older, newer] = self.pump.pending();
            let result = self
                .stream
                .write_vectored(&[IoSlice::new(older), IoSlice::new(newer)]);
            if !interrupted(&result) {
                self.pump.on_write(result)?;
            }
        }
        self.stream
            .flush()
            .map_err(|e| self.pump.on_transport_error(e))
    }

    /// Waits for the next event and hands it to `f`, writing everything queued before it
    /// blocks to read. `None` once the peer closed the link cleanly and everything was
    /// said.
    ///
    /// # Errors
    /// The transport's error (SOCK; the connection is then failed), or how the link failed
    /// (the decoder's IOQ code) once its last event was given.
    pub fn next_event<T>(
        &mut self,
        f: impl FnOnce(Event<'_>) -> T,
    ) -> Result<Option<T>, DriveError> {
        loop {
            if let Some(event) = self.pump.poll_event() {
                return Ok(Some(f(event)));
            }
            match self.pump.next_io()? {
                NextIo::Write => self.flush()?,
                NextIo::Read => {
                    let result = self.stream.read(self.pump.read_buf());
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
    /// As [`next_event`](Self::next_event); [`DriveError::Closed`] (EOF, 2) if the peer
    /// closed the link first.
    pub fn wait_for_reply(&mut self, msgid: u32) -> Result<u16, DriveError> {
        loop {
            match self.next_event(|event| reply_error(&event, msgid))? {
                Some(Some(error)) => return Ok(error),
                Some(None) => {}
                None => return Err(DriveError::Closed),
            }
        }
    }
}
