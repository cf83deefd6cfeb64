//! Routed transactions (dmsg.md 4.5, docs/dmsg.md 5.8): a transaction opened under one
//! of our relayed spans continues, as its **twin**, under the span it copies, on the
//! connection that span came from; every later element of either goes to the other.
//! When the route goes — the source span withdrawn, either link lost — both halves end
//! with LOSTLINK and the twin is forgotten.

use super::{
    Action, Cluster, ClusterError, ConnId, Registration, Storage, Table, TableName, Via, by_id,
};
use crate::trans::{DmsgKey, Side};
use crate::wire::LnkSpan;

/// A routed transaction passing through this node: its number here (never reused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TwinId(pub u64);

/// One routed transaction passing through: the half the requester opened on `from`, and
/// its twin we opened on `to`.
#[derive(Clone, Copy, Debug)]
pub struct Twin {
    pub(super) id: u64,
    /// The source link the route follows.
    pub(super) link: u64,
    pub(super) from: ConnId,
    pub(super) from_key: DmsgKey,
    pub(super) to: ConnId,
    /// Our twin's key on `to`, once its open went out.
    pub(super) to_key: Option<DmsgKey>,
    /// The DELETE of each half was forwarded.
    pub(super) from_done: bool,
    pub(super) to_done: bool,
}

/// Where a received element goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Not part of a routed transaction: the application's.
    NotRouted,
    /// A transaction opened under our relay of one of our own registrations: it is for
    /// this node, the application answers it.
    Local(Registration),
    /// Forward it on connection `to` as the twin `twin`: opened under `open_under` if
    /// this element opens it ([`DmsgIocom::forward_open`](crate::DmsgIocom::forward_open)),
    /// else on the twin's key ([`Cluster::twin_key`],
    /// [`DmsgIocom::forward`](crate::DmsgIocom::forward)).
    Forward {
        /// The connection.
        to: ConnId,
        /// The twin.
        twin: TwinId,
        /// For the opening element: the span to open the twin under.
        open_under: Option<DmsgKey>,
    },
    /// A transaction to route that the twin table has no room for: refuse it (close it
    /// with error 0x22).
    Refused(ClusterError),
}

impl<S: Storage> Cluster<S> {
    /// Where the element of transaction `key` received on `conn` goes. `parent` and
    /// `opened` are as the connection delivered them. A transaction the peer opens under
    /// one of our relays is routed to the connection its span came from; its later
    /// elements, and the answers coming back, follow the twin.
    pub fn route(
        &mut self,
        conn: ConnId,
        key: DmsgKey,
        parent: Option<DmsgKey>,
        opened: bool,
    ) -> Route {
        if let Some(t) = self.twin_at(conn, key) {
            let (to, open_under) = if t.from == conn && t.from_key == key {
                (t.to, None)
            } else {
                (t.from, None)
            };
            return Route::Forward {
                to,
                twin: TwinId(t.id),
                open_under,
            };
        }
        let Some(DmsgKey {
            side: Side::Local,
            msgid: span,
        }) = parent
        else {
            return Route::NotRouted;
        };
        if !opened || key.side != Side::Remote {
            return Route::NotRouted;
        }
        let Some(relay) = self
            .t
            .relays
            .items()
            .iter()
            .find(|r| r.conn == conn && r.msgid == Some(span))
            .copied()
        else {
            return Route::NotRouted;
        };
        let Some(link) = self.link(relay.link).copied() else {
            return Route::NotRouted;
        };
        let to = match link.via {
            Via::Local => return Route::Local(Registration(link.msgid)),
            Via::Conn(to) => to,
        };
        // Each twin holds a transaction of ours on `to`, where our spans need them too,
        // and is held as long as its requester likes: bound both ends (5.8).
        let (mut from_conn, mut to_conn) = (0usize, 0usize);
        for t in self.t.twins.items() {
            from_conn += usize::from(t.from == conn);
            to_conn += usize::from(t.to == to);
        }
        if from_conn >= self.twin_limit || to_conn >= self.twin_limit {
            self.stats.refused += 1;
            return Route::Refused(ClusterError::Full(TableName::Twins));
        }
        let id = self.fresh_id();
        let twin = Twin {
            id,
            link: link.seq,
            from: conn,
            from_key: key,
            to,
            to_key: None,
            from_done: false,
            to_done: false,
        };
        let end = self.t.twins.items().len();
        if self.t.twins.try_insert(end, twin).is_err() {
            self.stats.refused += 1;
            return Route::Refused(ClusterError::Full(TableName::Twins));
        }
        Route::Forward {
            to,
            twin: TwinId(id),
            open_under: Some(DmsgKey::theirs(link.msgid)),
        }
    }

