//! The 512-byte handshake both ends run first (§2): [`Handshake`].

mod prepared;
#[cfg(feature = "crypto")]
mod rsa_keys;
mod rsa_op;

use core::fmt;

use rand_core::TryCryptoRng;
use zeroize::Zeroize;

pub use prepared::{OwnKeyId, OwnRsa, PreparedBlock, PreparedBlockError};
#[cfg(feature = "crypto")]
pub use rsa_keys::OwnRsaKey;
#[cfg(feature = "crypto")]
pub use rsa_keys::{KeySizeMismatch, RsaKeys, private_block, public_block};
pub use rsa_op::{NoRsa, RawRsa, RsaOpError};

use crate::buf::OverCommit;
use crate::time::Instant;
use crate::wire::handshake_block::SESS_LEN;
use crate::wire::limits::{HANDSHAKE_LEN, HANDSHAKE_VERSION};
use crate::wire::{HandshakeBlock, IoqError, WireOrder};

/// Most attempts at a private-key result below `2^(8·blk−2)` before giving up (§2.4 step 1).
/// Each attempt succeeds with probability above 1/4, so 128 failures in a row mean a broken
/// key, not bad luck (the chance is below 2⁻⁵³).
pub const MAX_RSA_RETRIES: u32 = 128;

/// How the two ends protect the exchange.
#[derive(Debug)]
pub enum KeyMode<K> {
    /// Raw RSA with our private key and the peer's public key.
    Rsa(K),
    /// No keys: the 512 bytes travel in the clear (`.none` peers). Authenticates nothing.
    Plaintext,
}

/// Why the key exchange failed (KEYXCHGFAIL, 12).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyExchangeFailure {
    /// An RSA operation failed.
    Rsa(RsaOpError),
    /// No private-key result with its top two bits clear in [`MAX_RSA_RETRIES`] tries.
    RetriesExhausted,
    /// A decoded block had one of its top two bits set: not what any sender makes.
    OutOfRange {
        /// Offset of the block.
        block: usize,
    },
    /// The input ended before 512 bytes arrived.
    Truncated {
        /// Bytes received.
        received: usize,
    },
    /// The magic is neither byte order of 0x4832.
    Magic {
        /// The two bytes found.
        found: [u8; 2],
    },
    /// The version is not 1.
    Version {
        /// The version found.
        found: u16,
    },
    /// The verifier does not match the session key.
    Verifier,
    /// The deadline passed.
    Timeout,
}

/// Why the handshake failed. Each variant is one IOQ code (§2.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeError {
    /// KEYXCHGFAIL (12).
    KeyExchange(KeyExchangeFailure),
    /// KEYFMT (13): the keys' block size is not 256 or 512 bytes.
    KeyFormat {
        /// The block size the keys have.
        block_len: usize,
    },
    /// BADURANDOM (14): the random source failed or gave all zeros.
    BadRandom,
}

impl HandshakeError {
    /// The IOQ status code (§2.6).
    #[must_use]
    pub const fn ioq_error(&self) -> IoqError {
        match self {
            Self::KeyExchange(_) => IoqError::KeyXchgFail,
            Self::KeyFormat { .. } => IoqError::KeyFmt,
            Self::BadRandom => IoqError::BadURandom,
        }
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = self.ioq_error();
        match self {
            Self::KeyExchange(why) => match why {
                KeyExchangeFailure::Rsa(e) => write!(f, "{code}: {e}"),
                KeyExchangeFailure::RetriesExhausted => {
                    write!(f, "{code}: no usable RSA result in {MAX_RSA_RETRIES} tries")
                }
                KeyExchangeFailure::OutOfRange { block } => {
                    write!(
                        f,
                        "{code}: the block at {block:#x} decodes out of range (wrong key?)"
                    )
                }
                KeyExchangeFailure::Truncated { received } => {
                    write!(f, "{code}: input ended after {received} of 512 bytes")
                }
                KeyExchangeFailure::Magic { found } => {
                    write!(f, "{code}: magic bytes {:02x} {:02x}", found[0], found[1])
                }
                KeyExchangeFailure::Version { found } => {
                    write!(f, "{code}: version {found}, not 1")
                }
                KeyExchangeFailure::Verifier => {
                    write!(f, "{code}: verifier does not match (wrong key?)")
                }
                KeyExchangeFailure::Timeout => write!(f, "{code}: deadline passed"),
            },
            Self::KeyFormat { block_len } => {
                write!(
                    f,
                    "{code}: RSA block of {block_len} bytes; keys must be 2048 or 4096 bits"
                )
            }
            Self::BadRandom => write!(f, "{code}: random source failed or gave zeros"),
        }
    }
}

impl core::error::Error for HandshakeError {}

/// What a completed handshake yields: both session keys (`sess`), both `flags` fields and
/// what the peer said of itself. Consumed by
/// [`LinkSetup::negotiate`](crate::LinkSetup::negotiate), which turns it into the value a
/// connection is built from.
///
/// Secret: the keys are private, never printed and zeroized on drop. The only ways to get
/// one are a [`Handshake`] that completed, and — with the `test-util` feature, for tests
/// that need chosen keys — `Session::from_parts_for_testing`.
///
/// ```compile_fail
/// // The keys are private: a session cannot be written by hand (nor read back).
/// let forged = h2msg::Session { own_sess: [0; 64], peer_sess: [1; 64] };
/// ```
pub struct Session {
    own_sess: [u8; SESS_LEN],
    peer_sess: [u8; SESS_LEN],
    peer_quickmsg: [u8; 32],
    peer_order: WireOrder,
    own_flags: u32,
    peer_flags: u32,
    authenticated: bool,
}

impl Session {
    /// A session with chosen keys, as if an RSA handshake had produced it. Only for tests
    /// (known-answer vectors, replay and reflection scenarios): real keys come from a
    /// [`Handshake`].
    #[cfg(any(test, feature = "test-util"))]
    #[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
    #[must_use]
    pub const fn from_parts_for_testing(
        own_sess: [u8; SESS_LEN],
        peer_sess: [u8; SESS_LEN],
        own_flags: u32,
        peer_flags: u32,
    ) -> Self {
        Self {
            own_sess,
            peer_sess,
            peer_quickmsg: [0; 32],
            peer_order: WireOrder::Little,
            own_flags,
            peer_flags,
            authenticated: true,
        }
    }

