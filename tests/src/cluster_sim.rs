//! The two-connection simulator grown to N cluster nodes (dmsg.md 5): each node is a
//! [`Cluster`] with its own `rself`, each link a pair of real [`DmsgIocom`]s (plaintext,
//! as [`SimDmsg`](crate::sim::SimDmsg) is built) joined by two [`Wire`]s on one virtual
//! clock, optionally through a seeded [`FaultInjector`] (delays, corruption).
//!
//! The glue per node is what a service does (dmsg.md 5.2, 5.6): on link up each end opens
//! its `LNK_CONN`; every delivered message goes through [`SpanInput::of`] into
//! [`Cluster::input`]; a refused span is closed with [`refuse_span`]; `LinkDown` becomes
//! [`Cluster::link_down`]; the cluster's actions wait in a queue per connection and go out
//! with [`send_action`] while the transmit ring has room (a close without msgid cancels
//! the open still queued for it).
//!
//! Routed transactions (docs/dmsg.md 5.8) go through the same glue as the service's:
//! every other element is given to [`Cluster::route`]; a forwarded one waits in the queue
//! of the twin's link end and goes out as `forward_one` sends it (open under the span →
//! [`Cluster::twin_opened`], else [`Cluster::twin_key`] → [`Cluster::twin_forwarded`]); one
//! for a registration of the node is answered by the node ([`ClusterSim::request`]'s
//! application command, or `LNK_SEQREQ` → [`Cluster::bump`]); a refused one is closed
//! with 0x22.
//!
//! Every hop takes [`ClusterSim::latency`] of virtual time, so the time to converge is the
//! longest chain of messages that caused one another, in hops.
//!
//! [`ClusterSim::check_converged`] compares the quiescent state with an independent
//! breadth-first search over the links that are up.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt::Write as _;
use std::num::NonZeroU32;
use std::time::Duration;

use h2msg::cluster::{
    Action, Cluster, ConnId, Heap, Limits, Registration, Route, SpanInput, TwinId, Via,
    refuse_span, send_action,
};
use h2msg::rand_core::TryRng;
use h2msg::trans::{DmsgKey, Received, Side};
use h2msg::wire::{
    Cmd, DMSG_ERR_IO, DMSG_ERR_LOSTLINK, DMSG_ERR_NOSUPP, DMSG_SPAN_MAXDIST, DMSG_SPAN_PROTO_1,
    LnkConn, LnkSpan, MsgFlags, PeerType, SoftCrc32c, Uuid, WireOrder,
};
use h2msg::{Config, DmsgEvent, DmsgIocom, Instant, IocomMemory, LinkSetup, Liveness};

use crate::TestRng;
use crate::sim::{FaultInjector, Faults, SIM_TRANSACTIONS, Salts, Wire};

/// One end of a simulated cluster link: a DMSG connection with `T` transactions a side.
pub type ClusterIo<const T: usize> = DmsgIocom<Vec<u8>, Salts, SoftCrc32c, T>;

/// Transmit ring of every connection: a few dozen spans; the rest wait in the queue.
const TX_RING: usize = 32 * 1024;
/// Room kept free in the ring before another action goes out: one span (448 bytes) and
/// the header-only answers the connection gives by itself.
const TX_RESERVE: usize = 1024;
/// Busy passes at one instant before the simulator calls it a livelock.
const PASS_LIMIT: u64 = 100_000;

/// What a node says in its `LNK_CONN` and what it registers.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    /// Its `LNK_CONN` payload: the filter its peers apply to what they send it.
    pub conn: LnkConn,
    /// Its one registration (`None`: it registers nothing).
    pub registration: Option<LnkSpan>,
}

impl NodeSpec {
    /// A service as libdmsg's (dmsg.md 5.6): ROUTER, every span type wanted, registering
    /// one HAMMER2 node `label` in cluster "sim".
    pub fn router(label: &str) -> Self {
        Self::new(PeerType::ROUTER, u64::MAX, Some((PeerType::HAMMER2, label)))
    }

    /// A node that says it is `conn_type` with `mask` and registers a span of
    /// `registration`'s type and label, if any.
    pub fn new(conn_type: PeerType, mask: u64, registration: Option<(PeerType, &str)>) -> Self {
        let mut conn = LnkConn::new();
        conn.set_peer_type(conn_type);
        conn.set_peer_mask(mask, WireOrder::Little);
        conn.set_proto_version(DMSG_SPAN_PROTO_1, WireOrder::Little);
        conn.set_peer_label(b"sim").expect("short label");
        Self {
            conn,
            registration: registration.map(|(t, label)| span(t, label)),
        }
    }

    /// The label of its registration.
    pub fn label(&self) -> Option<&[u8]> {
        self.registration.as_ref().map(LnkSpan::pfs_label)
    }
}

/// A registration payload: node `label` of type `peer_type` in cluster "sim".
pub fn span(peer_type: PeerType, label: &str) -> LnkSpan {
    let mut s = LnkSpan::new();
    s.set_peer_type(peer_type);
    s.set_proto_version(DMSG_SPAN_PROTO_1, WireOrder::Little);
    s.set_peer_label(b"sim").expect("short label");
    s.set_pfs_label(label.as_bytes()).expect("short label");
    s
}

/// Whether a conn whose peer sent `filter` is to be sent a span like `span`, by the
/// filters of dmsg.md 5.4 step 2b (the `dist` and split-horizon rules apart). Written
/// from the text, not from the cluster's code.
pub fn filter_passes(filter: &LnkConn, span: &LnkSpan) -> bool {
    let t = span.peer_type().0;
    let wanted = t < 64 && filter.peer_mask(WireOrder::Little) & (1u64 << t) != 0;
    let client = PeerType::CLIENT;
    let conn_is_client = filter.peer_type() == client;
    wanted
        && !(conn_is_client && span.peer_type() == client)
        && !(conn_is_client && !filter.peer_id.is_nil() && filter.peer_id != span.peer_id)
}

/// A simulated cluster node.
pub struct SimNode {
    /// Its view of the spanning tree.
    pub cluster: Cluster<Heap>,
    /// What it says and registers.
    pub spec: NodeSpec,
    /// Its `rself` (D16), drawn from the simulator's seeded generator.
    pub rself: NonZeroU32,
    /// False while crashed.
    pub alive: bool,
    registration: Option<Registration>,
}

