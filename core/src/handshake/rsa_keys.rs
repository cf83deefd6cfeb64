//! [`RawRsa`] on the `rsa` crate (feature `crypto`): our private key, the peer's public key,
//! and an RNG for blinding the private operation, which is always on (RUSTSEC-2023-0071).

use core::fmt;

use rand_core::TryCryptoRng;
use rsa::traits::PublicKeyParts;
use rsa::{BoxedUint, PrivateKey, PublicKey, hazmat};
use zeroize::Zeroize;

use super::prepared::{OwnKeyId, OwnRsa};
use super::rsa_op::{RawRsa, RsaOpError};

/// Our key and the peer's differ in size (KEYFMT, §2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeySizeMismatch {
    /// `RSA_size` of our key.
    pub own: usize,
    /// `RSA_size` of the peer's key.
    pub peer: usize,
}

impl KeySizeMismatch {
    /// The IOQ status code: KEYFMT (13), as §2.2 maps differing key sizes.
    #[must_use]
    pub const fn ioq_error(&self) -> crate::wire::IoqError {
        crate::wire::IoqError::KeyFmt
    }
}

impl fmt::Display for KeySizeMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "own key is {} bytes, peer key {} bytes; they must match",
            self.own, self.peer
        )
    }
}

impl core::error::Error for KeySizeMismatch {}

/// Our private key and the peer's public key, with the RNG that blinds private operations.
pub struct RsaKeys<R> {
    own: OwnRsaKey<R>,
    peer: PublicKey,
}

impl<R> fmt::Debug for RsaKeys<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RsaKeys")
            .field("block_len", &self.own.own.size())
            .finish_non_exhaustive()
    }
}

impl<R: TryCryptoRng> RsaKeys<R> {
    /// Pairs our private key with the peer's public key.
    ///
    /// # Errors
    /// [`KeySizeMismatch`] if their sizes differ. (Sizes the handshake cannot use are
    /// refused by [`Handshake::new`](super::Handshake::new) with KEYFMT.)
    pub fn new(own: PrivateKey, peer: PublicKey, rng: R) -> Result<Self, KeySizeMismatch> {
        if own.size() != peer.size() {
            return Err(KeySizeMismatch {
                own: own.size(),
                peer: peer.size(),
            });
        }
        Ok(Self {
            own: OwnRsaKey::new(own, rng),
            peer,
        })
    }
}

/// Our private key alone, with the RNG that blinds its operations: what
/// [`PreparedBlock::prepare`](super::PreparedBlock::prepare) needs before any peer is known.
pub struct OwnRsaKey<R> {
    own: PrivateKey,
    own_id: OwnKeyId,
    rng: R,
}

impl<R> fmt::Debug for OwnRsaKey<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnRsaKey")
            .field("id", &self.own_id)
            .finish_non_exhaustive()
    }
}

impl<R: TryCryptoRng> OwnRsaKey<R> {
    /// Our private key, blinded with `rng`.
    pub fn new(own: PrivateKey, rng: R) -> Self {
        Self {
            own_id: key_id(&own),
            own,
            rng,
        }
    }
}

impl<R: TryCryptoRng> OwnRsa for OwnRsaKey<R> {
    fn block_len(&self) -> usize {
        self.own.size()
    }

    fn own_key_id(&self) -> OwnKeyId {
        self.own_id
    }

    fn private_op(&mut self, input: &[u8], out: &mut [u8]) -> Result<(), RsaOpError> {
        private_block(&self.own, &mut self.rng, input, out)
    }
}

/// The id of `key` (from its public modulus).
fn key_id(key: &PrivateKey) -> OwnKeyId {
    OwnKeyId::from_modulus(&key.n().to_be_bytes())
}

/// The block as an integer of the key's precision.
fn to_uint(input: &[u8], key: &impl PublicKeyParts) -> Result<BoxedUint, RsaOpError> {
    if input.len() != key.size() {
        return Err(RsaOpError::WrongLength);
    }
    BoxedUint::from_be_slice(input, key.n_bits_precision()).map_err(|_| RsaOpError::WrongLength)
}

/// Writes `value` big-endian into `out`, left-padded with zeros.
fn write_uint(value: &BoxedUint, out: &mut [u8]) -> Result<(), RsaOpError> {
    let mut bytes = value.to_be_bytes();
    let result = match bytes.len().checked_sub(out.len()) {
        // Wider storage than the block: the excess leading bytes must be zero.
        Some(excess) => match bytes.split_at(excess) {
            (lead, tail) if lead.iter().all(|&b| b == 0) => {
                out.copy_from_slice(tail);
                Ok(())
            }
            _ => Err(RsaOpError::Failed),
        },
        None => {
            let pad = out.len() - bytes.len();
            let (zeros, rest) = out.split_at_mut(pad);
            zeros.fill(0);
            rest.copy_from_slice(&bytes);
            Ok(())
        }
    };
    bytes.zeroize();
    result
}

/// The raw private operation on one block: `out = input^d mod n`, blinded with `rng`.
/// `input` and `out` must be exactly the key's size.
///
/// # Errors
/// [`RsaOpError`].
pub fn private_block<R: TryCryptoRng + ?Sized>(
    key: &PrivateKey,
    rng: &mut R,
    input: &[u8],
    out: &mut [u8],
) -> Result<(), RsaOpError> {
    if out.len() != key.size() {
        return Err(RsaOpError::WrongLength);
    }
    let c = to_uint(input, key)?;
    if c.ge(key.n().as_ref()) {
        return Err(RsaOpError::InputOutOfRange);
    }
    let m = hazmat::rsa_decrypt_and_check(key, Some(rng), &c).map_err(|_| RsaOpError::Failed)?;
    write_uint(&m, out)
}

/// The raw public operation on one block: `out = input^e mod n`. `input` and `out` must be
/// exactly the key's size.
///
/// # Errors
/// [`RsaOpError`].
pub fn public_block(key: &PublicKey, input: &[u8], out: &mut [u8]) -> Result<(), RsaOpError> {
    if out.len() != key.size() {
        return Err(RsaOpError::WrongLength);
    }
    let m = to_uint(input, key)?;
    if m.ge(key.n().as_ref()) {
        return Err(RsaOpError::InputOutOfRange);
    }
    let c = hazmat::rsa_encrypt(key, &m).map_err(|_| RsaOpError::Failed)?;
    write_uint(&c, out)
}

impl<R: TryCryptoRng> RawRsa for RsaKeys<R> {
    fn block_len(&self) -> usize {
        OwnRsa::block_len(&self.own)
    }

    fn private_op(&mut self, input: &[u8], out: &mut [u8]) -> Result<(), RsaOpError> {
        OwnRsa::private_op(&mut self.own, input, out)
    }

    fn peer_public_op(&mut self, input: &[u8], out: &mut [u8]) -> Result<(), RsaOpError> {
        public_block(&self.peer, input, out)
    }

    fn own_key_id(&self) -> Option<OwnKeyId> {
        Some(OwnRsa::own_key_id(&self.own))
    }
}

/// The same keys can prepare blocks for themselves (tests, or a node with one peer):
/// their own half is an [`OwnRsaKey`].
impl<R: TryCryptoRng> OwnRsa for RsaKeys<R> {
    fn block_len(&self) -> usize {
        OwnRsa::block_len(&self.own)
    }

    fn own_key_id(&self) -> OwnKeyId {
        OwnRsa::own_key_id(&self.own)
    }

    fn private_op(&mut self, input: &[u8], out: &mut [u8]) -> Result<(), RsaOpError> {
        OwnRsa::private_op(&mut self.own, input, out)
    }
}
