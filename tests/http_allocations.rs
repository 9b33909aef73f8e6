//! Heap allocations on the keep-alive path: a request after the first costs none of
//! the server's own — its head is parsed into the storage the previous request left,
//! and a response's first header field is held in place — so what remains is what the
//! application allocates (here, the body of `Response::text`).
//!
//! Counted by this test binary's global allocator, per thread: the connection is served
//! on the test's own thread, the client writes and reads on two others. How the bytes
//! happen to be split between reads changes only one-off costs (a raw-head buffer kept
//! for heads that arrive in pieces), which are spread over hundreds of requests.

#[path = "../benches/micro/counting.rs"]
mod counting;

mod http_util;

use std::io::Write;

use mixserve::http::{Http, HttpConfig, Request, Response};
use mixserve::{Conn, Handler, MakeHandler};

use http_util::ThreadedClient;

#[global_allocator]
static ALLOCATOR: counting::Counting = counting::Counting;

/// A small request, as a load generator sends it.
const SMALL: &[u8] = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n";
/// A request as a browser sends it: a query and a dozen fields, under 1 KiB in all.
const BROWSER: &[u8] = b"GET /items/list?page=2&sort=name HTTP/1.1\r\n\
Host: example.test\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-GB,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Referer: http://example.test/items\r\n\
Connection: keep-alive\r\n\
Cookie: session=0123456789abcdef; theme=dark\r\n\
Upgrade-Insecure-Requests: 1\r\n\
Sec-Fetch-Dest: document\r\n\
Sec-Fetch-Mode: navigate\r\n\
Sec-Fetch-Site: same-origin\r\n\
\r\n";

/// Serves `count` pipelined copies of `request` on one connection; returns the
/// allocations the serving thread made and how many answers came back.
fn serve_pipelined(request: &[u8], count: usize) -> (u64, usize) {
    let (server, client) = ThreadedClient::start(request.repeat(count));
    let mut config = HttpConfig::default();
    config.max_requests_per_connection = usize::MAX;
    let app = Http::with_config(|_: &mut Request| Response::text(200, "hello"), config);
    let mut conn = Conn::from_unix(server).unwrap();
    let mut handler = app.make_handler();
    let before = counting::allocations();
    handler.setup(&mut conn).unwrap();
    handler.handle(&mut conn).unwrap();
    conn.flush().unwrap();
    let made = counting::allocations() - before;
    drop(conn);
    let answered = client.answers().matches("HTTP/1.1 200 OK\r\n").count();
    (made, answered)
}

/// Allocations per request beyond the first `FEW` requests of a connection, whose
/// one-off costs (buffers, the coroutine label) the difference cancels out. Whatever
/// one-off cost remains is divided by `MANY - FEW`: a request that allocated twice would
/// show as about 2.0, not 1.1.
fn allocations_per_request(request: &[u8]) -> f64 {
    const FEW: usize = 50;
    const MANY: usize = 250;
    let (few, answered) = serve_pipelined(request, FEW);
    assert_eq!(answered, FEW);
    let (many, answered) = serve_pipelined(request, MANY);
    assert_eq!(answered, MANY);
    many.saturating_sub(few) as f64 / (MANY - FEW) as f64
}

#[test]
fn a_small_keep_alive_request_allocates_only_the_applications_body() {
    let per_request = allocations_per_request(SMALL);
    assert!(per_request <= 1.1, "{per_request} allocations per request");
}

#[test]
fn a_browser_sized_request_allocates_only_the_applications_body() {
    let per_request = allocations_per_request(BROWSER);
    assert!(per_request <= 1.1, "{per_request} allocations per request");
}
