//! [`ThreadedRsa`]: the handshake's RSA with the two RSA blocks worked on two threads at
//! once — the send loop's retries ([`OwnRsa::private_results_pair`]) and the decryption
//! of the received blocks ([`RawRsa::private_op_pair`]).

use h2msg::{
    KeyExchangeFailure, KeySizeMismatch, OwnKeyId, OwnRsa, RawRsa, RsaOpError, fit_private_result,
    private_block, public_block,
};
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

/// Our key alone, for [`h2msg::PreparedBlock::prepare`]: the send loop of the two blocks on
/// two threads, each retrying until its own result fits.
impl OwnRsa for ThreadedRsa {
    fn block_len(&self) -> usize {
        self.own.size()
    }

    fn own_key_id(&self) -> OwnKeyId {
        self.own_id
    }

    fn private_op(&mut self, input: &[u8], out: &mut [u8]) -> Result<(), RsaOpError> {
        private_block(&self.own, &mut getrandom::SysRng, input, out)
    }

    fn private_results_pair(
        &mut self,
        blocks: [&mut [u8]; 2],
    ) -> [Result<(), KeyExchangeFailure>; 2] {
        let [first, second] = blocks;
        let own = &self.own;
        let fit = |block: &mut [u8]| {
            fit_private_result(
                |i, o| private_block(own, &mut getrandom::SysRng, i, o),
                block,
            )
        };
        std::thread::scope(|scope| {
            // The thread works on its own copy, so that `second` is still ours to do here
            // if no thread can be had.
            let copy = Zeroizing::new(second.to_vec());
            let other = std::thread::Builder::new().spawn_scoped(scope, move || {
                let mut copy = copy;
                let result = fit(&mut copy);
                (result, copy)
            });
            let first_result = fit(first);
            let second_result = match other.map(|handle| handle.join()) {
                Ok(Ok((result, copy))) => result.map(|()| second.copy_from_slice(&copy)),
                // A panic in the `rsa` crate would be a bug there: report a failed op.
                Ok(Err(_)) => Err(KeyExchangeFailure::Rsa(RsaOpError::Failed)),
                Err(_) => fit(second),
            };
            [first_result, second_result]
        })
    }
}
