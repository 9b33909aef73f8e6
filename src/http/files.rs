//! Serving files from a directory: [`StaticFiles::open`] opens a request path beneath a
//! root with no window for a swapped symbolic link ([`resolve`] checks one as a path),
//! [`serve_opened`] answers with `Range`, `Last-Modified`, the conditional requests
//! (`If-Match`, `If-Unmodified-Since`, `If-None-Match`, `If-Modified-Since`, `If-Range`)
//! and `HEAD`, and [`StaticFiles`], an [`HttpHandler`], does both.
//!
//! The body goes out by `sendfile(2)` ([`Body::File`]) under every model; under
//! `scheduled` a full socket parks the coroutine, not the loop.
//!
//! ```no_run
//! use mixserve::http::Http;
//! use mixserve::http::files::StaticFiles;
//!
//! let app = Http::new(StaticFiles::new("public")?);
//! # Ok::<(), std::io::Error>(())
//! ```

use std::ffi::OsStr;
use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::date::{http_date, parse_http_date};
use super::file_type::content_type_of;
use super::range::{RangeAnswer, parse_range};
use super::{Body, HttpHandler, Request, Response};
use crate::sys::open_beneath::{open_beneath, open_to_read};

/// Why a request path does not name a file under the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResolveError {
    /// Not a path this server reads: not starting with `/`, or holding a NUL byte (`400`).
    BadPath,
    /// The path would leave the root: a `..` segment (plain or percent-encoded), an
    /// absolute path after decoding, or a symbolic link leading out (`403`).
    Forbidden,
    /// Nothing there, or not a file this server serves (`404`).
    NotFound,
    /// The server could not look now: out of file descriptors or memory, or an I/O
    /// error (`503`, so no cache in front keeps a false `404`).
    Unavailable,
}

impl ResolveError {
    /// The status code to answer with.
    pub fn status(self) -> u16 {
        match self {
            ResolveError::BadPath => 400,
            ResolveError::Forbidden => 403,
            ResolveError::NotFound => 404,
            ResolveError::Unavailable => 503,
        }
    }
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ResolveError::BadPath => "bad path",
            ResolveError::Forbidden => "forbidden",
            ResolveError::NotFound => "not found",
            ResolveError::Unavailable => "temporarily unavailable",
        })
    }
}

impl std::error::Error for ResolveError {}

/// Maps a request path (`/a/b%20c.txt`, as [`Request::path`] gives it) to a file or
/// directory under `root`, which must exist.
///
/// The path is percent-decoded first, then split at `/`: empty and `.` segments are
/// skipped, a `..` segment is refused, and so is a path that decodes to an absolute one
/// (`//etc/passwd`, `/%2fetc/passwd`). What remains is joined under the root and
/// canonicalized, and the result must still lie under the canonical root — so a
/// symbolic link inside the root may point elsewhere inside it, but not out of it.
///
/// This answers with a path: opening it afterwards is a second lookup, and a link
/// swapped in between would be followed. To serve a file, open it with
/// [`StaticFiles::open`], which checks and opens in one step.
///
/// ```
/// use mixserve::http::files::{ResolveError, resolve};
///
/// let root = std::env::temp_dir();
/// assert_eq!(resolve(&root, "/../etc/passwd"), Err(ResolveError::Forbidden));
/// assert_eq!(resolve(&root, "/%2e%2e/etc/passwd"), Err(ResolveError::Forbidden));
/// ```
pub fn resolve(root: &Path, path: &str) -> Result<PathBuf, ResolveError> {
    let relative = relative_path(path)?;
    let root = root.canonicalize().map_err(|_| ResolveError::NotFound)?;
    inside(&root, &root.join(relative))
}

/// The request path as a path relative to the root: percent-decoded, empty and `.`
/// segments dropped; a `..` segment or an absolute path refused.
fn relative_path(path: &str) -> Result<PathBuf, ResolveError> {
    let Some(relative) = path.strip_prefix('/') else {
        return Err(ResolveError::BadPath);
    };
    let decoded: Vec<u8> = percent_encoding::percent_decode_str(relative).collect();
    if decoded.contains(&0) {
        return Err(ResolveError::BadPath);
    }
    if decoded.first() == Some(&b'/') || decoded.first() == Some(&b'\\') {
        return Err(ResolveError::Forbidden);
    }
    let mut relative = PathBuf::new();
    for segment in decoded.split(|&b| b == b'/') {
        match segment {
            b"" | b"." => {}
            b".." => return Err(ResolveError::Forbidden),
            _ => relative.push(OsStr::from_bytes(segment)),
        }
    }
    Ok(relative)
}

