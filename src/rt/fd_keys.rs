//! [`FdKeys`]: the reactor key of each fd registered through [`wait_fd`](super::wait_fd),
//! in a table indexed by the fd number.
//!
//! Fd numbers are small and dense (the kernel hands out the lowest free one), so a
//! vector indexed by fd finds a key with one bounds check: no hashing on the path
//! every read and write of a connection takes.

use std::os::fd::RawFd;

use super::reactor::SourceKey;

/// The keys of the fds registered on one runtime, by fd number.
#[derive(Debug, Default)]
pub(crate) struct FdKeys {
    keys: Vec<Option<SourceKey>>,
}

impl FdKeys {
    /// The key of `fd`, if it is registered.
    pub(crate) fn get(&self, fd: RawFd) -> Option<SourceKey> {
        let index = usize::try_from(fd).ok()?;
        self.keys.get(index).copied().flatten()
    }

    /// Records `key` for `fd` (a negative fd is never registered, so never recorded).
    pub(crate) fn insert(&mut self, fd: RawFd, key: SourceKey) {
        let Ok(index) = usize::try_from(fd) else {
            return;
        };
        if index >= self.keys.len() {
            self.keys.resize(index + 1, None);
        }
        self.keys[index] = Some(key);
    }

    /// Forgets `fd`, returning its key.
    pub(crate) fn remove(&mut self, fd: RawFd) -> Option<SourceKey> {
        let index = usize::try_from(fd).ok()?;
        self.keys.get_mut(index)?.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rt::reactor::Reactor;

    #[test]
    fn keys_are_found_by_fd_until_removed() {
        let reactor = Reactor::new(8, None).unwrap();
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let (fa, fb) = (
            std::os::fd::AsRawFd::as_raw_fd(&a),
            std::os::fd::AsRawFd::as_raw_fd(&b),
        );
        let key = reactor.register(fa).unwrap();
        let mut keys = FdKeys::default();
        assert_eq!(keys.get(fa), None);
        keys.insert(fa, key);
        keys.insert(-1, key);
        assert_eq!(keys.get(fa), Some(key));
        assert_eq!(keys.get(fb), None);
        assert_eq!(keys.get(-1), None);
        assert_eq!(keys.remove(fa), Some(key));
        assert_eq!(keys.get(fa), None);
        reactor.deregister(key, fa);
    }
}
