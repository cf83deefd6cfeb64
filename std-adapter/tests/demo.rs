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

/// The help of the DMSG debug shell, as dmsg.md 6.4 lists it.
const DMSG_HELP: [&str; 4] = [
    "help            Command help",
    "span <host>     Span to target host",
    "tree            Dump spanning tree",
    "@span <cmd>     Issue via circuit",
];

#[test]
fn the_dmsg_demo_library_call_completes_every_step() {
    let report = h2msg_std::demo::run_demo_as(50, h2msg_std::proto::Proto::Dmsg).unwrap();
    assert_eq!(report.help.lines().collect::<Vec<_>>(), DMSG_HELP);
    assert_eq!(report.pings, 50);
    assert_eq!(report.mode, h2msg::StreamMode::Gcm);
    let (min, avg, max) = report.ping;
    assert!(min <= avg && avg <= max);
}

#[test]
fn the_dmsg_demo_command_prints_its_summary() {
    let text = h2msg_ok(&["demo", "--proto", "dmsg", "-n", "50"]);
    let mut expected = vec![
        "(dmsg, throwaway 2048-bit keys)",
        "RSA handshake",
        "stream mode gcm",
        "50 pings: min ",
        "64 KiB aux message sent and answered",
    ];
    expected.extend(DMSG_HELP);
    for expected in expected {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    // The seed shell's help is not what a DMSG node answers.
    assert!(!text.contains("status      Links"), "{text}");
}
