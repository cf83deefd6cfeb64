//! The client side of the tool: `shell` (the debug shell of §4.3, and for DMSG the one of
//! dmsg.md 6.4) and `ping`.

use std::collections::HashMap;
use std::io::{self, BufRead, Write};
use std::sync::mpsc::{self, TryRecvError};
use std::thread;
use std::time::{Duration, Instant};

use h2msg::cluster::SpanInput;
use h2msg::drive::{DriveError, Waited, reply_error};
use h2msg::trans::{DmsgKey, Received, Side};
use h2msg::wire::{Cmd, DMSG_ERR_LOSTLINK, MsgFlags, MsgHeader};
use h2msg::{DmsgEvent, Event, HandshakeError, KeyExchangeFailure, LinkEnd, Liveness};

use h2msg::ModeChoice;
use log::info;

use crate::blocking::{self, Link};
use crate::dmsg_shell;
use crate::keys::KeyDir;
use crate::link::{
    ClusterLink, HANDSHAKE_TIMEOUT, LinkError, LinkTerms, open_dmsg_link, open_link,
};
use crate::other;
use crate::proto::Proto;
use crate::service::router_conn;
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
    connect_within(endpoint, keys, mode, HANDSHAKE_TIMEOUT)
}

/// [`connect`], giving up on the connection after `timeout` and on the handshake after
/// `timeout` again.
///
/// # Errors
/// Connection or handshake failure, with its reason; `TimedOut` for either deadline.
pub fn connect_within(
    endpoint: &Endpoint,
    keys: &KeyDir,
    mode: ModeChoice,
    timeout: Duration,
) -> io::Result<(Link<Stream>, LinkTerms)> {
    let stream = endpoint.connect_within(timeout)?;
    let (link, terms) = open_link(stream, keys, timeout, mode, Liveness::default())
        .map_err(|e| setup_error(endpoint, e, Proto::Seed))?;
    info!("{endpoint}: link up ({terms})");
    Ok((link, terms))
}

/// What a seed-era client adds to a handshake cut short: the likely cause besides a
/// refusal, a peer speaking the other revision.
const OTHER_REVISION_HINT: &str = "a DMSG service sends no handshake to a .none peer and \
                                   reads ours as a bad magic, IOQ 1 SYNC: both ends need the \
                                   same --proto";

/// A link's setup failure as the tool reports it: `TimedOut` for the handshake's
/// deadline; a service that closed the connection before any byte of its handshake block
/// is said to have refused it (its admission limits, #13; its log says which); a seed-era
/// handshake cut short gets a word on the other likely cause, a peer speaking the other
/// revision. The IOQ code stays in the text.
fn setup_error(endpoint: &Endpoint, e: LinkError, proto: Proto) -> io::Error {
    match e {
        LinkError::Drive(DriveError::Handshake(HandshakeError::KeyExchange(
            KeyExchangeFailure::Timeout,
        ))) => io::Error::new(io::ErrorKind::TimedOut, format!("{endpoint}: {e}")),
        LinkError::Drive(DriveError::Handshake(HandshakeError::KeyExchange(
            KeyExchangeFailure::Truncated { received: 0 },
        ))) => {
            let hint = match proto {
                Proto::Seed => format!("; or {OTHER_REVISION_HINT}"),
                Proto::Dmsg => String::new(),
            };
            io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!(
                    "{endpoint}: refused by the service: it closed the connection before any \
                     handshake byte ({e}; the service's log says why{hint})"
                ),
            )
        }
        LinkError::Drive(DriveError::Handshake(HandshakeError::KeyExchange(
            KeyExchangeFailure::Truncated { .. },
        ))) if proto == Proto::Seed => other(format!("{endpoint}: {e} ({OTHER_REVISION_HINT})")),
        e => other(e),
    }
}

/// How `h2msg shell` waits for the connection, and again for the handshake, by default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = HANDSHAKE_TIMEOUT;

/// How long `h2msg shell` waits for each answer by default.
pub const DEFAULT_REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// How the text of the service's replies is written out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyText {
    /// As UTF-8 text (invalid sequences replaced), control characters included: for a
    /// program that reads it.
    Text,
    /// Control characters other than newline and tab shown escaped (`\x1b`): for a
    /// terminal, which a service could otherwise drive (titles, clearing, cursor moves).
    Escaped,
    /// The bytes unchanged (`--raw`).
    Raw,
}

