//! `h2msg bench`: how fast messages cross loopback TCP through the blocking driver, next
//! to a plain TCP copy of the same number of bytes measured in the same run; and how much
//! memory a service holds for many idle links.
//!
//! The sender queues messages until its transmit ring is full and then writes them all
//! with one vectored write, which is what makes small messages cheap; the receiver takes
//! them one event at a time, as an application would. The messages are one-way
//! `DBG_SHELL` commands (no reply), so the figure is one direction's throughput.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use h2msg::ioq::TxError;
use h2msg::wire::limits::{BASE_HEADER_LEN, DMSG_BASE_HEADER_LEN, MSGAUX_MAX, pad_len};
use h2msg::wire::{Cmd, MsgHeader, WireOrder, dmsg_padded_len};
use h2msg::{Config, DmsgEvent, Event, SendError};
use h2msg::{Handshake, KeyMode, LinkSetup, Liveness, NoRsa, RsaKeys};
use h2msg::{ModeChoice, StreamMode};
use indicatif::ProgressBar;

use crate::blocking::{
    DmsgLink, Duplex, Link, STD_FIFO_SIZE, drive_handshake, now, std_dmsg_iocom,
};
use crate::client::connect;
use crate::keys::KeyDir;
use crate::link::shell_connection;
use crate::other;
use crate::proto::Proto;
use crate::transport::{Endpoint, Stream};

/// Parses a stream mode name for the bench (`seed`, `cbc` or `gcm`).
///
/// # Errors
/// Any other name.
pub fn parse_mode(name: &str) -> Result<StreamMode, String> {
    match name {
        "seed" => Ok(StreamMode::Seed),
        "cbc" => Ok(StreamMode::Cbc),
        "gcm" => Ok(StreamMode::Gcm),
        other => Err(format!("{other}: the bench runs seed, cbc or gcm")),
    }
}

/// Aux sizes measured when none are given.
pub const DEFAULT_SIZES: [usize; 5] = [0, 64, 1024, 4096, 65536];

/// Wire bytes one message with `aux_len` bytes of aux data takes (32-byte units, §3.5);
/// `usize::MAX` for a size no message can have.
#[must_use]
pub const fn wire_len(aux_len: usize) -> usize {
    BASE_HEADER_LEN
        .saturating_add(aux_len)
        .saturating_add(pad_len(aux_len))
}

/// Wire bytes one DMSG message with `aux_len` bytes of aux data takes: the 64-byte
/// header and the aux padded to 64 (dmsg.md 2.1); `usize::MAX` for a size no message can
/// have.
#[must_use]
pub const fn dmsg_wire_len(aux_len: usize) -> usize {
    if aux_len > MSGAUX_MAX {
        return usize::MAX;
    }
    DMSG_BASE_HEADER_LEN + dmsg_padded_len(aux_len)
}

/// Wire bytes one message of `proto` with `aux_len` aux bytes takes.
#[must_use]
pub const fn wire_len_for(proto: Proto, aux_len: usize) -> usize {
    match proto {
        Proto::Seed => wire_len(aux_len),
        Proto::Dmsg => dmsg_wire_len(aux_len),
    }
}

/// Wire bytes of `count` messages of `aux_len` aux bytes, checked before a transfer
/// allocates anything.
///
/// # Errors
/// `InvalidInput` for an aux size past the protocol's largest, or a total past `u64`.
pub fn transfer_bytes(aux_len: usize, count: u64) -> io::Result<u64> {
    transfer_bytes_for(Proto::Seed, aux_len, count)
}

/// [`transfer_bytes`] for messages of `proto`. The bench keeps to the seed era's largest
/// aux (64 KiB) for both revisions, so that they compare on the same sizes.
///
/// # Errors
/// As [`transfer_bytes`].
pub fn transfer_bytes_for(proto: Proto, aux_len: usize, count: u64) -> io::Result<u64> {
    if aux_len > MSGAUX_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("aux size {aux_len}: at most {MSGAUX_MAX} bytes"),
        ));
    }
    count
        .checked_mul(wire_len_for(proto, aux_len) as u64)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{count} messages of {aux_len} bytes are too many bytes to count"),
            )
        })
}

