//! The raw RSA operations the handshake needs, behind a small trait so that a kernel can
//! bring its own implementation; the default one, on the `rsa` crate, is behind the
//! `crypto` feature.

use core::fmt;

use super::OwnKeyId;

/// Why a raw RSA operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RsaOpError {
    /// The input is not below the modulus.
    InputOutOfRange,
    /// The input or output slice is not one block long.
    WrongLength,
    /// The implementation failed (its RNG for blinding, an internal check).
    Failed,
}

impl fmt::Display for RsaOpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::InputOutOfRange => "RSA input is not below the modulus",
            Self::WrongLength => "RSA block of the wrong length",
            Self::Failed => "RSA operation failed",
        })
    }
}

impl core::error::Error for RsaOpError {}

/// Raw (unpadded) RSA with our private key and the peer's public key, on big-endian blocks
/// of exactly [`block_len`](RawRsa::block_len) bytes (§2.4). Outputs are left-padded with
/// zeros to the block length, as OpenSSL's `RSA_NO_PADDING` does.
///
/// Implementations must blind the private operation (RUSTSEC-2023-0071).
pub trait RawRsa {
    /// `RSA_size` of the keys: 256 for 2048-bit keys, 512 for 4096-bit keys. Our key and
    /// the peer's must have the same size.
    fn block_len(&self) -> usize;

    /// `out = input^d mod n` with our private key.
    ///
    /// # Errors
    /// [`RsaOpError`].
    fn private_op(&mut self, input: &[u8], out: &mut [u8]) -> Result<(), RsaOpError>;

    /// `out = input^e mod n` with the peer's public key.
    ///
    /// # Errors
    /// [`RsaOpError`].
    fn peer_public_op(&mut self, input: &[u8], out: &mut [u8]) -> Result<(), RsaOpError>;

    /// Our private op on both received blocks of a 2048-bit key's handshake (§2.5 step 2
    /// needs one per block, and they are independent): `inputs[0]` into `outputs[0]` and
    /// `inputs[1]` into `outputs[1]`, each with its own outcome. The default does one, then
    /// the other; an implementation that has threads may do both at once, which halves the
    /// time a side waits once the peer's 512 bytes are in.
    fn private_op_pair(
        &mut self,
        inputs: [&[u8]; 2],
        outputs: [&mut [u8]; 2],
    ) -> [Result<(), RsaOpError>; 2] {
        let [first_in, second_in] = inputs;
        let [first_out, second_out] = outputs;
        [
            self.private_op(first_in, first_out),
            self.private_op(second_in, second_out),
        ]
    }

    /// Which private key is ours, so that a [`PreparedBlock`](super::PreparedBlock) made
    /// with another is refused. `None` (the default, for implementations that never use
    /// prepared blocks) refuses them all.
    fn own_key_id(&self) -> Option<OwnKeyId> {
        None
    }
}

/// No RSA at all: the key type of a handshake that only ever runs in
/// [`KeyMode::Plaintext`](super::KeyMode::Plaintext) (`.none` peers). It has no values, so
/// its operations can never run.
#[derive(Debug)]
pub enum NoRsa {}

impl RawRsa for NoRsa {
    fn block_len(&self) -> usize {
        match *self {}
    }

    fn private_op(&mut self, _: &[u8], _: &mut [u8]) -> Result<(), RsaOpError> {
        match *self {}
    }

    fn peer_public_op(&mut self, _: &[u8], _: &mut [u8]) -> Result<(), RsaOpError> {
        match *self {}
    }
}
