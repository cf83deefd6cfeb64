//! Key material of the protected modes, derived from the handshake's two `sess` values.
//!
//! * `cbc` (§2.8): one key and one IV for **both** directions, the XOR of both sides'
//!   `sess` — `K = own[0..32] ⊕ peer[0..32]`, `IV32 = own[32..64] ⊕ peer[32..64]`, of which
//!   AES-CBC uses the first 16 bytes. XOR is symmetric, so both ends derive the same values.
//! * `gcm`: each direction's key mixes **both** sessions — `K(S→R) = S.sess[0..32] ⊕
//!   R.sess[32..64]` — and its fixed nonce part is the sender's `S.sess[32..36]`.
//!
//!   This deviates from libdmsg (§2.9), which keyed each direction by its sender's `sess`
//!   alone. That keying lets a recorded session be replayed: the handshake has no
//!   freshness, so an attacker who replays B's old handshake block and B's old stream to A
//!   has A derive the very key B used then, and every chunk authenticates. Mixing in the
//!   receiver's fresh `sess` makes each session's keys new on both sides. `gcm` runs only
//!   between h2msg nodes (it is negotiated through the handshake flags, which C nodes do
//!   not set), so no peer depends on the libdmsg keying. The two directions use disjoint
//!   halves of the two sessions, so their keys are independent.
//! * libdmsg's `gcm` (feature `dmsg-gcm-unverified`, **unverified**, dmsg.md 1.4):
//!   `GcmKeys::libdmsg`, key `S.sess[0..32]` and fixed nonce part `S.sess[32..36]` of
//!   the sender alone, exactly the keying the paragraph above rejects for h2msg's own
//!   `gcm`. It exists only to try talking to a DragonFly node over a `.pub` link; it keeps
//!   libdmsg's replay weakness.
//!
//! Every value here is secret: zeroized on drop, and `Debug` prints no byte of it (§11 H12:
//! the C successor printed key and IV on stdout; h2msg never does).

use core::fmt;

use zeroize::Zeroize;

use crate::wire::handshake_block::SESS_LEN;

/// AES-256 key length.
pub const KEY_LEN: usize = 32;
/// Length of the IV the C successor stores (AES-CBC consumes the first 16 bytes).
pub const CBC_IV_STORED_LEN: usize = 32;
/// Length of the fixed part of a GCM nonce.
pub const GCM_FIXED_LEN: usize = 4;

/// The `cbc` mode's key and IV, shared by both directions (§2.8).
///
/// ```
/// use h2msg::keys::CbcKeys;
///
/// let a: [u8; 64] = core::array::from_fn(|i| (0x1D * i as u32 + 0x5A) as u8);
/// let b: [u8; 64] = core::array::from_fn(|i| (3 * i as u32 + 1) as u8);
/// let keys = CbcKeys::derive(&a, &b);
/// assert_eq!(keys.key()[..4], [0x5b, 0x73, 0x93, 0xbb]);
/// // Either side derives the same values.
/// assert_eq!(keys.iv32(), CbcKeys::derive(&b, &a).iv32());
/// ```
pub struct CbcKeys {
    key: [u8; KEY_LEN],
    iv32: [u8; CBC_IV_STORED_LEN],
}

impl CbcKeys {
    /// `K = own[0..32] ⊕ peer[0..32]`, `IV32 = own[32..64] ⊕ peer[32..64]`.
    #[must_use]
    pub fn derive(own_sess: &[u8; SESS_LEN], peer_sess: &[u8; SESS_LEN]) -> Self {
        let xor = |at: usize| -> [u8; KEY_LEN] {
            core::array::from_fn(|i| {
                own_sess.get(at + i).copied().unwrap_or(0)
                    ^ peer_sess.get(at + i).copied().unwrap_or(0)
            })
        };
        Self {
            key: xor(0),
            iv32: xor(KEY_LEN),
        }
    }

    /// The AES-256 key. Secret: compare it in tests, never log it.
    #[must_use]
    pub const fn key(&self) -> &[u8; KEY_LEN] {
        &self.key
    }

    /// The 32 IV bytes as the C code stores them. Secret, like [`key`](Self::key).
    #[must_use]
    pub const fn iv32(&self) -> &[u8; CBC_IV_STORED_LEN] {
        &self.iv32
    }

    /// The 16 bytes AES-CBC starts its chain with: the first half of [`iv32`](Self::iv32).
    #[must_use]
    pub fn iv(&self) -> [u8; 16] {
        core::array::from_fn(|i| self.iv32.get(i).copied().unwrap_or(0))
    }
}

impl Drop for CbcKeys {
    fn drop(&mut self) {
        self.key.zeroize();
        self.iv32.zeroize();
    }
}

impl fmt::Debug for CbcKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CbcKeys").finish_non_exhaustive()
    }
}

