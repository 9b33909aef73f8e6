//! [`HttpConfig`]: the limits and timeouts of the HTTP adapter.

use std::time::Duration;

use super::response_fields::valid_value;
use crate::server::{ConfigCheck, ConfigError};

/// The shortest request line there is, `GET / HTTP/1.1`, in bytes.
const SHORTEST_REQUEST_LINE: usize = 14;

/// Limits and timeouts for [`Http`](super::Http) (and [`Scgi`](crate::scgi::Scgi)).
/// Every limit is on by default; the defaults follow nginx's where it has the same
/// knob, and are no looser:
///
/// | field | default | over it | nginx's equivalent (default) |
/// |---|---|---|---|
/// | [`max_request_line`](Self::max_request_line) | 8 KiB | `414` | `large_client_header_buffers` (8k) |
/// | [`max_header_line`](Self::max_header_line) | 8 KiB | `431` | `large_client_header_buffers` (8k) |
/// | [`max_headers`](Self::max_headers) | 100 | `431` | — (bounded by buffer size) |
/// | [`max_head_bytes`](Self::max_head_bytes) | 64 KiB | `431` | 4 × 8k buffers (32k) |
/// | [`max_body`](Self::max_body) | 1 MiB | `413` | `client_max_body_size` (1m) |
/// | [`header_timeout`](Self::header_timeout) | 10 s, from connect | `408` (silent close if nothing came) | `client_header_timeout` (60s) |
/// | [`idle_timeout`](Self::idle_timeout) | 5 s | silent close | `keepalive_timeout` (75s) |
/// | [`body_timeout`](Self::body_timeout) | 30 s per read | `408` | `client_body_timeout` (60s, per read) |
/// | [`body_deadline`](Self::body_deadline) | 60 s, whole body | `408` | — (Apache: `RequestReadTimeout body=…,MinRate=…`) |
/// | [`write_timeout`](Self::write_timeout) | 30 s per write | close | `send_timeout` (60s) |
/// | [`max_requests_per_connection`](Self::max_requests_per_connection) | 1000 | last answer says `Connection: close` | `keepalive_requests` (1000) |
/// | [`linger`](Self::linger) | 1 s | close | `lingering_time` (30s) / `lingering_timeout` (5s) |
/// | [`access_log`](Self::access_log) | `false` | — | `access_log` (on) |
/// | [`server_name`](Self::server_name) | `"mixserve"` | — | `server_tokens` (on) |
/// | [`send_date`](Self::send_date) | `true` | — | always sent |
///
/// Slow clients cannot stretch these: the first request's head must be complete
/// `header_timeout` after the connection was established — time spent queued for a
/// free worker counts (see [`Conn::established_at`](crate::Conn::established_at), asked
/// when the first read has to wait: from the handshake, or from the last bytes the
/// client sent if they came later, but never later than when the server took the
/// connection) — and
/// a body must be complete `body_deadline` after its head, however steadily it trickles.
/// A long-poll limit is the application's choice: see `examples/comet.rs`
/// (`--wait-limit`, answered `204`).
///
/// The fields are public; start from [`HttpConfig::default`] and change what you need.
/// [`Http::try_with_config`](super::Http::try_with_config) refuses a configuration that
/// could serve nothing (see [`check`](Self::check)):
///
/// ```
/// use std::time::Duration;
/// use mixserve::http::HttpConfig;
///
/// let mut config = HttpConfig::default();
/// config.max_body = 16 * 1024 * 1024;
/// config.idle_timeout = Duration::from_secs(30);
/// assert_eq!(config.max_headers, 100);
/// assert!(config.check().is_ok());
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HttpConfig {
    /// Longest request line (`GET /path HTTP/1.1`), without its line end. Longer: `414`.
    pub max_request_line: usize,
    /// Longest single header field line, without its line end. Longer: `431`.
    pub max_header_line: usize,
    /// Most header fields in one request (trailers count separately, against the same
    /// limit, and their bytes against `max_head_bytes`). More: `431`.
    pub max_headers: usize,
    /// Most bytes in a whole request head, request line and line ends included. More: `431`.
    pub max_head_bytes: usize,
    /// Largest request body, after chunked decoding. Larger: `413`. (A chunked body's
    /// chunk extensions, which carry no data, are bounded apart: 16 KiB per body, more
    /// is `400`.)
    pub max_body: usize,
    /// Time allowed for a whole request head: from the connection's establishment for
    /// the first request, from the request's first byte for later ones. Slower: `408`,
    /// then close; a connection that sent nothing at all is closed without a word.
    pub header_timeout: Duration,
    /// How long a kept-alive connection may wait for the next request's first byte
    /// before it is closed without a word.
    pub idle_timeout: Duration,
    /// How long one read of a request body may wait for data. Slower: `408`, then close.
    pub body_timeout: Duration,
    /// Time allowed for a whole request body, from the end of its head, so one byte
    /// every few seconds cannot keep a request open. Slower: `408`, then close. Raise it
    /// with [`max_body`](Self::max_body) for large uploads over slow links.
    pub body_deadline: Duration,
    /// Most requests served on one keep-alive connection; the last one is answered
    /// with `Connection: close`.
    pub max_requests_per_connection: usize,
    /// How long one write of a response may wait for the peer (`None`: for ever).
    pub write_timeout: Option<Duration>,
    /// After an error answer, how long at most to keep reading (and discarding) what
    /// the client still sends, until it closes, so that it reads the answer instead of
    /// a reset (a `413` to an upload still arriving, say). No byte count ends it early.
    pub linger: Duration,
    /// Whether to log one line per answered request, in the common log format, through
    /// the `log` facade (level `info`, target [`ACCESS_LOG_TARGET`](super::ACCESS_LOG_TARGET)).
    pub access_log: bool,
    /// Value of the `Server` header added to responses that lack one (`None`: no header).
    pub server_name: Option<String>,
    /// Whether to add a `Date` header to responses that lack one.
    pub send_date: bool,
}

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig {
            max_request_line: 8 * 1024,
            max_header_line: 8 * 1024,
            max_headers: 100,
            max_head_bytes: 64 * 1024,
            max_body: 1024 * 1024,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(30),
            body_deadline: Duration::from_secs(60),
            max_requests_per_connection: 1000,
            write_timeout: Some(Duration::from_secs(30)),
            linger: Duration::from_secs(1),
            access_log: false,
            server_name: Some(String::from("mixserve")),
            send_date: true,
        }
    }
}

