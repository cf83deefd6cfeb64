//! The transfer reassembler on an arbitrary sequence of elements: any keys, flags,
//! announcements and part sizes, in both aux-length rules. It must never panic, never
//! hold more than `max × transfers` bytes, never run more transfers than its limit, and
//! complete a transfer only with exactly the bytes announced.

use std::collections::HashMap;

use h2msg::transfer::{AuxLength, Fed, Reassembler};
use h2msg::wire::{Cmd, MsgFlags};

/// The largest payload the fuzzed reassembler takes: small, so the fuzzer reaches it.
const MAX: usize = 4096;
/// Transfers it takes at once.
const TRANSFERS: usize = 2;

/// Runs `data` as elements of 4 header bytes (key, flags, length low, length high) and
/// then that many aux bytes (fewer at the end of the input). An announcement's aux is
/// its first 8 bytes read as the length, so the fuzzer controls both.
pub fn reassembler(data: &[u8]) {
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    let length = if mode & 1 == 0 {
        AuxLength::Padded
    } else {
        AuxLength::Exact
    };
    let cmd = Cmd::app(0x123).unwrap_or(Cmd::LNK_PAD);
    let mut r = Reassembler::<u8>::with_limits(MAX, TRANSFERS);
    let mut announced: HashMap<u8, u64> = HashMap::new();
    while let Some((head, tail)) = rest.split_at_checked(4) {
        let key = head[0] % 4;
        let mut flags = MsgFlags::NONE;
        for (bit, flag) in [
            (1, MsgFlags::CREATE),
            (2, MsgFlags::DELETE),
            (4, MsgFlags::ABORT),
        ] {
            if head[1] & bit != 0 {
                flags = flags.union(flag);
            }
        }
        let error = u32::from(head[1] >> 7);
        let len = usize::from(u16::from_le_bytes([head[2], head[3]])).min(tail.len());
        let (aux, next) = tail.split_at(len);
        rest = next;
        if flags.contains(MsgFlags::CREATE)
            && error == 0
            && let Some(bytes) = aux.get(..8)
        {
            let mut len = [0u8; 8];
            len.copy_from_slice(bytes);
            announced.insert(key, u64::from_le_bytes(len));
        }
        match r.feed(key, cmd, flags, error, aux, length) {
            Fed::Complete(t) => {
                let expected = announced.get(&key).copied();
                assert_eq!(
                    Some(t.data.len() as u64),
                    expected,
                    "complete at the announced length"
                );
            }
            Fed::NotTransfer | Fed::Pending | Fed::Ignored | Fed::Failed(_) => {}
            _ => {}
        }
        assert!(
            r.in_progress() <= TRANSFERS,
            "{} transfers at once",
            r.in_progress()
        );
        assert!(
            r.buffered() <= MAX * TRANSFERS,
            "{} bytes held",
            r.buffered()
        );
    }
    r.clear();
    assert_eq!(r.buffered(), 0);
}
