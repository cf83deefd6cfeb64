//! The handshake's raw RSA on the system's OpenSSL (feature `openssl-rsa`): [`OpensslRsa`]
//! (our private key and the peer's public key, a [`RawRsa`]) and [`OpensslOwnRsa`] (our
//! key alone, an [`OwnRsa`] for the pool of prepared blocks). Link setup uses them instead
//! of [`ThreadedRsa`](crate::threaded_rsa::ThreadedRsa) when the feature is on.
//!
//! A 2048-bit private operation takes about a tenth of the `rsa` crate's time with
//! OpenSSL (README, "Handshake figures"). The keys come from the `rsa` crate's types that
//! [`keys`](crate::keys) loads, converted through their PKCS#1 DER encoding in memory (the
//! secret copy is wiped when dropped); no file is read again.
//!
//! Blinding: OpenSSL blinds every RSA private operation unless `RSA_FLAG_NO_BLINDING` is set
//! on the key (`rsa_ossl_private_decrypt` in `crypto/rsa/rsa_ossl.c`, OpenSSL 1.0–3.x),
//! drawing the blinding factor from its own CSPRNG. Neither this module nor the `openssl`
//! crate sets that flag, and keys decoded from DER do not carry it, so [`RawRsa`]'s
//! blinding rule (RUSTSEC-2023-0071) holds.
//!
//! Errors match the pure implementation's ([`h2msg::private_block`], [`h2msg::public_block`]):
//! a block or output of the wrong length is [`RsaOpError::WrongLength`], an input not below
//! the modulus [`RsaOpError::InputOutOfRange`] (checked here, before OpenSSL sees it), and
//! anything OpenSSL refuses [`RsaOpError::Failed`].

use h2msg::{
    KeyExchangeFailure, KeySizeMismatch, OwnKeyId, OwnRsa, RawRsa, RsaOpError, fit_private_result,
};
use openssl::pkey::{Private, Public};
use openssl::rsa::{Padding, Rsa};
use rsa::pkcs1::{EncodeRsaPrivateKey, EncodeRsaPublicKey};
use rsa::traits::PublicKeyParts;
use rsa::{PrivateKey, PublicKey};
use zeroize::Zeroizing;

/// Why a key could not be handed to OpenSSL.
#[derive(Debug)]
#[non_exhaustive]
pub enum OpensslKeyError {
    /// Our key and the peer's differ in size (KEYFMT, §2.2).
    SizeMismatch(KeySizeMismatch),
    /// The key could not be encoded as PKCS#1 DER.
    Encode(rsa::pkcs1::Error),
    /// OpenSSL refused the encoded key.
    Openssl(openssl::error::ErrorStack),
    /// OpenSSL's view of the key differs from the `rsa` crate's (size or modulus): a bug in
    /// the conversion if it ever happens.
    Mismatch,
}

impl std::fmt::Display for OpensslKeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::SizeMismatch(e) => e.fmt(f),
            Self::Encode(e) => write!(f, "key not encodable as PKCS#1 DER: {e}"),
            Self::Openssl(e) => write!(f, "OpenSSL refused the key: {e}"),
            Self::Mismatch => f.write_str("OpenSSL read the key with another modulus"),
        }
    }
}

impl std::error::Error for OpensslKeyError {}

/// One key's modulus, big-endian over exactly the block length, for the range check.
#[derive(Clone)]
struct Modulus(Vec<u8>);

