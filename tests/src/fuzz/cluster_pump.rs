//! One cluster whose peers are the fuzzer (`cluster_pump`): several connections feed
//! `LNK_CONN` and `LNK_SPAN` opens, deletes, relay closes and link losses in any order
//! into [`Cluster::input`] / [`Cluster::link_down`], with small [`Fixed`] capacities; the
//! cluster's actions are carried out on a model of the peers (opens queued per
//! connection and sent, or failed, when the fuzzer says). Checked after every step: no
//! panic; never more nodes, links or relays than the capacities; every relay on a
//! connection that is up and whose peer opened `LNK_CONN`, from a link that still exists,
//! never on its source's connection, with a `dist` of at most 16; the relays and links
//! per connection are exactly the ones the model holds.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::num::NonZeroU32;

use h2msg::cluster::{
    Action, Cluster, ClusterError, ConnId, Fixed, Registration, RelayId, SpanInput, Via,
};
use h2msg::wire::{DMSG_SPAN_MAXDIST, LnkConn, LnkSpan, PeerType, Uuid, WireOrder};

/// Connection slots the fuzzer drives.
const SLOTS: usize = 4;
const CONNS: usize = 3;
const NODES: usize = 6;
/// The capacities, small so that every table fills.
pub const LINKS: usize = 12;
/// Relays the cluster may hold.
pub const RELAYS: usize = 10;
const PAYLOADS: usize = 8;
/// Routed transactions passing through (none are routed here).
const TWINS: usize = 1;
type Small = Fixed<CONNS, NODES, LINKS, RELAYS, PAYLOADS, TWINS>;

/// Steps at most: the input cannot make a run long.
const MAX_STEPS: usize = 2000;

/// Reads the input front to back; zeros once it is used up.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
}

/// What the model knows of one connection slot.
#[derive(Default)]
struct Peer {
    /// The connection's id in the cluster; a lost link's slot gets a new id.
    id: ConnId,
    /// The peer opened `LNK_CONN` and the cluster took it.
    conn_open: bool,
    /// Spans the peer opened that the cluster holds (msgids).
    spans: BTreeSet<u64>,
    /// Opens not sent yet.
    queued: VecDeque<(RelayId, LnkSpan)>,
    /// Our spans the peer holds: msgid -> relay.
    relays: BTreeMap<u64, RelayId>,
    /// Our next msgid on this connection.
    next_msgid: u64,
}

/// Span labels the fuzzer picks from: few, so that nodes are shared by many links.
const LABELS: [&[u8]; 5] = [b"a", b"b", b"c", b"d", b"\xff"];
/// Dists the fuzzer picks from, around the horizon and the extremes.
const DISTS: [u32; 8] = [0, 1, 2, 15, 16, 17, 0x7FFF_FFFF, u32::MAX];
/// Peer types of spans and `LNK_CONN`s: the named ones and one without a mask bit.
const TYPES: [PeerType; 6] = [
    PeerType::NONE,
    PeerType::ROUTER,
    PeerType::BLOCK,
    PeerType::HAMMER2,
    PeerType::CLIENT,
    PeerType(64),
];

fn span_from(input: &mut Input<'_>) -> (LnkSpan, WireOrder) {
    let b = input.byte();
    let mut span = LnkSpan::new();
    span.set_peer_type(TYPES[usize::from(b) % TYPES.len()]);
    span.pfs_label[0] = LABELS[usize::from(b >> 3) % LABELS.len()][0];
    if b & 0x80 != 0 {
        span.peer_id = Uuid([7; 16]);
    }
    let order = if input.byte() & 1 == 0 {
        WireOrder::Little
    } else {
        WireOrder::Big
    };
    let d = input.byte();
    span.set_dist(DISTS[usize::from(d) % DISTS.len()], order);
    span.set_rnss(u32::from(d).wrapping_mul(0x0101_0101), order);
    (span, order)
}

fn conn_from(input: &mut Input<'_>) -> (LnkConn, WireOrder) {
    let b = input.byte();
    let mut conn = LnkConn::new();
    conn.set_peer_type(TYPES[usize::from(b) % TYPES.len()]);
    let mask = match b >> 4 {
        0..=9 => u64::MAX,
        m => 1u64 << (m & 3),
    };
    conn.set_peer_mask(mask, WireOrder::Little);
    if b & 0x08 != 0 {
        conn.peer_id = Uuid([7; 16]);
    }
    (conn, WireOrder::Little)
}

/// What a run reached, so that a seeded run can show it tested what it claims.
#[derive(Clone, Copy, Debug, Default)]
pub struct PumpReach {
    /// Most relays held at once.
    pub relays: usize,
    /// Most links held at once.
    pub links: usize,
    /// Inputs refused for want of room.
    pub refused: u64,
    /// Relays deferred for want of room.
    pub deferred: u64,
    /// Spans the model's peers were sent.
    pub sent: u64,
    /// Our spans closed (queued opens taken back included).
    pub closed: u64,
}

