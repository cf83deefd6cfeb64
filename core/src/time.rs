//! Time as the driver tells it: the core never reads a clock.
//!
//! Every timed rule — the handshake deadline, keepalive, the dead-peer and write-stall
//! rules, transaction deadlines — runs on one seam, the same on every value that has
//! timers: `poll_timeout()` says when it next needs attention, `handle_timeout(now)` gives
//! it the time. `now` is an [`Instant`]: milliseconds on a monotonic clock the driver
//! owns, from any origin (boot, process start, a simulator's zero). Nothing here assumes
//! the clock is well behaved: a `now` that goes backwards counts as no time passed, and a
//! jump far ahead fires each due rule once.
//!
//! A leaf module: it imports nothing from the crate, so every layer may use it.

use core::fmt;
use core::time::Duration;

/// A point on the driver's monotonic clock, in milliseconds from an origin of its choice.
///
/// ```
/// use core::time::Duration;
/// use h2msg::Instant;
///
/// let start = Instant::from_millis(1_000);
/// let later = start + Duration::from_secs(2);
/// assert_eq!(later.as_millis(), 3_000);
/// assert_eq!(later.saturating_since(start), Duration::from_secs(2));
/// // A clock that went backwards measures no time, never a negative one.
/// assert_eq!(start.saturating_since(later), Duration::ZERO);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

impl Instant {
    /// The clock's origin.
    pub const ZERO: Self = Self(0);

    /// The instant `millis` milliseconds after the origin.
    #[must_use]
    pub const fn from_millis(millis: u64) -> Self {
        Self(millis)
    }

    /// Milliseconds since the origin.
    #[must_use]
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// The time from `earlier` to `self`; zero if `earlier` is later (a clock that went
    /// backwards).
    #[must_use]
    pub const fn saturating_since(self, earlier: Self) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }

    /// `self + d`, rounded up to the millisecond (a timer never fires early) and saturating
    /// at the end of the clock.
    #[must_use]
    pub fn saturating_add(self, d: Duration) -> Self {
        let partial = u128::from(!d.subsec_nanos().is_multiple_of(1_000_000));
        let millis = u64::try_from(d.as_millis() + partial).unwrap_or(u64::MAX);
        Self(self.0.saturating_add(millis))
    }

    /// The later of the two: how a timer holder keeps its clock from going backwards.
    #[must_use]
    pub const fn max(self, other: Self) -> Self {
        if other.0 > self.0 { other } else { self }
    }
}

impl core::ops::Add<Duration> for Instant {
    type Output = Self;

    /// Saturating ([`Instant::saturating_add`]): a timer never wraps into the past.
    fn add(self, d: Duration) -> Self {
        self.saturating_add(d)
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ms", self.0)
    }
}

/// The earlier of two optional deadlines (`None` = no deadline).
#[must_use]
pub(crate) fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b < a { b } else { a }),
        (a, None) => a,
        (None, b) => b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instant_prints_its_milliseconds() {
        extern crate std;
        assert_eq!(std::format!("{}", Instant::from_millis(1500)), "1500 ms");
    }

    #[test]
    fn a_part_of_a_millisecond_counts_as_a_whole_one() {
        let start = Instant::from_millis(10);
        assert_eq!((start + Duration::from_micros(1)).as_millis(), 11);
        assert_eq!((start + Duration::from_micros(2_000)).as_millis(), 12);
    }

    #[test]
    fn add_saturates_instead_of_wrapping() {
        let end = Instant::from_millis(u64::MAX - 1);
        assert_eq!((end + Duration::from_millis(5)).as_millis(), u64::MAX);
        assert_eq!(
            (Instant::ZERO + Duration::MAX).as_millis(),
            u64::MAX,
            "a Duration past u64 milliseconds saturates"
        );
    }

    #[test]
    fn earliest_ignores_missing_deadlines() {
        let a = Some(Instant::from_millis(5));
        let b = Some(Instant::from_millis(3));
        assert_eq!(earliest(a, b), b);
        assert_eq!(earliest(b, a), b);
        assert_eq!(earliest(a, None), a);
        assert_eq!(earliest(None, b), b);
        assert_eq!(earliest(None, None), None);
    }
}
