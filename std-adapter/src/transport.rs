//! Where links run: TCP (the C tool's only transport) or a Unix-domain socket (local
//! daemons, tests). One address syntax for both: `unix:PATH` names a socket file, anything
//! else is `HOST[:PORT]`.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::Duration;

/// The service's port (`HAMMER2_LISTEN_PORT`).
pub const DEFAULT_PORT: u16 = 987;

/// The address whose key files a Unix-socket peer uses. Such a peer is on this host, so
/// the loopback address's trust (`remote/127.0.0.1.pub` or `.none`) applies; the C tool
/// had no Unix sockets, so there was nothing to follow.
pub const UNIX_PEER_ADDRESS: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A place to listen on or connect to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `HOST:PORT`.
    Tcp(String),
    /// A Unix-domain socket file.
    Unix(PathBuf),
}

impl Endpoint {
    /// Parses `unix:PATH`, `HOST` or `HOST:PORT`; a missing port is 987, a missing host
    /// (`None`) is 127.0.0.1 (§11 S5).
    #[must_use]
    pub fn parse(text: Option<&str>) -> Self {
        match text {
            None => Self::Tcp(format!("127.0.0.1:{DEFAULT_PORT}")),
            Some(t) => match t.strip_prefix("unix:") {
                Some(path) => Self::Unix(PathBuf::from(path)),
                // An IPv6 literal has colons of its own: `[::1]:987`, `[::1]` or bare `::1`.
                None if t.starts_with('[') && t.ends_with(']') => {
                    Self::Tcp(format!("{t}:{DEFAULT_PORT}"))
                }
                None if t.starts_with('[') || t.matches(':').count() == 1 => {
                    Self::Tcp(t.to_string())
                }
                None if t.contains(':') => Self::Tcp(format!("[{t}]:{DEFAULT_PORT}")),
                None => Self::Tcp(format!("{t}:{DEFAULT_PORT}")),
            },
        }
    }

    /// Connects to it.
    ///
    /// # Errors
    /// Name resolution or connection failure, naming the endpoint.
    pub fn connect(&self) -> io::Result<Stream> {
        let named = |e: io::Error| io::Error::new(e.kind(), format!("{self}: {e}"));
        match self {
            Self::Tcp(addr) => {
                // Every address the name has, in order (`localhost` may give ::1 first to
                // a service listening on IPv4 only), as TcpStream::connect(&str) does.
                let stream = TcpStream::connect(addr.as_str()).map_err(named)?;
                // Small messages must not wait for Nagle's timer.
                stream.set_nodelay(true)?;
                Ok(Stream::Tcp(stream))
            }
            Self::Unix(path) => Ok(Stream::Unix(UnixStream::connect(path).map_err(named)?)),
        }
    }

