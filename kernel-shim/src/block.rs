//! One iocom in the caller's memory block: the state at the start, the receive FIFO, the
//! aux buffer and the transmit ring after it. Nothing is allocated, nothing moves.

use core::ffi::{CStr, c_int};
use core::ptr::NonNull;
use core::slice;

use h2msg::trans::{Side, TransError, TransKey, TransUpdate};
use h2msg::wire::limits::{MSGAUX_MAX, MSGBUF_SIZE, MSGHDR_MAX};
use h2msg::wire::{IoqError, MessageView, MsgHeader};
use h2msg::{Event, Iocom, LinkEnd};

use crate::abi::*;
use crate::kernel::{KernelCrc, KernelRandom, log_line};

/// Transactions tracked per direction (ours, the peer's), as in the std adapter.
pub(crate) const TRANSACTIONS: usize = 64;

/// The C receive FIFO size: holds the largest header four times.
pub(crate) const FIFO_LEN: usize = MSGBUF_SIZE;
/// Holds the largest aux payload, so every legal message is received without help.
pub(crate) const AUX_LEN: usize = MSGAUX_MAX;
/// Holds the largest message, so every legal message can be queued.
pub(crate) const TX_RING_LEN: usize = MSGHDR_MAX + MSGAUX_MAX;

/// The buffers start on a cache line after the state.
pub(crate) const FIFO_OFFSET: usize = size_of::<H2msgIocom>().next_multiple_of(64);
pub(crate) const AUX_OFFSET: usize = FIFO_OFFSET + FIFO_LEN;
pub(crate) const TX_RING_OFFSET: usize = AUX_OFFSET + AUX_LEN;
/// What `h2msg_iocom_size()` reports.
pub(crate) const IOCOM_SIZE: usize = TX_RING_OFFSET + TX_RING_LEN;

/// Marks a live iocom, so a handle that was never set up, or was finished, is refused.
pub(crate) const LIVE: u64 = u64::from_le_bytes(*b"h2msgIO1");
/// Marks a live iocom while a call on it runs, so a kernel callback that calls back into
/// the API is refused (`H2MSG_ERR_BUSY`) instead of getting a second `&mut`.
pub(crate) const BUSY: u64 = u64::from_le_bytes(*b"h2msgIOB");

/// A byte range of the caller's block, viewed as a slice on demand.
pub(crate) struct CallerBytes {
    start: NonNull<u8>,
    len: usize,
}

impl CallerBytes {
    /// # Safety
    /// `start..start + len` must be initialised, valid for reads and writes, and used
    /// through nothing but this value for as long as it lives, except for reads while no
    /// slice of this value exists (`send` relaying a polled message's bytes, see
    /// `SEND_FORBIDDEN` in lib.rs).
    pub(crate) const unsafe fn new(start: NonNull<u8>, len: usize) -> Self {
        Self { start, len }
    }
}

impl AsRef<[u8]> for CallerBytes {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `new`'s contract: the range is initialised, valid and ours alone.
        unsafe { slice::from_raw_parts(self.start.as_ptr(), self.len) }
    }
}

