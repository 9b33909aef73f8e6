//! The access log: one line per answered request, in the common log format, through
//! the `log` facade at level `info` with target [`ACCESS_LOG_TARGET`]. Off unless
//! [`HttpConfig::access_log`] is set.
//!
//! ```text
//! 127.0.0.1 - - [06/Nov/1994:08:49:37 +0000] "GET /index.html HTTP/1.1" 200 1043
//! ```
//!
//! The host is the peer's IP address (`REMOTE_ADDR` behind SCGI), ident and user are
//! `-`, the size is that of the body sent (`-` for none or for a stream, whose length
//! is unknown in advance). Quotes and control characters in the request line are
//! escaped, so a request cannot forge a log line.

use std::fmt::Write;
use std::time::SystemTime;

use super::config::HttpConfig;
use super::date::log_date;
use super::request::Request;
use super::response::{Body, Response};
use crate::conn::PeerAddr;

/// The `log` target of access-log records.
pub const ACCESS_LOG_TARGET: &str = "mixserve::access";

/// Logs `response` to `request` when the configuration asks for it.
pub(crate) fn log_access(config: &HttpConfig, request: &Request, response: &Response) {
    if config.access_log && log::log_enabled!(target: ACCESS_LOG_TARGET, log::Level::Info) {
        log::info!(target: ACCESS_LOG_TARGET, "{}", access_line(request, response, SystemTime::now()));
    }
}

/// The common-log-format line for one request answered at `at`.
pub(crate) fn access_line(request: &Request, response: &Response, at: SystemTime) -> String {
    let host = match request.peer_addr() {
        Some(PeerAddr::Tcp(addr)) => addr.ip().to_string(),
        Some(PeerAddr::Unix(_)) | None => String::from("-"),
    };
    let status = response.status_code();
    let sent = match response.body() {
        _ if request.method() == "HEAD" => 0,
        _ if status < 200 || status == 204 || status == 304 => 0,
        Body::Empty | Body::Stream(_) => 0,
        Body::Bytes(bytes) => bytes.len() as u64,
        Body::File { len, .. } => *len,
    };
    let mut line = format!("{host} - - [{}] \"", log_date(at));
    escape_into(&mut line, request.method());
    line.push(' ');
    escape_into(&mut line, request.target());
    let _ = write!(line, " {}\" {status} ", request.version());
    if sent == 0 {
        line.push('-');
    } else {
        let _ = write!(line, "{sent}");
    }
    line
}

/// Appends `text` with `"`, `\` and control characters escaped.
fn escape_into(line: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '"' => line.push_str("\\\""),
            '\\' => line.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(line, "\\x{:02x}", u32::from(c));
            }
            c => line.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn common_log_format() {
        let peer: SocketAddr = "10.1.2.3:4567".parse().unwrap();
        let request = Request::new("GET", "/a?b").with_peer(PeerAddr::Tcp(peer));
        let at = UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(
            access_line(&request, &Response::text(200, "hello"), at),
            "10.1.2.3 - - [06/Nov/1994:08:49:37 +0000] \"GET /a?b HTTP/1.1\" 200 5"
        );
        let head = Request::new("HEAD", "/");
        assert_eq!(
            access_line(&head, &Response::text(404, "gone"), at),
            "- - - [06/Nov/1994:08:49:37 +0000] \"HEAD / HTTP/1.1\" 404 -"
        );
    }

    #[test]
    fn escapes_quotes_and_controls() {
        let request = Request::new("GET", "/\"x\"\n1.2.3.4 forged");
        let at = UNIX_EPOCH;
        let line = access_line(&request, &Response::status(204), at);
        assert!(
            line.contains("\"GET /\\\"x\\\"\\x0a1.2.3.4 forged HTTP/1.1\" 204 -"),
            "{line}"
        );
        assert!(!line.contains('\n'));
    }
}
