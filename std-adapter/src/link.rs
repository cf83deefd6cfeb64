//! One link's setup, shared by the service and its clients: the handshake with the keys
//! of the peer's address (§2.2), the stream mode both ends accept ([`h2msg::ModeChoice`]), and
//! the connection that carries the debug shell.
//!
//! For an application, [`connect`] and [`accept`] do the whole setup in one call over
//! blocking sockets (tokio: `tokio_driver::connect` and
//! `accept`, feature `tokio`), with the [`LinkOptions`] both share:
//!
//! ```no_run
//! use h2msg::ModeChoice;
//! use h2msg::wire::Cmd;
//! use h2msg_std::keys::KeyDir;
//! use h2msg_std::link::connect;
//!
//! let keys = KeyDir::new("/etc/hammer2");
//! let (mut link, terms) = connect("192.0.2.7:987", &keys, ModeChoice::Auto)?;
//! println!("link up: {terms}"); // "rsa gcm", "plaintext seed", ...
//! let echo = Cmd::app(1).ok_or("command number")?;
//! link.io().accept(echo)?; // to be handed the replies to our requests
//! let request = link.io().open(echo, &[], b"hello", true)?;
//! # let _ = request;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Only the seed revision's connection is built so; a DMSG link comes from
//! [`open_dmsg_link`].

use std::io;
use std::net::{IpAddr, TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use h2msg::wire::limits::HANDSHAKE_LEN;
use h2msg::wire::{Cmd, WireOrder};
use h2msg::{
    Config, Handshake, HandshakeError, KeyExchangeFailure, KeyMode, LinkSetup, Liveness,
    MemoryError, ModeChoice, NegotiateError, NonePeer, PreparedBlock, PreparedBlockError,
    SendError, StreamMode,
};

use crate::blocking::{
    DmsgLink, DriveError, Duplex, DuplexStream, Link, READ_AHEAD, STD_FIFO_SIZE, StdIocom,
    TRANSACTIONS, drive_handshake, now, std_dmsg_iocom_sized, std_iocom_sized, std_iocom_with,
};
use crate::keys::{KeyDir, KeyError, PeerKey};
use crate::proto::Proto;
use crate::transport::{Stream, UNIX_PEER_ADDRESS};
use rsa::{PrivateKey, PublicKey};

/// How long a peer may take to complete the handshake by default.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The shortest handshake deadline that makes sense.
pub const MIN_HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(10);

/// Why a link could not be set up or ended badly. The IOQ code that applies is in each
/// inner error ([`DriveError::code`], [`KeyError::ioq_error`], ALGO 20 for a mode refused).
#[derive(Debug)]
pub enum LinkError {
    /// No usable key for the peer, or our own keys are unusable.
    Keys(KeyError),
    /// The handshake or the transport failed.
    Drive(DriveError),
    /// Our own message was refused by the connection (a bug of ours, or a peer that
    /// closed the transaction first).
    Send(SendError),
    /// No stream mode both ends accept (ALGO, 20).
    Negotiate(NegotiateError),
    /// The connection's memory does not fit the agreed mode.
    Memory(MemoryError),
}

impl std::fmt::Display for LinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Keys(e) => e.fmt(f),
            Self::Drive(e) => e.fmt(f),
            Self::Send(e) => e.fmt(f),
            Self::Negotiate(e) => e.fmt(f),
            Self::Memory(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for LinkError {}

impl From<io::Error> for LinkError {
    fn from(e: io::Error) -> Self {
        Self::Drive(DriveError::Io(e))
    }
}

impl From<DriveError> for LinkError {
    fn from(e: DriveError) -> Self {
        Self::Drive(e)
    }
}

/// How a link's handshake authenticated the peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trust {
    /// Both RSA key pairs (`remote/<peer>.pub`).
    Rsa,
    /// No keys (`remote/<peer>.none`): the plaintext exchange.
    Plaintext,
}

impl std::fmt::Display for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Rsa => "rsa",
            Self::Plaintext => "plaintext",
        })
    }
}

/// What a link's two ends agreed on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkTerms {
    /// How the peer was authenticated.
    pub trust: Trust,
    /// How the bytes after the handshake travel.
    pub mode: StreamMode,
}

impl std::fmt::Display for LinkTerms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.trust, self.mode)
    }
}

