//! [`ExtraModels`]: models of the program's own, chosen by name beside the built-in ones.

use super::MODEL_NAMES;
use crate::MixIn;

/// Makes one model of the program's own each time the spec is built.
type MakeModel = Box<dyn Fn() -> Box<dyn MixIn> + Send + Sync>;

/// Models the program defines itself, each under a name that [`ModelSpec`](super::ModelSpec)
/// then accepts as the model (`--mixin NAME`) or as preforked's inner model
/// (`inner=NAME`, `--inner NAME`); errors that list the choices list these names too.
///
/// An extra model takes no options: its constructor decides everything.
///
/// ```
/// use std::io;
/// use std::sync::Arc;
/// use mixserve::spec::{ExtraModels, ModelSpec};
/// use mixserve::{Conn, Context, MixIn};
///
/// /// Serves each connection inline, as `Iterative` does.
/// struct Inline;
///
/// impl MixIn for Inline {
///     fn name(&self) -> &'static str {
///         "inline"
///     }
///     fn process_request(&mut self, ctx: &Arc<Context>, conn: Conn) -> io::Result<()> {
///         ctx.finish_request(conn);
///         Ok(())
///     }
/// }
///
/// let extra = ExtraModels::new().with("inline", || Inline);
/// let spec: ModelSpec = ModelSpec::new("preforked").inner("inline");
/// assert_eq!(spec.build_with(&extra)?.mixin.name(), "preforked");
/// assert_eq!(ModelSpec::new("inline").build_with(&extra)?.mixin.name(), "inline");
///
/// // Without the registry the name is unknown, and the error lists the choices.
/// let error = spec.build().unwrap_err().to_string();
/// assert!(error.contains("iterative, threading, scheduled or prethreaded"), "{error}");
/// let error = ModelSpec::new("preforked").inner("other").build_with(&extra);
/// assert!(error.unwrap_err().to_string().contains("prethreaded or inline"));
/// # Ok::<(), mixserve::spec::SpecError>(())
/// ```
#[derive(Default)]
pub struct ExtraModels {
    /// Name and constructor, in the order given.
    models: Vec<(String, MakeModel)>,
}

impl ExtraModels {
    /// No extra models: [`ModelSpec::build_with`](super::ModelSpec::build_with) with
    /// this is [`ModelSpec::build`](super::ModelSpec::build).
    pub fn new() -> ExtraModels {
        ExtraModels::default()
    }

    /// Adds the model `make` builds, under `name`. A later `with` of the same name
    /// replaces the earlier one.
    ///
    /// # Panics
    ///
    /// When the extra model could never be chosen: if `name` is one of the built-in
    /// [`MODEL_NAMES`] (those always mean the built-in model), or a name the compact
    /// form (`--mixin NAME:...`, `inner=NAME`) cannot carry — empty, with a `:` or `,`,
    /// or with white space at either end. Both are mistakes in the program, not in its
    /// input: the names are the program's own.
    pub fn with<M, F>(mut self, name: impl Into<String>, make: F) -> ExtraModels
    where
        M: MixIn,
        F: Fn() -> M + Send + Sync + 'static,
    {
        let name = name.into();
        assert!(
            !MODEL_NAMES.contains(&name.as_str()),
            "ExtraModels::with: {name:?} is a built-in model's name; choose another"
        );
        assert!(
            !name.is_empty() && !name.contains([':', ',']) && name.trim() == name,
            "ExtraModels::with: {name:?} cannot be chosen by name (empty, a ':' or ',', \
             or white space at an end); choose another"
        );
        self.models.retain(|(known, _)| *known != name);
        self.models
            .push((name, Box::new(move || Box::new(make()) as Box<dyn MixIn>)));
        self
    }

    /// The names added, in the order given.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.models.iter().map(|(name, _)| name.as_str())
    }

    /// A new model named `name`, if one was added under that name.
    pub(super) fn make(&self, name: &str) -> Option<Box<dyn MixIn>> {
        let (_, make) = self.models.iter().find(|(known, _)| known == name)?;
        Some(make())
    }
}

impl std::fmt::Debug for ExtraModels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

/// `a, b or c`: the choices as a sentence ends them.
pub(super) fn one_of<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.into_iter().collect();
    match names.split_last() {
        None => String::new(),
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}
