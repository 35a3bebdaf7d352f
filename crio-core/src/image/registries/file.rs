//! The files: which are read (the main file, then drop-ins), their TOML as
//! containers-registries.conf(5) version 2 defines it, and the checks that name
//! the file and key of every mistake.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::resolve::{alias_target, is_plain_short_name};
use super::*;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) struct RawFile {
    unqualified_search_registries: Option<Vec<String>>,
    short_name_mode: Option<String>,
    #[serde(default)]
    registry: Vec<RawRegistry>,
    aliases: Option<BTreeMap<String, String>>,
    /// Valid containers/image keys this daemon does not act on: accepted with a
    /// warning rather than reported as unknown.
    credential_helpers: Option<Vec<String>>,
    additional_layer_store_auth_helper: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) struct RawRegistry {
    prefix: Option<String>,
    location: Option<String>,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    blocked: bool,
    #[serde(default)]
    mirror_by_digest_only: bool,
    pull_from_mirror: Option<String>,
    #[serde(default)]
    mirror: Vec<RawMirror>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) struct RawMirror {
    location: Option<String>,
    #[serde(default)]
    insecure: bool,
    pull_from_mirror: Option<String>,
}

/// One file, validated; `None` fields were not set and leave earlier files' values.
#[derive(Debug)]
pub(super) struct FileConf {
    pub(super) path: PathBuf,
    pub(super) registries: Vec<Registry>,
    pub(super) search: Option<Vec<String>>,
    pub(super) short_name_mode: Option<ShortNameMode>,
    pub(super) aliases: BTreeMap<String, Alias>,
}

/// `file` and `dir`'s `*.conf` files (sorted by name) that exist.
pub(super) fn config_files(file: &Path, dir: &Path) -> Result<Vec<PathBuf>, RegistriesError> {
    let mut files = vec![file.to_path_buf()];
    files.extend(dropins(dir)?);
    Ok(files)
}

