//! A peer that opens more transactions than the service's table holds gets each request
//! past the limit refused at once — a reply that closes it, error 0x22 — instead of
//! waiting forever; the requests that fit are answered as usual.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code"
)]

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use h2msg::wire::{Cmd, MessageView, MsgFlags, MsgHeader, SoftCrc32c, WireOrder};
use h2msg_std::blocking::TRANSACTIONS;

mod common;
use common::{Service, handshaken, plaintext_pair};

#[test]
fn requests_beyond_the_services_table_are_refused_with_0x22() {
    let t = tempfile::tempdir().unwrap();
    let (node, client) = plaintext_pair(t.path());
    let service = Service::start(&node);
    let mut tcp = handshaken(&service.endpoint, &client);

    // TRANSACTIONS + 2 shell requests, each opened (CREATE) and never closed by us, so
    // every one keeps a slot of the service's table. `.none` on both sides: seed mode,
    // plaintext, so the frames can be written as they are.
    let requests = u32::try_from(TRANSACTIONS).unwrap() + 2;
    let mut out = Vec::new();
    for msgid in 1..=requests {
        let mut h = MsgHeader::new(Cmd::DBG_SHELL.set(MsgFlags::CREATE));
        h.msgid = msgid;
        let aux = b"help\0";
        out.extend_from_slice(&h.seal(WireOrder::Little, &[], aux, &SoftCrc32c).unwrap());
        out.extend_from_slice(aux);
        out.resize(out.len() + h.aux_len() - aux.len(), 0);
    }
    tcp.write_all(&out).unwrap();

    // Read until every request got its closing reply.
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut bytes = Vec::new();
    let mut closed: Vec<(u32, u16)> = Vec::new();
    let mut buf = [0u8; 65536];
    while closed.len() < usize::try_from(requests).unwrap() && Instant::now() < deadline {
        let n = tcp.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "the service closed the link; closed so far: {closed:?}"
        );
        bytes.extend_from_slice(&buf[..n]);
        let mut at = 0;
        while let Ok(m) = MessageView::parse(&bytes[at..], &SoftCrc32c) {
            let h = m.header();
            if h.cmd.flags().contains(MsgFlags::REPLY | MsgFlags::DELETE) {
                closed.push((h.msgid, h.error));
            }
            at += m.wire_len();
        }
        bytes.drain(..at);
    }
    closed.sort_unstable();
    let refused: Vec<u32> = closed
        .iter()
        .filter(|(_, error)| *error == 0x22)
        .map(|(msgid, _)| *msgid)
        .collect();
    assert_eq!(
        refused,
        [requests - 1, requests],
        "the two past the table: {closed:?}"
    );
    assert_eq!(
        closed.len(),
        usize::try_from(requests).unwrap(),
        "every request was closed"
    );
    assert!(
        closed.iter().filter(|(_, e)| *e == 0).count() == TRANSACTIONS,
        "the ones that fit were answered: {closed:?}"
    );
}
