//! Negotiation: what turns a handshake's [`Session`] into the value a connection is built
//! from. The lifecycle is fixed by the types — handshake → session → [`LinkSetup`] →
//! [`Iocom`](crate::Iocom) — so no call can come in the wrong order and nothing has to be
//! checked at run time.

use core::fmt;

use crate::handshake::Session;
use crate::stream::{ModeChoice, NegotiateError, RxCipher, StreamMode, TxCipher, ciphers};

/// A link's stream mode with its ciphers keyed: what a connection is built from
/// ([`Iocom::new`](crate::Iocom::new)). Secret: the keys are never printed and are
/// zeroized on drop.
///
/// Two ways to get one: [`LinkSetup::negotiate`] consumes the session of a completed
/// handshake; [`LinkSetup::plaintext`] is a link in the seed era's plaintext mode that
/// had no handshake of its own (tests, simulators, a kernel handed a link whose handshake
/// user space did, a successor-era `.none` peer that skips the exchange).
pub struct LinkSetup {
    mode: StreamMode,
    rx: RxCipher,
    tx: TxCipher,
}

impl LinkSetup {
    /// The seed era's plaintext mode, without a handshake.
    #[must_use]
    pub const fn plaintext() -> Self {
        Self {
            mode: StreamMode::Seed,
            rx: RxCipher::Plain,
            tx: TxCipher::Plain,
        }
    }

    /// The mode both ends accept after `session`'s handshake, configured as `choice` on
    /// our side ([`ModeChoice::select`]), with its ciphers keyed by both session keys.
    /// A plaintext exchange (a `.none` peer) proves and protects nothing: its link is
    /// always plaintext ([`ModeChoice::none_peer`]).
    ///
    /// # Errors
    /// [`NegotiateError`] (ALGO, 20): no mode both ends accept, `gcm` asked of a `.none`
    /// peer, a mode not in this build, or a reflected session key. The session is
    /// dropped (and zeroized) either way.
    pub fn negotiate(session: Session, choice: ModeChoice) -> Result<Self, NegotiateError> {
        let mode = if session.is_authenticated() {
            choice.select(session.own_flags(), session.peer_flags())?
        } else {
            choice.none_peer()?;
            StreamMode::Seed
        };
        let (own, peer) = session.keys();
        let (rx, tx) = ciphers(mode, own, peer)?;
        Ok(Self { mode, rx, tx })
    }

    /// **Unverified.** libdmsg's stream after a `.pub` handshake (GCM-T, dmsg.md 1.4): a
    /// [`StreamMode::Gcm`] link — the same 64-byte chunks, 16-byte tags, nonces and
    /// failures (MACFAIL 19, IVWRAP 18) — keyed as libdmsg keys it, each direction by its
    /// sender's `sess` alone ([`GcmKeys::libdmsg`](crate::keys::GcmKeys::libdmsg)), not by
    /// both sessions as h2msg's own `gcm`. No flag is consulted: libdmsg sends 0 and
    /// encrypts whenever the handshake used RSA.
    ///
    /// Only code reading supports this format: it was never run against a DragonFly node,
    /// the Linux port cannot encrypt, and today's DragonFly may send a tagless variant.
    /// Interop with evidence is plaintext over `.none` (D1). The keying also keeps
    /// libdmsg's weakness: a recorded session can be replayed to the same node.
    ///
    /// # Errors
    /// [`NegotiateError::GcmNeedsRsa`] for a plaintext (`.none`) session, which has no
    /// secret; [`NegotiateError::ReflectedSession`] when the peer's session key is our own.
    /// The session is dropped (and zeroized) either way.
    #[cfg(feature = "dmsg-gcm-unverified")]
    #[cfg_attr(docsrs, doc(cfg(feature = "dmsg-gcm-unverified")))]
    pub fn dmsg_gcm_unverified(session: Session) -> Result<Self, NegotiateError> {
        if !session.is_authenticated() {
            return Err(NegotiateError::GcmNeedsRsa);
        }
        let (own, peer) = session.keys();
        let (rx, tx) = crate::stream::libdmsg_gcm_ciphers(own, peer)?;
        Ok(Self {
            mode: StreamMode::Gcm,
            rx,
            tx,
        })
    }

    /// The negotiated stream mode.
    #[must_use]
    pub const fn mode(&self) -> StreamMode {
        self.mode
    }

    /// The ciphers, for the connection being built.
    pub(crate) fn into_ciphers(self) -> (RxCipher, TxCipher) {
        (self.rx, self.tx)
    }

    /// Test helper (feature `test-util`): a `gcm` setup keyed from the two sessions as
    /// negotiation keys it, whose record counters both start at `first_record` instead
    /// of 0 — so that a test reaches the counter's end (IVWRAP) without 2⁶⁴ records.
    /// Never for products: a counter that does not start at 0 is not the protocol.
    #[cfg(all(any(test, feature = "test-util"), feature = "stream-crypto"))]
    #[cfg_attr(
        docsrs,
        doc(cfg(all(feature = "test-util", feature = "stream-crypto")))
    )]
    #[must_use]
    pub fn gcm_for_testing(own_sess: &[u8; 64], peer_sess: &[u8; 64], first_record: u64) -> Self {
        let (rx, tx) = crate::stream::gcm_ciphers_at(own_sess, peer_sess, first_record);
        Self {
            mode: StreamMode::Gcm,
            rx,
            tx,
        }
    }
}

