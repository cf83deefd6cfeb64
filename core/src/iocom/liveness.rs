//! The connection's timers: keepalive, the dead-peer and write-stall rules, and
//! transaction deadlines, all on the time the driver passes in ([`crate::time`]).
//!
//! Activity is not stamped when it happens — the connection has no clock then — but at
//! the next [`Iocom::handle_timeout`](super::Iocom::handle_timeout): bytes that arrived
//! since the last call count as arriving at its `now`. A rule can therefore fire late by
//! the time between a driver's calls, never early.

use core::time::Duration;

use crate::time::{Instant, earliest};
use crate::wire::Cmd;

/// When a connection checks that its peer is alive and its writes progress. Times are
/// measured on the `now` the driver passes to
/// [`Iocom::handle_timeout`](super::Iocom::handle_timeout); `None` turns a rule off.
///
/// ```
/// use core::time::Duration;
/// use h2msg::Liveness;
///
/// let defaults = Liveness::default();
/// assert_eq!(defaults.idle, Some(Duration::from_secs(30)));
/// // A silent peer is dropped `idle + dead` after its last byte.
/// assert_eq!(defaults.silence_limit(), Some(Duration::from_secs(60)));
/// assert_eq!(Liveness::OFF.silence_limit(), None);
/// ```
///
/// A zero duration is taken as it is: `idle: Some(ZERO)` pings after every quiet tick,
/// `stall: Some(ZERO)` ends a link as soon as a byte waits. Use `None` to turn a rule off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Liveness {
    /// Keepalive: after this long without a received byte, send an `LNK_PING`. Any byte
    /// that comes back proves the peer alive — a reply (the 2012 C node answers with
    /// error 0x20, which proves it just as well) or anything else. `None`: no pings.
    pub idle: Option<Duration>,
    /// Dead peer: this long without a received byte after the keepalive ping — or, with
    /// no keepalive (`idle` off), after the last received byte — ends the link with
    /// [`LinkEnd::PeerTimeout`](super::LinkEnd::PeerTimeout).
    pub dead: Option<Duration>,
    /// Write stall: bytes wait to be written and the transport took none of them for this
    /// long: the link ends with [`LinkEnd::WriteStalled`](super::LinkEnd::WriteStalled).
    /// It catches a peer that answers pings but never reads.
    pub stall: Option<Duration>,
}

impl Liveness {
    /// Every rule off: the connection never needs the time (the 2012 C behaviour).
    pub const OFF: Self = Self {
        idle: None,
        dead: None,
        stall: None,
    };

    /// How long a silent peer is kept: `idle + dead`, if both rules are on.
    #[must_use]
    pub fn silence_limit(&self) -> Option<Duration> {
        Some(self.idle?.saturating_add(self.dead?))
    }
}

impl Default for Liveness {
    /// Ping after 30 s of silence, drop the peer 30 s later (one minute in all), and end a
    /// link whose writes made no progress for 60 s.
    fn default() -> Self {
        Self {
            idle: Some(Duration::from_secs(30)),
            dead: Some(Duration::from_secs(30)),
            stall: Some(Duration::from_secs(60)),
        }
    }
}

/// What a call to [`Timers::tick`] found due, at most one of each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Due {
    /// Send a keepalive ping.
    pub(crate) ping: bool,
    /// The link ends: no byte for `dead` after the ping.
    pub(crate) peer_timeout: bool,
    /// The link ends: no write progress for `stall`.
    pub(crate) write_stalled: bool,
}

/// The liveness clock of one connection.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timers {
    rules: Liveness,
    /// The latest `now` seen; `None` until the first `handle_timeout`.
    clock: Option<Instant>,
    /// Bytes arrived since the last tick.
    rx_activity: bool,
    /// The transport took bytes since the last tick.
    tx_progress: bool,
    last_rx: Instant,
    /// When the keepalive ping of this silence went out (the dead rule runs from there).
    pinged_at: Option<Instant>,
    /// Since when pending bytes wait without progress.
    stalled_since: Option<Instant>,
}

