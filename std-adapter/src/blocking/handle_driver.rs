//! The blocking driver behind a [`Handle`]: one thread owns the [`Link`] and serves the
//! handles' channels between its waits; each handle's call wakes it
//! ([`DuplexWaker`](super::DuplexWaker)).

use std::net::Shutdown;
use std::time::Duration;

use h2msg::drive::{IoInterest, Transport, Waited};

use super::{DriveError, DuplexStream, Link, now};
use crate::handle::{Ended, Handle, Incoming, Received, Served, Taken};

/// How long the driver waits without a wake before it looks at its channels again: a
/// backstop only, as every call of a handle wakes it.
const IDLE_SLICE: Duration = Duration::from_secs(1);

/// Turns a link into a [`Handle`] (cloneable, for any number of threads), the stream of
/// the peer's requests ([`Incoming`]) and the driver that serves both, which the caller
/// runs on a thread of its own: `thread::spawn(move || driver.run())`.
///
/// Accept the commands the peer may request (`link.io().accept(cmd)`) before; the
/// commands of our own requests are accepted as they are first used.
///
/// ```no_run
/// use h2msg::ModeChoice;
/// use h2msg::wire::Cmd;
/// use h2msg_std::keys::KeyDir;
/// use h2msg_std::{blocking, link};
///
/// let keys = KeyDir::new("/etc/hammer2");
/// let (link, _terms) = link::connect("192.0.2.7:987", &keys, ModeChoice::Auto)?;
/// let (handle, _incoming, driver) = blocking::into_handle(link);
/// let running = std::thread::spawn(move || driver.run());
/// let echo = Cmd::app(1).ok_or("command number")?;
/// let reply = handle.blocking_request(echo, b"hello".to_vec())?;
/// assert_eq!(reply.error(), 0);
/// handle.blocking_close()?; // what was queued is written first
/// running.join().map_err(|_| "the driver panicked")??;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn into_handle<S: DuplexStream, const T: usize>(
    mut link: Link<S, T>,
) -> (Handle, Incoming, HandleDriver<S, T>) {
    let waker = link.transport().waker();
    let (served, handle, incoming) = Served::new(Some(waker), T);
    (handle, incoming, HandleDriver { link, served })
}

/// The thread's work behind a link's [`Handle`]s ([`into_handle`]).
pub struct HandleDriver<S: DuplexStream, const T: usize> {
    link: Link<S, T>,
    /// A received message whose consumer's channel is full is held: no further event is
    /// taken until it is handed over (its consumer's next call wakes us); writes and
    /// timers go on meanwhile.
    served: Served,
}

impl<S: DuplexStream, const T: usize> HandleDriver<S, T> {
    /// Drives the link until it is closed — by [`Handle::blocking_close`] (or `close`),
    /// by every handle, `Incoming` and responder being dropped (then as `close`: what was queued is
    /// written first), or by the peer — or fails. Every request still waiting then
    /// fails with [`HandleError::Closed`](crate::handle::HandleError::Closed) (we closed) or [`HandleError::LinkLost`](crate::handle::HandleError::LinkLost).
    ///
    /// # Errors
    /// How the link failed, as [`Link::next_event`] says.
    pub fn run(mut self) -> Result<(), DriveError> {
        let ended = self.drive();
        self.served.end(ended)
    }

    fn drive(&mut self) -> Result<Ended, DriveError> {
        loop {
            match self.served.take_work(self.link.io()) {
                Taken::Close => {
                    self.close()?;
                    return Ok(Ended::ByUs);
                }
                // Only writing makes room; flushing reads meanwhile.
                Taken::QueueFull => {
                    self.link.flush()?;
                    continue;
                }
                Taken::Idle => {}
            }
            if self.served.is_holding() && self.served.hand_over() {
                self.drive_while_held()?;
                continue;
            }
            let deadline = now() + IDLE_SLICE;
            match self.link.next_event_until(deadline, Received::from_event)? {
                Waited::Event(received) => {
                    self.served.route(received, self.link.io());
                }
                Waited::Closed => return Ok(Ended::ByPeer),
                Waited::Elapsed | Waited::Woken => {}
            }
        }
    }

    /// While a received message waits for its consumer: writes what the handles queued,
    /// waits for a wake (the consumer's next call, a handle's) or the connection's next
    /// timer, and runs the timers — pings and the liveness rules go on. No event is
    /// taken: the peer's bytes wait in the socket.
    fn drive_while_held(&mut self) -> Result<(), DriveError> {
        self.link.flush()?;
        let slice_end = now() + IDLE_SLICE;
        let until = match self.link.io().poll_timeout() {
            Some(timer) if timer < slice_end => timer,
            _ => slice_end,
        };
        let waited = self
            .link
            .transport()
            .wait(IoInterest::default(), Some(until));
        waited.map_err(DriveError::Io)?;
        let woke_at = self.link.transport().now();
        self.link.io().handle_timeout(woke_at);
        Ok(())
    }

    /// Queues what the handles had sent before the close, writes everything, waits for
    /// the socket to take it (within [`LINGER`](super::LINGER)) and shuts the socket's
    /// write side: the peer reads our last message, then the end.
    fn close(&mut self) -> Result<(), DriveError> {
        while self.served.take_remaining(self.link.io()) == Taken::QueueFull {
            self.link.flush()?;
        }
        self.link.flush()?;
        let duplex = self.link.transport();
        duplex.finish_writes().map_err(DriveError::Io)?;
        duplex
            .stream()
            .shutdown(Shutdown::Write)
            .map_err(DriveError::Io)
    }
}
