//! Reading a request head: find its end under the size limits
//! ([`super::head_assembly`]), then parse it with `httparse`, into storage a connection
//! reuses from one request to the next (see [`Head::recycle`]).

use std::io::{BufRead, Write};
use std::mem::MaybeUninit;
use std::time::Instant;

use super::config::HttpConfig;
use super::error::{Failure, Reject, read_failure};
use super::head_assembly::{HeadAssembler, Progress};
use super::headers::Headers;
use super::request::Version;
use crate::conn::{Conn, Idle};
use crate::rt::clock;

/// A parsed request head.
#[derive(Debug, Clone)]
pub(crate) struct Head {
    pub(crate) method: String,
    pub(crate) target: String,
    pub(crate) version: Version,
    pub(crate) headers: Headers,
}

// The most storage a connection keeps from one request head for the next (see
// [`Head::recycle`]). A small request's head is then parsed without a heap allocation,
// while an idle keep-alive connection holds at most about 1.6 KiB of parsed head and
// 1 KiB of raw head between requests — far less after typical requests, since the
// storage is sized to what came. A larger head's storage is freed once it is answered.

/// Bytes of method kept.
const SPARE_METHOD: usize = 16;
/// Bytes of request target kept.
const SPARE_TARGET: usize = 256;
/// Bytes of header names and values kept.
const SPARE_FIELD_BYTES: usize = 1024;
/// Header fields kept room for (12 bytes each).
const SPARE_FIELDS: usize = 24;
/// Bytes of raw head kept for the next head that arrives in pieces (one that arrives
/// whole is parsed where it was read, and needs none).
pub(super) const SPARE_RAW_HEAD: usize = 1024;

impl Default for Head {
    fn default() -> Head {
        Head {
            method: String::new(),
            target: String::new(),
            version: Version::Http11,
            headers: Headers::new(),
        }
    }
}

impl Head {
    /// Empties the head for the next request on the connection, keeping its storage
    /// up to the `SPARE_*` limits.
    pub(crate) fn recycle(&mut self) {
        for (text, limit) in [
            (&mut self.method, SPARE_METHOD),
            (&mut self.target, SPARE_TARGET),
        ] {
            if text.capacity() > limit {
                *text = String::new();
            }
            text.clear();
        }
        self.version = Version::Http11;
        self.headers.clear_keeping(SPARE_FIELD_BYTES, SPARE_FIELDS);
    }
}

