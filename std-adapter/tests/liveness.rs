//! The service's liveness rules across processes (docs/liveness.md): a client that
//! completes its handshake and then falls silent is dropped at `--idle-timeout`, `status`
//! stops listing it, and a good client that idles longer than that — an interactive shell
//! waiting for its user — is kept alive by its answers to the keepalive pings.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code"
)]

use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

mod common;
use common::{Service, h2msg, handshaken, plaintext_pair, spawn_shell, time_to_close};

/// The service pings after this much silence…
const KEEPALIVE: Duration = Duration::from_millis(300);
/// …and drops the peer after this much.
const IDLE_TIMEOUT: Duration = Duration::from_millis(900);

#[test]
fn a_silent_client_is_dropped_and_a_quiet_shell_is_kept() {
    let t = tempfile::tempdir().unwrap();
    let (node, client) = plaintext_pair(t.path());
    let keepalive = KEEPALIVE.as_secs_f64().to_string();
    let idle = IDLE_TIMEOUT.as_secs_f64().to_string();
    let service = Service::start_with(
        &node,
        "127.0.0.1:0",
        &["--keepalive", &keepalive, "--idle-timeout", &idle],
    );

    // A good shell, connected first, whose user thinks for three idle timeouts.
    let mut shell = spawn_shell(&client, &service.endpoint, &[]);
    let mut typing = shell.stdin.take().unwrap();
    typing.write_all(b"status\n").unwrap();

    // The silent client: its handshake, then not a byte. The service's clock starts
    // after our handshake, so ours runs a little longer.
    let start = Instant::now();
    let mut silent = handshaken(&service.endpoint, &client);
    time_to_close(&mut silent);
    let took = start.elapsed();
    assert!(
        // The upper bound only guards against "never": generous for a loaded machine.
        took >= IDLE_TIMEOUT && took < IDLE_TIMEOUT + Duration::from_secs(10),
        "dropped after {took:?}, not at the idle timeout of {IDLE_TIMEOUT:?}"
    );

    thread::sleep(3 * IDLE_TIMEOUT);
    typing.write_all(b"status\n").unwrap();
    drop(typing);
    let out = shell.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the quiet shell lost its link: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let statuses: Vec<&str> = text
        .split("debug> ")
        .filter(|part| part.starts_with("links:"))
        .collect();
    assert_eq!(statuses.len(), 2, "{text}");
    // Both links at first; at the second `status` the shell's alone — the silent client is
    // gone — and it has been answering the service's keepalive pings all along.
    assert!(statuses[0].starts_with("links: 2 of "), "{text}");
    let last: Vec<&str> = statuses[1].lines().collect();
    assert!(last[0].starts_with("links: 1 of "), "{text}");
    assert_eq!(last.len(), 2, "one link line: {text}");
    let received: u64 = last[1]
        .split(" received ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a received count: {text}"));
    let pings = (3 * IDLE_TIMEOUT).as_millis() / KEEPALIVE.as_millis();
    assert!(
        u128::from(received) >= 3 + pings / 2,
        "the shell answered the pings of its idle time: {text}"
    );
}

/// The drop comes after the ping, or the ping could never save a link.
#[test]
fn an_idle_timeout_not_above_the_keepalive_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let (node, _) = plaintext_pair(t.path());
    let out = h2msg()
        .args([
            "--keydir",
            node.to_str().unwrap(),
            "service",
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--keepalive", "5", "--idle-timeout", "5"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--idle-timeout 5 must exceed --keepalive 5"),
        "{err}"
    );
}
