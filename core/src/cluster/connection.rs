//! Between a DMSG connection and the cluster: what a received `LNK_CONN` / `LNK_SPAN`
//! element means for the cluster ([`SpanInput`]), and how an [`Action`] goes out on a
//! [`DmsgIocom`]. Both adapters (the service and the simulator) use these, so that the
//! mapping of dmsg.md 5.2 and 5.5 is written once.

use rand_core::Rng;

use super::{Action, Cluster, ClusterError, ConnId, Storage};
use crate::iocom::{DmsgIocom, SendError};
use crate::ioq::TxError;
use crate::trans::{DmsgKey, Received, Side};
use crate::wire::{
    Cmd, Crc32c, DMSG_ERR_IO, DMSG_ERR_LOSTLINK, DmsgReceivedHeader, LnkConn, LnkSpan, MessageView,
    MsgFlags, WireOrder,
};

/// What one received message means for the cluster, copied out of the message.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(
    clippy::large_enum_variant,
    reason = "a span input carries its payload to the cluster once"
)]
pub enum SpanInput {
    /// The peer opened its `LNK_CONN` with this filter.
    ConnOpened(LnkConn, WireOrder),
    /// The peer closed its `LNK_CONN` (dmsg.md 5.2).
    ConnClosed,
    /// The peer opened the span `msgid` with this payload.
    SpanOpened(u64, LnkSpan, WireOrder),
    /// The peer withdrew its span `msgid` (dmsg.md 5.5).
    SpanWithdrawn(u64),
    /// The peer closed our span `msgid`: one of our relays (dmsg.md 5.5).
    RelayClosed(u64),
}

impl SpanInput {
    /// What `msg`, delivered as `received` by a [`DmsgIocom`], means for the cluster:
    /// `None` for anything but an `LNK_CONN` or `LNK_SPAN` element that opens or closes.
    /// A message that opens and closes at once counts as its close.
    #[must_use]
    pub fn of(msg: &MessageView<'_, DmsgReceivedHeader>, received: &Received) -> Option<Self> {
        let Received::Element {
            key,
            parent: None,
            effective_cmd,
            opened,
            ..
        } = *received
        else {
            // LNK_CONN and LNK_SPAN are top-level transactions (dmsg.md 5.2); stacked
            // ones are the application's (or a route's).
            return None;
        };
        let base = effective_cmd.clear(MsgFlags::REPLY).switch_key();
        let deleted = effective_cmd.flags().contains(MsgFlags::DELETE);
        let theirs = key.side == Side::Remote;
        if base == Cmd::DMSG_LNK_CONN.raw() && theirs {
            if deleted {
                return Some(Self::ConnClosed);
            }
            let conn = LnkConn::read_from_ext(msg.ext()).ok()?;
            return opened.then_some(Self::ConnOpened(conn, msg.order()));
        }
        if base != Cmd::DMSG_LNK_SPAN.raw() || !(opened || deleted) {
            return None;
        }
        if !theirs {
            return deleted.then_some(Self::RelayClosed(key.msgid));
        }
        if deleted {
            return Some(Self::SpanWithdrawn(key.msgid));
        }
        let span = LnkSpan::read_from_ext(msg.ext()).ok()?;
        Some(Self::SpanOpened(key.msgid, span, msg.order()))
    }
}

impl<S: Storage> Cluster<S> {
    /// Applies what connection `conn` received; the actions go to `out`.
    ///
    /// # Errors
    /// As the call it maps to; a refused [`SpanInput::SpanOpened`] is to be closed
    /// toward its sender ([`refuse_span`]).
    pub fn input(
        &mut self,
        conn: ConnId,
        input: &SpanInput,
        out: &mut impl FnMut(Action),
    ) -> Result<(), ClusterError> {
        match input {
            SpanInput::ConnOpened(filter, order) => self.conn_opened(conn, filter, *order, out),
            SpanInput::ConnClosed => {
                self.conn_closed(conn, out);
                Ok(())
            }
            SpanInput::SpanOpened(msgid, span, order) => {
                self.span_received(conn, *msgid, span, *order, out)
            }
            SpanInput::SpanWithdrawn(msgid) => self.span_withdrawn(conn, *msgid, out),
            SpanInput::RelayClosed(msgid) => self.relay_closed(conn, *msgid, out),
        }
    }
}