    /// Both session keys, ours first: for tests that check what a handshake exchanged.
    #[cfg(feature = "test-util")]
    #[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
    #[must_use]
    pub const fn keys_for_testing(&self) -> (&[u8; SESS_LEN], &[u8; SESS_LEN]) {
        self.keys()
    }

    /// The peer's `quickmsg` up to its NUL (C peers send "Testing 1 2 3").
    #[must_use]
    pub fn peer_quickmsg_text(&self) -> &[u8] {
        crate::wire::until_nul(&self.peer_quickmsg)
    }

    /// The byte order of the peer's block.
    #[must_use]
    pub const fn peer_order(&self) -> WireOrder {
        self.peer_order
    }

    /// The `flags` we sent (0 unless built with [`Handshake::with_flags`]).
    #[must_use]
    pub const fn own_flags(&self) -> u32 {
        self.own_flags
    }

    /// The `flags` the peer sent, read in its byte order (C nodes send 0). Authentic when
    /// the exchange used RSA: any change on the wire fails the verifier.
    #[must_use]
    pub const fn peer_flags(&self) -> u32 {
        self.peer_flags
    }

    /// True if the exchange used RSA ([`KeyMode::Rsa`]); false for the plaintext exchange
    /// of `.none` peers, which proves and protects nothing.
    #[must_use]
    pub const fn is_authenticated(&self) -> bool {
        self.authenticated
    }

    /// Both session keys, ours first: for the negotiation that keys the stream.
    pub(crate) const fn keys(&self) -> (&[u8; SESS_LEN], &[u8; SESS_LEN]) {
        (&self.own_sess, &self.peer_sess)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.own_sess.zeroize();
        self.peer_sess.zeroize();
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("peer_order", &self.peer_order)
            .field("own_flags", &self.own_flags)
            .field("peer_flags", &self.peer_flags)
            .finish_non_exhaustive()
    }
}

/// What [`Handshake::poll`] found.
#[derive(Debug)]
#[non_exhaustive]
pub enum HandshakePoll {
    /// Bytes still have to be sent or received.
    InProgress,
    /// Both blocks went through: the session. Given once.
    Done(Session),
    /// The handshake failed. Said once; nothing more is sent or accepted.
    Failed(HandshakeError),
    /// `Done` or `Failed` was said already.
    Finished,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Running,
    Failed(HandshakeError),
    Reported,
}

/// The 512-byte handshake both ends run first (§2), as a sans-IO state machine.
///
/// Each side builds a block (random fill, then the fixed fields of §2.3: `quickmsg`,
/// magic, version 1, flags 0, the verifier of its `sess`, masked pad bytes), transforms it
/// block by block with raw RSA — our private key, then the peer's public key (§2.4) — and
/// sends the 512 bytes, while it receives the peer's 512 bytes in any chunking, undoes the
/// transform (our private key, then the peer's public key) and validates them (§2.5).
///
/// Drive it like the connection: [`Handshake::pending`] / [`Handshake::advance`] for the
/// bytes to send, [`Handshake::read_buf`] / [`Handshake::commit_read`] (or
/// [`Handshake::feed`]) for the bytes received, [`Handshake::end_input`] when the transport
/// ends, [`Handshake::handle_timeout`] with the caller's clock, and [`Handshake::poll`] for
/// the outcome. Nothing here blocks, allocates or reads a clock.
///
/// # Modes
///
/// * [`KeyMode::Rsa`]: the seed era's authenticated exchange. Both 256-byte blocks of a
///   2048-bit key (or the single block of a 4096-bit key) are transformed.
/// * [`KeyMode::Plaintext`]: the seed era's `.none` peers (§11 H5): the same 512 bytes are
///   exchanged **in the clear**. This mode authenticates nothing and keeps nothing secret;
///   it exists only to talk to peers configured with `remote/<peer>.none`.
///
/// # Choices where the C code is loose (§11)
///
/// | Item | C code | Here |
/// |---|---|---|
/// | H2 version | demands 1 | sends 1, demands 1 |
/// | H3 magic | not checked | must be 0x4832 in either order (C always sends one) |
/// | H4 key sizes | any size dividing 512 | 2048-bit (two blocks) or 4096-bit (one block), else KEYFMT |
/// | H6 RSA error while sending | keeps sending | stops at once |
/// | H7 timeout | none | optional deadline, KEYXCHGFAIL when it passes |
/// | H9 retry counter | host order | little-endian, at most [`MAX_RSA_RETRIES`] tries |
/// | — | — | each decoded block must have its top two bits clear, as every sender makes them |
///
/// The second RSA block carries only padding and random bytes, which nothing verifies: a
/// corrupted second block is caught only when its decoding falls out of range (most of the
/// time, not always). The first block carries `sess` and the verifier, and any damage there
/// fails the exchange.
pub struct Handshake<K> {
    keys: KeyMode<K>,
    block_len: usize,
    /// Wire bytes to send.
    tx: [u8; HANDSHAKE_LEN],
    sent: usize,
    /// Wire bytes received; decoded in place block by block.
    rx: [u8; HANDSHAKE_LEN],
    received: usize,
    decoded: usize,
    own_sess: [u8; SESS_LEN],
    own_flags: u32,
    deadline: Option<Instant>,
    input_ended: bool,
    state: State,
}

impl<K> fmt::Debug for Handshake<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handshake")
            .field("sent", &self.sent)
            .field("received", &self.received)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl<K> Drop for Handshake<K> {
    fn drop(&mut self) {
        self.tx.zeroize();
        self.rx.zeroize();
        self.own_sess.zeroize();
    }
}

impl<K: RawRsa> Handshake<K> {
    /// Builds and transforms our block (§2.3, §2.4). `deadline` is an instant on the
    /// driver's clock (see [`poll_timeout`](Self::poll_timeout)).
    ///
    /// # Errors
    /// KEYFMT for unusable keys, BADURANDOM for a failing or all-zero random fill,
    /// KEYXCHGFAIL for an RSA failure.
    pub fn new<R: TryCryptoRng + ?Sized>(
        keys: KeyMode<K>,
        rng: &mut R,
        order: WireOrder,
        deadline: Option<Instant>,
    ) -> Result<Self, HandshakeError> {
        Self::with_flags(keys, rng, order, deadline, 0)
    }

