//! `Listener::bind_unix` replaces a stale socket file, never a live server's.

use mixserve::Listener;

#[test]
fn a_live_socket_file_is_not_taken_over() {
    let dir = std::env::temp_dir().join(format!("mixserve-bind-unix-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("live.sock");
    let _ = std::fs::remove_file(&path);
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
    let _ = std::fs::remove_dir_all(&dir);
}
