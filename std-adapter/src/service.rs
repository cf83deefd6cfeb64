//! The node side (`h2msg service`): an accept loop in the foreground; per connection, the
//! handshake with the keys of the peer's address, then the debug shell of §4.3
//! (`LNK_PING` and unknown commands are answered by the core itself).
//!
//! Each link runs in its own thread over its own fixed-size connection state (a 64 KiB
//! FIFO, 64 KiB of aux storage and a transmit ring for two largest messages, about 260 KiB
//! when a peer fills them all), so a hostile or broken peer costs only its own link and
//! never more memory than that. The handshake has a deadline; links beyond `max_links` are
//! closed at once. SIGINT or SIGTERM stops accepting, shuts every link down (its open
//! transactions are aborted as on link loss) and returns; a second signal ends the process
//! at once.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use h2msg::cluster::{ClusterError, Registration, Route, SpanInput, refuse_span};
use h2msg::drive::Waited;
use h2msg::ioq::TxError;
use h2msg::trans::{DmsgKey, Received, Side};
use h2msg::wire::{
    Cmd, DMSG_ERR_IO, DMSG_ERR_NOSUPP, DMSG_LABEL_MAX, DMSG_SPAN_PROTO_1, LnkConn, LnkSpan,
    MsgFlags, MsgHeader, PeerType, WireOrder,
};
use h2msg::{DmsgEvent, Event, IocomStats, SendError};
use h2msg::{Liveness, ModeChoice};
use log::{debug, info, warn};

use crate::autoconn::{self, Dialer, KeepOptions, KeptLinks, LinkUp, SessionEnd};
use crate::blocking::Link;
use crate::cluster_hub::{ClusterHub, Forwarded, SERVICE_LIMITS};
use crate::dmsg_shell;
use crate::keys::KeyDir;
use crate::link::{ClusterLink, LinkError, LinkTerms, open_dmsg_link, open_link};
use crate::proto::Proto;
use crate::transport::{Endpoint, Stream};

/// Most links served at once by default.
pub const DEFAULT_MAX_LINKS: usize = 1024;

/// Most links from one address in their handshake at once, by default.
pub const DEFAULT_HANDSHAKES_PER_PEER: usize = 16;

/// The words the shell knows, as `help` lists them. `help` is the C node's own line.
const HELP: &str = "help        Command help\n\
                    status      Links and their counters\n\
                    ping        Answers pong\n";

/// The shell's answer to one input line (§4.3): nothing for an empty line, the command
/// list for `help` or `?`, the links for `status`, `pong` for `ping`, else
/// `Unrecognized command: <word>`.
#[must_use]
pub fn shell_reply(line: &[u8], links: &LinkRegistry) -> Option<String> {
    let text = String::from_utf8_lossy(h2msg::wire::until_nul(line));
    match text.split_whitespace().next() {
        None => None,
        Some("help" | "?") => Some(HELP.to_string()),
        Some("status") => Some(links.status()),
        Some("ping") => Some("pong\n".to_string()),
        Some(word) => Some(format!("Unrecognized command: {word}\n")),
    }
}

/// A link the service serves, as `status` shows it.
#[derive(Debug)]
struct LinkEntry {
    peer: String,
    /// Whose key files the link uses; counts against that address's handshakes.
    ip: Option<IpAddr>,
    since: Instant,
    terms: Option<LinkTerms>,
    /// Published by the link's thread; read by `status`.
    counters: Arc<LiveCounters>,
    /// A second handle, to shut the link down from the accept loop.
    socket: Stream,
}

#[derive(Debug, Default)]
struct Links {
    /// Links admitted so far; the last one's id.
    next_id: u64,
    /// The service is stopping: no more links are admitted.
    closed: bool,
    refused: u64,
    by_id: BTreeMap<u64, LinkEntry>,
}

/// A link's counters as its thread last published them ([`STATS_REFRESH_MIN`] to
/// [`STATS_REFRESH_MAX`] old at most): the thread owns the connection, and `status` must
/// not wait for it, nor depend on the link making requests.
#[derive(Debug, Default)]
struct LiveCounters {
    received: AtomicU64,
    sent: AtomicU64,
    auto_replies: AtomicU64,
    dropped: AtomicU64,
}

impl LiveCounters {
    fn publish(&self, stats: &IocomStats) {
        // Each counter is exact; `status` may see one a batch ahead of another, which is
        // as good as any moment's reading of a busy link.
        self.received.store(stats.received, Ordering::Relaxed);
        self.sent.store(stats.sent, Ordering::Relaxed);
        self.auto_replies
            .store(stats.auto_replies, Ordering::Relaxed);
        self.dropped.store(stats.dropped, Ordering::Relaxed);
    }

    fn read(&self) -> IocomStats {
        IocomStats {
            received: self.received.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
            auto_replies: self.auto_replies.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}

/// How often a link's thread publishes its counters: at first, and again as soon as they
/// changed (a busy link); the period doubles up to the longest while they stay the same,
/// so that idle links wake rarely. A link that turns busy after a quiet spell shows it
/// within the longest period.
const STATS_REFRESH_MIN: Duration = Duration::from_millis(50);
const STATS_REFRESH_MAX: Duration = Duration::from_secs(1);

/// The links a service has: bounded by `max_links`, and by `handshakes_per_peer` links
/// still in their handshake from one address — so one host that opens connections and
/// stalls cannot take every slot from the others. For `status` and shutdown.
#[derive(Debug)]
pub struct LinkRegistry {
    max_links: usize,
    handshakes_per_peer: usize,
    links: Mutex<Links>,
}

/// Why [`LinkRegistry::admit`] turned a connection away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `max_links` links are served already.
    Full,
    /// The peer's address has `handshakes_per_peer` links in their handshake already.
    PeerHandshaking,
    /// No second handle on the socket could be made (out of descriptors): a link the
    /// service could not shut down would hold its shutdown up.
    NoHandle,
    /// The service is shutting its links down.
    Stopping,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Full => "the service serves its maximum of links",
            Self::PeerHandshaking => "this address has its maximum of handshakes under way",
            Self::NoHandle => "out of file descriptors",
            Self::Stopping => "the service is stopping",
        })
    }
}