/// `candidate`, canonicalized, if it lies under the canonical `root`.
fn inside(root: &Path, candidate: &Path) -> Result<PathBuf, ResolveError> {
    let resolved = candidate
        .canonicalize()
        .map_err(|error| match error.kind() {
            io::ErrorKind::PermissionDenied => ResolveError::Forbidden,
            _ => ResolveError::NotFound,
        })?;
    if resolved.starts_with(root) {
        Ok(resolved)
    } else {
        Err(ResolveError::Forbidden)
    }
}

/// The refusal an open failed with: an escape (`EXDEV`) or no permission is `403`;
/// nothing servable there (missing, a link loop, not a directory, a device or socket)
/// `404`; anything else is the server's trouble, not the file's (`503`).
fn refusal(error: &io::Error) -> ResolveError {
    match error.raw_os_error() {
        Some(libc::EXDEV | libc::EACCES | libc::EPERM) => ResolveError::Forbidden,
        Some(
            libc::ENOENT
            | libc::ENOTDIR
            | libc::ELOOP
            | libc::ENAMETOOLONG
            | libc::ENXIO
            | libc::ENODEV
            | libc::EISDIR,
        ) => ResolveError::NotFound,
        _ => ResolveError::Unavailable,
    }
}

/// Answers `req` with the file at `path`: `GET` and `HEAD` only (`405` otherwise).
///
/// - `412` when the request's `If-Match` is not `*` (no entity tag is sent) or, without
///   one, its `If-Unmodified-Since` is older than the file (RFC 9110 §13.2.2);
/// - `Last-Modified` from the file's modification time, and `304` when the request's
///   `If-Modified-Since` is not older (an unreadable date is ignored);
/// - `Range` with one byte range: `206` and `Content-Range`; a range past the end:
///   `416` with `Content-Range: bytes */SIZE`; several ranges or an unreadable header:
///   the whole file with `200`. `If-Range` with a date other than `Last-Modified` also
///   gets the whole file;
/// - `HEAD`: the header fields of the whole `GET` (a `Range` is ignored, as RFC 9110
///   §14.2 asks), `Content-Length` included, and no body;
/// - `Content-Type` guessed from the extension; `404` for a missing or non-regular file
///   (a FIFO included: it is opened without blocking), `403` for one the process may
///   not read, `503` when the server cannot open files now (out of descriptors).
///
/// `path` is opened as it is (links followed): for a path from a request, open the file
/// with [`StaticFiles::open`] and answer with [`serve_opened`].
pub fn serve_file(req: &Request, path: &Path) -> Response {
    match open_to_read(path) {
        Ok(file) => serve_opened(req, file, path),
        Err(error) if req.method() == "GET" || req.method() == "HEAD" => {
            let refused = refusal(&error);
            Response::text(refused.status(), format!("{refused}\n"))
        }
        Err(_) => method_not_allowed(),
    }
}

fn method_not_allowed() -> Response {
    Response::text(405, "only GET and HEAD\n").with_header("Allow", "GET, HEAD")
}

