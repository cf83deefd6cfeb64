//! Load: 1000 concurrent links to one `h2msg service` (loopback, plaintext trust), each
//! handshaken and answering a ping; the service's memory is reported. And the bench
//! command's output.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

use std::path::Path;

use h2msg_std::bench::{ChildService, open_idle_links};
use h2msg_std::client::shell_exchange;

mod common;
use common::h2msg_ok;

const LINKS: usize = 1000;

/// The soft limit on open files: the test holds 1000 sockets, the service 1000 more.
fn open_file_limit() -> u64 {
    rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap().0
}

#[test]
fn a_thousand_concurrent_links_are_served() {
    assert!(
        open_file_limit() > LINKS as u64 + 100,
        "raise the open-file limit (ulimit -n) above {} for this test",
        LINKS + 100
    );
    let exe = Path::new(env!("CARGO_BIN_EXE_h2msg"));
    let (service, keys) = ChildService::start(exe, LINKS + 1).unwrap();
    let mut links = open_idle_links(&service.endpoint, &keys, LINKS, 16).unwrap();
    assert_eq!(links.len(), LINKS);

    // Every link is still served: ask the service about itself on the last one.
    let mut text = Vec::new();
    shell_exchange(&mut links[LINKS - 1], "status", &mut text, false).unwrap();
    let status = String::from_utf8(text).unwrap();
    let first = status.lines().next().unwrap();
    assert_eq!(
        first,
        format!(
            "links: {LINKS} of {} (served {LINKS}, refused 0); handshakes: 0 of {} (evicted 0, \
             over the rate 0)",
            LINKS + 1,
            LINKS + 1
        )
    );
    assert_eq!(status.lines().count(), LINKS + 1);

    // One more link fits; the one after it is refused at once.
    let mut extra = open_idle_links(&service.endpoint, &keys, 1, 1).unwrap();
    assert!(open_idle_links(&service.endpoint, &keys, 1, 1).is_err());
    let mut text = Vec::new();
    shell_exchange(&mut extra[0], "status", &mut text, false).unwrap();
    let status = String::from_utf8(text).unwrap();
    assert_eq!(
        status.lines().next().unwrap(),
        format!(
            "links: {} of {} (served {}, refused 1); handshakes: 0 of {} (evicted 0, over the \
             rate 0)",
            LINKS + 1,
            LINKS + 1,
            LINKS + 1,
            LINKS + 1
        )
    );

    let (rss, peak) = service.rss_kib().unwrap();
    eprintln!(
        "service with {LINKS} links: RSS {:.1} MiB, peak {:.1} MiB",
        rss as f64 / 1024.0,
        peak as f64 / 1024.0
    );
}

#[test]
fn the_bench_command_prints_its_table() {
    let text = h2msg_ok(&[
        "bench", "--sizes", "0,1024", "--count", "3000", "--rounds", "1", "--links", "20",
    ]);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[1].split_whitespace().eq([
        "mode", "aux", "B", "messages", "h2msg", "msg/s", "h2msg", "MB/s", "raw", "MB/s", "ratio"
    ]));
    for (line, aux) in lines[2..4].iter().zip(["0", "1024"]) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields[..3], ["seed", aux, "3000"], "{line}");
        // msg/s (in millions, then "M"), h2msg MB/s, raw MB/s, ratio.
        assert_eq!(fields[4], "M", "{line}");
        let figures: Vec<f64> = [3, 5, 6, 7].map(|i| fields[i].parse().unwrap()).into();
        assert!(figures[..3].iter().all(|&f| f > 0.0), "{line}");
        assert!(figures[3] >= 0.0, "{line}");
    }
    assert!(
        lines[4].starts_with("20 links opened from 16 threads in "),
        "{text}"
    );
    assert!(
        lines[5]
            .starts_with("service with 20 idle links (each handshook and answered a ping): RSS "),
        "{text}"
    );
    // "... p99 over 2000 pings: A µs with the 20 idle links held, B µs before them: Rx",
    // R being A / B as printed (to rounding).
    let p99 = lines[6]
        .strip_prefix("a good client's ping p99 over 2000 pings: ")
        .unwrap_or_else(|| panic!("{text}"));
    let numbers: Vec<f64> = p99
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter(|w| !w.is_empty() && *w != ".")
        .map(|w| w.trim_end_matches('.').parse().unwrap())
        .collect();
    let [held, links, quiet, ratio] = numbers[..] else {
        panic!("{p99}")
    };
    assert_eq!(links, 20.0, "{p99}");
    assert!(held > 0.0 && quiet > 0.0, "{p99}");
    // The times are printed rounded to 1 µs and the ratio to 0.01: allow for both.
    let slack = 0.005 + held / quiet * (0.5 / held + 0.5 / quiet);
    assert!((ratio - held / quiet).abs() <= slack, "{p99}");
}

/// `--proto seed,dmsg`: one table per revision in the same run, each in the seed table's
/// format; the DMSG one says so in its title.
#[test]
fn the_bench_command_prints_a_table_per_revision() {
    let text = h2msg_ok(&[
        "bench",
        "--proto",
        "seed,dmsg",
        "--sizes",
        "0,1024",
        "--count",
        "2000",
        "--rounds",
        "1",
    ]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 9, "{text}");
    assert_eq!(lines[4], "", "{text}");
    for (table, dmsg) in [(&lines[..4], false), (&lines[5..], true)] {
        assert_eq!(table[0].contains("DMSG (64-byte headers"), dmsg, "{text}");
        assert!(table[1].split_whitespace().eq([
            "mode", "aux", "B", "messages", "h2msg", "msg/s", "h2msg", "MB/s", "raw", "MB/s",
            "ratio"
        ]));
        for (line, aux) in table[2..].iter().zip(["0", "1024"]) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(fields[..3], ["seed", aux, "2000"], "{line}");
            assert_eq!(fields[4], "M", "{line}");
            let figures: Vec<f64> = [3, 5, 6, 7].map(|i| fields[i].parse().unwrap()).into();
            // Rates are printed to two places: a debug build on a loaded machine can show
            // 0.00 for any of them, so only their form is checked here; the message count
            // (the receiver's) is what shows the run moved every message.
            assert!(figures.iter().all(|f| f.is_finite() && *f >= 0.0), "{line}");
        }
    }
}
