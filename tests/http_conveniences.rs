//! The conveniences of the HTTP adapter over a real connection: decoded query strings
//! and forms, JSON both ways, files with a guessed type, and `bind` by `SocketAddr`.

mod http_util;

use std::net::{Ipv4Addr, SocketAddr};

use mixserve::http::{Http, Request, Response};
use mixserve::{Iterative, Server};

#[derive(serde::Serialize, serde::Deserialize)]
struct Line {
    from: String,
    text: String,
}

fn app(req: &mut Request) -> Response {
    match req.path() {
        "/q" => Response::text(
            200,
            req.query_params().get("text").unwrap_or("-").to_owned(),
        ),
        "/form" => match req.form() {
            Some(form) => Response::text(200, form.get("text").unwrap_or("-").to_owned()),
            None => Response::text(415, "not a form\n"),
        },
        "/json" => match req.json::<Line>() {
            Ok(line) => Response::json(
                200,
                &Line {
                    from: line.text,
                    text: line.from,
                },
            ),
            Err(error) => error.to_response(),
        },
        _ => Response::status(404),
    }
}

fn ask(request: &str) -> http_util::Answer {
    let mut client = http_util::start(Http::new(app));
    client.send(request.as_bytes());
    client.response()
}

#[test]
fn queries_and_forms_arrive_decoded() {
    let answer =
        ask("GET /q?text=caf%C3%A9+au+lait HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(answer.text(), "café au lait");
    let body = "who=me&text=a%26b";
    let answer = ask(&format!(
        "POST /form HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    assert_eq!(answer.text(), "a&b");
}

#[test]
fn json_in_and_out() {
    let body = r#"{"from":"ann","text":"hi"}"#;
    let answer = ask(&format!(
        "POST /json HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("Content-Type"), Some("application/json"));
    assert_eq!(answer.text(), r#"{"from":"hi","text":"ann"}"#);
    let answer =
        ask("POST /json HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\n{{{");
    assert_eq!(answer.status, 400);
}

#[test]
fn bind_takes_socket_addresses() {
    let by_addr = Server::builder(Iterative::new())
        .bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .build(Http::new(app))
        .unwrap();
    assert!(by_addr.local_addr().unwrap().ip().is_loopback());
    let by_pair = Server::builder(Iterative::new())
        .bind(("127.0.0.1", 0))
        .build(Http::new(app))
        .unwrap();
    assert_ne!(by_pair.local_addr().unwrap().port(), 0);
}
