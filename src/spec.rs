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
//! # Names and options
//!
//! | model | options |
//! |---|---|
//! | `iterative` | — |
//! | `threading` | `max-workers` (threads) |
//! | `forking` | `max-workers` (children) |
//! | `scheduled` | `max-workers` (live connections), `threads` (loops), `stack-size` (bytes per coroutine; `128k`, `1m`) |
//! | `preforked` | `workers`, `max-workers`, `accept` (`shared`, `locked`, `locked-mutex`, `reuseport`, `passed`, `passed-round-robin`, `passed-least-busy`), `inner` (`iterative`, `threading`, `scheduled`, `prethreaded`), `heartbeat-timeout` (seconds), `max-requests` |
//! | `prethreaded` | `threads`, `max-workers`, `accept` (`locked`, `handoff`) |
//!
//! An option the chosen model does not take is an error, not silently ignored.

#[cfg(feature = "clap")]
mod args;
mod build;

use std::str::FromStr;
use std::time::Duration;

#[cfg(feature = "clap")]
pub use args::ModelArgs;
pub use build::Model;

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
    /// preforked: how each worker serves (`iterative`, `threading`, `scheduled`).
    pub inner: Option<String>,
    /// prethreaded: threads to start; scheduled: loops (one thread each).
    pub threads: Option<usize>,
    /// scheduled: each coroutine's stack, in bytes.
    pub stack_size: Option<usize>,
    /// preforked: kill a worker whose heartbeat is silent this long.
    pub heartbeat_timeout: Option<Duration>,
    /// preforked: retire a worker after this many connections (plus up to 10% jitter).
    pub max_requests: Option<u64>,
}

/// A model name or option that does not make a model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// The name is not one of [`MODEL_NAMES`].
    #[error(
        "unknown model {0:?}: choose iterative, threading, forking, scheduled, preforked or prethreaded"
    )]
    UnknownModel(String),
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

    /// Sets `threads` (prethreaded, scheduled).
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
        build::build(self)
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
            "heartbeat-timeout" => self.heartbeat_timeout = Some(Duration::from_secs(number()?)),
            "max-requests" => self.max_requests = Some(number()?),
            _ => {
                return Err(SpecError::NotForModel {
                    model: self.model.clone(),
                    option: option.to_owned(),
                    hint: String::new(),
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
        let spec = ModelSpec::parse_unchecked(text)?;
        spec.build()?;
        Ok(spec)
    }
}

impl ModelSpec {
    /// Parses `name[:option=value,...]` without checking that the options fit the model.
    pub(crate) fn parse_unchecked(text: &str) -> Result<ModelSpec, SpecError> {
        let (name, options) = text.split_once(':').unwrap_or((text, ""));
        let name = name.trim();
        if !MODEL_NAMES.contains(&name) {
            return Err(SpecError::UnknownModel(name.to_owned()));
        }
        let mut spec = ModelSpec::new(name);
        for option in options.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            let (key, value) = option.split_once('=').ok_or_else(|| SpecError::BadValue {
                model: name.to_owned(),
                option: option.to_owned(),
                value: String::new(),
                expected: "option=value".to_owned(),
            })?;
            spec.set(key.trim(), value.trim())?;
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
mod tests {
    use super::*;

    #[test]
    fn every_name_builds_with_its_defaults() {
        for name in MODEL_NAMES {
            let model = ModelSpec::new(*name).build().unwrap();
            assert_eq!(model.mixin.name(), *name);
        }
    }

    #[test]
    fn options_parse() {
        let spec: ModelSpec = "preforked: workers=3, inner=scheduled, accept=passed"
            .parse()
            .unwrap();
        assert_eq!(spec.workers, Some(3));
        assert_eq!(spec.inner.as_deref(), Some("scheduled"));
        assert!(spec.build().unwrap().stats.is_some());
        let spec: ModelSpec = "scheduled:stack-size=256k,threads=2".parse().unwrap();
        assert_eq!(spec.stack_size, Some(256 * 1024));
        assert!(
            "scheduled:stack-size=1k".parse::<ModelSpec>().is_err(),
            "below the minimum"
        );
        let spec: ModelSpec = "preforked:accept=reuseport".parse().unwrap();
        assert!(spec.build().unwrap().reuse_port);
    }

    #[test]
    fn errors_name_the_problem() {
        let error = "fork".parse::<ModelSpec>().unwrap_err();
        assert!(error.to_string().contains("choose iterative"), "{error}");
        let error = "threading:threads=4".parse::<ModelSpec>().unwrap_err();
        assert!(error.to_string().contains("only prethreaded"), "{error}");
        let error = "preforked:inner=forking".parse::<ModelSpec>().unwrap_err();
        assert!(
            error
                .to_string()
                .contains("iterative, threading, scheduled or prethreaded"),
            "{error}"
        );
        let error = "scheduled:max-workers=lots"
            .parse::<ModelSpec>()
            .unwrap_err();
        assert!(error.to_string().contains("whole number"), "{error}");
        assert!("prethreaded:accept=shared".parse::<ModelSpec>().is_err());
        assert!("iterative:colour=blue".parse::<ModelSpec>().is_err());
    }
}
