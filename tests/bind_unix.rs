//! Unix socket files: `Listener::bind_unix` replaces a stale one, never a live server's;
//! a server removes the one it made when it closes or fails to start, and nothing else.

use mixserve::Listener;

mod util;
use util::scratch::Scratch;

#[test]
fn a_live_socket_file_is_not_taken_over() {
    let dir = Scratch::new("bind-unix");
    let path = dir.join("live.sock");
    let live = Listener::bind_unix(&path, 16).unwrap();
    let error = Listener::bind_unix(&path, 16).expect_err("took over a live socket");
    assert_eq!(error.kind(), std::io::ErrorKind::AddrInUse);
    assert!(path.exists(), "the live server's socket file was removed");

    // A socket file nobody listens on any more is stale: replaced.
    let stale = std::os::unix::net::UnixListener::bind(dir.join("stale.sock")).unwrap();
    drop(stale);
    let replaced = Listener::bind_unix(&dir.join("stale.sock"), 16);
    assert!(replaced.is_ok(), "{replaced:?}");
    drop((live, replaced));
}

/// A server that stopped listening (draining) looks stale to a new one, which takes
/// the path over; the first, when it closes, must leave the new one's file alone.
#[test]
fn a_server_closing_leaves_the_socket_file_a_newer_one_bound() {
    use mixserve::handler::from_fn;
    use mixserve::{Conn, Iterative, Server};

    let dir = Scratch::new("bind-over");
    let path = dir.join("app.sock");
    let build = || {
        Server::builder(Iterative::new())
            .bind_unix(&path)
            .handle_signals(false)
            .build(|| from_fn(|_: &mut Conn| -> std::io::Result<()> { Ok(()) }))
            .unwrap()
    };
    let old = build();
    old.shutdown_handle().shutdown(); // stops listening, as at the start of a drain
    let new = build();
    drop(old);
    std::os::unix::net::UnixStream::connect(&path)
        .expect("the new server's socket file is still there");
    drop(new);
    assert!(!path.exists(), "a server removes its own socket file");
}

/// The documented restart: a second `serve_forever` listens again, on a Unix socket
/// too (whose shutdown `listen` does not undo), and the file is still removed at the end.
#[test]
fn a_unix_server_stopped_serves_again() {
    use std::io::{Read, Write};

    use mixserve::handler::from_fn;
    use mixserve::{Conn, Iterative, Server};

    let dir = Scratch::new("unix-again");
    let path = dir.join("again.sock");
    let mut server = Server::builder(Iterative::new())
        .bind_unix(&path)
        .handle_signals(false)
        .build(|| from_fn(|conn: &mut Conn| conn.write_all(b"hello")))
        .unwrap();
    let handle = server.shutdown_handle();
    // Opened to others after binding, as a program may do for a front end's user.
    let mode = |path: &std::path::Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    };
    let open_to_all = std::os::unix::fs::PermissionsExt::from_mode(0o666);
    std::fs::set_permissions(&path, open_to_all).unwrap();
    for round in 0..2 {
        if round > 0 {
            // Between the two, nothing listens: a connect is refused, not queued.
            assert!(std::os::unix::net::UnixStream::connect(&path).is_err());
        }
        let serving = std::thread::spawn(move || {
            server.serve_forever().unwrap();
            server
        });
        // The second `serve_forever` listens again when it starts: wait for it.
        let give_up = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut client = loop {
            match std::os::unix::net::UnixStream::connect(&path) {
                Ok(client) => break client,
                Err(e) if std::time::Instant::now() > give_up => panic!("round {round}: {e}"),
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
            }
        };
        assert_eq!(mode(&path), 0o666, "round {round}: the file's mode");
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let mut reply = String::new();
        client.read_to_string(&mut reply).unwrap();
        assert_eq!(reply, "hello", "round {round}");
        handle.shutdown();
        server = serving.join().unwrap();
    }
    drop(server);
    assert!(
        !path.exists(),
        "the server removes the file it listened on last"
    );
}

/// A stopped Unix server listens again at its path only over a socket file: a file
/// someone put there in between is left alone (and the server does not listen).
#[test]
fn a_file_put_in_place_of_a_stopped_servers_socket_is_left_alone() {
    use std::io::{Read, Write};
    use std::time::Duration;

    use mixserve::handler::from_fn;
    use mixserve::{Conn, Iterative, Server};

    let dir = Scratch::new("unix-kept");
    let path = dir.join("kept.sock");
    let mut server = Server::builder(Iterative::new())
        .bind_unix(&path)
        .handle_signals(false)
        .timeout(Duration::from_millis(10))
        .build(|| from_fn(|conn: &mut Conn| conn.write_all(b"hi")))
        .unwrap();
    let handle = server.shutdown_handle();
    let serving = std::thread::spawn(move || {
        server.serve_forever().unwrap();
        server
    });
    // Answered: `serve_forever` runs (the socket listens from `build` on).
    let mut client = std::os::unix::net::UnixStream::connect(&path).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = String::new();
    client.read_to_string(&mut answer).unwrap();
    assert_eq!(answer, "hi");
    handle.shutdown();
    let mut server = serving.join().unwrap();
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, "precious").unwrap();
    // Serving again (one request, or the timeout) listens again first.
    server.handle_request().unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
    drop(server);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
}

/// A start refused after the socket file was made removes it.
#[test]
fn a_refused_start_removes_the_socket_file_made_for_it() {
    use mixserve::handler::from_fn;
    use mixserve::{Conn, Listener, Server, Threading};

    let dir = Scratch::new("unix-refused");
    let path = dir.join("refused.sock");
    let listener = Listener::bind_unix(&path, 16).unwrap();
    assert!(path.exists());
    let refused = Server::builder(Threading::new().max_threads(0))
        .listener(listener)
        .handle_signals(false)
        .build(|| from_fn(|_: &mut Conn| Ok(())));
    assert!(refused.is_err(), "max_threads(0) is refused");
    assert!(!path.exists(), "the socket file was left behind");
}
