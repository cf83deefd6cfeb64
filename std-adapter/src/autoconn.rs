//! Outgoing links the service keeps up (dmsg.md 6.2): the targets of `--connect HOST` and
//! of the file `autoconn` in the key directory. Each target has a keeper thread that
//! connects, lets the service serve the link as it serves the links `span` starts, and
//! reconnects after *any* end of the session, with a backoff (D28: libdmsg reconnects
//! only when a session ends, which an E3 session after a receive error never does).
//!
//! The pieces that decide something are without I/O and tested on their own: the file's
//! format ([`parse`]), the polling rule ([`FilePoller`], [`poll_once`] over an injected
//! [`AutoconnSource`] and clock) and the reconnect delays ([`Backoff`], with the jitter
//! from an injected random number). [`KeptLinks`] runs them in threads over a [`Dialer`],
//! which the service implements.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Read as _};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use log::{debug, info, warn};

use crate::transport::Endpoint;

/// The file's name in the key directory (libdmsg: `/etc/hammer2/autoconn`).
pub const AUTOCONN_FILE: &str = "autoconn";

/// The longest line of the format, newline not counted (libdmsg reads lines into 256
/// bytes with `fgets`).
pub const LINE_MAX: usize = 255;

/// The largest file read: far more than [`TARGETS_MAX`] lines of [`LINE_MAX`]
/// characters. A larger file is refused as a whole (the targets stay as they were), so
/// that a file growing without bound costs a stat, not memory.
pub const FILE_MAX: u64 = 1 << 20;

/// Most targets kept up at once: each one is a thread and a link. Further lines of the
/// file are ignored, with a warning.
pub const TARGETS_MAX: usize = 256;

/// How often the file is looked at (dmsg.md 6.2: every 5 s, as libdmsg).
pub const DEFAULT_POLL: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------
// The format

/// What [`parse`] found: the targets in file order, each once, and what it skipped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    /// The first token of each line that has one, as written, duplicates removed.
    pub targets: Vec<String>,
    /// One text per line skipped or cut, naming its line number (from 1).
    pub warnings: Vec<String>,
}

/// The delimiters of dmsg.md 6.2 (libdmsg's `strtok(buf, " \t\r\n")`).
fn is_delimiter(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Parses an autoconn file (dmsg.md 6.2): per line, the first token (delimited by space,
/// tab, CR or LF) names a target; a token starting with `#` makes the line a comment;
/// lines without a token are ignored.
///
/// Where the format says nothing or libdmsg does something accidental:
/// - A line longer than [`LINE_MAX`] characters: its first token is taken from its first
///   [`LINE_MAX`] characters and the rest of the line is ignored, with a warning. (libdmsg
///   reads the rest as further lines, so the tail's first word became a target.) If the
///   token reaches the cut it is not taken: it would be a truncated name.
/// - A token with a control character (NUL included) or that is not UTF-8 is no host
///   name: the line is skipped, with a warning.
/// - A target written twice is kept once; beyond [`TARGETS_MAX`] targets the rest are
///   ignored, with a warning.
#[must_use]
pub fn parse(bytes: &[u8]) -> Parsed {
    let mut parsed = Parsed::default();
    for (index, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let number = index + 1;
        let head = line.get(..LINE_MAX).unwrap_or(line);
        let long = head.len() < line.len();
        let start = head.iter().position(|&b| !is_delimiter(b));
        let Some(start) = start else {
            continue;
        };
        let rest = head.get(start..).unwrap_or_default();
        let len = rest
            .iter()
            .position(|&b| is_delimiter(b))
            .unwrap_or(rest.len());
        let token = rest.get(..len).unwrap_or_default();
        if token.first() == Some(&b'#') {
            continue;
        }
        if long {
            if start + len == head.len() {
                parsed.warnings.push(format!(
                    "line {number}: longer than {LINE_MAX} characters and its first word \
                     reaches the cut: skipped"
                ));
                continue;
            }
            parsed.warnings.push(format!(
                "line {number}: longer than {LINE_MAX} characters: the rest ignored"
            ));
        }
        let host = match std::str::from_utf8(token) {
            Ok(host) if !host.chars().any(char::is_control) => host,
            _ => {
                parsed.warnings.push(format!(
                    "line {number}: {:?} is no host name: skipped",
                    String::from_utf8_lossy(token)
                ));
                continue;
            }
        };
        if parsed.targets.iter().any(|t| t == host) {
            continue;
        }
        if parsed.targets.len() >= TARGETS_MAX {
            parsed.warnings.push(format!(
                "line {number}: more than {TARGETS_MAX} targets: the rest ignored"
            ));
            break;
        }
        parsed.targets.push(host.to_string());
    }
    parsed
}

// ---------------------------------------------------------------------------------------
// The polling rule

/// What a look at the file found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// No file.
    Absent,
    /// A file with this modification time.
    Present(SystemTime),
}

/// What to do after a poll ([`FilePoller::poll`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PollStep {
    /// Nothing changed since the targets were last taken from the file.
    Unchanged,
    /// A change not to act on yet: a file that appeared or vanished since the last poll
    /// (it must be seen so on two polls in a row), or one modified within the current
    /// second (it may still be written to).
    Pending,
    /// The file is gone (seen so on two polls in a row): no targets from it any more.
    Gone,
    /// Read the file, whose modification time is this; then tell
    /// [`FilePoller::read_done`] what a look after the read found.
    Read(SystemTime),
}

/// The polling rule of dmsg.md 6.2, without I/O: it is told what each poll saw and the
/// time, and says when to read the file and whether a read counts.
///
/// A change counts only if the file's presence is what the previous poll saw too (so a
/// file being created or removed is acted on one poll later), its modification time is
/// not in the current second, and it did not move during the read. libdmsg remembers the
/// presence only across polls that saw a change; here every poll updates it, so the
/// rule holds exactly as stated. Modification times are compared in full precision for
/// "changed" and "moved", in whole seconds for "the current second".
#[derive(Clone, Debug, Default)]
pub struct FilePoller {
    /// The modification time of the file the targets were last taken from (`None`: no
    /// file then).
    synced: Option<SystemTime>,
    /// Whether the previous poll saw a file.
    present_last: bool,
}

/// Whole seconds since the epoch, negative before it, as `st_mtime` counts them.
fn unix_seconds(t: SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(after) => i128::from(after.as_secs()),
        // -0.5 s is in second -1, as a floor.
        Err(before) => {
            let before = before.duration();
            -i128::from(before.as_secs()) - i128::from(before.subsec_nanos() > 0)
        }
    }
}

