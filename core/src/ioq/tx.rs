//! The transmit queue (§6): see [`TxQueue`].

use core::fmt;

use rand_core::Rng;

use crate::buf::OverCommit;
use crate::stream::{MAX_CHUNK, RECORD_HEADER_LEN, RECORD_PLAIN_MAX, TAG_LEN, TxCipher, TxFraming};
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
    /// Not enough free room now: send some bytes and try again. The message fits the
    /// queue once it is empty at the latest.
    QueueFull {
        /// Wire bytes the message needs where the queue stands now (with `gcm` records
        /// this can exceed the capacity: records end at the ring's end, so a message
        /// that would straddle it takes one more record than it does from the start).
        needed: usize,
        /// Free bytes in the queue.
        free: usize,
    },
    /// The message is larger than the whole queue and can never be queued.
    ExceedsCapacity {
        /// Wire bytes the message needs in the empty queue.
        needed: usize,
        /// The queue's capacity.
        capacity: usize,
    },
    /// The `gcm` stream's nonce counter cannot cover the message (IVWRAP, 18): the link
    /// can send nothing more.
    IvWrap,
}

/// An h2msg `gcm` record being filled (§2.9): its length header's room starts at
/// `header_at`; its plaintext `body_len` bytes from `body_at`, never across the ring's end,
/// so that it is sealed in place in one piece.
#[derive(Clone, Copy, Debug)]
struct OpenRecord {
    header_at: usize,
    body_at: usize,
    body_len: usize,
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
    /// Number of queued bytes, including those of a `gcm` record not yet sealed.
    len: usize,
    /// Of those, the bytes at the front that may be sent: all of them, except a `gcm`
    /// record still open ([`open_record`](Self::open_record)).
    ready: usize,
    rng: R,
    /// The low byte of the next salt (§3.3).
    seq: u8,
    crc: C,
    order: WireOrder,
    /// The stream mode's transmit side ([`crate::stream`]).
    cipher: TxCipher,
    /// h2msg `gcm`: the record being filled in the ring, not yet sealed; its tag's room is
    /// reserved.
    open_record: Option<OpenRecord>,
    /// libdmsg `gcm`: plaintext of the chunk being filled; sealed into the ring when full.
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
    /// Number of bytes waiting to be sent (with a `gcm` record not yet sealed, which
    /// [`pending`](Self::pending) does not show yet).
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
            ready: 0,
            rng,
            seq: 0,
            crc,
            order,
            cipher: TxCipher::Plain,
            open_record: None,
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

    /// Wire bytes (and `gcm` records or chunks) that `plain` more plaintext bytes take:
    /// with the tags of the records they open (their room is reserved while a record is
    /// open) and, for libdmsg chunks, the `LNK_PAD` that
    /// [`make_sendable`](Self::make_sendable) may add after them.
    fn wire_len_for(&self, plain: usize) -> (usize, u64) {
        match self.cipher.framing() {
            TxFraming::InPlace => (plain, 0),
            TxFraming::Records => records_walk(
                self.capacity(),
                self.open_record.map(|r| r.body_len),
                wrap(self.head + self.len, self.capacity()),
                plain,
            ),
            TxFraming::Chunks => chunks_for(self.staged_len + plain),
        }
    }

    /// The wire bytes `plain` plaintext bytes take in this queue once it is empty (the
    /// ring then starts over at 0, no record open, nothing staged): the least they can
    /// ever take. Only a message for which this exceeds the ring can never be queued;
    /// one that costs more now only because of where the ring stands waits.
    fn wire_len_when_empty(&self, plain: usize) -> usize {
        match self.cipher.framing() {
            TxFraming::InPlace => plain,
            TxFraming::Records => records_walk(self.capacity(), None, 0, plain).0,
            TxFraming::Chunks => chunks_for(plain).0,
        }
    }

    /// True if a message of `plain` wire bytes (before protection) fits now.
    pub(crate) fn can_queue(&self, plain: usize) -> bool {
        self.wire_len_for(plain).0 <= self.free()
    }

