//! The relay rules of dmsg.md 5.4–5.5 on small graphs of clusters joined by an ideal
//! network (every message delivered in order, at once). Expected distances come from a
//! breadth-first search, expected sub-sorts from summing each relaying node's `rself`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code"
)]

extern crate std;

use std::collections::VecDeque;
use std::vec;
use std::vec::Vec;

use super::*;
use crate::wire::{LnkConn, LnkSpan, PeerType, Uuid, WireOrder};

type Small = Fixed<8, 16, 64, 64, 16, 16>;
const LE: WireOrder = WireOrder::Little;

fn rself(node: usize) -> core::num::NonZeroU32 {
    // Distinct, and large enough that sums wrap.
    core::num::NonZeroU32::new(0x9E37_79B9u32.wrapping_mul(node as u32 + 1) | 1).unwrap()
}

fn conn_filter(peer_type: PeerType, mask: u64) -> LnkConn {
    let mut c = LnkConn::new();
    c.set_peer_type(peer_type);
    c.set_peer_mask(mask, LE);
    c
}

fn registration(label: &[u8], peer_type: PeerType) -> LnkSpan {
    let mut s = LnkSpan::new();
    s.set_peer_type(peer_type);
    s.set_peer_label(b"cluster").unwrap();
    s.set_pfs_label(label).unwrap();
    s.set_proto_version(1, LE);
    s
}

/// A message between two clusters: the span payloads and closes a relay sends.
#[derive(Debug)]
#[allow(clippy::large_enum_variant, reason = "test code")]
enum Msg {
    Open(u64, LnkSpan),
    Close(u64),
    /// An `LNK_SEQREQ` under the receiver's span with this msgid (5.9).
    SeqReq(u64),
}

/// Clusters joined by links; conn ids are the neighbour's index.
struct Net {
    nodes: Vec<Cluster<Small>>,
    up: Vec<(usize, usize)>,
    wire: VecDeque<(usize, usize, Msg)>,
    sent: usize,
    /// The largest `dist` any span was sent with.
    max_dist_sent: u32,
}

impl Net {
    fn new(n: usize) -> Self {
        Self {
            nodes: (0..n)
                .map(|i| Cluster::new(&Small::default(), rself(i)))
                .collect(),
            up: Vec::new(),
            wire: VecDeque::new(),
            sent: 0,
            max_dist_sent: 0,
        }
    }

    /// The same, every node with the loop guard (5.9).
    fn guarded(n: usize) -> Self {
        let mut net = Self::new(n);
        for c in &mut net.nodes {
            c.set_loop_guard(true);
        }
        net
    }

    /// Carries out one batch of `node`'s actions: an open cancelled by a close in the
    /// same batch is never sent.
    fn apply(&mut self, node: usize, actions: Vec<Action>) {
        for (i, action) in actions.iter().enumerate() {
            match action {
                Action::OpenSpan { conn, relay, span } => {
                    let cancelled = actions[i + 1..].iter().any(|a| {
                        matches!(a, Action::CloseSpan { relay: r, msgid: None, .. } if r == relay)
                    });
                    if cancelled {
                        continue;
                    }
                    assert!(self.nodes[node].relay_opened(*relay, relay.0));
                    self.max_dist_sent = self.max_dist_sent.max(span.dist(LE));
                    self.send(node, *conn as usize, Msg::Open(relay.0, *span));
                }
                Action::CloseSpan { conn, relay, msgid } => {
                    if msgid.is_some() {
                        assert_eq!(*msgid, Some(relay.0));
                        self.send(node, *conn as usize, Msg::Close(relay.0));
                    }
                }
                Action::Terminate { .. } => panic!("no routed transactions here: {action:?}"),
                Action::RequestSeqno { conn, under } => {
                    self.send(node, *conn as usize, Msg::SeqReq(*under));
                }
            }
        }
    }

    fn send(&mut self, from: usize, to: usize, msg: Msg) {
        if self.up.contains(&(from.min(to), from.max(to))) {
            self.sent += 1;
            self.wire.push_back((from, to, msg));
        }
    }

    fn with<R>(
        &mut self,
        node: usize,
        f: impl FnOnce(&mut Cluster<Small>, &mut dyn FnMut(Action)) -> R,
    ) -> R {
        let mut actions = Vec::new();
        let r = f(&mut self.nodes[node], &mut |a| actions.push(a));
        self.apply(node, actions);
        r
    }

    fn run(&mut self) {
        while let Some((from, to, msg)) = self.wire.pop_front() {
            match msg {
                Msg::Open(msgid, span) => self
                    .with(to, |c, out| {
                        c.span_received(from as u64, msgid, &span, LE, &mut |a| out(a))
                    })
                    .unwrap(),
                Msg::Close(msgid) => self
                    .with(to, |c, out| {
                        c.span_withdrawn(from as u64, msgid, &mut |a| out(a))
                    })
                    .unwrap(),
                // Routed as a relay routes it (5.8): on to the span's source, or handled
                // by the originator; a request under a span that is gone dies.
                Msg::SeqReq(msgid) => match self.nodes[to].relay_source(from as u64, msgid) {
                    Some((Via::Local, reg)) => {
                        self.with(to, |c, out| c.bump(Registration(reg), &mut |a| out(a)))
                            .unwrap();
                    }
                    Some((Via::Conn(next), src)) => {
                        self.send(to, next as usize, Msg::SeqReq(src));
                    }
                    None => {}
                },
            }
        }
    }

    /// Joins `a` and `b` as two routers wanting every span type.
    fn join(&mut self, a: usize, b: usize) {
        self.up.push((a.min(b), a.max(b)));
        self.join_as(a, b, conn_filter(PeerType::ROUTER, u64::MAX));
        self.join_as(b, a, conn_filter(PeerType::ROUTER, u64::MAX));
        self.run();
    }

    /// `peer`'s LNK_CONN, with `filter`, arrives at `node`.
    fn join_as(&mut self, node: usize, peer: usize, filter: LnkConn) {
        self.with(node, |c, out| {
            c.conn_opened(peer as u64, &filter, LE, &mut |a| out(a))
        })
        .unwrap();
    }

