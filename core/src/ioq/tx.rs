//! The transmit queue (§6): see [`TxQueue`].

use core::fmt;

use rand_core::Rng;

use crate::buf::OverCommit;
use crate::stream::{MAX_CHUNK, TxCipher};
use crate::wire::{Crc32c, DmsgHeader, EncodeError, MsgHeader, Outgoing, SendFrame, WireOrder};

/// Salt bits from a counter (1, 2, 3, …), for when reproducible salts are wanted: tests,
/// simulations, a kernel without a cheap RNG. The salt's random bits have no security role
/// in this era (§3.3, §11 T7); any `rand_core` RNG can be used instead.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CounterSalt(u32);

impl CounterSalt {
    /// A counter whose first value is `last + 1`.
    #[must_use]
    pub const fn after(last: u32) -> Self {
        Self(last)
    }
}

impl rand_core::TryRng for CounterSalt {
    type Error = core::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        self.0 = self.0.wrapping_add(1);
        Ok(self.0)
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        self.try_next_u32().map(u64::from)
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        for chunk in dst.chunks_mut(4) {
            let bytes = self.try_next_u32()?.to_le_bytes();
            chunk.copy_from_slice(bytes.get(..chunk.len()).unwrap_or_default());
        }
        Ok(())
    }
}

/// Why a message was not queued. The queue is unchanged in every case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TxError {
    /// The message's sizes are not legal (FIELD).
    Encode(EncodeError),
    /// Not enough free room now: send some bytes and try again.
    QueueFull {
        /// Wire bytes the message needs.
        needed: usize,
        /// Free bytes in the queue.
        free: usize,
    },
    /// The message is larger than the whole queue and can never be queued.
    ExceedsCapacity {
        /// Wire bytes the message needs.
        needed: usize,
        /// The queue's capacity.
        capacity: usize,
    },
    /// The `gcm` stream's nonce counter cannot cover the message (IVWRAP, 18): the link
    /// can send nothing more.
    IvWrap,
}

/// What [`TxQueue::reserve`] found a message needs: its wire bytes and the value of its
/// aux size field (`A`: the revision's [`SendFrame::AuxField`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Room<A = u16> {
    needed: usize,
    aux_field: A,
}

impl From<EncodeError> for TxError {
    fn from(e: EncodeError) -> Self {
        Self::Encode(e)
    }
}

impl fmt::Display for TxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Encode(e) => e.fmt(f),
            Self::QueueFull { needed, free } => {
                write!(
                    f,
                    "transmit queue full: message needs {needed} bytes, {free} free"
                )
            }
            Self::ExceedsCapacity { needed, capacity } => write!(
                f,
                "message of {needed} bytes exceeds the transmit queue's {capacity} bytes"
            ),
            Self::IvWrap => f.write_str("IOQ error 18 (IVWRAP): the nonce counter is exhausted"),
        }
    }
}

impl core::error::Error for TxError {}

/// The transmit queue of one connection. See the [`ioq`](crate::ioq) module.
///
/// `B` is the byte ring (an array or a lent slice; to queue every legal message it needs
/// 2048 + 65536 bytes in the seed era, 2048 + 1 MiB in DMSG), `R` the source of the salt's
/// random bits (any `rand_core` RNG; the bits are not security relevant, §3.3), `C` the
/// CRC-32C engine, `H` the revision's header ([`SendFrame`]): the seed era's [`MsgHeader`]
/// ([`new`](Self::new)) or [`DmsgHeader`] ([`DmsgTxQueue`]).
pub struct TxQueue<B, R, C, H = MsgHeader> {
    ring: B,
    /// Index of the first unsent byte.
    head: usize,
    /// Number of queued bytes.
    len: usize,
    rng: R,
    /// The low byte of the next salt (§3.3).
    seq: u8,
    crc: C,
    order: WireOrder,
    /// The stream mode's transmit side ([`crate::stream`]).
    cipher: TxCipher,
    /// `gcm`: plaintext of the chunk being filled; sealed into the ring when full.
    staged: [u8; MAX_CHUNK],
    staged_len: usize,
    /// The revision is a type only: no value of it is kept.
    revision: core::marker::PhantomData<fn(H) -> H>,
}

impl<B, R, C, H> fmt::Debug for TxQueue<B, R, C, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TxQueue")
            .field("queued", &self.len)
            .field("seq", &self.seq)
            .field("order", &self.order)
            .finish_non_exhaustive()
    }
}