impl FilePoller {
    /// A poller that has read no file yet (a file present at start is read on the
    /// second poll, as a created one).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// One poll: the file was `seen` so at `now`.
    pub fn poll(&mut self, seen: Seen, now: SystemTime) -> PollStep {
        let seen_before = std::mem::replace(&mut self.present_last, seen != Seen::Absent);
        match seen {
            Seen::Absent if self.synced.is_none() => PollStep::Unchanged,
            Seen::Absent if seen_before => PollStep::Pending,
            Seen::Absent => {
                self.synced = None;
                PollStep::Gone
            }
            Seen::Present(mtime) if self.synced == Some(mtime) => PollStep::Unchanged,
            Seen::Present(_) if !seen_before => PollStep::Pending,
            Seen::Present(mtime) if unix_seconds(mtime) == unix_seconds(now) => PollStep::Pending,
            Seen::Present(mtime) => PollStep::Read(mtime),
        }
    }

    /// The file whose modification time was `before` ([`PollStep::Read`]) has been read
    /// (or judged unreadable), and a look after that found `after`: whether what was read
    /// counts. If it does, the file is not read again until its modification time
    /// changes; if not, the next poll tries again.
    pub fn read_done(&mut self, before: SystemTime, after: Seen) -> bool {
        if after == Seen::Present(before) {
            self.synced = Some(before);
            true
        } else {
            false
        }
    }
}

/// What a look at the file found, with what decides whether to read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileMeta {
    /// Its modification time.
    pub mtime: SystemTime,
    /// Whether it is a regular file (a FIFO would block the reader, a directory or a
    /// device is no list of hosts).
    pub regular: bool,
    /// Its length in bytes.
    pub len: u64,
}

/// Where the autoconn file is looked at and read: the file system, or a test's stand-in.
pub trait AutoconnSource {
    /// The file's metadata, `Ok(None)` if there is none.
    ///
    /// # Errors
    /// Any other failure to look (permissions on the directory, ...).
    fn stat(&self) -> io::Result<Option<FileMeta>>;

    /// The file's bytes, at most `limit` + 1 of them (so that a longer file shows), read
    /// only after [`stat`](Self::stat) said it is a regular file.
    ///
    /// # Errors
    /// The file could not be opened or read, or is not a regular file once opened.
    fn read(&self, limit: u64) -> io::Result<Vec<u8>>;
}

/// The autoconn file at a path.
#[derive(Clone, Debug)]
pub struct FileSource(pub PathBuf);

impl AutoconnSource for FileSource {
    fn stat(&self) -> io::Result<Option<FileMeta>> {
        match std::fs::metadata(&self.0) {
            Ok(m) => Ok(Some(FileMeta {
                mtime: m.modified()?,
                regular: m.is_file(),
                len: m.len(),
            })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn read(&self, limit: u64) -> io::Result<Vec<u8>> {
        let file = std::fs::File::open(&self.0)?;
        // What was opened, in case the name changed hands since the stat: a FIFO opened
        // for reading would have blocked in `open` (as key files, a race in a directory
        // only the administrator writes to).
        if !file.metadata()?.is_file() {
            return Err(io::Error::other("not a regular file"));
        }
        let mut bytes = Vec::new();
        file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
        Ok(bytes)
    }
}

/// What [`poll_once`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PollOutcome {
    /// The file's targets, when they are to be taken now (empty: the file is gone or
    /// lists none).
    pub targets: Option<Vec<String>>,
    /// What to warn about (a refused file, skipped lines).
    pub warnings: Vec<String>,
}

/// One poll of the file through `source` at `now`, by the rule of [`FilePoller`]. A file
/// that is not a regular file or is larger than [`FILE_MAX`] is refused: the targets stay
/// as they were, and it is not looked at again until its modification time changes. A
/// failure to look or to read changes nothing and is tried again at the next poll.
pub fn poll_once(
    poller: &mut FilePoller,
    source: &impl AutoconnSource,
    now: SystemTime,
) -> PollOutcome {
    let mut outcome = PollOutcome::default();
    let meta = match source.stat() {
        Ok(meta) => meta,
        Err(e) => {
            outcome.warnings.push(format!("cannot look at it: {e}"));
            return outcome;
        }
    };
    let seen = meta.map_or(Seen::Absent, |m| Seen::Present(m.mtime));
    let mtime = match poller.poll(seen, now) {
        PollStep::Unchanged | PollStep::Pending => return outcome,
        PollStep::Gone => {
            outcome.targets = Some(Vec::new());
            return outcome;
        }
        PollStep::Read(mtime) => mtime,
    };
    let refuse = |outcome: &mut PollOutcome, poller: &mut FilePoller, why: String| {
        outcome.warnings.push(format!("{why}: refused"));
        poller.read_done(mtime, Seen::Present(mtime));
    };
    match meta {
        Some(m) if !m.regular => {
            refuse(&mut outcome, poller, "not a regular file".into());
            return outcome;
        }
        Some(m) if m.len > FILE_MAX => {
            refuse(
                &mut outcome,
                poller,
                format!("larger than {FILE_MAX} bytes"),
            );
            return outcome;
        }
        _ => {}
    }
    let bytes = match source.read(FILE_MAX) {
        Ok(bytes) if bytes.len() as u64 > FILE_MAX => {
            refuse(
                &mut outcome,
                poller,
                format!("larger than {FILE_MAX} bytes"),
            );
            return outcome;
        }
        Ok(bytes) => bytes,
        Err(e) => {
            outcome.warnings.push(format!("cannot read it: {e}"));
            return outcome;
        }
    };
    let after = match source.stat() {
        Ok(after) => after.map_or(Seen::Absent, |m| Seen::Present(m.mtime)),
        Err(e) => {
            outcome.warnings.push(format!("cannot look at it: {e}"));
            return outcome;
        }
    };
    if poller.read_done(mtime, after) {
        let parsed = parse(&bytes);
        outcome.warnings = parsed.warnings;
        outcome.targets = Some(parsed.targets);
    }
    outcome
}

// ---------------------------------------------------------------------------------------
// The reconnect delays

/// When a keeper tries again: after `failures` attempts in a row that did not give a
/// lasting session, wait `first × 2^failures`, at most `cap`, of which a random part
/// (up to half) is taken off, so that the peers of a restarted node do not all come back
/// in the same instant.
///
/// The default is 250 ms doubling to 5 s: the first retry after a session that ran fine
/// comes fast (125 to 250 ms: a peer that restarts is back soon), and a target that stays
/// away is tried every 2.5 to 5 s, never less often than libdmsg's fixed 5 s (D28). A
/// session counts as lasting when it stayed up [`Backoff::stable`] (10 s): one that a peer
/// ends at once (refused, full) keeps backing off instead of reconnecting in a loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The delay after the first failure (or after a lasting session), before jitter.
    pub first: Duration,
    /// The longest delay.
    pub cap: Duration,
    /// How long a session must have been up to reset the failures.
    pub stable: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            first: Duration::from_millis(250),
            cap: Duration::from_secs(5),
            stable: Duration::from_secs(10),
        }
    }
}

