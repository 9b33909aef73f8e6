//! [`StartError`]: why a server could not start.

use std::io;

/// A configuration or start-up failure, reported by [`ServerBuilder::build`](crate::ServerBuilder::build).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration is invalid (which setting of which part, and why).
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// No address was given to bind.
    #[error("no address to listen on: call bind, bind_unix or listener")]
    NoAddress,
    /// The address could not be resolved.
    #[error("cannot resolve {addr:?}: {source}")]
    Resolve {
        /// The address as given.
        addr: String,
        /// Why.
        source: io::Error,
    },
    /// Binding or listening failed (address in use, permission denied …).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        source: io::Error,
    },
    /// Another system call failed at start-up.
    #[error("start-up failed: {0}")]
    Io(#[from] io::Error),
}

/// A setting refused at start-up: which part of the server (`"threading"`,
/// `"preforked"`, `"server"`), which setting, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{part}: {setting} {problem}")]
pub struct ConfigError {
    /// The model's [`name`](crate::MixIn::name), or `"server"` for the builder's own.
    pub part: &'static str,
    /// The setting (`"max_threads"`).
    pub setting: &'static str,
    /// What is wrong (`"must be at least 1"`).
    pub problem: String,
}

impl ConfigError {
    /// A refusal of `setting` of `part`.
    pub fn new(
        part: &'static str,
        setting: &'static str,
        problem: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            part,
            setting,
            problem: problem.into(),
        }
    }
}

/// Checks the settings of one part of the server (named as in [`ConfigError::part`]),
/// each refusal a [`ConfigError`]: `ConfigCheck("threading").at_least("max_threads", n, 1)?`.
#[derive(Debug, Clone, Copy)]
pub struct ConfigCheck(pub &'static str);

impl ConfigCheck {
    /// `Ok` when `value` lies in `range`.
    pub fn within(
        self,
        setting: &'static str,
        value: usize,
        range: std::ops::RangeInclusive<usize>,
    ) -> Result<(), ConfigError> {
        let (low, high) = (*range.start(), *range.end());
        let problem = format!("is {value}, must be from {low} to {high}");
        self.require(setting, range.contains(&value), problem)
    }

    /// `Ok` when `value` is at least `low`.
    pub fn at_least(
        self,
        setting: &'static str,
        value: usize,
        low: usize,
    ) -> Result<(), ConfigError> {
        let problem = format!("is {value}, must be at least {low}");
        self.require(setting, value >= low, problem)
    }

    /// `Ok` when `holds`, else `problem`.
    pub fn require(
        self,
        setting: &'static str,
        holds: bool,
        problem: impl Into<String>,
    ) -> Result<(), ConfigError> {
        match holds {
            true => Ok(()),
            false => Err(ConfigError::new(self.0, setting, problem)),
        }
    }
}