    /// Like [`new`](Self::new), sending `flags` in the block's `flags` field — for example
    /// [`ModeChoice::handshake_flags`](crate::stream::ModeChoice::handshake_flags) to
    /// advertise the `gcm` stream mode. The peer reads them from
    /// [`Session::peer_flags`].
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn with_flags<R: TryCryptoRng + ?Sized>(
        keys: KeyMode<K>,
        rng: &mut R,
        order: WireOrder,
        deadline: Option<Instant>,
        flags: u32,
    ) -> Result<Self, HandshakeError> {
        let block_len = match &keys {
            KeyMode::Rsa(k) => k.block_len(),
            KeyMode::Plaintext => HANDSHAKE_LEN,
        };
        check_block_len(block_len)?;
        let mut tx = [0u8; HANDSHAKE_LEN];
        let own_sess = stamp_fresh_block(rng, order, flags, &mut tx)?;
        let mut hs = Self::sending(keys, block_len, tx, own_sess, flags, deadline);
        if let KeyMode::Rsa(k) = &mut hs.keys {
            // Both steps of §2.4 here, one after the other: what
            // [`with_prepared`](Self::with_prepared) splits in two.
            private_results_in_place(|i, o| k.private_op(i, o), &mut hs.tx, block_len)
                .and_then(|()| peer_public_in_place(k, &mut hs.tx, block_len))
                .map_err(HandshakeError::KeyExchange)?;
        }
        Ok(hs)
    }

    /// Like [`with_flags`](Self::with_flags) with [`KeyMode::Rsa`], from a block whose
    /// private half of §2.4 was done ahead of time ([`PreparedBlock::prepare`]): only the
    /// peer's public operation is left, so the block is ready to send at once.
    ///
    /// The block is consumed, whatever the outcome: a block goes to one peer at most.
    /// `keys` must hold the private key it was prepared with, and `flags` must be those it
    /// was prepared for; otherwise nothing is built.
    ///
    /// # Errors
    /// [`PreparedBlockError::KeyMismatch`] or [`PreparedBlockError::FlagsMismatch`] for a
    /// block made for other keys or flags; [`PreparedBlockError::Handshake`] (KEYXCHGFAIL)
    /// if the peer's public operation fails.
    pub fn with_prepared(
        prepared: PreparedBlock,
        mut keys: K,
        deadline: Option<Instant>,
        flags: u32,
    ) -> Result<Self, PreparedBlockError> {
        prepared.check_fits(&keys, flags)?;
        let (mut tx, own_sess, block_len) = prepared.into_parts();
        peer_public_in_place(&mut keys, &mut tx, block_len)
            .map_err(|why| PreparedBlockError::Handshake(HandshakeError::KeyExchange(why)))?;
        // Copies: the `Zeroizing` originals are wiped here, the handshake wipes its own.
        Ok(Self::sending(
            KeyMode::Rsa(keys),
            block_len,
            *tx,
            *own_sess,
            flags,
            deadline,
        ))
    }

    /// A handshake about to send `tx`, with nothing received yet.
    const fn sending(
        keys: KeyMode<K>,
        block_len: usize,
        tx: [u8; HANDSHAKE_LEN],
        own_sess: [u8; SESS_LEN],
        own_flags: u32,
        deadline: Option<Instant>,
    ) -> Self {
        Self {
            keys,
            block_len,
            tx,
            sent: 0,
            rx: [0; HANDSHAKE_LEN],
            received: 0,
            decoded: 0,
            own_sess,
            own_flags,
            deadline,
            input_ended: false,
            state: State::Running,
        }
    }

    /// Bytes still to send.
    #[must_use]
    pub fn pending(&self) -> &[u8] {
        match self.state {
            State::Running => self.tx.get(self.sent..).unwrap_or_default(),
            _ => &[],
        }
    }

    /// The transport took `n` of the pending bytes.
    ///
    /// # Errors
    /// [`OverCommit`] if `n` exceeds them; nothing changes.
    pub fn advance(&mut self, n: usize) -> Result<(), OverCommit> {
        let room = self.pending().len();
        if n > room {
            return Err(OverCommit { reported: n, room });
        }
        self.sent += n;
        Ok(())
    }

    /// Where the next received bytes go; report them with [`commit_read`](Self::commit_read).
    /// Never more than the handshake's remaining bytes, so nothing of the message stream
    /// that follows is taken.
    pub fn read_buf(&mut self) -> &mut [u8] {
        if self.state != State::Running || self.input_ended {
            return &mut [];
        }
        self.rx.get_mut(self.received..).unwrap_or_default()
    }

    /// Reports `n` bytes read into [`read_buf`](Self::read_buf).
    ///
    /// # Errors
    /// [`OverCommit`] if `n` exceeds the room; nothing changes.
    pub fn commit_read(&mut self, n: usize) -> Result<(), OverCommit> {
        let room = self.read_buf().len();
        if n > room {
            return Err(OverCommit { reported: n, room });
        }
        self.received += n;
        Ok(())
    }

    /// Copies received bytes in; returns how many were taken (never past the 512th byte).
    pub fn feed(&mut self, bytes: &[u8]) -> usize {
        let n = crate::buf::copy_prefix(self.read_buf(), bytes);
        self.received += n;
        n
    }

    /// The transport ended: fewer than 512 bytes is KEYXCHGFAIL.
    pub fn end_input(&mut self) {
        self.input_ended = true;
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called: the deadline,
    /// while the exchange is unfinished (`None` without a deadline or once it is over).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
            .filter(|_| self.state == State::Running && !self.all_moved())
    }

    /// Every byte of the exchange was sent and received: the deadline no longer applies,
    /// [`poll`](Self::poll) decides.
    const fn all_moved(&self) -> bool {
        self.sent == HANDSHAKE_LEN && self.received == HANDSHAKE_LEN
    }

    /// Tells the time; at or past the deadline an unfinished handshake fails with
    /// KEYXCHGFAIL (§11 H7), said by the next [`poll`](Self::poll).
    pub fn handle_timeout(&mut self, now: Instant) {
        // Every byte moved in time: `poll` decides, however late it runs.
        if self.state == State::Running
            && !self.all_moved()
            && self.deadline.is_some_and(|d| now >= d)
        {
            self.fail(KeyExchangeFailure::Timeout);
        }
    }

    /// Decodes what has arrived and says how the handshake stands.
    pub fn poll(&mut self) -> HandshakePoll {
        if self.state == State::Running {
            self.step();
        }
        if self.state == State::Running {
            match self.finish() {
                None => return HandshakePoll::InProgress,
                Some(Ok(session)) => {
                    self.state = State::Reported;
                    return HandshakePoll::Done(session);
                }
                Some(Err(why)) => self.fail(why),
            }
        }
        match self.state {
            State::Running => HandshakePoll::InProgress,
            State::Failed(e) => {
                self.state = State::Reported;
                HandshakePoll::Failed(e)
            }
            State::Reported => HandshakePoll::Finished,
        }
    }

