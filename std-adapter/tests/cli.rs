//! The real `h2msg` binary across processes: a service on an ephemeral loopback port, the
//! shell with piped stdin, ping, and a replay of the recorded 2012 C client.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code"
)]

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use h2msg_std::dump::{DumpEnd, dump};

mod common;
use common::{HELP_TEXT, Service, h2msg, h2msg_ok, plaintext_pair, spawn_shell, trusted_pair};

/// Runs `h2msg shell ENDPOINT` with `input` piped in; asserts it succeeded; its output.
fn shell(client: &Path, endpoint: &str, input: &str) -> String {
    let mut shell = spawn_shell(client, endpoint, &[]);
    shell
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = shell.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The shell over TCP and over a Unix socket, with RSA keys and in plaintext: the same
/// answers, line by line.
#[test]
fn shell_with_piped_stdin_gets_every_answer_over_tcp_and_unix_in_both_key_modes() {
    let expected: Vec<String> = [
        "debug: connected".to_string(),
        format!("debug> {}", HELP_TEXT.lines().next().unwrap()),
        HELP_TEXT.lines().nth(1).unwrap().to_string(),
        HELP_TEXT.lines().nth(2).unwrap().to_string(),
        "debug> Unrecognized command: foo".to_string(),
        "debug> debug> pong".to_string(),
        "debug> ".to_string(),
    ]
    .into();
    for plaintext in [false, true] {
        let t = tempfile::tempdir().unwrap();
        let (node, client) = if plaintext {
            plaintext_pair(t.path())
        } else {
            trusted_pair(t.path())
        };
        let socket = format!("unix:{}", t.path().join("h2msg.sock").display());
        for listen in ["127.0.0.1:0", socket.as_str()] {
            let service = Service::start_with(&node, listen, &[]);
            let text = shell(&client, &service.endpoint, "help\nfoo bar\n\nping\n");
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines, expected, "plaintext={plaintext} listen={listen}");
        }
    }
}

/// `status` lists the asking link with its peer, trust and counters.
#[test]
fn status_lists_the_links() {
    let t = tempfile::tempdir().unwrap();
    let (node, client) = plaintext_pair(t.path());
    let service = Service::start(&node);
    let text = shell(&client, &service.endpoint, "status\n");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[1],
        "debug> links: 1 of 1024 (served 1, refused 0); handshakes: 0 of 256 (evicted 0, over \
         the rate 0)",
        "{text}"
    );
    assert!(
        lines[2].starts_with("  #1 127.0.0.1:") && lines[2].contains(" plaintext seed up "),
        "{text}"
    );
    // The prompt request and the `status` line itself have been received.
    assert!(lines[2].contains("received 2 sent 1"), "{text}");
}

