//! A service's cluster (docs/dmsg.md 5.3–5.8) shared by its link threads: one
//! [`Cluster`] behind a lock, and per link a mailbox of what to send on it — spans to
//! open and close, and elements of routed transactions to forward.
//!
//! Whichever link thread learns something (a span opened, a link lost, an element of a
//! routed transaction) updates the cluster; the resulting work goes to the mailboxes of
//! the links it is for, whose threads are woken and send it ([`ClusterHub::deliver`]).
//! Mailboxes are filled and emptied under the one lock, so every link sends its work in
//! the order it was made, and a relay's or twin's msgid is recorded the moment its open
//! is queued.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Mutex, MutexGuard, PoisonError};

use h2msg::SendError;
use h2msg::cluster::{
    Action, Cluster, ClusterError, ClusterStats, Heap, Limits, Registration, Route, Sent,
    SpanInput, TwinId, Via, send_action,
};
use h2msg::ioq::TxError;
use h2msg::trans::DmsgKey;
use h2msg::wire::{Cmd, DMSG_ERR_LOSTLINK, LnkSpan, MsgFlags};

use crate::blocking::{DuplexWaker, StdDmsgIocom};
use crate::link::CLUSTER_TRANSACTIONS;

/// How much of the cluster a service holds at most (docs/dmsg.md 5.7).
pub const SERVICE_LIMITS: Limits = Limits {
    conns: 4096,
    nodes: 4096,
    links: 65536,
    relays: 65536,
    payloads: 8192,
    twins: 65536,
};

/// An element of a routed transaction, copied to go out on the twin's link.
#[derive(Clone, Debug)]
pub struct Forwarded {
    /// The routed transaction.
    pub twin: TwinId,
    /// For the element that opens the twin: the span to open it under.
    pub open_under: Option<DmsgKey>,
    /// The element's command as received (flags recomputed when sent, D15).
    pub cmd: Cmd,
    /// Its `error` value.
    pub error: u32,
    /// Its extended header.
    pub ext: Vec<u8>,
    /// Its aux data.
    pub aux: Vec<u8>,
}

/// What a link's thread is to send.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "span opens dominate the mailboxes; boxing each would cost an allocation"
)]
enum Work {
    Cluster(Action),
    Forward(Box<Forwarded>),
}

/// The spans waiting for one link's thread, and how to wake it.
#[derive(Debug)]
struct Mailbox {
    queued: Vec<Work>,
    waker: DuplexWaker,
}

#[derive(Debug)]
struct Hub {
    cluster: Cluster<Heap>,
    mailboxes: HashMap<u64, Mailbox>,
    /// Registrations (by their current number) moved to a new route sequence lately.
    bumped: HashMap<u64, std::time::Instant>,
    /// Registrations asked to move again within [`BUMP_INTERVAL`].
    deferred_bumps: std::collections::HashSet<u64>,
}

/// The least time between two moves of one registration to a new route sequence.
pub const BUMP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

impl Hub {
    /// Queues `actions` for their links; returns the wakers of the links that got some.
    fn post(&mut self, actions: Vec<Action>) -> Vec<DuplexWaker> {
        let mut wake: Vec<DuplexWaker> = Vec::new();
        for action in actions {
            let Some(mailbox) = self.mailboxes.get_mut(&action.conn()) else {
                continue; // the link is gone; the cluster forgets it with link_down
            };
            match action {
                Action::CloseSpan {
                    relay, msgid: None, ..
                } => {
                    // Its open is still queued: neither goes out.
                    mailbox.queued.retain(|w| {
                        !matches!(w, Work::Cluster(Action::OpenSpan { relay: r, .. }) if *r == relay)
                    });
                    continue;
                }
                Action::Terminate {
                    twin, key: None, ..
                } => {
                    // The twin's open is still queued: none of it goes out.
                    mailbox
                        .queued
                        .retain(|w| !matches!(w, Work::Forward(f) if f.twin == twin));
                    continue;
                }
                action => mailbox.queued.push(Work::Cluster(action)),
            }
            wake.push(mailbox.waker.clone());
        }
        wake
    }
}