/// Reads the next request head from `conn` into `parsed` (emptied first, its storage
/// reused), leaving anything after it buffered; `raw` holds the bytes of a head that
/// arrives in pieces (kept between calls up to `SPARE_RAW_HEAD` bytes of storage).
/// The head is parsed in place, not returned: a few hundred bytes moved through a
/// coroutine's stack, which is cold on a busy server, cost a cache miss a line.
///
/// `Ok(false)`: the connection ended (or idled out) cleanly before a request began.
/// The `first` request of a connection must be complete `header_timeout` after the
/// connection began (time queued for a worker counts); a later one may wait
/// `idle_timeout` for its first byte, then has `header_timeout` from there.
pub(crate) fn read_head(
    conn: &mut Conn,
    config: &HttpConfig,
    raw: &mut Vec<u8>,
    first: bool,
    idle_since: Option<Instant>,
    parsed: &mut Head,
) -> Result<bool, Failure> {
    let mut assembler = HeadAssembler::new(raw, parsed);
    let mut started = false;
    conn.set_read_timeout(None);
    // An idle connection waits in `wait_idle` below, which times its idle timeout from
    // the wait (the end of the last answer), and gets its header deadline once input
    // woke it. A pipelined head starts its header deadline on the real clock: the loop
    // clock is behind by all the handler of the last request did in this resume, which
    // may exceed the timeout.
    let idle = !first && conn.buffered().is_empty();
    if first {
        conn.set_read_deadline_after_start(config.header_timeout);
    } else if idle {
        conn.set_read_deadline(None);
    } else if idle_since.is_some() {
        // Input that just woke a wait without a stack: the loop clock is fresh.
        conn.set_read_deadline(Some(crate::deadline::after(
            clock::now(),
            config.header_timeout,
        )));
    } else {
        conn.set_read_deadline(Some(crate::deadline::from_now(config.header_timeout)));
    }
    // When the connection began to idle (the first wait for this head, or the wait
    // without a stack that came before this call).
    let mut idle_since = idle_since;
    loop {
        // A connection that sent nothing is closed without a word (as nginx does): no
        // answer to write, no lingering for a client that may never read.
        let timeout = if started {
            Failure::Reject(Reject::new(408, "request head took too long"))
        } else {
            Failure::Close
        };
        if conn.buffered().is_empty() {
            // Answers to earlier requests go out before we wait for more input.
            if let Err(error) = conn.flush() {
                return Err(read_failure(error, Failure::Close));
            }
            // Idle between requests: a drain closes the connection at once. Nothing is
            // buffered, so the read buffer goes back while the connection idles. Before
            // a first request not begun, a drain closes it a second after it was made
            // (see `Conn::wait_first_request`).
            // Empty lines before a head do not start it: the connection still idles,
            // within the idle timeout of its first wait (a client trickling CRLF
            // cannot restart it).
            if !started && !first {
                conn.release_read_buffer();
                let now = clock::now();
                let since = *idle_since.get_or_insert(now);
                let left = config
                    .idle_timeout
                    .saturating_sub(now.saturating_duration_since(since));
                if left.is_zero() {
                    return Ok(false);
                }
                match conn.wait_idle(left) {
                    Ok(Idle::Request) => {}
                    Ok(Idle::Draining) => return Ok(false),
                    Err(error) => return Err(read_failure(error, Failure::Close)),
                }
                // Just woken by input: the loop clock is fresh.
                conn.set_read_deadline(Some(crate::deadline::after(
                    clock::now(),
                    config.header_timeout,
                )));
            } else if !started && first {
                // The header deadline from the connection's establishment stands.
                match conn.wait_first_request() {
                    Ok(Idle::Request) => {}
                    Ok(Idle::Draining) => return Ok(false),
                    Err(error) => return Err(read_failure(error, Failure::Close)),
                }
            }
        }
        match conn.fill_buf() {
            // End of stream: clean between requests, a dropped request otherwise.
            Ok([]) => return Ok(false),
            Ok(_) => {}
            Err(error) => return Err(read_failure(error, timeout)),
        }
        let progress = assembler.take(conn.buffered(), config)?;
        started = assembler.begun();
        match progress {
            Progress::More(used) => conn.consume(used),
            Progress::Done(used, outcome) => {
                conn.consume(used);
                return outcome.map(|()| true).map_err(Failure::from);
            }
        }
    }
}

/// Heads with at most this many fields are parsed without a heap allocation.
const STACK_FIELDS: usize = 24;

/// Parses a complete head that `HeadScanner` accepted, with room for `fields` fields.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn parse_head(bytes: &[u8], fields: usize) -> Result<Head, Reject> {
    let mut head = Head::default();
    parse_head_into(bytes, fields, &mut head).map(|()| head)
}

/// [`parse_head`] into `spare`'s storage (emptied first).
///
/// Not inlined, on purpose: the field slots (~800 bytes) then take stack space only while
/// a head is parsed, not in [`read_head`]'s frame while a connection waits for its head.
#[inline(never)]
pub(crate) fn parse_head_into(bytes: &[u8], fields: usize, spare: &mut Head) -> Result<(), Reject> {
    // Most heads have a few fields: their slots live on the stack, and only the slots
    // used are written (a cold stack line written per request costs a cache miss).
    let mut on_stack = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; STACK_FIELDS];
    let mut on_heap = Vec::new();
    let slots = if fields <= STACK_FIELDS {
        &mut on_stack[..fields]
    } else {
        on_heap.resize_with(fields, MaybeUninit::uninit);
        &mut on_heap[..]
    };
    let mut request = httparse::Request::new(&mut []);
    match request.parse_with_uninit_headers(bytes, slots) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(Reject::new(400, "malformed request head")),
        Err(httparse::Error::Version) => return Err(version_error(bytes)),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Reject::new(431, "too many header fields"));
        }
        Err(_) => return Err(Reject::new(400, "malformed request head")),
    }
    let (Some(method), Some(target), Some(version)) =
        (request.method, request.path, request.version)
    else {
        return Err(Reject::new(400, "malformed request line"));
    };
    let version = match version {
        0 => Version::Http10,
        1 => Version::Http11,
        _ => return Err(Reject::new(505, "HTTP version not supported")),
    };
    // An absolute-form target (`http://host/path`, RFC 9112 §3.2.2) is served as its
    // origin form, its authority taking the place of `Host`.
    let (target, authority) = match target.as_bytes().first() {
        Some(b'/') | None => (target, None),
        Some(_) => split_absolute_form(target)?,
    };
    spare.recycle();
    spare.method.push_str(method);
    if !target.starts_with('/') && authority.is_some() {
        spare.target.push('/');
    }
    spare.target.push_str(target);
    spare.version = version;
    let headers = &mut spare.headers;
    let field_bytes = request
        .headers
        .iter()
        .map(|field| field.name.len() + field.value.len())
        .sum();
    headers.reserve(field_bytes, request.headers.len());
    let mut hosts = 0;
    for field in request.headers.iter() {
        if field.name.eq_ignore_ascii_case("host") {
            hosts += 1;
            if !is_valid_host(field.value) {
                return Err(Reject::new(400, "invalid Host field"));
            }
            if authority.is_some() {
                // Still required (and checked), but the target's authority counts.
                continue;
            }
        }
        headers.append_raw(field.name, field.value);
    }
    if let Some(authority) = authority {
        headers.append_raw("host", authority.as_bytes());
    }
    if hosts > 1 {
        return Err(Reject::new(400, "more than one Host field"));
    }
    if version == Version::Http11 && hosts == 0 {
        return Err(Reject::new(400, "missing Host field"));
    }
    Ok(())
}

