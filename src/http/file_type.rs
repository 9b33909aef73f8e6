//! File bodies with a guessed content type: [`Response::file_at`].

use crate::sys::open_beneath::open_to_read;
use std::io;
use std::path::Path;

use super::Response;

impl Response {
    /// A response whose body is the file at `path` (sent by `sendfile(2)`, as
    /// [`Response::file`]), with a `Content-Type` guessed from its extension:
    /// `text/*` types get `; charset=utf-8`, unknown extensions are
    /// `application/octet-stream`.
    ///
    /// ```no_run
    /// use mixserve::http::Response;
    ///
    /// let response = Response::file_at(200, "static/index.html")?;
    /// assert_eq!(response.header("Content-Type"), Some("text/html; charset=utf-8"));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// When the file cannot be opened or is not a regular file (a FIFO is refused
    /// too, without blocking on it).
    pub fn file_at(status: u16, path: impl AsRef<Path>) -> io::Result<Response> {
        let path = path.as_ref();
        Response::file(status, &content_type_of(path), open_to_read(path)?)
    }
}

/// The content type a file's extension suggests.
pub(crate) fn content_type_of(path: &Path) -> String {
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let needs_charset =
        mime.type_() == mime_guess::mime::TEXT || mime.subtype() == mime_guess::mime::JAVASCRIPT;
    if needs_charset && mime.get_param(mime_guess::mime::CHARSET).is_none() {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_follow_extensions() {
        assert_eq!(
            content_type_of(Path::new("a/index.html")),
            "text/html; charset=utf-8"
        );
        assert_eq!(
            content_type_of(Path::new("style.CSS")),
            "text/css; charset=utf-8"
        );
        assert_eq!(content_type_of(Path::new("logo.png")), "image/png");
        assert_eq!(content_type_of(Path::new("data.json")), "application/json");
        assert_eq!(
            content_type_of(Path::new("noext")),
            "application/octet-stream"
        );
    }

    #[test]
    fn file_at_sets_the_type() {
        let path =
            std::env::temp_dir().join(format!("mixserve-file-at-{}.txt", std::process::id()));
        std::fs::write(&path, "hello").unwrap();
        let response = Response::file_at(200, &path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            response.header("Content-Type"),
            Some("text/plain; charset=utf-8")
        );
        assert!(Response::file_at(200, "/nonexistent/mixserve").is_err());
    }
}