impl ReplyText {
    fn render(self, text: &[u8]) -> Vec<u8> {
        match self {
            Self::Raw => text.to_vec(),
            Self::Text => String::from_utf8_lossy(text).into_owned().into_bytes(),
            Self::Escaped => escape_controls(&String::from_utf8_lossy(text)).into_bytes(),
        }
    }
}

/// `text` with every control character but newline and tab written as an escape: `\xNN`
/// for C0 and DEL, `\u{NN}` for C1 (which some terminals also obey).
#[must_use]
pub fn escape_controls(text: &str) -> String {
    use std::fmt::Write as _;
    let mut shown = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' | '\t' => shown.push(c),
            c if c.is_ascii_control() => {
                let _ = write!(shown, "\\x{:02x}", u32::from(c));
            }
            c if c.is_control() => {
                let _ = write!(shown, "\\u{{{:x}}}", u32::from(c));
            }
            c => shown.push(c),
        }
    }
    shown
}

/// How `h2msg shell` waits and shows the service's text.
#[derive(Clone, Debug)]
pub struct ShellOptions {
    /// Bound on the connection, and again on the handshake.
    pub connect_timeout: Duration,
    /// Bound on each wait for the service's answer, and on each write to it.
    pub reply_timeout: Duration,
    /// How the replies' text is written out.
    pub reply_text: ReplyText,
    /// The protocol revision the service speaks.
    pub proto: Proto,
    /// With DMSG: send the lines to the node registered under this label, anywhere in the
    /// cluster, as transactions routed over its span (docs/dmsg.md 5.8), not to the
    /// service connected to.
    pub via: Option<String>,
}

impl Default for ShellOptions {
    fn default() -> Self {
        Self {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            reply_timeout: DEFAULT_REPLY_TIMEOUT,
            reply_text: ReplyText::Escaped,
            proto: Proto::Seed,
            via: None,
        }
    }
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
    shell_exchange_as(
        link,
        line,
        out,
        prompt,
        ReplyText::Text,
        DEFAULT_REPLY_TIMEOUT,
    )
}

/// [`shell_exchange`] with the replies' text written out as `reply_text` says, giving up
/// when the final reply has not come within `reply_timeout`.
///
/// # Errors
/// As [`shell_exchange`]; `TimedOut` when `reply_timeout` passes.
pub fn shell_exchange_as(
    link: &mut Link<Stream>,
    line: &str,
    out: &mut impl Write,
    prompt: bool,
    reply_text: ReplyText,
    reply_timeout: Duration,
) -> io::Result<()> {
    let mut aux = line.as_bytes().to_vec();
    if !aux.is_empty() {
        aux.push(0);
    }
    link.io()
        .send(MsgHeader::new(Cmd::DBG_SHELL), &[], &aux)
        .map_err(other)?;
    let deadline = blocking::now() + reply_timeout;
    loop {
        match link.next_event_until(deadline, |e| reply_of(&e, reply_text))? {
            Waited::Event(Some((true, _))) => {
                if prompt {
                    write!(out, "debug> ")?;
                    out.flush()?;
                }
                return Ok(());
            }
            Waited::Event(Some((false, text))) => out.write_all(&text)?,
            Waited::Event(None) | Waited::Woken => {}
            Waited::Closed => return Err(other("the service closed the connection")),
            Waited::Elapsed => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no final reply from the service",
                ));
            }
        }
    }
}

/// A shell reply's text as `reply_text` renders it, and whether it was the final (empty)
/// one; `None` for any other event.
fn reply_of(event: &Event<'_>, reply_text: ReplyText) -> Option<(bool, Vec<u8>)> {
    match event {
        Event::Message { msg, .. } if msg.header().cmd.is_reply() => {
            Some((msg.aux().is_empty(), reply_text.render(msg.aux_until_nul())))
        }
        _ => None,
    }
}

/// How long the shell drives its link between looks at its input, while nobody types: the
/// link stays alive (the service's keepalive pings are answered) and a typed line waits at
/// most this long.
const IDLE_TURN: Duration = Duration::from_millis(50);

