//! [`ModelSpec`] to model: which options each model takes, and their values.

use std::net::ToSocketAddrs;

use super::{ModelSpec, SpecError};
use crate::mixin::{Accept, Dispatch, LockKind, PoolAccept, PoolStats};
use crate::{
    Forking, Iterative, Listener, MixIn, Preforked, Prethreaded, Scheduled, Server, ServerBuilder,
    Threading,
};

/// Live connections per worker when preforked workers run the scheduled model.
const INNER_SCHEDULED_CONNECTIONS: usize = 10_000;

/// Threads a prethreaded pool starts with when `threads` is not given.
pub(super) const PRETHREADED_THREADS: usize = 8;

/// A model built from a [`ModelSpec`].
pub struct Model {
    /// The model, ready for [`Server::builder`](crate::Server::builder).
    pub mixin: Box<dyn MixIn>,
    /// The per-worker statistics of a pool (preforked, prethreaded).
    pub stats: Option<PoolStats>,
    /// True when every worker binds its own `SO_REUSEPORT` listener: give the server a
    /// listener from [`Listener::bind_tcp_reuseport`](crate::Listener::bind_tcp_reuseport).
    pub reuse_port: bool,
}

impl Model {
    /// A server builder for this model listening on `addr`. With `accept=reuseport`
    /// the listener is bound with `SO_REUSEPORT`, as every worker binds its own.
    /// (Take [`stats`](Model::stats) out first if you want it.)
    pub fn server(self, addr: &str) -> ServerBuilder<Box<dyn MixIn>> {
        let builder = Server::builder(self.mixin);
        if !self.reuse_port {
            return builder.bind(addr);
        }
        let listener = addr
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next())
            .and_then(|addr| {
                let backlog = ServerBuilder::<Box<dyn MixIn>>::DEFAULT_BACKLOG;
                Listener::bind_tcp_reuseport(addr, backlog).ok()
            });
        match listener {
            Some(listener) => builder.listener(listener),
            // Let the builder bind and report the error at `build`.
            None => builder.bind(addr),
        }
    }
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("mixin", &self.mixin.name())
            .field("stats", &self.stats.is_some())
            .field("reuse_port", &self.reuse_port)
            .finish()
    }
}

/// Which models take each option (for the "only ..." hint).
const TAKERS: &[(&str, &str)] = &[
    (
        "max-workers",
        "threading, forking, scheduled, preforked and prethreaded",
    ),
    ("workers", "preforked"),
    ("accept", "preforked and prethreaded"),
    ("inner", "preforked"),
    ("threads", "prethreaded and scheduled"),
    ("stack-size", "scheduled"),
    ("heartbeat-timeout", "preforked"),
    ("max-requests", "preforked"),
];

pub(super) fn build(spec: &ModelSpec) -> Result<Model, SpecError> {
    let takes: &[&str] = match spec.model.as_str() {
        "iterative" => &[],
        "threading" | "forking" => &["max-workers"],
        "scheduled" => &["max-workers", "threads", "stack-size"],
        "preforked" => &[
            "max-workers",
            "workers",
            "accept",
            "inner",
            "heartbeat-timeout",
            "max-requests",
        ],
        "prethreaded" => &["max-workers", "accept", "threads"],
        other => return Err(SpecError::UnknownModel(other.to_owned())),
    };
    for option in given(spec) {
        if !takes.contains(&option) {
            let hint = TAKERS
                .iter()
                .find(|(name, _)| *name == option)
                .map(|(_, models)| format!(", only {models}"))
                .unwrap_or_default();
            return Err(SpecError::NotForModel {
                model: spec.model.clone(),
                option: option.to_owned(),
                hint,
            });
        }
    }
    let plain = |mixin: Box<dyn MixIn>| Model {
        mixin,
        stats: None,
        reuse_port: false,
    };
    Ok(match spec.model.as_str() {
        "iterative" => plain(Box::new(Iterative::new())),
        "threading" => plain(match spec.max_workers {
            Some(max) => Box::new(Threading::new().max_threads(max)),
            None => Box::new(Threading::new()),
        }),
        "forking" => plain(match spec.max_workers {
            Some(max) => Box::new(Forking::new().max_children(max)),
            None => Box::new(Forking::new()),
        }),
        "scheduled" => plain(Box::new(scheduled(spec)?)),
        "preforked" => preforked(spec)?,
        _ => prethreaded(spec)?,
    })
}

