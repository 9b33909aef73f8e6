//! Whether an example binary is up to date: `cargo test` builds the examples before
//! the tests, but `cargo test --test NAME` does not, and a test would then silently
//! run an old server. The sources are the ones cargo's dep-info (`NAME.d` beside the
//! binary) says the binary was built from — the crate's `src/` and the example's
//! files, not the lib's `#[cfg(test)]`-only files, which `cargo test` may rebuild
//! without relinking the examples.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Panics with what to run when the example binary at `binary` is older than a
/// source file it was built from.
pub fn assert_fresh(binary: &Path) {
    if let Some(source) = newer_source(binary) {
        let name = binary.file_name().unwrap_or_default().to_string_lossy();
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let shown = source.strip_prefix(root).unwrap_or(&source);
        panic!(
            "example binary {name} is older than {}; run `cargo build --examples` (or the \
             whole `cargo test`, which builds them first)",
            shown.display()
        );
    }
}

/// The newest source of `binary` (by its dep-info) modified after the binary was
/// built, if any. No dep-info, no binary: nothing to compare (starting it says why).
pub fn newer_source(binary: &Path) -> Option<PathBuf> {
    let built = modified(binary)?;
    let depinfo = std::fs::read_to_string(binary.with_extension("d")).ok()?;
    sources(&depinfo)
        .filter_map(|source| Some((modified(&source)?, source)))
        .filter(|(changed, _)| *changed > built)
        .max_by_key(|(changed, _)| *changed)
        .map(|(_, source)| source)
}

/// The files a make-style dep-info line lists after `target:` (`\ ` escapes a space).
fn sources(depinfo: &str) -> impl Iterator<Item = PathBuf> + '_ {
    depinfo
        .lines()
        .filter_map(|line| line.split_once(": ").map(|(_, files)| files))
        .flat_map(|files| {
            let mut paths = vec![String::new()];
            let mut escaped = false;
            for c in files.chars() {
                match c {
                    '\\' if !escaped => escaped = true,
                    ' ' if !escaped => paths.push(String::new()),
                    c => {
                        escaped = false;
                        paths.last_mut().expect("one path at least").push(c);
                    }
                }
            }
            paths
                .into_iter()
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
        })
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}
