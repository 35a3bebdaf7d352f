//! Reading `crio.conf` and its `crio.conf.d` drop-ins, merging them in CRI-O's order
//! (main file, then drop-ins in lexical order; later keys win, tables merge), then
//! applying command-line overrides.

use std::path::{Path, PathBuf};

use super::error::{ConfigError, Problem};
use super::model::Config;
use super::origin::{LineIndex, Origins};
use super::validate::validate;

/// Which files to read.
#[derive(Debug, Clone)]
pub struct Sources {
    /// The main file (`/etc/crio/crio.conf`); a missing file means defaults.
    pub file: PathBuf,
    /// The drop-in directory (`/etc/crio/crio.conf.d`); only `*.conf` files are read.
    pub dir: PathBuf,
}

/// Values given on the command line; they win over every file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub root: Option<PathBuf>,
    pub runroot: Option<PathBuf>,
    pub listen: Option<PathBuf>,
    pub log_level: Option<String>,
}

/// A loaded configuration and what was noticed on the way.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub origins: Origins,
    /// The files read, in merge order.
    pub files: Vec<PathBuf>,
    /// Unknown keys, with file and line. They are ignored, not fatal.
    pub warnings: Vec<String>,
    /// What was loaded, to load it again (SIGHUP).
    pub sources: Sources,
    pub overrides: Overrides,
}

/// Loads, merges, overrides and validates.
pub fn load(sources: &Sources, overrides: &Overrides) -> Result<Loaded, ConfigError> {
    let files = config_files(sources)?;
    let mut origins = Origins::default();
    let mut merged = defaults_table();
    for path in &files {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let table = parse_file(path, &text)?;
        origins.record_file(path, &text);
        merge(&mut merged, table);
    }

    let mut ignored = Vec::new();
    let mut on_ignored =
        |path: serde_ignored::Path<'_>| ignored.push(normalize_path(&path.to_string()));
    let de = serde_ignored::Deserializer::new(toml::Value::Table(merged), &mut on_ignored);
    let result: Result<Config, _> = serde_path_to_error::deserialize(de);
    let mut config = result.map_err(|err| {
        let key = normalize_path(&err.path().to_string());
        ConfigError::Invalid(vec![Problem {
            origin: origins.of(&key),
            message: err.inner().message().to_string(),
            key,
            accepted: None,
        }])
    })?;
    let mut warnings: Vec<String> = ignored
        .iter()
        .map(
            |key| match misplaced(key).or_else(|| super::crio_keys::why_ignored(key)) {
                Some(why) => format!("{}: {key} is ignored: {why}", origins.of(key)),
                None => format!("{}: unknown key {key} is ignored", origins.of(key)),
            },
        )
        .collect();
    warnings.extend(not_applied(&config, &origins));

    apply_overrides(&mut config, &mut origins, overrides);
    let network = &mut config.crio.network;
    if let Some(dir) = network.plugin_dir.clone() {
        if !network.plugin_dirs.contains(&dir) {
            network.plugin_dirs.push(dir);
        }
    }
    let problems = validate(&config, &origins);
    if !problems.is_empty() {
        return Err(ConfigError::Invalid(problems));
    }
    Ok(Loaded {
        config,
        origins,
        files,
        warnings,
        sources: sources.clone(),
        overrides: overrides.clone(),
    })
}

/// Where CRI-O reads a key that sits in the wrong table (crio-rs read these
/// two from `[crio.runtime]` before).
fn misplaced(key: &str) -> Option<&'static str> {
    match key {
        "crio.runtime.image_volumes" => Some("CRI-O reads image_volumes from [crio.image]"),
        "crio.runtime.container_min_memory" => {
            Some("CRI-O reads container_min_memory per handler, from [crio.runtime.runtimes.NAME]")
        }
        _ => None,
    }
}