/// Messages per run when `--count` is not given: about 256 MiB of wire bytes, at most
/// 4 million messages.
#[must_use]
pub const fn default_count(aux_len: usize) -> u64 {
    default_count_for(Proto::Seed, aux_len)
}

/// [`default_count`] for messages of `proto`.
#[must_use]
pub const fn default_count_for(proto: Proto, aux_len: usize) -> u64 {
    let n = (256 << 20) / wire_len_for(proto, aux_len) as u64;
    if n == 0 {
        1
    } else if n > 4_000_000 {
        4_000_000
    } else {
        n
    }
}

/// A connected loopback TCP pair (client end, server end), Nagle off.
///
/// # Errors
/// The socket's error.
pub fn loopback_pair() -> io::Result<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let client = TcpStream::connect(listener.local_addr()?)?;
    let (server, _) = listener.accept()?;
    for s in [&client, &server] {
        s.set_nodelay(true)?;
    }
    Ok((client, server))
}

/// One measured transfer.
#[derive(Clone, Copy, Debug)]
pub struct Transfer {
    /// Messages (or, for the raw copy, the messages' worth of bytes).
    pub messages: u64,
    /// Message bytes: headers and padded aux, as the seed era puts them on the wire (a
    /// cipher's tags and pads not counted, so modes compare on the same work).
    pub wire_bytes: u64,
    /// From the first write to the last byte taken by the receiver.
    pub elapsed: Duration,
}

impl Transfer {
    /// Messages per second.
    #[must_use]
    pub fn messages_per_sec(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64()
    }

    /// Wire megabytes (10^6 bytes) per second.
    #[must_use]
    pub fn megabytes_per_sec(&self) -> f64 {
        self.wire_bytes as f64 / 1e6 / self.elapsed.as_secs_f64()
    }
}

/// Sends `count` one-way messages of `aux_len` aux bytes from one connection to another
/// over loopback TCP in stream `mode` (after a handshake in plaintext, which is not timed;
/// its session keys the cipher as an RSA one would) and times it.
///
/// # Errors
/// Any transport or protocol failure, or a receiver that saw the wrong messages.
pub fn h2msg_transfer(
    aux_len: usize,
    count: u64,
    mode: StreamMode,
    progress: &ProgressBar,
) -> io::Result<Transfer> {
    transfer_bytes(aux_len, count)?;
    let (a, b) = loopback_pair()?;
    // cbc and gcm are keyed by an RSA handshake, as between two nodes; both ends share
    // one throwaway key pair. seed needs no secret: the plaintext exchange.
    let choice = match mode {
        StreamMode::Seed => ModeChoice::Seed,
        StreamMode::Cbc => ModeChoice::Cbc,
        StreamMode::Gcm => ModeChoice::Gcm,
    };
    let key = match mode {
        StreamMode::Seed => None,
        _ => Some(bench_key()?),
    };
    let peer_key = key.clone();
    let peer = thread::spawn(move || bench_link(b, peer_key.as_ref(), choice));
    let mut link = bench_link(a, key.as_ref(), choice)?;
    let mut receiving = peer
        .join()
        .map_err(|_| other("handshake thread panicked"))??;

    // The receiver counts what arrives until the sender closes the link; the clock is
    // read once, at the `count`th message (or at the close, if fewer came), not per message.
    let receiver = thread::spawn(move || -> io::Result<(Instant, u64, u64)> {
        let (mut received, mut wire_bytes) = (0u64, 0u64);
        let mut done = None;
        while let Some(len) = receiving.next_event(|e| match e {
            Event::Message { msg, .. } => Some(msg.wire_len() as u64),
            _ => None,
        })? {
            if let Some(len) = len {
                received += 1;
                wire_bytes += len;
                if received == count {
                    done = Some(Instant::now());
                }
            }
        }
        Ok((done.unwrap_or_else(Instant::now), received, wire_bytes))
    });

    let aux = vec![0x5Au8; aux_len];
    let header = MsgHeader::new(Cmd::DBG_SHELL);
    let start = Instant::now();
    for sent in 0..count {
        loop {
            match link.io().send(header, &[], &aux) {
                Ok(_) => break,
                Err(SendError::Tx(TxError::QueueFull { .. })) => link.flush()?,
                Err(e) => return Err(other(e)),
            }
        }
        if sent % 4096 == 0 {
            progress.inc(4096.min(count - sent));
        }
    }
    link.flush()?;
    drop(link); // the clean close ends the receiver's loop
    let (done, received, wire_bytes) = receiver
        .join()
        .map_err(|_| other("receiver thread panicked"))??;
    Ok(Transfer {
        messages: received,
        wire_bytes,
        elapsed: done.duration_since(start),
    })
}

