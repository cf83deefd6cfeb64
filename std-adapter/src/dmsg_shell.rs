//! The DMSG debug shell's logic (dmsg.md 6.4), without I/O: one received line in, the
//! output lines and whether to ping out; and the `tree` dump of a service's cluster. The
//! service sends each output line as its own one-way `DBG_SHELL|REPLY`, then the
//! [`PROMPT`] as one more.

use h2msg::cluster::{Cluster, Storage, Via};

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
    /// command`): the caller prints its links (with their span counts), kept-up targets
    /// and cluster totals, one message a line.
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
/// prints what `tree` returns (see [`tree_lines`]). `span <host>` asks the caller to
/// connect ([`ShellAnswer::span`]); without a host it fails at once, naming an empty host.
#[must_use]
pub fn answer(aux: Option<&[u8]>, tree: impl FnOnce() -> Vec<String>) -> ShellAnswer {
    let line = aux.map_or(&[][..], h2msg::wire::until_nul);
    let line = String::from_utf8_lossy(line);
    let mut words = line.split([' ', '\t']).filter(|w| !w.is_empty());
    let lines = match words.next() {
        None => Vec::new(),
        Some("help" | "?") => HELP.iter().map(|l| (*l).to_string()).collect(),
        Some("tree") => tree(),
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

/// The `tree` dump of `cluster` (dmsg.md 6.4), one line a message: each cluster (by peer
/// type, `peer_id`, `peer_label`), its nodes (by `pfs_label`, then `pfs_id`; a node shows
/// the `pfs_type` of its first span), each node's links (by `dist`, `rnss`, then arrival)
/// and under each link the relays made from it. `via` is the service's number of the link
/// (0: the service's own registrations); a relay not yet sent shows msgid 0.
#[must_use]
pub fn tree_lines<S: Storage>(cluster: &Cluster<S>) -> Vec<String> {
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let via = |v: Via| match v {
        Via::Local => 0,
        Via::Conn(id) => id,
    };
    let mut out = Vec::new();
    let mut last_cluster = None;
    for node in cluster.nodes() {
        let span = node.span();
        let key = (span.peer_type(), span.peer_id, span.peer_label().to_vec());
        if last_cluster.as_ref() != Some(&key) {
            out.push(format!("Cluster {} {} ({})\n", key.0, key.1, text(&key.2)));
            last_cluster = Some(key);
        }
        out.push(format!(
            "    Node {:02x} {} ({})\n",
            span.pfs_type(),
            span.pfs_id,
            text(span.pfs_label())
        ));
        for link in node.links() {
            out.push(format!(
                "\tSLink msgid {:016x} dist={} via {}\n",
                link.msgid(),
                link.dist(),
                via(link.via())
            ));
            for (conn, _, msgid) in link.relays() {
                out.push(format!(
                    "\t    Relay-out msgid {:016x} via {conn}\n",
                    msgid.unwrap_or(0)
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

    use h2msg::cluster::{Action, Heap, Limits};
    use h2msg::wire::{LnkConn, LnkSpan, PeerType, Uuid, WireOrder};

    use super::*;

    const LIMITS: Limits = Limits {
        conns: 8,
        nodes: 8,
        links: 8,
        relays: 8,
        payloads: 8,
        twins: 8,
    };

    fn cluster() -> Cluster<Heap> {
        Cluster::new(&Heap(LIMITS), std::num::NonZeroU32::MIN)
    }

    fn none() -> Vec<String> {
        Vec::new()
    }

    fn lines(answer: &ShellAnswer) -> Vec<&str> {
        answer.lines.iter().map(String::as_str).collect()
    }

    /// The expected strings are DMSG.md 6.4's and the recorded libdmsg service's
    /// (`vectors/dmsg-peer/none-shell.decoded.txt`), written out.
    #[test]
    fn the_shell_answers_as_the_libdmsg_service_does() {
        for help in [&b"help\0"[..], b"?", b"help me\0"] {
            let a = answer(Some(help), none);
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
        let ping = answer(Some(b"ping\0"), none);
        assert_eq!(lines(&ping), ["sending ping\n"]);
        assert!(ping.ping);
        assert_eq!(
            lines(&answer(Some(b"x\0"), none)),
            ["Unrecognized command: x\n"]
        );
        assert_eq!(
            lines(&answer(Some(b"\tfoo  bar\0"), none)),
            ["Unrecognized command: foo\n"]
        );
        // `span <host>` leaves the connecting to the service, which prints one of two
        // lines; without a host it fails at once.
        let span = answer(Some(b"span\t10.0.0.9:1234 extra\0"), none);
        assert_eq!(span.span.as_deref(), Some("10.0.0.9:1234"));
        assert!(span.lines.is_empty() && !span.ping);
        assert_eq!(span_line("10.0.0.9", true), "Connected to 10.0.0.9\n");
        assert_eq!(
            span_line("10.0.0.9", false),
            "Connection to 10.0.0.9 failed\n"
        );
        assert_eq!(
            lines(&answer(Some(b"span \0"), none)),
            ["Connection to  failed\n"]
        );
        assert_eq!(answer(Some(b"span\0"), none).span, None);
        // An empty line, blanks only, no aux, or text after a NUL only: just the prompt.
        for empty in [
            Some(&b""[..]),
            Some(b"\0"),
            Some(b" \t\0"),
            Some(b"\0help"),
            None,
        ] {
            assert_eq!(answer(empty, none), ShellAnswer::default(), "{empty:?}");
        }
        assert_eq!(answer(Some(b"tree\0"), none), ShellAnswer::default());
        // `status` (h2msg's word) leaves the text to the service; only that word does.
        let status = answer(Some(b"status extra\0"), none);
        assert!(status.status && status.lines.is_empty() && !status.ping);
        assert!(!answer(Some(b"statusx\0"), none).status);
        assert!(!answer(Some(b"help\0"), none).status);
        assert!(
            !HELP.iter().any(|l| l.starts_with("status")),
            "help stays libdmsg's"
        );
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
        let mut tree = cluster();
        tree.span_received(4, 2, &span, WireOrder::Little, &mut |_| {})
            .unwrap();
        let dump = answer(Some(b"tree\0"), || tree_lines(&tree));
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
    /// node shows its first span's pfs_type; a relay prints under the link it copies,
    /// with its msgid and link; own registrations are via 0; what went leaves the tree.
    #[test]
    fn tree_orders_clusters_nodes_links_and_relays_and_forgets_what_went() {
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
        let mut tree = cluster();
        let mut opened = Vec::new();
        let mut out = |a: Action| {
            if let Action::OpenSpan { relay, .. } = a {
                opened.push(relay);
            }
        };
        tree.span_received(
            1,
            0x10,
            &span(PeerType::HAMMER2, b"c", 3, 0, 6),
            le,
            &mut out,
        )
        .unwrap();
        tree.span_received(
            2,
            0x20,
            &span(PeerType::HAMMER2, b"c", 1, 9, 7),
            le,
            &mut out,
        )
        .unwrap();
        tree.span_received(
            3,
            0x30,
            &span(PeerType::HAMMER2, b"c", 1, 5, 7),
            le,
            &mut out,
        )
        .unwrap();
        tree.span_received(1, 0x40, &span(PeerType::BLOCK, b"b", 0, 0, 0), le, &mut out)
            .unwrap();
        // Link 5 wants HAMMER2 spans only: it is sent the best link of node (c, n).
        let mut filter = LnkConn::new();
        filter.set_peer_type(PeerType::HAMMER2);
        filter.set_peer_mask(1 << 3, le);
        tree.conn_opened(5, &filter, le, &mut out).unwrap();
        assert_eq!(opened.len(), 1);
        assert!(tree.relay_opened(opened[0], 0xABC));
        let mut own = LnkSpan::new();
        own.set_peer_type(PeerType::ROUTER);
        own.set_pfs_label(b"mine").unwrap();
        tree.register(&own, &mut |_| {}).unwrap();
        let nil = "00000000-0000-0000-0000-000000000000";
        assert_eq!(
            tree_lines(&tree),
            [
                format!("Cluster ROUTER {nil} ()\n"),
                format!("    Node 00 {nil} (mine)\n"),
                format!(
                    "\tSLink msgid {:016x} dist=0 via 0\n",
                    tree.nodes().next().unwrap().links().next().unwrap().msgid()
                ),
                format!("Cluster BLOCK {nil} (b)\n"),
                format!("    Node 00 {nil} (n)\n"),
                "\tSLink msgid 0000000000000040 dist=0 via 1\n".to_string(),
                format!("Cluster HAMMER2 {nil} (c)\n"),
                // The node's pfs_type is its first span's.
                format!("    Node 06 {nil} (n)\n"),
                "\tSLink msgid 0000000000000030 dist=1 via 3\n".to_string(),
                "\t    Relay-out msgid 0000000000000abc via 5\n".to_string(),
                "\tSLink msgid 0000000000000020 dist=1 via 2\n".to_string(),
                "\tSLink msgid 0000000000000010 dist=3 via 1\n".to_string(),
            ]
        );
        let mut closed = 0;
        tree.span_withdrawn(3, 0x30, &mut |a| {
            closed += usize::from(matches!(a, Action::CloseSpan { .. }))
        })
        .unwrap();
        assert_eq!(closed, 1);
        tree.link_down(1, &mut |_| {});
        let lines = tree_lines(&tree);
        assert_eq!(lines.len(), 3 + 4, "{lines:?}");
        assert_eq!(lines[4], format!("    Node 06 {nil} (n)\n"));
        assert_eq!(lines[5], "\tSLink msgid 0000000000000020 dist=1 via 2\n");
        assert!(lines[6].starts_with("\t    Relay-out msgid 0000000000000000 via 5"));
    }
}
