//! What the integration tests of the `h2msg` binary share.

#![allow(
    dead_code,
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "test code, of which each test binary uses a part"
)]

use std::fs;
use std::io::{BufRead, BufReader, ErrorKind, Read};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use h2msg::ModeChoice;
use h2msg_std::blocking::Duplex;
use h2msg_std::keys::KeyDir;
use h2msg_std::link::handshake;
use h2msg_std::transport::{Endpoint, Stream};

/// What the node's shell answers to `help` (§4.3's line, then the words h2msg adds).
pub(crate) const HELP_TEXT: &str = "help        Command help\n\
                                    status      Links and their counters\n\
                                    ping        Answers pong\n";

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

/// `h2msg shell ENDPOINT` with `client`'s keys and `extra` options, its standard streams
/// piped.
pub(crate) fn spawn_shell(client: &Path, endpoint: &str, extra: &[&str]) -> Child {
    h2msg()
        .args(["--keydir", client.to_str().unwrap(), "shell", endpoint])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// A running `h2msg service`, killed when dropped.
pub(crate) struct Service {
    pub(crate) child: Child,
    /// Where it listens, as it printed it (`127.0.0.1:PORT` or `unix:PATH`).
    pub(crate) endpoint: String,
}

impl Service {
    /// Starts a service on an ephemeral loopback port.
    pub(crate) fn start(keydir: &Path) -> Self {
        Self::start_with(keydir, "127.0.0.1:0", &[])
    }

    /// Starts a service listening on `listen` with `extra` arguments, and waits until it
    /// says where it listens.
    pub(crate) fn start_with(keydir: &Path, listen: &str, extra: &[&str]) -> Self {
        let mut child = h2msg()
            .args([
                "--keydir",
                keydir.to_str().unwrap(),
                "service",
                "--listen",
                listen,
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(if std::env::var_os("H2MSG_TEST_SERVICE_LOG").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let endpoint = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("expected `listening on ADDR`, got {line:?}"))
            .to_string();
        Self { child, endpoint }
    }

    /// The TCP port, for a TCP service.
    pub(crate) fn port(&self) -> u16 {
        self.endpoint.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// Sends `signal` (e.g. "TERM") and waits up to `limit` for the exit status.
    pub(crate) fn signal_and_wait(
        &mut self,
        signal: &str,
        limit: Duration,
    ) -> Option<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args([&format!("-{signal}"), &pid])
                .status()
                .unwrap()
                .success()
        );
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Key directories for a node and a client that trust each other at 127.0.0.1 with RSA.
pub(crate) fn trusted_pair(root: &Path) -> (PathBuf, PathBuf) {
    let (node, client) = (root.join("node"), root.join("client"));
    for dir in [&node, &client] {
        h2msg_ok(&["rsainit", dir.to_str().unwrap()]);
        fs::create_dir_all(dir.join("remote")).unwrap();
    }
    fs::copy(client.join("rsa.pub"), node.join("remote/127.0.0.1.pub")).unwrap();
    fs::copy(node.join("rsa.pub"), client.join("remote/127.0.0.1.pub")).unwrap();
    (node, client)
}

/// Key directories for a node and a client that talk in plaintext (`127.0.0.1.none`
/// on both sides, no key pairs at all).
pub(crate) fn plaintext_pair(root: &Path) -> (PathBuf, PathBuf) {
    let (node, client) = (root.join("node"), root.join("client"));
    for dir in [&node, &client] {
        fs::create_dir_all(dir.join("remote")).unwrap();
        fs::write(dir.join("remote/127.0.0.1.none"), "").unwrap();
    }
    (node, client)
}

/// [`plaintext_pair`] or [`trusted_pair`]: key directories for a node and a client.
pub(crate) fn key_pair(root: &Path, plaintext: bool) -> (PathBuf, PathBuf) {
    if plaintext {
        plaintext_pair(root)
    } else {
        trusted_pair(root)
    }
}

/// A TCP connection to the service that has completed the handshake as `client`.
pub(crate) fn handshaken(endpoint: &str, client: &Path) -> TcpStream {
    let Stream::Tcp(tcp) = Endpoint::parse(Some(endpoint)).connect().unwrap() else {
        unreachable!("a TCP endpoint")
    };
    let mut duplex = Duplex::new(Stream::Tcp(tcp)).unwrap();
    handshake(
        &mut duplex,
        &KeyDir::new(client),
        Duration::from_secs(5),
        ModeChoice::Auto,
    )
    .unwrap();
    let Stream::Tcp(tcp) = duplex.into_inner().unwrap() else {
        unreachable!("a TCP endpoint")
    };
    tcp
}

/// Reads until the service closes the connection; how long that took. Fails after 10 s.
pub(crate) fn time_to_close(stream: &mut TcpStream) -> Duration {
    let start = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut sink = [0u8; 4096];
    loop {
        match stream.read(&mut sink) {
            Ok(0) => return start.elapsed(),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return start.elapsed(),
            Err(e) => panic!("the service did not close the link: {e}"),
        }
    }
}
