//! The part of a connection that is the same in both revisions: the receive decoder and
//! the transmit queue, whether the link is up, the liveness timers and the counters — the
//! driver side of [`Iocom`](super::Iocom) and [`DmsgIocom`](super::DmsgIocom). What each
//! revision does with a received message, and how it sends, stays with its connection.

use core::fmt;

use rand_core::Rng;

use super::liveness::{Due, Timers};
use super::{Config, Interest, IocomFlags, IocomMemory, IocomStats, LinkEnd, MemoryError};
use crate::buf::OverCommit;
use crate::ioq::rx::{FifoTooSmall, RxDecoder, RxFailure, RxPoll};
use crate::ioq::tx::{TxError, TxQueue};
use crate::setup::LinkSetup;
use crate::stream::StreamMode;
use crate::time::Instant;
use crate::wire::limits::{ALIGN, MSGHDR_MAX};
use crate::wire::{Crc32c, DecodeError, ReceivedFrame, SendFrame};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LinkState {
    Up,
    /// Reporting lost transactions, then `LinkDown(end)`.
    Draining(LinkEnd),
    /// `LinkDown(end)` was given.
    Down(LinkEnd),
}

/// What the receive side turned into, for the connection to act on.
pub(crate) enum RxStep<H> {
    /// Nothing to do until more input arrives or room frees up.
    Nothing,
    /// The link state changed (it is now draining); poll again.
    Handled,
    /// The next message's aux data needs bigger storage: say so once.
    AuxStorageTooSmall { needed: usize, available: usize },
    /// A complete, checked message; its view is [`RxDecoder::current`].
    Message(H),
}

pub(crate) struct Channel<M, R, C, RH, TH> {
    pub(crate) rx: RxDecoder<M, M, C, RH>,
    pub(crate) tx: TxQueue<M, R, C, TH>,
    pub(crate) link: LinkState,
    write_blocked: bool,
    /// `AuxStorageTooSmall` was said for the message waiting now.
    aux_stall_reported: bool,
    pub(crate) stats: IocomStats,
    pub(crate) timers: Timers,
    /// Transmit room a header-only answer takes: the connection reads a message only
    /// while it could answer it, so a peer that does not read its answers stalls its own
    /// requests and memory stays bounded.
    answer_len: usize,
}

impl<M, R, C, RH, TH> fmt::Debug for Channel<M, R, C, RH, TH> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("rx", &self.rx)
            .field("tx", &self.tx)
            .field("link", &self.link)
            .field("stats", &self.stats)
            .field("timers", &self.timers)
            .finish_non_exhaustive()
    }
}