    /// Makes every queued message sendable, at the end of each connection call that
    /// queued something. libdmsg `gcm`: completes a half-filled chunk with a header-only
    /// `LNK_PAD` (which receivers drop); the room was reserved when the messages before
    /// it were queued. Nothing to do otherwise: an h2msg `gcm` record is sealed by
    /// [`enqueue`](Self::enqueue) when nothing before it waits for the transport, and
    /// otherwise by [`advance`](Self::advance) once what is before it has gone.
    pub(crate) fn make_sendable(&mut self) {
        match self.cipher.framing() {
            TxFraming::InPlace | TxFraming::Records => {}
            TxFraming::Chunks => {
                if self.staged_len > 0 {
                    // Cannot fail: enqueue reserved the pad's room and chunk.
                    let _ = self.enqueue(H::link_pad(), &[], &[]);
                }
            }
        }
    }

    /// Capacity of the ring in bytes.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.ring.as_ref().len()
    }

    /// Free bytes in the ring (less the room reserved for the tag of a `gcm` record
    /// being filled).
    #[must_use]
    pub fn free(&self) -> usize {
        let reserved = if self.open_record.is_some() {
            TAG_LEN
        } else {
            0
        };
        self.capacity().saturating_sub(self.len + reserved)
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
        let (needed, records) = self.wire_len_for(plain);
        // The open record's counter value is spoken for.
        let left = self.cipher.records_left() - u64::from(self.open_record.is_some());
        if records > left {
            return Err(TxError::IvWrap);
        }
        let capacity = self.capacity();
        let least = self.wire_len_when_empty(plain);
        if least > capacity {
            return Err(TxError::ExceedsCapacity {
                needed: least,
                capacity,
            });
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
        match self.cipher.framing() {
            TxFraming::InPlace => {
                let start = wrap(self.head + self.len, self.capacity());
                self.write_plain(start, base, ext, aux);
                self.encrypt_span(start, needed);
                self.ready = self.len;
            }
            TxFraming::Records => {
                // A message for an idle transport leaves at once, whole; one behind
                // unsent bytes stays in a record that is sealed when they have gone
                // (`advance`), so that messages queued meanwhile share it.
                let idle = self.ready == 0;
                for part in [base, ext, aux, H::aux_zero_pad(aux.len())] {
                    self.put_in_records(part);
                }
                if idle {
                    self.seal_open_record();
                }
            }
            TxFraming::Chunks => {
                for part in [base, ext, aux, H::aux_zero_pad(aux.len())] {
                    self.put_chunked(part);
                }
                self.ready = self.len;
            }
        }
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
        if self.cipher.in_place_unit() == 0 {
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
                // Cannot fail: reserve checked the counter covers every chunk.
                if let Ok(tag) = self.cipher.seal(&mut self.staged, &[]) {
                    let tail = wrap(self.head + self.len, self.capacity());
                    let tail = write_wrapped(self.ring.as_mut(), tail, &self.staged);
                    self.len += self.staged.len();
                    self.write_at(tail, &tag);
                }
            }
        }
    }

    /// h2msg `gcm`: adds plaintext to the open record (opening one after the last),
    /// copying it straight into the ring; a record that is full or whose body reached the
    /// ring's end is sealed. [`reserve`](Self::reserve) checked the room and the counter.
    fn put_in_records(&mut self, bytes: &[u8]) {
        let cap = self.capacity();
        let mut rest = bytes;
        while !rest.is_empty() {
            let mut record = self.open_record.take().unwrap_or_else(|| {
                let header_at = wrap(self.head + self.len, cap);
                // The header is written when the record is sealed and its length known.
                self.len += RECORD_HEADER_LEN;
                OpenRecord {
                    header_at,
                    body_at: wrap(header_at + RECORD_HEADER_LEN, cap),
                    body_len: 0,
                }
            });
            let tail = record.body_at + record.body_len;
            let take = rest
                .len()
                .min(RECORD_PLAIN_MAX - record.body_len)
                .min(cap.saturating_sub(tail));
            let (now, later) = rest.split_at(take);
            if let Some(dst) = self.ring.as_mut().get_mut(tail..tail + take) {
                dst.copy_from_slice(now);
            }
            self.len += take;
            record.body_len += take;
            rest = later;
            self.open_record = Some(record);
            if record.body_len == RECORD_PLAIN_MAX || tail + take >= cap {
                self.seal_open_record();
            }
        }
    }

    /// h2msg `gcm`: seals the open record in place — length header, body encrypted, tag
    /// after it — and makes every queued byte sendable. Records are sealed in stream
    /// order: the open record is always the last.
    fn seal_open_record(&mut self) {
        let Some(record) = self.open_record.take() else {
            return;
        };
        let cap = self.capacity();
        // The body is at most 16 KiB, so the conversion cannot fail; if it did, the
        // receiver would refuse the length.
        let header = u32::try_from(record.body_len)
            .unwrap_or(u32::MAX)
            .to_be_bytes();
        write_wrapped(self.ring.as_mut(), record.header_at, &header);
        let sealed = self
            .ring
            .as_mut()
            .get_mut(record.body_at..record.body_at + record.body_len)
            .map(|body| self.cipher.seal(body, &header));
        if let Some(Ok(tag)) = sealed {
            let tag_at = wrap(record.body_at + record.body_len, cap);
            self.write_at(tag_at, &tag);
            self.ready = self.len;
        } else {
            // Cannot happen (reserve checked the counter); if it did, the plaintext must
            // never be sent: the record is dropped.
            self.len = self.ready;
        }
    }

    /// The queued bytes, oldest first, as up to two slices (the second is empty unless
    /// the ring wraps). Hand them to a vectored write, then call [`advance`](Self::advance).
    #[must_use]
    pub fn pending(&self) -> [&[u8]; 2] {
        let ring = self.ring.as_ref();
        let first_end = (self.head + self.ready).min(ring.len());
        let wrapped = self.head + self.ready - first_end;
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
        if n > self.ready {
            return Err(OverCommit {
                reported: n,
                room: self.ready,
            });
        }
        self.len -= n;
        self.ready -= n;
        // head < cap and n ≤ cap: `wrap` suffices, and unlike `%` it has no divide-by-zero
        // panic path for a kernel build to prove unreachable.
        self.head = if self.len == 0 {
            0
        } else {
            wrap(self.head + n, self.capacity())
        };
        // Everything before the open gcm record has gone: it leaves now.
        if self.ready == 0 {
            self.seal_open_record();
        }
        Ok(())
    }

    /// Drops every queued byte, as the C code does after a transmit error (§6.2).
    pub fn discard_all(&mut self) {
        self.head = 0;
        self.len = 0;
        self.ready = 0;
        self.open_record = None;
        self.staged_len = 0;
    }

    /// Writes `bytes` at ring index `at`, wrapping at the end, and counts them as queued;
    /// returns the index after them. The caller checked the room.
    fn write_at(&mut self, at: usize, bytes: &[u8]) -> usize {
        self.len += bytes.len();
        write_wrapped(self.ring.as_mut(), at, bytes)
    }
}

