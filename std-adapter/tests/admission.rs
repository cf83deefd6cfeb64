//! Admission under attack (#13): connections from several keyed addresses that stall in
//! their handshake cannot keep a good client out — they only hold the handshake budget,
//! and a newcomer displaces the oldest of them; the service does no RSA work for a peer
//! whose block has not arrived; a refused client is told so.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Stdio;
use std::thread;
use std::time::Duration;

use h2msg::ModeChoice;
use h2msg_std::client::{connect, shell_exchange};
use h2msg_std::keys::KeyDir;
use h2msg_std::transport::Endpoint;
use socket2::{Domain, Socket, Type};

mod common;
use common::{Service, h2msg, spawn_shell, trusted_pair};

/// Attacker addresses, each with a `.pub` key at the service (keyed: the service would do
/// an RSA handshake with them), and how many stalled connections each opens.
const ATTACKER_HOSTS: [u8; 4] = [2, 3, 4, 5];
const STALLED_EACH: usize = 4;

/// Gives the service a `.pub` key for 127.0.0.`host` (the client's: the attackers do not
/// have its private half).
fn key_attacker(node: &Path, client: &Path, host: u8) {
    fs::copy(
        client.join("rsa.pub"),
        node.join(format!("remote/127.0.0.{host}.pub")),
    )
    .unwrap();
}

/// A connection from 127.0.0.`host` that sends nothing.
fn stalled_from(host: u8, service: SocketAddr) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket
        .bind(&SocketAddr::from(([127, 0, 0, host], 0)).into())
        .unwrap();
    socket.connect(&service.into()).unwrap();
    socket.into()
}

/// Whether the service has closed `stream` (end of input or a reset), waiting up to
/// `limit` for it; bytes the service sent meanwhile are read and dropped.
fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut sink = [0u8; 1024];
    loop {
        match stream.read(&mut sink) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn stalled_handshakes_from_many_addresses_leave_room_for_a_good_client() {
    let t = tempfile::tempdir().unwrap();
    let (node, client) = trusted_pair(t.path());
    for host in ATTACKER_HOSTS {
        key_attacker(&node, &client, host);
    }
    // 16 stalled handshakes against 8 links: before #13 they took every slot. Now the
    // handshake budget is 2 (a quarter of the links) and the links through their
    // handshake have the rest.
    let service = Service::start_with(
        &node,
        "127.0.0.1:0",
        &["--max-links", "8", "--handshakes-per-peer", "4"],
    );
    let address: SocketAddr = service.endpoint.parse().unwrap();
    let mut stalled: Vec<TcpStream> = ATTACKER_HOSTS
        .iter()
        .flat_map(|&host| (0..STALLED_EACH).map(move |_| stalled_from(host, address)))
        .collect();
    // Time for the service to accept them all (set-up, not a measurement).
    thread::sleep(Duration::from_millis(500));

    let keys = KeyDir::new(&client);
    let endpoint = Endpoint::parse(Some(&service.endpoint));
    let mut good_links = Vec::new();
    for attempt in 0..3 {
        let (mut link, _) = connect(&endpoint, &keys, ModeChoice::Auto)
            .unwrap_or_else(|e| panic!("good client {attempt}: {e}"));
        let mut text = Vec::new();
        shell_exchange(&mut link, "ping", &mut text, false).unwrap();
        assert_eq!(text, b"pong\n", "good client {attempt}");
        good_links.push(link);
    }

    // Nobody was refused: the stalled connections were displaced, oldest first — all but
    // the two the budget held when the first good client came, which displaced one more.
    // The next good clients found room in the budget.
    let mut text = Vec::new();
    shell_exchange(&mut good_links[2], "status", &mut text, false).unwrap();
    let status = String::from_utf8(text).unwrap();
    let first = status.lines().next().unwrap();
    assert!(
        first.starts_with("links: 4 of 8 (served 19, refused 0); handshakes: 1 of 2 (evicted 15,"),
        "{status}"
    );
    let closed = stalled
        .iter_mut()
        .map(|s| closed_within(s, Duration::from_millis(200)))
        .filter(|&closed| closed)
        .count();
    assert_eq!(closed, ATTACKER_HOSTS.len() * STALLED_EACH - 1, "{status}");
}

#[test]
fn no_handshake_bytes_go_to_a_keyed_peer_before_its_block_is_in() {
    let t = tempfile::tempdir().unwrap();
    let (node, client) = trusted_pair(t.path());
    key_attacker(&node, &client, 2);
    let service = Service::start_with(&node, "127.0.0.1:0", &["--handshake-timeout", "5"]);
    let address: SocketAddr = service.endpoint.parse().unwrap();
    let mut peer = stalled_from(2, address);
    // Our block would have come at once if the service made it on connect (before #13 it
    // did: an RSA operation for every connection that then stalled).
    peer.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let early = peer.read(&mut [0u8; 512]);
    assert!(
        matches!(&early, Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "the service answered a peer that sent nothing: {early:?}"
    );
    // Half a block changes nothing either.
    peer.write_all(&[0x5a; 256]).unwrap();
    let half = peer.read(&mut [0u8; 512]);
    assert!(
        matches!(&half, Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "the service answered half a block: {half:?}"
    );
    // The rest of it (junk): now the service sends its block, then fails ours and closes.
    peer.write_all(&[0x5a; 256]).unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut block = Vec::new();
    let _ = peer.read_to_end(&mut block);
    assert_eq!(block.len(), 512, "the service's block, then the close");
}

#[test]
fn a_refused_client_says_the_service_refused_it() {
    let t = tempfile::tempdir().unwrap();
    let (node, client) = trusted_pair(t.path());
    let log = t.path().join("service.log");
    let mut child = h2msg()
        .args(["--keydir", node.to_str().unwrap(), "service"])
        .args(["--listen", "127.0.0.1:0", "--max-links", "1"])
        .stdout(Stdio::piped())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let endpoint = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    // The one link, through its handshake: nothing left to displace.
    let (mut held, _) = connect(
        &Endpoint::parse(Some(&endpoint)),
        &KeyDir::new(&client),
        ModeChoice::Auto,
    )
    .unwrap();
    let mut text = Vec::new();
    shell_exchange(&mut held, "ping", &mut text, false).unwrap();

    let mut shell = spawn_shell(&client, &endpoint, &[]);
    // A refused shell may be gone before it reads: a broken pipe here is its answer.
    let _ = shell.stdin.take().unwrap().write_all(b"ping\n");
    let out = shell.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("refused by the service"), "{stderr}");
    // The IOQ code stays.
    assert!(stderr.contains("KEYXCHGFAIL"), "{stderr}");

    let _ = child.kill();
    let _ = child.wait();
    let log = fs::read_to_string(&log).unwrap();
    assert!(
        log.contains("refused: the service serves its maximum of links"),
        "{log}"
    );
}
