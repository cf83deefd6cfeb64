//! Key files in the 2012 layout (§2.2): a key directory (default `/etc/hammer2`) with our
//! `rsa.prv` and `rsa.pub`, and `remote/<peer-address>.pub` or `remote/<peer-address>.none`
//! for each peer, looked up by the peer's numeric address.
//!
//! Every error names the file and the reason, and maps to the spec's IOQ code: a missing
//! own key is NOLKEY (11), a missing peer key NORKEY (10), anything unparsable or of the
//! wrong size KEYFMT (13). A private key readable by group or others is refused, as ssh does.

use std::fmt;
use std::fs;
use std::io;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use h2msg::wire::IoqError;
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use rsa::{PrivateKey, PublicKey};

/// Where the C tools kept their keys.
pub const DEFAULT_KEY_DIR: &str = "/etc/hammer2";

/// Size of the keys `rsainit` makes (§9).
pub const KEY_BITS: usize = 2048;

/// Why a key could not be used.
#[derive(Debug)]
#[non_exhaustive]
pub enum KeyError {
    /// Our `rsa.prv` or `rsa.pub` cannot be read (NOLKEY).
    NoLocalKey {
        /// The file.
        path: PathBuf,
        /// The OS reason.
        source: io::Error,
    },
    /// Neither `remote/<peer>.pub` nor `remote/<peer>.none` exists (NORKEY).
    NoRemoteKey {
        /// The `.pub` file looked for.
        path: PathBuf,
    },
    /// A key file does not parse, or the sizes do not fit the handshake (KEYFMT).
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Our private key is readable by group or others.
    InsecurePermissions {
        /// The file.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// Writing keys failed.
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The OS reason.
        source: io::Error,
    },
}

