//! Throughput of one large transfer against a raw TCP copy of the same bytes, measured in
//! the same run over loopback: 64 MiB through one transaction (h2msg's `transfer::send`
//! and a `Reassembler` on the other end) in each stream mode, next to 64 MiB written to a
//! plain socket and read on the other end. Prints the times and the ratio (raw time ÷
//! transfer time: 1.0 would be as fast as a bare socket). A measurement, not a test: it
//! asserts nothing about time, only that every byte arrived.
//!
//! Run it optimised: `cargo run --release -p h2msg-examples --example transfer_bench`
//! (`-- 16` for 16 MiB instead of 64, `-- 64 5` for five rounds, `-- 64 5 seed` for
//! the seed mode only, `-- 64 5 seed tokio` for its tokio row only). Each round times the
//! raw copy and then each mode; it prints each series' median, minimum and maximum and
//! the median of the rounds' ratios. The byte comparisons are made outside the timed
//! parts. Each mode is measured with the blocking driver (a reader and a writer thread
//! per link) and with the tokio one (each end on a single-threaded runtime: two threads
//! in all, as the raw copy).

use std::error::Error;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use h2msg::ModeChoice;
use h2msg::drive::reply_error;
use h2msg::transfer::{Reassembler, Sender};
use h2msg::wire::Cmd;
use h2msg_std::keys::KeyDir;
use h2msg_std::transfer::Inbox;
use h2msg_std::{link, tokio_driver, transfer};

const STORE: Cmd = match Cmd::app(3) {
    Some(cmd) => cmd,
    None => Cmd::LNK_PAD,
};

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

/// The stream modes measured, with the names printed.
const MODES: [(&str, ModeChoice); 3] = [
    ("seed", ModeChoice::Seed),
    ("cbc", ModeChoice::Cbc),
    ("gcm", ModeChoice::Gcm),
];

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let mib: usize = args.next().map_or(Ok(64), |a| a.parse())?;
    let rounds: usize = args.next().map_or(Ok(1), |a| a.parse())?.max(1);
    // A third argument names the only mode to run (`seed`, `cbc` or `gcm`), a fourth the
    // only driver (`blocking` or `tokio`), e.g. to profile one.
    let only = args.next();
    let drivers: Vec<usize> = match args.next().as_deref() {
        None => vec![0, 1],
        Some("blocking") => vec![0],
        Some("tokio") => vec![1],
        Some(_) => return Err("the fourth argument names a driver: blocking or tokio".into()),
    };
    let modes: Vec<(&str, ModeChoice)> = MODES
        .into_iter()
        .filter(|(name, _)| only.as_deref().is_none_or(|only| only == *name))
        .collect();
    if modes.is_empty() {
        return Err("the third argument names a mode: seed, cbc or gcm".into());
    }
    let size = mib << 20;
    let payload: Vec<u8> = (0..size)
        .map(|i| u8::try_from(i % 251).unwrap_or_default())
        .collect();
    let dir = tempfile::tempdir()?;
    let (service_keys, client_keys) = trusting_key_dirs(dir.path())?;

    // Each round times the raw copy and then every mode, so that a ratio compares runs
    // made under the same load.
    let mut raw = Vec::new();
    let mut transfers: Vec<Vec<Duration>> = vec![Vec::new(); 2 * modes.len()];
    for _ in 0..rounds {
        raw.push(raw_copy(&payload)?);
        for (pair, &(_, mode)) in transfers.chunks_mut(2).zip(&modes) {
            for (driver, times) in pair.iter_mut().enumerate() {
                if !drivers.contains(&driver) {
                    continue;
                }
                times.push(if driver == 0 {
                    one_transfer(&payload, mode, &service_keys, &client_keys)?
                } else {
                    one_transfer_tokio(&payload, mode, &service_keys, &client_keys)?
                });
            }
        }
    }

    println!("{mib} MiB over loopback, {rounds} rounds: median (min–max)");
    println!("raw TCP copy               {}", summary(size, &raw));
    let names = modes
        .iter()
        .flat_map(|(name, _)| [format!("{name}, blocking"), format!("{name}, tokio")]);
    for (name, times) in names.zip(&transfers).filter(|(_, times)| !times.is_empty()) {
        let mut ratios: Vec<f64> = raw
            .iter()
            .zip(times)
            .map(|(raw, took)| raw.as_secs_f64() / took.as_secs_f64())
            .collect();
        ratios.sort_by(f64::total_cmp);
        println!(
            "transfer, {name:<14}  {}  {:.2}x raw (median of the rounds' ratios)",
            summary(size, times),
            median(&ratios)
        );
    }
    Ok(())
}

/// A series of times as its median, minimum and maximum, and the median's throughput.
fn summary(bytes: usize, times: &[Duration]) -> String {
    let mut sorted = times.to_vec();
    sorted.sort();
    let middle = median(&sorted);
    let (first, last) = (sorted.first(), sorted.last());
    format!(
        "{:>8.1} ms ({:.1}–{:.1})  {:>7.0} MiB/s",
        ms(middle),
        first.map_or(0.0, |d| ms(*d)),
        last.map_or(0.0, |d| ms(*d)),
        mib_s(bytes, middle)
    )
}

/// The middle element of a sorted series (the upper one of an even count).
fn median<T: Copy + Default>(sorted: &[T]) -> T {
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn mib_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / d.as_secs_f64()
}

