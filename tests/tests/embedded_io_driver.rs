//! The embedded-io driver over in-memory transports: a recorded peer stream handed over in
//! small, uneven chunks (with interruptions), transports that fail, and the handshake
//! deadline on the board's clock.

use embedded_io::{ErrorKind, ErrorType, Read, ReadReady, Write, WriteReady};
use h2msg::drive::embedded::{Clock, Embedded, Link, NoClock, drive_handshake};
use h2msg::drive::{DriveError, reply_error};
use h2msg::wire::limits::{MSGAUX_MAX, MSGBUF_SIZE, MSGHDR_MAX};
use h2msg::wire::{Cmd, IoqError, MsgHeader, SoftCrc32c, WireOrder};
use h2msg::{CounterSalt, Instant};
use h2msg::{Event, Iocom, IocomMemory, LinkEnd, LinkSetup};
use h2msg::{Handshake, HandshakePoll, NoRsa, Session};
use h2msg_tests::{big_aux, plaintext_handshake};

type TestIocom = Iocom<Vec<u8>, CounterSalt, SoftCrc32c, 8>;

fn iocom(salt: u32) -> TestIocom {
    let memory = IocomMemory {
        fifo: vec![0; MSGBUF_SIZE],
        aux: vec![0; MSGAUX_MAX],
        tx_ring: vec![0; 2 * (MSGHDR_MAX + MSGAUX_MAX)],
    };
    Iocom::new(
        LinkSetup::plaintext(),
        memory,
        CounterSalt::after(salt),
        SoftCrc32c,
    )
    .expect("C sizes")
}

/// Reads a recorded stream in chunks of the sizes given (cycled), each `interrupt_every`th
/// read interrupted; takes at most `write_limit` bytes per write; fails every read once
/// `fail_read_at` bytes were read and every write once `fail_write_at` were written.
struct Memory {
    input: Vec<u8>,
    read: usize,
    chunks: Vec<usize>,
    reads: usize,
    interrupt_every: usize,
    output: Vec<u8>,
    write_limit: usize,
    fail_read_at: Option<usize>,
    fail_write_at: Option<usize>,
    /// Bytes written before each read.
    written_before_read: Vec<usize>,
    /// Whether a write would go through now (`WriteReady`).
    writable: bool,
}

impl Memory {
    fn new(input: Vec<u8>, chunks: &[usize], write_limit: usize) -> Self {
        Self {
            input,
            read: 0,
            chunks: chunks.to_vec(),
            reads: 0,
            interrupt_every: 0,
            output: Vec::new(),
            write_limit,
            fail_read_at: None,
            fail_write_at: None,
            written_before_read: Vec::new(),
            writable: true,
        }
    }
}

impl ErrorType for Memory {
    type Error = ErrorKind;
}

impl Read for Memory {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        assert!(
            !buf.is_empty(),
            "a driver must not read into an empty buffer"
        );
        self.reads += 1;
        self.written_before_read.push(self.output.len());
        if self.interrupt_every != 0 && self.reads.is_multiple_of(self.interrupt_every) {
            return Err(ErrorKind::Interrupted);
        }
        if self.fail_read_at.is_some_and(|at| self.read >= at) {
            return Err(ErrorKind::ConnectionReset);
        }
        let chunk = self.chunks[self.reads % self.chunks.len()];
        let n = chunk.min(buf.len()).min(self.input.len() - self.read);
        buf[..n].copy_from_slice(&self.input[self.read..self.read + n]);
        self.read += n;
        Ok(n)
    }
}

// A memory transport's reads never block; its writes block while `writable` is false.
impl ReadReady for Memory {
    fn read_ready(&mut self) -> Result<bool, ErrorKind> {
        Ok(true)
    }
}

impl WriteReady for Memory {
    fn write_ready(&mut self) -> Result<bool, ErrorKind> {
        Ok(self.writable)
    }
}

impl Write for Memory {
    fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        if self.fail_write_at.is_some_and(|at| self.output.len() >= at) {
            return Err(ErrorKind::BrokenPipe);
        }
        let n = buf.len().min(self.write_limit);
        self.output.extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}