impl KeyError {
    /// The IOQ status code (§2.6); permission and write problems count as NOLKEY.
    #[must_use]
    pub fn ioq_error(&self) -> IoqError {
        match self {
            Self::NoLocalKey { .. } | Self::InsecurePermissions { .. } | Self::Write { .. } => {
                IoqError::NoLKey
            }
            Self::NoRemoteKey { .. } => IoqError::NoRKey,
            Self::Format { .. } => IoqError::KeyFmt,
        }
    }
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = self.ioq_error();
        match self {
            Self::NoLocalKey { path, source } => {
                write!(f, "{code}: cannot read {}: {source}", path.display())
            }
            Self::NoRemoteKey { path } => write!(
                f,
                "{code}: no key for this peer: neither {} nor {} exists",
                path.display(),
                path.with_extension("none").display()
            ),
            Self::Format { path, reason } => write!(f, "{code}: {}: {reason}", path.display()),
            Self::InsecurePermissions { path, mode } => write!(
                f,
                "{code}: {} is readable by others (mode {:04o}); run: chmod 600 {}",
                path.display(),
                mode & 0o7777,
                path.display()
            ),
            Self::Write { path, source } => {
                write!(f, "{code}: cannot write {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for KeyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::NoLocalKey { source, .. } | Self::Write { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// How a peer is to be met.
#[derive(Debug)]
pub enum PeerKey {
    /// `remote/<peer>.pub`: the RSA handshake with this key.
    Rsa(PublicKey),
    /// `remote/<peer>.none`: the plaintext handshake (authenticates nothing).
    None,
}

/// A key directory.
#[derive(Clone, Debug)]
pub struct KeyDir {
    root: PathBuf,
}

impl KeyDir {
    /// The key directory at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Its path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Path of our private key.
    #[must_use]
    pub fn private_key_path(&self) -> PathBuf {
        self.root.join("rsa.prv")
    }

    /// Path of our public key.
    #[must_use]
    pub fn public_key_path(&self) -> PathBuf {
        self.root.join("rsa.pub")
    }

    /// Path of a peer's public key.
    #[must_use]
    pub fn peer_key_path(&self, peer: IpAddr) -> PathBuf {
        self.root.join("remote").join(format!("{peer}.pub"))
    }

    /// Our key pair, checked as §2.2 checks it: both files present and parsable, the private
    /// key not readable by others, the two of the same size, and a size the handshake uses.
    ///
    /// # Errors
    /// [`KeyError`] naming the file.
    pub fn own_keys(&self) -> Result<(PrivateKey, PublicKey), KeyError> {
        let private = read_private_key(&self.private_key_path())?;
        let public_path = self.public_key_path();
        let public = parse_public_pem(&public_path, &read_own_file(&public_path)?)?;
        if public.size() != private.size() {
            return Err(KeyError::Format {
                path: public_path,
                reason: format!(
                    "{} bits, but rsa.prv has {}",
                    public.size() * 8,
                    private.size() * 8
                ),
            });
        }
        if public.n() != private.n() {
            return Err(KeyError::Format {
                path: public_path,
                reason: "does not match rsa.prv".into(),
            });
        }
        Ok((private, public))
    }

    /// The key for `peer`: `remote/<peer>.pub`, else `remote/<peer>.none`.
    ///
    /// # Errors
    /// [`KeyError::NoRemoteKey`] if neither exists, [`KeyError::Format`] if the `.pub`
    /// does not parse or has a size the handshake cannot use.
    pub fn peer_key(&self, peer: IpAddr) -> Result<PeerKey, KeyError> {
        let path = self.peer_key_path(peer);
        match fs::read_to_string(&path) {
            Ok(pem) => parse_public_pem(&path, &pem).map(PeerKey::Rsa),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if path.with_extension("none").exists() {
                    Ok(PeerKey::None)
                } else {
                    Err(KeyError::NoRemoteKey { path })
                }
            }
            Err(e) => Err(KeyError::Format {
                path,
                reason: e.to_string(),
            }),
        }
    }

    /// `rsainit`: makes the directory (0700; parents 0755) and a new 2048-bit key pair
    /// (`rsa.prv` 0400 PKCS#1 PEM, `rsa.pub` SubjectPublicKeyInfo PEM), never overwriting a
    /// key: an existing `rsa.prv` is kept (and `rsa.pub` derived from it if missing).
    /// Returns what was done.
    ///
    /// # Errors
    /// [`KeyError`] for file-system failures or an unreadable existing key.
    pub fn init<R: rand_core::TryCryptoRng + ?Sized>(
        &self,
        rng: &mut R,
    ) -> Result<InitOutcome, KeyError> {
        if let Some(parent) = self.root.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)
                .map_err(|source| KeyError::Write {
                    path: parent.to_path_buf(),
                    source,
                })?;
        }
        match fs::DirBuilder::new().mode(0o700).create(&self.root) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(source) => {
                return Err(KeyError::Write {
                    path: self.root.clone(),
                    source,
                });
            }
        }
        let prv_path = self.private_key_path();
        let pub_path = self.public_key_path();
        let (private, created) = if prv_path.exists() {
            (read_private_key(&prv_path)?, false)
        } else {
            let key = PrivateKey::new(rng, KEY_BITS).map_err(|e| KeyError::Format {
                path: prv_path.clone(),
                reason: format!("key generation: {e}"),
            })?;
            let pem = key
                .to_pkcs1_pem(LineEnding::LF)
                .map_err(|e| KeyError::Format {
                    path: prv_path.clone(),
                    reason: e.to_string(),
                })?;
            write_new(&prv_path, pem.as_bytes(), 0o400)?;
            (key, true)
        };
        let public_written = if pub_path.exists() {
            false
        } else {
            let pem = private
                .to_public_key()
                .to_public_key_pem(LineEnding::LF)
                .map_err(|e| KeyError::Format {
                    path: pub_path.clone(),
                    reason: e.to_string(),
                })?;
            write_new(&pub_path, pem.as_bytes(), 0o644)?;
            true
        };
        Ok(InitOutcome {
            private_created: created,
            public_written,
        })
    }
}