    fn twin_at(&self, conn: ConnId, key: DmsgKey) -> Option<Twin> {
        self.t
            .twins
            .items()
            .iter()
            .find(|t| {
                (t.from == conn && t.from_key == key) || (t.to == conn && t.to_key == Some(key))
            })
            .copied()
    }

    /// The key of `twin`'s half on `conn`, once known.
    #[must_use]
    pub fn twin_key(&self, twin: TwinId, conn: ConnId) -> Option<DmsgKey> {
        let i = by_id(self.t.twins.items(), twin.0, |t| t.id)?;
        let t = self.t.twins.items().get(i)?;
        if t.from == conn {
            Some(t.from_key)
        } else if t.to == conn {
            t.to_key
        } else {
            None
        }
    }

    /// The twin's open went out with this msgid. False if the route was lost meanwhile:
    /// the caller ends what it just opened ([`DmsgIocom::abort`](crate::DmsgIocom::abort)
    /// with LOSTLINK).
    pub fn twin_opened(&mut self, twin: TwinId, msgid: u64) -> bool {
        let Some(i) = by_id(self.t.twins.items(), twin.0, |t| t.id) else {
            return false;
        };
        self.t.twins.items_mut().get_mut(i).is_some_and(|t| {
            t.to_key = Some(DmsgKey::ours(msgid));
            true
        })
    }

    /// An element of `twin` was forwarded onto `to`; `deleted`: it carried DELETE. Once
    /// both halves' DELETEs went through, the twin is forgotten.
    pub fn twin_forwarded(&mut self, twin: TwinId, to: ConnId, deleted: bool) {
        let Some(i) = by_id(self.t.twins.items(), twin.0, |t| t.id) else {
            return;
        };
        let finished = self.t.twins.items_mut().get_mut(i).is_some_and(|t| {
            if deleted {
                if to == t.to {
                    t.from_done = true;
                } else {
                    t.to_done = true;
                }
            }
            t.from_done && t.to_done
        });
        if finished {
            self.t.twins.remove_at(i);
        }
    }

    /// Ends `twin` (its open could not be sent): the halves that exist get an
    /// [`Action::Terminate`].
    pub fn end_twin(&mut self, twin: TwinId, out: &mut impl FnMut(Action)) {
        self.cut_twins(|t| (t.id == twin.0).then_some(None), out);
    }

    /// Bounds the routed transactions passing through per connection, requested from it
    /// or opened on it (default: no bound but the twin table's). A relay's twin takes a
    /// transaction slot of ours on the connection it goes out on, where our spans need
    /// slots too; a requester may keep its transactions open as long as it likes. Beyond
    /// the bound a routed CREATE is refused ([`Route::Refused`], answered with 0x22).
    pub fn set_twin_limit(&mut self, per_conn: usize) {
        self.twin_limit = per_conn;
    }

    /// Routed transactions passing through.
    #[must_use]
    pub fn twins(&self) -> usize {
        self.t.twins.items().len()
    }

    /// The best link to the first node (in tree order) whose payload `wanted` accepts:
    /// where to open a transaction to it — under the span `msgid` received on the
    /// connection of `Via::Conn`, or ourselves for `Via::Local`.
    pub fn route_to(&self, wanted: impl Fn(&LnkSpan) -> bool) -> Option<(Via, u64)> {
        let node = self.nodes().find(|n| wanted(n.span()))?;
        let best = node.links().next()?;
        Some((best.via(), best.msgid()))
    }

    /// Ends the twins that `cut` says are cut: `Some(dead)` names the connection that is
    /// gone (`None`: both are up, the route itself went). Every half on a live connection
    /// gets an [`Action::Terminate`]; the twins are forgotten.
    pub(super) fn cut_twins(
        &mut self,
        cut: impl Fn(&Twin) -> Option<Option<ConnId>>,
        out: &mut impl FnMut(Action),
    ) {
        let mut i = 0;
        while let Some(t) = self.t.twins.items().get(i).copied() {
            let Some(dead) = cut(&t) else {
                i += 1;
                continue;
            };
            self.t.twins.remove_at(i);
            for (conn, key) in [(t.from, Some(t.from_key)), (t.to, t.to_key)] {
                if Some(conn) != dead && Some(conn) != self.going {
                    out(Action::Terminate {
                        conn,
                        twin: TwinId(t.id),
                        key,
                    });
                }
            }
        }
    }
}