    /// The peer's block with the transform undone, once all 512 bytes were decoded. It
    /// holds the peer's session key, so only tests may see it.
    #[cfg(feature = "test-util")]
    #[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
    #[must_use]
    pub fn received_block_for_testing(&self) -> Option<&HandshakeBlock> {
        (self.decoded == HANDSHAKE_LEN).then(|| HandshakeBlock::from_wire(&self.rx))
    }

    fn step(&mut self) {
        while self.state == State::Running && self.received >= self.decoded + self.block_len {
            let at = self.decoded;
            // Both 256-byte blocks in at once: one call, so their private ops may overlap.
            let both_in =
                at == 0 && self.block_len * 2 == HANDSHAKE_LEN && self.received == HANDSHAKE_LEN;
            if let KeyMode::Rsa(k) = &mut self.keys {
                let decoded = if both_in {
                    decrypt_both_blocks(k, &mut self.rx)
                } else {
                    decrypt_block(k, &mut self.rx, at, self.block_len)
                };
                if let Err(why) = decoded {
                    self.fail(why);
                    return;
                }
                if both_in {
                    self.decoded = HANDSHAKE_LEN;
                    continue;
                }
            } else if self.rx.get(at).is_some_and(|b| b & 0xC0 != 0) {
                self.fail(KeyExchangeFailure::OutOfRange { block: at });
                return;
            }
            self.decoded += self.block_len;
        }
        if self.state == State::Running && self.input_ended && self.received < HANDSHAKE_LEN {
            self.fail(KeyExchangeFailure::Truncated {
                received: self.received,
            });
        }
    }

    fn fail(&mut self, why: KeyExchangeFailure) {
        self.state = State::Failed(HandshakeError::KeyExchange(why));
    }

    /// The session, if everything was sent, received and is valid (§2.5 steps 4–5).
    fn finish(&mut self) -> Option<Result<Session, KeyExchangeFailure>> {
        if self.state != State::Running || self.sent < HANDSHAKE_LEN || self.decoded < HANDSHAKE_LEN
        {
            return None;
        }
        let block = HandshakeBlock::from_wire(&self.rx);
        let order = match WireOrder::detect(block.magic) {
            Ok(order) => order,
            Err(_) => return Some(Err(KeyExchangeFailure::Magic { found: block.magic })),
        };
        if block.version() != HANDSHAKE_VERSION {
            return Some(Err(KeyExchangeFailure::Version {
                found: block.version(),
            }));
        }
        if !block.is_valid() {
            return Some(Err(KeyExchangeFailure::Verifier));
        }
        Some(Ok(Session {
            own_sess: self.own_sess,
            peer_sess: block.sess,
            peer_quickmsg: block.quickmsg,
            peer_order: order,
            own_flags: self.own_flags,
            peer_flags: block.flags(),
            authenticated: matches!(self.keys, KeyMode::Rsa(_)),
        }))
    }
}

/// KEYFMT unless the keys' blocks are 256 bytes (2048-bit keys) or 512 (4096-bit keys, or
/// the plaintext exchange) (§11 H4).
const fn check_block_len(block_len: usize) -> Result<(), HandshakeError> {
    if block_len != 256 && block_len != HANDSHAKE_LEN {
        return Err(HandshakeError::KeyFormat { block_len });
    }
    Ok(())
}

/// §2.3 into `tx`: random fill, then the fixed fields with `flags`. Returns our `sess`.
fn stamp_fresh_block<R: TryCryptoRng + ?Sized>(
    rng: &mut R,
    order: WireOrder,
    flags: u32,
    tx: &mut [u8; HANDSHAKE_LEN],
) -> Result<[u8; SESS_LEN], HandshakeError> {
    if rng.try_fill_bytes(tx).is_err() || tx.iter().all(|&b| b == 0) {
        tx.zeroize();
        return Err(HandshakeError::BadRandom);
    }
    let block = HandshakeBlock::from_wire_mut(tx);
    block.stamp_with_flags(order, flags);
    Ok(block.sess)
}

/// §2.4 step 1 for every block of `buf`, in place: retry our private op (bumping the retry
/// counter) until its result has the top two bits clear, and leave that result in the
/// block. It needs only our key, which is why it can be done before the peer is known.
fn private_results_in_place<F: FnMut(&[u8], &mut [u8]) -> Result<(), RsaOpError>>(
    mut private_op: F,
    buf: &mut [u8; HANDSHAKE_LEN],
    block_len: usize,
) -> Result<(), KeyExchangeFailure> {
    for block in buf.chunks_exact_mut(block_len) {
        fit_private_result(&mut private_op, block)?;
    }
    Ok(())
}

/// §2.4 step 1 for one RSA block (at most 512 bytes), in place: retry `private_op`, bumping
/// the block's retry counter (§11 H9) before each try, until the result has its top two
/// bits clear, at most [`MAX_RSA_RETRIES`] times; then the block holds that result.
///
/// For [`OwnRsa::private_results_pair`] implementations that run blocks on threads.
///
/// # Errors
/// The private op's error, or [`KeyExchangeFailure::RetriesExhausted`].
pub fn fit_private_result<F: FnMut(&[u8], &mut [u8]) -> Result<(), RsaOpError>>(
    mut private_op: F,
    block: &mut [u8],
) -> Result<(), KeyExchangeFailure> {
    let mut m1 = [0u8; HANDSHAKE_LEN];
    let result = (|| {
        let m1 = m1
            .get_mut(..block.len())
            .ok_or(KeyExchangeFailure::Rsa(RsaOpError::WrongLength))?;
        let mut tries = 0;
        loop {
            if tries == MAX_RSA_RETRIES {
                return Err(KeyExchangeFailure::RetriesExhausted);
            }
            tries += 1;
            bump_retry_counter(block);
            private_op(block, m1).map_err(KeyExchangeFailure::Rsa)?;
            if m1.first().is_some_and(|b| b & 0xC0 == 0) {
                break;
            }
        }
        block.copy_from_slice(m1);
        Ok(())
    })();
    m1.zeroize();
    result
}

