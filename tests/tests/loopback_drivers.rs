//! The tokio driver against the blocking one over real loopback TCP: the plaintext
//! handshake, pings, a 64 KiB aux round trip, and the typed errors of a broken peer; and
//! the handshake timeout of both drivers.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use h2msg::Event;
use h2msg::drive::reply_error;
use h2msg::wire::{Cmd, IoqError, MsgHeader, SoftCrc32c, WireOrder};
use h2msg::{HandshakeError, KeyExchangeFailure};
use h2msg_std::blocking::{self, DriveError, Duplex, std_iocom};
use h2msg_std::tokio_driver::{Link, drive_handshake};
use h2msg_tests::{big_aux, plaintext_handshake_until};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const TIMEOUT: Duration = Duration::from_secs(10);

/// A loopback listener and a thread that accepts one connection, runs the blocking
/// handshake on it and then `peer`.
fn blocking_peer<T: Send + 'static>(
    peer: impl FnOnce(TcpStream) -> T + Send + 'static,
) -> (String, JoinHandle<T>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let address = listener.local_addr().expect("bound address").to_string();
    let thread = thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        let mut duplex = Duplex::new(stream).expect("the duplex driver's threads");
        let deadline = Some(blocking::now() + TIMEOUT);
        blocking::drive_handshake(&mut duplex, plaintext_handshake_until(1, deadline))
            .expect("the blocking side's handshake");
        peer(
            duplex
                .into_inner()
                .expect("the handshake reads nothing past its block"),
        )
    });
    (address, thread)
}

/// Waits for the reply to our message `msgid` and returns its error field, passing over
/// other events; `DriveError::Closed` if the peer closes first.
async fn reply_to<S: AsyncRead + AsyncWrite + Unpin>(
    link: &mut Link<S>,
    msgid: u32,
) -> Result<u16, DriveError> {
    while let Some(answer) = link.next_event(|e| reply_error(&e, msgid)).await? {
        if let Some(error) = answer {
            return Ok(error);
        }
    }
    Err(DriveError::Closed)
}

/// Connects and runs the tokio handshake.
async fn tokio_side(address: &str) -> Link<tokio::net::TcpStream> {
    let mut stream = h2msg_std::tokio_driver::connect_tcp(address)
        .await
        .expect("connect");
    assert!(
        stream.nodelay().expect("a TCP option"),
        "TCP_NODELAY is set"
    );
    let deadline = Some(blocking::now() + TIMEOUT);
    drive_handshake(&mut stream, plaintext_handshake_until(2, deadline))
        .await
        .expect("the tokio side's handshake");
    let mut io = std_iocom(h2msg::LinkSetup::plaintext(), 0).expect("C sizes");
    io.accept(Cmd::DBG_SHELL).expect("accept list");
    Link::new(stream, io)
}

#[tokio::test]
async fn pings_are_answered_and_64k_of_aux_goes_there_and_back() {
    // The blocking side echoes each DBG_SHELL command's aux in its final reply; pings it
    // leaves to the core. It reports how many pings its core answered.
    let (address, peer) = blocking_peer(|stream| {
        let mut io = std_iocom(h2msg::LinkSetup::plaintext(), 0).expect("C sizes");
        io.accept(Cmd::DBG_SHELL).expect("accept list");
        let duplex = Duplex::new(stream).expect("the duplex driver's threads");
        let mut link = blocking::Link::new(duplex, io);
        let mut echoed = 0;
        while let Some(command) = link
            .next_event(|e| match e {
                Event::Message { msg, .. } if !msg.header().cmd.is_reply() => {
                    Some((*msg.header(), msg.aux().to_vec()))
                }
                _ => None,
            })
            .expect("the blocking side's link")
        {
            if let Some((header, aux)) = command {
                link.io().reply(&header, 0, &aux, true).expect("room");
                echoed += 1;
            }
        }
        (echoed, link.io().stats().auto_replies)
    });
    let mut link = tokio_side(&address).await;

    for msgid in 1..=100 {
        let mut ping = MsgHeader::new(Cmd::LNK_PING);
        ping.msgid = msgid;
        link.io().send(ping, &[], &[]).expect("room for a ping");
        assert_eq!(reply_to(&mut link, msgid).await.expect("a reply"), 0);
    }

    let aux = big_aux();
    let mut shell = MsgHeader::new(Cmd::DBG_SHELL);
    shell.msgid = 101;
    link.io().send(shell, &[], &aux).expect("room for 64 KiB");
    let echo = loop {
        let reply = link
            .next_event(|e| match e {
                Event::Message { msg, .. }
                    if msg.header().cmd.is_reply() && msg.header().msgid == 101 =>
                {
                    Some(msg.aux().to_vec())
                }
                _ => None,
            })
            .await
            .expect("the tokio side's link")
            .expect("the link stays up");
        if let Some(aux) = reply {
            break aux;
        }
    };
    assert_eq!(echo.len(), 65536);
    assert!(echo == aux, "the echoed aux differs");

    drop(link);
    let (echoed, pings_answered) = peer.join().expect("the blocking side");
    assert_eq!(echoed, 1);
    assert_eq!(pings_answered, 100);
}