/// A link's place in the [`LinkRegistry`]; removes it when dropped.
#[derive(Debug)]
pub struct LinkSlot {
    registry: Arc<LinkRegistry>,
    id: u64,
    counters: Arc<LiveCounters>,
}

impl LinkRegistry {
    /// A registry admitting at most `max_links` links at once, of which at most
    /// `handshakes_per_peer` from one address may be in their handshake.
    #[must_use]
    pub fn new(max_links: usize, handshakes_per_peer: usize) -> Arc<Self> {
        Arc::new(Self {
            max_links,
            handshakes_per_peer,
            links: Mutex::new(Links::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Links> {
        // A thread that panicked while holding it left only counters behind.
        self.links.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits a link over `stream`, or says why not.
    ///
    /// # Errors
    /// [`Refusal`]; the refusal is counted.
    pub fn admit(self: &Arc<Self>, stream: &Stream) -> Result<LinkSlot, Refusal> {
        let socket = stream.try_clone().ok();
        let ip = stream.peer_ip().ok();
        let mut links = self.lock();
        let handshaking = || {
            links
                .by_id
                .values()
                .filter(|e| e.terms.is_none() && e.ip == ip)
                .count()
        };
        let admitted = if links.closed {
            Err(Refusal::Stopping)
        } else if links.by_id.len() >= self.max_links {
            Err(Refusal::Full)
        } else if handshaking() >= self.handshakes_per_peer {
            Err(Refusal::PeerHandshaking)
        } else {
            socket.ok_or(Refusal::NoHandle)
        };
        let socket = match admitted {
            Ok(socket) => socket,
            Err(refusal) => {
                links.refused += 1;
                return Err(refusal);
            }
        };
        links.next_id += 1;
        let id = links.next_id;
        let counters = Arc::new(LiveCounters::default());
        links.by_id.insert(
            id,
            LinkEntry {
                peer: stream.peer_name(),
                ip,
                since: Instant::now(),
                terms: None,
                counters: Arc::clone(&counters),
                socket,
            },
        );
        Ok(LinkSlot {
            registry: Arc::clone(self),
            id,
            counters,
        })
    }

    /// Links served now.
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    /// Whether no link is served.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Shuts every link's socket down: each link thread wakes to end of input. No link is
    /// admitted after this.
    pub fn shut_down_all(&self) {
        let mut links = self.lock();
        links.closed = true;
        for entry in links.by_id.values() {
            entry.socket.shutdown();
        }
    }

    /// Shuts link `id`'s socket down, if it is still served: its thread wakes to end of
    /// input.
    pub fn shut_down(&self, id: u64) {
        if let Some(entry) = self.lock().by_id.get(&id) {
            entry.socket.shutdown();
        }
    }

    /// The `status` text: one line of totals, then one line per link.
    #[must_use]
    pub fn status(&self) -> String {
        self.status_with(|_| String::new())
    }

    /// [`status`](Self::status) with `extra(link)` appended to each link's line.
    #[must_use]
    pub fn status_with(&self, extra: impl Fn(u64) -> String) -> String {
        let links = self.lock();
        let mut text = format!(
            "links: {} of {} (served {}, refused {})\n",
            links.by_id.len(),
            self.max_links,
            links.next_id,
            links.refused
        );
        for (id, e) in &links.by_id {
            let terms = e
                .terms
                .map_or_else(|| "handshake".to_string(), |t| t.to_string());
            let stats = e.counters.read();
            let _ = writeln!(
                text,
                "  #{id} {} {terms} up {:.1} s: received {} sent {} auto-answered {} dropped {}{}",
                e.peer,
                e.since.elapsed().as_secs_f64(),
                stats.received,
                stats.sent,
                stats.auto_replies,
                stats.dropped,
                extra(*id)
            );
        }
        text
    }
}

impl LinkSlot {
    fn update(&self, f: impl FnOnce(&mut LinkEntry)) {
        if let Some(entry) = self.registry.lock().by_id.get_mut(&self.id) {
            f(entry);
        }
    }

    /// The link is through its handshake: `status` shows its terms from now on.
    fn up(&self, terms: LinkTerms, proto: Proto) {
        self.update(|e| e.terms = Some(terms));
        info!("link {}: up ({terms}, {proto})", self.id);
    }

    /// Makes `stats` what `status` shows for this link.
    fn publish(&self, stats: &IocomStats) {
        self.counters.publish(stats);
    }

    /// The registry it belongs to.
    #[must_use]
    pub fn registry(&self) -> &LinkRegistry {
        &self.registry
    }
}

impl Drop for LinkSlot {
    fn drop(&mut self) {
        self.registry.lock().by_id.remove(&self.id);
    }
}

/// Serves one admitted connection until the peer goes away.
///
/// # Errors
/// [`LinkError`].
pub fn serve(
    stream: Stream,
    keys: &KeyDir,
    slot: &LinkSlot,
    handshake_timeout: Duration,
    choice: ModeChoice,
    liveness: Liveness,
) -> Result<(), LinkError> {
    let (mut link, terms) = open_link(stream, keys, handshake_timeout, choice, liveness)?;
    slot.up(terms, Proto::Seed);
    let mut counters = Publisher::default();
    loop {
        // The driver gives the decoder's IOQ error on a failed link, once the lost
        // transactions have been reported.
        let waited = link.next_event_until(counters.deadline(), |event| match event {
            // Only the line up to its NUL matters to the shell: copy that, not 64 KiB.
            Event::Message { msg, .. } if !msg.header().cmd.is_reply() => {
                Some((*msg.header(), msg.aux_until_nul().to_vec()))
            }
            _ => None,
        })?;
        counters.update(slot, link.io().stats());
        let (header, aux) = match waited {
            Waited::Event(Some(request)) => request,
            Waited::Event(None) | Waited::Elapsed | Waited::Woken => continue,
            Waited::Closed => break,
        };
        debug!(
            "link {}: shell {:?}",
            slot.id,
            String::from_utf8_lossy(&aux)
        );
        answer_shell(&mut link, &header, &aux, slot.registry())?;
    }
    Ok(())
}

/// Publishes a link's counters for `status`: at first, and again as soon as they changed
/// (a busy link); the period doubles up to the longest while they stay the same, so that
/// idle links wake rarely.
#[derive(Debug)]
struct Publisher {
    published: IocomStats,
    refresh: Duration,
}

impl Default for Publisher {
    fn default() -> Self {
        Self {
            published: IocomStats::default(),
            refresh: STATS_REFRESH_MIN,
        }
    }
}

impl Publisher {
    /// When the link's thread should look again. Pings and other auto-answered traffic
    /// make no event: the wait ends then too, so that the counters are published while
    /// only they change.
    fn deadline(&self) -> h2msg::Instant {
        crate::blocking::now() + self.refresh
    }

    fn update(&mut self, slot: &LinkSlot, stats: IocomStats) {
        if stats == self.published {
            self.refresh = (self.refresh * 2).min(STATS_REFRESH_MAX);
        } else {
            slot.publish(&stats);
            self.published = stats;
            self.refresh = STATS_REFRESH_MIN;
        }
    }
}

/// What one DMSG event means to the service.
enum DmsgInput {
    /// A one-way `DBG_SHELL` line at the top level: its aux up to the NUL (`None`: no aux).
    Shell(Option<Vec<u8>>),
    /// A one-way `LNK_PING|REPLY`: the answer to a ping.
    PingReply,
    /// An `LNK_CONN` or `LNK_SPAN` opened or closed: for the cluster.
    Cluster(Box<SpanInput>),
    /// The peer opened a transaction the service has no use for: closed with NOSUPP.
    Refuse(DmsgKey),
    /// The peer opened a routed transaction that has no room here: closed with this error.
    RefuseWith(DmsgKey, u32),
    /// An element of a routed transaction, for the link it names (docs/dmsg.md 5.8).
    Forward(u64, Box<Forwarded>),
    /// A transaction routed to one of this service's own registrations: the registration,
    /// the transaction's key, its command (without flags) and aux up to the NUL; the
    /// service answers it.
    Routed(Registration, DmsgKey, u32, Vec<u8>),
    /// Nothing to do (the connection answered it already, or nothing needs an answer).
    Other,
}

impl DmsgInput {
    /// What `event`, received on link `link` of `cluster`'s service, means to it.
    fn of(event: DmsgEvent<'_>, cluster: &ClusterHub, link: u64) -> Self {
        let DmsgEvent::Message { msg, received } = event else {
            // What was lost goes with the link (`Detach`).
            return Self::Other;
        };
        let cmd = msg.header().command();
        match received {
            Received::OneWay { parent: None } if cmd.switch_key() == Cmd::DBG_SHELL.raw() => {
                let aux = msg.aux();
                Self::Shell((!aux.is_empty()).then(|| msg.aux_until_nul().to_vec()))
            }
            Received::OneWay { parent: None }
                if cmd.switch_key() == Cmd::LNK_PING.set(MsgFlags::REPLY).raw() =>
            {
                Self::PingReply
            }
            received => {
                if let Some(input) = SpanInput::of(&msg, &received) {
                    return Self::Cluster(Box::new(input));
                }
                let Received::Element {
                    key,
                    parent,
                    effective_cmd,
                    opened,
                    ..
                } = received
                else {
                    return Self::Other;
                };
                match cluster.route(link, key, parent, opened) {
                    Route::Forward {
                        to,
                        twin,
                        open_under,
                    } => Self::Forward(
                        to,
                        Box::new(Forwarded {
                            twin,
                            open_under,
                            cmd,
                            error: msg.header().error,
                            ext: msg.ext().to_vec(),
                            aux: msg.aux().to_vec(),
                        }),
                    ),
                    Route::Local(registration) => Self::Routed(
                        registration,
                        key,
                        effective_cmd.clear(MsgFlags::REPLY).switch_key(),
                        msg.aux_until_nul().to_vec(),
                    ),
                    Route::Refused(_) => Self::RefuseWith(key, DMSG_ERR_IO),
                    Route::NotRouted if opened && key.side == Side::Remote => Self::Refuse(key),
                    Route::NotRouted => Self::Other,
                }
            }
        }
    }
}

/// Takes a link out of the service's cluster when it ends, however it ends: what came on
/// it is withdrawn (docs/dmsg.md 5.5).
struct Detach<'a> {
    cluster: &'a ClusterHub,
    link: u64,
}

impl Drop for Detach<'_> {
    fn drop(&mut self) {
        self.cluster.detach(self.link);
    }
}

/// The `LNK_CONN` payload h2msg's service and shell send (dmsg.md 1.3): a ROUTER
/// (what a `hammer2 service` and its shell say they are) that wants spans of every type,
/// protocol version 1 (D29), and this host's name as its label.
#[must_use]
pub fn router_conn() -> LnkConn {
    let mut conn = LnkConn::new();
    conn.set_peer_type(PeerType::ROUTER);
    conn.set_peer_mask(u64::MAX, WireOrder::Little);
    conn.set_proto_version(DMSG_SPAN_PROTO_1, WireOrder::Little);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let mut label: Vec<u8> = host.trim().bytes().filter(|&b| b != 0).collect();
    label.truncate(DMSG_LABEL_MAX);
    if label.is_empty() || conn.set_peer_label(&label).is_err() {
        // Cannot fail: the label is short enough and has no NUL.
        let _ = conn.set_peer_label(b"h2msg");
    }
    conn
}

/// Sends `text` as one one-way `DBG_SHELL|REPLY` (dmsg.md 6.4): the text and its NUL.
fn send_shell_text(link: &mut ClusterLink, text: &str) -> Result<(), LinkError> {
    let mut aux = Vec::with_capacity(text.len() + 1);
    aux.extend_from_slice(text.as_bytes());
    aux.push(0);
    send_one_way(link, Cmd::DBG_SHELL.set(MsgFlags::REPLY), &aux)
}

/// Sends a one-way message, writing out earlier ones first while the ring is full.
fn send_one_way(link: &mut ClusterLink, cmd: Cmd, aux: &[u8]) -> Result<(), LinkError> {
    loop {
        match link.io().send_one_way(cmd, &[], aux) {
            Ok(_) => return Ok(()),
            Err(SendError::Tx(TxError::QueueFull { .. })) => link.flush()?,
            Err(e) => return Err(LinkError::Send(e)),
        }
    }
}

/// The threads of a service's links, joined when it stops.
#[derive(Debug, Default)]
struct Workers(Mutex<Vec<thread::JoinHandle<()>>>);

impl Workers {
    fn lock(&self) -> MutexGuard<'_, Vec<thread::JoinHandle<()>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `work` in a new thread called `name`, joined by [`join_all`](Self::join_all).
    fn spawn(&self, name: String, work: impl FnOnce() + Send + 'static) -> io::Result<()> {
        let worker = thread::Builder::new()
            .name(name)
            .stack_size(crate::link::LINK_THREAD_STACK)
            .spawn(work)?;
        let mut workers = self.lock();
        workers.retain(|w| !w.is_finished());
        workers.push(worker);
        Ok(())
    }

    /// Joins every thread, also those started meanwhile by the ones joined.
    fn join_all(&self) {
        loop {
            let workers = std::mem::take(&mut *self.lock());
            if workers.is_empty() {
                return;
            }
            for worker in workers {
                let _ = worker.join();
            }
        }
    }
}

/// What a service's links share: the settings each runs with, the registries of links
/// and spans, and their threads. Accepted links and the outgoing ones `span` starts are
/// served alike from it.
#[derive(Debug)]
struct Node {
    keys: KeyDir,
    handshake_timeout: Duration,
    mode: ModeChoice,
    liveness: Liveness,
    proto: Proto,
    links: Arc<LinkRegistry>,
    cluster: ClusterHub,
    workers: Workers,
    /// The outgoing links kept up (`--connect`, autoconn), once started: `status` lists
    /// them.
    kept: OnceLock<Arc<KeptLinks>>,
}

impl Node {
    /// A node with `keys` and these link settings whose links are admitted by `links`.
    fn new(
        keys: &KeyDir,
        handshake_timeout: Duration,
        mode: ModeChoice,
        liveness: Liveness,
        proto: Proto,
        links: Arc<LinkRegistry>,
    ) -> Arc<Self> {
        Arc::new(Self {
            keys: keys.clone(),
            handshake_timeout,
            mode,
            liveness,
            proto,
            links,
            cluster: ClusterHub::new(draw_rself(), SERVICE_LIMITS),
            workers: Workers::default(),
            kept: OnceLock::new(),
        })
    }

    /// Serves the admitted connection `stream` until the peer goes away, and logs how the
    /// link ended.
    fn serve_accepted(self: &Arc<Self>, stream: Stream, slot: &LinkSlot) {
        let peer = stream.peer_name();
        let served = match self.proto {
            Proto::Seed => serve(
                stream,
                &self.keys,
                slot,
                self.handshake_timeout,
                self.mode,
                self.liveness,
            ),
            Proto::Dmsg => self
                .open_dmsg(stream, slot)
                .and_then(|link| self.serve_dmsg(link, slot)),
        };
        log_end(slot, &peer, served);
    }

    /// The DMSG link setup over `stream` with the keys of the peer's address; `status`
    /// shows its terms from now on.
    fn open_dmsg(&self, stream: Stream, slot: &LinkSlot) -> Result<ClusterLink, LinkError> {
        let (link, terms) = open_dmsg_link(
            stream,
            &self.keys,
            self.handshake_timeout,
            self.mode,
            self.liveness,
        )?;
        slot.up(terms, Proto::Dmsg);
        Ok(link)
    }

    /// `span <host>` asked on link `asker`: starts an outgoing DMSG link to `host`
    /// (`HOST` or `HOST:PORT`, port 987 by default) in its own thread, and says whether it
    /// was set up — connected and through its handshake, each within the handshake
    /// timeout. The asking link waits no longer than those two timeouts; a link set up
    /// after that is closed. Once set up, the link is served as an accepted one is, and
    /// not reconnected when it ends.
    fn span(self: &Arc<Self>, asker: u64, host: &str) -> bool {
        let endpoint = Endpoint::parse(Some(host));
        // Zero capacity: a report the asker no longer waits for is never taken.
        let (report, outcome) = mpsc::sync_channel(0);
        let node = Arc::clone(self);
        let started = self.workers.spawn(format!("span-{asker}"), move || {
            // The asker stops waiting after its timeout: a link set up later is closed.
            let _ = node.connect_out(&endpoint, |set_up| {
                report.send(set_up.map(|up| up.link)).is_ok()
            });
        });
        if let Err(e) = started {
            warn!("link {asker}: span {host}: no thread: {e}");
            return false;
        }
        match outcome.recv_timeout(self.handshake_timeout.saturating_mul(2)) {
            Ok(Ok(id)) => {
                info!("link {asker}: span {host}: link {id}");
                true
            }
            Ok(Err(reason)) => {
                warn!("link {asker}: span {host}: {reason}");
                false
            }
            Err(RecvTimeoutError::Timeout) => {
                warn!("link {asker}: span {host}: not set up in time");
                false
            }
            Err(RecvTimeoutError::Disconnected) => {
                warn!("link {asker}: span {host}: gave no answer");
                false
            }
        }
    }

    /// Connects to `endpoint`, admits and sets up the link, reports it (or why it failed)
    /// to `report`, and serves it unless `report` declines it (returns false): how it went.
    fn connect_out(
        self: &Arc<Self>,
        endpoint: &Endpoint,
        report: impl FnOnce(Result<LinkUp, String>) -> bool,
    ) -> SessionEnd {
        let set_up = endpoint
            .connect_within(self.handshake_timeout)
            .map_err(|e| e.to_string())
            .and_then(|stream| {
                let peer = stream.peer_name();
                let local = stream.local_name();
                let slot = self
                    .links
                    .admit(&stream)
                    .map_err(|refusal| format!("{peer}: refused: {refusal}"))?;
                match self.open_dmsg(stream, &slot) {
                    Ok(link) => Ok((link, slot, peer, local)),
                    Err(e) => Err(format!("link {} ({peer}): {e}", slot.id)),
                }
            });
        let (link, slot, peer, local) = match set_up {
            Ok(set_up) => set_up,
            Err(reason) => {
                report(Err(reason.clone()));
                return SessionEnd::NotSetUp(reason);
            }
        };
        if !report(Ok(LinkUp {
            link: slot.id,
            local,
        })) {
            warn!("link {} ({peer}): not wanted any more: closed", slot.id);
            return SessionEnd::Declined;
        }
        info!("link {} ({peer}): outgoing, to {endpoint}", slot.id);
        let served = self.serve_dmsg(link, &slot);
        let end = SessionEnd::Ended(served.as_ref().err().map(ToString::to_string));
        log_end(&slot, &peer, served);
        end
    }

    /// Serves a DMSG link (`--proto dmsg`), accepted or outgoing, until the peer goes
    /// away: our `LNK_CONN` first, then the debug shell of dmsg.md 6.4; the spans the peer
    /// opens are kept for `tree` while they and the link last. The link is numbered in
    /// `tree` (`via`) by its slot, as `status` numbers seed links.
    fn serve_dmsg(
        self: &Arc<Self>,
        mut link: ClusterLink,
        slot: &LinkSlot,
    ) -> Result<(), LinkError> {
        self.cluster.attach(slot.id, link.transport().waker());
        let _detach = Detach {
            cluster: &self.cluster,
            link: slot.id,
        };
        link.io()
            .open(Cmd::DMSG_LNK_CONN, None, router_conn().as_ext(), &[])
            .map_err(LinkError::Send)?;
        // Our shell pings not yet answered: only their replies print (the keepalive's do not).
        let mut pings_out = 0u32;
        let mut counters = Publisher::default();
        loop {
            // Spans other links' news made for this one (they woke us), and our own.
            self.cluster.deliver(slot.id, link.io());
            let waited = link.next_event_until(counters.deadline(), |e| {
                DmsgInput::of(e, &self.cluster, slot.id)
            })?;
            counters.update(slot, link.io().stats());
            let input = match waited {
                Waited::Event(input) => input,
                Waited::Elapsed | Waited::Woken => continue,
                Waited::Closed => break,
            };
            match input {
                DmsgInput::Shell(aux) => {
                    debug!(
                        "link {}: shell {:?}",
                        slot.id,
                        aux.as_deref().map(String::from_utf8_lossy)
                    );
                    let mut answer = dmsg_shell::answer(aux.as_deref(), || self.cluster.tree());
                    if let Some(host) = &answer.span {
                        answer.lines = vec![dmsg_shell::span_line(host, self.span(slot.id, host))];
                    }
                    if answer.status {
                        answer.lines = self.status_lines();
                    }
                    for line in &answer.lines {
                        send_shell_text(&mut link, line)?;
                    }
                    if answer.ping {
                        send_one_way(&mut link, Cmd::LNK_PING, &[])?;
                        pings_out = pings_out.saturating_add(1);
                    }
                    send_shell_text(&mut link, dmsg_shell::PROMPT)?;
                }
                DmsgInput::PingReply if pings_out > 0 => {
                    pings_out -= 1;
                    send_shell_text(&mut link, dmsg_shell::PING_REPLY)?;
                }
                DmsgInput::Cluster(input) => match self.cluster.input(slot.id, &input) {
                    Err(ClusterError::Full(table)) => {
                        warn!("link {}: cluster full ({table:?}): span refused", slot.id);
                        if let SpanInput::SpanOpened(msgid, ..) = *input {
                            refuse_span(link.io(), msgid);
                        }
                    }
                    Err(e) => debug!("link {}: {e}", slot.id),
                    Ok(()) => {}
                },
                DmsgInput::Refuse(key) => {
                    // Best effort: a transaction closed by then needs nothing more.
                    let _ = link.io().answer(key, true, DMSG_ERR_NOSUPP);
                }
                DmsgInput::RefuseWith(key, error) => {
                    let _ = link.io().answer(key, true, error);
                }
                DmsgInput::Forward(to, element) => self.cluster.forward(to, *element),
                DmsgInput::Routed(registration, key, cmd, line) => {
                    self.answer_routed(&mut link, slot.id, registration, key, cmd, &line)?;
                }
                DmsgInput::PingReply | DmsgInput::Other => {}
            }
        }
        Ok(())
    }
}

impl Node {
    /// The DMSG shell's `status` (an h2msg word, docs/dmsg.md 6.4): the links with their
    /// counters and span counts, the outgoing links it keeps up, then the cluster's
    /// totals; one message a line.
    fn status_lines(&self) -> Vec<String> {
        let mut text = self.links.status_with(|link| {
            let (received, relayed) = self.cluster.span_counts(link);
            format!(" spans in {received} out {relayed}")
        });
        if let Some(kept) = self.kept.get() {
            text.push_str(&kept.status());
        }
        let _ = writeln!(text, "{}", self.cluster.summary());
        text.split_inclusive('\n').map(str::to_string).collect()
    }

    /// Answers a transaction routed to one of our registrations (docs/dmsg.md 5.8): a
    /// `DBG_SHELL` line with its output, one element a line, then our DELETE; an
    /// `LNK_PING` with our DELETE (error 0); an `LNK_SEQREQ` by moving the registration to
    /// a new route sequence (5.9) and our DELETE; anything else with NOSUPP.
    fn answer_routed(
        self: &Arc<Self>,
        link: &mut ClusterLink,
        id: u64,
        registration: Registration,
        key: DmsgKey,
        cmd: u32,
        line: &[u8],
    ) -> Result<(), LinkError> {
        let io = link.io();
        if cmd == Cmd::DBG_SHELL.raw() {
            let mut answer = dmsg_shell::answer(Some(line), || self.cluster.tree());
            if let Some(host) = &answer.span {
                answer.lines = vec![dmsg_shell::span_line(host, self.span(id, host))];
            }
            if answer.status {
                answer.lines = self.status_lines();
            }
            for (i, text) in answer.lines.iter().enumerate() {
                let mut aux = Vec::with_capacity(text.len() + 1);
                aux.extend_from_slice(text.as_bytes());
                aux.push(0);
                let first = if i == 0 {
                    MsgFlags::CREATE
                } else {
                    MsgFlags::NONE
                };
                io.send(key, Cmd::DBG_SHELL.set(first), &[], &aux)
                    .map_err(LinkError::Send)?;
            }
            let _ = io.answer(key, true, 0);
        } else if cmd == Cmd::LNK_PING.raw() {
            let _ = io.answer(key, true, 0);
        } else if cmd == Cmd::DMSG_LNK_SEQREQ.raw() {
            if let Err(e) = self.cluster.bump(registration) {
                warn!("link {id}: a new route sequence for our registration: {e}");
            }
            let _ = io.answer(key, true, 0);
        } else {
            let _ = io.answer(key, true, DMSG_ERR_NOSUPP);
        }
        Ok(())
    }
}

/// Serves the one DMSG link over `stream` as `h2msg service --proto dmsg` serves an
/// accepted link (its setup with `keys`, `LNK_CONN`, the debug shell, spans), on a node of
/// its own that admits this link and those its `span` starts; returns when the peer goes
/// away, after shutting down any link `span` started.
///
/// # Errors
/// The link refused, failed to set up, or failing while served.
pub fn serve_one_dmsg(
    stream: Stream,
    keys: &KeyDir,
    handshake_timeout: Duration,
    mode: ModeChoice,
    liveness: Liveness,
) -> io::Result<()> {
    let node = Node::new(
        keys,
        handshake_timeout,
        mode,
        liveness,
        Proto::Dmsg,
        LinkRegistry::new(DEFAULT_MAX_LINKS, DEFAULT_HANDSHAKES_PER_PEER),
    );
    let slot = node
        .links
        .admit(&stream)
        .map_err(|refusal| crate::other(format!("the link was refused: {refusal}")))?;
    let served = node
        .open_dmsg(stream, &slot)
        .and_then(|link| node.serve_dmsg(link, &slot));
    drop(slot);
    // As a stopping service: the links `span` started go down with it.
    node.links.shut_down_all();
    node.workers.join_all();
    served.map_err(crate::other)
}

/// The spans `--advertise` registers (docs/dmsg.md 5.6): a ROUTER node per label, in
/// the cluster named by this host (`peer_label`, as [`router_conn`] names it), the label
/// as its `pfs_label`, protocol version 1, nil UUIDs.
///
/// # Errors
/// A label too long or with a NUL, or any label with the seed revision (no cluster there).
pub fn advertised_spans(labels: &[String], proto: Proto) -> io::Result<Vec<LnkSpan>> {
    if proto != Proto::Dmsg && !labels.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "--advertise needs --proto dmsg: the seed revision has no cluster",
        ));
    }
    let host = router_conn();
    labels
        .iter()
        .map(|label| {
            let mut span = LnkSpan::new();
            span.set_peer_type(PeerType::ROUTER);
            span.set_proto_version(DMSG_SPAN_PROTO_1, WireOrder::Little);
            span.peer_label = host.peer_label;
            span.set_pfs_label(label.as_bytes()).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("--advertise {label:?}: {e}"),
                )
            })?;
            Ok(span)
        })
        .collect()
}

