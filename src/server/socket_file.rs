//! [`SocketFile`]: the Unix socket file a server made, removed when the server closes
//! only while its path still names that file.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use super::Listener;

/// A socket file this server made (bound here, or taken over from the master it
/// upgrades), known by its device and inode.
#[derive(Debug)]
pub(crate) struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl SocketFile {
    /// The file `listener` is bound to, if the server is to remove it when it closes.
    pub(crate) fn of(listener: &Listener) -> Option<SocketFile> {
        let path = listener.socket_file()?;
        let meta = std::fs::symlink_metadata(path).ok()?;
        Some(SocketFile {
            path: path.to_path_buf(),
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }

    /// Removes the file, unless the path names another one now: once this server
    /// stopped listening, another may have found the file stale and bound its own
    /// there, which must stay.
    pub(crate) fn remove(&self) {
        let ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|meta| (meta.dev(), meta.ino()) == (self.dev, self.ino));
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