pub(super) fn dropins(dir: &Path) -> Result<Vec<PathBuf>, RegistriesError> {
    let read_error = |source| RegistriesError::Read {
        path: dir.to_path_buf(),
        source,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(read_error(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.map_err(read_error)?.path();
        // Sub-directories are skipped, as containers/image does not recurse.
        if path.extension().is_some_and(|e| e == "conf") && !path.is_dir() {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

pub(super) fn paths_from(env: Option<OsString>) -> (PathBuf, PathBuf) {
    let file = env
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_FILE), PathBuf::from);
    (file, PathBuf::from(DEFAULT_DIR))
}

/// Reads and validates one file; `None` if it does not exist (a drop-in removed
/// while listing is the same expected race containers/image tolerates).
pub(super) fn load_file(path: &Path) -> Result<Option<FileConf>, RegistriesError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(RegistriesError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    tracing::debug!(file = %path.display(), "loading registries configuration");
    let table = parse_toml(path, &text)?;
    if table.contains_key("registries") {
        return Err(RegistriesError::V1 {
            path: path.to_path_buf(),
        });
    }
    let raw = deserialize(path, table)?;
    validate_file(path, raw).map(Some)
}

pub(super) fn parse_toml(path: &Path, text: &str) -> Result<toml::Table, RegistriesError> {
    text.parse::<toml::Table>()
        .map_err(|err| RegistriesError::Syntax {
            path: path.to_path_buf(),
            line: err.span().map_or(1, |span| {
                text[..span.start.min(text.len())].matches('\n').count() + 1
            }),
            message: err.message().trim().to_string(),
        })
}

/// Typed view of the table; a value of the wrong type names its key, an unknown
/// key is only warned about (containers/image ignores those too).
pub(super) fn deserialize(path: &Path, table: toml::Table) -> Result<RawFile, RegistriesError> {
    let mut ignored = Vec::new();
    let mut on_ignored = |key: serde_ignored::Path<'_>| ignored.push(key.to_string());
    let de = serde_ignored::Deserializer::new(toml::Value::Table(table), &mut on_ignored);
    let result: Result<RawFile, _> = serde_path_to_error::deserialize(de);
    let raw = result.map_err(|err| RegistriesError::Invalid {
        path: path.to_path_buf(),
        key: err.path().to_string(),
        message: err.inner().message().trim().to_string(),
    })?;
    for key in ignored {
        tracing::warn!(file = %path.display(), "registries config: unknown key {key} is ignored");
    }
    if raw.credential_helpers.is_some() {
        tracing::warn!(file = %path.display(), "registries config: key credential-helpers is not supported and is ignored: credentials come from the auth file");
    }
    if raw.additional_layer_store_auth_helper.is_some() {
        tracing::warn!(file = %path.display(), "registries config: key additional-layer-store-auth-helper is not supported and is ignored");
    }
    Ok(raw)
}

pub(super) fn validate_file(path: &Path, raw: RawFile) -> Result<FileConf, RegistriesError> {
    let invalid = |key: String, message: String| RegistriesError::Invalid {
        path: path.to_path_buf(),
        key,
        message,
    };
    let mut registries = Vec::new();
    for (i, entry) in raw.registry.into_iter().enumerate() {
        registries.push(validate_registry(path, i, entry).map_err(|(k, m)| invalid(k, m))?);
    }
    check_conflicts(&registries).map_err(|(k, m)| invalid(k, m))?;
    let search = raw
        .unqualified_search_registries
        .map(|list| validate_search(&list))
        .transpose()
        .map_err(|(k, m)| invalid(k, m))?;
    let short_name_mode = raw
        .short_name_mode
        .map(|mode| parse_short_name_mode(&mode))
        .transpose()
        .map_err(|m| invalid("short-name-mode".into(), m))?;
    let aliases =
        validate_aliases(path, raw.aliases.unwrap_or_default()).map_err(|(k, m)| invalid(k, m))?;
    Ok(FileConf {
        path: path.to_path_buf(),
        registries: dedup_prefixes(path, registries),
        search,
        short_name_mode,
        aliases,
    })
}

/// A validation failure: the key and what is wrong with it.
pub(super) type KeyError = (String, String);

pub(super) fn validate_registry(
    path: &Path,
    i: usize,
    raw: RawRegistry,
) -> Result<Registry, KeyError> {
    let key = |k: &str| format!("registry[{i}].{k}");
    let location = match raw.location.as_deref() {
        Some(l) => parse_location(l).map_err(|m| (key("location"), m))?,
        None => String::new(),
    };
    let prefix = match raw.prefix.as_deref().filter(|p| !p.is_empty()) {
        Some(p) => parse_prefix(p, &location).map_err(|m| (key("prefix"), m))?,
        None if location.is_empty() => return Err((
            format!("registry[{i}]"),
            "neither prefix nor location is set (accepted: a location, with an optional prefix)"
                .into(),
        )),
        None => location.clone(),
    };
    if raw.pull_from_mirror.is_some() {
        return Err((
            key("pull-from-mirror"),
            format!("pull-from-mirror is only accepted in [[registry.mirror]] tables, not on the registry {prefix:?}"),
        ));
    }
    let mut mirrors = Vec::new();
    for (j, m) in raw.mirror.into_iter().enumerate() {
        mirrors.push(
            validate_mirror(&prefix, raw.mirror_by_digest_only, m)
                .map_err(|(k, msg)| (format!("registry[{i}].mirror[{j}].{k}"), msg))?,
        );
    }
    Ok(Registry {
        prefix,
        location,
        insecure: raw.insecure,
        blocked: raw.blocked,
        mirror_by_digest_only: raw.mirror_by_digest_only,
        mirrors,
        file: path.to_path_buf(),
    })
}

pub(super) fn validate_mirror(
    prefix: &str,
    by_digest_only: bool,
    raw: RawMirror,
) -> Result<Mirror, KeyError> {
    let location = parse_location(raw.location.as_deref().unwrap_or_default())
        .map_err(|m| ("location".to_string(), m))?;
    if location.is_empty() {
        return Err((
            "location".into(),
            "a mirror needs a location (accepted: host[:port][/path])".into(),
        ));
    }
    let pull_from_mirror = match raw.pull_from_mirror.as_deref() {
        None | Some("") => PullFromMirror::All,
        Some(_) if by_digest_only => {
            return Err((
                "pull-from-mirror".into(),
                format!("cannot be set while the registry {prefix:?} sets mirror-by-digest-only"),
            ))
        }
        Some("all") => PullFromMirror::All,
        Some("digest-only") => PullFromMirror::DigestOnly,
        Some("tag-only") => PullFromMirror::TagOnly,
        Some(other) => {
            return Err((
                "pull-from-mirror".into(),
                format!("invalid value {other:?} (accepted: all, digest-only, tag-only)"),
            ))
        }
    };
    Ok(Mirror {
        location,
        insecure: raw.insecure,
        pull_from_mirror,
    })
}

/// A location: `host[:port][/path]`, trailing `/` dropped, no URI scheme. Empty is
/// returned as is (only a wildcard prefix may go without a location).
pub(super) fn parse_location(value: &str) -> Result<String, String> {
    let trimmed = value.trim_end_matches('/');
    if trimmed.starts_with("http://") || trimmed.starts_with("https://") {
        return Err(format!(
            "invalid location {value:?}: URI schemes are not accepted (accepted: host[:port][/path]; use insecure = true for plain HTTP)"
        ));
    }
    if !trimmed.is_empty() && !valid_location(trimmed) {
        return Err(format!(
            "invalid location {value:?} (accepted: host[:port][/path], where host contains '.' or ':' or is localhost, and path is lower-case)"
        ));
    }
    Ok(trimmed.to_string())
}

pub(super) fn parse_prefix(value: &str, location: &str) -> Result<String, String> {
    if let Some(domain) = value.strip_prefix("*.") {
        if domain.contains(['/', '@', ':']) || !valid_registry(domain) {
            return Err(format!(
                "invalid wildcard prefix {value:?} (accepted: *.example.com, without port, path, tag or digest)"
            ));
        }
        return Ok(value.to_string());
    }
    let prefix = parse_location(value)?;
    if location.is_empty() {
        return Err(format!(
            "prefix {value:?} has no location: only a wildcard prefix (*.example.com) may omit location"
        ));
    }
    Ok(prefix)
}

/// `host[:port][/path]` with a registry-like host, so that rewritten names stay
/// fully qualified.
pub(super) fn valid_location(location: &str) -> bool {
    let (host, path) = location.split_once('/').unwrap_or((location, ""));
    let host_like = host.contains('.') || host.contains(':') || host == "localhost";
    host_like && valid_registry(host) && (path.is_empty() || path.split('/').all(valid_component))
}

/// containers/image refuses one location declared twice in a file with
/// different security settings: which one applies would be ambiguous.
pub(super) fn check_conflicts(registries: &[Registry]) -> Result<(), KeyError> {
    for (i, reg) in registries.iter().enumerate() {
        let id = |r: &Registry| {
            if r.location.is_empty() {
                r.prefix.clone()
            } else {
                r.location.clone()
            }
        };
        let Some(other) = registries[..i].iter().find(|o| id(o) == id(reg)) else {
            continue;
        };
        for (field, differs) in [
            ("insecure", other.insecure != reg.insecure),
            ("blocked", other.blocked != reg.blocked),
        ] {
            if differs {
                return Err((
                    format!("registry[{i}].{field}"),
                    format!(
                        "registry {:?} is defined more than once in this file with conflicting {field} settings",
                        id(reg)
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The first `[[registry]]` of a prefix wins within a file, as in containers/image.
pub(super) fn dedup_prefixes(path: &Path, registries: Vec<Registry>) -> Vec<Registry> {
    let mut out: Vec<Registry> = Vec::new();
    for reg in registries {
        if out.iter().any(|r| r.prefix == reg.prefix) {
            tracing::warn!(file = %path.display(), prefix = %reg.prefix, "registries config: prefix defined more than once, the first [[registry]] is used");
        } else {
            out.push(reg);
        }
    }
    out
}

pub(super) fn validate_search(list: &[String]) -> Result<Vec<String>, KeyError> {
    list.iter()
        .enumerate()
        .map(|(i, value)| {
            let trimmed = value.trim_end_matches('/');
            let host_like = trimmed.contains('.') || trimmed.contains(':') || trimmed == "localhost";
            if host_like && valid_registry(trimmed) {
                Ok(trimmed.to_string())
            } else {
                Err((
                    format!("unqualified-search-registries[{i}]"),
                    format!("invalid registry {value:?} (accepted: host[:port] such as quay.io or localhost:5000, without scheme or path)"),
                ))
            }
        })
        .collect()
}

pub(super) fn parse_short_name_mode(value: &str) -> Result<ShortNameMode, String> {
    match value {
        "enforcing" => Ok(ShortNameMode::Enforcing),
        "permissive" => Ok(ShortNameMode::Permissive),
        "disabled" => Ok(ShortNameMode::Disabled),
        other => Err(format!(
            "invalid value {other:?} (accepted: enforcing, permissive, disabled)"
        )),
    }
}

/// Alias names are short names without tag or digest; values are fully qualified
/// names without tag or digest, or `""` to reset an alias from an earlier file.
pub(super) fn validate_aliases(
    path: &Path,
    raw: BTreeMap<String, String>,
) -> Result<BTreeMap<String, Alias>, KeyError> {
    let mut out = BTreeMap::new();
    for (name, value) in raw {
        let key = format!("aliases.{name:?}");
        if !is_plain_short_name(&name) {
            return Err((
                key,
                "invalid alias name (accepted: a short name without registry, tag or digest)"
                    .into(),
            ));
        }
        let target = if value.is_empty() {
            None
        } else {
            Some(alias_target(&value).ok_or_else(|| {
                (
                    key,
                    format!("invalid alias value {value:?} (accepted: registry/repository without tag or digest, or \"\" to reset)"),
                )
            })?)
        };
        let file = path.to_path_buf();
        out.insert(name, Alias { target, file });
    }
    Ok(out)
}
