//! The tool's log: `log` records to standard error, quiet by default (warnings and errors),
//! `-v` for link events, `-vv` for debugging, `-q` for errors only. Records carry the
//! time since start, so a slow handshake shows.

use std::io::Write;
use std::sync::OnceLock;
use std::time::Instant;

use log::{Level, LevelFilter, Log, Metadata, Record};

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

struct StderrLog {
    start: Instant,
}

impl Log for StderrLog {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let t = self.start.elapsed().as_secs_f64();
        let level = match record.level() {
            Level::Error => "error",
            Level::Warn => "warning",
            Level::Info => "info",
            Level::Debug => "debug",
            Level::Trace => "trace",
        };
        // One write per record, so lines from link threads do not interleave.
        let line = format!("h2msg [{t:9.3}] {level}: {}\n", record.args());
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// Installs the logger at `filter`; later calls only change the level.
pub fn init(filter: LevelFilter) {
    static LOGGER: OnceLock<StderrLog> = OnceLock::new();
    let logger = LOGGER.get_or_init(|| StderrLog {
        start: Instant::now(),
    });
    // Fails only if a logger is already set — ours, from an earlier call.
    let _ = log::set_logger(logger);
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
}
