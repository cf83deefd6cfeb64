//! Key files on disk: every error code from a real file, interoperability with the
//! `openssl` command in both directions, and the key tools of the `h2msg` binary.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    reason = "test code: a failed step is a failed test"
)]

use std::fs;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use h2msg_std::keys::{KeyDir, KeyError, PeerKey};

mod common;
use common::{h2msg, h2msg_ok};

fn have_openssl() -> bool {
    let ok = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        println!("SKIPPED: no openssl command on this machine");
    }
    ok
}

fn openssl(args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "openssl {args:?}");
}

/// A key directory with an openssl-made key pair (`bits`, `extra` genrsa flags).
fn openssl_keydir(root: &Path, bits: &str, extra: &[&str]) -> KeyDir {
    fs::create_dir_all(root.join("remote")).unwrap();
    let prv = root.join("rsa.prv");
    let mut args = vec!["genrsa"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-out", prv.to_str().unwrap(), bits]);
    openssl(&args);
    fs::set_permissions(&prv, fs::Permissions::from_mode(0o600)).unwrap();
    openssl(&[
        "rsa",
        "-in",
        prv.to_str().unwrap(),
        "-pubout",
        "-out",
        root.join("rsa.pub").to_str().unwrap(),
    ]);
    KeyDir::new(root)
}

fn code(e: &KeyError) -> u16 {
    e.ioq_error().code()
}

const PEER: &str = "127.0.0.1";

fn peer() -> IpAddr {
    PEER.parse().unwrap()
}

#[test]
fn missing_own_keys_are_nolkey() {
    let t = tempfile::tempdir().unwrap();
    let e = KeyDir::new(t.path()).own_keys().unwrap_err();
    assert_eq!(code(&e), 11);
    assert!(e.to_string().contains("rsa.prv"), "{e}");
}

#[test]
fn openssl_keys_are_read_in_both_pem_forms() {
    if !have_openssl() {
        return;
    }
    for extra in [&[][..], &["-traditional"][..]] {
        let t = tempfile::tempdir().unwrap();
        let dir = openssl_keydir(t.path(), "2048", extra);
        let (private, public) = dir.own_keys().unwrap();
        assert_eq!(private.to_public_key(), public, "{extra:?}");
    }
}

#[test]
fn a_readable_private_key_is_refused() {
    if !have_openssl() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let dir = openssl_keydir(t.path(), "2048", &[]);
    fs::set_permissions(dir.private_key_path(), fs::Permissions::from_mode(0o644)).unwrap();
    let e = dir.own_keys().unwrap_err();
    assert!(
        matches!(e, KeyError::InsecurePermissions { mode, .. } if mode & 0o777 == 0o644),
        "{e}"
    );
    assert!(e.to_string().contains("chmod 600"), "{e}");
}

#[test]
fn garbage_and_wrong_sizes_are_keyfmt() {
    let t = tempfile::tempdir().unwrap();
    let dir = KeyDir::new(t.path());
    fs::write(dir.private_key_path(), "not a key").unwrap();
    fs::set_permissions(dir.private_key_path(), fs::Permissions::from_mode(0o600)).unwrap();
    let e = dir.own_keys().unwrap_err();
    assert_eq!(code(&e), 13, "{e}");
    if !have_openssl() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let e = openssl_keydir(t.path(), "1024", &[])
        .own_keys()
        .unwrap_err();
    assert_eq!(code(&e), 13);
    assert!(e.to_string().contains("1024-bit"), "{e}");
}

#[test]
fn peer_keys_pub_none_or_missing() {
    let t = tempfile::tempdir().unwrap();
    let dir = KeyDir::new(t.path());
    fs::create_dir_all(t.path().join("remote")).unwrap();
    let e = dir.peer_key(peer()).unwrap_err();
    assert_eq!(code(&e), 10);
    assert!(e.to_string().contains("127.0.0.1.none"), "{e}");
    fs::write(t.path().join("remote/127.0.0.1.none"), "").unwrap();
    assert!(matches!(dir.peer_key(peer()), Ok(PeerKey::None)));
    fs::write(t.path().join("remote/127.0.0.1.pub"), "garbage").unwrap();
    assert_eq!(
        code(&dir.peer_key(peer()).unwrap_err()),
        13,
        ".pub wins over .none"
    );
    // The recorded C session's node key, as the client saw it.
    let c_key = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/vectors/c-peer/v1-rsa/client/remote/127.0.0.1.pub");
    fs::copy(c_key, t.path().join("remote/127.0.0.1.pub")).unwrap();
    assert!(matches!(dir.peer_key(peer()), Ok(PeerKey::Rsa(_))));
}

#[test]
fn rsainit_makes_keys_openssl_reads_and_never_overwrites() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("etc/hammer2");
    h2msg_ok(&["--keydir", root.to_str().unwrap(), "rsainit"]);
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&root), 0o700);
    assert_eq!(mode(&root.join("rsa.prv")), 0o400);
    let (private, _) = KeyDir::new(&root).own_keys().unwrap();
    assert_eq!(rsa::traits::PublicKeyParts::size(&private), 256);
    let before = fs::read(root.join("rsa.prv")).unwrap();
    let again = h2msg()
        .args(["rsainit", root.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("kept existing"));
    assert_eq!(
        fs::read(root.join("rsa.prv")).unwrap(),
        before,
        "never overwritten"
    );
    if have_openssl() {
        openssl(&[
            "rsa",
            "-in",
            root.join("rsa.prv").to_str().unwrap(),
            "-check",
            "-noout",
        ]);
        openssl(&[
            "pkey",
            "-pubin",
            "-in",
            root.join("rsa.pub").to_str().unwrap(),
            "-noout",
        ]);
    }
}

fn pipe(cmd: &mut Command, input: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn rsaenc_and_rsadec_are_raw_rsa_as_openssl_computes_it() {
    if !have_openssl() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let dir = openssl_keydir(t.path(), "2048", &[]);
    let keydir = t.path().to_str().unwrap();
    // Two blocks; the second is partial and gets zero-filled. Bytes below any modulus.
    let input: Vec<u8> = (0..300u32)
        .map(|i| if i % 256 == 0 { 0x11 } else { (i * 7) as u8 })
        .collect();
    let encrypted = pipe(h2msg().args(["--keydir", keydir, "rsaenc"]), &input);
    assert_eq!(encrypted.len(), 512);
    let decrypted = pipe(h2msg().args(["rsadec", "--keydir", keydir]), &encrypted);
    let mut expected = input.clone();
    expected.resize(512, 0);
    assert_eq!(decrypted, expected, "rsadec undoes rsaenc");
    // openssl's raw public operation on the first block gives the same bytes.
    let block = t.path().join("block.bin");
    fs::write(&block, &input[..256]).unwrap();
    let theirs = t.path().join("theirs.bin");
    openssl(&[
        "pkeyutl",
        "-verifyrecover",
        "-pubin",
        "-inkey",
        dir.public_key_path().to_str().unwrap(),
        "-pkeyopt",
        "rsa_padding_mode:none",
        "-in",
        block.to_str().unwrap(),
        "-out",
        theirs.to_str().unwrap(),
    ]);
    assert_eq!(fs::read(theirs).unwrap(), encrypted[..256]);
}

#[test]
fn every_subcommand_has_help() {
    for sub in ["rsainit", "rsaenc", "rsadec"] {
        let out = h2msg().args([sub, "--help"]).output().unwrap();
        assert!(out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage: h2msg"),
            "{sub}"
        );
    }
}
