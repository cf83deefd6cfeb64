//! The `h2msg` command-line tool.

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use h2msg::{ModeChoice, StreamMode};
use h2msg_std::keys::{self, DEFAULT_KEY_DIR, KeyDir};
use h2msg_std::raw_filter;
use h2msg_std::service::{ServiceConfig, run_service};
use h2msg_std::transport::Endpoint;

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
        /// Most links served at once; more are closed at once.
        #[arg(long, default_value_t = h2msg_std::service::DEFAULT_MAX_LINKS)]
        max_links: usize,
        /// Seconds a peer may take to complete the handshake.
        #[arg(long, value_name = "SECONDS", default_value_t = h2msg_std::link::HANDSHAKE_TIMEOUT.as_secs_f64())]
        handshake_timeout: f64,
        /// Most links from one address in their handshake at once; more are closed at once.
        #[arg(long, value_name = "N", default_value_t = h2msg_std::service::DEFAULT_HANDSHAKES_PER_PEER)]
        handshakes_per_peer: usize,
        #[command(flatten)]
        mode: ModeArg,
    },
    /// Connect to a service's debug shell; lines from stdin, answers to stdout.
    Shell {
        /// HOST, HOST:PORT or unix:PATH (default 127.0.0.1:987).
        host: Option<String>,
        #[command(flatten)]
        mode: ModeArg,
    },
    /// LNK_PING round trips with min/avg/max.
    Ping {
        /// HOST, HOST:PORT or unix:PATH.
        host: String,
        /// Number of pings.
        #[arg(short = 'n', long, default_value_t = 4)]
        count: u32,
        #[command(flatten)]
        mode: ModeArg,
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
    },
    /// Loopback throughput per aux size next to a plain TCP copy; service memory per link.
    Bench {
        /// Aux sizes in bytes, comma-separated.
        #[arg(long, value_delimiter = ',', default_values_t = h2msg_std::bench::DEFAULT_SIZES)]
        sizes: Vec<usize>,
        /// Messages per run (default: about 256 MiB of wire bytes per size).
        #[arg(long)]
        count: Option<u64>,
        /// Runs of each transfer; the median is shown.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Stream modes to measure, comma-separated: seed, cbc, gcm.
        #[arg(long, value_delimiter = ',', default_value = "seed",
              value_parser = h2msg_std::bench::parse_mode)]
        modes: Vec<StreamMode>,
        /// Also start a service and hold this many idle links open to it, each after a
        /// handshake and a ping; report the service's memory.
        #[arg(long, default_value_t = 0)]
        links: usize,
    },
    /// Run the protocol on loopback with throwaway keys: handshake, shell, pings, 64 KiB.
    Demo {
        /// Number of pings.
        #[arg(short = 'n', long, default_value_t = 1000)]
        pings: u32,
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
            handshake_timeout,
            handshakes_per_peer,
            mode,
        } => {
            let config = ServiceConfig {
                listen: Endpoint::parse(Some(&listen)),
                max_links,
                handshake_timeout: Duration::try_from_secs_f64(handshake_timeout)
                    .ok()
                    .filter(|t| *t >= h2msg_std::link::MIN_HANDSHAKE_TIMEOUT)
                    .ok_or_else(|| {
                        format!(
                            "--handshake-timeout {handshake_timeout}: give at least {} seconds",
                            h2msg_std::link::MIN_HANDSHAKE_TIMEOUT.as_secs_f64()
                        )
                    })?,
                handshakes_per_peer,
                mode: mode.choice,
            };
            run_service(&config, &KeyDir::new(cli.keydir)).map_err(|e| format!("service: {e}"))
        }
        Command::Shell { host, mode } => h2msg_std::client::shell(
            &Endpoint::parse(host.as_deref()),
            &KeyDir::new(cli.keydir),
            mode.choice,
            &mut io::stdin().lock(),
            &mut io::stdout().lock(),
        )
        .map_err(|e| format!("shell: {e}")),
        Command::Ping { host, count, mode } => {
            let replies = h2msg_std::client::ping(
                &Endpoint::parse(Some(&host)),
                &KeyDir::new(cli.keydir),
                mode.choice,
                count,
            )
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
        } => {
            let bytes = match file.as_deref() {
                None => read_all(&mut io::stdin().lock()),
                Some(p) if p.as_os_str() == "-" => read_all(&mut io::stdin().lock()),
                Some(p) => std::fs::read(p).map_err(|e| format!("{}: {e}", p.display())),
            }?;
            let end = h2msg_std::dump::dump(&bytes, skip_handshake, json, &mut io::stdout().lock())
                .map_err(|e| format!("dump: {e}"))?;
            match end {
                h2msg_std::dump::DumpEnd::Clean { .. } => Ok(()),
                h2msg_std::dump::DumpEnd::Damaged { failure, .. } => Err(format!(
                    "damaged frame at offset {}: {}",
                    failure.offset, failure.error
                )),
            }
        }
        Command::Demo { pings } => {
            let r = h2msg_std::demo::run_demo(pings).map_err(|e| format!("demo: {e}"))?;
            let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
            println!("h2msg demo on {} (throwaway 2048-bit keys)", r.address);
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
            links,
        } => bench(&sizes, count, rounds, &modes, links).map_err(|e| format!("bench: {e}")),
        Command::Rsaenc { keys } | Command::Rsadec { keys } if !keys.is_empty() => {
            filter(&keys, &mut rng)
        }
        Command::Rsaenc { .. } => filter(&[KeyDir::new(cli.keydir).public_key_path()], &mut rng),
        Command::Rsadec { .. } => filter(&[KeyDir::new(cli.keydir).private_key_path()], &mut rng),
    }
}

