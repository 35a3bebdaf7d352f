//! CRI-O-compatible configuration: `crio.conf` + `crio.conf.d` drop-ins, validated,
//! every problem reported with its file, line and key.

mod crio_keys;
mod error;
mod live;
mod load;
mod model;
mod origin;
mod validate;
mod validate_node;
pub(crate) mod watch;

pub use error::{ConfigError, Problem};
pub use live::LiveConfig;
pub use load::{load, Loaded, Overrides, Sources};
pub use model::*;
pub use origin::{Origin, Origins};

impl Config {
    /// The merged configuration as TOML, as `crio config` prints it.
    pub fn to_toml(&self) -> String {
        // Plain structs of strings, numbers, lists and maps always serialize.
        toml::to_string_pretty(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests;
