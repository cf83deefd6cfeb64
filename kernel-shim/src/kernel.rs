//! The kernel's services as the core's traits, and the panic handler.

use core::convert::Infallible;
use core::ffi::{CStr, c_char, c_void};

use h2msg::rand_core::TryRng;
use h2msg::wire::Crc32c;

/// `random_bytes` of `struct h2msg_kernel_ops`.
pub(crate) type RandomBytesFn = unsafe extern "C" fn(buf: *mut c_void, len: usize);
/// `crc32c` of `struct h2msg_kernel_ops`.
pub(crate) type Crc32cFn = unsafe extern "C" fn(buf: *const c_void, len: usize, crc: u32) -> u32;
/// `log` of `struct h2msg_kernel_ops`.
pub(crate) type LogFn = unsafe extern "C" fn(line: *const c_char);

/// The salt source: the kernel's random bytes.
pub(crate) struct KernelRandom(RandomBytesFn);

impl KernelRandom {
    /// # Safety
    /// `random_bytes` must be safe to call with any buffer valid for writes of `len` bytes,
    /// for as long as this value lives (the contract of `h2msg_iocom_init`).
    pub(crate) const unsafe fn new(random_bytes: RandomBytesFn) -> Self {
        Self(random_bytes)
    }

    fn fill(&self, dst: &mut [u8]) {
        // SAFETY: `dst` is valid for writes of `dst.len()` bytes, the one thing `new`'s
        // contract asks of the call.
        unsafe { (self.0)(dst.as_mut_ptr().cast(), dst.len()) }
    }
}

impl TryRng for KernelRandom {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut bytes = [0u8; 4];
        self.fill(&mut bytes);
        Ok(u32::from_le_bytes(bytes))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut bytes = [0u8; 8];
        self.fill(&mut bytes);
        Ok(u64::from_le_bytes(bytes))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.fill(dst);
        Ok(())
    }
}

/// CRC-32C: the kernel's when it gave one, else [`table_crc32c`].
#[derive(Clone, Copy)]
pub(crate) struct KernelCrc(Option<Crc32cFn>);

impl KernelCrc {
    /// # Safety
    /// `crc32c`, if given, must be safe to call with any buffer valid for reads of `len`
    /// bytes, for as long as this value lives (the contract of `h2msg_iocom_init`).
    pub(crate) const unsafe fn new(crc32c: Option<Crc32cFn>) -> Self {
        Self(crc32c)
    }
}

impl Crc32c for KernelCrc {
    fn append(&self, crc: u32, bytes: &[u8]) -> u32 {
        match self.0 {
            // SAFETY: `bytes` is valid for reads of `bytes.len()` bytes, the one thing
            // `new`'s contract asks of the call.
            Some(kernel_crc) => unsafe { kernel_crc(bytes.as_ptr().cast(), bytes.len(), crc) },
            None => table_crc32c(crc, bytes),
        }
    }
}

/// The reflected Castagnoli polynomial.
const CASTAGNOLI_REFLECTED: u32 = 0x82F6_3B78;

/// One byte of CRC-32C at a time, built at compile time (1 KiB).
#[allow(
    clippy::indexing_slicing,
    reason = "evaluated at compile time: a bad index fails the build, it cannot panic"
)]
const CRC32C_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut byte = 0;
    while byte < 256 {
        let mut crc = byte as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ CASTAGNOLI_REFLECTED
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[byte] = crc;
        byte += 1;
    }
    table
};

/// The fallback CRC-32C, continuing from the finished CRC `crc`: byte at a time, as
/// DragonFly's own `iscsi_crc32_ext`. Not core's `SoftCrc32c`, whose 16-way tables (the
/// `crc` crate) keep bounds checks that would make the panic handler reachable.
pub(crate) fn table_crc32c(crc: u32, bytes: &[u8]) -> u32 {
    let mut register = !crc;
    for &byte in bytes {
        // A `u8` index into 256 entries: the check is optimised out, the 0 never used.
        let index = usize::from((register as u8) ^ byte);
        register = (register >> 8) ^ CRC32C_TABLE.get(index).copied().unwrap_or(0);
    }
    !register
}

