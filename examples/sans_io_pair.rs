//! Two h2msg connections in one process, with the core crate alone: no socket, no
//! thread, no clock. Bytes one side writes are handed to the other by this program,
//! which is all a transport is to the sans-IO core.
//!
//! 1. the handshake of two `.none` peers (plaintext, docs/protocol.md §2.7);
//! 2. each side's session becomes a connection in the agreed stream mode;
//! 3. transactions each way: the client opens five requests at once, the server answers
//!    each in two parts (a reply that keeps the transaction open, then the final one).
//!
//! Run: `cargo run -p h2msg-examples --example sans_io_pair`. Exits non-zero if any
//! reply differs from what the server was asked to compute.

use std::error::Error;

use h2msg::wire::{Cmd, MsgHeader, SoftCrc32c, WireOrder};
use h2msg::{
    CounterSalt, Event, Handshake, HandshakePoll, Iocom, IocomMemory, KeyMode, LinkSetup,
    ModeChoice, NoRsa, Session,
};

/// A connection with heap buffers, the software CRC and a table of 16 transactions per
/// direction.
type Node = Iocom<Vec<u8>, CounterSalt, SoftCrc32c, 16>;

/// The application's one command: "uppercase this". Number 1 of the application
/// protocol (nibble 0xF, docs/protocol.md §4.1).
const UPPERCASE: Cmd = match Cmd::app(1) {
    Some(cmd) => cmd,
    None => Cmd::LNK_PAD, // never: 1 fits the 12-bit number
};

/// What a message was, copied out of the connection (an event borrows it).
struct Received {
    header: MsgHeader,
    aux: Vec<u8>,
}

fn main() -> Result<(), Box<dyn Error>> {
    let (session_a, session_b) = handshake()?;
    let mut a = connection(session_a)?;
    let mut b = connection(session_b)?;
    println!("handshake done, stream mode {}", a.stream_mode());

    let words = ["alpha", "beta", "gamma", "delta", "epsilon"];
    transactions(&mut a, &mut b, &words)?;
    println!(
        "a -> b: {} requests, each answered in two parts",
        words.len()
    );
    transactions(&mut b, &mut a, &words)?;
    println!(
        "b -> a: {} requests, each answered in two parts",
        words.len()
    );
    Ok(())
}

/// Runs the handshake of two `.none` peers, carrying each side's bytes to the other
/// until both are done.
fn handshake() -> Result<(Session, Session), Box<dyn Error>> {
    // The handshake's random bytes come from the OS (getrandom 0.4's SysRng, a
    // rand_core 0.10 TryCryptoRng); no deadline, since nothing here can stall.
    let side = || {
        Handshake::<NoRsa>::new(
            KeyMode::Plaintext,
            &mut getrandom::SysRng,
            WireOrder::Little,
            None,
        )
    };
    let (mut a, mut b) = (side()?, side()?);
    let (mut done_a, mut done_b) = (None, None);
    // 512 bytes each way; a few rounds suffice, the bound only catches a bug.
    for _ in 0..16 {
        let to_b = a.pending().to_vec();
        let taken = b.feed(&to_b);
        a.advance(taken)?;
        let to_a = b.pending().to_vec();
        let taken = a.feed(&to_a);
        b.advance(taken)?;
        for (hs, done) in [(&mut a, &mut done_a), (&mut b, &mut done_b)] {
            match hs.poll() {
                HandshakePoll::Done(session) => *done = Some(session),
                HandshakePoll::Failed(e) => return Err(e.into()),
                _ => {} // in progress, or said already
            }
        }
        if let (Some(_), Some(_)) = (&done_a, &done_b) {
            break;
        }
    }
    match (done_a, done_b) {
        (Some(a), Some(b)) => Ok((a, b)),
        _ => Err("the handshake did not complete".into()),
    }
}

/// A connection from a completed handshake: the stream mode both sides accept, the
/// buffers it needs, and the application's command accepted (the connection answers
/// commands nobody accepted with error 0x20 and drops replies to them, §8.3).
fn connection(session: Session) -> Result<Node, Box<dyn Error>> {
    let setup = LinkSetup::negotiate(session, ModeChoice::Auto)?;
    let memory = IocomMemory {
        fifo: vec![0; 8192],
        aux: vec![0; 65536],
        tx_ring: vec![0; 2 * (2048 + 65536)],
    };
    let mut node = Node::new(setup, memory, CounterSalt::default(), SoftCrc32c)?;
    node.accept(UPPERCASE)?;
    Ok(node)
}

/// Moves what `from` has to write into `to`, as far as `to` takes it: the transport.
/// Returns how many bytes moved.
fn carry(from: &mut Node, to: &mut Node) -> Result<usize, Box<dyn Error>> {
    let [older, newer] = from.pending();
    let bytes = [older, newer].concat();
    let taken = to.feed(&bytes);
    from.advance_write(taken)?;
    Ok(taken)
}

/// Every message `node` has for the application, copied out.
fn drain(node: &mut Node) -> Result<Vec<Received>, Box<dyn Error>> {
    let mut received = Vec::new();
    while let Some(event) = node.poll_event() {
        match event {
            Event::Message { msg, .. } => received.push(Received {
                header: *msg.header(),
                aux: msg.aux_until_nul().to_vec(),
            }),
            Event::LinkDown(end) => return Err(format!("link down: {end:?}").into()),
            other => return Err(format!("unexpected event: {other:?}").into()),
        }
    }
    Ok(received)
}

/// `client` asks `server` to uppercase each word, all requests open at once; the server
/// answers each with the word uppercased (transaction still open), then with its length
/// as text (final). Checks every reply against the same computation done here.
fn transactions(
    client: &mut Node,
    server: &mut Node,
    words: &[&str],
) -> Result<(), Box<dyn Error>> {
    let mut opened = Vec::new();
    for word in words {
        // The aux is NUL-terminated text; the seed era pads it to 32-byte units.
        let text = [word.as_bytes(), b"\0"].concat();
        opened.push((client.open(UPPERCASE, &[], &text, true)?, *word));
    }
    carry(client, server)?;
    let requests = drain(server)?;
    if requests.len() != words.len() {
        return Err(format!(
            "server got {} requests, sent {}",
            requests.len(),
            words.len()
        )
        .into());
    }
    for request in &requests {
        let upper = request.aux.to_ascii_uppercase();
        server.reply(&request.header, 0, &[&upper[..], b"\0"].concat(), false)?;
        let length = request.aux.len().to_string();
        server.reply(
            &request.header,
            0,
            &[length.as_bytes(), b"\0"].concat(),
            true,
        )?;
    }
    carry(server, client)?;
    let replies = drain(client)?;
    for (header, word) in &opened {
        let parts: Vec<&Received> = replies
            .iter()
            .filter(|r| r.header.msgid == header.msgid && r.header.cmd.is_reply())
            .collect();
        let expected = [word.to_ascii_uppercase(), word.len().to_string()];
        let got: Vec<String> = parts
            .iter()
            .map(|r| String::from_utf8_lossy(&r.aux).into_owned())
            .collect();
        if got != expected {
            return Err(format!(
                "msgid {}: replies {got:?}, expected {expected:?}",
                header.msgid
            )
            .into());
        }
        if parts.iter().any(|r| r.header.error != 0) {
            return Err(format!("msgid {}: a reply carries an error", header.msgid).into());
        }
    }
    // Both directions sent DELETE: nothing is left open on either side.
    let open = |node: &Node| node.local_transactions().len() + node.remote_transactions().len();
    if open(client) != 0 || open(server) != 0 {
        return Err("transactions left open after their final replies".into());
    }
    Ok(())
}