/// [`serve_file`] for a file already open: `name` (its path, or only its file name)
/// gives the `Content-Type`.
pub fn serve_opened(req: &Request, file: File, name: &Path) -> Response {
    if req.method() != "GET" && req.method() != "HEAD" {
        return method_not_allowed();
    }
    let opened = file.metadata().map(|metadata| (metadata, file));
    let (metadata, file) = match opened {
        Ok((metadata, file)) if metadata.is_file() => (metadata, file),
        _ => return Response::text(404, "not found\n"),
    };
    let size = metadata.len();
    let mtime = metadata.modified().ok();
    let modified = mtime.map(|time| {
        // RFC 9110 §8.8.2.1: never a date later than the answer's own. A file from a
        // machine whose clock ran ahead would otherwise set the client's validator in
        // the future, and every change before that date would then be a `304`.
        let time = time.min(SystemTime::now());
        // Whole seconds: that is all a header carries, so compare at that grain.
        let seconds = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        UNIX_EPOCH + Duration::from_secs(seconds)
    });
    let last_modified = modified.map(http_date);
    // RFC 9110 §13.2.2, first: If-Match (no entity tag is sent, so only `*`, any
    // current representation, matches), else If-Unmodified-Since (ignored for a file
    // with no date). A false one is `412`: a client that resumes a download with
    // If-Unmodified-Since must not get new bytes after old.
    let precondition_failed = match req.header("if-match") {
        Some(tags) => tags.trim() != "*",
        None => matches!(
            (modified, req.header("if-unmodified-since").and_then(parse_http_date)),
            (Some(modified), Some(since)) if modified > since
        ),
    };
    if precondition_failed {
        return Response::text(412, "precondition failed\n");
    }
    // RFC 9110 §13.2.2: with If-None-Match present, If-Modified-Since is ignored. No
    // entity tag is sent, so only `*` (any current representation) matches.
    let not_modified = match req.header("if-none-match") {
        Some(tags) => tags.trim() == "*",
        None => matches!(
            (modified, req.header("if-modified-since").and_then(parse_http_date)),
            (Some(modified), Some(since)) if modified <= since
        ),
    };
    if not_modified {
        let mut answer = Response::status(304);
        if let Some(last_modified) = &last_modified {
            answer = answer.with_header("Last-Modified", last_modified.as_str());
        }
        return answer;
    }
    // RFC 9110 §13.1.5: a date in If-Range must be a strong validator (§8.8.2.2), and a
    // Last-Modified within the last second is not: a second change in that second
    // would keep the date, and the parts would mix old and new. (A server cannot see
    // whether the client's copy came before such a change; this refuses the window it
    // can see.)
    let strong = mtime.is_some_and(|mtime| {
        SystemTime::now()
            .duration_since(mtime)
            .is_ok_and(|age| age >= Duration::from_secs(1))
    });
    // Ranges are defined for `GET` only: a `HEAD` says what the whole `GET` would
    // (RFC 9110 §14.2).
    let range_applies = req.method() == "GET"
        && match req.header("if-range") {
            None => true,
            Some(validator) => strong && Some(validator.trim()) == last_modified.as_deref(),
        };
    let range = if range_applies {
        parse_range(req.header("range"), size)
    } else {
        RangeAnswer::Whole
    };
    let mut answer = match range {
        RangeAnswer::Whole => Response::status(200).with_body(Body::File {
            file,
            offset: 0,
            len: size,
        }),
        RangeAnswer::Part { start, len } => Response::status(206)
            .with_header(
                "Content-Range",
                format!("bytes {start}-{}/{size}", start + len - 1),
            )
            .with_body(Body::File {
                file,
                offset: start,
                len,
            }),
        RangeAnswer::Unsatisfiable => {
            return Response::text(416, "range not satisfiable\n")
                .with_header("Content-Range", format!("bytes */{size}"));
        }
    };
    answer = answer
        .with_header("Content-Type", content_type_of(name))
        .with_header("Accept-Ranges", "bytes");
    if let Some(last_modified) = last_modified {
        answer = answer.with_header("Last-Modified", last_modified);
    }
    answer
}

/// An [`HttpHandler`] serving the files under a directory: each request path is
/// [`open`](StaticFiles::open)ed beneath the root (a directory means its `index.html`;
/// asked for without its trailing slash, a `301` to the path with one) and answered by
/// [`serve_opened`]; a refused path gets the [`ResolveError::status`].
#[derive(Debug, Clone)]
pub struct StaticFiles {
    /// The canonical root directory.
    root: PathBuf,
    /// The root directory, open: every file is opened beneath it.
    dir: Arc<OwnedFd>,
}

impl StaticFiles {
    /// Serves the files under `root`. Fails when `root` is not an existing directory.
    ///
    /// The directory is opened here and files are looked up beneath that open
    /// directory (and its clones share it): a directory renamed into `root`'s place
    /// later is not seen — make a new `StaticFiles` (a restart) to serve it.
    pub fn new(root: impl AsRef<Path>) -> io::Result<StaticFiles> {
        let root = root.as_ref().canonicalize()?;
        let dir = File::open(&root)?;
        if !dir.metadata()?.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a directory", root.display()),
            ));
        }
        Ok(StaticFiles {
            root,
            dir: Arc::new(OwnedFd::from(dir)),
        })
    }

    /// The canonical root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file a request path names, a directory standing for its `index.html`, as a
    /// path (see [`resolve`]: to serve it, [`open`](Self::open) it instead).
    pub fn locate(&self, path: &str) -> Result<PathBuf, ResolveError> {
        let found = resolve(&self.root, path)?;
        if found.is_dir() {
            inside(&self.root, &found.join("index.html"))
        } else {
            Ok(found)
        }
    }

    /// Opens the file a request path names (a directory standing for its
    /// `index.html`), refusing what [`resolve`] refuses — with no window between the
    /// check and the open: every step of the lookup, each symbolic link included, is
    /// made beneath the open root (`openat2(2)` with `RESOLVE_BENEATH`, or a walk of
    /// `openat(O_NOFOLLOW)` calls where that is missing), so a link swapped in while
    /// the request is served cannot lead out. A link inside the root may name another
    /// place inside it (relative, or absolute under the root's canonical path).
    ///
    /// Returns the open file and its path under the root as requested, for the
    /// `Content-Type`.
    pub fn open(&self, path: &str) -> Result<(File, PathBuf), ResolveError> {
        self.open_found(path).map(|(file, name, _)| (file, name))
    }

    /// [`open`](Self::open), and whether `path` named a directory.
    fn open_found(&self, path: &str) -> Result<(File, PathBuf, bool), ResolveError> {
        let mut relative = relative_path(path)?;
        let file = self.open_relative(&relative)?;
        if !file
            .metadata()
            .map_err(|_| ResolveError::NotFound)?
            .is_dir()
        {
            return Ok((file, relative, false));
        }
        relative.push("index.html");
        Ok((self.open_relative(&relative)?, relative, true))
    }

    fn open_relative(&self, relative: &Path) -> Result<File, ResolveError> {
        open_beneath(self.dir.as_fd(), &self.root, relative)
            .map(File::from)
            .map_err(|error| refusal(&error))
    }
}

