//! `rsaenc` / `rsadec` (§9): raw RSA filters for debugging. Input is read in blocks of the
//! key size (the last partial block zero-filled), each block goes through the given keys in
//! order — a private key applies the raw private operation, a public key the raw public
//! one — and the result is written out.

use std::io::{self, Read, Write};

use h2msg::{private_block, public_block};
use rsa::traits::PublicKeyParts;

use crate::keys::AnyKey;
use crate::read_full;

fn size(key: &AnyKey) -> usize {
    match key {
        AnyKey::Private(k) => k.size(),
        AnyKey::Public(k) => k.size(),
    }
}

/// Runs `input` through `keys` block by block into `output`.
///
/// # Errors
/// An I/O error, or `InvalidData` when the keys differ in size or a block is not below a
/// key's modulus (raw RSA cannot carry it).
pub fn filter<R: rand_core::TryCryptoRng + ?Sized>(
    keys: &[AnyKey],
    rng: &mut R,
    input: &mut impl Read,
    output: &mut impl Write,
) -> io::Result<()> {
    let Some(first) = keys.first() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "no key given"));
    };
    let block_len = size(first);
    if keys.iter().any(|k| size(k) != block_len) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the keys differ in size",
        ));
    }
    let mut block = vec![0u8; block_len];
    let mut out = vec![0u8; block_len];
    loop {
        let n = read_full(input, &mut block)?;
        if n == 0 {
            return output.flush();
        }
        block.get_mut(n..).unwrap_or_default().fill(0);
        for key in keys {
            let result = match key {
                AnyKey::Private(k) => private_block(k, rng, &block, &mut out),
                AnyKey::Public(k) => public_block(k, &block, &mut out),
            };
            result.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            block.copy_from_slice(&out);
        }
        output.write_all(&block)?;
        if n < block_len {
            return output.flush();
        }
    }
}
