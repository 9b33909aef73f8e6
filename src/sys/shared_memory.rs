//! Memory shared by a master and the workers it forks: an anonymous `MAP_SHARED`
//! mapping made before the fork, seen as a slice of atomics (zeroed memory is a valid
//! atomic, and atomics are the only safe way for two processes to touch one word).

use std::io;
use std::num::NonZeroUsize;
use std::ptr::NonNull;
use std::sync::atomic::AtomicU64;

use nix::sys::mman::{MapFlags, ProtFlags, mmap_anonymous, munmap};

/// `len` shared 64-bit atomic words, zeroed; unmapped on drop.
#[derive(Debug)]
pub(crate) struct SharedWords {
    ptr: NonNull<AtomicU64>,
    len: usize,
}

// SAFETY: the mapping is only ever accessed through `&[AtomicU64]`, which is Sync.
unsafe impl Send for SharedWords {}
// SAFETY: as above.
unsafe impl Sync for SharedWords {}

impl SharedWords {
    /// Maps `len` zeroed words, shared with every process forked afterwards.
    pub(crate) fn new(len: usize) -> io::Result<SharedWords> {
        let bytes = len
            .max(1)
            .checked_mul(size_of::<AtomicU64>())
            .and_then(NonZeroUsize::new)
            .ok_or_else(|| io::Error::other("shared mapping too large"))?;
        // SAFETY: a fresh anonymous mapping aliases nothing; MAP_SHARED keeps it shared
        // (not copy-on-write) with children forked later.
        let ptr = unsafe {
            mmap_anonymous(
                None,
                bytes,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
            )
        }?;
        Ok(SharedWords {
            ptr: ptr.cast(),
            len: len.max(1),
        })
    }

    /// The words.
    pub(crate) fn words(&self) -> &[AtomicU64] {
        // SAFETY: the mapping holds `len` zero-initialised words (a valid AtomicU64 is
        // any bit pattern), page-aligned, and lives until `self` is dropped.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for SharedWords {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`; no borrow of `words()`
        // outlives `self`.
        let _ = unsafe { munmap(self.ptr.cast(), self.len * size_of::<AtomicU64>()) };
    }
}

/// A monotonic clock in milliseconds (`CLOCK_MONOTONIC`), the same in every process
/// of the machine — unlike `Instant`, whose value cannot cross a process boundary.
pub(crate) fn monotonic_millis() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec for clock_gettime to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1000 + now.tv_nsec as u64 / 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A size whose bytes overflow is an error, never a short mapping.
    #[test]
    fn an_overflowing_size_is_an_error() {
        assert!(SharedWords::new(usize::MAX / 4).is_err());
        assert_eq!(SharedWords::new(3).unwrap().words().len(), 3);
    }
}
