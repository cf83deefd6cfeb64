//! The seed revision's links as tasks on one tokio runtime (#18): no thread, no stack and
//! no second socket handle per link, and memory sized on demand — see
//! [`small_connection`] and [`AuxLender`]. DMSG links stay on their threads.

use std::io;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use h2msg::drive::DriveError;
use h2msg::ioq::TxError;
use h2msg::wire::limits::{HANDSHAKE_LEN, MSGAUX_MAX};
use h2msg::wire::{Cmd, MsgHeader};
use h2msg::{
    Config, CounterSalt, Event, Iocom, IocomMemory, LinkSetup, MemoryError, SendError, StreamMode,
};
use log::debug;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;

use super::{LinkRegistry, LinkSlot, Node, Publisher, line_chunks, log_end, shell_reply};
use crate::blocking::{HwCrc32c, STD_FIFO_SIZE, StdIocom, now};
use crate::keys::PeerKey;
use crate::link::{
    HandshakeStart, LinkError, begin_handshake, block_timed_out, finish_handshake, truncated_block,
};
use crate::proto::Proto;
use crate::tokio_driver::{Link, drive_handshake};
use crate::transport::{Stream, UNIX_PEER_ADDRESS};

/// The receive FIFO of a link served as a task: half the C size. It holds any header
/// (2048 bytes) plus a plaintext or `cbc` unit, and every message of the shell with its
/// aux in place; a larger aux goes to storage lent for it ([`AuxLender`]). A `gcm` link
/// needs a whole record beside the largest header (§2.9) and keeps the std FIFO,
/// [`STD_FIFO_SIZE`]; its pages are touched only as records fill them.
pub const TASK_FIFO_SIZE: usize = 4096;

/// The transmit ring of a link served as a task: room for a ping's answer many times
/// over and for one shell reply of [`TASK_SHELL_CHUNK`] text (a `status` of many links
/// goes out as several, each written out before the next is queued).
pub const TASK_TX_RING_SIZE: usize = 4096;

/// Most text one shell reply carries on a link served as a task: a quarter of the ring,
/// so that a reply fits whatever the mode's framing adds.
pub const TASK_SHELL_CHUNK: usize = TASK_TX_RING_SIZE / 4;

/// Idle aux buffers the service keeps for links to borrow, each [`MSGAUX_MAX`] bytes:
/// a burst of large messages reuses them instead of allocating; past this, a returned
/// buffer is freed.
const POOLED_AUX_BUFFERS: usize = 8;

/// A connection whose memory is small until a message needs more: a
/// [`TASK_FIFO_SIZE`] FIFO, a [`TASK_TX_RING_SIZE`] ring and no aux storage at all (the
/// FIFO holds a small aux in place; a larger one is lent storage, [`AuxLender`]).
///
/// # Errors
/// [`MemoryError`]: never with these sizes; the type says what the core checks.
pub fn small_connection(setup: LinkSetup, config: Config) -> Result<StdIocom, MemoryError> {
    let fifo = match setup.mode() {
        StreamMode::Gcm => STD_FIFO_SIZE,
        StreamMode::Seed | StreamMode::Cbc => TASK_FIFO_SIZE,
    };
    let memory = IocomMemory {
        fifo: vec![0u8; fifo],
        aux: Vec::new(),
        tx_ring: vec![0u8; TASK_TX_RING_SIZE],
    };
    Iocom::with_config(setup, memory, CounterSalt::after(0), HwCrc32c, config)
}

/// Aux storage lent to links while a message larger than their FIFO arrives, from a
/// small shared pool. A link holds a buffer only from the message's
/// [`Event::AuxStorageTooSmall`] until the message is handled.
#[derive(Debug, Default)]
pub struct AuxPool {
    idle: Mutex<Vec<Vec<u8>>>,
}