    fn cut(&mut self, a: usize, b: usize) {
        self.up.retain(|&e| e != (a.min(b), a.max(b)));
        self.wire
            .retain(|&(f, t, _)| (f, t) != (a, b) && (f, t) != (b, a));
        self.with(a, |c, out| c.link_down(b as u64, &mut |x| out(x)));
        self.with(b, |c, out| c.link_down(a as u64, &mut |x| out(x)));
        self.run();
    }

    fn register(&mut self, node: usize, label: &[u8]) -> Registration {
        let r = self
            .with(node, |c, out| {
                c.register(&registration(label, PeerType::HAMMER2), &mut |a| out(a))
            })
            .unwrap();
        self.run();
        r
    }

    /// Each node's (pfs_label, best dist, best via, best rnss, number of links).
    fn best(&self, node: usize) -> Vec<(Vec<u8>, u32, Via, u32, usize)> {
        self.nodes[node]
            .nodes()
            .map(|n| {
                let links: Vec<_> = n.links().collect();
                let b = &links[0];
                (
                    n.span().pfs_label().to_vec(),
                    b.dist(),
                    b.via(),
                    b.rnss(),
                    links.len(),
                )
            })
            .collect()
    }

    /// Hop counts from `src` over the links that are up.
    fn bfs(&self, src: usize) -> Vec<Option<u32>> {
        let mut dist = vec![None; self.nodes.len()];
        dist[src] = Some(0);
        let mut q = VecDeque::from([src]);
        while let Some(u) = q.pop_front() {
            for &(a, b) in &self.up {
                let v = if a == u {
                    b
                } else if b == u {
                    a
                } else {
                    continue;
                };
                if dist[v].is_none() {
                    dist[v] = Some(dist[u].unwrap() + 1);
                    q.push_back(v);
                }
            }
        }
        dist
    }

    /// Every node sees the registration of `src` at its BFS distance (while ≤ 17), and
    /// nothing beyond; no relay goes back on the link its source came from.
    fn check_converged(&self, src: usize, label: &[u8]) {
        for (node, d) in self.bfs(src).into_iter().enumerate() {
            let best = self.best(node);
            let entry: Vec<_> = best.iter().filter(|b| b.0 == label).collect();
            match d {
                Some(d) if d <= DMSG_SPAN_MAXDIST + 1 => {
                    assert_eq!(
                        entry.len(),
                        1,
                        "node {node}: one entry for the registration"
                    );
                    assert_eq!(entry[0].1, d, "node {node}: dist is the hop count");
                }
                _ => assert!(
                    entry.is_empty(),
                    "node {node}: nothing unreachable survives"
                ),
            }
            for n in self.nodes[node].nodes() {
                for l in n.links() {
                    for (conn, _, _) in l.relays() {
                        assert_ne!(l.via(), Via::Conn(conn), "node {node}: split horizon");
                    }
                }
            }
        }
    }
}

/// dmsg.md 5.4 on a line A–B–C: B hears A's registration at 1, C at 2; nothing is
/// relayed back; each hop adds its own `rself` to `rnss`.
#[test]
fn a_line_of_three_relays_one_hop_at_a_time() {
    let mut net = Net::new(3);
    net.join(0, 1);
    net.join(1, 2);
    net.register(0, b"r0");
    assert_eq!(net.best(0), vec![(b"r0".to_vec(), 0, Via::Local, 0, 1)]);
    let r0 = rself(0).get();
    let r1 = rself(1).get();
    assert_eq!(net.best(1), vec![(b"r0".to_vec(), 1, Via::Conn(0), r0, 1)]);
    assert_eq!(
        net.best(2),
        vec![(b"r0".to_vec(), 2, Via::Conn(1), r0.wrapping_add(r1), 1)]
    );
    // One span A→B, one B→C: none back (split horizon), none past the line's end.
    assert_eq!(net.sent, 2);
    assert_eq!(net.nodes[0].relays_on(1), 1);
    assert_eq!(net.nodes[1].relays_on(0), 0);
    assert_eq!(net.nodes[1].relays_on(2), 1);
    assert_eq!(net.nodes[2].relays_on(1), 0);
    assert_eq!(net.nodes[2].links_via(Via::Conn(1)), 1);
    net.check_converged(0, b"r0");
}

/// A relayed payload is the source's, byte for byte, but `dist` + 1 and `rnss` + rself.
#[test]
fn a_relay_copies_the_payload_and_changes_only_dist_and_rnss() {
    let mut c: Cluster<Small> = Cluster::new(&Small::default(), rself(7));
    let mut got = Vec::new();
    c.conn_opened(1, &conn_filter(PeerType::ROUTER, u64::MAX), LE, &mut |a| {
        got.push(a)
    })
    .unwrap();
    let mut span = registration(b"pfs", PeerType::HAMMER2);
    span.peer_id = Uuid::from_bytes([7; 16]);
    span.media[0] = 0xAB;
    span.status = [1, 2, 3, 4];
    span.set_dist(4, LE);
    span.set_rnss(0xFFFF_FFFF, LE);
    c.span_received(2, 9, &span, LE, &mut |a| got.push(a))
        .unwrap();
    let [
        Action::OpenSpan {
            conn: 1,
            span: sent,
            ..
        },
    ] = got.as_slice()
    else {
        panic!("one relay to conn 1: {got:?}")
    };
    let mut expected = span;
    expected.set_dist(5, LE);
    expected.set_rnss(0xFFFF_FFFFu32.wrapping_add(rself(7).get()), LE);
    assert_eq!(sent, &expected);
}

