//! A blocking client and the service it talks to, both in this process over loopback TCP,
//! authenticated with RSA keys made for the occasion.
//!
//! 1. two key directories in the 2012 layout (docs/protocol.md §2.2): each side's key
//!    pair, and the other's public key as `remote/127.0.0.1.pub`;
//! 2. the service: `link::accept` on each incoming socket, then answer every request;
//! 3. the client: `link::connect`, then 256 requests, 32 open at a time, each reply
//!    checked against the same computation done here;
//! 4. the client flushes and drops its link; the service sees the link end cleanly and
//!    reports how many requests it answered.
//!
//! Run: `cargo run -p h2msg-examples --example blocking_client`. Exits non-zero if
//! anything differs.

use std::error::Error;
use std::fs;
use std::net::TcpListener;
use std::path::Path;
use std::thread;

use h2msg::wire::Cmd;
use h2msg::{Event, ModeChoice};
use h2msg_std::keys::KeyDir;
use h2msg_std::link;

/// "Square this number": number 2 of the application protocol (nibble 0xF, §4.1). The
/// request's aux is the number as 8 little-endian bytes, the reply's its square.
const SQUARE: Cmd = match Cmd::app(2) {
    Some(cmd) => cmd,
    None => Cmd::LNK_PAD, // never: 2 fits the 12-bit number
};

/// Requests the client keeps open at once (the table holds 64 by default).
const IN_FLIGHT: u64 = 32;
/// Requests in all.
const REQUESTS: u64 = 256;

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

fn main() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (service_keys, client_keys) = trusting_key_dirs(dir.path())?;

    let listener = TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    let service = thread::spawn(move || serve_one(&listener, &service_keys));

    let (mut link, terms) = link::connect(address, &client_keys, ModeChoice::Auto)?;
    println!("client: link up to {address} ({terms})"); // "rsa gcm": both offer GCM
    // Accepted so that the replies to our requests are handed to us.
    link.io().accept(SQUARE)?;

    let mut answered = 0;
    let mut batch_start = 0;
    while batch_start < REQUESTS {
        let mut waiting = Vec::new();
        for n in batch_start..batch_start + IN_FLIGHT {
            let request = link.io().open(SQUARE, &[], &n.to_le_bytes(), true)?;
            waiting.push((request.msgid, n));
        }
        while !waiting.is_empty() {
            let reply = link.next_event(|event| match event {
                Event::Message { msg, .. } if msg.header().cmd.is_reply() => {
                    Some((msg.header().msgid, msg.header().error, first_u64(msg.aux())))
                }
                _ => None,
            })?;
            let Some(reply) = reply else {
                return Err("the service closed the link early".into());
            };
            let Some((msgid, error, value)) = reply else {
                continue;
            };
            let Some(at) = waiting.iter().position(|(id, _)| *id == msgid) else {
                return Err(format!("a reply to msgid {msgid}, which is not waiting").into());
            };
            let (_, n) = waiting.swap_remove(at);
            if error != 0 || value != Some(n * n) {
                return Err(format!("{n}² came back as {value:?}, error {error}").into());
            }
            answered += 1;
        }
        batch_start += IN_FLIGHT;
    }
    // What is still queued goes out before the socket closes.
    link.flush()?;
    drop(link);

    let served = service
        .join()
        .map_err(|_| "the service thread panicked")??;
    if served != REQUESTS || answered != REQUESTS {
        return Err(format!("{answered} replies, {served} served, {REQUESTS} sent").into());
    }
    println!("client: {REQUESTS} requests answered correctly, {IN_FLIGHT} at a time");
    Ok(())
}

/// The service: one link on `listener`, every `SQUARE` request answered in one final
/// reply, until the client closes. Returns how many it answered.
fn serve_one(listener: &TcpListener, keys: &KeyDir) -> Result<u64> {
    let (socket, peer) = listener.accept()?;
    let (mut link, terms) = link::accept(socket, keys, ModeChoice::Auto)?;
    println!("service: link up from {peer} ({terms})");
    link.io().accept(SQUARE)?;
    let mut served = 0;
    loop {
        let request = link.next_event(|event| match event {
            Event::Message { msg, .. } => Some((*msg.header(), first_u64(msg.aux()))),
            _ => None,
        })?;
        match request {
            None => return Ok(served), // the client closed the link cleanly
            Some(Some((header, Some(n)))) => {
                let square = n.wrapping_mul(n);
                link.io().reply(&header, 0, &square.to_le_bytes(), true)?;
                served += 1;
            }
            Some(Some((header, None))) => {
                // Not 8 bytes: an application error code of our choosing.
                link.io().reply(&header, 0x100, &[], true)?;
            }
            Some(None) => {}
        }
    }
}

/// The first 8 bytes as a little-endian number (the seed era pads aux to 32 bytes).
fn first_u64(aux: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = aux.get(..8)?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

/// Two key directories that trust each other at 127.0.0.1: a fresh 2048-bit key pair in
/// each (`rsa.prv`, `rsa.pub`), and each one's public key in the other's `remote/`.
fn trusting_key_dirs(root: &Path) -> Result<(KeyDir, KeyDir)> {
    let (service, client) = (root.join("service"), root.join("client"));
    for dir in [&service, &client] {
        KeyDir::new(dir).init(&mut getrandom::SysRng)?;
        fs::create_dir_all(dir.join("remote"))?;
    }
    fs::copy(client.join("rsa.pub"), service.join("remote/127.0.0.1.pub"))?;
    fs::copy(service.join("rsa.pub"), client.join("remote/127.0.0.1.pub"))?;
    Ok((KeyDir::new(service), KeyDir::new(client)))
}
