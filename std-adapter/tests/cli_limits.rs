//! Extreme numbers on the `h2msg` command line: every one is refused by the argument
//! parser (exit 2, naming the option), never a panic, an overflow, an abort or a command
//! that starts anyway.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::os::unix::process::ExitStatusExt;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::h2msg;

/// Runs `h2msg` with `args` (and a throwaway key directory), killing it if it is still
/// running after `limit`; its output, or `None` if it had to be killed.
fn run_within(args: &[&str], limit: Duration) -> Option<Output> {
    let keys = tempfile::tempdir().unwrap();
    let mut child = h2msg()
        .arg("--keydir")
        .arg(keys.path())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while start.elapsed() < limit {
        if child.try_wait().unwrap().is_some() {
            return Some(child.wait_with_output().unwrap());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

#[test]
fn extreme_numbers_are_refused_by_the_parser() {
    // A service that did start must not take the well-known port.
    let service = ["service", "--listen", "127.0.0.1:0"];
    let table: &[(&[&str], &str, &str)] = &[
        (&service, "--max-links", "9223372036854775808"),
        (&service, "--max-links", "18446744073709551616"),
        (&service, "--max-links", "0"),
        (&service, "--max-links", "-1"),
        (&service, "--handshakes-per-peer", "0"),
        (&service, "--handshakes-per-peer", "18446744073709551615"),
        (&service, "--max-handshakes", "0"),
        (&service, "--max-handshakes", "1048577"),
        (&service, "--max-handshakes", "18446744073709551616"),
        (&service, "--handshake-rate", "0"),
        (&service, "--handshake-rate", "1000001"),
        (&service, "--handshake-rate", "4294967296"),
        (&service, "--handshake-rate", "-1"),
        (&service, "--handshake-burst", "0"),
        (&service, "--handshake-burst", "1048577"),
        (&service, "--handshake-burst", "18446744073709551615"),
        (&service, "--handshake-timeout", "0"),
        (&service, "--handshake-timeout", "-1"),
        (&service, "--handshake-timeout", "NaN"),
        (&service, "--handshake-timeout", "inf"),
        (&service, "--handshake-timeout", "1e300"),
        (&service, "--keepalive", "NaN"),
        (&service, "--keepalive", "inf"),
        (&service, "--keepalive", "1e300"),
        (&service, "--keepalive", "-1"),
        (&service, "--idle-timeout", "NaN"),
        (&service, "--idle-timeout", "inf"),
        (&service, "--idle-timeout", "1e300"),
        (&service, "--idle-timeout", "-1"),
        (&service, "--stall-timeout", "NaN"),
        (&service, "--stall-timeout", "inf"),
        (&service, "--stall-timeout", "1e300"),
        (&service, "--stall-timeout", "-1"),
        (&["bench"], "--sizes", "18446744073709551615"),
        (&["bench"], "--sizes", "1099511627776"),
        (&["bench"], "--sizes", "0,65537"),
        (&["bench"], "--count", "18446744073709551615"),
        (&["bench"], "--count", "0"),
        (&["bench", "--count", "1"], "--rounds", "0"),
        (
            &["bench", "--count", "1"],
            "--rounds",
            "18446744073709551615",
        ),
        (&["bench"], "--links", "18446744073709551615"),
        (&["ping", "127.0.0.1:1"], "--count", "0"),
        (&["ping", "127.0.0.1:1"], "--count", "4294967296"),
        (&["demo"], "--pings", "4294967295"),
        (&["demo"], "--pings", "0"),
        (&["shell", "127.0.0.1:1"], "--connect-timeout", "0"),
        (&["shell", "127.0.0.1:1"], "--connect-timeout", "inf"),
        (&["shell", "127.0.0.1:1"], "--reply-timeout", "NaN"),
        (&["shell", "127.0.0.1:1"], "--reply-timeout", "1e300"),
    ];
    let mut failures = Vec::new();
    for (command, option, value) in table {
        // `--option=value`, so that a negative number reaches the option's parser.
        let assignment = format!("{option}={value}");
        let mut args = command.to_vec();
        args.push(&assignment);
        let verdict = match run_within(&args, Duration::from_secs(20)) {
            None => "still running after 20 s".to_string(),
            Some(out) => {
                let stderr = String::from_utf8_lossy(&out.stderr);
                if out.status.code() == Some(2)
                    && stderr.contains("invalid value")
                    && stderr.contains(option)
                {
                    continue;
                }
                format!(
                    "exit {:?} signal {:?}: {}",
                    out.status.code(),
                    out.status.signal(),
                    stderr.lines().take(3).collect::<Vec<_>>().join(" | ")
                )
            }
        };
        failures.push(format!("h2msg {}: {verdict}", args.join(" ")));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