impl Timers {
    pub(crate) const fn new(rules: Liveness) -> Self {
        Self {
            rules,
            clock: None,
            rx_activity: false,
            tx_progress: false,
            last_rx: Instant::ZERO,
            pinged_at: None,
            stalled_since: None,
        }
    }

    pub(crate) const fn received(&mut self) {
        self.rx_activity = true;
    }

    pub(crate) const fn wrote(&mut self) {
        self.tx_progress = true;
    }

    /// Advances the clock to `now` (never backwards) and says which rules are due.
    /// `tx_waiting`: bytes wait to be written.
    pub(crate) fn tick(&mut self, now: Instant, tx_waiting: bool) -> Due {
        let now = self.clock.map_or(now, |clock| clock.max(now));
        if self.clock.is_none() || self.rx_activity {
            self.last_rx = now;
            self.pinged_at = None;
        }
        self.clock = Some(now);
        self.rx_activity = false;
        if !tx_waiting {
            self.stalled_since = None;
        } else if self.tx_progress || self.stalled_since.is_none() {
            self.stalled_since = Some(now);
        }
        self.tx_progress = false;

        let mut due = Due::default();
        let passed = |since: Option<Instant>, limit: Option<Duration>| match (since, limit) {
            (Some(since), Some(limit)) => now >= since + limit,
            _ => false,
        };
        due.write_stalled = passed(self.stalled_since, self.rules.stall);
        // Without pings the dead-peer time runs from the last byte itself.
        let silence_from = match self.rules.idle {
            Some(_) => self.pinged_at,
            None => Some(self.last_rx),
        };
        due.peer_timeout = passed(silence_from, self.rules.dead);
        if self.pinged_at.is_none() && passed(Some(self.last_rx), self.rules.idle) {
            self.pinged_at = Some(now);
            due.ping = true;
        }
        due
    }

    /// When the write-stall rule falls due, if bytes wait (the only rule left once the
    /// link is down and its last replies are being written).
    pub(crate) fn next_stall(&self) -> Option<Instant> {
        let stall = self.rules.stall?;
        let Some(clock) = self.clock else {
            return Some(Instant::ZERO);
        };
        Some((self.stalled_since.unwrap_or(clock) + stall).max(clock))
    }

    /// When the next rule falls due, if any: `now`-ish (the clock) when activity waits to
    /// be stamped or the clock has not started, so that the driver calls at once.
    pub(crate) fn next(&self, tx_waiting: bool) -> Option<Instant> {
        let rules = self.rules;
        if rules == Liveness::OFF {
            return None;
        }
        let Some(clock) = self.clock else {
            return Some(Instant::ZERO);
        };
        let stall = match (rules.stall, tx_waiting) {
            (Some(limit), true) => Some(self.stalled_since.unwrap_or(clock) + limit),
            _ => None,
        };
        let silence = match (self.pinged_at, rules.idle) {
            (Some(at), _) => rules.dead.map(|dead| at + dead),
            (None, Some(idle)) => Some(self.last_rx + idle),
            (None, None) => rules.dead.map(|dead| self.last_rx + dead),
        };
        let due = earliest(stall, silence);
        // Unstamped activity moves a deadline later, never earlier: no need to wake early.
        due.map(|at| at.max(clock))
    }
}

/// A deadline on a transaction we opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TransDeadline {
    pub(crate) msgid: u32,
    /// The transaction's command, for the ABORT.
    pub(crate) cmd: Cmd,
    pub(crate) at: Instant,
    /// The deadline passed: the ABORT went out and the application was told.
    pub(crate) expired: bool,
    /// [`Event::TimedOut`](super::Event::TimedOut) was given.
    pub(crate) reported: bool,
}