/// Equal distances: the lower `rnss` wins (dmsg.md 5.3); with equal `rnss` too, the
/// earlier arrival (D17).
#[test]
fn ties_are_broken_by_rnss_then_arrival() {
    // Ring of 4: node 2 hears node 0's registration at dist 2 via 1 and via 3.
    let mut net = Net::new(4);
    for (a, b) in [(0, 1), (1, 2), (2, 3), (3, 0)] {
        net.join(a, b);
    }
    net.register(0, b"r");
    let r0 = rself(0).get();
    let via1 = r0.wrapping_add(rself(1).get());
    let via3 = r0.wrapping_add(rself(3).get());
    let best = net.best(2);
    let expected_via = if via1 < via3 { 1 } else { 3 };
    assert_eq!(best.len(), 1);
    assert_eq!(
        (best[0].1, best[0].2, best[0].4),
        (2, Via::Conn(expected_via), 2)
    );
    net.check_converged(0, b"r");

    // Same rnss from two conns: arrival order decides.
    let mut c: Cluster<Small> = Cluster::new(&Small::default(), rself(0));
    let span = registration(b"r", PeerType::HAMMER2);
    for (conn, msgid) in [(5u64, 50u64), (4, 40)] {
        c.span_received(conn, msgid, &span, LE, &mut |_| {})
            .unwrap();
    }
    let node = c.nodes().next().unwrap();
    let vias: Vec<_> = node.links().map(|l| l.via()).collect();
    assert_eq!(vias, vec![Via::Conn(5), Via::Conn(4)]);
}

/// A better link: the new relay is opened before the old one is closed; losing the best
/// link: the old relay is closed, then one from the next link opened (dmsg.md 5.4).
#[test]
fn a_better_route_is_made_before_the_old_one_is_broken() {
    let mut c: Cluster<Small> = Cluster::new(&Small::default(), rself(0));
    let mut got = Vec::new();
    c.conn_opened(1, &conn_filter(PeerType::ROUTER, u64::MAX), LE, &mut |a| {
        got.push(a)
    })
    .unwrap();
    let mut far = registration(b"r", PeerType::HAMMER2);
    far.set_dist(3, LE);
    c.span_received(2, 20, &far, LE, &mut |a| got.push(a))
        .unwrap();
    let Some(Action::OpenSpan { relay: old, .. }) = got.pop() else {
        panic!("a relay")
    };
    assert!(c.relay_opened(old, 100));
    let mut near = far;
    near.set_dist(1, LE);
    c.span_received(3, 30, &near, LE, &mut |a| got.push(a))
        .unwrap();
    match got.as_slice() {
        [
            Action::OpenSpan {
                conn: 1,
                relay: new,
                span,
            },
            Action::CloseSpan {
                conn: 1,
                relay,
                msgid: Some(100),
            },
        ] => {
            assert_eq!(span.dist(LE), 2);
            assert_eq!(*relay, old);
            assert_ne!(*new, old);
        }
        other => panic!("open then close: {other:?}"),
    }
    let Action::OpenSpan { relay: new, .. } = got[0].clone() else {
        unreachable!()
    };
    assert!(c.relay_opened(new, 101));
    got.clear();
    c.span_withdrawn(3, 30, &mut |a| got.push(a)).unwrap();
    match got.as_slice() {
        [
            Action::CloseSpan {
                conn: 1,
                msgid: Some(101),
                ..
            },
            Action::OpenSpan { conn: 1, span, .. },
        ] => {
            assert_eq!(span.dist(LE), 4);
        }
        other => panic!("close then open from the next link: {other:?}"),
    }
}

/// A cut in a ring of 5 reroutes the long way round; healing restores the short way.
#[test]
fn a_cut_in_a_ring_reroutes_and_a_heal_restores() {
    let mut net = Net::new(5);
    for i in 0..5 {
        net.join(i, (i + 1) % 5);
    }
    net.register(0, b"r");
    net.check_converged(0, b"r");
    assert_eq!(net.best(1)[0].1, 1);
    net.cut(0, 1);
    net.check_converged(0, b"r");
    assert_eq!((net.best(1)[0].1, net.best(1)[0].2), (4, Via::Conn(2)));
    net.join(0, 1);
    net.check_converged(0, b"r");
    assert_eq!((net.best(1)[0].1, net.best(1)[0].2), (1, Via::Conn(0)));
    // A cut that splits the graph leaves nothing behind on the far side.
    net.cut(0, 1);
    net.cut(0, 4);
    net.check_converged(0, b"r");
    for node in 1..5 {
        assert!(net.best(node).is_empty(), "node {node}");
    }
}

/// dmsg.md 5.4: a node holding `dist` 17 does not relay it; 17 is the largest sent.
#[test]
fn seventeen_hops_is_the_horizon() {
    let n = 20;
    let mut net = Net::new(n);
    for i in 0..n - 1 {
        net.join(i, i + 1);
    }
    net.register(0, b"r");
    for node in 0..n {
        let best = net.best(node);
        if node <= 17 {
            assert_eq!(best[0].1, node as u32, "node {node}");
        } else {
            assert!(best.is_empty(), "node {node} is past the horizon");
        }
    }
    assert_eq!(net.nodes[17].relays_on(18), 0);
    assert_eq!(net.nodes[16].relays_on(17), 1);
}

