//! `h2msg demo`: the whole protocol on loopback with throwaway keys — no root, no `/etc`.
//! A node and a client each get a fresh 2048-bit key pair in a temporary directory and
//! trust each other (`remote/127.0.0.1.pub`); the node serves on an ephemeral port; the
//! client runs the RSA handshake, a shell `help`, 1000 pings and a 64 KiB aux transfer.
//! `--proto dmsg` does the same in DMSG (dmsg.md): the node serves its link as `h2msg
//! service --proto dmsg` does, and the client opens its `LNK_CONN`, asks the shell as the
//! DMSG shell client does and sends one-way pings, each answered by a one-way reply.

use std::fs;
use std::io;
use std::thread;
use std::time::{Duration, Instant};

use h2msg::wire::{Cmd, MsgHeader};
use h2msg::{Liveness, ModeChoice, StreamMode};

use crate::client::{
    DEFAULT_REPLY_TIMEOUT, connect, dmsg_shell_text, ping_answer, shell_exchange,
    wait_dmsg_ping_reply,
};
use crate::keys::KeyDir;
use crate::link::{HANDSHAKE_TIMEOUT, open_dmsg_link};
use crate::other;
use crate::proto::Proto;
use crate::service::{LinkRegistry, router_conn, serve, serve_one_dmsg};
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

/// A ping reply from h2msg carries error 0; anything else is a failed demo. (The error
/// field is 16 bits in the seed header, 32 in DMSG's.)
fn expect_answer(error: u32) -> io::Result<()> {
    match error {
        0 => Ok(()),
        e => Err(other(format!("a ping was answered with error {e:#x}"))),
    }
}

/// Runs the demo in the seed protocol and returns its figures.
///
/// # Errors
/// Any failure, as an I/O error with a message.
pub fn run_demo(pings: u32) -> io::Result<DemoReport> {
    run_demo_as(pings, Proto::Seed)
}

/// Runs the demo in protocol revision `proto` and returns its figures.
///
/// # Errors
/// Any failure, as an I/O error with a message.
pub fn run_demo_as(pings: u32, proto: Proto) -> io::Result<DemoReport> {
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
    if proto == Proto::Dmsg {
        let server = thread::spawn(move || -> Result<(), String> {
            let stream = listener.accept().map_err(|e| e.to_string())?;
            serve_one_dmsg(
                stream,
                &node,
                HANDSHAKE_TIMEOUT,
                ModeChoice::Auto,
                Liveness::default(),
            )
            .map_err(|e| e.to_string())
        });
        let report = dmsg_client(&endpoint, &client, pings);
        // The link is closed by now (an error dropped it too): the node's serving returns.
        let served = server
            .join()
            .map_err(|_| other("the service thread panicked"))?;
        let report = report?;
        served.map_err(other)?;
        return Ok(report);
    }
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
        expect_answer(ping_answer(&mut link, msgid)?.into())?;
        times.push(sent.elapsed());
    }
    let ping = min_avg_max(&times);

    // One 64 KiB aux message (a ping carrying data: the node answers it without aux).
    let aux = vec![0xA5u8; 65536];
    let mut big = MsgHeader::new(Cmd::LNK_PING);
    big.msgid = pings + 1;
    let sent = Instant::now();
    link.io().send(big, &[], &aux).map_err(other)?;
    expect_answer(ping_answer(&mut link, pings + 1)?.into())?;
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
        ping,
        pings,
        aux_64k,
    })
}

/// Min, average and max of `times` (zeros for none).
fn min_avg_max(times: &[Duration]) -> (Duration, Duration, Duration) {
    let min = times.iter().min().copied().unwrap_or_default();
    let max = times.iter().max().copied().unwrap_or_default();
    let count = u32::try_from(times.len()).unwrap_or(u32::MAX).max(1);
    (min, times.iter().sum::<Duration>() / count, max)
}

/// The DMSG client's side of the demo against the node at `endpoint`: the link as
/// `h2msg ping --proto dmsg` sets it up (RSA, `auto`) with its `LNK_CONN`, the shell's
/// first prompt and `help`, `pings` one-way `LNK_PING`s one at a time, then one carrying
/// 64 KiB of aux (the connection answers it with a header-only reply). The link is
/// closed on return.
fn dmsg_client(endpoint: &Endpoint, keys: &KeyDir, pings: u32) -> io::Result<DemoReport> {
    let start = Instant::now();
    let stream = endpoint.connect_within(HANDSHAKE_TIMEOUT)?;
    let (mut link, terms) = open_dmsg_link(
        stream,
        keys,
        HANDSHAKE_TIMEOUT,
        ModeChoice::Auto,
        Liveness::OFF,
    )
    .map_err(|e| other(format!("{endpoint}: {e}")))?;
    let handshake = start.elapsed();
    link.io()
        .open(Cmd::DMSG_LNK_CONN, None, router_conn().as_ext(), &[])
        .map_err(other)?;

    // The shell: an empty line for the first prompt, then `help`.
    let mut text = Vec::new();
    dmsg_shell_text(&mut link, None, &mut text, DEFAULT_REPLY_TIMEOUT)?;
    text.clear();
    dmsg_shell_text(&mut link, Some("help"), &mut text, DEFAULT_REPLY_TIMEOUT)?;
    let help = String::from_utf8_lossy(&text).into_owned();

    // One-way pings, one at a time: with one outstanding, the next reply is its answer.
    let mut times = Vec::with_capacity(pings as usize);
    for _ in 0..pings {
        let sent = Instant::now();
        link.io()
            .send_one_way(Cmd::LNK_PING, &[], &[])
            .map_err(other)?;
        expect_answer(wait_dmsg_ping_reply(&mut link, endpoint)?)?;
        times.push(sent.elapsed());
    }

    let aux = vec![0xA5u8; 65536];
    let sent = Instant::now();
    link.io()
        .send_one_way(Cmd::LNK_PING, &[], &aux)
        .map_err(other)?;
    expect_answer(wait_dmsg_ping_reply(&mut link, endpoint)?)?;
    let aux_64k = sent.elapsed();

    Ok(DemoReport {
        address: endpoint.to_string(),
        handshake,
        mode: terms.mode,
        help,
        ping: min_avg_max(&times),
        pings,
        aux_64k,
    })
}
