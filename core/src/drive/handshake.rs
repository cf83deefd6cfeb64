//! The transport-independent half of a handshake driver.

use super::{DriveError, IoInterest};
use crate::handshake::{Handshake, HandshakePoll, RawRsa, Session};
use crate::time::Instant;

/// What a handshake driver does next.
#[derive(Debug)]
pub enum HandshakeNext {
    /// Wait for whichever direction is ready, or until [`HandshakePump::poll_timeout`],
    /// then write [`HandshakePump::pending`] (report with [`HandshakePump::on_write`]),
    /// read into [`HandshakePump::read_buf`] (report with [`HandshakePump::on_read`]) and
    /// call [`HandshakePump::handle_timeout`]. Every one of our 512 bytes goes out (§11
    /// H8: write them all) while the peer's block may already be read.
    Wait(IoInterest),
    /// Both blocks went through.
    Done(Session),
}

/// A [`Handshake`] being driven: the part every driver shares.
///
/// ```
/// use core::convert::Infallible;
///
/// use h2msg::drive::{HandshakeNext, HandshakePump, IoInterest};
/// use h2msg::{Handshake, KeyMode, NoRsa};
/// use h2msg::wire::WireOrder;
/// # struct Counter(u8);
/// # impl h2msg::rand_core::TryRng for Counter {
/// #     type Error = core::convert::Infallible;
/// #     fn try_next_u32(&mut self) -> Result<u32, Self::Error> { Ok(7) }
/// #     fn try_next_u64(&mut self) -> Result<u64, Self::Error> { Ok(7) }
/// #     fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
/// #         for b in dst { self.0 = self.0.wrapping_add(1); *b = self.0; }
/// #         Ok(())
/// #     }
/// # }
/// # impl h2msg::rand_core::TryCryptoRng for Counter {}
///
/// let mode = KeyMode::<NoRsa>::Plaintext;
/// let hs = Handshake::new(mode, &mut Counter(0), WireOrder::Little, None)?;
/// let mut pump = HandshakePump::new(hs);
/// let both = IoInterest { read: true, write: true };
/// assert!(matches!(pump.next_step::<Infallible>(), Ok(HandshakeNext::Wait(w)) if w == both));
/// let sent = pump.pending().len();
/// pump.on_write::<Infallible>(Ok(sent))?;
/// let read = IoInterest { read: true, write: false };
/// assert!(matches!(pump.next_step::<Infallible>(), Ok(HandshakeNext::Wait(w)) if w == read));
/// pump.on_read::<Infallible>(Ok(0))?; // the peer hung up: KEYXCHGFAIL
/// assert_eq!(pump.next_step::<Infallible>().map(drop).map_err(|e| e.code()), Err(12));
/// # Ok::<(), Box<dyn core::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct HandshakePump<K> {
    hs: Handshake<K>,
}

impl<K: RawRsa> HandshakePump<K> {
    /// Drives `hs`.
    pub const fn new(hs: Handshake<K>) -> Self {
        Self { hs }
    }

    /// What to do next.
    ///
    /// # Errors
    /// [`DriveError::Handshake`] when the exchange failed (12–14);
    /// [`DriveError::Stalled`] for a handshake that had ended before it was given here.
    pub fn next_step<E>(&mut self) -> Result<HandshakeNext, DriveError<E>> {
        // Polled only once our block is out: a handshake reported done stops offering the
        // rest of its block. A failed one (its deadline) offers none, so it is seen here.
        let write = !self.hs.pending().is_empty();
        if !write {
            match self.hs.poll() {
                HandshakePoll::Done(session) => return Ok(HandshakeNext::Done(session)),
                HandshakePoll::Failed(e) => return Err(DriveError::Handshake(e)),
                HandshakePoll::InProgress => {}
                // Reported before: given here after its end.
                HandshakePoll::Finished => return Err(DriveError::Stalled),
            }
        }
        let wants = IoInterest {
            read: !self.hs.read_buf().is_empty(),
            write,
        };
        if !wants.read && !wants.write && self.hs.poll_timeout().is_none() {
            return Err(DriveError::Stalled);
        }
        Ok(HandshakeNext::Wait(wants))
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called: the
    /// handshake's deadline ([`Handshake::poll_timeout`]).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.hs.poll_timeout()
    }

