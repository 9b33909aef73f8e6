//! Static files: `http::files::resolve` refuses every way out of the root (`..`, encoded
//! `%2e%2e`, absolute paths, symbolic links leading out), and the `static` example serves
//! `Range`, `If-Modified-Since`, `HEAD` and HTTP/1.0 clients under every model family.

mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::symlink;
use std::path::PathBuf;

use mixserve::http::HttpHandler;
use mixserve::http::Request;
use mixserve::http::files::{ResolveError, StaticFiles, resolve};
use util::{ServerProcess, connect, read_reply};

/// The test file's size and contents.
const SIZE: usize = 1000;

fn contents() -> Vec<u8> {
    (0..SIZE).map(|i| b'a' + (i % 26) as u8).collect()
}

/// `base/root` served, `base/secret.txt` beside it; removed on drop.
struct Tree {
    base: PathBuf,
}

impl Tree {
    fn new(name: &str) -> Tree {
        let base =
            std::env::temp_dir().join(format!("mixserve-static-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let root = base.join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("a.txt"), contents()).unwrap();
        std::fs::write(root.join("index.html"), "<p>home</p>").unwrap();
        std::fs::write(root.join("sub/b.txt"), "bee").unwrap();
        std::fs::write(base.join("secret.txt"), "secret").unwrap();
        symlink(root.join("a.txt"), root.join("inside-link")).unwrap();
        symlink(base.join("secret.txt"), root.join("outside-link")).unwrap();
        symlink(&base, root.join("outside-dir")).unwrap();
        symlink("/etc", root.join("etc-link")).unwrap();
        symlink("sub/b.txt", root.join("relative-link")).unwrap();
        symlink("sub", root.join("sub-link")).unwrap();
        symlink("../secret.txt", root.join("relative-out")).unwrap();
        symlink("../../secret.txt", root.join("sub/climb-out")).unwrap();
        Tree { base }
    }

    fn root(&self) -> PathBuf {
        self.base.join("root")
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

#[test]
fn resolves_paths_inside_the_root() {
    let tree = Tree::new("inside");
    let root = tree.root().canonicalize().unwrap();
    assert_eq!(resolve(&root, "/a.txt"), Ok(root.join("a.txt")));
    assert_eq!(resolve(&root, "/sub/./b.txt"), Ok(root.join("sub/b.txt")));
    assert_eq!(resolve(&root, "/sub//b.txt"), Ok(root.join("sub/b.txt")));
    assert_eq!(resolve(&root, "/%73ub/b.txt"), Ok(root.join("sub/b.txt")));
    assert_eq!(resolve(&root, "/"), Ok(root.clone()));
    assert_eq!(
        resolve(&root, "/inside-link"),
        Ok(root.join("a.txt")),
        "a link that stays inside is followed"
    );
    assert_eq!(resolve(&root, "/missing"), Err(ResolveError::NotFound));
}

#[test]
fn refuses_dot_dot() {
    let tree = Tree::new("dotdot");
    let root = tree.root();
    for path in ["/../secret.txt", "/sub/../../secret.txt", "/sub/..", "/.."] {
        assert_eq!(resolve(&root, path), Err(ResolveError::Forbidden), "{path}");
    }
}

#[test]
fn refuses_encoded_dot_dot() {
    let tree = Tree::new("encoded");
    let root = tree.root();
    for path in [
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/.%2e/secret.txt",
        "/%2e%2e%2fsecret.txt",
        "/sub%2f..%2f..%2fsecret.txt",
    ] {
        assert_eq!(resolve(&root, path), Err(ResolveError::Forbidden), "{path}");
    }
}

#[test]
fn refuses_absolute_paths() {
    let tree = Tree::new("absolute");
    let root = tree.root();
    for path in ["//etc/passwd", "/%2fetc/passwd", "/%2Fetc%2Fpasswd"] {
        assert_eq!(resolve(&root, path), Err(ResolveError::Forbidden), "{path}");
    }
    for path in ["etc/passwd", "http://host/etc/passwd", "*", ""] {
        assert_eq!(resolve(&root, path), Err(ResolveError::BadPath), "{path}");
    }
    assert_eq!(resolve(&root, "/a.txt%00"), Err(ResolveError::BadPath));
}

#[test]
fn refuses_symlinks_leading_out() {
    let tree = Tree::new("symlinks");
    let root = tree.root();
    for path in [
        "/outside-link",
        "/outside-dir/secret.txt",
        "/etc-link/passwd",
        "/outside-dir",
    ] {
        assert_eq!(resolve(&root, path), Err(ResolveError::Forbidden), "{path}");
    }
    let files = StaticFiles::new(&root).unwrap();
    assert_eq!(files.locate("/"), Ok(files.root().join("index.html")));
    assert_eq!(files.locate("/outside-dir"), Err(ResolveError::Forbidden));
}

/// `StaticFiles::open` opens beneath the root: links that stay inside are followed
/// (relative, or absolute under the root), links leading out are refused like the
/// path-level check refuses them.
#[test]
fn open_follows_links_inside_and_refuses_links_out() {
    let tree = Tree::new("open");
    let files = StaticFiles::new(tree.root()).unwrap();
    let read = |path: &str| {
        let (mut file, name) = files.open(path).expect(path);
        let mut text = Vec::new();
        file.read_to_end(&mut text).unwrap();
        (text, name)
    };
    assert_eq!(read("/a.txt"), (contents(), PathBuf::from("a.txt")));
    assert_eq!(read("/inside-link").0, contents());
    assert_eq!(read("/relative-link").0, b"bee");
    assert_eq!(read("/sub-link/b.txt").0, b"bee");
    assert_eq!(read("/%73ub//./b.txt").0, b"bee");
    assert_eq!(
        read("/"),
        (b"<p>home</p>".to_vec(), PathBuf::from("index.html"))
    );
    for path in [
        "/outside-link",
        "/outside-dir/secret.txt",
        "/outside-dir",
        "/etc-link/passwd",
        "/relative-out",
        "/sub/climb-out",
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2fetc/passwd",
    ] {
        assert_eq!(
            files.open(path).map(|_| ()),
            Err(ResolveError::Forbidden),
            "{path}"
        );
    }
    assert_eq!(
        files.open("/missing").map(|_| ()),
        Err(ResolveError::NotFound)
    );
    assert_eq!(files.open("a.txt").map(|_| ()), Err(ResolveError::BadPath));
}

/// A directory's `index.html` is found through links too (a link to the root, a
/// directory link, an `index.html` that is itself a link), but not out of the root; a
/// FIFO or a directory named `index.html` is no file to serve (`404`, without blocking).
#[test]
fn open_finds_index_html_through_links_and_serves_only_files() {
    let tree = Tree::new("index-links");
    let root = tree.root();
    symlink(".", root.join("here")).unwrap();
    symlink("../index.html", root.join("sub/index.html")).unwrap();
    std::fs::create_dir_all(root.join("leaky")).unwrap();
    symlink("../../secret.txt", root.join("leaky/index.html")).unwrap();
    std::fs::create_dir_all(root.join("odd/index.html")).unwrap();
    nix::unistd::mkfifo(&root.join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    let files = StaticFiles::new(&root).unwrap();
    for (path, name) in [
        ("/here", "here/index.html"),
        ("/here/here/", "here/here/index.html"),
        ("/sub-link", "sub-link/index.html"),
        ("/sub/", "sub/index.html"),
    ] {
        let (mut file, found) = files.open(path).expect(path);
        let mut text = String::new();
        file.read_to_string(&mut text).unwrap();
        assert_eq!((text.as_str(), found), ("<p>home</p>", PathBuf::from(name)));
    }
    assert_eq!(
        files.open("/leaky").map(|_| ()),
        Err(ResolveError::Forbidden)
    );
    for path in ["/fifo", "/odd", "/odd/index.html"] {
        let mut req = Request::new("GET", path);
        assert_eq!(files.handle(&mut req).status_code(), 404, "{path}");
    }
}

/// A directory asked for without its trailing slash is sent to the path with one, its
/// query kept, so its index's relative links resolve inside it; with the slash, its
/// `index.html` is served.
#[test]
fn a_directory_without_its_slash_is_redirected_to_it() {
    let tree = Tree::new("slash");
    let root = tree.root();
    std::fs::write(root.join("sub/index.html"), "<a href=b.txt>b</a>").unwrap();
    let files = StaticFiles::new(&root).unwrap();
    for (method, target, location) in [
        ("GET", "/sub", "/sub/"),
        ("HEAD", "/sub", "/sub/"),
        ("GET", "/sub?x=1", "/sub/?x=1"),
        ("GET", "/sub-link", "/sub-link/"),
    ] {
        let answer = files.handle(&mut Request::new(method, target));
        assert_eq!(answer.status_code(), 301, "{method} {target}");
        assert_eq!(answer.header("location"), Some(location), "{target}");
    }
    let answer = files.handle(&mut Request::new("GET", "/sub/"));
    assert_eq!(answer.status_code(), 200);
    let answer = files.handle(&mut Request::new("POST", "/sub"));
    assert_eq!(answer.status_code(), 405, "only GET and HEAD are sent on");
    let answer = files.handle(&mut Request::new("GET", "/a.txt"));
    assert_eq!(answer.status_code(), 200, "a file is no directory");
}

/// Sends `raw` on a fresh connection and reads everything until the server closes.
fn exchange(addr: SocketAddr, raw: &str) -> String {
    let mut stream = connect(addr);
    stream.write_all(raw.as_bytes()).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

/// One request, `Connection: close`, with extra header lines.
fn request(addr: SocketAddr, method: &str, path: &str, extra: &str) -> util::Reply {
    let mut stream = connect(addr);
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{extra}\r\n"
    )
    .unwrap();
    read_reply(&mut BufReader::new(stream))
}

fn check_files(addr: SocketAddr) {
    let whole = request(addr, "GET", "/a.txt", "");
    assert_eq!(whole.status, 200);
    assert_eq!(whole.body, contents());
    assert_eq!(whole.header("accept-ranges"), Some("bytes"));
    assert_eq!(
        whole.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    let modified = whole
        .header("last-modified")
        .expect("Last-Modified")
        .to_owned();

    let part = request(addr, "GET", "/a.txt", "Range: bytes=10-19\r\n");
    assert_eq!(part.status, 206);
    assert_eq!(part.header("content-range"), Some("bytes 10-19/1000"));
    assert_eq!(part.body, contents()[10..20]);
    let tail = request(addr, "GET", "/a.txt", "Range: bytes=-5\r\n");
    assert_eq!((tail.status, &tail.body[..]), (206, &contents()[995..]));
    let past = request(addr, "GET", "/a.txt", "Range: bytes=1000-\r\n");
    assert_eq!(past.status, 416);
    assert_eq!(past.header("content-range"), Some("bytes */1000"));
    let several = request(addr, "GET", "/a.txt", "Range: bytes=0-1,5-6\r\n");
    assert_eq!((several.status, several.body.len()), (200, SIZE));

    let fresh = request(
        addr,
        "GET",
        "/a.txt",
        &format!("If-Modified-Since: {modified}\r\n"),
    );
    assert_eq!(fresh.status, 304);
    assert!(fresh.body.is_empty());
    let stale = request(
        addr,
        "GET",
        "/a.txt",
        "If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\n",
    );
    assert_eq!((stale.status, stale.body.len()), (200, SIZE));

    // HEAD: the same Content-Length, and the connection closes with no body after it.
    let head = exchange(
        addr,
        "HEAD /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("Content-Length: 1000\r\n"), "{head}");
    assert!(head.ends_with("\r\n\r\n"), "no body after a HEAD: {head}");

    // HTTP/1.0: the status line follows the request, and the connection closes.
    let old = exchange(addr, "GET /sub/b.txt HTTP/1.0\r\n\r\n");
    assert!(old.starts_with("HTTP/1.0 200 OK\r\n"), "{old}");
    assert!(old.contains("Connection: close\r\n"), "{old}");
    assert!(old.ends_with("\r\n\r\nbee"), "{old}");
    let mut kept = BufReader::new(connect(addr));
    kept.get_mut()
        .write_all(b"GET /sub/b.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .unwrap();
    let first = read_reply(&mut kept);
    assert_eq!(first.header("connection"), Some("keep-alive"));
    kept.get_mut()
        .write_all(b"GET /sub/b.txt HTTP/1.0\r\n\r\n")
        .unwrap();
    let mut line = String::new();
    kept.read_line(&mut line).unwrap();
    assert_eq!(
        line, "HTTP/1.0 200 OK\r\n",
        "kept alive for a second request"
    );

    for (path, status) in [
        ("/../secret.txt", "403"),
        ("/%2e%2e/secret.txt", "403"),
        ("/%2fetc/passwd", "403"),
        ("/outside-link", "403"),
        ("/relative-out", "403"),
        ("/sub/climb-out", "403"),
        ("/outside-dir/secret.txt", "403"),
        ("/missing", "404"),
        ("/", "200"),
    ] {
        let answer = exchange(
            addr,
            &format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
        );
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status} ")),
            "{path}: {answer}"
        );
        assert!(!answer.contains("secret\n") && !answer.ends_with("secret"));
    }
    // Links that stay inside the root are served.
    for path in ["/inside-link", "/relative-link", "/sub-link/b.txt"] {
        let reply = request(addr, "GET", path, "");
        assert_eq!(reply.status, 200, "{path}");
    }
    assert_eq!(request(addr, "GET", "/relative-link", "").body, b"bee");
}

fn serve_under(model: &[&str]) {
    let tree = Tree::new(&model.join("-"));
    let root = tree.root();
    let mut args = vec!["--root", root.to_str().unwrap()];
    args.extend_from_slice(model);
    let mut server = ServerProcess::start("static", &args);
    check_files(server.addr);
    server.stop();
}

#[test]
fn static_example_under_every_model() {
    for model in util::MODELS {
        serve_under(&["--mixin", model]);
    }
    for variant in [
        &["--mixin", "preforked", "--accept", "shared"][..],
        &["--mixin", "preforked", "--inner", "scheduled"],
        &["--mixin", "prethreaded", "--accept", "locked"],
    ] {
        serve_under(variant);
    }
}

#[test]
fn serve_file_and_file_at_refuse_a_fifo_without_blocking_on_it() {
    let tree = Tree::new("fifo-path");
    let fifo = tree.root().join("pipe");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let req = Request::new("GET", "/pipe");
    assert_eq!(
        mixserve::http::files::serve_file(&req, &fifo).status_code(),
        404
    );
    let refused = mixserve::http::Response::file_at(200, &fifo).map(|_| ());
    assert!(refused.is_err(), "a FIFO is no regular file");
    let missing = tree.root().join("missing");
    assert_eq!(
        mixserve::http::files::serve_file(&req, &missing).status_code(),
        404
    );
}

/// RFC 9110: If-Match and If-Unmodified-Since refuse with `412` a client whose copy is
/// not the file's; If-None-Match overrides If-Modified-Since (no entity tag is sent, so
/// only `*` matches); and a date in If-Range counts only once the file is a second old.
#[test]
fn conditional_requests_follow_rfc_9110() {
    use std::time::{Duration, SystemTime};
    let tree = Tree::new("conditions");
    let path = tree.root().join("a.txt");
    let ask = |extra: &[(&str, &str)]| {
        let mut req = Request::new("GET", "/a.txt");
        for (name, value) in extra {
            req = req.with_header(*name, *value);
        }
        mixserve::http::files::serve_file(&req, &path)
    };
    let set_mtime = |at: SystemTime| {
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(at).unwrap();
    };
    let hour_ago = SystemTime::now() - Duration::from_secs(3600);
    set_mtime(hour_ago);
    let modified = ask(&[]).header("last-modified").unwrap().to_owned();
    let later = "Fri, 01 Jan 2100 00:00:00 GMT";

    assert_eq!(ask(&[("If-Modified-Since", later)]).status_code(), 304);
    let other_tag = [("If-None-Match", "\"v1\""), ("If-Modified-Since", later)];
    assert_eq!(
        ask(&other_tag).status_code(),
        200,
        "a tag that cannot match"
    );
    assert_eq!(ask(&[("If-None-Match", "*")]).status_code(), 304);

    // A resume that says which copy it has: refused (412) once the file changed.
    let earlier = "Thu, 01 Jan 1970 00:00:00 GMT";
    let stale = [("Range", "bytes=0-9"), ("If-Unmodified-Since", earlier)];
    assert_eq!(ask(&stale).status_code(), 412, "changed since");
    let current = [("Range", "bytes=0-9"), ("If-Unmodified-Since", later)];
    assert_eq!(ask(&current).status_code(), 206, "unchanged since");
    assert_eq!(ask(&[("If-Match", "*")]).status_code(), 200);
    assert_eq!(ask(&[("If-Match", "\"v1\"")]).status_code(), 412);
    // If-Match present: If-Unmodified-Since is not looked at.
    let both = [("If-Match", "*"), ("If-Unmodified-Since", earlier)];
    assert_eq!(ask(&both).status_code(), 200);

    let resume = [("Range", "bytes=0-9"), ("If-Range", modified.as_str())];
    assert_eq!(
        ask(&resume).status_code(),
        206,
        "an hour-old date is strong"
    );
    // Changed again within the second its date names: the date no longer tells.
    set_mtime(SystemTime::now() + Duration::from_secs(30));
    let modified = ask(&[]).header("last-modified").unwrap().to_owned();
    let resume = [("Range", "bytes=0-9"), ("If-Range", modified.as_str())];
    assert_eq!(ask(&resume).status_code(), 200, "a fresh date is weak");
}