/// The earliest unexpired deadline.
pub(crate) fn next_deadline(deadlines: &[TransDeadline]) -> Option<Instant> {
    deadlines.iter().filter(|d| !d.expired).map(|d| d.at).min()
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn at(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    fn rules(idle: u64, dead: u64, stall: u64) -> Liveness {
        Liveness {
            idle: Some(Duration::from_millis(idle)),
            dead: Some(Duration::from_millis(dead)),
            stall: Some(Duration::from_millis(stall)),
        }
    }

    #[test]
    fn a_silent_peer_is_pinged_at_idle_and_dropped_at_idle_plus_dead() {
        let mut t = Timers::new(rules(100, 50, 1000));
        assert_eq!(
            t.next(false),
            Some(Instant::ZERO),
            "unstarted: call at once"
        );
        assert_eq!(t.tick(at(10), false), Due::default());
        assert_eq!(t.next(false), Some(at(110)));
        assert_eq!(t.tick(at(109), false), Due::default());
        let due = t.tick(at(110), false);
        assert!(due.ping && !due.peer_timeout);
        assert_eq!(t.next(false), Some(at(160)));
        assert!(!t.tick(at(159), false).peer_timeout);
        let due = t.tick(at(160), false);
        assert!(due.peer_timeout && !due.ping);
    }

    #[test]
    fn any_received_byte_restarts_the_silence() {
        let mut t = Timers::new(rules(100, 50, 1000));
        t.tick(at(0), false);
        assert!(t.tick(at(100), false).ping);
        t.received();
        assert_eq!(t.tick(at(140), false), Due::default(), "alive: no timeout");
        assert_eq!(t.next(false), Some(at(240)));
    }

    #[test]
    fn time_going_backwards_is_no_time_and_a_jump_fires_each_rule_once() {
        let mut t = Timers::new(rules(100, 50, 1000));
        t.tick(at(1_000), false);
        assert_eq!(t.tick(at(5), false), Due::default());
        assert_eq!(t.next(false), Some(at(1_100)), "the clock did not go back");
        let due = t.tick(at(u64::MAX), false);
        assert!(
            due.ping && !due.peer_timeout,
            "the ping first, the dead rule later"
        );
        assert!(!t.tick(at(u64::MAX), false).ping, "once");
        assert!(t.tick(at(u64::MAX), false).peer_timeout);
    }

    #[test]
    fn a_write_stall_counts_from_the_last_progress() {
        let mut t = Timers::new(rules(10_000, 10_000, 30));
        t.tick(at(0), false);
        assert_eq!(
            t.next(true),
            Some(at(30)),
            "bytes queued since: at most `stall`"
        );
        t.tick(at(5), true);
        assert_eq!(t.next(true), Some(at(35)));
        t.wrote();
        assert!(!t.tick(at(34), true).write_stalled);
        assert_eq!(t.next(true), Some(at(64)));
        assert!(t.tick(at(64), true).write_stalled);
        // An empty queue never stalls.
        let mut idle = Timers::new(rules(10_000, 10_000, 30));
        idle.tick(at(0), false);
        assert!(!idle.tick(at(1_000), false).write_stalled);
    }

    #[test]
    fn without_keepalive_the_dead_time_runs_from_the_last_byte() {
        let mut t = Timers::new(Liveness {
            idle: None,
            dead: Some(Duration::from_millis(80)),
            stall: None,
        });
        t.tick(at(0), false);
        assert_eq!(t.next(false), Some(at(80)));
        t.received();
        assert_eq!(
            t.tick(at(50), false),
            Due::default(),
            "no ping without keepalive"
        );
        assert_eq!(t.next(false), Some(at(130)));
        assert!(!t.tick(at(129), false).peer_timeout);
        let due = t.tick(at(130), false);
        assert!(due.peer_timeout && !due.ping);
    }

    #[test]
    fn off_needs_no_time() {
        let mut t = Timers::new(Liveness::OFF);
        assert_eq!(t.next(true), None);
        assert_eq!(t.tick(at(u64::MAX), true), Due::default());
    }
}