/// The application command of [`ClusterSim::request`]: the requester opens it (aux
/// `req <index>`), the responder answers with one reply element carrying its label and
/// keeps its half open until the requester closes.
pub const REQUEST: Cmd = match Cmd::app(1) {
    Some(cmd) => cmd,
    None => Cmd::LNK_PAD,
};

/// A routed request between two nodes ([`ClusterSim::request`]) and how each end saw it.
#[derive(Clone, Debug, Default)]
pub struct Routed {
    /// The requesting node.
    pub from: usize,
    /// The node whose registration it was opened toward.
    pub to: usize,
    /// The requester's connection and its key there.
    pub conn: ConnId,
    key: Option<DmsgKey>,
    /// The links the open crossed, the requester's first (recorded as nodes forward it).
    pub hops: Vec<ConnId>,
    /// The node that answered it (its index), once it did.
    pub responder: Option<usize>,
    /// The reply element's aux (the responder's label).
    pub answer: Option<Vec<u8>>,
    /// The error of the DELETE that ended the requester's half (0x21 also for the
    /// connection's own simulated LOSTLINK), once it came.
    pub requester_end: Option<u32>,
    /// The same at the responder.
    pub responder_end: Option<u32>,
}

/// An element of a routed transaction copied for the twin's link (as the service's
/// `Forwarded`).
#[derive(Clone, Debug)]
struct Forwarded {
    twin: TwinId,
    open_under: Option<DmsgKey>,
    cmd: Cmd,
    error: u32,
    ext: Vec<u8>,
    aux: Vec<u8>,
}

/// What a link end is to send.
#[derive(Clone, Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "span opens dominate the queues, as in the service's mailboxes"
)]
enum Work {
    Cluster(Action),
    Forward(ConnId, Box<Forwarded>),
}

impl Work {
    const fn conn(&self) -> ConnId {
        match self {
            Self::Cluster(a) => a.conn(),
            Self::Forward(to, _) => *to,
        }
    }
}

/// One end of a link.
struct End<const T: usize> {
    node: usize,
    /// `None` once the node crashed: a dead process neither reads nor writes.
    io: Option<Box<ClusterIo<T>>>,
    /// Actions and forwarded elements waiting for transmit room, oldest first.
    queue: VecDeque<Work>,
    /// `LinkDown` was seen and given to the cluster.
    down: bool,
    /// Messages counted so far from the connection's own counter.
    counted: u64,
}

/// A link: two ends, the wire from each, and its fault injector.
struct SimLink<const T: usize> {
    ends: [End<T>; 2],
    /// `wires[i]` carries what `ends[i]` writes.
    wires: [Wire; 2],
    faults: Option<FaultInjector>,
}

/// What a run cost, from its start to quiescence.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cost {
    /// Every DMSG message queued by a connection (spans, closes, results and answers).
    pub messages: u64,
    /// `LNK_SPAN` opens sent for the clusters.
    pub span_opens: u64,
    /// Span closes sent for the clusters.
    pub span_closes: u64,
    /// Virtual time from the start to the last delivery.
    pub time: Duration,
}

/// Counters over the whole life of a simulator.
#[derive(Clone, Copy, Debug, Default)]
struct Totals {
    messages: u64,
    span_opens: u64,
    span_closes: u64,
}

/// N cluster nodes and the links between them, on a virtual clock.
pub struct ClusterSim<const T: usize = SIM_TRANSACTIONS> {
    /// The nodes, by index.
    pub nodes: Vec<SimNode>,
    links: BTreeMap<ConnId, SimLink<T>>,
    /// The virtual clock.
    pub now: Instant,
    /// Time one hop takes.
    pub latency: Duration,
    /// Faults for links made from now on (each link gets its own seed from this one's).
    pub faults: Option<Faults>,
    rng: TestRng,
    next_conn: ConnId,
    totals: Totals,
    /// Inputs the cluster refused that a correct peer never causes.
    pub unexpected: Vec<String>,
    /// Spans refused for want of room (closed toward their sender).
    pub refused: u64,
    /// Routed requests opened with [`request`](Self::request), by index.
    pub routed: Vec<Routed>,
    /// (node, its conn, key) → (request, whether that half is the requester's).
    halves: HashMap<(usize, ConnId, DmsgKey), (usize, bool)>,
    /// Routed transactions refused with 0x22 (twin table full).
    pub routes_refused: u64,
    /// Every node's loop guard is on.
    pub guard: bool,
}

/// Tables large enough that nothing is refused in the simulated graphs; they grow only
/// as they fill.
const LIMITS: Limits = Limits {
    conns: 1024,
    nodes: 1 << 16,
    links: 1 << 20,
    relays: 1 << 20,
    payloads: 1 << 20,
    twins: 1 << 20,
};

impl<const T: usize> ClusterSim<T> {
    /// Nodes as `specs` say, unconnected; `seed` draws every `rself` and every link's
    /// fault seed. Each node registers its registration at once (no conn hears it yet).
    pub fn new(specs: Vec<NodeSpec>, seed: u64) -> Self {
        Self::with_guard(specs, seed, false)
    }

    /// [`new`](Self::new), with every node's loop guard (docs/dmsg.md 5.9) on if `guard`
    /// (also after a rejoin).
    pub fn with_guard(specs: Vec<NodeSpec>, seed: u64, guard: bool) -> Self {
        let mut sim = Self {
            nodes: Vec::with_capacity(specs.len()),
            links: BTreeMap::new(),
            now: Instant::ZERO,
            latency: Duration::from_millis(1),
            faults: None,
            rng: TestRng(seed),
            next_conn: 1,
            totals: Totals::default(),
            unexpected: Vec::new(),
            refused: 0,
            routed: Vec::new(),
            halves: HashMap::new(),
            routes_refused: 0,
            guard,
        };
        for spec in specs {
            let rself = sim.draw_rself();
            sim.nodes.push(SimNode {
                cluster: new_cluster(rself, guard),
                spec,
                rself,
                alive: true,
                registration: None,
            });
            sim.register(sim.nodes.len() - 1);
        }
        sim
    }

    /// `n` routers labelled `node-0`, `node-1`, …
    pub fn routers(n: usize, seed: u64) -> Self {
        Self::new(
            (0..n)
                .map(|i| NodeSpec::router(&format!("node-{i}")))
                .collect(),
            seed,
        )
    }

