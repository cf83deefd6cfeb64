//! 1 MiB each way as one transaction each, over loopback TCP with RSA keys made for the
//! occasion: the client uploads 1 MiB, the service answers with 1 MiB computed from it,
//! and both sides check every byte.
//!
//! 1. two key directories that trust each other (as in `blocking_client`);
//! 2. the client sends its payload with `transfer::send`: an 8-byte length announcement,
//!    then 16 parts of 64 KiB (docs/protocol.md §3.5), waiting for room in the transmit
//!    queue as it goes (and taking what arrives meanwhile into its `Inbox`);
//! 3. the service takes it whole with `transfer::receive` (an `Inbox`: a `Reassembler`,
//!    up to 16 MiB), checks it, and answers with a transfer of its own on the same
//!    transaction;
//! 4. the client reassembles the answer and checks it byte for byte.
//!
//! Run: `cargo run -p h2msg-examples --example large_transfer`. Exits non-zero if
//! anything differs.

use std::error::Error;
use std::fs;
use std::net::TcpListener;
use std::path::Path;
use std::thread;

use h2msg::ModeChoice;
use h2msg::transfer::Sender;
use h2msg::wire::Cmd;
use h2msg_std::keys::KeyDir;
use h2msg_std::transfer::{Inbox, Incoming};
use h2msg_std::{link, transfer};

/// "Store this blob and send back its transform": number 3 of the application protocol
/// (nibble 0xF, §4.1). The request and the answer are transfers.
const STORE: Cmd = match Cmd::app(3) {
    Some(cmd) => cmd,
    None => Cmd::LNK_PAD, // never: 3 fits the 12-bit number
};

/// Bytes each way.
const SIZE: usize = 1 << 20;

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

/// The client's payload: every byte depends on its position, so a lost, repeated or
/// shifted part shows.
fn upload() -> Vec<u8> {
    (0..SIZE)
        .map(|i| low_byte(i % 251) ^ low_byte(i >> 16))
        .collect()
}

/// The low 8 bits of `n`.
fn low_byte(n: usize) -> u8 {
    u8::try_from(n & 0xFF).unwrap_or_default()
}

/// The service's answer to `data`: each byte complemented, in reverse order.
fn transform(data: &[u8]) -> Vec<u8> {
    data.iter().rev().map(|b| !b).collect()
}

fn main() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (service_keys, client_keys) = trusting_key_dirs(dir.path())?;

    let listener = TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    let service = thread::spawn(move || serve_one(&listener, &service_keys));

    let (mut link, terms) = link::connect(address, &client_keys, ModeChoice::Auto)?;
    println!("client: link up to {address} ({terms})");
    link.io().accept(STORE)?; // so that the answer reaches us

    let payload = upload();
    let mut sender = Sender::request(STORE, &payload);
    let mut inbox = Inbox::new(STORE); // up to 16 MiB per transfer
    // A transfer that ends while we send is handed over here (this service answers only
    // after the whole upload, so none does).
    let mut early = None;
    transfer::send(&mut link, &mut sender, &mut inbox, |incoming| {
        if let Incoming::Transfer(outcome) = incoming {
            early = Some(outcome);
        }
    })?;
    let msgid = sender.msgid().ok_or("the announcement was queued")?;
    println!("client: {SIZE} bytes queued as transaction {msgid}");

    let answer = match early {
        Some(outcome) => Some(outcome),
        None => transfer::receive(&mut link, &mut inbox, |_| {})?,
    };
    let answer = match answer {
        Some(Ok(answer)) => answer,
        Some(Err(failure)) => return Err(format!("the answer failed: {}", failure.error).into()),
        None => return Err("the service closed the link before answering".into()),
    };
    if answer.key.msgid != msgid {
        return Err(format!("an answer on transaction {}, not {msgid}", answer.key.msgid).into());
    }
    if answer.data != transform(&payload) {
        return Err(format!(
            "the answer's {} bytes differ from the expected",
            answer.data.len()
        )
        .into());
    }
    link.flush()?;
    drop(link);

    let received = service
        .join()
        .map_err(|_| "the service thread panicked")??;
    if received != SIZE {
        return Err(format!("the service took {received} bytes, not {SIZE}").into());
    }
    println!("client: {SIZE} bytes each way, every byte checked");
    Ok(())
}

/// The service: one link on `listener`, one upload taken whole, checked and answered
/// with its transform. Returns how many bytes it took.
fn serve_one(listener: &TcpListener, keys: &KeyDir) -> Result<usize> {
    let (socket, peer) = listener.accept()?;
    let (mut link, terms) = link::accept(socket, keys, ModeChoice::Auto)?;
    println!("service: link up from {peer} ({terms})");
    link.io().accept(STORE)?;
    let mut inbox = Inbox::new(STORE); // up to 16 MiB per transfer
    let upload_received = match transfer::receive(&mut link, &mut inbox, |_| {})? {
        Some(Ok(upload_received)) => upload_received,
        Some(Err(failure)) => return Err(format!("the upload failed: {}", failure.error).into()),
        None => return Err("the client closed the link before uploading".into()),
    };
    if upload_received.data != upload() {
        return Err("the upload's bytes differ from what the client sent".into());
    }
    let answer = transform(&upload_received.data);
    let mut sender = Sender::reply(&upload_received.reply_to(), &answer);
    // The client sends nothing more: whatever else arrives is not ours to take.
    transfer::send(&mut link, &mut sender, &mut inbox, |_| {})?;
    link.flush()?;
    println!(
        "service: {} bytes taken and answered",
        upload_received.data.len()
    );
    // Wait for the client to close the link, so that the answer is read before we go.
    while link.next_event(|_| ())?.is_some() {}
    Ok(upload_received.data.len())
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
