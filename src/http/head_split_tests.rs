//! A head read whole (parsed in place from the read buffer) and the same head read in
//! two pieces (parsed from the accumulated copy) give the same request, at every split
//! point, and leave the same bytes buffered; a recycled head from another request
//! leaves nothing behind. The fuzz seam reads as a connection does.

use std::io::{BufRead, Write};
use std::os::unix::net::UnixStream;

use super::config::HttpConfig;
use super::error::Failure;
use super::head::{Head, parse_head, read_head};
use super::request::Version;
use crate::conn::Conn;
use crate::fuzzing::{self, HeadOutcome};

/// What a read head comes to, comparable: the request line and fields, or the status.
type Outcome = Result<(String, String, Version, Vec<(String, Vec<u8>)>), u16>;

fn outcome(head: Head) -> Outcome {
    let fields = head
        .headers
        .iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    Ok((head.method, head.target, head.version, fields))
}

/// Reads `input` with its first `at` bytes already buffered, alone, when the head is
/// read; returns the outcome and the bytes left buffered after it.
fn read_split(input: &[u8], at: usize, mut head: Head) -> (Outcome, Vec<u8>) {
    let (mut client, server) = UnixStream::pair().unwrap();
    let mut conn = Conn::from_unix(server).unwrap();
    if at > 0 {
        client.write_all(&input[..at]).unwrap();
        assert_eq!(conn.fill_buf().unwrap(), &input[..at], "first piece alone");
    }
    client.write_all(&input[at..]).unwrap();
    drop(client);
    let config = HttpConfig::default();
    let mut raw = Vec::new();
    let read = match read_head(&mut conn, &config, &mut raw, true, None, &mut head) {
        Ok(true) => outcome(head),
        Ok(false) => Err(0),
        Err(Failure::Reject(reject)) => Err(reject.status),
        Err(other) => panic!("at {at}: {other:?}"),
    };
    let mut rest = Vec::new();
    while let Ok(bytes) = conn.fill_buf() {
        if bytes.is_empty() {
            break;
        }
        rest.extend_from_slice(bytes);
        let used = bytes.len();
        conn.consume(used);
    }
    (read, rest)
}

/// A head from an earlier request on the connection, as the connection keeps it.
fn earlier_head() -> Head {
    let earlier = b"PROPFIND /earlier/target?q=1 HTTP/1.0\r\nHost: old\r\n\
        X-Earlier: secret\r\nTransfer-Encoding: chunked\r\n\r\n";
    let mut head = parse_head(earlier, 3).unwrap();
    head.recycle();
    head
}

fn check_every_split(input: &[u8], expected: &Outcome, rest: &[u8]) {
    for at in 0..input.len() {
        let spare = if at % 2 == 0 {
            earlier_head()
        } else {
            // Not emptied: parsing must empty it itself.
            parse_head(b"DELETE /x HTTP/1.1\r\nHost: h\r\nCookie: c\r\n\r\n", 2).unwrap()
        };
        let (read, left) = read_split(input, at, spare);
        assert_eq!(&read, expected, "split at {at}");
        assert_eq!(left, rest, "bytes left after the head, split at {at}");
    }
}

#[test]
fn a_head_in_two_pieces_reads_as_one_at_every_split() {
    let head = b"GET /path?x=1 HTTP/1.1\r\nHost: example\r\nAccept: */*\r\n\
        X-Dup: a\r\nx-dup: b\r\nX-Empty:\r\n\r\n";
    let expected = outcome(parse_head(head, 5).unwrap());
    let mut input = b"\r\n".to_vec();
    input.extend_from_slice(head);
    input.extend_from_slice(b"POST /next");
    check_every_split(&input, &expected, b"POST /next");
    let (method, target, version, fields) = expected.clone().unwrap();
    assert_eq!((method.as_str(), target.as_str()), ("GET", "/path?x=1"));
    assert_eq!(version, Version::Http11);
    assert_eq!(fields.len(), 5);
}

#[test]
fn an_http10_head_without_fields_reads_the_same_at_every_split() {
    let input = b"HEAD / HTTP/1.0\n\n";
    let expected = outcome(parse_head(input, 0).unwrap());
    assert_eq!(
        expected,
        Ok(("HEAD".into(), "/".into(), Version::Http10, Vec::new()))
    );
    check_every_split(input, &expected, b"");
}

#[test]
fn a_bad_head_fails_the_same_at_every_split() {
    check_every_split(
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        &Err(400),
        b"",
    );
    check_every_split(b"GET / HTTP/1.1\r\n\r\n", &Err(400), b"");
    check_every_split(b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", &Err(505), b"");
    check_every_split(b"GET / HTTP/1.1\r\nBad Name: a\r\n\r\n", &Err(400), b"");
}

/// What the fuzz seam read, in the terms of [`read_split`]: the outcome and the bytes
/// left after the head (for inputs within the limits).
fn seam_read(input: &[u8], at: usize) -> (Outcome, Vec<u8>) {
    let (a, b) = input.split_at(at);
    match fuzzing::request_head(&[a, b]) {
        HeadOutcome::Complete(used, parsed) => {
            let read = parsed.map(|head| {
                let fields = head
                    .headers
                    .iter()
                    .map(|(name, value)| (name.to_owned(), value.to_owned()))
                    .collect();
                let (method, target, version) = head.request_line;
                (method, target, version, fields)
            });
            (read, input[used..].to_vec())
        }
        HeadOutcome::Refused(status) => panic!("at {at}: the limits refused {input:?} ({status})"),
        HeadOutcome::Incomplete => (Err(0), Vec::new()),
    }
}

#[test]
fn leading_empty_lines_read_the_same_through_a_connection_and_the_fuzz_seam() {
    let inputs: [&[u8]; 6] = [
        b"\r\n\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /next",
        b"\n\nHEAD / HTTP/1.0\n\n",
        b"\r\n\nGET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n",
        b"\r\n\r\n",
        b"\r\nGET / HTTP/1.1\r\n\r\n\r\nGET /b HTTP/1.1\r\nHost: y\r\n\r\n",
    ];
    for input in inputs {
        for at in 0..=input.len() {
            let seam = seam_read(input, at);
            let connection = read_split(input, at, Head::default());
            assert_eq!(connection, seam, "split at {at}: {input:?}");
        }
    }
    let (read, rest) = seam_read(inputs[0], 0);
    let (method, target, _, fields) = read.unwrap();
    assert_eq!((method.as_str(), target.as_str()), ("GET", "/a"));
    assert_eq!((fields.len(), rest.as_slice()), (1, &b"GET /next"[..]));
}