#[tokio::test]
async fn garbage_from_the_peer_is_sync_error_1() {
    let (address, peer) = blocking_peer(|mut stream| {
        let mut ping = [0u8; 32];
        stream.read_exact(&mut ping).expect("the ping");
        stream.write_all(&[0xEE; 64]).expect("garbage");
        // Hold the connection until the other side has seen it.
        let _ = stream.read(&mut [0u8; 1]);
    });
    let mut link = tokio_side(&address).await;
    link.io()
        .send(MsgHeader::new(Cmd::LNK_PING), &[], &[])
        .expect("room");
    let err = reply_to(&mut link, 0)
        .await
        .expect_err("garbage is no reply");
    assert_eq!(err.code(), 1);
    match err {
        DriveError::Stream(failure) => {
            assert_eq!(failure.ioq_error(), IoqError::Sync);
            assert_eq!(failure.offset, 0);
        }
        other => panic!("expected a stream failure, got {other:?}"),
    }
    drop(link);
    peer.join().expect("the blocking side");
}

#[tokio::test]
async fn garbage_to_the_blocking_side_is_sync_error_1_there() {
    use tokio::io::AsyncWriteExt;

    let (address, peer) = blocking_peer(|stream| {
        let mut link = blocking::Link::new(
            Duplex::new(stream).expect("the duplex driver's threads"),
            std_iocom(h2msg::LinkSetup::plaintext(), 0).expect("C sizes"),
        );
        loop {
            match link.next_event(|_| ()) {
                Ok(Some(())) => {}
                Ok(None) => return None,
                Err(e) => return Some(e),
            }
        }
    });
    let mut link = tokio_side(&address).await;
    link.stream().write_all(&[0x11; 32]).await.expect("garbage");
    let err = peer.join().expect("the blocking side").expect("an error");
    assert_eq!(err.code(), 1, "{err}");
    assert!(
        matches!(&err, DriveError::Stream(f) if f.ioq_error() == IoqError::Sync),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_peer_closing_inside_a_message_is_eof_error_2() {
    let (address, peer) = blocking_peer(|mut stream| {
        let mut ping = [0u8; 32];
        stream.read_exact(&mut ping).expect("the ping");
        let aux = [0x5Au8; 64];
        let header = MsgHeader::new(Cmd::DBG_SHELL)
            .seal(WireOrder::Little, &[], &aux, &SoftCrc32c)
            .expect("a valid header");
        stream.write_all(&header).expect("header");
        stream
            .write_all(&aux[..10])
            .expect("the start of the aux data");
        // Dropping the stream closes it 54 bytes short of the message's end.
    });
    let mut link = tokio_side(&address).await;
    link.io()
        .send(MsgHeader::new(Cmd::LNK_PING), &[], &[])
        .expect("room");
    let err = reply_to(&mut link, 1)
        .await
        .expect_err("the stream ends early");
    assert_eq!(err.code(), 2);
    assert!(
        matches!(&err, DriveError::Stream(f) if f.ioq_error() == IoqError::Eof),
        "{err:?}"
    );
    peer.join().expect("the blocking side");
}

#[tokio::test]
async fn a_clean_close_while_a_reply_is_awaited_is_eof_error_2() {
    let (address, peer) = blocking_peer(|mut stream| {
        let mut ping = [0u8; 32];
        stream.read_exact(&mut ping).expect("the ping");
    });
    let mut link = tokio_side(&address).await;
    let mut ping = MsgHeader::new(Cmd::LNK_PING);
    ping.msgid = 7;
    link.io().send(ping, &[], &[]).expect("room");
    let err = reply_to(&mut link, 7).await.expect_err("no reply comes");
    assert!(matches!(err, DriveError::Closed), "{err:?}");
    assert_eq!(err.code(), 2);
    // The close itself is no error to the event loop.
    assert!(link.next_event(|_| ()).await.expect("clean").is_none());
    peer.join().expect("the blocking side");
}

#[tokio::test]
async fn a_silent_peer_fails_the_handshake_with_keyxchgfail_12_at_the_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let address = listener.local_addr().expect("bound address");
    let silent = thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        // Say nothing; return when the other side hangs up.
        let _ = io::copy(&mut stream, &mut io::sink());
    });
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    let limit = Duration::from_millis(200);
    let start = Instant::now();
    let deadline = Some(blocking::now() + limit);
    let err = drive_handshake(&mut stream, plaintext_handshake_until(3, deadline))
        .await
        .expect_err("the peer never sends its block");
    let waited = start.elapsed();
    assert_eq!(err.code(), 12);
    assert!(
        matches!(
            err,
            DriveError::Handshake(HandshakeError::KeyExchange(KeyExchangeFailure::Timeout))
        ),
        "{err:?}"
    );
    // The drivers' clock counts whole milliseconds: a deadline may come up to one early.
    assert!(
        waited + Duration::from_millis(1) >= limit,
        "gave up after {waited:?}"
    );
    assert!(waited < TIMEOUT, "waited {waited:?}");
    drop(stream);
    silent.join().expect("the silent side");
}

