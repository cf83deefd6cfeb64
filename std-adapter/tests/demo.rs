//! The loopback demo end to end: throwaway keys, a node on an ephemeral port, the RSA
//! handshake, the shell, pings and a 64 KiB aux message through the blocking driver.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed step is a failed test"
)]

mod common;
use common::{HELP_TEXT, h2msg_ok};

#[test]
fn the_demo_library_call_completes_every_step() {
    let report = h2msg_std::demo::run_demo(50).unwrap();
    assert_eq!(report.help, HELP_TEXT);
    assert_eq!(report.pings, 50);
    let (min, avg, max) = report.ping;
    assert!(min <= avg && avg <= max);
    assert!(report.address.starts_with("127.0.0.1:"));
}

#[test]
fn the_demo_command_prints_its_summary() {
    let text = h2msg_ok(&["demo", "-n", "20"]);
    for expected in [
        "RSA handshake",
        "help        Command help",
        "20 pings",
        "64 KiB aux message",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}