/// The filters stop a relay: CLIENT spans never reach a CLIENT, a `peer_mask` without
/// the span's type, a CLIENT's `peer_id` filter; types of 64 and above are filtered (D13).
#[test]
fn filters_stop_relays() {
    let client = PeerType::CLIENT;
    let cases: [(PeerType, u64, Uuid, PeerType, Uuid, bool); 7] = [
        (
            PeerType::ROUTER,
            u64::MAX,
            Uuid::NIL,
            PeerType::HAMMER2,
            Uuid::NIL,
            true,
        ),
        (client, u64::MAX, Uuid::NIL, client, Uuid::NIL, false),
        (
            client,
            u64::MAX,
            Uuid::NIL,
            PeerType::HAMMER2,
            Uuid::NIL,
            true,
        ),
        (
            PeerType::HAMMER2,
            1 << 3,
            Uuid::NIL,
            PeerType::BLOCK,
            Uuid::NIL,
            false,
        ),
        (
            PeerType::HAMMER2,
            1 << 3,
            Uuid::NIL,
            PeerType::HAMMER2,
            Uuid::NIL,
            true,
        ),
        (
            client,
            u64::MAX,
            Uuid::from_bytes([1; 16]),
            PeerType::HAMMER2,
            Uuid::from_bytes([2; 16]),
            false,
        ),
        (
            PeerType::ROUTER,
            u64::MAX,
            Uuid::NIL,
            PeerType(64),
            Uuid::NIL,
            false,
        ),
    ];
    for (i, (conn_type, mask, conn_id, span_type, span_id, relayed)) in
        cases.into_iter().enumerate()
    {
        let mut c: Cluster<Small> = Cluster::new(&Small::default(), rself(0));
        let mut filter = conn_filter(conn_type, mask);
        filter.peer_id = conn_id;
        c.conn_opened(1, &filter, LE, &mut |_| {}).unwrap();
        let mut span = registration(b"r", span_type);
        span.peer_id = span_id;
        let mut opens = 0;
        c.span_received(2, 1, &span, LE, &mut |a| {
            opens += usize::from(matches!(a, Action::OpenSpan { .. }))
        })
        .unwrap();
        assert_eq!(opens == 1, relayed, "case {i}");
        // A CLIENT whose peer_id matches gets the span.
        if i == 5 {
            let mut c: Cluster<Small> = Cluster::new(&Small::default(), rself(0));
            filter.peer_id = span_id;
            c.conn_opened(1, &filter, LE, &mut |_| {}).unwrap();
            let mut opens = 0;
            c.span_received(2, 1, &span, LE, &mut |a| {
                opens += usize::from(matches!(a, Action::OpenSpan { .. }))
            })
            .unwrap();
            assert_eq!(opens, 1);
        }
    }
}

/// Hostile input: full tables refuse without a change, unknown withdrawals are
/// refused, extreme `dist` values are kept but never relayed, labels without NUL are
/// cut, a span reopened in a loop leaves nothing behind.
#[test]
fn hostile_spans_are_bounded_and_refused_cleanly() {
    let mut c: Cluster<Fixed<2, 4, 8, 4, 8, 4>> = Cluster::new(&Fixed, rself(0));
    c.conn_opened(1, &conn_filter(PeerType::ROUTER, u64::MAX), LE, &mut |_| {})
        .unwrap();
    assert_eq!(
        c.conn_opened(1, &conn_filter(PeerType::ROUTER, 0), LE, &mut |_| {}),
        Err(ClusterError::Duplicate)
    );
    let mut opened = 0;
    for i in 0..10u64 {
        let mut span = registration(b"n", PeerType::HAMMER2);
        span.pfs_id = Uuid::from_bytes([i as u8; 16]);
        let r = c.span_received(2, i, &span, LE, &mut |a| {
            opened += usize::from(matches!(a, Action::OpenSpan { .. }))
        });
        if i < 4 {
            r.unwrap();
        } else {
            assert_eq!(r, Err(ClusterError::Full(TableName::Nodes)), "span {i}");
        }
    }
    assert_eq!(c.nodes().count(), 4);
    assert_eq!(opened, 4);
    assert_eq!(c.stats().refused, 6);
    assert_eq!(
        c.span_withdrawn(2, 99, &mut |_| {}),
        Err(ClusterError::Unknown)
    );
    assert_eq!(
        c.span_withdrawn(9, 0, &mut |_| {}),
        Err(ClusterError::Unknown)
    );
    assert_eq!(
        c.span_received(
            2,
            0,
            &registration(b"x", PeerType::HAMMER2),
            LE,
            &mut |_| {}
        ),
        Err(ClusterError::Duplicate)
    );

    let mut c: Cluster<Small> = Cluster::new(&Small::default(), rself(0));
    c.conn_opened(1, &conn_filter(PeerType::ROUTER, u64::MAX), LE, &mut |_| {})
        .unwrap();
    for (msgid, dist) in [(1u64, 0u32), (2, 0xFFFF_FFFF), (3, 17)] {
        let mut span = registration(b"far", PeerType::HAMMER2);
        span.pfs_id = Uuid::from_bytes([msgid as u8; 16]);
        span.set_dist(dist, LE);
        let mut opens = 0;
        c.span_received(2, msgid, &span, LE, &mut |a| {
            opens += usize::from(matches!(a, Action::OpenSpan { .. }))
        })
        .unwrap();
        assert_eq!(opens, usize::from(dist <= DMSG_SPAN_MAXDIST), "dist {dist}");
    }
    let mut unterminated = registration(b"", PeerType::HAMMER2);
    unterminated.pfs_label = [b'x'; 128];
    c.span_received(2, 4, &unterminated, LE, &mut |_| {})
        .unwrap();
    assert!(c.nodes().any(|n| n.span().pfs_label() == [b'x'; 127]));
    // Open and close the same span a thousand times: no growth, every relay closed.
    let before = (c.nodes().count(), c.relays_on(1));
    let mut balance = 0i64;
    for _ in 0..1000 {
        let span = registration(b"loop", PeerType::HAMMER2);
        let mut count = |a: Action| match a {
            Action::OpenSpan { .. } => balance += 1,
            Action::CloseSpan { .. } => balance -= 1,
            Action::Terminate { .. } | Action::RequestSeqno { .. } => panic!("nothing routed"),
        };
        c.span_received(2, 77, &span, LE, &mut count).unwrap();
        c.span_withdrawn(2, 77, &mut count).unwrap();
    }
    assert_eq!(balance, 0);
    assert_eq!((c.nodes().count(), c.relays_on(1)), before);
}