/// `status` shows what a link received although that link never asked for anything: its
/// counters are read when `status` is asked, not when the link last made a request.
#[test]
fn status_counts_a_link_that_only_pings() {
    const PINGS: u32 = 1000;
    let t = tempfile::tempdir().unwrap();
    let (node, client) = plaintext_pair(t.path());
    let service = Service::start(&node);
    let endpoint = h2msg_std::transport::Endpoint::parse(Some(&service.endpoint));
    let (mut pinger, _) = h2msg_std::client::connect(
        &endpoint,
        &h2msg_std::keys::KeyDir::new(&client),
        h2msg::ModeChoice::Auto,
    )
    .unwrap();
    pinger.io().accept(h2msg::wire::Cmd::LNK_PING).unwrap();
    for msgid in 1..=PINGS {
        let mut ping = h2msg::wire::MsgHeader::new(h2msg::wire::Cmd::LNK_PING);
        ping.msgid = msgid;
        pinger.io().send(ping, &[], &[]).unwrap();
        assert_eq!(
            h2msg_std::client::ping_answer(&mut pinger, msgid).unwrap(),
            0
        );
    }
    // The service publishes a busy link's counters within a fraction of a second.
    let received = |text: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.contains("#1 "))?;
        line.split("received ")
            .nth(1)?
            .split(' ')
            .next()?
            .parse()
            .ok()
    };
    let start = std::time::Instant::now();
    loop {
        let text = shell(&client, &service.endpoint, "status\n");
        let pings_seen = received(&text).unwrap_or_else(|| panic!("no link #1: {text}"));
        if pings_seen >= u64::from(PINGS) {
            assert!(text.contains("auto-answered "), "{text}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "link #1 shows {pings_seen} received after {PINGS} pings: {text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(pinger);
}

/// The trust and stream mode the service's `status` shows for the one link of `client`,
/// which connects with `--mode client_mode` to a service started with
/// `--mode service_mode`; the shell's stderr if it failed.
fn link_terms(
    node: &Path,
    client: &Path,
    service_mode: &str,
    client_mode: &str,
) -> Result<String, String> {
    let service = Service::start_with(node, "127.0.0.1:0", &["--mode", service_mode]);
    let mut shell = spawn_shell(client, &service.endpoint, &["--mode", client_mode]);
    // A refused shell may be gone before it reads: a broken pipe here is its answer.
    let _ = shell.stdin.take().unwrap().write_all(b"status\n");
    let out = shell.wait_with_output().unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8(out.stdout).unwrap();
    let line = text.lines().nth(2).unwrap_or_default();
    // "  #1 127.0.0.1:PORT rsa gcm up 0.0 s: ..." -> "rsa gcm"
    Ok(line
        .split_whitespace()
        .skip(2)
        .take(2)
        .collect::<Vec<_>>()
        .join(" "))
}

/// Service and shell in each stream mode; `auto` on both ends ends in `gcm`; a client that
/// insists on `gcm` is refused by a service that will not do it, with ALGO (20).
#[test]
fn stream_modes_across_processes() {
    let t = tempfile::tempdir().unwrap();
    let (node, client) = trusted_pair(t.path());
    for (service_mode, client_mode, agreed) in [
        ("seed", "seed", "rsa seed"),
        ("cbc", "cbc", "rsa cbc"),
        ("gcm", "gcm", "rsa gcm"),
        ("auto", "auto", "rsa gcm"),
        ("auto", "seed", "rsa seed"),
        ("gcm", "auto", "rsa gcm"),
    ] {
        assert_eq!(
            link_terms(&node, &client, service_mode, client_mode).as_deref(),
            Ok(agreed),
            "service {service_mode}, client {client_mode}"
        );
    }
    let refused = link_terms(&node, &client, "seed", "gcm").unwrap_err();
    assert!(refused.contains("IOQ error 20 (ALGO)"), "{refused}");
}

/// Runs `h2msg ping` from `client` against the service; checks it succeeded and that every
/// reply carried error 0; returns its output.
fn ping(client: &Path, endpoint: &str, count: u32) -> String {
    let text = h2msg_ok(&[
        "--keydir",
        client.to_str().unwrap(),
        "ping",
        endpoint,
        "-n",
        &count.to_string(),
    ]);
    let answered = text
        .lines()
        .filter(|l| l.starts_with("reply ") && l.ends_with("error=0x0"))
        .count();
    assert_eq!(answered, count as usize, "{text}");
    text
}

#[test]
fn ping_reports_round_trips_with_error_zero() {
    let t = tempfile::tempdir().unwrap();
    let (node, client) = trusted_pair(t.path());
    let service = Service::start(&node);
    assert!(ping(&client, &service.endpoint, 5).contains("5 pings: min "));
}

#[test]
fn a_plaintext_peer_pings_over_a_unix_socket() {
    let t = tempfile::tempdir().unwrap();
    let (node, client) = plaintext_pair(t.path());
    let socket = format!("unix:{}", t.path().join("s").display());
    let service = Service::start_with(&node, &socket, &[]);
    assert_eq!(service.endpoint, socket);
    assert!(ping(&client, &socket, 3).contains("3 pings: min "));
}

#[test]
fn a_bind_failure_names_the_os_reason() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = holder.local_addr().unwrap().to_string();
    let out = h2msg()
        .args(["service", "--listen", &addr])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("bind {addr}")) && err.to_lowercase().contains("address"),
        "{err}"
    );
}

/// The recorded 2012 C client's bytes, replayed into our service holding the C node's
/// keys: the RSA handshake is accepted and every ping and shell line gets its answer.
#[test]
fn the_recorded_c_client_is_served() {
    let vectors = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors/c-peer/v1-rsa");
    let t = tempfile::tempdir().unwrap();
    let node = t.path().join("node");
    fs::create_dir_all(node.join("remote")).unwrap();
    for file in ["rsa.prv", "rsa.pub", "remote/127.0.0.1.pub"] {
        fs::copy(vectors.join("node").join(file), node.join(file)).unwrap();
    }
    fs::set_permissions(node.join("rsa.prv"), fs::Permissions::from_mode(0o600)).unwrap();
    let service = Service::start(&node);

    let c2s = fs::read(vectors.join("wire-c2s.bin")).unwrap();
    let mut stream = TcpStream::connect(("127.0.0.1", service.port())).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(&c2s).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).unwrap();

    // Our handshake block, then the answers: decode them.
    let mut text = Vec::new();
    let end = dump(&reply, true, true, &mut text).unwrap();
    let lines: Vec<serde_json::Value> = String::from_utf8(text)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // 3 pings answered (error 0 from h2msg; the C node said 0x20), then the shell: the
    // prompt, help + prompt, ? + prompt, foo + prompt, bar + prompt, and the empty line's prompt.
    assert!(matches!(end, DumpEnd::Clean { messages: 13 }), "{end:?}"); // as many as the C node sent
    for (i, l) in lines[..3].iter().enumerate() {
        assert_eq!(l["name"], "LNK_PING|REPLY");
        assert_eq!(l["msgid"], i as u64 + 1);
        assert_eq!(l["error"], 0);
    }
    let shell: Vec<Option<&str>> = lines[3..].iter().map(|l| l["aux_text"].as_str()).collect();
    assert_eq!(
        shell,
        [
            None,
            Some(HELP_TEXT),
            None,
            Some(HELP_TEXT),
            None,
            Some("Unrecognized command: foo\n"),
            None,
            Some("Unrecognized command: bar\n"),
            None,
            None,
        ]
    );
}
