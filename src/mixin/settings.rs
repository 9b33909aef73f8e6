//! The one constructor style of every model: `X::new()` (and `X::default()`, the
//! same), then one method per setting that takes the model and gives it back:
//! `Threading::new().max_threads(64)`.

/// Writes a model's `Default` (as `new`) and its setting methods: each
/// `fn name(value: Type) { field = expression }` becomes
/// `pub fn name(mut self, value: Type) -> Model`.
macro_rules! settings {
    ($model:ident {
        $($(#[$doc:meta])* fn $name:ident($value:ident: $ty:ty) { $($field:ident).+ = $set:expr })*
    }) => {
        impl Default for $model {
            fn default() -> $model {
                $model::new()
            }
        }

        impl $model {
            $(
                $(#[$doc])*
                pub fn $name(mut self, $value: $ty) -> $model {
                    self.$($field).+ = $set;
                    self
                }
            )*
        }
    };
}

pub(crate) use settings;
