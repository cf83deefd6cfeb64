//! What both handle drivers do between their channels and the connection, whatever
//! their I/O: open requests, queue replies and sends, and hand each received message to
//! whoever waits for it. No I/O here: the drivers poll the channels and the link, and
//! wait for room where this module says it found none.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use h2msg::ioq::TxError;
use h2msg::trans::{Side, TransKey};
use h2msg::wire::{Cmd, MSG_ERR_UNKNOWN, MsgFlags, MsgHeader};
use h2msg::{Event, SendError};
use tokio::sync::{mpsc, oneshot};

use super::{
    Handle, HandleError, INCOMING_QUEUE, Incoming, IncomingRequest, OP_QUEUE, REPLY_PART_QUEUE,
    REQUEST_QUEUE, Reply, ReplyParts, Responder, ToDriver, check_len,
};
use crate::blocking::{DuplexWaker, StdIocom};

/// One item of a [`ReplyParts`]: a part, or why the reply ended.
pub(crate) type PartItem = Result<Reply, HandleError>;

/// What ends a reply that found its stream full when the driver ended: read by
/// [`ReplyParts`] after the channel's items. At most two: the part the driver held for
/// it, and why the reply ended.
pub(crate) type Tail = Arc<Mutex<VecDeque<PartItem>>>;

/// Takes the tail's next item.
pub(crate) fn pop_tail(tail: &Tail) -> Option<PartItem> {
    tail.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .pop_front()
}

/// The driver's end of a [`ReplyParts`].
#[derive(Clone, Debug)]
pub(crate) struct PartsSender {
    parts: mpsc::Sender<PartItem>,
    tail: Tail,
}

impl PartsSender {
    /// Hands over the item that ends the reply even when the stream is full: into the
    /// tail then, read after the stream's items.
    fn end_with(&self, item: PartItem) {
        if let Err(mpsc::error::TrySendError::Full(item)) = self.parts.try_send(item) {
            let mut tail = self.tail.lock().unwrap_or_else(PoisonError::into_inner);
            tail.push_back(item);
        }
    }
}

/// Where a request's replies go.
#[derive(Debug)]
enum Waiter {
    /// [`Handle::request`]: the first reply only.
    One(oneshot::Sender<Result<Reply, HandleError>>),
    /// [`Handle::request_parts`]: every part.
    Parts(PartsSender),
}

/// A request on its way to the driver.
#[derive(Debug)]
pub(crate) struct Request {
    cmd: Cmd,
    data: Vec<u8>,
    waiter: Waiter,
}

impl Request {
    pub(super) fn one(
        cmd: Cmd,
        data: Vec<u8>,
        reply: oneshot::Sender<Result<Reply, HandleError>>,
    ) -> Result<Self, HandleError> {
        check_len(&data)?;
        Ok(Self {
            cmd,
            data,
            waiter: Waiter::One(reply),
        })
    }

    pub(super) fn parts(
        cmd: Cmd,
        data: Vec<u8>,
        waker: Option<DuplexWaker>,
    ) -> Result<(Self, ReplyParts), HandleError> {
        check_len(&data)?;
        let (sender, parts) = mpsc::channel(REPLY_PART_QUEUE);
        let tail = Tail::default();
        let sender = PartsSender {
            parts: sender,
            tail: Arc::clone(&tail),
        };
        let request = Self {
            cmd,
            data,
            waiter: Waiter::Parts(sender),
        };
        let parts = ReplyParts {
            parts,
            tail,
            ended: false,
            waker,
        };
        Ok((request, parts))
    }

    /// Tells the waiter the request failed.
    fn fail(self, error: HandleError) {
        match self.waiter {
            Waiter::One(reply) => {
                let _ = reply.send(Err(error));
            }
            Waiter::Parts(parts) => parts.end_with(Err(error)),
        }
    }
}

/// Any other message for the driver.
#[derive(Debug)]
pub(crate) enum Op {
    /// A reply to the peer's request `to`.
    Reply {
        to: MsgHeader,
        error: u16,
        data: Vec<u8>,
        last: bool,
    },
    /// A one-way message.
    OneWay { cmd: Cmd, data: Vec<u8> },
    /// Close the link once everything before this is queued; then say so.
    Close(oneshot::Sender<()>),
}

impl Op {
    pub(super) fn one_way(cmd: Cmd, data: Vec<u8>) -> Result<Self, HandleError> {
        check_len(&data)?;
        Ok(Self::OneWay { cmd, data })
    }
}

