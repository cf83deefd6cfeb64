//! The key-file parser on arbitrary bytes (`key_file`): PEM PKCS#1 / PKCS#8 /
//! SubjectPublicKeyInfo, DER, garbage, through the files the service reads and through
//! the `rsa` crate's decoders directly.

use std::cell::RefCell;
use std::fs;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use h2msg_std::keys::{AnyKey, KeyDir, PeerKey, read_any_key, read_private_key};
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::traits::PublicKeyParts;
use rsa::{PrivateKey, PublicKey};

/// A valid key for the files the input does not fill (the recorded C node's throwaway key).
const OWN_KEY_PEM: &str = include_str!("../../vectors/c-peer/v1-rsa/node/rsa.prv");
const PEER: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// The PEM labels the input can wrap its bytes in.
const LABELS: [&str; 8] = [
    "RSA PRIVATE KEY",
    "PRIVATE KEY",
    "PUBLIC KEY",
    "RSA PUBLIC KEY",
    "ENCRYPTED PRIVATE KEY",
    "CERTIFICATE",
    "",
    "PRIVATE KEY ",
];

thread_local! {
    /// One key directory per thread, reused by every input (emptied after each).
    static KEY_DIR: RefCell<Option<tempfile::TempDir>> = const { RefCell::new(None) };
}

fn own_public_pem() -> &'static str {
    use rsa::pkcs8::{EncodePublicKey, LineEnding};
    static PEM: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PEM.get_or_init(|| {
        PrivateKey::from_pkcs1_pem(OWN_KEY_PEM)
            .expect("test key parses")
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("encodes")
    })
}

/// Standard base64 with padding, in lines of `width` characters (0: one line).
fn base64(bytes: &[u8], width: usize) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    let mut line = 0;
    for group in bytes.chunks(3) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= group.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
            line += 1;
            if width > 0 && line == width {
                out.push('\n');
                line = 0;
            }
        }
    }
    out
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) {
    let _ = fs::remove_file(path);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .expect("key file created");
    file.write_all(bytes).expect("key file written");
}

/// Byte 0 chooses which file gets the input (`rsa.prv`, `rsa.pub`, the peer's `.pub`, or
/// one file read as any key) and whether it is wrapped in PEM (label, line width); the
/// rest is the content. Checks that nothing panics and that every key accepted has a size
/// the handshake takes; the bytes also go to the `rsa` crate's DER and PEM decoders.
pub fn key_file(data: &[u8]) {
    let Some((&mode, payload)) = data.split_first() else {
        return;
    };
    decode_directly(payload);
    let content = if mode & 4 != 0 {
        let label = LABELS[usize::from(mode >> 3 & 7)];
        let width = if mode & 0x40 != 0 { 64 } else { 0 };
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            base64(payload, width)
        )
        .into_bytes()
    } else {
        payload.to_vec()
    };
    KEY_DIR.with(|dir| {
        let mut dir = dir.borrow_mut();
        let root = dir
            .get_or_insert_with(|| tempfile::tempdir().expect("a temporary directory"))
            .path();
        let keys = KeyDir::new(root);
        match mode & 3 {
            0 => {
                write_file(&keys.private_key_path(), &content, 0o600);
                write_file(&keys.public_key_path(), own_public_pem().as_bytes(), 0o644);
                if let Ok((private, public)) = keys.own_keys() {
                    assert!(matches!(private.size(), 256 | 512));
                    assert_eq!(private.n(), public.n());
                }
                if let Ok(key) = read_private_key(&keys.private_key_path()) {
                    assert!(matches!(key.size(), 256 | 512));
                }
            }
            1 => {
                write_file(&keys.private_key_path(), OWN_KEY_PEM.as_bytes(), 0o600);
                write_file(&keys.public_key_path(), &content, 0o644);
                if let Ok((private, public)) = keys.own_keys() {
                    assert_eq!(private.n(), public.n(), "rsa.pub accepted for another key");
                }
            }
            2 => {
                fs::create_dir_all(root.join("remote")).expect("remote directory");
                write_file(&keys.peer_key_path(PEER), &content, 0o644);
                if let Ok(PeerKey::Rsa(key)) = keys.peer_key(PEER) {
                    assert!(matches!(key.size(), 256 | 512));
                }
            }
            _ => {
                let path = root.join("any.key");
                write_file(&path, &content, 0o600);
                match read_any_key(&path) {
                    Ok(AnyKey::Private(key)) => assert!(key.size() > 0),
                    Ok(AnyKey::Public(key)) => assert!(key.size() > 0),
                    Err(_) => {}
                }
                let _ = fs::remove_file(path);
            }
        }
        for path in [keys.private_key_path(), keys.public_key_path()] {
            let _ = fs::remove_file(path);
        }
        let _ = fs::remove_dir_all(root.join("remote"));
    });
}

/// The `rsa` crate's decoders on the bytes as DER, and as PEM text if they are UTF-8.
fn decode_directly(bytes: &[u8]) {
    let _ = PrivateKey::from_pkcs1_der(bytes);
    let _ = PrivateKey::from_pkcs8_der(bytes);
    let _ = PublicKey::from_pkcs1_der(bytes);
    let _ = PublicKey::from_public_key_der(bytes);
    if let Ok(text) = std::str::from_utf8(bytes) {
        let _ = PrivateKey::from_pkcs1_pem(text);
        let _ = PrivateKey::from_pkcs8_pem(text);
        let _ = PublicKey::from_public_key_pem(text);
    }
}