#[test]
fn the_blocking_handshake_also_gives_up_at_its_timeout() {
    // The deadline goes through the handshake's time seam: no OS read timeout is set.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let address = listener.local_addr().expect("bound address");
    let silent = thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        let _ = io::copy(&mut stream, &mut io::sink());
    });
    let stream = TcpStream::connect(address).expect("connect");
    let mut stream = Duplex::new(stream).expect("the duplex driver's threads");
    let limit = Duration::from_millis(200);
    let start = Instant::now();
    let deadline = Some(blocking::now() + limit);
    let err = blocking::drive_handshake(&mut stream, plaintext_handshake_until(4, deadline))
        .expect_err("the peer never sends its block");
    let waited = start.elapsed();
    assert_eq!(err.code(), 12);
    // The drivers' clock counts whole milliseconds: a deadline may come up to one early.
    assert!(
        waited + Duration::from_millis(1) >= limit,
        "gave up after {waited:?}"
    );
    assert!(waited < TIMEOUT, "waited {waited:?}");
    drop(stream);
    silent.join().expect("the silent side");
}

/// A stream whose every read and write fails, as a reset connection's do.
struct Broken;

impl AsyncRead for Broken {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()))
    }
}

impl AsyncWrite for Broken {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, _: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn a_failing_transport_is_sock_error_3_now_and_on_later_calls() {
    let mut io = std_iocom(h2msg::LinkSetup::plaintext(), 0).expect("C sizes");
    io.accept(Cmd::LNK_PING).expect("accept list");
    let mut link = Link::new(Broken, io);
    let mut ping = MsgHeader::new(Cmd::LNK_PING);
    ping.msgid = 1;
    link.io().send(ping, &[], &[]).expect("room");

    let err = reply_to(&mut link, 1)
        .await
        .expect_err("nothing can be sent");
    assert_eq!(err.code(), 3);
    match err {
        DriveError::Io(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset),
        other => panic!("expected the transport's error, got {other:?}"),
    }
    // The link went down: its last event, then the same code without the io::Error.
    let last = link
        .next_event(|e| matches!(e, Event::LinkDown(_)))
        .await
        .expect("the link's last event");
    assert_eq!(last, Some(true));
    let err = link
        .next_event(|_| ())
        .await
        .expect_err("the link is failed");
    assert!(matches!(err, DriveError::TransportFailed), "{err:?}");
    assert_eq!(err.code(), 3);
}

#[test]
fn io_error_conversion_keeps_the_transport_error_and_wraps_the_verdicts() {
    let e = io::Error::from(DriveError::Io(io::Error::other("wire cut")));
    assert_eq!(e.to_string(), "wire cut");

    let e = io::Error::from(DriveError::Closed);
    assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    let inner = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<DriveError>())
        .expect("the verdict inside");
    assert_eq!(inner.code(), 2);

    let e = io::Error::from(DriveError::Handshake(HandshakeError::BadRandom));
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);

    // A write that took nothing is std's own WriteZero; what has no kind of its own is Other.
    let e = io::Error::from(DriveError::WriteZero);
    assert_eq!(e.kind(), io::ErrorKind::WriteZero);
    assert_eq!(
        io::Error::from(DriveError::Stalled).kind(),
        io::ErrorKind::Other
    );
}

/// tokio panics when a sleep is made on a runtime without its time driver; the driver
/// turns that into an error the caller can report.
#[test]
fn a_runtime_without_its_time_driver_is_a_clear_error_not_a_panic() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime without enable_time");
    let err = runtime
        .block_on(async {
            let (mut ours, _theirs) = tokio::io::duplex(4096);
            let deadline = Some(blocking::now() + TIMEOUT);
            drive_handshake(&mut ours, plaintext_handshake_until(5, deadline)).await
        })
        .expect_err("a deadline needs the time driver");
    assert!(
        err.to_string()
            .contains(h2msg_std::tokio_driver::NO_TIME_DRIVER),
        "{err}"
    );
    assert_eq!(err.code(), 3);
}
