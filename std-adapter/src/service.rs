//! The node side (`h2msg service`): an accept loop in the foreground; per connection, the
//! handshake with the keys of the peer's address, then the debug shell of §4.3
//! (`LNK_PING` and unknown commands are answered by the core itself).
//!
//! Seed links run as tasks on a tokio runtime ([`tasks`]: a 4 KiB FIFO and transmit ring,
//! aux storage lent only while a large message arrives). DMSG links run each in its own
//! thread over its own fixed-size connection state (a 64 KiB FIFO, 1 MiB of aux storage
//! and a transmit ring for one largest message). Either way a hostile or broken peer
//! costs only its own link and never more memory than that bound. The handshake has a
//! deadline; links beyond `max_links` are
//! closed at once. SIGINT or SIGTERM stops accepting, shuts every link down (its open
//! transactions are aborted as on link loss) and returns; a second signal ends the process
//! at once.

use std::collections::{BTreeMap, HashMap};
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
use crate::blocking::{Link, STD_FIFO_SIZE};
use crate::cluster_hub::{ClusterHub, Forwarded, SERVICE_LIMITS};
use crate::dmsg_shell;
use crate::keys::KeyDir;
use crate::link::{ClusterLink, LinkError, LinkTerms, await_peer_block, open_dmsg_link, open_link};
use crate::proto::Proto;
use crate::transport::{Endpoint, Stream};

#[cfg(feature = "tokio")]
pub mod tasks;

/// Most links served at once by default.
pub const DEFAULT_MAX_LINKS: usize = 1024;

/// Most links from one address in their handshake at once, by default.
pub const DEFAULT_HANDSHAKES_PER_PEER: usize = 16;

/// New handshakes a second by default: an RSA handshake costs the service about 18 ms of
/// CPU once the peer's block is in, so this rate of junk blocks keeps it to about one
/// core; a node's peers reconnecting at once fit in the burst.
pub const DEFAULT_HANDSHAKE_RATE: u32 = 50;

/// New handshakes at once after a quiet spell, by default.
pub const DEFAULT_HANDSHAKE_BURST: u32 = 100;

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
    /// Set when a newer connection displaces the link from its handshake.
    evicted: Arc<AtomicBool>,
    /// How the accept loop shuts the link down.
    closer: Closer,
}

/// How a link is shut down from outside its thread or task.
#[derive(Debug)]
enum Closer {
    /// A link on a thread: a second handle on its socket, shut down so that the thread
    /// wakes to end of input.
    Socket(Stream),
    /// A link on a task: its stop signal (no descriptor spent on it).
    #[cfg(feature = "tokio")]
    Signal(tasks::StopSignal),
}

impl Closer {
    fn close(&self) {
        match self {
            Self::Socket(socket) => socket.shutdown(),
            // A stored permit: a task that is not waiting yet stops at its next wait.
            #[cfg(feature = "tokio")]
            Self::Signal(stop) => stop.notify_one(),
        }
    }
}

/// How a service takes links in (#13): completed links are bounded by `max_links`;
/// links still in their handshake by a smaller budget, `max_handshakes`, and by
/// `handshakes_per_peer` from one address; and new handshakes by a token bucket of
/// `handshake_rate` a second, up to `handshake_burst` at once.
///
/// A connection that finds the handshake budget (or every link slot) taken displaces the
/// oldest link still in its handshake rather than being refused: a peer that stalls in
/// its handshake holds its slot only until enough newer connections come, while a link
/// through its handshake is never displaced. Refused at once, before any byte: a
/// connection from an address that has its maximum of handshakes under way, one over the
/// rate, and any once `max_links` links are through their handshakes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Admission {
    /// Most links at once, through their handshake or not.
    pub max_links: usize,
    /// Most links in their handshake at once (at most `max_links` counts).
    pub max_handshakes: usize,
    /// Most links from one address in their handshake at once.
    pub handshakes_per_peer: usize,
    /// New handshakes a second, on average.
    pub handshake_rate: u32,
    /// New handshakes at once after a quiet spell: the token bucket's size.
    pub handshake_burst: u32,
}

impl Admission {
    /// The defaults for `max_links` links: a quarter of them may be in their handshake.
    #[must_use]
    pub const fn for_max_links(max_links: usize) -> Self {
        Self {
            max_links,
            max_handshakes: default_max_handshakes(max_links),
            handshakes_per_peer: DEFAULT_HANDSHAKES_PER_PEER,
            handshake_rate: DEFAULT_HANDSHAKE_RATE,
            handshake_burst: DEFAULT_HANDSHAKE_BURST,
        }
    }
}

impl Default for Admission {
    fn default() -> Self {
        Self::for_max_links(DEFAULT_MAX_LINKS)
    }
}

