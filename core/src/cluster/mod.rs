//! The cluster (dmsg.md 5): which registrations are reachable and over which connection,
//! and which spans this node sends each connection — the relay algorithm of libdmsg's
//! `hammer2 service`, sans-IO.
//!
//! The caller owns the connections. It tells the cluster what arrived on them (a peer's
//! `LNK_CONN`, a span opened or withdrawn, a relay closed by its receiver, a link lost)
//! and what it registers itself; the cluster answers with [`Action`]s — spans to open or
//! close on a connection — through a callback, in the order libdmsg would send them.
//!
//! # Model (dmsg.md 5.3)
//!
//! - A **link** is one received span, named by where it came from ([`Via`]) and the
//!   sender's msgid. Its payload says which **node** it reaches (cluster key: peer type,
//!   `peer_id`, `peer_label`; node key: `pfs_label`, `pfs_id`) and how far it is (`dist`).
//! - A node's links are ordered by `dist`, then `rnss`, then arrival (D17): the first is
//!   the node's **best link**.
//! - A **relay** is a span we send on a connection whose peer opened `LNK_CONN` (a
//!   **conn**): a copy of a best link's payload, one hop further.
//! - A **registration** of our own is a link that came from [`Via::Local`] at `dist` 0:
//!   relayed like any other, so a neighbour sees it at `dist` 1 and every node's `dist`
//!   is its hop count to the registering node (dmsg.md 5.6).
//!
//! # The scan (dmsg.md 5.4)
//!
//! For a node and a conn: keep the relay of the best link if there is one; otherwise
//! open one for the best link unless a filter stops it (`dist` above
//! [`DMSG_SPAN_MAXDIST`], the link came on that conn, the conn's `peer_mask`, CLIENT
//! rules); then close every other relay of that node on that conn — new before old, so
//! a better route is made before the old one is broken. libdmsg rescans everything on
//! each trigger; this module rescans only the pairs a trigger can change (the node of a
//! span, the conn of an `LNK_CONN`), which sends the same messages in the same order,
//! and falls back to the whole scan after events that leave a pair stale until "the
//! next trigger" (a relay its receiver closed, a relay that could not be opened).
//!
//! # Memory
//!
//! Every table is bounded by the [`Storage`] the caller picks: [`Fixed`] arrays (no
//! allocator) or, with the `alloc` feature, `Heap` tables up to `Limits`. A span
//! that does not fit is refused with [`ClusterError::Full`] and changes nothing; the
//! caller closes it toward its sender (dmsg.md 5.7).

mod connection;
mod guard;
mod route;
mod table;

use core::cmp::Ordering;
use core::fmt;

pub use connection::{Sent, SpanInput, refuse_span, send_action};
pub use route::{Route, Twin, TwinId};
#[cfg(feature = "alloc")]
pub use table::{Capped, Heap};
pub use table::{Fixed, Limits, Storage, Table, Tables};

use crate::wire::{DMSG_SPAN_MAXDIST, LnkConn, LnkSpan, PeerType, Uuid, WireOrder};

/// A connection, as the caller numbers its connections.
pub type ConnId = u64;

/// Where a link came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Via {
    /// A registration of this node ([`Cluster::register`]).
    Local,
    /// A span received on this connection.
    Conn(ConnId),
}

/// One of the spans we send: its number in this cluster (never reused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelayId(pub u64);

/// One of this node's own registrations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Registration(pub u64);

/// What the caller must send for the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(
    clippy::large_enum_variant,
    reason = "an open carries the payload it sends; callers queue a few at a time"
)]
pub enum Action {
    /// Open a top-level `LNK_SPAN|CREATE` on `conn` with `span` as its payload
    /// (little-endian), and tell [`Cluster::relay_opened`] its msgid — or
    /// [`Cluster::relay_failed`] if it could not be sent.
    OpenSpan {
        /// The connection.
        conn: ConnId,
        /// The relay the span is.
        relay: RelayId,
        /// The payload: the best link's, one hop further.
        span: LnkSpan,
    },
    /// Close our span `relay` on `conn` (`LNK_ERROR|DELETE`, 0x400FFF01, error 0). The
    /// cluster has forgotten it. `msgid` is `None` if [`Cluster::relay_opened`] was not
    /// told one yet: then the matching [`Action::OpenSpan`] is still the caller's to
    /// cancel.
    CloseSpan {
        /// The connection.
        conn: ConnId,
        /// The relay.
        relay: RelayId,
        /// Its msgid, if known.
        msgid: Option<u64>,
    },
    /// Ask the originator of the span `under`, received on `conn`, for a new route
    /// sequence (docs/dmsg.md 5.9): open an `LNK_SEQREQ|CREATE|DELETE` under it.
    RequestSeqno {
        /// The connection the span came on.
        conn: ConnId,
        /// The span's msgid, as its sender allocated it.
        under: u64,
    },
    /// End our half `key` of the routed transaction `twin` on `conn` with
    /// `LNK_ERROR|DELETE|ABORT`, error 0x21 LOSTLINK: its route is gone (dmsg.md 4.6).
    /// `key` is `None` if the twin's open is still queued: the caller drops what it
    /// queued for `twin` instead.
    Terminate {
        /// The connection.
        conn: ConnId,
        /// The routed transaction.
        twin: TwinId,
        /// Our half's key on `conn`, if known.
        key: Option<crate::trans::DmsgKey>,
    },
}