    /// Connects to it, giving up on each TCP address after `timeout`. (Name resolution is
    /// the system's and has its own bounds; a Unix-socket connect has no timeout in std.)
    ///
    /// # Errors
    /// Name resolution or connection failure, naming the endpoint; `TimedOut` when no
    /// address answered in time.
    pub fn connect_within(&self, timeout: Duration) -> io::Result<Stream> {
        let named = |e: io::Error| io::Error::new(e.kind(), format!("{self}: {e}"));
        let Self::Tcp(addr) = self else {
            return self.connect();
        };
        // Every address the name has, in order, as `connect` tries them.
        let mut last = io::Error::new(io::ErrorKind::NotFound, "the name has no address");
        for address in addr.as_str().to_socket_addrs().map_err(named)? {
            match TcpStream::connect_timeout(&address, timeout) {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    return Ok(Stream::Tcp(stream));
                }
                Err(e) => last = e,
            }
        }
        Err(named(last))
    }

    /// Binds to it. A Unix socket file left by an earlier run is replaced.
    ///
    /// # Errors
    /// The bind failure with the OS reason (§11 S4).
    pub fn bind(&self) -> io::Result<Listener> {
        let named = |e: io::Error| io::Error::new(e.kind(), format!("bind {self}: {e}"));
        match self {
            Self::Tcp(addr) => Ok(Listener::Tcp(TcpListener::bind(addr).map_err(named)?)),
            Self::Unix(path) => {
                // A socket file nobody answers on is left from an earlier run: replace it.
                // One a service answers on is in use, and stays.
                if std::fs::symlink_metadata(path)
                    .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
                {
                    if UnixStream::connect(path).is_ok() {
                        return Err(named(io::ErrorKind::AddrInUse.into()));
                    }
                    std::fs::remove_file(path).map_err(named)?;
                }
                Ok(Listener::Unix {
                    listener: UnixListener::bind(path).map_err(named)?,
                    path: path.clone(),
                })
            }
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(addr) => f.write_str(addr),
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// A connected link's byte stream.
#[derive(Debug)]
pub enum Stream {
    /// TCP.
    Tcp(TcpStream),
    /// A Unix-domain socket.
    Unix(UnixStream),
}

impl Stream {
    /// The address whose key files this peer uses (§2.2): its numeric IP address, or
    /// [`UNIX_PEER_ADDRESS`] for a Unix-socket peer.
    ///
    /// # Errors
    /// The socket's error.
    pub fn peer_ip(&self) -> io::Result<IpAddr> {
        match self {
            // An IPv4 peer of a `[::]` listener arrives as ::ffff:a.b.c.d; its key files
            // are named by the IPv4 address.
            Self::Tcp(s) => Ok(s.peer_addr()?.ip().to_canonical()),
            Self::Unix(_) => Ok(UNIX_PEER_ADDRESS),
        }
    }

    /// The peer, for logs and `status`.
    #[must_use]
    pub fn peer_name(&self) -> String {
        match self {
            Self::Tcp(s) => s
                .peer_addr()
                .map_or_else(|_| "tcp peer".to_string(), |a| a.to_string()),
            Self::Unix(_) => "unix peer".to_string(),
        }
    }

    /// Our end's address, for `status` (the peer's `status` names the link by it).
    #[must_use]
    pub fn local_name(&self) -> String {
        match self {
            Self::Tcp(s) => s
                .local_addr()
                .map_or_else(|_| "tcp".to_string(), |a| a.to_string()),
            Self::Unix(_) => "unix".to_string(),
        }
    }

    /// Bounds every blocking read (`None`: no bound).
    ///
    /// # Errors
    /// The socket's error.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Self::Tcp(s) => s.set_read_timeout(timeout),
            Self::Unix(s) => s.set_read_timeout(timeout),
        }
    }

    /// A second handle on the same socket (to shut it down from another thread).
    ///
    /// # Errors
    /// The socket's error.
    pub fn try_clone(&self) -> io::Result<Self> {
        match self {
            Self::Tcp(s) => s.try_clone().map(Self::Tcp),
            Self::Unix(s) => s.try_clone().map(Self::Unix),
        }
    }

    /// Waits until the peer has sent `len` bytes that are not read yet, without reading
    /// them: `Ok(None)` once they are all there, `Ok(Some(n))` if the peer closed after
    /// `n` bytes, `TimedOut` at `timeout`. A Unix-socket peer is on this host and is not
    /// waited for (`Ok(None)` at once). At most `len` is 512 or so: the bytes are peeked
    /// into a buffer on the stack.
    ///
    /// # Errors
    /// `TimedOut`, or the socket's error.
    pub fn wait_for_input(&self, len: usize, timeout: Duration) -> io::Result<Option<usize>> {
        /// Longest pause between looks while a peer sends its bytes in pieces: a peek
        /// returns at once while any byte is waiting, so the pauses keep a trickling peer
        /// from spinning this thread. A whole block in one segment needs no pause at all.
        const MOST_PAUSE: Duration = Duration::from_millis(50);
        let Self::Tcp(tcp) = self else {
            return Ok(None);
        };
        let mut buf = [0u8; 1024];
        let want = len.min(buf.len());
        let deadline = std::time::Instant::now() + timeout;
        let (mut seen, mut pause) = (0usize, Duration::from_millis(1));
        let waited = loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break Err(io::ErrorKind::TimedOut.into());
            }
            tcp.set_read_timeout(Some(left))?;
            match tcp.peek(buf.get_mut(..want).unwrap_or_default()) {
                Ok(0) => break Ok(Some(seen)),
                Ok(n) if n >= want => break Ok(None),
                Ok(n) => {
                    // More came: look again soon. Nothing more: back off.
                    pause = if n > seen {
                        Duration::from_millis(1)
                    } else {
                        (pause * 2).min(MOST_PAUSE)
                    };
                    seen = n;
                    std::thread::sleep(pause.min(left));
                }
                // A socket timeout reads as WouldBlock on Unix.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    break Err(io::ErrorKind::TimedOut.into());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        tcp.set_read_timeout(None)?;
        waited
    }

    /// Closes a connection the service turned away so that the peer reads a plain end of
    /// input before any byte ("refused by the service" on an h2msg client), not a reset:
    /// our end is shut for writing first (the FIN goes out ahead of anything else), and
    /// what the peer already sent (its handshake block, typically) is read and dropped —
    /// closing a socket with unread input would send a reset instead. Never blocks.
    pub fn close_refused(mut self) {
        /// Enough for a peer's handshake block and a little more: a peer that sent more
        /// before being accepted gets its reset, after the FIN.
        const DRAIN_LIMIT: usize = 2048;
        let nonblocking = match &self {
            Self::Tcp(s) => s.set_nonblocking(true),
            Self::Unix(s) => s.set_nonblocking(true),
        };
        let _ = crate::blocking::DuplexStream::shutdown(&self, Shutdown::Write);
        if nonblocking.is_ok() {
            let mut sink = [0u8; DRAIN_LIMIT];
            let _ = self.read(&mut sink);
        }
    }

    /// Shuts both directions down: a thread blocked on the socket wakes to end of input.
    pub fn shutdown(&self) {
        // Already closed by the peer is as good as shut down.
        let _ = match self {
            Self::Tcp(s) => s.shutdown(Shutdown::Both),
            Self::Unix(s) => s.shutdown(Shutdown::Both),
        };
    }
}

