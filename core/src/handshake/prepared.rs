//! The half of our handshake block that depends only on our own key (§2.3 and §2.4 step 1),
//! made ahead of time: [`PreparedBlock`].
//!
//! §2.4 retries the private operation until its result has the top two bits clear, which
//! costs 3–4 private operations per RSA block on average and involves only our key. A
//! node can do that before a peer connects and keep the results; when one connects, only
//! the peer's (cheap) public operation is left: [`Handshake::with_prepared`](super::Handshake::with_prepared).

use core::fmt;

use rand_core::TryCryptoRng;
use zeroize::{Zeroize, Zeroizing};

use super::{
    HandshakeError, KeyExchangeFailure, RawRsa, RsaOpError, check_block_len,
    private_results_in_place, stamp_fresh_block,
};
use crate::wire::WireOrder;
use crate::wire::handshake_block::SESS_LEN;
use crate::wire::limits::HANDSHAKE_LEN;

/// Names a private key by its public modulus, so that a block prepared with one key is
/// never sent with another.
///
/// It holds the modulus's length and its 32 low-order bytes. The modulus is the product of
/// two random primes, so two keys of ours share those bytes with negligible probability;
/// this guards against mixing up our own keys, not against a forger (who never sees a
/// prepared block).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct OwnKeyId {
    modulus_len: usize,
    modulus_tail: [u8; 32],
}

impl OwnKeyId {
    /// The id of the key whose public modulus is `modulus` (big-endian, as `RSA_size`
    /// bytes or with leading zeros stripped: the low-order bytes are the same).
    #[must_use]
    pub fn from_modulus(modulus: &[u8]) -> Self {
        let modulus = match modulus.iter().position(|&b| b != 0) {
            Some(first) => modulus.get(first..).unwrap_or_default(),
            None => &[],
        };
        let mut modulus_tail = [0u8; 32];
        let take = modulus.len().min(32);
        let (_, tail_dst) = modulus_tail.split_at_mut(32 - take);
        let (_, tail_src) = modulus.split_at(modulus.len() - take);
        tail_dst.copy_from_slice(tail_src);
        Self {
            modulus_len: modulus.len(),
            modulus_tail,
        }
    }
}