impl Modulus {
    fn of(key: &impl PublicKeyParts) -> Self {
        let len = key.size();
        let bytes = key.n().to_be_bytes();
        // The crate's storage may be wider than the block: keep the low-order `len` bytes
        // (the excess is leading zeros); narrower, pad on the left.
        let mut n = vec![0u8; len];
        let take = bytes.len().min(len);
        if let (Some(dst), Some(src)) = (n.get_mut(len - take..), bytes.get(bytes.len() - take..)) {
            dst.copy_from_slice(src);
        }
        Self(n)
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    /// WrongLength unless `input` and `out` are one block; InputOutOfRange unless `input`
    /// is below the modulus (equal lengths, big-endian: byte order is numeric order).
    fn check(&self, input: &[u8], out: &[u8]) -> Result<(), RsaOpError> {
        if out.len() != self.len() || input.len() != self.len() {
            return Err(RsaOpError::WrongLength);
        }
        if input >= self.0.as_slice() {
            return Err(RsaOpError::InputOutOfRange);
        }
        Ok(())
    }
}

/// Our private key in OpenSSL: what preparing a block needs ([`OwnRsa`]).
#[derive(Clone)]
pub struct OpensslOwnRsa {
    key: Rsa<Private>,
    n: Modulus,
    id: OwnKeyId,
}

impl std::fmt::Debug for OpensslOwnRsa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpensslOwnRsa")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl OpensslOwnRsa {
    /// Our key, converted for OpenSSL; its [`OwnKeyId`] is the one the `rsa` crate's
    /// implementations give it, so blocks prepared by either fit the other.
    ///
    /// # Errors
    /// [`OpensslKeyError`].
    pub fn new(own: &PrivateKey) -> Result<Self, OpensslKeyError> {
        let der = own.to_pkcs1_der().map_err(OpensslKeyError::Encode)?;
        let key = Rsa::private_key_from_der(der.as_bytes()).map_err(OpensslKeyError::Openssl)?;
        let n = Modulus::of(own);
        if usize::try_from(key.size()).ok() != Some(n.len())
            || key
                .n()
                .to_vec_padded(i32::try_from(n.len()).map_err(|_| OpensslKeyError::Mismatch)?)
                .map_err(OpensslKeyError::Openssl)?
                != n.0
        {
            return Err(OpensslKeyError::Mismatch);
        }
        Ok(Self {
            key,
            id: crate::prepared::key_id(own),
            n,
        })
    }

    fn private(&self, input: &[u8], out: &mut [u8]) -> Result<(), RsaOpError> {
        private_block(&self.key, &self.n, input, out)
    }
}

/// `out = input^d mod n` on OpenSSL, blinded (module docs), with the pure implementation's
/// checks.
fn private_block(
    key: &Rsa<Private>,
    n: &Modulus,
    input: &[u8],
    out: &mut [u8],
) -> Result<(), RsaOpError> {
    n.check(input, out)?;
    // `RSA_NO_PADDING` writes exactly `RSA_size` bytes, left-padded with zeros.
    match key.private_decrypt(input, out, Padding::NONE) {
        Ok(written) if written == out.len() => Ok(()),
        _ => {
            out.fill(0);
            Err(RsaOpError::Failed)
        }
    }
}

/// `out = input^e mod n` on OpenSSL, with the pure implementation's checks.
fn public_block(
    key: &Rsa<Public>,
    n: &Modulus,
    input: &[u8],
    out: &mut [u8],
) -> Result<(), RsaOpError> {
    n.check(input, out)?;
    match key.public_encrypt(input, out, Padding::NONE) {
        Ok(written) if written == out.len() => Ok(()),
        _ => Err(RsaOpError::Failed),
    }
}

/// Our key and the peer's in OpenSSL: the handshake's [`RawRsa`], with the two received
/// blocks decrypted on two threads at once as [`ThreadedRsa`](crate::threaded_rsa::ThreadedRsa)
/// does, and the send loop of a block made on the spot likewise ([`OwnRsa`]).
#[derive(Clone)]
pub struct OpensslRsa {
    own: OpensslOwnRsa,
    peer: Rsa<Public>,
    peer_n: Modulus,
}

impl std::fmt::Debug for OpensslRsa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpensslRsa")
            .field("own", &self.own.id)
            .finish_non_exhaustive()
    }
}

impl OpensslRsa {
    /// Pairs our private key with the peer's public key, both converted for OpenSSL.
    ///
    /// # Errors
    /// [`OpensslKeyError::SizeMismatch`] if their sizes differ (KEYFMT), else a conversion
    /// that failed.
    pub fn new(own: &PrivateKey, peer: &PublicKey) -> Result<Self, OpensslKeyError> {
        if own.size() != peer.size() {
            return Err(OpensslKeyError::SizeMismatch(KeySizeMismatch {
                own: own.size(),
                peer: peer.size(),
            }));
        }
        let own = OpensslOwnRsa::new(own)?;
        let der = peer.to_pkcs1_der().map_err(OpensslKeyError::Encode)?;
        let peer_key =
            Rsa::public_key_from_der_pkcs1(der.as_bytes()).map_err(OpensslKeyError::Openssl)?;
        let peer_n = Modulus::of(peer);
        if usize::try_from(peer_key.size()).ok() != Some(peer_n.len()) {
            return Err(OpensslKeyError::Mismatch);
        }
        Ok(Self {
            own,
            peer: peer_key,
            peer_n,
        })
    }
}