/// Sends one forwarded element on link `link`'s connection: opens the twin, or continues
/// it; a twin that cannot be opened ends the requester's half (its actions in `made`).
fn forward_one(
    io: &mut StdDmsgIocom<CLUSTER_TRANSACTIONS>,
    cluster: &mut Cluster<Heap>,
    link: u64,
    f: &Forwarded,
    made: &mut Vec<Action>,
) -> Sent {
    let full = |e: &SendError| matches!(e, SendError::Tx(TxError::QueueFull { .. }));
    let deleted = f.cmd.flags().contains(MsgFlags::DELETE);
    if let Some(parent) = f.open_under {
        match io.forward_open(f.cmd, Some(parent), f.error, &f.ext, &f.aux) {
            Ok(sent) => {
                if cluster.twin_opened(f.twin, sent.msgid) {
                    cluster.twin_forwarded(f.twin, link, deleted);
                } else {
                    // The route went while the open was queued.
                    let _ = io.abort(DmsgKey::ours(sent.msgid), DMSG_ERR_LOSTLINK);
                }
            }
            Err(e) if full(&e) => return Sent::QueueFull,
            // No slot for the twin: the requester hears LOSTLINK rather than nothing.
            Err(_) => cluster.end_twin(f.twin, &mut |a| made.push(a)),
        }
        return Sent::Done;
    }
    let Some(key) = cluster.twin_key(f.twin, link) else {
        return Sent::Done; // the route is gone; both halves were told
    };
    match io.forward(key, f.cmd, f.error, &f.ext, &f.aux) {
        Ok(_) => cluster.twin_forwarded(f.twin, link, deleted),
        Err(e) if full(&e) => return Sent::QueueFull,
        // The transaction broke on this side: end the routed pair, not just this element.
        Err(_) => cluster.end_twin(f.twin, &mut |a| made.push(a)),
    }
    Sent::Done
}

/// The cluster of a service and the mailboxes of its DMSG links.
#[derive(Debug)]
pub struct ClusterHub(Mutex<Hub>);

/// Wakes every link that got work, after the hub's lock is released.
fn wake_all(wakers: Vec<DuplexWaker>) {
    for waker in wakers {
        waker.wake();
    }
}

impl ClusterHub {
    /// An empty cluster; `rself` is this process's relay constant (D16).
    #[must_use]
    pub fn new(rself: NonZeroU32, limits: Limits) -> Self {
        let mut cluster = Cluster::new(&Heap(limits), rself);
        // A quarter of a link's transactions for routed ones: the rest stay for spans.
        cluster.set_twin_limit(CLUSTER_TRANSACTIONS / 4);
        Self(Mutex::new(Hub {
            cluster,
            mailboxes: HashMap::new(),
            bumped: HashMap::new(),
            deferred_bumps: std::collections::HashSet::new(),
        }))
    }

    /// Turns the loop guard of docs/dmsg.md 5.9 on or off; before any registration.
    pub fn set_loop_guard(&self, on: bool) {
        self.lock().cluster.set_loop_guard(on);
    }

    fn lock(&self) -> MutexGuard<'_, Hub> {
        // Every change is made whole under the lock, so a panicked holder left it sound.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the cluster and posts the actions it made.
    fn update<R>(&self, f: impl FnOnce(&mut Cluster<Heap>, &mut dyn FnMut(Action)) -> R) -> R {
        let mut hub = self.lock();
        let mut actions = Vec::new();
        let result = f(&mut hub.cluster, &mut |a| actions.push(a));
        let wakers = hub.post(actions);
        drop(hub);
        wake_all(wakers);
        result
    }

    /// Link `link` is up: spans for it are queued from now on, and its thread woken by
    /// `waker`.
    pub fn attach(&self, link: u64, waker: DuplexWaker) {
        self.lock().mailboxes.insert(
            link,
            Mailbox {
                queued: Vec::new(),
                waker,
            },
        );
    }

    /// Link `link` is gone, however it ended: its mailbox goes, and the cluster withdraws
    /// what came on it (docs/dmsg.md 5.5).
    pub fn detach(&self, link: u64) {
        self.update(|cluster, out| {
            cluster.link_down(link, &mut |a| out(a));
        });
        self.lock().mailboxes.remove(&link);
    }

    /// What link `link` received.
    ///
    /// # Errors
    /// As [`Cluster::input`]; a refused span is to be closed toward its sender.
    pub fn input(&self, link: u64, input: &SpanInput) -> Result<(), ClusterError> {
        self.update(|cluster, out| cluster.input(link, input, &mut |a| out(a)))
    }

    /// Registers a node of this service (`--advertise`).
    ///
    /// # Errors
    /// [`ClusterError::Full`].
    pub fn register(&self, span: &LnkSpan) -> Result<Registration, ClusterError> {
        self.update(|cluster, out| cluster.register(span, &mut |a| out(a)))
    }

    /// Where an element received on link `link` goes (docs/dmsg.md 5.8).
    pub fn route(&self, link: u64, key: DmsgKey, parent: Option<DmsgKey>, opened: bool) -> Route {
        self.lock().cluster.route(link, key, parent, opened)
    }

    /// Queues `element` for link `to` (a [`Route::Forward`]), and wakes its thread.
    pub fn forward(&self, to: u64, element: Forwarded) {
        let mut hub = self.lock();
        let Some(mailbox) = hub.mailboxes.get_mut(&to) else {
            return; // gone: its link_down ends the twin
        };
        mailbox.queued.push(Work::Forward(Box::new(element)));
        let waker = mailbox.waker.clone();
        drop(hub);
        waker.wake();
    }