impl fmt::Debug for OwnKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OwnKeyId({} bytes, …", self.modulus_len)?;
        for b in self.modulus_tail.get(28..).unwrap_or_default() {
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

/// Our private key alone: all that preparing a block needs (the peer's key comes later,
/// in the [`RawRsa`] given to
/// [`Handshake::with_prepared`](super::Handshake::with_prepared)).
///
/// Implementations must blind the private operation (RUSTSEC-2023-0071).
pub trait OwnRsa {
    /// `RSA_size` of the key: 256 for 2048-bit keys, 512 for 4096-bit keys.
    fn block_len(&self) -> usize;

    /// Which key this is; [`RawRsa::own_key_id`] must say the same for the same key.
    fn own_key_id(&self) -> OwnKeyId;

    /// `out = input^d mod n` with our private key.
    ///
    /// # Errors
    /// [`RsaOpError`].
    fn private_op(&mut self, input: &[u8], out: &mut [u8]) -> Result<(), RsaOpError>;

    /// §2.4 step 1 on both RSA blocks of a 2048-bit key's handshake block, in place: each
    /// becomes our private-key result with its top two bits clear, as
    /// [`fit_private_result`](super::fit_private_result) makes it, each with its own
    /// outcome. The default does one block, then the other; an implementation with threads
    /// may do both at once (they are independent), which is most of a connecting side's
    /// wait when no block was prepared ahead.
    fn private_results_pair(
        &mut self,
        blocks: [&mut [u8]; 2],
    ) -> [Result<(), KeyExchangeFailure>; 2] {
        let [first, second] = blocks;
        [
            super::fit_private_result(|i, o| self.private_op(i, o), first),
            super::fit_private_result(|i, o| self.private_op(i, o), second),
        ]
    }
}

/// Our handshake block with the private half of §2.4 done: the random fill and stamp of
/// §2.3 (with its `flags`), then per RSA block our private-key result with its top two bits
/// clear. [`Handshake::with_prepared`](super::Handshake::with_prepared) finishes it for one
/// peer.
///
/// Secret: it holds our `sess`, which is never printed and is zeroized on drop. It cannot
/// be cloned or copied, and finishing it consumes it, so one block reaches one peer at
/// most — two peers given the same block would share our session key.
///
/// ```compile_fail
/// fn twice(block: h2msg::PreparedBlock) -> (h2msg::PreparedBlock, h2msg::PreparedBlock) {
///     (block.clone(), block)
/// }
/// ```
pub struct PreparedBlock {
    /// Per RSA block, our private-key result (top two bits clear).
    private_results: [u8; HANDSHAKE_LEN],
    own_sess: [u8; SESS_LEN],
    block_len: usize,
    flags: u32,
    key: OwnKeyId,
}

impl PreparedBlock {
    /// Builds our block (§2.3, with `flags` in the byte `order`) and runs the private half
    /// of §2.4 on it with `key`: the slow part of a handshake, with no peer yet.
    ///
    /// # Errors
    /// KEYFMT for unusable key sizes, BADURANDOM for a failing or all-zero random fill,
    /// KEYXCHGFAIL for an RSA failure or [`MAX_RSA_RETRIES`](super::MAX_RSA_RETRIES) results
    /// out of range in a row.
    pub fn prepare<S: OwnRsa + ?Sized, R: TryCryptoRng + ?Sized>(
        key: &mut S,
        rng: &mut R,
        order: WireOrder,
        flags: u32,
    ) -> Result<Self, HandshakeError> {
        let block_len = key.block_len();
        check_block_len(block_len)?;
        let mut block = Self {
            private_results: [0; HANDSHAKE_LEN],
            own_sess: [0; SESS_LEN],
            block_len,
            flags,
            key: key.own_key_id(),
        };
        block.own_sess = stamp_fresh_block(rng, order, flags, &mut block.private_results)?;
        if block_len * 2 == HANDSHAKE_LEN {
            let (first, second) = block.private_results.split_at_mut(block_len);
            for result in key.private_results_pair([first, second]) {
                result.map_err(HandshakeError::KeyExchange)?;
            }
        } else {
            private_results_in_place(
                |i, o| key.private_op(i, o),
                &mut block.private_results,
                block_len,
            )
            .map_err(HandshakeError::KeyExchange)?;
        }
        Ok(block)
    }

    /// The `flags` the block carries.
    #[must_use]
    pub const fn flags(&self) -> u32 {
        self.flags
    }

    /// The key it was prepared with.
    #[must_use]
    pub const fn key_id(&self) -> OwnKeyId {
        self.key
    }

    /// Our `sess` in this block: for tests that check blocks are never reused.
    #[cfg(any(test, feature = "test-util"))]
    #[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
    #[must_use]
    pub const fn sess_for_testing(&self) -> &[u8; SESS_LEN] {
        &self.own_sess
    }

    /// Refuses `keys` and `flags` other than those the block was made for.
    pub(super) fn check_fits<K: RawRsa>(
        &self,
        keys: &K,
        flags: u32,
    ) -> Result<(), PreparedBlockError> {
        if keys.block_len() != self.block_len || keys.own_key_id() != Some(self.key) {
            return Err(PreparedBlockError::KeyMismatch);
        }
        if flags != self.flags {
            return Err(PreparedBlockError::FlagsMismatch {
                prepared: self.flags,
                requested: flags,
            });
        }
        Ok(())
    }

    /// The private results, our `sess` and the block length, in wrappers that wipe them;
    /// the block itself is wiped as it drops here.
    pub(super) fn into_parts(
        self,
    ) -> (
        Zeroizing<[u8; HANDSHAKE_LEN]>,
        Zeroizing<[u8; SESS_LEN]>,
        usize,
    ) {
        (
            Zeroizing::new(self.private_results),
            Zeroizing::new(self.own_sess),
            self.block_len,
        )
    }
}

impl Drop for PreparedBlock {
    fn drop(&mut self) {
        self.private_results.zeroize();
        self.own_sess.zeroize();
    }
}

impl fmt::Debug for PreparedBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreparedBlock")
            .field("block_len", &self.block_len)
            .field("flags", &self.flags)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// Why [`Handshake::with_prepared`](super::Handshake::with_prepared) built nothing. The
/// block is gone either way (it is wiped, never sent).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PreparedBlockError {
    /// The block was prepared with another private key than the one in the keys given
    /// (or those keys cannot name theirs: [`RawRsa::own_key_id`] is `None`). A bug of the
    /// caller, not of the peer.
    KeyMismatch,
    /// The block carries other `flags` than those asked for. A bug of the caller.
    FlagsMismatch {
        /// The flags in the block.
        prepared: u32,
        /// The flags asked for.
        requested: u32,
    },
    /// The peer's public operation failed (KEYXCHGFAIL).
    Handshake(HandshakeError),
}

impl fmt::Display for PreparedBlockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::KeyMismatch => f.write_str("prepared handshake block made with another key"),
            Self::FlagsMismatch {
                prepared,
                requested,
            } => write!(
                f,
                "prepared handshake block has flags {prepared:#x}, not {requested:#x}"
            ),
            Self::Handshake(e) => e.fmt(f),
        }
    }
}

impl core::error::Error for PreparedBlockError {}
