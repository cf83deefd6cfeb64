//! The tool's log: `log` records to standard error, quiet by default (warnings and errors),
//! `-v` for link events, `-vv` for debugging, `-q` for errors only. Records carry the
//! time since start, so a slow handshake shows.
//!
//! Logging never holds the caller up, so that a service whose standard error is a pipe
//! nobody drains keeps serving and stopping (#13 item 2):
//! - records go into a bounded queue that one logging thread writes out; when the queue is
//!   full the record is dropped and counted, and the count is logged once the writer gets
//!   through again ("N log lines dropped");
//! - a warning or error repeated from one place in the code is logged at most
//!   [`RATE_BUDGET`] times per [`RATE_WINDOW`]; the rest are counted and summarised when
//!   the window ends ("N similar messages suppressed"). Info and debug lines are not
//!   limited: whoever asked for `-v` asked for every one.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use log::{Level, LevelFilter, Log, Metadata, Record};

/// Lines the queue holds before records are dropped: about 200 KiB of the longest
/// warnings, and enough for any burst a healthy terminal or journal drains.
pub const QUEUE_LINES: usize = 1024;

/// The period over which repeated warnings from one place are limited.
pub const RATE_WINDOW: Duration = Duration::from_secs(10);

/// Warnings or errors from one place logged per [`RATE_WINDOW`]; the rest are counted.
pub const RATE_BUDGET: u32 = 10;

/// How often the logging thread looks for counts to report when no line arrives.
const SWEEP_PERIOD: Duration = Duration::from_millis(500);

/// The longest a flush at exit waits for the writer: a standard error nobody drains must
/// not keep the process from ending.
const FLUSH_LIMIT: Duration = Duration::from_secs(1);

/// The level for `-v` given `verbose` times and `-q`.
#[must_use]
pub const fn level(verbose: u8, quiet: bool) -> LevelFilter {
    if quiet {
        return LevelFilter::Error;
    }
    match verbose {
        0 => LevelFilter::Warn,
        1 => LevelFilter::Info,
        2 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    }
}