/// What the peer says: its handshake block, a ping (msgid 1), a 64 KiB DBG_SHELL command
/// (msgid 2), then the end of the stream at a message boundary.
fn peer_stream(peer_hs: &Handshake<NoRsa>) -> Vec<u8> {
    let mut bytes = peer_hs.pending().to_vec();
    let mut peer = iocom(100);
    let mut ping = MsgHeader::new(Cmd::LNK_PING);
    ping.msgid = 1;
    peer.send(ping, &[], &[]).expect("room");
    let mut shell = MsgHeader::new(Cmd::DBG_SHELL);
    shell.msgid = 2;
    peer.send(shell, &[], &big_aux()).expect("room");
    let mut out = vec![0; 2 * (MSGHDR_MAX + MSGAUX_MAX)];
    let n = peer.copy_pending(&mut out);
    bytes.extend_from_slice(&out[..n]);
    bytes
}

/// Runs our side over `transport` against the recorded peer: handshake, then answer the
/// DBG_SHELL command with "ok". Returns our session, the aux the command carried, and
/// the transport.
fn our_side(transport: Memory) -> (Session, Vec<u8>, Memory) {
    let mut transport = Embedded::new(transport, NoClock);
    let session = drive_handshake(&mut transport, plaintext_handshake(2)).expect("our handshake");
    let mut io = iocom(0);
    io.accept(Cmd::DBG_SHELL).expect("accept list");
    let mut link = Link::new(transport, io);
    let (header, aux) = loop {
        let command = link
            .next_event(|e| match e {
                Event::Message { msg, .. } => Some((*msg.header(), msg.aux().to_vec())),
                other => panic!("unexpected event {other:?}"),
            })
            .expect("the link")
            .expect("the link stays up");
        if let Some(command) = command {
            break command;
        }
    };
    assert!(header.cmd.same_handler(Cmd::DBG_SHELL), "{header:?}");
    assert_eq!(header.msgid, 2);
    link.io().reply(&header, 0, b"ok\0", true).expect("room");
    let last = link
        .next_event(|e| matches!(e, Event::LinkDown(LinkEnd::Closed)))
        .expect("the link");
    assert_eq!(last, Some(true), "the clean close is the last event");
    assert_eq!(link.next_event(|_| ()).expect("closed cleanly"), None);
    let (transport, _) = link.into_parts();
    (session, aux, transport.io)
}

/// What the peer receives of our output: our handshake block's session, and the replies
/// (msgid, error, aux) its connection hands out.
fn peer_receives(
    mut peer_hs: Handshake<NoRsa>,
    output: &[u8],
) -> (Session, Vec<(u32, u16, Vec<u8>)>) {
    let sent = peer_hs.pending().len();
    peer_hs.advance(sent).expect("the peer's block was taken");
    let taken = peer_hs.feed(output);
    assert_eq!(taken, 512, "our handshake block is 512 bytes");
    let HandshakePoll::Done(session) = peer_hs.poll() else {
        panic!("the peer's handshake did not complete");
    };
    let mut peer = iocom(100);
    peer.accept(Cmd::DBG_SHELL).expect("accept list");
    let mut replies = Vec::new();
    let mut rest = &output[taken..];
    loop {
        let n = peer.feed(rest);
        rest = &rest[n..];
        if rest.is_empty() {
            peer.end_input();
        }
        let mut progressed = n > 0;
        while let Some(event) = peer.poll_event() {
            progressed = true;
            match event {
                Event::Message { msg, .. } => {
                    replies.push((msg.header().msgid, msg.header().error, msg.aux().to_vec()))
                }
                Event::LinkDown(end) => {
                    assert_eq!(end, LinkEnd::Closed, "our output ends cleanly");
                    return (session, replies);
                }
                _ => {}
            }
        }
        assert!(progressed, "the peer stalled on our output");
    }
}

fn round_trip(chunks: &[usize], write_limit: usize, interrupt_every: usize) {
    let peer_hs = plaintext_handshake(1);
    let mut transport = Memory::new(peer_stream(&peer_hs), chunks, write_limit);
    transport.interrupt_every = interrupt_every;
    let (ours, aux, transport) = our_side(transport);
    assert!(aux == big_aux(), "the 64 KiB aux arrived changed");
    assert_eq!(transport.read, transport.input.len(), "everything was read");

    let (theirs, replies) = peer_receives(peer_hs, &transport.output);
    let (ours, theirs) = (ours.keys_for_testing(), theirs.keys_for_testing());
    assert_eq!(ours.1, theirs.0);
    assert_eq!(ours.0, theirs.1);
    let mut ok = b"ok\0".to_vec();
    ok.resize(32, 0); // aux travels padded to 32 bytes
    assert_eq!(
        replies,
        vec![(1, 0, Vec::new()), (2, 0, ok)],
        "the ping answered by the core, then our reply"
    );
}