/// Splits an absolute-form target into what follows its authority (`/path?query`,
/// `?query` or nothing) and the authority; any other target not in origin form
/// (`*`, an authority alone) is kept whole. An authority that cannot be a host (user
/// information, an empty one) is a 400.
fn split_absolute_form(target: &str) -> Result<(&str, Option<&str>), Reject> {
    let scheme_end = target.find("://").unwrap_or(0);
    let scheme = &target[..scheme_end];
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Ok((target, None));
    }
    let rest = &target[scheme_end + 3..];
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, after) = rest.split_at(end);
    if authority.is_empty() || !is_valid_host(authority.as_bytes()) {
        return Err(Reject::new(400, "invalid authority in the request target"));
    }
    Ok((after, Some(authority)))
}

/// Whether a `Host` value can be `uri-host [ ":" port ]` (RFC 9110 §7.2; RFC 3986
/// reg-name, IP literal or IPv4 address): only the bytes those are made of, so no
/// space, `/`, `\\`, `@`, `?`, `#` or control byte. RFC 9112 §3.2 asks for a 400 to
/// anything else: an application that builds a URL or picks a directory from the Host
/// gets nothing it did not expect. Empty is allowed (a target with no authority).
pub(crate) fn is_valid_host(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:[]%".contains(&b))
}

/// 505 only for a well-formed request line (`method SP target SP HTTP/x.y`, one space
/// each, a token for the method) whose version is not 1.0/1.1; 400 for anything
/// malformed — `G ET / HTTP/1.1` is a bad request, not an unsupported version.
fn version_error(bytes: &[u8]) -> Reject {
    let line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let parts: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    let [method, target, version] = parts[..] else {
        return Reject::new(400, "malformed request line");
    };
    if method.is_empty() || !method.iter().all(|&b| is_token_char(b)) {
        return Reject::new(400, "malformed method");
    }
    if target.is_empty() || target.iter().any(|&b| b <= b' ' || b == 0x7f) {
        return Reject::new(400, "malformed request target");
    }
    match version {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            Reject::new(505, "HTTP version not supported")
        }
        _ => Reject::new(400, "malformed HTTP version"),
    }
}

