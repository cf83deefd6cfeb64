//! The key material of the protected stream modes against §2.8's example and independent
//! computation. (The ciphers themselves are checked against `openssl enc` output and the
//! McGrew–Viega GCM vectors beside their code in `core/src/stream/`.)

use h2msg::keys::{CbcKeys, GcmKeys};
use h2msg_tests::hex;

/// §2.1's `sess`: `sess[i] = (0x1D·i + 0x5A) mod 256`.
fn sess_a() -> [u8; 64] {
    core::array::from_fn(|i| ((0x1D * i + 0x5A) % 256) as u8)
}

/// §2.8's other side: `sess'[i] = 3i + 1`.
fn sess_b() -> [u8; 64] {
    core::array::from_fn(|i| ((3 * i + 1) % 256) as u8)
}

#[test]
fn cbc_key_and_iv_match_the_spec_example() {
    let keys = CbcKeys::derive(&sess_a(), &sess_b());
    // The prefixes §2.8 prints.
    assert_eq!(keys.key()[..8], hex("5b7393bbc3fb1b33")[..]);
    assert_eq!(keys.iv32()[..4], hex("9b73533b")[..]);
    // The whole values, XORed independently (Python: bytes(a ^ b for a, b in zip(..))).
    assert_eq!(
        keys.key()[..],
        hex("5b7393bbc3fb1b335b4363bb93fbdb231b7353bba3fb9bb35b63033bd3fb9b83")[..]
    );
    assert_eq!(
        keys.iv32()[..],
        hex("9b73533b03fbdbb39b8363bbd3fb1b235b7393bba3fbdb331b6343bb93fbdbc3")[..]
    );
    assert_eq!(keys.iv()[..], hex("9b73533b03fbdbb39b8363bbd3fb1b23")[..]);
}

#[test]
fn both_ends_derive_the_same_cbc_keys() {
    let (ab, ba) = (
        CbcKeys::derive(&sess_a(), &sess_b()),
        CbcKeys::derive(&sess_b(), &sess_a()),
    );
    assert_eq!((ab.key(), ab.iv32()), (ba.key(), ba.iv32()));
}

#[test]
fn gcm_keys_mix_the_senders_and_the_receivers_session() {
    let (a, b) = (sess_a(), sess_b());
    let a_to_b = GcmKeys::for_direction(&a, &b);
    let expected: Vec<u8> = a[..32].iter().zip(&b[32..]).map(|(x, y)| x ^ y).collect();
    assert_eq!(a_to_b.key()[..], expected[..]);
    assert_eq!(
        a_to_b.fixed_nonce()[..],
        hex("fa173451")[..],
        "the sender's sess[32..36], §2.1's"
    );
    // The other direction uses the other halves: a different key.
    let b_to_a = GcmKeys::for_direction(&b, &a);
    let expected: Vec<u8> = b[..32].iter().zip(&a[32..]).map(|(x, y)| x ^ y).collect();
    assert_eq!(b_to_a.key()[..], expected[..]);
    assert_ne!(a_to_b.key(), b_to_a.key());
}

#[test]
fn key_material_is_never_printed() {
    let text = format!(
        "{:?} {:?}",
        CbcKeys::derive(&sess_a(), &sess_b()),
        GcmKeys::for_direction(&sess_a(), &sess_b())
    );
    assert_eq!(text, "CbcKeys { .. } GcmKeys { .. }");
}