/// A request's waiter in the table of those awaiting replies.
#[derive(Debug)]
enum Waiting {
    /// Awaits its first reply.
    One(oneshot::Sender<Result<Reply, HandleError>>),
    /// Takes every part.
    Parts(PartsSender),
    /// Has what it wanted, or is gone: later parts are dropped until the final one.
    Done,
}

/// Something received, owned, on its way to whoever waits for it.
#[derive(Debug)]
pub(crate) enum Delivery {
    /// A reply part or the loss of its transaction.
    Part(PartsSender, PartItem),
    /// A request of the peer.
    Request(mpsc::Sender<IncomingRequest>, IncomingRequest),
}

impl Delivery {
    /// Hands it over if there is room; gives it back if not. Into a closed channel it
    /// is dropped: a responder dropped so answers 0x20.
    pub(crate) fn try_deliver(self) -> Option<Self> {
        match self {
            Self::Part(to, part) => match to.parts.try_send(part) {
                Err(mpsc::error::TrySendError::Full(part)) => Some(Self::Part(to, part)),
                _ => None,
            },
            Self::Request(to, request) => match to.try_send(request) {
                Err(mpsc::error::TrySendError::Full(request)) => Some(Self::Request(to, request)),
                _ => None,
            },
        }
    }

    /// Returns once its consumer has room or is gone (the tokio driver's wait). Only
    /// the driver sends on these channels, so the room is still there for
    /// [`try_deliver`](Self::try_deliver).
    #[cfg(feature = "tokio")]
    pub(crate) async fn wait_room(&self) {
        match self {
            Self::Part(to, _) => drop(to.parts.reserve().await),
            Self::Request(to, _) => drop(to.reserve().await),
        }
    }
}

/// The receiving ends of a link's handle channels, owned by its driver.
#[derive(Debug)]
pub(crate) struct Channels {
    pub(crate) requests: mpsc::Receiver<Request>,
    pub(crate) ops: mpsc::Receiver<Op>,
    pub(crate) abandoned: mpsc::UnboundedReceiver<MsgHeader>,
}

/// What taking work from the channels came to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Taken {
    /// Everything there was is queued on the link (or waits for a transaction slot).
    Idle,
    /// The link's transmit queue is full: write, then call again.
    QueueFull,
    /// Close now: asked for, or every handle is gone.
    Close,
}

/// A received message or loss, owned: the event's borrow of the connection has ended
/// when it is routed, so routing may look at the connection's tables.
#[derive(Debug)]
pub(crate) enum Received {
    Reply(MsgHeader, Vec<u8>),
    Request(MsgHeader, Vec<u8>),
    /// A transaction of ours ended with the link.
    Lost(u32),
    Nothing,
}

impl Received {
    /// What the router needs of one event of the connection.
    pub(crate) fn from_event(event: Event<'_>) -> Self {
        match event {
            Event::Message { msg, .. } => {
                let header = *msg.header();
                let data = msg.aux().to_vec();
                if header.cmd.is_reply() {
                    Self::Reply(header, data)
                } else {
                    Self::Request(header, data)
                }
            }
            Event::Aborted { key, .. } if key.side == Side::Local => Self::Lost(key.msgid),
            // Rejections were answered by the connection; the handle sets no deadlines;
            // the link's end is the driver's result.
            _ => Self::Nothing,
        }
    }
}

/// The driver's state between its channels and the connection.
#[derive(Debug)]
pub(crate) struct Router {
    /// Our open requests by msgid: at most the table's `T`.
    waiting: HashMap<u32, Waiting>,
    /// `None` once [`Incoming`] was dropped.
    incoming: Option<mpsc::Sender<IncomingRequest>>,
    /// For making responders without keeping the channels open ourselves.
    ops: mpsc::WeakSender<Op>,
    requests: mpsc::WeakSender<Request>,
    abandoned: mpsc::UnboundedSender<MsgHeader>,
    waker: Option<DuplexWaker>,
    /// Taken from a channel, refused for want of room: tried again first.
    parked: Option<Parked>,
    /// Answers the driver owes the peer (requests nobody takes): at most one per open
    /// transaction of the peer, `T`.
    owed: VecDeque<Owed>,
    /// Ops received from the channel so far: orders a dropped responder's answer after
    /// the parts it had sent.
    ops_received: u64,
    /// Who asked for the close, told once it is done.
    closers: Vec<oneshot::Sender<()>>,
    /// No more work is taken: closing.
    closing: bool,
}

