//! Helpers for the HTTP and SCGI tests: run a real per-connection handler on one end of
//! a socketpair, write raw bytes from the other, and read raw responses back.
#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use mixserve::http::{Request, Response};
use mixserve::{Conn, Handler, MakeHandler};

/// A safety net so a broken server fails a test instead of hanging it; never asserted on.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(20);

/// The client end of a connection served by a handler on its own thread.
pub struct Client {
    pub writer: UnixStream,
    pub reader: BufReader<UnixStream>,
    server: Option<JoinHandle<io::Result<()>>>,
}

/// Serves one connection with a handler made by `make`, on a new thread.
pub fn start<M: MakeHandler>(make: M) -> Client
where
    M::Handler: Send + 'static,
{
    let (client, server) = UnixStream::pair().expect("socketpair");
    client.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    client.set_write_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    let handler = make.make_handler();
    let thread = thread::spawn(move || serve(handler, server));
    Client {
        writer: client.try_clone().unwrap(),
        reader: BufReader::new(client),
        server: Some(thread),
    }
}

/// Runs `handler` on `socket` as a server would: setup, handle, finish, flush, close.
pub fn serve<H: Handler>(mut handler: H, socket: UnixStream) -> io::Result<()> {
    let mut conn = Conn::from_unix(socket)?;
    let mut result = handler.setup(&mut conn);
    if result.is_ok() {
        result = handler.handle(&mut conn);
    }
    let finished = handler.finish(&mut conn);
    let _ = conn.flush();
    result.and(finished)
}

impl Client {
    pub fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("client write");
    }

    /// Sends `bytes` if the server still reads; false once it has closed.
    pub fn try_send(&mut self, bytes: &[u8]) -> bool {
        self.writer.write_all(bytes).is_ok()
    }

    /// Whether the server thread has ended.
    pub fn server_ended(&self) -> bool {
        self.server
            .as_ref()
            .is_none_or(|thread| thread.is_finished())
    }

    /// Reads one response to a request that was not `HEAD`.
    pub fn response(&mut self) -> Answer {
        read_answer(&mut self.reader, false)
    }

    /// Reads one response to a `HEAD` request (no body follows).
    pub fn head_response(&mut self) -> Answer {
        read_answer(&mut self.reader, true)
    }

    /// Reads everything until the server closes.
    pub fn read_to_end(&mut self) -> Vec<u8> {
        let mut rest = Vec::new();
        self.reader.read_to_end(&mut rest).expect("client read");
        rest
    }

    /// True if the server closed without sending anything more.
    pub fn closed(&mut self) -> bool {
        self.read_to_end().is_empty()
    }

    /// Whether the server thread ends within `limit` while this end stays open.
    pub fn server_ends_within(&self, limit: Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if self
                .server
                .as_ref()
                .is_none_or(|thread| thread.is_finished())
            {
                return true;
            }
            thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// Waits for the server thread and returns what its handler returned.
    pub fn join(mut self) -> io::Result<()> {
        let _ = self.writer.shutdown(std::net::Shutdown::Write);
        let thread = self.server.take().expect("joined once");
        thread.join().expect("server thread panicked")
    }
}

/// One parsed response.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

fn read_line(reader: &mut impl BufRead) -> String {
    let mut line = String::new();
    reader.read_line(&mut line).expect("client read");
    assert!(line.ends_with("\r\n"), "line without CRLF: {line:?}");
    line.truncate(line.len() - 2);
    line
}

/// Reads a response head and body (Content-Length, chunked, or to end of stream).
pub fn read_answer(reader: &mut impl BufRead, head_only: bool) -> Answer {
    let status_line = read_line(reader);
    let mut parts = status_line.splitn(3, ' ');
    assert!(
        matches!(parts.next(), Some("HTTP/1.1" | "HTTP/1.0")),
        "status line {status_line:?}"
    );
    let status = parts
        .next()
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let mut headers = Vec::new();
    loop {
        let line = read_line(reader);
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').expect("header field");
        headers.push((name.to_string(), value.trim().to_string()));
    }
    let mut answer = Answer {
        status,
        headers,
        body: Vec::new(),
    };
    if head_only || status < 200 || status == 204 || status == 304 {
        return answer;
    }
    if answer.header("transfer-encoding") == Some("chunked") {
        loop {
            let size = usize::from_str_radix(&read_line(reader), 16).expect("chunk size");
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).expect("chunk");
            assert_eq!(&chunk[size..], b"\r\n");
            if size == 0 {
                break;
            }
            answer.body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(length) = answer.header("content-length") {
        let mut body = vec![0; length.parse().expect("content length")];
        reader.read_exact(&mut body).expect("body");
        answer.body = body;
    } else {
        reader.read_to_end(&mut answer.body).expect("body to end");
    }
    answer
}

/// Answers `METHOD TARGET BODY`; `/panic` panics; trailers come back as `X-Trailer-*`.
pub fn echo(req: &mut Request) -> Response {
    if req.path() == "/panic" {
        panic!("the application failed (on purpose, in a test)");
    }
    let body = String::from_utf8_lossy(req.body()).into_owned();
    let mut response = Response::text(200, format!("{} {} {}", req.method(), req.target(), body));
    for (name, value) in req.trailers().iter() {
        let value = String::from_utf8_lossy(value).into_owned();
        response = response.with_header(format!("X-Trailer-{name}"), value);
    }
    response
}

/// A client that writes all its requests and reads every answer on threads of its own,
/// so neither it nor the server (served on the caller's thread) can be blocked by a full
/// socket buffer.
pub struct ThreadedClient {
    writing: JoinHandle<()>,
    reading: JoinHandle<String>,
}

impl ThreadedClient {
    /// Starts writing `input` (then half-closing) on a socketpair; returns the server's
    /// end and the client.
    pub fn start(input: Vec<u8>) -> (UnixStream, ThreadedClient) {
        let (mut client, server) = UnixStream::pair().unwrap();
        let mut answers = client.try_clone().unwrap();
        let reading = thread::spawn(move || {
            let mut all = Vec::new();
            answers.read_to_end(&mut all).unwrap();
            String::from_utf8(all).unwrap()
        });
        let writing = thread::spawn(move || {
            client.write_all(&input).unwrap();
            client.shutdown(std::net::Shutdown::Write).unwrap();
        });
        (server, ThreadedClient { writing, reading })
    }

    /// Everything the server sent, once it closed its end.
    pub fn answers(self) -> String {
        self.writing.join().unwrap();
        self.reading.join().unwrap()
    }
}