/// §2.4 step 2 for every block of `buf`, in place: the peer's public op on our private
/// results, which makes the wire bytes.
fn peer_public_in_place<K: RawRsa>(
    keys: &mut K,
    buf: &mut [u8; HANDSHAKE_LEN],
    block_len: usize,
) -> Result<(), KeyExchangeFailure> {
    let mut m1 = [0u8; HANDSHAKE_LEN];
    let result = (|| {
        for block in buf.chunks_exact_mut(block_len) {
            let m1 = m1
                .get_mut(..block_len)
                .ok_or(KeyExchangeFailure::Rsa(RsaOpError::WrongLength))?;
            m1.copy_from_slice(block);
            keys.peer_public_op(m1, block)
                .map_err(KeyExchangeFailure::Rsa)?;
        }
        Ok(())
    })();
    m1.zeroize();
    result
}

/// §2.5 step 2 for the block at `at`: our private op, then the peer's public op, in place.
fn decrypt_block<K: RawRsa>(
    keys: &mut K,
    buf: &mut [u8; HANDSHAKE_LEN],
    at: usize,
    block_len: usize,
) -> Result<(), KeyExchangeFailure> {
    let mut p1 = [0u8; HANDSHAKE_LEN];
    let result = (|| {
        let block = buf
            .get_mut(at..at + block_len)
            .ok_or(KeyExchangeFailure::Rsa(RsaOpError::WrongLength))?;
        let p1 = p1
            .get_mut(..block_len)
            .ok_or(KeyExchangeFailure::Rsa(RsaOpError::WrongLength))?;
        keys.private_op(block, p1)
            .map_err(KeyExchangeFailure::Rsa)?;
        undo_peer_op(keys, p1, block, at)
    })();
    p1.zeroize();
    result
}

/// §2.5 step 2 for both 256-byte blocks at once: the two private ops through
/// [`RawRsa::private_op_pair`] (which may run them in parallel), then each block's public
/// op in order, so a failure is the one that decrypting block by block would give.
fn decrypt_both_blocks<K: RawRsa>(
    keys: &mut K,
    buf: &mut [u8; HANDSHAKE_LEN],
) -> Result<(), KeyExchangeFailure> {
    const HALF: usize = HANDSHAKE_LEN / 2;
    let mut p1 = [0u8; HANDSHAKE_LEN];
    let result = (|| {
        let (first, second) = buf.split_at_mut(HALF);
        let (p1_first, p1_second) = p1.split_at_mut(HALF);
        let [first_op, second_op] =
            keys.private_op_pair([first, second], [&mut *p1_first, &mut *p1_second]);
        first_op.map_err(KeyExchangeFailure::Rsa)?;
        undo_peer_op(keys, p1_first, first, 0)?;
        second_op.map_err(KeyExchangeFailure::Rsa)?;
        undo_peer_op(keys, p1_second, second, HALF)
    })();
    p1.zeroize();
    result
}

/// The rest of §2.5 step 2 for the block at `at`, given our private op's result `p1`: its
/// range check, the peer's public op into `block`, and that result's range check.
fn undo_peer_op<K: RawRsa>(
    keys: &mut K,
    p1: &[u8],
    block: &mut [u8],
    at: usize,
) -> Result<(), KeyExchangeFailure> {
    // The sender made this the private-op result with its top two bits clear.
    if p1.first().is_some_and(|b| b & 0xC0 != 0) {
        return Err(KeyExchangeFailure::OutOfRange { block: at });
    }
    keys.peer_public_op(p1, block)
        .map_err(KeyExchangeFailure::Rsa)?;
    // And this the block whose first byte it masked with 0x3F.
    if block.first().is_some_and(|b| b & 0xC0 != 0) {
        return Err(KeyExchangeFailure::OutOfRange { block: at });
    }
    Ok(())
}

