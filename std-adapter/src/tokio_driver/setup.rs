//! A link's setup in one call over tokio streams: the same key lookup, handshake and mode
//! choice as the blocking [`link::connect`](crate::link::connect) and
//! [`link::accept`](crate::link::accept), with the same [`LinkOptions`].

use std::io;
use std::net::IpAddr;

use tokio::io::{AsyncRead, AsyncWrite};

use super::{Link, drive_handshake};
use crate::keys::KeyDir;
use crate::link::{
    HandshakeStart, LinkError, LinkOptions, LinkTerms, PeerStream, begin_handshake,
    finish_handshake,
};
use crate::proto::Proto;
use crate::transport::UNIX_PEER_ADDRESS;

impl PeerStream for tokio::net::TcpStream {
    fn peer_ip(&self) -> io::Result<IpAddr> {
        Ok(self.peer_addr()?.ip().to_canonical())
    }

    fn prepare_for_link(&self) -> io::Result<()> {
        self.set_nodelay(true)
    }
}

impl PeerStream for tokio::net::UnixStream {
    fn peer_ip(&self) -> io::Result<IpAddr> {
        Ok(UNIX_PEER_ADDRESS)
    }
}

/// An in-memory pipe (`tokio::io::duplex`): its peer is in this process, so the
/// loopback address's key files apply, as for a Unix socket.
impl PeerStream for tokio::io::DuplexStream {
    fn peer_ip(&self) -> io::Result<IpAddr> {
        Ok(UNIX_PEER_ADDRESS)
    }
}

/// Connects over TCP to `address` and sets the link up as [`accept`] does, with
/// `TCP_NODELAY` on. The connection itself is not bounded here (wrap the call in
/// `tokio::time::timeout` to bound it); the handshake is, by the options' timeout.
///
/// `options` is a [`ModeChoice`](h2msg::ModeChoice) or a [`LinkOptions`]. The link takes
/// no command yet: [`accept`](h2msg::Iocom::accept) the ones the application handles
/// (`link.io().accept(cmd)`) before waiting on it.
///
/// # Errors
/// [`LinkError::Drive`] with the OS error (SOCK) if no address answered, else as
/// [`accept`].
pub async fn connect<const T: usize>(
    address: impl tokio::net::ToSocketAddrs,
    keys: &KeyDir,
    options: impl Into<LinkOptions<T>>,
) -> Result<(Link<tokio::net::TcpStream, T>, LinkTerms), LinkError> {
    let stream = tokio::net::TcpStream::connect(address).await?;
    accept(stream, keys, options).await
}

/// Sets a link up over a connected `stream` — either end's: the handshake is
/// symmetric. The peer's keys are those of its address ([`PeerStream::peer_ip`]; TCP
/// gets `TCP_NODELAY`); for a stream without one, [`accept_peer`]. Otherwise as the
/// blocking [`link::accept`](crate::link::accept): handshake within the options'
/// timeout (needs tokio's time driver, else [`NO_TIME_DRIVER`](super::NO_TIME_DRIVER)),
/// mode agreed, connection built with the options' liveness and table size.
///
/// The RSA operations of the handshake (milliseconds each) run on the calling task.
///
/// # Errors
/// As [`link::accept`](crate::link::accept).
pub async fn accept<S, const T: usize>(
    stream: S,
    keys: &KeyDir,
    options: impl Into<LinkOptions<T>>,
) -> Result<(Link<S, T>, LinkTerms), LinkError>
where
    S: AsyncRead + AsyncWrite + Unpin + PeerStream,
{
    stream.prepare_for_link()?;
    let peer = stream.peer_ip()?;
    accept_peer(stream, peer, keys, options).await
}

/// [`accept`] for any `AsyncRead + AsyncWrite` stream, the key files of `peer` applying
/// to it: a TLS or WebSocket wrapper, a proxied connection, a test double. Socket options
/// are the caller's.
///
/// # Errors
/// As [`link::accept`](crate::link::accept).
pub async fn accept_peer<S, const T: usize>(
    mut stream: S,
    peer: IpAddr,
    keys: &KeyDir,
    options: impl Into<LinkOptions<T>>,
) -> Result<(Link<S, T>, LinkTerms), LinkError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let options = options.into();
    let mode = options.mode();
    let started = begin_handshake(peer, keys, options.timeout_value(), mode, Proto::Seed)?;
    let (terms, setup) = match started {
        HandshakeStart::Done(terms, setup) => (terms, setup),
        HandshakeStart::Exchange(hs, trust) => {
            let session = drive_handshake(&mut stream, hs).await?;
            finish_handshake(session, trust, mode)?
        }
    };
    let io = options.connection(setup)?;
    Ok((Link::new(stream, io), terms))
}