    /// The node registering `label`.
    pub fn node_labelled(&self, label: &[u8]) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| n.spec.label() == Some(label))
    }

    fn next_u64(&mut self) -> u64 {
        match self.rng.try_next_u64() {
            Ok(v) => v,
            Err(never) => match never {},
        }
    }

    /// A value in `0..n` from the simulator's generator (for tests' random choices).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    fn draw_rself(&mut self) -> NonZeroU32 {
        loop {
            if let Some(r) = NonZeroU32::new(self.next_u64() as u32) {
                return r;
            }
        }
    }

    fn register(&mut self, node: usize) {
        let n = &mut self.nodes[node];
        if let Some(span) = n.spec.registration {
            // No conn yet: nothing to send.
            let reg = n
                .cluster
                .register(&span, &mut |a| panic!("an action without conns: {a:?}"))
                .expect("room for one registration");
            n.registration = Some(reg);
        }
    }

    // ----- topology ---------------------------------------------------------------------

    /// Links `a` and `b`: a new connection, each end opening its `LNK_CONN` first. Returns
    /// the link's id, which both nodes use as its `ConnId`.
    pub fn connect(&mut self, a: usize, b: usize) -> ConnId {
        assert!(a != b && self.nodes[a].alive && self.nodes[b].alive);
        let id = self.next_conn;
        self.next_conn += 1;
        let faults = self.faults.clone().map(|mut f| {
            f.seed = self.next_u64();
            FaultInjector::new(f)
        });
        let end = |sim: &Self, node: usize| {
            let mut io = Box::new(new_io::<T>());
            io.open(
                Cmd::DMSG_LNK_CONN,
                None,
                sim.nodes[node].spec.conn.as_ext(),
                &[],
            )
            .expect("room for LNK_CONN");
            End {
                node,
                io: Some(io),
                queue: VecDeque::new(),
                down: false,
                counted: 0,
            }
        };
        let link = SimLink {
            ends: [end(self, a), end(self, b)],
            wires: [Wire::default(), Wire::default()],
            faults,
        };
        self.links.insert(id, link);
        id
    }

    /// The link between `a` and `b` that is up, if any.
    pub fn link_between(&self, a: usize, b: usize) -> Option<ConnId> {
        self.links
            .iter()
            .find(|(_, l)| {
                !l.is_cut()
                    && ((l.ends[0].node, l.ends[1].node) == (a, b)
                        || (l.ends[0].node, l.ends[1].node) == (b, a))
            })
            .map(|(&id, _)| id)
    }

    /// Every link that is up: (its id, one node, the other).
    pub fn links_up(&self) -> Vec<(ConnId, usize, usize)> {
        self.links
            .iter()
            .filter(|(_, l)| !l.is_cut())
            .map(|(&id, l)| (id, l.ends[0].node, l.ends[1].node))
            .collect()
    }

    /// Loses link `id` as a failed socket does: both ends' transports fail and what was in
    /// flight is gone. Each end reports `LinkDown` and its node withdraws what came on it.
    pub fn cut(&mut self, id: ConnId) {
        let link = self.links.get_mut(&id).expect("a link");
        if link.is_cut() {
            return;
        }
        for end in &mut link.ends {
            if let Some(io) = end.io.as_mut() {
                io.transport_failed();
            }
        }
        for wire in &mut link.wires {
            wire.clear();
            wire.cut = true;
        }
    }

    /// Crashes `node`: its process and memory are gone, every link of it is lost (also
    /// one cut already whose loss it has not handled yet: a dead process handles nothing).
    pub fn crash(&mut self, node: usize) {
        let ids: Vec<ConnId> = self
            .links
            .iter()
            .filter(|(_, l)| l.ends.iter().any(|e| e.node == node))
            .map(|(&id, _)| id)
            .collect();
        for id in ids {
            self.cut(id);
            let link = self.links.get_mut(&id).expect("a link");
            for end in &mut link.ends {
                if end.node == node {
                    end.io = None;
                    end.queue.clear();
                    end.down = true;
                }
            }
        }
        self.nodes[node].alive = false;
    }

    /// Restarts crashed `node` with a fresh cluster (a new `rself`, its registration again)
    /// and links it to `neighbours`.
    pub fn rejoin(&mut self, node: usize, neighbours: &[usize]) {
        assert!(!self.nodes[node].alive);
        let rself = self.draw_rself();
        let n = &mut self.nodes[node];
        n.cluster = new_cluster(rself, self.guard);
        n.rself = rself;
        n.alive = true;
        n.registration = None;
        self.register(node);
        for &b in neighbours {
            if self.nodes[b].alive {
                self.connect(node, b);
            }
        }
    }

    /// The links of `node` that are not cut.
    pub fn conns_of(&self, node: usize) -> Vec<ConnId> {
        self.links
            .iter()
            .filter(|(_, l)| !l.is_cut() && l.ends.iter().any(|e| e.node == node))
            .map(|(&id, _)| id)
            .collect()
    }

    // ----- routed transactions (docs/dmsg.md 5.8) ---------------------------------------

    /// Opens a [`REQUEST`] at `from` toward node `to`'s registration, under the span
    /// [`Cluster::route_to`] names; returns its index in [`routed`](Self::routed), or
    /// `None` if `from` has no route to `to` (or is `to`).
    pub fn request(&mut self, from: usize, to: usize) -> Option<usize> {
        let label = self.nodes[to].spec.label()?.to_vec();
        let (via, msgid) = self.nodes[from]
            .cluster
            .route_to(|s| s.pfs_label() == label.as_slice())?;
        let Via::Conn(conn) = via else {
            return None;
        };
        let index = self.routed.len();
        let end = self
            .links
            .get_mut(&conn)?
            .ends
            .iter_mut()
            .find(|e| e.node == from)?;
        let io = end.io.as_mut()?;
        let aux = format!("req {index}\0");
        let sent = io
            .open(REQUEST, Some(DmsgKey::theirs(msgid)), &[], aux.as_bytes())
            .ok()?;
        let key = DmsgKey::ours(sent.msgid);
        self.halves.insert((from, conn, key), (index, true));
        self.routed.push(Routed {
            from,
            to,
            conn,
            key: Some(key),
            hops: vec![conn],
            ..Routed::default()
        });
        Some(index)
    }

    /// The requester of request `index` closes its half (DELETE, error 0); the responder
    /// answers with its own DELETE when it arrives. False if the requester's half had
    /// ended already or its link is gone.
    pub fn finish(&mut self, index: usize) -> bool {
        let r = &self.routed[index];
        let (from, conn, key) = (r.from, r.conn, r.key);
        let Some(key) = key else {
            return false;
        };
        self.links
            .get_mut(&conn)
            .and_then(|l| l.ends.iter_mut().find(|e| e.node == from))
            .and_then(|e| e.io.as_mut())
            .is_some_and(|io| io.answer(key, true, 0).is_ok())
    }

    /// Routed transactions passing through the live nodes ([`Cluster::twins`]), summed.
    pub fn twins(&self) -> usize {
        self.nodes
            .iter()
            .filter(|n| n.alive)
            .map(|n| n.cluster.twins())
            .sum()
    }

    // ----- running ----------------------------------------------------------------------

    /// Runs until nothing moves and nothing is in flight; returns what it cost.
    pub fn run(&mut self) -> Cost {
        self.run_watching(|_| false).0
    }

    /// [`run`](Self::run), and the first instant after which `done` holds (checked each
    /// time the clock is about to move, and at the end).
    pub fn run_watching(&mut self, mut done: impl FnMut(&Self) -> bool) -> (Cost, Option<Cost>) {
        let start = self.now;
        let before = self.totals;
        let mut reached = None;
        loop {
            self.settle();
            if reached.is_none() && done(self) {
                reached = Some(self.cost_since(start, before));
            }
            match self.next_arrival() {
                Some(t) => self.now = t,
                None => break,
            }
        }
        self.links.retain(|_, l| !l.ends.iter().all(|e| e.down));
        (self.cost_since(start, before), reached)
    }

    fn cost_since(&self, start: Instant, before: Totals) -> Cost {
        Cost {
            messages: self.totals.messages - before.messages,
            span_opens: self.totals.span_opens - before.span_opens,
            span_closes: self.totals.span_closes - before.span_closes,
            time: self.now.saturating_since(start),
        }
    }

    fn next_arrival(&self) -> Option<Instant> {
        self.links
            .values()
            .flat_map(|l| l.wires.iter())
            .filter_map(|w| w.next_arrival(self.now))
            .min()
    }

    /// Passes over every end at the current instant until none moves.
    fn settle(&mut self) {
        let ids: Vec<ConnId> = self.links.keys().copied().collect();
        let mut passes = 0;
        loop {
            let mut moved = 0;
            for &id in &ids {
                for side in 0..2 {
                    moved += self.serve_end(id, side);
                }
            }
            if moved == 0 {
                return;
            }
            passes += 1;
            assert!(passes < PASS_LIMIT, "no quiescence at {}", self.now);
        }
    }

    /// One end at the current instant: read what arrived, handle its events, send its
    /// queued actions while there is room, write its bytes. Returns how much moved.
    fn serve_end(&mut self, id: ConnId, side: usize) -> usize {
        let now = self.now;
        let latency = self.latency;
        let Some(link) = self.links.get_mut(&id) else {
            return 0;
        };
        let mut moved = 0;
        let mut actions = Vec::new();
        let node_index = link.ends[side].node;
        loop {
            let SimLink { ends, wires, .. } = &mut *link;
            let end = &mut ends[side];
            let Some(io) = end.io.as_mut() else {
                return moved;
            };
            if end.down {
                break;
            }
            io.handle_timeout(now);
            let fed = wires[1 - side].deliver(now, usize::MAX, |bytes| io.feed(bytes));
            let mut glue = Glue {
                node: node_index,
                conn: id,
                sim_node: &mut self.nodes[node_index],
                work: &mut actions,
                down: &mut end.down,
                unexpected: &mut self.unexpected,
                refused: &mut self.refused,
                routed: &mut self.routed,
                halves: &mut self.halves,
                routes_refused: &mut self.routes_refused,
            };
            let events = handle_events(io, &mut glue);
            if end.down {
                // A connection that failed by itself (a corrupted frame) closes its
                // socket: the peer's transport fails too.
                end.queue.clear();
                if let Some(peer) = ends[1 - side].io.as_mut() {
                    peer.transport_failed();
                }
                for wire in wires.iter_mut() {
                    wire.clear();
                    wire.cut = true;
                }
            }
            moved += fed + events;
            if fed + events == 0 {
                break;
            }
        }
        // Actions for other connections of this node, and this one's.
        self.enqueue(node_index, actions);
        moved += self.send_queued(id, side, now, latency);
        moved
    }

    /// Puts `node`'s work in its connections' queues; a close of a relay whose open is
    /// still queued takes the open back instead, and a termination of a twin whose open
    /// is still queued takes back what was queued for it (as the service's hub does).
    fn enqueue(&mut self, node: usize, work: Vec<Work>) {
        for w in work {
            let id = w.conn();
            let link = self.links.get_mut(&id);
            let end = link.and_then(|l| l.ends.iter_mut().find(|e| e.node == node));
            let action = match w {
                Work::Forward(..) => {
                    // A link gone (or going): its link_down ends the twin.
                    if let Some(end) = end.filter(|e| !e.down) {
                        end.queue.push_back(w);
                    }
                    continue;
                }
                Work::Cluster(action) => action,
            };
            let Some(end) = end else {
                self.unexpected
                    .push(format!("node {node}: action for unknown conn: {action:?}"));
                continue;
            };
            if end.down {
                self.unexpected
                    .push(format!("node {node}: action for a lost conn: {action:?}"));
                continue;
            }
            match action {
                Action::CloseSpan {
                    relay, msgid: None, ..
                } => {
                    let queued = end.queue.iter().position(|w| {
                        matches!(w, Work::Cluster(Action::OpenSpan { relay: r, .. }) if *r == relay)
                    });
                    match queued {
                        Some(at) => {
                            end.queue.remove(at);
                        }
                        None => self.unexpected.push(format!(
                            "node {node}: close without msgid, no open queued: {action:?}"
                        )),
                    }
                }
                Action::Terminate {
                    twin, key: None, ..
                } => end
                    .queue
                    .retain(|w| !matches!(w, Work::Forward(_, f) if f.twin == twin)),
                action => end.queue.push_back(Work::Cluster(action)),
            }
        }
    }

    /// Sends end `side`'s queued actions while its ring has room, and writes its bytes on
    /// the wire (arriving one latency later). Returns how much moved.
    fn send_queued(&mut self, id: ConnId, side: usize, now: Instant, latency: Duration) -> usize {
        let Some(link) = self.links.get_mut(&id) else {
            return 0;
        };
        let SimLink {
            ends,
            wires,
            faults,
        } = link;
        let end = &mut ends[side];
        let Some(io) = end.io.as_mut() else {
            return 0;
        };
        let node = end.node;
        let cluster = &mut self.nodes[node].cluster;
        let mut moved = 0;
        let mut made = Vec::new();
        loop {
            let mut sent = 0;
            while let Some(work) = end.queue.front() {
                if end.down || TX_RING - pending_len(io) < TX_RESERVE {
                    break;
                }
                // A new span or twin needs a transaction slot of ours: wait for the peer
                // to answer the closes in flight rather than fail it.
                let opens = matches!(
                    work,
                    Work::Cluster(Action::OpenSpan { .. } | Action::RequestSeqno { .. })
                ) || matches!(work, Work::Forward(_, f) if f.open_under.is_some());
                if opens && ours_open(io) >= T {
                    break;
                }
                match work {
                    Work::Cluster(action) => {
                        match action {
                            Action::OpenSpan { .. } => self.totals.span_opens += 1,
                            Action::CloseSpan { .. } => self.totals.span_closes += 1,
                            Action::Terminate { .. } | Action::RequestSeqno { .. } => {}
                        }
                        send_action(io, cluster, action);
                    }
                    Work::Forward(_, f) => forward_one(io, cluster, id, f, &mut made),
                }
                end.queue.pop_front();
                sent += 1;
            }
            let stats = io.stats().sent;
            self.totals.messages += stats - end.counted;
            end.counted = stats;
            let pending = pending_len(io);
            if pending > 0 && !wires[side].cut {
                let mut bytes = vec![0u8; pending];
                let n = io.copy_pending(&mut bytes);
                io.advance_write(n).expect("advance within pending");
                bytes.truncate(n);
                wires[side].push(now, latency, bytes, faults.as_mut());
            }
            moved += sent + pending;
            if sent + pending == 0 || end.queue.is_empty() {
                break;
            }
        }
        // A twin that could not be opened ends its other half.
        self.enqueue(node, made);
        moved
    }

    // ----- what the nodes know ----------------------------------------------------------

    /// Hop counts from `src` over the links that are up, between live nodes (BFS).
    pub fn bfs(&self, src: usize) -> Vec<Option<u32>> {
        let mut adj = vec![Vec::new(); self.nodes.len()];
        for (_, a, b) in self.links_up() {
            if self.nodes[a].alive && self.nodes[b].alive {
                adj[a].push(b);
                adj[b].push(a);
            }
        }
        let mut dist = vec![None; self.nodes.len()];
        if !self.nodes[src].alive {
            return dist;
        }
        dist[src] = Some(0);
        let mut queue = VecDeque::from([src]);
        while let Some(u) = queue.pop_front() {
            let d = dist[u].expect("queued nodes have a distance");
            for &v in &adj[u] {
                if dist[v].is_none() {
                    dist[v] = Some(d + 1);
                    queue.push_back(v);
                }
            }
        }
        dist
    }

    /// `node`'s entries for registration `label`: for each, its links as (via, dist, rnss),
    /// best first.
    pub fn entries(&self, node: usize, label: &[u8]) -> Vec<Vec<(Via, u32, u32)>> {
        self.nodes[node]
            .cluster
            .nodes()
            .filter(|n| n.span().pfs_label() == label)
            .map(|n| n.links().map(|l| (l.via(), l.dist(), l.rnss())).collect())
            .collect()
    }

    /// The labels `node` has an entry for.
    pub fn labels(&self, node: usize) -> BTreeSet<Vec<u8>> {
        self.nodes[node]
            .cluster
            .nodes()
            .map(|n| n.span().pfs_label().to_vec())
            .collect()
    }

    /// Each node's links that are up: (link id, the node at the other end).
    fn conns_by_node(&self) -> Vec<Vec<(ConnId, usize)>> {
        let mut conns = vec![Vec::new(); self.nodes.len()];
        for (id, a, b) in self.links_up() {
            conns[a].push((id, b));
            conns[b].push((id, a));
        }
        conns
    }

    /// The node at the other end of `node`'s link `id`.
    pub fn peer(&self, node: usize, id: ConnId) -> Option<usize> {
        let l = self.links.get(&id)?;
        l.ends.iter().find(|e| e.node != node).map(|e| e.node)
    }

    /// Quiescence and the relay invariants that hold whatever the filters: nothing queued
    /// or in flight; every relay on a live conn, with a msgid, from the best link of its
    /// node, never back on its source's conn, at most one per node and conn, and matched
    /// one to one by a received link at the peer with the same msgid, `dist` + 1 and
    /// `rnss` + our `rself`. Returns every violation found.
    pub fn relay_violations(&self) -> Vec<String> {
        let conns = self.conns_by_node();
        let mut bad = self.unexpected.clone();
        for (id, l) in &self.links {
            for (side, end) in l.ends.iter().enumerate() {
                if !end.queue.is_empty() {
                    bad.push(format!(
                        "link {id}: {} actions still queued",
                        end.queue.len()
                    ));
                }
                if l.wires[side].in_flight() > 0 {
                    bad.push(format!("link {id}: bytes in flight"));
                }
            }
        }
        for (u, n) in self.nodes.iter().enumerate() {
            if !n.alive {
                continue;
            }
            let stats = n.cluster.stats();
            if stats.relays_deferred + stats.relays_failed + stats.refused > 0 {
                bad.push(format!("node {u}: tables or queues too small: {stats:?}"));
            }
            let live: BTreeSet<ConnId> = conns[u].iter().map(|&(c, _)| c).collect();
            // (conn, msgid) -> (dist, rnss) of what we relay there.
            let mut sent: BTreeMap<(ConnId, u64), (u32, u32)> = BTreeMap::new();
            for node in n.cluster.nodes() {
                let label = String::from_utf8_lossy(node.span().pfs_label()).into_owned();
                let mut per_conn: BTreeMap<ConnId, usize> = BTreeMap::new();
                for (rank, link) in node.links().enumerate() {
                    for (conn, _, msgid) in link.relays() {
                        *per_conn.entry(conn).or_default() += 1;
                        if rank > 0 {
                            bad.push(format!("node {u} {label}: relay from a link not best"));
                        }
                        if link.via() == Via::Conn(conn) {
                            bad.push(format!("node {u} {label}: relay back on conn {conn}"));
                        }
                        if !live.contains(&conn) {
                            bad.push(format!("node {u} {label}: relay on dead conn {conn}"));
                        }
                        if link.dist() > DMSG_SPAN_MAXDIST {
                            bad.push(format!("node {u} {label}: relay of dist {}", link.dist()));
                        }
                        let Some(msgid) = msgid else {
                            bad.push(format!("node {u} {label}: relay never sent on {conn}"));
                            continue;
                        };
                        let value = (link.dist() + 1, link.rnss().wrapping_add(n.rself.get()));
                        sent.insert((conn, msgid), value);
                    }
                    if let Via::Conn(conn) = link.via()
                        && !live.contains(&conn)
                    {
                        bad.push(format!("node {u} {label}: link from dead conn {conn}"));
                    }
                }
                if let Some((conn, k)) = per_conn.iter().find(|(_, k)| **k > 1) {
                    bad.push(format!("node {u} {label}: {k} relays on conn {conn}"));
                }
            }
            // Each relay is a link at the peer, and the peer has nothing else from us.
            for &(conn, v) in &conns[u] {
                let mut received: BTreeMap<u64, (u32, u32)> = BTreeMap::new();
                for node in self.nodes[v].cluster.nodes() {
                    for link in node.links().filter(|l| l.via() == Via::Conn(conn)) {
                        received.insert(link.msgid(), (link.dist(), link.rnss()));
                    }
                }
                let ours: BTreeMap<u64, (u32, u32)> = sent
                    .range((conn, 0)..=(conn, u64::MAX))
                    .map(|(&(_, m), &x)| (m, x))
                    .collect();
                if ours != received {
                    bad.push(format!(
                        "conn {conn}: node {u} relays {} spans, node {v} holds {} from it \
                         (or msgids/dists differ)",
                        ours.len(),
                        received.len()
                    ));
                }
            }
        }
        bad
    }

    /// For a graph of routers: every live node has exactly one entry per registration of
    /// a live node within 17 hops, with its best link at the BFS hop count, and none for
    /// anything else; a relay on every conn the best link may go to (not back, `dist` at
    /// most 16, the peer's filter passes); and [`relay_violations`](Self::relay_violations)
    /// finds nothing. Panics with every violation (the first 20).
    pub fn check_converged(&self) {
        let conns = self.conns_by_node();
        let mut bad = self.relay_violations();
        let regs: Vec<(usize, Vec<u8>)> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.alive)
            .filter_map(|(i, n)| Some((i, n.spec.label()?.to_vec())))
            .collect();
        let mut expected: Vec<BTreeMap<Vec<u8>, u32>> = vec![BTreeMap::new(); self.nodes.len()];
        for (src, label) in &regs {
            for (u, d) in self.bfs(*src).into_iter().enumerate() {
                if let Some(d) = d.filter(|&d| d <= DMSG_SPAN_MAXDIST + 1) {
                    expected[u].insert(label.clone(), d);
                }
            }
        }
        for (u, n) in self.nodes.iter().enumerate() {
            if !n.alive {
                continue;
            }
            let mut seen: BTreeMap<Vec<u8>, u32> = BTreeMap::new();
            for node in n.cluster.nodes() {
                let label = node.span().pfs_label().to_vec();
                let best = node.links().next().map(|l| (l.dist(), l.via()));
                let Some((dist, via)) = best else {
                    bad.push(format!("node {u}: an entry without links"));
                    continue;
                };
                if seen.insert(label.clone(), dist).is_some() {
                    bad.push(format!("node {u}: two entries for {label:?}"));
                }
                // Where the best link may be relayed: every live conn but its own, if
                // near enough and the peer wants it.
                for &(conn, v) in &conns[u] {
                    let wanted = dist <= DMSG_SPAN_MAXDIST
                        && via != Via::Conn(conn)
                        && filter_passes(&self.nodes[v].spec.conn, node.span());
                    let relayed = node
                        .links()
                        .next()
                        .is_some_and(|l| l.relays().any(|(c, _, _)| c == conn));
                    if wanted != relayed {
                        bad.push(format!(
                            "node {u} {}: relayed on conn {conn} (to {v}): {relayed}, \
                             expected {wanted}",
                            String::from_utf8_lossy(&label)
                        ));
                    }
                }
            }
            if seen != expected[u] {
                let mut diff = String::new();
                for (label, d) in &expected[u] {
                    if seen.get(label) != Some(d) {
                        let _ = write!(
                            diff,
                            " {}: bfs {d}, has {:?};",
                            String::from_utf8_lossy(label),
                            seen.get(label)
                        );
                    }
                }
                for label in seen.keys().filter(|l| !expected[u].contains_key(*l)) {
                    let _ = write!(diff, " {} unreachable;", String::from_utf8_lossy(label));
                }
                bad.push(format!("node {u}:{diff}"));
            }
        }
        if self.guard {
            bad.extend(self.sequence_violations());
        }
        assert!(
            bad.is_empty(),
            "{} violations at {}:\n{}",
            bad.len(),
            self.now,
            bad.iter().take(20).cloned().collect::<Vec<_>>().join("\n")
        );
    }
}

