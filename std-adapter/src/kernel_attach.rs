//! `h2msg kernel-attach`: a link whose far end is the Linux kernel module (`h2msg.ko`,
//! kernel-shim/README.md, "The handed-over link"). As DragonFly did, user space does the
//! handshake and the kernel gets the socket: connect, run the handshake with the tool's
//! keys in `seed` mode (the stream is plaintext after it, §2.7, so the kernel needs
//! nothing from it), then hand the connected socket to `/dev/h2msg`'s ioctl; the kernel's
//! thread drives the link from then on and this process is done with it.
//!
//! The ioctl itself is `h2msg_kshim::linux_attach` (Linux only): it needs `unsafe`, which
//! only the kernel shim may have.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use h2msg::{ModeChoice, StreamMode};

use crate::blocking::Duplex;
use crate::keys::KeyDir;
use crate::link::{HANDSHAKE_TIMEOUT, LinkError, LinkTerms, PeerStream, handshake};
use crate::transport::{Endpoint, Stream};

#[cfg(target_os = "linux")]
pub use h2msg_kshim::linux_attach::{AttachError, DeviceError};

/// Where the module's device is by default (devtmpfs or udev name it after the module's
/// misc device).
pub const DEFAULT_DEVICE: &str = "/dev/h2msg";

/// How `kernel-attach` reaches the kernel and the service.
#[derive(Clone, Debug)]
pub struct AttachOptions {
    /// The module's device.
    pub device: PathBuf,
    /// Bound on the TCP connection, and again on the handshake.
    pub connect_timeout: Duration,
}

impl Default for AttachOptions {
    fn default() -> Self {
        Self {
            device: PathBuf::from(DEFAULT_DEVICE),
            connect_timeout: HANDSHAKE_TIMEOUT,
        }
    }
}

/// A link handed to the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attached {
    /// The service's address as the socket saw it.
    pub peer: String,
    /// Our end's address, which the service's log and `status` show for the link.
    pub local: String,
    /// What the handshake agreed on (always the `seed` stream mode).
    pub terms: LinkTerms,
}

/// Why no link was handed to the kernel. Each says what to do about it.
#[derive(Debug)]
#[non_exhaustive]
pub enum KernelAttachError {
    /// The device could not be opened (checked first, before the service is bothered).
    #[cfg(target_os = "linux")]
    Device {
        /// The device's path.
        path: PathBuf,
        /// Why.
        error: DeviceError,
    },
    /// The service could not be reached.
    Connect(io::Error),
    /// The handshake failed (its IOQ code is in the error).
    Handshake(LinkError),
    /// The handshake agreed on a protected stream mode, which a kernel link cannot run.
    /// (The tool asks for `seed` only, so a correct peer never gets here.)
    NotSeed(StreamMode),
    /// The handshake's driver could not give the socket back without losing bytes.
    Release(io::Error),
    /// The kernel refused the socket.
    #[cfg(target_os = "linux")]
    Refused {
        /// The device's path.
        path: PathBuf,
        /// The kernel's errno, typed.
        error: AttachError,
    },
    /// Not Linux: there is no module to hand a link to.
    Unsupported,
}

impl std::fmt::Display for KernelAttachError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            #[cfg(target_os = "linux")]
            Self::Device { path, error } => {
                let hint = match error {
                    DeviceError::Missing | DeviceError::NoDriver => {
                        ": the h2msg module is not loaded (insmod h2msg.ko)"
                    }
                    DeviceError::PermissionDenied => ": the device is root's (mode 0600)",
                    _ => "",
                };
                write!(f, "{}: {error}{hint}", path.display())
            }
            Self::Connect(e) => write!(f, "connect: {e}"),
            Self::Handshake(e) => write!(f, "handshake: {e}"),
            Self::NotSeed(mode) => write!(
                f,
                "the handshake agreed on stream mode {}; a kernel link runs seed only",
                mode.name()
            ),
            Self::Release(e) => write!(f, "taking the socket back from the driver: {e}"),
            #[cfg(target_os = "linux")]
            Self::Refused { path, error } => {
                let hint = match error {
                    AttachError::Busy => {
                        ": rmmod h2msg (or wait until that link ends) before attaching another"
                    }
                    AttachError::NotConnected => {
                        ": the service closed the connection after the handshake"
                    }
                    AttachError::NotH2msgDevice => {
                        ": not h2msg's device, or a module of another version"
                    }
                    AttachError::BadDescriptor
                    | AttachError::NotASocket
                    | AttachError::NotAStreamSocket
                    | AttachError::BadArgument => ": a bug of this tool (it passes its socket)",
                    _ => "",
                };
                write!(
                    f,
                    "{}: the kernel refused the socket: {error}{hint}",
                    path.display()
                )
            }
            Self::Unsupported => f.write_str("kernel-attach needs Linux and its h2msg module"),
        }
    }
}

