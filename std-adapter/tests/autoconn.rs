//! Kept-up outgoing links across processes (dmsg.md 6.2, D28): `service --connect` and
//! the key directory's `autoconn` file, observed through both services' `status`
//! (h2msg's addition to the DMSG shell). B's status names the local address of its link
//! to A; A's status must list a link from exactly that address, so each check sees the
//! same link from both ends. All on loopback with `.none` keys. Every wait has a generous
//! bound for liveness only.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code"
)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

mod common;
use common::{Service, h2msg, spawn_shell};

/// How long anything may take to happen: far beyond the 5 s backoff cap.
const PATIENCE: Duration = Duration::from_secs(30);

/// A key directory that talks plaintext to 127.0.0.1 (`remote/127.0.0.1.none`).
fn plaintext_dir(root: &Path, name: &str) -> PathBuf {
    let dir = root.join(name);
    fs::create_dir_all(dir.join("remote")).unwrap();
    fs::write(dir.join("remote/127.0.0.1.none"), "").unwrap();
    dir
}

fn dmsg_service(keys: &Path, listen: &str, extra: &[&str]) -> Service {
    let mut args = vec!["--proto", "dmsg"];
    args.extend_from_slice(extra);
    Service::start_with(keys, listen, &args)
}

/// What `status` in the DMSG shell of the service at `endpoint` prints.
fn status(client: &Path, endpoint: &str) -> String {
    let mut shell = spawn_shell(
        client,
        endpoint,
        &["--proto", "dmsg", "--reply-timeout", "10"],
    );
    shell.stdin.take().unwrap().write_all(b"status\n").unwrap();
    let start = Instant::now();
    while shell.try_wait().unwrap().is_none() {
        assert!(start.elapsed() < PATIENCE, "the shell hangs");
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = shell.wait_with_output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Asks `endpoint`'s status until `found` picks something out of it; fails after
/// [`PATIENCE`] showing the last status.
fn eventually<T>(
    client: &Path,
    endpoint: &str,
    what: &str,
    found: impl Fn(&str) -> Option<T>,
) -> T {
    let start = Instant::now();
    loop {
        let text = status(client, endpoint);
        if let Some(value) = found(&text) {
            return value;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "{what}: not within {PATIENCE:?}; last status of {endpoint}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// From B's status: the local address of its kept-up link to `target`, once connected,
/// with the sessions count of that line.
fn connected_from(status: &str, target: &str) -> Option<(String, u64)> {
    let line = status
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{target} (")))?;
    let from = line
        .split(" connected as link #")
        .nth(1)?
        .split(" from ")
        .nth(1)?;
    let local = from.split(',').next()?.to_string();
    let sessions = line
        .split("sessions ")
        .nth(1)?
        .split(',')
        .next()?
        .parse()
        .ok()?;
    Some((local, sessions))
}

/// Whether A's status lists a link whose peer is `local`.
fn lists_peer(status: &str, local: &str) -> bool {
    status
        .lines()
        .any(|l| l.trim_start().starts_with('#') && l.contains(&format!(" {local} ")))
}

/// B keeps its `--connect` link to A up: A sees the link from B's address; when A is
/// killed, B says it is retrying; when A comes back on the same port, B reconnects by
/// itself (a second session, from a new address that the new A lists).
#[test]
fn a_connect_target_is_reconnected_after_its_peer_restarts() {
    let t = tempfile::tempdir().unwrap();
    let (a_keys, b_keys, client) = (
        plaintext_dir(t.path(), "a"),
        plaintext_dir(t.path(), "b"),
        plaintext_dir(t.path(), "client"),
    );
    let a = dmsg_service(&a_keys, "127.0.0.1:0", &[]);
    let port = a.port();
    let target = format!("127.0.0.1:{port}");
    let b = dmsg_service(&b_keys, "127.0.0.1:0", &["--connect", &target]);

    let (local, sessions) = eventually(&client, &b.endpoint, "B connected", |s| {
        connected_from(s, &target)
    });
    assert_eq!(sessions, 1);
    eventually(&client, &a.endpoint, "A lists B's link", |s| {
        lists_peer(s, &local).then_some(())
    });

    drop(a);
    let retrying = eventually(&client, &b.endpoint, "B notices", |s| {
        let line = s
            .lines()
            .find(|l| l.contains(&format!("{target} (--connect)")))?;
        (line.contains("retrying in") || line.contains("connecting")).then(|| line.to_string())
    });
    assert!(retrying.contains("sessions 1"), "{retrying}");

    let a = dmsg_service(&a_keys, &target, &[]);
    let (again, sessions) = eventually(&client, &b.endpoint, "B reconnected", |s| {
        connected_from(s, &target).filter(|(_, n)| *n >= 2)
    });
    assert_eq!(sessions, 2, "one session per run of A");
    eventually(&client, &a.endpoint, "the new A lists B's link", |s| {
        lists_peer(s, &again).then_some(())
    });
}

/// `<keydir>/autoconn` written while B runs adds A as a target (B connects, A lists the
/// link); rewritten without it, B stops the keeper and shuts the link, so A no longer
/// lists it.
#[test]
fn the_autoconn_file_adds_and_removes_targets_at_runtime() {
    let t = tempfile::tempdir().unwrap();
    let (a_keys, b_keys, client) = (
        plaintext_dir(t.path(), "a"),
        plaintext_dir(t.path(), "b"),
        plaintext_dir(t.path(), "client"),
    );
    let a = dmsg_service(&a_keys, "127.0.0.1:0", &[]);
    let target = format!("127.0.0.1:{}", a.port());
    let b = dmsg_service(&b_keys, "127.0.0.1:0", &["--autoconn-poll-ms", "100"]);
    assert!(
        status(&client, &b.endpoint).contains("outgoing: 0 kept up\n"),
        "no file, no targets"
    );

    fs::write(
        b_keys.join("autoconn"),
        format!("# kept up by B\n{target}   trailing words\n"),
    )
    .unwrap();
    let (local, _) = eventually(&client, &b.endpoint, "B took the file", |s| {
        connected_from(s, &target)
    });
    let b_status = status(&client, &b.endpoint);
    assert!(b_status.contains("outgoing: 1 kept up\n"), "{b_status}");
    assert!(
        b_status.contains(&format!("{target} (autoconn)")),
        "{b_status}"
    );
    eventually(&client, &a.endpoint, "A lists B's link", |s| {
        lists_peer(s, &local).then_some(())
    });

    fs::write(b_keys.join("autoconn"), "# nobody now\n").unwrap();
    eventually(&client, &b.endpoint, "B dropped the target", |s| {
        s.contains("outgoing: 0 kept up\n").then_some(())
    });
    eventually(&client, &a.endpoint, "B's link is gone from A", |s| {
        (!lists_peer(s, &local)).then_some(())
    });
}

/// SIGTERM stops a service whose keepers are connected or waiting to retry: it exits 0.
#[test]
fn sigterm_stops_a_service_with_kept_links() {
    let t = tempfile::tempdir().unwrap();
    let (a_keys, b_keys, client) = (
        plaintext_dir(t.path(), "a"),
        plaintext_dir(t.path(), "b"),
        plaintext_dir(t.path(), "client"),
    );
    let a = dmsg_service(&a_keys, "127.0.0.1:0", &[]);
    let target = format!("127.0.0.1:{}", a.port());
    // A port nobody listens on: refused at once, so that keeper is in its backoff.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("127.0.0.1:{}", listener.local_addr().unwrap().port())
    };
    let mut b = dmsg_service(
        &b_keys,
        "127.0.0.1:0",
        &["--connect", &target, "--connect", &closed],
    );
    eventually(&client, &b.endpoint, "B connected to A", |s| {
        connected_from(s, &target)
    });
    let s = status(&client, &b.endpoint);
    assert!(s.contains(&format!("{closed} (--connect)")), "{s}");
    let exit = b.signal_and_wait("TERM", PATIENCE).expect("B stops");
    assert!(exit.success(), "{exit:?}");
}

/// `--connect` is DMSG's: a seed service refuses it before listening.
#[test]
fn connect_needs_dmsg() {
    let t = tempfile::tempdir().unwrap();
    let keys = plaintext_dir(t.path(), "a");
    let out = h2msg()
        .args(["--keydir", keys.to_str().unwrap(), "service", "--listen"])
        .args(["127.0.0.1:0", "--connect", "127.0.0.1:1"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--connect needs --proto dmsg"), "{stderr}");
    assert!(out.stdout.is_empty(), "it never listened");
}