/// A link lost withdraws everything received on it; a closed LNK_CONN closes every relay
/// sent on it but keeps what came from it (dmsg.md 5.2).
#[test]
fn conn_close_and_link_loss_clean_up() {
    let mut c: Cluster<Small> = Cluster::new(&Small::default(), rself(0));
    for conn in [1, 2] {
        c.conn_opened(
            conn,
            &conn_filter(PeerType::ROUTER, u64::MAX),
            LE,
            &mut |_| {},
        )
        .unwrap();
    }
    let mut relays = Vec::new();
    for (conn, label) in [(1u64, b"a"), (2, b"b")] {
        c.span_received(
            conn,
            5,
            &registration(label, PeerType::HAMMER2),
            LE,
            &mut |a| {
                if let Action::OpenSpan { relay, .. } = a {
                    relays.push(relay);
                }
            },
        )
        .unwrap();
    }
    for (i, r) in relays.iter().enumerate() {
        assert!(c.relay_opened(*r, 1000 + i as u64));
    }
    assert_eq!((c.relays_on(1), c.relays_on(2)), (1, 1));
    let mut closes = Vec::new();
    c.conn_closed(1, &mut |a| closes.push(a));
    assert_eq!(
        closes,
        vec![Action::CloseSpan {
            conn: 1,
            relay: relays[1],
            msgid: Some(1001)
        }]
    );
    assert_eq!((c.relays_on(1), c.links_via(Via::Conn(1))), (0, 1));
    // Link 1 lost: its span "a" goes, and with it the relay of "a" on conn 2.
    let mut got = Vec::new();
    c.link_down(1, &mut |a| got.push(a));
    assert_eq!(
        got,
        vec![Action::CloseSpan {
            conn: 2,
            relay: relays[0],
            msgid: Some(1000)
        }]
    );
    assert_eq!(c.nodes().count(), 1);
    assert_eq!(c.relay_source(2, 1000), None);
}

/// The receiver closing our relay: we close ours, and the next trigger reopens it.
#[test]
fn a_relay_closed_by_its_receiver_returns_at_the_next_trigger() {
    let mut c: Cluster<Small> = Cluster::new(&Small::default(), rself(0));
    c.conn_opened(1, &conn_filter(PeerType::ROUTER, u64::MAX), LE, &mut |_| {})
        .unwrap();
    let mut relay = None;
    c.span_received(2, 5, &registration(b"a", PeerType::HAMMER2), LE, &mut |a| {
        if let Action::OpenSpan { relay: r, .. } = a {
            relay = Some(r);
        }
    })
    .unwrap();
    assert!(c.relay_opened(relay.unwrap(), 42));
    assert_eq!(c.relay_source(1, 42), Some((Via::Conn(2), 5)));
    let mut got = Vec::new();
    c.relay_closed(1, 42, &mut |a| got.push(a)).unwrap();
    assert_eq!(
        got,
        vec![Action::CloseSpan {
            conn: 1,
            relay: relay.unwrap(),
            msgid: Some(42)
        }]
    );
    assert_eq!(c.relays_on(1), 0);
    got.clear();
    c.span_received(2, 6, &registration(b"b", PeerType::HAMMER2), LE, &mut |a| {
        got.push(a)
    })
    .unwrap();
    let opened: Vec<_> = got
        .iter()
        .filter_map(|a| match a {
            Action::OpenSpan { span, .. } => Some(span.pfs_label().to_vec()),
            Action::CloseSpan { .. } | Action::Terminate { .. } | Action::RequestSeqno { .. } => {
                None
            }
        })
        .collect();
    assert_eq!(opened, vec![b"a".to_vec(), b"b".to_vec()]);
}

/// A big-endian sender's payload is relayed little-endian, integers intact.
#[test]
fn a_big_endian_payload_is_relayed_little_endian() {
    let mut c: Cluster<Small> = Cluster::new(&Small::default(), rself(0));
    c.conn_opened(1, &conn_filter(PeerType::ROUTER, u64::MAX), LE, &mut |_| {})
        .unwrap();
    let be = WireOrder::Big;
    let mut span = registration(b"blk", PeerType::BLOCK);
    span.set_proto_version(1, be);
    span.set_dist(2, be);
    span.set_rnss(0x0102_0304, be);
    span.media[..8].copy_from_slice(&0x1122_3344_5566_7788u64.to_be_bytes());
    let mut sent = None;
    c.span_received(2, 1, &span, be, &mut |a| {
        if let Action::OpenSpan { span, .. } = a {
            sent = Some(span);
        }
    })
    .unwrap();
    let sent = sent.unwrap();
    assert_eq!(sent.proto_version(LE), 1);
    assert_eq!(sent.dist(LE), 3);
    assert_eq!(sent.rnss(LE), 0x0102_0304u32.wrapping_add(rself(0).get()));
    assert_eq!(sent.media[..8], 0x1122_3344_5566_7788u64.to_le_bytes());
}

/// A relay node R between a requester on conn 1 and a span's source on conn 2: R holds
/// the source's span `50` and relays it to conn 1 as msgid 7.
fn relay_node() -> Cluster<Small> {
    let mut c: Cluster<Small> = Cluster::new(&Small::default(), rself(0));
    c.conn_opened(1, &conn_filter(PeerType::ROUTER, u64::MAX), LE, &mut |_| {})
        .unwrap();
    let mut relay = None;
    c.span_received(
        2,
        50,
        &registration(b"far", PeerType::HAMMER2),
        LE,
        &mut |a| {
            if let Action::OpenSpan { relay: r, .. } = a {
                relay = Some(r);
            }
        },
    )
    .unwrap();
    assert!(c.relay_opened(relay.unwrap(), 7));
    c
}

