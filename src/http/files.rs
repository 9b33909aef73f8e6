//! Serving files from a directory: [`resolve`] a request path safely under a root,
//! [`serve_file`] with `Range`, `Last-Modified`/`If-Modified-Since` and `HEAD`, and
//! [`StaticFiles`], an [`HttpHandler`] doing both.
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
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use super::date::{http_date, parse_http_date};
use super::file_type::content_type_of;
use super::range::{RangeAnswer, parse_range};
use super::{Body, HttpHandler, Request, Response};

/// Why a request path does not name a file under the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolveError {
    /// Not a path this server reads: not starting with `/`, or holding a NUL byte (`400`).
    BadPath,
    /// The path would leave the root: a `..` segment (plain or percent-encoded), an
    /// absolute path after decoding, or a symbolic link leading out (`403`).
    Forbidden,
    /// Nothing there, or not readable (`404`).
    NotFound,
}

impl ResolveError {
    /// The status code to answer with.
    pub fn status(self) -> u16 {
        match self {
            ResolveError::BadPath => 400,
            ResolveError::Forbidden => 403,
            ResolveError::NotFound => 404,
        }
    }
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ResolveError::BadPath => "bad path",
            ResolveError::Forbidden => "forbidden",
            ResolveError::NotFound => "not found",
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
/// ```
/// use mixserve::http::files::{ResolveError, resolve};
///
/// let root = std::env::temp_dir();
/// assert_eq!(resolve(&root, "/../etc/passwd"), Err(ResolveError::Forbidden));
/// assert_eq!(resolve(&root, "/%2e%2e/etc/passwd"), Err(ResolveError::Forbidden));
/// ```
pub fn resolve(root: &Path, path: &str) -> Result<PathBuf, ResolveError> {
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
    let mut candidate = root.to_path_buf();
    for segment in decoded.split(|&b| b == b'/') {
        match segment {
            b"" | b"." => {}
            b".." => return Err(ResolveError::Forbidden),
            _ => candidate.push(OsStr::from_bytes(segment)),
        }
    }
    let root = root.canonicalize().map_err(|_| ResolveError::NotFound)?;
    inside(&root, &candidate)
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

/// Answers `req` with the file at `path`: `GET` and `HEAD` only (`405` otherwise).
///
/// - `Last-Modified` from the file's modification time, and `304` when the request's
///   `If-Modified-Since` is not older (an unreadable date is ignored);
/// - `Range` with one byte range: `206` and `Content-Range`; a range past the end:
///   `416` with `Content-Range: bytes */SIZE`; several ranges or an unreadable header:
///   the whole file with `200`. `If-Range` with a date other than `Last-Modified` also
///   gets the whole file;
/// - `HEAD`: the same header fields, `Content-Length` included, and no body;
/// - `Content-Type` guessed from the extension; `404` for a missing or non-regular file.
pub fn serve_file(req: &Request, path: &Path) -> Response {
    if req.method() != "GET" && req.method() != "HEAD" {
        return Response::text(405, "only GET and HEAD\n").with_header("Allow", "GET, HEAD");
    }
    let opened = File::open(path).and_then(|file| Ok((file.metadata()?, file)));
    let (metadata, file) = match opened {
        Ok((metadata, file)) if metadata.is_file() => (metadata, file),
        _ => return Response::text(404, "not found\n"),
    };
    let size = metadata.len();
    let modified = metadata.modified().ok().map(|time| {
        // Whole seconds: that is all a header carries, so compare at that grain.
        let seconds = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        UNIX_EPOCH + Duration::from_secs(seconds)
    });
    let last_modified = modified.map(http_date);
    if let (Some(modified), Some(since)) = (
        modified,
        req.header("if-modified-since").and_then(parse_http_date),
    ) && modified <= since
    {
        let mut answer = Response::status(304);
        if let Some(last_modified) = &last_modified {
            answer = answer.with_header("Last-Modified", last_modified.as_str());
        }
        return answer;
    }
    let range_applies = match req.header("if-range") {
        None => true,
        Some(validator) => Some(validator.trim()) == last_modified.as_deref(),
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
        .with_header("Content-Type", content_type_of(path))
        .with_header("Accept-Ranges", "bytes");
    if let Some(last_modified) = last_modified {
        answer = answer.with_header("Last-Modified", last_modified);
    }
    answer
}

/// An [`HttpHandler`] serving the files under a directory: each request path is
/// [`resolve`]d under the root (a directory means its `index.html`) and answered by
/// [`serve_file`]; a refused path gets the [`ResolveError::status`].
#[derive(Debug, Clone)]
pub struct StaticFiles {
    /// The canonical root directory.
    root: PathBuf,
}

impl StaticFiles {
    /// Serves the files under `root`. Fails when `root` is not an existing directory.
    pub fn new(root: impl AsRef<Path>) -> io::Result<StaticFiles> {
        let root = root.as_ref().canonicalize()?;
        if !root.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a directory", root.display()),
            ));
        }
        Ok(StaticFiles { root })
    }

    /// The canonical root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file a request path names, a directory standing for its `index.html`.
    pub fn locate(&self, path: &str) -> Result<PathBuf, ResolveError> {
        let found = resolve(&self.root, path)?;
        if found.is_dir() {
            inside(&self.root, &found.join("index.html"))
        } else {
            Ok(found)
        }
    }
}

impl HttpHandler for StaticFiles {
    fn handle(&self, req: &mut Request) -> Response {
        match self.locate(req.path()) {
            Ok(path) => serve_file(req, &path),
            Err(error) => Response::text(error.status(), format!("{error}\n")),
        }
    }
}