impl<const T: usize> ClusterSim<T> {
    /// With the loop guard: each live node that registers holds one registration of its
    /// own (an old sequence is withdrawn once a new one is advertised), and every link of
    /// it anywhere carries its current route sequence.
    fn sequence_violations(&self) -> Vec<String> {
        let mut bad = Vec::new();
        for (x, n) in self.nodes.iter().enumerate().filter(|(_, n)| n.alive) {
            let Some(label) = n.spec.label() else {
                continue;
            };
            let own: Vec<u64> = n
                .cluster
                .nodes()
                .flat_map(|e| e.links().collect::<Vec<_>>())
                .filter(|l| l.via() == Via::Local)
                .map(|l| l.route_seq())
                .collect();
            let [seq] = own[..] else {
                bad.push(format!(
                    "node {x}: own registrations with sequences {own:?}"
                ));
                continue;
            };
            if seq == 0 {
                bad.push(format!("node {x}: its registration carries no sequence"));
            }
            for (u, m) in self.nodes.iter().enumerate().filter(|(_, m)| m.alive) {
                for e in m.cluster.nodes().filter(|e| e.span().pfs_label() == label) {
                    for l in e.links().filter(|l| l.route_seq() != seq) {
                        bad.push(format!(
                            "node {u}: a link to node-{x} with sequence {} (current {seq}, \
                             dist {})",
                            l.route_seq(),
                            l.dist()
                        ));
                    }
                }
            }
        }
        bad
    }
}

