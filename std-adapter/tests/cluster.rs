//! `h2msg service --proto dmsg` as a cluster node, across processes (docs/dmsg.md 5.3–5.6):
//! three services in a line A–B–C joined with the shell's `span <host>`; A registers a
//! node with `--advertise`; C's `tree` shows it at `dist` 2 and B's shows it at 1 with
//! the relay it sends C; killing B withdraws it from C.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code"
)]

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

mod common;
use common::{Service, plaintext_pair, spawn_shell};

/// The shell's output for `input` sent to the DMSG service at `endpoint`.
fn shell(client: &Path, endpoint: &str, input: &str) -> String {
    let mut child = spawn_shell(client, endpoint, &["--proto", "dmsg"]);
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "shell {endpoint}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The `tree` lines of the service at `endpoint`, the prompt text taken off.
fn tree(client: &Path, endpoint: &str) -> Vec<String> {
    shell(client, endpoint, "tree\n")
        .lines()
        .map(|l| l.trim_start_matches("debug> ").to_string())
        .filter(|l| !l.is_empty() && l != "debug: connected")
        .collect()
}

/// Asks `tree` until `done` holds of it, for up to 20 s; returns the last dump.
fn tree_until(client: &Path, endpoint: &str, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    let start = Instant::now();
    loop {
        let lines = tree(client, endpoint);
        if done(&lines) {
            return lines;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "tree of {endpoint} never got there: {lines:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `dist` of the best (first) `SLink` under the node labelled `label`, if any.
fn best_dist(lines: &[String], label: &str) -> Option<u32> {
    let node = format!(" ({label})");
    let at = lines
        .iter()
        .position(|l| l.starts_with("    Node ") && l.ends_with(&node))?;
    let slink = lines.get(at + 1)?;
    let dist = slink.split("dist=").nth(1)?.split(' ').next()?;
    dist.parse().ok()
}

#[test]
fn a_registration_travels_a_line_of_three_services_and_is_withdrawn_with_its_path() {
    let t = tempfile::tempdir().unwrap();
    let (node, client) = plaintext_pair(t.path());
    let dmsg = ["--proto", "dmsg"];
    let a = Service::start_with(
        &node,
        "127.0.0.1:0",
        &["--proto", "dmsg", "--advertise", "alpha"],
    );
    let mut b = Service::start_with(&node, "127.0.0.1:0", &dmsg);
    let c = Service::start_with(&node, "127.0.0.1:0", &dmsg);

    // A holds its own registration: via 0 (local), dist 0.
    let at_a = tree(&client, &a.endpoint);
    assert_eq!(best_dist(&at_a, "alpha"), Some(0), "{at_a:?}");
    assert!(
        at_a.iter()
            .any(|l| l.starts_with("\tSLink msgid ") && l.ends_with(" dist=0 via 0"))
    );

    let joined = shell(&client, &b.endpoint, &format!("span {}\n", a.endpoint));
    assert!(
        joined.contains(&format!("Connected to {}", a.endpoint)),
        "{joined}"
    );
    let joined = shell(&client, &c.endpoint, &format!("span {}\n", b.endpoint));
    assert!(
        joined.contains(&format!("Connected to {}", b.endpoint)),
        "{joined}"
    );

    let at_c = tree_until(&client, &c.endpoint, |l| best_dist(l, "alpha").is_some());
    assert_eq!(best_dist(&at_c, "alpha"), Some(2), "{at_c:?}");
    // One node, one link to it: nothing came back around.
    assert_eq!(
        at_c.iter().filter(|l| l.starts_with("\tSLink")).count(),
        1,
        "{at_c:?}"
    );
    let at_b = tree_until(&client, &b.endpoint, |l| {
        l.iter().any(|x| x.starts_with("\t    Relay-out msgid "))
    });
    assert_eq!(best_dist(&at_b, "alpha"), Some(1), "{at_b:?}");
    // B relays alpha toward C (and toward the shell asking, which opened LNK_CONN too).
    assert!(
        at_b.iter()
            .filter(|l| l.starts_with("\t    Relay-out msgid "))
            .count()
            >= 1
    );

    // B's `status` (an h2msg word): its link to A brought the span and gets none back;
    // its link from C gets it relayed.
    let status = shell(&client, &b.endpoint, "status\n");
    assert!(status.contains(" spans in 1 out 0\n"), "{status}");
    assert!(status.contains(" spans in 0 out 1\n"), "{status}");
    assert!(
        status.contains("cluster: nodes 1 spans in 1 out "),
        "{status}"
    );

    // Routed shell: lines typed at C go to alpha's node (A) across B as transactions
    // opened under alpha's span (docs/dmsg.md 5.8); A answers, its `tree` included.
    let mut routed = spawn_shell(&client, &c.endpoint, &["--proto", "dmsg", "--via", "alpha"]);
    routed
        .stdin
        .take()
        .unwrap()
        .write_all(b"help\ntree\n")
        .unwrap();
    let out = routed.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "debug: connected");
    assert_eq!(
        &lines[1..5],
        [
            "help            Command help",
            "span <host>     Span to target host",
            "tree            Dump spanning tree",
            "@span <cmd>     Issue via circuit",
        ]
    );
    // A's own tree: alpha at dist 0 via 0 — the answer came from A, not from C or B.
    assert!(
        lines[5..].iter().any(|l| l.ends_with(" (alpha)")),
        "{lines:?}"
    );
    assert!(
        lines[5..].iter().any(|l| l.ends_with(" dist=0 via 0")),
        "{lines:?}"
    );

    // Each routed request was closed by both ends: B, the relay, holds no twin.
    let status = shell(&client, &b.endpoint, "status\n");
    assert!(status.contains(" routed 0 "), "{status}");

    // `h2msg tree`: C's own view, and A's asked across the cluster.
    let keydir = client.to_str().unwrap();
    let own = common::h2msg_ok(&["--keydir", keydir, "tree", &c.endpoint]);
    assert_eq!(
        best_dist(&own.lines().map(String::from).collect::<Vec<_>>(), "alpha"),
        Some(2),
        "{own}"
    );
    let far = common::h2msg_ok(&["--keydir", keydir, "tree", &c.endpoint, "--via", "alpha"]);
    assert_eq!(
        best_dist(&far.lines().map(String::from).collect::<Vec<_>>(), "alpha"),
        Some(0),
        "{far}"
    );

    // A node nobody registered: the routed shell gives up naming it.
    let mut nowhere = spawn_shell(
        &client,
        &c.endpoint,
        &["--proto", "dmsg", "--via", "nobody", "--reply-timeout", "1"],
    );
    drop(nowhere.stdin.take());
    let out = nowhere.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no node \"nobody\""));

    // B goes away: C's link to it ends and the registration is withdrawn.
    drop(b.child.kill());
    let _ = b.child.wait();
    let at_c = tree_until(&client, &c.endpoint, |l| best_dist(l, "alpha").is_none());
    assert!(at_c.is_empty(), "{at_c:?}");
    drop(a);
}

/// The same line kept up by `--connect` (docs/dmsg.md 6.2): B keeps a link to A, C to B.
/// Killing B withdraws A's registration from C; B restarted on its port reconnects to A,
/// C's keeper reconnects to B, and C sees the registration at dist 2 again.
#[test]
fn a_line_kept_up_by_connect_heals_after_the_middle_restarts() {
    let t = tempfile::tempdir().unwrap();
    let (node, client) = plaintext_pair(t.path());
    let a = Service::start_with(
        &node,
        "127.0.0.1:0",
        &["--proto", "dmsg", "--advertise", "alpha"],
    );
    let b_args = |a: &str| {
        vec![
            "--proto".to_string(),
            "dmsg".into(),
            "--connect".into(),
            a.into(),
        ]
    };
    let start = |listen: &str, args: &[String]| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Service::start_with(&node, listen, &args)
    };
    let mut b = start("127.0.0.1:0", &b_args(&a.endpoint));
    let b_listen = b.endpoint.clone();
    let c = start("127.0.0.1:0", &b_args(&b_listen));

    let at_c = tree_until(&client, &c.endpoint, |l| best_dist(l, "alpha") == Some(2));
    assert_eq!(
        at_c.iter().filter(|l| l.starts_with("\tSLink")).count(),
        1,
        "{at_c:?}"
    );

    let _ = b.child.kill();
    let _ = b.child.wait();
    tree_until(&client, &c.endpoint, |l| best_dist(l, "alpha").is_none());

    let _b = start(&b_listen, &b_args(&a.endpoint));
    let at_c = tree_until(&client, &c.endpoint, |l| best_dist(l, "alpha") == Some(2));
    assert_eq!(best_dist(&at_c, "alpha"), Some(2), "{at_c:?}");
}