/// The handshake budget for `max_links` by default: a quarter of them, at least one, so
/// that three quarters stay for links that proved themselves.
#[must_use]
pub const fn default_max_handshakes(max_links: usize) -> usize {
    if max_links < 4 { 1 } else { max_links / 4 }
}

/// A token bucket on a clock the caller gives (so that tests need no sleeps): `rate`
/// tokens a second, at most `capacity`; it starts full. Counted in millionths of a token,
/// so that any rate refills exactly without floating point.
#[derive(Debug)]
struct TokenBucket {
    rate: u64,
    capacity: u64,
    micro_tokens: u64,
    last: Option<Instant>,
}

/// Millionths of a token in one.
const MICRO: u64 = 1_000_000;

impl TokenBucket {
    fn new(rate: u32, burst: u32) -> Self {
        let capacity = u64::from(burst).saturating_mul(MICRO);
        Self {
            rate: u64::from(rate),
            capacity,
            micro_tokens: capacity,
            last: None,
        }
    }

    /// Takes a token at `now` if there is one beyond the last `keep`.
    fn take(&mut self, now: Instant, keep: u32) -> bool {
        if let Some(last) = self.last {
            // A rate in tokens a second is that many millionths a microsecond.
            let micros =
                u64::try_from(now.saturating_duration_since(last).as_micros()).unwrap_or(u64::MAX);
            self.micro_tokens = self
                .micro_tokens
                .saturating_add(micros.saturating_mul(self.rate))
                .min(self.capacity);
        }
        // Never backwards: an earlier `now` refills nothing, and later ones count from
        // the latest seen.
        self.last = Some(self.last.map_or(now, |last| last.max(now)));
        let needed = u64::from(keep).saturating_add(1).saturating_mul(MICRO);
        if self.micro_tokens >= needed {
            self.micro_tokens -= MICRO;
            true
        } else {
            false
        }
    }
}

#[derive(Debug)]
struct Links {
    /// Links admitted so far; the last one's id.
    next_id: u64,
    /// The service is stopping: no more links are admitted.
    closed: bool,
    refused: u64,
    /// Of those refused, for being over the handshake rate.
    rate_limited: u64,
    /// Links in their handshake displaced by newer connections.
    evicted: u64,
    bucket: TokenBucket,
    /// By id, which is also the order they were admitted in: the first one still in its
    /// handshake is the oldest.
    by_id: BTreeMap<u64, LinkEntry>,
    /// Addresses whose links ended in their handshake (failed, timed out, displaced),
    /// when they last did: for [`FAILED_MEMORY`], they lose the rate limit's reserve and
    /// are displaced first. A completed handshake clears the address.
    failed_recently: HashMap<Option<IpAddr>, Instant>,
    /// When `failed_recently` was last cleared of old entries.
    last_forgetting: Option<Instant>,
}

/// How long an address's failed handshake counts against it.
const FAILED_MEMORY: Duration = Duration::from_secs(60);

/// Most addresses remembered in `failed_recently`: about 1 MiB. Past it, old entries are
/// forgotten (at most once a second, the scan being over all of them); an attacker with
/// more addresses than this, failing within [`FAILED_MEMORY`], is not all remembered.
const FAILED_ADDRESSES_MAX: usize = 16_384;

impl Links {
    /// Whether `ip` had a handshake fail within [`FAILED_MEMORY`] of `now`.
    fn failed_lately(&self, ip: Option<IpAddr>, now: Instant) -> bool {
        self.failed_recently
            .get(&ip)
            .is_some_and(|&when| now.saturating_duration_since(when) < FAILED_MEMORY)
    }

    /// Remembers that a handshake from `ip` failed at `now`.
    fn note_failed(&mut self, ip: Option<IpAddr>, now: Instant) {
        if self.failed_recently.len() >= FAILED_ADDRESSES_MAX
            && !self.failed_recently.contains_key(&ip)
        {
            let due = self
                .last_forgetting
                .is_none_or(|last| now.saturating_duration_since(last) >= Duration::from_secs(1));
            if !due {
                return;
            }
            self.last_forgetting = Some(now);
            self.failed_recently
                .retain(|_, when| now.saturating_duration_since(*when) < FAILED_MEMORY);
            if self.failed_recently.len() >= FAILED_ADDRESSES_MAX {
                return;
            }
        }
        let when = self.failed_recently.entry(ip).or_insert(now);
        *when = (*when).max(now);
    }
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

/// The links a service has, admitted as [`Admission`] says. For `status` and shutdown.
#[derive(Debug)]
pub struct LinkRegistry {
    admission: Admission,
    links: Mutex<Links>,
}

/// Why [`LinkRegistry::admit`] turned a connection away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `max_links` links are served already, all through their handshake.
    Full,
    /// The peer's address has `handshakes_per_peer` links in their handshake already.
    PeerHandshaking,
    /// More new handshakes than the rate limit lets through.
    RateLimited,
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
            Self::RateLimited => "over the service's rate of new handshakes",
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
    /// Set when a newer connection displaced this link from its handshake.
    evicted: Arc<AtomicBool>,
}

