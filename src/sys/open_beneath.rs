//! Opening a path beneath a directory with no window between the check and the open:
//! a symbolic link swapped in while a request is served cannot lead out of the root.
//!
//! [`open_beneath`] asks the kernel to do it: `openat2(2)` with `RESOLVE_BENEATH` (every
//! step of the resolution, symbolic links included, must stay under the directory fd)
//! and `RESOLVE_NO_MAGICLINKS` (no `/proc/…/fd` links). Where `openat2` is missing
//! (`ENOSYS` before Linux 5.6, or `EPERM` from an old seccomp filter), and where it
//! refuses an absolute link (`RESOLVE_BENEATH` refuses every absolute target, even one
//! naming a file inside the root), [`open_by_walk`] decides: it walks one component at a
//! time from the directory fd with `O_NOFOLLOW`, so the kernel never follows a link,
//! reads each link itself and resolves it against the directories it holds open. A
//! `..` above the root, or an absolute target outside the root's path, is refused.
//!
//! Failures are `io::Error`s with the kernel's codes; an escape is `EXDEV`, as
//! `openat2` reports it, and too many links `ELOOP`.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat, openat2, readlinkat};
use nix::sys::stat::Mode;

/// Links followed in one resolution before giving up (`ELOOP`), as the kernel's 40.
const MAX_LINKS: usize = 40;

/// Set once `openat2` turned out to be unavailable: the walk is used from then on.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// The flags of the final open: read-only, never a controlling terminal, and never
/// blocking on a FIFO someone left in the tree (the caller refuses non-regular files).
fn final_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY | OFlag::O_NONBLOCK
}

/// Opens the file at `path` (links followed) with the flags of [`open_beneath`]'s final
/// open, so a FIFO or a terminal there is opened without blocking or being adopted.
pub(crate) fn open_to_read(path: &Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(path)
}

/// Opens `relative` beneath the directory `root` (read-only, close-on-exec,
/// non-blocking) — a file or a directory. `root_path` is the directory's canonical
/// path: an absolute link naming a place under it stays inside.
pub(crate) fn open_beneath(
    root: BorrowedFd<'_>,
    root_path: &Path,
    relative: &Path,
) -> io::Result<OwnedFd> {
    if !NO_OPENAT2.load(Ordering::Relaxed) {
        let how = OpenHow::new()
            .flags(final_flags())
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        let target = if relative.as_os_str().is_empty() {
            Path::new(".")
        } else {
            relative
        };
        match openat2(root, target, how) {
            Ok(fd) => return Ok(fd),
            Err(Errno::ENOSYS) => NO_OPENAT2.store(true, Ordering::Relaxed),
            // An old seccomp filter's answer to a call it does not know; rarely, a real
            // refusal, which the walk meets again.
            Err(Errno::EPERM) => {}
            // An escape or an absolute link (EXDEV), a magic link or a loop (ELOOP), a
            // rename racing the lookup (EAGAIN): the walk gives the final word.
            Err(Errno::EXDEV | Errno::ELOOP | Errno::EAGAIN) => {}
            Err(errno) => return Err(errno.into()),
        }
    }
    open_by_walk(root, root_path, relative)
}

/// [`open_beneath`] without `openat2`: one `openat(O_NOFOLLOW)` per component from
/// `root`, each symbolic link read (`readlinkat`) and resolved here.
pub(crate) fn open_by_walk(
    root: BorrowedFd<'_>,
    root_path: &Path,
    relative: &Path,
) -> io::Result<OwnedFd> {
    // The directories opened so far below `root`, innermost last: `..` pops one.
    let mut dirs: Vec<OwnedFd> = Vec::new();
    // The names still to resolve, the next one last.
    let mut pending: Vec<OsString> = Vec::new();
    push_components(&mut pending, relative);
    let mut links = 0;
    while let Some(name) = pending.pop() {
        if name == ".." {
            if dirs.pop().is_none() {
                return Err(Errno::EXDEV.into());
            }
            continue;
        }
        let last = pending.is_empty();
        let dir = dirs.last().map_or(root, |dir| dir.as_fd());
        let flags = if last {
            final_flags() | OFlag::O_NOFOLLOW
        } else {
            // O_PATH: passing through needs search permission only, as in a lookup.
            OFlag::O_PATH | OFlag::O_CLOEXEC | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW
        };
        let refused = match openat(dir, name.as_os_str(), flags, Mode::empty()) {
            Ok(fd) if last => return Ok(fd),
            Ok(fd) => {
                dirs.push(fd);
                continue;
            }
            // A link at this name (ELOOP; ENOTDIR on some kernels with O_DIRECTORY).
            Err(errno @ (Errno::ELOOP | Errno::ENOTDIR)) => errno,
            Err(errno) => return Err(errno.into()),
        };
        // Read the link this name holds now; if it is no link after all, the open's
        // error stands.
        let Ok(target) = readlinkat(dir, name.as_os_str()) else {
            return Err(refused.into());
        };
        links += 1;
        if links > MAX_LINKS {
            return Err(Errno::ELOOP.into());
        }
        let target = Path::new(&target);
        if target.is_absolute() {
            let inside = target
                .strip_prefix(root_path)
                .map_err(|_| io::Error::from(Errno::EXDEV))?;
            dirs.clear();
            push_components(&mut pending, inside);
        } else {
            push_components(&mut pending, target);
        }
    }
    // The path ended on a directory (or was empty): the innermost one, or the root,
    // opened for reading as `openat2` would.
    let dir = dirs.last().map_or(root, |dir| dir.as_fd());
    Ok(openat(dir, ".", final_flags(), Mode::empty())?)
}