/// How [`connect`] and [`accept`] (and their tokio twins) set a link up: the stream modes
/// we accept, how long the connection and the handshake may take, the liveness rules,
/// and — as a type parameter — how many transactions each direction may hold open.
///
/// A bare [`ModeChoice`] converts into the defaults, so `connect(addr, &keys,
/// ModeChoice::Auto)` works as it reads.
///
/// ```
/// use std::time::Duration;
/// use h2msg::{Liveness, ModeChoice};
/// use h2msg_std::link::LinkOptions;
///
/// let options = LinkOptions::new(ModeChoice::Gcm)
///     .timeout(Duration::from_secs(3))
///     .liveness(Liveness::OFF)
///     .transactions::<1024>(); // a LinkOptions<1024>: links with 1024-entry tables
/// assert_eq!(options.mode(), ModeChoice::Gcm);
/// assert_eq!(options.transaction_limit(), 1024);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkOptions<const T: usize = TRANSACTIONS> {
    mode: ModeChoice,
    timeout: Duration,
    liveness: Liveness,
}

impl LinkOptions {
    /// Stream modes `mode`; [`HANDSHAKE_TIMEOUT`], [`Liveness::default`] and
    /// [`TRANSACTIONS`] otherwise.
    #[must_use]
    pub fn new(mode: ModeChoice) -> Self {
        Self {
            mode,
            timeout: HANDSHAKE_TIMEOUT,
            liveness: Liveness::default(),
        }
    }
}

impl From<ModeChoice> for LinkOptions {
    fn from(mode: ModeChoice) -> Self {
        Self::new(mode)
    }
}

impl<const T: usize> LinkOptions<T> {
    /// The stream modes we accept (§2.7–§2.9; [`ModeChoice`]).
    #[must_use]
    pub const fn mode(&self) -> ModeChoice {
        self.mode
    }

    /// Bound on the TCP connection (blocking [`connect`]: each address the name has), and
    /// again on the handshake; at the handshake's, setup fails with KEYXCHGFAIL (12).
    #[must_use]
    pub const fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The keepalive, dead-peer and write-stall rules (docs/liveness.md).
    #[must_use]
    pub const fn liveness(mut self, liveness: Liveness) -> Self {
        self.liveness = liveness;
        self
    }

    /// The same options for links whose transaction tables hold `N` open transactions
    /// per direction. Past `N`, our `open` fails with
    /// [`SendError::NoFreeMsgid`] and the peer's requests are refused with error 0x22
    /// (§4.4).
    #[must_use]
    pub const fn transactions<const N: usize>(self) -> LinkOptions<N> {
        LinkOptions {
            mode: self.mode,
            timeout: self.timeout,
            liveness: self.liveness,
        }
    }

    /// How many transactions each direction may hold open (`T`).
    #[must_use]
    pub const fn transaction_limit(&self) -> usize {
        T
    }

    /// The handshake and connect bound ([`timeout`](Self::timeout)).
    #[must_use]
    pub const fn timeout_value(&self) -> Duration {
        self.timeout
    }

    /// The connection these options build from a negotiated `setup`.
    pub(crate) fn connection(&self, setup: LinkSetup) -> Result<StdIocom<T>, LinkError> {
        let config = Config {
            liveness: self.liveness,
            ..Config::default()
        };
        std_iocom_sized(setup, 0, config).map_err(LinkError::Memory)
    }
}

/// A connected stream whose peer is known by an address: the key files of that address
/// apply to it (§2.2).
pub trait PeerStream {
    /// The address whose key files apply: a TCP peer's numeric address (an IPv4 peer of
    /// an IPv6 socket as IPv4); a local peer (Unix socket, in-memory pipe) counts as
    /// [`UNIX_PEER_ADDRESS`], 127.0.0.1.
    ///
    /// # Errors
    /// The socket's.
    fn peer_ip(&self) -> io::Result<IpAddr>;

    /// Sets the socket options a link wants: `TCP_NODELAY` on TCP, because the core hands
    /// each write whole messages and Nagle's algorithm would only hold small ones back
    /// (for up to the peer's delayed-ACK time, tens of milliseconds). Nothing elsewhere.
    ///
    /// # Errors
    /// The socket's.
    fn prepare_for_link(&self) -> io::Result<()> {
        Ok(())
    }
}

impl PeerStream for TcpStream {
    fn peer_ip(&self) -> io::Result<IpAddr> {
        Ok(self.peer_addr()?.ip().to_canonical())
    }

    fn prepare_for_link(&self) -> io::Result<()> {
        self.set_nodelay(true)
    }
}