impl LinkRegistry {
    /// A registry admitting at most `max_links` links at once, of which at most
    /// `handshakes_per_peer` from one address may be in their handshake; the other limits
    /// are [`Admission::for_max_links`]'s.
    #[must_use]
    pub fn new(max_links: usize, handshakes_per_peer: usize) -> Arc<Self> {
        Self::with_admission(Admission {
            handshakes_per_peer,
            ..Admission::for_max_links(max_links)
        })
    }

    /// A registry admitting links as `admission` says.
    #[must_use]
    pub fn with_admission(admission: Admission) -> Arc<Self> {
        Arc::new(Self {
            admission,
            links: Mutex::new(Links {
                next_id: 0,
                closed: false,
                refused: 0,
                rate_limited: 0,
                evicted: 0,
                bucket: TokenBucket::new(admission.handshake_rate, admission.handshake_burst),
                by_id: BTreeMap::new(),
                failed_recently: HashMap::new(),
                last_forgetting: None,
            }),
        })
    }

    /// The tokens of the rate limit a connection may not take: half the burst is kept
    /// for addresses in good standing — no handshake under way, none failed lately — so
    /// that a flood from addresses whose handshakes stall, however many and however long,
    /// leaves room for a newcomer or a known peer reconnecting.
    fn reserve_for(&self, good_standing: bool) -> u32 {
        if good_standing {
            0
        } else {
            self.admission.handshake_burst / 2
        }
    }

    /// The handshake budget in effect: never more than the links.
    fn max_handshakes(&self) -> usize {
        self.admission.max_handshakes.min(self.admission.max_links)
    }

    fn lock(&self) -> MutexGuard<'_, Links> {
        // A thread that panicked while holding it left only counters behind.
        self.links.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits a link over `stream`, or says why not. When the handshake budget or every
    /// slot is taken, the oldest link still in its handshake is displaced: its socket is
    /// shut down, and its thread ends reporting it evicted.
    ///
    /// # Errors
    /// [`Refusal`]; the refusal is counted.
    pub fn admit(self: &Arc<Self>, stream: &Stream) -> Result<LinkSlot, Refusal> {
        self.admit_at(stream, Instant::now())
    }

    /// [`admit`](Self::admit) at `now`, the time the rate limit and `status` go by.
    fn admit_at(self: &Arc<Self>, stream: &Stream, now: Instant) -> Result<LinkSlot, Refusal> {
        let closer = stream.try_clone().ok().map(Closer::Socket);
        self.admit_closing(stream, now, closer)
    }

    /// [`admit`](Self::admit) for a link served as a task: it is shut down through the
    /// returned signal rather than a second socket handle.
    ///
    /// # Errors
    /// [`Refusal`]; the refusal is counted.
    #[cfg(feature = "tokio")]
    pub fn admit_task(
        self: &Arc<Self>,
        stream: &Stream,
    ) -> Result<(LinkSlot, tasks::StopSignal), Refusal> {
        let stop = tasks::StopSignal::default();
        let closer = Closer::Signal(Arc::clone(&stop));
        let slot = self.admit_closing(stream, Instant::now(), Some(closer))?;
        Ok((slot, stop))
    }

