//! User space's half of the handed-over link on Linux (feature `linux-attach`): the
//! `H2MSG_IOC_ATTACH` ioctl of `/dev/h2msg` (`linux/h2msg_uapi.h`) behind a safe function.
//!
//! It lives here because it needs `unsafe` (every ioctl binding — `libc`, `nix`, `rustix` —
//! is an `unsafe fn`), and this crate is the only one of the workspace allowed it. It is
//! std code, compiled only with the feature: the freestanding static library a kernel
//! links never contains it, and the C header does not mention it (nothing here is
//! `extern "C"`).

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::Path;

use core::ffi::c_int;

/// `H2MSG_IOC_ATTACH`, `_IOW('H', 1, int)` as `h2msg_uapi.h` defines it, built by `libc`'s
/// `_IOW`, which follows the target architecture's layout of ioctl numbers as the C
/// macro does.
const H2MSG_IOC_ATTACH: libc::Ioctl = libc::_IOW::<c_int>(b'H' as u32, 1);

/// Why the device could not be opened: the usual cases named, for a caller to explain.
#[derive(Debug)]
#[non_exhaustive]
pub enum DeviceError {
    /// `ENOENT`: no such file: the module is not loaded (it creates the node), or no
    /// devtmpfs/udev made it.
    Missing,
    /// `ENODEV` or `ENXIO`: a device node with no driver behind it: a node left over
    /// from a module that is not loaded any more.
    NoDriver,
    /// `EACCES` or `EPERM`: the device is root's (mode 0600).
    PermissionDenied,
    /// Anything else.
    Other(io::Error),
}

impl DeviceError {
    fn from_os_error(error: io::Error) -> Self {
        match error.raw_os_error() {
            Some(libc::ENOENT) => Self::Missing,
            Some(libc::ENODEV | libc::ENXIO) => Self::NoDriver,
            Some(libc::EACCES | libc::EPERM) => Self::PermissionDenied,
            _ => Self::Other(error),
        }
    }
}

impl core::fmt::Display for DeviceError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Missing => f.write_str("no such device (ENOENT)"),
            Self::NoDriver => f.write_str("no driver behind the device node (ENODEV)"),
            Self::PermissionDenied => f.write_str("permission denied (EACCES)"),
            Self::Other(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for DeviceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Other(e) => Some(e),
            _ => None,
        }
    }
}

/// Opens the module's device (`/dev/h2msg` where devtmpfs or udev made it) for
/// [`attach_socket`].
///
/// # Errors
/// [`DeviceError`].
pub fn open_device(path: &Path) -> Result<File, DeviceError> {
    File::options()
        .read(true)
        .write(true)
        .open(path)
        .map_err(DeviceError::from_os_error)
}

/// Why the kernel refused a socket, one variant per errno `h2msg_uapi.h` documents; any
/// other failure is [`Other`](Self::Other).
#[derive(Debug)]
#[non_exhaustive]
pub enum AttachError {
    /// `EBADF`: the socket's descriptor is not open (or the device's is not).
    BadDescriptor,
    /// `ENOTSOCK`: the descriptor is not a socket.
    NotASocket,
    /// `EPROTOTYPE`: a socket, but not a stream socket.
    NotAStreamSocket,
    /// `ENOTCONN`: a stream socket that is not connected (never was, or its peer has
    /// closed it since).
    NotConnected,
    /// `EBUSY`: the kernel drives a link already; it takes one at a time.
    Busy,
    /// `EFAULT`: the kernel could not read the argument.
    BadArgument,
    /// `ENOTTY`: the device does not know this ioctl: not `/dev/h2msg`, or a module of
    /// another version.
    NotH2msgDevice,
    /// Anything else (`ENOMEM`, `EINVAL` when the kernel could not set the link up, ...).
    Other(io::Error),
}