/// `h2msg shell`: connects, prints `debug: connected`, gets the prompt, then sends each
/// input line and prints the answers; at the end of input it has every answer and returns.
/// Each deadline of `options` that passes ends it with an error naming the option. A DMSG
/// service (`options.proto`) gets [`dmsg_shell`].
///
/// # Errors
/// Connection, handshake or I/O failure, or a deadline passed.
pub fn shell(
    endpoint: &Endpoint,
    keys: &KeyDir,
    mode: ModeChoice,
    options: &ShellOptions,
    input: impl BufRead + Send + 'static,
    out: &mut impl Write,
) -> io::Result<()> {
    if options.proto == Proto::Dmsg {
        return dmsg_shell(endpoint, keys, mode, options, input, out);
    }
    let (mut link, _) = connect_within(endpoint, keys, mode, options.connect_timeout)
        .map_err(|e| past_deadline(e, "--connect-timeout", options.connect_timeout))?;
    writeln!(out, "debug: connected")?;
    let reply_timeout = options.reply_timeout;
    let exchange = |link: &mut Link<Stream>, line: &str, out: &mut _| {
        shell_exchange_as(link, line, out, true, options.reply_text, reply_timeout)
            .map_err(|e| past_deadline(e, "--reply-timeout", reply_timeout))
    };
    exchange(&mut link, "", out)?;
    let typed = typed_lines(input);
    loop {
        match typed.try_recv() {
            Ok(line) => exchange(&mut link, truncate_line(&line?), out)?,
            Err(TryRecvError::Disconnected) => break,
            Err(TryRecvError::Empty) => {
                let until = blocking::now() + IDLE_TURN;
                match link.next_event_until(until, |e| reply_of(&e, options.reply_text))? {
                    Waited::Event(Some((_, text))) => out.write_all(&text)?,
                    Waited::Event(None) | Waited::Elapsed | Waited::Woken => {}
                    Waited::Closed => return Err(other("the service closed the connection")),
                }
            }
        }
    }
    writeln!(out)?;
    Ok(())
}

/// The lines of `input`, read on a thread of their own so that the link is driven while a
/// person thinks: a link left alone would miss the service's keepalive pings and be
/// dropped as dead.
fn typed_lines(input: impl BufRead + Send + 'static) -> mpsc::Receiver<io::Result<String>> {
    let (lines, typed) = mpsc::sync_channel(64);
    thread::spawn(move || {
        for line in input.lines() {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    typed
}

/// A DMSG shell client's link: the text it prints and how long it waits.
struct DmsgShell<'a, W> {
    link: &'a mut ClusterLink,
    out: &'a mut W,
    reply_text: ReplyText,
    reply_timeout: Duration,
    /// What was printed last ended a line (or nothing was).
    line_ended: bool,
}

impl<W: Write> DmsgShell<'_, W> {
    /// Sends one line as a one-way `DBG_SHELL` (`None`: a message without aux, as the
    /// libdmsg client asks for its first prompt), then prints the service's text as it
    /// comes until the prompt that ends the answer (dmsg.md 6.4), which is printed too if
    /// `show_prompt`.
    fn line(&mut self, line: Option<&str>, show_prompt: bool) -> io::Result<()> {
        let aux = line
            .map(|l| [l.as_bytes(), &[0]].concat())
            .unwrap_or_default();
        self.link
            .io()
            .send_one_way(Cmd::DBG_SHELL, &[], &aux)
            .map_err(other)?;
        let deadline = blocking::now() + self.reply_timeout;
        loop {
            match self.link.next_event_until(deadline, dmsg_text)? {
                Waited::Event(Some(text)) if text == dmsg_shell::PROMPT.as_bytes() => {
                    if show_prompt {
                        self.print(&text)?;
                    }
                    return Ok(());
                }
                Waited::Event(Some(text)) => self.print(&text)?,
                Waited::Event(None) | Waited::Woken => {}
                Waited::Closed => return Err(other("the service closed the connection")),
                Waited::Elapsed => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no prompt from the service",
                    ));
                }
            }
        }
    }

    /// Drives the link for a moment while no line is typed, printing what comes (a
    /// `ping reply`).
    fn idle(&mut self) -> io::Result<()> {
        let until = blocking::now() + IDLE_TURN;
        match self.link.next_event_until(until, dmsg_text)? {
            Waited::Event(Some(text)) => self.print(&text),
            Waited::Event(None) | Waited::Elapsed | Waited::Woken => Ok(()),
            Waited::Closed => Err(other("the service closed the connection")),
        }
    }

    fn print(&mut self, text: &[u8]) -> io::Result<()> {
        let shown = self.reply_text.render(text);
        self.out.write_all(&shown)?;
        if let Some(&last) = shown.last() {
            self.line_ended = last == b'\n';
        }
        self.out.flush()
    }
}