impl Backoff {
    /// The delay before the next attempt, `failures` attempts having failed in a row (0:
    /// a lasting session just ended); `random` is uniform over `u32` and takes off up to
    /// half: the delay is in `[d/2, d]` where `d = min(cap, first × 2^failures)`.
    #[must_use]
    pub fn delay(&self, failures: u32, random: u32) -> Duration {
        let full = self
            .first
            .checked_mul(1u32.checked_shl(failures.min(31)).unwrap_or(u32::MAX))
            .unwrap_or(self.cap)
            .min(self.cap);
        // random / 2^32 of half the delay, in nanoseconds (at most 2^64 ns: no overflow).
        let half = full.as_nanos() / 2;
        let off = (half * u128::from(random)) >> 32;
        full.saturating_sub(Duration::from_nanos(u64::try_from(off).unwrap_or(u64::MAX)))
    }
}

// ---------------------------------------------------------------------------------------
// Keepers

/// A link a [`Dialer`] set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkUp {
    /// The service's number of the link (`status`, `tree`'s `via`).
    pub link: u64,
    /// Our end's address (`ADDR:PORT`), as the peer's `status` shows the link.
    pub local: String,
}

/// How a session ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionEnd {
    /// No link was set up: why (name lookup, connect, refused, handshake).
    NotSetUp(String),
    /// The link was set up, but the keeper declined it (it was being stopped) and it was
    /// closed at once.
    Declined,
    /// The link was served and ended: `None` closed by the peer, else why.
    Ended(Option<String>),
}

/// How a keeper reaches its target: the service implements it with its outgoing DMSG
/// links, served as those `span` starts.
pub trait Dialer: Send + Sync {
    /// Connects to `endpoint` and sets the link up; then calls `up`, and unless that
    /// declines (returns false) serves the link until it ends.
    fn session(&self, endpoint: &Endpoint, up: &mut dyn FnMut(LinkUp) -> bool) -> SessionEnd;

    /// Shuts link `link` down: its session ends soon after.
    fn shut_down(&self, link: u64);
}

/// Where a target comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Origin {
    /// `--connect`.
    Option,
    /// The autoconn file.
    File,
}

/// What a keeper is doing.
#[derive(Clone, Debug)]
enum Phase {
    Connecting,
    Up { link: LinkUp, since: Instant },
    Waiting { until: Instant },
    Stopped,
}

#[derive(Debug)]
struct KeeperState {
    stop: bool,
    phase: Phase,
    /// Attempts in a row that did not give a lasting session.
    failures: u32,
    /// Sessions set up so far.
    sessions: u64,
    /// How the last attempt or session ended.
    last: Option<String>,
}

/// One target's keeper, shared by its thread and [`KeptLinks`].
#[derive(Debug)]
struct Keeper {
    endpoint: Endpoint,
    state: Mutex<KeeperState>,
    wake: Condvar,
}

impl Keeper {
    fn lock(&self) -> MutexGuard<'_, KeeperState> {
        // The state is plain data, consistent after any panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Asks the keeper to stop: a wait ends at once, a served link is shut down.
    fn stop(&self, dialer: &dyn Dialer) {
        let mut state = self.lock();
        state.stop = true;
        if let Phase::Up { link, .. } = &state.phase {
            dialer.shut_down(link.link);
        }
        self.wake.notify_all();
    }

    /// The keeper's thread: connect, serve, wait out the backoff, again, until stopped.
    fn run(&self, dialer: &dyn Dialer, backoff: Backoff) {
        let name = self.endpoint.to_string();
        loop {
            {
                let mut state = self.lock();
                if state.stop {
                    break;
                }
                state.phase = Phase::Connecting;
            }
            let mut up_at = None;
            let end = dialer.session(&self.endpoint, &mut |link| {
                let mut state = self.lock();
                if state.stop {
                    return false;
                }
                info!("autoconn {name}: up as link {}", link.link);
                let since = Instant::now();
                up_at = Some(since);
                state.phase = Phase::Up { link, since };
                state.sessions += 1;
                true
            });
            let mut state = self.lock();
            let lasted = up_at.is_some_and(|t| t.elapsed() >= backoff.stable);
            state.failures = if lasted {
                0
            } else {
                state.failures.saturating_add(1)
            };
            let why = match end {
                SessionEnd::NotSetUp(why) => why,
                SessionEnd::Declined => "stopped".to_string(),
                SessionEnd::Ended(None) => "closed".to_string(),
                SessionEnd::Ended(Some(why)) => why,
            };
            if state.stop {
                break;
            }
            // Without the system's randomness the delays are simply not spread.
            let delay = backoff.delay(state.failures, getrandom::u32().unwrap_or(0));
            let message = format!(
                "autoconn {name}: {why}; again in {:.1} s (attempt {} in a row)",
                delay.as_secs_f64(),
                state.failures
            );
            // The first failure after a good spell is news; the repeats are not.
            if state.failures <= 1 {
                warn!("{message}");
            } else {
                debug!("{message}");
            }
            state.last = Some(why);
            let until = Instant::now() + delay;
            state.phase = Phase::Waiting { until };
            while !state.stop {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                state = self
                    .wake
                    .wait_timeout(state, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
        }
        self.lock().phase = Phase::Stopped;
        info!("autoconn {name}: stopped");
    }

    /// The `status` line of this target.
    fn status_line(&self, origin: Origin) -> String {
        let state = self.lock();
        let origin = match origin {
            Origin::Option => "--connect",
            Origin::File => "autoconn",
        };
        let what = match &state.phase {
            Phase::Connecting => "connecting".to_string(),
            Phase::Up { link, since } => format!(
                "connected as link #{} from {}, up {:.1} s",
                link.link,
                link.local,
                since.elapsed().as_secs_f64()
            ),
            Phase::Waiting { until } => format!(
                "retrying in {:.1} s",
                until
                    .saturating_duration_since(Instant::now())
                    .as_secs_f64()
            ),
            Phase::Stopped => "stopped".to_string(),
        };
        let mut line = format!(
            "  {} ({origin}) {what}; sessions {}, failed attempts in a row {}",
            self.endpoint, state.sessions, state.failures
        );
        if let Some(last) = &state.last {
            let _ = write!(line, "; last: {last}");
        }
        line.push('\n');
        line
    }
}

/// A target's keeper and thread.
struct Running {
    keeper: Arc<Keeper>,
    origins: Vec<Origin>,
    thread: JoinHandle<()>,
}

#[derive(Default)]
struct Inner {
    /// Taken at stop: the keepers' threads hold their own references, so a stopped
    /// service's node is not kept alive by its own `KeptLinks`.
    dialer: Option<Arc<dyn Dialer>>,
    /// By endpoint text, so that `HOST` and `HOST:987` are one target.
    running: BTreeMap<String, Running>,
    /// Threads of keepers whose targets went away, joined at stop.
    retired: Vec<JoinHandle<()>>,
    fixed: Vec<String>,
    from_file: Vec<String>,
    poller: Option<JoinHandle<()>>,
}

/// The service's kept-up outgoing links: one keeper per target of `--connect` and of the
/// autoconn file; `status` lists them.
pub struct KeptLinks {
    backoff: Backoff,
    inner: Mutex<Inner>,
    /// Wakes the poller early: at stop.
    wake: Condvar,
}

impl std::fmt::Debug for KeptLinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeptLinks")
            .field("backoff", &self.backoff)
            .finish_non_exhaustive()
    }
}

