//! The `h2msg` command-line tool.

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::builder::RangedU64ValueParser;
use clap::{Parser, Subcommand};
use h2msg::wire::limits::MSGAUX_MAX;
use h2msg::{Liveness, ModeChoice, StreamMode};
use h2msg_std::keys::{self, DEFAULT_KEY_DIR, KeyDir};
use h2msg_std::proto::Proto;
use h2msg_std::raw_filter;
use h2msg_std::service::{Admission, ServiceConfig, default_max_handshakes, run_service};
use h2msg_std::transport::Endpoint;

/// Most links `service` serves, and most handshakes from one address: far more than the
/// open-file limit of a usual host allows (five descriptors a link), and small enough that
/// no arithmetic on it can overflow.
const MOST_LINKS: u64 = 1 << 20;

/// Most new handshakes a second `service --handshake-rate` takes: far beyond what a host
/// can handshake, so the limit is effectively off.
const MOST_HANDSHAKE_RATE: u64 = 1_000_000;

/// Most idle links `bench --links` opens (the service it starts gets 16 more).
const MOST_BENCH_LINKS: u64 = 100_000;

/// Most messages in one bench run: `count × wire bytes × rounds` stays far inside `u64`.
const MOST_BENCH_COUNT: u64 = 1_000_000_000;

/// Most runs of each bench transfer.
const MOST_BENCH_ROUNDS: u64 = 1000;

/// Most pings of `ping -n` and `demo -n`; their round-trip times are kept in memory.
const MOST_PINGS: u64 = 1_000_000;

/// Shortest timeout an option takes: the handshake's read slice.
const SHORTEST_TIMEOUT: Duration = h2msg_std::link::MIN_HANDSHAKE_TIMEOUT;

/// Longest timeout an option takes: a day.
const LONGEST_TIMEOUT: Duration = Duration::from_secs(86_400);

/// A timeout option's value: seconds, fractions allowed.
#[derive(Clone, Copy, Debug)]
struct Seconds(Duration);

impl std::fmt::Display for Seconds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0.as_secs_f64())
    }
}

/// A timeout in seconds that 0 turns off.
#[derive(Clone, Copy, Debug)]
struct OptionalSeconds(Option<Duration>);

/// Parses 0 (off) or a timeout as [`parse_timeout`] does.
fn parse_optional_timeout(text: &str) -> Result<OptionalSeconds, String> {
    if text.trim().parse::<f64>().is_ok_and(|secs| secs == 0.0) {
        return Ok(OptionalSeconds(None));
    }
    parse_timeout(text).map(|Seconds(d)| OptionalSeconds(Some(d)))
}

/// The service's liveness rules from its options: ping after `keepalive` of silence, drop
/// the peer at `idle_timeout` of silence (the ping's `dead` time is the difference), drop
/// a link whose writes stall for `stall`.
fn liveness(
    keepalive: Option<Duration>,
    idle_timeout: Option<Duration>,
    stall: Option<Duration>,
) -> Result<Liveness, String> {
    let dead = match (keepalive, idle_timeout) {
        (Some(ping), Some(drop)) if drop <= ping => {
            return Err(format!(
                "--idle-timeout {} must exceed --keepalive {}: the ping comes first",
                drop.as_secs_f64(),
                ping.as_secs_f64()
            ));
        }
        (Some(ping), Some(drop)) => Some(drop.saturating_sub(ping)),
        // Without pings the dead-peer time is the whole silence.
        (None, drop) => drop,
        (Some(_), None) => None,
    };
    Ok(Liveness {
        idle: keepalive,
        dead,
        stall,
    })
}

/// Parses a timeout in seconds from [`SHORTEST_TIMEOUT`] to [`LONGEST_TIMEOUT`] (NaN and
/// infinities are outside).
fn parse_timeout(text: &str) -> Result<Seconds, String> {
    let secs: f64 = text.trim().parse().map_err(|e| format!("{e}"))?;
    let range = SHORTEST_TIMEOUT.as_secs_f64()..=LONGEST_TIMEOUT.as_secs_f64();
    if !range.contains(&secs) {
        return Err(format!(
            "{secs} is not in {} to {} seconds",
            range.start(),
            range.end()
        ));
    }
    Duration::try_from_secs_f64(secs)
        .map(Seconds)
        .map_err(|e| e.to_string())
}

