//! [`ModelSpec`] to model: which options each model takes, and their values.

use super::extra::one_of;
use super::{ExtraModels, MODEL_NAMES, ModelSpec, SpecError};
use crate::mixin::{Accept, Dispatch, LockKind, PoolAccept, PoolStats};
use crate::{
    Forking, Iterative, MixIn, Preforked, Prethreaded, Scheduled, Server, ServerBuilder, Threading,
};

/// Live connections per worker when preforked workers run the scheduled model.
pub(super) const INNER_SCHEDULED_CONNECTIONS: usize = 10_000;

/// Threads a prethreaded pool starts with when `threads` is not given.
pub(super) const PRETHREADED_THREADS: usize = 8;

/// A model built from a [`ModelSpec`].
pub struct Model {
    /// The model, ready for [`Server::builder`](crate::Server::builder).
    pub mixin: Box<dyn MixIn>,
    /// The per-worker statistics of a pool (preforked, prethreaded).
    pub stats: Option<PoolStats>,
    /// True when every worker binds its own `SO_REUSEPORT` listener: bind the server's
    /// with [`ServerBuilder::reuse_port`] (as [`server`](Model::server) does).
    pub reuse_port: bool,
}

impl Model {
    /// A server builder for this model listening on `addr`. With `accept=reuseport`
    /// the listener is bound with `SO_REUSEPORT` ([`ServerBuilder::reuse_port`]), as
    /// every worker binds its own; a failed bind is reported by `build`, naming the
    /// address. (Take [`stats`](Model::stats) out first if you want it.)
    pub fn server(self, addr: &str) -> ServerBuilder<Box<dyn MixIn>> {
        Server::builder(self.mixin)
            .bind(addr)
            .reuse_port(self.reuse_port)
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

/// Every option, and which models take it (for the "only ..." hint).
pub(super) const TAKERS: &[(&str, &str)] = &[
    (
        "max-workers",
        "threading, forking, scheduled, preforked and prethreaded",
    ),
    ("workers", "preforked"),
    ("accept", "preforked and prethreaded"),
    ("inner", "preforked"),
    ("inner-accept", "preforked"),
    ("threads", "prethreaded, scheduled and preforked"),
    ("stack-size", "scheduled and preforked"),
    ("heartbeat-timeout", "preforked"),
    ("max-requests", "preforked"),
];

/// The options preforked hands to its inner model, and the inner model that takes each.
const INNER_TAKERS: &[(&str, &str)] = &[
    ("inner-accept", "prethreaded"),
    ("threads", "prethreaded"),
    ("stack-size", "scheduled"),
];

/// The built-in models a preforked worker can run.
const INNER_NAMES: &[&str] = &["iterative", "threading", "scheduled", "prethreaded"];

pub(super) fn build(spec: &ModelSpec, extra: &ExtraModels) -> Result<Model, SpecError> {
    let takes: &[&str] = match spec.model.as_str() {
        "iterative" => &[],
        "threading" | "forking" => &["max-workers"],
        "scheduled" => &["max-workers", "threads", "stack-size"],
        "preforked" => &[
            "max-workers",
            "workers",
            "accept",
            "inner",
            "inner-accept",
            "threads",
            "stack-size",
            "heartbeat-timeout",
            "max-requests",
        ],
        "prethreaded" => &["max-workers", "accept", "threads"],
        name if extra.names().any(|known| known == name) => &[],
        _ => return Err(unknown_model(spec, extra)),
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
        "preforked" => preforked(spec, extra)?,
        "prethreaded" => prethreaded(spec)?,
        name => plain(extra.make(name).ok_or_else(|| unknown_model(spec, extra))?),
    })
}

fn unknown_model(spec: &ModelSpec, extra: &ExtraModels) -> SpecError {
    SpecError::UnknownModel {
        name: spec.model.clone(),
        choices: one_of(MODEL_NAMES.iter().copied().chain(extra.names())),
    }
}

/// The options set in `spec`, by their names in the module docs.
fn given(spec: &ModelSpec) -> impl Iterator<Item = &'static str> {
    [
        ("max-workers", spec.max_workers.is_some()),
        ("workers", spec.workers.is_some()),
        ("accept", spec.accept.is_some()),
        ("inner", spec.inner.is_some()),
        ("inner-accept", spec.inner_accept.is_some()),
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
    with_stack_size(spec, model)
}

/// `model` with the spec's `stack-size`, if one is given.
fn with_stack_size(spec: &ModelSpec, model: Scheduled) -> Result<Scheduled, SpecError> {
    match spec.stack_size {
        None => Ok(model),
        Some(bytes) if (Scheduled::MIN_STACK_SIZE..=Scheduled::MAX_STACK_SIZE).contains(&bytes) => {
            Ok(model.stack_size(bytes))
        }
        Some(bytes) => Err(bad(
            spec,
            "stack-size",
            &bytes.to_string(),
            "from 32k (a panic's backtrace needs about 32 KiB) to 256m",
        )),
    }
}

fn preforked(spec: &ModelSpec, extra: &ExtraModels) -> Result<Model, SpecError> {
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
    let inner = inner(spec, extra)?;
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

/// Preforked's inner model: any model but the process-based ones, or an extra one.
pub(super) fn inner(spec: &ModelSpec, extra: &ExtraModels) -> Result<Box<dyn MixIn>, SpecError> {
    let name = spec.inner.as_deref().unwrap_or("iterative");
    let known = INNER_NAMES.contains(&name) || extra.names().any(|known| known == name);
    if !known {
        let choices = one_of(INNER_NAMES.iter().copied().chain(extra.names()));
        return Err(bad(spec, "inner", name, &choices));
    }
    for option in given(spec) {
        let taker = INNER_TAKERS.iter().find(|(known, _)| *known == option);
        if let Some((_, taker)) = taker.filter(|(_, taker)| *taker != name) {
            return Err(SpecError::NotForInner {
                inner: name.to_owned(),
                option: option.to_owned(),
                hint: format!(", only with inner={taker}"),
            });
        }
    }
    Ok(match name {
        "iterative" => Box::new(Iterative::new()),
        "threading" => Box::new(Threading::new()),
        "scheduled" => Box::new(with_stack_size(
            spec,
            Scheduled::new().max_connections(INNER_SCHEDULED_CONNECTIONS),
        )?),
        "prethreaded" => Box::new(prethreaded_pool(
            spec,
            ("inner-accept", &spec.inner_accept),
            None,
        )?),
        name => extra
            .make(name)
            .ok_or_else(|| bad(spec, "inner", name, "a known model"))?,
    })
}

fn prethreaded(spec: &ModelSpec) -> Result<Model, SpecError> {
    let model = prethreaded_pool(spec, ("accept", &spec.accept), spec.max_workers)?;
    let stats = model.stats();
    Ok(Model {
        mixin: Box::new(model),
        stats: Some(stats),
        reuse_port: false,
    })
}

/// A prethreaded pool with the spec's `threads`, accepting as the option `accept`
/// names (`accept` at the top, `inner-accept` inside a preforked worker) says. Without
/// `max_threads` the pool may grow to the default limit, or to `threads` if that is
/// more: inside a preforked worker no option sets the limit, so a fixed default would
/// refuse `threads` above it with an error naming a setting the user cannot change.
pub(super) fn prethreaded_pool(
    spec: &ModelSpec,
    (option, accept): (&str, &Option<String>),
    max_threads: Option<usize>,
) -> Result<Prethreaded, SpecError> {
    let accept = match accept.as_deref() {
        None | Some("locked") => PoolAccept::Locked,
        Some("handoff") => PoolAccept::Handoff,
        Some(other) => return Err(bad(spec, option, other, "locked or handoff")),
    };
    let threads = spec.threads.unwrap_or(PRETHREADED_THREADS);
    let max_threads = max_threads.unwrap_or(threads.max(Prethreaded::DEFAULT_MAX_THREADS));
    Ok(Prethreaded::new()
        .threads(threads)
        .accept(accept)
        .max_threads(max_threads))
}