/// How the service keeps its outgoing links.
#[derive(Clone, Debug)]
pub struct KeepOptions {
    /// `--connect` targets, kept up for the service's life.
    pub connect: Vec<String>,
    /// The autoconn file, and how often it is polled; `None`: no file.
    pub file: Option<(PathBuf, Duration)>,
    /// The reconnect delays.
    pub backoff: Backoff,
}

impl KeptLinks {
    /// Starts a keeper for each of `options.connect` and a poller for the file, which
    /// starts and stops keepers as its lines come and go.
    ///
    /// # Errors
    /// No thread could be started for the poller (a keeper without a thread is logged and
    /// its target left out).
    pub fn start(dialer: Arc<dyn Dialer>, options: KeepOptions) -> io::Result<Arc<Self>> {
        let kept = Arc::new(Self {
            backoff: options.backoff,
            inner: Mutex::new(Inner {
                dialer: Some(dialer),
                fixed: options.connect,
                ..Inner::default()
            }),
            wake: Condvar::new(),
        });
        kept.reconcile(&mut kept.lock());
        if let Some((path, interval)) = options.file {
            let polling = Arc::clone(&kept);
            let poller = thread::Builder::new()
                .name("autoconn".into())
                .spawn(move || polling.poll_file(&FileSource(path), interval))?;
            kept.lock().poller = Some(poller);
        }
        Ok(kept)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Plain data; a keeper that panicked leaves only its own state behind.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Polls the file every `interval` until stopped, taking its targets when the rule
    /// says so.
    fn poll_file(&self, source: &FileSource, interval: Duration) {
        let mut poller = FilePoller::new();
        let name = source.0.display().to_string();
        let mut last_warnings = Vec::new();
        loop {
            let outcome = poll_once(&mut poller, source, SystemTime::now());
            // A file refused or a line skipped is said once, not at every poll.
            if !outcome.warnings.is_empty() && outcome.warnings != last_warnings {
                for warning in &outcome.warnings {
                    warn!("{name}: {warning}");
                }
            }
            if !outcome.warnings.is_empty() || outcome.targets.is_some() {
                last_warnings = outcome.warnings;
            }
            let mut inner = self.lock();
            let mut pause = interval;
            if let Some(targets) = outcome.targets {
                info!("{name}: {} target(s)", targets.len());
                inner.from_file = targets;
                self.reconcile(&mut inner);
                // dmsg.md 6.2: after reconciling, one more interval.
                pause = interval.saturating_mul(2);
            }
            let until = Instant::now() + pause;
            while inner.dialer.is_some() {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                inner = self
                    .wake
                    .wait_timeout(inner, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            if inner.dialer.is_none() {
                return;
            }
        }
    }

    /// Starts the keepers of targets wanted and not running, stops those running and no
    /// longer wanted.
    fn reconcile(&self, inner: &mut Inner) {
        let Some(dialer) = inner.dialer.clone() else {
            return;
        };
        let mut wanted: BTreeMap<String, (Endpoint, Vec<Origin>)> = BTreeMap::new();
        let sources = [
            (Origin::Option, &inner.fixed),
            (Origin::File, &inner.from_file),
        ];
        for (origin, targets) in sources {
            for target in targets.iter() {
                let endpoint = Endpoint::parse(Some(target));
                let entry = wanted
                    .entry(endpoint.to_string())
                    .or_insert_with(|| (endpoint, Vec::new()));
                entry.1.push(origin);
            }
        }
        let gone: Vec<String> = inner
            .running
            .keys()
            .filter(|k| !wanted.contains_key(*k))
            .cloned()
            .collect();
        for key in gone {
            if let Some(running) = inner.running.remove(&key) {
                info!("autoconn {key}: no longer a target");
                running.keeper.stop(dialer.as_ref());
                inner.retired.push(running.thread);
            }
        }
        inner.retired.retain(|t| !t.is_finished());
        for (key, (endpoint, origins)) in wanted {
            if let Some(running) = inner.running.get_mut(&key) {
                running.origins = origins;
                continue;
            }
            if inner.running.len() >= TARGETS_MAX {
                warn!("autoconn {key}: more than {TARGETS_MAX} targets: left out");
                continue;
            }
            let keeper = Arc::new(Keeper {
                endpoint,
                state: Mutex::new(KeeperState {
                    stop: false,
                    phase: Phase::Connecting,
                    failures: 0,
                    sessions: 0,
                    last: None,
                }),
                wake: Condvar::new(),
            });
            let (running, dialing, backoff) =
                (Arc::clone(&keeper), Arc::clone(&dialer), self.backoff);
            match thread::Builder::new()
                .name(format!("autoconn {key}"))
                .stack_size(crate::link::LINK_THREAD_STACK)
                .spawn(move || running.run(dialing.as_ref(), backoff))
            {
                Ok(thread) => {
                    info!("autoconn {key}: kept up from now on");
                    inner.running.insert(
                        key,
                        Running {
                            keeper,
                            origins,
                            thread,
                        },
                    );
                }
                Err(e) => warn!("autoconn {key}: no thread: {e}"),
            }
        }
    }

    /// The `status` text: a line of totals, one line per target.
    #[must_use]
    pub fn status(&self) -> String {
        let inner = self.lock();
        let mut text = format!("outgoing: {} kept up\n", inner.running.len());
        for running in inner.running.values() {
            let origin = running.origins.first().copied().unwrap_or(Origin::File);
            text.push_str(&running.keeper.status_line(origin));
        }
        text
    }

    /// Asks every keeper and the poller to stop: waits end at once, served links are shut
    /// down. [`join`](Self::join) waits for them.
    pub fn stop(&self) {
        let mut inner = self.lock();
        let Some(dialer) = inner.dialer.take() else {
            return;
        };
        for running in inner.running.values() {
            running.keeper.stop(dialer.as_ref());
        }
        self.wake.notify_all();
    }

    /// Stops (as [`stop`](Self::stop)) and waits for every keeper and the poller. A keeper
    /// in a TCP connect ends when that does (within the service's handshake timeout); one
    /// in a handshake, once the service shuts its links down.
    pub fn join(&self) {
        self.stop();
        let (poller, threads) = {
            let mut inner = self.lock();
            let mut threads = std::mem::take(&mut inner.retired);
            threads.extend(
                std::mem::take(&mut inner.running)
                    .into_values()
                    .map(|r| r.thread),
            );
            (inner.poller.take(), threads)
        };
        if let Some(poller) = poller {
            let _ = poller.join();
        }
        for thread in threads {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};
    use std::collections::VecDeque;

    use super::*;

    fn targets(text: &[u8]) -> Vec<String> {
        parse(text).targets
    }

    #[test]
    fn the_first_token_of_each_line_is_a_target() {
        let file = b"alpha\n  beta  gamma delta\n\n\t gamma\r\n# all of this\n   #indented\n\
                     h#1 # a host with a hash inside\nlast-without-newline";
        assert_eq!(
            targets(file),
            ["alpha", "beta", "gamma", "h#1", "last-without-newline"]
        );
        assert!(parse(file).warnings.is_empty());
        // CR delimits like a blank: only what precedes it is the target.
        assert_eq!(targets(b"a\rb c\n"), ["a"]);
        // Blank-only lines and empty files give nothing.
        assert!(targets(b"").is_empty());
        assert!(targets(b" \t\r\n\n\r\n").is_empty());
        // A target written twice is kept once, in its first place.
        assert_eq!(targets(b"x\ny\nx\n"), ["x", "y"]);
        // Address forms the service's endpoints take are tokens like any other.
        assert_eq!(
            targets(b"10.0.0.2\n[::1]:1234\nunix:/run/h2.sock\n"),
            ["10.0.0.2", "[::1]:1234", "unix:/run/h2.sock"]
        );
    }

    #[test]
    fn lines_longer_than_255_characters_keep_only_their_head() {
        // Exactly 255 characters: within the format, no warning, the whole token.
        let token_255 = "h".repeat(LINE_MAX);
        let parsed = parse(token_255.as_bytes());
        assert_eq!(parsed.targets, std::slice::from_ref(&token_255));
        assert!(parsed.warnings.is_empty());
        // 256: the token reaches the cut, so it would be truncated: skipped, said.
        let parsed = parse(format!("{token_255}h\nnext\n").as_bytes());
        assert_eq!(parsed.targets, ["next"]);
        assert_eq!(parsed.warnings.len(), 1);
        assert!(parsed.warnings[0].starts_with("line 1:"), "{parsed:?}");
        // A short token on a long line is taken; the tail is not read as another line
        // (libdmsg's fgets would make `evil` a target).
        let line = format!("good{}evil\n", " ".repeat(LINE_MAX));
        let parsed = parse(line.as_bytes());
        assert_eq!(parsed.targets, ["good"]);
        assert_eq!(parsed.warnings.len(), 1);
        // A long comment stays a comment, its tail included.
        let line = format!("#{}evil\n", "-".repeat(400));
        assert!(targets(line.as_bytes()).is_empty());
    }

    #[test]
    fn binary_tokens_are_skipped_and_the_rest_is_read() {
        let parsed = parse(b"\0abc\n\xff\xfe\nok\nbell\x07\n");
        assert_eq!(parsed.targets, ["ok"]);
        assert_eq!(parsed.warnings.len(), 3, "{parsed:?}");
        assert!(parsed.warnings[1].starts_with("line 2:"), "{parsed:?}");
    }

    #[test]
    fn at_most_targets_max_targets_are_taken() {
        let file: String = (0..TARGETS_MAX + 10).map(|i| format!("h{i}\n")).collect();
        let parsed = parse(file.as_bytes());
        assert_eq!(parsed.targets.len(), TARGETS_MAX);
        assert_eq!(
            parsed.targets.last().unwrap(),
            &format!("h{}", TARGETS_MAX - 1)
        );
        assert_eq!(parsed.warnings.len(), 1);
    }

    #[test]
    fn any_bytes_parse_into_well_formed_targets() {
        // A fixed pseudo-random walk over short inputs of the bytes that matter.
        let alphabet = b"ab#: \t\r\n\0\xff";
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..20_000 {
            let mut input = Vec::new();
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 600) as usize;
            let mut s = seed;
            for _ in 0..len {
                s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                input.push(alphabet[(s >> 33) as usize % alphabet.len()]);
            }
            for t in parse(&input).targets {
                assert!(!t.is_empty() && t.len() <= LINE_MAX, "{input:?}");
                assert!(!t.starts_with('#'), "{input:?}");
                assert!(!t.bytes().any(is_delimiter), "{input:?}");
                assert!(!t.contains('\0'), "{input:?}");
            }
        }
    }

    fn at(secs: u64, millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis)
    }

    #[test]
    fn a_created_file_is_read_on_the_second_poll_that_sees_it() {
        let mut p = FilePoller::new();
        assert_eq!(p.poll(Seen::Absent, at(100, 0)), PollStep::Unchanged);
        let m = at(101, 300);
        assert_eq!(p.poll(Seen::Present(m), at(103, 0)), PollStep::Pending);
        assert_eq!(p.poll(Seen::Present(m), at(108, 0)), PollStep::Read(m));
        assert!(p.read_done(m, Seen::Present(m)));
        assert_eq!(p.poll(Seen::Present(m), at(113, 0)), PollStep::Unchanged);
    }

    #[test]
    fn a_file_present_at_start_counts_as_created() {
        let mut p = FilePoller::new();
        let m = at(50, 0);
        assert_eq!(p.poll(Seen::Present(m), at(100, 0)), PollStep::Pending);
        assert_eq!(p.poll(Seen::Present(m), at(105, 0)), PollStep::Read(m));
    }

    #[test]
    fn a_file_modified_in_the_current_second_waits() {
        let mut p = FilePoller::new();
        let m = at(200, 100);
        assert_eq!(p.poll(Seen::Present(m), at(200, 200)), PollStep::Pending);
        // Still the same second on the second poll: not yet.
        assert_eq!(p.poll(Seen::Present(m), at(200, 900)), PollStep::Pending);
        assert_eq!(p.poll(Seen::Present(m), at(201, 0)), PollStep::Read(m));
    }

    #[test]
    fn a_file_that_moved_during_the_read_is_read_again() {
        let mut p = FilePoller::new();
        let m = at(300, 0);
        p.poll(Seen::Present(m), at(301, 0));
        assert_eq!(p.poll(Seen::Present(m), at(306, 0)), PollStep::Read(m));
        let moved = at(306, 500);
        assert!(!p.read_done(m, Seen::Present(moved)));
        // The next poll sees the new time: read at once (it is no creation), once its
        // second has passed.
        assert_eq!(
            p.poll(Seen::Present(moved), at(306, 800)),
            PollStep::Pending
        );
        assert_eq!(
            p.poll(Seen::Present(moved), at(311, 0)),
            PollStep::Read(moved)
        );
        // Removed during the read: not taken either.
        assert!(!p.read_done(moved, Seen::Absent));
    }

    #[test]
    fn an_edit_of_a_read_file_is_read_on_the_next_poll() {
        let mut p = FilePoller::new();
        let m = at(400, 0);
        p.poll(Seen::Present(m), at(401, 0));
        p.poll(Seen::Present(m), at(406, 0));
        assert!(p.read_done(m, Seen::Present(m)));
        // Within the same second as the first version: full precision tells them apart.
        let edited = at(400, 700);
        assert_eq!(
            p.poll(Seen::Present(edited), at(411, 0)),
            PollStep::Read(edited)
        );
    }

    #[test]
    fn a_removed_file_counts_on_the_second_poll_that_misses_it() {
        let mut p = FilePoller::new();
        let m = at(500, 0);
        p.poll(Seen::Present(m), at(501, 0));
        p.poll(Seen::Present(m), at(506, 0));
        assert!(p.read_done(m, Seen::Present(m)));
        assert_eq!(p.poll(Seen::Absent, at(511, 0)), PollStep::Pending);
        assert_eq!(p.poll(Seen::Absent, at(516, 0)), PollStep::Gone);
        assert_eq!(p.poll(Seen::Absent, at(521, 0)), PollStep::Unchanged);
        // Back for one poll only, then gone again: never read.
        assert_eq!(p.poll(Seen::Present(m), at(526, 0)), PollStep::Pending);
        assert_eq!(p.poll(Seen::Absent, at(531, 0)), PollStep::Unchanged);
        // Back again: a creation again, so one poll of waiting again (libdmsg would read
        // it at once here, its memory of the presence being older than one poll).
        assert_eq!(p.poll(Seen::Present(m), at(536, 0)), PollStep::Pending);
        assert_eq!(p.poll(Seen::Present(m), at(541, 0)), PollStep::Read(m));
    }

    #[test]
    fn a_file_back_before_its_removal_counted_is_no_change() {
        let mut p = FilePoller::new();
        let m = at(600, 0);
        p.poll(Seen::Present(m), at(601, 0));
        p.poll(Seen::Present(m), at(606, 0));
        assert!(p.read_done(m, Seen::Present(m)));
        assert_eq!(p.poll(Seen::Absent, at(611, 0)), PollStep::Pending);
        assert_eq!(p.poll(Seen::Present(m), at(616, 0)), PollStep::Unchanged);
    }

    #[test]
    fn times_before_the_epoch_have_floor_seconds() {
        assert_eq!(unix_seconds(UNIX_EPOCH - Duration::from_millis(500)), -1);
        assert_eq!(unix_seconds(UNIX_EPOCH - Duration::from_secs(2)), -2);
        assert_eq!(unix_seconds(UNIX_EPOCH + Duration::from_millis(999)), 0);
    }

    /// A stand-in file: its metadata by the look, its bytes, and a hook that runs on
    /// every read (to change the file under the reader).
    struct Fake {
        meta: Cell<Option<FileMeta>>,
        bytes: RefCell<Vec<u8>>,
        reads: Cell<u32>,
        fail_read: Cell<bool>,
        on_read: Cell<Option<FileMeta>>,
    }

    impl Fake {
        fn new(meta: Option<FileMeta>, bytes: &[u8]) -> Self {
            Self {
                meta: Cell::new(meta),
                bytes: RefCell::new(bytes.to_vec()),
                reads: Cell::new(0),
                fail_read: Cell::new(false),
                on_read: Cell::new(None),
            }
        }
    }

    impl AutoconnSource for Fake {
        fn stat(&self) -> io::Result<Option<FileMeta>> {
            Ok(self.meta.get())
        }

        fn read(&self, limit: u64) -> io::Result<Vec<u8>> {
            self.reads.set(self.reads.get() + 1);
            if let Some(meta) = self.on_read.take() {
                self.meta.set(Some(meta));
            }
            if self.fail_read.get() {
                return Err(io::Error::other("EIO"));
            }
            let bytes = self.bytes.borrow();
            let keep = usize::try_from(limit).map_or(usize::MAX, |l| l.saturating_add(1));
            Ok(bytes[..bytes.len().min(keep)].to_vec())
        }
    }

    fn regular(mtime: SystemTime, len: u64) -> Option<FileMeta> {
        Some(FileMeta {
            mtime,
            regular: true,
            len,
        })
    }

    #[test]
    fn poll_once_takes_the_targets_when_the_rule_allows() {
        let m = at(700, 0);
        let fake = Fake::new(regular(m, 6), b"a\nb c\n");
        let mut p = FilePoller::new();
        assert_eq!(poll_once(&mut p, &fake, at(701, 0)), PollOutcome::default());
        let out = poll_once(&mut p, &fake, at(706, 0));
        assert_eq!(out.targets, Some(vec!["a".to_string(), "b".to_string()]));
        assert_eq!(poll_once(&mut p, &fake, at(711, 0)), PollOutcome::default());
        assert_eq!(fake.reads.get(), 1);
        // Gone, on the second poll that misses it: no targets.
        fake.meta.set(None);
        assert_eq!(poll_once(&mut p, &fake, at(716, 0)).targets, None);
        assert_eq!(
            poll_once(&mut p, &fake, at(721, 0)).targets,
            Some(Vec::new())
        );
    }

    #[test]
    fn poll_once_drops_a_read_during_which_the_file_changed() {
        let m = at(800, 0);
        let fake = Fake::new(regular(m, 2), b"a\n");
        let mut p = FilePoller::new();
        poll_once(&mut p, &fake, at(801, 0));
        fake.on_read.set(regular(at(805, 500), 2));
        assert_eq!(poll_once(&mut p, &fake, at(806, 0)).targets, None);
        let out = poll_once(&mut p, &fake, at(811, 0));
        assert_eq!(out.targets, Some(vec!["a".to_string()]));
        assert_eq!(fake.reads.get(), 2);
    }

    #[test]
    fn poll_once_refuses_what_is_no_regular_file_or_too_large_once() {
        for meta in [
            Some(FileMeta {
                mtime: at(900, 0),
                regular: false,
                len: 0,
            }),
            regular(at(900, 0), FILE_MAX + 1),
        ] {
            let fake = Fake::new(meta, b"a\n");
            let mut p = FilePoller::new();
            poll_once(&mut p, &fake, at(901, 0));
            let out = poll_once(&mut p, &fake, at(906, 0));
            assert_eq!(out.targets, None);
            assert_eq!(out.warnings.len(), 1, "{out:?}");
            assert!(out.warnings[0].ends_with("refused"), "{out:?}");
            // Not opened, and not judged again until it changes.
            assert_eq!(fake.reads.get(), 0);
            assert_eq!(poll_once(&mut p, &fake, at(911, 0)), PollOutcome::default());
        }
        // A file that grew past the bound between the look and the read.
        let fake = Fake::new(
            regular(at(900, 0), 1),
            &vec![b'a'; usize::try_from(FILE_MAX).unwrap() + 5],
        );
        let mut p = FilePoller::new();
        poll_once(&mut p, &fake, at(901, 0));
        let out = poll_once(&mut p, &fake, at(906, 0));
        assert_eq!(out.targets, None);
        assert!(out.warnings[0].contains("larger"), "{out:?}");
    }

    #[test]
    fn poll_once_tries_a_failed_read_again() {
        let fake = Fake::new(regular(at(1000, 0), 2), b"a\n");
        fake.fail_read.set(true);
        let mut p = FilePoller::new();
        poll_once(&mut p, &fake, at(1001, 0));
        let out = poll_once(&mut p, &fake, at(1006, 0));
        assert_eq!(out.targets, None);
        assert!(out.warnings[0].contains("EIO"), "{out:?}");
        fake.fail_read.set(false);
        let out = poll_once(&mut p, &fake, at(1011, 0));
        assert_eq!(out.targets, Some(vec!["a".to_string()]));
    }

    #[test]
    fn a_fifo_or_a_directory_in_the_files_place_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(AUTOCONN_FILE);
        let made = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .is_ok_and(|s| s.success());
        if !made {
            std::fs::create_dir(&path).unwrap();
        }
        let source = FileSource(path.clone());
        let mut p = FilePoller::new();
        let later = SystemTime::now() + Duration::from_secs(10);
        poll_once(&mut p, &source, later);
        // Opening the FIFO for reading would wait for a writer forever.
        let out = poll_once(&mut p, &source, later + Duration::from_secs(5));
        assert_eq!(out.targets, None);
        assert_eq!(out.warnings, ["not a regular file: refused"]);
        // A real file at a path is read through the same source.
        std::fs::remove_file(&path)
            .or_else(|_| std::fs::remove_dir(&path))
            .unwrap();
        std::fs::write(&path, "10.1.1.1 # one\n").unwrap();
        let mut p = FilePoller::new();
        poll_once(&mut p, &source, later);
        let out = poll_once(&mut p, &source, later + Duration::from_secs(5));
        assert_eq!(out.targets, Some(vec!["10.1.1.1".to_string()]));
    }

    #[test]
    fn the_backoff_doubles_from_250_ms_to_5_s() {
        let b = Backoff::default();
        let ms = |failures| b.delay(failures, 0).as_millis();
        let schedule: Vec<u128> = (0..7).map(ms).collect();
        assert_eq!(schedule, [250, 500, 1000, 2000, 4000, 5000, 5000]);
        assert_eq!(ms(31), 5000);
        assert_eq!(ms(u32::MAX), 5000);
    }

    #[test]
    fn the_jitter_takes_off_at_most_half() {
        let b = Backoff::default();
        for failures in [0, 1, 3, 5, 9, 1000] {
            let full = b.delay(failures, 0);
            let least = b.delay(failures, u32::MAX);
            assert!(least >= full / 2 && least < full, "{failures}: {least:?}");
            assert_eq!(b.delay(failures, 1 << 31), full * 3 / 4);
            // Never slower than libdmsg's fixed 5 s, whatever the random number.
            assert!(full <= Duration::from_secs(5));
        }
        // A first step beyond the cap is the cap; no first step, no wait.
        let odd = Backoff {
            first: Duration::from_secs(60),
            ..Backoff::default()
        };
        assert_eq!(odd.delay(0, 0), Duration::from_secs(5));
        let zero = Backoff {
            first: Duration::ZERO,
            ..Backoff::default()
        };
        assert_eq!(zero.delay(7, 123), Duration::ZERO);
    }

    /// What the fake dialer does on a call.
    #[derive(Clone, Copy, Debug)]
    enum Step {
        Fail,
        /// Set up, then ended by the peer at once.
        UpThenEnd,
        /// Set up, served until shut down.
        UpAndHold,
    }

    #[derive(Default)]
    struct DialerState {
        script: VecDeque<Step>,
        calls: Vec<String>,
        next_link: u64,
        shut: Vec<u64>,
    }

    /// A dialer that follows a script per call (then holds every link up).
    #[derive(Default)]
    struct FakeDialer {
        state: Mutex<DialerState>,
        changed: Condvar,
    }

    impl FakeDialer {
        fn with(script: &[Step]) -> Arc<Self> {
            let dialer = Self::default();
            dialer.state.lock().unwrap().script = script.iter().copied().collect();
            Arc::new(dialer)
        }

        /// Waits up to 10 s for `done` to hold.
        fn wait_for(&self, done: impl Fn(&DialerState) -> bool) -> bool {
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut state = self.state.lock().unwrap();
            while !done(&state) {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return false;
                }
                state = self.changed.wait_timeout(state, left).unwrap().0;
            }
            true
        }
    }