impl AuxPool {
    fn take(&self) -> Vec<u8> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.pop().unwrap_or_else(|| vec![0u8; MSGAUX_MAX])
    }

    fn give_back(&self, buffer: Vec<u8>) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if buffer.len() == MSGAUX_MAX && idle.len() < POOLED_AUX_BUFFERS {
            idle.push(buffer);
        }
    }

    /// Buffers waiting to be lent.
    #[must_use]
    pub fn idle(&self) -> usize {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// One link's borrowing from an [`AuxPool`].
#[derive(Debug)]
pub struct AuxLender {
    pool: Arc<AuxPool>,
    /// Bytes of aux storage the link holds now (0: none lent).
    lent: usize,
}

impl AuxLender {
    /// A link that borrows from `pool`.
    #[must_use]
    pub const fn new(pool: Arc<AuxPool>) -> Self {
        Self { pool, lent: 0 }
    }

    /// Bytes of aux storage the link holds now: 0 while it is idle.
    #[must_use]
    pub const fn lent(&self) -> usize {
        self.lent
    }

    /// The connection said [`Event::AuxStorageTooSmall`] for `needed` bytes: lends a
    /// buffer if one can hold them. One that cannot (more than [`MSGAUX_MAX`], which the
    /// decoder refuses first anyway) is not lent, and the link ends with the core's
    /// typed error.
    pub fn lend(&mut self, io: &mut StdIocom, needed: usize) {
        if needed > MSGAUX_MAX || self.lent != 0 {
            return;
        }
        match io.replace_aux_storage(self.pool.take()) {
            Ok(empty) => {
                self.lent = MSGAUX_MAX;
                drop(empty);
            }
            Err(unused) => self.pool.give_back(unused),
        }
    }

    /// After a message was handled: the lent buffer goes back to the pool, unless the
    /// next large message has started arriving in it (then it is given back after that
    /// one).
    pub fn reclaim(&mut self, io: &mut StdIocom) {
        if self.lent == 0 {
            return;
        }
        if let Ok(buffer) = io.replace_aux_storage(Vec::new()) {
            self.lent = 0;
            self.pool.give_back(buffer);
        }
    }
}

/// A shut-down signal for one link task: what the registry uses where a thread's link
/// has a second socket handle (a descriptor per link saved).
pub type StopSignal = Arc<Notify>;

/// Serves the admitted connection `stream` as a task until the peer goes away or
/// `stop` is signalled, and logs how the link ended.
pub(super) async fn serve_task(
    node: Arc<Node>,
    pool: Arc<AuxPool>,
    stream: Stream,
    slot: LinkSlot,
    stop: StopSignal,
) {
    let peer_name = stream.peer_name();
    let served = tokio::select! {
        served = serve_stream(&node, &pool, stream, &slot) => served,
        () = stop.notified() => Ok(()),
    };
    log_end(&slot, &peer_name, served);
}

/// The handshake over `stream` (the peer's block awaited first, as the threads do), then
/// the shell.
async fn serve_stream(
    node: &Node,
    pool: &Arc<AuxPool>,
    stream: Stream,
    slot: &LinkSlot,
) -> Result<(), LinkError> {
    match stream {
        Stream::Tcp(tcp) => {
            tcp.set_nonblocking(true)?;
            let tcp = tokio::net::TcpStream::from_std(tcp)?;
            tcp.set_nodelay(true)?;
            let peer = tcp.peer_addr()?.ip().to_canonical();
            let left = await_peer_block(&tcp, node, peer).await?;
            let link = Box::pin(set_up(node, tcp, peer, left, slot)).await?;
            serve_boxed(link, pool, slot).await
        }
        Stream::Unix(unix) => {
            unix.set_nonblocking(true)?;
            let unix = tokio::net::UnixStream::from_std(unix)?;
            let left = node.handshake_timeout;
            let link = Box::pin(set_up(node, unix, UNIX_PEER_ADDRESS, left, slot)).await?;
            serve_boxed(link, pool, slot).await
        }
    }
}

/// [`await_peer_block`](crate::link::await_peer_block) on a task: an RSA peer's 512
/// bytes must all be waiting before the service spends RSA on it. The time left of the
/// handshake timeout.
async fn await_peer_block(
    tcp: &tokio::net::TcpStream,
    node: &Node,
    peer: IpAddr,
) -> Result<Duration, LinkError> {
    /// Longest pause between looks while a peer sends its block in pieces: a peek
    /// returns at once while any byte waits.
    const MOST_PAUSE: Duration = Duration::from_millis(50);
    let timeout = node.handshake_timeout;
    if !matches!(node.keys.peer_key(peer), Ok(PeerKey::Rsa(_))) {
        return Ok(timeout);
    }
    let start = std::time::Instant::now();
    let mut buf = [0u8; HANDSHAKE_LEN];
    let (mut seen, mut pause) = (0usize, Duration::from_millis(1));
    let waited = tokio::time::timeout(timeout, async {
        loop {
            let n = tcp.peek(&mut buf).await?;
            if n == 0 {
                return Ok(Some(seen));
            }
            if n >= HANDSHAKE_LEN {
                return Ok::<_, io::Error>(None);
            }
            pause = if n > seen {
                Duration::from_millis(1)
            } else {
                (pause * 2).min(MOST_PAUSE)
            };
            seen = n;
            tokio::time::sleep(pause).await;
        }
    })
    .await;
    match waited {
        Ok(Ok(None)) => Ok(timeout.saturating_sub(start.elapsed())),
        Ok(Ok(Some(received))) => Err(truncated_block(received)),
        Ok(Err(e)) => Err(LinkError::Drive(DriveError::Io(e))),
        Err(_) => Err(block_timed_out()),
    }
}

/// The shell on `link` until the peer goes away, in a future of its own: the task's
/// future then keeps only pointers, and the handshake's state (boxed apart by
/// [`set_up`]) is freed before the link goes idle.
async fn serve_boxed<S>(
    link: Link<S>,
    pool: &Arc<AuxPool>,
    slot: &LinkSlot,
) -> Result<(), LinkError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut lender = AuxLender::new(Arc::clone(pool));
    Box::pin(serve_shell(link, &mut lender, slot)).await
}

