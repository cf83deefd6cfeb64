//! The receive decoder (§5): see [`RxDecoder`].

use core::fmt;

use crate::buf::OverCommit;
use crate::stream::RxCipher;
use crate::wire::limits::MSGHDR_MAX;
use crate::wire::{
    Cmd, Crc32c, DecodeError, DmsgReceivedHeader, IoqError, MessageView, MsgHeader, ReceivedFrame,
    ReceivedHeader,
};

/// Where the decoder is in the current message (the spec's ioq states).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxPhase {
    /// Waiting for a base header (also: between messages).
    Header1,
    /// Waiting for the rest of a header with an extended part.
    Header2,
    /// Waiting for aux data that will sit in the FIFO.
    AuxData1,
    /// Waiting for aux data that arrives in the lent aux storage.
    AuxData2,
    /// The stream failed; no further message will be decoded.
    Error,
    /// The input ended cleanly at a message boundary.
    Closed,
}

/// A failure of the receive stream: what was wrong and where.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxFailure {
    /// What was wrong.
    pub error: DecodeError,
    /// Stream offset (bytes since the decoder started) of the message that failed.
    pub offset: u64,
}

impl RxFailure {
    /// The IOQ status code (§4.4).
    #[must_use]
    pub const fn ioq_error(&self) -> IoqError {
        self.error.ioq_error()
    }

    /// The `LNK_ERROR` message the C code synthesises for a failed stream (§5.1): a zeroed
    /// header with `cmd = LNK_ERROR` and `error` = the IOQ code. It is never sent.
    #[must_use]
    pub const fn lnk_error(&self) -> MsgHeader {
        let mut h = MsgHeader::new(Cmd::LNK_ERROR);
        h.error = self.ioq_error().code();
        h
    }
}

impl fmt::Display for RxFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "message at stream offset {}: {}",
            self.offset, self.error
        )
    }
}

impl core::error::Error for RxFailure {}

/// What [`RxDecoder::poll`] found. `H` is the revision's received header.
#[derive(Debug)]
#[non_exhaustive]
pub enum RxPoll<'a, H = ReceivedHeader> {
    /// A complete, checked message, borrowed from the decoder's memory until the next call.
    Message(MessageView<'a, H>),
    /// No complete message: give the decoder more bytes.
    NeedInput,
    /// The next message's aux data fits neither the FIFO nor the aux storage. Nothing was
    /// consumed; see [`RxDecoder::replace_aux_storage`].
    AuxStorageTooSmall {
        /// Aux bytes the message carries.
        needed: usize,
        /// Size of the current aux storage.
        available: usize,
    },
    /// The stream failed. Delivered once; the decoder stays in [`RxPhase::Error`].
    Failed(RxFailure),
    /// The input ended at a message boundary: a normal close (§11 R4). Delivered once.
    Closed,
    /// [`Failed`](Self::Failed) or [`Closed`](Self::Closed) was delivered already.
    Finished,
}

/// Why [`RxDecoder::new`] refused its memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FifoTooSmall {
    /// The FIFO size given.
    pub len: usize,
}

impl fmt::Display for FifoTooSmall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "receive FIFO of {} bytes is below the {MSGHDR_MAX}-byte header limit",
            self.len
        )
    }
}

impl core::error::Error for FifoTooSmall {}

#[derive(Clone, Copy, Debug)]
enum State<H> {
    Header1,
    Header2(H),
    /// The whole message will sit in the FIFO.
    AuxInFifo(H),
    /// The header is in the FIFO; `filled` aux bytes are in the aux storage.
    AuxInStorage {
        header: H,
        filled: usize,
    },
    Failed {
        failure: RxFailure,
        delivered: bool,
    },
    Closed {
        delivered: bool,
    },
}

/// The receive decoder of one connection. See the [`ioq`](crate::ioq) module.
///
/// `F` is the FIFO and `A` the aux storage (arrays or lent slices), `C` the CRC-32C engine,
/// `H` the protocol revision's received header ([`ReceivedFrame`]): the seed era's
/// [`ReceivedHeader`] ([`new`](Self::new)) or [`DmsgReceivedHeader`] ([`DmsgRxDecoder`]).
/// The revision is fixed for the decoder's life.
pub struct RxDecoder<F, A, C, H = ReceivedHeader> {
    fifo: F,
    aux_store: A,
    crc: C,
    /// Unconsumed plaintext is `fifo[beg..end]`; `fifo[end..wire_end]` are received bytes
    /// of a protected stream not yet opened (a partial cipher record). Without a stream
    /// cipher `wire_end == end`.
    beg: usize,
    end: usize,
    wire_end: usize,
    /// The stream mode's receive side ([`crate::stream`]).
    cipher: RxCipher,
    /// The next message's expected sequence number (MSGSEQ: protected modes, and always
    /// for revisions whose framing says so).
    seq: u8,
    /// The protected stream failed at `fifo[end]`: reported once the plaintext before it
    /// is used up.
    stream_error: Option<DecodeError>,
    state: State<H>,
    /// The message delivered by the last poll and how many of its bytes are in the FIFO;
    /// consumed at the next `&mut` call.
    held: Option<(H, usize)>,
    /// Stream offset of the next message's first byte.
    offset: u64,
    input_ended: bool,
}