impl PeerStream for UnixStream {
    fn peer_ip(&self) -> io::Result<IpAddr> {
        Ok(UNIX_PEER_ADDRESS)
    }
}

impl PeerStream for Stream {
    fn peer_ip(&self) -> io::Result<IpAddr> {
        Stream::peer_ip(self)
    }

    fn prepare_for_link(&self) -> io::Result<()> {
        match self {
            Self::Tcp(tcp) => tcp.prepare_for_link(),
            Self::Unix(_) => Ok(()),
        }
    }
}

/// Connects over TCP to `address` (each address the name has, in order, each within the
/// options' timeout) and sets the link up as [`accept`] does. The socket gets
/// `TCP_NODELAY` ([`PeerStream::prepare_for_link`]).
///
/// `options` is a [`ModeChoice`] or a [`LinkOptions`]. The link takes no command yet:
/// [`accept`](h2msg::Iocom::accept) the ones whose requests or replies the application
/// wants before waiting on it (the connection answers others with 0x20, §8.3, and drops
/// replies to them).
///
/// # Errors
/// [`LinkError::Drive`] with the OS error (SOCK) if no address answered, else as
/// [`accept`].
pub fn connect<const T: usize>(
    address: impl ToSocketAddrs,
    keys: &KeyDir,
    options: impl Into<LinkOptions<T>>,
) -> Result<(Link<TcpStream, T>, LinkTerms), LinkError> {
    let options = options.into();
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the name has no address");
    for address in address.to_socket_addrs()? {
        match TcpStream::connect_timeout(&address, options.timeout) {
            Ok(stream) => return accept(stream, keys, options),
            Err(e) => last = e,
        }
    }
    Err(last.into())
}

/// Sets a link up over a connected `stream` — either end's, despite the name: the
/// handshake is symmetric. Looks the peer's key up in `keys` by its address (§2.2:
/// `remote/<ip>.pub` for RSA, `.none` for the plaintext exchange), runs the handshake
/// within the options' timeout, agrees on a stream mode and builds the connection with
/// the options' liveness rules and table size. Turns `TCP_NODELAY` on for TCP.
///
/// # Errors
/// [`LinkError`]: no key for the peer or ours unusable (NORKEY 10, NOLKEY 11, KEYFMT 13),
/// the transport's error (SOCK 3), the handshake's (12–14, KEYXCHGFAIL at the timeout),
/// no mode both ends accept (ALGO 20).
pub fn accept<S: DuplexStream + PeerStream, const T: usize>(
    stream: S,
    keys: &KeyDir,
    options: impl Into<LinkOptions<T>>,
) -> Result<(Link<S, T>, LinkTerms), LinkError> {
    let options = options.into();
    stream.prepare_for_link()?;
    let mut duplex = Duplex::new(stream)?;
    let (terms, setup) = handshake(&mut duplex, keys, options.timeout, options.mode)?;
    let io = options.connection(setup)?;
    duplex.read_ahead(READ_AHEAD);
    Ok((Link::new(duplex, io), terms))
}

/// The handshake with the keys of the peer's address (§2.2), within `timeout`, and the
/// stream mode both ends accept (`choice` on our side; see [`h2msg::ModeChoice`]). A `.none`
/// peer is always plaintext: the 512-byte block goes in the clear (flags 0, exactly the
/// seed era), except in `cbc`, whose era skipped the exchange (§11 H5). Returns the terms
/// and the negotiated setup the connection is built from.
///
/// # Errors
/// [`LinkError`].
pub fn handshake<S: DuplexStream + PeerStream>(
    stream: &mut Duplex<S>,
    keys: &KeyDir,
    timeout: Duration,
    choice: ModeChoice,
) -> Result<(LinkTerms, LinkSetup), LinkError> {
    handshake_as(stream, keys, timeout, choice, Proto::Seed)
}

/// [`handshake`] for a link of protocol revision `proto`. The revisions differ only for a
/// `.none` peer: DMSG exchanges nothing at all then and the link is plaintext from its
/// first byte (dmsg.md 1.2). A `.pub` peer gets the same RSA handshake and stream-mode
/// negotiation in both (between two h2msg nodes; libdmsg's own AES-GCM after the
/// handshake is not implemented, D1).
///
/// # Errors
/// [`LinkError`].
pub fn handshake_as<S: DuplexStream + PeerStream>(
    stream: &mut Duplex<S>,
    keys: &KeyDir,
    timeout: Duration,
    choice: ModeChoice,
    proto: Proto,
) -> Result<(LinkTerms, LinkSetup), LinkError> {
    let peer = stream.stream().peer_ip()?;
    match begin_handshake(peer, keys, timeout, choice, proto)? {
        HandshakeStart::Done(terms, setup) => Ok((terms, setup)),
        HandshakeStart::Exchange(hs, trust) => {
            let session = drive_handshake(stream, hs).map_err(LinkError::Drive)?;
            finish_handshake(session, trust, choice)
        }
    }
}

