//! Choosing the model by name: [`ModelSpec`] turns `"preforked:workers=8,inner=scheduled"`
//! (or the fields of a command line) into a boxed [`MixIn`](crate::MixIn), with errors that list the
//! choices.
//!
//! ```
//! use mixserve::spec::ModelSpec;
//! use mixserve::{Server, http::{Http, Response}};
//!
//! let spec: ModelSpec = "threading:max-workers=64".parse()?;
//! let server = Server::builder(spec.into_mixin()?)
//!     .bind("127.0.0.1:0")
//!     .build(Http::new(|_req: &mut mixserve::http::Request| Response::text(200, "hi\n")))?;
//! # drop(server);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! With the `clap` feature, `ModelArgs` puts the same choices on a command line
//! (`--mixin preforked --workers 8 --inner scheduled`).
//!
//! A model of the program's own joins the choices through [`ExtraModels`]: under its
//! name it is a model (`--mixin NAME`) or preforked's inner model (`inner=NAME`).
//!
//! # Names and options
//!
//! | model | options |
//! |---|---|
//! | `iterative` | — |
//! | `threading` | `max-workers` (threads) |
//! | `forking` | `max-workers` (children) |
//! | `scheduled` | `max-workers` (live connections), `threads` (loops), `stack-size` (bytes per coroutine; `128k`, `1m`) |
//! | `preforked` | `workers`, `max-workers`, `accept` (`shared`, `locked`, `locked-mutex`, `reuseport`, `passed`, `passed-round-robin`, `passed-least-busy`), `inner` (`iterative`, `threading`, `scheduled`, `prethreaded`, or an [extra](ExtraModels) name), `heartbeat-timeout` (seconds), `max-requests`; for the inner model: `threads` and `inner-accept` (`locked`, `handoff`) with `inner=prethreaded`, `stack-size` with `inner=scheduled` |
//! | `prethreaded` | `threads`, `max-workers`, `accept` (`locked`, `handoff`) |
//!
//! An option the chosen model does not take is an error, not silently ignored.
//! Preforked workers running `inner=scheduled` hold up to 10 000 connections each.

#[cfg(feature = "clap")]
mod args;
mod build;
mod extra;

use std::str::FromStr;
use std::time::Duration;

#[cfg(feature = "clap")]
pub use args::ModelArgs;
pub use build::Model;
pub use extra::ExtraModels;

/// The model names [`ModelSpec`] knows, in the order the docs list them.
pub const MODEL_NAMES: &[&str] = &[
    "iterative",
    "threading",
    "forking",
    "scheduled",
    "preforked",
    "prethreaded",
];

/// A model chosen by name, plus its options; [`into_mixin`](ModelSpec::into_mixin) builds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpec {
    /// One of [`MODEL_NAMES`].
    pub model: String,
    /// threading: most connection threads; forking: children; scheduled: live
    /// connections; preforked: the pool's growth limit; prethreaded: most threads.
    pub max_workers: Option<usize>,
    /// preforked: worker processes to start.
    pub workers: Option<usize>,
    /// preforked and prethreaded: how connections are accepted (see the module docs).
    pub accept: Option<String>,
    /// preforked: how each worker serves (`iterative`, `threading`, `scheduled`,
    /// `prethreaded`, or a name from [`ExtraModels`]).
    pub inner: Option<String>,
    /// preforked with `inner=prethreaded`: how the worker's threads take connections
    /// (`locked`, `handoff`).
    pub inner_accept: Option<String>,
    /// prethreaded (also as preforked's inner model): threads to start; scheduled:
    /// loops (one thread each).
    pub threads: Option<usize>,
    /// scheduled (also as preforked's inner model): each coroutine's stack, in bytes.
    pub stack_size: Option<usize>,
    /// preforked: kill a worker whose heartbeat is silent this long.
    pub heartbeat_timeout: Option<Duration>,
    /// preforked: retire a worker after this many connections (plus up to 10% jitter).
    pub max_requests: Option<u64>,
}