impl<M, R, C, RH, TH> Channel<M, R, C, RH, TH>
where
    M: AsRef<[u8]> + AsMut<[u8]>,
    R: Rng,
    C: Crc32c,
    RH: ReceivedFrame,
    TH: SendFrame,
{
    /// The channel over the caller's memory, in the stream mode of `setup`.
    /// `answer_len` is the revision's header-only answer: the ring must hold one.
    pub(crate) fn build(
        setup: LinkSetup,
        memory: IocomMemory<M>,
        rng: R,
        crc: C,
        config: &Config,
        answer_len: usize,
    ) -> Result<(Self, StreamMode), MemoryError>
    where
        C: Clone,
    {
        let mode = setup.mode();
        let (rx_cipher, tx_cipher) = setup.into_ciphers();
        let needed = MSGHDR_MAX + rx_cipher.record_len();
        let len = memory.fifo.as_ref().len();
        if len < needed {
            return Err(MemoryError::FifoTooSmall { len, needed });
        }
        let ring = memory.tx_ring.as_ref().len();
        // cbc encrypts whole units in place; a gcm header-only reply takes one record.
        let unfit = match mode {
            StreamMode::Seed => ring < answer_len,
            StreamMode::Cbc => ring < answer_len || !ring.is_multiple_of(ALIGN),
            StreamMode::Gcm => ring < tx_cipher.sealed_len(answer_len),
        };
        if unfit {
            return Err(MemoryError::TxRingUnfit { len: ring, mode });
        }
        let rx = RxDecoder::new_framed(memory.fifo, memory.aux, crc.clone())
            .map_err(|FifoTooSmall { len }| MemoryError::FifoTooSmall { len, needed })?
            .with_cipher(rx_cipher);
        let tx = TxQueue::new_framed(memory.tx_ring, rng, crc, config.order).with_cipher(tx_cipher);
        let channel = Self {
            rx,
            tx,
            link: LinkState::Up,
            write_blocked: false,
            aux_stall_reported: false,
            stats: IocomStats {
                received: 0,
                sent: 0,
                auto_replies: 0,
                dropped: 0,
            },
            timers: Timers::new(config.liveness),
            answer_len,
        };
        Ok((channel, mode))
    }

    pub(crate) fn is_up(&self) -> bool {
        self.link == LinkState::Up
    }

    pub(crate) const fn link_end(&self) -> Option<LinkEnd> {
        match self.link {
            LinkState::Down(end) => Some(end),
            LinkState::Up | LinkState::Draining(_) => None,
        }
    }

    pub(crate) fn read_buf(&mut self) -> &mut [u8] {
        if !self.is_up() {
            return &mut [];
        }
        self.rx.read_buf()
    }

    pub(crate) fn commit_read(&mut self, n: usize) -> Result<(), OverCommit> {
        if !self.is_up() {
            return if n == 0 {
                Ok(())
            } else {
                Err(OverCommit {
                    reported: n,
                    room: 0,
                })
            };
        }
        self.rx.commit_read(n)?;
        if n > 0 {
            self.timers.received();
        }
        Ok(())
    }

    pub(crate) fn feed(&mut self, bytes: &[u8]) -> usize {
        if !self.is_up() {
            return 0;
        }
        let n = self.rx.feed(bytes);
        if n > 0 {
            self.timers.received();
        }
        n
    }

    pub(crate) fn end_input(&mut self) {
        self.rx.end_input();
    }

    pub(crate) fn transport_failed(&mut self) {
        if self.is_up() {
            self.link = LinkState::Draining(LinkEnd::TransportFailed);
        }
        self.tx.discard_all();
    }

    pub(crate) fn advance_write(&mut self, n: usize) -> Result<(), OverCommit> {
        self.tx.advance(n)?;
        if n > 0 {
            self.write_blocked = false;
            self.timers.wrote();
        }
        Ok(())
    }

    pub(crate) fn write_would_block(&mut self) {
        self.write_blocked = true;
    }

    pub(crate) fn can_answer(&self) -> bool {
        self.tx.can_queue(self.answer_len)
    }

    pub(crate) fn interest(&self) -> Interest {
        let write = !self.tx.is_empty();
        Interest {
            read: self.is_up() && self.rx.wants_input() && self.can_answer(),
            write,
            finished: matches!(self.link, LinkState::Down(_)) && !write,
        }
    }

    pub(crate) fn flags(&self) -> IocomFlags {
        let i = self.interest();
        let mut bits = 0;
        if !self.is_up() {
            bits |= IocomFlags::EOF;
        }
        if i.read {
            bits |= IocomFlags::RREQ;
        }
        if self.write_blocked {
            bits |= IocomFlags::WREQ;
        }
        if self.tx.is_empty() {
            bits |= IocomFlags::WIDLE;
        }
        IocomFlags::from_bits(bits)
    }

    /// The liveness part of `poll_timeout`: `None` means only the connection's own timers
    /// (transaction deadlines) count, and `Some(None)` nothing is timed at all.
    pub(crate) fn timer_deadline(&self) -> Option<Option<Instant>> {
        if !self.is_up() {
            // Replies queued before a clean close still go out; the stall rule bounds
            // how long a peer that no longer reads can keep them waiting.
            return Some(
                (!self.tx.is_empty())
                    .then(|| self.timers.next_stall())
                    .flatten(),
            );
        }
        None
    }

    /// The next liveness deadline while the link is up.
    pub(crate) fn next_timer(&self) -> Option<Instant> {
        self.timers.next(!self.tx.is_empty())
    }

    /// The liveness rules at `now`. Ends the link for a stall or a silent peer; returns
    /// what the connection must do itself (a keepalive ping) while the link is up.
    pub(crate) fn tick(&mut self, now: Instant) -> Option<Due> {
        let waiting = !self.tx.is_empty();
        if !self.is_up() {
            if waiting && self.timers.tick(now, waiting).write_stalled {
                // The link's end was said already; what it could not write is dropped.
                self.tx.discard_all();
            }
            return None;
        }
        let due = self.timers.tick(now, waiting);
        if due.write_stalled {
            self.fail(LinkEnd::WriteStalled);
            return None;
        }
        if due.peer_timeout {
            self.fail(LinkEnd::PeerTimeout);
            return None;
        }
        Some(due)
    }

    /// Ends the link from our side: nothing queued will be sent.
    pub(crate) fn fail(&mut self, end: LinkEnd) {
        self.tx.discard_all();
        self.link = LinkState::Draining(end);
    }

    /// Ends the link because the received stream broke a rule above the decoder (the
    /// message at the decoder's offset).
    pub(crate) fn fail_received(&mut self, error: DecodeError) {
        let offset = self.rx.offset();
        self.fail(LinkEnd::Failed(RxFailure { error, offset }));
    }

    /// A transmit refusal as the caller sees it; an exhausted `gcm` counter also ends the
    /// link (IVWRAP): nothing can be sent on it any more.
    pub(crate) fn refused(&mut self, e: TxError) -> TxError {
        if e == TxError::IvWrap && self.is_up() {
            self.fail_received(DecodeError::IvWrap);
        }
        e
    }

    /// Swaps the receive aux storage.
    pub(crate) fn replace_aux_storage(&mut self, new: M) -> Result<M, M> {
        let old = self.rx.replace_aux_storage(new)?;
        self.aux_stall_reported = false;
        Ok(old)
    }

    /// Polls the decoder while the link is up and an answer would fit, turning its ending
    /// into the link's.
    pub(crate) fn poll_rx(&mut self) -> RxStep<RH> {
        if !self.is_up() || !self.can_answer() {
            return RxStep::Nothing; // backpressure: keep room to answer
        }
        match self.rx.poll() {
            RxPoll::NeedInput => RxStep::Nothing,
            RxPoll::AuxStorageTooSmall { needed, available } => {
                if self.aux_stall_reported {
                    self.fail(LinkEnd::AuxStorageTooSmall { needed, available });
                    return RxStep::Handled;
                }
                self.aux_stall_reported = true;
                RxStep::AuxStorageTooSmall { needed, available }
            }
            RxPoll::Failed(failure) => {
                self.fail(LinkEnd::Failed(failure));
                RxStep::Handled
            }
            RxPoll::Closed | RxPoll::Finished => {
                // Replies queued before a clean end can still be flushed.
                self.link = LinkState::Draining(LinkEnd::Closed);
                RxStep::Handled
            }
            RxPoll::Message(m) => {
                let received = *m.received();
                self.stats.received += 1;
                RxStep::Message(received)
            }
        }
    }
}