/// Sends `line` on `link` as the DMSG shell client does (`None`: the empty `DBG_SHELL`
/// that asks for the first prompt) and appends the service's text up to its prompt (not
/// included) to `out`, waiting at most `reply_timeout` for it.
///
/// # Errors
/// I/O failure, the service closing, or no prompt in time (`TimedOut`).
pub(crate) fn dmsg_shell_text(
    link: &mut ClusterLink,
    line: Option<&str>,
    out: &mut Vec<u8>,
    reply_timeout: Duration,
) -> io::Result<()> {
    DmsgShell {
        link,
        out,
        reply_text: ReplyText::Text,
        reply_timeout,
        line_ended: true,
    }
    .line(line, false)
}

/// The text of a one-way `DBG_SHELL|REPLY`, up to its NUL; `None` for any other event.
fn dmsg_text(event: DmsgEvent<'_>) -> Option<Vec<u8>> {
    match event {
        DmsgEvent::Message {
            msg,
            received: Received::OneWay { parent: None },
        } if msg.header().command().switch_key() == Cmd::DBG_SHELL.set(MsgFlags::REPLY).raw() => {
            Some(msg.aux_until_nul().to_vec())
        }
        _ => None,
    }
}

/// `h2msg shell --proto dmsg`: connects (no handshake for a `.none` peer, dmsg.md 1.2),
/// opens its `LNK_CONN` (a ROUTER wanting every span type, as the libdmsg shell), prints
/// `debug: connected`, sends an empty `DBG_SHELL` for the first prompt as the libdmsg
/// client does, then each input line, printing the service's text as it comes, prompts
/// included. A libdmsg service never closes the link, so the end of an answer is its
/// prompt: each line waits for it, within `--reply-timeout`. At the end of input one more
/// empty line is sent and its prompt awaited (not printed): the service answers in order,
/// so everything the earlier lines caused — `ping reply` — has been printed by then.
///
/// Errors: connection, handshake or I/O failure, the link failing (its IOQ code), or a
/// deadline passed.
fn dmsg_shell(
    endpoint: &Endpoint,
    keys: &KeyDir,
    mode: ModeChoice,
    options: &ShellOptions,
    input: impl BufRead + Send + 'static,
    out: &mut impl Write,
) -> io::Result<()> {
    let reply_timeout = options.reply_timeout;
    let mut link = dmsg_client_link(endpoint, keys, mode, options)?;
    writeln!(out, "debug: connected")?;
    if let Some(label) = &options.via {
        return routed_shell(&mut link, label, options, input, out);
    }
    let mut shell = DmsgShell {
        link: &mut link,
        out,
        reply_text: options.reply_text,
        reply_timeout,
        line_ended: true,
    };
    let timed = |e| past_deadline(e, "--reply-timeout", reply_timeout);
    shell.line(None, true).map_err(|e| {
        if shell.link.io().peer_conn().is_some() {
            return timed(e);
        }
        // No LNK_CONN came first: likely no DMSG node at all. The kind stays (a deadline).
        let e = io::Error::new(
            e.kind(),
            format!(
                "{e} (no LNK_CONN from the service: does it speak DMSG? both ends need \
             the same --proto)"
            ),
        );
        timed(e)
    })?;
    let typed = typed_lines(input);
    loop {
        match typed.try_recv() {
            Ok(line) => shell
                .line(Some(truncate_line(&line?)), true)
                .map_err(timed)?,
            Err(TryRecvError::Disconnected) => break,
            Err(TryRecvError::Empty) => shell.idle()?,
        }
    }
    shell.line(None, false).map_err(timed)?;
    // The last prompt's line ends, as the seed client's does.
    if !shell.line_ended {
        writeln!(shell.out)?;
    }
    Ok(())
}

/// What a routed shell waits for.
enum ViaEvent {
    /// A span opened: its msgid, its node label.
    Span(u64, Vec<u8>),
    /// A span withdrawn.
    SpanGone(u64),
    /// Text of an answer element on our transaction; `Some(error)` if it closed it.
    Answer(u64, Vec<u8>, Option<u32>),
    Other,
}

