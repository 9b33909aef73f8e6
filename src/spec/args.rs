//! [`ModelArgs`]: the model on the command line (feature `clap`).

use std::time::Duration;

use super::{ExtraModels, ModelSpec, SpecError};

/// Command-line options that choose the model; flatten them into your own parser.
///
/// ```
/// use clap::Parser;
/// use mixserve::spec::ModelArgs;
///
/// #[derive(Parser)]
/// struct Cli {
///     #[command(flatten)]
///     model: ModelArgs,
///     #[arg(long, default_value = "127.0.0.1:8000")]
///     addr: String,
/// }
///
/// let cli = Cli::parse_from(["app", "--mixin", "preforked", "--workers", "2"]);
/// let model = cli.model.build()?.mixin;
/// assert_eq!(model.name(), "preforked");
/// # Ok::<(), mixserve::spec::SpecError>(())
/// ```
///
/// `--mixin` also takes the compact form `preforked:workers=2,inner=scheduled`. Models
/// of the program's own join the choices of `--mixin` and `--inner` through
/// [`build_with`](ModelArgs::build_with).
#[derive(Debug, Clone, clap::Args)]
pub struct ModelArgs {
    /// The model: iterative, threading, forking, scheduled, preforked or prethreaded
    /// (optionally with options: `preforked:workers=8,inner=scheduled`), or one of the
    /// program's own.
    #[arg(long, default_value = "threading")]
    pub mixin: String,
    /// threading: most connection threads; forking: children; scheduled: live
    /// connections; preforked: the pool's growth limit; prethreaded: most threads.
    #[arg(long)]
    pub max_workers: Option<usize>,
    /// preforked: worker processes to start (default 4).
    #[arg(long)]
    pub workers: Option<usize>,
    /// preforked: shared, locked, locked-mutex, reuseport, passed, passed-round-robin or
    /// passed-least-busy (default shared); prethreaded: locked or handoff (default locked).
    #[arg(long)]
    pub accept: Option<String>,
    /// preforked: the model each worker runs — iterative (the default), threading,
    /// scheduled (up to 10 000 connections each), prethreaded, or one of the program's own.
    #[arg(long)]
    pub inner: Option<String>,
    /// preforked with --inner prethreaded: how its threads take connections, locked
    /// (the default) or handoff.
    #[arg(long)]
    pub inner_accept: Option<String>,
    /// prethreaded (also with preforked --inner prethreaded): threads to start
    /// (default 8); scheduled: loops, one thread each (default 1).
    #[arg(long)]
    pub threads: Option<usize>,
    /// scheduled (also with preforked --inner scheduled): each coroutine's stack
    /// (bytes, or 128k, 1m; default 64k).
    #[arg(long, value_parser = parse_stack_size)]
    pub stack_size: Option<usize>,
    /// preforked: kill a worker whose heartbeat is silent this many seconds.
    #[arg(long)]
    pub heartbeat_timeout: Option<u64>,
    /// preforked: retire a worker after this many connections (plus up to 10% jitter).
    #[arg(long)]
    pub max_requests: Option<u64>,
}

/// `--stack-size`: bytes, or with a `k`/`m` suffix.
fn parse_stack_size(text: &str) -> Result<usize, String> {
    super::parse_size(text)
        .ok_or_else(|| format!("{text:?} is not a size: write 65536, 128k or 1m"))
}

impl ModelArgs {
    /// The spec these options describe; flags override the compact form's options.
    /// It is checked as the compact form's `parse` checks it, so both refuse the same
    /// settings.
    ///
    /// # Errors
    ///
    /// [`SpecError`] for an unknown name, an option the model does not take, a value
    /// it does not know, or settings the model's own check refuses
    /// ([`SpecError::Config`]).
    pub fn spec(&self) -> Result<ModelSpec, SpecError> {
        self.merged()?.checked()
    }

    /// The compact form's options, overridden by the flags given; not yet checked.
    fn merged(&self) -> Result<ModelSpec, SpecError> {
        let mut spec = ModelSpec::parse_unchecked(&self.mixin)?;
        spec.max_workers = self.max_workers.or(spec.max_workers);
        spec.workers = self.workers.or(spec.workers);
        spec.accept = self.accept.clone().or(spec.accept);
        spec.inner = self.inner.clone().or(spec.inner);
        spec.inner_accept = self.inner_accept.clone().or(spec.inner_accept);
        spec.threads = self.threads.or(spec.threads);
        spec.stack_size = self.stack_size.or(spec.stack_size);
        spec.heartbeat_timeout = self
            .heartbeat_timeout
            .map(Duration::from_secs)
            .or(spec.heartbeat_timeout);
        spec.max_requests = self.max_requests.or(spec.max_requests);
        Ok(spec)
    }

    /// Builds the model these options describe; see [`ModelSpec::build`].
    ///
    /// # Errors
    ///
    /// As [`spec`](ModelArgs::spec).
    pub fn build(&self) -> Result<super::Model, SpecError> {
        self.merged()?.build()
    }

    /// Builds the model these options describe, where the names in `extra` are models
    /// too; see [`ModelSpec::build_with`].
    ///
    /// # Errors
    ///
    /// As [`spec`](ModelArgs::spec); an unknown name's error lists the names in `extra`.
    pub fn build_with(&self, extra: &ExtraModels) -> Result<super::Model, SpecError> {
        self.merged()?.build_with(extra)
    }
}