/// dmsg.md 4.5: a transaction opened under our relay is routed to the span's source,
/// opened there under the source span; answers come back on the twin; once both halves
/// sent DELETE the twin is forgotten.
#[test]
fn a_transaction_under_a_relay_is_forwarded_to_the_span_source_and_back() {
    use crate::trans::DmsgKey;
    let mut c = relay_node();
    let Route::Forward {
        to: 2,
        twin,
        open_under: Some(under),
    } = c.route(1, DmsgKey::theirs(100), Some(DmsgKey::ours(7)), true)
    else {
        panic!("routed to conn 2")
    };
    assert_eq!(under, DmsgKey::theirs(50));
    assert_eq!(c.twin_key(twin, 2), None, "not opened yet");
    assert!(c.twin_opened(twin, 9));
    assert_eq!(c.twin_key(twin, 1), Some(DmsgKey::theirs(100)));
    assert_eq!(c.twin_key(twin, 2), Some(DmsgKey::ours(9)));
    // The far end's answer on our twin goes back to the requester, and the requester's
    // next element follows the twin (no second open).
    assert_eq!(
        c.route(2, DmsgKey::ours(9), Some(DmsgKey::theirs(50)), false),
        Route::Forward {
            to: 1,
            twin,
            open_under: None
        }
    );
    assert_eq!(
        c.route(1, DmsgKey::theirs(100), Some(DmsgKey::ours(7)), false),
        Route::Forward {
            to: 2,
            twin,
            open_under: None
        }
    );
    c.twin_forwarded(twin, 1, true);
    assert_eq!(c.twins(), 1, "one half still open");
    c.twin_forwarded(twin, 2, true);
    assert_eq!(c.twins(), 0);
    // Not routed: top level, under a span the peer sent us, or from our own side.
    assert_eq!(
        c.route(1, DmsgKey::theirs(101), None, true),
        Route::NotRouted
    );
    assert_eq!(
        c.route(2, DmsgKey::theirs(102), Some(DmsgKey::theirs(50)), true),
        Route::NotRouted
    );
    assert_eq!(
        c.route(1, DmsgKey::theirs(103), Some(DmsgKey::ours(99)), true),
        Route::NotRouted
    );
}

/// The route goes: the source span withdrawn ends both halves with LOSTLINK; a lost link
/// ends the half on the other link only.
#[test]
fn a_lost_route_ends_both_halves_and_frees_the_twin() {
    use crate::trans::DmsgKey;
    let mut c = relay_node();
    let Route::Forward { twin, .. } =
        c.route(1, DmsgKey::theirs(100), Some(DmsgKey::ours(7)), true)
    else {
        panic!("routed")
    };
    assert!(c.twin_opened(twin, 9));
    let mut got = Vec::new();
    c.span_withdrawn(2, 50, &mut |a| got.push(a)).unwrap();
    let terminated: Vec<_> = got
        .iter()
        .filter_map(|a| match a {
            Action::Terminate { conn, key, twin: t } if *t == twin => Some((*conn, *key)),
            _ => None,
        })
        .collect();
    assert_eq!(
        terminated,
        vec![(1, Some(DmsgKey::theirs(100))), (2, Some(DmsgKey::ours(9)))]
    );
    assert_eq!(c.twins(), 0);

    for (lost, survivor) in [(1u64, 2u64), (2, 1)] {
        let mut c = relay_node();
        let Route::Forward { twin, .. } =
            c.route(1, DmsgKey::theirs(100), Some(DmsgKey::ours(7)), true)
        else {
            panic!("routed")
        };
        assert!(c.twin_opened(twin, 9));
        let mut got = Vec::new();
        c.link_down(lost, &mut |a| got.push(a));
        let terminated: Vec<_> = got
            .iter()
            .filter_map(|a| match a {
                Action::Terminate { conn, .. } => Some(*conn),
                _ => None,
            })
            .collect();
        assert_eq!(terminated, vec![survivor], "link {lost} lost");
        assert_eq!(c.twins(), 0);
        assert!(
            !c.twin_opened(twin, 10),
            "a twin opened after its route went is refused"
        );
    }
}

/// Under our relay of our own registration, a transaction is ours to answer; a full twin
/// table refuses instead of dropping.
#[test]
fn routes_end_here_for_own_registrations_and_are_refused_when_full() {
    use crate::trans::DmsgKey;
    let mut c: Cluster<Fixed<2, 4, 8, 4, 8, 1>> = Cluster::new(&Fixed, rself(0));
    c.conn_opened(1, &conn_filter(PeerType::ROUTER, u64::MAX), LE, &mut |_| {})
        .unwrap();
    let mut relay = None;
    let reg = c
        .register(&registration(b"mine", PeerType::HAMMER2), &mut |a| {
            if let Action::OpenSpan { relay: r, .. } = a {
                relay = Some(r);
            }
        })
        .unwrap();
    assert!(c.relay_opened(relay.unwrap(), 3));
    assert_eq!(
        c.route(1, DmsgKey::theirs(5), Some(DmsgKey::ours(3)), true),
        Route::Local(reg)
    );
    assert_eq!(
        c.route_to(|s| s.pfs_label() == b"mine"),
        Some((Via::Local, reg.0))
    );
    assert_eq!(c.route_to(|s| s.pfs_label() == b"none"), None);

    c.span_received(
        1,
        60,
        &registration(b"other", PeerType::HAMMER2),
        LE,
        &mut |_| {},
    )
    .unwrap();
    c.conn_opened(2, &conn_filter(PeerType::ROUTER, u64::MAX), LE, &mut |_| {})
        .unwrap();
    let relays: Vec<_> = c
        .nodes()
        .flat_map(|n| {
            n.links()
                .flat_map(|l| l.relays().collect::<Vec<_>>())
                .collect::<Vec<_>>()
        })
        .filter(|(conn, _, _)| *conn == 2)
        .collect();
    // Conn 2 is sent both nodes: ours and the one from conn 1. Route under each.
    assert_eq!(relays.len(), 2);
    for (i, (_, r, _)) in relays.iter().enumerate() {
        assert!(c.relay_opened(*r, 20 + i as u64));
    }
    let routes: Vec<_> = (0..relays.len() as u64)
        .map(|i| {
            c.route(
                2,
                DmsgKey::theirs(70 + i),
                Some(DmsgKey::ours(20 + i)),
                true,
            )
        })
        .collect();
    assert!(
        routes.iter().any(|r| matches!(r, Route::Local(_))),
        "{routes:?}"
    );
    let forwarded = routes
        .iter()
        .filter(|r| matches!(r, Route::Forward { .. }))
        .count();
    assert_eq!(forwarded, 1, "{routes:?}");
    // The one twin slot is taken: the next routed open is refused.
    let forwarded_at = routes
        .iter()
        .position(|r| matches!(r, Route::Forward { .. }))
        .unwrap();
    let msgid = 20 + forwarded_at as u64;
    assert_eq!(
        c.route(2, DmsgKey::theirs(90), Some(DmsgKey::ours(msgid)), true),
        Route::Refused(ClusterError::Full(TableName::Twins))
    );
}

