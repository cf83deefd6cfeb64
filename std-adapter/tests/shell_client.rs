//! `h2msg shell` against services that misbehave: text full of terminal control sequences,
//! a service that never answers, and one that never accepts.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test code"
)]

use std::io::Write;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{Service, h2msg, plaintext_pair};

/// Runs `h2msg --keydir CLIENT shell ARGS` with `input` piped in, killing it after
/// `limit`: its output and how long it ran, or `None` if it had to be killed.
fn shell_within(
    client: &Path,
    args: &[&str],
    input: &[u8],
    limit: Duration,
) -> Option<(Output, Duration)> {
    let mut child = h2msg()
        .args(["--keydir", client.to_str().unwrap(), "shell"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A shell that gave up may be gone before it reads.
    let _ = child.stdin.take().unwrap().write_all(input);
    let start = Instant::now();
    while start.elapsed() < limit {
        if child.try_wait().unwrap().is_some() {
            return Some((child.wait_with_output().unwrap(), start.elapsed()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Terminal control sequences in what the service says (here its own echo of an unknown
/// word) reach the terminal escaped; `--raw` passes them through unchanged.
#[test]
fn control_characters_from_the_service_are_shown_escaped_unless_raw() {
    let t = tempfile::tempdir().unwrap();
    let (node, client) = plaintext_pair(t.path());
    let service = Service::start(&node);
    // Set the window title, ring the bell, step back, clear the screen (no whitespace:
    // the service echoes the first word).
    let hostile = "\x1b]0;pwned\x07\x08\x1b[2J";
    let input = format!("{hostile}\n");
    let limit = Duration::from_secs(30);

    let (out, _) = shell_within(&client, &[&service.endpoint], input.as_bytes(), limit).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let controls: Vec<u8> = out
        .stdout
        .iter()
        .copied()
        .filter(|&b| b < 0x20 && b != b'\n' && b != b'\t' || b == 0x7f)
        .collect();
    assert!(
        controls.is_empty(),
        "control bytes reached stdout: {controls:?}"
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains(r"\x1b]0;pwned\x07\x08\x1b[2J"), "{text}");

    let (out, _) = shell_within(
        &client,
        &["--raw", &service.endpoint],
        input.as_bytes(),
        limit,
    )
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let raw = out.stdout;
    assert!(
        raw.windows(hostile.len()).any(|w| w == hostile.as_bytes()),
        "{}",
        String::from_utf8_lossy(&raw)
    );
}

/// A service that completes the handshake and then never answers: the shell gives up
/// after `--reply-timeout` and says so.
#[test]
fn a_service_that_never_answers_meets_the_reply_timeout() {
    let t = tempfile::tempdir().unwrap();
    let (node, client) = plaintext_pair(t.path());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    listener.set_nonblocking(true).unwrap();
    let mute = std::thread::spawn(move || {
        // A shell that never connects must not leave this thread waiting.
        let start = Instant::now();
        let stream = loop {
            match listener.accept() {
                Ok((stream, _)) => break stream,
                Err(_) if start.elapsed() < Duration::from_secs(20) => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(_) => return,
            }
        };
        stream.set_nonblocking(false).unwrap();
        let keys = h2msg_std::keys::KeyDir::new(node);
        // The handshake as a service does it; then silence, until the test is over.
        let link = h2msg_std::link::open_link(
            h2msg_std::transport::Stream::Tcp(stream),
            &keys,
            Duration::from_secs(10),
            h2msg::ModeChoice::Auto,
            h2msg::Liveness::default(),
        )
        .unwrap();
        let _ = stopped.recv_timeout(Duration::from_secs(60));
        drop(link);
    });
    let outcome = shell_within(
        &client,
        &["--reply-timeout", "1", &endpoint],
        b"help\n",
        Duration::from_secs(20),
    );
    let _ = stop.send(());
    mute.join().unwrap();
    let (out, took) = outcome.expect("the shell still waited after 20 s");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // 1, the tool's failure; not 2, the parser's.
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--reply-timeout"), "{stderr}");
    // It waited the configured second (less a small margin), no less: a mis-read unit or
    // an immediate give-up fails here.
    assert!(
        took >= Duration::from_millis(900),
        "gave up after {took:?}, before the 1 s reply timeout"
    );
    assert!(took < Duration::from_secs(10), "gave up after {took:?}");
}

/// A service whose accept queue is full (it never accepts): the TCP connect itself waits,
/// and the shell gives up after `--connect-timeout`.
#[test]
fn a_service_that_never_accepts_meets_the_connect_timeout() {
    use socket2::{Domain, Socket, Type};
    let t = tempfile::tempdir().unwrap();
    let (_, client) = plaintext_pair(t.path());
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket
        .bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    socket.listen(0).unwrap();
    let address = socket.local_addr().unwrap().as_socket().unwrap();
    // Fill the queue: once a connect no longer completes, the next one waits as well.
    let mut queued = Vec::new();
    while let Ok(s) = std::net::TcpStream::connect_timeout(&address, Duration::from_millis(300)) {
        queued.push(s);
        assert!(queued.len() < 1000, "the accept queue never filled");
    }
    let outcome = shell_within(
        &client,
        &["--connect-timeout", "1", &address.to_string()],
        b"help\n",
        Duration::from_secs(20),
    );
    let (out, took) = outcome.expect("the shell still waited after 20 s");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--connect-timeout"), "{stderr}");
    assert!(
        took >= Duration::from_millis(900),
        "gave up after {took:?}, before the 1 s connect timeout"
    );
    assert!(took < Duration::from_secs(10), "gave up after {took:?}");
    drop((socket, queued));
}
