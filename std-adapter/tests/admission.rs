//! Admission under attack (#13): the service does no RSA work for a peer whose block has
//! not arrived.

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
use std::time::Duration;

use socket2::{Domain, Socket, Type};

mod common;
use common::{Service, trusted_pair};

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