/// A model name or option that does not make a model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// The name is not one of [`MODEL_NAMES`] nor an [extra](ExtraModels) one.
    #[error("unknown model {name:?}: choose {choices}")]
    UnknownModel {
        /// The name given.
        name: String,
        /// The names known, as "a, b or c".
        choices: String,
    },
    /// An option no model takes.
    #[error("unknown option {option:?}: choose {choices}")]
    UnknownOption {
        /// The option given.
        option: String,
        /// Every option, as "a, b or c".
        choices: String,
    },
    /// An option the model does not take.
    #[error("the {model} model takes no option {option:?}{hint}")]
    NotForModel {
        /// The chosen model.
        model: String,
        /// The option given.
        option: String,
        /// Which models take it, as ", only ..." (may be empty).
        hint: String,
    },
    /// An option for preforked's inner model that this inner model does not take.
    #[error("preforked: inner={inner} takes no option {option:?}{hint}")]
    NotForInner {
        /// The inner model.
        inner: String,
        /// The option given.
        option: String,
        /// Which inner models take it, as ", only with inner=..." (may be empty).
        hint: String,
    },
    /// An option given twice.
    #[error("{model}: option {option:?} is given twice")]
    Repeated {
        /// The chosen model.
        model: String,
        /// The option given twice.
        option: String,
    },
    /// The options build a model its own check refuses (a value out of range, or
    /// settings that do not fit together), as `Server::build` would at start-up.
    #[error(transparent)]
    Config(#[from] crate::server::ConfigError),
    /// An option's value is not one the model knows.
    #[error("{model}: bad {option} {value:?}: {expected}")]
    BadValue {
        /// The chosen model.
        model: String,
        /// The option.
        option: String,
        /// The value given.
        value: String,
        /// What would be accepted.
        expected: String,
    },
}

impl ModelSpec {
    /// A spec for `model` with no options (each model's defaults).
    pub fn new(model: impl Into<String>) -> ModelSpec {
        ModelSpec {
            model: model.into(),
            max_workers: None,
            workers: None,
            accept: None,
            inner: None,
            inner_accept: None,
            threads: None,
            stack_size: None,
            heartbeat_timeout: None,
            max_requests: None,
        }
    }

    /// Sets `max-workers`.
    pub fn max_workers(mut self, max: usize) -> ModelSpec {
        self.max_workers = Some(max);
        self
    }

    /// Sets `workers` (preforked).
    pub fn workers(mut self, workers: usize) -> ModelSpec {
        self.workers = Some(workers);
        self
    }

    /// Sets `accept` (preforked, prethreaded).
    pub fn accept(mut self, accept: impl Into<String>) -> ModelSpec {
        self.accept = Some(accept.into());
        self
    }

    /// Sets `inner` (preforked).
    pub fn inner(mut self, inner: impl Into<String>) -> ModelSpec {
        self.inner = Some(inner.into());
        self
    }

    /// Sets `inner-accept` (preforked with `inner=prethreaded`).
    pub fn inner_accept(mut self, accept: impl Into<String>) -> ModelSpec {
        self.inner_accept = Some(accept.into());
        self
    }

    /// Sets `heartbeat-timeout` (preforked).
    pub fn heartbeat_timeout(mut self, timeout: Duration) -> ModelSpec {
        self.heartbeat_timeout = Some(timeout);
        self
    }

    /// Sets `max-requests` (preforked).
    pub fn max_requests(mut self, max: u64) -> ModelSpec {
        self.max_requests = Some(max);
        self
    }

    /// Sets `threads` (prethreaded, scheduled, preforked with `inner=prethreaded`).
    pub fn threads(mut self, threads: usize) -> ModelSpec {
        self.threads = Some(threads);
        self
    }

    /// Sets `stack-size` in bytes (scheduled).
    pub fn stack_size(mut self, bytes: usize) -> ModelSpec {
        self.stack_size = Some(bytes);
        self
    }

    /// Builds the model.
    ///
    /// # Errors
    ///
    /// [`SpecError`] for an unknown name, an option the model does not take, or a value
    /// it does not know.
    pub fn into_mixin(&self) -> Result<Box<dyn crate::MixIn>, SpecError> {
        self.build().map(|model| model.mixin)
    }