/// This process's relay constant (D16): a random non-zero 32-bit value, drawn once.
fn draw_rself() -> std::num::NonZeroU32 {
    let mut bytes = [0u8; 4];
    // Without OS randomness the constant is only less random: it stays valid.
    let _ = getrandom::fill(&mut bytes);
    std::num::NonZeroU32::new(u32::from_le_bytes(bytes)).unwrap_or(std::num::NonZeroU32::MIN)
}

/// Logs how link `slot` to `peer` ended.
fn log_end(slot: &LinkSlot, peer: &str, served: Result<(), LinkError>) {
    match served {
        Ok(()) => info!("link {} ({peer}): closed", slot.id),
        Err(e) => warn!("link {} ({peer}): {e}", slot.id),
    }
}

/// The service's node as the [`Dialer`] of its kept-up links: each session is an
/// outgoing link set up and served as `span` starts one.
struct KeepUp(Arc<Node>);

impl Dialer for KeepUp {
    fn session(&self, endpoint: &Endpoint, up: &mut dyn FnMut(LinkUp) -> bool) -> SessionEnd {
        self.0.connect_out(endpoint, |set_up| set_up.is_ok_and(up))
    }

    fn shut_down(&self, link: u64) {
        self.0.links.shut_down(link);
    }
}

/// Most text one shell reply carries; longer answers (`status` of many links) go out as
/// several streaming replies, split at line ends.
const SHELL_CHUNK: usize = 8 << 10;