/// A place in the code that logs: its file and line.
type Site = (&'static str, u32);

/// One site's current window.
#[derive(Debug)]
struct SiteWindow {
    started: Instant,
    logged: u32,
    suppressed: u64,
}

/// Counts warnings per [`Site`] and says which to log.
#[derive(Debug)]
struct RateLimiter {
    window: Duration,
    budget: u32,
    sites: HashMap<Site, SiteWindow>,
}

/// What [`RateLimiter::admit`] decided.
#[derive(Debug, PartialEq, Eq)]
enum Admission {
    /// Log it; `suppressed_before` were suppressed in the site's window that just ended
    /// and not reported yet.
    Log { suppressed_before: u64 },
    /// Count it only.
    Suppress,
}

impl RateLimiter {
    fn new(window: Duration, budget: u32) -> Self {
        Self {
            window,
            budget,
            sites: HashMap::new(),
        }
    }

    fn admit(&mut self, site: Site, now: Instant) -> Admission {
        let window = self.window;
        let entry = self.sites.entry(site).or_insert(SiteWindow {
            started: now,
            logged: 0,
            suppressed: 0,
        });
        let mut suppressed_before = 0;
        if now.saturating_duration_since(entry.started) >= window {
            suppressed_before = entry.suppressed;
            *entry = SiteWindow {
                started: now,
                logged: 0,
                suppressed: 0,
            };
        }
        if entry.logged < self.budget {
            entry.logged += 1;
            Admission::Log { suppressed_before }
        } else {
            entry.suppressed += 1;
            Admission::Suppress
        }
    }

    /// The suppressed counts of windows that ended by `now` (of every window if `all`),
    /// taken: each is reported once. Ended windows are forgotten.
    fn take_suppressed(&mut self, now: Instant, all: bool) -> Vec<(Site, u64)> {
        let window = self.window;
        let mut counts = Vec::new();
        self.sites.retain(|site, w| {
            let ended = now.saturating_duration_since(w.started) >= window;
            if (ended || all) && w.suppressed > 0 {
                counts.push((*site, w.suppressed));
                w.suppressed = 0;
            }
            !ended
        });
        counts.sort_unstable();
        counts
    }
}

/// What the logging thread is sent.
enum Entry {
    Line(String),
    /// Write what is queued and every count, then answer.
    Flush(SyncSender<()>),
}

/// Formats log lines and hands them to the logging thread without waiting.
struct QueuedLog {
    start: Instant,
    queue: SyncSender<Entry>,
    limiter: Arc<Mutex<RateLimiter>>,
    /// Lines dropped because the queue was full, not reported yet.
    dropped: Arc<AtomicU64>,
}

/// One line of the log as it is written.
fn format_line(start: Instant, level: Level, text: &std::fmt::Arguments<'_>) -> String {
    let t = start.elapsed().as_secs_f64();
    let level = match level {
        Level::Error => "error",
        Level::Warn => "warning",
        Level::Info => "info",
        Level::Debug => "debug",
        Level::Trace => "trace",
    };
    format!("h2msg [{t:9.3}] {level}: {text}\n")
}

fn suppressed_line(start: Instant, site: Site, count: u64) -> String {
    let (file, line) = site;
    format_line(
        start,
        Level::Warn,
        &format_args!("{count} similar messages suppressed (from {file}:{line})"),
    )
}

impl QueuedLog {
    /// A logger whose thread writes to `sink`, queueing at most `capacity` lines.
    fn start(
        sink: Box<dyn Write + Send>,
        capacity: usize,
        limiter: RateLimiter,
    ) -> std::io::Result<Self> {
        let (queue, lines) = mpsc::sync_channel(capacity);
        let logger = Self {
            start: Instant::now(),
            queue,
            limiter: Arc::new(Mutex::new(limiter)),
            dropped: Arc::new(AtomicU64::new(0)),
        };
        let writer = Writer {
            start: logger.start,
            sink,
            limiter: Arc::clone(&logger.limiter),
            dropped: Arc::clone(&logger.dropped),
        };
        thread::Builder::new()
            .name("log".into())
            .spawn(move || writer.run(&lines))?;
        Ok(logger)
    }

    fn limiter(&self) -> std::sync::MutexGuard<'_, RateLimiter> {
        // A thread that panicked while holding it left only counters behind.
        self.limiter.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `line`, or counts it dropped if the queue is full.
    fn enqueue(&self, line: String) {
        match self.queue.try_send(Entry::Line(line)) {
            Ok(()) => {}
            // Disconnected: the logging thread is gone (it never ends by itself).
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl Log for QueuedLog {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        if record.level() <= Level::Warn {
            let site = (
                record.file_static().unwrap_or("?"),
                record.line().unwrap_or(0),
            );
            let admission = self.limiter().admit(site, Instant::now());
            match admission {
                Admission::Suppress => return,
                Admission::Log { suppressed_before } if suppressed_before > 0 => {
                    self.enqueue(suppressed_line(self.start, site, suppressed_before));
                }
                Admission::Log { .. } => {}
            }
        }
        self.enqueue(format_line(self.start, record.level(), record.args()));
    }

    /// Waits, at most [`FLUSH_LIMIT`], until every queued line and count is written.
    fn flush(&self) {
        let deadline = Instant::now() + FLUSH_LIMIT;
        let (done, written) = mpsc::sync_channel(1);
        let mut entry = Entry::Flush(done);
        loop {
            match self.queue.try_send(entry) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                    entry = back;
                    thread::sleep(Duration::from_millis(5));
                }
                Err(_) => return,
            }
        }
        let _ = written.recv_timeout(deadline.saturating_duration_since(Instant::now()));
    }
}

/// The logging thread's side.
struct Writer {
    start: Instant,
    sink: Box<dyn Write + Send>,
    limiter: Arc<Mutex<RateLimiter>>,
    dropped: Arc<AtomicU64>,
}

impl Writer {
    fn run(mut self, lines: &Receiver<Entry>) {
        let mut last_sweep = Instant::now();
        loop {
            let flush = match lines.recv_timeout(SWEEP_PERIOD) {
                Ok(Entry::Line(line)) => {
                    self.write(&line);
                    None
                }
                Ok(Entry::Flush(done)) => Some(done),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            self.report_dropped();
            if flush.is_some() || last_sweep.elapsed() >= SWEEP_PERIOD {
                self.report_suppressed(flush.is_some());
                last_sweep = Instant::now();
            }
            if let Some(done) = flush {
                let _ = self.sink.flush();
                let _ = done.send(());
            }
        }
    }

    fn write(&mut self, line: &str) {
        // One write per line, so that lines stay whole; nothing to do about a failure.
        let _ = self.sink.write_all(line.as_bytes());
    }

    fn report_dropped(&mut self) {
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let line = format_line(
                self.start,
                Level::Warn,
                &format_args!(
                    "{dropped} log lines dropped (standard error did not take them in time)"
                ),
            );
            self.write(&line);
        }
    }

    fn report_suppressed(&mut self, all: bool) {
        let counts = self
            .limiter
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take_suppressed(Instant::now(), all);
        for (site, count) in counts {
            let line = suppressed_line(self.start, site, count);
            self.write(&line);
        }
    }
}

/// Installs the logger at `filter`; later calls only change the level. Without a thread
/// for the writer (the system refused one), logging stays off.
pub fn init(filter: LevelFilter) {
    static LOGGER: OnceLock<Option<QueuedLog>> = OnceLock::new();
    let logger = LOGGER.get_or_init(|| {
        QueuedLog::start(
            Box::new(std::io::stderr()),
            QUEUE_LINES,
            RateLimiter::new(RATE_WINDOW, RATE_BUDGET),
        )
        .ok()
    });
    if let Some(logger) = logger {
        // Fails only if a logger is already set — ours, from an earlier call.
        let _ = log::set_logger(logger);
    }
    log::set_max_level(filter);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_by_default_and_each_v_says_more() {
        assert_eq!(level(0, false), LevelFilter::Warn);
        assert_eq!(level(1, false), LevelFilter::Info);
        assert_eq!(level(2, false), LevelFilter::Debug);
        assert_eq!(level(7, false), LevelFilter::Trace);
        assert_eq!(level(3, true), LevelFilter::Error);
    }

    #[test]
    fn repeated_warnings_from_one_place_are_counted_past_the_budget() {
        let mut limiter = RateLimiter::new(Duration::from_secs(10), 3);
        let t0 = Instant::now();
        let (here, there) = (("a.rs", 1), ("a.rs", 2));
        for _ in 0..3 {
            assert_eq!(
                limiter.admit(here, t0),
                Admission::Log {
                    suppressed_before: 0
                }
            );
        }
        for _ in 0..5 {
            assert_eq!(limiter.admit(here, t0), Admission::Suppress);
        }
        // Another place has its own budget.
        assert!(matches!(limiter.admit(there, t0), Admission::Log { .. }));
        assert!(limiter.take_suppressed(t0, false).is_empty());
        // The next window starts with the last one's count, if nobody took it.
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(
            limiter.admit(here, t1),
            Admission::Log {
                suppressed_before: 5
            }
        );
        for _ in 0..9 {
            let _ = limiter.admit(here, t1);
        }
        // A flush takes open windows' counts; a sweep those of ended windows, once.
        assert_eq!(limiter.take_suppressed(t1, true), [(here, 7)]);
        let _ = limiter.admit(here, t1);
        let t2 = t1 + Duration::from_secs(10);
        assert_eq!(limiter.take_suppressed(t2, false), [(here, 1)]);
        assert!(limiter.take_suppressed(t2, false).is_empty());
    }

    /// A sink that takes nothing until told to, then hands what it got to a channel.
    struct BlockedSink {
        open: Arc<(Mutex<bool>, std::sync::Condvar)>,
        written: mpsc::Sender<Vec<u8>>,
    }

    impl Write for BlockedSink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let (lock, opened) = &*self.open;
            let mut open = lock.lock().unwrap();
            while !*open {
                open = opened.wait(open).unwrap();
            }
            self.written.send(buf.to_vec()).unwrap();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn record_at(logger: &QueuedLog, level: Level, line: u32, text: &str) {
        logger.log(
            &Record::builder()
                .level(level)
                .file_static(Some("here.rs"))
                .line(Some(line))
                .args(format_args!("{text}"))
                .build(),
        );
    }

    #[test]
    fn a_writer_that_takes_nothing_costs_callers_nothing_and_drops_are_reported() {
        log::set_max_level(LevelFilter::Trace);
        let open = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let (written, output) = mpsc::channel();
        let sink = BlockedSink {
            open: Arc::clone(&open),
            written,
        };
        let logger = QueuedLog::start(
            Box::new(sink),
            4,
            RateLimiter::new(Duration::from_secs(3600), 2),
        )
        .unwrap();
        let start = Instant::now();
        for i in 0..100 {
            record_at(&logger, Level::Info, 1, &format!("info {i}"));
        }
        for _ in 0..50 {
            record_at(&logger, Level::Warn, 2, "the same warning");
        }
        assert!(start.elapsed() < Duration::from_secs(1), "a caller waited");
        *open.0.lock().unwrap() = true;
        open.1.notify_all();
        logger.flush();
        let text: String = output
            .try_iter()
            .map(|bytes| String::from_utf8(bytes).unwrap())
            .collect();
        // The writer holds one line while the queue holds 4 more: the rest were counted.
        assert!(text.contains("info: info 0\n"), "{text}");
        assert!(!text.contains("info 99"), "{text}");
        assert!(text.contains("log lines dropped"), "{text}");
        let dropped: u64 = text
            .lines()
            .find_map(|l| {
                l.split("warning: ")
                    .nth(1)?
                    .strip_suffix(" log lines dropped (standard error did not take them in time)")
            })
            .unwrap()
            .parse()
            .unwrap();
        // 100 infos and 2 warnings under the budget offered; at most 5 got through.
        assert!((97..=101).contains(&dropped), "{dropped}: {text}");
        assert!(
            text.contains("48 similar messages suppressed (from here.rs:2)"),
            "{text}"
        );
    }
}