/// One end of a bench link: the handshake (RSA with `key`, else in the clear), then a
/// connection in the mode `choice` insists on.
fn bench_link(
    s: TcpStream,
    key: Option<&rsa::PrivateKey>,
    choice: ModeChoice,
) -> io::Result<Link<TcpStream>> {
    let (s, setup) = bench_setup(s, key, choice, Proto::Seed)?;
    let io = shell_connection(setup, Liveness::default()).map_err(other)?;
    Ok(Link::new(s, io))
}

/// The handshake of one end of a bench link of `proto` (RSA with `key`, else in the
/// clear) and the negotiated setup. A DMSG link without a key exchanges nothing, as
/// between `.none` peers (dmsg.md 1.2).
fn bench_setup(
    s: TcpStream,
    key: Option<&rsa::PrivateKey>,
    choice: ModeChoice,
    proto: Proto,
) -> io::Result<(Duplex<TcpStream>, LinkSetup)> {
    let flags = choice.handshake_flags(STD_FIFO_SIZE);
    let mut s = Duplex::new(s)?;
    let deadline = Some(now() + Duration::from_secs(10));
    let session = match (key, proto) {
        (None, Proto::Dmsg) => return Ok((s, LinkSetup::plaintext())),
        (Some(key), _) => {
            let keys =
                RsaKeys::new(key.clone(), key.to_public_key(), getrandom::SysRng).map_err(other)?;
            let hs = Handshake::with_flags(
                KeyMode::Rsa(keys),
                &mut getrandom::SysRng,
                WireOrder::Little,
                deadline,
                flags,
            )
            .map_err(other)?;
            drive_handshake(&mut s, hs).map_err(other)?
        }
        (None, Proto::Seed) => {
            let hs = Handshake::new(
                KeyMode::<NoRsa>::Plaintext,
                &mut getrandom::SysRng,
                WireOrder::Little,
                deadline,
            )
            .map_err(other)?;
            drive_handshake(&mut s, hs).map_err(other)?
        }
    };
    let setup = LinkSetup::negotiate(session, choice).map_err(other)?;
    Ok((s, setup))
}

/// One end of a DMSG bench link: [`bench_setup`], then a DMSG connection that takes
/// `DBG_SHELL`.
fn dmsg_bench_link(
    s: TcpStream,
    key: Option<&rsa::PrivateKey>,
    choice: ModeChoice,
) -> io::Result<DmsgLink<TcpStream>> {
    let (s, setup) = bench_setup(s, key, choice, Proto::Dmsg)?;
    let mut io = std_dmsg_iocom(setup, 0, Config::default()).map_err(other)?;
    io.accept(Cmd::DBG_SHELL).map_err(other)?;
    Ok(DmsgLink::new(s, io))
}

