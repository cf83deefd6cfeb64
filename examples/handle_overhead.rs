//! What the shareable handle costs: request/reply round trips per second over one tokio
//! link on loopback TCP, with 1, 16 and 256 requests open at once and 64 B and 4 KiB
//! payloads — through the handle (`handle.request(..).await` from as many tasks),
//! against the same exchange on the low-level `Link` (one task opening requests and
//! matching replies itself), measured alternately in the same run.
//!
//! Both sides of each run use the same server: a low-level link on a thread of its own
//! that echoes every request's data in one final reply. The links are plaintext `seed`
//! without a handshake (the exchange is what is measured, not the cipher), with tables
//! of 512 transactions. Each run times the low-level loop and then the handle; the rates
//! printed are the medians of 5 runs, the ratio the median of the runs' own ratios (so a
//! burst of other work on the machine shifts one pair, not the figure).
//!
//! Run: `cargo run --release -p h2msg-examples --example handle_overhead` (add a number
//! to scale the requests per run — `-- 0.1` for a quick look — and a second for the
//! runs: `-- 0.3 9`). It prints; it judges nothing, as timings belong in no test.

use std::error::Error;
use std::time::{Duration, Instant};

use h2msg::wire::{Cmd, MsgFlags};
use h2msg::{Config, Event, LinkSetup, Liveness};
use h2msg_std::blocking::std_iocom_sized;
use h2msg_std::tokio_driver::{self, Link};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// The echo command: number 1 of the application protocol.
const ECHO: Cmd = match Cmd::app(1) {
    Some(cmd) => cmd,
    None => Cmd::LNK_PAD,
};

/// Transactions per direction: room for 256 open requests.
const TABLE: usize = 512;
/// Runs per figure unless the second argument says otherwise.
const RUNS: usize = 5;

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;
type BenchLink = Link<TcpStream, TABLE>;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let scale: f64 = args.next().map_or(Ok(1.0), |arg| arg.parse())?;
    let runs: usize = args.next().map_or(Ok(RUNS), |arg| arg.parse())?.max(1);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    println!(
        "request/reply round trips per second, tokio, loopback TCP, one link; median of {runs} \
         runs; link = the low-level Link in one task, handle = handle.request() from as many tasks"
    );
    println!(
        "ratio = the median of the runs' handle/link ratios (each run times both in turn), \
         with the lowest and highest"
    );
    println!(
        "{:>7} {:>10} {:>9} {:>12} {:>12} {:>7} {:>9}",
        "payload", "concurrent", "requests", "link rt/s", "handle rt/s", "ratio", "overhead"
    );
    for payload in [64usize, 4096] {
        for concurrent in [1usize, 16, 256] {
            let base = match concurrent {
                1 => 20_000.0,
                16 => 100_000.0,
                _ => 200_000.0,
            };
            #[allow(
                clippy::cast_possible_truncation,
                reason = "a positive count far below usize::MAX; saturating as casts are"
            )]
            let requests = ((base * scale) as usize).max(concurrent);
            let mut link_rates = Vec::new();
            let mut handle_rates = Vec::new();
            let mut ratios = Vec::new();
            for _ in 0..runs {
                let elapsed = runtime.block_on(low_level(payload, concurrent, requests))?;
                let link = requests as f64 / elapsed.as_secs_f64();
                let elapsed = runtime.block_on(through_handle(payload, concurrent, requests))?;
                let handle = requests as f64 / elapsed.as_secs_f64();
                link_rates.push(link);
                handle_rates.push(handle);
                ratios.push(handle / link);
            }
            let (link, handle) = (median(&mut link_rates), median(&mut handle_rates));
            let ratio = median(&mut ratios);
            let (low, high) = (
                ratios.first().copied().unwrap_or(0.0),
                ratios.last().copied().unwrap_or(0.0),
            );
            println!(
                "{:>6}B {:>10} {:>9} {:>12.0} {:>12.0} {:>7.3} {:>8.1}%  ({low:.2}–{high:.2})",
                payload,
                concurrent,
                requests,
                link,
                handle,
                ratio,
                (1.0 / ratio - 1.0) * 100.0
            );
        }
    }
    Ok(())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// A connected pair over loopback TCP (Nagle off), the server end's link echoing on a
