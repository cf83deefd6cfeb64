//! `h2msg service --proto dmsg` and `h2msg shell --proto dmsg` across processes: the debug
//! shell of dmsg.md 6.4 in both key modes, a revision mismatch failing fast, and the client
//! side of a recorded libdmsg shell session replayed over TCP to the service.
//!
//! The expected texts are DMSG.md 6.4's and the recorded libdmsg service's
//! (`tests/vectors/dmsg-peer/none-shell.decoded.txt`), written out here.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code"
)]

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use h2msg::CounterSalt;
use h2msg::ioq::DmsgTxQueue;
use h2msg::wire::{
    DecodeError, DmsgHeader, DmsgReceivedHeader, MessageView, SoftCrc32c, WireOrder,
};

mod common;
use common::{Service, key_pair, plaintext_pair, spawn_shell};

/// `h2msg shell --proto dmsg ENDPOINT` (plus `extra`) with `input` piped in; its output
/// once it exited, which must be within `limit`.
fn run_shell(
    client: &Path,
    endpoint: &str,
    extra: &[&str],
    input: &str,
    limit: Duration,
) -> Output {
    let mut shell = spawn_shell(client, endpoint, extra);
    shell
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let start = Instant::now();
    while shell.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = shell.kill();
            let out = shell.wait_with_output().unwrap();
            panic!(
                "the shell still ran after {limit:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    shell.wait_with_output().unwrap()
}

/// `help` gives DMSG.md 6.4's four lines, an unknown word `Unrecognized command: x`, an
/// empty line only the prompt, `ping` `sending ping` and (after the shell's automatic
/// LNK_PING|REPLY) `ping reply` — each answer after the `debug> ` text the service sends —
/// with `.none` keys (no handshake at all) and with RSA keys.
#[test]
fn dmsg_shell_and_service_talk_in_both_key_modes() {
    let expected = [
        "debug: connected",
        "debug> help            Command help",
        "span <host>     Span to target host",
        "tree            Dump spanning tree",
        "@span <cmd>     Issue via circuit",
        "debug> Unrecognized command: x",
        "debug> debug> sending ping",
        "debug> ping reply",
    ];
    for plaintext in [true, false] {
        let t = tempfile::tempdir().unwrap();
        let (node, client) = key_pair(t.path(), plaintext);
        let service = Service::start_with(&node, "127.0.0.1:0", &["--proto", "dmsg"]);
        let out = run_shell(
            &client,
            &service.endpoint,
            &["--proto", "dmsg"],
            "help\nx\n\nping\n",
            Duration::from_secs(20),
        );
        let (stdout, stderr) = (
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(out.status.success(), "plaintext={plaintext}: {stderr}");
        assert_eq!(
            stdout.lines().collect::<Vec<_>>(),
            expected,
            "plaintext={plaintext}: {stdout:?}"
        );
        assert!(stdout.ends_with("ping reply\n"), "{stdout:?}");
    }
}

/// A DMSG shell facing a seed service, and a seed shell facing a DMSG service, exit
/// non-zero within a few seconds. With `.none` keys on both sides, where the revisions
/// differ from the first byte, the error names SYNC: the DMSG shell reads the seed
/// service's plaintext handshake block as a message with a bad magic; the seed shell's
/// handshake is cut short by the DMSG service, which read the shell's block so (its error
/// says what that means). (The DMSG side's SYNC needs the seed block's two random first
/// bytes not to be a magic: a chance of 2 in 65536 of another IOQ error instead.) With RSA
/// keys both run the same handshake, and the first message fails instead (a seed end
/// reads a DMSG header as a bad `icrc1`, HCRC 5; the DMSG shell then sees its link end).
#[test]
fn a_revision_mismatch_fails_fast_naming_sync() {
    for plaintext in [true, false] {
        let t = tempfile::tempdir().unwrap();
        let (node, client) = key_pair(t.path(), plaintext);
        for (service_proto, shell_proto) in [("seed", "dmsg"), ("dmsg", "seed")] {
            let service = Service::start_with(&node, "127.0.0.1:0", &["--proto", service_proto]);
            let start = Instant::now();
            let out = run_shell(
                &client,
                &service.endpoint,
                &[
                    "--proto",
                    shell_proto,
                    "--connect-timeout",
                    "3",
                    "--reply-timeout",
                    "3",
                ],
                "help\n",
                Duration::from_secs(6),
            );
            let stderr = String::from_utf8_lossy(&out.stderr);
            let context = format!(
                "plaintext={plaintext}: {shell_proto} shell, {service_proto} service: {stderr}"
            );
            assert!(!out.status.success(), "{context}");
            assert!(start.elapsed() < Duration::from_secs(3), "{context}");
            if plaintext {
                assert!(
                    stderr.contains("IOQ error 1 (SYNC)") || stderr.contains("IOQ 1 SYNC"),
                    "{context}"
                );
                assert!(stderr.contains("--proto"), "{context}");
            }
        }
    }
}

/// One DMSG message, owned.
#[derive(Clone, Debug)]
struct Msg {
    header: DmsgHeader,
    ext: Vec<u8>,
    aux: Vec<u8>,
}

/// Takes the complete messages at the front of `bytes`, checking their CRCs and that their
/// salts number them from `*seq` on.
fn take_messages(bytes: &mut Vec<u8>, seq: &mut u8) -> Vec<Msg> {
    let mut out = Vec::new();
    loop {
        let m: MessageView<'_, DmsgReceivedHeader> =
            match MessageView::parse_dmsg(bytes, &SoftCrc32c) {
                Ok(m) => m,
                Err(DecodeError::Truncated { .. }) => return out,
                Err(e) => panic!("the service sent a bad message: {e}"),
            };
        let h = *m.header();
        assert_eq!(
            h.salt & 0xFF,
            u32::from(*seq),
            "dmsg.md 2.6: the message number"
        );
        *seq = seq.wrapping_add(1);
        let msg = Msg {
            header: h,
            ext: m.ext().to_vec(),
            aux: m.aux().to_vec(),
        };
        let len = m.wire_len();
        bytes.drain(..len);
        out.push(msg);
    }
}

/// The recorded messages of one direction of `none-shell`.
fn recorded(direction: &str) -> Vec<Msg> {
    let path = format!(
        "{}/../tests/vectors/dmsg-peer/none-shell.{direction}.bin",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut seq = 0;
    let messages = take_messages(&mut bytes, &mut seq);
    assert!(bytes.is_empty(), "{path} ends inside a message");
    messages
}

/// A TCP peer that sends re-encoded messages and collects what the service sends.
struct Peer {
    stream: TcpStream,
    tx: DmsgTxQueue<Vec<u8>, CounterSalt, SoftCrc32c>,
    received: Vec<u8>,
    rx_seq: u8,
}

impl Peer {
    /// A plaintext DMSG connection to the service at `endpoint` (no handshake: `.none`).
    fn connect(endpoint: &str) -> Self {
        Self::over(TcpStream::connect(endpoint).unwrap())
    }

    /// A plaintext DMSG peer on the connected `stream`.
    fn over(stream: TcpStream) -> Self {
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Self {
            stream,
            tx: DmsgTxQueue::new_framed(
                vec![0u8; 1 << 16],
                CounterSalt::default(),
                SoftCrc32c,
                WireOrder::Little,
            ),
            received: Vec::new(),
            rx_seq: 0,
        }
    }

    fn send(&mut self, header: DmsgHeader, ext: &[u8], aux: &[u8]) {
        self.tx.enqueue(header, ext, aux).unwrap();
        let mut bytes = vec![0u8; self.tx.pending_len()];
        let len = self.tx.copy_pending(&mut bytes);
        self.tx.advance(len).unwrap();
        self.stream.write_all(&bytes[..len]).unwrap();
    }

    /// The next `n` messages of the service (fails after 10 s).
    fn expect(&mut self, n: usize) -> Vec<Msg> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut out = Vec::new();
        let mut chunk = [0u8; 4096];
        while out.len() < n {
            out.extend(take_messages(&mut self.received, &mut self.rx_seq));
            if out.len() >= n {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {n}: {out:?}",
                out.len()
            );
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!("the service closed the link after {out:?}"),
                Ok(k) => self.received.extend_from_slice(&chunk[..k]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(out.len(), n, "more than expected: {out:?}");
        out
    }
}

/// What a message is up to msgids and salts: (cmd, msgid, error, aux with its NUL).
fn shape(m: &Msg, msgid: u64) -> (u32, u64, u32, Vec<u8>) {
    (m.header.cmd, msgid, m.header.error, m.aux.clone())
}

/// The client side of the recorded libdmsg shell session, replayed over TCP to
/// `h2msg service --proto dmsg`, is answered as the recorded service answered: the result
/// on the client's LNK_CONN, `debug> ` after the empty line, the close of its own LNK_CONN
/// that the client closed, the four help lines and `debug> `, `sending ping` + LNK_PING +
/// `debug> `, and `ping reply` after the client's PING|REPLY — up to msgids and salts, and
/// without the recorded service's three LNK_SPANs (it relayed other nodes' spans; ours has
/// none to send). The client's results on those spans are therefore left out of the
/// replay; the service's msgid the client names (REVTRANS) is mapped to the one the
/// service allocated, and the client's messages are re-encoded so their CRCs and sequence
/// hold.
#[test]
fn a_recorded_libdmsg_shell_client_is_answered_as_the_recorded_service_answered() {
    const REVTRANS: u32 = 0x0800_0000;
    const LNK_SPAN_CREATE: u32 = 0x8000_1207;
    let client = recorded("c2s");
    let service = recorded("s2c");
    let t = tempfile::tempdir().unwrap();
    let (node, _) = plaintext_pair(t.path());
    let svc = Service::start_with(&node, "127.0.0.1:0", &["--proto", "dmsg"]);
    let mut peer = Peer::connect(&svc.endpoint);

    // The service's LNK_CONN comes first, unprompted (dmsg.md 1.3), as the recorded one.
    let conn = peer.expect(1).remove(0);
    assert_eq!(conn.header.cmd, service[0].header.cmd);
    assert_eq!(conn.header.cmd, 0x8000_1106);
    let recorded_spans: Vec<u64> = service
        .iter()
        .filter(|m| m.header.cmd == LNK_SPAN_CREATE)
        .map(|m| m.header.msgid)
        .collect();
    assert_eq!(recorded_spans.len(), 3, "the recording's spans");
    let ours: HashMap<u64, u64> = HashMap::from([(service[0].header.msgid, conn.header.msgid)]);

    // The client's messages, in their recorded order, each batch as the recording's
    // segments sent them; the answers to each batch are awaited before the next.
    let mut answers = vec![conn];
    let mut replayed = 0;
    for (batch, answers_due) in [(0..=5, 3), (6..=6, 5), (7..=7, 3), (8..=8, 1)] {
        for m in &client[batch] {
            if m.header.cmd & REVTRANS != 0 && recorded_spans.contains(&m.header.msgid) {
                continue; // a result on a span our service does not have
            }
            let mut h = DmsgHeader::new(m.header.command());
            h.msgid = m.header.msgid;
            h.circuit = m.header.circuit;
            h.error = m.header.error;
            if m.header.cmd & REVTRANS != 0 {
                h.msgid = ours[&m.header.msgid];
            }
            peer.send(h, &m.ext, &m.aux);
            replayed += 1;
        }
        answers.extend(peer.expect(answers_due));
    }
    assert_eq!(replayed, client.len() - 3, "all but the three span results");

    // The recorded service's messages, spans and their withdrawal left out, msgids mapped.
    let expected: Vec<_> = service
        .iter()
        .filter(|m| !recorded_spans.contains(&m.header.msgid))
        .map(|m| shape(m, *ours.get(&m.header.msgid).unwrap_or(&m.header.msgid)))
        .collect();
    let got: Vec<_> = answers.iter().map(|m| shape(m, m.header.msgid)).collect();
    assert_eq!(got, expected);
    // Written out, as the recording decodes (none-shell.decoded.txt).
    let client_conn = client[0].header.msgid;
    let text = |s: &str| [s.as_bytes(), &[0]].concat();
    let (reply, conn_id) = (0x2010_0101, ours[&service[0].header.msgid]);
    assert_eq!(
        got,
        [
            (0x8000_1106, conn_id, 0, vec![]),
            (0xA80F_FF01, client_conn, 0, vec![]),
            (reply, 0, 0, text("debug> ")),
            (0x400F_FF01, conn_id, 0, vec![]),
            (reply, 0, 0, text("help            Command help\n")),
            (reply, 0, 0, text("span <host>     Span to target host\n")),
            (reply, 0, 0, text("tree            Dump spanning tree\n")),
            (reply, 0, 0, text("@span <cmd>     Issue via circuit\n")),
            (reply, 0, 0, text("debug> ")),
            (reply, 0, 0, text("sending ping\n")),
            (0x0000_0101, 0, 0, vec![]),
            (reply, 0, 0, text("debug> ")),
            (reply, 0, 0, text("ping reply\n")),
        ]
    );
    // The exact aux length: text + NUL (dmsg.md 6.4).
    assert!(
        answers
            .iter()
            .filter(|m| m.header.cmd == reply)
            .all(|m| m.header.aux_bytes as usize == m.aux.len())
    );
}

/// Opens DMSG.md 2.8's V2 span with msgid 2 on `peer`'s link.
fn open_v2_span(peer: &mut Peer) {
    // V2's payload, bytes 0x40..0x1C0 of the message.
    let mut ext = vec![0u8; 0x180];
    ext[..16].copy_from_slice(&[
        0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee,
        0xff,
    ]);
    ext[0x10..0x20].copy_from_slice(&[
        0x0f, 0x1e, 0x2d, 0x3c, 0x4b, 0x5a, 0x69, 0x78, 0x87, 0x96, 0xa5, 0xb4, 0xc3, 0xd2, 0xe1,
        0xf0,
    ]);
    ext[0x20..0x24].copy_from_slice(&[0x00, 0x03, 0x01, 0x00]);
    ext[0x30..0x38].copy_from_slice(&[0x02, 0, 0, 0, 0x04, 0x03, 0x02, 0x01]);
    ext[0x70..0x78].copy_from_slice(b"clusterA");
    ext[0xF0..0xF5].copy_from_slice(b"node1");
    let mut span = DmsgHeader::new(h2msg::wire::Cmd::from_raw(0x8000_1207));
    span.msgid = 2;
    peer.send(span, &ext, &[]);
}

/// A shell's standard output, once it asserted that the shell succeeded.
fn stdout_of(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// What a shell with `client`'s keys prints for `tree` at the service at `endpoint`.
fn tree(client: &Path, endpoint: &str) -> String {
    stdout_of(run_shell(
        client,
        endpoint,
        &["--proto", "dmsg"],
        "tree\n",
        Duration::from_secs(10),
    ))
}

/// The shell's `tree` output with only the V2 span, received on link `via`, asked by a
/// shell on link `shell`. The shell opened `LNK_CONN` (as libdmsg's does), so the service
/// relays the span to it too (docs/dmsg.md 5.4): on that link the service's `LNK_CONN`
/// took msgid 1 and the relay msgid 2 (msgids count from 1, D23).
fn v2_tree(via: u64, shell: u64) -> String {
    format!(
        "debug: connected\n\
         debug> Cluster HAMMER2 33221100-5544-7766-8899-aabbccddeeff (clusterA)\n    \
         Node 00 3c2d1e0f-5a4b-7869-8796-a5b4c3d2e1f0 (node1)\n\
         \tSLink msgid 0000000000000002 dist=2 via {via}\n\
         \t    Relay-out msgid 0000000000000002 via {shell}\n\
         debug> \n"
    )
}

/// `peer`, the service's link `via`, opens the V2 span: the service answers it with a
/// result, and a shell with `client`'s keys, the service's link `shell`, sees it in `tree`
/// until `peer` hangs up.
fn v2_span_shows_until_its_link_goes(
    mut peer: Peer,
    via: u64,
    shell: u64,
    client: &Path,
    endpoint: &str,
) {
    open_v2_span(&mut peer);
    let answer = peer.expect(1).remove(0);
    assert_eq!(
        (answer.header.cmd, answer.header.msgid),
        (0xA80F_FF01, 2),
        "the span's result (dmsg.md 5.2)"
    );
    assert_eq!(tree(client, endpoint), v2_tree(via, shell));
    drop(peer);
    let start = Instant::now();
    loop {
        let text = tree(client, endpoint);
        if text == "debug: connected\ndebug> debug> \n" {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "{text:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `tree` lists the spans received on every link of the service: a peer on one link opens
/// DMSG.md 2.8's V2 span (msgid 2), and a shell on another link sees 6.4's measured dump,
/// `via` naming the peer's link by the service's number (1, the first link); once that
/// link is gone, its span is too.
#[test]
fn tree_shows_the_spans_other_links_opened_until_their_link_goes() {
    let t = tempfile::tempdir().unwrap();
    let (node, client) = plaintext_pair(t.path());
    let svc = Service::start_with(&node, "127.0.0.1:0", &["--proto", "dmsg"]);
    let mut peer = Peer::connect(&svc.endpoint);
    assert_eq!(peer.expect(1)[0].header.cmd, 0x8000_1106);
    v2_span_shows_until_its_link_goes(peer, 1, 2, &client, &svc.endpoint);
}

/// `span 127.0.0.1:PORT` on service A's shell (link 1) starts an outgoing link 2 to a
/// raw DMSG peer listening there (`.none` keys: no handshake), answered
/// `Connected to 127.0.0.1:PORT`. A serves it as an accepted link: its first message is
/// its `LNK_CONN|CREATE` (0x80001106) saying ROUTER, it takes the peer's result on that,
/// answers the V2 span the peer opens with a result, lists the span in `tree` via link 2,
/// and forgets it once the peer hangs up.
#[test]
fn span_starts_an_outgoing_link_served_as_an_accepted_one() {
    let t = tempfile::tempdir().unwrap();
    let (node, client) = plaintext_pair(t.path());
    let a = Service::start_with(&node, "127.0.0.1:0", &["--proto", "dmsg"]);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let mut shell = spawn_shell(&client, &a.endpoint, &["--proto", "dmsg"]);
    let mut input = shell.stdin.take().unwrap();
    input
        .write_all(format!("span {target}\n").as_bytes())
        .unwrap();
    drop(input);

    let (stream, _) = listener.accept().unwrap();
    let mut peer = Peer::over(stream);
    let conn = peer.expect(1).remove(0);
    assert_eq!(conn.header.cmd, 0x8000_1106, "LNK_CONN|CREATE first");
    let payload = h2msg::wire::LnkConn::read_from_ext(&conn.ext).unwrap();
    assert_eq!(payload.peer_type(), h2msg::wire::PeerType::ROUTER);
    let mut result = DmsgHeader::new(h2msg::wire::Cmd::from_raw(0xA80F_FF01));
    result.msgid = conn.header.msgid;
    peer.send(result, &[], &[]);

    assert_eq!(
        stdout_of(shell.wait_with_output().unwrap()),
        format!("debug: connected\ndebug> Connected to {target}\ndebug> \n")
    );

    v2_span_shows_until_its_link_goes(peer, 2, 3, &client, &a.endpoint);
}

/// `span` fails, naming the host as given, when nothing listens there, when the name does
/// not resolve, and without a host; each answer comes within the service's handshake
/// timeout (1 s here) twice over, and the link goes on serving.
#[test]
fn span_to_nowhere_fails_in_time() {
    let t = tempfile::tempdir().unwrap();
    let (node, client) = plaintext_pair(t.path());
    let svc = Service::start_with(
        &node,
        "127.0.0.1:0",
        &["--proto", "dmsg", "--handshake-timeout", "1"],
    );
    let start = Instant::now();
    let out = run_shell(
        &client,
        &svc.endpoint,
        &["--proto", "dmsg"],
        "span 127.0.0.1:1\nspan no-such-host.invalid\nspan\nx\n",
        Duration::from_secs(10),
    );
    assert!(
        start.elapsed() < Duration::from_secs(8),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(
        stdout_of(out),
        "debug: connected\n\
         debug> Connection to 127.0.0.1:1 failed\n\
         debug> Connection to no-such-host.invalid failed\n\
         debug> Connection to  failed\n\
         debug> Unrecognized command: x\n\
         debug> \n"
    );
}

/// A shell line or a ping opened as a transaction (CREATE) instead of one-way is closed at
/// once with NOSUPP (0xE80FFF01, error 0x20), and the link goes on serving one-way lines.
#[test]
fn shell_and_ping_transactions_are_refused_and_the_link_goes_on() {
    let t = tempfile::tempdir().unwrap();
    let (node, _) = plaintext_pair(t.path());
    let svc = Service::start_with(&node, "127.0.0.1:0", &["--proto", "dmsg"]);
    let mut peer = Peer::connect(&svc.endpoint);
    assert_eq!(peer.expect(1)[0].header.cmd, 0x8000_1106);
    for (msgid, cmd) in [(5, 0x8010_0101), (6, 0xC000_0101)] {
        let mut h = DmsgHeader::new(h2msg::wire::Cmd::from_raw(cmd));
        h.msgid = msgid;
        peer.send(h, &[], b"help\0");
        let closed = peer.expect(1).remove(0);
        assert_eq!(
            (closed.header.cmd, closed.header.msgid, closed.header.error),
            (0xE80F_FF01, msgid, 0x20),
            "{cmd:#x}"
        );
    }
    peer.send(
        DmsgHeader::new(h2msg::wire::Cmd::from_raw(0x0010_0101)),
        &[],
        b"x\0",
    );
    let answer: Vec<Vec<u8>> = peer.expect(2).into_iter().map(|m| m.aux).collect();
    assert_eq!(answer, [&b"Unrecognized command: x\n\0"[..], b"debug> \0"]);
}

/// With RSA keys for 127.0.0.1, `span` to a listener that accepts and never answers the
/// handshake fails once the service's handshake timeout (3 s) ran out, and no later than
/// twice that and a second: the asking link is not held up for longer. (The shell's own
/// handshake runs under the same timeout: 1 s was too short for a debug build's one-shot
/// RSA block on a loaded machine, and the service closed the shell before its block came.)
#[test]
fn span_to_a_silent_peer_fails_at_the_handshake_timeout() {
    let t = tempfile::tempdir().unwrap();
    let (node, client) = key_pair(t.path(), false);
    let svc = Service::start_with(
        &node,
        "127.0.0.1:0",
        &["--proto", "dmsg", "--handshake-timeout", "3"],
    );
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target = silent.local_addr().unwrap().to_string();
    let start = Instant::now();
    let out = run_shell(
        &client,
        &svc.endpoint,
        &["--proto", "dmsg"],
        &format!("span {target}\n"),
        Duration::from_secs(10),
    );
    let took = start.elapsed();
    assert_eq!(
        stdout_of(out),
        format!("debug: connected\ndebug> Connection to {target} failed\ndebug> \n")
    );
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(7),
        "{took:?}"
    );
}