impl<F, A, C, H> fmt::Debug for RxDecoder<F, A, C, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RxDecoder")
            .field("phase", &self.phase())
            .field("buffered", &(self.end - self.beg))
            .field("offset", &self.offset)
            .field("input_ended", &self.input_ended)
            .finish_non_exhaustive()
    }
}

impl<F, A, C, H> RxDecoder<F, A, C, H> {
    /// The current phase.
    #[must_use]
    pub const fn phase(&self) -> RxPhase {
        match self.state {
            State::Header1 => RxPhase::Header1,
            State::Header2(_) => RxPhase::Header2,
            State::AuxInFifo(_) => RxPhase::AuxData1,
            State::AuxInStorage { .. } => RxPhase::AuxData2,
            State::Failed { .. } => RxPhase::Error,
            State::Closed { .. } => RxPhase::Closed,
        }
    }

    /// Stream offset of the first byte not yet part of a delivered message.
    #[must_use]
    pub const fn offset(&self) -> u64 {
        self.offset
    }

    /// True once the stream has failed or closed (its ending may not be polled yet).
    #[must_use]
    pub const fn is_finished(&self) -> bool {
        matches!(self.state, State::Failed { .. } | State::Closed { .. })
    }
}

impl<F, A, C> RxDecoder<F, A, C>
where
    F: AsRef<[u8]> + AsMut<[u8]>,
    A: AsRef<[u8]> + AsMut<[u8]>,
    C: Crc32c,
{
    /// A seed-era decoder over a FIFO of at least [`MSGHDR_MAX`] bytes and any aux storage
    /// (65536 bytes accept every legal message).
    ///
    /// # Errors
    /// [`FifoTooSmall`] if the FIFO cannot hold the largest legal header.
    pub fn new(fifo: F, aux_store: A, crc: C) -> Result<Self, FifoTooSmall> {
        Self::new_framed(fifo, aux_store, crc)
    }
}

/// The receive decoder of a DMSG link (dmsg.md 3.1). Build it with
/// [`RxDecoder::new_framed`]. The FIFO needs at least [`MSGHDR_MAX`] = 2048 bytes (the
/// largest DMSG header region; libdmsg uses 8192). The aux storage takes the aux data of
/// messages larger than the FIFO: [`DMSG_AUX_MAX`](crate::wire::limits::DMSG_AUX_MAX) =
/// 1 MiB accepts every legal message; with less, [`RxPoll::AuxStorageTooSmall`] reports the
/// padded aux length a message needs. The salt sequence is always checked (MSGSEQ).
pub type DmsgRxDecoder<F, A, C> = RxDecoder<F, A, C, DmsgReceivedHeader>;

