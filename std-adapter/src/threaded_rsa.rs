//! [`ThreadedRsa`]: the handshake's RSA with the two received blocks decrypted on two
//! threads at once ([`RawRsa::private_op_pair`]).

use h2msg::{KeySizeMismatch, OwnKeyId, RawRsa, RsaOpError, private_block, public_block};
use rsa::traits::PublicKeyParts;
use rsa::{PrivateKey, PublicKey};
use zeroize::Zeroizing;

/// Our private key and the peer's public key, like [`h2msg::RsaKeys`] over the system RNG,
/// except that both private operations of a 2048-bit key's received blocks run at once:
/// the second on a scoped thread, the first on the caller's. A private operation takes
/// milliseconds; starting a thread, tens of microseconds.
pub struct ThreadedRsa {
    own: PrivateKey,
    own_id: OwnKeyId,
    peer: PublicKey,
}

impl std::fmt::Debug for ThreadedRsa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadedRsa")
            .field("own", &self.own_id)
            .finish_non_exhaustive()
    }
}

impl ThreadedRsa {
    /// Pairs our private key with the peer's public key.
    ///
    /// # Errors
    /// [`KeySizeMismatch`] if their sizes differ (KEYFMT).
    pub fn new(own: PrivateKey, peer: PublicKey) -> Result<Self, KeySizeMismatch> {
        if own.size() != peer.size() {
            return Err(KeySizeMismatch {
                own: own.size(),
                peer: peer.size(),
            });
        }
        Ok(Self {
            own_id: crate::prepared::key_id(&own),
            own,
            peer,
        })
    }
}

impl RawRsa for ThreadedRsa {
    fn block_len(&self) -> usize {
        self.own.size()
    }

    fn private_op(&mut self, input: &[u8], out: &mut [u8]) -> Result<(), RsaOpError> {
        private_block(&self.own, &mut getrandom::SysRng, input, out)
    }

    fn peer_public_op(&mut self, input: &[u8], out: &mut [u8]) -> Result<(), RsaOpError> {
        public_block(&self.peer, input, out)
    }

    fn private_op_pair(
        &mut self,
        inputs: [&[u8]; 2],
        outputs: [&mut [u8]; 2],
    ) -> [Result<(), RsaOpError>; 2] {
        let [first_in, second_in] = inputs;
        let [first_out, second_out] = outputs;
        let own = &self.own;
        let len = second_out.len();
        std::thread::scope(|scope| {
            // The thread writes into its own buffer, so that `second_out` is still ours to
            // fill if no thread can be had.
            let second = std::thread::Builder::new().spawn_scoped(scope, move || {
                let mut out = Zeroizing::new(vec![0u8; len]);
                let result = private_block(own, &mut getrandom::SysRng, second_in, &mut out);
                (result, out)
            });
            let first = private_block(own, &mut getrandom::SysRng, first_in, first_out);
            let second = match second.map(|handle| handle.join()) {
                Ok(Ok((result, out))) => result.map(|()| second_out.copy_from_slice(&out)),
                // A panic in the `rsa` crate would be a bug there: report a failed op.
                Ok(Err(_)) => Err(RsaOpError::Failed),
                // No thread to be had: do it here, as the default does.
                Err(_) => private_block(own, &mut getrandom::SysRng, second_in, second_out),
            };
            [first, second]
        })
    }

    fn own_key_id(&self) -> Option<OwnKeyId> {
        Some(self.own_id)
    }
}