/// A 0x20 answer the driver owes the peer, and when it may go.
#[derive(Debug)]
struct Owed {
    request: MsgHeader,
    /// Goes once this many ops have been received: every op in the channel when its
    /// responder was dropped (its parts among them, at most a full channel) is taken by
    /// then, so the answer never overtakes them — nor waits behind a channel that never
    /// empties. 0: at once.
    after: u64,
}

/// Work taken from a channel that did not fit yet.
#[derive(Debug)]
enum Parked {
    Request(Request),
    Op(Op),
}

impl Router {
    /// A router with its handle, incoming stream and channels.
    pub(crate) fn new(
        waker: Option<DuplexWaker>,
        transactions: usize,
    ) -> (Self, Channels, Handle, Incoming) {
        let (request_tx, requests) = mpsc::channel(REQUEST_QUEUE.max(transactions));
        let (op_tx, ops) = mpsc::channel(OP_QUEUE);
        let (abandoned_tx, abandoned) = mpsc::unbounded_channel();
        let (incoming_tx, incoming_rx) = mpsc::channel(INCOMING_QUEUE);
        let router = Self {
            waiting: HashMap::new(),
            incoming: Some(incoming_tx),
            ops: op_tx.downgrade(),
            requests: request_tx.downgrade(),
            abandoned: abandoned_tx,
            waker: waker.clone(),
            parked: None,
            owed: VecDeque::new(),
            ops_received: 0,
            closers: Vec::new(),
            closing: false,
        };
        let to = ToDriver::new(request_tx, op_tx, waker.clone());
        let incoming = Incoming {
            requests: incoming_rx,
            to: to.clone(),
        };
        let handle = Handle { to };
        let channels = Channels {
            requests,
            ops,
            abandoned,
        };
        (router, channels, handle, incoming)
    }

    /// Whether a new request could be opened now.
    pub(crate) fn has_free_transaction<const T: usize>(io: &StdIocom<T>) -> bool {
        let table = io.local_transactions();
        table.len() < table.capacity()
    }

    /// Queues on the link everything waiting in the channels that fits, oldest first.
    pub(crate) fn take_work<const T: usize>(
        &mut self,
        io: &mut StdIocom<T>,
        channels: &mut Channels,
    ) -> Taken {
        if self.closing {
            return Taken::Close;
        }
        self.take(io, channels)
    }

    /// While closing: queues what the channels held when the close came, and the
    /// answers owed. `QueueFull`: write, then call again; `Idle`: all queued.
    pub(crate) fn take_remaining<const T: usize>(
        &mut self,
        io: &mut StdIocom<T>,
        channels: &mut Channels,
    ) -> Taken {
        if self.take(io, channels) == Taken::QueueFull {
            return Taken::QueueFull;
        }
        // Requests that found no free transaction are not waited for: closing.
        while let Ok(request) = channels.requests.try_recv() {
            request.fail(HandleError::Closed);
        }
        Taken::Idle
    }

    fn take<const T: usize>(&mut self, io: &mut StdIocom<T>, channels: &mut Channels) -> Taken {
        while let Ok(header) = channels.abandoned.try_recv() {
            self.owe_after_ops(header);
        }
        if let Some(stuck) = self.parked.take().and_then(|parked| self.queue(io, parked)) {
            return self.park(stuck);
        }
        if self.answer_owed(io, false) {
            return Taken::QueueFull;
        }
        // One of each in turn, so that neither kind starves the other; replies never
        // wait behind requests that find our table full.
        loop {
            let mut took = false;
            let op = channels.ops.try_recv();
            if op.is_ok() {
                self.ops_received += 1;
            }
            match op {
                Ok(Op::Close(done)) => {
                    self.closers.push(done);
                    if !self.closing {
                        return self.start_closing(channels);
                    }
                    took = true;
                }
                Ok(op) => {
                    if let Some(stuck) = self.queue(io, Parked::Op(op)) {
                        return self.park(stuck);
                    }
                    took = true;
                }
                Err(mpsc::error::TryRecvError::Disconnected) if !self.closing => {
                    return self.start_closing(channels);
                }
                Err(_) => {}
            }
            if Self::has_free_transaction(io) {
                match channels.requests.try_recv() {
                    Ok(request) => {
                        if let Some(stuck) = self.queue(io, Parked::Request(request)) {
                            return self.park(stuck);
                        }
                        took = true;
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) if !self.closing => {
                        return self.start_closing(channels);
                    }
                    Err(_) => {}
                }
            }
            if !took {
                break;
            }
        }
        // The channel is empty: every op sent before any owed answer is queued.
        if self.answer_owed(io, true) {
            Taken::QueueFull
        } else {
            Taken::Idle
        }
    }