impl<F, A, C, H> RxDecoder<F, A, C, H>
where
    F: AsRef<[u8]> + AsMut<[u8]>,
    A: AsRef<[u8]> + AsMut<[u8]>,
    C: Crc32c,
    H: ReceivedFrame,
{
    /// A decoder for the revision `H` names (`ReceivedHeader`: the same as
    /// [`new`](RxDecoder::new); [`DmsgReceivedHeader`]: see [`DmsgRxDecoder`]). Both
    /// revisions' largest header is [`MSGHDR_MAX`].
    ///
    /// # Errors
    /// [`FifoTooSmall`] if the FIFO cannot hold the largest legal header.
    pub fn new_framed(fifo: F, aux_store: A, crc: C) -> Result<Self, FifoTooSmall> {
        let len = fifo.as_ref().len();
        if len < MSGHDR_MAX {
            return Err(FifoTooSmall { len });
        }
        Ok(Self {
            fifo,
            aux_store,
            crc,
            beg: 0,
            end: 0,
            wire_end: 0,
            cipher: RxCipher::Plain,
            seq: 0,
            stream_error: None,
            state: State::Header1,
            held: None,
            offset: 0,
            input_ended: false,
        })
    }

    /// The message the last [`poll`](Self::poll) delivered, again: it stays available
    /// (borrowed from the decoder's memory) until the next `&mut self` call.
    #[must_use]
    pub fn current(&self) -> Option<MessageView<'_, H>> {
        let (header, fifo_bytes) = self.held?;
        let in_fifo = self.fifo.as_ref().get(self.beg..self.end)?;
        let region_len = header.sizes().region_len;
        let ext = in_fifo.get(H::BASE_LEN..region_len)?;
        // The padding is checked but not reported where the revision gives an exact length.
        let aux_len = header.sizes().aux_delivered_len;
        let aux = if fifo_bytes == header.sizes().wire_len() {
            in_fifo.get(region_len..region_len + aux_len)?
        } else {
            self.aux_store.as_ref().get(..aux_len)?
        };
        Some(MessageView::from_checked_parts(header, ext, aux))
    }

    /// Swaps in new aux storage and returns the old one, for example after
    /// [`RxPoll::AuxStorageTooSmall`]. The message delivered last is released first. While a
    /// message is arriving in the aux storage ([`RxPhase::AuxData2`]) the new storage must
    /// hold that message's whole aux data; the bytes already received are copied over.
    ///
    /// # Errors
    /// The new storage, unused and with nothing changed, when it cannot hold the aux data of
    /// the message that is arriving into the storage.
    pub fn replace_aux_storage(&mut self, mut new: A) -> Result<A, A> {
        self.apply_release();
        if let State::AuxInStorage { header, filled } = self.state {
            if new.as_ref().len() < header.sizes().aux_wire_len {
                return Err(new);
            }
            let (Some(dst), Some(src)) = (
                new.as_mut().get_mut(..filled),
                self.aux_store.as_ref().get(..filled),
            ) else {
                return Err(new);
            };
            dst.copy_from_slice(src);
        }
        Ok(core::mem::replace(&mut self.aux_store, new))
    }

    /// True while the decoder can use more input: not finished and input not ended.
    #[must_use]
    pub const fn wants_input(&self) -> bool {
        !self.input_ended
            && self.stream_error.is_none()
            && !matches!(self.state, State::Failed { .. } | State::Closed { .. })
    }

    /// Where the transport should put the next bytes it receives; report how many with
    /// [`commit_read`](Self::commit_read). Empty when the decoder needs a
    /// [`poll`](Self::poll) first (a complete message fills the FIFO) or takes no more input.
    ///
    /// In [`RxPhase::AuxData2`] this is the unfilled part of the aux storage, exactly the
    /// missing aux bytes, so the transport writes straight into place.
    pub fn read_buf(&mut self) -> &mut [u8] {
        self.apply_release();
        if self.input_ended || self.stream_error.is_some() {
            return &mut [];
        }
        // A protected stream's bytes always land in the FIFO, where they are opened; the
        // FIFO then keeps room for one more record beyond what the message needs.
        let record = self.cipher.record_len();
        let need = match self.state {
            State::Header1 => H::BASE_LEN,
            State::Header2(h) => h.sizes().region_len,
            State::AuxInFifo(h) => h.sizes().wire_len(),
            State::AuxInStorage { header, filled } if record == 0 => {
                let aux_len = header.sizes().aux_wire_len;
                return self
                    .aux_store
                    .as_mut()
                    .get_mut(filled..aux_len)
                    .unwrap_or_default();
            }
            State::AuxInStorage { header, .. } => header.sizes().region_len,
            State::Failed { .. } | State::Closed { .. } => return &mut [],
        };
        let cap = self.fifo.as_ref().len();
        if self.beg > 0 && (self.wire_end == cap || self.beg + need + record > cap) {
            self.compact();
        }
        self.fifo
            .as_mut()
            .get_mut(self.wire_end..)
            .unwrap_or_default()
    }

    /// Reports that the transport wrote `n` bytes at the start of the last
    /// [`read_buf`](Self::read_buf).
    ///
    /// # Errors
    /// [`OverCommit`] if `n` exceeds the room `read_buf` offered; nothing changes then.
    pub fn commit_read(&mut self, n: usize) -> Result<(), OverCommit> {
        let room = self.read_buf().len();
        if n > room {
            return Err(OverCommit { reported: n, room });
        }
        self.record_read(n);
        Ok(())
    }

    /// Copies as much of `bytes` as the decoder has room for and returns how many it took.
    /// Fewer than all means: [`poll`](Self::poll), then feed the rest. 0 after the stream
    /// finished or [`end_input`](Self::end_input).
    pub fn feed(&mut self, bytes: &[u8]) -> usize {
        let n = crate::buf::copy_prefix(self.read_buf(), bytes);
        self.record_read(n);
        n
    }

    /// The transport reached its end (`read()` returned 0). Messages already complete are
    /// still delivered; then [`RxPoll::Closed`] if the end fell on a message boundary, else
    /// [`RxPoll::Failed`] with [`DecodeError::Truncated`] (EOF, code 2).
    pub fn end_input(&mut self) {
        self.input_ended = true;
    }

    /// Decodes the next message, if its bytes are all there. The message borrows the
    /// decoder's memory and is consumed by the next call of any `&mut self` method.
    pub fn poll(&mut self) -> RxPoll<'_, H> {
        self.apply_release();
        loop {
            let avail = self.end - self.beg;
            match self.state {
                State::Failed { failure, delivered } => {
                    if delivered {
                        return RxPoll::Finished;
                    }
                    self.state = State::Failed {
                        failure,
                        delivered: true,
                    };
                    return RxPoll::Failed(failure);
                }
                State::Closed { delivered } => {
                    if delivered {
                        return RxPoll::Finished;
                    }
                    self.state = State::Closed { delivered: true };
                    return RxPoll::Closed;
                }
                State::Header1 => {
                    if avail < H::BASE_LEN {
                        if let Some(e) = self.stream_error {
                            self.fail(e);
                            continue;
                        }
                        if !self.input_ended {
                            return RxPoll::NeedInput;
                        }
                        if avail == 0 && self.wire_end == self.end {
                            self.state = State::Closed { delivered: false };
                        } else {
                            self.fail(DecodeError::Truncated {
                                needed: H::BASE_LEN,
                                available: avail,
                            });
                        }
                        continue;
                    }
                    match H::parse_base(self.unconsumed(), &self.crc) {
                        // The common case: the whole message is already here.
                        Ok(header) if avail >= header.sizes().wire_len() => {
                            match self
                                .check_in_fifo(header)
                                .and_then(|()| self.check_sequence(header))
                            {
                                Ok(()) => return self.deliver(header, header.sizes().wire_len()),
                                Err(e) => self.fail(e),
                            }
                        }
                        Ok(header) => self.state = State::Header2(header),
                        Err(e) => self.fail(e),
                    }
                }
                State::Header2(header) => {
                    if avail < header.sizes().region_len {
                        if self.stall_or_truncate(header, avail) {
                            return RxPoll::NeedInput;
                        }
                        continue;
                    }
                    let region = self
                        .unconsumed()
                        .get(..header.sizes().region_len)
                        .unwrap_or_default();
                    if let Err(e) = header.check_region(region, &self.crc) {
                        self.fail(e);
                        continue;
                    }
                    if header.sizes().wire_len() + self.cipher.record_len()
                        <= self.fifo.as_ref().len()
                    {
                        self.state = State::AuxInFifo(header);
                        continue;
                    }
                    let available = self.aux_store.as_ref().len();
                    if available < header.sizes().aux_wire_len {
                        return RxPoll::AuxStorageTooSmall {
                            needed: header.sizes().aux_wire_len,
                            available,
                        };
                    }
                    self.move_aux_to_storage(header);
                }
                State::AuxInFifo(header) => {
                    if avail < header.sizes().wire_len() {
                        if self.stall_or_truncate(header, avail) {
                            return RxPoll::NeedInput;
                        }
                        continue;
                    }
                    let aux = self
                        .unconsumed()
                        .get(header.sizes().region_len..header.sizes().wire_len())
                        .unwrap_or_default();
                    if let Err(e) = header
                        .check_aux(aux, &self.crc)
                        .and_then(|()| self.check_sequence(header))
                    {
                        self.fail(e);
                        continue;
                    }
                    return self.deliver(header, header.sizes().wire_len());
                }
                State::AuxInStorage { header, filled } => {
                    let aux_len = header.sizes().aux_wire_len;
                    if filled < aux_len {
                        if self.stall_or_truncate(header, header.sizes().region_len + filled) {
                            return RxPoll::NeedInput;
                        }
                        continue;
                    }
                    let aux = self.aux_store.as_ref().get(..aux_len).unwrap_or_default();
                    if let Err(e) = header
                        .check_aux(aux, &self.crc)
                        .and_then(|()| self.check_sequence(header))
                    {
                        self.fail(e);
                        continue;
                    }
                    return self.deliver(header, header.sizes().region_len);
                }
            }
        }
    }

    /// Records a delivered message and returns its view. `fifo_bytes` of it are in the FIFO.
    fn deliver(&mut self, header: H, fifo_bytes: usize) -> RxPoll<'_, H> {
        self.state = State::Header1;
        self.held = Some((header, fifo_bytes));
        self.offset += header.sizes().wire_len() as u64;
        self.current().map_or(RxPoll::NeedInput, RxPoll::Message)
    }

    /// Counts `n` bytes written into the last `read_buf`.
    fn record_read(&mut self, n: usize) {
        if self.cipher.is_plain() {
            match &mut self.state {
                State::AuxInStorage { filled, .. } => *filled += n,
                _ => {
                    self.end += n;
                    self.wire_end = self.end;
                }
            }
            return;
        }
        self.wire_end += n;
        self.open_received();
    }

    /// The decoder for a protected stream mode: built before any byte arrives, so the
    /// whole stream is opened by `cipher`.
    pub(crate) fn with_cipher(mut self, cipher: RxCipher) -> Self {
        self.cipher = cipher;
        self
    }

    /// Opens the whole cipher records among the received bytes: their plaintext joins
    /// `fifo[..end]`, a partial record stays behind it. After a failure nothing more is
    /// opened; the failure is reported when the decoder runs out of plaintext.
    fn open_received(&mut self) {
        if self.stream_error.is_some() {
            return;
        }
        let (end, wire_end) = (self.end, self.wire_end);
        let Some(region) = self.fifo.as_mut().get_mut(end..wire_end) else {
            return;
        };
        let opened = self.cipher.open(region);
        self.fifo
            .as_mut()
            .copy_within(end + opened.consumed..wire_end, end + opened.plain);
        self.end = end + opened.plain;
        self.wire_end = wire_end - (opened.consumed - opened.plain);
        self.stream_error = opened.error;
        self.move_plain_to_storage();
    }

    /// The sequence check (§2.8; dmsg.md 2.6): the salt's low byte must be the count of
    /// messages received before this one; the count advances only on a match. The seed era
    /// checks it in the protected modes only, DMSG always.
    fn check_sequence(&mut self, header: H) -> Result<(), DecodeError> {
        if !H::ALWAYS_SEQUENCED && self.cipher.is_plain() {
            return Ok(());
        }
        let [found, ..] = header.salt().to_le_bytes();
        if found != self.seq {
            return Err(DecodeError::MsgSeq {
                expected: self.seq,
                found,
            });
        }
        self.seq = self.seq.wrapping_add(1);
        Ok(())
    }

    /// Checks the header region and aux data of a message whose bytes are all in the FIFO.
    fn check_in_fifo(&self, header: H) -> Result<(), DecodeError> {
        let message = self.unconsumed();
        let region = message.get(..header.sizes().region_len).unwrap_or_default();
        let aux = message
            .get(header.sizes().region_len..header.sizes().wire_len())
            .unwrap_or_default();
        header
            .check_region(region, &self.crc)
            .and_then(|()| header.check_aux(aux, &self.crc))
    }

    /// Missing bytes of the current message: `true` means wait for input; `false` means
    /// the input ended inside the message and the decoder has failed (EOF, §5.2).
    fn stall_or_truncate(&mut self, header: H, have: usize) -> bool {
        if let Some(e) = self.stream_error {
            self.fail(e);
            return false;
        }
        if !self.input_ended {
            return true;
        }
        self.fail(DecodeError::Truncated {
            needed: header.sizes().wire_len(),
            available: have,
        });
        false
    }

    fn fail(&mut self, error: DecodeError) {
        self.state = State::Failed {
            failure: RxFailure {
                error,
                offset: self.offset,
            },
            delivered: false,
        };
    }

    /// AUXDATA1 of the spec for a message too large for the FIFO: every buffered byte after
    /// the header is aux data of this message (header + aux exceeds the FIFO, so no later
    /// message can be buffered yet); move them to the aux storage.
    fn move_aux_to_storage(&mut self, header: H) {
        self.state = State::AuxInStorage { header, filled: 0 };
        self.move_plain_to_storage();
    }

    /// In [`RxPhase::AuxData2`]: moves the plaintext after the header into the aux storage,
    /// up to the message's aux length. A protected stream's opened plaintext can run past
    /// the message (into the next one); that part, and any unopened bytes, close up behind
    /// the header.
    fn move_plain_to_storage(&mut self) {
        let State::AuxInStorage { header, filled } = self.state else {
            return;
        };
        let start = self.beg + header.sizes().region_len;
        let take = self
            .end
            .saturating_sub(start)
            .min(header.sizes().aux_wire_len.saturating_sub(filled));
        if take == 0 {
            return;
        }
        // Both ranges are `take` bytes long only if both exist: checking them together
        // leaves no length-mismatch panic path in the compiled code (the kernel shim's
        // freestanding proof looks for one).
        if let (Some(src), Some(dst)) = (
            self.fifo.as_ref().get(start..start + take),
            self.aux_store.as_mut().get_mut(filled..filled + take),
        ) {
            dst.copy_from_slice(src);
        }
        // Close up behind the header, again through checked ranges.
        if let Some(rest) = self.fifo.as_mut().get_mut(start..self.wire_end)
            && take <= rest.len()
        {
            rest.copy_within(take.., 0);
        }
        self.end -= take;
        self.wire_end -= take;
        self.state = State::AuxInStorage {
            header,
            filled: filled + take,
        };
    }

    fn unconsumed(&self) -> &[u8] {
        self.fifo
            .as_ref()
            .get(self.beg..self.end)
            .unwrap_or_default()
    }

    /// Consumes the FIFO bytes of the message delivered last.
    fn apply_release(&mut self) {
        if let Some((_, fifo_bytes)) = self.held.take() {
            self.beg += fifo_bytes;
            if self.beg == self.wire_end {
                self.beg = 0;
                self.end = 0;
                self.wire_end = 0;
            }
        }
    }

    /// Moves the unconsumed bytes to the front of the FIFO.
    fn compact(&mut self) {
        // Checked ranges instead of `copy_within(beg..wire_end, 0)`, whose range panic a
        // kernel build would have to prove unreachable.
        let (beg, end) = (self.beg, self.wire_end);
        if beg <= end
            && let Some(front) = self.fifo.as_mut().get_mut(..end)
        {
            front.copy_within(beg.., 0);
        }
        self.end -= self.beg;
        self.wire_end -= self.beg;
        self.beg = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{MsgFlags, SoftCrc32c, WireOrder};

    extern crate std;
    use std::vec::Vec;

    /// One message's wire image, sealed by the wire layer.
    fn message(cmd: Cmd, msgid: u32, ext: &[u8], aux: &[u8]) -> Vec<u8> {
        let mut h = MsgHeader::new(cmd);
        h.msgid = msgid;
        let base = h.seal(WireOrder::Little, ext, aux, &SoftCrc32c).unwrap();
        let mut w = base.to_vec();
        w.extend_from_slice(ext);
        w.extend_from_slice(aux);
        w.resize(32 + ext.len() + h.aux_len(), 0);
        w
    }

    type Rx = RxDecoder<Vec<u8>, Vec<u8>, SoftCrc32c>;

    fn decoder(fifo: usize, aux: usize) -> Rx {
        RxDecoder::new(std::vec![0u8; fifo], std::vec![0u8; aux], SoftCrc32c).unwrap()
    }

    /// Feeds `stream` in chunks of `chunk`, polling whenever input stalls; returns the
    /// (msgid, aux) of each message and the final poll result's phase.
    fn run(rx: &mut Rx, stream: &[u8], chunk: usize) -> (Vec<(u32, Vec<u8>)>, RxPhase) {
        let mut out = Vec::new();
        let mut rest = stream;
        loop {
            match rx.poll() {
                RxPoll::Message(m) => out.push((m.header().msgid, m.aux().to_vec())),
                RxPoll::NeedInput => {
                    if rest.is_empty() {
                        rx.end_input();
                    } else {
                        let n = rx.feed(&rest[..chunk.min(rest.len())]);
                        assert!(n > 0, "decoder took nothing while asking for input");
                        rest = &rest[n..];
                    }
                }
                RxPoll::Failed(_) | RxPoll::Closed => return (out, rx.phase()),
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn fifo_below_the_header_limit_is_refused() {
        assert_eq!(
            RxDecoder::new([0u8; 2047], [0u8; 0], SoftCrc32c).err(),
            Some(FifoTooSmall { len: 2047 })
        );
        assert!(RxDecoder::new([0u8; 2048], [0u8; 0], SoftCrc32c).is_ok());
    }

    #[test]
    fn any_chunking_gives_the_same_messages() {
        let mut stream = Vec::new();
        for i in 0..20u32 {
            let aux: Vec<u8> = (0..(i as usize * 37) % 300).map(|b| b as u8).collect();
            let ext = std::vec![i as u8; 32 * (i as usize % 3)];
            let cmd = Cmd::new(
                MsgFlags::NONE,
                crate::wire::Protocol::LNK,
                0x12,
                1 + (i % 3) as u8,
            )
            .unwrap();
            stream.extend(message(cmd, i, &ext, &aux));
        }
        let mut whole = decoder(8192, 0);
        let (expected, phase) = run(&mut whole, &stream, stream.len());
        assert_eq!(expected.len(), 20);
        assert_eq!(phase, RxPhase::Closed);
        for chunk in [1, 2, 3, 31, 32, 33, 100, 4096] {
            let mut rx = decoder(2048, 0);
            let (got, phase) = run(&mut rx, &stream, chunk);
            assert_eq!(got, expected, "chunk {chunk}");
            assert_eq!(phase, RxPhase::Closed);
            assert_eq!(rx.offset(), stream.len() as u64);
        }
    }

    #[test]
    fn messages_that_fit_are_borrowed_from_the_fifo() {
        let mut fifo = [0u8; 4096];
        let range = fifo.as_ptr_range();
        let mut rx = RxDecoder::new(&mut fifo[..], [0u8; 0], SoftCrc32c).unwrap();
        let wire = message(Cmd::DBG_SHELL, 0, &[], b"status");
        assert_eq!(rx.feed(&wire), wire.len());
        let RxPoll::Message(m) = rx.poll() else {
            panic!()
        };
        assert!(range.contains(&m.aux().as_ptr()), "aux is not a copy");
        assert_eq!(m.aux_until_nul(), b"status");
    }

    #[test]
    fn large_aux_goes_to_lent_storage_read_in_place() {
        let aux: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
        let wire = message(Cmd::DBG_SHELL, 9, &[], &aux);
        let mut rx = decoder(8192, 65536);
        // The first read fills the FIFO; the rest must go straight into the aux storage.
        let first = rx.feed(&wire);
        assert_eq!(first, 8192);
        assert!(matches!(rx.poll(), RxPoll::NeedInput));
        assert_eq!(rx.phase(), RxPhase::AuxData2);
        let buf = rx.read_buf();
        assert_eq!(
            buf.len(),
            wire.len() - first,
            "read_buf is exactly the missing aux"
        );
        buf.copy_from_slice(&wire[first..]);
        let n = buf.len();
        rx.commit_read(n).unwrap();
        let RxPoll::Message(m) = rx.poll() else {
            panic!()
        };
        assert_eq!(m.header().msgid, 9);
        assert_eq!(m.aux(), &aux[..]);
        assert!(matches!(rx.poll(), RxPoll::NeedInput));
        assert_eq!(rx.phase(), RxPhase::Header1);
    }

    #[test]
    fn too_small_aux_storage_is_not_fatal_and_loses_nothing() {
        let aux = std::vec![7u8; 20000];
        let mut stream = message(Cmd::DBG_SHELL, 1, &[], &aux);
        stream.extend(message(Cmd::LNK_PING, 2, &[], &[]));
        let mut rx = decoder(8192, 1000);
        let taken = rx.feed(&stream);
        for _ in 0..2 {
            assert_eq!(rx.poll_aux_error(), Some((20000, 1000)));
        }
        assert_eq!(rx.phase(), RxPhase::Header2);
        rx.replace_aux_storage(std::vec![0u8; 20000]).unwrap();
        let (got, phase) = run(&mut rx, &stream[taken..], 333);
        assert_eq!(got, std::vec![(1, aux), (2, Vec::new())]);
        assert_eq!(phase, RxPhase::Closed);
    }

    impl Rx {
        fn poll_aux_error(&mut self) -> Option<(usize, usize)> {
            match self.poll() {
                RxPoll::AuxStorageTooSmall { needed, available } => Some((needed, available)),
                _ => None,
            }
        }
    }

    #[test]
    fn aux_storage_swap_keeps_bytes_already_moved() {
        let aux = std::vec![3u8; 10016];
        let wire = message(Cmd::DBG_SHELL, 4, &[], &aux);
        let mut rx = decoder(8192, 10016);
        let taken = rx.feed(&wire);
        assert!(matches!(rx.poll(), RxPoll::NeedInput));
        assert_eq!(rx.phase(), RxPhase::AuxData2);
        // Too small for the arriving message: refused, nothing changes.
        assert!(rx.replace_aux_storage(std::vec![0u8; 100]).is_err());
        assert!(rx.replace_aux_storage(std::vec![0u8; 10015]).is_err());
        assert_eq!(rx.phase(), RxPhase::AuxData2);
        let old = rx.replace_aux_storage(std::vec![0u8; 65536]).unwrap();
        assert_eq!(old.len(), 10016);
        let (got, _) = run(&mut rx, &wire[taken..], 1000);
        assert_eq!(got, std::vec![(4, aux)]);
    }

    #[test]
    fn swapping_storage_releases_the_message_delivered_last() {
        let aux = std::vec![9u8; 9000];
        let wire = message(Cmd::DBG_SHELL, 5, &[], &aux);
        let mut rx = decoder(8192, 9024);
        let (got, _) = run(&mut rx, &wire, 4096);
        assert_eq!(got[0].1[..9000], aux[..]);
        let mut rx = decoder(8192, 9024);
        rx.feed(&wire);
        assert!(matches!(rx.poll(), RxPoll::NeedInput));
        let rest = &wire[8192..];
        assert_eq!(rx.feed(rest), rest.len());
        assert!(matches!(rx.poll(), RxPoll::Message(_)));
        rx.replace_aux_storage(std::vec![0u8; 9024]).unwrap();
        assert!(
            rx.current().is_none(),
            "the delivered message is gone, not re-read from new storage"
        );
    }

    #[test]
    fn end_at_a_boundary_is_closed_once() {
        let mut rx = decoder(2048, 0);
        rx.feed(&message(Cmd::LNK_PING, 1, &[], &[]));
        rx.end_input();
        assert!(
            matches!(rx.poll(), RxPoll::Message(_)),
            "accepted input is delivered first"
        );
        assert!(matches!(rx.poll(), RxPoll::Closed));
        assert!(matches!(rx.poll(), RxPoll::Finished));
        assert_eq!(rx.feed(b"more"), 0);
        assert!(rx.read_buf().is_empty());
    }

    #[test]
    fn end_inside_a_message_is_eof_once() {
        let wire = message(Cmd::DBG_SHELL, 0, &[], b"hello");
        for cut in 1..wire.len() {
            let mut rx = decoder(2048, 0);
            rx.feed(&wire[..cut]);
            rx.end_input();
            let RxPoll::Failed(f) = rx.poll() else {
                panic!("cut {cut}")
            };
            assert_eq!(f.ioq_error(), IoqError::Eof);
            assert_eq!(f.offset, 0);
            assert_eq!(f.lnk_error().cmd, Cmd::LNK_ERROR);
            assert_eq!(f.lnk_error().error, 2);
            assert!(matches!(rx.poll(), RxPoll::Finished));
            assert_eq!(rx.phase(), RxPhase::Error);
        }
    }

    #[test]
    fn failure_names_the_offset_of_the_bad_message() {
        let mut stream = message(Cmd::LNK_PING, 1, &[], &[]);
        stream.extend(message(Cmd::DBG_SHELL, 2, &[], b"x"));
        let bad_at = stream.len();
        stream.extend(message(Cmd::LNK_PING, 3, &[], &[]));
        stream[bad_at + 8] ^= 1; // corrupt the third header
        stream.extend(message(Cmd::LNK_PING, 4, &[], &[]));
        let mut rx = decoder(2048, 0);
        rx.feed(&stream);
        assert!(matches!(rx.poll(), RxPoll::Message(_)));
        assert!(matches!(rx.poll(), RxPoll::Message(_)));
        let RxPoll::Failed(f) = rx.poll() else {
            panic!()
        };
        assert_eq!(f.offset, bad_at as u64);
        assert_eq!(f.ioq_error(), IoqError::Hcrc);
        assert!(matches!(rx.poll(), RxPoll::Finished));
    }

    #[test]
    fn reading_in_place_in_small_steps_gives_the_same_messages() {
        // Drive the decoder only through read_buf/commit_read, as a socket driver does,
        // with reads of 1..=97 bytes, through both the FIFO and the lent aux storage.
        let mut stream = Vec::new();
        for i in 0..30u32 {
            let aux = std::vec![i as u8; (i as usize * 613) % 9000];
            stream.extend(message(Cmd::DBG_SHELL, i, &[], &aux));
        }
        let mut rx = decoder(4096, 65536);
        let mut got = Vec::new();
        let mut at = 0;
        let mut step = 1;
        loop {
            match rx.poll() {
                RxPoll::Message(m) => {
                    got.push((m.header().msgid, m.aux().len(), m.aux().first().copied()))
                }
                RxPoll::NeedInput if at == stream.len() => rx.end_input(),
                RxPoll::NeedInput => {
                    let buf = rx.read_buf();
                    let n = buf.len().min(step).min(stream.len() - at);
                    buf[..n].copy_from_slice(&stream[at..at + n]);
                    rx.commit_read(n).unwrap();
                    at += n;
                    step = step % 97 + 1;
                }
                RxPoll::Closed => break,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(got.len(), 30);
        for (i, (id, len, first)) in got.into_iter().enumerate() {
            let aux_len = (i * 613) % 9000;
            assert_eq!((id, len), (i as u32, aux_len.div_ceil(32) * 32));
            assert_eq!(first, (aux_len > 0).then_some(i as u8));
        }
    }

    #[test]
    fn truncation_inside_lent_aux_counts_what_arrived() {
        let wire = message(Cmd::DBG_SHELL, 1, &[], &[5u8; 20000]);
        let mut rx = decoder(8192, 65536);
        let n = rx.feed(&wire[..12000]);
        assert!(matches!(rx.poll(), RxPoll::NeedInput));
        assert_eq!(rx.feed(&wire[n..12000]), 12000 - n);
        assert!(matches!(rx.poll(), RxPoll::NeedInput));
        rx.end_input();
        let RxPoll::Failed(f) = rx.poll() else {
            panic!()
        };
        assert_eq!(
            f.error,
            DecodeError::Truncated {
                needed: 20032,
                available: 12000
            }
        );
    }

    #[test]
    fn debug_shows_the_phase_and_buffered_bytes() {
        let mut rx = decoder(2048, 0);
        rx.feed(&[0x32, 0x48, 0, 0, 0]);
        let text = std::format!("{rx:?}");
        assert!(
            text.contains("phase: Header1") && text.contains("buffered: 5"),
            "{text}"
        );
        assert!(!rx.is_finished());
        rx.end_input();
        assert!(matches!(rx.poll(), RxPoll::Failed(_)));
        assert!(rx.is_finished());
    }

    #[test]
    fn over_commit_is_refused_without_change() {
        let mut rx = decoder(2048, 0);
        let room = rx.read_buf().len();
        assert_eq!(
            rx.commit_read(room + 1),
            Err(OverCommit {
                reported: room + 1,
                room
            })
        );
        assert!(matches!(rx.poll(), RxPoll::NeedInput));
        rx.commit_read(0).unwrap();
        assert_eq!(rx.read_buf().len(), room);
    }

    #[test]
    fn a_full_fifo_asks_for_a_poll() {
        let mut stream = Vec::new();
        for i in 0..100 {
            stream.extend(message(Cmd::LNK_PING, i, &[], &[]));
        }
        let mut rx = decoder(2048, 0);
        assert_eq!(rx.feed(&stream), 2048);
        assert_eq!(
            rx.feed(&stream[2048..]),
            0,
            "full until a message is consumed"
        );
        assert!(matches!(rx.poll(), RxPoll::Message(_)));
        assert_eq!(
            rx.feed(&stream[2048..]),
            32,
            "the consumed message made room"
        );
    }

    #[test]
    fn compaction_keeps_a_straddling_header() {
        // 2048-byte FIFO; messages of 96 bytes leave a partial one at the end.
        let mut stream = Vec::new();
        for i in 0..60u32 {
            stream.extend(message(Cmd::DBG_SHELL, i, &[], &[i as u8; 64]));
        }
        let mut rx = decoder(2048, 0);
        let (got, phase) = run(&mut rx, &stream, 700);
        assert_eq!(got.len(), 60);
        assert!(
            got.iter()
                .enumerate()
                .all(|(i, (id, aux))| *id == i as u32 && aux[0] == i as u8)
        );
        assert_eq!(phase, RxPhase::Closed);
    }

    #[test]
    fn biggest_header_in_the_smallest_fifo() {
        let ext = std::vec![0xAB; 2016];
        let cmd = Cmd::new(MsgFlags::NONE, crate::wire::Protocol::LNK, 0x12, 64).unwrap();
        let mut stream = message(Cmd::LNK_PING, 1, &[], &[]);
        stream.extend(message(cmd, 2, &ext, b"tail"));
        let mut rx = decoder(2048, 32);
        let (got, phase) = run(&mut rx, &stream, 1000);
        assert_eq!(got.len(), 2);
        assert_eq!(&got[1].1[..4], b"tail");
        assert_eq!(phase, RxPhase::Closed);
    }
}
