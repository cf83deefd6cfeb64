//! A tokio server and client in this process over loopback TCP, authenticated with RSA
//! keys made for the occasion, the client keeping 100 transactions open at once through
//! one shareable handle.
//!
//! 1. two key directories in the 2012 layout (docs/protocol.md §2.2): each side's key
//!    pair, and the other's public key as `remote/127.0.0.1.pub`;
//! 2. the server: `tokio_driver::accept` on the incoming socket, the link turned into a
//!    handle (`into_handle`), and every request from its `Incoming` stream answered by
//!    its own task through its responder;
//! 3. the client: `tokio_driver::connect`, the link turned into a handle, 100 tasks each
//!    sending one request with `handle.request(..).await` — all 100 open at once, on a
//!    link whose tables hold 128 — each reply checked against the same computation done
//!    here;
//! 4. the client closes the handle (what was queued is written first); the server's link
//!    ends cleanly and it reports how many requests it answered.
//!
//! Run: `cargo run -p h2msg-examples --example tokio_request_reply`. Exits non-zero if
//! anything differs.

use std::error::Error;
use std::fs;
use std::path::Path;

use h2msg::ModeChoice;
use h2msg::wire::Cmd;
use h2msg_std::handle::Incoming;
use h2msg_std::keys::KeyDir;
use h2msg_std::link::LinkOptions;
use h2msg_std::tokio_driver;
use tokio::task::JoinSet;

/// "Square this number": number 2 of the application protocol (nibble 0xF, §4.1). The
/// request's data is the number as 8 little-endian bytes, the reply's its square.
const SQUARE: Cmd = match Cmd::app(2) {
    Some(cmd) => cmd,
    None => Cmd::LNK_PAD, // never: 2 fits the 12-bit number
};

/// Transactions the client keeps open at once.
const CONCURRENT: u64 = 100;

/// Transactions each direction of the links may hold open: room for all 100 (the
/// default, 64, would make the rest wait for a free one — correct, but not "100 open").
const TABLE: usize = 128;

/// The application's error code for a request that is not 8 bytes.
const BAD_REQUEST: u16 = 0x100;

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (server_keys, client_keys) = trusting_key_dirs(dir.path())?;
    let options = LinkOptions::new(ModeChoice::Auto).transactions::<TABLE>();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let server = tokio::spawn(async move {
        let (socket, peer) = listener.accept().await?;
        let (mut link, terms) = tokio_driver::accept(socket, &server_keys, options).await?;
        println!("server: link up from {peer} ({terms})");
        link.io().accept(SQUARE)?; // so that SQUARE requests come to `incoming`
        let (handle, incoming, driver) = tokio_driver::into_handle(link);
        drop(handle); // the server only answers: `incoming` keeps the link open
        let serving = tokio::spawn(serve(incoming));
        driver.run().await?; // until the client closes the link
        serving.await?
    });

    let (link, terms) = tokio_driver::connect(address, &client_keys, options).await?;
    println!("client: link up to {address} ({terms})"); // "rsa gcm": both offer GCM
    let (handle, _incoming, driver) = tokio_driver::into_handle(link);
    let driving = tokio::spawn(driver.run());

    let mut requests = JoinSet::new();
    for i in 0..CONCURRENT {
        let handle = handle.clone();
        requests.spawn(async move {
            let n = 0x1_0000_0001 * i + 3;
            let reply = handle.request(SQUARE, n.to_le_bytes().to_vec()).await;
            (n, reply)
        });
    }
    let mut answered = 0;
    while let Some(done) = requests.join_next().await {
        let (n, reply) = done?;
        let reply = reply?;
        let square = first_u64(reply.data());
        if reply.error() != 0 || square != Some(n.wrapping_mul(n)) {
            let error = reply.error();
            return Err(format!("{n}² came back as {square:?}, error {error:#x}").into());
        }
        answered += 1;
    }
    handle.close().await?;
    driving.await??;

    let served = server.await??;
    if served != CONCURRENT || answered != CONCURRENT {
        return Err(format!("{answered} replies, {served} served, {CONCURRENT} sent").into());
    }
    println!("client: {CONCURRENT} concurrent requests answered correctly");
    Ok(())
}

/// Answers every request of `incoming`, each in a task of its own, until the link ends.
/// Returns how many it answered.
async fn serve(mut incoming: Incoming) -> Result<u64> {
    let mut answers = JoinSet::new();
    while let Some(request) = incoming.next().await {
        answers.spawn(async move {
            match first_u64(request.data()) {
                Some(n) => {
                    request
                        .reply(0, n.wrapping_mul(n).to_le_bytes().to_vec())
                        .await
                }
                None => request.reply(BAD_REQUEST, Vec::new()).await,
            }
        });
    }
    let mut served = 0;
    while let Some(answered) = answers.join_next().await {
        answered??;
        served += 1;
    }
    Ok(served)
}

/// The first 8 bytes as a little-endian number (the seed era pads data to 32 bytes).
fn first_u64(data: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = data.get(..8)?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

/// Two key directories that trust each other at 127.0.0.1: a fresh 2048-bit key pair in
/// each (`rsa.prv`, `rsa.pub`), and each one's public key in the other's `remote/`.
fn trusting_key_dirs(root: &Path) -> Result<(KeyDir, KeyDir)> {
    let (server, client) = (root.join("server"), root.join("client"));
    for dir in [&server, &client] {
        KeyDir::new(dir).init(&mut getrandom::SysRng)?;
        fs::create_dir_all(dir.join("remote"))?;
    }
    fs::copy(client.join("rsa.pub"), server.join("remote/127.0.0.1.pub"))?;
    fs::copy(server.join("rsa.pub"), client.join("remote/127.0.0.1.pub"))?;
    Ok((KeyDir::new(server), KeyDir::new(client)))
}
