//! A link's setup in one call: `connect` and `accept`, blocking and tokio, each against
//! the other over loopback TCP, with `.none` and RSA keys, TCP_NODELAY on both ends, and
//! the transaction-table size the options choose — seen by our `open` (NoFreeMsgid with
//! the limit) and by the peer (error 0x22, §4.4).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code"
)]

use std::fs;
use std::net::TcpListener;
use std::path::Path;
use std::thread;
use std::time::Duration;

use h2msg::wire::{Cmd, MSG_ERR_TABLE_FULL, MsgHeader};
use h2msg::{Event, Liveness, ModeChoice, SendError, StreamMode};
use h2msg_std::blocking;
use h2msg_std::keys::{KeyDir, KeyError};
use h2msg_std::link::{self, LinkError, LinkOptions, LinkTerms, Trust};
use h2msg_std::tokio_driver;

/// The application command of these tests.
const ECHO: Cmd = match Cmd::app(0x0E0) {
    Some(cmd) => cmd,
    None => Cmd::LNK_PAD,
};

/// Key directories for two ends that meet at 127.0.0.1 in plaintext (`.none`).
fn plaintext_keys(root: &Path) -> (KeyDir, KeyDir) {
    let (a, b) = (root.join("a"), root.join("b"));
    for dir in [&a, &b] {
        fs::create_dir_all(dir.join("remote")).unwrap();
        fs::write(dir.join("remote/127.0.0.1.none"), "").unwrap();
    }
    (KeyDir::new(a), KeyDir::new(b))
}

/// Key directories for two ends that trust each other's RSA key at 127.0.0.1.
fn rsa_keys(root: &Path) -> (KeyDir, KeyDir) {
    let (a, b) = (root.join("a"), root.join("b"));
    for dir in [&a, &b] {
        KeyDir::new(dir).init(&mut getrandom::SysRng).unwrap();
        fs::create_dir_all(dir.join("remote")).unwrap();
    }
    fs::copy(a.join("rsa.pub"), b.join("remote/127.0.0.1.pub")).unwrap();
    fs::copy(b.join("rsa.pub"), a.join("remote/127.0.0.1.pub")).unwrap();
    (KeyDir::new(a), KeyDir::new(b))
}

/// A blocking server on a fresh port: accepts one link with `options`, checks
/// TCP_NODELAY, answers every ECHO request with its aux reversed, and returns its terms,
/// how many requests it answered and the requests it saw refused (0x22) by its table.
fn blocking_echo_server<const T: usize>(
    keys: KeyDir,
    options: LinkOptions<T>,
) -> (String, thread::JoinHandle<(LinkTerms, u32, u32)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let server = thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let (mut link, terms) = link::accept(tcp, &keys, options).unwrap();
        assert!(
            link.transport().stream().nodelay().unwrap(),
            "accept turns TCP_NODELAY on"
        );
        link.io().accept(ECHO).unwrap();
        let (mut answered, mut refused) = (0, 0);
        loop {
            let request = link
                .next_event(|event| match event {
                    Event::Message { msg, .. } => Some((*msg.header(), msg.aux().to_vec())),
                    Event::Rejected { .. } => {
                        refused += 1;
                        None
                    }
                    _ => None,
                })
                .unwrap();
            match request {
                None => break, // the client closed the link
                Some(None) => {}
                Some(Some((header, mut aux))) => {
                    aux.reverse();
                    link.io().reply(&header, 0, &aux, true).unwrap();
                    answered += 1;
                }
            }
        }
        (terms, answered, refused)
    });
    (address, server)
}

/// Waits on a blocking link for the reply to `msgid`: its error and aux.
fn blocking_reply<S: blocking::DuplexStream, const T: usize>(
    link: &mut blocking::Link<S, T>,
    msgid: u32,
) -> (u16, Vec<u8>) {
    loop {
        let reply = link
            .next_event(|event| match event {
                Event::Message { msg, .. }
                    if msg.header().cmd.is_reply() && msg.header().msgid == msgid =>
                {
                    Some((msg.header().error, msg.aux().to_vec()))
                }
                _ => None,
            })
            .unwrap()
            .expect("the link stays up");
        if let Some(reply) = reply {
            return reply;
        }
    }
}

/// Waits on a tokio link for the reply to `msgid`: its error and aux.
async fn tokio_reply<S, const T: usize>(
    link: &mut tokio_driver::Link<S, T>,
    msgid: u32,
) -> (u16, Vec<u8>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        let reply = link
            .next_event(|event| match event {
                Event::Message { msg, .. }
                    if msg.header().cmd.is_reply() && msg.header().msgid == msgid =>
                {
                    Some((msg.header().error, msg.aux().to_vec()))
                }
                _ => None,
            })
            .await
            .unwrap()
            .expect("the link stays up");
        if let Some(reply) = reply {
            return reply;
        }
    }
}