fn via_event(event: DmsgEvent<'_>) -> ViaEvent {
    let DmsgEvent::Message { msg, received } = event else {
        if let DmsgEvent::Lost(lost) = event {
            return ViaEvent::Answer(lost.key.msgid, Vec::new(), Some(DMSG_ERR_LOSTLINK));
        }
        return ViaEvent::Other;
    };
    match SpanInput::of(&msg, &received) {
        Some(SpanInput::SpanOpened(msgid, span, _)) => {
            return ViaEvent::Span(msgid, span.pfs_label().to_vec());
        }
        Some(SpanInput::SpanWithdrawn(msgid)) => return ViaEvent::SpanGone(msgid),
        _ => {}
    }
    match received {
        Received::Element {
            key, effective_cmd, ..
        } if key.side == Side::Local => {
            let closed = effective_cmd.flags().contains(MsgFlags::DELETE);
            let text = if msg.header().command().switch_key()
                == Cmd::DBG_SHELL.set(MsgFlags::REPLY).raw()
            {
                msg.aux_until_nul().to_vec()
            } else {
                Vec::new()
            };
            ViaEvent::Answer(key.msgid, text, closed.then_some(msg.header().error))
        }
        _ => ViaEvent::Other,
    }
}

/// `h2msg shell --proto dmsg --via LABEL`: waits (within `--reply-timeout`) for a span
/// whose node label is LABEL — the service relays its cluster to us once our `LNK_CONN`
/// is in — then sends each input line as a `DBG_SHELL` transaction opened under that span
/// (dmsg.md 4.5, D8), relayed hop by hop to the node that registered it, and prints the
/// text of its answer until the node closes it. A close with an error (LOSTLINK when the
/// route went) ends the shell with that error.
fn routed_shell(
    link: &mut ClusterLink,
    label: &str,
    options: &ShellOptions,
    input: impl BufRead + Send + 'static,
    out: &mut impl Write,
) -> io::Result<()> {
    let reply_timeout = options.reply_timeout;
    let mut spans: HashMap<u64, Vec<u8>> = HashMap::new();
    let wanted = label.as_bytes();
    let find = |spans: &HashMap<u64, Vec<u8>>| {
        spans
            .iter()
            .filter(|(_, l)| l.as_slice() == wanted)
            .map(|(m, _)| *m)
            .min()
    };
    let timed_out = |what: &str| {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{what} (--reply-timeout {} s)", reply_timeout.as_secs_f64()),
        )
    };
    // Drives the link until `done`, keeping the span list current.
    let wait = |link: &mut ClusterLink,
                spans: &mut HashMap<u64, Vec<u8>>,
                request: Option<u64>,
                out: &mut dyn Write|
     -> io::Result<bool> {
        let deadline = blocking::now() + reply_timeout;
        loop {
            match link.next_event_until(deadline, via_event)? {
                Waited::Event(ViaEvent::Span(msgid, l)) => {
                    spans.insert(msgid, l);
                    if request.is_none() && find(spans).is_some() {
                        return Ok(true);
                    }
                }
                Waited::Event(ViaEvent::SpanGone(msgid)) => {
                    spans.remove(&msgid);
                }
                Waited::Event(ViaEvent::Answer(msgid, text, closed)) if Some(msgid) == request => {
                    out.write_all(&options.reply_text.render(&text))?;
                    if let Some(error) = closed {
                        out.flush()?;
                        if error != 0 {
                            return Err(other(format!(
                                "{label}: the routed request ended with error {error:#x}{}",
                                if error == DMSG_ERR_LOSTLINK {
                                    " (LOSTLINK: the route is gone)"
                                } else {
                                    ""
                                }
                            )));
                        }
                        return Ok(true);
                    }
                }
                Waited::Event(_) | Waited::Woken => {}
                Waited::Closed => return Err(other("the service closed the connection")),
                Waited::Elapsed => return Ok(false),
            }
        }
    };
    if find(&spans).is_none() && !wait(link, &mut spans, None, out)? {
        return Err(timed_out(&format!("no node {label:?} in the cluster")));
    }
    let typed = typed_lines(input);
    for line in typed {
        let line = line?;
        let Some(span) = find(&spans) else {
            return Err(other(format!("{label}: its span was withdrawn")));
        };
        let aux = [truncate_line(&line).as_bytes(), &[0]].concat();
        // CREATE|DELETE: the request is whole, so every relay on the way frees its twin
        // once the answer's DELETE has passed (docs/dmsg.md 5.8).
        let request = link
            .io()
            .open(
                Cmd::DBG_SHELL.set(MsgFlags::DELETE),
                Some(DmsgKey::theirs(span)),
                &[],
                &aux,
            )
            .map_err(other)?;
        if !wait(link, &mut spans, Some(request.msgid), out)? {
            return Err(timed_out(&format!("no answer from {label:?}")));
        }
    }
    Ok(())
}