/// The handshake with the keys of `peer` within `timeout`, then the link with small
/// memory ([`small_connection`]).
async fn set_up<S>(
    node: &Node,
    mut stream: S,
    peer: IpAddr,
    timeout: Duration,
    slot: &LinkSlot,
) -> Result<Link<S>, LinkError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let started = begin_handshake(peer, &node.keys, timeout, node.mode, Proto::Seed)?;
    let (terms, setup) = match started {
        HandshakeStart::Done(terms, setup) => (terms, setup),
        HandshakeStart::Exchange(hs, trust) => {
            let session = drive_handshake(&mut stream, hs).await?;
            finish_handshake(session, trust, node.mode)?
        }
    };
    let config = Config {
        liveness: node.liveness,
        ..Config::default()
    };
    let mut io = small_connection(setup, config).map_err(LinkError::Memory)?;
    io.accept(Cmd::DBG_SHELL).map_err(crate::other)?;
    slot.up(terms, Proto::Seed);
    Ok(Link::new(stream, io))
}

/// What one event asks of a link task.
enum Input {
    /// A shell line: the request's header and its aux up to the NUL.
    Shell(MsgHeader, Vec<u8>),
    /// A message's aux needs storage of this size.
    Storage(usize),
    /// Nothing (answered by the connection, or nothing to answer).
    Other,
}

/// Answers shell lines on `link` until the peer closes it, lending aux storage while a
/// large message arrives.
///
/// # Errors
/// [`LinkError`]: how the link failed.
pub async fn serve_shell<S>(
    mut link: Link<S>,
    lender: &mut AuxLender,
    slot: &LinkSlot,
) -> Result<(), LinkError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut counters = Publisher::default();
    loop {
        let refresh = counters.deadline().saturating_since(now());
        // `next_event` is cancel-safe: the timeout only publishes the counters.
        let next = link.next_event(|event| match event {
            Event::Message { msg, .. } if !msg.header().cmd.is_reply() => {
                Input::Shell(*msg.header(), msg.aux_until_nul().to_vec())
            }
            Event::AuxStorageTooSmall { needed, .. } => Input::Storage(needed),
            _ => Input::Other,
        });
        let waited = tokio::time::timeout(refresh, next).await;
        counters.update(slot, link.io().stats());
        let input = match waited {
            Err(_elapsed) => continue,
            Ok(Ok(Some(input))) => input,
            Ok(Ok(None)) => break,
            Ok(Err(e)) => return Err(e.into()),
        };
        match input {
            Input::Storage(needed) => {
                lender.lend(link.io(), needed);
                continue;
            }
            Input::Shell(header, aux) => {
                lender.reclaim(link.io());
                debug!(
                    "link {}: shell {:?}",
                    slot.id,
                    String::from_utf8_lossy(&aux)
                );
                answer_shell(&mut link, &header, &aux, slot.registry()).await?;
            }
            Input::Other => lender.reclaim(link.io()),
        }
    }
    Ok(())
}