/// `text` padded with NULs to the seed era's 32-byte aux unit (§3.5), as it comes back.
fn padded(text: &[u8]) -> Vec<u8> {
    let mut bytes = text.to_vec();
    bytes.resize(text.len().div_ceil(32) * 32, 0);
    bytes
}

#[test]
fn blocking_connect_and_accept_in_plaintext() {
    let root = tempfile::tempdir().unwrap();
    let (server_keys, client_keys) = plaintext_keys(root.path());
    let (address, server) = blocking_echo_server(server_keys, LinkOptions::new(ModeChoice::Auto));

    let (mut link, terms) =
        link::connect(address.as_str(), &client_keys, ModeChoice::Auto).unwrap();
    // A `.none` peer is met in the clear, seed mode (§2.7).
    let plaintext = LinkTerms {
        trust: Trust::Plaintext,
        mode: StreamMode::Seed,
    };
    assert_eq!(terms, plaintext);
    assert!(
        link.transport().stream().nodelay().unwrap(),
        "connect turns TCP_NODELAY on"
    );
    link.io().accept(ECHO).unwrap();
    for round in 0..10u8 {
        let text = [b'a' + round; 32];
        let request = link.io().open(ECHO, &[], &text, true).unwrap();
        let (error, aux) = blocking_reply(&mut link, request.msgid);
        assert_eq!(error, 0);
        assert_eq!(aux, text, "32 equal bytes reversed are themselves");
    }
    let request = link.io().open(ECHO, &[], b"0123456789", true).unwrap();
    let (_, aux) = blocking_reply(&mut link, request.msgid);
    let mut expected = padded(b"0123456789");
    expected.reverse();
    assert_eq!(aux, expected);
    drop(link);
    let (server_terms, answered, refused) = server.join().unwrap();
    assert_eq!(server_terms, plaintext);
    assert_eq!((answered, refused), (11, 0));
}

#[tokio::test]
async fn tokio_connect_to_blocking_accept_with_rsa_agrees_on_gcm() {
    let root = tempfile::tempdir().unwrap();
    let (server_keys, client_keys) = rsa_keys(root.path());
    let (address, server) = blocking_echo_server(server_keys, LinkOptions::new(ModeChoice::Auto));

    let (mut link, terms) = tokio_driver::connect(address.as_str(), &client_keys, ModeChoice::Auto)
        .await
        .unwrap();
    // Both ends offer GCM under `auto`, so an RSA link runs it (§2.9).
    let rsa_gcm = LinkTerms {
        trust: Trust::Rsa,
        mode: StreamMode::Gcm,
    };
    assert_eq!(terms, rsa_gcm);
    assert!(
        link.stream().nodelay().unwrap(),
        "connect turns TCP_NODELAY on"
    );
    link.io().accept(ECHO).unwrap();
    let request = link.io().open(ECHO, &[], &padded(b"ping"), true).unwrap();
    let (error, aux) = tokio_reply(&mut link, request.msgid).await;
    assert_eq!(error, 0);
    let mut expected = padded(b"ping");
    expected.reverse();
    assert_eq!(aux, expected);
    drop(link);
    let (server_terms, answered, _) = server.join().unwrap();
    assert_eq!(server_terms, rsa_gcm);
    assert_eq!(answered, 1);
}

