//! containers-registries.conf(5), version 2: where images come from.
//!
//! The main file and the `*.conf` drop-ins of its directory are merged as
//! containers/image (`sysregistriesv2`) merges them, then answer two questions:
//! which fully qualified names a short name stands for ([`RegistriesConf::resolve_short_name`]),
//! and which endpoints (mirrors, then the registry's location) to pull a name from
//! ([`RegistriesConf::pull_sources`]). [`RegistriesWatcher`] reloads the files when
//! they change, so edits apply without restarting the daemon, as in CRI-O.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::reference::{valid_component, valid_registry, ImageName, ParsedName, DOCKER_HUB};

mod file;
mod resolve;
#[cfg(test)]
mod tests;
mod watch;

use file::{config_files, load_file, paths_from, FileConf};
pub(crate) use watch::RegistriesWatcher;

/// containers/image's built-in locations (Linux).
const DEFAULT_FILE: &str = "/etc/containers/registries.conf";
const DEFAULT_DIR: &str = "/etc/containers/registries.conf.d";
/// Overrides the main file (not the drop-in directory), as in Podman and CRI-O.
const ENV_FILE: &str = "CONTAINERS_REGISTRIES_CONF";

/// How short names may be resolved. Recorded for callers; a daemon has no terminal
/// to prompt on, so resolution itself does not depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ShortNameMode {
    Enforcing,
    Permissive,
    Disabled,
}

/// When a mirror may be used (`pull-from-mirror`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum PullFromMirror {
    #[default]
    All,
    DigestOnly,
    TagOnly,
}

/// A `[[registry.mirror]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mirror {
    pub location: String,
    pub insecure: bool,
    pub pull_from_mirror: PullFromMirror,
}

/// A `[[registry]]`, after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Registry {
    /// `host[/path]` or `*.domain`; defaults to the location.
    pub prefix: String,
    /// Empty only for a wildcard prefix: names are then pulled as they are.
    pub location: String,
    pub insecure: bool,
    pub blocked: bool,
    pub mirror_by_digest_only: bool,
    pub mirrors: Vec<Mirror>,
    /// The file that defined it, for messages.
    pub file: PathBuf,
}

/// An `[aliases]` entry; `None` when a later file reset it with `""`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Alias {
    target: Option<ImageName>,
    file: PathBuf,
}

/// The merged configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RegistriesConf {
    /// By prefix: one entry per prefix, as after containers/image's merge.
    registries: BTreeMap<String, Registry>,
    search: Vec<String>,
    short_name_mode: Option<ShortNameMode>,
    aliases: BTreeMap<String, Alias>,
    files: Vec<PathBuf>,
}

/// One place to pull a name from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PullSource {
    /// The name rewritten to the endpoint.
    pub name: ImageName,
    /// Skip TLS verification and allow plain HTTP.
    pub insecure: bool,
    /// A mirror rather than the registry's own location.
    pub mirror: bool,
}

/// Why the configuration cannot be used, or a name cannot be pulled.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RegistriesError {
    #[error("cannot read registries config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("registries config {path}:{line}: invalid TOML: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("registries config {path}: key {key}: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error("registries config {path} is in the v1 format ([registries.search], [registries.insecure], [registries.block]), which is not supported: use unqualified-search-registries and [[registry]] tables as containers-registries.conf(5) describes")]
    V1 { path: PathBuf },
    #[error("image {image} is blocked: [[registry]] with prefix {prefix:?} in {path} has blocked = true")]
    Blocked {
        image: String,
        prefix: String,
        path: PathBuf,
    },
    #[error("image {image}: [[registry]] with prefix {prefix:?} in {path} rewrites it to {rewritten:?}, which is not a fully qualified image name: {message}")]
    Rewrite {
        image: String,
        prefix: String,
        path: PathBuf,
        rewritten: String,
        message: String,
    },
}

// ---- file format -------------------------------------------------------------

impl RegistriesConf {
    /// Reads `file` (missing = empty), then `dir/*.conf` in lexical order (missing
    /// dir = none). Drop-ins merge as containers/image merges them: a `[[registry]]`
    /// replaces an earlier one with the same prefix, `unqualified-search-registries`
    /// and `short-name-mode` replace earlier values when set, aliases merge by name.
    pub(crate) fn load(file: &Path, dir: &Path) -> Result<Self, RegistriesError> {
        let mut conf = RegistriesConf::default();
        for path in config_files(file, dir)? {
            if let Some(parsed) = load_file(&path)? {
                conf.merge(parsed);
            }
        }
        Ok(conf)
    }

    /// The main file and drop-in directory: `$CONTAINERS_REGISTRIES_CONF` replaces
    /// only the main file; drop-ins are still read from the default directory, as
    /// containers/image does when `SystemRegistriesConfPath` is set.
    pub(crate) fn default_paths() -> (PathBuf, PathBuf) {
        paths_from(std::env::var_os(ENV_FILE))
    }

    /// The merged `unqualified-search-registries` (may be empty).
    #[cfg(test)]
    pub(crate) fn unqualified_search_registries(&self) -> &[String] {
        &self.search
    }

    /// The configured mode; containers/image's default, permissive, when unset.
    #[cfg(test)]
    pub(crate) fn short_name_mode(&self) -> ShortNameMode {
        self.short_name_mode.unwrap_or(ShortNameMode::Permissive)
    }

    /// The `[[registry]]` entries, by prefix.
    #[cfg(test)]
    pub(crate) fn registries(&self) -> impl Iterator<Item = &Registry> {
        self.registries.values()
    }

    /// The files that were read, in order.
    pub(crate) fn files(&self) -> &[PathBuf] {
        &self.files
    }

    fn merge(&mut self, file: FileConf) {
        for registry in file.registries {
            self.registries.insert(registry.prefix.clone(), registry);
        }
        if let Some(search) = file.search {
            self.search = search;
        }
        if let Some(mode) = file.short_name_mode {
            self.short_name_mode = Some(mode);
        }
        self.aliases.extend(file.aliases);
        self.files.push(file.path);
    }
}