/// The driver side's public methods, the same on both connections: each forwards to the
/// shared [`Channel`] in the connection's `ch` field.
macro_rules! driver_side {
    () => {
        /// Where the transport should read into; report the count with
        /// [`commit_read`](Self::commit_read). Empty when no input is wanted now.
        pub fn read_buf(&mut self) -> &mut [u8] {
            self.ch.read_buf()
        }

        /// Reports `n` bytes read into [`read_buf`](Self::read_buf).
        ///
        /// # Errors
        /// [`OverCommit`](crate::OverCommit) if `n` exceeds the room offered; nothing
        /// changes.
        pub fn commit_read(&mut self, n: usize) -> Result<(), crate::OverCommit> {
            self.ch.commit_read(n)
        }

        /// Copies received bytes in; returns how many were taken (fewer: poll events
        /// first).
        pub fn feed(&mut self, bytes: &[u8]) -> usize {
            self.ch.feed(bytes)
        }

        /// The transport's input ended (read returned 0).
        pub fn end_input(&mut self) {
            self.ch.end_input();
        }

        /// The transport failed (an error other than "try again"): the link goes down
        /// (SOCK).
        pub fn transport_failed(&mut self) {
            self.ch.transport_failed();
        }

        /// Bytes to write, oldest first, as up to two slices for a vectored write.
        #[must_use]
        pub fn pending(&self) -> [&[u8]; 2] {
            self.ch.tx.pending()
        }

        /// Copies pending bytes into `out`; returns how many. Consume with
        /// [`advance_write`](Self::advance_write).
        pub fn copy_pending(&self, out: &mut [u8]) -> usize {
            self.ch.tx.copy_pending(out)
        }

        /// The transport accepted `n` pending bytes.
        ///
        /// # Errors
        /// [`OverCommit`](crate::OverCommit) if `n` exceeds the pending bytes; nothing
        /// changes.
        pub fn advance_write(&mut self, n: usize) -> Result<(), crate::OverCommit> {
            self.ch.advance_write(n)
        }

        /// The transport would block on write: remembered as WREQ until bytes are
        /// accepted.
        pub fn write_would_block(&mut self) {
            self.ch.write_would_block();
        }

        /// What the connection waits for. Meaningful after
        /// [`poll_event`](Self::poll_event) returned `None`: drain events first, then wait
        /// for what this says.
        #[must_use]
        pub fn interest(&self) -> crate::Interest {
            self.ch.interest()
        }

        /// The C flags of this connection (§7).
        #[must_use]
        pub fn flags(&self) -> crate::IocomFlags {
            self.ch.flags()
        }

        /// Counters.
        #[must_use]
        pub const fn stats(&self) -> crate::IocomStats {
            self.ch.stats
        }

        /// Swaps the receive aux storage (see
        /// [`RxDecoder::replace_aux_storage`](crate::ioq::RxDecoder::replace_aux_storage)).
        ///
        /// # Errors
        /// The new storage, unused, if it cannot hold the aux bytes already received.
        pub fn replace_aux_storage(&mut self, new: M) -> Result<M, M> {
            self.ch.replace_aux_storage(new)
        }
    };
}

pub(crate) use driver_side;
