//! The node side: per connection, the handshake with the keys of the peer's address, then
//! the debug shell of §4.3 (`LNK_PING` and unknown commands are answered by the core).

use std::io;
use std::net::TcpStream;
use std::time::Duration;

use h2msg::handshake::{Handshake, KeyMode, RsaKeys};
use h2msg::iocom::Event;
use h2msg::wire::{Cmd, MsgHeader, WireOrder};

use crate::blocking::{DriveError, Link, drive_handshake, std_iocom};
use crate::keys::{KeyDir, KeyError, PeerKey};

/// How long a peer may take to complete the handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The shell's answer to one input line (§4.3): nothing for an empty line, the command
/// list for `help` or `?`, else `Unrecognized command: <word>`.
#[must_use]
pub fn shell_reply(line: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(h2msg::wire::until_nul(line)).into_owned();
    match text.split_whitespace().next() {
        None => None,
        Some("help" | "?") => Some("help        Command help\n".to_string()),
        Some(word) => Some(format!("Unrecognized command: {word}\n")),
    }
}

/// Why a connection ended badly.
#[derive(Debug)]
pub enum ServeError {
    /// No usable key for the peer, or our own keys are unusable.
    Keys(KeyError),
    /// The handshake or the transport failed.
    Drive(DriveError),
}

impl std::fmt::Display for ServeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Keys(e) => e.fmt(f),
            Self::Drive(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ServeError {}

impl From<io::Error> for ServeError {
    fn from(e: io::Error) -> Self {
        Self::Drive(DriveError::Io(e))
    }
}

impl From<DriveError> for ServeError {
    fn from(e: DriveError) -> Self {
        Self::Drive(e)
    }
}

/// The handshake for a TCP peer with the keys of its numeric address (§2.2).
///
/// # Errors
/// [`ServeError`].
pub fn handshake_tcp(stream: &mut TcpStream, keys: &KeyDir) -> Result<(), ServeError> {
    let peer = stream.peer_addr()?.ip();
    let mode = match keys.peer_key(peer).map_err(ServeError::Keys)? {
        PeerKey::Rsa(peer_key) => {
            let (own, _) = keys.own_keys().map_err(ServeError::Keys)?;
            let rsa = RsaKeys::new(own, peer_key, getrandom::SysRng).map_err(|e| {
                ServeError::Keys(KeyError::Format {
                    path: keys.peer_key_path(peer),
                    reason: e.to_string(),
                })
            })?;
            KeyMode::Rsa(rsa)
        }
        PeerKey::None => KeyMode::Plaintext,
    };
    let hs = Handshake::new(mode, &mut getrandom::SysRng, WireOrder::Little, None)
        .map_err(|e| ServeError::Drive(DriveError::Handshake(e)))?;
    stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
    drive_handshake(stream, hs, HANDSHAKE_TIMEOUT).map_err(ServeError::Drive)?;
    stream.set_read_timeout(None)?;
    Ok(())
}

/// Serves one accepted connection until the peer goes away.
///
/// # Errors
/// [`ServeError`].
pub fn serve(mut stream: TcpStream, keys: &KeyDir) -> Result<(), ServeError> {
    handshake_tcp(&mut stream, keys)?;
    let mut io = std_iocom(0).map_err(|e| io::Error::other(e.to_string()))?;
    io.accept(Cmd::DBG_SHELL)
        .map_err(|e| io::Error::other(e.to_string()))?;
    let mut link = Link::new(stream, io);
    while let Some(request) = link.next_event(|event| match event {
        Event::Message { msg, .. } if !msg.header().cmd.is_reply() => {
            Some((*msg.header(), msg.aux().to_vec()))
        }
        _ => None,
    })? {
        let Some((header, aux)) = request else {
            continue;
        };
        answer_shell(&mut link, &header, &aux)?;
    }
    Ok(())
}

fn answer_shell(link: &mut Link<TcpStream>, header: &MsgHeader, aux: &[u8]) -> io::Result<()> {
    let send = |link: &mut Link<TcpStream>, text: &[u8], last: bool| {
        link.io()
            .reply(header, 0, text, last)
            .map(drop)
            .map_err(|e| io::Error::other(e.to_string()))
    };
    if let Some(line) = shell_reply(aux) {
        let mut text = line.into_bytes();
        text.push(0);
        send(link, &text, false)?;
    }
    send(link, &[], true)
}

/// Most connections served at once by default.
pub const DEFAULT_MAX_LINKS: usize = 256;

/// `h2msg service`: accepts connections on `listen` and serves each in its own thread
/// (foreground; the C tool daemonised). Prints `listening on ADDR` once bound. A
/// connection beyond `max_links` is closed at once; a failing link costs only itself.
///
/// # Errors
/// The bind failure with the OS reason (§11 S4), or an accept failure.
pub fn run_service(listen: &str, keys: &KeyDir, max_links: usize) -> io::Result<()> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let listener = std::net::TcpListener::bind(listen)
        .map_err(|e| io::Error::new(e.kind(), format!("bind {listen}: {e}")))?;
    println!("listening on {}", listener.local_addr()?);
    let active = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let stream = stream?;
        if active.fetch_add(1, Ordering::SeqCst) >= max_links {
            active.fetch_sub(1, Ordering::SeqCst);
            drop(stream);
            continue;
        }
        let keys = keys.clone();
        let active = Arc::clone(&active);
        std::thread::spawn(move || {
            let peer = stream
                .peer_addr()
                .map(|a| a.to_string())
                .unwrap_or_default();
            if let Err(e) = serve(stream, &keys) {
                eprintln!("h2msg service: link {peer}: {e}");
            }
            active.fetch_sub(1, Ordering::SeqCst);
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shell_answers_as_section_4_3_says() {
        assert_eq!(shell_reply(b""), None);
        assert_eq!(shell_reply(b"\0garbage"), None);
        assert_eq!(
            shell_reply(b"help\0").as_deref(),
            Some("help        Command help\n")
        );
        assert_eq!(
            shell_reply(b"?").as_deref(),
            Some("help        Command help\n")
        );
        assert_eq!(
            shell_reply(b"bar baz\0").as_deref(),
            Some("Unrecognized command: bar\n")
        );
    }
}
