//! The two directions of a connection, as pure state machines: [`rx`] turns bytes into
//! checked messages, [`tx`] turns messages into bytes for a (vectored) write.
//!
//! Neither touches a transport. A driver moves bytes between them and its socket, pipe or
//! kernel buffer, and reports what the transport did; the state machines never block,
//! never allocate and never read a clock.

pub mod rx;
pub mod tx;

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
