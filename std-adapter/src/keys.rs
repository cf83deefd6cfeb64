//! Key files in the 2012 layout (§2.2): a key directory (default `/etc/hammer2`) with our
//! `rsa.prv` and `rsa.pub`, and `remote/<peer-address>.pub` or `remote/<peer-address>.none`
//! for each peer, looked up by the peer's numeric address.
//!
//! Every error names the file and the reason, and maps to the spec's IOQ code: a missing
//! own key is NOLKEY (11), a missing peer key NORKEY (10), anything unparsable or of the
//! wrong size KEYFMT (13). A private key readable by group or others is refused, as ssh does,
//! wherever it is read (the service and the raw filters alike). A key file must be a
//! regular file of PEM text: anything else (a FIFO, a device, DER) is refused before it is
//! waited on or read whole.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use h2msg::wire::IoqError;
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use rsa::{PrivateKey, PublicKey};

/// Where the C tools kept their keys.
pub const DEFAULT_KEY_DIR: &str = "/etc/hammer2";

/// Size of the keys `rsainit` makes (§9).
pub const KEY_BITS: usize = 2048;

/// Largest key file read: a 4096-bit private key is about 3.3 KB of PEM.
const KEY_FILE_MAX: u64 = 64 << 10;

/// What a binary key file gets told.
const DER_HINT: &str = "binary data, not PEM text: a DER key? convert it with \
                        `openssl pkey -inform DER -in FILE -out FILE.pem` \
                        (add -pubin for a public key)";

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
    /// Shared by clones: the service hands one to each link.
    cache: Arc<KeyCache>,
}

/// What a [`KeyDir`] has read already, so that a link costs no file parsing: our key
/// pair once (a running service keeps the keys it started with; restart it to change
/// them), a peer's key until its file changes.
#[derive(Debug, Default)]
struct KeyCache {
    own: OnceLock<(PrivateKey, PublicKey)>,
    peers: Mutex<HashMap<IpAddr, CachedPeerKey>>,
    peer_key_parses: AtomicU64,
}

/// A peer's parsed key and the file it came from.
#[derive(Debug)]
struct CachedPeerKey {
    stamp: FileStamp,
    key: PublicKey,
}

/// What identifies one version of a file without reading it: which file (device, inode),
/// its length and its modification and change times. Any write changes the times, unless
/// it falls in the same clock tick as the reading did: a stamp whose modification time
/// is less than [`RACY_AGE`] before the reading is not trusted (as git treats its
/// "racily clean" entries) and the file is read again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileStamp {
    device: u64,
    inode: u64,
    len: u64,
    modified: (i64, i64),
    changed: (i64, i64),
}

/// How far a file's modification time must lie behind the reading for its stamp to be
/// trusted: well beyond any file system's time granularity (FAT's is 2 s).
const RACY_AGE: std::time::Duration = std::time::Duration::from_secs(3);

impl FileStamp {
    fn of(metadata: &fs::Metadata) -> Self {
        Self {
            device: metadata.dev(),
            inode: metadata.ino(),
            len: metadata.len(),
            modified: (metadata.mtime(), metadata.mtime_nsec()),
            changed: (metadata.ctime(), metadata.ctime_nsec()),
        }
    }

    /// Whether a file with this stamp, read just now, could still change without its
    /// stamp changing.
    fn is_racy(metadata: &fs::Metadata) -> bool {
        metadata.modified().map_or(true, |modified| {
            std::time::SystemTime::now()
                .duration_since(modified)
                .map_or(true, |age| age < RACY_AGE)
        })
    }
}