    /// [`admit_at`](Self::admit_at) with `closer` to shut the link down (`None`: none
    /// could be made).
    fn admit_closing(
        self: &Arc<Self>,
        stream: &Stream,
        now: Instant,
        closer: Option<Closer>,
    ) -> Result<LinkSlot, Refusal> {
        let socket = closer;
        let ip = stream.peer_ip().ok();
        let mut guard = self.lock();
        let links = &mut *guard;
        let (mut handshaking, mut from_peer) = (0usize, 0usize);
        for entry in links.by_id.values().filter(|e| e.terms.is_none()) {
            handshaking += 1;
            from_peer += usize::from(entry.ip == ip);
        }
        // The cheap refusals first, so that connections refused for them spend no token.
        let admitted = if links.closed {
            Err(Refusal::Stopping)
        } else if links.by_id.len() >= self.admission.max_links && handshaking == 0 {
            Err(Refusal::Full)
        } else if from_peer >= self.admission.handshakes_per_peer {
            Err(Refusal::PeerHandshaking)
        } else if socket.is_none() {
            Err(Refusal::NoHandle)
        } else if !links.bucket.take(
            now,
            self.reserve_for(from_peer == 0 && !links.failed_lately(ip, now)),
        ) {
            Err(Refusal::RateLimited)
        } else {
            socket.ok_or(Refusal::NoHandle)
        };
        let socket = match admitted {
            Ok(socket) => socket,
            Err(refusal) => {
                links.refused += 1;
                links.rate_limited += u64::from(refusal == Refusal::RateLimited);
                return Err(refusal);
            }
        };
        if handshaking >= self.max_handshakes() || links.by_id.len() >= self.admission.max_links {
            links.evict_oldest_handshake(now);
        }
        links.next_id += 1;
        let id = links.next_id;
        let counters = Arc::new(LiveCounters::default());
        let evicted = Arc::new(AtomicBool::new(false));
        links.by_id.insert(
            id,
            LinkEntry {
                peer: stream.peer_name(),
                ip,
                since: now,
                terms: None,
                counters: Arc::clone(&counters),
                evicted: Arc::clone(&evicted),
                closer: socket,
            },
        );
        Ok(LinkSlot {
            registry: Arc::clone(self),
            id,
            counters,
            evicted,
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
            entry.closer.close();
        }
    }

    /// Shuts link `id`'s socket down, if it is still served: its thread wakes to end of
    /// input.
    pub fn shut_down(&self, id: u64) {
        if let Some(entry) = self.lock().by_id.get(&id) {
            entry.closer.close();
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
        let handshaking = links.by_id.values().filter(|e| e.terms.is_none()).count();
        let mut text = format!(
            "links: {} of {} (served {}, refused {}); handshakes: {handshaking} of {} \
             (evicted {}, over the rate {})\n",
            links.by_id.len(),
            self.admission.max_links,
            links.next_id,
            links.refused,
            self.max_handshakes(),
            links.evicted,
            links.rate_limited,
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

impl Links {
    /// Displaces the oldest link still in its handshake, if there is one — from an
    /// address whose handshakes failed lately if there is such a link, else any: out of
    /// the registry at once (its slot is free for the newcomer), its socket shut down so
    /// that its thread ends.
    fn evict_oldest_handshake(&mut self, now: Instant) {
        let mut handshaking = self.by_id.iter().filter(|(_, e)| e.terms.is_none());
        let oldest = handshaking
            .clone()
            .find(|(_, e)| self.failed_lately(e.ip, now))
            .or_else(|| handshaking.next())
            .map(|(id, _)| *id);
        if let Some(entry) = oldest.and_then(|id| self.by_id.remove(&id)) {
            entry.evicted.store(true, Ordering::Relaxed);
            entry.closer.close();
            self.evicted += 1;
            self.note_failed(entry.ip, now);
        }
    }
}

impl LinkSlot {
    /// The link is through its handshake: `status` shows its terms from now on, and no
    /// newer connection can displace it. (One displaced just before has its socket shut
    /// down and ends at its first read or write.)
    fn up(&self, terms: LinkTerms, proto: Proto) {
        let mut links = self.registry.lock();
        if let Some(entry) = links.by_id.get_mut(&self.id) {
            entry.terms = Some(terms);
            let ip = entry.ip;
            // Proven: whatever failed from there before, this peer has the keys.
            links.failed_recently.remove(&ip);
        }
        drop(links);
        if !self.was_evicted() {
            info!("link {}: up ({terms}, {proto})", self.id);
        }
    }

    /// Whether a newer connection displaced this link from its handshake.
    fn was_evicted(&self) -> bool {
        self.evicted.load(Ordering::Relaxed)
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
        let mut links = self.registry.lock();
        // A link that ends in its handshake counts against its address (one displaced
        // was counted then, and is gone from the registry already).
        if let Some(entry) = links.by_id.remove(&self.id)
            && entry.terms.is_none()
        {
            links.note_failed(entry.ip, Instant::now());
        }
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
    let handshake_timeout = await_peer_block(&stream, keys, handshake_timeout)?;
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
            // Accepted: the peer sends its block first, and ours waits for it. (An
            // outgoing `span` link must not wait: its peer may be waiting too.)
            Proto::Dmsg => await_peer_block(&stream, &self.keys, self.handshake_timeout)
                .and_then(|left| self.open_dmsg_within(stream, slot, left))
                .and_then(|link| self.serve_dmsg(link, slot)),
        };
        log_end(slot, &peer, served);
    }

    /// The DMSG link setup over `stream` with the keys of the peer's address; `status`
    /// shows its terms from now on.
    fn open_dmsg(&self, stream: Stream, slot: &LinkSlot) -> Result<ClusterLink, LinkError> {
        self.open_dmsg_within(stream, slot, self.handshake_timeout)
    }

    /// [`open_dmsg`](Self::open_dmsg) with `handshake_timeout` for the handshake.
    fn open_dmsg_within(
        &self,
        stream: Stream,
        slot: &LinkSlot,
        handshake_timeout: Duration,
    ) -> Result<ClusterLink, LinkError> {
        let (link, terms) = open_dmsg_link(
            stream,
            &self.keys,
            handshake_timeout,
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
            // Spans other links' news made for this one (they woke us), and our own. With
            // the transmit queue full, look again soon: the link writes meanwhile.
            let backlog = self.cluster.deliver(slot.id, link.io());
            let deadline = if backlog {
                crate::blocking::now() + MAILBOX_RETRY
            } else {
                counters.deadline()
            };
            let waited =
                link.next_event_until(deadline, |e| DmsgInput::of(e, &self.cluster, slot.id))?;
            counters.update(slot, link.io().stats());
            let input = match waited {
                Waited::Event(input) => input,
                Waited::Elapsed => {
                    self.cluster.rescan_if_stale();
                    continue;
                }
                Waited::Woken => continue,
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
                // A long answer (a big cluster's `tree`) waits for room, as the one-way
                // shell's does, rather than failing the link.
                loop {
                    match link.io().send(key, Cmd::DBG_SHELL.set(first), &[], &aux) {
                        Ok(_) => break,
                        Err(SendError::Tx(TxError::QueueFull { .. })) => link.flush()?,
                        // The requester went (its link, or the route): nothing to answer.
                        Err(_) => return Ok(()),
                    }
                }
            }
            let _ = link.io().answer(key, true, 0);
        } else if cmd == Cmd::LNK_PING.raw() {
            let _ = link.io().answer(key, true, 0);
        } else if cmd == Cmd::DMSG_LNK_SEQREQ.raw() {
            match self.cluster.bump(registration) {
                Ok(Some(_)) | Err(ClusterError::Unknown) => {}
                Ok(None) => debug!("link {id}: a new route sequence asked again too soon"),
                Err(e) => warn!("link {id}: a new route sequence for our registration: {e}"),
            }
            let _ = link.io().answer(key, true, 0);
        } else {
            let _ = link.io().answer(key, true, DMSG_ERR_NOSUPP);
        }
        Ok(())
    }
}

/// How soon a link whose transmit queue was too full for its mailbox tries again.
const MAILBOX_RETRY: Duration = Duration::from_millis(5);

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
        LinkRegistry::with_admission(Admission::default()),
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

/// Logs how link `slot` to `peer` ended. (Warnings from one place are rate-limited by the
/// logger, so a flood of failing or displaced handshakes logs a summary, not a line each.)
fn log_end(slot: &LinkSlot, peer: &str, served: Result<(), LinkError>) {
    match served {
        // Its error is only the shut-down socket's.
        _ if slot.was_evicted() => warn!(
            "link {} ({peer}): evicted: the oldest unfinished handshake when the handshake \
             budget was full",
            slot.id
        ),
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
    /// How many links are taken in, and how fast.
    pub admission: Admission,
    /// Deadline for a peer's handshake.
    pub handshake_timeout: Duration,
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
        let _ = crate::prepared::warm_up(&own, config.mode.handshake_flags(STD_FIFO_SIZE));
    }
    // Signals first: a supervisor may signal as soon as it reads `listening on`.
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])?;
    // A link on a task holds its socket only; one on a thread several descriptors.
    let files_per_link = if cfg!(feature = "tokio") && config.proto == Proto::Seed {
        FILES_PER_TASK_LINK
    } else {
        FILES_PER_LINK
    };
    let max_links = fit_max_links_to_open_files(config.admission.max_links, files_per_link);
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
        LinkRegistry::with_admission(Admission {
            max_links,
            ..config.admission
        }),
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
    // Seed links run as tasks on two workers (one core each on a small machine; links
    // need little CPU each, and the accept loop keeps its own thread); DMSG links keep
    // their threads.
    #[cfg(feature = "tokio")]
    let runtime = match config.proto {
        Proto::Seed => Some(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(LINK_WORKERS)
                .thread_name("links")
                .enable_all()
                .build()?,
        ),
        Proto::Dmsg => None,
    };
    #[cfg(feature = "tokio")]
    let aux_pool = Arc::new(tasks::AuxPool::default());
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
        #[cfg(feature = "tokio")]
        if let Some(runtime) = &runtime {
            match node.links.admit_task(&stream) {
                Ok((slot, stop)) => {
                    let task = tasks::serve_task(
                        Arc::clone(&node),
                        Arc::clone(&aux_pool),
                        stream,
                        slot,
                        stop,
                    );
                    drop(runtime.spawn(task));
                }
                Err(refusal) => {
                    warn!("{}: refused: {refusal}", stream.peer_name());
                    stream.close_refused();
                }
            }
            continue;
        }
        let slot = match node.links.admit(&stream) {
            Ok(slot) => slot,
            Err(refusal) => {
                // Rate-limited by the logger per place; `status` counts every refusal.
                warn!("{}: refused: {refusal}", stream.peer_name());
                stream.close_refused();
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
    #[cfg(feature = "tokio")]
    if let Some(runtime) = runtime {
        // Every task was told to stop: each ends at its next wait. Wait for their slots
        // to go (each logs how its link ended), then for the runtime.
        let deadline = Instant::now() + TASKS_STOP_WAIT;
        while !node.links.is_empty() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        runtime.shutdown_timeout(TASKS_STOP_WAIT);
    }
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

/// Worker threads of the runtime that serves seed links as tasks.
#[cfg(feature = "tokio")]
const LINK_WORKERS: usize = 2;

/// How long a stopping service waits for its link tasks to end.
#[cfg(feature = "tokio")]
const TASKS_STOP_WAIT: Duration = Duration::from_secs(5);

/// Descriptors the service needs besides its links' (listener, stdio, signal pipe, ...).
const SPARE_FILES: u64 = 64;

/// Descriptors one link served as a task holds: its socket (it is stopped by a signal,
/// and a dropped tokio socket is closed at once).
const FILES_PER_TASK_LINK: u64 = 1;

/// Descriptors one link on a thread holds: the socket, the handle kept to shut it down, the reader's
/// and the writer's copies, and one more while a dropped link lingers to finish writing.
const FILES_PER_LINK: u64 = 5;

/// Raises the open-file limit to what `max_links` need (`files_per_link` each), as far
/// as the hard limit allows; returns the number of links that fit, warning if that is
/// fewer than asked for.
fn fit_max_links_to_open_files(max_links: usize, files_per_link: u64) -> usize {
    let links = u64::try_from(max_links).unwrap_or(u64::MAX);
    let wanted = links
        .saturating_mul(files_per_link)
        .saturating_add(SPARE_FILES);
    let limit = match rlimit::increase_nofile_limit(wanted) {
        Ok(limit) => limit,
        Err(e) => {
            warn!("open-file limit unknown ({e}); keeping --max-links {max_links}");
            return max_links;
        }
    };
    let fit =
        usize::try_from(limit.saturating_sub(SPARE_FILES) / files_per_link).unwrap_or(usize::MAX);
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

    /// A listener on loopback, and connections to it from chosen loopback addresses:
    /// the service's end of each (what `admit` sees) and the peer's.
    struct Loopback {
        listener: crate::transport::Listener,
        target: std::net::SocketAddr,
    }

    impl Loopback {
        fn new() -> Self {
            let listener = Endpoint::Tcp("127.0.0.1:0".into()).bind().unwrap();
            let target = listener
                .local_endpoint()
                .unwrap()
                .to_string()
                .parse()
                .unwrap();
            Self { listener, target }
        }

        /// A connection from 127.0.0.`host`: (the service's end, the peer's end).
        fn connection_from(&self, host: u8) -> (Stream, std::net::TcpStream) {
            use socket2::{Domain, Socket, Type};
            let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
            let from = std::net::SocketAddr::from(([127, 0, 0, host], 0));
            socket.bind(&from.into()).unwrap();
            socket.connect(&self.target.into()).unwrap();
            (self.listener.accept().unwrap(), socket.into())
        }
    }

    /// Whether the service shut `peer`'s connection down (it reads the end of input).
    fn shut_down(peer: &mut std::net::TcpStream) -> bool {
        use std::io::Read as _;
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        matches!(peer.read(&mut [0u8; 16]), Ok(0))
    }

    const THROUGH: LinkTerms = LinkTerms {
        trust: crate::link::Trust::Plaintext,
        mode: h2msg::StreamMode::Seed,
    };

    /// Limits that only bound what a test looks at: no rate limit to speak of.
    fn admission(max_links: usize, max_handshakes: usize, per_peer: usize) -> Admission {
        Admission {
            max_links,
            max_handshakes,
            handshakes_per_peer: per_peer,
            handshake_rate: 1_000_000,
            handshake_burst: 1_000_000,
        }
    }

    #[test]
    fn the_registry_bounds_links_and_status_lists_them() {
        let net = Loopback::new();
        let links = LinkRegistry::with_admission(admission(2, 2, 2));
        let streams: Vec<_> = (0..3).map(|_| net.connection_from(1)).collect();
        let a = links.admit(&streams[0].0).unwrap();
        let b = links.admit(&streams[1].0).unwrap();
        a.up(THROUGH, Proto::Seed);
        b.up(THROUGH, Proto::Seed);
        // Both through their handshake: nothing may be displaced, the third is refused.
        assert_eq!(links.admit(&streams[2].0).unwrap_err(), Refusal::Full);
        a.publish(&IocomStats {
            received: 7,
            ..IocomStats::default()
        });
        let status = shell_reply(b"status", &links).unwrap();
        assert!(
            status.starts_with(
                "links: 2 of 2 (served 2, refused 1); handshakes: 0 of 2 (evicted 0, over \
                 the rate 0)\n"
            ),
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
        let net = Loopback::new();
        let links = LinkRegistry::new(10, 2);
        let streams: Vec<_> = (0..5).map(|_| net.connection_from(1)).collect();
        let first = links.admit(&streams[0].0).unwrap();
        let _second = links.admit(&streams[1].0).unwrap();
        assert_eq!(
            links.admit(&streams[2].0).unwrap_err(),
            Refusal::PeerHandshaking
        );
        // Another address is not held back by this one's.
        let other = net.connection_from(2);
        assert!(links.admit(&other.0).is_ok());
        // Once one of them is through its handshake, the address may start another.
        first.up(THROUGH, Proto::Seed);
        assert!(links.admit(&streams[3].0).is_ok());
        assert!(links.status().contains("refused 1)"));
    }

    #[test]
    fn a_full_handshake_budget_displaces_the_oldest_unfinished_handshake() {
        let net = Loopback::new();
        let links = LinkRegistry::with_admission(admission(10, 2, 10));
        let mut conns: Vec<_> = (0..4).map(|_| net.connection_from(1)).collect();
        let a = links.admit(&conns[0].0).unwrap();
        let b = links.admit(&conns[1].0).unwrap();
        // The budget is full: the third takes the place of the oldest, `a`.
        let c = links.admit(&conns[2].0).unwrap();
        assert!(a.was_evicted());
        assert!(shut_down(&mut conns[0].1));
        assert!(!b.was_evicted() && !c.was_evicted());
        assert_eq!(links.len(), 2);
        // Then `b`, now the oldest; `c` stays.
        let d = links.admit(&conns[3].0).unwrap();
        assert!(b.was_evicted() && !c.was_evicted() && !d.was_evicted());
        assert!(shut_down(&mut conns[1].1));
        let status = links.status();
        assert!(
            status.contains("(served 4, refused 0); handshakes: 2 of 2 (evicted 2,"),
            "{status}"
        );
        assert!(
            !status.contains("#1 ") && !status.contains("#2 "),
            "{status}"
        );
        // A displaced slot going away later leaves the others alone.
        drop(a);
        assert_eq!(links.len(), 2);
    }

    #[test]
    fn links_through_their_handshake_are_never_displaced() {
        let net = Loopback::new();
        let links = LinkRegistry::with_admission(admission(3, 3, 10));
        let conns: Vec<_> = (0..5).map(|_| net.connection_from(1)).collect();
        let a = links.admit(&conns[0].0).unwrap();
        let b = links.admit(&conns[1].0).unwrap();
        let c = links.admit(&conns[2].0).unwrap();
        a.up(THROUGH, Proto::Seed);
        b.up(THROUGH, Proto::Seed);
        // Every slot is taken: the newcomer displaces the one unfinished handshake.
        let d = links.admit(&conns[3].0).unwrap();
        assert!(c.was_evicted());
        assert!(!a.was_evicted() && !b.was_evicted() && !d.was_evicted());
        d.up(THROUGH, Proto::Seed);
        // All through their handshake: refused, nobody displaced.
        assert_eq!(links.admit(&conns[4].0).unwrap_err(), Refusal::Full);
        assert!(!a.was_evicted() && !b.was_evicted() && !d.was_evicted());
        assert_eq!(links.len(), 3);
    }

    #[test]
    fn the_handshake_budget_is_a_quarter_of_the_links_by_default() {
        assert_eq!(default_max_handshakes(1024), 256);
        assert_eq!(default_max_handshakes(200), 50);
        assert_eq!(default_max_handshakes(3), 1);
        assert_eq!(default_max_handshakes(1), 1);
        // Never more than the links, whatever was asked.
        let links = LinkRegistry::with_admission(admission(2, 50, 10));
        assert!(links.status().contains("handshakes: 0 of 2 "));
    }

    #[test]
    fn the_token_bucket_refills_at_its_rate_up_to_its_burst() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut bucket = TokenBucket::new(10, 3);
        // Full at first: the burst, then nothing.
        assert!((0..3).all(|_| bucket.take(t0, 0)));
        assert!(!bucket.take(t0, 0));
        // One token every 100 ms at 10 a second.
        assert!(!bucket.take(ms(99), 0));
        assert!(bucket.take(ms(100), 0));
        assert!(!bucket.take(ms(100), 0));
        // A clock that goes back refills nothing, and later times count from the latest.
        assert!(!bucket.take(ms(50), 0));
        assert!(bucket.take(ms(200), 0));
        // Never more than the burst, however long the quiet.
        let hours = t0 + Duration::from_secs(7200);
        assert!((0..3).all(|_| bucket.take(hours, 0)));
        assert!(!bucket.take(hours, 0));
        // `keep` leaves that many tokens for others.
        let mut bucket = TokenBucket::new(10, 3);
        assert!(bucket.take(t0, 2));
        assert!(!bucket.take(t0, 2));
        assert!(bucket.take(t0, 0) && bucket.take(t0, 0));
    }

    #[test]
    fn past_the_rate_connections_are_refused_and_counted() {
        let net = Loopback::new();
        let links = LinkRegistry::with_admission(Admission {
            handshake_rate: 10,
            handshake_burst: 2,
            ..admission(100, 100, 100)
        });
        let t0 = Instant::now();
        // Each from its own address, in good standing: the whole burst is theirs.
        let conns: Vec<_> = (2..6).map(|host| net.connection_from(host)).collect();
        let _a = links.admit_at(&conns[0].0, t0).unwrap();
        let _b = links.admit_at(&conns[1].0, t0).unwrap();
        assert_eq!(
            links.admit_at(&conns[2].0, t0).unwrap_err(),
            Refusal::RateLimited
        );
        // 100 ms later at 10 a second there is a token again.
        let _d = links
            .admit_at(&conns[3].0, t0 + Duration::from_millis(100))
            .unwrap();
        let status = links.status();
        assert!(status.contains("(served 3, refused 1)"), "{status}");
        assert!(status.contains("over the rate 1)"), "{status}");
    }

    #[test]
    fn half_the_burst_is_kept_for_addresses_in_good_standing() {
        let net = Loopback::new();
        let links = LinkRegistry::with_admission(Admission {
            handshake_rate: 1,
            handshake_burst: 6,
            ..admission(100, 100, 100)
        });
        let t0 = Instant::now();
        // 127.0.0.4 fails a handshake (its slot goes away unfinished): 5 tokens left.
        let failing = net.connection_from(4);
        drop(links.admit_at(&failing.0, t0).unwrap());
        // 127.0.0.2's first handshake may take any token (4 left); with one under way,
        // its next ones leave the last three, half the burst (3 left, then refused).
        let busy: Vec<_> = (0..3).map(|_| net.connection_from(2)).collect();
        let _first = links.admit_at(&busy[0].0, t0).unwrap();
        let _second = links.admit_at(&busy[1].0, t0).unwrap();
        assert_eq!(
            links.admit_at(&busy[2].0, t0).unwrap_err(),
            Refusal::RateLimited
        );
        // So is the address that failed lately, although it has nothing under way.
        let again = net.connection_from(4);
        assert_eq!(
            links.admit_at(&again.0, t0).unwrap_err(),
            Refusal::RateLimited
        );
        // A newcomer still gets in, on the reserve.
        let newcomer = net.connection_from(3);
        assert!(links.admit_at(&newcomer.0, t0).is_ok());
        // Once its failure is old enough, the address is in good standing again. (It was
        // noted at the real time of the drop, a little after `t0`.)
        let later = t0 + FAILED_MEMORY + Duration::from_secs(1);
        assert!(!links.lock().failed_lately(again.0.peer_ip().ok(), later));
        assert!(links.admit_at(&again.0, later).is_ok());
    }

    #[test]
    fn handshakes_from_addresses_that_failed_lately_are_displaced_first() {
        let net = Loopback::new();
        let links = LinkRegistry::with_admission(admission(10, 2, 10));
        let t0 = Instant::now();
        // 127.0.0.2 fails one handshake (its slot goes away unfinished).
        let failed = net.connection_from(2);
        drop(links.admit_at(&failed.0, t0).unwrap());
        // A good peer's handshake, then a newer one from the failing address.
        let good_conn = net.connection_from(3);
        let good = links.admit_at(&good_conn.0, t0).unwrap();
        let suspect_conn = net.connection_from(2);
        let suspect = links.admit_at(&suspect_conn.0, t0).unwrap();
        // The budget is full: the failing address's handshake goes, though it is newer.
        let newcomer = net.connection_from(4);
        let _new = links.admit_at(&newcomer.0, t0).unwrap();
        assert!(suspect.was_evicted());
        assert!(!good.was_evicted());
        // A completed handshake clears its address.
        let proven_conn = net.connection_from(2);
        let proven = links.admit_at(&proven_conn.0, t0).unwrap();
        assert!(
            good.was_evicted(),
            "the oldest, with no failed address left to displace"
        );
        proven.up(THROUGH, Proto::Seed);
        assert!(!links.lock().failed_lately(proven_conn.0.peer_ip().ok(), t0));
    }
}
