//! `h2msg demo`: the whole protocol on loopback with throwaway keys — no root, no `/etc`.
//! A node and a client each get a fresh 2048-bit key pair in a temporary directory and
//! trust each other (`remote/127.0.0.1.pub`); the node serves on an ephemeral port; the
//! client runs the RSA handshake, a shell `help`, 1000 pings and a 64 KiB aux transfer.

use std::fs;
use std::io;
use std::thread;
use std::time::{Duration, Instant};

use h2msg::wire::{Cmd, MsgHeader};
use h2msg::{Liveness, ModeChoice, StreamMode};

use crate::client::{connect, shell_exchange};
use crate::keys::KeyDir;
use crate::link::HANDSHAKE_TIMEOUT;
use crate::other;
use crate::service::{LinkRegistry, serve};
use crate::transport::Endpoint;

/// What the demo measured.
#[derive(Debug)]
pub struct DemoReport {
    /// The service's address.
    pub address: String,
    /// Connect plus RSA handshake.
    pub handshake: Duration,
    /// The stream mode the two ends agreed on.
    pub mode: StreamMode,
    /// The shell's answer to `help`.
    pub help: String,
    /// Ping round trips: min, average, max.
    pub ping: (Duration, Duration, Duration),
    /// Pings answered.
    pub pings: u32,
    /// Time for one 64 KiB aux message to be sent and answered.
    pub aux_64k: Duration,
}

/// A ping reply from h2msg carries error 0; anything else is a failed demo.
fn expect_answer(error: u16) -> io::Result<()> {
    match error {
        0 => Ok(()),
        e => Err(other(format!("a ping was answered with error {e:#x}"))),
    }
}

/// Runs the demo and returns its figures.
///
/// # Errors
/// Any failure, as an I/O error with a message.
pub fn run_demo(pings: u32) -> io::Result<DemoReport> {
    let dir = tempfile::tempdir()?;
    let node = KeyDir::new(dir.path().join("node"));
    let client = KeyDir::new(dir.path().join("client"));
    for (me, other_side) in [(&node, &client), (&client, &node)] {
        me.init(&mut getrandom::SysRng).map_err(other)?;
        fs::create_dir_all(other_side.path().join("remote"))?;
        fs::copy(
            me.public_key_path(),
            other_side.path().join("remote/127.0.0.1.pub"),
        )?;
    }

    let listener = Endpoint::Tcp("127.0.0.1:0".into()).bind()?;
    let endpoint = listener.local_endpoint()?;
    let address = endpoint.to_string();
    let server = thread::spawn(move || -> Result<(), String> {
        let stream = listener.accept().map_err(|e| e.to_string())?;
        let slot = LinkRegistry::new(1, 1)
            .admit(&stream)
            .map_err(|e| format!("the demo's one link was refused: {e}"))?;
        serve(
            stream,
            &node,
            &slot,
            HANDSHAKE_TIMEOUT,
            ModeChoice::Auto,
            Liveness::default(),
        )
        .map_err(|e| e.to_string())
    });

    let start = Instant::now();
    let (mut link, terms) = connect(&endpoint, &client, ModeChoice::Auto)?;
    let handshake = start.elapsed();

    // The shell: a prompt request, then `help`.
    let mut text = Vec::new();
    shell_exchange(&mut link, "", &mut text, false)?;
    shell_exchange(&mut link, "help", &mut text, false)?;
    let help = String::from_utf8_lossy(&text).into_owned();

    // Pings, one at a time, each waiting for its reply.
    let mut times = Vec::with_capacity(pings as usize);
    for msgid in 1..=pings {
        let mut ping = MsgHeader::new(Cmd::LNK_PING);
        ping.msgid = msgid;
        let sent = Instant::now();
        link.io().send(ping, &[], &[]).map_err(other)?;
        expect_answer(link.wait_for_reply(msgid)?)?;
        times.push(sent.elapsed());
    }
    let min = times.iter().min().copied().unwrap_or_default();
    let max = times.iter().max().copied().unwrap_or_default();
    let avg = times.iter().sum::<Duration>() / pings.max(1);

    // One 64 KiB aux message (a ping carrying data: the node answers it without aux).
    let aux = vec![0xA5u8; 65536];
    let mut big = MsgHeader::new(Cmd::LNK_PING);
    big.msgid = pings + 1;
    let sent = Instant::now();
    link.io().send(big, &[], &aux).map_err(other)?;
    expect_answer(link.wait_for_reply(pings + 1)?)?;
    let aux_64k = sent.elapsed();

    drop(link); // closes the connection: the node's serve() returns
    server
        .join()
        .map_err(|_| other("the service thread panicked"))?
        .map_err(other)?;
    Ok(DemoReport {
        address,
        handshake,
        mode: terms.mode,
        help,
        ping: (min, avg, max),
        pings,
        aux_64k,
    })
}