/// One direction's `gcm` key and fixed nonce part (see the module docs for the keying).
///
/// ```
/// use h2msg::keys::GcmKeys;
///
/// let sender: [u8; 64] = core::array::from_fn(|i| i as u8);
/// let receiver = [0xFF_u8; 64];
/// let keys = GcmKeys::for_direction(&sender, &receiver);
/// assert_eq!(keys.key()[0], 0x00 ^ 0xFF);
/// assert_eq!(keys.key()[31], 31 ^ 0xFF);
/// assert_eq!(keys.fixed_nonce(), &[32, 33, 34, 35]);
/// ```
pub struct GcmKeys {
    key: [u8; KEY_LEN],
    fixed: [u8; GCM_FIXED_LEN],
}

impl GcmKeys {
    /// The keys of the direction from the side that sent `sender_sess` to the side that
    /// sent `receiver_sess`: key `sender[0..32] ⊕ receiver[32..64]`, fixed nonce part
    /// `sender[32..36]`.
    #[must_use]
    pub fn for_direction(sender_sess: &[u8; SESS_LEN], receiver_sess: &[u8; SESS_LEN]) -> Self {
        Self {
            key: core::array::from_fn(|i| {
                sender_sess.get(i).copied().unwrap_or(0)
                    ^ receiver_sess.get(KEY_LEN + i).copied().unwrap_or(0)
            }),
            fixed: core::array::from_fn(|i| sender_sess.get(KEY_LEN + i).copied().unwrap_or(0)),
        }
    }

    /// libdmsg's keys of the direction from the side that sent `sender_sess`: key
    /// `sender[0..32]`, fixed nonce part `sender[32..36]` — the receiver's session takes no
    /// part (dmsg.md 1.4).
    ///
    /// **Unverified**: taken from reading DragonFly's libdmsg, never checked against a
    /// running DragonFly node. A recorded session keyed this way can be replayed (see the
    /// module docs); h2msg's own `gcm` uses [`for_direction`](Self::for_direction).
    ///
    /// ```
    /// use h2msg::keys::GcmKeys;
    ///
    /// let sender: [u8; 64] = core::array::from_fn(|i| i as u8);
    /// let keys = GcmKeys::libdmsg(&sender);
    /// assert_eq!(keys.key()[..], sender[..32]);
    /// assert_eq!(keys.fixed_nonce(), &[32, 33, 34, 35]);
    /// ```
    #[cfg(feature = "dmsg-gcm-unverified")]
    #[cfg_attr(docsrs, doc(cfg(feature = "dmsg-gcm-unverified")))]
    #[must_use]
    pub fn libdmsg(sender_sess: &[u8; SESS_LEN]) -> Self {
        Self {
            key: core::array::from_fn(|i| sender_sess.get(i).copied().unwrap_or(0)),
            fixed: core::array::from_fn(|i| sender_sess.get(KEY_LEN + i).copied().unwrap_or(0)),
        }
    }

    /// Keys given as they are (published test vectors, tools).
    #[must_use]
    pub const fn from_parts(key: [u8; KEY_LEN], fixed_nonce: [u8; GCM_FIXED_LEN]) -> Self {
        Self {
            key,
            fixed: fixed_nonce,
        }
    }

    /// The AES-256 key. Secret: compare it in tests, never log it.
    #[must_use]
    pub const fn key(&self) -> &[u8; KEY_LEN] {
        &self.key
    }

    /// The nonce's fixed first four bytes.
    #[must_use]
    pub const fn fixed_nonce(&self) -> &[u8; GCM_FIXED_LEN] {
        &self.fixed
    }
}

impl Drop for GcmKeys {
    fn drop(&mut self) {
        self.key.zeroize();
        self.fixed.zeroize();
    }
}

impl fmt::Debug for GcmKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GcmKeys").finish_non_exhaustive()
    }
}

#[cfg(test)]
#[cfg(feature = "dmsg-gcm-unverified")]
mod tests {
    use super::*;

    /// libdmsg's keys and h2msg's are different values for the same two sessions, in
    /// both directions: neither keying can stand in for the other unnoticed. (They share
    /// the fixed nonce part, the sender's `sess[32..36]`.)
    #[test]
    fn libdmsg_keys_are_not_the_h2msg_keys() {
        let a: [u8; SESS_LEN] = core::array::from_fn(|i| (0x1D * i as u32 + 0x5A) as u8);
        let b: [u8; SESS_LEN] = core::array::from_fn(|i| (3 * i as u32 + 1) as u8);
        for (sender, receiver) in [(&a, &b), (&b, &a)] {
            let libdmsg = GcmKeys::libdmsg(sender);
            let h2msg = GcmKeys::for_direction(sender, receiver);
            assert_ne!(libdmsg.key(), h2msg.key());
            assert_eq!(libdmsg.key()[..], sender[..KEY_LEN]);
            assert_eq!(libdmsg.fixed_nonce(), h2msg.fixed_nonce());
            assert_eq!(libdmsg.fixed_nonce()[..], sender[KEY_LEN..KEY_LEN + 4]);
        }
        // Each direction has its own key.
        assert_ne!(GcmKeys::libdmsg(&a).key(), GcmKeys::libdmsg(&b).key());
    }
}