impl KeyDir {
    /// The key directory at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            cache: Arc::default(),
        }
    }

    /// Its path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// How many peer key files this directory and its clones have parsed: a file is
    /// parsed again only when it changed.
    #[must_use]
    pub fn peer_key_parses(&self) -> u64 {
        self.cache.peer_key_parses.load(Ordering::Relaxed)
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
        if let Some(keys) = self.cache.own.get() {
            return Ok(keys.clone());
        }
        let keys = self.read_own_keys()?;
        // Two first links at once may both read the files; the first to finish is kept.
        Ok(self.cache.own.get_or_init(|| keys).clone())
    }

    /// [`own_keys`](Self::own_keys) from the files.
    fn read_own_keys(&self) -> Result<(PrivateKey, PublicKey), KeyError> {
        let private = read_private_key(&self.private_key_path())?;
        let public_path = self.public_key_path();
        let public = parse_public_pem(&public_path, &read_own_file(&public_path)?.pem)?;
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

    /// The service's start-up check: our key pair as [`own_keys`](Self::own_keys) reads
    /// it, whenever an RSA link could need it (`rsa.prv` or `rsa.pub` is there, or some
    /// `remote/*.pub`); `Ok(false)` when there is neither, so that only `.none` peers
    /// can be served.
    ///
    /// # Errors
    /// [`KeyError`] naming the file, as each link would have met it.
    pub fn check_own_keys(&self) -> Result<bool, KeyError> {
        let present = |p: PathBuf| fs::symlink_metadata(p).is_ok();
        let peer_keys = fs::read_dir(self.root.join("remote")).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| e.path().extension().is_some_and(|x| x == "pub"))
        });
        if present(self.private_key_path()) || present(self.public_key_path()) || peer_keys {
            self.own_keys().map(|_| true)
        } else {
            Ok(false)
        }
    }

    /// The key for `peer`: `remote/<peer>.pub`, else `remote/<peer>.none`. A `.pub` is
    /// parsed once and again only when its file changed
    /// ([`peer_key_parses`](Self::peer_key_parses)); the files are looked at every
    /// time, so a key installed, replaced or removed applies from the next link on.
    ///
    /// # Errors
    /// [`KeyError::NoRemoteKey`] if neither exists, [`KeyError::Format`] if the `.pub`
    /// does not parse or has a size the handshake cannot use.
    pub fn peer_key(&self, peer: IpAddr) -> Result<PeerKey, KeyError> {
        let path = self.peer_key_path(peer);
        if let Some(key) = self.cached_peer_key(peer, &path) {
            return Ok(PeerKey::Rsa(key));
        }
        match read_key_file(&path) {
            Ok(key_file) => {
                self.cache.peer_key_parses.fetch_add(1, Ordering::Relaxed);
                log::debug!("read {}", path.display());
                let key = parse_public_pem(&path, &key_file.pem)?;
                if !FileStamp::is_racy(&key_file.metadata) {
                    let cached = CachedPeerKey {
                        stamp: FileStamp::of(&key_file.metadata),
                        key: key.clone(),
                    };
                    self.peers().insert(peer, cached);
                }
                Ok(PeerKey::Rsa(key))
            }
            Err(KeyFileError::Io(e)) if e.kind() == io::ErrorKind::NotFound => {
                if path.with_extension("none").exists() {
                    Ok(PeerKey::None)
                } else {
                    Err(KeyError::NoRemoteKey { path })
                }
            }
            Err(KeyFileError::Io(e)) => Err(KeyError::Format {
                path,
                reason: e.to_string(),
            }),
            Err(KeyFileError::Format(reason)) => Err(KeyError::Format { path, reason }),
        }
    }

    fn peers(&self) -> MutexGuard<'_, HashMap<IpAddr, CachedPeerKey>> {
        // A thread that panicked while holding it left whole entries behind: each is
        // inserted or removed in one step.
        self.cache
            .peers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The cached key of `peer` if its file at `path` is still the one it was read from;
    /// forgets a stale entry.
    fn cached_peer_key(&self, peer: IpAddr, path: &Path) -> Option<PublicKey> {
        let now = fs::metadata(path).ok().map(|m| FileStamp::of(&m));
        let mut peers = self.peers();
        match (peers.get(&peer), now) {
            (Some(cached), Some(stamp)) if cached.stamp == stamp => Some(cached.key.clone()),
            (None, _) => None,
            _ => {
                peers.remove(&peer);
                None
            }
        }
    }

    /// `rsainit`: makes the directory (0700; parents 0755) and a new 2048-bit key pair
    /// (`rsa.prv` 0400 PKCS#1 PEM, `rsa.pub` SubjectPublicKeyInfo PEM), never overwriting a
    /// key: an existing `rsa.prv` is kept (and `rsa.pub` derived from it if missing).
    /// Returns what was done. `remote/` is not made: peers' keys are the caller's to add.
    ///
    /// `rng` is any `rand_core` 0.10 `TryCryptoRng`; the OS source is
    /// `&mut getrandom::SysRng` (`getrandom` 0.4, feature `sys_rng`).
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
///
/// # Errors
/// [`KeyError`] naming the file: unreadable (NOLKEY), readable by others, or not a key
/// the handshake can use (KEYFMT).
pub fn read_private_key(path: &Path) -> Result<PrivateKey, KeyError> {
    let key_file = read_own_file(path)?;
    check_private(path, &key_file.metadata)?;
    let key = parse_private_pem(&key_file.pem).map_err(|reason| KeyError::Format {
        path: path.to_path_buf(),
        reason: format!("not a PEM RSA private key: {reason}"),
    })?;
    check_size(path, key.size())?;
    Ok(key)
}

