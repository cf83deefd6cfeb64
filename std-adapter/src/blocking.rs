//! A blocking driver: the core's handshake and connection over any `Read + Write` (TCP,
//! Unix sockets, pipes), with vectored writes and a hardware CRC-32C.

use std::fmt;
use std::io::{self, IoSlice, Read, Write};
use std::time::{Duration, Instant};

use h2msg::handshake::{Handshake, HandshakeError, HandshakePoll, RawRsa, Session};
use h2msg::iocom::{Event, Iocom, IocomMemory, MemoryError};
use h2msg::ioq::tx::CounterSalt;
use h2msg::wire::Crc32c;
use h2msg::wire::limits::{MSGAUX_MAX, MSGBUF_SIZE, MSGHDR_MAX};

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

/// The connection type of the std adapter: heap buffers of the C sizes.
pub type StdIocom = Iocom<Vec<u8>, Vec<u8>, Vec<u8>, CounterSalt, HwCrc32c, TRANSACTIONS>;

/// A connection with the C sizes: 8 KiB FIFO, 64 KiB aux storage, room to queue any message.
///
/// # Errors
/// Never with these sizes; the type says what the core checks.
pub fn std_iocom(salt_start: u32) -> Result<StdIocom, MemoryError> {
    let memory = IocomMemory {
        fifo: vec![0u8; MSGBUF_SIZE],
        aux: vec![0u8; MSGAUX_MAX],
        tx_ring: vec![0u8; 2 * (MSGHDR_MAX + MSGAUX_MAX)],
    };
    Iocom::new(memory, CounterSalt::after(salt_start), HwCrc32c)
}

/// Why a driven handshake did not complete.
#[derive(Debug)]
pub enum DriveError {
    /// The transport failed (SOCK, 3).
    Io(io::Error),
    /// The handshake failed (codes 12–14).
    Handshake(HandshakeError),
}

impl fmt::Display for DriveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "IOQ error 3 (SOCK): {e}"),
            Self::Handshake(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for DriveError {}

impl From<io::Error> for DriveError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// Runs a handshake over a blocking stream: sends our 512 bytes, reads the peer's. Give
/// the stream a read timeout to bound the wait; `timeout` then also bounds the whole.
///
/// # Errors
/// [`DriveError`].
pub fn drive_handshake<S: Read + Write, K: RawRsa>(
    stream: &mut S,
    mut hs: Handshake<K>,
    timeout: Duration,
) -> Result<Session, DriveError> {
    let start = Instant::now();
    let now = |start: Instant| u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    let deadline = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
    stream.write_all(hs.pending())?;
    stream.flush()?;
    let n = hs.pending().len();
    hs.advance(n).map_err(|e| io::Error::other(e.to_string()))?;
    loop {
        if now(start) >= deadline {
            hs.handle_timeout(u64::MAX);
        }
        match hs.poll() {
            HandshakePoll::Done(session) => return Ok(session),
            HandshakePoll::Failed(e) => return Err(DriveError::Handshake(e)),
            HandshakePoll::Finished => {
                return Err(DriveError::Io(io::Error::other("handshake already ended")));
            }
            _ => {}
        }
        match stream.read(hs.read_buf()) {
            Ok(0) => hs.end_input(),
            Ok(n) => hs
                .commit_read(n)
                .map_err(|e| io::Error::other(e.to_string()))?,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                hs.handle_timeout(u64::MAX);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// One connection over a blocking stream.
pub struct Link<S> {
    stream: S,
    io: StdIocom,
}

impl<S: Read + Write> Link<S> {
    /// A connection over `stream`, which has completed its handshake.
    pub fn new(stream: S, io: StdIocom) -> Self {
        Self { stream, io }
    }

    /// The connection, to send on or inspect.
    pub fn io(&mut self) -> &mut StdIocom {
        &mut self.io
    }

    /// Writes everything queued, with vectored writes.
    ///
    /// # Errors
    /// The transport's error; the connection is then marked failed (SOCK).
    pub fn flush(&mut self) -> io::Result<()> {
        while self.io.interest().write {
            let [a, b] = self.io.pending();
            let slices = [IoSlice::new(a), IoSlice::new(b)];
            match self.stream.write_vectored(&slices) {
                Ok(0) => {
                    self.io.transport_failed();
                    return Err(io::ErrorKind::WriteZero.into());
                }
                Ok(n) => self
                    .io
                    .advance_write(n)
                    .map_err(|e| io::Error::other(e.to_string()))?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.io.transport_failed();
                    return Err(e);
                }
            }
        }
        self.stream.flush()
    }

    /// Waits for the next event and hands it to `f`, writing everything queued before it
    /// blocks to read. `None` once the link is down and everything was said.
    ///
    /// # Errors
    /// The transport's error (the connection is then failed; further calls report it).
    pub fn next_event<T>(&mut self, f: impl FnOnce(Event<'_>) -> T) -> io::Result<Option<T>> {
        loop {
            if let Some(event) = self.io.poll_event() {
                return Ok(Some(f(event)));
            }
            // Before blocking on a read, send what we queued — the application's messages
            // and the answers the core just gave by itself (pings, unknown commands).
            self.flush()?;
            if self.io.interest().finished {
                return Ok(None);
            }
            let buf = self.io.read_buf();
            if buf.is_empty() {
                // Nothing to say, nothing to write, no room to read: a stalled connection
                // (the core rules this out after a flush, but a driver must not spin).
                return Err(io::Error::other("connection stalled"));
            }
            match self.stream.read(buf) {
                Ok(0) => self.io.end_input(),
                Ok(n) => self
                    .io
                    .commit_read(n)
                    .map_err(|e| io::Error::other(e.to_string()))?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.io.transport_failed();
                    return Err(e);
                }
            }
        }
    }

    /// Waits for the reply to our message `msgid` and returns its `error` field; other
    /// events are passed over.
    ///
    /// # Errors
    /// The transport's error, or the link going down first.
    pub fn wait_for_reply(&mut self, msgid: u32) -> io::Result<u16> {
        loop {
            let reply = self.next_event(|e| match e {
                Event::Message { msg, .. }
                    if msg.header().cmd.is_reply() && msg.header().msgid == msgid =>
                {
                    Some(msg.header().error)
                }
                _ => None,
            })?;
            match reply {
                Some(Some(error)) => return Ok(error),
                Some(None) => {}
                None => {
                    return Err(io::Error::other(
                        "the link went down while waiting for a reply",
                    ));
                }
            }
        }
    }
}