/// Which table had no room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableName {
    /// Connections with `LNK_CONN`.
    Conns,
    /// Nodes.
    Nodes,
    /// Received spans.
    Links,
    /// Spans sent.
    Relays,
    /// Distinct span payloads.
    Payloads,
    /// Routed transactions passing through.
    Twins,
}

/// Why the cluster refused an input. Nothing changed then.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterError {
    /// The table has no room (its capacity is the caller's choice).
    Full(TableName),
    /// This connection's peer opened `LNK_CONN` already, or a span with this msgid is
    /// open on this connection already.
    Duplicate,
    /// No such span or connection.
    Unknown,
}

impl fmt::Display for ClusterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full(table) => write!(f, "the cluster's {table:?} table is full"),
            Self::Duplicate => f.write_str("already open on this connection"),
            Self::Unknown => f.write_str("no such span or connection"),
        }
    }
}

impl core::error::Error for ClusterError {}

/// Counters of what the cluster refused or had to retry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClusterStats {
    /// Spans and `LNK_CONN`s refused for want of room.
    pub refused: u64,
    /// Relays not opened for want of room (retried at the next trigger).
    pub relays_deferred: u64,
    /// Relays the caller could not send ([`Cluster::relay_failed`]).
    pub relays_failed: u64,
    /// Whole scans run.
    pub full_scans: u64,
}

/// A conn: a connection whose peer opened `LNK_CONN`, with the filter it sent.
#[derive(Clone, Copy, Debug)]
pub struct Conn {
    id: ConnId,
    peer_type: PeerType,
    peer_mask: u64,
    peer_id: Uuid,
}

/// A received payload (little-endian, `dist` and `rnss` zero, labels NUL-forced), shared
/// by the links that carry the same bytes.
#[derive(Clone, Debug)]
pub struct Payload {
    id: u64,
    refs: u32,
    span: LnkSpan,
}

/// A node: what its links reach.
#[derive(Clone, Copy, Debug)]
pub struct Node {
    id: u64,
    /// A payload of its first link (one reference held): the node's key and `pfs_type`.
    payload: u64,
    links: u32,
    /// With the loop guard: the route sequence and the smallest `dist` we advertised for
    /// it (the feasible distance, docs/dmsg.md 5.9). Kept after the last link goes (the
    /// node is then a tombstone), so that stale copies still in flight are refused.
    fd: Option<(u64, u32)>,
    /// With the loop guard: the route sequence we asked the originator to move past, and
    /// the link the request went over (while that link lasts, we do not ask again).
    requested: Option<(u64, u64)>,
}

/// A received span.
#[derive(Clone, Copy, Debug)]
pub struct Link {
    seq: u64,
    node: u64,
    payload: u64,
    via: Via,
    msgid: u64,
    dist: u32,
    rnss: u32,
    /// The originator's route sequence (`reserved02`; 0 from libdmsg nodes).
    route_seq: u64,
}

impl Link {
    /// Its place among its node's links: `dist`, `rnss`, a newer route sequence first
    /// (always 0 without the loop guard), then arrival.
    const fn order(&self) -> LinkOrder {
        LinkOrder {
            node: self.node,
            dist: self.dist,
            rnss: self.rnss,
            older: u64::MAX - self.route_seq,
            seq: self.seq,
        }
    }

    /// The place of relay `relay` of this link on `conn`.
    const fn relay_order(&self, conn: ConnId, relay: u64) -> RelayOrder {
        RelayOrder {
            conn,
            node: self.node,
            dist: self.dist,
            rnss: self.rnss,
            older: u64::MAX - self.route_seq,
            link: self.seq,
            relay,
        }
    }
}

/// A span we send.
#[derive(Clone, Copy, Debug)]
pub struct Relay {
    id: u64,
    conn: ConnId,
    link: u64,
    msgid: Option<u64>,
}

/// A node's place in tree order (its key lives in its payload).
#[derive(Clone, Copy, Debug)]
pub struct NodeOrder(u64);

/// A link's place: node, then preference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct LinkOrder {
    node: u64,
    dist: u32,
    rnss: u32,
    older: u64,
    seq: u64,
}

/// A link's place by where it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct LinkSource {
    via: Via,
    msgid: u64,
    seq: u64,
}

