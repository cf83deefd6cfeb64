//! The streaming dump decoder on arbitrary input (`dump`).

use std::io::{self, Read, Write};

use h2msg::wire::limits::{HANDSHAKE_LEN, MSGAUX_MAX, MSGBUF_SIZE};
use h2msg_std::dump::{DumpEnd, dump_stream};

use crate::{Ending, decode_stream};

/// Gives `stream` `repeat` times over, in reads of at most `piece` bytes, counting what
/// was read.
struct PieceReader<'a> {
    stream: &'a [u8],
    repeat: usize,
    at: usize,
    piece: usize,
    read: usize,
}

impl Read for PieceReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.stream.is_empty() || self.at >= self.stream.len() * self.repeat {
            return Ok(0);
        }
        let offset = self.at % self.stream.len();
        let rest = &self.stream[offset..];
        let n = rest.len().min(buf.len()).min(self.piece);
        buf[..n].copy_from_slice(&rest[..n]);
        self.at += n;
        self.read += n;
        Ok(n)
    }
}

/// Counts the output without keeping it: memory stays bounded whatever the input says.
struct CountingSink {
    lines: usize,
}

impl Write for CountingSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.lines += buf.iter().filter(|&&b| b == b'\n').count();
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Byte 0: skip a handshake, JSON or text, CRC repair, the input given once or 64 times
/// over (an endless capture in miniature); byte 1 the read size. Checks that `dump` never
/// panics or errors on a reader that cannot fail, reads no further than one largest
/// message past the first damaged frame, prints one line per message (plus one for the
/// damage), and agrees with the test decoder on the messages and the ending.
pub fn dump(data: &[u8]) {
    let Some((&[mode, piece], payload)) = data.split_first_chunk::<2>() else {
        return;
    };
    let skip_handshake = mode & 1 != 0;
    let as_json = mode & 2 != 0;
    let mut stream = payload.to_vec();
    if mode & 4 != 0 {
        let start = if skip_handshake {
            HANDSHAKE_LEN.min(stream.len())
        } else {
            0
        };
        super::repair_crcs(&mut stream[start..]);
    }
    let repeat = if mode & 8 != 0 { 64 } else { 1 };
    let mut reader = PieceReader {
        stream: &stream,
        repeat,
        at: 0,
        piece: usize::from(piece).max(1) * 13,
        read: 0,
    };
    let mut sink = CountingSink { lines: 0 };
    let end = dump_stream(&mut reader, skip_handshake, as_json, &mut sink)
        .expect("only the input can be wrong, and it is reported, not an error");
    let (messages, printed) = match &end {
        DumpEnd::Clean { messages } => (*messages, *messages),
        DumpEnd::Damaged { messages, failure } => {
            let lookahead = (MSGBUF_SIZE + MSGAUX_MAX) as u64;
            assert!(
                (reader.read as u64) <= failure.offset + lookahead,
                "read {} bytes past a failure at {}",
                reader.read,
                failure.offset
            );
            (*messages, messages + 1)
        }
    };
    assert_eq!(
        sink.lines, printed,
        "one line per message and one for damage"
    );
    if repeat > 1 {
        return;
    }
    // The same bytes through the test decoder (software CRC, its own chunking).
    let base = if skip_handshake { HANDSHAKE_LEN } else { 0 };
    if stream.len() < base {
        assert!(matches!(end, DumpEnd::Damaged { messages: 0, .. }));
        return;
    }
    let (expected, ending) = decode_stream(&stream[base..], &[4096], MSGBUF_SIZE, MSGAUX_MAX);
    assert_eq!(messages, expected.len(), "message count differs");
    match (end, ending) {
        (DumpEnd::Clean { .. }, Ending::Closed) => {}
        (DumpEnd::Damaged { failure, .. }, Ending::Failed(f)) => {
            assert_eq!(failure.error, f.error);
            assert_eq!(failure.offset, f.offset + base as u64);
        }
        (end, ending) => panic!("dump says {end:?}, the decoder {ending:?}"),
    }
}
