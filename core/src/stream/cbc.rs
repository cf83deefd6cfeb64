//! The `cbc` mode's cipher (§2.8): AES-256-CBC without padding, one continuous chain per
//! direction for the life of the link, the same key and IV in both directions.

use aes::Aes256;
use cbc::cipher::array::Array;
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};

use super::keys::CbcKeys;

/// The C code's processing unit (`HAMMER2_AES_KEY_SIZE`): it divides the 32-byte message
/// alignment, so every message boundary is a unit boundary.
pub(crate) const UNIT: usize = 32;

/// One direction's encrypting chain.
pub(crate) struct CbcSender(cbc::Encryptor<Aes256>);

impl CbcSender {
    pub(crate) fn new(keys: &CbcKeys) -> Self {
        Self(cbc::Encryptor::new(&Array(*keys.key()), &Array(keys.iv())))
    }

    /// Encrypts `buf` in place, continuing the chain. Bytes past the last whole 16-byte
    /// block are left alone; callers pass whole units.
    pub(crate) fn encrypt(&mut self, buf: &mut [u8]) {
        let (blocks, _) = Array::<u8, cbc::cipher::consts::U16>::slice_as_chunks_mut(buf);
        self.0.encrypt_blocks(blocks);
    }
}

/// One direction's decrypting chain.
pub(crate) struct CbcReceiver(cbc::Decryptor<Aes256>);

impl CbcReceiver {
    pub(crate) fn new(keys: &CbcKeys) -> Self {
        Self(cbc::Decryptor::new(&Array(*keys.key()), &Array(keys.iv())))
    }

    /// Decrypts every whole unit at the front of `buf` in place and returns how many bytes
    /// that was; a partial unit waits for the rest of its bytes.
    pub(crate) fn decrypt_units(&mut self, buf: &mut [u8]) -> usize {
        let whole = buf.len() / UNIT * UNIT;
        if let Some(units) = buf.get_mut(..whole) {
            let (blocks, _) = Array::<u8, cbc::cipher::consts::U16>::slice_as_chunks_mut(units);
            self.0.decrypt_blocks(blocks);
        }
        whole
    }
}

// A unit is whole AES blocks (16 bytes), so units chain without partial blocks.
const _: () = assert!(UNIT.is_multiple_of(16));

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::vec::Vec;

    use crate::stream::test_hex::hex;

    /// The §2.8 example keys: sess_a[i] = 0x1D·i + 0x5A, sess_b[i] = 3i + 1.
    fn example_keys() -> CbcKeys {
        let a: [u8; 64] = core::array::from_fn(|i| (0x1D * i as u32 + 0x5A) as u8);
        let b: [u8; 64] = core::array::from_fn(|i| (3 * i as u32 + 1) as u8);
        CbcKeys::derive(&a, &b)
    }

    /// Computed independently with
    /// `openssl enc -aes-256-cbc -nopad -K 5b7393bb…9b83 -iv 9b73533b…1b23` over the bytes
    /// 0, 1, …, 95 (OpenSSL 3.0).
    const OPENSSL_CT: &str = "687a43b0e31e67c924973b79e9b4403555b69c7f2d1d786cbccc747645badf27\
        1a6a631782136ae88faa08c9a71723486add97b36fb82d0f34368f7a02d52dff\
        6f4ffcdff56ac3207e49bf7caa9e87de9da449b6ca801d4287b7cbda40359d73";

    #[test]
    fn the_chain_matches_openssl_in_any_unit_split() {
        let plain: Vec<u8> = (0..96u8).collect();
        for split in [0, 32, 64, 96] {
            let mut buf = plain.clone();
            let mut tx = CbcSender::new(&example_keys());
            let (a, b) = buf.split_at_mut(split);
            tx.encrypt(a);
            tx.encrypt(b);
            assert_eq!(buf, hex(OPENSSL_CT), "split at {split}");
        }
    }

    #[test]
    fn decryption_continues_the_chain_across_partial_units() {
        let mut wire = hex(OPENSSL_CT);
        let mut rx = CbcReceiver::new(&example_keys());
        assert_eq!(rx.decrypt_units(&mut wire[..40]), 32, "only the whole unit");
        assert_eq!(rx.decrypt_units(&mut wire[32..]), 64);
        assert_eq!(wire, (0..96u8).collect::<Vec<_>>());
    }
}