fn bench(
    sizes: &[usize],
    count: Option<u64>,
    rounds: usize,
    modes: &[StreamMode],
    links: usize,
) -> io::Result<()> {
    use h2msg_std::bench::{ChildService, default_count, measure, open_idle_links};
    use indicatif::{ProgressBar, ProgressStyle};

    if !sizes.is_empty() {
        println!(
            "loopback TCP, one direction, median of {rounds} runs; raw = a plain TCP copy of \
             the same bytes"
        );
        println!(
            "{:>4} {:>7} {:>9} {:>13} {:>11} {:>11} {:>7}",
            "mode", "aux B", "messages", "h2msg msg/s", "h2msg MB/s", "raw MB/s", "ratio"
        );
    }
    for (&mode, &aux_len) in modes.iter().flat_map(|m| sizes.iter().map(move |s| (m, s))) {
        let n = count.unwrap_or_else(|| default_count(aux_len));
        let progress = ProgressBar::new(n * rounds.max(1) as u64);
        if let Ok(style) = ProgressStyle::with_template("{msg} {bar:40} {percent:>3}%") {
            progress.set_style(style);
        }
        progress.set_message(format!("{mode} aux {aux_len} B"));
        let row = measure(aux_len, n, mode, rounds, &progress)?;
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
    if links > 0 {
        let exe = std::env::current_exe()?;
        let (service, keys) = ChildService::start(&exe, links + 16)?;
        let (rss_before, _) = service.rss_kib()?;
        let open = open_idle_links(&service.endpoint, &keys, links, 16)?;
        let (rss, peak) = service.rss_kib()?;
        println!(
            "service with {} idle links (each handshook and answered a ping): RSS {:.1} MiB \
             (peak {:.1} MiB, {:.1} MiB before the links), {:.0} KiB per link",
            open.len(),
            rss as f64 / 1024.0,
            peak as f64 / 1024.0,
            rss_before as f64 / 1024.0,
            rss.saturating_sub(rss_before) as f64 / open.len() as f64
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

fn read_all(input: &mut impl io::Read) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    input
        .read_to_end(&mut bytes)
        .map_err(|e| format!("standard input: {e}"))?;
    Ok(bytes)
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("h2msg: {message}");
            ExitCode::FAILURE
        }
    }
}
