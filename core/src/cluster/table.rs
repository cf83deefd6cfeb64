//! The bounded tables a [`Cluster`](super::Cluster) keeps its state in, and where their
//! memory comes from: fixed arrays chosen at compile time ([`Fixed`], no allocator), or,
//! with the `alloc` feature, vectors that grow up to limits chosen at run time (`Heap`).
//! Either way a full table is a typed refusal, never growth without bound.

use super::{Conn, Link, LinkOrder, LinkSource, Node, NodeOrder, Payload, Relay, RelayOrder, Twin};

/// A bounded sequence: the few operations the cluster's sorted tables need.
pub trait Table<T> {
    /// The items, in order.
    fn items(&self) -> &[T];
    /// The items, to change in place (their sort keys stay as they are).
    fn items_mut(&mut self) -> &mut [T];
    /// Inserts `value` before `index` (at most the length), or gives it back if the table
    /// is full.
    ///
    /// # Errors
    /// The value, when no room is left.
    fn try_insert(&mut self, index: usize, value: T) -> Result<(), T>;
    /// Removes and returns the item at `index`, if there is one.
    fn remove_at(&mut self, index: usize) -> Option<T>;
    /// Whether another item fits.
    fn has_room(&self) -> bool;
}

impl<T, const N: usize> Table<T> for heapless::Vec<T, N> {
    fn items(&self) -> &[T] {
        self
    }

    fn items_mut(&mut self) -> &mut [T] {
        self
    }

    fn try_insert(&mut self, index: usize, value: T) -> Result<(), T> {
        if index > self.len() {
            return Err(value);
        }
        self.insert(index, value)
    }

    fn remove_at(&mut self, index: usize) -> Option<T> {
        (index < self.len()).then(|| self.remove(index))
    }

    fn has_room(&self) -> bool {
        !self.is_full()
    }
}

/// Where a cluster's tables live. [`Fixed`] needs no allocator; `Heap` (feature
/// `alloc`) allocates as the tables fill, up to its `Limits`.
pub trait Storage {
    /// Connections whose peer opened `LNK_CONN`.
    type Conns: Table<Conn>;
    /// Received span payloads, shared by the links that carry the same bytes.
    type Payloads: Table<Payload>;
    /// Nodes (a registration, as every link to it names it).
    type Nodes: Table<Node>;
    /// Received spans (links).
    type Links: Table<Link>;
    /// Spans we send (relays).
    type Relays: Table<Relay>;
    /// Nodes in tree order.
    type NodeOrder: Table<NodeOrder>;
    /// Links in preference order within their node.
    type LinkOrder: Table<LinkOrder>;
    /// Links by where they came from.
    type LinkSource: Table<LinkSource>;
    /// Relays by connection, node, and their source link's order.
    type RelayOrder: Table<RelayOrder>;
    /// Routed transactions passing through (twins, dmsg.md 4.5).
    type Twins: Table<Twin>;

    /// Empty tables.
    fn tables(&self) -> Tables<Self>
    where
        Self: Sized;
}

/// A cluster's tables, made by its [`Storage`].
pub struct Tables<S: Storage> {
    pub(super) conns: S::Conns,
    pub(super) payloads: S::Payloads,
    pub(super) nodes: S::Nodes,
    pub(super) links: S::Links,
    pub(super) relays: S::Relays,
    pub(super) node_order: S::NodeOrder,
    pub(super) link_order: S::LinkOrder,
    pub(super) link_source: S::LinkSource,
    pub(super) relay_order: S::RelayOrder,
    pub(super) twins: S::Twins,
}

/// Tables in fixed arrays, sized at compile time: at most `CONNS` connections with
/// `LNK_CONN`, `NODES` nodes, `LINKS` received spans, `RELAYS` spans sent, `PAYLOADS`
/// distinct span payloads (384 bytes each; links to one node normally share one) and
/// `TWINS` routed transactions passing through.
#[derive(Clone, Copy, Debug, Default)]
pub struct Fixed<
    const CONNS: usize,
    const NODES: usize,
    const LINKS: usize,
    const RELAYS: usize,
    const PAYLOADS: usize,
    const TWINS: usize,
>;

impl<
    const CONNS: usize,
    const NODES: usize,
    const LINKS: usize,
    const RELAYS: usize,
    const PAYLOADS: usize,
    const TWINS: usize,