/// HAMMER2 cluster messaging (the 2012 link protocol) — keys and tools.
#[derive(Parser, Debug)]
#[command(name = "h2msg", version)]
struct Cli {
    /// Key directory (`rsa.prv`, `rsa.pub`, `remote/<peer>.pub` or `.none`).
    #[arg(long, global = true, value_name = "DIR", default_value = DEFAULT_KEY_DIR)]
    keydir: PathBuf,

    /// Say more on standard error: -v link events, -vv debugging, -vvv everything.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    /// Say only errors on standard error (by default warnings too).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,

    #[command(subcommand)]
    command: Command,
}

/// `--mode`, shared by the commands that open links.
#[derive(clap::Args, Debug)]
struct ModeArg {
    /// Stream protection after the handshake: auto (gcm when both ends can, else seed),
    /// seed (plaintext, 2012), cbc (the AES-CBC successor; both ends must say so) or gcm
    /// (authenticated; refuses a peer that cannot).
    #[arg(long = "mode", value_name = "MODE", default_value = "auto",
          value_parser = |s: &str| s.parse::<ModeChoice>().map_err(|e| e.to_string()))]
    choice: ModeChoice,
}

/// `--proto`, shared by the commands that open or read links.
#[derive(clap::Args, Debug)]
struct ProtoArg {
    /// Protocol revision: seed (the 2012 protocol) or dmsg (what DragonFly's hammer2
    /// service speaks today). Both ends must use the same.
    #[arg(long = "proto", value_name = "PROTO", default_value = "seed",
          value_parser = |s: &str| s.parse::<h2msg_std::proto::Proto>().map_err(|e| e.to_string()))]
    proto: h2msg_std::proto::Proto,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create the key directory and a 2048-bit key pair; existing keys are kept.
    Rsainit {
        /// Directory to use instead of --keydir.
        dir: Option<PathBuf>,
    },
    /// Raw RSA filter: stdin in key-size blocks through each key in order, to stdout
    /// (a .pub key applies the public operation, a .prv key the private one).
    /// Default key: `<keydir>/rsa.pub`.
    Rsaenc {
        /// Key files, applied in order.
        keys: Vec<PathBuf>,
    },
    /// Like rsaenc, with `<keydir>/rsa.prv` as the default key.
    Rsadec {
        /// Key files, applied in order.
        keys: Vec<PathBuf>,
    },
    /// Serve the debug shell and pings (foreground; stops on SIGINT/SIGTERM).
    Service {
        /// Where to listen: ADDR:PORT, or unix:PATH for a Unix-domain socket.
        #[arg(long, default_value = "0.0.0.0:987")]
        listen: String,
        /// Most links served at once, through their handshake or not (1 to 1048576). Once
        /// this many are through their handshake, more are closed at once; a link still in
        /// its handshake is displaced to make room for a new one.
        #[arg(long, value_name = "N", default_value_t = h2msg_std::service::DEFAULT_MAX_LINKS,
              value_parser = RangedU64ValueParser::<usize>::new().range(1..=MOST_LINKS))]
        max_links: usize,
        /// Most links in their handshake at once (1 to 1048576; default a quarter of
        /// --max-links, at least 1; at most --max-links counts). When they are all taken, a
        /// new connection displaces the oldest unfinished handshake, so that peers that
        /// stall in the handshake cannot keep others out.
        #[arg(long, value_name = "N",
              value_parser = RangedU64ValueParser::<usize>::new().range(1..=MOST_LINKS))]
        max_handshakes: Option<usize>,
        /// New handshakes a second, on average, from all addresses together (1 to
        /// 1000000); connections over it are closed at once, before any byte, and counted
        /// in `status`. Half of --handshake-burst is kept for addresses with no handshake
        /// under way and none failed in the last 60 s, so that stalling addresses cannot
        /// use it all up.
        #[arg(long, value_name = "PER_SECOND", default_value_t = h2msg_std::service::DEFAULT_HANDSHAKE_RATE,
              value_parser = RangedU64ValueParser::<u32>::new().range(1..=MOST_HANDSHAKE_RATE))]
        handshake_rate: u32,
        /// New handshakes accepted at once after a quiet spell, over --handshake-rate (1 to
        /// 1048576).
        #[arg(long, value_name = "N", default_value_t = h2msg_std::service::DEFAULT_HANDSHAKE_BURST,
              value_parser = RangedU64ValueParser::<u32>::new().range(1..=MOST_LINKS))]
        handshake_burst: u32,
        /// Seconds a peer may take to complete the handshake (0.01 to 86400).
        #[arg(long, value_name = "SECONDS", default_value_t = Seconds(h2msg_std::link::HANDSHAKE_TIMEOUT),
              value_parser = parse_timeout)]
        handshake_timeout: Seconds,
        /// Most links from one address in their handshake at once (1 to 1048576); more are
        /// closed at once.
        #[arg(long, value_name = "N", default_value_t = h2msg_std::service::DEFAULT_HANDSHAKES_PER_PEER,
              value_parser = RangedU64ValueParser::<usize>::new().range(1..=MOST_LINKS))]
        handshakes_per_peer: usize,
        /// Seconds without a byte from a peer before it is pinged (0.01 to 86400, or 0: no
        /// pings; --idle-timeout then drops a peer silent that long).
        #[arg(long, value_name = "SECONDS", value_parser = parse_optional_timeout,
              default_value = "30")]
        keepalive: OptionalSeconds,
        /// Seconds without a byte from a peer before its link is dropped as dead (0.01 to
        /// 86400, or 0: never); more than --keepalive, whose ping comes first. PEERTIMEOUT
        /// (30) in the log.
        #[arg(long, value_name = "SECONDS", value_parser = parse_optional_timeout,
              default_value = "60")]
        idle_timeout: OptionalSeconds,
        /// Seconds a link's answers may wait unwritten before it is dropped for not
        /// reading (0.01 to 86400, or 0: never). WRSTALL (31) in the log.
        #[arg(long, value_name = "SECONDS", value_parser = parse_optional_timeout,
              default_value = "60")]
        stall_timeout: OptionalSeconds,
        /// With dmsg: register a node of this service named LABEL (at most 127 bytes), sent
        /// as a span to every link and relayed through the cluster (repeatable).
        #[arg(long, value_name = "LABEL")]
        advertise: Vec<String>,
        /// With dmsg: the loop guard (h2msg's, between h2msg nodes; docs/dmsg.md 5.9): own
        /// spans carry a route sequence, and a withdrawn registration cannot count to 16
        /// around a cycle. Off: libdmsg's rules exactly.
        #[arg(long)]
        loop_guard: bool,
        #[command(flatten)]
        mode: ModeArg,
        #[command(flatten)]
        proto: ProtoArg,
        /// Keep a DMSG link to HOST (HOST, HOST:PORT or unix:PATH) up: connect at start and
        /// reconnect after any end of the link, waiting 0.25 s doubling up to 5 s between
        /// failed attempts. Repeatable; `--proto dmsg` only. The lines of `<keydir>/autoconn`
        /// (looked at every 5 s) are kept up alike.
        #[arg(long, value_name = "HOST")]
        connect: Vec<String>,
        /// Milliseconds between looks at `<keydir>/autoconn` (10 to 86400000; tests).
        #[arg(long, value_name = "MS", hide = true, default_value_t = 5000,
              value_parser = clap::value_parser!(u64).range(10..=86_400_000))]
        autoconn_poll_ms: u64,
    },
    /// Connect to a service's debug shell; lines from stdin, answers to stdout.
    Shell {
        /// HOST, HOST:PORT or unix:PATH (default 127.0.0.1:987).
        host: Option<String>,
        /// Seconds to wait for the TCP connection, and again for the handshake (0.01 to
        /// 86400).
        #[arg(long, value_name = "SECONDS", value_parser = parse_timeout,
              default_value_t = Seconds(h2msg_std::client::DEFAULT_CONNECT_TIMEOUT))]
        connect_timeout: Seconds,
        /// Seconds to wait for each answer of the service, or for it to take a line (0.01
        /// to 86400).
        #[arg(long, value_name = "SECONDS", value_parser = parse_timeout,
              default_value_t = Seconds(h2msg_std::client::DEFAULT_REPLY_TIMEOUT))]
        reply_timeout: Seconds,
        /// Print the service's text unchanged; by default control characters other than
        /// newline and tab are shown escaped (`\x1b`), so that a service cannot drive the
        /// terminal.
        #[arg(long)]
        raw: bool,
        /// With dmsg: talk to the node registered as LABEL anywhere in the cluster, over
        /// transactions routed through the service connected to.
        #[arg(long, value_name = "LABEL")]
        via: Option<String>,
        #[command(flatten)]
        mode: ModeArg,
        #[command(flatten)]
        proto: ProtoArg,
    },
    /// Print a DMSG service's view of the cluster (its shell's `tree`), or with --via that
    /// of the node registered as LABEL.
    Tree {
        /// HOST, HOST:PORT or unix:PATH (default 127.0.0.1:987).
        host: Option<String>,
        /// Seconds to wait for the TCP connection, and again for the handshake (0.01 to
        /// 86400).
        #[arg(long, value_name = "SECONDS", value_parser = parse_timeout,
              default_value_t = Seconds(h2msg_std::client::DEFAULT_CONNECT_TIMEOUT))]
        connect_timeout: Seconds,
        /// Seconds to wait for the answer (0.01 to 86400).
        #[arg(long, value_name = "SECONDS", value_parser = parse_timeout,
              default_value_t = Seconds(h2msg_std::client::DEFAULT_REPLY_TIMEOUT))]
        reply_timeout: Seconds,
        /// Ask the node registered as LABEL anywhere in the cluster, over a routed
        /// transaction.
        #[arg(long, value_name = "LABEL")]
        via: Option<String>,
        #[command(flatten)]
        mode: ModeArg,
    },
    /// LNK_PING round trips with min/avg/max.
    Ping {
        /// HOST, HOST:PORT or unix:PATH.
        host: String,
        /// Number of pings (1 to 1000000).
        #[arg(short = 'n', long, default_value_t = 4,
              value_parser = RangedU64ValueParser::<u32>::new().range(1..=MOST_PINGS))]
        count: u32,
        #[command(flatten)]
        mode: ModeArg,
        /// With dmsg: one-way pings answered one-way (a `.none` peer only, no handshake).
        #[command(flatten)]
        proto: ProtoArg,
    },
    /// Decode a captured byte stream of messages, one line per message.
    Dump {
        /// The capture; `-` or nothing for standard input.
        file: Option<PathBuf>,
        /// One JSON object per message.
        #[arg(long)]
        json: bool,
        /// The capture starts with the 512 handshake bytes: skip them.
        #[arg(long)]
        skip_handshake: bool,
        /// Revision of the capture: seed (32-byte headers), dmsg (64-byte headers), or
        /// auto: whichever one's first header checks out (seed icrc1, DMSG hdr_crc);
        /// refused when both or neither do.
        #[arg(long = "proto", value_name = "PROTO", default_value = "seed",
              value_parser = |s: &str| s.parse::<h2msg_std::dump::DumpProto>().map_err(|e| e.to_string()))]
        proto: h2msg_std::dump::DumpProto,
    },
    /// Loopback throughput per aux size next to a plain TCP copy; service memory per link.
    Bench {
        /// Aux sizes in bytes, comma-separated (0 to 65536 each, the protocol's largest aux).
        #[arg(long, value_delimiter = ',', default_values_t = h2msg_std::bench::DEFAULT_SIZES,
              value_parser = RangedU64ValueParser::<usize>::new().range(0..=MSGAUX_MAX as u64))]
        sizes: Vec<usize>,
        /// Messages per run (1 to 1000000000; default: about 256 MiB of wire bytes per size).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=MOST_BENCH_COUNT))]
        count: Option<u64>,
        /// Runs of each transfer (1 to 1000); the median is shown.
        #[arg(long, default_value_t = 3,
              value_parser = RangedU64ValueParser::<usize>::new().range(1..=MOST_BENCH_ROUNDS))]
        rounds: usize,
        /// Stream modes to measure, comma-separated: seed, cbc, gcm.
        #[arg(long, value_delimiter = ',', default_value = "seed",
              value_parser = h2msg_std::bench::parse_mode)]
        modes: Vec<StreamMode>,
        /// Protocol revisions to measure, comma-separated: seed (32-byte headers), dmsg
        /// (64-byte headers; in seed mode no handshake, as between .none peers). One table
        /// each, in the same run.
        #[arg(long = "proto", value_name = "PROTO", value_delimiter = ',', default_value = "seed",
              value_parser = |s: &str| s.parse::<Proto>().map_err(|e| e.to_string()))]
        proto: Vec<Proto>,
        /// Also start a service and hold this many idle links open to it, each after a
        /// handshake and a ping; report the service's memory and a good client's ping p99
        /// before and while they are held (0 to 100000; 0: no service).
        #[arg(long, default_value_t = 0,
              value_parser = RangedU64ValueParser::<usize>::new().range(0..=MOST_BENCH_LINKS))]
        links: usize,
    },
    /// Hand a link to the Linux kernel module: connect, run the handshake in seed mode,
    /// then give the socket to the module's device; its kernel thread drives the link.
    KernelAttach {
        /// HOST:PORT of the service (HOST alone: port 987; unix:PATH).
        host: String,
        /// The module's device.
        #[arg(long, value_name = "PATH",
              default_value = h2msg_std::kernel_attach::DEFAULT_DEVICE)]
        device: PathBuf,
        /// Seconds to wait for the TCP connection, and again for the handshake (0.01 to
        /// 86400).
        #[arg(long, value_name = "SECONDS", value_parser = parse_timeout,
              default_value_t = Seconds(h2msg_std::client::DEFAULT_CONNECT_TIMEOUT))]
        connect_timeout: Seconds,
    },
    /// Run the protocol on loopback with throwaway keys: handshake, shell, pings, 64 KiB.
    Demo {
        /// Number of pings (1 to 1000000).
        #[arg(short = 'n', long, default_value_t = 1000,
              value_parser = RangedU64ValueParser::<u32>::new().range(1..=MOST_PINGS))]
        pings: u32,
        /// With dmsg: the node serves as `service --proto dmsg`; one-way pings and shell.
        #[command(flatten)]
        proto: ProtoArg,
    },
}