    /// Queues the owed answers that may go (`all`, or those whose ops are taken), oldest
    /// first. True if the transmit queue is full.
    fn answer_owed<const T: usize>(&mut self, io: &mut StdIocom<T>, all: bool) -> bool {
        while let Some(owed) = self.owed.front() {
            if !all && owed.after > self.ops_received {
                return false;
            }
            match io.reply(&owed.request, MSG_ERR_UNKNOWN, &[], true) {
                Err(SendError::Tx(TxError::QueueFull { .. })) => return true,
                // Sent, or the transaction is over anyway.
                _ => {
                    self.owed.pop_front();
                }
            }
        }
        false
    }

    /// A dropped responder's answer, to go after the ops its parts may be among.
    fn owe_after_ops(&mut self, request: MsgHeader) {
        let after = self.ops_received + OP_QUEUE as u64 + 1;
        self.owed.push_back(Owed { request, after });
    }

    /// An answer with nothing to wait for (a request nobody takes).
    fn owe_now(&mut self, request: MsgHeader) {
        self.owed.push_back(Owed { request, after: 0 });
    }

    /// An op a driver received while waiting (`None`: every handle is gone).
    #[cfg(feature = "tokio")]
    pub(crate) fn handle_op<const T: usize>(
        &mut self,
        io: &mut StdIocom<T>,
        channels: &mut Channels,
        op: Option<Op>,
    ) {
        if op.is_some() {
            self.ops_received += 1;
        }
        match op {
            Some(Op::Close(done)) => {
                self.closers.push(done);
                self.start_closing(channels);
            }
            Some(op) => {
                if let Some(stuck) = self.queue(io, Parked::Op(op)) {
                    self.park(stuck);
                }
            }
            None => {
                self.start_closing(channels);
            }
        }
    }

    /// A request a driver received while waiting (`None`: every handle is gone).
    #[cfg(feature = "tokio")]
    pub(crate) fn handle_request<const T: usize>(
        &mut self,
        io: &mut StdIocom<T>,
        channels: &mut Channels,
        request: Option<Request>,
    ) {
        match request {
            Some(request) => {
                if let Some(stuck) = self.queue(io, Parked::Request(request)) {
                    self.park(stuck);
                }
            }
            None => {
                self.start_closing(channels);
            }
        }
    }

    /// A request whose responder was dropped unanswered: answered 0x20 with the next
    /// work taken. (`None` never comes: the router holds a sender.)
    #[cfg(feature = "tokio")]
    pub(crate) fn owe(&mut self, request: Option<MsgHeader>) {
        if let Some(request) = request {
            self.owe_after_ops(request);
        }
    }

    fn park(&mut self, stuck: Parked) -> Taken {
        self.parked = Some(stuck);
        Taken::QueueFull
    }

    /// Stops taking new work: a handle's call from now on fails with Closed. What the
    /// channels already hold is taken by [`take_remaining`](Self::take_remaining).
    fn start_closing(&mut self, channels: &mut Channels) -> Taken {
        self.closing = true;
        channels.requests.close();
        channels.ops.close();
        Taken::Close
    }

    /// Opens a request; gives it back if the link has no room now.
    fn open<const T: usize>(&mut self, io: &mut StdIocom<T>, request: Request) -> Option<Parked> {
        // Accepted, so that its replies are handed over rather than dropped.
        if let Err(full) = io.accept(request.cmd) {
            request.fail(HandleError::AcceptListFull(full));
            return None;
        }
        match io.open(request.cmd, &[], &request.data, true) {
            Ok(sent) => {
                let waiting = match request.waiter {
                    Waiter::One(reply) => Waiting::One(reply),
                    Waiter::Parts(parts) => Waiting::Parts(parts),
                };
                self.waiting.insert(sent.msgid, waiting);
                None
            }
            Err(SendError::Tx(TxError::QueueFull { .. }) | SendError::NoFreeMsgid { .. }) => {
                Some(Parked::Request(request))
            }
            Err(SendError::LinkDown) => {
                request.fail(HandleError::LinkLost);
                None
            }
            Err(e) => {
                request.fail(HandleError::Refused(e));
                None
            }
        }
    }