/// A relay's place: its conn, its node, then its source link's preference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RelayOrder {
    conn: ConnId,
    node: u64,
    dist: u32,
    rnss: u32,
    older: u64,
    link: u64,
    relay: u64,
}

/// A cluster node's view of the spanning tree: links received, relays sent, and the
/// scan that keeps the relays right. See the [module docs](self).
pub struct Cluster<S: Storage> {
    t: Tables<S>,
    /// D16: added to `rnss` on every relay.
    rself: u32,
    next_id: u64,
    /// A pair may be stale: the next trigger scans everything.
    rescan_all: bool,
    /// A relay could not be opened: worth a scan on the caller's timer too.
    retry_relays: bool,
    /// The connection [`link_down`](Self::link_down) is taking out: nothing is sent on it.
    going: Option<ConnId>,
    /// Most twins per connection, either end (5.8).
    twin_limit: usize,
    /// The loop guard is on (docs/dmsg.md 5.9).
    guard: bool,
    stats: ClusterStats,
}

impl<S: Storage> fmt::Debug for Cluster<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("conns", &self.t.conns.items().len())
            .field("nodes", &self.t.nodes.items().len())
            .field("links", &self.t.links.items().len())
            .field("relays", &self.t.relays.items().len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// The tree-order key of a payload: cluster (peer type, `peer_id`, `peer_label`), then
/// node (`pfs_label`, `pfs_id`) — dmsg.md 5.3, D18.
fn node_key(span: &LnkSpan) -> (PeerType, Uuid, &[u8], &[u8], Uuid) {
    (
        span.peer_type(),
        span.peer_id,
        span.peer_label(),
        span.pfs_label(),
        span.pfs_id,
    )
}

/// A sorted-by-id table's index of `id`.
fn by_id<T>(items: &[T], id: u64, key: impl Fn(&T) -> u64) -> Option<usize> {
    items.binary_search_by_key(&id, key).ok()
}

impl<S: Storage> Cluster<S> {
    /// An empty cluster in `storage`. `rself` is this node's constant added to `rnss` on
    /// every relay (D16: a random non-zero value drawn once per process; the caller draws
    /// it, so that runs can be replayed).
    pub fn new(storage: &S, rself: core::num::NonZeroU32) -> Self {
        Self {
            t: storage.tables(),
            rself: rself.get(),
            next_id: 0,
            rescan_all: false,
            retry_relays: false,
            going: None,
            twin_limit: usize::MAX,
            guard: false,
            stats: ClusterStats::default(),
        }
    }

    /// What was refused or retried so far.
    #[must_use]
    pub const fn stats(&self) -> ClusterStats {
        self.stats
    }

    fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    // ----- inputs -----------------------------------------------------------------------

    /// The peer of `conn` opened `LNK_CONN` with `filter` (its integers in `order`):
    /// from now on the conn is sent the spans its filter lets through.
    ///
    /// # Errors
    /// [`ClusterError::Duplicate`] if it had already (D19: keep the first);
    /// [`ClusterError::Full`].
    pub fn conn_opened(
        &mut self,
        conn: ConnId,
        filter: &LnkConn,
        order: WireOrder,
        out: &mut impl FnMut(Action),
    ) -> Result<(), ClusterError> {
        let at = match self.t.conns.items().binary_search_by_key(&conn, |c| c.id) {
            Ok(_) => return Err(ClusterError::Duplicate),
            Err(at) => at,
        };
        let entry = Conn {
            id: conn,
            peer_type: filter.peer_type(),
            peer_mask: filter.peer_mask(order),
            peer_id: filter.peer_id,
        };
        if self.t.conns.try_insert(at, entry).is_err() {
            self.stats.refused += 1;
            return Err(ClusterError::Full(TableName::Conns));
        }
        if self.rescan_all {
            self.scan_all(out);
        } else {
            let mut i = 0;
            while let Some(&NodeOrder(node)) = self.t.node_order.items().get(i) {
                let best = self.best_link(node, out);
                self.scan_pair(node, best, entry, out);
                i += 1;
            }
        }
        Ok(())
    }

    /// The peer of `conn` closed its `LNK_CONN`: every span we relayed to it is closed
    /// (dmsg.md 5.2). Spans received from it stay.
    pub fn conn_closed(&mut self, conn: ConnId, out: &mut impl FnMut(Action)) {
        self.drop_conn(conn, Some(out));
    }

    /// The link `conn` is gone (dmsg.md 4.6): its relays are forgotten without a word
    /// (nothing can be sent on it), and every span received from it is withdrawn as if
    /// its sender had closed it, each with its rescan.
    pub fn link_down(&mut self, conn: ConnId, out: &mut impl FnMut(Action)) {
        self.drop_conn::<fn(Action)>(conn, None);
        self.going = Some(conn);
        while let Some(seq) = self
            .t
            .links
            .items()
            .iter()
            .find(|l| l.via == Via::Conn(conn))
            .map(|l| l.seq)
        {
            self.withdraw_link(seq, out);
        }
        // Twins with a half on the lost link, after the spans' DELETEs (dmsg.md 4.6).
        self.cut_twins(
            |t| (t.from == conn || t.to == conn).then_some(Some(conn)),
            out,
        );
        self.going = None;
    }

    /// The peer of `conn` opened the span `msgid` with `span` as its payload (integers in
    /// `order`). The node's relays are rescanned.
    ///
    /// # Errors
    /// [`ClusterError::Duplicate`] if that msgid is open on `conn` already,
    /// [`ClusterError::Full`]: nothing changed, the caller closes the span toward its
    /// sender.
    pub fn span_received(
        &mut self,
        conn: ConnId,
        msgid: u64,
        span: &LnkSpan,
        order: WireOrder,
        out: &mut impl FnMut(Action),
    ) -> Result<(), ClusterError> {
        let node = self.insert_link(Via::Conn(conn), msgid, span, order)?;
        self.rescan_node(node, out);
        Ok(())
    }

    /// The peer of `conn` withdrew its span `msgid` (its DELETE, dmsg.md 5.5): the relays
    /// made from it are closed, the node rescanned if it is still reachable.
    ///
    /// # Errors
    /// [`ClusterError::Unknown`] if no such span is open.
    pub fn span_withdrawn(
        &mut self,
        conn: ConnId,
        msgid: u64,
        out: &mut impl FnMut(Action),
    ) -> Result<(), ClusterError> {
        let seq = self
            .find_link(Via::Conn(conn), msgid)
            .ok_or(ClusterError::Unknown)?;
        self.withdraw_link(seq, out);
        Ok(())
    }

    /// Registers a node of our own, advertised to every conn as if a client at `dist` 0
    /// had sent `span` (its `dist` and `rnss` are ignored).
    ///
    /// # Errors
    /// [`ClusterError::Full`].
    pub fn register(
        &mut self,
        span: &LnkSpan,
        out: &mut impl FnMut(Action),
    ) -> Result<Registration, ClusterError> {
        let id = self.next_id + 1;
        let own = self.own_span(span);
        let node = self.insert_link(Via::Local, id, &own, WireOrder::Little)?;
        self.rescan_node(node, out);
        Ok(Registration(id))
    }

    /// Withdraws a registration of our own.
    ///
    /// # Errors
    /// [`ClusterError::Unknown`].
    pub fn unregister(
        &mut self,
        registration: Registration,
        out: &mut impl FnMut(Action),
    ) -> Result<(), ClusterError> {
        let seq = self
            .find_link(Via::Local, registration.0)
            .ok_or(ClusterError::Unknown)?;
        self.withdraw_link(seq, out);
        Ok(())
    }

    /// The caller sent the span of `relay` with this msgid. False if the cluster closed
    /// that relay meanwhile: the caller closes the span it just opened.
    pub fn relay_opened(&mut self, relay: RelayId, msgid: u64) -> bool {
        match by_id(self.t.relays.items(), relay.0, |r| r.id) {
            Some(i) => {
                if let Some(r) = self.t.relays.items_mut().get_mut(i) {
                    r.msgid = Some(msgid);
                }
                true
            }
            None => false,
        }
    }

    /// The caller could not send the span of `relay` (its queue or table was full): the
    /// relay is forgotten and tried again at the next trigger.
    pub fn relay_failed(&mut self, relay: RelayId) {
        if self.remove_relay(relay.0).is_some() {
            self.stats.relays_failed += 1;
            self.rescan_all = true;
            self.retry_relays = true;
        }
    }

    /// The receiver closed our span `msgid` on `conn` (dmsg.md 5.5): the relay is closed
    /// on our side too (an [`Action::CloseSpan`]) and forgotten; no rescan now, the next
    /// trigger reopens it if the link is still the best.
    ///
    /// # Errors
    /// [`ClusterError::Unknown`] if it is not one of our relays.
    pub fn relay_closed(
        &mut self,
        conn: ConnId,
        msgid: u64,
        out: &mut impl FnMut(Action),
    ) -> Result<(), ClusterError> {
        let id = self
            .t
            .relays
            .items()
            .iter()
            .find(|r| r.conn == conn && r.msgid == Some(msgid))
            .map(|r| r.id)
            .ok_or(ClusterError::Unknown)?;
        if let Some(r) = self.remove_relay(id) {
            out(Action::CloseSpan {
                conn,
                relay: RelayId(id),
                msgid: r.msgid,
            });
        }
        self.rescan_all = true;
        Ok(())
    }

    /// Scans every node for every conn (libdmsg's full scan), e.g. on a timer.
    pub fn rescan(&mut self, out: &mut impl FnMut(Action)) {
        self.scan_all(out);
    }

    /// Whether a relay could not be opened (no room in a table or the caller's queue) and
    /// waits for the next trigger: a caller with a timer calls [`rescan`](Self::rescan)
    /// then, so that a quiet cluster does not wait for one. (A relay its receiver closed
    /// waits for a real trigger, as in libdmsg: retrying it on a timer would only have it
    /// refused again.)
    #[must_use]
    pub const fn retry_pending(&self) -> bool {
        self.retry_relays
    }

    // ----- queries ----------------------------------------------------------------------

    /// Where our span `msgid` on `conn` gets its payload: the link it relays (for
    /// forwarding a transaction opened under it, dmsg.md 4.5).
    #[must_use]
    pub fn relay_source(&self, conn: ConnId, msgid: u64) -> Option<(Via, u64)> {
        let relay = self
            .t
            .relays
            .items()
            .iter()
            .find(|r| r.conn == conn && r.msgid == Some(msgid))?;
        let link = self.link(relay.link)?;
        Some((link.via, link.msgid))
    }

    /// Received spans (links) that came on `via`.
    #[must_use]
    pub fn links_via(&self, via: Via) -> usize {
        self.t.links.items().iter().filter(|l| l.via == via).count()
    }

    /// Received spans held (links), our own registrations included.
    #[must_use]
    pub fn link_count(&self) -> usize {
        self.t.links.items().len()
    }

    /// Spans we send (relays), on every conn.
    #[must_use]
    pub fn relay_count(&self) -> usize {
        self.t.relays.items().len()
    }

    /// Spans we send on `conn`.
    #[must_use]
    pub fn relays_on(&self, conn: ConnId) -> usize {
        self.t
            .relays
            .items()
            .iter()
            .filter(|r| r.conn == conn)
            .count()
    }

    /// Whether `conn`'s peer opened `LNK_CONN`.
    #[must_use]
    pub fn has_conn(&self, conn: ConnId) -> bool {
        self.t
            .conns
            .items()
            .binary_search_by_key(&conn, |c| c.id)
            .is_ok()
    }

    /// The nodes in tree order (dmsg.md 6.4): by cluster, then node key.
    pub fn nodes(&self) -> impl Iterator<Item = NodeView<'_, S>> {
        self.t
            .node_order
            .items()
            .iter()
            .filter_map(|&NodeOrder(id)| {
                let node = *self.node(id).filter(|n| n.links > 0)?;
                let span = &self.payload(node.payload)?.span;
                Some(NodeView {
                    cluster: self,
                    node,
                    span,
                })
            })
    }

    // ----- the tables -------------------------------------------------------------------

    fn node(&self, id: u64) -> Option<&Node> {
        let i = by_id(self.t.nodes.items(), id, |n| n.id)?;
        self.t.nodes.items().get(i)
    }

    fn payload(&self, id: u64) -> Option<&Payload> {
        let i = by_id(self.t.payloads.items(), id, |p| p.id)?;
        self.t.payloads.items().get(i)
    }

    fn link(&self, seq: u64) -> Option<&Link> {
        let i = by_id(self.t.links.items(), seq, |l| l.seq)?;
        self.t.links.items().get(i)
    }

    fn find_link(&self, via: Via, msgid: u64) -> Option<u64> {
        let items = self.t.link_source.items();
        let at = items.partition_point(|s| (s.via, s.msgid) < (via, msgid));
        items
            .get(at)
            .filter(|s| s.via == via && s.msgid == msgid)
            .map(|s| s.seq)
    }

    /// The position of `span`'s node in tree order: found, or where it would go.
    fn find_node(&self, span: &LnkSpan) -> Result<usize, usize> {
        let key = node_key(span);
        self.t
            .node_order
            .items()
            .binary_search_by(|&NodeOrder(id)| {
                self.node(id)
                    .and_then(|n| self.payload(n.payload))
                    .map_or(Ordering::Less, |p| node_key(&p.span).cmp(&key))
            })
    }

    /// Records a received (or own) span; returns its node. Room in every table it needs
    /// is checked first, so a refusal changes nothing.
    fn insert_link(
        &mut self,
        via: Via,
        msgid: u64,
        span: &LnkSpan,
        order: WireOrder,
    ) -> Result<u64, ClusterError> {
        if self.find_link(via, msgid).is_some() {
            return Err(ClusterError::Duplicate);
        }
        let dist = span.dist(order);
        let rnss = span.rnss(order);
        let mut stored = span.to_little_endian(order);
        stored.force_label_nul();
        stored.set_dist(0, WireOrder::Little);
        stored.set_rnss(0, WireOrder::Little);

        let mut node_at = self.find_node(&stored);
        let link_fits = self.t.links.has_room()
            && self.t.link_order.has_room()
            && self.t.link_source.has_room();
        if link_fits
            && node_at.is_err()
            && !(self.t.nodes.has_room() && self.t.node_order.has_room())
        {
            // A tombstone (5.9) gives way to a node that is reachable.
            self.evict_tombstone();
            node_at = self.find_node(&stored);
        }
        let node = node_at.ok().and_then(|i| {
            let NodeOrder(id) = *self.t.node_order.items().get(i)?;
            Some(id)
        });
        let shared = node.and_then(|node| self.shared_payload(node, &stored));
        let full = |table| Err::<u64, _>(ClusterError::Full(table));
        let refused = if !self.t.links.has_room()
            || !self.t.link_order.has_room()
            || !self.t.link_source.has_room()
        {
            full(TableName::Links)
        } else if node.is_none() && (!self.t.nodes.has_room() || !self.t.node_order.has_room()) {
            full(TableName::Nodes)
        } else if shared.is_none() && !self.t.payloads.has_room() {
            full(TableName::Payloads)
        } else {
            Ok(0)
        };
        if let Err(e) = refused {
            self.stats.refused += 1;
            return Err(e);
        }

        // Every insert below has room: ids grow, so appends keep the by-id tables sorted.
        let payload = match shared {
            Some(id) => {
                self.add_payload_ref(id);
                id
            }
            None => {
                let id = self.fresh_id();
                let _ = self.t.payloads.try_insert(
                    self.t.payloads.items().len(),
                    Payload {
                        id,
                        refs: 1,
                        span: stored,
                    },
                );
                id
            }
        };
        let node = match (node, node_at) {
            (Some(id), _) => id,
            (None, Ok(_)) => return Err(ClusterError::Unknown), // not reached: found above
            (None, Err(at)) => {
                let id = self.fresh_id();
                self.add_payload_ref(payload);
                let _ = self.t.nodes.try_insert(
                    self.t.nodes.items().len(),
                    Node {
                        id,
                        payload,
                        links: 0,
                        fd: None,
                        requested: None,
                    },
                );
                let _ = self.t.node_order.try_insert(at, NodeOrder(id));
                id
            }
        };
        let seq = self.fresh_id();
        let link = Link {
            seq,
            node,
            payload,
            via,
            msgid,
            dist,
            rnss,
            route_seq: u64::from_le_bytes(stored.reserved02),
        };
        let _ = self.t.links.try_insert(self.t.links.items().len(), link);
        let order_entry = link.order();
        let at = self
            .t
            .link_order
            .items()
            .partition_point(|o| *o < order_entry);
        let _ = self.t.link_order.try_insert(at, order_entry);
        let source = LinkSource { via, msgid, seq };
        let at = self.t.link_source.items().partition_point(|s| *s < source);
        let _ = self.t.link_source.try_insert(at, source);
        if let Some(i) = by_id(self.t.nodes.items(), node, |n| n.id)
            && let Some(n) = self.t.nodes.items_mut().get_mut(i)
        {
            n.links += 1;
        }
        Ok(node)
    }

    /// A payload of `node`'s links with exactly `stored`'s bytes.
    fn shared_payload(&self, node: u64, stored: &LnkSpan) -> Option<u64> {
        let own = self.node(node)?.payload;
        let links = self.node_links(node);
        core::iter::once(own)
            .chain(links.iter().filter_map(|o| Some(self.link(o.seq)?.payload)))
            .find(|&id| self.payload(id).is_some_and(|p| p.span == *stored))
    }

    fn add_payload_ref(&mut self, id: u64) {
        if let Some(i) = by_id(self.t.payloads.items(), id, |p| p.id)
            && let Some(p) = self.t.payloads.items_mut().get_mut(i)
        {
            p.refs += 1;
        }
    }

    fn drop_payload_ref(&mut self, id: u64) {
        let Some(i) = by_id(self.t.payloads.items(), id, |p| p.id) else {
            return;
        };
        let last = self.t.payloads.items_mut().get_mut(i).is_some_and(|p| {
            p.refs = p.refs.saturating_sub(1);
            p.refs == 0
        });
        if last {
            self.t.payloads.remove_at(i);
        }
    }

    /// `node`'s links, best first.
    fn node_links(&self, node: u64) -> &[LinkOrder] {
        let items = self.t.link_order.items();
        let start = items.partition_point(|o| o.node < node);
        let end = items.partition_point(|o| o.node <= node);
        items.get(start..end).unwrap_or_default()
    }

    /// The relays of `node` on `conn`, in order.
    fn pair_relays(&self, conn: ConnId, node: u64) -> &[RelayOrder] {
        let items = self.t.relay_order.items();
        let start = items.partition_point(|o| (o.conn, o.node) < (conn, node));
        let end = items.partition_point(|o| (o.conn, o.node) <= (conn, node));
        items.get(start..end).unwrap_or_default()
    }

    /// Forgets relay `id` everywhere; returns it.
    fn remove_relay(&mut self, id: u64) -> Option<Relay> {
        let i = by_id(self.t.relays.items(), id, |r| r.id)?;
        let relay = self.t.relays.remove_at(i)?;
        if let Some(j) = self
            .t
            .relay_order
            .items()
            .iter()
            .position(|o| o.relay == id)
        {
            self.t.relay_order.remove_at(j);
        }
        Some(relay)
    }

    /// Removes conn `conn` and its relays, closing each through `out` if given.
    fn drop_conn<F: FnMut(Action)>(&mut self, conn: ConnId, mut out: Option<&mut F>) {
        if let Ok(i) = self.t.conns.items().binary_search_by_key(&conn, |c| c.id) {
            self.t.conns.remove_at(i);
        }
        loop {
            let items = self.t.relay_order.items();
            let at = items.partition_point(|o| o.conn < conn);
            let Some(&RelayOrder { relay, .. }) = items.get(at).filter(|o| o.conn == conn) else {
                break;
            };
            let Some(r) = self.remove_relay(relay) else {
                break;
            };
            if let Some(out) = out.as_mut() {
                out(Action::CloseSpan {
                    conn,
                    relay: RelayId(relay),
                    msgid: r.msgid,
                });
            }
        }
    }

    /// Removes link `seq` (dmsg.md 5.5): closes the relays made from it, drops its node
    /// if that was its last link, else rescans the node.
    fn withdraw_link(&mut self, seq: u64, out: &mut impl FnMut(Action)) {
        let Some(i) = by_id(self.t.links.items(), seq, |l| l.seq) else {
            return;
        };
        let Some(link) = self.t.links.remove_at(i) else {
            return;
        };
        if let Ok(j) = self.t.link_order.items().binary_search(&link.order()) {
            self.t.link_order.remove_at(j);
        }
        let source = LinkSource {
            via: link.via,
            msgid: link.msgid,
            seq,
        };
        if let Ok(j) = self.t.link_source.items().binary_search(&source) {
            self.t.link_source.remove_at(j);
        }
        while let Some(r) = self
            .t
            .relays
            .items()
            .iter()
            .find(|r| r.link == seq)
            .copied()
        {
            self.remove_relay(r.id);
            out(Action::CloseSpan {
                conn: r.conn,
                relay: RelayId(r.id),
                msgid: r.msgid,
            });
        }
        // Transactions routed over this link lose their route (dmsg.md 4.6): after the
        // spans' DELETEs, as libdmsg was measured to send them.
        self.cut_twins(|t| (t.link == seq).then_some(None), out);
        self.drop_payload_ref(link.payload);
        let survives = match by_id(self.t.nodes.items(), link.node, |n| n.id) {
            Some(ni) => {
                let left = self.t.nodes.items_mut().get_mut(ni).map_or(0, |n| {
                    n.links = n.links.saturating_sub(1);
                    n.links
                });
                let tombstone =
                    self.guard && self.t.nodes.items().get(ni).is_some_and(|n| n.fd.is_some());
                if left == 0 && !tombstone {
                    self.remove_node(ni);
                }
                left > 0
            }
            None => false,
        };
        if survives {
            self.rescan_node(link.node, out);
        }
    }

    fn remove_node(&mut self, index: usize) {
        let Some(node) = self.t.nodes.remove_at(index) else {
            return;
        };
        if let Some(j) = self
            .t
            .node_order
            .items()
            .iter()
            .position(|&NodeOrder(id)| id == node.id)
        {
            self.t.node_order.remove_at(j);
        }
        self.drop_payload_ref(node.payload);
    }

    // ----- the scan (dmsg.md 5.4) -------------------------------------------------------

    fn rescan_node(&mut self, node: u64, out: &mut impl FnMut(Action)) {
        if self.rescan_all {
            self.scan_all(out);
            return;
        }
        let best = self.best_link(node, out);
        let mut i = 0;
        while let Some(&conn) = self.t.conns.items().get(i) {
            self.scan_pair(node, best, conn, out);
            i += 1;
        }
    }

    fn scan_all(&mut self, out: &mut impl FnMut(Action)) {
        self.rescan_all = false;
        self.retry_relays = false;
        self.stats.full_scans += 1;
        let mut n = 0;
        while let Some(&NodeOrder(node)) = self.t.node_order.items().get(n) {
            let best = self.best_link(node, out);
            let mut c = 0;
            while let Some(&conn) = self.t.conns.items().get(c) {
                self.scan_pair(node, best, conn, out);
                c += 1;
            }
            n += 1;
        }
    }

    /// Whether `conn`'s filter lets `link` through (dmsg.md 5.4 step 2b, D13).
    fn passes(&self, link: &Link, conn: &Conn) -> bool {
        let Some(payload) = self.payload(link.payload) else {
            return false;
        };
        let peer_type = payload.span.peer_type();
        let wanted = peer_type
            .mask_bit()
            .is_some_and(|bit| conn.peer_mask & bit != 0);
        let client = PeerType::CLIENT;
        link.dist <= DMSG_SPAN_MAXDIST
            && link.via != Via::Conn(conn.id)
            && wanted
            && !(conn.peer_type == client && peer_type == client)
            && !(conn.peer_type == client
                && !conn.peer_id.is_nil()
                && conn.peer_id != payload.span.peer_id)
    }

    /// Makes `node`'s relays on `conn` right: those of `best`, its best link, or none.
    fn scan_pair(
        &mut self,
        node: u64,
        best: Option<Link>,
        conn: Conn,
        out: &mut impl FnMut(Action),
    ) {
        let first = self.pair_relays(conn.id, node).first().copied();
        let keep = match (best, first) {
            (Some(best), Some(r)) if r.link == best.seq => Some(r.relay),
            (Some(best), _) if self.passes(&best, &conn) => self.open_relay(&best, conn.id, out),
            _ => None,
        };
        // Everything else of this node on this conn is surplus: closed after the new one
        // was opened (make-before-break).
        while let Some(surplus) = self
            .pair_relays(conn.id, node)
            .iter()
            .find(|o| Some(o.relay) != keep)
            .map(|o| o.relay)
        {
            let Some(r) = self.remove_relay(surplus) else {
                break;
            };
            out(Action::CloseSpan {
                conn: conn.id,
                relay: RelayId(surplus),
                msgid: r.msgid,
            });
        }
    }

    /// Opens a relay of `link` on `conn`; its id, or `None` if no room (deferred).
    fn open_relay(
        &mut self,
        link: &Link,
        conn: ConnId,
        out: &mut impl FnMut(Action),
    ) -> Option<u64> {
        if !self.t.relays.has_room() || !self.t.relay_order.has_room() {
            self.stats.relays_deferred += 1;
            self.rescan_all = true;
            self.retry_relays = true;
            return None;
        }
        let mut span = self.payload(link.payload)?.span;
        span.set_dist(link.dist.saturating_add(1), WireOrder::Little);
        span.set_rnss(link.rnss.wrapping_add(self.rself), WireOrder::Little);
        let id = self.fresh_id();
        let _ = self.t.relays.try_insert(
            self.t.relays.items().len(),
            Relay {
                id,
                conn,
                link: link.seq,
                msgid: None,
            },
        );
        let entry = link.relay_order(conn, id);
        let at = self.t.relay_order.items().partition_point(|o| *o < entry);
        let _ = self.t.relay_order.try_insert(at, entry);
        out(Action::OpenSpan {
            conn,
            relay: RelayId(id),
            span,
        });
        Some(id)
    }
}

