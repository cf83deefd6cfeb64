//! The tokio driver behind a [`Handle`]: one task owns the [`Link`] and serves the
//! handles' channels, the link's I/O and its timer in one `select!`.

use h2msg::drive::{DriveError as CoreDriveError, IoInterest, NextIo};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::Link;
use crate::blocking::DriveError;
use crate::handle::{Ended, Handle, Incoming, Received, Router, Served, Taken};

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
    let (served, handle, incoming) = Served::new(None, T);
    (handle, incoming, HandleDriver { link, served })
}

/// The task that owns a link behind its [`Handle`]s ([`into_handle`]).
pub struct HandleDriver<S, const T: usize> {
    link: Link<S, T>,
    /// A received message whose consumer's channel is full is held: no further event is
    /// taken until it is handed over (the peer's bytes wait in the socket meanwhile).
    served: Served,
}

impl<S: AsyncRead + AsyncWrite + Unpin, const T: usize> HandleDriver<S, T> {
    /// Drives the link until it is closed — by [`Handle::close`], by every handle and
    /// responder being dropped (then as `close`: what was queued is written first), or
    /// by the peer — or fails. Every request still waiting then fails with
    /// [`HandleError::Closed`](crate::handle::HandleError::Closed) (we closed) or [`HandleError::LinkLost`](crate::handle::HandleError::LinkLost).
    ///
    /// # Errors
    /// How the link failed, as [`Link::next_event`] says.
    pub async fn run(mut self) -> Result<(), DriveError> {
        let ended = self.drive().await;
        self.served.end(ended)
    }

    async fn drive(&mut self) -> Result<Ended, DriveError> {
        loop {
            let taken = self.served.take_work(self.link.io());
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
                Err(CoreDriveError::Stalled) if self.served.is_holding() => IoInterest::default(),
                Err(e) => return Err(e),
            };
            // With the transmit queue full, only writing makes room.
            let take_ops = taken == Taken::Idle;
            let take_requests = take_ops && Router::has_free_transaction(self.link.io());
            let holding = self.served.is_holding();
            tokio::select! {
                // Delivering and I/O before new work: what is under way finishes first.
                biased;
                () = Served::room_for(self.served.held.as_ref()), if holding => {
                    self.served.hand_over();
                }
                turned = self.link.turn(wants) => turned?,
                op = self.served.channels.ops.recv(), if take_ops => {
                    let served = &mut self.served;
                    served.router.handle_op(self.link.pump.io(), &mut served.channels, op);
                }
                request = self.served.channels.requests.recv(), if take_requests => {
                    let served = &mut self.served;
                    served.router.handle_request(self.link.pump.io(), &mut served.channels, request);
                }
                abandoned = self.served.channels.abandoned.recv(), if take_ops => {
                    self.served.router.owe(abandoned);
                }
            }
        }
    }

    /// Routes every event the connection has, until one must wait for its consumer.
    /// Whether any was taken.
    fn take_events(&mut self) -> bool {
        let mut took = false;
        while !self.served.is_holding() {
            let Some(event) = self.link.pump.poll_event() else {
                break;
            };
            let received = Received::from_event(event);
            self.served.route(received, self.link.pump.io());
            took = true;
        }
        took
    }

    /// Queues what the handles had sent before the close, writes everything, and shuts
    /// the stream's write side: the peer reads our last message, then the end.
    async fn close(&mut self) -> Result<(), DriveError> {
        while self.served.take_remaining(self.link.io()) == Taken::QueueFull {
            self.link.flush().await?;
        }
        self.link.flush().await?;
        let shut = self.link.stream.shutdown().await;
        shut.map_err(|e| self.link.pump.on_transport_error(e))
    }
}