impl crate::blocking::DuplexStream for Stream {
    fn try_clone(&self) -> io::Result<Self> {
        Self::try_clone(self)
    }
    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Self::Tcp(s) => s.shutdown(how),
            Self::Unix(s) => s.shutdown(how),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Tcp(s) => s.read(buf),
            Self::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Tcp(s) => s.write(buf),
            Self::Unix(s) => s.write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Self::Tcp(s) => s.write_vectored(bufs),
            Self::Unix(s) => s.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Tcp(s) => s.flush(),
            Self::Unix(s) => s.flush(),
        }
    }
}

/// A bound listening socket.
#[derive(Debug)]
pub enum Listener {
    /// TCP.
    Tcp(TcpListener),
    /// A Unix-domain socket and its file, removed when the listener is dropped.
    Unix {
        /// The socket.
        listener: UnixListener,
        /// Its file.
        path: PathBuf,
    },
}

impl Listener {
    /// Where it listens, in the syntax [`Endpoint::parse`] reads (an ephemeral port
    /// resolved).
    ///
    /// # Errors
    /// The socket's error.
    pub fn local_endpoint(&self) -> io::Result<Endpoint> {
        match self {
            Self::Tcp(l) => Ok(Endpoint::Tcp(l.local_addr()?.to_string())),
            Self::Unix { path, .. } => Ok(Endpoint::Unix(path.clone())),
        }
    }