fn run(cli: Cli) -> Result<(), String> {
    h2msg_std::logging::init(h2msg_std::logging::level(cli.verbose, cli.quiet));
    let mut rng = getrandom::SysRng;
    match cli.command {
        Command::Rsainit { dir } => {
            let dir = KeyDir::new(dir.unwrap_or(cli.keydir));
            let outcome = dir.init(&mut rng).map_err(|e| e.to_string())?;
            let prv = dir.private_key_path();
            if outcome.private_created {
                eprintln!("created {} (2048 bits)", prv.display());
            } else {
                eprintln!("kept existing {}", prv.display());
            }
            if outcome.public_written {
                eprintln!("wrote {}", dir.public_key_path().display());
            }
            Ok(())
        }
        Command::Service {
            listen,
            max_links,
            max_handshakes,
            handshake_rate,
            handshake_burst,
            handshake_timeout,
            handshakes_per_peer,
            keepalive,
            idle_timeout,
            stall_timeout,
            advertise,
            loop_guard,
            mode,
            proto,
            connect,
            autoconn_poll_ms,
        } => {
            let config = ServiceConfig {
                listen: Endpoint::parse(Some(&listen)),
                admission: Admission {
                    max_links,
                    max_handshakes: max_handshakes
                        .unwrap_or_else(|| default_max_handshakes(max_links)),
                    handshakes_per_peer,
                    handshake_rate,
                    handshake_burst,
                },
                handshake_timeout: handshake_timeout.0,
                mode: mode.choice,
                liveness: liveness(keepalive.0, idle_timeout.0, stall_timeout.0)?,
                proto: proto.proto,
                advertise,
                loop_guard,
                connect,
                autoconn_poll: Duration::from_millis(autoconn_poll_ms),
            };
            run_service(&config, &KeyDir::new(cli.keydir)).map_err(|e| format!("service: {e}"))
        }
        Command::Shell {
            host,
            connect_timeout,
            reply_timeout,
            raw,
            via,
            mode,
            proto,
        } => h2msg_std::client::shell(
            &Endpoint::parse(host.as_deref()),
            &KeyDir::new(cli.keydir),
            mode.choice,
            &h2msg_std::client::ShellOptions {
                connect_timeout: connect_timeout.0,
                reply_timeout: reply_timeout.0,
                reply_text: if raw {
                    h2msg_std::client::ReplyText::Raw
                } else {
                    h2msg_std::client::ReplyText::Escaped
                },
                proto: proto.proto,
                via,
            },
            io::BufReader::new(io::stdin()),
            &mut io::stdout().lock(),
        )
        .map_err(|e| format!("shell: {e}")),
        Command::Tree {
            host,
            connect_timeout,
            reply_timeout,
            via,
            mode,
        } => h2msg_std::client::tree(
            &Endpoint::parse(host.as_deref()),
            &KeyDir::new(cli.keydir),
            mode.choice,
            &h2msg_std::client::ShellOptions {
                connect_timeout: connect_timeout.0,
                reply_timeout: reply_timeout.0,
                proto: h2msg_std::proto::Proto::Dmsg,
                via,
                ..h2msg_std::client::ShellOptions::default()
            },
            &mut io::stdout().lock(),
        )
        .map_err(|e| format!("tree: {e}")),
        Command::Ping {
            host,
            count,
            mode,
            proto,
        } => {
            let endpoint = Endpoint::parse(Some(&host));
            let keys = KeyDir::new(cli.keydir);
            let replies = match proto.proto {
                Proto::Seed => h2msg_std::client::ping(&endpoint, &keys, mode.choice, count),
                Proto::Dmsg => h2msg_std::client::ping_dmsg(&endpoint, &keys, mode.choice, count),
            }
            .map_err(|e| format!("ping: {e}"))?;
            let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
            for (i, r) in replies.iter().enumerate() {
                println!(
                    "reply {} from {host}: time={:.3} ms error={:#x}",
                    i + 1,
                    ms(r.rtt),
                    r.error
                );
            }
            let min = replies.iter().map(|r| r.rtt).min().unwrap_or_default();
            let max = replies.iter().map(|r| r.rtt).max().unwrap_or_default();
            let avg = replies.iter().map(|r| r.rtt).sum::<std::time::Duration>() / count.max(1);
            println!(
                "{count} pings: min {:.3} / avg {:.3} / max {:.3} ms",
                ms(min),
                ms(avg),
                ms(max)
            );
            Ok(())
        }
        Command::Dump {
            file,
            json,
            skip_handshake,
            proto,
        } => {
            let (mut input, name): (Box<dyn io::Read>, String) = match file.as_deref() {
                Some(path) if path.as_os_str() != "-" => (
                    Box::new(
                        std::fs::File::open(path)
                            .map_err(|e| format!("{}: {e}", path.display()))?,
                    ),
                    path.display().to_string(),
                ),
                _ => (Box::new(io::stdin().lock()), "standard input".to_string()),
            };
            let dumped = h2msg_std::dump::dump_as(
                proto,
                &mut input,
                skip_handshake,
                json,
                &mut io::stdout().lock(),
            )
            .map_err(|e| format!("dump {name}: {e}"))?;
            if let (h2msg_std::dump::DumpProto::Auto, Some(found)) = (proto, dumped.proto) {
                log::info!("dump {name}: decoded as {found}");
            }
            match dumped.end {
                h2msg_std::dump::DumpEnd::Clean { .. } => Ok(()),
                h2msg_std::dump::DumpEnd::Damaged { failure, .. } => Err(format!(
                    "damaged frame at offset {}: {}",
                    failure.offset, failure.error
                )),
            }
        }
        Command::KernelAttach {
            host,
            device,
            connect_timeout,
        } => {
            let attached = h2msg_std::kernel_attach::kernel_attach(
                &Endpoint::parse(Some(&host)),
                &KeyDir::new(cli.keydir),
                &h2msg_std::kernel_attach::AttachOptions {
                    device: device.clone(),
                    connect_timeout: connect_timeout.0,
                },
            )
            .map_err(|e| format!("kernel-attach: {e}"))?;
            println!(
                "kernel link up: {} to {} ({}), handed to {}",
                attached.local,
                attached.peer,
                attached.terms,
                device.display()
            );
            Ok(())
        }
        Command::Demo { pings, proto } => {
            let r = h2msg_std::demo::run_demo_as(pings, proto.proto)
                .map_err(|e| format!("demo: {e}"))?;
            let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
            println!(
                "h2msg demo on {} ({}, throwaway 2048-bit keys)",
                r.address, proto.proto
            );
            println!(
                "  connect + RSA handshake: {:.1} ms, stream mode {}",
                ms(r.handshake),
                r.mode
            );
            println!("  shell> help");
            for line in r.help.lines() {
                println!("    {line}");
            }
            let (min, avg, max) = r.ping;
            println!(
                "  {} pings: min {:.3} / avg {:.3} / max {:.3} ms",
                r.pings,
                ms(min),
                ms(avg),
                ms(max)
            );
            println!(
                "  64 KiB aux message sent and answered in {:.3} ms",
                ms(r.aux_64k)
            );
            Ok(())
        }
        Command::Bench {
            sizes,
            count,
            rounds,
            modes,
            proto,
            links,
        } => bench(&sizes, count, rounds, &modes, &proto, links).map_err(|e| format!("bench: {e}")),
        Command::Rsaenc { keys } | Command::Rsadec { keys } if !keys.is_empty() => {
            filter(&keys, &mut rng)
        }
        Command::Rsaenc { .. } => filter(&[KeyDir::new(cli.keydir).public_key_path()], &mut rng),
        Command::Rsadec { .. } => filter(&[KeyDir::new(cli.keydir).private_key_path()], &mut rng),
    }
}