/// A DMSG client's link to `endpoint`, set up within `--connect-timeout`, its
/// `LNK_CONN` (a ROUTER wanting every span type, as the libdmsg shell) sent.
fn dmsg_client_link(
    endpoint: &Endpoint,
    keys: &KeyDir,
    mode: ModeChoice,
    options: &ShellOptions,
) -> io::Result<ClusterLink> {
    let connect_timeout = options.connect_timeout;
    let stream = endpoint
        .connect_within(connect_timeout)
        .map_err(|e| past_deadline(e, "--connect-timeout", connect_timeout))?;
    let (mut link, terms) =
        open_dmsg_link(stream, keys, connect_timeout, mode, Liveness::default())
            .map_err(|e| setup_error(endpoint, e, Proto::Dmsg))
            .map_err(|e| past_deadline(e, "--connect-timeout", connect_timeout))?;
    info!("{endpoint}: link up ({terms}, dmsg)");
    link.io()
        .open(Cmd::DMSG_LNK_CONN, None, router_conn().as_ext(), &[])
        .map_err(other)?;
    Ok(link)
}

/// `h2msg tree HOST`: the `tree` dump of the DMSG service at `endpoint` (docs/dmsg.md
/// 6.4) — or, with `options.via`, of the node registered under that label, asked over a
/// routed transaction — printed as it comes, without prompts.
///
/// # Errors
/// As [`shell`].
pub fn tree(
    endpoint: &Endpoint,
    keys: &KeyDir,
    mode: ModeChoice,
    options: &ShellOptions,
    out: &mut impl Write,
) -> io::Result<()> {
    let mut link = dmsg_client_link(endpoint, keys, mode, options)?;
    if let Some(label) = &options.via {
        return routed_shell(&mut link, label, options, io::Cursor::new("tree\n"), out);
    }
    let reply_timeout = options.reply_timeout;
    let timed = |e| past_deadline(e, "--reply-timeout", reply_timeout);
    let mut text = Vec::new();
    dmsg_shell_text(&mut link, None, &mut text, reply_timeout).map_err(timed)?;
    text.clear();
    dmsg_shell_text(&mut link, Some("tree"), &mut text, reply_timeout).map_err(timed)?;
    out.write_all(&options.reply_text.render(&text))?;
    out.flush()
}

fn past_deadline(e: io::Error, option: &str, limit: Duration) -> io::Error {
    match e.kind() {
        // A socket timeout reads as WouldBlock on Unix.
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{e}: gave up after {} s ({option})", limit.as_secs_f64()),
        ),
        _ => e,
    }
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
    /// The reply's error field: 0 from h2msg, 0x20 from a 2012 C node (16 bits wide in
    /// the seed era, 32 in DMSG).
    pub error: u32,
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
        let error = ping_answer(&mut link, msgid)?;
        replies.push(PingReply {
            rtt: sent.elapsed(),
            error: u32::from(error),
        });
    }
    Ok(replies)
}

/// Waits for the answer to our `LNK_PING` `msgid` and returns its error field, passing
/// over other events. A ping is a message with a msgid but no transaction (§4.2), as
/// the 2012 tools send it, so the [`handle`](crate::handle)'s requests — transactions —
/// do not carry it; this is the ping client's own wait on the low-level loop.
///
/// # Errors
/// How the link failed; [`DriveError::Closed`] (EOF 2) if the peer closed it first.
pub fn ping_answer<S: blocking::DuplexStream>(
    link: &mut Link<S>,
    msgid: u32,
) -> Result<u16, blocking::DriveError> {
    loop {
        match link.next_event(|event| reply_error(&event, msgid))? {
            Some(Some(error)) => return Ok(error),
            Some(None) => {}
            None => return Err(DriveError::Closed),
        }
    }
}