    impl Dialer for FakeDialer {
        fn session(&self, endpoint: &Endpoint, up: &mut dyn FnMut(LinkUp) -> bool) -> SessionEnd {
            let (step, link) = {
                let mut state = self.state.lock().unwrap();
                state.calls.push(endpoint.to_string());
                state.next_link += 1;
                self.changed.notify_all();
                let step = state.script.pop_front().unwrap_or(Step::UpAndHold);
                (step, state.next_link)
            };
            if matches!(step, Step::Fail) {
                return SessionEnd::NotSetUp("connection refused".into());
            }
            if !up(LinkUp {
                link,
                local: "127.0.0.1:1".into(),
            }) {
                return SessionEnd::Declined;
            }
            if matches!(step, Step::UpAndHold) {
                let mut state = self.state.lock().unwrap();
                while !state.shut.contains(&link) {
                    state = self.changed.wait(state).unwrap();
                }
            }
            SessionEnd::Ended(None)
        }

        fn shut_down(&self, link: u64) {
            self.state.lock().unwrap().shut.push(link);
            self.changed.notify_all();
        }
    }

    fn quick() -> Backoff {
        Backoff {
            first: Duration::from_millis(1),
            cap: Duration::from_millis(5),
            stable: Duration::from_secs(3600),
        }
    }