/// [`h2msg_transfer`] over DMSG (dmsg.md 2): `count` one-way `DBG_SHELL` messages of
/// `aux_len` aux bytes from one DMSG connection to another over loopback TCP. In `seed`
/// mode nothing is exchanged first, as between `.none` peers; `cbc` and `gcm` are keyed
/// by an RSA handshake (not timed), as between two h2msg nodes.
///
/// # Errors
/// Any transport or protocol failure, or a receiver that saw the wrong messages.
pub fn dmsg_transfer(
    aux_len: usize,
    count: u64,
    mode: StreamMode,
    progress: &ProgressBar,
) -> io::Result<Transfer> {
    transfer_bytes_for(Proto::Dmsg, aux_len, count)?;
    let (a, b) = loopback_pair()?;
    let choice = match mode {
        StreamMode::Seed => ModeChoice::Seed,
        StreamMode::Cbc => ModeChoice::Cbc,
        StreamMode::Gcm => ModeChoice::Gcm,
    };
    let key = match mode {
        StreamMode::Seed => None,
        _ => Some(bench_key()?),
    };
    let peer_key = key.clone();
    let peer = thread::spawn(move || dmsg_bench_link(b, peer_key.as_ref(), choice));
    let mut link = dmsg_bench_link(a, key.as_ref(), choice)?;
    let mut receiving = peer
        .join()
        .map_err(|_| other("handshake thread panicked"))??;

    let receiver = thread::spawn(move || -> io::Result<(Instant, u64, u64)> {
        let (mut received, mut wire_bytes) = (0u64, 0u64);
        let mut done = None;
        while let Some(len) = receiving.next_event(|e| match e {
            DmsgEvent::Message { msg, .. } => Some(msg.wire_len() as u64),
            _ => None,
        })? {
            if let Some(len) = len {
                received += 1;
                wire_bytes += len;
                if received == count {
                    done = Some(Instant::now());
                }
            }
        }
        Ok((done.unwrap_or_else(Instant::now), received, wire_bytes))
    });

    let aux = vec![0x5Au8; aux_len];
    let start = Instant::now();
    for sent in 0..count {
        loop {
            match link.io().send_one_way(Cmd::DBG_SHELL, &[], &aux) {
                Ok(_) => break,
                Err(SendError::Tx(TxError::QueueFull { .. })) => link.flush()?,
                Err(e) => return Err(other(e)),
            }
        }
        if sent % 4096 == 0 {
            progress.inc(4096.min(count - sent));
        }
    }
    link.flush()?;
    drop(link); // the clean close ends the receiver's loop
    let (done, received, wire_bytes) = receiver
        .join()
        .map_err(|_| other("receiver thread panicked"))??;
    Ok(Transfer {
        messages: received,
        wire_bytes,
        elapsed: done.duration_since(start),
    })
}

/// Copies as many bytes as `count` messages of `aux_len` take on the wire through a plain
/// loopback TCP connection — 128 KiB writes, 64 KiB reads — and times it: the baseline.
///
/// # Errors
/// The transport's error.
pub fn raw_transfer(aux_len: usize, count: u64) -> io::Result<Transfer> {
    raw_transfer_of(transfer_bytes(aux_len, count)?, count)
}

/// Copies `total` bytes (the wire bytes of `count` messages) through a plain loopback TCP
/// connection, as [`raw_transfer`] does.
///
/// # Errors
/// The transport's error.
pub fn raw_transfer_of(total: u64, count: u64) -> io::Result<Transfer> {
    let (mut a, mut b) = loopback_pair()?;
    let receiver = thread::spawn(move || -> io::Result<(Instant, u64)> {
        let mut buf = vec![0u8; 64 << 10];
        let (mut got, mut last) = (0u64, Instant::now());
        loop {
            match b.read(&mut buf)? {
                0 => return Ok((last, got)),
                n => {
                    got += n as u64;
                    last = Instant::now();
                }
            }
        }
    });
    let chunk = vec![0x5Au8; 128 << 10];
    let start = Instant::now();
    let mut left = total;
    while left > 0 {
        let n = usize::try_from(left).map_or(chunk.len(), |l| l.min(chunk.len()));
        a.write_all(chunk.get(..n).unwrap_or(&chunk))?;
        left -= n as u64;
    }
    drop(a);
    let (done, got) = receiver
        .join()
        .map_err(|_| other("receiver thread panicked"))??;
    Ok(Transfer {
        messages: count,
        wire_bytes: got,
        elapsed: done.duration_since(start),
    })
}