/// The options set in `spec`, by their names in the module docs.
fn given(spec: &ModelSpec) -> impl Iterator<Item = &'static str> {
    [
        ("max-workers", spec.max_workers.is_some()),
        ("workers", spec.workers.is_some()),
        ("accept", spec.accept.is_some()),
        ("inner", spec.inner.is_some()),
        ("threads", spec.threads.is_some()),
        ("stack-size", spec.stack_size.is_some()),
        ("heartbeat-timeout", spec.heartbeat_timeout.is_some()),
        ("max-requests", spec.max_requests.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
}

fn bad(spec: &ModelSpec, option: &str, value: &str, expected: &str) -> SpecError {
    SpecError::BadValue {
        model: spec.model.clone(),
        option: option.to_owned(),
        value: value.to_owned(),
        expected: expected.to_owned(),
    }
}

fn scheduled(spec: &ModelSpec) -> Result<Scheduled, SpecError> {
    let mut model = Scheduled::new();
    if let Some(max) = spec.max_workers {
        model = model.max_connections(max);
    }
    if let Some(threads) = spec.threads {
        model = model.threads(threads);
    }
    if let Some(bytes) = spec.stack_size {
        if bytes < Scheduled::MIN_STACK_SIZE {
            return Err(bad(
                spec,
                "stack-size",
                &bytes.to_string(),
                "at least 32k (a panic's backtrace needs about 32 KiB)",
            ));
        }
        model = model.stack_size(bytes);
    }
    Ok(model)
}

fn preforked(spec: &ModelSpec) -> Result<Model, SpecError> {
    let accept_name = spec.accept.as_deref().unwrap_or("shared");
    let accept = match accept_name {
        "shared" => Accept::Shared,
        "locked" => Accept::Locked(LockKind::File),
        "locked-mutex" => Accept::Locked(LockKind::SharedMutex),
        "reuseport" => Accept::ReusePort,
        "passed" => Accept::Passed(Dispatch::FirstReady),
        "passed-round-robin" => Accept::Passed(Dispatch::RoundRobin),
        "passed-least-busy" => Accept::Passed(Dispatch::LeastBusy),
        other => {
            return Err(bad(
                spec,
                "accept",
                other,
                "shared, locked, locked-mutex, reuseport, passed, passed-round-robin or passed-least-busy",
            ));
        }
    };
    // Any model but the process-based ones runs inside a worker.
    let inner: Box<dyn MixIn> = match spec.inner.as_deref().unwrap_or("iterative") {
        "iterative" => Box::new(Iterative::new()),
        "threading" => Box::new(Threading::new()),
        "scheduled" => Box::new(Scheduled::new().max_connections(INNER_SCHEDULED_CONNECTIONS)),
        "prethreaded" => Box::new(Prethreaded::new().threads(PRETHREADED_THREADS)),
        other => {
            return Err(bad(
                spec,
                "inner",
                other,
                "iterative, threading, scheduled or prethreaded",
            ));
        }
    };
    let mut model = Preforked::new()
        .accept(accept)
        .workers(spec.workers.unwrap_or(Preforked::DEFAULT_WORKERS))
        .max_workers(spec.max_workers.unwrap_or(Preforked::DEFAULT_MAX_WORKERS))
        .inner(inner);
    if let Some(timeout) = spec.heartbeat_timeout {
        model = model.heartbeat_timeout(timeout);
    }
    if let Some(max) = spec.max_requests {
        model = model.max_requests(max, max / 10);
    }
    let stats = model.stats();
    Ok(Model {
        mixin: Box::new(model),
        stats: Some(stats),
        reuse_port: accept_name == "reuseport",
    })
}

fn prethreaded(spec: &ModelSpec) -> Result<Model, SpecError> {
    let accept = match spec.accept.as_deref().unwrap_or("locked") {
        "locked" => PoolAccept::Locked,
        "handoff" => PoolAccept::Handoff,
        other => return Err(bad(spec, "accept", other, "locked or handoff")),
    };
    let model = Prethreaded::new()
        .threads(spec.threads.unwrap_or(PRETHREADED_THREADS))
        .accept(accept)
        .max_threads(spec.max_workers.unwrap_or(Prethreaded::DEFAULT_MAX_THREADS));
    let stats = model.stats();
    Ok(Model {
        mixin: Box::new(model),
        stats: Some(stats),
        reuse_port: false,
    })
}