/// What [`KeyDir::init`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InitOutcome {
    /// A new private key was generated.
    pub private_created: bool,
    /// `rsa.pub` was written.
    pub public_written: bool,
}

/// Checks that a key size is one the handshake uses (§2.2, §11 H4).
fn check_size(path: &Path, bytes: usize) -> Result<(), KeyError> {
    if bytes == 256 || bytes == 512 {
        Ok(())
    } else {
        Err(KeyError::Format {
            path: path.to_path_buf(),
            reason: format!(
                "{}-bit key; the handshake takes 2048 or 4096 bits",
                bytes * 8
            ),
        })
    }
}

/// Reads our private key: PKCS#1 ("RSA PRIVATE KEY") or PKCS#8 ("PRIVATE KEY") PEM.
pub fn read_private_key(path: &Path) -> Result<PrivateKey, KeyError> {
    let meta = fs::metadata(path).map_err(|source| KeyError::NoLocalKey {
        path: path.to_path_buf(),
        source,
    })?;
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(KeyError::InsecurePermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    let pem = read_own_file(path)?;
    let key = parse_private_pem(&pem).map_err(|e| KeyError::Format {
        path: path.to_path_buf(),
        reason: format!("not a PEM RSA private key (PKCS#1 or PKCS#8): {e}"),
    })?;
    check_size(path, key.size())?;
    Ok(key)
}

/// Parses a public key read from `path` (SubjectPublicKeyInfo PEM, "PUBLIC KEY") and checks
/// its size.
fn parse_public_pem(path: &Path, pem: &str) -> Result<PublicKey, KeyError> {
    let key = PublicKey::from_public_key_pem(pem).map_err(|e| KeyError::Format {
        path: path.to_path_buf(),
        reason: format!("not a PEM public key (SubjectPublicKeyInfo): {e}"),
    })?;
    check_size(path, key.size())?;
    Ok(key)
}

/// A key file of ours; missing or unreadable is NOLKEY.
fn read_own_file(path: &Path) -> Result<String, KeyError> {
    fs::read_to_string(path).map_err(|source| KeyError::NoLocalKey {
        path: path.to_path_buf(),
        source,
    })
}

/// A PEM RSA private key in either form OpenSSL writes: PKCS#1 ("RSA PRIVATE KEY", the
/// 2012 `genrsa`) or PKCS#8 ("PRIVATE KEY", OpenSSL 3's default).
fn parse_private_pem(pem: &str) -> Result<PrivateKey, rsa::pkcs8::Error> {
    PrivateKey::from_pkcs1_pem(pem).or_else(|_| PrivateKey::from_pkcs8_pem(pem))
}

/// Reads any key file for the raw filters: a private key if it parses as one, else public.
pub fn read_any_key(path: &Path) -> Result<AnyKey, KeyError> {
    let pem = read_own_file(path)?;
    if let Ok(k) = parse_private_pem(&pem) {
        return Ok(AnyKey::Private(Box::new(k)));
    }
    PublicKey::from_public_key_pem(&pem)
        .map(AnyKey::Public)
        .map_err(|e| KeyError::Format {
            path: path.to_path_buf(),
            reason: format!("neither a PEM private nor public RSA key: {e}"),
        })
}

/// A key of either kind, for `rsaenc`/`rsadec`.
#[derive(Debug)]
pub enum AnyKey {
    /// `.prv`: the raw private operation.
    Private(Box<PrivateKey>),
    /// `.pub`: the raw public operation.
    Public(PublicKey),
}

/// Creates `path` with `mode`, refusing to replace an existing file.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), KeyError> {
    use std::io::Write;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|source| KeyError::Write {
            path: path.to_path_buf(),
            source,
        })?;
    file.write_all(bytes).map_err(|source| KeyError::Write {
        path: path.to_path_buf(),
        source,
    })
}
