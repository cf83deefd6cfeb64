//! What a driver needs of a connection, whatever its revision: [`Iocom`] (the seed era)
//! and [`DmsgIocom`] (DMSG) both implement [`Connection`], so one pump and one driver loop
//! serve both.

use rand_core::Rng;

use crate::buf::OverCommit;
use crate::iocom::{DmsgEvent, DmsgIocom, Event, Interest, Iocom, LinkEnd};
use crate::time::Instant;
use crate::wire::Crc32c;

/// A connection's events, borrowed for `'a` (a trait of its own rather than a generic
/// associated type, so that a driver can take a closure over every event's lifetime even
/// when the connection's memory is borrowed).
pub trait PollEvent<'a> {
    /// What the connection hands the application, borrowed until the next `&mut` call.
    type Event;
    /// The next event, or `None` until something changes.
    fn poll_event(&'a mut self) -> Option<Self::Event>;
}

/// The driver side of a connection: bytes in and out, what it waits for, its timers, its
/// events. Each method is the connection's own inherent method of the same name.
pub trait Connection: for<'a> PollEvent<'a> {
    /// What the connection waits for.
    fn interest(&self) -> Interest;
    /// How the link ended, once its last event was given.
    fn link_end(&self) -> Option<LinkEnd>;
    /// Where to read into.
    fn read_buf(&mut self) -> &mut [u8];
    /// Reports `n` bytes read into [`read_buf`](Self::read_buf).
    ///
    /// # Errors
    /// [`OverCommit`] if `n` exceeds the room offered; nothing changes.
    fn commit_read(&mut self, n: usize) -> Result<(), OverCommit>;
    /// The input ended.
    fn end_input(&mut self);
    /// The transport failed.
    fn transport_failed(&mut self);
    /// Bytes to write, oldest first.
    fn pending(&self) -> [&[u8]; 2];
    /// The transport took `n` pending bytes.
    ///
    /// # Errors
    /// [`OverCommit`] if `n` exceeds the pending bytes; nothing changes.
    fn advance_write(&mut self, n: usize) -> Result<(), OverCommit>;
    /// The transport would block on a write.
    fn write_would_block(&mut self);
    /// When the connection next needs the time.
    fn poll_timeout(&self) -> Option<Instant>;
    /// Tells the connection the time.
    fn handle_timeout(&mut self, now: Instant);
}

/// Implements [`Connection`] by forwarding to the connection's inherent methods.
macro_rules! forward_connection {
    ($conn:ident, $event:ident) => {
        impl<'a, M, R, C, const T: usize> PollEvent<'a> for $conn<M, R, C, T>
        where
            M: AsRef<[u8]> + AsMut<[u8]>,
            R: Rng,
            C: Crc32c + Clone,
        {
            type Event = $event<'a>;

            fn poll_event(&'a mut self) -> Option<$event<'a>> {
                Self::poll_event(self)
            }
        }

        impl<M, R, C, const T: usize> Connection for $conn<M, R, C, T>
        where
            M: AsRef<[u8]> + AsMut<[u8]>,
            R: Rng,
            C: Crc32c + Clone,
        {
            fn interest(&self) -> Interest {
                Self::interest(self)
            }
            fn link_end(&self) -> Option<LinkEnd> {
                Self::link_end(self)
            }
            fn read_buf(&mut self) -> &mut [u8] {
                Self::read_buf(self)
            }
            fn commit_read(&mut self, n: usize) -> Result<(), OverCommit> {
                Self::commit_read(self, n)
            }
            fn end_input(&mut self) {
                Self::end_input(self);
            }
            fn transport_failed(&mut self) {
                Self::transport_failed(self);
            }
            fn pending(&self) -> [&[u8]; 2] {
                Self::pending(self)
            }
            fn advance_write(&mut self, n: usize) -> Result<(), OverCommit> {
                Self::advance_write(self, n)
            }
            fn write_would_block(&mut self) {
                Self::write_would_block(self);
            }
            fn poll_timeout(&self) -> Option<Instant> {
                Self::poll_timeout(self)
            }
            fn handle_timeout(&mut self, now: Instant) {
                Self::handle_timeout(self, now);
            }
        }
    };
}

forward_connection!(Iocom, Event);
forward_connection!(DmsgIocom, DmsgEvent);