/// CRI-O keys that are accepted with a value crio-rs does not apply as CRI-O
/// would, each said once, with why.
fn not_applied(config: &Config, origins: &Origins) -> Vec<String> {
    let mut out = Vec::new();
    for (name, handler) in &config.crio.runtime.runtimes {
        let key = |field: &str| format!("crio.runtime.runtimes.{name}.{field}");
        if !handler.monitor_path.is_empty() {
            let k = key("monitor_path");
            out.push(format!(
                "{}: {k} is ignored: it names conmon in CRI-O, and crio-rs runs a shim v2 \
                 per pod instead (an oci handler's shim is shim_path)",
                origins.of(&k)
            ));
        }
        for (i, annotation) in handler.allowed_annotations.iter().enumerate() {
            if !super::model::APPLIED_ANNOTATIONS.contains(&annotation.as_str()) {
                let k = format!("{}.{i}", key("allowed_annotations"));
                out.push(format!(
                    "{}: {k}: {annotation:?} is allowed, but crio-rs does not act on it: \
                     pods' {annotation} annotations change nothing",
                    origins.of(&k)
                ));
            }
        }
        if handler.runtime_type == super::model::RUNTIME_TYPE_POD {
            let k = key("runtime_type");
            out.push(format!(
                "{}: {k} \"pod\" (conmon-rs) is served like \"oci\": by crio-rs's shim, \
                 which already serves a whole pod",
                origins.of(&k)
            ));
        }
    }
    out
}

/// The main file (if present) then every `*.conf` in the drop-in dir, sorted by name.
fn config_files(sources: &Sources) -> Result<Vec<PathBuf>, ConfigError> {
    let mut files = Vec::new();
    if sources.file.exists() {
        files.push(sources.file.clone());
    }
    let entries = match std::fs::read_dir(&sources.dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(files),
        Err(source) => {
            return Err(ConfigError::Read {
                path: sources.dir.clone(),
                source,
            })
        }
    };
    let mut dropins = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| ConfigError::Read {
            path: sources.dir.clone(),
            source,
        })?;
        let path = entry.path();
        if path.extension().is_some_and(|ext| ext == "conf") && path.is_file() {
            dropins.push(path);
        }
    }
    dropins.sort();
    files.extend(dropins);
    Ok(files)
}

fn parse_file(path: &Path, text: &str) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>()
        .map_err(|err| ConfigError::Syntax {
            path: path.to_path_buf(),
            line: err
                .span()
                .map_or(1, |span| LineIndex::new(text).line_of(span.start)),
            message: err.message().trim().to_string(),
        })
}

fn defaults_table() -> toml::Table {
    // Serializing plain structs of strings, numbers, lists and maps cannot fail.
    toml::Table::try_from(Config::default()).unwrap_or_default()
}

/// Tables merge key by key; any other value replaces what was there.
pub(super) fn merge(into: &mut toml::Table, from: toml::Table) {
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (Some(toml::Value::Table(existing)), toml::Value::Table(incoming)) => {
                merge(existing, incoming)
            }
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

/// serde paths write list elements as `[0]`; origins use dotted keys.
fn normalize_path(path: &str) -> String {
    path.replace('[', ".").replace(']', "")
}

fn apply_overrides(config: &mut Config, origins: &mut Origins, overrides: &Overrides) {
    if let Some(root) = &overrides.root {
        config.crio.root = root.clone();
        origins.record_flag("crio.root", "--root");
    }
    if let Some(runroot) = &overrides.runroot {
        config.crio.runroot = runroot.clone();
        origins.record_flag("crio.runroot", "--runroot");
    }
    if let Some(listen) = &overrides.listen {
        config.crio.api.listen = listen.clone();
        origins.record_flag("crio.api.listen", "--listen");
    }
    if let Some(level) = &overrides.log_level {
        config.crio.runtime.log_level = level.clone();
        origins.record_flag("crio.runtime.log_level", "--log-level");
    }
}