    /// Queues an op; gives it back if the link has no room now.
    fn queue<const T: usize>(&mut self, io: &mut StdIocom<T>, parked: Parked) -> Option<Parked> {
        let op = match parked {
            Parked::Op(op) => op,
            Parked::Request(request) => return self.open(io, request),
        };
        let sent = match &op {
            Op::Reply {
                to,
                error,
                data,
                last,
            } => io.reply(to, *error, data, *last),
            Op::OneWay { cmd, data } => {
                let header = MsgHeader::new(cmd.clear(MsgFlags::ALL));
                io.send(header, &[], data)
            }
            Op::Close(_) => return None,
        };
        match sent {
            Err(SendError::Tx(TxError::QueueFull { .. })) => Some(Parked::Op(op)),
            // Sent; or refused for good (the link is down, or the peer ended the
            // transaction first): a one-way message has no one to tell, and the
            // responder's caller returned already.
            _ => None,
        }
    }

    /// Routes what was received: a reply to its waiter, a request to [`Incoming`].
    /// Returns what must wait for room in a consumer's channel.
    pub(crate) fn route<const T: usize>(
        &mut self,
        received: Received,
        io: &StdIocom<T>,
    ) -> Option<Delivery> {
        match received {
            Received::Reply(header, data) => self.on_reply(header, data),
            Received::Request(header, data) => {
                let open = io
                    .remote_transactions()
                    .get(TransKey::remote(header.msgid))
                    .is_some();
                self.on_request(header, data, open)
            }
            Received::Lost(msgid) => self.on_lost(msgid),
            Received::Nothing => None,
        }
    }

    fn on_reply(&mut self, header: MsgHeader, data: Vec<u8>) -> Option<Delivery> {
        let last = header.cmd.flags().contains(MsgFlags::DELETE);
        let entry = self.waiting.get_mut(&header.msgid)?;
        let reply = Reply { header, data };
        let delivery = match entry {
            Waiting::One(_) => {
                if let Waiting::One(to) = std::mem::replace(entry, Waiting::Done) {
                    let _ = to.send(Ok(reply));
                }
                None
            }
            Waiting::Parts(to) => Some(Delivery::Part(to.clone(), Ok(reply))),
            Waiting::Done => None,
        };
        if last {
            // Our request is over: the sender in the delivery, if any, is the last one,
            // so the parts end once it is handed over.
            self.waiting.remove(&header.msgid);
        }
        delivery.and_then(|d| d.try_deliver())
    }

    fn on_lost(&mut self, msgid: u32) -> Option<Delivery> {
        match self.waiting.remove(&msgid)? {
            Waiting::One(to) => {
                let _ = to.send(Err(HandleError::LinkLost));
                None
            }
            Waiting::Parts(to) => Delivery::Part(to, Err(HandleError::LinkLost)).try_deliver(),
            Waiting::Done => None,
        }
    }

    /// `open`: the peer has a transaction of that msgid open (after this message).
    fn on_request(&mut self, header: MsgHeader, data: Vec<u8>, open: bool) -> Option<Delivery> {
        let flags = header.cmd.flags();
        let opens = flags.contains(MsgFlags::CREATE);
        let transactional = flags.intersects(MsgFlags::CREATE | MsgFlags::DELETE | MsgFlags::ABORT);
        if !opens && (transactional || open) {
            // A later element of the peer's request: the handle serves requests of one
            // element; the connection keeps the transaction's state.
            return None;
        }
        let (Some(incoming), Some(ops), Some(requests)) = (
            self.incoming.as_ref(),
            self.ops.upgrade(),
            self.requests.upgrade(),
        ) else {
            if opens {
                self.owe_now(header);
            }
            return None;
        };
        if incoming.is_closed() {
            self.incoming = None;
            if opens {
                self.owe_now(header);
            }
            return None;
        }
        let responder = Responder {
            request: header,
            to: ToDriver::new(requests, ops, self.waker.clone()),
            abandoned: opens.then(|| self.abandoned.clone()),
        };
        let request = IncomingRequest {
            header,
            data,
            responder,
        };
        Delivery::Request(incoming.clone(), request).try_deliver()
    }