impl std::error::Error for KernelAttachError {}

/// Connects to `endpoint`, runs the handshake with `keys` in `seed` mode and hands the
/// socket to the kernel through `options.device`. The device is opened first, so that a
/// missing module costs the service no handshake.
///
/// # Errors
/// [`KernelAttachError`].
pub fn kernel_attach(
    endpoint: &Endpoint,
    keys: &KeyDir,
    options: &AttachOptions,
) -> Result<Attached, KernelAttachError> {
    #[cfg(target_os = "linux")]
    {
        let device = open(&options.device)?;
        let (stream, attached) = handshake_for_kernel(endpoint, keys, options.connect_timeout)?;
        let socket = match &stream {
            Stream::Tcp(s) => std::os::fd::AsFd::as_fd(s),
            Stream::Unix(s) => std::os::fd::AsFd::as_fd(s),
        };
        h2msg_kshim::linux_attach::attach_socket(&device, socket).map_err(|error| {
            KernelAttachError::Refused {
                path: options.device.clone(),
                error,
            }
        })?;
        // Our descriptor closes here; the kernel holds its own reference.
        Ok(attached)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (endpoint, keys, options, handshake_for_kernel);
        Err(KernelAttachError::Unsupported)
    }
}

#[cfg(target_os = "linux")]
fn open(path: &Path) -> Result<std::fs::File, KernelAttachError> {
    h2msg_kshim::linux_attach::open_device(path).map_err(|error| KernelAttachError::Device {
        path: path.to_path_buf(),
        error,
    })
}