#[tokio::test]
async fn tokio_accept_serves_a_blocking_client() {
    let root = tempfile::tempdir().unwrap();
    let (server_keys, client_keys) = plaintext_keys(root.path());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let client = thread::spawn(move || {
        let (mut link, _) =
            link::connect(address.as_str(), &client_keys, ModeChoice::Seed).unwrap();
        link.io().accept(ECHO).unwrap();
        let request = link.io().open(ECHO, &[], &padded(b"abc"), true).unwrap();
        blocking_reply(&mut link, request.msgid)
    });
    let (tcp, _) = listener.accept().await.unwrap();
    let (mut link, terms) = tokio_driver::accept(tcp, &server_keys, ModeChoice::Seed)
        .await
        .unwrap();
    assert_eq!(terms.trust, Trust::Plaintext);
    assert!(
        link.stream().nodelay().unwrap(),
        "accept turns TCP_NODELAY on"
    );
    link.io().accept(ECHO).unwrap();
    let (header, aux) = link
        .next_event(|event| match event {
            Event::Message { msg, .. } => (*msg.header(), msg.aux().to_vec()),
            other => panic!("a request, not {other:?}"),
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(header.cmd.clear(h2msg::wire::MsgFlags::ALL), ECHO);
    link.io().reply(&header, 7, &aux, true).unwrap();
    link.flush().await.unwrap();
    let (error, echoed) = tokio::task::spawn_blocking(move || client.join().unwrap())
        .await
        .unwrap();
    assert_eq!(error, 7, "the error field we replied with");
    assert_eq!(echoed, padded(b"abc"));
}

#[tokio::test]
async fn in_memory_pipes_use_the_loopback_keys() {
    let root = tempfile::tempdir().unwrap();
    let (a_keys, b_keys) = plaintext_keys(root.path());
    let (a_pipe, b_pipe) = tokio::io::duplex(64 * 1024);
    let options = LinkOptions::new(ModeChoice::Auto).liveness(Liveness::OFF);
    let (a, b) = tokio::join!(
        tokio_driver::accept(a_pipe, &a_keys, options),
        tokio_driver::accept(b_pipe, &b_keys, options),
    );
    let ((mut a, a_terms), (mut b, b_terms)) = (a.unwrap(), b.unwrap());
    assert_eq!(a_terms, b_terms);
    assert_eq!(a_terms.trust, Trust::Plaintext);
    b.io().accept(ECHO).unwrap();
    a.io().accept(ECHO).unwrap();
    let request = a.io().open(ECHO, &[], &[], true).unwrap();
    a.flush().await.unwrap();
    let asked = b
        .next_event(|event| match event {
            Event::Message { msg, .. } => *msg.header(),
            other => panic!("a request, not {other:?}"),
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(asked.msgid, request.msgid);
    b.io().reply(&asked, 0, &[], true).unwrap();
    b.flush().await.unwrap();
    assert_eq!(tokio_reply(&mut a, request.msgid).await, (0, Vec::new()));

    // A peer address without key files: NORKEY (10), naming the file looked for.
    let (c_pipe, _d_pipe) = tokio::io::duplex(1024);
    let unknown = "192.0.2.9".parse().unwrap();
    let refused = tokio_driver::accept_peer(c_pipe, unknown, &a_keys, ModeChoice::Auto).await;
    match refused {
        Err(LinkError::Keys(e @ KeyError::NoRemoteKey { .. })) => {
            assert_eq!(e.ioq_error() as u8, 10);
            assert!(e.to_string().contains("remote/192.0.2.9.pub"), "{e}");
        }
        Err(other) => panic!("NORKEY, not {other}"),
        Ok(_) => panic!("no key for 192.0.2.9, yet a link"),
    }
}

#[test]
fn the_options_choose_the_table_size_on_both_ends() {
    let root = tempfile::tempdir().unwrap();
    let (server_keys, client_keys) = plaintext_keys(root.path());
    // The server's table holds 2 of the peer's transactions, the client's 4 of its own.
    let server_options = LinkOptions::new(ModeChoice::Auto).transactions::<2>();
    let (address, server) = blocking_echo_server(server_keys, server_options);
    let client_options = LinkOptions::new(ModeChoice::Auto)
        .timeout(Duration::from_secs(5))
        .transactions::<4>();
    assert_eq!(client_options.transaction_limit(), 4);
    let (mut link, _) = link::connect(address.as_str(), &client_keys, client_options).unwrap();
    link.io().accept(ECHO).unwrap();

    // Three requests kept open (no DELETE from us): the server takes two, refuses the
    // third at once with 0x22.
    let requests: Vec<MsgHeader> = (0..3)
        .map(|_| link.io().open(ECHO, &[], &[], false).unwrap())
        .collect();
    let (error, _) = blocking_reply(&mut link, requests[2].msgid);
    assert_eq!(error, MSG_ERR_TABLE_FULL);
    assert_eq!(MSG_ERR_TABLE_FULL, 0x22, "§4.4");

    // Every transaction stays open on our side until we DELETE it, even the refused
    // one: a fourth fits our table of 4, a fifth does not, and says the limit.
    link.io().open(ECHO, &[], &[], false).unwrap();
    let full = link.io().open(ECHO, &[], &[], false).unwrap_err();
    assert_eq!(full, SendError::NoFreeMsgid { capacity: 4 });
    assert!(full.to_string().contains("all 4 transactions"), "{full}");
    // Dropping a link drops what is still queued: the fourth goes out first.
    link.flush().unwrap();
    drop(link);
    let (_, answered, refused) = server.join().unwrap();
    assert_eq!(answered, 2, "the two requests the server's table holds");
    assert_eq!(
        refused, 2,
        "the third and the fourth, the first two still open"
    );
}