/// A `tchar` of RFC 9110 §5.6.2: what a method name is made of.
pub(crate) fn is_token_char(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_checks_version_and_host() {
        let head = parse_head(b"GET /a?b HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\r\n", 2).unwrap();
        assert_eq!(
            (head.method.as_str(), head.target.as_str()),
            ("GET", "/a?b")
        );
        assert_eq!(head.headers.get("x-a"), Some("1"));
        let status = |input: &[u8], n| parse_head(input, n).map(|_| ()).map_err(|r| r.status);
        assert_eq!(status(b"GET / HTTP/2.0\r\n\r\n", 0), Err(505));
        assert_eq!(status(b"GET / HTTP/1.2\r\nHost: x\r\n\r\n", 1), Err(505));
        assert_eq!(status(b"GET / HTXP/1.1\r\n\r\n", 0), Err(400));
        assert_eq!(status(b"GET / HTTP/1.1\r\n\r\n", 0), Err(400));
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 2),
            Err(400)
        );
        assert_eq!(status(b"GET / HTTP/1.0\r\n\r\n", 0), Ok(()));
        assert_eq!(status(b"G@T / HTTP/1.1\r\nHost: a\r\n\r\n", 1), Err(400));
    }

    /// RFC 9112 §3.2.2: an absolute-form target is accepted, served as its origin
    /// form, and its authority replaces the `Host` (still required, still checked).
    #[test]
    fn an_absolute_form_target_is_its_origin_form_and_its_authority_the_host() {
        let cases: [(&[u8], &str, &str); 5] = [
            (
                b"GET http://a.example/x?y HTTP/1.1\r\nHost: b\r\n\r\n",
                "/x?y",
                "a.example",
            ),
            (
                b"GET HTTPS://a:8080 HTTP/1.1\r\nHost: b\r\n\r\n",
                "/",
                "a:8080",
            ),
            (b"GET http://a?q HTTP/1.1\r\nHost: a\r\n\r\n", "/?q", "a"),
            (b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", "*", "a"),
            (
                b"GET ftp://a/x HTTP/1.1\r\nHost: a\r\n\r\n",
                "ftp://a/x",
                "a",
            ),
        ];
        for (input, target, host) in cases {
            let head = parse_head(input, 1).unwrap();
            assert_eq!(head.target, target);
            assert_eq!(head.headers.get("host"), Some(host));
            assert_eq!(head.headers.iter().count(), 1, "one Host");
        }
        let status = |input: &[u8]| parse_head(input, 1).map(|_| ()).map_err(|r| r.status);
        assert_eq!(
            status(b"GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n"),
            Err(400)
        );
        assert_eq!(
            status(b"GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n"),
            Err(400)
        );
        assert_eq!(status(b"GET http://a/ HTTP/1.1\r\n\r\n"), Err(400));
        assert_eq!(status(b"GET http://a/ HTTP/1.0\r\n\r\n"), Ok(()));
    }

    #[test]
    fn a_recycled_head_keeps_small_storage_and_frees_large() {
        let small = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut head = parse_head(small, 1).unwrap();
        head.recycle();
        let kept = (head.target.capacity(), head.headers.capacity_bytes());
        assert!(kept.0 > 0 && kept.1 > 0, "small storage kept: {kept:?}");
        parse_head_into(small, 1, &mut head).unwrap();
        assert_eq!(
            (head.target.as_str(), head.headers.get("host")),
            ("/a", Some("x"))
        );
        assert_eq!(
            (head.target.capacity(), head.headers.capacity_bytes()),
            kept,
            "the same request fits the storage it left"
        );

        let large = format!(
            "GET /{} HTTP/1.1\r\nHost: x\r\nCookie: {}\r\n\r\n",
            "t".repeat(SPARE_TARGET),
            "c".repeat(SPARE_FIELD_BYTES)
        );
        parse_head_into(large.as_bytes(), 2, &mut head).unwrap();
        assert_eq!(
            head.headers.get("cookie").map(str::len),
            Some(SPARE_FIELD_BYTES)
        );
        head.recycle();
        assert!(head.target.capacity() <= SPARE_TARGET);
        assert!(head.headers.capacity_bytes() <= SPARE_FIELD_BYTES + SPARE_FIELDS * 12);
        assert!(head.method.is_empty() && head.target.is_empty() && head.headers.is_empty());
    }

    #[test]
    fn a_malformed_request_line_is_400_not_505() {
        let status = |input: &[u8]| parse_head(input, 1).map(|_| ()).map_err(|r| r.status);
        assert_eq!(status(b"G ET / HTTP/1.1\r\nHost: a\r\n\r\n"), Err(400));
        assert_eq!(status(b"GET / x HTTP/1.1\r\nHost: a\r\n\r\n"), Err(400));
        assert_eq!(status(b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n"), Err(400));
        assert_eq!(status(b"G(T / HTTP/3.0\r\nHost: a\r\n\r\n"), Err(400));
        assert_eq!(status(b"GET / HTTP/1.1 x\r\nHost: a\r\n\r\n"), Err(400));
        assert_eq!(status(b"GET / HTTP/3.0\r\nHost: a\r\n\r\n"), Err(505));
        assert_eq!(status(b"GET /a%20b HTTP/1.1\r\nHost: a\r\n\r\n"), Ok(()));
    }
}