/// One row of the bench table: the median of `rounds` runs of each, interleaved.
#[derive(Clone, Copy, Debug)]
pub struct Row {
    /// Aux bytes per message.
    pub aux_len: usize,
    /// Through h2msg.
    pub h2msg: Transfer,
    /// The plain TCP copy of the same bytes.
    pub raw: Transfer,
}

impl Row {
    /// h2msg's throughput as a fraction of the plain copy's.
    #[must_use]
    pub fn ratio(&self) -> f64 {
        self.raw.elapsed.as_secs_f64() / self.h2msg.elapsed.as_secs_f64()
    }
}

fn median(mut runs: Vec<Transfer>) -> Option<Transfer> {
    runs.sort_by_key(|t| t.elapsed);
    runs.get(runs.len() / 2).copied()
}

/// Measures one aux size in one stream mode: `rounds` runs of each transfer,
/// interleaved, medians kept.
///
/// # Errors
/// Any failing run.
pub fn measure(
    aux_len: usize,
    count: u64,
    mode: StreamMode,
    rounds: usize,
    progress: &ProgressBar,
) -> io::Result<Row> {
    measure_as(Proto::Seed, aux_len, count, mode, rounds, progress)
}

/// [`measure`] with messages of `proto`; the raw copy moves the same bytes as that
/// revision's messages take.
///
/// # Errors
/// Any failing run.
pub fn measure_as(
    proto: Proto,
    aux_len: usize,
    count: u64,
    mode: StreamMode,
    rounds: usize,
    progress: &ProgressBar,
) -> io::Result<Row> {
    let (mut ours, mut raw) = (Vec::new(), Vec::new());
    let expected = transfer_bytes_for(proto, aux_len, count)?;
    for _ in 0..rounds.max(1) {
        let t = match proto {
            Proto::Seed => h2msg_transfer(aux_len, count, mode, progress)?,
            Proto::Dmsg => dmsg_transfer(aux_len, count, mode, progress)?,
        };
        let r = raw_transfer_of(expected, count)?;
        if (t.messages, t.wire_bytes, r.wire_bytes) != (count, expected, expected) {
            return Err(other(format!(
                "sent {count} messages ({expected} bytes); received {} ({} bytes), raw {} bytes",
                t.messages, t.wire_bytes, r.wire_bytes
            )));
        }
        ours.push(t);
        raw.push(r);
    }
    Ok(Row {
        aux_len,
        h2msg: median(ours).ok_or_else(|| other("no run"))?,
        raw: median(raw).ok_or_else(|| other("no run"))?,
    })
}

/// Opens `n` links to `endpoint` from `threads` threads at once; each handshakes and gets
/// one ping answered. Returns the open links, idle.
///
/// # Errors
/// The first link that failed, with its reason.
pub fn open_idle_links(
    endpoint: &Endpoint,
    keys: &KeyDir,
    n: usize,
    threads: usize,
) -> io::Result<Vec<Link<Stream>>> {
    open_idle(endpoint, keys, n, threads, Ok)
}

/// [`open_idle_links`], each link kept as its socket alone, its driver's threads and
/// extra descriptors released as soon as its ping is answered: this process then holds
/// one descriptor a link, and raises its open-file limit for them as far as it can.
///
/// # Errors
/// The first link that failed, with its reason.
pub fn open_idle_sockets(
    endpoint: &Endpoint,
    keys: &KeyDir,
    n: usize,
    threads: usize,
) -> io::Result<Vec<Stream>> {
    /// Descriptors besides the links': stdio, the transfer rows' sockets, the child's
    /// pipes, and the driver copies of the links being opened.
    const SPARE_FILES: u64 = 256;
    let wanted = u64::try_from(n)
        .unwrap_or(u64::MAX)
        .saturating_add(SPARE_FILES);
    // A failure leaves the limit as it was: links past it fail with the OS's reason.
    let _ = rlimit::increase_nofile_limit(wanted);
    open_idle(endpoint, keys, n, threads, |link| {
        link.into_parts().0.into_inner()
    })
}