/// Reads a public key: SubjectPublicKeyInfo PEM ("PUBLIC KEY"), as `rsa.pub` and
/// `remote/<peer>.pub` are written.
///
/// # Errors
/// [`KeyError`] naming the file: unreadable (NOLKEY), or not a key the handshake can use
/// (KEYFMT).
pub fn read_public_key(path: &Path) -> Result<PublicKey, KeyError> {
    let key_file = read_own_file(path)?;
    parse_public_pem(path, &key_file.pem)
}

/// The private-key rule: not readable or writable by group or others.
fn check_private(path: &Path, metadata: &fs::Metadata) -> Result<(), KeyError> {
    let mode = metadata.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(KeyError::InsecurePermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
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

/// A key file's text and the metadata of the file it was read from.
struct KeyFile {
    pem: String,
    metadata: fs::Metadata,
}

/// Why a key file could not be read.
enum KeyFileError {
    /// The OS reason (missing, no permission, ...).
    Io(io::Error),
    /// Not a file a key can be in: not a regular file, too large, binary.
    Format(String),
}

/// Reads a key file: a regular file of PEM text, at most [`KEY_FILE_MAX`] bytes.
fn read_key_file(path: &Path) -> Result<KeyFile, KeyFileError> {
    // Looked at before opening: opening a FIFO waits for a writer.
    check_regular(&fs::metadata(path).map_err(KeyFileError::Io)?)?;
    let file = fs::File::open(path).map_err(KeyFileError::Io)?;
    // And what was opened, in case the name changed hands in between.
    let metadata = file.metadata().map_err(KeyFileError::Io)?;
    check_regular(&metadata)?;
    let mut bytes = Vec::new();
    file.take(KEY_FILE_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(KeyFileError::Io)?;
    if bytes.len() as u64 > KEY_FILE_MAX {
        return Err(KeyFileError::Format(format!(
            "larger than {} KiB: not a key",
            KEY_FILE_MAX >> 10
        )));
    }
    let pem = String::from_utf8(bytes).map_err(|_| KeyFileError::Format(DER_HINT.into()))?;
    Ok(KeyFile { pem, metadata })
}

/// Refuses anything but a regular file, naming what it is.
fn check_regular(metadata: &fs::Metadata) -> Result<(), KeyFileError> {
    let kind = metadata.file_type();
    let what = if kind.is_file() {
        return Ok(());
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else {
        "not a file"
    };
    Err(KeyFileError::Format(format!(
        "{what}, not a regular file: refused"
    )))
}

/// A key file of ours; missing or unreadable is NOLKEY, anything but PEM text KEYFMT.
fn read_own_file(path: &Path) -> Result<KeyFile, KeyError> {
    read_key_file(path).map_err(|e| match e {
        KeyFileError::Io(source) => KeyError::NoLocalKey {
            path: path.to_path_buf(),
            source,
        },
        KeyFileError::Format(reason) => KeyError::Format {
            path: path.to_path_buf(),
            reason,
        },
    })
}

/// A PEM RSA private key in either form OpenSSL writes: PKCS#1 ("RSA PRIVATE KEY", the
/// 2012 `genrsa`) or PKCS#8 ("PRIVATE KEY", OpenSSL 3's default). On failure, what each
/// parser found: either may be the one that applies.
fn parse_private_pem(pem: &str) -> Result<PrivateKey, String> {
    PrivateKey::from_pkcs1_pem(pem).or_else(|pkcs1| {
        PrivateKey::from_pkcs8_pem(pem).map_err(|pkcs8| format!("{pkcs1}; {pkcs8}"))
    })
}

/// Reads any key file for the raw filters: a private key if it parses as one (held to the
/// private-key permission rule), else public.
///
/// # Errors
/// [`KeyError`] naming the file.
pub fn read_any_key(path: &Path) -> Result<AnyKey, KeyError> {
    let key_file = read_own_file(path)?;
    let private = match parse_private_pem(&key_file.pem) {
        Ok(key) => {
            check_private(path, &key_file.metadata)?;
            return Ok(AnyKey::Private(Box::new(key)));
        }
        Err(e) => e,
    };
    PublicKey::from_public_key_pem(&key_file.pem)
        .map(AnyKey::Public)
        .map_err(|public| KeyError::Format {
            path: path.to_path_buf(),
            reason: format!("neither a PEM private nor public RSA key: {private}; {public}"),
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
