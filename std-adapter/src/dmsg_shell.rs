//! The DMSG debug shell's logic (dmsg.md 6.4), without I/O: one received line in, the
//! output lines and whether to ping out; and the spans a service received, which `tree`
//! prints. The service sends each output line as its own one-way `DBG_SHELL|REPLY`, then
//! the [`PROMPT`] as one more.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use h2msg::wire::{LnkSpan, PeerType, Uuid, WireOrder};

/// The text a service sends after the output of every command.
pub const PROMPT: &str = "debug> ";

/// What `help` and `?` print, one message a line.
pub const HELP: [&str; 4] = [
    "help            Command help\n",
    "span <host>     Span to target host\n",
    "tree            Dump spanning tree\n",
    "@span <cmd>     Issue via circuit\n",
];

/// What the shell does with one line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShellAnswer {
    /// The output, one message each, before the prompt.
    pub lines: Vec<String>,
    /// Send a one-way `LNK_PING` on this link after the lines (`ping`); its reply prints
    /// [`PING_REPLY`].
    pub ping: bool,
    /// `span <host>`: start an outgoing link to this host, then print [`span_line`] of
    /// how that went (the only output; `lines` is empty then).
    pub span: Option<String>,
    /// `status` (h2msg's addition, not in `help`; libdmsg answers `Unrecognized
    /// command`): the caller prints its links and kept-up targets, one message a line.
    pub status: bool,
}

/// What `span <host>` prints: `Connected to <host>` once the outgoing link to `host` is
/// set up, `Connection to <host> failed` if it is not.
#[must_use]
pub fn span_line(host: &str, connected: bool) -> String {
    if connected {
        format!("Connected to {host}\n")
    } else {
        format!("Connection to {host} failed\n")
    }
}

/// What the shell prints, without a prompt, when the reply to its `ping` arrives.
pub const PING_REPLY: &str = "ping reply\n";

/// The answer to one received `DBG_SHELL` aux (`None`: the message had no aux). Only
/// the text up to the first NUL counts, as a receiver forces the last aux byte to NUL
/// (dmsg.md 2.5); the first word, split on spaces and tabs, selects the command. `tree`
/// prints `spans`. `span <host>` asks the caller to connect ([`ShellAnswer::span`]);
/// without a host it fails at once, naming an empty host.
#[must_use]
pub fn answer(aux: Option<&[u8]>, spans: &SpanTree) -> ShellAnswer {
    let line = aux.map_or(&[][..], h2msg::wire::until_nul);
    let line = String::from_utf8_lossy(line);
    let mut words = line.split([' ', '\t']).filter(|w| !w.is_empty());
    let lines = match words.next() {
        None => Vec::new(),
        Some("help" | "?") => HELP.iter().map(|l| (*l).to_string()).collect(),
        Some("tree") => spans.dump(),
        Some("span") => match words.next() {
            Some(host) => {
                return ShellAnswer {
                    span: Some(host.to_string()),
                    ..ShellAnswer::default()
                };
            }
            None => vec![span_line("", false)],
        },
        Some("ping") => {
            return ShellAnswer {
                lines: vec!["sending ping\n".to_string()],
                ping: true,
                ..ShellAnswer::default()
            };
        }
        Some("status") => {
            return ShellAnswer {
                status: true,
                ..ShellAnswer::default()
            };
        }
        Some(word) => vec![format!("Unrecognized command: {word}\n")],
    };
    ShellAnswer {
        lines,
        ..ShellAnswer::default()
    }
}

/// One received span, as `tree` needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct SpanLink {
    peer_type: PeerType,
    peer_id: Uuid,
    peer_label: Vec<u8>,
    pfs_type: u8,
    pfs_id: Uuid,
    pfs_label: Vec<u8>,
    dist: u32,
    rnss: u32,
    /// Arrival order in the tree: the last tie-breaker (D17).
    seq: u64,
}

/// The spans received on every link of a service, by (link, msgid as the sender
/// allocated it). Nothing is relayed from it yet.
#[derive(Debug, Default)]
pub struct SpanTree {
    links: BTreeMap<(u64, u64), SpanLink>,
    next_seq: u64,
}

impl SpanTree {
    /// Records the span `msgid` received on link `via` (a new `LNK_SPAN|CREATE`), its
    /// integers read in `order`.
    pub fn insert(&mut self, via: u64, msgid: u64, span: &LnkSpan, order: WireOrder) {
        self.next_seq += 1;
        let link = SpanLink {
            peer_type: span.peer_type(),
            peer_id: span.peer_id,
            peer_label: span.peer_label().to_vec(),
            pfs_type: span.pfs_type(),
            pfs_id: span.pfs_id,
            pfs_label: span.pfs_label().to_vec(),
            dist: span.dist(order),
            rnss: span.rnss(order),
            seq: self.next_seq,
        };
        self.links.insert((via, msgid), link);
    }