impl AttachError {
    /// The refusal an errno of the ioctl stands for.
    fn from_os_error(error: io::Error) -> Self {
        match error.raw_os_error() {
            Some(libc::EBADF) => Self::BadDescriptor,
            Some(libc::ENOTSOCK) => Self::NotASocket,
            Some(libc::EPROTOTYPE) => Self::NotAStreamSocket,
            Some(libc::ENOTCONN) => Self::NotConnected,
            Some(libc::EBUSY) => Self::Busy,
            Some(libc::EFAULT) => Self::BadArgument,
            Some(libc::ENOTTY) => Self::NotH2msgDevice,
            _ => Self::Other(error),
        }
    }

    /// The errno's name, as `h2msg_uapi.h` lists it (`None` for [`Other`](Self::Other)).
    #[must_use]
    pub const fn errno_name(&self) -> Option<&'static str> {
        Some(match self {
            Self::BadDescriptor => "EBADF",
            Self::NotASocket => "ENOTSOCK",
            Self::NotAStreamSocket => "EPROTOTYPE",
            Self::NotConnected => "ENOTCONN",
            Self::Busy => "EBUSY",
            Self::BadArgument => "EFAULT",
            Self::NotH2msgDevice => "ENOTTY",
            Self::Other(_) => return None,
        })
    }
}

impl core::fmt::Display for AttachError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let what = match self {
            Self::BadDescriptor => "no such descriptor",
            Self::NotASocket => "not a socket",
            Self::NotAStreamSocket => "not a stream socket",
            Self::NotConnected => "the socket is not connected",
            Self::Busy => "the kernel drives a link already (one at a time)",
            Self::BadArgument => "bad argument pointer",
            Self::NotH2msgDevice => "the device does not take H2MSG_IOC_ATTACH",
            Self::Other(e) => return write!(f, "{e}"),
        };
        match self.errno_name() {
            Some(name) => write!(f, "{what} ({name})"),
            None => f.write_str(what),
        }
    }
}

impl std::error::Error for AttachError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Other(e) => Some(e),
            _ => None,
        }
    }
}