> Storage for Fixed<CONNS, NODES, LINKS, RELAYS, PAYLOADS, TWINS>
{
    type Conns = heapless::Vec<Conn, CONNS>;
    type Payloads = heapless::Vec<Payload, PAYLOADS>;
    type Nodes = heapless::Vec<Node, NODES>;
    type Links = heapless::Vec<Link, LINKS>;
    type Relays = heapless::Vec<Relay, RELAYS>;
    type NodeOrder = heapless::Vec<NodeOrder, NODES>;
    type LinkOrder = heapless::Vec<LinkOrder, LINKS>;
    type LinkSource = heapless::Vec<LinkSource, LINKS>;
    type RelayOrder = heapless::Vec<RelayOrder, RELAYS>;
    type Twins = heapless::Vec<Twin, TWINS>;

    fn tables(&self) -> Tables<Self> {
        Tables {
            conns: heapless::Vec::new(),
            payloads: heapless::Vec::new(),
            nodes: heapless::Vec::new(),
            links: heapless::Vec::new(),
            relays: heapless::Vec::new(),
            node_order: heapless::Vec::new(),
            link_order: heapless::Vec::new(),
            link_source: heapless::Vec::new(),
            relay_order: heapless::Vec::new(),
            twins: heapless::Vec::new(),
        }
    }
}

/// The most of each kind of entry a `Heap` cluster holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections whose peer opened `LNK_CONN`.
    pub conns: usize,
    /// Nodes.
    pub nodes: usize,
    /// Received spans.
    pub links: usize,
    /// Spans sent.
    pub relays: usize,
    /// Distinct span payloads.
    pub payloads: usize,
    /// Routed transactions passing through.
    pub twins: usize,
}

#[cfg(feature = "alloc")]
pub use heap::{Capped, Heap};

#[cfg(feature = "alloc")]
mod heap {
    use alloc::vec::Vec;

    use super::{
        Conn, Limits, Link, LinkOrder, LinkSource, Node, NodeOrder, Payload, Relay, RelayOrder,
        Storage, Table, Tables, Twin,
    };

    /// A vector that grows as it fills, up to a limit.
    #[derive(Clone, Debug)]
    pub struct Capped<T> {
        items: Vec<T>,
        limit: usize,
    }

    impl<T> Capped<T> {
        const fn new(limit: usize) -> Self {
            Self {
                items: Vec::new(),
                limit,
            }
        }
    }

    impl<T> Table<T> for Capped<T> {
        fn items(&self) -> &[T] {
            &self.items
        }

        fn items_mut(&mut self) -> &mut [T] {
            &mut self.items
        }

        fn try_insert(&mut self, index: usize, value: T) -> Result<(), T> {
            if index > self.items.len() || !self.has_room() {
                return Err(value);
            }
            self.items.insert(index, value);
            Ok(())
        }

        fn remove_at(&mut self, index: usize) -> Option<T> {
            (index < self.items.len()).then(|| self.items.remove(index))
        }

        fn has_room(&self) -> bool {
            self.items.len() < self.limit
        }
    }

    /// Tables on the heap, allocated as they fill, up to `Limits`.
    #[derive(Clone, Copy, Debug)]
    pub struct Heap(pub Limits);

    impl Storage for Heap {
        type Conns = Capped<Conn>;
        type Payloads = Capped<Payload>;
        type Nodes = Capped<Node>;
        type Links = Capped<Link>;
        type Relays = Capped<Relay>;
        type NodeOrder = Capped<NodeOrder>;
        type LinkOrder = Capped<LinkOrder>;
        type LinkSource = Capped<LinkSource>;
        type RelayOrder = Capped<RelayOrder>;
        type Twins = Capped<Twin>;

        fn tables(&self) -> Tables<Self> {
            let l = self.0;
            Tables {
                conns: Capped::new(l.conns),
                payloads: Capped::new(l.payloads),
                nodes: Capped::new(l.nodes),
                links: Capped::new(l.links),
                relays: Capped::new(l.relays),
                node_order: Capped::new(l.nodes),
                link_order: Capped::new(l.links),
                link_source: Capped::new(l.links),
                relay_order: Capped::new(l.relays),
                twins: Capped::new(l.twins),
            }
        }
    }
}
