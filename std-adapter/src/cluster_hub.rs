//! A service's cluster (docs/dmsg.md 5.3–5.7) shared by its link threads: one
//! [`Cluster`] behind a lock, and per link a mailbox of the spans to open and close on it.
//!
//! Whichever link thread learns something (a span opened, a link lost) updates the
//! cluster; the resulting actions go to the mailboxes of the links they are for, whose
//! threads are woken and send them ([`ClusterHub::deliver`]). Mailboxes are filled and
//! emptied under the one lock, so every link sends its actions in the order the cluster
//! made them, and a relay's msgid is recorded the moment its span is queued.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Mutex, MutexGuard, PoisonError};

use h2msg::cluster::{
    Action, Cluster, ClusterError, ClusterStats, Heap, Limits, Registration, SpanInput, Via,
    send_action,
};
use h2msg::wire::LnkSpan;

use crate::blocking::{DuplexWaker, StdDmsgIocom};

/// How much of the cluster a service holds at most (docs/dmsg.md 5.7).
pub const SERVICE_LIMITS: Limits = Limits {
    conns: 4096,
    nodes: 4096,
    links: 65536,
    relays: 65536,
    payloads: 8192,
};

/// The spans waiting for one link's thread, and how to wake it.
#[derive(Debug)]
struct Mailbox {
    queued: Vec<Action>,
    waker: DuplexWaker,
}

#[derive(Debug)]
struct Hub {
    cluster: Cluster<Heap>,
    mailboxes: HashMap<u64, Mailbox>,
}

impl Hub {
    /// Queues `actions` for their links; returns the wakers of the links that got some.
    fn post(&mut self, actions: Vec<Action>) -> Vec<DuplexWaker> {
        let mut wake: Vec<DuplexWaker> = Vec::new();
        for action in actions {
            let Some(mailbox) = self.mailboxes.get_mut(&action.conn()) else {
                continue; // the link is gone; the cluster forgets it with link_down
            };
            if let Action::CloseSpan {
                relay, msgid: None, ..
            } = action
            {
                // Its open is still queued: neither goes out.
                mailbox
                    .queued
                    .retain(|a| !matches!(a, Action::OpenSpan { relay: r, .. } if *r == relay));
                continue;
            }
            mailbox.queued.push(action);
            wake.push(mailbox.waker.clone());
        }
        wake
    }
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
        Self(Mutex::new(Hub {
            cluster: Cluster::new(&Heap(limits), rself),
            mailboxes: HashMap::new(),
        }))
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

    /// Sends what is queued for link `link` on its connection `io`.
    pub fn deliver(&self, link: u64, io: &mut StdDmsgIocom) {
        let mut hub = self.lock();
        let Some(mailbox) = hub.mailboxes.get_mut(&link) else {
            return;
        };
        let queued = std::mem::take(&mut mailbox.queued);
        for action in &queued {
            send_action(io, &mut hub.cluster, action);
        }
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

    /// What the cluster refused or retried.
    #[must_use]
    pub fn stats(&self) -> ClusterStats {
        self.lock().cluster.stats()
    }
}