/// A node as `tree` shows it: its payload (from its first link) and its links.
pub struct NodeView<'a, S: Storage> {
    cluster: &'a Cluster<S>,
    node: Node,
    span: &'a LnkSpan,
}

impl<'a, S: Storage> NodeView<'a, S> {
    /// The payload of the node's first link: its cluster and node keys, `pfs_type`.
    #[must_use]
    pub const fn span(&self) -> &'a LnkSpan {
        self.span
    }

    /// The node's links, best first.
    pub fn links(&self) -> impl Iterator<Item = LinkView<'a, S>> + use<'a, S> {
        let cluster = self.cluster;
        cluster
            .node_links(self.node.id)
            .iter()
            .filter_map(move |o| {
                Some(LinkView {
                    cluster,
                    link: *cluster.link(o.seq)?,
                })
            })
    }
}

/// A received span as `tree` shows it.
pub struct LinkView<'a, S: Storage> {
    cluster: &'a Cluster<S>,
    link: Link,
}

impl<S: Storage> LinkView<'_, S> {
    /// Where it came from.
    #[must_use]
    pub const fn via(&self) -> Via {
        self.link.via
    }

    /// Its msgid, as its sender allocated it (a registration's number for our own).
    #[must_use]
    pub const fn msgid(&self) -> u64 {
        self.link.msgid
    }

    /// Hops to its originator.
    #[must_use]
    pub const fn dist(&self) -> u32 {
        self.link.dist
    }

    /// Its random sub-sort.
    #[must_use]
    pub const fn rnss(&self) -> u32 {
        self.link.rnss
    }

    /// Its originator's route sequence (docs/dmsg.md 5.9; 0 without the loop guard).
    #[must_use]
    pub const fn route_seq(&self) -> u64 {
        self.link.route_seq
    }

    /// The relays made from it: (conn, relay, our msgid once known), oldest first.
    pub fn relays(&self) -> impl Iterator<Item = (ConnId, RelayId, Option<u64>)> + '_ {
        let seq = self.link.seq;
        self.cluster
            .t
            .relays
            .items()
            .iter()
            .filter(move |r| r.link == seq)
            .map(|r| (r.conn, RelayId(r.id), r.msgid))
    }
}

#[cfg(test)]
mod tests;