fn answer_shell(
    link: &mut Link<Stream>,
    header: &MsgHeader,
    aux: &[u8],
    links: &LinkRegistry,
) -> Result<(), LinkError> {
    let mut send = |text: &[u8], last: bool| loop {
        match link.io().reply(header, 0, text, last) {
            Ok(_) => return Ok(()),
            // The transmit ring is full of earlier chunks: write them out first.
            Err(SendError::Tx(TxError::QueueFull { .. })) => link.flush()?,
            Err(e) => return Err(LinkError::Send(e)),
        }
    };
    if let Some(answer) = shell_reply(aux, links) {
        let mut text = Vec::with_capacity(answer.len().min(SHELL_CHUNK) + 1);
        for chunk in line_chunks(&answer, SHELL_CHUNK) {
            text.clear();
            text.extend_from_slice(chunk.as_bytes());
            text.push(0);
            send(&text, false)?;
        }
    }
    send(&[], true)
}

/// `text` in pieces of at most `max` bytes, cut after a newline where one is in reach.
fn line_chunks(text: &str, max: usize) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut cut = rest.len().min(max);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        if cut < rest.len()
            && let Some(nl) = rest.get(..cut).and_then(|head| head.rfind('\n'))
        {
            cut = nl + 1;
        }
        let (chunk, tail) = rest.split_at(cut);
        rest = tail;
        Some(chunk)
    })
}