/// Writes `line` to the kernel's log, if it gave a log function.
///
/// # Safety
/// `log`, if given, must be safe to call with a NUL-terminated string.
pub(crate) unsafe fn log_line(log: Option<LogFn>, line: &CStr) {
    if let Some(log) = log {
        // SAFETY: `line` is NUL-terminated and outlives the call; the caller vouches for `log`.
        unsafe { log(line.as_ptr()) }
    }
}

/// Called by the panic handler and by nothing else. The freestanding proof checks that no
/// exported function can reach it: in an object kept only from the exports, no relocation
/// may name this symbol. It calls the kernel's hook itself, so the call cannot be
/// optimised away.
#[cfg(all(feature = "panic-handler", not(test)))]
#[unsafe(no_mangle)]
#[inline(never)]
extern "C" fn h2msg_panic_sentinel(msg: *const c_char) -> ! {
    // SAFETY: `msg` is the NUL-terminated literal of `on_panic`, which the hook takes.
    unsafe { h2msg_kernel_panic(msg) }
}

#[cfg(all(feature = "panic-handler", not(test)))]
unsafe extern "C" {
    /// The kernel's panic hook: prints `msg` and stops (DragonFly: a two-line wrapper that
    /// calls `panic("%s", msg)`). Unreachable from every export, as the proof shows; it
    /// exists because Rust requires a panic handler.
    fn h2msg_kernel_panic(msg: *const c_char) -> !;
}

// Only in the static library (the feature), where nothing else brings one: any crate
// graph with std in it (tests, a workspace build with the `rsa` crate's std) has its own.
#[cfg(all(feature = "panic-handler", not(test)))]
#[panic_handler]
fn on_panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    // No formatting of `_info`: `core::fmt` would pull code into the object for a path
    // that, by the proof, never runs.
    h2msg_panic_sentinel(c"h2msg: Rust panic".as_ptr())
}

#[cfg(test)]
mod tests {
    use super::*;
    use h2msg::wire::SoftCrc32c;

    #[test]
    fn the_fallback_crc_gives_the_catalogue_check_value() {
        // CRC-32/ISCSI's published check value over "123456789".
        assert_eq!(table_crc32c(0, b"123456789"), 0xE306_9283);
        assert_eq!(table_crc32c(0, b""), 0);
    }

    #[test]
    fn the_fallback_crc_continues_like_the_core_crc() {
        let bytes: [u8; 300] = core::array::from_fn(|i| (i * 31 + 7) as u8);
        for split in [0, 1, 15, 16, 17, 150, 299, 300] {
            let (a, b) = bytes.split_at(split);
            let whole = SoftCrc32c.append(0, &bytes);
            assert_eq!(
                table_crc32c(table_crc32c(0, a), b),
                whole,
                "split at {split}"
            );
        }
    }

    #[test]
    fn without_a_kernel_crc_the_fallback_is_used() {
        // SAFETY: no function pointer is given.
        let crc = unsafe { KernelCrc::new(None) };
        assert_eq!(crc.append(0, b"123456789"), 0xE306_9283);
    }

    unsafe extern "C" fn constant_crc(_buf: *const c_void, len: usize, crc: u32) -> u32 {
        crc ^ (len as u32) ^ 0xDEAD_0000
    }

    #[test]
    fn a_kernel_crc_is_called_with_the_bytes_and_the_running_crc() {
        // SAFETY: `constant_crc` reads nothing.
        let crc = unsafe { KernelCrc::new(Some(constant_crc)) };
        assert_eq!(crc.append(0x11, &[0u8; 5]), 0x11 ^ 5 ^ 0xDEAD_0000);
    }

    unsafe extern "C" fn counting_random(buf: *mut c_void, len: usize) {
        // SAFETY: the caller passes `len` writable bytes.
        let bytes = unsafe { core::slice::from_raw_parts_mut(buf.cast::<u8>(), len) };
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = i as u8 + 1;
        }
    }

    #[test]
    fn kernel_random_bytes_become_little_endian_words() {
        // SAFETY: `counting_random` writes exactly `len` bytes.
        let mut rng = unsafe { KernelRandom::new(counting_random) };
        assert_eq!(rng.try_next_u32(), Ok(0x0403_0201));
        assert_eq!(rng.try_next_u64(), Ok(0x0807_0605_0403_0201));
        let mut three = [0u8; 3];
        assert_eq!(rng.try_fill_bytes(&mut three), Ok(()));
        assert_eq!(three, [1, 2, 3]);
    }
}
