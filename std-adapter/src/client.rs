//! The client side of the tool: `shell` (the debug shell of §4.3) and `ping`.

use std::io::{self, BufRead, Write};
use std::time::{Duration, Instant};

use h2msg::Event;
use h2msg::wire::{Cmd, MsgHeader};

use h2msg::ModeChoice;
use log::info;

use crate::blocking::Link;
use crate::keys::KeyDir;
use crate::link::{HANDSHAKE_TIMEOUT, LinkTerms, open_link};
use crate::other;
use crate::transport::{Endpoint, Stream};

/// Connects, runs the handshake with the keys of `keys` and agrees on a stream mode
/// within `mode`; returns the link and what was agreed (also logged at `-v`).
///
/// # Errors
/// Connection or handshake failure, with its reason.
pub fn connect(
    endpoint: &Endpoint,
    keys: &KeyDir,
    mode: ModeChoice,
) -> io::Result<(Link<Stream>, LinkTerms)> {
    let stream = endpoint.connect()?;
    let (link, terms) = open_link(stream, keys, HANDSHAKE_TIMEOUT, mode).map_err(other)?;
    info!("{endpoint}: link up ({terms})");
    Ok((link, terms))
}

/// Sends one shell line (empty: ask for the prompt) and writes the replies' text to `out`
/// until the final reply, which is shown as the prompt `debug> ` if `prompt`.
///
/// # Errors
/// The transport's error, or the service closing the connection first.
pub fn shell_exchange(
    link: &mut Link<Stream>,
    line: &str,
    out: &mut impl Write,
    prompt: bool,
) -> io::Result<()> {
    let mut aux = line.as_bytes().to_vec();
    if !aux.is_empty() {
        aux.push(0);
    }
    link.io()
        .send(MsgHeader::new(Cmd::DBG_SHELL), &[], &aux)
        .map_err(other)?;
    loop {
        let reply = link.next_event(|e| match e {
            Event::Message { msg, .. } if msg.header().cmd.is_reply() => Some((
                msg.aux().is_empty(),
                String::from_utf8_lossy(msg.aux_until_nul()).into_owned(),
            )),
            _ => None,
        })?;
        match reply {
            Some(Some((true, _))) => {
                if prompt {
                    write!(out, "debug> ")?;
                    out.flush()?;
                }
                return Ok(());
            }
            Some(Some((false, text))) => {
                write!(out, "{text}")?;
            }
            Some(None) => {}
            None => return Err(other("the service closed the connection")),
        }
    }
}

/// `h2msg shell`: connects, prints `debug: connected`, gets the prompt, then sends each
/// input line and prints the answers; at the end of input it has every answer and returns.
///
/// # Errors
/// Connection, handshake or I/O failure.
pub fn shell(
    endpoint: &Endpoint,
    keys: &KeyDir,
    mode: ModeChoice,
    input: &mut impl BufRead,
    out: &mut impl Write,
) -> io::Result<()> {
    let (mut link, _) = connect(endpoint, keys, mode)?;
    writeln!(out, "debug: connected")?;
    shell_exchange(&mut link, "", out, true)?;
    for line in input.lines() {
        let line = line?;
        shell_exchange(&mut link, truncate_line(&line), out, true)?;
    }
    writeln!(out)?;
    Ok(())
}

/// The C client's line limit: 255 bytes, cut back to a character boundary.
fn truncate_line(line: &str) -> &str {
    let mut end = line.len().min(255);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    line.get(..end).unwrap_or_default()
}

/// One ping's outcome.
#[derive(Clone, Copy, Debug)]
pub struct PingReply {
    /// Round-trip time.
    pub rtt: Duration,
    /// The reply's error field: 0 from h2msg, 0x20 from a 2012 C node.
    pub error: u16,
}

/// `h2msg ping`: `count` `LNK_PING` round trips, one at a time.
///
/// # Errors
/// Connection, handshake or I/O failure.
pub fn ping(
    endpoint: &Endpoint,
    keys: &KeyDir,
    mode: ModeChoice,
    count: u32,
) -> io::Result<Vec<PingReply>> {
    let (mut link, _) = connect(endpoint, keys, mode)?;
    link.io().accept(Cmd::LNK_PING).map_err(other)?;
    let mut replies = Vec::new();
    for msgid in 1..=count {
        let mut h = MsgHeader::new(Cmd::LNK_PING);
        h.msgid = msgid;
        let sent = Instant::now();
        link.io().send(h, &[], &[]).map_err(other)?;
        let error = link.wait_for_reply(msgid)?;
        replies.push(PingReply {
            rtt: sent.elapsed(),
            error,
        });
    }
    Ok(replies)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_cut_to_255_bytes_at_a_character_boundary() {
        let ascii = "a".repeat(300);
        assert_eq!(truncate_line(&ascii).len(), 255);
        // 254 ASCII bytes, then a 2-byte character across the limit: it goes whole.
        let mixed = format!("{}é and more", "b".repeat(254));
        assert_eq!(truncate_line(&mixed), "b".repeat(254));
        assert_eq!(truncate_line("short"), "short");
    }
}