/// thread of its own; returns our end's link.
async fn connected() -> Result<(BenchLink, std::thread::JoinHandle<Result<()>>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let ours = TcpStream::connect(listener.local_addr()?).await?;
    let (theirs, _) = listener.accept().await?;
    for stream in [&ours, &theirs] {
        stream.set_nodelay(true)?;
    }
    let theirs = theirs.into_std()?;
    let server = std::thread::spawn(move || -> Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async move {
            let stream = TcpStream::from_std(theirs)?;
            echo(link(stream, true)?).await
        })
    });
    Ok((link(ours, false)?, server))
}

/// A plaintext link over `stream`, no timers (nothing here is idle).
fn link(stream: TcpStream, serving: bool) -> Result<BenchLink> {
    let config = Config {
        liveness: Liveness::OFF,
        ..Config::default()
    };
    let mut io = std_iocom_sized::<TABLE>(LinkSetup::plaintext(), 0, config)?;
    if serving {
        io.accept(ECHO)?;
    }
    Ok(Link::new(stream, io))
}

/// The server: every request's data back in one final reply, until the link ends.
async fn echo(mut link: BenchLink) -> Result<()> {
    let mut data = Vec::new();
    loop {
        let request = link
            .next_event(|event| match event {
                Event::Message { msg, .. } if !msg.header().cmd.is_reply() => {
                    data.clear();
                    data.extend_from_slice(msg.aux());
                    Some(*msg.header())
                }
                _ => None,
            })
            .await?;
        match request {
            None => return Ok(()),
            Some(Some(header)) => loop {
                match link.io().reply(&header, 0, &data, true) {
                    Ok(_) => break,
                    // Room comes as the queue drains.
                    Err(h2msg::SendError::Tx(h2msg::ioq::TxError::QueueFull { .. })) => {
                        link.flush().await?;
                    }
                    Err(e) => return Err(e.into()),
                }
            },
            Some(None) => {}
        }
    }
}

/// `requests` round trips, `concurrent` open at once, on the low-level link: one task
/// opens requests and matches each final reply to its request by msgid.
async fn low_level(payload: usize, concurrent: usize, requests: usize) -> Result<Duration> {
    let (mut link, server) = connected().await?;
    link.io().accept(ECHO)?;
    let data = vec![0x5Au8; payload];
    let start = Instant::now();
    let mut sent = 0;
    let mut answered = 0;
    while sent < concurrent.min(requests) {
        open(&mut link, &data).await?;
        sent += 1;
    }
    while answered < requests {
        let reply = link
            .next_event(|event| match event {
                Event::Message { msg, .. }
                    if msg.header().cmd.is_reply()
                        && msg.header().cmd.flags().contains(MsgFlags::DELETE) =>
                {
                    Some(msg.aux().len() == payload && msg.header().error == 0)
                }
                _ => None,
            })
            .await?
            .ok_or("the server closed the link")?;
        match reply {
            Some(true) => answered += 1,
            Some(false) => return Err("a reply differs".into()),
            None => continue,
        }
        if sent < requests {
            open(&mut link, &data).await?;
            sent += 1;
        }
    }
    let elapsed = start.elapsed();
    link.flush().await?;
    drop(link);
    server.join().map_err(|_| "the server panicked")??;
    Ok(elapsed)
}

/// Opens one ECHO request, writing first while the transmit queue is full.
async fn open(link: &mut BenchLink, data: &[u8]) -> Result<()> {
    loop {
        match link.io().open(ECHO, &[], data, true) {
            Ok(_) => return Ok(()),
            Err(h2msg::SendError::Tx(h2msg::ioq::TxError::QueueFull { .. })) => {
                link.flush().await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// `requests` round trips through the handle: `concurrent` tasks, each awaiting one
/// request after another.
async fn through_handle(payload: usize, concurrent: usize, requests: usize) -> Result<Duration> {
    let (link, server) = connected().await?;
    let (handle, _incoming, driver) = tokio_driver::into_handle(link);
    let driving = tokio::spawn(driver.run());
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for task in 0..concurrent {
        let handle = handle.clone();
        let mine = requests / concurrent + usize::from(task < requests % concurrent);
        tasks.spawn(async move {
            for _ in 0..mine {
                let reply = handle.request(ECHO, vec![0x5Au8; payload]).await?;
                if reply.data().len() != payload || reply.error() != 0 {
                    return Err::<(), Box<dyn Error + Send + Sync>>("a reply differs".into());
                }
            }
            Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let elapsed = start.elapsed();
    handle.close().await?;
    driving.await??;
    server.join().map_err(|_| "the server panicked")??;
    Ok(elapsed)
}
