//! The tokio driver behind a [`Handle`]: one task owns the [`Link`] and serves the
//! handles' channels, the link's I/O and its timer in one `select!`.

use h2msg::drive::{DriveError as CoreDriveError, IoInterest, NextIo};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::Link;
use crate::blocking::DriveError;
use crate::handle::{Channels, Delivery, Handle, HandleError, Incoming, Received, Router, Taken};

/// Turns a link into a [`Handle`] (cloneable, for any number of tasks), the stream of
/// the peer's requests ([`Incoming`]) and the driver that serves both, which the caller
/// spawns: `tokio::spawn(driver.run())`.
///
/// Accept the commands the peer may request (`link.io().accept(cmd)`) before; the
/// commands of our own requests are accepted as they are first used.
///
/// ```
/// # async fn f(link: h2msg_std::tokio_driver::Link<tokio::net::TcpStream>)
/// # -> Result<(), Box<dyn std::error::Error>> {
/// let (handle, mut incoming, driver) = h2msg_std::tokio_driver::into_handle(link);
/// let running = tokio::spawn(driver.run());
/// tokio::spawn(async move {
///     while let Some(request) = incoming.next().await {
///         let data = request.data().to_vec();
///         let _ = request.reply(0, data).await; // echo
///     }
/// });
/// // ... handle.request(..).await from any task ...
/// handle.close().await?;
/// running.await??; // how the link ended
/// # Ok(()) }
/// ```
pub fn into_handle<S, const T: usize>(link: Link<S, T>) -> (Handle, Incoming, HandleDriver<S, T>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (router, channels, handle, incoming) = Router::new(None);
    let driver = HandleDriver {
        link,
        router,
        channels,
        parked: None,
    };
    (handle, incoming, driver)
}

/// The task that owns a link behind its [`Handle`]s ([`into_handle`]).
pub struct HandleDriver<S, const T: usize> {
    link: Link<S, T>,
    router: Router,
    channels: Channels,
    /// A received message whose consumer's channel is full: no further event is taken
    /// until it is handed over (the peer's bytes wait in the socket meanwhile).
    parked: Option<Delivery>,
}

/// How the driver's loop ended.
enum Ended {
    /// We closed the link: asked to, or every handle was dropped.
    ByUs,
    /// The peer closed it cleanly.
    ByPeer,
}

impl<S: AsyncRead + AsyncWrite + Unpin, const T: usize> HandleDriver<S, T> {
    /// Drives the link until it is closed — by [`Handle::close`], by every handle and
    /// responder being dropped (then as `close`: what was queued is written first), or
    /// by the peer — or fails. Every request still waiting then fails with
    /// [`HandleError::Closed`] (we closed) or [`HandleError::LinkLost`].
    ///
    /// # Errors
    /// How the link failed, as [`Link::next_event`] says.
    pub async fn run(mut self) -> Result<(), DriveError> {
        let ended = self.drive().await;
        let error = match ended {
            Ok(Ended::ByUs) => HandleError::Closed,
            _ => HandleError::LinkLost,
        };
        self.router
            .finish(&mut self.channels, self.parked.take(), &error);
        if matches!(ended, Ok(Ended::ByUs)) {
            self.router.closed();
        }
        ended.map(drop)
    }

    async fn drive(&mut self) -> Result<Ended, DriveError> {
        loop {
            let taken = self.router.take_work(self.link.io(), &mut self.channels);
            if taken == Taken::Close {
                self.close().await?;
                return Ok(Ended::ByUs);
            }
            if self.take_events() {
                // A reply may have freed a transaction for a waiting request.
                continue;
            }
            let wants = match self.link.pump.next_io() {
                Ok(NextIo::Wait(wants)) => wants,
                Ok(NextIo::Closed) => return Ok(Ended::ByPeer),
                // Nothing to read (a consumer holds events back), write or time: only
                // the consumer can move things.
                Err(CoreDriveError::Stalled) if self.parked.is_some() => IoInterest::default(),
                Err(e) => return Err(e),
            };
            // With the transmit queue full, only writing makes room.
            let take_ops = taken == Taken::Idle;
            let take_requests = take_ops && Router::has_free_transaction(self.link.io());
            let parked = self.parked.is_some();
            tokio::select! {
                // Delivering and I/O before new work: what is under way finishes first.
                biased;
                () = wait_room(self.parked.as_ref()), if parked => {
                    if let Some(delivery) = self.parked.take() {
                        self.parked = delivery.try_deliver();
                    }
                }
                turned = self.link.turn(wants) => turned?,
                op = self.channels.ops.recv(), if take_ops => {
                    self.router.handle_op(self.link.pump.io(), &mut self.channels, op);
                }
                request = self.channels.requests.recv(), if take_requests => {
                    self.router.handle_request(self.link.pump.io(), &mut self.channels, request);
                }
                abandoned = self.channels.abandoned.recv(), if take_ops => {
                    self.router.owe(abandoned);
                }
            }
        }
    }

    /// Routes every event the connection has, until one must wait for its consumer.
    /// Whether any was taken.
    fn take_events(&mut self) -> bool {
        let mut took = false;
        while self.parked.is_none() {
            let Some(event) = self.link.pump.poll_event() else {
                break;
            };
            let received = Received::from_event(event);
            self.parked = self.router.route(received, self.link.pump.io());
            took = true;
        }
        took
    }

    /// Queues what the handles had sent before the close, writes everything, and shuts
    /// the stream's write side: the peer reads our last message, then the end.
    async fn close(&mut self) -> Result<(), DriveError> {
        while self
            .router
            .take_remaining(self.link.io(), &mut self.channels)
            == Taken::QueueFull
        {
            self.link.flush().await?;
        }
        self.link.flush().await?;
        let shut = self.link.stream.shutdown().await;
        shut.map_err(|e| self.link.pump.on_transport_error(e))
    }
}

/// Returns once `delivery`'s consumer has room (or is gone).
async fn wait_room(delivery: Option<&Delivery>) {
    if let Some(delivery) = delivery {
        delivery.wait_room().await;
    }
}
