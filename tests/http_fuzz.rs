//! Random and mangled input never panics the HTTP handler: it answers or closes.
//! Deterministic (fixed seed), bounded, no extra dependencies.

mod http_util;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use http_util::{echo, serve};
use mixserve::MakeHandler;
use mixserve::http::{Http, HttpConfig};

/// xorshift64*: enough randomness for mangling bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const CORPUS: &[&[u8]] = &[
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /p?q HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;e=1\r\nhello\r\n0\r\nT: v\r\n\r\n",
    b"PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
    b"HEAD / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.1\r\nHost: y\r\n\r\n",
];

/// Tokens that steer mangled input into the interesting parts of the parser.
const TOKENS: &[&[u8]] = &[
    b"\r\n",
    b"\n",
    b":",
    b" ",
    b";",
    b"0",
    b"ffffffffffffffffff",
    b"Content-Length: ",
    b"Transfer-Encoding: chunked\r\n",
    b"\r\n\r\n",
    b"HTTP/1.1",
    b"\x00",
    b"\xff",
];

fn mangle(rng: &mut Rng) -> Vec<u8> {
    let mut input = CORPUS[rng.below(CORPUS.len())].to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(input.len() + 1);
        match rng.below(5) {
            0 => input.truncate(at),
            1 => {
                if let Some(byte) = input.get_mut(at) {
                    *byte = rng.next() as u8;
                }
            }
            2 => {
                let token = TOKENS[rng.below(TOKENS.len())];
                input.splice(at..at, token.iter().copied());
            }
            3 => {
                let copy = input.clone();
                input.extend_from_slice(&copy[at..]);
            }
            _ => {
                let noise: Vec<u8> = (0..rng.below(64)).map(|_| rng.next() as u8).collect();
                input.splice(at..at, noise);
            }
        }
    }
    input
}

/// Feeds `input` and end-of-stream, runs the handler to its end on this thread, and
/// returns what it wrote.
fn run(
    http: &Http<fn(&mut mixserve::http::Request) -> mixserve::http::Response>,
    input: &[u8],
) -> Vec<u8> {
    let (mut client, server) = UnixStream::pair().unwrap();
    client.write_all(input).unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    serve(http.make_handler(), server).unwrap();
    let mut output = Vec::new();
    client.read_to_end(&mut output).unwrap();
    output
}

#[test]
fn mangled_requests_never_panic() {
    let mut config = HttpConfig::default();
    // A safety net against a test that would otherwise hang on a full socket buffer.
    config.write_timeout = Some(Duration::from_secs(5));
    let http = Http::with_config(echo as fn(&mut _) -> _, config);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut served, mut refused) = (0, 0);
    for round in 0..600 {
        let input = if round % 10 == 0 {
            (0..rng.below(300)).map(|_| rng.next() as u8).collect()
        } else {
            mangle(&mut rng)
        };
        let output = run(&http, &input);
        assert!(
            output.is_empty() || output.starts_with(b"HTTP/1."),
            "round {round}: input {:?} gave {:?}",
            String::from_utf8_lossy(&input),
            String::from_utf8_lossy(&output)
        );
        let status = output.get(9..10);
        served += usize::from(output.starts_with(b"HTTP/1.") && output.get(9..12) == Some(b"200"));
        refused += usize::from(status == Some(b"4") || status == Some(b"5"));
    }
    eprintln!("served {served}, refused {refused} of 600");
    assert!(
        served > 50 && refused > 50,
        "the mangling reaches both outcomes"
    );
}

#[test]
fn every_prefix_of_a_valid_request_is_safe() {
    let http = Http::new(echo as fn(&mut _) -> _);
    for request in CORPUS {
        for end in 0..request.len() {
            let output = run(&http, &request[..end]);
            assert!(output.is_empty() || output.starts_with(b"HTTP/1."));
        }
    }
}