/// Pings a good client sends, one after another, for its p99 next to the idle links.
const PINGS: u32 = 2000;

fn bench(
    sizes: &[usize],
    count: Option<u64>,
    rounds: usize,
    modes: &[StreamMode],
    protos: &[Proto],
    links: usize,
) -> io::Result<()> {
    use h2msg_std::bench::{
        ChildService, default_count_for, measure_as, open_idle_sockets, ping_p99,
    };
    use indicatif::{ProgressBar, ProgressStyle};

    for (table, &proto) in protos.iter().enumerate() {
        if sizes.is_empty() {
            break;
        }
        if table > 0 {
            println!();
        }
        let revision = match proto {
            Proto::Seed => "",
            Proto::Dmsg => "DMSG (64-byte headers; seed mode: no handshake, as .none), ",
        };
        println!(
            "loopback TCP, one direction, {revision}median of {rounds} runs; raw = a plain TCP \
             copy of the same bytes"
        );
        println!(
            "{:>4} {:>7} {:>9} {:>13} {:>11} {:>11} {:>7}",
            "mode", "aux B", "messages", "h2msg msg/s", "h2msg MB/s", "raw MB/s", "ratio"
        );
        for (&mode, &aux_len) in modes.iter().flat_map(|m| sizes.iter().map(move |s| (m, s))) {
            let n = count.unwrap_or_else(|| default_count_for(proto, aux_len));
            // Both are bounded by the parser; saturating all the same, as a library caller
            // reaches `measure` without it.
            let progress = ProgressBar::new(n.saturating_mul(rounds.max(1) as u64));
            if let Ok(style) = ProgressStyle::with_template("{msg} {bar:40} {percent:>3}%") {
                progress.set_style(style);
            }
            progress.set_message(format!("{proto} {mode} aux {aux_len} B"));
            let row = measure_as(proto, aux_len, n, mode, rounds, &progress)?;
            progress.finish_and_clear();
            println!(
                "{:>4} {:>7} {:>9} {:>11.2} M {:>11.1} {:>11.1} {:>7.2}",
                mode.name(),
                aux_len,
                n,
                row.h2msg.messages_per_sec() / 1e6,
                row.h2msg.megabytes_per_sec(),
                row.raw.megabytes_per_sec(),
                row.ratio()
            );
        }
    }
    if links > 0 {
        let exe = std::env::current_exe()?;
        let (service, keys) = ChildService::start(&exe, links + 16)?;
        let (rss_before, _) = service.rss_kib()?;
        let quiet_p99 = ping_p99(&service.endpoint, &keys, PINGS)?;
        let opening = std::time::Instant::now();
        let open = open_idle_sockets(&service.endpoint, &keys, links, 16)?;
        let took = opening.elapsed().as_secs_f64();
        let (rss, peak) = service.rss_kib()?;
        println!(
            "{} links opened from 16 threads in {took:.2} s: {:.0} links/s (handshake, ping)",
            open.len(),
            open.len() as f64 / took.max(f64::EPSILON)
        );
        println!(
            "service with {} idle links (each handshook and answered a ping): RSS {:.1} MiB \
             (peak {:.1} MiB, {:.1} MiB before the links), {:.0} KiB per link",
            open.len(),
            rss as f64 / 1024.0,
            peak as f64 / 1024.0,
            rss_before as f64 / 1024.0,
            rss.saturating_sub(rss_before) as f64 / open.len() as f64
        );
        let held_p99 = ping_p99(&service.endpoint, &keys, PINGS)?;
        println!(
            "a good client's ping p99 over {PINGS} pings: {:.0} µs with the {} idle links held, \
             {:.0} µs before them: {:.2}x",
            held_p99.as_secs_f64() * 1e6,
            open.len(),
            quiet_p99.as_secs_f64() * 1e6,
            held_p99.as_secs_f64() / quiet_p99.as_secs_f64().max(f64::EPSILON)
        );
    }
    Ok(())
}