impl AsMut<[u8]> for CallerBytes {
    fn as_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_ref`; `&mut self` makes this the only view.
        unsafe { slice::from_raw_parts_mut(self.start.as_ptr(), self.len) }
    }
}

/// The connection type behind the C handle.
pub(crate) type ShimIocom = Iocom<CallerBytes, KernelRandom, KernelCrc, TRANSACTIONS>;

/// `struct h2msg_iocom`, opaque to C: it sits at the start of the caller's block.
pub struct H2msgIocom {
    /// [`LIVE`] while set up and idle, [`BUSY`] while a call runs. Read and written only
    /// through raw pointers, never through a reference to the whole: a call's `&mut`
    /// covers `state` alone, so a re-entrant call can read the marker without aliasing it.
    pub(crate) live: u64,
    /// The block's own address, as `h2msg_iocom_init` set it up: a copy of the block
    /// elsewhere (memcpy, realloc) carries the marker, but its state still points into
    /// the original, so it is refused. Accessed like the marker.
    pub(crate) home: usize,
    pub(crate) state: IocomState,
}

/// Everything of an iocom but its marker: what a call gets `&mut` of.
pub(crate) struct IocomState {
    pub(crate) ops: H2msgKernelOps,
    pub(crate) io: ShimIocom,
    /// `h2msg_iocom_close` took the link down (reported as such, not as SOCK).
    pub(crate) closed_locally: bool,
    /// What the last `h2msg_iocom_read_buf` offered, until `h2msg_iocom_commit_read` or
    /// any other call: `commit_read` accepts bytes only into this room.
    pub(crate) read_offer: Option<ReadOffer>,
}

/// A room `h2msg_iocom_read_buf` handed out: where it starts (NULL when empty) and its
/// length. Compared, never dereferenced.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct ReadOffer {
    start: *const u8,
    len: usize,
}

impl ReadOffer {
    /// The room `read_buf` returned, as C sees it.
    pub(crate) fn of(room: &[u8]) -> Self {
        Self {
            start: if room.is_empty() {
                core::ptr::null()
            } else {
                room.as_ptr()
            },
            len: room.len(),
        }
    }

    /// Its length.
    pub(crate) const fn len(&self) -> usize {
        self.len
    }
}

impl IocomState {
    /// The next event in C form, logging a link-down.
    pub(crate) fn next_event(&mut self) -> H2msgEvent {
        let closed_locally = self.closed_locally;
        let event = match self.io.poll_event() {
            None => H2msgEvent::of_kind(H2MSG_EVENT_NONE),
            Some(Event::Message { msg, update }) => message_event(&msg, update),
            Some(Event::Rejected { header, error }) => H2msgEvent {
                detail: reject_detail(&error),
                side: side_of(error.key()),
                msg: header_only(&header),
                ..H2msgEvent::of_kind(H2MSG_EVENT_REJECTED)
            },
            Some(Event::Aborted { key, header }) => H2msgEvent {
                side: side_of(Some(key)),
                aborted: 1,
                msg: header_only(&header),
                ..H2msgEvent::of_kind(H2MSG_EVENT_ABORTED)
            },
            Some(Event::AuxStorageTooSmall { needed, available }) => H2msgEvent {
                aux_needed: needed,
                aux_available: available,
                ..H2msgEvent::of_kind(H2MSG_EVENT_AUX_TOO_SMALL)
            },
            Some(Event::TimedOut { key }) => timed_out_event(key),
            Some(Event::LinkDown(end)) => link_down_event(end, closed_locally),
            // `Event` is non-exhaustive: a newer core's event this shim does not know yet.
            Some(_) => H2msgEvent::of_kind(H2MSG_EVENT_OTHER),
        };
        if event.kind == H2MSG_EVENT_LINK_DOWN {
            // SAFETY: `log` came with the table `h2msg_iocom_init` was given, whose
            // contract makes it safe to call with a NUL-terminated line.
            unsafe { log_line(self.ops.log, link_down_line(&event)) };
        }
        event
    }
}

fn message_event(msg: &MessageView<'_>, update: TransUpdate) -> H2msgEvent {
    let detail = match update {
        TransUpdate::OneWay => H2MSG_TRANS_ONE_WAY,
        TransUpdate::Opened(_) => H2MSG_TRANS_OPENED,
        TransUpdate::Continued(_) => H2MSG_TRANS_CONTINUED,
        TransUpdate::DirectionClosed(_) => H2MSG_TRANS_DIRECTION_CLOSED,
        TransUpdate::Closed(_) => H2MSG_TRANS_CLOSED,
        TransUpdate::LateAbortDiscarded(_) => H2MSG_TRANS_LATE_ABORT,
    };
    let mut c_msg = header_only(msg.header());
    c_msg.bswapped = u16::from(msg.received().is_bswapped());
    if !msg.ext().is_empty() {
        c_msg.ext = msg.ext().as_ptr();
        c_msg.ext_len = msg.ext().len();
    }
    if !msg.aux().is_empty() {
        c_msg.aux = msg.aux().as_ptr();
        c_msg.aux_len = msg.aux().len();
    }
    H2msgEvent {
        detail,
        side: side_of(update.key()),
        aborted: u32::from(update.is_aborted()),
        msg: c_msg,
        ..H2msgEvent::of_kind(H2MSG_EVENT_MESSAGE)
    }
}

fn timed_out_event(key: TransKey) -> H2msgEvent {
    H2msgEvent {
        side: side_of(Some(key)),
        aborted: 1,
        msg: H2msgMessage {
            msgid: key.msgid,
            ..H2msgMessage::EMPTY
        },
        ..H2msgEvent::of_kind(H2MSG_EVENT_TIMED_OUT)
    }
}

fn link_down_event(end: LinkEnd, closed_locally: bool) -> H2msgEvent {
    let (detail, ioq_error, needed, available) = match end {
        LinkEnd::Closed => (H2MSG_DOWN_CLOSED, 0, 0, 0),
        LinkEnd::Failed(failure) => (H2MSG_DOWN_FAILED, failure.ioq_error().code(), 0, 0),
        LinkEnd::TransportFailed if closed_locally => (H2MSG_DOWN_LOCAL_CLOSE, 0, 0, 0),
        LinkEnd::TransportFailed => (H2MSG_DOWN_TRANSPORT, IoqError::Sock.code(), 0, 0),
        LinkEnd::AuxStorageTooSmall { needed, available } => {
            (H2MSG_DOWN_AUX_TOO_SMALL, 0, needed, available)
        }
        LinkEnd::PeerTimeout => (H2MSG_DOWN_PEER_TIMEOUT, IoqError::PeerTimeout.code(), 0, 0),
        LinkEnd::WriteStalled => (
            H2MSG_DOWN_WRITE_STALLED,
            IoqError::WriteStalled.code(),
            0,
            0,
        ),
        // Only a DMSG connection ends so; the shim drives the seed revision.
        LinkEnd::TransactionViolation(_) => (H2MSG_DOWN_FAILED, IoqError::Trans.code(), 0, 0),
    };
    H2msgEvent {
        detail,
        ioq_error: u32::from(ioq_error),
        aux_needed: needed,
        aux_available: available,
        ..H2msgEvent::of_kind(H2MSG_EVENT_LINK_DOWN)
    }
}

/// The log line of a link-down: static text, because formatting would bring `core::fmt`.
fn link_down_line(event: &H2msgEvent) -> &'static CStr {
    match (event.detail, event.ioq_error) {
        (H2MSG_DOWN_CLOSED, _) => c"h2msg: link down: the peer closed the stream",
        (H2MSG_DOWN_LOCAL_CLOSE, _) => c"h2msg: link down: closed locally",
        (H2MSG_DOWN_TRANSPORT, _) => c"h2msg: link down: transport failed (IOQ 3 SOCK)",
        (H2MSG_DOWN_AUX_TOO_SMALL, _) => c"h2msg: link down: aux data fits no buffer",
        (H2MSG_DOWN_PEER_TIMEOUT, _) => {
            c"h2msg: link down: no byte from the peer after a keepalive (PEERTIMEOUT 30)"
        }
        (H2MSG_DOWN_WRITE_STALLED, _) => {
            c"h2msg: link down: pending bytes made no write progress (WRSTALL 31)"
        }
        (_, 1) => c"h2msg: link down: bad magic (IOQ 1 SYNC)",
        (_, 2) => c"h2msg: link down: stream ended inside a message (IOQ 2 EOF)",
        (_, 4) => c"h2msg: link down: size field out of range (IOQ 4 FIELD)",
        (_, 5) => c"h2msg: link down: header CRC mismatch (IOQ 5 HCRC)",
        (_, 6) => c"h2msg: link down: extended header CRC mismatch (IOQ 6 XCRC)",
        (_, 7) => c"h2msg: link down: aux data CRC mismatch (IOQ 7 ACRC)",
        _ => c"h2msg: link down: receive stream failed",
    }
}

/// A header with no extended header or aux data attached.
fn header_only(h: &MsgHeader) -> H2msgMessage {
    H2msgMessage {
        cmd: h.cmd.raw(),
        msgid: h.msgid,
        salt: h.salt,
        aux_icrc: h.aux_icrc,
        source: h.source,
        target: h.target,
        error: h.error,
        resv05: h.resv05,
        icrc1: h.icrc1,
        icrc2: h.icrc2,
        aux_units: h.aux_units,
        ..H2msgMessage::EMPTY
    }
}

fn side_of(key: Option<TransKey>) -> u32 {
    match key.map(|k| k.side) {
        None => H2MSG_SIDE_NONE,
        Some(Side::Local) => H2MSG_SIDE_LOCAL,
        Some(Side::Remote) => H2MSG_SIDE_REMOTE,
    }
}

fn reject_detail(error: &TransError) -> u32 {
    match error {
        TransError::AlreadyOpen { .. } => H2MSG_REJECT_ALREADY_OPEN,
        TransError::UnknownTransaction { .. } => H2MSG_REJECT_UNKNOWN_TRANSACTION,
        TransError::DirectionClosed { .. } => H2MSG_REJECT_DIRECTION_CLOSED,
        TransError::ReplyNotOpened { .. } => H2MSG_REJECT_REPLY_NOT_OPENED,
        TransError::TableFull { .. } => H2MSG_REJECT_TABLE_FULL,
        _ => H2MSG_REJECT_OTHER,
    }
}

/// The C code for a refused send.
pub(crate) fn send_error_code(error: h2msg::SendError) -> c_int {
    use h2msg::SendError;
    use h2msg::ioq::TxError;
    match error {
        SendError::Tx(TxError::QueueFull { .. }) => H2MSG_ERR_AGAIN,
        SendError::Tx(_) => H2MSG_IOQ_FIELD,
        SendError::Transaction(_) => H2MSG_ERR_TRANSACTION,
        SendError::NoFreeMsgid { .. } => H2MSG_ERR_NO_MSGID,
        SendError::NoSuchTransaction => H2MSG_ERR_NO_TRANSACTION,
        SendError::LinkDown => H2MSG_ERR_LINK_DOWN,
        _ => H2MSG_ERR_OTHER,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use h2msg::ioq::RxFailure;
    use h2msg::wire::DecodeError;

    #[test]
    fn the_buffers_follow_the_state_without_overlap() {
        assert!(size_of::<H2msgIocom>() <= FIFO_OFFSET);
        assert_eq!(FIFO_OFFSET % 64, 0);
        assert_eq!(AUX_OFFSET, FIFO_OFFSET + 8192);
        assert_eq!(TX_RING_OFFSET, AUX_OFFSET + 65536);
        assert_eq!(IOCOM_SIZE, TX_RING_OFFSET + 2048 + 65536);
    }

    #[test]
    fn link_down_events_carry_the_spec_codes() {
        let failure = RxFailure {
            error: DecodeError::Hcrc {
                stored: 1,
                computed: 2,
            },
            offset: 0,
        };
        let failed = link_down_event(LinkEnd::Failed(failure), false);
        assert_eq!((failed.detail, failed.ioq_error), (H2MSG_DOWN_FAILED, 5));
        assert_eq!(
            link_down_line(&failed),
            c"h2msg: link down: header CRC mismatch (IOQ 5 HCRC)"
        );
        let socket = link_down_event(LinkEnd::TransportFailed, false);
        assert_eq!((socket.detail, socket.ioq_error), (H2MSG_DOWN_TRANSPORT, 3));
        let closed = link_down_event(LinkEnd::TransportFailed, true);
        assert_eq!(
            (closed.detail, closed.ioq_error),
            (H2MSG_DOWN_LOCAL_CLOSE, 0)
        );
        let stall = link_down_event(
            LinkEnd::AuxStorageTooSmall {
                needed: 70_000,
                available: 65_536,
            },
            false,
        );
        assert_eq!(
            (stall.detail, stall.aux_needed, stall.aux_available),
            (H2MSG_DOWN_AUX_TOO_SMALL, 70_000, 65_536)
        );
    }

    #[test]
    fn timed_out_and_liveness_ends_have_their_own_event_and_line() {
        let timed_out = timed_out_event(TransKey::local(9));
        assert_eq!(
            (
                timed_out.kind,
                timed_out.side,
                timed_out.aborted,
                timed_out.msg.msgid
            ),
            (H2MSG_EVENT_TIMED_OUT, H2MSG_SIDE_LOCAL, 1, 9)
        );
        let silent = link_down_event(LinkEnd::PeerTimeout, false);
        assert_eq!(
            (silent.detail, silent.ioq_error),
            (H2MSG_DOWN_PEER_TIMEOUT, 30)
        );
        assert_eq!(
            link_down_line(&silent),
            c"h2msg: link down: no byte from the peer after a keepalive (PEERTIMEOUT 30)"
        );
        let stalled = link_down_event(LinkEnd::WriteStalled, false);
        assert_eq!(
            (stalled.detail, stalled.ioq_error),
            (H2MSG_DOWN_WRITE_STALLED, 31)
        );
        assert_eq!(
            link_down_line(&stalled),
            c"h2msg: link down: pending bytes made no write progress (WRSTALL 31)"
        );
        assert_eq!(
            send_error_code(h2msg::SendError::NoSuchTransaction),
            H2MSG_ERR_NO_TRANSACTION
        );
    }

    #[test]
    fn every_stream_failure_code_has_its_own_log_line() {
        let lines: [(u32, &CStr); 6] = [
            (1, c"h2msg: link down: bad magic (IOQ 1 SYNC)"),
            (
                2,
                c"h2msg: link down: stream ended inside a message (IOQ 2 EOF)",
            ),
            (
                4,
                c"h2msg: link down: size field out of range (IOQ 4 FIELD)",
            ),
            (5, c"h2msg: link down: header CRC mismatch (IOQ 5 HCRC)"),
            (
                6,
                c"h2msg: link down: extended header CRC mismatch (IOQ 6 XCRC)",
            ),
            (7, c"h2msg: link down: aux data CRC mismatch (IOQ 7 ACRC)"),
        ];
        for (code, line) in lines {
            let event = H2msgEvent {
                detail: H2MSG_DOWN_FAILED,
                ioq_error: code,
                ..H2msgEvent::of_kind(H2MSG_EVENT_LINK_DOWN)
            };
            assert_eq!(link_down_line(&event), line, "IOQ {code}");
        }
    }

    #[test]
    fn refused_sends_map_to_their_codes() {
        use h2msg::SendError;
        use h2msg::ioq::TxError;
        use h2msg::wire::EncodeError;
        let full = SendError::Tx(TxError::QueueFull {
            needed: 64,
            free: 0,
        });
        assert_eq!(send_error_code(full), H2MSG_ERR_AGAIN);
        let too_big = SendError::Tx(TxError::Encode(EncodeError::AuxTooLarge { len: 70_000 }));
        assert_eq!(send_error_code(too_big), 4);
        assert_eq!(
            send_error_code(SendError::NoFreeMsgid {
                capacity: TRANSACTIONS
            }),
            H2MSG_ERR_NO_MSGID
        );
        assert_eq!(send_error_code(SendError::LinkDown), H2MSG_ERR_LINK_DOWN);
    }
}