    /// Builds the model, with its statistics handle and listener needs; see [`Model`].
    ///
    /// # Errors
    ///
    /// As [`into_mixin`](ModelSpec::into_mixin).
    pub fn build(&self) -> Result<Model, SpecError> {
        build::build(self, &ExtraModels::new())
    }

    /// Builds the model, where the names in `extra` are models too (as the model, or
    /// as preforked's inner model); see [`ExtraModels`].
    ///
    /// # Errors
    ///
    /// As [`into_mixin`](ModelSpec::into_mixin); an unknown name's error lists the
    /// names in `extra` among the choices.
    pub fn build_with(&self, extra: &ExtraModels) -> Result<Model, SpecError> {
        build::build(self, extra)
    }

    /// Sets one option by its name in the module docs (`max-workers`, `workers`, ...).
    fn set(&mut self, option: &str, value: &str) -> Result<(), SpecError> {
        let bad = |expected: &str| SpecError::BadValue {
            model: self.model.clone(),
            option: option.to_owned(),
            value: value.to_owned(),
            expected: expected.to_owned(),
        };
        let number = || value.parse::<u64>().map_err(|_| bad("a whole number"));
        let count = || value.parse::<usize>().map_err(|_| bad("a whole number"));
        match option {
            "max-workers" => self.max_workers = Some(count()?),
            "workers" => self.workers = Some(count()?),
            "threads" => self.threads = Some(count()?),
            "stack-size" => {
                self.stack_size = Some(parse_size(value).ok_or_else(|| bad("bytes, or 128k, 1m"))?);
            }
            "accept" => self.accept = Some(value.to_owned()),
            "inner" => self.inner = Some(value.to_owned()),
            "inner-accept" => self.inner_accept = Some(value.to_owned()),
            "heartbeat-timeout" => self.heartbeat_timeout = Some(Duration::from_secs(number()?)),
            "max-requests" => self.max_requests = Some(number()?),
            _ => {
                return Err(SpecError::UnknownOption {
                    option: option.to_owned(),
                    choices: extra::one_of(build::TAKERS.iter().map(|(name, _)| *name)),
                });
            }
        }
        Ok(())
    }
}

/// Parses `name` or `name:option=value,option=value`.
impl FromStr for ModelSpec {
    type Err = SpecError;

    fn from_str(text: &str) -> Result<ModelSpec, SpecError> {
        ModelSpec::parse_unchecked(text)?.checked()
    }
}

impl ModelSpec {
    /// This spec, once it builds and the model's own check passes: a spec read from
    /// configuration (text or a command line) fails here, with the setting named, not
    /// when the server starts.
    pub(crate) fn checked(self) -> Result<ModelSpec, SpecError> {
        self.build()?.mixin.validate()?;
        Ok(self)
    }

    /// Parses `name[:option=value,...]` without checking that the name is known or
    /// that the options fit the model (building checks both).
    pub(crate) fn parse_unchecked(text: &str) -> Result<ModelSpec, SpecError> {
        let (name, options) = text.split_once(':').unwrap_or((text, ""));
        let name = name.trim();
        let mut spec = ModelSpec::new(name);
        let mut seen: Vec<&str> = Vec::new();
        for option in options.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            let (key, value) = option.split_once('=').ok_or_else(|| SpecError::BadValue {
                model: name.to_owned(),
                option: option.to_owned(),
                value: String::new(),
                expected: "option=value".to_owned(),
            })?;
            let key = key.trim();
            // Given twice, one value would silently win over the other.
            if seen.contains(&key) {
                return Err(SpecError::Repeated {
                    model: name.to_owned(),
                    option: key.to_owned(),
                });
            }
            seen.push(key);
            spec.set(key, value.trim())?;
        }
        Ok(spec)
    }
}

/// Parses `65536`, `64k` or `1m` (binary units, any case).
pub(crate) fn parse_size(text: &str) -> Option<usize> {
    let text = text.trim().to_ascii_lowercase();
    let (digits, unit) = match text.strip_suffix('k') {
        Some(digits) => (digits, 1024),
        None => match text.strip_suffix('m') {
            Some(digits) => (digits, 1024 * 1024),
            None => (text.as_str(), 1),
        },
    };
    digits.parse::<usize>().ok()?.checked_mul(unit)
}

#[cfg(test)]
mod tests;