/// [`open_idle_links`], each link as `keep` makes it once its ping is answered.
fn open_idle<T: Send>(
    endpoint: &Endpoint,
    keys: &KeyDir,
    n: usize,
    threads: usize,
    keep: fn(Link<Stream>) -> io::Result<T>,
) -> io::Result<Vec<T>> {
    let threads = threads.clamp(1, n.max(1));
    thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || -> io::Result<Vec<T>> {
                    let mine = n / threads + usize::from(t < n % threads);
                    let mut links = Vec::with_capacity(mine);
                    for _ in 0..mine {
                        let (mut link, _) = connect(endpoint, keys, ModeChoice::Auto)?;
                        let mut ping = MsgHeader::new(Cmd::LNK_PING);
                        ping.msgid = 1;
                        link.io().send(ping, &[], &[]).map_err(other)?;
                        match crate::client::ping_answer(&mut link, 1)? {
                            0 => links.push(keep(link)?),
                            e => return Err(other(format!("ping answered with error {e:#x}"))),
                        }
                    }
                    Ok(links)
                })
            })
            .collect();
        let mut all = Vec::with_capacity(n);
        for w in workers {
            all.extend(w.join().map_err(|_| other("a client thread panicked"))??);
        }
        Ok(all)
    })
}

/// The 99th percentile of `pings` round trips on one fresh link to `endpoint`: each
/// `LNK_PING` sent after the previous one was answered (a good client's latency, to
/// compare with and without many idle links held on the same service).
///
/// # Errors
/// The link's failure, or a ping answered with an error.
pub fn ping_p99(endpoint: &Endpoint, keys: &KeyDir, pings: u32) -> io::Result<Duration> {
    let (mut link, _) = connect(endpoint, keys, ModeChoice::Auto)?;
    let mut times = Vec::with_capacity(usize::try_from(pings).unwrap_or_default());
    for msgid in 1..=pings {
        let mut ping = MsgHeader::new(Cmd::LNK_PING);
        ping.msgid = msgid;
        let start = Instant::now();
        link.io().send(ping, &[], &[]).map_err(other)?;
        match crate::client::ping_answer(&mut link, msgid)? {
            0 => times.push(start.elapsed()),
            e => return Err(other(format!("ping answered with error {e:#x}"))),
        }
    }
    times.sort();
    // The smallest time at or above 99 % of the rounds (nearest rank).
    let rank = (times.len() * 99).div_ceil(100).saturating_sub(1);
    times.get(rank).copied().ok_or_else(|| other("no ping"))
}

/// A service process of this binary on an ephemeral loopback port, trusting loopback
/// peers in plaintext; killed when dropped.
#[derive(Debug)]
pub struct ChildService {
    child: Child,
    /// Where it listens.
    pub endpoint: Endpoint,
    _keys: tempfile::TempDir,
}

impl ChildService {
    /// Starts `exe service` (the `h2msg` binary) for up to `max_links` links, with a key
    /// directory holding only `remote/127.0.0.1.none`; returns it and that directory.
    ///
    /// # Errors
    /// Failure to start it or to read where it listens.
    pub fn start(exe: &Path, max_links: usize) -> io::Result<(Self, KeyDir)> {
        let keys = tempfile::tempdir()?;
        std::fs::create_dir_all(keys.path().join("remote"))?;
        std::fs::write(keys.path().join("remote/127.0.0.1.none"), "")?;
        let mut child = Command::new(exe)
            .arg("--keydir")
            .arg(keys.path())
            .args(["service", "--listen", "127.0.0.1:0", "--max-links"])
            .arg(max_links.to_string())
            // All the links come from loopback, many at once and as fast as they can:
            // no handshake budget or rate below the links.
            .arg("--handshakes-per-peer")
            .arg(max_links.to_string())
            .arg("--max-handshakes")
            .arg(max_links.to_string())
            .args(["--handshake-rate", "1000000", "--handshake-burst"])
            .arg(max_links.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            io::BufRead::read_line(&mut io::BufReader::new(out), &mut line)?;
        }
        let Some(addr) = line.trim().strip_prefix("listening on ") else {
            let _ = child.kill();
            return Err(other(format!("the service said {line:?}")));
        };
        let endpoint = Endpoint::parse(Some(addr));
        let dir = KeyDir::new(keys.path());
        Ok((
            Self {
                child,
                endpoint,
                _keys: keys,
            },
            dir,
        ))
    }