/// h2msg `gcm`: walks `plain` bytes through the records they fill in a ring of `cap`
/// bytes whose free part starts at `tail`, the record open there (if any) holding `open`
/// body bytes, exactly as [`TxQueue::put_in_records`] will: a record closes when full or
/// when its body reaches the ring's end. Returns the wire bytes (new records' headers and
/// tags included) and the records opened; `usize::MAX` bytes if no record fits the ring.
fn records_walk(cap: usize, open: Option<usize>, tail: usize, plain: usize) -> (usize, u64) {
    let (mut wire, mut records) = (0usize, 0u64);
    let (mut open, mut tail, mut rest) = (open, tail, plain);
    while rest > 0 && cap > RECORD_HEADER_LEN + TAG_LEN {
        let filled = if let Some(filled) = open {
            filled
        } else {
            wire += RECORD_HEADER_LEN + TAG_LEN;
            records += 1;
            tail = wrap(tail + RECORD_HEADER_LEN, cap);
            0
        };
        let take = rest.min(RECORD_PLAIN_MAX - filled).min(cap - tail);
        wire += take;
        rest -= take;
        let reached_end = tail + take == cap;
        tail = wrap(tail + take, cap);
        open = if filled + take == RECORD_PLAIN_MAX || reached_end {
            tail = wrap(tail + TAG_LEN, cap);
            None
        } else {
            Some(filled + take)
        };
    }
    if rest > 0 {
        wire = usize::MAX;
    }
    (wire, records)
}