    /// The link is over: the delivery the driver still held is handed over as the end
    /// of its reply (a request of the peer is dropped: its responder answers nothing on
    /// a link that is gone), every request still waiting hears `error`; closers are told.
    fn finish(&mut self, channels: &mut Channels, held: Option<Delivery>, error: &HandleError) {
        // Before the errors below: its part came first.
        if let Some(Delivery::Part(to, part)) = held {
            to.end_with(part);
        }
        for (_, waiting) in self.waiting.drain() {
            match waiting {
                Waiting::One(to) => {
                    let _ = to.send(Err(error.clone()));
                }
                Waiting::Parts(to) => to.end_with(Err(error.clone())),
                Waiting::Done => {}
            }
        }
        if let Some(Parked::Request(request)) = self.parked.take() {
            request.fail(error.clone());
        }
        channels.requests.close();
        channels.ops.close();
        while let Ok(request) = channels.requests.try_recv() {
            request.fail(error.clone());
        }
        while let Ok(op) = channels.ops.try_recv() {
            if let Op::Close(done) = op {
                self.closers.push(done);
            }
        }
        self.incoming = None;
    }

    /// Tells whoever asked for the close that it is done.
    fn closed(&mut self) {
        for done in self.closers.drain(..) {
            let _ = done.send(());
        }
    }
}

/// How a handle driver's loop ended, when it did not fail.
#[derive(Debug)]
pub(crate) enum Ended {
    /// We closed the link: asked to, or every handle was dropped.
    ByUs,
    /// The peer closed it cleanly.
    ByPeer,
}

/// What both handle drivers own besides their link: the router, its channels, and the
/// received message held for want of room in its consumer's channel.
#[derive(Debug)]
pub(crate) struct Served {
    pub(crate) router: Router,
    pub(crate) channels: Channels,
    /// No further event is taken until it is handed over.
    pub(crate) held: Option<Delivery>,
}

impl Served {
    /// The core of a new driver for a link of `transactions` per direction, with its
    /// handle and incoming stream.
    pub(crate) fn new(waker: Option<DuplexWaker>, transactions: usize) -> (Self, Handle, Incoming) {
        let (router, channels, handle, incoming) = Router::new(waker, transactions);
        let served = Self {
            router,
            channels,
            held: None,
        };
        (served, handle, incoming)
    }

    /// [`Router::take_work`].
    pub(crate) fn take_work<const T: usize>(&mut self, io: &mut StdIocom<T>) -> Taken {
        self.router.take_work(io, &mut self.channels)
    }

    /// [`Router::take_remaining`].
    pub(crate) fn take_remaining<const T: usize>(&mut self, io: &mut StdIocom<T>) -> Taken {
        self.router.take_remaining(io, &mut self.channels)
    }

    /// Routes a received message; what finds no room is held.
    pub(crate) fn route<const T: usize>(&mut self, received: Received, io: &StdIocom<T>) {
        self.held = self.router.route(received, io);
    }

    /// Whether a received message waits for room.
    pub(crate) const fn is_holding(&self) -> bool {
        self.held.is_some()
    }

    /// Hands the held message over if its consumer has room now. Whether one is still
    /// held.
    pub(crate) fn hand_over(&mut self) -> bool {
        self.held = self.held.take().and_then(Delivery::try_deliver);
        self.held.is_some()
    }

    /// Returns once the `held` message's consumer has room or is gone (at once if none
    /// is held). Takes the field alone, so that a `select!` may borrow the channels too.
    #[cfg(feature = "tokio")]
    pub(crate) async fn room_for(held: Option<&Delivery>) {
        if let Some(held) = held {
            held.wait_room().await;
        }
    }

    /// Ends the driver: every request still waiting fails — [`HandleError::Closed`] if
    /// we closed, [`HandleError::LinkLost`] otherwise — and whoever asked for the close
    /// is told. Returns how the link ended.
    pub(crate) fn end<E>(mut self, ended: Result<Ended, E>) -> Result<(), E> {
        let by_us = matches!(ended, Ok(Ended::ByUs));
        let error = if by_us {
            HandleError::Closed
        } else {
            HandleError::LinkLost
        };
        self.router
            .finish(&mut self.channels, self.held.take(), &error);
        if by_us {
            self.router.closed();
        }
        ended.map(drop)
    }
}