impl<const T: usize> SimLink<T> {
    fn is_cut(&self) -> bool {
        self.wires[0].cut
    }
}

fn new_cluster(rself: NonZeroU32, guard: bool) -> Cluster<Heap> {
    let mut cluster = Cluster::new(&Heap(LIMITS), rself);
    cluster.set_loop_guard(guard);
    cluster
}

/// Our transactions on `io` (open, or closed by us and waiting for the peer's DELETE).
fn ours_open<const T: usize>(io: &ClusterIo<T>) -> usize {
    io.transactions()
        .iter()
        .filter(|s| s.key().side == Side::Local)
        .count()
}

fn pending_len<const T: usize>(io: &ClusterIo<T>) -> usize {
    io.pending().iter().map(|s| s.len()).sum()
}

/// A plaintext DMSG connection for a cluster link, without keepalive: libdmsg never
/// pings (D11), and the simulator loses links explicitly.
fn new_io<const T: usize>() -> ClusterIo<T> {
    let memory = IocomMemory {
        fifo: vec![0u8; 16 * 1024],
        aux: vec![0u8; 1024],
        tx_ring: vec![0u8; TX_RING],
    };
    let config = Config {
        order: WireOrder::Little,
        liveness: Liveness::OFF,
    };
    DmsgIocom::new(
        LinkSetup::plaintext(),
        memory,
        Salts::scripted(&[]),
        SoftCrc32c,
        config,
    )
    .expect("the memory fits")
}