/// How `h2msg service` runs.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// Where to listen.
    pub listen: Endpoint,
    /// Most links served at once.
    pub max_links: usize,
    /// Deadline for a peer's handshake.
    pub handshake_timeout: Duration,
    /// Most links from one address in their handshake at once.
    pub handshakes_per_peer: usize,
    /// The stream modes we accept.
    pub mode: ModeChoice,
    /// When a link's peer is pinged, dropped as dead, or dropped for not reading.
    pub liveness: Liveness,
    /// The protocol revision every link speaks.
    pub proto: Proto,
    /// Labels of the nodes this service registers in the cluster (`--proto dmsg` only).
    pub advertise: Vec<String>,
    /// The loop guard of docs/dmsg.md 5.9 (`--proto dmsg` only; off: libdmsg's rules).
    pub loop_guard: bool,
    /// Targets kept connected (`--connect`, dmsg.md 6.2; DMSG only).
    pub connect: Vec<String>,
    /// How often the key directory's `autoconn` file is polled (DMSG only).
    pub autoconn_poll: Duration,
}

/// `h2msg service`: accepts connections and serves each in its own thread, in the
/// foreground (the C tool daemonised; a service manager does that job now). Prints
/// `listening on ENDPOINT` on standard output once bound. Returns after SIGINT or SIGTERM,
/// once every link is shut down.
///
/// # Errors
/// Our own key pair is unusable ([`KeyDir::check_own_keys`]), the bind failure with the
/// OS reason (§11 S4), or a failure to set up signals.
pub fn run_service(config: &ServiceConfig, keys: &KeyDir) -> io::Result<()> {
    // Kept-up links are DMSG's (dmsg.md 6.2); the seed revision has no such thing.
    if config.proto != Proto::Dmsg && !config.connect.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "--connect needs --proto dmsg",
        ));
    }
    let registrations = advertised_spans(&config.advertise, config.proto)?;
    // A broken own key would otherwise fail every RSA link, after `listening on`.
    keys.check_own_keys().map_err(io::Error::other)?;
    // RSA peers get prepared handshake blocks from the first link on.
    if let Ok((own, _)) = keys.own_keys() {
        let _ = crate::prepared::warm_up(&own, config.mode.handshake_flags());
    }
    // Signals first: a supervisor may signal as soon as it reads `listening on`.
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])?;
    let max_links = fit_max_links_to_open_files(config.max_links);
    let listener = config.listen.bind()?;
    // The accept loop polls, rather than waiting in accept until a stop connects to it:
    // a Unix socket whose file was removed cannot be connected to, by us or anyone.
    listener.set_nonblocking(true)?;
    {
        use std::io::Write as _;
        let mut out = io::stdout().lock();
        writeln!(out, "listening on {}", listener.local_endpoint()?)?;
        out.flush()?;
    }
    let stopping = Arc::new(AtomicBool::new(false));
    let signal_handle = signals.handle();
    let signal_thread = {
        let stopping = Arc::clone(&stopping);
        thread::spawn(move || {
            for signal in signals.forever() {
                if stopping.swap(true, Ordering::SeqCst) {
                    // A second signal while links are shutting down: what the user
                    // would get without a handler — the process ends now.
                    let _ = signal_hook::low_level::emulate_default_handler(signal);
                }
                info!("signal {signal}: shutting down");
            }
        })
    };

    let node = Node::new(
        keys,
        config.handshake_timeout,
        config.mode,
        config.liveness,
        config.proto,
        LinkRegistry::new(max_links, config.handshakes_per_peer),
    );
    node.cluster.set_loop_guard(config.loop_guard);
    for span in &registrations {
        node.cluster.register(span).map_err(io::Error::other)?;
    }
    if config.proto == Proto::Dmsg {
        let kept = KeptLinks::start(
            Arc::new(KeepUp(Arc::clone(&node))),
            KeepOptions {
                connect: config.connect.clone(),
                file: Some((
                    keys.path().join(autoconn::AUTOCONN_FILE),
                    config.autoconn_poll,
                )),
                backoff: autoconn::Backoff::default(),
            },
        )?;
        let _ = node.kept.set(kept);
    }
    let mut idle_pause = ACCEPT_PAUSE_MIN;
    while !stopping.load(Ordering::SeqCst) {
        let stream = match listener.accept() {
            Ok(stream) => {
                idle_pause = ACCEPT_PAUSE_MIN;
                stream
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // Nobody is waiting: pause, longer the longer it stays quiet, so that an
                // idle service costs little and a busy one accepts without delay.
                thread::sleep(idle_pause);
                idle_pause = (idle_pause * 2).min(ACCEPT_PAUSE_MAX);
                continue;
            }
            Err(e) => {
                // Out of descriptors or a connection reset before accept: the service
                // stays up; the pause keeps a persistent failure from spinning.
                warn!("accept: {e}");
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        if stopping.load(Ordering::SeqCst) {
            break;
        }
        let slot = match node.links.admit(&stream) {
            Ok(slot) => slot,
            Err(refusal) => {
                warn!("{}: refused: {refusal}", stream.peer_name());
                continue;
            }
        };
        let served = Arc::clone(&node);
        let worker = node.workers.spawn(format!("link-{}", slot.id), move || {
            served.serve_accepted(stream, &slot);
        });
        if let Err(e) = worker {
            warn!("no thread for a link: {e}");
        }
    }
    // Keepers stop first (their waits end, their links are shut down), so none starts a
    // link while the others go down; a keeper in a handshake ends with the links.
    let kept = node.kept.get().cloned();
    if let Some(kept) = &kept {
        kept.stop();
    }
    node.links.shut_down_all();
    if let Some(kept) = &kept {
        kept.join();
    }
    node.workers.join_all();
    signal_handle.close();
    let _ = signal_thread.join();
    info!("stopped");
    Ok(())
}

/// The accept loop's pause after finding no connection waiting, first and at most. The
/// longest is how late the loop sees a stop, and how long the first connection after a
/// quiet spell may wait to be accepted (an RSA handshake takes about as long).
const ACCEPT_PAUSE_MIN: Duration = Duration::from_millis(1);
const ACCEPT_PAUSE_MAX: Duration = Duration::from_millis(20);

/// Descriptors the service needs besides its links' (listener, stdio, signal pipe, ...).
const SPARE_FILES: u64 = 64;

/// Descriptors one link holds: the socket, the handle kept to shut it down, the reader's
/// and the writer's copies, and one more while a dropped link lingers to finish writing.
const FILES_PER_LINK: u64 = 5;

/// Raises the open-file limit to what `max_links` need ([`FILES_PER_LINK`] each), as far
/// as the hard limit allows; returns the number of links that fit, warning if that is
/// fewer than asked for.
fn fit_max_links_to_open_files(max_links: usize) -> usize {
    let links = u64::try_from(max_links).unwrap_or(u64::MAX);
    let wanted = links
        .saturating_mul(FILES_PER_LINK)
        .saturating_add(SPARE_FILES);
    let limit = match rlimit::increase_nofile_limit(wanted) {
        Ok(limit) => limit,
        Err(e) => {
            warn!("open-file limit unknown ({e}); keeping --max-links {max_links}");
            return max_links;
        }
    };
    let fit =
        usize::try_from(limit.saturating_sub(SPARE_FILES) / FILES_PER_LINK).unwrap_or(usize::MAX);
    if fit < max_links {
        warn!("open-file limit {limit}: serving at most {fit} links, not {max_links}");
        return fit;
    }
    max_links
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shell_answers_as_section_4_3_says() {
        let links = LinkRegistry::new(4, 4);
        assert_eq!(shell_reply(b"", &links), None);
        assert_eq!(shell_reply(b"\0garbage", &links), None);
        let help = "help        Command help\n\
                    status      Links and their counters\n\
                    ping        Answers pong\n";
        assert_eq!(shell_reply(b"help\0", &links).as_deref(), Some(help));
        assert_eq!(shell_reply(b"?", &links).as_deref(), Some(help));
        assert_eq!(shell_reply(b"ping\0", &links).as_deref(), Some("pong\n"));
        assert_eq!(
            shell_reply(b"bar baz\0", &links).as_deref(),
            Some("Unrecognized command: bar\n")
        );
    }

    #[test]
    fn long_answers_are_cut_at_line_ends() {
        let text = "aaaa\nbbbb\ncc\n";
        let chunks: Vec<&str> = line_chunks(text, 11).collect();
        assert_eq!(chunks, ["aaaa\nbbbb\n", "cc\n"]);
        // A line longer than a chunk is cut inside it, never inside a character.
        let chunks: Vec<&str> = line_chunks("ééé", 3).collect();
        assert_eq!(chunks, ["é", "é", "é"]);
        assert_eq!(line_chunks("", 4).count(), 0);
    }

    #[test]
    fn the_registry_bounds_links_and_status_lists_them() {
        let listener = Endpoint::Tcp("127.0.0.1:0".into()).bind().unwrap();
        let target = listener.local_endpoint().unwrap();
        let links = LinkRegistry::new(2, 2);
        let streams: Vec<Stream> = (0..3).map(|_| target.connect().unwrap()).collect();
        let a = links.admit(&streams[0]).unwrap();
        let b = links.admit(&streams[1]).unwrap();
        assert_eq!(links.admit(&streams[2]).unwrap_err(), Refusal::Full);
        a.publish(&IocomStats {
            received: 7,
            ..IocomStats::default()
        });
        let status = shell_reply(b"status", &links).unwrap();
        assert!(
            status.starts_with("links: 2 of 2 (served 2, refused 1)\n"),
            "{status}"
        );
        assert!(status.contains("#1 127.0.0.1:"), "{status}");
        assert!(status.contains("received 7 sent 0"), "{status}");
        drop(a);
        assert_eq!(links.len(), 1);
        assert!(links.status().contains("#2 "));
        assert!(!links.status().contains("#1 "));
        drop(b);
        assert!(links.is_empty());
    }

    #[test]
    fn one_address_gets_only_so_many_handshakes_at_once() {
        let listener = Endpoint::Tcp("127.0.0.1:0".into()).bind().unwrap();
        let target = listener.local_endpoint().unwrap();
        let links = LinkRegistry::new(10, 2);
        let streams: Vec<Stream> = (0..4).map(|_| target.connect().unwrap()).collect();
        let first = links.admit(&streams[0]).unwrap();
        let _second = links.admit(&streams[1]).unwrap();
        assert_eq!(
            links.admit(&streams[2]).unwrap_err(),
            Refusal::PeerHandshaking
        );
        // Once one of them is through its handshake, the address may start another.
        first.update(|e| {
            e.terms = Some(LinkTerms {
                trust: crate::link::Trust::Plaintext,
                mode: h2msg::StreamMode::Seed,
            });
        });
        assert!(links.admit(&streams[3]).is_ok());
        assert!(links.status().contains("refused 1)"));
    }
}