    /// Runs the whole scan if a relay that could not be sent waits for "the next trigger"
    /// (docs/dmsg.md 5.4): link threads call it when their timers wake them, so a quiet
    /// cluster retries within a second.
    pub fn rescan_if_stale(&self) {
        self.update(|cluster, out| {
            if cluster.retry_pending() {
                cluster.rescan(&mut |a| out(a));
            }
        });
        let now = std::time::Instant::now();
        let due: Vec<u64> = {
            let mut hub = self.lock();
            let hub = &mut *hub;
            hub.bumped
                .retain(|_, at| now.duration_since(*at) < BUMP_INTERVAL);
            let due: Vec<u64> = hub
                .deferred_bumps
                .iter()
                .copied()
                .filter(|r| !hub.bumped.contains_key(r))
                .collect();
            for r in &due {
                hub.deferred_bumps.remove(r);
            }
            due
        };
        for registration in due {
            // Withdrawn meanwhile: nothing to move.
            let _ = self.bump(Registration(registration));
        }
    }

    /// Moves our registration to a new route sequence, as a node asked (docs/dmsg.md 5.9):
    /// only with the loop guard on, and at most once per [`BUMP_INTERVAL`] per
    /// registration, since each move re-advertises it across the whole cluster. A request
    /// that comes sooner is kept and served when the interval is over (by a link's timer,
    /// [`rescan_if_stale`](Self::rescan_if_stale)); `None` then, or with the guard off.
    ///
    /// # Errors
    /// As [`Cluster::bump`].
    pub fn bump(&self, registration: Registration) -> Result<Option<Registration>, ClusterError> {
        let now = std::time::Instant::now();
        {
            let mut hub = self.lock();
            if !hub.cluster.loop_guard() {
                return Ok(None);
            }
            hub.bumped
                .retain(|_, at| now.duration_since(*at) < BUMP_INTERVAL);
            if hub.bumped.contains_key(&registration.0) {
                hub.deferred_bumps.insert(registration.0);
                return Ok(None);
            }
        }
        let moved = self.update(|cluster, out| cluster.bump(registration, &mut |a| out(a)))?;
        self.lock().bumped.insert(moved.0, now);
        Ok(Some(moved))
    }

    /// Sends what is queued for link `link` on its connection `io`.
    /// What is queued goes out in order; when the transmit queue fills, the rest stays
    /// queued, in order (a close the cluster already forgot must not be lost), and the
    /// result is true: call again once the link has written some out.
    pub fn deliver(&self, link: u64, io: &mut StdDmsgIocom<CLUSTER_TRANSACTIONS>) -> bool {
        let mut hub = self.lock();
        let Some(mailbox) = hub.mailboxes.get_mut(&link) else {
            return false;
        };
        let mut queued = std::mem::take(&mut mailbox.queued).into_iter();
        let mut made = Vec::new();
        let mut left = Vec::new();
        for work in queued.by_ref() {
            let sent = match &work {
                Work::Cluster(action) => send_action(io, &mut hub.cluster, action),
                Work::Forward(f) => forward_one(io, &mut hub.cluster, link, f, &mut made),
            };
            if sent == Sent::QueueFull {
                left.push(work);
                break;
            }
        }
        left.extend(queued);
        let full = !left.is_empty();
        if let Some(mailbox) = hub.mailboxes.get_mut(&link) {
            // Work posted meanwhile (by this thread's own actions) goes after what was left.
            left.append(&mut mailbox.queued);
            mailbox.queued = left;
        }
        let wakers = hub.post(made);
        drop(hub);
        wake_all(wakers);
        full
    }

    /// The `tree` dump (docs/dmsg.md 6.4).
    #[must_use]
    pub fn tree(&self) -> Vec<String> {
        crate::dmsg_shell::tree_lines(&self.lock().cluster)
    }

    /// Spans received on link `link` and spans relayed to it.
    #[must_use]
    pub fn span_counts(&self, link: u64) -> (usize, usize) {
        let hub = self.lock();
        (
            hub.cluster.links_via(Via::Conn(link)),
            hub.cluster.relays_on(link),
        )
    }

    /// One line of totals: nodes, received spans, relays, routed transactions passing
    /// through, and what was refused.
    #[must_use]
    pub fn summary(&self) -> String {
        let hub = self.lock();
        let c = &hub.cluster;
        let stats = c.stats();
        format!(
            "cluster: nodes {} spans in {} out {} routed {} refused {}",
            c.nodes().count(),
            c.link_count(),
            c.relay_count(),
            c.twins(),
            stats.refused
        )
    }

    /// What the cluster refused or retried.
    #[must_use]
    pub fn stats(&self) -> ClusterStats {
        self.lock().cluster.stats()
    }
}