    /// Tells the handshake the time ([`Handshake::handle_timeout`]): at its deadline an
    /// unfinished exchange fails with KEYXCHGFAIL (§11 H7), said by the next
    /// [`next_step`](Self::next_step).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.hs.handle_timeout(now);
    }

    /// Bytes still to send.
    #[must_use]
    pub fn pending(&self) -> &[u8] {
        self.hs.pending()
    }

    /// Where to read into.
    pub fn read_buf(&mut self) -> &mut [u8] {
        self.hs.read_buf()
    }

    /// Reports a write of [`pending`](Self::pending): `Ok(n)` bytes taken, or the
    /// transport's error (not its "try again").
    ///
    /// # Errors
    /// The transport's error, a write that took nothing or more than it was given (SOCK).
    pub fn on_write<E>(&mut self, result: Result<usize, E>) -> Result<(), DriveError<E>> {
        match result {
            Ok(0) if !self.pending().is_empty() => Err(DriveError::WriteZero),
            Ok(n) => self.hs.advance(n).map_err(DriveError::OverCommit),
            Err(e) => Err(DriveError::Io(e)),
        }
    }

    /// Reports a read into [`read_buf`](Self::read_buf): `Ok(0)` for the end of input
    /// (which fails the exchange if it is short), `Ok(n)` bytes read, or the transport's
    /// error (not its "try again").
    ///
    /// # Errors
    /// The transport's error, or a read of more than the room offered (SOCK).
    pub fn on_read<E>(&mut self, result: Result<usize, E>) -> Result<(), DriveError<E>> {
        match result {
            Ok(0) => {
                self.hs.end_input();
                Ok(())
            }
            Ok(n) => self.hs.commit_read(n).map_err(DriveError::OverCommit),
            Err(e) => Err(DriveError::Io(e)),
        }
    }
}

impl<K: RawRsa> super::PumpIo for HandshakePump<K> {
    fn pending(&self) -> [&[u8]; 2] {
        [Self::pending(self), &[]]
    }
    fn read_buf(&mut self) -> &mut [u8] {
        Self::read_buf(self)
    }
    fn on_write<E>(&mut self, result: Result<usize, E>) -> Result<(), DriveError<E>> {
        Self::on_write(self, result)
    }
    fn on_read<E>(&mut self, result: Result<usize, E>) -> Result<(), DriveError<E>> {
        Self::on_read(self, result)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Self::poll_timeout(self)
    }
    fn handle_timeout(&mut self, now: Instant) {
        Self::handle_timeout(self, now);
    }
}

#[cfg(test)]
mod tests {
    use core::convert::Infallible;

    use super::*;
    use crate::handshake::{KeyMode, NoRsa};
    use crate::wire::WireOrder;
    use crate::wire::limits::HANDSHAKE_LEN;

    /// Random bytes that are not random: 1, 2, 3, …
    struct Counting(u8);

    impl rand_core::TryRng for Counting {
        type Error = Infallible;
        fn try_next_u32(&mut self) -> Result<u32, Infallible> {
            Ok(7)
        }
        fn try_next_u64(&mut self) -> Result<u64, Infallible> {
            Ok(7)
        }
        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
            for b in dst {
                self.0 = self.0.wrapping_add(1);
                *b = self.0;
            }
            Ok(())
        }
    }

    impl rand_core::TryCryptoRng for Counting {}

    fn fresh() -> HandshakePump<NoRsa> {
        let hs = Handshake::new(
            KeyMode::<NoRsa>::Plaintext,
            &mut Counting(0),
            WireOrder::Little,
            None,
        )
        .unwrap();
        HandshakePump::new(hs)
    }

    /// WriteZero is a write that took nothing of a non-empty buffer; once the block is
    /// out, a write of nothing is no failure.
    #[test]
    fn a_write_of_nothing_fails_only_while_the_block_waits() {
        let mut pump = fresh();
        assert_eq!(
            pump.on_write::<Infallible>(Ok(0)).unwrap_err(),
            DriveError::WriteZero
        );
        assert_eq!(pump.pending().len(), HANDSHAKE_LEN, "nothing was taken");
        pump.on_write::<Infallible>(Ok(HANDSHAKE_LEN)).unwrap();
        assert_eq!(pump.on_write::<Infallible>(Ok(0)), Ok(()));
        assert!(matches!(
            pump.next_step::<Infallible>(),
            Ok(HandshakeNext::Wait(IoInterest {
                read: true,
                write: false
            }))
        ));
    }

    /// A read error is the transport's (SOCK); a read of more than the room offered is
    /// OverCommit; neither is taken as bytes.
    #[test]
    fn read_errors_are_reported_not_swallowed() {
        let mut pump = fresh();
        assert_eq!(pump.on_read(Err("reset")), Err(DriveError::Io("reset")));
        let room = pump.read_buf().len();
        assert_eq!(room, HANDSHAKE_LEN);
        assert!(matches!(
            pump.on_read::<Infallible>(Ok(room + 1)),
            Err(DriveError::OverCommit(_))
        ));
        assert_eq!(pump.read_buf().len(), room, "nothing was taken");
    }

    /// The deadline goes through the handshake's own seam: at it, the next step is
    /// KEYXCHGFAIL (12).
    #[test]
    fn the_deadline_ends_the_exchange_through_the_pump() {
        let hs = Handshake::new(
            KeyMode::<NoRsa>::Plaintext,
            &mut Counting(0),
            WireOrder::Little,
            Some(Instant::from_millis(500)),
        )
        .unwrap();
        let mut pump = HandshakePump::new(hs);
        pump.on_write::<Infallible>(Ok(HANDSHAKE_LEN)).unwrap();
        assert_eq!(pump.poll_timeout(), Some(Instant::from_millis(500)));
        pump.handle_timeout(Instant::from_millis(499));
        assert!(pump.next_step::<Infallible>().is_ok());
        pump.handle_timeout(Instant::from_millis(500));
        let err = pump.next_step::<Infallible>().map(drop).unwrap_err();
        assert_eq!(err.code(), 12);
    }
}
