//! One DMSG connection whose peer is the fuzzer (`dmsg_peer`): any bytes in any chunking,
//! with `hdr_crc`/`aux_crc` repaired where a frame is well formed enough, so that the
//! transaction rules behind the checksums are reached; the application answers what it is
//! given. Checks: no panic, `poll_event` runs dry, nothing follows `LinkDown`, the table
//! never holds more than its capacity, and the end of input always ends the link.

use h2msg::trans::{DmsgKey, Received, Side};
use h2msg::wire::{Cmd, SoftCrc32c};
use h2msg::{CounterSalt, DmsgEvent, DmsgIocom};

/// Transaction capacity: small, so that a full table is reached quickly.
const SLOTS: usize = 8;

type Node = DmsgIocom<Vec<u8>, CounterSalt, SoftCrc32c, SLOTS>;

/// Rewrites `hdr_crc` and `aux_crc` of the little-endian DMSG frames at the start of
/// `stream`, as long as their sizes are legal.
pub(crate) fn repair_dmsg_crcs(stream: &mut [u8]) {
    let mut at = 0;
    while let Some(base) = stream.get(at..at + 64) {
        if base[..2] != [0x32, 0x48] {
            return;
        }
        let hlen = usize::from(base[0x20]) * 64;
        let aux_bytes = u32::from_le_bytes([base[0x28], base[0x29], base[0x2a], base[0x2b]]);
        let aux_len = (aux_bytes as usize).div_ceil(64) * 64;
        if !(64..=2048).contains(&hlen) || aux_len > 4096 {
            return;
        }
        let aux_crc = match stream.get(at + hlen..at + hlen + aux_len) {
            Some(aux) if aux_bytes > 0 => super::super::reference_crc32c(aux),
            _ => 0,
        };
        stream[at + 0x24..at + 0x28].copy_from_slice(&aux_crc.to_le_bytes());
        let Some(region) = stream.get_mut(at..at + hlen) else {
            return;
        };
        region[0x3c..0x40].fill(0);
        let hdr_crc = super::super::reference_crc32c(region);
        region[0x3c..0x40].copy_from_slice(&hdr_crc.to_le_bytes());
        at += hlen + aux_len;
    }
}

fn node() -> Node {
    crate::dmsg_node(2048, 1024, 1024, &[Cmd::DBG_SHELL])
}

/// Takes every event and answers some; returns true once the link is down.
fn drain(n: &mut Node, down: &mut bool) {
    let mut count = 0;
    let mut answer: Vec<(DmsgKey, bool)> = Vec::new();
    let mut one_way = 0;
    while let Some(event) = n.poll_event() {
        assert!(!*down, "event after LinkDown: {event:?}");
        count += 1;
        assert!(count < 100_000, "poll_event does not run dry");
        match event {
            DmsgEvent::Message { received, .. } => match received {
                Received::Element {
                    key,
                    opened,
                    closed: false,
                    ..
                } if key.side == Side::Remote => {
                    answer.push((key, !opened));
                }
                Received::OneWay { parent: None } => one_way += 1,
                _ => {}
            },
            DmsgEvent::LinkDown(_) => *down = true,
            _ => {}
        }
    }
    assert!(
        n.transactions().len() <= 2 * SLOTS,
        "at most SLOTS per side"
    );
    for (key, close) in answer {
        let _ = n.answer(key, close, 0);
    }
    for _ in 0..one_way {
        let _ = n.send_one_way(
            Cmd::DBG_SHELL.set(h2msg::wire::MsgFlags::REPLY),
            &[],
            b"ok\0",
        );
    }
    let mut sink = [0u8; 4096];
    let len = n.copy_pending(&mut sink);
    n.advance_write(len).expect("the pending bytes");
}

/// The target body: byte 0 picks the chunk size, the rest is the peer's stream.
pub fn dmsg_peer(data: &[u8]) {
    let Some((&chunk, rest)) = data.split_first() else {
        return;
    };
    let mut stream = rest.to_vec();
    repair_dmsg_crcs(&mut stream);
    let chunk = usize::from(chunk).max(1);
    let mut n = node();
    let mut down = false;
    let mut input = &stream[..];
    let mut stuck = 0;
    while !input.is_empty() && !down {
        let take = chunk.min(input.len());
        let fed = n.feed(&input[..take]);
        input = &input[fed..];
        drain(&mut n, &mut down);
        stuck = if fed == 0 { stuck + 1 } else { 0 };
        if stuck > 2 {
            break; // the connection takes no more input now (a full ring or a stall)
        }
    }
    n.end_input();
    drain(&mut n, &mut down);
    assert!(down || stuck > 2, "the end of input ends the link");
}