/// Where a link's setup stands once the peer's keys are looked up: what every driver
/// (blocking, tokio) starts from.
#[allow(
    clippy::large_enum_variant,
    reason = "one per link setup, moved once; both variants are large"
)]
pub(crate) enum HandshakeStart {
    /// Nothing to exchange (a `.none` peer where the revision or mode skips the block).
    Done(LinkTerms, LinkSetup),
    /// The exchange to drive, then [`finish_handshake`].
    Exchange(Handshake<LinkRsa>, Trust),
}

/// The handshake's RSA on every link this crate sets up (the service, the tool's clients,
/// [`connect`] / [`accept`]): the `rsa` crate's on two threads ([`ThreadedRsa`]), or
/// OpenSSL's with feature `openssl-rsa` ([`OpensslRsa`](crate::openssl_rsa::OpensslRsa)).
#[cfg(not(feature = "openssl-rsa"))]
pub(crate) type LinkRsa = crate::threaded_rsa::ThreadedRsa;
/// The handshake's RSA on every link this crate sets up: OpenSSL's (feature `openssl-rsa`).
#[cfg(feature = "openssl-rsa")]
pub(crate) type LinkRsa = crate::openssl_rsa::OpensslRsa;

/// Our key alone in [`LinkRsa`]'s implementation: what the pool of prepared blocks
/// ([`crate::prepared`]) makes blocks with.
#[cfg(not(feature = "openssl-rsa"))]
pub(crate) type LinkOwnRsa = h2msg::OwnRsaKey<getrandom::SysRng>;
/// Our key alone in OpenSSL (feature `openssl-rsa`), for the pool of prepared blocks.
#[cfg(feature = "openssl-rsa")]
pub(crate) type LinkOwnRsa = crate::openssl_rsa::OpensslOwnRsa;

/// [`LinkRsa`] for our key and the peer's; the reason if they cannot be used together.
pub(crate) fn link_rsa(own: PrivateKey, peer: PublicKey) -> Result<LinkRsa, String> {
    #[cfg(not(feature = "openssl-rsa"))]
    let rsa = crate::threaded_rsa::ThreadedRsa::new(own, peer);
    #[cfg(feature = "openssl-rsa")]
    let rsa = crate::openssl_rsa::OpensslRsa::new(&own, &peer);
    rsa.map_err(|e| e.to_string())
}

/// [`LinkOwnRsa`] for our key.
///
/// # Errors
/// The reason OpenSSL could not take the key (feature `openssl-rsa`); never otherwise.
pub(crate) fn link_own_rsa(own: PrivateKey) -> Result<LinkOwnRsa, String> {
    #[cfg(not(feature = "openssl-rsa"))]
    return Ok(h2msg::OwnRsaKey::new(own, getrandom::SysRng));
    #[cfg(feature = "openssl-rsa")]
    crate::openssl_rsa::OpensslOwnRsa::new(&own).map_err(|e| e.to_string())
}

