//! One link's setup, shared by the service and its clients: the handshake with the keys
//! of the peer's address (§2.2), the stream mode both ends accept ([`h2msg::ModeChoice`]), and
//! the connection that carries the debug shell.

use std::io;
use std::time::Duration;

use h2msg::wire::limits::HANDSHAKE_LEN;
use h2msg::wire::{Cmd, WireOrder};
use h2msg::{
    Config, Handshake, HandshakeError, KeyExchangeFailure, KeyMode, LinkSetup, Liveness,
    MemoryError, ModeChoice, NegotiateError, NonePeer, PreparedBlock, PreparedBlockError,
    SendError, StreamMode,
};

use crate::blocking::{
    DmsgLink, DriveError, Duplex, Link, StdIocom, drive_handshake, now, std_dmsg_iocom,
    std_iocom_with,
};
use crate::keys::{KeyDir, KeyError, PeerKey};
use crate::proto::Proto;
use crate::threaded_rsa::ThreadedRsa;
use crate::transport::Stream;

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

/// The handshake with the keys of the peer's address (§2.2), within `timeout`, and the
/// stream mode both ends accept (`choice` on our side; see [`h2msg::ModeChoice`]). A `.none`
/// peer is always plaintext: the 512-byte block goes in the clear (flags 0, exactly the
/// seed era), except in `cbc`, whose era skipped the exchange (§11 H5). Returns the terms
/// and the negotiated setup the connection is built from.
///
/// # Errors
/// [`LinkError`].
pub fn handshake(
    stream: &mut Duplex<Stream>,
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
pub fn handshake_as(
    stream: &mut Duplex<Stream>,
    keys: &KeyDir,
    timeout: Duration,
    choice: ModeChoice,
    proto: Proto,
) -> Result<(LinkTerms, LinkSetup), LinkError> {
    let peer = stream.stream().peer_ip()?;
    // The deadline is on the driver's clock, which wakes the handshake at it exactly; it
    // starts once the keys are loaded, as the exchange does.
    let deadline = || Some(now() + timeout);
    let hs = match keys.peer_key(peer).map_err(LinkError::Keys)? {
        PeerKey::Rsa(peer_key) => {
            let (own, _) = keys.own_keys().map_err(LinkError::Keys)?;
            let flags = choice.handshake_flags();
            let deadline = deadline();
            // Our half of §2.4 done ahead of time, if the pool has a block ready.
            let prepared = crate::prepared::take_prepared(&own, flags);
            // The two received blocks are decrypted on two threads at once.
            let mut rsa = ThreadedRsa::new(own, peer_key).map_err(|e| {
                LinkError::Keys(KeyError::Format {
                    path: keys.peer_key_path(peer),
                    reason: e.to_string(),
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
                NonePeer::SkipHandshake => return Ok((plaintext, LinkSetup::plaintext())),
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
    let session = drive_handshake(stream, hs).map_err(LinkError::Drive)?;
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
    let failed = |why| LinkError::Drive(DriveError::Handshake(HandshakeError::KeyExchange(why)));
    match stream.wait_for_input(HANDSHAKE_LEN, timeout) {
        Ok(None) => Ok(timeout.saturating_sub(start.elapsed())),
        Ok(Some(received)) => Err(failed(KeyExchangeFailure::Truncated { received })),
        Err(e) if e.kind() == io::ErrorKind::TimedOut => Err(failed(KeyExchangeFailure::Timeout)),
        Err(e) => Err(LinkError::Drive(DriveError::Io(e))),
    }
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
    Ok((Link::new(duplex, io), terms))
}

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
) -> Result<(DmsgLink<Stream>, LinkTerms), LinkError> {
    let mut duplex = Duplex::new(stream)?;
    let (terms, setup) = handshake_as(&mut duplex, keys, timeout, choice, Proto::Dmsg)?;
    let config = Config {
        liveness,
        ..Config::default()
    };
    let mut io = std_dmsg_iocom(setup, 0, config).map_err(LinkError::Memory)?;
    for cmd in [Cmd::DBG_SHELL, Cmd::LNK_PING] {
        io.accept(cmd).map_err(crate::other)?;
    }
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