/// Queues `path`'s names in front of `pending` (so they are resolved next, in order),
/// `..` kept and `.` or empty names dropped. Only relative paths reach here.
fn push_components(pending: &mut Vec<OsString>, path: &Path) {
    let names: Vec<&OsStr> = path
        .components()
        .filter_map(|component| match component {
            Component::Normal(name) => Some(name),
            Component::ParentDir => Some(OsStr::from_bytes(b"..")),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => None,
        })
        .collect();
    pending.extend(names.into_iter().rev().map(OsStr::to_os_string));
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, symlink};
    use std::path::PathBuf;

    use super::*;

    type Opener = fn(BorrowedFd<'_>, &Path, &Path) -> io::Result<OwnedFd>;

    /// `base/root` with files, links that stay inside and links that lead out.
    fn tree(name: &str) -> PathBuf {
        let base =
            std::env::temp_dir().join(format!("mixserve-beneath-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        // Canonical, so the absolute links name the root's canonical path.
        let base = base.canonicalize().unwrap();
        let root = base.join("root");
        std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
        std::fs::write(root.join("a.txt"), "a").unwrap();
        std::fs::write(root.join("sub/b.txt"), "b").unwrap();
        std::fs::write(base.join("secret.txt"), "secret").unwrap();
        symlink("sub/b.txt", root.join("relative-in")).unwrap();
        symlink(root.join("a.txt"), root.join("absolute-in")).unwrap();
        symlink("../a.txt", root.join("sub/up-in")).unwrap();
        symlink("sub", root.join("dir-in")).unwrap();
        symlink("../secret.txt", root.join("relative-out")).unwrap();
        symlink("deeper/../../../secret.txt", root.join("sub/climb-out")).unwrap();
        symlink(base.join("secret.txt"), root.join("absolute-out")).unwrap();
        symlink(&base, root.join("dir-out")).unwrap();
        symlink("loop-b", root.join("loop-a")).unwrap();
        symlink("loop-a", root.join("loop-b")).unwrap();
        base
    }

    fn read(fd: OwnedFd) -> String {
        let mut text = String::new();
        File::from(fd).read_to_string(&mut text).unwrap();
        text
    }

    fn check(open: Opener, name: &str) {
        let base = tree(name);
        let root_path = base.join("root");
        let root = File::open(&root_path).unwrap();
        let open = |path: &str| open(root.as_fd(), &root_path, Path::new(path));
        for (path, expected) in [
            ("a.txt", "a"),
            ("sub/b.txt", "b"),
            ("relative-in", "b"),
            ("absolute-in", "a"),
            ("sub/up-in", "a"),
            ("dir-in/b.txt", "b"),
            ("sub/deeper/../b.txt", "b"),
        ] {
            assert_eq!(read(open(path).expect(path)), expected, "{path}");
        }
        for path in ["", "sub", "dir-in", "sub/..", "dir-in/.."] {
            let dir = File::from(open(path).expect(path));
            assert!(dir.metadata().unwrap().is_dir(), "{path}");
        }
        for path in [
            "relative-out",
            "sub/climb-out",
            "absolute-out",
            "dir-out/secret.txt",
            "dir-out",
            "..",
            "sub/../../secret.txt",
        ] {
            let error = open(path).expect_err(path);
            assert_eq!(error.raw_os_error(), Some(libc::EXDEV), "{path}: {error}");
        }
        let error = open("loop-a").expect_err("a loop");
        assert_eq!(error.raw_os_error(), Some(libc::ELOOP));
        let error = open("missing").expect_err("missing");
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
        let error = open("a.txt/more").expect_err("a file is no directory");
        assert_eq!(error.raw_os_error(), Some(libc::ENOTDIR));
        std::fs::remove_dir_all(&base).unwrap();
    }

    /// Links to the root, a final link to a directory, link chains at the kernel's
    /// limit, a FIFO, a NUL byte, an over-long name: both openers answer alike.
    fn check_edges(open: Opener, name: &str) {
        let base = tree(name);
        let root_path = base.join("root");
        symlink(".", root_path.join("here")).unwrap();
        symlink(&root_path, root_path.join("absolute-here")).unwrap();
        symlink("../sub/./b.txt", root_path.join("sub/sideways")).unwrap();
        symlink("self", root_path.join("self")).unwrap();
        // chain-0 -> chain-1 -> ... -> chain-40 -> a.txt: 41 links from chain-0.
        for i in 0..=40 {
            symlink(
                format!("chain-{}", i + 1),
                root_path.join(format!("chain-{i}")),
            )
            .unwrap();
        }
        std::fs::remove_file(root_path.join("chain-40")).unwrap();
        symlink("a.txt", root_path.join("chain-40")).unwrap();
        nix::unistd::mkfifo(&root_path.join("fifo"), Mode::from_bits_truncate(0o600)).unwrap();
        let root = File::open(&root_path).unwrap();
        let open = |path: &[u8]| open(root.as_fd(), &root_path, Path::new(OsStr::from_bytes(path)));
        for path in [
            &b"here"[..],
            b"absolute-here",
            b"sub/../here",
            b"dir-in/../here/.",
        ] {
            let dir = File::from(open(path).unwrap());
            let same = std::fs::metadata(&root_path).unwrap();
            let seen = dir.metadata().unwrap();
            assert!(seen.is_dir(), "{:?}", OsStr::from_bytes(path));
            assert_eq!(
                std::os::unix::fs::MetadataExt::ino(&seen),
                std::os::unix::fs::MetadataExt::ino(&same)
            );
        }
        for (path, expected) in [
            (&b"here/a.txt"[..], "a"),
            (b"absolute-here/sub/b.txt", "b"),
            (b"here/dir-in/up-in", "a"),
            (b"sub/sideways", "b"),
            (b"chain-1", "a"),
        ] {
            assert_eq!(read(open(path).unwrap()), expected);
        }
        let error = open(b"chain-0").expect_err("41 links");
        assert_eq!(error.raw_os_error(), Some(libc::ELOOP));
        let error = open(b"self/a.txt").expect_err("a link to itself");
        assert_eq!(error.raw_os_error(), Some(libc::ELOOP));
        // Opened without blocking (no writer), and no regular file.
        let fifo = File::from(open(b"fifo").unwrap());
        assert!(fifo.metadata().unwrap().file_type().is_fifo());
        let error = open(b"a\0.txt").expect_err("a NUL byte");
        assert_eq!(error.raw_os_error(), Some(libc::EINVAL));
        let error = open(&[b'x'; 300]).expect_err("a name over NAME_MAX");
        assert_eq!(error.raw_os_error(), Some(libc::ENAMETOOLONG));
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn the_walk_answers_the_edge_cases() {
        check_edges(open_by_walk, "walk-edges");
    }

    #[test]
    fn openat2_or_the_walk_answers_the_edge_cases() {
        check_edges(open_beneath, "openat2-edges");
    }

    fn open_fds() -> usize {
        std::fs::read_dir("/proc/self/fd").unwrap().count()
    }

    /// Every answer, error or not, gives back every descriptor it opened. Other tests
    /// open files meanwhile, hence the margin; a leak of one per call would show 400.
    #[test]
    fn no_descriptor_outlives_an_open() {
        let base = tree("fds");
        let root_path = base.join("root");
        let root = File::open(&root_path).unwrap();
        let paths = [
            "a.txt",
            "dir-in/b.txt",
            "sub/up-in",
            "absolute-in",
            "sub/climb-out",
            "dir-out/secret.txt",
            "loop-a",
            "sub/deeper/missing",
            "a.txt/more",
            "sub/deeper",
        ];
        let before = open_fds();
        for _ in 0..20 {
            for opener in [open_by_walk as Opener, open_beneath] {
                for path in paths {
                    drop(opener(root.as_fd(), &root_path, Path::new(path)));
                }
            }
        }
        let after = open_fds();
        assert!(
            after < before + 100,
            "{before} descriptors before, {after} after"
        );
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn the_walk_stays_beneath_the_root() {
        check(open_by_walk, "walk");
    }

    #[test]
    fn openat2_or_the_walk_stays_beneath_the_root() {
        check(open_beneath, "openat2");
    }
}