/// libdmsg `gcm`: the wire bytes and chunks that `staged` plaintext bytes fill, each
/// chunk sealed whole with its tag.
const fn chunks_for(staged: usize) -> (usize, u64) {
    let chunks = staged.div_ceil(MAX_CHUNK);
    (chunks * (MAX_CHUNK + TAG_LEN), chunks as u64)
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

    /// A queue sealing h2msg `gcm` records with a known key, and the matching opener.
    #[cfg(feature = "stream-crypto")]
    fn gcm_queue(cap: usize) -> TxQueue<Vec<u8>, CounterSalt, SoftCrc32c> {
        let (_, tx) = crate::stream::gcm_ciphers_at(&[1; 64], &[2; 64], 0);
        queue(cap).with_cipher(tx)
    }

    /// Everything the queue will send, taking what it offers until it is empty (a gcm
    /// record left open behind sent bytes is sealed as they go).
    #[cfg(feature = "stream-crypto")]
    fn drain_all(tx: &mut TxQueue<Vec<u8>, CounterSalt, SoftCrc32c>) -> Vec<u8> {
        let mut wire = Vec::new();
        while !tx.is_empty() {
            wire.extend(drain(tx));
        }
        wire
    }

    /// Splits `wire` into records by their length headers: (length, wire bytes) each.
    #[cfg(feature = "stream-crypto")]
    fn record_lengths(wire: &[u8]) -> Vec<usize> {
        let mut lens = Vec::new();
        let mut at = 0;
        while at < wire.len() {
            let len = u32::from_be_bytes(wire[at..at + 4].try_into().unwrap()) as usize;
            lens.push(len);
            at += 4 + len + 16;
        }
        assert_eq!(at, wire.len(), "whole records only");
        lens
    }

    #[cfg(feature = "stream-crypto")]
    #[test]
    fn a_lone_message_is_sealed_at_once_and_later_ones_wait_for_the_transport() {
        let mut tx = gcm_queue(4096);
        tx.enqueue(MsgHeader::new(Cmd::LNK_PING), &[], &[]).unwrap();
        assert_eq!(tx.pending()[0].len(), 4 + 32 + 16, "sealed alone");
        // Two more while it is unsent: queued, not yet sendable, tag room reserved.
        tx.enqueue(MsgHeader::new(Cmd::LNK_PING), &[], &[]).unwrap();
        tx.enqueue(MsgHeader::new(Cmd::DBG_SHELL), &[], b"x")
            .unwrap();
        assert_eq!(tx.pending()[0].len(), 52);
        assert_eq!(tx.pending_len(), 52 + 4 + 32 + 64);
        assert_eq!(tx.free(), 4096 - 52 - 4 - 96 - 16);
        // The transport takes part of the first record: nothing new yet.
        tx.advance(10).unwrap();
        assert_eq!(tx.pending()[0].len(), 42);
        // The rest: the other two messages leave in one record.
        tx.advance(42).unwrap();
        let wire = drain(&mut tx);
        assert_eq!(record_lengths(&wire), [96]);
        assert!(tx.is_empty());
        assert_eq!(tx.free(), 4096);
    }

    #[cfg(feature = "stream-crypto")]
    #[test]
    fn records_hold_at_most_16_kib_and_never_cross_the_ring_end() {
        let mut tx = gcm_queue(30_000);
        tx.enqueue(MsgHeader::new(Cmd::LNK_PING), &[], &[]).unwrap();
        // 20 000 aux bytes behind it: 20 032 plaintext bytes, split at 16 384.
        let aux = [7u8; 20_000];
        let needed = tx
            .check(&MsgHeader::new(Cmd::DBG_SHELL), 0, aux.len())
            .unwrap();
        assert_eq!(needed, 2 * 20 + 20_032);
        tx.enqueue(MsgHeader::new(Cmd::DBG_SHELL), &[], &aux)
            .unwrap();
        let wire = drain_all(&mut tx);
        assert_eq!(record_lengths(&wire), [32, 16_384, 20_032 - 16_384]);
        // On an idle transport a message of 20 000 bytes is sealed whole at once, from
        // the ring's start.
        let aux_len = 20_000 - 32;
        tx.enqueue(MsgHeader::new(Cmd::DBG_SHELL), &[], &aux[..aux_len])
            .unwrap();
        assert_eq!(tx.pending()[0].len(), 20_040);
        tx.advance(20_030).unwrap();
        // 9 956 bytes of body fit before the ring's end: the next message's first record
        // ends there and the second starts over at 0.
        let free_before = tx.free();
        let needed = tx
            .check(&MsgHeader::new(Cmd::DBG_SHELL), 0, aux_len)
            .unwrap();
        assert_eq!(needed, 20_040);
        tx.enqueue(MsgHeader::new(Cmd::DBG_SHELL), &[], &aux[..aux_len])
            .unwrap();
        assert_eq!(
            free_before - tx.free(),
            needed,
            "check said what enqueue took"
        );
        let wire = drain_all(&mut tx);
        assert_eq!(
            record_lengths(&wire[10..]),
            [30_000 - 20_044, 20_000 - 9_956]
        );
    }

    #[cfg(feature = "stream-crypto")]
    #[test]
    fn a_message_that_fits_an_empty_ring_waits_instead_of_being_refused() {
        // 30 000-byte ring; a message sealed whole at 0 (20 000 plaintext bytes, 20 040 on
        // the wire), all but 10 of its bytes sent: the free part starts at 20 040.
        let mut tx = gcm_queue(30_000);
        tx.enqueue(MsgHeader::new(Cmd::DBG_SHELL), &[], &[7u8; 20_000 - 32])
            .unwrap();
        tx.advance(20_030).unwrap();
        // 29 952 plaintext bytes: from the ring's start, two records (2 × 20 + 29 952 =
        // 29 992 ≤ 30 000); from 20 040 a record must end at the ring's end (9 956 bytes),
        // so three (30 012 > 30 000). It fits once the queue is empty: "full", not "never".
        let aux = std::vec![9u8; 29_952 - 32];
        let header = MsgHeader::new(Cmd::DBG_SHELL);
        match tx.check(&header, 0, aux.len()) {
            Err(TxError::QueueFull { needed, free }) => {
                assert_eq!((needed, free), (30_012, 29_990));
            }
            other => panic!("{other:?}"),
        }
        tx.advance(10).unwrap();
        assert_eq!(tx.check(&header, 0, aux.len()), Ok(29_992));
        tx.enqueue(header, &[], &aux).unwrap();
        assert_eq!(
            record_lengths(&drain_all(&mut tx)),
            [16_384, 29_952 - 16_384]
        );
        // One byte of aux more (29 984 plaintext bytes) never fits: from the start the
        // second record's body begins at 16 408 and would end at 30 008, past the ring's
        // end, so a third record is needed: 3 × 20 + 29 984 = 30 044.
        assert_eq!(
            tx.check(&header, 0, aux.len() + 1),
            Err(TxError::ExceedsCapacity {
                needed: 30_044,
                capacity: 30_000
            })
        );
    }

    #[cfg(feature = "stream-crypto")]
    mod records_property {
        use super::*;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum Step {
            /// Queue a `DBG_SHELL` with this many aux bytes.
            Queue(usize),
            /// Let the transport take this share (in 1/16) of what is sendable.
            Send(usize),
        }

        fn step() -> impl Strategy<Value = Step> {
            prop_oneof![
                (0usize..40_000).prop_map(Step::Queue),
                (0usize..=16).prop_map(Step::Send),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]

            /// What `check` says a message takes is what `enqueue` takes (the record walk
            /// matches the writer), `QueueFull` means the message fits the same ring once
            /// empty and `ExceedsCapacity` that it never does, and the bytes that leave are
            /// whole records of at most 16 KiB adding up to what was taken.
            #[test]
            fn check_matches_what_enqueue_takes(
                cap in 60usize..70_000,
                steps in proptest::collection::vec(step(), 1..40),
            ) {
                let mut tx = gcm_queue(cap);
                let (mut taken, mut wire, mut accepted) = (0usize, Vec::new(), Vec::new());
                for step in steps {
                    match step {
                        Step::Queue(aux_len) => {
                            let aux = std::vec![0xA5u8; aux_len];
                            let header = MsgHeader::new(Cmd::DBG_SHELL);
                            let free = tx.free();
                            let checked = tx.check(&header, 0, aux_len);
                            let queued = tx.enqueue(header, &[], &aux);
                            match checked {
                                Ok(needed) => {
                                    prop_assert!(queued.is_ok());
                                    prop_assert_eq!(free - tx.free(), needed);
                                    taken += needed;
                                    accepted.push(aux_len);
                                }
                                Err(TxError::QueueFull { .. }) => {
                                    prop_assert!(queued.is_err());
                                    prop_assert_eq!(tx.free(), free);
                                    prop_assert!(gcm_queue(cap).enqueue(header, &[], &aux).is_ok());
                                }
                                Err(TxError::ExceedsCapacity { .. }) => {
                                    prop_assert!(queued.is_err());
                                    let fresh = gcm_queue(cap).enqueue(header, &[], &aux);
                                    let never = matches!(fresh, Err(TxError::ExceedsCapacity { .. }));
                                    prop_assert!(never, "{:?}", fresh);
                                }
                                Err(other) => prop_assert!(false, "{:?}", other),
                            }
                        }
                        Step::Send(share) => {
                            let [a, b] = tx.pending();
                            let n = (a.len() + b.len()) * share / 16;
                            let out: Vec<u8> = a.iter().chain(b).take(n).copied().collect();
                            tx.advance(n).unwrap();
                            wire.extend(out);
                        }
                    }
                }
                wire.extend(drain_all(&mut tx));
                prop_assert_eq!(wire.len(), taken);
                prop_assert!(record_lengths(&wire).iter().all(|&len| (1..=16_384).contains(&len)));
                // The peer opens every record and finds each accepted message whole, in
                // order: its CRCs good, its aux the bytes given, then zeros to 32.
                let (mut rx, _) = crate::stream::gcm_ciphers_at(&[2; 64], &[1; 64], 0);
                let opened = rx.open(&mut wire);
                prop_assert!(opened.error.is_none(), "{:?}", opened.error);
                prop_assert_eq!(opened.consumed, taken);
                let mut plain = &wire[..opened.plain];
                for aux_len in accepted {
                    let len = 32 + aux_len.div_ceil(32) * 32;
                    prop_assert!(plain.len() >= len);
                    let (message, rest) = plain.split_at(len);
                    let view = MessageView::parse(message, &SoftCrc32c);
                    prop_assert!(view.is_ok(), "{:?}", view.err());
                    let aux = view.map(|m| m.aux().to_vec()).unwrap_or_default();
                    prop_assert!(aux[..aux_len].iter().all(|&b| b == 0xA5));
                    prop_assert!(aux[aux_len..].iter().all(|&b| b == 0));
                    plain = rest;
                }
                prop_assert!(plain.is_empty());
            }
        }
    }

    #[cfg(feature = "stream-crypto")]
    #[test]
    fn a_tag_that_straddles_the_ring_end_is_written_around_it() {
        // A record of 3 488 plaintext bytes at 0 (3 508 on the wire), all but 10 sent;
        // then a full record (16 384 bytes) from 3 508: header to 3 512, body to 19 896,
        // and its tag 19 896..19 912 in a 19 903-byte ring: 7 bytes at the end, 9 at 0.
        let mut tx = gcm_queue(19_903);
        tx.enqueue(MsgHeader::new(Cmd::DBG_SHELL), &[], &[1u8; 3_456])
            .unwrap();
        let mut wire = tx.pending()[0][..3_498].to_vec();
        tx.advance(3_498).unwrap();
        tx.enqueue(MsgHeader::new(Cmd::DBG_SHELL), &[], &[0xA5; 16_352])
            .unwrap();
        wire.extend(drain_all(&mut tx));
        assert_eq!(record_lengths(&wire), [3_488, 16_384]);
        let (mut rx, _) = crate::stream::gcm_ciphers_at(&[2; 64], &[1; 64], 0);
        let opened = rx.open(&mut wire);
        assert_eq!((opened.error, opened.consumed), (None, 3_508 + 16_404));
        let second = MessageView::parse(&wire[3_488..opened.plain], &SoftCrc32c).unwrap();
        assert!(second.aux().iter().all(|&b| b == 0xA5));
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