/// What one end's events may change besides its connection: its node and the
/// simulator's records.
struct Glue<'a> {
    node: usize,
    conn: ConnId,
    sim_node: &'a mut SimNode,
    work: &'a mut Vec<Work>,
    down: &'a mut bool,
    unexpected: &'a mut Vec<String>,
    refused: &'a mut u64,
    routed: &'a mut [Routed],
    halves: &'a mut HashMap<(usize, ConnId, DmsgKey), (usize, bool)>,
    routes_refused: &'a mut u64,
}

/// A delivered event, copied out of the connection's buffers.
#[allow(
    clippy::large_enum_variant,
    reason = "one at a time, on the stack: a span input carries its payload once"
)]
enum Got {
    Span(SpanInput),
    Element {
        key: DmsgKey,
        parent: Option<DmsgKey>,
        opened: bool,
        /// The element's command as received.
        cmd: Cmd,
        /// What a handler dispatches on (the first command with this element's flags).
        effective: Cmd,
        error: u32,
        ext: Vec<u8>,
        aux: Vec<u8>,
    },
    Lost(DmsgKey),
    Down,
    Other,
}

/// The index `req <index>` in a request's aux.
fn request_index(aux: &[u8]) -> Option<usize> {
    let text = aux.split(|&b| b == 0).next()?;
    std::str::from_utf8(text.strip_prefix(b"req ")?)
        .ok()?
        .parse()
        .ok()
}