/// Runs `first` here and `second` on a scoped thread, into a buffer of its own that is
/// copied out after; without a thread, `second` runs here after `first`. A panic on the
/// thread (a bug in OpenSSL's binding) counts as `failed`.
fn on_two_threads<T: Send>(
    first: impl FnOnce() -> T,
    second: impl Fn(&mut [u8]) -> T + Sync,
    second_buf: &mut [u8],
    failed: T,
    ok: impl Fn(&T) -> bool,
) -> [T; 2] {
    std::thread::scope(|scope| {
        let mut copy = Zeroizing::new(second_buf.to_vec());
        let second = &second;
        let other = std::thread::Builder::new().spawn_scoped(scope, move || {
            let result = second(&mut copy);
            (result, copy)
        });
        let first = first();
        let second = match other.map(|handle| handle.join()) {
            Ok(Ok((result, copy))) => {
                if ok(&result) {
                    second_buf.copy_from_slice(&copy);
                }
                result
            }
            Ok(Err(_)) => failed,
            Err(_) => second(second_buf),
        };
        [first, second]
    })
}

impl RawRsa for OpensslRsa {
    fn block_len(&self) -> usize {
        self.own.n.len()
    }

    fn private_op(&mut self, input: &[u8], out: &mut [u8]) -> Result<(), RsaOpError> {
        self.own.private(input, out)
    }

    fn peer_public_op(&mut self, input: &[u8], out: &mut [u8]) -> Result<(), RsaOpError> {
        public_block(&self.peer, &self.peer_n, input, out)
    }

    fn private_op_pair(
        &mut self,
        inputs: [&[u8]; 2],
        outputs: [&mut [u8]; 2],
    ) -> [Result<(), RsaOpError>; 2] {
        let [first_in, second_in] = inputs;
        let [first_out, second_out] = outputs;
        let own = &self.own;
        on_two_threads(
            || own.private(first_in, first_out),
            |out| own.private(second_in, out),
            second_out,
            Err(RsaOpError::Failed),
            Result::is_ok,
        )
    }

    fn own_key_id(&self) -> Option<OwnKeyId> {
        Some(self.own.id)
    }
}

impl OwnRsa for OpensslOwnRsa {
    fn block_len(&self) -> usize {
        self.n.len()
    }

    fn own_key_id(&self) -> OwnKeyId {
        self.id
    }

    fn private_op(&mut self, input: &[u8], out: &mut [u8]) -> Result<(), RsaOpError> {
        self.private(input, out)
    }

    fn private_results_pair(
        &mut self,
        blocks: [&mut [u8]; 2],
    ) -> [Result<(), KeyExchangeFailure>; 2] {
        let [first, second] = blocks;
        let own = &*self;
        let fit = |block: &mut [u8]| fit_private_result(|i, o| own.private(i, o), block);
        on_two_threads(
            || fit(first),
            fit,
            second,
            Err(KeyExchangeFailure::Rsa(RsaOpError::Failed)),
            Result::is_ok,
        )
    }
}

/// Our key alone, for a block made on the spot: both send loops on two threads.
impl OwnRsa for OpensslRsa {
    fn block_len(&self) -> usize {
        self.own.n.len()
    }

    fn own_key_id(&self) -> OwnKeyId {
        self.own.id
    }

    fn private_op(&mut self, input: &[u8], out: &mut [u8]) -> Result<(), RsaOpError> {
        self.own.private(input, out)
    }

    fn private_results_pair(
        &mut self,
        blocks: [&mut [u8]; 2],
    ) -> [Result<(), KeyExchangeFailure>; 2] {
        self.own.private_results_pair(blocks)
    }
}