impl HttpConfig {
    /// Refuses a configuration that could serve nothing or would corrupt every answer,
    /// naming the setting: a [`server_name`](Self::server_name) with a line break or
    /// another control character (tab excepted), a zero timeout, a request line limit
    /// under the 14 bytes of `GET / HTTP/1.1`, no room for a `Host` field, or no
    /// request per connection. Small limits are the caller's choice and pass.
    ///
    /// ```
    /// use std::time::Duration;
    /// use mixserve::http::HttpConfig;
    ///
    /// let mut config = HttpConfig::default();
    /// config.idle_timeout = Duration::ZERO;
    /// let refusal = config.check().unwrap_err();
    /// assert_eq!(refusal.setting, "idle_timeout");
    /// ```
    pub fn check(&self) -> Result<(), ConfigError> {
        let check = ConfigCheck("http");
        if let Some(name) = &self.server_name {
            let problem = format!("is {name:?}: a control character would split every head");
            check.require("server_name", valid_value(name), problem)?;
        }
        let line = self.max_request_line;
        let problem =
            format!("is {line}, must be at least {SHORTEST_REQUEST_LINE} (`GET / HTTP/1.1`)");
        check.require("max_request_line", line >= SHORTEST_REQUEST_LINE, problem)?;
        check.at_least("max_head_bytes", self.max_head_bytes, SHORTEST_REQUEST_LINE)?;
        check.at_least("max_headers", self.max_headers, 1)?;
        check.at_least("max_header_line", self.max_header_line, 1)?;
        check.at_least(
            "max_requests_per_connection",
            self.max_requests_per_connection,
            1,
        )?;
        let timeouts = [
            ("header_timeout", Some(self.header_timeout)),
            ("idle_timeout", Some(self.idle_timeout)),
            ("body_timeout", Some(self.body_timeout)),
            ("body_deadline", Some(self.body_deadline)),
            ("write_timeout", self.write_timeout),
        ];
        for (setting, timeout) in timeouts {
            let zero = timeout == Some(Duration::ZERO);
            check.require(
                setting,
                !zero,
                "is zero: nothing could be read or written in time",
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table in the docs above lists these values: change both together.
    #[test]
    fn defaults_match_the_documented_table() {
        let config = HttpConfig::default();
        assert_eq!(config.max_request_line, 8 * 1024);
        assert_eq!(config.max_header_line, 8 * 1024);
        assert_eq!(config.max_headers, 100);
        assert_eq!(config.max_head_bytes, 64 * 1024);
        assert_eq!(config.max_body, 1024 * 1024);
        assert_eq!(config.header_timeout, Duration::from_secs(10));
        assert_eq!(config.idle_timeout, Duration::from_secs(5));
        assert_eq!(config.body_timeout, Duration::from_secs(30));
        assert_eq!(config.write_timeout, Some(Duration::from_secs(30)));
        assert_eq!(config.linger, Duration::from_secs(1));
        assert!(!config.access_log);
        assert_eq!(config.server_name.as_deref(), Some("mixserve"));
        assert!(config.send_date);
    }

    #[test]
    fn the_defaults_pass_the_check() {
        assert_eq!(HttpConfig::default().check(), Ok(()));
    }

    #[test]
    fn the_check_names_the_setting_it_refuses() {
        let refused = |change: fn(&mut HttpConfig)| {
            let mut config = HttpConfig::default();
            change(&mut config);
            config
                .check()
                .map_err(|refusal| (refusal.part, refusal.setting))
        };
        type Change = fn(&mut HttpConfig);
        let cases: [(Change, &str); 11] = [
            (
                |c| c.server_name = Some("a\r\nX-Injected: yes".into()),
                "server_name",
            ),
            (|c| c.max_request_line = 13, "max_request_line"),
            (|c| c.max_head_bytes = 13, "max_head_bytes"),
            (|c| c.max_headers = 0, "max_headers"),
            (|c| c.max_header_line = 0, "max_header_line"),
            (
                |c| c.max_requests_per_connection = 0,
                "max_requests_per_connection",
            ),
            (|c| c.header_timeout = Duration::ZERO, "header_timeout"),
            (|c| c.idle_timeout = Duration::ZERO, "idle_timeout"),
            (|c| c.body_timeout = Duration::ZERO, "body_timeout"),
            (|c| c.body_deadline = Duration::ZERO, "body_deadline"),
            (|c| c.write_timeout = Some(Duration::ZERO), "write_timeout"),
        ];
        for (change, setting) in cases {
            assert_eq!(refused(change), Err(("http", setting)), "{setting}");
        }
    }

    #[test]
    fn small_limits_and_absent_options_pass() {
        let config = HttpConfig {
            max_request_line: 14,
            max_head_bytes: 64,
            max_headers: 1,
            max_body: 0,
            linger: Duration::ZERO,
            write_timeout: None,
            server_name: Some("mixserve/1.0 (tab\tok)".into()),
            ..HttpConfig::default()
        };
        assert_eq!(config.check(), Ok(()));
    }
}