/// Hands every pending event of `io` (connection `glue.conn`) to the node, as a service
/// does (dmsg.md 5.2, 5.5, docs/dmsg.md 5.8). Returns how many events there were.
fn handle_events<const T: usize>(io: &mut ClusterIo<T>, g: &mut Glue<'_>) -> usize {
    let mut count = 0;
    loop {
        let got = match io.poll_event() {
            None => break,
            Some(DmsgEvent::Message { msg, received }) => match SpanInput::of(&msg, &received) {
                Some(input) => Got::Span(input),
                None => match received {
                    Received::Element {
                        key,
                        parent,
                        effective_cmd,
                        opened,
                        ..
                    } => Got::Element {
                        key,
                        parent,
                        opened,
                        cmd: msg.header().command(),
                        effective: effective_cmd,
                        error: msg.header().error,
                        ext: msg.ext().to_vec(),
                        aux: msg.aux().to_vec(),
                    },
                    _ => Got::Other,
                },
            },
            Some(DmsgEvent::Lost(lost)) => Got::Lost(lost.key),
            Some(DmsgEvent::LinkDown(_)) => Got::Down,
            Some(_) => Got::Other,
        };
        count += 1;
        match got {
            Got::Down => {
                *g.down = true;
                let work = &mut *g.work;
                g.sim_node
                    .cluster
                    .link_down(g.conn, &mut |a| work.push(Work::Cluster(a)));
                break;
            }
            Got::Span(input) => span_input(io, g, input),
            Got::Element {
                key,
                parent,
                opened,
                cmd,
                effective,
                error,
                ext,
                aux,
            } => match g.sim_node.cluster.route(g.conn, key, parent, opened) {
                Route::Forward {
                    to,
                    twin,
                    open_under,
                } => {
                    // The harness peeks at the application's aux to record the path.
                    if open_under.is_some()
                        && let Some(r) = request_index(&aux).and_then(|i| g.routed.get_mut(i))
                    {
                        r.hops.push(to);
                    }
                    let f = Forwarded {
                        twin,
                        open_under,
                        cmd,
                        error,
                        ext,
                        aux,
                    };
                    g.work.push(Work::Forward(to, Box::new(f)));
                }
                Route::Local(registration) => {
                    answer_local(io, g, registration, key, effective, &aux)
                }
                Route::Refused(_) => {
                    *g.routes_refused += 1;
                    let _ = io.answer(key, true, DMSG_ERR_IO);
                }
                Route::NotRouted => app_element(io, g, key, opened, cmd, error, &aux),
            },
            Got::Lost(key) => {
                if let Some(&(i, requester)) = g.halves.get(&(g.node, g.conn, key)) {
                    let r = &mut g.routed[i];
                    let end = if requester {
                        &mut r.requester_end
                    } else {
                        &mut r.responder_end
                    };
                    end.get_or_insert(DMSG_ERR_LOSTLINK);
                }
            }
            Got::Other => {}
        }
    }
    count
}