impl<B, R, C, H> TxQueue<B, R, C, H> {
    /// Number of bytes waiting to be sent.
    #[must_use]
    pub const fn pending_len(&self) -> usize {
        self.len
    }

    /// True when nothing waits to be sent (the C code's `WIDLE`).
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The sequence number the next message will carry in its salt's low byte.
    #[must_use]
    pub const fn next_seq(&self) -> u8 {
        self.seq
    }

    /// The byte order headers are sent in.
    #[must_use]
    pub const fn order(&self) -> WireOrder {
        self.order
    }
}

impl<B, R, C> TxQueue<B, R, C>
where
    B: AsRef<[u8]> + AsMut<[u8]>,
    R: Rng,
    C: Crc32c,
{
    /// An empty seed-era queue over `ring`, sending headers in `order` (h2msg sends
    /// [`WireOrder::Little`]; the other order exists for interoperability tests).
    pub fn new(ring: B, rng: R, crc: C, order: WireOrder) -> Self {
        Self::new_framed(ring, rng, crc, order)
    }
}

/// The transmit queue of a DMSG link (dmsg.md 3.2): 64-byte headers with `hdr_crc`, exact
/// `aux_bytes`, aux padded to 64. Build it with [`TxQueue::new_framed`].
pub type DmsgTxQueue<B, R, C> = TxQueue<B, R, C, DmsgHeader>;