    /// Waits for the next connection.
    ///
    /// # Errors
    /// The accept failure.
    pub fn accept(&self) -> io::Result<Stream> {
        match self {
            // Some systems (the BSDs) pass a non-blocking listener's mode on to the
            // sockets it accepts; the link drivers need blocking ones.
            Self::Tcp(l) => {
                let (s, _) = l.accept()?;
                s.set_nonblocking(false)?;
                s.set_nodelay(true)?;
                Ok(Stream::Tcp(s))
            }
            Self::Unix { listener, .. } => {
                let (s, _) = listener.accept()?;
                s.set_nonblocking(false)?;
                Ok(Stream::Unix(s))
            }
        }
    }

    /// Makes [`accept`](Self::accept) return `WouldBlock` instead of waiting, so that a
    /// loop around it can also watch for a stop; accepted streams block all the same.
    ///
    /// # Errors
    /// The socket's error.
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        match self {
            Self::Tcp(l) => l.set_nonblocking(nonblocking),
            Self::Unix { listener, .. } => listener.set_nonblocking(nonblocking),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Self::Unix { path, .. } = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_as_the_c_tool_and_unix_sockets_need() {
        assert_eq!(Endpoint::parse(None), Endpoint::Tcp("127.0.0.1:987".into()));
        assert_eq!(
            Endpoint::parse(Some("node1")),
            Endpoint::Tcp("node1:987".into())
        );
        assert_eq!(
            Endpoint::parse(Some("10.0.0.2:1234")),
            Endpoint::Tcp("10.0.0.2:1234".into())
        );
        assert_eq!(
            Endpoint::parse(Some("::1")),
            Endpoint::Tcp("[::1]:987".into())
        );
        assert_eq!(
            Endpoint::parse(Some("[::1]:5")),
            Endpoint::Tcp("[::1]:5".into())
        );
        assert_eq!(
            Endpoint::parse(Some("unix:/run/h2.sock")),
            Endpoint::Unix("/run/h2.sock".into())
        );
        assert_eq!(
            Endpoint::parse(Some("unix:/run/h2.sock")).to_string(),
            "unix:/run/h2.sock"
        );
    }

    #[test]
    fn a_unix_listener_replaces_a_stale_socket_and_removes_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let endpoint = Endpoint::Unix(path.clone());
        drop(UnixListener::bind(&path).unwrap()); // a stale file from a "crashed" run
        assert!(path.exists());
        let listener = endpoint.bind().unwrap();
        let mut client = endpoint.connect().unwrap();
        let mut served = listener.accept().unwrap();
        client.write_all(b"x").unwrap();
        let mut b = [0u8; 1];
        served.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"x");
        // A second service on the same live socket is refused, and the first keeps it.
        let taken = endpoint.bind().unwrap_err();
        assert_eq!(taken.kind(), io::ErrorKind::AddrInUse, "{taken}");
        assert!(endpoint.connect().is_ok());
        drop(listener);
        assert!(!path.exists());
    }

    #[test]
    fn a_nonblocking_listener_accepts_blocking_streams() {
        let listener = Endpoint::Tcp("127.0.0.1:0".into()).bind().unwrap();
        listener.set_nonblocking(true).unwrap();
        let err = listener.accept().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "{err}");
        let _client = listener.local_endpoint().unwrap().connect().unwrap();
        let served = loop {
            match listener.accept() {
                Ok(s) => break s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => panic!("{e}"),
            }
        };
        // A read with nothing sent waits (here until its timeout), not WouldBlock at once.
        served
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let Stream::Tcp(mut tcp) = served else {
            unreachable!("a TCP endpoint")
        };
        let start = std::time::Instant::now();
        let err = tcp.read(&mut [0u8; 1]).unwrap_err();
        assert!(start.elapsed() >= Duration::from_millis(15), "did not wait");
        assert!(
            matches!(
                err.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            "{err}"
        );
    }
}