/// [`answer_shell`](super::answer_shell) on a task, in [`TASK_SHELL_CHUNK`] pieces.
async fn answer_shell<S>(
    link: &mut Link<S>,
    header: &MsgHeader,
    aux: &[u8],
    links: &LinkRegistry,
) -> Result<(), LinkError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut text = Vec::with_capacity(TASK_SHELL_CHUNK + 1);
    let answer = shell_reply(aux, links);
    let chunks = answer.iter().flat_map(|a| line_chunks(a, TASK_SHELL_CHUNK));
    for chunk in chunks.map(Some).chain([None]) {
        text.clear();
        if let Some(chunk) = chunk {
            text.extend_from_slice(chunk.as_bytes());
            text.push(0);
        }
        let last = chunk.is_none();
        match link.io().reply(header, 0, &text, last) {
            // The ring is full of earlier chunks: write them out, then it fits (a chunk
            // is a quarter of the ring).
            Err(SendError::Tx(TxError::QueueFull { .. })) => {
                link.flush().await?;
                link.io().reply(header, 0, &text, last)
            }
            sent => sent,
        }
        .map_err(LinkError::Send)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocking::std_iocom;

    /// A slot in a registry of its own (the registry admits a real socket).
    fn slot() -> (LinkSlot, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let client =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (accepted, _) = listener.accept().expect("accept");
        let registry = LinkRegistry::new(4, 4);
        let slot = registry.admit(&Stream::Tcp(accepted)).expect("admitted");
        (slot, client)
    }

    /// Sends the shell line `line` to a served link over an in-memory pipe and returns
    /// the reply's text (all its streaming pieces), then closes the link; the server's
    /// outcome too.
    fn shell_round(line: &[u8], lender: &mut AuxLender) -> (Result<(), LinkError>, String) {
        let (slot, _socket) = slot();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let (server_end, client_end) = tokio::io::duplex(1 << 20);
            let mut io = small_connection(LinkSetup::plaintext(), Config::default())
                .expect("small memory fits");
            io.accept(Cmd::DBG_SHELL).expect("accept list");
            let server = serve_shell(Link::new(server_end, io), lender, &slot);
            let client = async {
                let mut io = std_iocom(LinkSetup::plaintext(), 0).expect("memory");
                io.accept(Cmd::DBG_SHELL).expect("accept list");
                let mut link = Link::new(client_end, io);
                let mut shell = MsgHeader::new(Cmd::DBG_SHELL);
                shell.msgid = 1;
                link.io().send(shell, &[], line).expect("room for the line");
                let mut text = String::new();
                loop {
                    let piece = link
                        .next_event(|e| match e {
                            Event::Message { msg, .. } if msg.header().cmd.is_reply() => {
                                // A one-way request's final reply is the empty one.
                                let last = msg.aux().is_empty();
                                Some((
                                    String::from_utf8_lossy(msg.aux_until_nul()).into_owned(),
                                    last,
                                ))
                            }
                            _ => None,
                        })
                        .await
                        .expect("the client's link")
                        .expect("the link stays up");
                    if let Some((piece, last)) = piece {
                        text.push_str(&piece);
                        if last {
                            break;
                        }
                    }
                }
                text
            };
            tokio::join!(server, client)
        })
    }

    #[test]
    fn a_large_message_borrows_aux_storage_and_gives_it_back() {
        let pool = Arc::new(AuxPool::default());
        let mut lender = AuxLender::new(Arc::clone(&pool));
        // One word far larger than the FIFO: its aux needs lent storage, and the answer
        // (the word again) goes out in many ring-sized pieces.
        let word = "x".repeat(60_000);
        let (served, text) = shell_round(word.as_bytes(), &mut lender);
        served.expect("the link ends cleanly");
        assert_eq!(text, format!("Unrecognized command: {word}\n"));
        assert_eq!(lender.lent(), 0, "the link holds no aux storage once idle");
        assert_eq!(pool.idle(), 1, "the buffer went back to the pool");
    }

    #[test]
    fn a_small_message_needs_no_aux_storage() {
        let pool = Arc::new(AuxPool::default());
        let mut lender = AuxLender::new(Arc::clone(&pool));
        let (served, text) = shell_round(b"ping", &mut lender);
        served.expect("the link ends cleanly");
        assert_eq!(text, "pong\n");
        assert_eq!(lender.lent(), 0);
        assert_eq!(pool.idle(), 0, "nothing was ever taken from the pool");
    }
}