/// Hands the connected stream `socket`, its handshake done in `seed` mode, to the kernel
/// through `device` (an open `/dev/h2msg`): a kernel thread drives the link from then on.
/// The kernel takes its own reference to the socket; the caller may close its descriptor
/// afterwards, and must not read or write it any more.
///
/// # Errors
/// The kernel's refusal ([`AttachError`]); nothing changed then.
pub fn attach_socket(device: &File, socket: BorrowedFd<'_>) -> Result<(), AttachError> {
    let fd: c_int = socket.as_raw_fd();
    // SAFETY: `device` is an open descriptor for the call's duration (borrowed), the
    // request is an `_IOW(.., int)` whose argument is a pointer to one `int`, and `&fd`
    // points to a live `c_int` the kernel only reads (`get_user`) before returning.
    let rc = unsafe { libc::ioctl(device.as_raw_fd(), H2MSG_IOC_ATTACH, &raw const fd) };
    if rc == 0 {
        Ok(())
    } else {
        Err(AttachError::from_os_error(io::Error::last_os_error()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

    use std::os::fd::AsFd;
    use std::process::Command;
    // The crate is `no_std`: std's prelude is not in scope by itself.
    use std::format;
    use std::prelude::rust_2024::*;

    use super::*;

    /// The request as the 32 bits the kernel compares.
    #[allow(
        clippy::unnecessary_cast,
        reason = "libc::Ioctl is c_ulong with glibc, c_int with musl"
    )]
    fn request_number() -> u64 {
        H2MSG_IOC_ATTACH as u64 & 0xffff_ffff
    }

    /// `_IOW('H', 1, int)` by the asm-generic formula of `<asm-generic/ioctl.h>` (x86,
    /// ARM, RISC-V): direction write (1) at bit 30, size 4 at bit 16, type 'H' (0x48) at
    /// bit 8, number 1 — worked by hand.
    #[cfg(any(
        target_arch = "x86_64",
        target_arch = "x86",
        target_arch = "aarch64",
        target_arch = "arm",
        target_arch = "riscv64"
    ))]
    #[test]
    fn the_request_number_is_the_generic_iow_of_h_1_int() {
        assert_eq!(request_number(), 0x4004_4801);
    }

    /// The C compiler's own value of `H2MSG_IOC_ATTACH` from `linux/h2msg_uapi.h` (the
    /// header the module is built with), printed by a program compiled here.
    #[test]
    fn the_request_number_is_what_the_uapi_header_gives_in_c() {
        let dir = std::env::temp_dir().join(format!("h2msg-uapi-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let source = dir.join("uapi.c");
        std::fs::write(
            &source,
            "#include <stdio.h>\n#include \"h2msg_uapi.h\"\n\
             int main(void) { printf(\"%lu\\n\", (unsigned long)H2MSG_IOC_ATTACH); return 0; }\n",
        )
        .unwrap();
        let program = dir.join("uapi");
        let uapi_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/linux");
        let compiled = Command::new("cc")
            .arg(format!("-I{uapi_dir}"))
            .arg(&source)
            .arg("-o")
            .arg(&program)
            .status()
            .expect("cc (gcc) with the kernel's uapi headers (linux-libc-dev) is needed");
        assert!(compiled.success(), "cc failed on {}", source.display());
        let printed = Command::new(&program).output().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let in_c: u64 = String::from_utf8(printed.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(request_number(), in_c);
    }

    /// A device that is not h2msg's refuses the request: the call reaches the kernel, and
    /// its errno comes back typed.
    #[test]
    fn another_device_refuses_with_enotty() {
        let null = open_device(Path::new("/dev/null")).unwrap();
        let (ours, _theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let refused = attach_socket(&null, ours.as_fd()).unwrap_err();
        assert!(
            matches!(refused, AttachError::NotH2msgDevice),
            "{refused:?}"
        );
        assert_eq!(
            refused.to_string(),
            "the device does not take H2MSG_IOC_ATTACH (ENOTTY)"
        );
    }

    /// A descriptor that is not a device at all (a socket) refuses ioctls it does not
    /// know with ENOTTY too; the number is not one sockets take.
    #[test]
    fn a_socket_as_device_refuses_with_enotty() {
        let (device, socket) = std::os::unix::net::UnixStream::pair().unwrap();
        let device = File::from(std::os::fd::OwnedFd::from(device));
        let refused = attach_socket(&device, socket.as_fd()).unwrap_err();
        assert!(
            matches!(refused, AttachError::NotH2msgDevice),
            "{refused:?}"
        );
    }

    #[test]
    fn a_missing_device_is_told_apart_from_other_open_failures() {
        let dir = std::env::temp_dir().join(format!("h2msg-nodev-{}", std::process::id()));
        let missing = open_device(&dir.join("h2msg")).unwrap_err();
        assert!(matches!(missing, DeviceError::Missing), "{missing:?}");
        // 19 and 6 are ENODEV and ENXIO on Linux, 13 EACCES, 5 EIO.
        for (errno, no_driver) in [(19, true), (6, true), (13, false)] {
            let error = DeviceError::from_os_error(io::Error::from_raw_os_error(errno));
            assert_eq!(matches!(error, DeviceError::NoDriver), no_driver, "{errno}");
        }
        let eio = DeviceError::from_os_error(io::Error::from_raw_os_error(5));
        assert!(matches!(eio, DeviceError::Other(e) if e.raw_os_error() == Some(5)));
    }

    #[test]
    fn errnos_other_than_the_documented_ones_stay_as_they_are() {
        let error = AttachError::from_os_error(io::Error::from_raw_os_error(libc::ENOMEM));
        assert!(matches!(&error, AttachError::Other(e) if e.raw_os_error() == Some(12)));
        assert_eq!(error.errno_name(), None);
        let busy = AttachError::from_os_error(io::Error::from_raw_os_error(16));
        assert!(matches!(busy, AttachError::Busy));
        assert_eq!(busy.errno_name(), Some("EBUSY"));
    }
}