/// The handshake with `peer`'s keys (§2.2), its deadline `timeout` from now on the std
/// drivers' clock; see [`handshake_as`].
///
/// # Errors
/// [`LinkError::Keys`] without usable keys, [`LinkError::Negotiate`] for a mode a `.none`
/// peer cannot have, [`LinkError::Drive`] if our block cannot be made.
pub(crate) fn begin_handshake(
    peer: IpAddr,
    keys: &KeyDir,
    timeout: Duration,
    choice: ModeChoice,
    proto: Proto,
) -> Result<HandshakeStart, LinkError> {
    // The deadline is on the driver's clock, which wakes the handshake at it exactly; it
    // starts once the keys are loaded, as the exchange does.
    let deadline = || Some(now() + timeout);
    let hs = match keys.peer_key(peer).map_err(LinkError::Keys)? {
        PeerKey::Rsa(peer_key) => {
            let (own, _) = keys.own_keys().map_err(LinkError::Keys)?;
            let flags = choice.handshake_flags(STD_FIFO_SIZE);
            let deadline = deadline();
            // Our half of §2.4 done ahead of time, if the pool has a block ready.
            let prepared = crate::prepared::take_prepared(&own, flags);
            // The two received blocks are decrypted on two threads at once.
            let mut rsa = link_rsa(own, peer_key).map_err(|reason| {
                LinkError::Keys(KeyError::Format {
                    path: keys.peer_key_path(peer),
                    reason,
                })
            })?;
            // Else our block now, its two RSA blocks' send loops on two threads.
            let block = match prepared {
                Some(block) => block,
                None => PreparedBlock::prepare(
                    &mut rsa,
                    &mut getrandom::SysRng,
                    WireOrder::Little,
                    flags,
                )
                .map_err(|e| LinkError::Drive(DriveError::Handshake(e)))?,
            };
            Handshake::with_prepared(block, rsa, deadline, flags)
                .map_err(|e| match e {
                    PreparedBlockError::Handshake(e) => DriveError::Handshake(e),
                    // The pool is keyed by key and flags: a bug of ours if it happens.
                    mismatch => DriveError::Io(crate::other(mismatch)),
                })
                .map(|hs| (hs, Trust::Rsa))
        }
        PeerKey::None => {
            let plaintext = LinkTerms {
                trust: Trust::Plaintext,
                mode: StreamMode::Seed,
            };
            // `gcm` refuses a `.none` peer in either revision: nothing would key it.
            let none_peer = match (choice.none_peer().map_err(LinkError::Negotiate)?, proto) {
                (_, Proto::Dmsg) => NonePeer::SkipHandshake,
                (seed_era, Proto::Seed) => seed_era,
            };
            match none_peer {
                NonePeer::SkipHandshake => {
                    return Ok(HandshakeStart::Done(plaintext, LinkSetup::plaintext()));
                }
                NonePeer::ExchangePlaintextBlock => Handshake::with_flags(
                    KeyMode::Plaintext,
                    &mut getrandom::SysRng,
                    WireOrder::Little,
                    deadline(),
                    0,
                )
                .map_err(DriveError::Handshake)
                .map(|hs| (hs, Trust::Plaintext)),
            }
        }
    };
    let (hs, trust) = hs.map_err(LinkError::Drive)?;
    Ok(HandshakeStart::Exchange(hs, trust))
}

/// The stream mode negotiated from a completed exchange (§2.7–§2.9).
///
/// # Errors
/// [`LinkError::Negotiate`]: no mode both ends accept (ALGO, 20).
pub(crate) fn finish_handshake(
    session: h2msg::Session,
    trust: Trust,
    choice: ModeChoice,
) -> Result<(LinkTerms, LinkSetup), LinkError> {
    let setup = LinkSetup::negotiate(session, choice).map_err(LinkError::Negotiate)?;
    let mode = setup.mode();
    Ok((LinkTerms { trust, mode }, setup))
}

/// The service's side of an RSA handshake waits for the peer's whole block before doing
/// any RSA work of its own (#13): a peer that connects and stalls, or sends part of a
/// block, costs no CPU but its thread. Returns what is left of `timeout` for the
/// handshake itself. Peers without RSA (`.none`, whose DMSG link or `cbc` exchange may
/// start with our bytes) and those whose keys fail are not waited for: the handshake
/// reports them as before. Only the accepting end may wait so: every peer writes its
/// block before it reads ours (§2.4), so nothing waits on us; two ends that both waited
/// would wait for ever.
///
/// # Errors
/// KEYXCHGFAIL: the peer closed before its block was complete (`Truncated`) or the
/// deadline passed (`Timeout`); the socket's error.
pub fn await_peer_block(
    stream: &Stream,
    keys: &KeyDir,
    timeout: Duration,
) -> Result<Duration, LinkError> {
    let keyed = stream
        .peer_ip()
        .is_ok_and(|ip| matches!(keys.peer_key(ip), Ok(PeerKey::Rsa(_))));
    if !keyed {
        return Ok(timeout);
    }
    let start = std::time::Instant::now();
    match stream.wait_for_input(HANDSHAKE_LEN, timeout) {
        Ok(None) => Ok(timeout.saturating_sub(start.elapsed())),
        Ok(Some(received)) => Err(truncated_block(received)),
        Err(e) if e.kind() == io::ErrorKind::TimedOut => Err(block_timed_out()),
        Err(e) => Err(LinkError::Drive(DriveError::Io(e))),
    }
}