/// How long `h2msg ping --proto dmsg` waits for each reply.
pub const DMSG_PING_TIMEOUT: Duration = DEFAULT_REPLY_TIMEOUT;

/// What a DMSG ping waits for, from one event.
enum PingEvent {
    /// A one-way `LNK_PING|REPLY`, with its error field.
    Reply(u32),
    /// The link went down.
    Down(LinkEnd),
    /// Anything else (the peer's `LNK_CONN`, its answer to ours, spans).
    Other,
}

fn ping_event(event: &DmsgEvent<'_>) -> PingEvent {
    match event {
        DmsgEvent::Message { msg, .. } => {
            let cmd = msg.header().command();
            let reply = Cmd::LNK_PING.set(MsgFlags::REPLY);
            if cmd.raw() & !(MsgFlags::REVTRANS | MsgFlags::REVCIRC).bits() == reply.raw()
                && msg.header().msgid == 0
            {
                PingEvent::Reply(msg.header().error)
            } else {
                PingEvent::Other
            }
        }
        DmsgEvent::LinkDown(end) => PingEvent::Down(*end),
        _ => PingEvent::Other,
    }
}

/// Waits at most [`DMSG_PING_TIMEOUT`] for the next one-way `LNK_PING|REPLY` on `link`
/// (to `endpoint`, named in errors) and returns its error field; other messages pass.
///
/// # Errors
/// I/O failure, the link going down or closed, or no reply in time (`TimedOut`).
pub(crate) fn wait_dmsg_ping_reply(link: &mut ClusterLink, endpoint: &Endpoint) -> io::Result<u32> {
    let deadline = blocking::now() + DMSG_PING_TIMEOUT;
    loop {
        match link.next_event_until(deadline, |e| ping_event(&e))? {
            Waited::Event(PingEvent::Reply(error)) => return Ok(error),
            Waited::Event(PingEvent::Other) | Waited::Woken => {}
            Waited::Event(PingEvent::Down(end)) => {
                return Err(other(format!("{endpoint}: the link went down: {end:?}")));
            }
            Waited::Closed => return Err(other(format!("{endpoint}: the peer closed"))),
            Waited::Elapsed => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{endpoint}: no LNK_PING reply within {} s",
                        DMSG_PING_TIMEOUT.as_secs_f64()
                    ),
                ));
            }
        }
    }
}

/// `h2msg ping --proto dmsg`: `count` one-way `LNK_PING`s, one at a time, each waiting
/// for the one-way `LNK_PING|REPLY` a DMSG node answers with (D11; one-way messages carry
/// no msgid, so with one ping outstanding the next reply is its answer). The link is set
/// up as the service's are (`.none`: no handshake; `.pub`: the RSA handshake and `choice`),
/// and opens its `LNK_CONN` first. Each reply is waited for at most [`DMSG_PING_TIMEOUT`].
///
/// # Errors
/// Connection, handshake or I/O failure, the link going down, or a reply that does not
/// come in time (`TimedOut`).
pub fn ping_dmsg(
    endpoint: &Endpoint,
    keys: &KeyDir,
    choice: ModeChoice,
    count: u32,
) -> io::Result<Vec<PingReply>> {
    let stream = endpoint.connect_within(HANDSHAKE_TIMEOUT)?;
    let (mut link, terms) = open_dmsg_link(stream, keys, HANDSHAKE_TIMEOUT, choice, Liveness::OFF)
        .map_err(|e| other(format!("{endpoint}: {e}")))?;
    link.io()
        .open(
            Cmd::DMSG_LNK_CONN,
            None,
            crate::service::router_conn().as_ext(),
            &[],
        )
        .map_err(other)?;
    info!("{endpoint}: DMSG link up ({terms})");
    let mut replies = Vec::new();
    for _ in 0..count {
        let sent = Instant::now();
        link.io()
            .send_one_way(Cmd::LNK_PING, &[], &[])
            .map_err(other)?;
        let error = wait_dmsg_ping_reply(&mut link, endpoint)?;
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
    fn control_characters_are_escaped_but_lines_and_tabs_kept() {
        assert_eq!(
            escape_controls("a\x1b[2J\tb\r\n\x07\u{7f}\u{9b}é"),
            "a\\x1b[2J\tb\\x0d\n\\x07\\x7f\\u{9b}é"
        );
    }

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