/// Closes the peer's span `msgid`, which the cluster could not hold, with error 0x22
/// (dmsg.md 5.7): the peer learns at once that it is not relayed. Best effort: a link
/// that cannot send any more is going down anyway.
pub fn refuse_span<M, R, C, const T: usize>(io: &mut DmsgIocom<M, R, C, T>, msgid: u64)
where
    M: AsRef<[u8]> + AsMut<[u8]>,
    R: Rng,
    C: Crc32c + Clone,
{
    let _ = io.answer(DmsgKey::theirs(msgid), true, DMSG_ERR_IO);
}

/// How [`send_action`] went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sent {
    /// Done (or nothing was left to do).
    Done,
    /// The transmit queue is full: send the same action again once it has drained, and
    /// nothing queued after it before (closes must not be lost: the cluster forgot the
    /// relay or twin already).
    QueueFull,
}

/// Whether a send failed only for want of room in the transmit queue.
const fn queue_full<T>(result: &Result<T, SendError>) -> bool {
    matches!(result, Err(SendError::Tx(TxError::QueueFull { .. })))
}

/// Sends `action` on `io`, the connection it names, and tells the cluster how it went:
/// an opened relay's msgid, or that it could not be opened (retried later). A close whose
/// relay has no msgid yet sends nothing: its open was never sent, and the caller drops it
/// from its queue. A full transmit queue is [`Sent::QueueFull`]: nothing was sent or
/// recorded, try again later.
pub fn send_action<M, R, C, const T: usize, S: Storage>(
    io: &mut DmsgIocom<M, R, C, T>,
    cluster: &mut Cluster<S>,
    action: &Action,
) -> Sent
where
    M: AsRef<[u8]> + AsMut<[u8]>,
    R: Rng,
    C: Crc32c + Clone,
{
    let result = match action {
        Action::OpenSpan { relay, span, .. } => {
            let opened = io.open(Cmd::DMSG_LNK_SPAN, None, span.as_ext(), &[]);
            match &opened {
                Ok(sent) => {
                    if !cluster.relay_opened(*relay, sent.msgid) {
                        // Closed by the cluster while queued: take it back at once.
                        let _ = io.answer(DmsgKey::ours(sent.msgid), true, 0);
                    }
                }
                Err(_) if queue_full(&opened) => {}
                Err(_) => cluster.relay_failed(*relay),
            }
            opened.map(drop)
        }
        // Our DELETE may have gone already (the receiver closed first): nothing to do.
        Action::CloseSpan {
            msgid: Some(msgid), ..
        } => io.answer(DmsgKey::ours(*msgid), true, 0).map(drop),
        Action::CloseSpan { msgid: None, .. } | Action::Terminate { key: None, .. } => Ok(()),
        // Best effort: without it the node stays unreachable until the next sequence.
        Action::RequestSeqno { under, .. } => io
            .open(
                Cmd::DMSG_LNK_SEQREQ.set(MsgFlags::DELETE),
                Some(DmsgKey::theirs(*under)),
                &[],
                &[],
            )
            .map(drop),
        // Nothing to do if our half had closed already.
        Action::Terminate { key: Some(key), .. } => io.abort(*key, DMSG_ERR_LOSTLINK).map(drop),
    };
    if queue_full(&result) {
        Sent::QueueFull
    } else {
        Sent::Done
    }
}

impl Action {
    /// The connection the action is for.
    #[must_use]
    pub const fn conn(&self) -> ConnId {
        match self {
            Self::OpenSpan { conn, .. }
            | Self::CloseSpan { conn, .. }
            | Self::RequestSeqno { conn, .. }
            | Self::Terminate { conn, .. } => *conn,
        }
    }
}