/// The fuzz body.
pub fn cluster_pump(data: &[u8]) -> PumpReach {
    let mut reach = PumpReach::default();
    let mut input = Input(data);
    let rself = NonZeroU32::new(u32::from(input.byte()) | 1).unwrap_or(NonZeroU32::MIN);
    let mut cluster: Cluster<Small> = Cluster::new(&Small::default(), rself);
    let mut peers: Vec<Peer> = (0..SLOTS)
        .map(|i| Peer {
            id: i as ConnId + 1,
            ..Peer::default()
        })
        .collect();
    let mut next_id = SLOTS as ConnId + 1;
    let mut registrations: Vec<Registration> = Vec::new();
    // Connections lost: nothing may stay on them.
    let mut retired: Vec<ConnId> = Vec::new();

    for _ in 0..MAX_STEPS {
        if input.0.is_empty() {
            break;
        }
        let op = input.byte();
        let slot = usize::from(op >> 4) % SLOTS;
        let conn = peers[slot].id;
        let mut actions = Vec::new();
        let mut closed = None;
        let mut out = |a| actions.push(a);
        match op & 0x0F {
            0 | 1 => {
                let (filter, order) = conn_from(&mut input);
                let had = peers[slot].conn_open;
                match cluster.input(conn, &SpanInput::ConnOpened(filter, order), &mut out) {
                    Ok(()) => {
                        assert!(!had, "a second LNK_CONN taken");
                        peers[slot].conn_open = true;
                    }
                    Err(ClusterError::Duplicate) => assert!(had),
                    Err(ClusterError::Full(_)) => assert!(!had),
                    Err(e) => panic!("LNK_CONN refused: {e}"),
                }
            }
            2 => {
                // The closes of our relays on it come first; the conn is gone after them.
                let _ = cluster.input(conn, &SpanInput::ConnClosed, &mut out);
                closed = Some(slot);
            }
            3..=5 => {
                let msgid = u64::from(input.byte() % 16);
                let (span, order) = span_from(&mut input);
                let had = peers[slot].spans.contains(&msgid);
                match cluster.input(conn, &SpanInput::SpanOpened(msgid, span, order), &mut out) {
                    Ok(()) => {
                        assert!(!had, "a msgid open twice");
                        peers[slot].spans.insert(msgid);
                    }
                    Err(ClusterError::Duplicate) => assert!(had),
                    Err(ClusterError::Full(_)) => {}
                    Err(e) => panic!("span refused: {e}"),
                }
            }
            6 | 7 => {
                let msgid = u64::from(input.byte() % 16);
                let had = peers[slot].spans.remove(&msgid);
                let r = cluster.input(conn, &SpanInput::SpanWithdrawn(msgid), &mut out);
                assert_eq!(r.is_ok(), had, "withdrawal of {msgid}: {r:?}");
            }
            8 => {
                // The peer closes one of our spans (or names one it never got).
                let pick = usize::from(input.byte());
                let relays = &peers[slot].relays;
                let msgid = match relays.keys().nth(pick % (relays.len() + 1)) {
                    Some(&m) => m,
                    None => 1000 + pick as u64,
                };
                let had = relays.contains_key(&msgid);
                let r = cluster.input(conn, &SpanInput::RelayClosed(msgid), &mut out);
                assert_eq!(r.is_ok(), had, "relay close of {msgid}: {r:?}");
            }
            9 => {
                cluster.link_down(conn, &mut out);
                retired.push(conn);
                // The slot's next connection is a new one.
                peers[slot] = Peer {
                    id: next_id,
                    ..Peer::default()
                };
                next_id += 1;
            }
            10 | 11 => {
                // Send the queued opens (or fail some, when the fuzzer says).
                let fail = input.byte();
                let peer = &mut peers[slot];
                let mut i = 0;
                while let Some((relay, span)) = peer.queued.pop_front() {
                    assert!(span.dist(WireOrder::Little) <= DMSG_SPAN_MAXDIST + 1);
                    if fail >> (i % 8) & 1 != 0 && fail & 0x80 != 0 {
                        cluster.relay_failed(relay);
                    } else {
                        peer.next_msgid += 1;
                        reach.sent += 1;
                        assert!(cluster.relay_opened(relay, peer.next_msgid));
                        peer.relays.insert(peer.next_msgid, relay);
                    }
                    i += 1;
                }
            }
            12 => {
                let (span, _) = span_from(&mut input);
                if let Ok(reg) = cluster.register(&span, &mut out) {
                    registrations.push(reg);
                }
            }
            13 => {
                if let Some(reg) = registrations.pop() {
                    assert!(cluster.unregister(reg, &mut out).is_ok());
                }
            }
            _ => cluster.rescan(&mut out),
        }
        reach.closed += actions
            .iter()
            .filter(|a| matches!(a, Action::CloseSpan { .. }))
            .count() as u64;
        apply(&mut peers, actions);
        if let Some(slot) = closed {
            let peer = &mut peers[slot];
            assert!(peer.relays.is_empty() && peer.queued.is_empty());
            peer.conn_open = false;
        }
        let (links, relays) = check(&cluster, &peers);
        for &gone in &retired {
            assert_eq!(cluster.relays_on(gone), 0, "a relay on lost conn {gone}");
            assert_eq!(
                cluster.links_via(Via::Conn(gone)),
                0,
                "a link from lost conn {gone}"
            );
            assert!(!cluster.has_conn(gone));
        }
        reach.links = reach.links.max(links);
        reach.relays = reach.relays.max(relays);
    }
    reach.refused = cluster.stats().refused;
    reach.deferred = cluster.stats().relays_deferred;
    reach
}