impl HttpHandler for StaticFiles {
    /// A `GET` or `HEAD` for a directory without its trailing slash is sent to the
    /// path with one (`301`, as nginx does), so the relative links of its `index.html`
    /// resolve inside it.
    fn handle(&self, req: &mut Request) -> Response {
        match self.open_found(req.path()) {
            Ok((index, _, true)) if needs_slash(req) && is_file(&index) => {
                let mut location = format!("{}/", req.path());
                if let Some(query) = req.query() {
                    location.push('?');
                    location.push_str(query);
                }
                Response::text(301, "moved permanently\n").with_header("Location", location)
            }
            Ok((file, name, _)) => serve_opened(req, file, &name),
            Err(error) => Response::text(error.status(), format!("{error}\n")),
        }
    }
}

fn is_file(file: &File) -> bool {
    file.metadata().is_ok_and(|metadata| metadata.is_file())
}

/// Whether a directory's request path lacks its trailing slash, and may be sent to
/// it: a path a browser could read as another host's (`//host`, `/\host`) never is.
fn needs_slash(req: &Request) -> bool {
    let path = req.path();
    (req.method() == "GET" || req.method() == "HEAD")
        && path.starts_with('/')
        && !path.ends_with('/')
        && !path.starts_with("//")
        && !path.contains('\\')
}

#[cfg(test)]
mod tests {
    use super::{ResolveError, refusal, serve_file};
    use crate::http::Request;
    use std::io;

    /// A `Range` applies to `GET` alone: a `HEAD` with one says what the whole `GET`
    /// would (it said `206` and the part's length).
    #[test]
    fn a_range_applies_to_get_only() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        let size = std::fs::metadata(&path).unwrap().len();
        let ranged = |method| {
            let req = Request::new(method, "/Cargo.toml").with_header("Range", "bytes=0-9");
            serve_file(&req, &path)
        };
        let get = ranged("GET");
        assert_eq!(get.status_code(), 206);
        assert_eq!(
            get.header("Content-Range"),
            Some(&*format!("bytes 0-9/{size}"))
        );
        let head = ranged("HEAD");
        assert_eq!(head.status_code(), 200);
        assert_eq!(head.header("Content-Range"), None);
    }

    /// A file dated in the future is said to be modified now, at the latest.
    #[test]
    fn last_modified_is_never_later_than_now() {
        use std::time::{Duration, SystemTime};
        let path = std::env::temp_dir().join(format!("mixserve-future-{}", std::process::id()));
        std::fs::write(&path, "from a fast clock").unwrap();
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(SystemTime::now() + Duration::from_secs(3600))
            .unwrap();
        let answer = serve_file(&Request::new("GET", "/f"), &path);
        let _ = std::fs::remove_file(&path);
        let said = answer
            .header("Last-Modified")
            .and_then(super::parse_http_date);
        assert!(
            said.is_some_and(|said| said <= SystemTime::now()),
            "{said:?}"
        );
    }

    #[test]
    fn only_a_missing_file_is_not_found_and_trouble_of_the_server_is_no_404() {
        let of = |errno| refusal(&io::Error::from_raw_os_error(errno));
        for errno in [libc::ENOENT, libc::ENOTDIR, libc::ELOOP, libc::ENXIO] {
            assert_eq!(of(errno), ResolveError::NotFound, "errno {errno}");
        }
        for errno in [libc::EXDEV, libc::EACCES] {
            assert_eq!(of(errno), ResolveError::Forbidden, "errno {errno}");
        }
        // A 404 here would be cached in front of the server as the file's answer.
        for errno in [libc::EMFILE, libc::ENFILE, libc::ENOMEM, libc::EIO] {
            assert_eq!(of(errno), ResolveError::Unavailable, "errno {errno}");
            assert_eq!(of(errno).status(), 503);
        }
    }
}