impl<B, R, C, H> TxQueue<B, R, C, H>
where
    B: AsRef<[u8]> + AsMut<[u8]>,
    R: Rng,
    C: Crc32c,
    H: SendFrame,
{
    /// An empty queue for the revision `H` names (`MsgHeader`: the same as
    /// [`new`](TxQueue::new); [`DmsgHeader`]: see [`DmsgTxQueue`]), sending headers in
    /// `order`.
    pub fn new_framed(ring: B, rng: R, crc: C, order: WireOrder) -> Self {
        Self {
            ring,
            head: 0,
            len: 0,
            rng,
            seq: 0,
            crc,
            order,
            cipher: TxCipher::Plain,
            staged: [0; MAX_CHUNK],
            staged_len: 0,
            revision: core::marker::PhantomData,
        }
    }

    /// The queue for a protected stream mode: built before any message is queued, so
    /// the whole stream is sealed by `cipher`.
    pub(crate) fn with_cipher(mut self, cipher: TxCipher) -> Self {
        self.cipher = cipher;
        self
    }

    /// Wire bytes (and `gcm` chunks) that `plain` more plaintext bytes take, including the
    /// `LNK_PAD` that [`complete_chunk`](Self::complete_chunk) may add after them.
    fn wire_len_for(&self, plain: usize) -> (usize, u64) {
        match self.cipher.chunk_len() {
            None => (plain, 0),
            Some(chunk) => {
                let chunks = (self.staged_len + plain).div_ceil(chunk);
                (chunks * self.cipher.record_len(), chunks as u64)
            }
        }
    }

    /// True if a message of `plain` wire bytes (before protection) fits now.
    pub(crate) fn can_queue(&self, plain: usize) -> bool {
        self.wire_len_for(plain).0 <= self.free()
    }

    /// `gcm`: completes a half-filled chunk with a header-only `LNK_PAD` (which receivers
    /// drop), so every queued message can be sent now. The room was reserved when the
    /// messages before it were queued. Nothing to do in the other modes.
    pub(crate) fn complete_chunk(&mut self) {
        if self.staged_len > 0 {
            // Cannot fail: enqueue reserved the pad's room and chunk.
            let _ = self.enqueue(H::link_pad(), &[], &[]);
        }
    }

    /// Capacity of the ring in bytes.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.ring.as_ref().len()
    }

    /// Free bytes in the ring.
    #[must_use]
    pub fn free(&self) -> usize {
        self.capacity() - self.len
    }

    /// Whether [`enqueue`](Self::enqueue) would accept a message with this header and these
    /// extended-header and aux lengths now; returns the wire bytes it would take.
    ///
    /// # Errors
    /// The [`TxError`] `enqueue` would return.
    pub fn check(&self, header: &H, ext_len: usize, aux_len: usize) -> Result<usize, TxError> {
        self.reserve(header, ext_len, aux_len)
            .map(|room| room.needed)
    }

    /// The room a message needs, if it can be queued now: checked once, then handed to
    /// [`enqueue_reserved`](Self::enqueue_reserved), so a caller that must check before it
    /// commits other state (the transaction table) does not check twice.
    pub(crate) fn reserve(
        &self,
        header: &H,
        ext_len: usize,
        aux_len: usize,
    ) -> Result<Room<H::AuxField>, TxError> {
        let aux_field = header.plan_sizes(ext_len, aux_len)?;
        let plain = H::frame_wire_len(ext_len, aux_field);
        let (needed, chunks) = self.wire_len_for(plain);
        if chunks > self.cipher.chunks_left() {
            return Err(TxError::IvWrap);
        }
        let capacity = self.capacity();
        if needed > capacity {
            return Err(TxError::ExceedsCapacity { needed, capacity });
        }
        if needed > self.free() {
            return Err(TxError::QueueFull {
                needed,
                free: self.free(),
            });
        }
        Ok(Room { needed, aux_field })
    }

    /// Stamps `header` and queues the message; returns the header as sent.
    ///
    /// The salt, sizes and CRC fields of `header` are overwritten (§6.1); the other fields
    /// are sent as given. `aux` may have any length up to the revision's limit (65536 in
    /// the seed era, 1 MiB padded in DMSG) and is padded with zeros.
    ///
    /// # Errors
    /// [`TxError`]; the queue, its sequence number and the RNG are untouched then.
    pub fn enqueue(&mut self, header: H, ext: &[u8], aux: &[u8]) -> Result<H, TxError> {
        let room = self.reserve(&header, ext.len(), aux.len())?;
        Ok(self.enqueue_reserved(room, header, ext, aux))
    }

    /// [`enqueue`](Self::enqueue) of a message whose `room` [`reserve`](Self::reserve)
    /// gave for these very `header`, `ext` and `aux`, with nothing queued in between.
    pub(crate) fn enqueue_reserved(
        &mut self,
        room: Room<H::AuxField>,
        header: H,
        ext: &[u8],
        aux: &[u8],
    ) -> H {
        let Room { needed, aux_field } = room;
        let mut header = header;
        header.set_salt((self.rng.next_u32() << 8) | u32::from(self.seq));
        let out = Outgoing {
            order: self.order,
            ext,
            aux,
            crc: &self.crc,
        };
        let base = header.stamp(aux_field, &out);
        let base = base.as_ref();
        self.seq = self.seq.wrapping_add(1);
        if self.cipher.chunk_len().is_some() {
            for part in [base, ext, aux, H::aux_zero_pad(aux.len())] {
                self.put_chunked(part);
            }
            return header;
        }
        let start = wrap(self.head + self.len, self.capacity());
        self.write_plain(start, base, ext, aux);
        self.encrypt_span(start, needed);
        header
    }

    /// Copies a message's plaintext into the ring at `tail`.
    fn write_plain(&mut self, tail: usize, base: &[u8], ext: &[u8], aux: &[u8]) {
        let mut tail = tail;
        // The header is the whole message most of the time: one copy when it does not wrap.
        if let Some(dst) = self.ring.as_mut().get_mut(tail..tail + base.len()) {
            dst.copy_from_slice(base);
            self.len += base.len();
            tail = wrap(tail + base.len(), self.capacity());
        } else {
            tail = self.write_at(tail, base);
        }
        for part in [ext, aux, H::aux_zero_pad(aux.len())] {
            if !part.is_empty() {
                tail = self.write_at(tail, part);
            }
        }
    }

    /// `cbc`: encrypts the `len` ring bytes from `start` in place, continuing the chain.
    /// Both pieces of a wrapped span are whole units: the ring's size and every message
    /// are multiples of 32 bytes (checked when the mode starts).
    fn encrypt_span(&mut self, start: usize, len: usize) {
        if self.cipher.record_len() == 0 {
            return;
        }
        let cap = self.capacity();
        let first = len.min(cap - start);
        let ring = self.ring.as_mut();
        if let Some(span) = ring.get_mut(start..start + first) {
            self.cipher.encrypt_in_place(span);
        }
        if let Some(span) = ring.get_mut(..len - first) {
            self.cipher.encrypt_in_place(span);
        }
    }

    /// `gcm`: adds plaintext to the chunk being filled; a full chunk is sealed and written
    /// to the ring with its tag.
    fn put_chunked(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        while !rest.is_empty() {
            let take = (MAX_CHUNK - self.staged_len).min(rest.len());
            let (now, later) = rest.split_at(take);
            if let Some(dst) = self.staged.get_mut(self.staged_len..self.staged_len + take) {
                dst.copy_from_slice(now);
            }
            self.staged_len += take;
            rest = later;
            if self.staged_len == MAX_CHUNK {
                self.staged_len = 0;
                // Cannot fail: room_for checked the counter covers every chunk.
                if let Ok(tag) = self.cipher.seal_chunk(&mut self.staged) {
                    let tail = wrap(self.head + self.len, self.capacity());
                    let tail = write_wrapped(self.ring.as_mut(), tail, &self.staged);
                    self.len += self.staged.len();
                    self.write_at(tail, &tag);
                }
            }
        }
    }

    /// The queued bytes, oldest first, as up to two slices (the second is empty unless
    /// the ring wraps). Hand them to a vectored write, then call [`advance`](Self::advance).
    #[must_use]
    pub fn pending(&self) -> [&[u8]; 2] {
        let ring = self.ring.as_ref();
        let first_end = (self.head + self.len).min(ring.len());
        let wrapped = self.head + self.len - first_end;
        [
            ring.get(self.head..first_end).unwrap_or_default(),
            ring.get(..wrapped).unwrap_or_default(),
        ]
    }

    /// Copies as many queued bytes as fit into `out`, oldest first, and returns how many.
    /// Nothing is consumed until [`advance`](Self::advance).
    pub fn copy_pending(&self, out: &mut [u8]) -> usize {
        let mut copied = 0;
        for part in self.pending() {
            copied += crate::buf::copy_prefix(out.get_mut(copied..).unwrap_or_default(), part);
        }
        copied
    }

    /// Consumes `n` bytes from the front: the transport accepted them.
    ///
    /// # Errors
    /// [`OverCommit`] if `n` exceeds the pending bytes; nothing changes then.
    pub fn advance(&mut self, n: usize) -> Result<(), OverCommit> {
        if n > self.len {
            return Err(OverCommit {
                reported: n,
                room: self.len,
            });
        }
        self.len -= n;
        // head < cap and n ≤ cap: `wrap` suffices, and unlike `%` it has no divide-by-zero
        // panic path for a kernel build to prove unreachable.
        self.head = if self.len == 0 {
            0
        } else {
            wrap(self.head + n, self.capacity())
        };
        Ok(())
    }

    /// Drops every queued byte, as the C code does after a transmit error (§6.2).
    pub fn discard_all(&mut self) {
        self.head = 0;
        self.len = 0;
        self.staged_len = 0;
    }

    /// Writes `bytes` at ring index `at`, wrapping at the end, and counts them as queued;
    /// returns the index after them. The caller checked the room.
    fn write_at(&mut self, at: usize, bytes: &[u8]) -> usize {
        self.len += bytes.len();
        write_wrapped(self.ring.as_mut(), at, bytes)
    }
}