#[test]
fn a_whole_link_over_one_byte_reads_and_writes() {
    round_trip(&[1], 1, 0);
}

#[test]
fn a_whole_link_over_uneven_chunks() {
    round_trip(&[3, 1, 7, 31, 2, 500, 33], 13, 0);
}

#[test]
fn a_whole_link_over_large_chunks() {
    round_trip(&[4096], usize::MAX, 0);
}

#[test]
fn interrupted_reads_are_retried() {
    round_trip(&[5, 64, 1], 100, 3);
}

/// A transport that has the peer's handshake and then `after` to read.
fn after_handshake(after: &[u8]) -> Memory {
    let mut input = plaintext_handshake(1).pending().to_vec();
    input.extend_from_slice(after);
    Memory::new(input, &[7], usize::MAX)
}

type TestLink = Link<Memory, NoClock, Iocom<Vec<u8>, CounterSalt, SoftCrc32c, 8>>;

/// Waits for the reply to our message `msgid` and returns its error field, passing over
/// other events; `DriveError::Closed` if the peer closes first.
fn reply_to(link: &mut TestLink, msgid: u32) -> Result<u16, DriveError<ErrorKind>> {
    while let Some(answer) = link.next_event(|e| reply_error(&e, msgid))? {
        if let Some(error) = answer {
            return Ok(error);
        }
    }
    Err(DriveError::Closed)
}

/// Our side after its handshake over `transport`.
fn link_over(transport: Memory) -> TestLink {
    let mut transport = Embedded::new(transport, NoClock);
    drive_handshake(&mut transport, plaintext_handshake(2)).expect("our handshake");
    Link::new(transport, iocom(0))
}

#[test]
fn what_is_queued_is_written_before_the_driver_reads() {
    let mut link = link_over(after_handshake(&[]));
    let reads_in_handshake = link.transport().io.reads;
    link.io()
        .send(MsgHeader::new(Cmd::LNK_PING), &[], &[])
        .expect("room");
    let err = reply_to(&mut link, 0).expect_err("the peer closes");
    assert_eq!(err, DriveError::Closed);
    let first_read_after = link.transport().io.written_before_read[reads_in_handshake];
    assert_eq!(
        first_read_after,
        512 + 32,
        "our block and the ping, then a read"
    );
}

#[test]
fn a_read_error_is_sock_error_3_then_the_link_is_down() {
    let mut transport = after_handshake(&[]);
    transport.fail_read_at = Some(512);
    let mut link = link_over(transport);
    let err = reply_to(&mut link, 1).expect_err("the transport failed");
    assert_eq!(err, DriveError::Io(ErrorKind::ConnectionReset));
    assert_eq!(err.code(), 3);
    let last = link.next_event(|e| matches!(e, Event::LinkDown(LinkEnd::TransportFailed)));
    assert_eq!(last, Ok(Some(true)));
    let err = link.next_event(|_| ()).expect_err("the link stays failed");
    assert_eq!(err, DriveError::TransportFailed);
    assert_eq!(err.code(), 3);
}

#[test]
fn a_write_error_is_sock_error_3() {
    let mut transport = after_handshake(&[]);
    transport.fail_write_at = Some(512 + 10);
    transport.write_limit = 10;
    let mut link = link_over(transport);
    link.io()
        .send(MsgHeader::new(Cmd::LNK_PING), &[], &[])
        .expect("room");
    let err = link.flush().expect_err("the second write fails");
    assert_eq!(err, DriveError::Io(ErrorKind::BrokenPipe));
    assert_eq!(err.code(), 3);
}

#[test]
fn a_write_of_nothing_is_sock_error_3() {
    let mut link = link_over(after_handshake(&[]));
    link.transport().io.write_limit = 0;
    link.io()
        .send(MsgHeader::new(Cmd::LNK_PING), &[], &[])
        .expect("room");
    let err = link.flush().expect_err("nothing was taken");
    assert_eq!(err, DriveError::WriteZero);
    assert_eq!(err.code(), 3);
}

#[test]
fn a_read_error_in_the_handshake_is_sock_error_3() {
    let mut transport = after_handshake(&[]);
    transport.fail_read_at = Some(100);
    let mut transport = Embedded::new(transport, NoClock);
    let err = drive_handshake(&mut transport, plaintext_handshake(2)).expect_err("the read fails");
    assert_eq!(err, DriveError::Io(ErrorKind::ConnectionReset));
    assert_eq!(err.code(), 3);
}

