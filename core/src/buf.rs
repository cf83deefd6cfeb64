//! Leaf helpers that several layers share: the bounded copy behind every `feed` and
//! `copy_pending`, and the error of a driver that reports more bytes than it was offered.
//! Imports nothing from the crate, so the handshake and the ioq can both use it.

use core::fmt;

/// A transport reported more bytes than it was offered: read into a buffer larger than the
/// room given, or wrote more than was pending. Nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OverCommit {
    /// Bytes reported.
    pub reported: usize,
    /// Bytes the read buffer had room for.
    pub room: usize,
}

impl fmt::Display for OverCommit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} bytes reported read into a buffer of {}",
            self.reported, self.room
        )
    }
}

impl core::error::Error for OverCommit {}

/// Copies as much of `src` as fits into the front of `dst`; returns how many bytes. The one
/// copy behind every `feed` and `copy_pending`: no length-mismatch panic path.
pub(crate) fn copy_prefix(dst: &mut [u8], src: &[u8]) -> usize {
    let n = dst.len().min(src.len());
    if let (Some(dst), Some(src)) = (dst.get_mut(..n), src.get(..n)) {
        dst.copy_from_slice(src);
        n
    } else {
        0
    }
}
