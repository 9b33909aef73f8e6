//! A scratch directory for one test, removed when it is dropped, so a test that fails
//! (and unwinds) leaves nothing behind in the temporary directory either.

use std::path::{Path, PathBuf};

/// `$TMPDIR/mixserve-NAME-PID`: made empty at `new`, removed with what it holds on drop.
pub struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    /// Makes the directory, first removing one a killed run of this process id left.
    /// `name` tells the tests of one binary apart (they share the process id).
    pub fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("mixserve-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("scratch directory {}: {e}", dir.display()));
        Scratch { dir }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// A path inside the directory.
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