/// A peer that takes our block and says nothing: never ready to be read.
struct Silent;

impl ErrorType for Silent {
    type Error = ErrorKind;
}

impl Read for Silent {
    fn read(&mut self, _: &mut [u8]) -> Result<usize, ErrorKind> {
        panic!("read while not ready")
    }
}

impl ReadReady for Silent {
    fn read_ready(&mut self) -> Result<bool, ErrorKind> {
        Ok(false)
    }
}

impl Write for Silent {
    fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}

impl WriteReady for Silent {
    fn write_ready(&mut self) -> Result<bool, ErrorKind> {
        Ok(true)
    }
}

/// A board clock that moves one millisecond each time it is read.
struct Ticking(u64);

impl Clock for Ticking {
    fn now(&mut self) -> Instant {
        self.0 += 1;
        Instant::from_millis(self.0)
    }
}

#[test]
fn a_silent_peer_fails_the_handshake_at_its_deadline_with_keyxchgfail_12() {
    let deadline = Instant::from_millis(1_000);
    let hs = h2msg_tests::plaintext_handshake_until(2, Some(deadline));
    let mut transport = Embedded::new(Silent, Ticking(0));
    let err = drive_handshake(&mut transport, hs).expect_err("no peer block");
    assert_eq!(err.code(), 12, "{err:?}");
    assert!(matches!(err, DriveError::Handshake(_)), "{err:?}");
    assert!(
        transport.clock.0 >= deadline.as_millis(),
        "gave up at {} ms, before the deadline",
        transport.clock.0
    );
}

#[test]
fn a_short_handshake_is_keyxchgfail_12() {
    let mut block = plaintext_handshake(1).pending().to_vec();
    block.truncate(300);
    let mut transport = Embedded::new(Memory::new(block, &[64], usize::MAX), NoClock);
    let err =
        drive_handshake(&mut transport, plaintext_handshake(2)).expect_err("300 of 512 bytes");
    assert_eq!(err.code(), 12);
}

#[test]
fn garbage_after_the_handshake_is_sync_error_1() {
    let mut link = link_over(after_handshake(&[0xEE; 40]));
    let err = reply_to(&mut link, 1).expect_err("garbage is no reply");
    assert_eq!(err.code(), 1);
    assert!(
        matches!(err, DriveError::Stream(f) if f.ioq_error() == IoqError::Sync && f.offset == 0),
        "{err:?}"
    );
}

#[test]
fn a_stream_ending_inside_a_message_is_eof_error_2() {
    let header = MsgHeader::new(Cmd::DBG_SHELL)
        .seal(WireOrder::Little, &[], &[1; 64], &SoftCrc32c)
        .expect("a valid header");
    let mut after = header.to_vec();
    after.extend_from_slice(&[1; 20]);
    let mut link = link_over(after_handshake(&after));
    let err = reply_to(&mut link, 1).expect_err("the message is cut short");
    assert_eq!(err.code(), 2);
    assert!(matches!(err, DriveError::Stream(_)), "{err:?}");
}

#[test]
fn a_clean_end_while_a_reply_is_awaited_is_eof_error_2() {
    let mut link = link_over(after_handshake(&[]));
    let err = reply_to(&mut link, 1).expect_err("no reply comes");
    assert_eq!(err, DriveError::Closed);
    assert_eq!(err.code(), 2);
}

/// Full duplex: a write that cannot go through keeps no read from happening.
#[test]
fn the_driver_reads_while_its_write_waits() {
    let shell = MsgHeader::new(Cmd::DBG_SHELL)
        .seal(WireOrder::Little, &[], &[], &SoftCrc32c)
        .expect("a valid header");
    let mut link = link_over(after_handshake(&shell));
    link.io().accept(Cmd::DBG_SHELL).expect("accept list");
    link.transport().io.writable = false;
    link.io()
        .send(MsgHeader::new(Cmd::LNK_PING), &[], &[])
        .expect("room");
    let got = link.next_event(|e| matches!(e, Event::Message { .. }));
    assert_eq!(got, Ok(Some(true)), "the peer's command arrived");
    let [waiting, _] = link.io().pending();
    assert_eq!(waiting.len(), 32, "our ping still waits to be written");
}