/// Carries out the cluster's actions on the model: opens wait in their connection's
/// queue; a close takes back a queued open or removes a sent span.
fn apply(peers: &mut [Peer], actions: Vec<Action>) {
    for action in actions {
        let peer = peers
            .iter_mut()
            .find(|p| p.id == action.conn())
            .unwrap_or_else(|| panic!("an action for a connection that is gone: {action:?}"));
        assert!(peer.conn_open, "an action for a conn without LNK_CONN");
        match action {
            Action::OpenSpan { relay, span, .. } => peer.queued.push_back((relay, span)),
            Action::CloseSpan {
                relay, msgid: None, ..
            } => {
                let at = peer.queued.iter().position(|(r, _)| *r == relay);
                let at = at.unwrap_or_else(|| panic!("close of an open never queued: {relay:?}"));
                peer.queued.remove(at);
            }
            Action::CloseSpan {
                relay,
                msgid: Some(m),
                ..
            } => {
                let held = peer.relays.remove(&m);
                assert_eq!(held, Some(relay), "close of a span the peer does not hold");
            }
            Action::Terminate { .. } | Action::RequestSeqno { .. } => {
                panic!("nothing is routed and the loop guard is off: {action:?}")
            }
        }
    }
}

/// The invariants of the module docs; returns the links and relays held.
fn check(cluster: &Cluster<Small>, peers: &[Peer]) -> (usize, usize) {
    let (mut nodes, mut links, mut relays) = (0, 0, 0);
    // Relays the cluster holds per conn.
    let mut held: BTreeMap<ConnId, usize> = BTreeMap::new();
    for node in cluster.nodes() {
        nodes += 1;
        let mut n_links = 0;
        for link in node.links() {
            n_links += 1;
            links += 1;
            if let Via::Conn(c) = link.via() {
                let peer = peers.iter().find(|p| p.id == c);
                assert!(
                    peer.is_some_and(|p| p.spans.contains(&link.msgid())),
                    "a link from a connection that is gone, or withdrawn"
                );
            }
            for (conn, relay, msgid) in link.relays() {
                relays += 1;
                assert_ne!(
                    link.via(),
                    Via::Conn(conn),
                    "a relay back on its source's conn"
                );
                assert!(
                    link.dist() <= DMSG_SPAN_MAXDIST,
                    "a relay beyond the horizon"
                );
                let peer = peers.iter().find(|p| p.id == conn);
                let peer = peer.unwrap_or_else(|| panic!("a relay on a gone conn {conn}"));
                assert!(peer.conn_open, "a relay on a conn without LNK_CONN");
                match msgid {
                    Some(m) => assert_eq!(peer.relays.get(&m), Some(&relay)),
                    None => assert!(peer.queued.iter().any(|(r, _)| *r == relay)),
                }
                *held.entry(conn).or_default() += 1;
            }
        }
        assert!(n_links > 0, "a node without links");
    }
    assert!(nodes <= NODES && links <= LINKS && relays <= RELAYS);
    for p in peers {
        // Everything the peer holds from us is a relay of the cluster, and the other
        // way round (checked above): counts equal.
        let ours = held.get(&p.id).copied().unwrap_or(0);
        assert_eq!(
            ours,
            p.relays.len() + p.queued.len(),
            "relays on conn {}",
            p.id
        );
        assert_eq!(cluster.relays_on(p.id), ours);
        assert_eq!(cluster.links_via(Via::Conn(p.id)), p.spans.len());
        assert_eq!(cluster.has_conn(p.id), p.conn_open);
    }
    (links, relays)
}