    /// Waits up to 10 s for a session's `up` to show in `status` (it runs after the
    /// dialer counted the call).
    fn wait_connected(kept: &KeptLinks) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !kept.status().contains("connected") && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
    }

    fn keep(dialer: &Arc<FakeDialer>, connect: &[&str], backoff: Backoff) -> Arc<KeptLinks> {
        KeptLinks::start(
            Arc::clone(dialer) as Arc<dyn Dialer>,
            KeepOptions {
                connect: connect.iter().map(|s| (*s).to_string()).collect(),
                file: None,
                backoff,
            },
        )
        .unwrap()
    }

    #[test]
    fn a_keeper_reconnects_after_failures_and_after_a_session_that_ran() {
        use Step::{Fail, UpAndHold, UpThenEnd};
        let dialer = FakeDialer::with(&[Fail, Fail, UpThenEnd, Fail, UpAndHold]);
        let kept = keep(&dialer, &["peer"], quick());
        assert!(dialer.wait_for(|s| s.calls.len() == 5));
        // Every call went to the one target, with the default port added.
        assert!(dialer.wait_for(|s| s.calls.iter().all(|c| c == "peer:987")));
        wait_connected(&kept);
        let status = kept.status();
        assert!(status.starts_with("outgoing: 1 kept up\n"), "{status}");
        let line = status.lines().nth(1).unwrap();
        assert!(
            line.contains("peer:987 (--connect) connected as link #5 from 127.0.0.1:1"),
            "{status}"
        );
        // Stopping shuts the held link down, and the keeper does not call again.
        let start = Instant::now();
        kept.join();
        assert!(start.elapsed() < Duration::from_secs(5));
        let state = dialer.state.lock().unwrap();
        assert_eq!(state.shut, [5]);
        assert_eq!(state.calls.len(), 5);
        drop(state);
        assert_eq!(kept.status(), "outgoing: 0 kept up\n");
    }

    #[test]
    fn status_counts_sessions_and_failures_in_a_row() {
        use Step::{Fail, UpAndHold, UpThenEnd};
        let dialer = FakeDialer::with(&[UpThenEnd, Fail, Fail, UpAndHold]);
        let kept = keep(&dialer, &["h:1"], quick());
        assert!(dialer.wait_for(|s| s.calls.len() == 4));
        // The held link's `up` runs after the call is counted: wait for it to show.
        wait_connected(&kept);
        let status = kept.status();
        // The session after three short-lived attempts: two set up, three in a row not
        // lasting (the first session ended at once, then two refusals).
        assert!(
            status.contains("sessions 2, failed attempts in a row 3; last: connection refused"),
            "{status}"
        );
        kept.join();
    }

    #[test]
    fn a_lasting_session_resets_the_failures() {
        use Step::{Fail, UpAndHold, UpThenEnd};
        let dialer = FakeDialer::with(&[Fail, Fail, UpThenEnd, UpAndHold]);
        let kept = keep(
            &dialer,
            &["h:1"],
            Backoff {
                stable: Duration::ZERO,
                ..quick()
            },
        );
        assert!(dialer.wait_for(|s| s.calls.len() == 4));
        wait_connected(&kept);
        let status = kept.status();
        assert!(
            status.contains("failed attempts in a row 0; last: closed"),
            "{status}"
        );
        kept.join();
    }

    #[test]
    fn stopping_ends_a_long_backoff_wait_at_once() {
        let dialer = FakeDialer::with(&[Step::Fail]);
        let kept = keep(
            &dialer,
            &["far"],
            Backoff {
                first: Duration::from_secs(3600),
                cap: Duration::from_secs(3600),
                ..quick()
            },
        );
        assert!(dialer.wait_for(|s| s.calls.len() == 1));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !kept.status().contains("retrying in") && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        // An hour less up to half of it for the jitter.
        let status = kept.status();
        let secs: f64 = status
            .split("retrying in ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{status}"));
        assert!((1700.0..=3600.0).contains(&secs), "{status}");
        let start = Instant::now();
        kept.join();
        // Generous: the wait is an hour, the stop a condition variable away.
        assert!(start.elapsed() < Duration::from_secs(5));
        assert_eq!(dialer.state.lock().unwrap().calls.len(), 1);
    }

    #[test]
    fn targets_leaving_the_file_are_stopped_and_those_of_options_stay() {
        let dialer = FakeDialer::with(&[]);
        let kept = keep(&dialer, &["a"], quick());
        {
            let mut inner = kept.lock();
            inner.from_file = vec!["a:987".into(), "b".into()];
            kept.reconcile(&mut inner);
        }
        assert!(dialer.wait_for(|s| s.calls.len() == 2));
        // Both links up, so that b's is served (a keeper stopped before that declines it).
        let deadline = Instant::now() + Duration::from_secs(10);
        while kept.status().matches("connected").count() < 2 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        let status = kept.status();
        assert!(status.starts_with("outgoing: 2 kept up\n"), "{status}");
        assert!(status.contains("a:987 (--connect)"), "{status}");
        assert!(status.contains("b:987 (autoconn)"), "{status}");
        let b_link = {
            let state = dialer.state.lock().unwrap();
            let index = state.calls.iter().position(|c| c == "b:987").unwrap();
            index as u64 + 1
        };
        {
            let mut inner = kept.lock();
            inner.from_file = Vec::new();
            kept.reconcile(&mut inner);
        }
        // b's link is shut down; a's stays up.
        assert!(dialer.wait_for(|s| s.shut == [b_link]));
        let status = kept.status();
        assert!(status.starts_with("outgoing: 1 kept up\n"), "{status}");
        assert!(!status.contains("b:987"), "{status}");
        kept.join();
        assert_eq!(dialer.state.lock().unwrap().shut.len(), 2);
    }
}
