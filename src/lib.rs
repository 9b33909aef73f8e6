//! # mixserve
//!
//! Pluggable concurrency models for TCP and HTTP servers, in the spirit of Python's
//! `socketserver`: a small core ([`Server`]) takes a [`Handler`] — what to do with one
//! connection — and a [`MixIn`] — how connections are accepted and where the handler
//! runs. Swapping the model is one line; the handler does not change, even one that
//! blocks for a long time waiting for another request.
//!
//! ## The pieces
//!
//! - [`Server`] binds a TCP or Unix-domain listener and runs the model's loop until a
//!   [`ShutdownHandle`] or a signal stops it: SIGTERM and Ctrl-C (SIGINT) graceful in
//!   every model, a second Ctrl-C or SIGQUIT fast.
//! - [`Handler`] serves one [`Conn`]; [`MakeHandler`] makes one per connection. For
//!   HTTP, write an [`http::HttpHandler`] and serve it with [`http::Http`] (or behind a
//!   front server with [`scgi::Scgi`]).
//! - [`MixIn`] is the model: [`Iterative`], [`Threading`], [`Forking`],
//!   [`Scheduled`] (coroutines on [`rt`], the crate's runtime), and more in [`mixin`].
//! - [`sync::Broadcast`] and [`sync::Channel`] are shared objects a handler may block
//!   on under any model — between threads, and between the processes of a forking
//!   model through the master's hub.
//!
//! ## Which model when
//!
//! | model | use it when |
//! |---|---|
//! | [`Iterative`] | one client at a time is enough, or as the baseline to measure against |
//! | [`Threading`] | blocking handlers, moderate numbers of connections; the simple default |
//! | [`Forking`] | isolation per connection (a crash kills one child), short requests |
//! | [`Scheduled`] | thousands of mostly idle connections (comet) in one process; read its rules |
//! | [`Preforked`] | a fixed pool of processes (UNP rows 2–5), each running any other model inside |
//! | [`Prethreaded`] | a fixed, growing pool of threads (UNP rows 7–8) |
//!
//! Models compose: each is one loop over a connection source — the listener in one
//! process, a worker's share of the connections inside [`Preforked`] — so
//! `Preforked::new().workers(4).inner(Threading::new())` runs the threading model in
//! four processes, and a [`MixIn`] you write runs there too.
//!
//! ## Module map (layers point down)
//!
//! | module | what lives there |
//! |---|---|
//! | [`server`] | [`Server`], its builder, the [`Context`] a model is given, the connection sources, shutdown and signals |
//! | [`mixin`] | the [`MixIn`] trait, the one serve loop and drain, and one file or folder per model |
//! | [`handler`] | [`Handler`] and handler factories |
//! | [`http`], [`scgi`] | protocols onto one [`http::HttpHandler`]; they know nothing of models |
//! | [`conn`] | [`Conn`], the one thing a handler sees |
//! | [`sync`] | shared objects a handler blocks on under any model; the hub between processes |
//! | [`status`] | live counters shared by every process of a server, and their Prometheus text |
//! | [`rt`] | the coroutine runtime, and where every wait decides to park a coroutine or block a thread |
//! | `sys` | system calls (fork, fd passing, signals, locks, `accept` and its error rules); `unsafe` lives here and in the coroutine switch |
//!
//! ## Example: the comet server
//!
//! `GET /wait` blocks until some other request calls `GET /notify`; both answer the
//! number of waiters released. The same code serves under every model.
//!
//! ```no_run
//! use mixserve::http::{Http, Request, Response};
//! use mixserve::sync::Broadcast;
//! use mixserve::{Server, Threading};
//!
//! let news: Broadcast<usize> = Broadcast::new();
//! let app = move |req: &mut Request| match req.path() {
//!     "/wait" => match news.wait() {
//!         Ok(released) => Response::text(200, released.to_string()),
//!         Err(error) => Response::text(503, error.to_string()),
//!     },
//!     "/notify" => match news.send_count() {
//!         Ok(released) => Response::text(200, released.to_string()),
//!         Err(error) => Response::text(503, error.to_string()),
//!     },
//!     _ => Response::text(200, news.waiting().to_string()),
//! };
//! // Swap `Threading::new()` for `mixserve::Forking::new()`: nothing else changes.
//! let mut server = Server::builder(Threading::new())
//!     .bind("127.0.0.1:8000")
//!     .build(Http::new(app))?;
//! server.serve_forever()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(unsafe_code)]
#![deny(missing_docs, missing_debug_implementations)]

pub mod conn;
mod deadline;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod handler;
pub mod http;
pub mod mixin;
pub mod rt;
pub mod scgi;
pub mod server;
pub mod spec;
pub mod status;
pub mod sync;
mod sys;

pub use conn::{Conn, PeerAddr};
pub use handler::{Handled, Handler, MakeHandler};
pub use mixin::{Forking, Iterative, MixIn, Preforked, Prethreaded, Scheduled, Threading};
pub use server::{
    ConfigCheck, ConfigError, Context, Hooks, ListenAddr, Listener, Server, ServerBuilder,
    ShutdownHandle, StartError,
};

/// The README's code blocks, compiled as doc tests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