    /// Forgets the span `msgid` of link `via` (withdrawn, or lost with the link).
    pub fn remove(&mut self, via: u64, msgid: u64) {
        self.links.remove(&(via, msgid));
    }

    /// Forgets every span received on link `via`.
    pub fn remove_link(&mut self, via: u64) {
        self.links.retain(|&(link, _), _| link != via);
    }

    /// Spans held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.links.len()
    }

    /// Whether no span is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    /// The `tree` dump (dmsg.md 6.4), one line a message: each cluster (ordered by peer
    /// type, `peer_id`, `peer_label`), its nodes (by `pfs_label`, then `pfs_id`; a node
    /// shows the `pfs_type` of its first span), its links (by `dist`, `rnss`, then arrival).
    /// `via` is the service's number of the link the span came on. No `Relay-out` lines:
    /// h2msg relays nothing yet.
    #[must_use]
    pub fn dump(&self) -> Vec<String> {
        type NodeKey<'a> = (&'a [u8], Uuid);
        type ClusterKey<'a> = (PeerType, Uuid, &'a [u8]);
        type Links<'a> = Vec<(u64, u64, &'a SpanLink)>;
        let mut clusters: BTreeMap<ClusterKey<'_>, BTreeMap<NodeKey<'_>, Links<'_>>> =
            BTreeMap::new();
        for (&(via, msgid), link) in &self.links {
            clusters
                .entry((link.peer_type, link.peer_id, &link.peer_label))
                .or_default()
                .entry((&link.pfs_label, link.pfs_id))
                .or_default()
                .push((via, msgid, link));
        }
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        let mut out = Vec::new();
        for ((peer_type, peer_id, peer_label), nodes) in clusters {
            out.push(format!(
                "Cluster {peer_type} {peer_id} ({})\n",
                text(peer_label)
            ));
            for ((pfs_label, pfs_id), mut links) in nodes {
                links.sort_by_key(|&(_, _, l)| (l.dist, l.rnss, l.seq));
                let first = links.iter().map(|&(_, _, l)| l).min_by_key(|l| l.seq);
                let pfs_type = first.map_or(0, |l| l.pfs_type);
                out.push(format!(
                    "    Node {pfs_type:02x} {pfs_id} ({})\n",
                    text(pfs_label)
                ));
                for (via, msgid, link) in links {
                    out.push(format!(
                        "\tSLink msgid {msgid:016x} dist={} via {via}\n",
                        link.dist
                    ));
                }
            }
        }
        out
    }
}

/// A [`SpanTree`] shared by a service's links.
#[derive(Debug, Default)]
pub struct SpanRegistry(Mutex<SpanTree>);

impl SpanRegistry {
    /// The tree, to read or change.
    pub fn lock(&self) -> MutexGuard<'_, SpanTree> {
        // A link thread that panicked while holding it left a consistent map behind.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

    use super::*;

    fn lines(answer: &ShellAnswer) -> Vec<&str> {
        answer.lines.iter().map(String::as_str).collect()
    }

    /// The expected strings are DMSG.md 6.4's and the recorded libdmsg service's
    /// (`vectors/dmsg-peer/none-shell.decoded.txt`), written out.
    #[test]
    fn the_shell_answers_as_the_libdmsg_service_does() {
        let none = SpanTree::default();
        for help in [&b"help\0"[..], b"?", b"help me\0"] {
            let a = answer(Some(help), &none);
            assert_eq!(
                lines(&a),
                [
                    "help            Command help\n",
                    "span <host>     Span to target host\n",
                    "tree            Dump spanning tree\n",
                    "@span <cmd>     Issue via circuit\n",
                ]
            );
            assert!(!a.ping);
        }
        let ping = answer(Some(b"ping\0"), &none);
        assert_eq!(lines(&ping), ["sending ping\n"]);
        assert!(ping.ping);
        assert_eq!(
            lines(&answer(Some(b"x\0"), &none)),
            ["Unrecognized command: x\n"]
        );
        assert_eq!(
            lines(&answer(Some(b"\tfoo  bar\0"), &none)),
            ["Unrecognized command: foo\n"]
        );
        // `span <host>` leaves the connecting to the service, which prints one of two
        // lines; without a host it fails at once.
        let span = answer(Some(b"span\t10.0.0.9:1234 extra\0"), &none);
        assert_eq!(span.span.as_deref(), Some("10.0.0.9:1234"));
        assert!(span.lines.is_empty() && !span.ping);
        assert_eq!(span_line("10.0.0.9", true), "Connected to 10.0.0.9\n");
        assert_eq!(
            span_line("10.0.0.9", false),
            "Connection to 10.0.0.9 failed\n"
        );
        assert_eq!(
            lines(&answer(Some(b"span \0"), &none)),
            ["Connection to  failed\n"]
        );
        assert_eq!(answer(Some(b"span\0"), &none).span, None);
        // An empty line, blanks only, no aux, or text after a NUL only: just the prompt.
        for empty in [
            Some(&b""[..]),
            Some(b"\0"),
            Some(b" \t\0"),
            Some(b"\0help"),
            None,
        ] {
            assert_eq!(answer(empty, &none), ShellAnswer::default(), "{empty:?}");
        }
        assert_eq!(answer(Some(b"tree\0"), &none), ShellAnswer::default());
        // `status` (h2msg's word) leaves the text to the service; only that word does.
        let status = answer(Some(b"status extra\0"), &none);
        assert!(status.status && status.lines.is_empty() && !status.ping);
        assert!(!answer(Some(b"statusx\0"), &none).status);
        assert!(!answer(Some(b"help\0"), &none).status);
        assert_eq!(PROMPT, "debug> ");
        assert_eq!(PING_REPLY, "ping reply\n");
    }