    /// The service's resident set size now and at its peak (VmRSS, VmHWM), in KiB.
    ///
    /// # Errors
    /// `/proc` cannot be read (not Linux).
    pub fn rss_kib(&self) -> io::Result<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .ok_or_else(|| other(format!("no {name} in /proc status")))
        };
        Ok((field("VmRSS:")?, field("VmHWM:")?))
    }
}

impl Drop for ChildService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The bench's RSA key pair for keyed modes: made once per process (a 2048-bit key takes
/// a fraction of a second), never written anywhere.
fn bench_key() -> io::Result<rsa::PrivateKey> {
    static KEY: std::sync::OnceLock<rsa::PrivateKey> = std::sync::OnceLock::new();
    if let Some(key) = KEY.get() {
        return Ok(key.clone());
    }
    let key = rsa::PrivateKey::new(&mut getrandom::SysRng, 2048).map_err(other)?;
    Ok(KEY.get_or_init(|| key).clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_lengths_follow_the_32_byte_alignment() {
        assert_eq!(wire_len(0), 32);
        assert_eq!(wire_len(1), 64);
        assert_eq!(wire_len(32), 64);
        assert_eq!(wire_len(65536), 32 + 65536);
        assert_eq!(default_count(0), 4_000_000);
        assert_eq!(default_count(65536), (256 << 20) / (65536 + 32));
    }

    #[test]
    fn a_small_transfer_delivers_every_message_and_byte() {
        let progress = ProgressBar::hidden();
        for mode in [StreamMode::Seed, StreamMode::Cbc, StreamMode::Gcm] {
            for (aux_len, count) in [(0, 300), (100, 300), (65536, 20)] {
                let t = h2msg_transfer(aux_len, count, mode, &progress).unwrap();
                assert_eq!(t.messages, count);
                assert_eq!(t.wire_bytes, count * wire_len(aux_len) as u64);
            }
        }
        let raw = raw_transfer(100, 300).unwrap();
        assert_eq!(raw.wire_bytes, 300 * 160);
    }

    #[test]
    fn dmsg_wire_lengths_follow_the_64_byte_alignment() {
        assert_eq!(dmsg_wire_len(0), 64);
        assert_eq!(dmsg_wire_len(1), 128);
        assert_eq!(dmsg_wire_len(64), 128);
        assert_eq!(dmsg_wire_len(1024), 64 + 1024);
        assert_eq!(dmsg_wire_len(65536), 64 + 65536);
        assert_eq!(dmsg_wire_len(65537), usize::MAX);
        assert_eq!(default_count_for(Proto::Dmsg, 0), 4_000_000);
        assert_eq!(transfer_bytes_for(Proto::Dmsg, 100, 3).unwrap(), 3 * 192);
    }

    #[test]
    fn a_small_dmsg_transfer_delivers_every_message_and_byte() {
        let progress = ProgressBar::hidden();
        for mode in [StreamMode::Seed, StreamMode::Gcm] {
            for (aux_len, count) in [(0, 300), (100, 300), (65536, 20)] {
                let t = dmsg_transfer(aux_len, count, mode, &progress).unwrap();
                assert_eq!(t.messages, count, "{mode:?} {aux_len}");
                assert_eq!(t.wire_bytes, count * dmsg_wire_len(aux_len) as u64);
            }
        }
        let row = measure_as(Proto::Dmsg, 1024, 200, StreamMode::Seed, 1, &progress).unwrap();
        assert_eq!(row.raw.wire_bytes, 200 * 1088);
    }
}