fn filter(paths: &[PathBuf], rng: &mut getrandom::SysRng) -> Result<(), String> {
    let keys = paths
        .iter()
        .map(|p| keys::read_any_key(p))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    raw_filter::filter(
        &keys,
        rng,
        &mut io::stdin().lock(),
        &mut io::stdout().lock(),
    )
    .map_err(|e| format!("rsa filter: {e}"))
}

fn main() -> ExitCode {
    let result = run(Cli::parse());
    // Log lines still queued go out before the error line and the exit (within a bound:
    // a standard error nobody reads must not keep the process alive).
    log::logger().flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("h2msg: {message}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

    use clap::CommandFactory;

    use super::*;

    /// Options that take text, not numbers.
    const TEXT_OPTIONS: [&str; 14] = [
        "keydir",
        "listen",
        "choice",
        "modes",
        "host",
        "file",
        "dir",
        "keys",
        "mode",
        "proto",
        "advertise",
        "via",
        "connect",
        "device",
    ];

    /// The `(MIN to MAX)` an option's help states, as written.
    fn stated_range(help: &str) -> Option<(String, String)> {
        let open = help.find('(')?;
        let inner = &help[open + 1..open + help[open..].find(')')?];
        let (min, rest) = inner.split_once(" to ")?;
        let max = rest.split([';', ' ', ',']).next()?;
        Some((min.to_string(), max.to_string()))
    }

    /// Whether `h2msg SUBCOMMAND [required values] --OPTION VALUE` parses.
    fn parses(sub: &clap::Command, option: &str, value: &str) -> bool {
        let mut argv = vec!["h2msg".to_string(), sub.get_name().to_string()];
        for positional in sub.get_positionals().filter(|a| a.is_required_set()) {
            argv.push(format!("value-for-{}", positional.get_id()));
        }
        argv.extend([format!("--{option}"), value.to_string()]);
        Cli::try_parse_from(&argv).is_ok()
    }

    /// Every numeric option states its range in `--help`, the parser takes both ends and
    /// refuses what lies just outside (and NaN or infinity for seconds).
    #[test]
    fn every_numeric_option_enforces_the_range_its_help_states() {
        let cli = Cli::command();
        let mut checked = 0;
        for sub in cli.get_subcommands() {
            for arg in sub
                .get_arguments()
                .filter(|a| a.get_action().takes_values())
            {
                let id = arg.get_id().as_str();
                if TEXT_OPTIONS.contains(&id) {
                    continue;
                }
                let option = arg.get_long().unwrap_or_else(|| {
                    panic!("{} {id}: a number without an option name", sub.get_name())
                });
                let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                let (min, max) = stated_range(&help).unwrap_or_else(|| {
                    panic!("{} --{option}: no range in {help:?}", sub.get_name())
                });
                let context = format!("{} --{option} ({min} to {max})", sub.get_name());
                assert!(parses(sub, option, &min), "{context}: {min} refused");
                assert!(parses(sub, option, &max), "{context}: {max} refused");
                let outside = match (min.parse::<u64>(), max.parse::<u64>()) {
                    (Ok(low), Ok(high)) => vec![
                        low.checked_sub(1)
                            .map_or("-1".to_string(), |v| v.to_string()),
                        (u128::from(high) + 1).to_string(),
                    ],
                    _ => {
                        let (low, high): (f64, f64) = (min.parse().unwrap(), max.parse().unwrap());
                        vec![
                            (low * 0.9).to_string(),
                            (high * 1.1).to_string(),
                            "NaN".into(),
                            "inf".into(),
                        ]
                    }
                };
                for value in outside {
                    assert!(!parses(sub, option, &value), "{context}: {value} taken");
                }
                checked += 1;
            }
        }
        // Every subcommand with numbers was walked (service, ping, bench, demo, shell,
        // kernel-attach).
        assert!(checked >= 12, "only {checked} options checked");
    }
}
