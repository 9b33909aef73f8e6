//! [`HttpConfig`]: the limits and timeouts of the HTTP adapter.

use std::time::Duration;

/// Limits and timeouts for [`Http`](super::Http). Every limit is on by default.
///
/// The fields are public; start from [`HttpConfig::default`] and change what you need:
///
/// ```
/// use std::time::Duration;
/// use mixserve::http::HttpConfig;
///
/// let mut config = HttpConfig::default();
/// config.max_body = 16 * 1024 * 1024;
/// config.idle_timeout = Duration::from_secs(30);
/// assert_eq!(config.max_headers, 100);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HttpConfig {
    /// Longest request line (`GET /path HTTP/1.1`), without its line end. Longer: `414`.
    pub max_request_line: usize,
    /// Longest single header field line, without its line end. Longer: `431`.
    pub max_header_line: usize,
    /// Most header fields in one request (trailers count separately). More: `431`.
    pub max_headers: usize,
    /// Most bytes in a whole request head, request line and line ends included. More: `431`.
    pub max_head_bytes: usize,
    /// Largest request body, after chunked decoding. Larger: `413`.
    pub max_body: usize,
    /// Time allowed for a whole request head: from the connection's start for the first
    /// request, from the request's first byte for later ones. Slower: `408`, then close.
    pub header_timeout: Duration,
    /// How long a kept-alive connection may wait for the next request's first byte
    /// before it is closed without a word.
    pub idle_timeout: Duration,
    /// How long one read of a request body may wait for data. Slower: `408`, then close.
    pub body_timeout: Duration,
    /// How long one write of a response may wait for the peer (`None`: for ever).
    pub write_timeout: Option<Duration>,
    /// After an error answer, how long to keep reading (and discarding) what the client
    /// still sends before closing, so that it reads the answer instead of a reset.
    pub linger: Duration,
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
            write_timeout: Some(Duration::from_secs(30)),
            linger: Duration::from_secs(1),
            server_name: Some(String::from("mixserve")),
            send_date: true,
        }
    }
}