fn span_input<const T: usize>(io: &mut ClusterIo<T>, g: &mut Glue<'_>, input: SpanInput) {
    let work = &mut *g.work;
    match g
        .sim_node
        .cluster
        .input(g.conn, &input, &mut |a| work.push(Work::Cluster(a)))
    {
        Ok(()) => {}
        Err(h2msg::cluster::ClusterError::Full(_)) => {
            if let SpanInput::SpanOpened(msgid, ..) = input {
                refuse_span(io, msgid);
            }
            *g.refused += 1;
        }
        // Our own DELETE crossed the receiver's: its answer names a relay we forgot.
        Err(h2msg::cluster::ClusterError::Unknown)
            if matches!(input, SpanInput::RelayClosed(_)) => {}
        Err(e) => g
            .unexpected
            .push(format!("conn {}: {input:?} refused: {e}", g.conn)),
    }
}

/// A transaction routed to the node's own registration (docs/dmsg.md 5.8, 5.9): a
/// [`REQUEST`] is answered with one reply element carrying the node's label (the half
/// stays open), an `LNK_SEQREQ` moves the registration to a new route sequence.
fn answer_local<const T: usize>(
    io: &mut ClusterIo<T>,
    g: &mut Glue<'_>,
    registration: Registration,
    key: DmsgKey,
    effective: Cmd,
    aux: &[u8],
) {
    let base = effective.clear(MsgFlags::REPLY).switch_key();
    if base == Cmd::DMSG_LNK_SEQREQ.raw() {
        let work = &mut *g.work;
        match g
            .sim_node
            .cluster
            .bump(registration, &mut |a| work.push(Work::Cluster(a)))
        {
            Ok(new) => g.sim_node.registration = Some(new),
            Err(e) => g
                .unexpected
                .push(format!("node {}: bump refused: {e}", g.node)),
        }
        let _ = io.answer(key, true, 0);
    } else if base == REQUEST.raw()
        && let Some(i) = request_index(aux).filter(|&i| i < g.routed.len())
    {
        g.routed[i].responder = Some(g.node);
        g.halves.insert((g.node, g.conn, key), (i, false));
        let mut label = g.sim_node.spec.label().unwrap_or_default().to_vec();
        label.push(0);
        if let Err(e) = io.send(key, REQUEST.set(MsgFlags::CREATE), &[], &label) {
            g.unexpected
                .push(format!("node {}: request {i} not answered: {e:?}", g.node));
        }
    } else {
        let _ = io.answer(key, true, DMSG_ERR_NOSUPP);
    }
}

/// An element of a transaction that is not routed here: one of the node's own routed
/// requests or answers (recorded; a DELETE is answered with ours), or an unknown open
/// (refused with NOSUPP, as the service does).
fn app_element<const T: usize>(
    io: &mut ClusterIo<T>,
    g: &mut Glue<'_>,
    key: DmsgKey,
    opened: bool,
    cmd: Cmd,
    error: u32,
    aux: &[u8],
) {
    let deleted = cmd.flags().contains(MsgFlags::DELETE);
    if let Some(&(i, requester)) = g.halves.get(&(g.node, g.conn, key)) {
        let r = &mut g.routed[i];
        if requester
            && r.answer.is_none()
            && cmd.clear(MsgFlags::REPLY).switch_key() == REQUEST.raw()
            && !aux.is_empty()
        {
            let text = aux.split(|&b| b == 0).next().unwrap_or_default();
            r.answer = Some(text.to_vec());
        }
        if deleted {
            let end = if requester {
                &mut r.requester_end
            } else {
                &mut r.responder_end
            };
            end.get_or_insert(error);
            // Our half ends too (nothing is sent if it had already).
            let _ = io.answer(key, true, 0);
        }
    } else if opened && key.side == Side::Remote {
        // Also a CREATE|DELETE (an LNK_SEQREQ under a relay closed meanwhile): without
        // our DELETE the requester's transaction slot would stay taken forever.
        let _ = io.answer(key, true, DMSG_ERR_NOSUPP);
    }
}

/// Sends one forwarded element on `io` (connection `conn`) as the service's `forward_one`
/// does: opens the twin, or continues it; a twin that cannot be opened ends the
/// requester's half (its actions in `made`).
fn forward_one<const T: usize>(
    io: &mut ClusterIo<T>,
    cluster: &mut Cluster<Heap>,
    conn: ConnId,
    f: &Forwarded,
    made: &mut Vec<Work>,
) {
    let deleted = f.cmd.flags().contains(MsgFlags::DELETE);
    if let Some(parent) = f.open_under {
        match io.forward_open(f.cmd, Some(parent), f.error, &f.ext, &f.aux) {
            Ok(sent) => {
                if cluster.twin_opened(f.twin, sent.msgid) {
                    cluster.twin_forwarded(f.twin, conn, deleted);
                } else {
                    // The route went while the open was queued.
                    let _ = io.abort(DmsgKey::ours(sent.msgid), DMSG_ERR_LOSTLINK);
                }
            }
            Err(_) => cluster.end_twin(f.twin, &mut |a| made.push(Work::Cluster(a))),
        }
        return;
    }
    if let Some(key) = cluster.twin_key(f.twin, conn)
        && io.forward(key, f.cmd, f.error, &f.ext, &f.aux).is_ok()
    {
        cluster.twin_forwarded(f.twin, conn, deleted);
    }
}

/// A connected random graph on `n` nodes: a random spanning tree (each node after the
/// first joins an earlier one) plus `extra` further distinct edges. Deterministic in
/// `seed`.
pub fn random_graph(n: usize, extra: usize, seed: u64) -> Vec<(usize, usize)> {
    let mut rng = TestRng(seed);
    let mut next = |m: usize| -> usize {
        match rng.try_next_u64() {
            Ok(v) => (v % m as u64) as usize,
            Err(never) => match never {},
        }
    };
    let mut edges = BTreeSet::new();
    for i in 1..n {
        let j = next(i);
        edges.insert((j, i));
    }
    let mut added = 0;
    let mut tries = 0;
    while added < extra && tries < extra * 100 {
        tries += 1;
        let (a, b) = (next(n), next(n));
        if a != b && edges.insert((a.min(b), a.max(b))) {
            added += 1;
        }
    }
    edges.into_iter().collect()
}

/// A uuid whose bytes are all `b` (for filter scenarios).
pub fn uuid(b: u8) -> Uuid {
    Uuid([b; 16])
}