/// The count to 16 (5.9): O is attached to X, which closes a triangle X–Y–Z. When O's
/// link goes, libdmsg's rules let X's own advertisement come back around the triangle
/// and chase the withdrawal until 17; with the loop guard no span is sent further than
/// the registration ever was (dist 3), far fewer messages go, and the end state is the
/// same: nothing left.
#[test]
fn the_loop_guard_stops_the_count_to_sixteen() {
    let mut runs = Vec::new();
    for guard in [false, true] {
        let mut net = if guard { Net::guarded(4) } else { Net::new(4) };
        for (a, b) in [(0, 1), (1, 2), (2, 3), (3, 1)] {
            net.join(a, b);
        }
        net.register(0, b"r");
        net.check_converged(0, b"r");
        assert!(net.max_dist_sent <= 3);
        let before = net.sent;
        net.cut(0, 1);
        net.check_converged(0, b"r");
        runs.push((net.max_dist_sent, net.sent - before));
    }
    let [(plain_dist, plain_msgs), (guard_dist, guard_msgs)] = runs[..] else {
        unreachable!()
    };
    assert_eq!(
        plain_dist,
        DMSG_SPAN_MAXDIST + 1,
        "libdmsg's rules count to 17"
    );
    assert!(
        guard_dist <= 3,
        "the guard sends nothing further: {guard_dist}"
    );
    assert!(guard_msgs * 2 < plain_msgs, "{guard_msgs} vs {plain_msgs}");
}

/// With the guard, a longer route that is real is found again: after the ring's cut,
/// node 1 asks the originator for a new sequence over its only (infeasible) route, the
/// originator re-advertises, and every node ends at its BFS distance.
#[test]
fn with_the_loop_guard_a_cut_ring_reroutes_through_a_new_sequence() {
    let mut net = Net::guarded(5);
    for i in 0..5 {
        net.join(i, (i + 1) % 5);
    }
    net.register(0, b"r");
    net.check_converged(0, b"r");
    net.cut(0, 1);
    net.check_converged(0, b"r");
    assert_eq!((net.best(1)[0].1, net.best(1)[0].2), (4, Via::Conn(2)));
    net.join(0, 1);
    net.check_converged(0, b"r");
    // Cut off entirely: nothing survives anywhere, and tombstones stay out of the tree.
    net.cut(0, 1);
    net.cut(0, 4);
    net.check_converged(0, b"r");
    for node in 1..5 {
        assert!(net.best(node).is_empty(), "node {node}");
    }
}

/// The guard changes nothing on a loop-free graph or for libdmsg-originated spans: the
/// line and its 17-hop horizon behave as without it, and a span without a sequence is
/// never judged (after its best link goes, the next is used at once, however long).
#[test]
fn the_loop_guard_leaves_trees_and_libdmsg_spans_alone() {
    let n = 20;
    let mut net = Net::guarded(n);
    for i in 0..n - 1 {
        net.join(i, i + 1);
    }
    net.register(0, b"r");
    net.check_converged(0, b"r");
    assert_eq!(net.nodes[17].relays_on(18), 0);
    let mut c: Cluster<Small> = Cluster::new(&Small::default(), rself(0));
    c.set_loop_guard(true);
    c.conn_opened(1, &conn_filter(PeerType::ROUTER, u64::MAX), LE, &mut |_| {})
        .unwrap();
    let mut near = registration(b"x", PeerType::HAMMER2);
    near.set_dist(1, LE);
    let mut far = near;
    far.set_dist(9, LE);
    c.span_received(2, 1, &near, LE, &mut |_| {}).unwrap();
    c.span_received(3, 1, &far, LE, &mut |_| {}).unwrap();
    let mut opened = Vec::new();
    c.span_withdrawn(2, 1, &mut |a| {
        if let Action::OpenSpan { span, .. } = a {
            opened.push(span.dist(LE));
        }
    })
    .unwrap();
    assert_eq!(opened, vec![10]);
}

/// Twins are per transaction: a second request from the same connection gets its own
/// twin; a non-opening element that names no twin is not routed; ending one twin leaves
/// the other; a refusal is counted.
#[test]
fn each_routed_transaction_has_its_own_twin() {
    use crate::trans::DmsgKey;
    let mut c = relay_node();
    let route = |c: &mut Cluster<Small>, msgid| {
        c.route(1, DmsgKey::theirs(msgid), Some(DmsgKey::ours(7)), true)
    };
    let Route::Forward { twin: first, .. } = route(&mut c, 100) else {
        panic!("routed")
    };
    let Route::Forward {
        twin: second,
        open_under,
        ..
    } = route(&mut c, 101)
    else {
        panic!("routed")
    };
    assert_ne!(first, second);
    assert_eq!(
        open_under,
        Some(DmsgKey::theirs(50)),
        "the second opens its own twin"
    );
    assert_eq!(
        c.route(1, DmsgKey::theirs(102), Some(DmsgKey::ours(7)), false),
        Route::NotRouted,
        "an element that opens nothing and names no twin"
    );
    assert!(c.twin_opened(first, 9));
    let mut got = Vec::new();
    c.end_twin(first, &mut |a| got.push(a));
    assert_eq!(
        got,
        vec![
            Action::Terminate {
                conn: 1,
                twin: first,
                key: Some(DmsgKey::theirs(100))
            },
            Action::Terminate {
                conn: 2,
                twin: first,
                key: Some(DmsgKey::ours(9))
            },
        ]
    );
    assert_eq!(c.twins(), 1);
    assert_eq!(c.twin_key(second, 1), Some(DmsgKey::theirs(101)));
    // A lost link ends only the twins that use it.
    let mut other: Cluster<Small> = relay_node();
    let Route::Forward { twin: kept, .. } = route(&mut other, 200) else {
        panic!()
    };
    other
        .conn_opened(3, &conn_filter(PeerType::ROUTER, u64::MAX), LE, &mut |_| {})
        .unwrap();
    other.link_down(3, &mut |a| panic!("nothing routed over conn 3: {a:?}"));
    assert_eq!(other.twin_key(kept, 1), Some(DmsgKey::theirs(200)));
    let stats_before = c.stats().refused;
    let mut full: Cluster<Fixed<2, 4, 8, 4, 8, 1>> = Cluster::new(&Fixed, rself(0));
    full.conn_opened(1, &conn_filter(PeerType::ROUTER, u64::MAX), LE, &mut |_| {})
        .unwrap();
    let mut relay = None;
    full.span_received(
        2,
        50,
        &registration(b"far", PeerType::HAMMER2),
        LE,
        &mut |a| {
            if let Action::OpenSpan { relay: r, .. } = a {
                relay = Some(r);
            }
        },
    )
    .unwrap();
    assert!(full.relay_opened(relay.unwrap(), 7));
    assert!(matches!(
        full.route(1, DmsgKey::theirs(1), Some(DmsgKey::ours(7)), true),
        Route::Forward { .. }
    ));
    assert_eq!(
        full.route(1, DmsgKey::theirs(2), Some(DmsgKey::ours(7)), true),
        Route::Refused(ClusterError::Full(TableName::Twins))
    );
    assert_eq!(full.stats().refused, 1);
    assert_eq!(c.stats().refused, stats_before);
}