/// The baseline: `payload` written to a plain loopback socket and read whole on the
/// other end, timed from the first write to the reader's one-byte acknowledgement.
fn raw_copy(payload: &[u8]) -> Result<Duration> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    let len = payload.len();
    let reader = thread::spawn(move || -> Result<Vec<u8>> {
        let (mut socket, _) = listener.accept()?;
        socket.set_nodelay(true)?;
        let mut data = vec![0u8; len];
        socket.read_exact(&mut data)?;
        socket.write_all(&[1])?;
        Ok(data)
    });
    let mut socket = TcpStream::connect(address)?;
    socket.set_nodelay(true)?;
    let start = Instant::now();
    socket.write_all(payload)?;
    let mut ack = [0u8];
    socket.read_exact(&mut ack)?;
    let took = start.elapsed();
    let data = reader.join().map_err(|_| "the reader panicked")??;
    if data != payload {
        return Err("the raw copy arrived changed".into());
    }
    Ok(took)
}

/// One transfer of `payload` in `mode`: timed from the first part queued to the
/// receiver's acknowledgement that it has the whole transfer (a reply); the receiver
/// compares the bytes after that, and a difference fails the run.
fn one_transfer(
    payload: &[u8],
    mode: ModeChoice,
    service_keys: &KeyDir,
    client_keys: &KeyDir,
) -> Result<Duration> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    let expected = payload.to_vec();
    let keys = service_keys.clone();
    let service = thread::spawn(move || -> Result<()> {
        let (socket, _) = listener.accept()?;
        let (mut link, _) = link::accept(socket, &keys, mode)?;
        link.io().accept(STORE)?;
        let mut inbox = Inbox::with_reassembler(STORE, Reassembler::with_limits(expected.len(), 1));
        let got = match transfer::receive(&mut link, &mut inbox, |_| {})? {
            Some(Ok(got)) => got,
            Some(Err(failure)) => return Err(failure.error.to_string().into()),
            None => return Err("closed early".into()),
        };
        // The acknowledgement ends the timed part; the bytes are compared after it.
        link.io().reply(&got.reply_to(), 0, &[], true)?;
        link.flush()?;
        while link.next_event(|_| ())?.is_some() {}
        if got.data == expected {
            Ok(())
        } else {
            Err("the transfer arrived changed".into())
        }
    });
    let (mut link, _) = link::connect(address, client_keys, mode)?;
    link.io().accept(STORE)?;
    let start = Instant::now();
    let mut sender = Sender::request(STORE, payload);
    // The service sends nothing while it receives.
    transfer::send(&mut link, &mut sender, &mut Inbox::new(STORE), |_| {})?;
    let msgid = sender.msgid().ok_or("opened")?;
    let error = loop {
        match link.next_event(|event| reply_error(&event, msgid))? {
            Some(Some(error)) => break error,
            Some(None) => {}
            None => return Err("the service closed the link before it answered".into()),
        }
    };
    let took = start.elapsed();
    drop(link);
    service.join().map_err(|_| "the service panicked")??;
    if error != 0 {
        return Err(format!("the receiver answered {error:#x}").into());
    }
    Ok(took)
}

/// [`one_transfer`] over the tokio driver: each end on its own single-threaded runtime.
fn one_transfer_tokio(
    payload: &[u8],
    mode: ModeChoice,
    service_keys: &KeyDir,
    client_keys: &KeyDir,
) -> Result<Duration> {
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    let listener = TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let address = listener.local_addr()?;
    let expected = payload.to_vec();
    let keys = service_keys.clone();
    let service_runtime = runtime()?;
    let service = thread::spawn(move || -> Result<()> {
        service_runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            let (socket, _) = listener.accept().await?;
            let (mut link, _) = tokio_driver::accept(socket, &keys, mode).await?;
            link.io().accept(STORE)?;
            let reassembler = Reassembler::with_limits(expected.len(), 1);
            let mut inbox = Inbox::with_reassembler(STORE, reassembler);
            let got = match transfer::receive_async(&mut link, &mut inbox, |_| {}).await? {
                Some(Ok(got)) => got,
                Some(Err(failure)) => return Err(failure.error.to_string().into()),
                None => return Err("closed early".into()),
            };
            link.io().reply(&got.reply_to(), 0, &[], true)?;
            link.flush().await?;
            while link.next_event(|_| ()).await?.is_some() {}
            if got.data == expected {
                Ok(())
            } else {
                Err("the transfer arrived changed".into())
            }
        })
    });
    let error = runtime()?.block_on(async {
        let (mut link, _) = tokio_driver::connect(address, client_keys, mode).await?;
        link.io().accept(STORE)?;
        let start = Instant::now();
        let mut sender = Sender::request(STORE, payload);
        let mut inbox = Inbox::new(STORE);
        transfer::send_async(&mut link, &mut sender, &mut inbox, |_| {}).await?;
        let msgid = sender.msgid().ok_or("opened")?;
        loop {
            match link.next_event(|event| reply_error(&event, msgid)).await? {
                Some(Some(error)) => {
                    break Ok::<_, Box<dyn Error + Send + Sync>>((error, start.elapsed()));
                }
                Some(None) => {}
                None => return Err("the service closed the link before it answered".into()),
            }
        }
    });
    let (error, took) = error?;
    service.join().map_err(|_| "the service panicked")??;
    if error != 0 {
        return Err(format!("the receiver answered {error:#x}").into());
    }
    Ok(took)
}

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