    /// DMSG.md 2.8's V2 span, received with msgid 2 on link 4, gives the measured dump of
    /// 6.4.
    #[test]
    fn tree_prints_the_measured_dump_of_the_v2_span() {
        let mut span = LnkSpan::new();
        span.peer_id = Uuid::from_bytes([
            0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
            0xee, 0xff,
        ]);
        span.pfs_id = Uuid::from_bytes([
            0x0f, 0x1e, 0x2d, 0x3c, 0x4b, 0x5a, 0x69, 0x78, 0x87, 0x96, 0xa5, 0xb4, 0xc3, 0xd2,
            0xe1, 0xf0,
        ]);
        span.set_peer_type(PeerType::HAMMER2);
        span.set_dist(2, WireOrder::Little);
        span.set_rnss(0x0102_0304, WireOrder::Little);
        span.set_peer_label(b"clusterA").unwrap();
        span.set_pfs_label(b"node1").unwrap();
        let mut tree = SpanTree::default();
        tree.insert(4, 2, &span, WireOrder::Little);
        let dump = answer(Some(b"tree\0"), &tree);
        assert_eq!(
            lines(&dump),
            [
                "Cluster HAMMER2 33221100-5544-7766-8899-aabbccddeeff (clusterA)\n",
                "    Node 00 3c2d1e0f-5a4b-7869-8796-a5b4c3d2e1f0 (node1)\n",
                "\tSLink msgid 0000000000000002 dist=2 via 4\n",
            ]
        );
    }

    /// Links of one node sort by dist, then rnss, then arrival; clusters by type; a
    /// withdrawn span and a lost link leave the tree.
    #[test]
    fn tree_orders_clusters_nodes_and_links_and_forgets_what_went() {
        let span = |peer_type: PeerType, label: &[u8], dist: u32, rnss: u32, pfs_type: u8| {
            let mut s = LnkSpan::new();
            s.set_peer_type(peer_type);
            s.set_peer_label(label).unwrap();
            s.set_pfs_label(b"n").unwrap();
            s.set_pfs_type(pfs_type);
            s.set_dist(dist, WireOrder::Little);
            s.set_rnss(rnss, WireOrder::Little);
            s
        };
        let le = WireOrder::Little;
        let mut tree = SpanTree::default();
        tree.insert(1, 0x10, &span(PeerType::HAMMER2, b"c", 3, 0, 6), le);
        tree.insert(2, 0x20, &span(PeerType::HAMMER2, b"c", 1, 9, 7), le);
        tree.insert(3, 0x30, &span(PeerType::HAMMER2, b"c", 1, 5, 7), le);
        tree.insert(1, 0x40, &span(PeerType::BLOCK, b"b", 0, 0, 0), le);
        let nil = "00000000-0000-0000-0000-000000000000";
        assert_eq!(
            tree.dump(),
            [
                format!("Cluster BLOCK {nil} (b)\n"),
                format!("    Node 00 {nil} (n)\n"),
                "\tSLink msgid 0000000000000040 dist=0 via 1\n".to_string(),
                format!("Cluster HAMMER2 {nil} (c)\n"),
                // The node's pfs_type is its first span's.
                format!("    Node 06 {nil} (n)\n"),
                "\tSLink msgid 0000000000000030 dist=1 via 3\n".to_string(),
                "\tSLink msgid 0000000000000020 dist=1 via 2\n".to_string(),
                "\tSLink msgid 0000000000000010 dist=3 via 1\n".to_string(),
            ]
        );
        tree.remove(3, 0x30);
        tree.remove_link(1);
        assert_eq!(tree.len(), 1);
        assert_eq!(
            tree.dump(),
            [
                format!("Cluster HAMMER2 {nil} (c)\n"),
                format!("    Node 07 {nil} (n)\n"),
                "\tSLink msgid 0000000000000020 dist=1 via 2\n".to_string(),
            ]
        );
        tree.remove_link(2);
        assert!(tree.is_empty() && tree.dump().is_empty());
    }
}