/// Writes `bytes` into `ring` at index `at`, wrapping at the end; returns the index after
/// them. A free function so that a caller can write from another field of the queue (the
/// gcm staging chunk) without copying it out first.
fn write_wrapped(ring: &mut [u8], at: usize, bytes: &[u8]) -> usize {
    let cap = ring.len();
    let (a, b) = bytes.split_at(bytes.len().min(cap - at));
    if let Some(dst) = ring.get_mut(at..at + a.len()) {
        dst.copy_from_slice(a);
    }
    if let Some(dst) = ring.get_mut(..b.len()) {
        dst.copy_from_slice(b);
    }
    wrap(at + bytes.len(), cap)
}

/// `index` (below `2 · cap`) wrapped into the ring, without a division.
const fn wrap(index: usize, cap: usize) -> usize {
    if index >= cap { index - cap } else { index }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Cmd, MessageView, MsgFlags, SoftCrc32c};
    extern crate std;
    use std::vec::Vec;

    fn queue(cap: usize) -> TxQueue<Vec<u8>, CounterSalt, SoftCrc32c> {
        TxQueue::new(
            std::vec![0u8; cap],
            CounterSalt::default(),
            SoftCrc32c,
            WireOrder::Little,
        )
    }

    fn drain(tx: &mut TxQueue<Vec<u8>, CounterSalt, SoftCrc32c>) -> Vec<u8> {
        let mut out = Vec::new();
        for part in tx.pending() {
            out.extend_from_slice(part);
        }
        tx.advance(out.len()).unwrap();
        out
    }

    #[test]
    fn salt_is_random_high_bits_and_sequence() {
        let mut tx = queue(4096);
        for i in 0..300u32 {
            let h = tx.enqueue(MsgHeader::new(Cmd::LNK_PING), &[], &[]).unwrap();
            assert_eq!(h.salt, ((i + 1) << 8) | (i & 0xFF));
            drain(&mut tx);
        }
        assert_eq!(tx.next_seq(), (300 % 256) as u8);
    }

    #[test]
    fn queued_bytes_are_the_sealed_message_with_zero_padding() {
        let mut tx = queue(4096);
        let mut header = MsgHeader::new(Cmd::DBG_SHELL.set(MsgFlags::CREATE));
        header.msgid = 77;
        let sent = tx.enqueue(header, &[], b"help").unwrap();
        let bytes = drain(&mut tx);
        assert_eq!(bytes.len(), 64);
        let m = MessageView::parse(&bytes, &SoftCrc32c).unwrap();
        assert_eq!(*m.header(), sent);
        assert_eq!(m.header().msgid, 77);
        assert_eq!(&m.aux()[..4], b"help");
        assert!(m.aux()[4..].iter().all(|&b| b == 0));
    }

    #[test]
    fn failed_enqueue_changes_nothing() {
        let mut tx = queue(256);
        tx.enqueue(MsgHeader::new(Cmd::LNK_PING), &[], &[]).unwrap();
        let before = (tx.pending_len(), tx.next_seq(), tx.pending()[0].to_vec());
        let cases = [
            (
                MsgHeader::new(Cmd::from_raw(0x100)),
                0,
                TxError::Encode(EncodeError::ZeroHeaderSize),
            ),
            (
                MsgHeader::new(Cmd::DBG_SHELL),
                300,
                TxError::ExceedsCapacity {
                    needed: 352,
                    capacity: 256,
                },
            ),
            (
                MsgHeader::new(Cmd::DBG_SHELL),
                200,
                TxError::QueueFull {
                    needed: 256,
                    free: 224,
                },
            ),
        ];
        let aux = [1u8; 300];
        for (h, aux_len, err) in cases {
            assert_eq!(tx.enqueue(h, &[], &aux[..aux_len]), Err(err));
            assert_eq!(
                (tx.pending_len(), tx.next_seq(), tx.pending()[0].to_vec()),
                before
            );
        }
        // The RNG was not drawn from either: the next salt is the second value.
        let h = tx.enqueue(MsgHeader::new(Cmd::LNK_PING), &[], &[]).unwrap();
        assert_eq!(h.salt, (2 << 8) | 1);
    }

    #[test]
    fn partial_writes_resume_at_every_byte_across_the_wrap() {
        // A ring of 160 bytes with messages of 32 and 64 bytes wraps repeatedly.
        let mut reference = queue(1 << 16);
        let mut tx = queue(160);
        let mut expected = Vec::new();
        let mut got = Vec::new();
        let mut step = 1usize;
        for i in 0..200u32 {
            let aux: &[u8] = if i % 2 == 0 { &[] } else { b"x" };
            let mut h = MsgHeader::new(Cmd::DBG_SHELL);
            h.msgid = i;
            reference.enqueue(h, &[], aux).unwrap();
            expected.extend(drain(&mut reference));
            loop {
                match tx.enqueue(h, &[], aux) {
                    Ok(_) => break,
                    Err(TxError::QueueFull { .. }) => {
                        // Send a few bytes, sometimes through the copy variant.
                        let mut buf = [0u8; 64];
                        let n = tx.copy_pending(&mut buf[..step.min(64)]);
                        got.extend_from_slice(&buf[..n]);
                        tx.advance(n).unwrap();
                        step = step % 61 + 1;
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        }
        got.extend(drain(&mut tx));
        assert_eq!(got, expected);
    }

    #[test]
    fn pending_is_two_slices_only_when_wrapped() {
        let mut tx = queue(96);
        tx.enqueue(MsgHeader::new(Cmd::LNK_PING), &[], &[]).unwrap();
        tx.enqueue(MsgHeader::new(Cmd::LNK_PING), &[], &[]).unwrap();
        assert_eq!(tx.pending()[1].len(), 0);
        tx.advance(32).unwrap();
        tx.enqueue(MsgHeader::new(Cmd::DBG_SHELL), &[], b"wrapping")
            .unwrap();
        let [a, b] = tx.pending();
        assert_eq!((a.len(), b.len()), (64, 32));
        let mut whole = [0u8; 96];
        assert_eq!(tx.copy_pending(&mut whole), 96);
        let second = MessageView::parse(&whole[32..], &SoftCrc32c).unwrap();
        assert_eq!(second.aux_until_nul(), b"wrapping");
    }

    #[test]
    fn check_says_what_enqueue_would_take() {
        let mut tx = queue(256);
        let h = MsgHeader::new(Cmd::from_raw(0x0000_1202));
        assert_eq!(tx.check(&h, 32, 5), Ok(96));
        assert_eq!(
            tx.check(&h, 32, 200),
            Err(TxError::ExceedsCapacity {
                needed: 288,
                capacity: 256
            })
        );
        tx.enqueue(h, &[0; 32], &[1; 5]).unwrap();
        assert_eq!(tx.pending_len(), 96);
        assert_eq!(
            tx.check(&h, 32, 130),
            Err(TxError::QueueFull {
                needed: 224,
                free: 160
            })
        );
    }

    #[test]
    fn copy_pending_into_a_small_buffer_across_the_wrap() {
        let mut tx = queue(96);
        tx.enqueue(MsgHeader::new(Cmd::LNK_PING), &[], &[]).unwrap();
        tx.enqueue(MsgHeader::new(Cmd::LNK_PING), &[], &[]).unwrap();
        tx.advance(32).unwrap();
        tx.enqueue(MsgHeader::new(Cmd::DBG_SHELL), &[], b"x")
            .unwrap();
        let [a, b] = tx.pending();
        let mut whole = a.to_vec();
        whole.extend_from_slice(b);
        for size in [1, 31, 40, 70, 95] {
            let mut out = std::vec![0u8; size];
            assert_eq!(tx.copy_pending(&mut out), size);
            assert_eq!(out[..], whole[..size], "size {size}");
        }
    }

    #[test]
    fn counter_salt_counts_in_every_form() {
        use rand_core::TryRng;
        let mut c = CounterSalt::after(41);
        assert_eq!(c.try_next_u32(), Ok(42));
        assert_eq!(c.try_next_u64(), Ok(43));
        let mut bytes = [0u8; 6];
        c.try_fill_bytes(&mut bytes).unwrap();
        assert_eq!(bytes, [44, 0, 0, 0, 45, 0]);
    }

    #[test]
    fn errors_and_debug_say_what_happened() {
        use std::string::ToString;
        assert_eq!(
            TxError::QueueFull {
                needed: 64,
                free: 10
            }
            .to_string(),
            "transmit queue full: message needs 64 bytes, 10 free"
        );
        assert_eq!(
            TxError::ExceedsCapacity {
                needed: 64,
                capacity: 32
            }
            .to_string(),
            "message of 64 bytes exceeds the transmit queue's 32 bytes"
        );
        let tx = queue(64);
        assert!(std::format!("{tx:?}").starts_with("TxQueue { queued: 0, seq: 0"));
    }

    #[test]
    fn over_advance_is_refused() {
        let mut tx = queue(96);
        tx.enqueue(MsgHeader::new(Cmd::LNK_PING), &[], &[]).unwrap();
        assert_eq!(
            tx.advance(33),
            Err(OverCommit {
                reported: 33,
                room: 32
            })
        );
        assert_eq!(tx.pending_len(), 32);
        tx.discard_all();
        assert!(tx.is_empty());
    }

    #[test]
    fn big_endian_queue_sends_big_endian_headers() {
        let mut tx = TxQueue::new(
            std::vec![0u8; 64],
            CounterSalt::default(),
            SoftCrc32c,
            WireOrder::Big,
        );
        tx.enqueue(MsgHeader::new(Cmd::LNK_PING), &[], &[]).unwrap();
        let [a, _] = tx.pending();
        assert_eq!(&a[..2], &[0x48, 0x32]);
        assert_eq!(
            MessageView::parse(a, &SoftCrc32c).unwrap().order(),
            WireOrder::Big
        );
    }
}
