//! The loop guard (docs/dmsg.md 5.9), h2msg's opt-in answer to counting to 16: libdmsg
//! damps loops only with split horizon and the 16-hop limit, so when a registration's
//! best link goes, a copy of its own advertisement coming back around a cycle can take
//! over and chase the withdrawal until `dist` passes 16.
//!
//! With the guard, an originator stamps a **route sequence** (≥ 1) into its span's
//! `reserved02`, which every relay — libdmsg's too (D14) — copies unchanged. A node
//! remembers, per registration, the smallest `dist` it advertised for the newest sequence
//! (its **feasible distance**) and uses only links that are newer, or as new and shorter
//! than that: a copy of its own advertisement that came back is never shorter, so it is
//! never used. When no link is feasible the node stops relaying the registration and asks
//! its originator, over the best (infeasible) link, to move to a new sequence (an
//! `LNK_SEQREQ` routed transaction, 5.8): if that path is real, the originator
//! re-advertises, and the new sequence is feasible everywhere; if it was a loop, the
//! request dies with it — and when that link is withdrawn, the node asks again over its
//! next best. Spans with sequence 0 (every libdmsg originator's) are never
//! judged: the guard changes nothing for them.

use super::{Action, Cluster, ClusterError, Link, Node, Registration, Storage, Table, Via, by_id};
use crate::wire::{LnkSpan, WireOrder};

impl<S: Storage> Cluster<S> {
    /// Turns the loop guard on or off (off by default: libdmsg's behaviour exactly). Turn
    /// it on before the first registration, so that this node's own spans carry a route
    /// sequence.
    pub fn set_loop_guard(&mut self, on: bool) {
        self.guard = on;
    }

    /// Whether the loop guard is on.
    #[must_use]
    pub const fn loop_guard(&self) -> bool {
        self.guard
    }

    /// Whether `link` may be `node`'s best (docs/dmsg.md 5.9).
    pub(super) fn feasible(&self, node: &Node, link: &Link) -> bool {
        if !self.guard || link.route_seq == 0 {
            return true;
        }
        match node.fd {
            None => true,
            Some((seq, dist)) => {
                link.route_seq > seq || (link.route_seq == seq && link.dist < dist)
            }
        }
    }

    /// `node`'s best link: its first by preference, or with the guard its first feasible
    /// one — updating the feasible distance, and asking for a new sequence when links
    /// remain but none is feasible.
    pub(super) fn best_link(&mut self, node: u64, out: &mut impl FnMut(Action)) -> Option<Link> {
        let first = self
            .node_links(node)
            .first()
            .and_then(|o| self.link(o.seq))
            .copied();
        if !self.guard {
            return first;
        }
        let i = by_id(self.t.nodes.items(), node, |n| n.id)?;
        let entry = *self.t.nodes.items().get(i)?;
        let best = self
            .node_links(node)
            .iter()
            .filter_map(|o| self.link(o.seq))
            .find(|l| self.feasible(&entry, l))
            .copied();
        let mut updated = entry;
        match best {
            // What we advertise now. For the same sequence it is never more than the
            // feasible distance (the link is feasible), so this keeps the minimum.
            Some(b) if b.route_seq != 0 => {
                updated.fd = Some((b.route_seq, b.dist.saturating_add(1)));
            }
            Some(_) => {}
            None => {
                // Once per sequence and link: a request that went over a link since
                // withdrawn (a loop that collapsed, a path cut) may have died on the way.
                let pending =
                    entry
                        .requested
                        .zip(entry.fd)
                        .is_some_and(|((asked, over), (seq, _))| {
                            asked == seq && self.link(over).is_some()
                        });
                if let (Some(link), Some((seq, _))) = (first, entry.fd)
                    && let Via::Conn(conn) = link.via
                    && !pending
                {
                    updated.requested = Some((seq, link.seq));
                    out(Action::RequestSeqno {
                        conn,
                        under: link.msgid,
                    });
                }
            }
        }
        if let Some(n) = self.t.nodes.items_mut().get_mut(i) {
            *n = updated;
        }
        best
    }

    /// Our registration `registration` moves to a new route sequence (a node asked,
    /// docs/dmsg.md 5.9): the span is advertised anew with the next sequence — the new
    /// copy first, so every relay switches before the old one is withdrawn. Returns the
    /// new registration.
    ///
    /// # Errors
    /// [`ClusterError::Unknown`] if it is not ours; [`ClusterError::Full`].
    pub fn bump(
        &mut self,
        registration: Registration,
        out: &mut impl FnMut(Action),
    ) -> Result<Registration, ClusterError> {
        let old = self
            .find_link(Via::Local, registration.0)
            .ok_or(ClusterError::Unknown)?;
        let link = *self.link(old).ok_or(ClusterError::Unknown)?;
        let mut span: LnkSpan = self
            .payload(link.payload)
            .ok_or(ClusterError::Unknown)?
            .span;
        span.reserved02 = link.route_seq.saturating_add(1).to_le_bytes();
        let id = self.next_id + 1;
        let node = self.insert_link(Via::Local, id, &span, WireOrder::Little)?;
        self.rescan_node(node, out);
        self.withdraw_link(old, out);
        Ok(Registration(id))
    }

    /// The payload our registration `span` is advertised with: with the guard, route
    /// sequence 1.
    pub(super) fn own_span(&self, span: &LnkSpan) -> LnkSpan {
        let mut own = *span;
        own.set_dist(0, WireOrder::Little);
        own.set_rnss(0, WireOrder::Little);
        own.reserved02 = u64::from(self.guard).to_le_bytes();
        own
    }

    /// Makes room for a new node by forgetting the oldest tombstone, if there is one.
    pub(super) fn evict_tombstone(&mut self) {
        if let Some(i) = self.t.nodes.items().iter().position(|n| n.links == 0) {
            self.remove_node(i);
        }
    }
}
