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

/// A key directory made by `h2msg rsainit` under `root`.
fn rsainit_keydir(root: &Path) -> KeyDir {
    h2msg_ok(&["rsainit", root.to_str().unwrap()]);
    fs::create_dir_all(root.join("remote")).unwrap();
    KeyDir::new(root)
}

/// Replaces our private key's contents, keeping it private (0600).
fn replace_private_key(dir: &KeyDir, contents: &[u8]) {
    let path = dir.private_key_path();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(&path, contents).unwrap();
}

/// Runs `h2msg` with `args` and `stdin`, killing it after `limit`: `(success, stdout,
/// stderr)`, or `None` if it had to be killed.
fn run_within(
    args: &[&str],
    stdin: &[u8],
    limit: std::time::Duration,
) -> Option<(bool, String, String)> {
    use std::io::{Read, Write};
    let mut child = h2msg()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A tool that refuses at once may be gone before it reads.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            let (mut out, mut err) = (Vec::new(), String::new());
            child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return Some((
                status.success(),
                String::from_utf8_lossy(&out).into_owned(),
                err,
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// A service whose own private key is cut short refuses to start, naming the file,
/// before it says `listening on`.
#[test]
fn a_service_with_a_truncated_own_key_refuses_to_start() {
    let t = tempfile::tempdir().unwrap();
    let dir = rsainit_keydir(t.path());
    fs::copy(dir.public_key_path(), t.path().join("remote/127.0.0.1.pub")).unwrap();
    let pem = fs::read(dir.private_key_path()).unwrap();
    replace_private_key(&dir, &pem[..pem.len() / 2]);
    let keydir = t.path().to_str().unwrap();
    let (ok, out, err) = run_within(
        &["--keydir", keydir, "service", "--listen", "127.0.0.1:0"],
        b"",
        std::time::Duration::from_secs(20),
    )
    .expect("the service started (still running after 20 s)");
    assert!(!ok, "{out}{err}");
    assert!(!out.contains("listening on"), "{out}");
    assert!(err.contains("KEYFMT") && err.contains("rsa.prv"), "{err}");
}

/// A service that serves only `.none` peers needs no key pair of its own.
#[test]
fn a_plaintext_only_service_starts_without_a_key_pair() {
    let t = tempfile::tempdir().unwrap();
    fs::create_dir_all(t.path().join("remote")).unwrap();
    fs::write(t.path().join("remote/127.0.0.1.none"), "").unwrap();
    let service = common::Service::start(t.path());
    assert!(service.endpoint.starts_with("127.0.0.1:"));
}

/// `rsadec` (and `rsaenc` given a `.prv`) refuses a private key that others can read,
/// as the service does.
#[test]
fn the_raw_filters_refuse_a_private_key_readable_by_others() {
    let t = tempfile::tempdir().unwrap();
    let dir = rsainit_keydir(t.path());
    fs::set_permissions(dir.private_key_path(), fs::Permissions::from_mode(0o644)).unwrap();
    let service_says = dir.own_keys().unwrap_err().to_string();
    let prv = dir.private_key_path();
    for args in [
        vec!["--keydir", t.path().to_str().unwrap(), "rsadec"],
        vec!["rsaenc", prv.to_str().unwrap()],
    ] {
        let (ok, _, err) = run_within(&args, &[1u8; 10], std::time::Duration::from_secs(20))
            .expect("the filter finishes");
        assert!(!ok, "{args:?} took a 0644 private key");
        assert!(
            err.contains(&service_says),
            "{args:?}: {err}\nservice: {service_says}"
        );
    }
}

/// A DER key (binary, not PEM) is KEYFMT with a hint, for our own key, a peer's key and the
/// raw filters alike — not NOLKEY about UTF-8.
#[test]
fn a_der_key_is_keyfmt_with_a_hint() {
    use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
    use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey};
    let t = tempfile::tempdir().unwrap();
    let dir = rsainit_keydir(t.path());
    let pem = fs::read_to_string(dir.private_key_path()).unwrap();
    let key = rsa::PrivateKey::from_pkcs1_pem(&pem)
        .or_else(|_| rsa::PrivateKey::from_pkcs8_pem(&pem))
        .unwrap();
    let private_der = key.to_pkcs1_der().unwrap();
    let public_der = key.to_public_key().to_public_key_der().unwrap();
    replace_private_key(&dir, private_der.as_bytes());
    fs::write(t.path().join("remote/127.0.0.1.pub"), public_der.as_bytes()).unwrap();

    let own = dir.own_keys().unwrap_err();
    let peer = dir.peer_key(peer()).unwrap_err();
    for e in [&own, &peer] {
        assert_eq!(code(e), 13, "{e}");
        assert!(!e.to_string().contains("UTF-8"), "{e}");
        assert!(
            e.to_string().contains("DER") && e.to_string().contains("openssl"),
            "{e}"
        );
    }
    let (ok, _, err) = run_within(
        &[
            "rsaenc",
            t.path().join("remote/127.0.0.1.pub").to_str().unwrap(),
        ],
        &[1u8; 10],
        std::time::Duration::from_secs(20),
    )
    .unwrap();
    assert!(
        !ok && err.contains("KEYFMT") && err.contains("DER"),
        "{err}"
    );
}

/// A PKCS#1 key cut short: the error shows what both the PKCS#1 and the PKCS#8 parser
/// found, as each of them reports it.
#[test]
fn a_truncated_pkcs1_key_shows_both_parsers_errors() {
    use rsa::pkcs1::DecodeRsaPrivateKey;
    use rsa::pkcs8::DecodePrivateKey;
    let t = tempfile::tempdir().unwrap();
    let dir = rsainit_keydir(t.path());
    let pem = fs::read_to_string(dir.private_key_path()).unwrap();
    assert!(
        pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"),
        "rsainit writes PKCS#1"
    );
    // Cut mid-body, and closed again, as an editor or a partial copy might leave it.
    let cut = format!("{}\n-----END RSA PRIVATE KEY-----\n", &pem[..pem.len() / 2]);
    replace_private_key(&dir, cut.as_bytes());
    let pkcs1 = rsa::PrivateKey::from_pkcs1_pem(&cut)
        .unwrap_err()
        .to_string();
    let pkcs8 = rsa::PrivateKey::from_pkcs8_pem(&cut)
        .unwrap_err()
        .to_string();
    let e = dir.own_keys().unwrap_err();
    assert_eq!(code(&e), 13, "{e}");
    let text = e.to_string();
    assert!(
        text.contains(&pkcs1) && text.contains(&pkcs8),
        "{text}\nPKCS#1: {pkcs1}\nPKCS#8: {pkcs8}"
    );
}

/// A FIFO where a key file belongs is refused at once, not waited on.
#[test]
fn a_fifo_as_a_key_file_is_refused_at_once() {
    let t = tempfile::tempdir().unwrap();
    let dir = KeyDir::new(t.path());
    fs::create_dir_all(t.path().join("remote")).unwrap();
    let fifo = t.path().join("remote/127.0.0.1.pub");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let (ok, _, err) = run_within(
        &["rsaenc", fifo.to_str().unwrap()],
        &[1u8; 10],
        std::time::Duration::from_secs(20),
    )
    .expect("rsaenc waited on a FIFO for 20 s");
    assert!(
        !ok && err.contains("KEYFMT") && err.contains("FIFO"),
        "{err}"
    );
    // The service's peer-key lookup and its own-key load alike (a thread, as a failure
    // would block).
    fs::rename(&fifo, dir.private_key_path()).unwrap();
    fs::set_permissions(dir.private_key_path(), fs::Permissions::from_mode(0o600)).unwrap();
    let (done, verdict) = std::sync::mpsc::channel();
    let lookup = dir.clone();
    std::thread::spawn(move || {
        let _ = done.send(lookup.own_keys().map(|_| ()).map_err(|e| e.to_string()));
    });
    let e = verdict
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("own_keys waited on a FIFO for 20 s")
        .unwrap_err();
    assert!(e.contains("KEYFMT") && e.contains("FIFO"), "{e}");
}

/// Writes `pem` as the peer key file of 127.0.0.1, dated a minute back: old enough that
/// a cache may trust its date (a file changed in the same clock tick as it was read
/// would not show the change in its date).
fn write_peer_key_dated_back(dir: &KeyDir, pem: &[u8]) {
    let path = dir.peer_key_path(peer());
    fs::write(&path, pem).unwrap();
    let a_minute_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(a_minute_ago)
        .unwrap();
}

#[test]
fn a_peer_key_file_is_parsed_once_until_it_changes() {
    let t = tempfile::tempdir().unwrap();
    let (first, second) = (t.path().join("first"), t.path().join("second"));
    h2msg_ok(&["rsainit", first.to_str().unwrap()]);
    h2msg_ok(&["rsainit", second.to_str().unwrap()]);
    let dir = KeyDir::new(t.path().join("node"));
    fs::create_dir_all(dir.path().join("remote")).unwrap();
    let rsa = |key: Result<PeerKey, KeyError>| match key.unwrap() {
        PeerKey::Rsa(key) => key,
        PeerKey::None => panic!("an RSA peer expected"),
    };
    let first_key = fs::read(first.join("rsa.pub")).unwrap();
    write_peer_key_dated_back(&dir, &first_key);
    let key = rsa(dir.peer_key(peer()));
    assert_eq!(dir.peer_key_parses(), 1);
    // Unchanged: served from the cache, also to the clones each link gets.
    assert_eq!(rsa(dir.peer_key(peer())), key);
    assert_eq!(rsa(dir.clone().peer_key(peer())), key);
    assert_eq!(dir.peer_key_parses(), 1);
    // Replaced in place by a key of the same size: the next lookup has the new key.
    write_peer_key_dated_back(&dir, &fs::read(second.join("rsa.pub")).unwrap());
    let replaced = rsa(dir.peer_key(peer()));
    assert_ne!(replaced, key);
    assert_eq!(dir.peer_key_parses(), 2);
    // A file written just now is read again each time until its date is safely past.
    fs::write(dir.peer_key_path(peer()), &first_key).unwrap();
    assert_eq!(rsa(dir.peer_key(peer())), key);
    assert_eq!(rsa(dir.peer_key(peer())), key);
    assert_eq!(dir.peer_key_parses(), 4);
    // Removed: the peer is met as its `.none` file says, or not at all.
    fs::remove_file(dir.peer_key_path(peer())).unwrap();
    assert_eq!(code(&dir.peer_key(peer()).unwrap_err()), 10);
    fs::write(dir.path().join("remote/127.0.0.1.none"), "").unwrap();
    assert!(matches!(dir.peer_key(peer()), Ok(PeerKey::None)));
}

#[test]
fn own_keys_are_read_once_per_key_directory() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("node");
    h2msg_ok(&["rsainit", root.to_str().unwrap()]);
    let dir = KeyDir::new(&root);
    let (private, public) = dir.own_keys().unwrap();
    // Broken under a running service: the keys it started with stay in use.
    fs::set_permissions(dir.private_key_path(), fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(dir.private_key_path(), "-----BEGIN RSA PRIVATE KEY-----\n").unwrap();
    let (again, again_public) = dir.clone().own_keys().unwrap();
    assert!(again == private && again_public == public);
    // A new start reads the files again, and finds the damage.
    assert_eq!(code(&KeyDir::new(&root).own_keys().unwrap_err()), 13);
}

/// Across processes: the service keeps the own keys it started with, and meets a peer
/// with the key its file holds now.
#[test]
fn the_service_keeps_its_own_keys_and_follows_peer_key_changes() {
    use std::time::Duration;

    use h2msg_std::client::connect_within;
    use h2msg_std::transport::Endpoint;

    let t = tempfile::tempdir().unwrap();
    let (node, client) = common::trusted_pair(t.path());
    let other = t.path().join("other");
    h2msg_ok(&["rsainit", other.to_str().unwrap()]);
    fs::create_dir_all(other.join("remote")).unwrap();
    fs::copy(node.join("rsa.pub"), other.join("remote/127.0.0.1.pub")).unwrap();
    let service = common::Service::start(&node);
    let endpoint = Endpoint::parse(Some(&service.endpoint));
    let link = |keys: &Path| {
        connect_within(
            &endpoint,
            &KeyDir::new(keys),
            h2msg::ModeChoice::Auto,
            Duration::from_secs(5),
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
    };
    link(&client).unwrap();
    // The service's private key file is damaged after start-up: links still work.
    fs::set_permissions(node.join("rsa.prv"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(node.join("rsa.prv"), "-----BEGIN RSA PRIVATE KEY-----\n").unwrap();
    link(&client).unwrap();
    // The peer key for 127.0.0.1 now is another client's: it is served, the first not.
    fs::copy(other.join("rsa.pub"), node.join("remote/127.0.0.1.pub")).unwrap();
    link(&other).unwrap();
    assert!(link(&client).is_err());
}
