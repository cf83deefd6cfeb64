//! The real `h2msg` binary across processes: a service on an ephemeral loopback port, the
//! shell with piped stdin, ping, and a replay of the recorded 2012 C client.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test code"
)]

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use h2msg_std::dump::{DumpEnd, dump};

mod common;
use common::{h2msg, h2msg_ok};

/// A running service, stopped when dropped.
struct Service {
    child: Child,
    port: u16,
}

impl Service {
    fn start(keydir: &Path) -> Self {
        let mut child = h2msg()
            .args([
                "--keydir",
                keydir.to_str().unwrap(),
                "service",
                "--listen",
                "127.0.0.1:0",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .expect("listening on ADDR");
        Self { child, port }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Key directories for a node and a client that trust each other at 127.0.0.1.
fn trusted_pair(root: &Path) -> (PathBuf, PathBuf) {
    let (node, client) = (root.join("node"), root.join("client"));
    for dir in [&node, &client] {
        assert!(
            h2msg()
                .arg("rsainit")
                .arg(dir)
                .output()
                .unwrap()
                .status
                .success()
        );
        fs::create_dir_all(dir.join("remote")).unwrap();
    }
    fs::copy(client.join("rsa.pub"), node.join("remote/127.0.0.1.pub")).unwrap();
    fs::copy(node.join("rsa.pub"), client.join("remote/127.0.0.1.pub")).unwrap();
    (node, client)
}

#[test]
fn shell_with_piped_stdin_gets_every_answer() {
    let t = tempfile::tempdir().unwrap();
    let (node, client) = trusted_pair(t.path());
    let service = Service::start(&node);
    let mut shell = h2msg()
        .args([
            "--keydir",
            client.to_str().unwrap(),
            "shell",
            &format!("127.0.0.1:{}", service.port),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    shell
        .stdin
        .take()
        .unwrap()
        .write_all(b"help\nfoo bar\n\n?\n")
        .unwrap();
    let out = shell.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let expected = "debug: connected\n\
                    debug> help        Command help\n\
                    debug> Unrecognized command: foo\n\
                    debug> debug> help        Command help\n\
                    debug> \n";
    assert_eq!(text, expected);
}

/// Runs `h2msg ping` from `client` against the service; checks it succeeded and that every
/// reply carried error 0; returns its output.
fn ping(client: &Path, port: u16, count: u32) -> String {
    let text = h2msg_ok(&[
        "--keydir",
        client.to_str().unwrap(),
        "ping",
        &format!("127.0.0.1:{port}"),
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
    assert!(ping(&client, service.port, 5).contains("5 pings: min "));
}

#[test]
fn a_plaintext_peer_works_with_none_files() {
    let t = tempfile::tempdir().unwrap();
    let (node, client) = trusted_pair(t.path());
    for dir in [&node, &client] {
        fs::remove_file(dir.join("remote/127.0.0.1.pub")).unwrap();
        fs::write(dir.join("remote/127.0.0.1.none"), "").unwrap();
    }
    let service = Service::start(&node);
    ping(&client, service.port, 2);
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
    let mut stream = TcpStream::connect(("127.0.0.1", service.port)).unwrap();
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
            Some("help        Command help\n"),
            None,
            Some("help        Command help\n"),
            None,
            Some("Unrecognized command: foo\n"),
            None,
            Some("Unrecognized command: bar\n"),
            None,
            None,
        ]
    );
}
