//! What the integration tests of the `h2msg` binary share.

#![allow(
    dead_code,
    clippy::expect_used,
    reason = "test code, of which each test binary uses a part"
)]

use std::process::Command;

/// The `h2msg` binary of this build.
pub(crate) fn h2msg() -> Command {
    Command::new(env!("CARGO_BIN_EXE_h2msg"))
}

/// Runs `h2msg` with `args`, asserts that it succeeded (showing its stderr if not), and
/// returns its standard output.
pub(crate) fn h2msg_ok(args: &[&str]) -> String {
    let out = h2msg().args(args).output().expect("the h2msg binary runs");
    assert!(
        out.status.success(),
        "h2msg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}
