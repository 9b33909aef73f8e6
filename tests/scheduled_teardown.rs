//! A `scheduled` server whose stop outlives its drain drops its runtime with handlers
//! still parked: their coroutines are unwound by force. That unwind is no panic of the
//! handler's: not reported to the `handle_error` hook, not logged as one, not answered
//! with a `500`.

mod util;

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use mixserve::http::{Http, Request, Response};
use mixserve::{Conn, MakeHandler, PeerAddr, Scheduled, Server, handler::from_fn};

/// The errors the hook was told of.
struct Errors(Arc<Mutex<Vec<String>>>);

impl mixserve::Hooks for Errors {
    fn handle_error(&self, _: &PeerAddr, error: &io::Error) {
        self.0.lock().unwrap().push(error.to_string());
    }
}

/// Errors logged at `error` level (the HTTP adapter logs a handler's panic so).
struct Logged(Mutex<Vec<String>>);

impl log::Log for Logged {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::Level::Error
    }
    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            self.0.lock().unwrap().push(record.args().to_string());
        }
    }
    fn flush(&self) {}
}

static LOGGED: Logged = Logged(Mutex::new(Vec::new()));

/// Starts a server whose handlers sleep an hour, makes `connect` reach one, and stops
/// the server once the drain (100 ms) gave up; the errors the hook heard.
fn stop_with_a_parked_handler(
    make: impl MakeHandler + 'static,
    connect: impl FnOnce(std::net::SocketAddr) -> TcpStream,
) -> Vec<String> {
    let errors = Arc::new(Mutex::new(Vec::new()));
    let hooks = Errors(Arc::clone(&errors));
    let (addr, handle, serving) = util::in_thread::serve_on_thread(move || {
        Server::builder(Scheduled::new())
            .bind("127.0.0.1:0")
            .handle_signals(false)
            .poll_interval(Duration::from_millis(20))
            .shutdown_timeout(Duration::from_millis(100))
            .hooks(hooks)
            .build(make)
            .unwrap()
    });
    let _client = connect(addr);
    handle.shutdown();
    serving.join().unwrap();
    errors.lock().unwrap().clone()
}

#[test]
fn handlers_unwound_at_teardown_are_not_reported_as_panics() {
    log::set_logger(&LOGGED).unwrap();
    log::set_max_level(log::LevelFilter::Error);
    let heard = stop_with_a_parked_handler(
        || {
            from_fn(|conn: &mut Conn| {
                conn.write_all(b"sleeping\n")?;
                conn.flush()?;
                mixserve::rt::sleep(Duration::from_secs(3600));
                Ok(())
            })
        },
        |addr| {
            let mut client = TcpStream::connect(addr).unwrap();
            client.read_exact(&mut [0u8; 9]).unwrap();
            client
        },
    );
    assert!(
        heard.is_empty(),
        "handle_error called at teardown: {heard:?}"
    );
    let (entered, inside) = mpsc::channel();
    let entered = Mutex::new(entered);
    let heard = stop_with_a_parked_handler(
        Http::new(move |_: &mut Request| {
            let _ = entered.lock().unwrap().send(());
            mixserve::rt::sleep(Duration::from_secs(3600));
            Response::text(200, "late")
        }),
        |addr| {
            let mut client = TcpStream::connect(addr).unwrap();
            client
                .write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            inside.recv().unwrap();
            client
        },
    );
    assert!(
        heard.is_empty(),
        "handle_error called at teardown: {heard:?}"
    );
    let logged = LOGGED.0.lock().unwrap().clone();
    assert!(logged.is_empty(), "errors logged at teardown: {logged:?}");
}