impl fmt::Debug for LinkSetup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkSetup")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::FLAG_GCM;

    use crate::handshake::tests::SeqRng;
    use crate::handshake::{Handshake, HandshakePoll, KeyMode, NoRsa};
    use crate::wire::WireOrder;

    /// Both sessions of a plaintext (`.none`) exchange in which both ends advertise gcm.
    fn plaintext_sessions() -> (Session, Session) {
        let side = |seed| {
            Handshake::<NoRsa>::with_flags(
                KeyMode::Plaintext,
                &mut SeqRng(seed),
                WireOrder::Little,
                None,
                FLAG_GCM,
            )
        };
        let (Ok(mut a), Ok(mut b)) = (side(1), side(2)) else {
            panic!("plaintext handshakes build");
        };
        let (to_b, to_a) = (a.pending().to_vec(), b.pending().to_vec());
        assert_eq!((b.feed(&to_b), a.feed(&to_a)), (512, 512));
        a.advance(512).unwrap();
        b.advance(512).unwrap();
        match (a.poll(), b.poll()) {
            (HandshakePoll::Done(sa), HandshakePoll::Done(sb)) => (sa, sb),
            other => panic!("the exchange completes: {other:?}"),
        }
    }

    #[test]
    fn a_plaintext_exchange_is_never_protected_whatever_its_flags_say() {
        let (a, b) = plaintext_sessions();
        assert!(!a.is_authenticated());
        assert_eq!(a.peer_flags(), FLAG_GCM, "the flag did travel");
        let mode = LinkSetup::negotiate(a, ModeChoice::Auto).map(|s| s.mode());
        assert_eq!(mode.ok(), Some(StreamMode::Seed));
        let refused = LinkSetup::negotiate(b, ModeChoice::Gcm).map(|s| s.mode());
        assert_eq!(refused.err(), Some(NegotiateError::GcmNeedsRsa));
    }

    #[test]
    fn two_gcm_flags_over_rsa_give_gcm_when_the_build_has_it() {
        let session = Session::from_parts_for_testing([1; 64], [2; 64], FLAG_GCM, FLAG_GCM);
        let setup = LinkSetup::negotiate(session, ModeChoice::Auto);
        if cfg!(feature = "stream-crypto") {
            assert_eq!(setup.map(|s| s.mode()).ok(), Some(StreamMode::Gcm));
        } else {
            assert_eq!(
                setup.map(|s| s.mode()).err(),
                Some(NegotiateError::Unsupported(StreamMode::Gcm))
            );
        }
    }

    /// The libdmsg keying refuses what negotiation refuses: a plaintext exchange (no
    /// secret) and a reflected session key; an RSA session gives a `gcm` link.
    #[cfg(feature = "dmsg-gcm-unverified")]
    #[test]
    fn the_libdmsg_keying_needs_rsa_and_two_sessions() {
        let (plain, _) = plaintext_sessions();
        let refused = LinkSetup::dmsg_gcm_unverified(plain).map(|s| s.mode());
        assert_eq!(refused.err(), Some(NegotiateError::GcmNeedsRsa));
        let reflected = Session::from_parts_for_testing([7; 64], [7; 64], 0, 0);
        let refused = LinkSetup::dmsg_gcm_unverified(reflected).map(|s| s.mode());
        assert_eq!(refused.err(), Some(NegotiateError::ReflectedSession));
        // Flags 0, as libdmsg sends: the mode does not depend on them.
        let session = Session::from_parts_for_testing([1; 64], [2; 64], 0, 0);
        let setup = LinkSetup::dmsg_gcm_unverified(session).map(|s| s.mode());
        assert_eq!(setup.ok(), Some(StreamMode::Gcm));
    }

    #[test]
    fn a_reflected_session_cannot_key_a_protected_mode() {
        let session = Session::from_parts_for_testing([7; 64], [7; 64], 0, 0);
        let refused = LinkSetup::negotiate(session, ModeChoice::Cbc).map(|s| s.mode());
        let expected = if cfg!(feature = "stream-crypto") {
            NegotiateError::ReflectedSession
        } else {
            NegotiateError::Unsupported(StreamMode::Cbc)
        };
        assert_eq!(refused.err(), Some(expected));
        // Plaintext needs no key: the same session may run seed.
        let session = Session::from_parts_for_testing([7; 64], [7; 64], 0, 0);
        let seed = LinkSetup::negotiate(session, ModeChoice::Seed).map(|s| s.mode());
        assert_eq!(seed.ok(), Some(StreamMode::Seed));
    }
}
