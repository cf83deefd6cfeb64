//! The AES-256-GCM cipher of the `gcm` mode (§2.9): one direction's key, fixed nonce part
//! and counter, sealing and opening one unit at a time with its own tag. h2msg's framing
//! seals records of up to [`RECORD_PLAIN_MAX`] bytes with the record's length header as
//! associated data; libdmsg's (feature `dmsg-gcm-unverified`) seals 64-byte chunks without
//! associated data. Nonce = 4-byte fixed part ‖ 64-bit big-endian counter, one value per
//! unit.

use aes_gcm::aead::array::Array;
use aes_gcm::{AeadInOut, Aes256Gcm, KeyInit};

use super::keys::GcmKeys;
use crate::wire::DecodeError;

/// Plaintext bytes per libdmsg chunk (`CRYPTO_CHUNK_SIZE`).
pub(crate) const CHUNK: usize = 64;
/// Tag bytes after each sealed unit.
pub(crate) const TAG: usize = 16;
/// Wire bytes per libdmsg chunk.
#[cfg(feature = "dmsg-gcm-unverified")]
pub(crate) const CHUNK_RECORD: usize = CHUNK + TAG;

/// Bytes of a record's length header: the plaintext length, big-endian.
pub(crate) const RECORD_HEADER: usize = 4;
/// Most plaintext bytes in one record (§2.9): large enough that the tag and the GCM
/// setup cost little, small enough that a receive FIFO holds a whole record beside the
/// largest header.
pub(crate) const RECORD_PLAIN_MAX: usize = 16 * 1024;
/// Most wire bytes of one record.
pub(crate) const RECORD_WIRE_MAX: usize = RECORD_HEADER + RECORD_PLAIN_MAX + TAG;

/// The nonce counter of one direction: the next value, or exhausted after 2⁶⁴ units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Counter(Option<u64>);

impl Counter {
    pub(crate) const fn starting_at(next: u64) -> Self {
        Self(Some(next))
    }

    /// Units (records or chunks) that can still be processed (saturating at `u64::MAX`).
    pub(crate) const fn left(self) -> u64 {
        match self.0 {
            Some(0) => u64::MAX,
            Some(next) => u64::MAX - next + 1,
            None => 0,
        }
    }

    const fn advanced(self) -> Self {
        match self.0 {
            Some(n) => Self(n.checked_add(1)),
            None => Self(None),
        }
    }
}

/// The key schedule and nonce of one direction.
struct Direction {
    aead: Aes256Gcm,
    fixed: [u8; 4],
    counter: Counter,
}

impl Direction {
    fn new(keys: &GcmKeys, counter: Counter) -> Self {
        Self {
            aead: Aes256Gcm::new(&Array(*keys.key())),
            fixed: *keys.fixed_nonce(),
            counter,
        }
    }

    /// The nonce for `counter`: fixed part, then the counter big-endian.
    fn nonce(&self, counter: u64) -> Array<u8, aes_gcm::aead::consts::U12> {
        let c = counter.to_be_bytes();
        let f = self.fixed;
        Array([
            f[0], f[1], f[2], f[3], c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
        ])
    }
}

impl Drop for Direction {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.fixed);
    }
}

/// One direction's sealing side.
pub(crate) struct GcmSender(Direction);

impl GcmSender {
    pub(crate) fn new(keys: &GcmKeys) -> Self {
        Self::with_counter(keys, Counter::starting_at(0))
    }

    pub(crate) fn with_counter(keys: &GcmKeys, counter: Counter) -> Self {
        Self(Direction::new(keys, counter))
    }

    pub(crate) const fn units_left(&self) -> u64 {
        self.0.counter.left()
    }

    /// Encrypts one unit in place, authenticating `aad` with it, and returns its tag; the
    /// counter advances.
    ///
    /// # Errors
    /// [`DecodeError::IvWrap`] once 2⁶⁴ units were sealed; nothing changes then.
    pub(crate) fn seal(&mut self, unit: &mut [u8], aad: &[u8]) -> Result<[u8; TAG], DecodeError> {
        let counter = self.0.counter.0.ok_or(DecodeError::IvWrap)?;
        let nonce = self.0.nonce(counter);
        let tag = self
            .0
            .aead
            .encrypt_inout_detached(&nonce, aad, unit.into())
            .map_err(|_| DecodeError::IvWrap)?;
        self.0.counter = self.0.counter.advanced();
        Ok(tag.0)
    }
}

/// One direction's opening side.
pub(crate) struct GcmReceiver(Direction);

impl GcmReceiver {
    pub(crate) fn new(keys: &GcmKeys) -> Self {
        Self::with_counter(keys, Counter::starting_at(0))
    }