/// The loop guard across processes (docs/dmsg.md 5.9): A advertises alpha; C reaches A
/// over B (2 hops) and over E and D (3 hops). When B dies, C's remaining route is longer
/// than what C advertised, so the guard holds it back until C's request for a new route
/// sequence, routed over E and D, reaches A and A re-advertises: C ends at dist 3.
#[test]
fn with_the_loop_guard_a_longer_route_is_taken_after_a_new_sequence() {
    let t = tempfile::tempdir().unwrap();
    let (node, client) = plaintext_pair(t.path());
    let start = |extra: &[&str]| {
        let mut args = vec!["--proto", "dmsg", "--loop-guard"];
        args.extend_from_slice(extra);
        Service::start_with(&node, "127.0.0.1:0", &args)
    };
    let a = start(&["--advertise", "alpha"]);
    let mut b = start(&["--connect", &a.endpoint]);
    let d = start(&["--connect", &a.endpoint]);
    let e = start(&["--connect", &d.endpoint]);
    let c = start(&["--connect", &b.endpoint, "--connect", &e.endpoint]);
    let at_c = tree_until(&client, &c.endpoint, |l| {
        best_dist(l, "alpha") == Some(2)
            && l.iter().filter(|x| x.starts_with("\tSLink")).count() == 2
    });
    assert_eq!(best_dist(&at_c, "alpha"), Some(2), "{at_c:?}");
    let old_long_route = at_c
        .iter()
        .find(|l| l.starts_with("\tSLink") && l.contains(" dist=3 "))
        .cloned()
        .unwrap();

    let _ = b.child.kill();
    let _ = b.child.wait();
    // Done when C relays alpha again (to the asking shell): only a feasible route is.
    let at_c = tree_until(&client, &c.endpoint, |l| {
        best_dist(l, "alpha") == Some(3) && l.iter().any(|x| x.starts_with("\t    Relay-out"))
    });
    let slinks: Vec<&String> = at_c.iter().filter(|x| x.starts_with("\tSLink")).collect();
    assert_eq!(
        slinks.len(),
        1,
        "only the new sequence's span is left: {at_c:?}"
    );
    assert_ne!(
        *slinks[0], old_long_route,
        "the 3-hop route is a new span (A re-advertised), not the one held before"
    );
}