/// The peer's handshake block ended after `received` bytes (the connection closed).
pub(crate) fn truncated_block(received: usize) -> LinkError {
    let why = KeyExchangeFailure::Truncated { received };
    LinkError::Drive(DriveError::Handshake(HandshakeError::KeyExchange(why)))
}

/// The peer's handshake block did not come within the handshake timeout.
pub(crate) fn block_timed_out() -> LinkError {
    let why = KeyExchangeFailure::Timeout;
    LinkError::Drive(DriveError::Handshake(HandshakeError::KeyExchange(why)))
}

/// A link over `stream`: the handshake, then a connection in the agreed stream mode that
/// takes `DBG_SHELL` — commands on the service's side, and the replies to ours on a
/// client's (a connection drops replies to commands it does not take). The core answers
/// pings and unknown commands itself, and keeps the link alive as `liveness` says
/// (docs/liveness.md).
///
/// # Errors
/// [`LinkError`].
pub fn open_link(
    stream: Stream,
    keys: &KeyDir,
    timeout: Duration,
    choice: ModeChoice,
    liveness: Liveness,
) -> Result<(Link<Stream>, LinkTerms), LinkError> {
    let mut duplex = Duplex::new(stream)?;
    let (terms, setup) = handshake(&mut duplex, keys, timeout, choice)?;
    let io = shell_connection(setup, liveness)?;
    duplex.read_ahead(READ_AHEAD);
    Ok((Link::new(duplex, io), terms))
}

/// Transactions each side of a DMSG link of the tool may have open: a cluster sends one
/// span per node on every link and keeps it open (docs/dmsg.md 5.2), so this bounds the
/// nodes a link carries each way; more are refused with error 0x22 (the peer is told).
/// The tables take 48 bytes a slot, 48 KiB a link, inside the connection — which lives on
/// its thread's stack: threads that serve links get [`LINK_THREAD_STACK`].
pub const CLUSTER_TRANSACTIONS: usize = 512;

/// The stack of a thread that sets up and serves a DMSG link. The connection state is
/// built on it and moved a few times (more often in a debug build); only the pages used
/// are ever touched.
pub const LINK_THREAD_STACK: usize = 8 * 1024 * 1024;

/// A DMSG link of the tool (service, shell, ping): [`CLUSTER_TRANSACTIONS`] a side.
pub type ClusterLink = DmsgLink<Stream, CLUSTER_TRANSACTIONS>;

/// A DMSG link over `stream`: the handshake of [`handshake_as`] (none at all for a `.none`
/// peer), then a DMSG connection in the agreed stream mode that takes `DBG_SHELL` and
/// hands the application `LNK_PING` replies (the connection answers pings, `LNK_CONN`
/// and `LNK_SPAN` itself, dmsg.md 3.5, 5.2). Nothing is sent yet: the caller opens its
/// `LNK_CONN` first (dmsg.md 1.3).
///
/// # Errors
/// [`LinkError`].
pub fn open_dmsg_link(
    stream: Stream,
    keys: &KeyDir,
    timeout: Duration,
    choice: ModeChoice,
    liveness: Liveness,
) -> Result<(ClusterLink, LinkTerms), LinkError> {
    let mut duplex = Duplex::new(stream)?;
    let (terms, setup) = handshake_as(&mut duplex, keys, timeout, choice, Proto::Dmsg)?;
    let config = Config {
        liveness,
        ..Config::default()
    };
    let mut io = std_dmsg_iocom_sized::<CLUSTER_TRANSACTIONS>(setup, 0, config)
        .map_err(LinkError::Memory)?;
    for cmd in [Cmd::DBG_SHELL, Cmd::LNK_PING] {
        io.accept(cmd).map_err(crate::other)?;
    }
    duplex.read_ahead(READ_AHEAD);
    Ok((DmsgLink::new(duplex, io), terms))
}

/// A std connection built from `setup` that takes `DBG_SHELL`, with the `liveness` rules.
///
/// # Errors
/// [`LinkError::Memory`] if the std memory does not fit the mode (it always does).
pub fn shell_connection(setup: LinkSetup, liveness: Liveness) -> Result<StdIocom, LinkError> {
    let config = Config {
        liveness,
        ..Config::default()
    };
    let mut io = std_iocom_with(setup, 0, config).map_err(LinkError::Memory)?;
    io.accept(Cmd::DBG_SHELL).map_err(crate::other)?;
    Ok(io)
}