/// Increments the little-endian u32 at bytes 4..8 of a block (§2.4 step 1, §11 H9).
fn bump_retry_counter(block: &mut [u8]) {
    if let Some(counter) = block.get_mut(4..8) {
        let mut le = [0u8; 4];
        le.copy_from_slice(counter);
        counter.copy_from_slice(&u32::from_le_bytes(le).wrapping_add(1).to_le_bytes());
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::wire::limits::HANDSHAKE_QUICKMSG;
    extern crate std;

    /// A stand-in for RSA: both operations copy, and the private one can be made to give
    /// a result with its top bit set a number of times, to drive the retry loop.
    struct MockRsa {
        block_len: usize,
        high_results: u32,
        private_calls: u32,
    }

    impl MockRsa {
        fn new(block_len: usize) -> Self {
            Self {
                block_len,
                high_results: 0,
                private_calls: 0,
            }
        }
    }

    impl RawRsa for MockRsa {
        fn block_len(&self) -> usize {
            self.block_len
        }
        fn private_op(&mut self, input: &[u8], out: &mut [u8]) -> Result<(), RsaOpError> {
            self.private_calls += 1;
            out.copy_from_slice(input);
            if self.high_results > 0 {
                self.high_results -= 1;
                out[0] |= 0x80;
            }
            Ok(())
        }
        fn peer_public_op(&mut self, input: &[u8], out: &mut [u8]) -> Result<(), RsaOpError> {
            out.copy_from_slice(input);
            Ok(())
        }
        fn own_key_id(&self) -> Option<OwnKeyId> {
            Some(OwnRsa::own_key_id(self))
        }
    }

    impl OwnRsa for MockRsa {
        fn block_len(&self) -> usize {
            self.block_len
        }
        fn own_key_id(&self) -> OwnKeyId {
            OwnKeyId::from_modulus(&[0xA5; 256][..self.block_len.min(256)])
        }
        fn private_op(&mut self, input: &[u8], out: &mut [u8]) -> Result<(), RsaOpError> {
            RawRsa::private_op(self, input, out)
        }
    }

    /// Bytes seed, seed+1, … (never all zero for a nonzero seed).
    pub(crate) struct SeqRng(pub(crate) u8);

    impl rand_core::TryRng for SeqRng {
        type Error = core::convert::Infallible;
        fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
            let mut b = [0u8; 4];
            self.try_fill_bytes(&mut b)?;
            Ok(u32::from_le_bytes(b))
        }
        fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
            Ok(u64::from(self.try_next_u32()?))
        }
        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
            for b in dst {
                *b = self.0;
                self.0 = self.0.wrapping_mul(31).wrapping_add(7);
            }
            Ok(())
        }
    }
    impl rand_core::TryCryptoRng for SeqRng {}

    struct BrokenRng;
    impl rand_core::TryRng for BrokenRng {
        type Error = core::fmt::Error;
        fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
            Err(core::fmt::Error)
        }
        fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
            Err(core::fmt::Error)
        }
        fn try_fill_bytes(&mut self, _: &mut [u8]) -> Result<(), Self::Error> {
            Err(core::fmt::Error)
        }
    }
    impl rand_core::TryCryptoRng for BrokenRng {}

    struct ZeroRng;
    impl rand_core::TryRng for ZeroRng {
        type Error = core::convert::Infallible;
        fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
            Ok(0)
        }
        fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
            Ok(0)
        }
        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
            dst.fill(0);
            Ok(())
        }
    }
    impl rand_core::TryCryptoRng for ZeroRng {}

    type Hs = Handshake<MockRsa>;

    fn side(seed: u8, mode: KeyMode<MockRsa>) -> Hs {
        Handshake::new(mode, &mut SeqRng(seed), WireOrder::Little, None).unwrap()
    }

    /// Moves at most `chunk` pending bytes of `from` into `to`.
    fn pipe(from: &mut Hs, to: &mut Hs, chunk: usize) {
        let n = from.pending().len().min(chunk);
        let bytes: std::vec::Vec<u8> = from.pending()[..n].to_vec();
        let taken = to.feed(&bytes);
        from.advance(taken).unwrap();
    }

    /// Runs two sides against each other, `chunk` bytes at a time each way.
    fn exchange(a: &mut Hs, b: &mut Hs, chunk: usize) -> (HandshakePoll, HandshakePoll) {
        let (mut ra, mut rb) = (None, None);
        for _ in 0..10_000 {
            pipe(a, b, chunk);
            pipe(b, a, chunk);
            for (hs, result) in [(&mut *a, &mut ra), (&mut *b, &mut rb)] {
                if result.is_none() {
                    match hs.poll() {
                        HandshakePoll::InProgress => {}
                        done => *result = Some(done),
                    }
                }
            }
            if ra.is_some() && rb.is_some() {
                break;
            }
        }
        (ra.unwrap(), rb.unwrap())
    }

    #[test]
    fn two_sides_agree_in_any_chunking_and_both_modes() {
        for chunk in [1, 7, 100, 255, 256, 257, 512] {
            for rsa in [true, false] {
                let mode = |n| {
                    if rsa {
                        KeyMode::Rsa(MockRsa::new(n))
                    } else {
                        KeyMode::Plaintext
                    }
                };
                let mut a = side(3, mode(256));
                let mut b = side(200, mode(256));
                let (own_a, own_b) = (a.own_sess, b.own_sess);
                let (HandshakePoll::Done(sa), HandshakePoll::Done(sb)) =
                    exchange(&mut a, &mut b, chunk)
                else {
                    panic!("chunk {chunk}");
                };
                assert_eq!((sa.own_sess, sa.peer_sess), (own_a, own_b));
                assert_eq!((sb.own_sess, sb.peer_sess), (own_b, own_a));
                assert_eq!(sa.peer_quickmsg_text(), &HANDSHAKE_QUICKMSG[..13]);
                assert!(matches!(a.poll(), HandshakePoll::Finished));
            }
        }
    }

    #[test]
    fn the_retry_counter_is_bumped_until_the_private_result_fits() {
        let plain = side(9, KeyMode::Rsa(MockRsa::new(512)));
        let mut forced = MockRsa::new(512);
        forced.high_results = 3;
        let retried = side(9, KeyMode::Rsa(forced));
        let counter = |hs: &Hs| u32::from_le_bytes(hs.tx[4..8].try_into().unwrap());
        assert_eq!(counter(&retried), counter(&plain).wrapping_add(3));
        let KeyMode::Rsa(keys) = &retried.keys else {
            panic!()
        };
        assert_eq!(keys.private_calls, 4);
        assert_eq!(retried.tx[8..], plain.tx[8..]);
    }

    #[test]
    fn the_retry_loop_is_bounded() {
        let mut hopeless = MockRsa::new(256);
        hopeless.high_results = u32::MAX;
        let err = Handshake::new(
            KeyMode::Rsa(hopeless),
            &mut SeqRng(1),
            WireOrder::Little,
            None,
        )
        .unwrap_err();
        assert_eq!(
            err,
            HandshakeError::KeyExchange(KeyExchangeFailure::RetriesExhausted)
        );
        assert_eq!(err.ioq_error(), IoqError::KeyXchgFail);
    }

    #[test]
    fn unusable_key_sizes_are_keyfmt() {
        for block_len in [0, 64, 128, 384, 1024] {
            let err = Handshake::new(
                KeyMode::Rsa(MockRsa::new(block_len)),
                &mut SeqRng(1),
                WireOrder::Little,
                None,
            )
            .unwrap_err();
            assert_eq!(err, HandshakeError::KeyFormat { block_len });
            assert_eq!(err.ioq_error(), IoqError::KeyFmt);
        }
    }

    #[test]
    fn a_broken_or_zero_random_source_is_badurandom() {
        let err =
            Handshake::<MockRsa>::new(KeyMode::Plaintext, &mut BrokenRng, WireOrder::Little, None)
                .unwrap_err();
        assert_eq!(err, HandshakeError::BadRandom);
        let err =
            Handshake::<MockRsa>::new(KeyMode::Plaintext, &mut ZeroRng, WireOrder::Little, None)
                .unwrap_err();
        assert_eq!(err.ioq_error(), IoqError::BadURandom);
    }

    #[test]
    fn fewer_than_512_bytes_then_the_end_is_keyxchgfail() {
        let mut a = side(1, KeyMode::Plaintext);
        let b = side(2, KeyMode::Plaintext);
        assert_eq!(a.feed(&b.pending()[..100]), 100);
        a.end_input();
        assert!(matches!(
            a.poll(),
            HandshakePoll::Failed(HandshakeError::KeyExchange(KeyExchangeFailure::Truncated {
                received: 100
            }))
        ));
        assert!(
            a.pending().is_empty(),
            "nothing more is sent after a failure"
        );
        assert!(matches!(a.poll(), HandshakePoll::Finished));
    }

    #[test]
    fn the_deadline_fails_an_unfinished_handshake() {
        let mut a = Handshake::<MockRsa>::new(
            KeyMode::Plaintext,
            &mut SeqRng(1),
            WireOrder::Little,
            Some(Instant::from_millis(10_000)),
        )
        .unwrap();
        assert_eq!(a.poll_timeout(), Some(Instant::from_millis(10_000)));
        a.handle_timeout(Instant::from_millis(9_999));
        assert!(matches!(a.poll(), HandshakePoll::InProgress));
        a.handle_timeout(Instant::from_millis(10_000));
        assert!(matches!(
            a.poll(),
            HandshakePoll::Failed(HandshakeError::KeyExchange(KeyExchangeFailure::Timeout))
        ));
        assert_eq!(a.poll_timeout(), None, "no timer once the exchange is over");
    }

    #[test]
    fn an_exchange_whose_bytes_all_moved_before_the_deadline_completes_after_it() {
        let deadline = Some(Instant::from_millis(100));
        let side = |seed| {
            Handshake::<MockRsa>::new(
                KeyMode::Plaintext,
                &mut SeqRng(seed),
                WireOrder::Little,
                deadline,
            )
            .unwrap()
        };
        let (mut a, b) = (side(1), side(2));
        a.feed(b.pending());
        a.advance(HANDSHAKE_LEN).unwrap();
        // The driver tells the time before it polls what it read.
        a.handle_timeout(Instant::from_millis(100));
        assert_eq!(a.poll_timeout(), None, "nothing left to wait for");
        assert!(matches!(a.poll(), HandshakePoll::Done(_)));
    }

    #[test]
    fn no_byte_past_the_handshake_is_taken() {
        let mut a = side(1, KeyMode::Plaintext);
        let b = side(2, KeyMode::Plaintext);
        let mut stream = b.pending().to_vec();
        stream.extend_from_slice(b"first message bytes");
        assert_eq!(a.feed(&stream), HANDSHAKE_LEN);
        assert!(a.read_buf().is_empty());
    }

    /// A plaintext peer block with one field changed.
    fn received_with(edit: impl Fn(&mut [u8; HANDSHAKE_LEN])) -> HandshakePoll {
        let mut a = side(1, KeyMode::Plaintext);
        let b = side(2, KeyMode::Plaintext);
        let mut block: [u8; HANDSHAKE_LEN] = b.pending().try_into().unwrap();
        edit(&mut block);
        a.feed(&block);
        a.advance(HANDSHAKE_LEN).unwrap();
        a.poll()
    }

    #[test]
    fn plaintext_mode_catches_flips_in_magic_version_sess_and_verf() {
        for byte in (0x08..0x0C).chain(0x10..0x60) {
            for bit in 0..8 {
                let poll = received_with(|b| b[byte] ^= 1 << bit);
                assert!(
                    matches!(poll, HandshakePoll::Failed(HandshakeError::KeyExchange(_))),
                    "flip at {byte:#x}/{bit}: {poll:?}"
                );
            }
        }
        let version_two = received_with(|b| b[0x0A] = 2);
        assert!(matches!(
            version_two,
            HandshakePoll::Failed(HandshakeError::KeyExchange(KeyExchangeFailure::Version {
                found: 2
            }))
        ));
        let bad_magic = received_with(|b| b[0x08] = 0);
        assert!(matches!(
            bad_magic,
            HandshakePoll::Failed(HandshakeError::KeyExchange(KeyExchangeFailure::Magic {
                found: [0, 0x48]
            }))
        ));
        // Flags are ignored (§2.1), as the C receiver does.
        assert!(matches!(
            received_with(|b| b[0x0C] ^= 0xFF),
            HandshakePoll::Done(_)
        ));
    }

    #[test]
    fn a_plaintext_only_handshake_needs_no_rsa() {
        let mut a =
            Handshake::<NoRsa>::new(KeyMode::Plaintext, &mut SeqRng(4), WireOrder::Little, None)
                .unwrap();
        let b =
            Handshake::<NoRsa>::new(KeyMode::Plaintext, &mut SeqRng(5), WireOrder::Little, None)
                .unwrap();
        a.feed(b.pending());
        a.advance(HANDSHAKE_LEN).unwrap();
        assert!(matches!(a.poll(), HandshakePoll::Done(_)));
    }

    #[test]
    fn a_big_endian_peer_is_understood() {
        let mut a = side(1, KeyMode::Plaintext);
        let b = Handshake::<MockRsa>::new(KeyMode::Plaintext, &mut SeqRng(2), WireOrder::Big, None)
            .unwrap();
        a.feed(b.pending());
        a.advance(HANDSHAKE_LEN).unwrap();
        let HandshakePoll::Done(s) = a.poll() else {
            panic!()
        };
        assert_eq!(s.peer_order, WireOrder::Big);
        assert_eq!(s.peer_sess, b.own_sess);
    }

    fn prepared(seed: u8, keys: &mut MockRsa, flags: u32) -> PreparedBlock {
        PreparedBlock::prepare(keys, &mut SeqRng(seed), WireOrder::Little, flags).unwrap()
    }

    #[test]
    fn a_prepared_block_sends_the_same_bytes_as_the_one_shot_path() {
        let mut forced = MockRsa::new(256);
        forced.high_results = 5;
        let block = prepared(9, &mut forced, 0x10);
        assert_eq!(
            forced.private_calls,
            2 + 5,
            "the retries are done while preparing"
        );
        let one_shot = Handshake::with_flags(
            KeyMode::Rsa(MockRsa::new(256)),
            &mut SeqRng(9),
            WireOrder::Little,
            None,
            0x10,
        )
        .unwrap();
        // The same draws but retries only in the prepared block: equal from the counter on.
        let mut finishing = MockRsa::new(256);
        finishing.high_results = u32::MAX; // any private op here would be out of range
        let hs = Handshake::with_prepared(block, finishing, None, 0x10).unwrap();
        assert_eq!(hs.pending()[8..256], one_shot.pending()[8..256]);
        assert_eq!(hs.pending()[264..], one_shot.pending()[264..]);
        let KeyMode::Rsa(keys) = &hs.keys else {
            panic!()
        };
        assert_eq!(keys.private_calls, 0, "no private op is left to do");
        assert_eq!(hs.own_sess, one_shot.own_sess);
    }

    #[test]
    fn a_prepared_side_and_a_one_shot_side_agree() {
        for chunk in [1, 100, 256, 512] {
            let block = prepared(3, &mut MockRsa::new(256), 0);
            let mut a = Handshake::with_prepared(block, MockRsa::new(256), None, 0).unwrap();
            let mut b = side(200, KeyMode::Rsa(MockRsa::new(256)));
            let (own_a, own_b) = (a.own_sess, b.own_sess);
            let (HandshakePoll::Done(sa), HandshakePoll::Done(sb)) =
                exchange(&mut a, &mut b, chunk)
            else {
                panic!("chunk {chunk}");
            };
            assert_eq!((sa.own_sess, sa.peer_sess), (own_a, own_b));
            assert_eq!((sb.own_sess, sb.peer_sess), (own_b, own_a));
        }
    }

    /// Keys that name another private key.
    struct OtherKey(MockRsa);

    impl RawRsa for OtherKey {
        fn block_len(&self) -> usize {
            self.0.block_len
        }
        fn private_op(&mut self, input: &[u8], out: &mut [u8]) -> Result<(), RsaOpError> {
            RawRsa::private_op(&mut self.0, input, out)
        }
        fn peer_public_op(&mut self, input: &[u8], out: &mut [u8]) -> Result<(), RsaOpError> {
            self.0.peer_public_op(input, out)
        }
        fn own_key_id(&self) -> Option<OwnKeyId> {
            Some(OwnKeyId::from_modulus(&[0x5A; 256]))
        }
    }

    /// Keys that cannot name theirs (the trait's default).
    struct Anonymous(MockRsa);

    impl RawRsa for Anonymous {
        fn block_len(&self) -> usize {
            self.0.block_len
        }
        fn private_op(&mut self, input: &[u8], out: &mut [u8]) -> Result<(), RsaOpError> {
            RawRsa::private_op(&mut self.0, input, out)
        }
        fn peer_public_op(&mut self, input: &[u8], out: &mut [u8]) -> Result<(), RsaOpError> {
            self.0.peer_public_op(input, out)
        }
    }

    #[test]
    fn a_block_prepared_for_other_keys_or_flags_is_refused() {
        let other_key = Handshake::with_prepared(
            prepared(1, &mut MockRsa::new(256), 0),
            OtherKey(MockRsa::new(256)),
            None,
            0,
        );
        assert_eq!(other_key.unwrap_err(), PreparedBlockError::KeyMismatch);
        let anonymous = Handshake::with_prepared(
            prepared(1, &mut MockRsa::new(256), 0),
            Anonymous(MockRsa::new(256)),
            None,
            0,
        );
        assert_eq!(anonymous.unwrap_err(), PreparedBlockError::KeyMismatch);
        let other_size = Handshake::with_prepared(
            prepared(1, &mut MockRsa::new(256), 0),
            MockRsa::new(512),
            None,
            0,
        );
        assert_eq!(other_size.unwrap_err(), PreparedBlockError::KeyMismatch);
        let other_flags = Handshake::with_prepared(
            prepared(1, &mut MockRsa::new(256), 0x3),
            MockRsa::new(256),
            None,
            0x1,
        );
        assert_eq!(
            other_flags.unwrap_err(),
            PreparedBlockError::FlagsMismatch {
                prepared: 0x3,
                requested: 0x1
            }
        );
    }

    #[test]
    fn preparing_checks_sizes_randomness_and_the_retry_bound() {
        assert_eq!(
            PreparedBlock::prepare(&mut MockRsa::new(128), &mut SeqRng(1), WireOrder::Little, 0)
                .unwrap_err(),
            HandshakeError::KeyFormat { block_len: 128 }
        );
        assert_eq!(
            PreparedBlock::prepare(&mut MockRsa::new(256), &mut ZeroRng, WireOrder::Little, 0)
                .unwrap_err(),
            HandshakeError::BadRandom
        );
        let mut hopeless = MockRsa::new(256);
        hopeless.high_results = u32::MAX;
        assert_eq!(
            PreparedBlock::prepare(&mut hopeless, &mut SeqRng(1), WireOrder::Little, 0)
                .unwrap_err(),
            HandshakeError::KeyExchange(KeyExchangeFailure::RetriesExhausted)
        );
    }

    #[test]
    fn the_key_id_ignores_leading_zeros_and_tells_keys_apart() {
        let mut padded = [0u8; 256];
        padded[1..].copy_from_slice(&[0x77; 255]);
        assert_eq!(
            OwnKeyId::from_modulus(&padded),
            OwnKeyId::from_modulus(&[0x77; 255])
        );
        assert_ne!(
            OwnKeyId::from_modulus(&[0x77; 255]),
            OwnKeyId::from_modulus(&[0x77; 256])
        );
        let mut last_differs = [0x77; 255];
        last_differs[254] = 0x78;
        assert_ne!(
            OwnKeyId::from_modulus(&[0x77; 255]),
            OwnKeyId::from_modulus(&last_differs)
        );
        assert_eq!(OwnKeyId::from_modulus(&[]), OwnKeyId::from_modulus(&[0, 0]));
    }

    /// Counts the calls of `private_op_pair` (then does the default's work).
    struct PairCounting {
        inner: MockRsa,
        pairs: u32,
    }

    impl RawRsa for PairCounting {
        fn block_len(&self) -> usize {
            self.inner.block_len
        }
        fn private_op(&mut self, input: &[u8], out: &mut [u8]) -> Result<(), RsaOpError> {
            RawRsa::private_op(&mut self.inner, input, out)
        }
        fn peer_public_op(&mut self, input: &[u8], out: &mut [u8]) -> Result<(), RsaOpError> {
            self.inner.peer_public_op(input, out)
        }
        fn private_op_pair(
            &mut self,
            inputs: [&[u8]; 2],
            outputs: [&mut [u8]; 2],
        ) -> [Result<(), RsaOpError>; 2] {
            self.pairs += 1;
            let [a, b] = inputs;
            let [oa, ob] = outputs;
            [
                RawRsa::private_op(&mut self.inner, a, oa),
                RawRsa::private_op(&mut self.inner, b, ob),
            ]
        }
    }

    #[test]
    fn both_blocks_in_at_once_are_decrypted_as_a_pair() {
        for (chunk, pairs) in [(512, 1), (256, 0), (100, 0)] {
            let peer = side(5, KeyMode::Rsa(MockRsa::new(256)));
            let mut hs = Handshake::new(
                KeyMode::Rsa(PairCounting {
                    inner: MockRsa::new(256),
                    pairs: 0,
                }),
                &mut SeqRng(6),
                WireOrder::Little,
                None,
            )
            .unwrap();
            hs.advance(HANDSHAKE_LEN).unwrap();
            let mut result = HandshakePoll::InProgress;
            for piece in peer.pending().chunks(chunk) {
                hs.feed(piece);
                result = hs.poll();
            }
            let HandshakePoll::Done(session) = result else {
                panic!("chunk {chunk}: {result:?}")
            };
            assert_eq!(session.peer_sess, peer.own_sess);
            let KeyMode::Rsa(keys) = &hs.keys else {
                panic!()
            };
            assert_eq!(keys.pairs, pairs, "chunk {chunk}");
        }
    }
}
