//! An async driver: the core's handshake and connection over any tokio
//! `AsyncRead + AsyncWrite` (TCP, Unix sockets, in-memory duplex streams), with vectored
//! writes and a hardware CRC-32C. The same decisions as [`blocking`](crate::blocking),
//! made once in [`h2msg::drive`].

use std::io::IoSlice;
use std::time::Duration;

use h2msg::Event;
use h2msg::drive::{HandshakeNext, HandshakePump, NextIo, Pump, reply_error};
use h2msg::{Handshake, RawRsa, Session};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::blocking::{DriveError, StdIocom, StdPump};

/// Runs a handshake over `stream`: sends our 512 bytes, reads the peer's, all within
/// `timeout`. Needs a tokio runtime with its time driver.
///
/// # Errors
/// [`DriveError`]: the transport's (SOCK) or the handshake's (12–14; KEYXCHGFAIL when
/// `timeout` passes).
pub async fn drive_handshake<S, K>(
    stream: &mut S,
    hs: Handshake<K>,
    timeout: Duration,
) -> Result<Session, DriveError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    K: RawRsa,
{
    let mut pump = HandshakePump::new(hs);
    let outcome = tokio::time::timeout(timeout, exchange(stream, &mut pump)).await;
    outcome.unwrap_or_else(|_elapsed| Err(pump.timed_out()))
}

async fn exchange<S, K>(stream: &mut S, pump: &mut HandshakePump<K>) -> Result<Session, DriveError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    K: RawRsa,
{
    loop {
        match pump.next_step()? {
            HandshakeNext::Write => {
                let result = stream.write(pump.pending()).await;
                pump.on_write(result)?;
                if pump.pending().is_empty() {
                    stream.flush().await.map_err(DriveError::Io)?;
                }
            }
            HandshakeNext::Read => {
                let result = stream.read(pump.read_buf()).await;
                pump.on_read(result)?;
            }
            HandshakeNext::Done(session) => return Ok(session),
        }
    }
}

/// One connection over an async stream.
///
/// Cancel-safe between awaits: a dropped `next_event` or `flush` loses no byte (tokio's
/// `read` and `write_vectored` move nothing they do not report), so a `Link` can sit in a
/// `select!`.
///
/// ```
/// use h2msg::LinkSetup;
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
///     Ok(link.wait_for_reply(1).await?)
/// }
/// ```
pub struct Link<S> {
    stream: S,
    pump: StdPump,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Link<S> {
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

    /// The stream, for what the driver does not do (shutting down its write half, say).
    pub fn stream(&mut self) -> &mut S {
        &mut self.stream
    }

    /// Writes everything queued, with vectored writes.
    ///
    /// # Errors
    /// The transport's error (SOCK); the connection is then failed.
    pub async fn flush(&mut self) -> Result<(), DriveError> {
        while self.pump.wants_write() {
            let [older, newer] = self.pump.pending();
            let result = self
                .stream
                .write_vectored(&[IoSlice::new(older), IoSlice::new(newer)])
                .await;
            self.pump.on_write(result)?;
        }
        let result = self.stream.flush().await;
        result.map_err(|e| self.pump.on_transport_error(e))
    }

    /// Waits for the next event and hands it to `f`, writing everything queued before it
    /// waits to read. `None` once the peer closed the link cleanly and everything was
    /// said.
    ///
    /// # Errors
    /// The transport's error (SOCK; the connection is then failed), or how the link failed
    /// (the decoder's IOQ code) once its last event was given.
    pub async fn next_event<T>(
        &mut self,
        f: impl FnOnce(Event<'_>) -> T,
    ) -> Result<Option<T>, DriveError> {
        loop {
            if let Some(event) = self.pump.poll_event() {
                return Ok(Some(f(event)));
            }
            match self.pump.next_io()? {
                NextIo::Write => self.flush().await?,
                NextIo::Read => {
                    let result = self.stream.read(self.pump.read_buf()).await;
                    self.pump.on_read(result)?;
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
    pub async fn wait_for_reply(&mut self, msgid: u32) -> Result<u16, DriveError> {
        loop {
            match self.next_event(|event| reply_error(&event, msgid)).await? {
                Some(Some(error)) => return Ok(error),
                Some(None) => {}
                None => return Err(DriveError::Closed),
            }
        }
    }
}