/// Connects and runs the handshake in `seed` mode, each within `timeout`, and returns the
/// socket with nothing of the stream after the handshake read from it.
///
/// # Errors
/// [`KernelAttachError::Connect`], [`Handshake`](KernelAttachError::Handshake),
/// [`NotSeed`](KernelAttachError::NotSeed), [`Release`](KernelAttachError::Release).
pub fn handshake_for_kernel(
    endpoint: &Endpoint,
    keys: &KeyDir,
    timeout: Duration,
) -> Result<(Stream, Attached), KernelAttachError> {
    let stream = endpoint
        .connect_within(timeout)
        .map_err(KernelAttachError::Connect)?;
    stream
        .prepare_for_link()
        .map_err(KernelAttachError::Connect)?;
    let (peer, local) = (stream.peer_name(), stream.local_name());
    let mut duplex = Duplex::new(stream).map_err(KernelAttachError::Connect)?;
    let (terms, _setup) = handshake(&mut duplex, keys, timeout, ModeChoice::Seed)
        .map_err(KernelAttachError::Handshake)?;
    if terms.mode != StreamMode::Seed {
        return Err(KernelAttachError::NotSeed(terms.mode));
    }
    // The handshake reads exactly its block, so no message byte is in the driver; it
    // refuses rather than lose one.
    let stream = duplex.into_inner().map_err(KernelAttachError::Release)?;
    Ok((stream, Attached { peer, local, terms }))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

    use std::fs;
    use std::io::Read;
    use std::net::TcpListener;
    use std::thread;

    use h2msg::Liveness;

    use super::*;
    use crate::link::{Trust, open_link};

    /// Two key directories that trust each other over loopback, as `h2msg demo` makes them.
    fn trusting_pair(root: &Path) -> (KeyDir, KeyDir) {
        let (service, client) = (
            KeyDir::new(root.join("service")),
            KeyDir::new(root.join("client")),
        );
        for (me, other) in [(&service, &client), (&client, &service)] {
            me.init(&mut getrandom::SysRng).unwrap();
            fs::create_dir_all(other.path().join("remote")).unwrap();
            fs::copy(
                me.public_key_path(),
                other.path().join("remote/127.0.0.1.pub"),
            )
            .unwrap();
        }
        (service, client)
    }

    fn options(device: PathBuf) -> AttachOptions {
        AttachOptions {
            device,
            connect_timeout: Duration::from_secs(20),
        }
    }

    /// Without the module nothing reaches the service: the device is looked at first, and
    /// the error says to load the module.
    #[test]
    fn a_missing_module_is_reported_before_any_connection() {
        let dir = tempfile::tempdir().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = Endpoint::Tcp(listener.local_addr().unwrap().to_string());
        let device = dir.path().join("h2msg");
        let error = kernel_attach(
            &endpoint,
            &KeyDir::new(dir.path()),
            &options(device.clone()),
        )
        .unwrap_err();
        assert!(
            matches!(
                &error,
                KernelAttachError::Device {
                    error: DeviceError::Missing,
                    ..
                }
            ),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            format!(
                "{}: no such device (ENOENT): the h2msg module is not loaded (insmod h2msg.ko)",
                device.display()
            )
        );
        listener.set_nonblocking(true).unwrap();
        let accepted = listener.accept().map(|_| ()).unwrap_err();
        assert_eq!(accepted.kind(), io::ErrorKind::WouldBlock);
    }

    /// An RSA handshake in seed mode against a service that offers gcm: both ends agree on
    /// seed, and the socket comes back with the service's first message still unread in
    /// it, for the kernel to read.
    #[test]
    fn the_handshake_leaves_a_plaintext_stream_with_nothing_read_past_it() {
        let dir = tempfile::tempdir().unwrap();
        let (service_keys, client_keys) = trusting_pair(dir.path());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = Endpoint::Tcp(listener.local_addr().unwrap().to_string());
        let service = thread::spawn(move || {
            let (socket, _) = listener.accept().unwrap();
            let (mut link, terms) = open_link(
                Stream::Tcp(socket),
                &service_keys,
                Duration::from_secs(20),
                ModeChoice::Auto,
                Liveness::OFF,
            )
            .unwrap();
            // A ping the moment the link is up: its bytes must reach the new owner.
            link.io()
                .open(h2msg::wire::Cmd::LNK_PING, &[], b"", true)
                .unwrap();
            link.flush().unwrap();
            (link, terms)
        });
        let (mut stream, attached) =
            handshake_for_kernel(&endpoint, &client_keys, Duration::from_secs(20)).unwrap();
        let (_link, service_terms) = service.join().unwrap();
        let seed_rsa = LinkTerms {
            trust: Trust::Rsa,
            mode: StreamMode::Seed,
        };
        assert_eq!(attached.terms, seed_rsa);
        assert_eq!(service_terms, seed_rsa);
        assert_eq!(attached.peer, endpoint.to_string());
        // One seed-era header: 32 bytes, the magic 0x4832 first (little-endian).
        let mut header = [0u8; 32];
        stream.read_exact(&mut header).unwrap();
        assert_eq!(&header[..2], &[0x32, 0x48]);
    }

    /// A device that is not h2msg's refuses the ioctl; the error names the device and
    /// the errno, and says what it means.
    #[test]
    fn a_device_that_is_not_h2msg_refuses_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let (service_keys, client_keys) = trusting_pair(dir.path());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = Endpoint::Tcp(listener.local_addr().unwrap().to_string());
        let service = thread::spawn(move || {
            let (socket, _) = listener.accept().unwrap();
            open_link(
                Stream::Tcp(socket),
                &service_keys,
                Duration::from_secs(20),
                ModeChoice::Auto,
                Liveness::OFF,
            )
            .map(|(link, _)| link)
        });
        let error = kernel_attach(
            &endpoint,
            &client_keys,
            &options(PathBuf::from("/dev/null")),
        )
        .unwrap_err();
        assert!(service.join().unwrap().is_ok());
        assert!(
            matches!(
                &error,
                KernelAttachError::Refused {
                    error: AttachError::NotH2msgDevice,
                    ..
                }
            ),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            "/dev/null: the kernel refused the socket: the device does not take \
             H2MSG_IOC_ATTACH (ENOTTY): not h2msg's device, or a module of another version"
        );
    }

    #[test]
    fn a_service_that_is_not_there_is_a_connect_error() {
        let dir = tempfile::tempdir().unwrap();
        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let error = handshake_for_kernel(
            &Endpoint::Tcp(format!("127.0.0.1:{port}")),
            &KeyDir::new(dir.path()),
            Duration::from_secs(5),
        )
        .unwrap_err();
        assert!(
            matches!(&error, KernelAttachError::Connect(e) if e.kind() == io::ErrorKind::ConnectionRefused),
            "{error:?}"
        );
    }
}