    pub(crate) fn with_counter(keys: &GcmKeys, counter: Counter) -> Self {
        Self(Direction::new(keys, counter))
    }

    /// Checks the tag of one unit (and `aad`) and only then decrypts it in place; the
    /// counter advances only on success, and a unit that fails is left as ciphertext.
    ///
    /// # Errors
    /// [`DecodeError::MacFail`] for a wrong tag, [`DecodeError::IvWrap`] after 2⁶⁴ units.
    pub(crate) fn open(
        &mut self,
        unit: &mut [u8],
        aad: &[u8],
        tag: &[u8; TAG],
    ) -> Result<(), DecodeError> {
        let counter = self.0.counter.0.ok_or(DecodeError::IvWrap)?;
        let nonce = self.0.nonce(counter);
        self.0
            .aead
            .decrypt_inout_detached(&nonce, aad, unit.into(), &Array(*tag))
            .map_err(|_| DecodeError::MacFail { record: counter })?;
        self.0.counter = self.0.counter.advanced();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::stream::test_hex::hex;

    /// McGrew & Viega, "The Galois/Counter Mode of Operation", Test Case 15 (AES-256,
    /// 96-bit IV, no AAD): its 64-byte plaintext is exactly one chunk. The IV
    /// `cafebabe facedbaddecaf888` reads as fixed part ‖ big-endian counter.
    const KEY: &str = "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308";
    const PLAIN: &str = "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72\
        1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255";
    const CIPHER: &str = "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa\
        8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad";
    const TAG15: &str = "b094dac5d93471bdec1a502270e3cc6c";
    const COUNTER: u64 = 0xface_dbad_deca_f888;

    fn keys() -> GcmKeys {
        let key: [u8; 32] = hex(KEY).try_into().unwrap();
        GcmKeys::from_parts(key, [0xca, 0xfe, 0xba, 0xbe])
    }

    #[test]
    fn a_chunk_seals_to_the_published_vector() {
        let mut tx = GcmSender::with_counter(&keys(), Counter::starting_at(COUNTER));
        let mut chunk = hex(PLAIN);
        let tag = tx.seal(&mut chunk, &[]).unwrap();
        assert_eq!(chunk, hex(CIPHER));
        assert_eq!(tag.to_vec(), hex(TAG15));
        assert_eq!(tx.units_left(), u64::MAX - COUNTER);
    }

    #[test]
    fn a_chunk_opens_from_the_published_vector_and_only_once() {
        let tag: [u8; 16] = hex(TAG15).try_into().unwrap();
        let mut rx = GcmReceiver::with_counter(&keys(), Counter::starting_at(COUNTER));
        let mut chunk = hex(CIPHER);
        rx.open(&mut chunk, &[], &tag).unwrap();
        assert_eq!(chunk, hex(PLAIN));
        // The counter moved on: the same record again (a replay) does not authenticate.
        let mut again = hex(CIPHER);
        assert_eq!(
            rx.open(&mut again, &[], &tag),
            Err(DecodeError::MacFail {
                record: COUNTER + 1
            })
        );
        assert_eq!(again, hex(CIPHER), "nothing of a failed chunk is decrypted");
    }

    #[test]
    fn a_failed_chunk_leaves_the_counter_where_it_was() {
        let mut tx = GcmSender::new(&keys());
        let mut rx = GcmReceiver::new(&keys());
        let mut chunk = [7u8; CHUNK];
        let tag = tx.seal(&mut chunk, &[]).unwrap();
        let mut bad = chunk;
        bad[5] ^= 0x10;
        assert_eq!(
            rx.open(&mut bad, &[], &tag),
            Err(DecodeError::MacFail { record: 0 })
        );
        rx.open(&mut chunk, &[], &tag).unwrap();
        assert_eq!(chunk, [7u8; CHUNK]);
    }

    #[test]
    fn the_counter_runs_out_after_the_last_value() {
        let mut tx = GcmSender::with_counter(&keys(), Counter::starting_at(u64::MAX));
        let mut rx = GcmReceiver::with_counter(&keys(), Counter::starting_at(u64::MAX));
        assert_eq!(tx.units_left(), 1);
        let mut chunk = [1u8; CHUNK];
        let tag = tx.seal(&mut chunk, &[]).unwrap();
        assert_eq!(tx.units_left(), 0);
        assert_eq!(tx.seal(&mut [0u8; CHUNK], &[]), Err(DecodeError::IvWrap));
        rx.open(&mut chunk, &[], &tag).unwrap();
        assert_eq!(rx.open(&mut chunk, &[], &tag), Err(DecodeError::IvWrap));
    }
}