/// With the guard, tombstones keep a registration's feasible distance after its last link
/// goes, out of the tree; when the node table is full, a tombstone gives way to a node
/// that is reachable.
#[test]
fn tombstones_stay_out_of_sight_and_give_way() {
    let mut c: Cluster<Fixed<2, 2, 8, 4, 8, 1>> = Cluster::new(&Fixed, rself(0));
    c.set_loop_guard(true);
    let sequenced = |label: &[u8]| {
        let mut s = registration(label, PeerType::HAMMER2);
        s.reserved02 = 1u64.to_le_bytes();
        s
    };
    c.span_received(1, 1, &sequenced(b"a"), LE, &mut |_| {})
        .unwrap();
    c.span_received(1, 2, &sequenced(b"b"), LE, &mut |_| {})
        .unwrap();
    c.span_withdrawn(1, 1, &mut |_| {}).unwrap();
    // "a" is a tombstone: not shown, but still taking its slot…
    let labels: Vec<Vec<u8>> = c.nodes().map(|n| n.span().pfs_label().to_vec()).collect();
    assert_eq!(labels, vec![b"b".to_vec()]);
    // …and a stale copy of it at the distance it had is not used.
    let mut stale = sequenced(b"a");
    stale.set_dist(1, LE);
    c.conn_opened(2, &conn_filter(PeerType::ROUTER, u64::MAX), LE, &mut |_| {})
        .unwrap();
    let mut opened = 0;
    c.span_received(1, 3, &stale, LE, &mut |a| {
        opened += usize::from(matches!(a, Action::OpenSpan { .. }))
    })
    .unwrap();
    assert_eq!(opened, 0, "a stale copy is not relayed");
    c.span_withdrawn(1, 3, &mut |_| {}).unwrap();
    // A new node finds the table full of one live node and one tombstone: it takes the
    // tombstone's place.
    c.span_received(1, 4, &sequenced(b"c"), LE, &mut |_| {})
        .unwrap();
    let labels: Vec<Vec<u8>> = c.nodes().map(|n| n.span().pfs_label().to_vec()).collect();
    assert_eq!(labels, vec![b"b".to_vec(), b"c".to_vec()]);
}

/// 5.9: a sequence request can die (it went over a loop that then collapsed, or its path
/// was cut): when the link it went over is withdrawn and the links left are still
/// infeasible, the node asks again over its new best link, or it would keep a real route
/// unused forever (found by the N-node simulator with every guard on).
#[test]
fn the_loop_guard_asks_again_when_the_link_its_request_went_over_goes() {
    let mut c: Cluster<Small> = Cluster::new(&Small::default(), rself(0));
    c.set_loop_guard(true);
    let mut x = registration(b"x", PeerType::HAMMER2);
    x.reserved02 = 1u64.to_le_bytes();
    for (conn, dist) in [(1, 1), (2, 4), (3, 6)] {
        let mut span = x;
        span.set_dist(dist, LE);
        c.span_received(conn, 7, &span, LE, &mut |_| {}).unwrap();
    }
    let asked = |c: &mut Cluster<Small>, conn: u64| {
        let mut requests = Vec::new();
        c.span_withdrawn(conn, 7, &mut |a| {
            if let Action::RequestSeqno { conn, under } = a {
                requests.push((conn, under));
            }
        })
        .unwrap();
        requests
    };
    // The best (dist 1) goes: dist 4 and 6 are no shorter than the 2 we advertised.
    assert_eq!(asked(&mut c, 1), vec![(2, 7)]);
    // The request went over conn 2; that link goes too: ask over conn 3.
    assert_eq!(asked(&mut c, 2), vec![(3, 7)]);
}

/// The per-connection bound on twins (5.8): a requester cannot take every transaction
/// slot of ours toward the span's source; the refusal is counted.
#[test]
fn routed_transactions_are_bounded_per_connection() {
    use crate::trans::DmsgKey;
    let mut c = relay_node();
    c.set_twin_limit(2);
    let mut open = |msgid| c.route(1, DmsgKey::theirs(msgid), Some(DmsgKey::ours(7)), true);
    assert!(matches!(open(1), Route::Forward { .. }));
    assert!(matches!(open(2), Route::Forward { .. }));
    assert_eq!(
        open(3),
        Route::Refused(ClusterError::Full(TableName::Twins))
    );
    assert_eq!(c.twins(), 2);
    assert_eq!(c.stats().refused, 1);
}
