//! containers-registries.conf(5), version 2: where images come from.
//!
//! The main file and the `*.conf` drop-ins of its directory are merged as
//! containers/image (`sysregistriesv2`) merges them, then answer two questions:
//! which fully qualified names a short name stands for ([`RegistriesConf::resolve_short_name`]),
//! and which endpoints (mirrors, then the registry's location) to pull a name from
//! ([`RegistriesConf::pull_sources`]). [`RegistriesWatcher`] reloads the files when
//! they change, so edits apply without restarting the daemon, as in CRI-O.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Deserialize;

use super::reference::{valid_component, valid_registry, ImageName, ParsedName, DOCKER_HUB};

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

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawFile {
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
struct RawRegistry {
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
struct RawMirror {
    location: Option<String>,
    #[serde(default)]
    insecure: bool,
    pull_from_mirror: Option<String>,
}

/// One file, validated; `None` fields were not set and leave earlier files' values.
#[derive(Debug)]
struct FileConf {
    path: PathBuf,
    registries: Vec<Registry>,
    search: Option<Vec<String>>,
    short_name_mode: Option<ShortNameMode>,
    aliases: BTreeMap<String, Alias>,
}

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

    /// Candidates for a short name, in the order to try them. An `[aliases]` entry
    /// is the only candidate; otherwise one per unqualified-search registry, and
    /// with none configured `docker.io` (what CRI-O users expect of `busybox`). A
    /// name with neither tag nor digest gets `latest`, as containers/image's
    /// short-name resolution does.
    pub(crate) fn resolve_short_name(
        &self,
        repository: &str,
        tag: Option<&str>,
        digest: Option<&str>,
    ) -> Vec<ImageName> {
        let tag = tag
            .map(str::to_string)
            .or_else(|| digest.is_none().then(|| "latest".to_string()));
        let digest = digest.map(str::to_string);
        if let Some((alias, target)) = self
            .aliases
            .get(repository)
            .and_then(|a| a.target.as_ref().map(|t| (a, t)))
        {
            tracing::debug!(short_name = repository, target = %target, file = %alias.file.display(), "short name resolved by alias");
            return vec![ImageName {
                tag,
                digest,
                ..target.clone()
            }];
        }
        let search: Vec<&str> = if self.search.is_empty() {
            vec![DOCKER_HUB]
        } else {
            self.search.iter().map(String::as_str).collect()
        };
        let mut out: Vec<ImageName> = Vec::new();
        for registry in search {
            if let Some(name) = search_candidate(registry, repository, &tag, &digest) {
                if !out.contains(&name) {
                    out.push(name);
                }
            }
        }
        out
    }

    /// Where to pull `name` from, in order: the mirrors of the `[[registry]]` with
    /// the longest matching prefix (those its pull-from-mirror settings allow for
    /// this kind of reference), then its location. No matching `[[registry]]`:
    /// the name itself, over TLS.
    pub(crate) fn pull_sources(
        &self,
        name: &ImageName,
    ) -> Result<Vec<PullSource>, RegistriesError> {
        let Some((registry, matched)) = self.find_registry(name) else {
            return Ok(vec![PullSource {
                name: name.clone(),
                insecure: false,
                mirror: false,
            }]);
        };
        if registry.blocked {
            return Err(RegistriesError::Blocked {
                image: name.to_string(),
                prefix: registry.prefix.clone(),
                path: registry.file.clone(),
            });
        }
        let digested = name.digest.is_some();
        let mut sources = Vec::new();
        for mirror in registry
            .mirrors
            .iter()
            .filter(|m| mirror_applies(registry, m, digested))
        {
            sources.push(PullSource {
                name: rewrite(name, matched, &mirror.location, registry)?,
                insecure: mirror.insecure,
                mirror: true,
            });
        }
        let primary = if registry.location.is_empty() {
            name.clone()
        } else {
            rewrite(name, matched, &registry.location, registry)?
        };
        sources.push(PullSource {
            name: primary,
            insecure: registry.insecure,
            mirror: false,
        });
        Ok(sources)
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

    /// The `[[registry]]` with the longest prefix matching `name`, and how many
    /// bytes of `name.repo()` the prefix covers. On a tie a plain prefix beats a
    /// wildcard: it names the registry explicitly.
    fn find_registry(&self, name: &ImageName) -> Option<(&Registry, usize)> {
        let repo = name.repo();
        let mut best: Option<(&Registry, usize)> = None;
        for registry in self.registries.values() {
            let Some(matched) = prefix_match(name, &repo, &registry.prefix) else {
                continue;
            };
            let better = match best {
                None => true,
                Some((current, _)) => {
                    let (len, cur_len) = (registry.prefix.len(), current.prefix.len());
                    len > cur_len || (len == cur_len && current.prefix.starts_with("*."))
                }
            };
            if better {
                best = Some((registry, matched));
            }
        }
        best
    }
}

/// `file` and `dir`'s `*.conf` files (sorted by name) that exist.
fn config_files(file: &Path, dir: &Path) -> Result<Vec<PathBuf>, RegistriesError> {
    let mut files = vec![file.to_path_buf()];
    files.extend(dropins(dir)?);
    Ok(files)
}

fn dropins(dir: &Path) -> Result<Vec<PathBuf>, RegistriesError> {
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

fn paths_from(env: Option<OsString>) -> (PathBuf, PathBuf) {
    let file = env
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_FILE), PathBuf::from);
    (file, PathBuf::from(DEFAULT_DIR))
}

/// Reads and validates one file; `None` if it does not exist (a drop-in removed
/// while listing is the same expected race containers/image tolerates).
fn load_file(path: &Path) -> Result<Option<FileConf>, RegistriesError> {
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

fn parse_toml(path: &Path, text: &str) -> Result<toml::Table, RegistriesError> {
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
fn deserialize(path: &Path, table: toml::Table) -> Result<RawFile, RegistriesError> {
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

fn validate_file(path: &Path, raw: RawFile) -> Result<FileConf, RegistriesError> {
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
type KeyError = (String, String);

fn validate_registry(path: &Path, i: usize, raw: RawRegistry) -> Result<Registry, KeyError> {
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

fn validate_mirror(prefix: &str, by_digest_only: bool, raw: RawMirror) -> Result<Mirror, KeyError> {
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
fn parse_location(value: &str) -> Result<String, String> {
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

fn parse_prefix(value: &str, location: &str) -> Result<String, String> {
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
fn valid_location(location: &str) -> bool {
    let (host, path) = location.split_once('/').unwrap_or((location, ""));
    let host_like = host.contains('.') || host.contains(':') || host == "localhost";
    host_like && valid_registry(host) && (path.is_empty() || path.split('/').all(valid_component))
}

/// containers/image refuses one location declared twice in a file with
/// different security settings: which one applies would be ambiguous.
fn check_conflicts(registries: &[Registry]) -> Result<(), KeyError> {
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
fn dedup_prefixes(path: &Path, registries: Vec<Registry>) -> Vec<Registry> {
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

fn validate_search(list: &[String]) -> Result<Vec<String>, KeyError> {
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

fn parse_short_name_mode(value: &str) -> Result<ShortNameMode, String> {
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
fn validate_aliases(
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

fn is_plain_short_name(name: &str) -> bool {
    matches!(
        ImageName::parse(name),
        Ok(ParsedName::Short {
            tag: None,
            digest: None,
            ..
        })
    )
}

/// A fully qualified name without tag or digest.
fn alias_target(value: &str) -> Option<ImageName> {
    match ImageName::parse(value) {
        Ok(ParsedName::Qualified(target)) if target.tag.is_none() && target.digest.is_none() => {
            Some(target)
        }
        _ => None,
    }
}

fn search_candidate(
    registry: &str,
    repository: &str,
    tag: &Option<String>,
    digest: &Option<String>,
) -> Option<ImageName> {
    match ImageName::parse(&format!("{registry}/{repository}")) {
        Ok(ParsedName::Qualified(name)) => Some(ImageName {
            tag: tag.clone(),
            digest: digest.clone(),
            ..name
        }),
        other => {
            // Search registries are validated on load, so this is not expected.
            tracing::warn!(
                registry,
                repository,
                "short name does not qualify on this search registry: {other:?}"
            );
            None
        }
    }
}

/// How many bytes of `repo` (`registry/repository`) `prefix` covers, if it matches.
/// A plain prefix matches whole path components only (so `example.com` does not
/// match `example.com:5000`); `*.example.com` matches any sub-domain's registry,
/// whatever its port.
fn prefix_match(name: &ImageName, repo: &str, prefix: &str) -> Option<usize> {
    if let Some(domain) = prefix.strip_prefix('*') {
        let host = name.registry.split(':').next().unwrap_or_default();
        let sub = host.len() > domain.len() && host.ends_with(domain);
        return sub.then_some(name.registry.len());
    }
    let matches = repo == prefix
        || (repo.starts_with(prefix) && repo.as_bytes().get(prefix.len()) == Some(&b'/'));
    matches.then_some(prefix.len())
}

fn mirror_applies(registry: &Registry, mirror: &Mirror, digested: bool) -> bool {
    if registry.mirror_by_digest_only {
        return digested;
    }
    match mirror.pull_from_mirror {
        PullFromMirror::All => true,
        PullFromMirror::DigestOnly => digested,
        PullFromMirror::TagOnly => !digested,
    }
}

/// `name` with the `matched` part of its `registry/repository` replaced by `location`.
fn rewrite(
    name: &ImageName,
    matched: usize,
    location: &str,
    registry: &Registry,
) -> Result<ImageName, RegistriesError> {
    let repo = name.repo();
    let rewritten = format!("{location}{}{}", &repo[matched..], name.suffix());
    let fail = |message: String| RegistriesError::Rewrite {
        image: name.to_string(),
        prefix: registry.prefix.clone(),
        path: registry.file.clone(),
        rewritten: rewritten.clone(),
        message,
    };
    match ImageName::parse(&rewritten) {
        Ok(ParsedName::Qualified(out)) => Ok(out),
        Ok(ParsedName::Short { .. }) => Err(fail("it has no registry".into())),
        Err(e) => Err(fail(e.to_string())),
    }
}

// ---- reloading ---------------------------------------------------------------

/// Identity of one file's content, cheap to take: a rewrite changes at least one
/// of these (the inode when replaced by rename, the ctime when edited in place).
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
    ctime: (i64, i64),
}

/// The files that make up the configuration and their stamps (`None` = absent).
type Stamp = Vec<(PathBuf, Option<FileStamp>)>;

#[derive(Debug, Default)]
struct WatchState {
    stamp: Option<Stamp>,
    /// The configuration loaded for `stamp`; `None` when that load failed.
    conf: Option<Arc<RegistriesConf>>,
}

/// The configuration, reloaded whenever one of its files changes (checked on every
/// call, with one `stat` per file).
#[derive(Debug)]
pub struct RegistriesWatcher {
    file: PathBuf,
    dir: PathBuf,
    state: Mutex<WatchState>,
}

impl RegistriesWatcher {
    pub(crate) fn new(file: PathBuf, dir: PathBuf) -> Self {
        Self {
            file,
            dir,
            state: Mutex::new(WatchState::default()),
        }
    }

    /// The current configuration. A failed reload is returned (and logged once per
    /// change of the files) rather than hidden behind the previous configuration:
    /// pulling with stale mirrors or blocks would be worse than failing clearly.
    pub(crate) fn current(&self) -> Result<Arc<RegistriesConf>, RegistriesError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let stamp = self.stamp();
        if state.stamp.as_ref() == Some(&stamp) {
            if let Some(conf) = &state.conf {
                return Ok(conf.clone());
            }
        }
        let first_failure = state.stamp.as_ref() != Some(&stamp) || state.conf.is_some();
        let loaded = RegistriesConf::load(&self.file, &self.dir);
        state.stamp = Some(stamp);
        match loaded {
            Ok(conf) => {
                let conf = Arc::new(conf);
                tracing::info!(files = ?conf.files(), "registries configuration loaded");
                state.conf = Some(conf.clone());
                Ok(conf)
            }
            Err(e) => {
                if first_failure {
                    tracing::error!("registries configuration not loaded: {e}");
                }
                state.conf = None;
                Err(e)
            }
        }
    }

    fn stamp(&self) -> Stamp {
        let mut files = vec![self.file.clone()];
        // A listing error shows up again, with its cause, when loading.
        files.extend(dropins(&self.dir).unwrap_or_default());
        files
            .into_iter()
            .map(|path| {
                let stamp = file_stamp(&path);
                (path, stamp)
            })
            .collect()
    }
}

fn file_stamp(path: &Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        len: meta.len(),
        modified: meta.modified().ok(),
        inode: meta.ino(),
        ctime: (meta.ctime(), meta.ctime_nsec()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Self {
            Self {
                dir: tempfile::tempdir().expect("tempdir"),
            }
        }
        fn file(&self) -> PathBuf {
            self.dir.path().join("registries.conf")
        }
        fn dropin_dir(&self) -> PathBuf {
            self.dir.path().join("registries.conf.d")
        }
        fn main(&self, text: &str) -> &Self {
            std::fs::write(self.file(), text).expect("write main");
            self
        }
        fn dropin(&self, name: &str, text: &str) -> &Self {
            std::fs::create_dir_all(self.dropin_dir()).expect("mkdir");
            std::fs::write(self.dropin_dir().join(name), text).expect("write drop-in");
            self
        }
        fn load(&self) -> Result<RegistriesConf, RegistriesError> {
            RegistriesConf::load(&self.file(), &self.dropin_dir())
        }
        fn conf(&self) -> RegistriesConf {
            self.load().expect("load")
        }
    }

    fn conf(text: &str) -> RegistriesConf {
        Fixture::new().main(text).conf()
    }

    fn name(input: &str) -> ImageName {
        match ImageName::parse(input) {
            Ok(ParsedName::Qualified(n)) => n,
            other => panic!("{input}: {other:?}"),
        }
    }

    fn sources(conf: &RegistriesConf, image: &str) -> Vec<(String, bool, bool)> {
        conf.pull_sources(&name(image))
            .expect("pull sources")
            .into_iter()
            .map(|s| (s.name.to_string(), s.insecure, s.mirror))
            .collect()
    }

    fn strings(names: Vec<ImageName>) -> Vec<String> {
        names.iter().map(ToString::to_string).collect()
    }

    fn error_text(text: &str) -> String {
        Fixture::new()
            .main(text)
            .load()
            .expect_err("should be rejected")
            .to_string()
    }

    #[test]
    fn missing_file_and_dir_are_an_empty_config() {
        let fixture = Fixture::new();
        let conf = fixture.conf();
        assert_eq!(conf, RegistriesConf::default());
        assert_eq!(conf.short_name_mode(), ShortNameMode::Permissive);
        assert!(conf.files().is_empty());
    }

    #[test]
    fn short_names_fall_back_to_docker_hub() {
        let none = RegistriesConf::default();
        assert_eq!(
            strings(none.resolve_short_name("busybox", None, None)),
            ["docker.io/library/busybox:latest"]
        );
        assert_eq!(
            strings(none.resolve_short_name("library/busybox", Some("1.36"), None)),
            ["docker.io/library/busybox:1.36"]
        );
        let digest = format!("sha256:{HEX}");
        assert_eq!(
            strings(none.resolve_short_name("busybox", None, Some(&digest))),
            [format!("docker.io/library/busybox@{digest}")]
        );
        // An explicitly empty list behaves like none.
        let empty = conf("unqualified-search-registries = []");
        assert_eq!(empty.resolve_short_name("x", None, None).len(), 1);
    }

    #[test]
    fn search_registries_in_order_with_library_only_on_docker_hub() {
        let conf =
            conf(r#"unqualified-search-registries = ["quay.io", "docker.io", "localhost:5000/"]"#);
        assert_eq!(
            conf.unqualified_search_registries(),
            ["quay.io", "docker.io", "localhost:5000"]
        );
        assert_eq!(
            strings(conf.resolve_short_name("busybox", Some("1"), None)),
            [
                "quay.io/busybox:1",
                "docker.io/library/busybox:1",
                "localhost:5000/busybox:1"
            ]
        );
        assert_eq!(
            strings(conf.resolve_short_name("org/app", None, None))[1],
            "docker.io/org/app:latest"
        );
    }

    #[test]
    fn invalid_search_registries_are_rejected() {
        for bad in [
            r#"["https://quay.io"]"#,
            r#"["quay.io/ns"]"#,
            r#"["myregistry"]"#,
        ] {
            let text = error_text(&format!("unqualified-search-registries = {bad}"));
            assert!(text.contains("unqualified-search-registries[0]"), "{text}");
            assert!(text.contains("accepted"), "{text}");
        }
    }

    #[test]
    fn short_name_mode_is_recorded_and_checked() {
        for (value, mode) in [
            ("enforcing", ShortNameMode::Enforcing),
            ("permissive", ShortNameMode::Permissive),
            ("disabled", ShortNameMode::Disabled),
        ] {
            assert_eq!(
                conf(&format!("short-name-mode = {value:?}")).short_name_mode(),
                mode
            );
        }
        let text = error_text(r#"short-name-mode = "prompt""#);
        assert!(
            text.contains("short-name-mode") && text.contains("enforcing, permissive, disabled"),
            "{text}"
        );
    }

    #[test]
    fn aliases_are_the_only_candidate() {
        let conf = conf(
            r#"
unqualified-search-registries = ["quay.io"]
[aliases]
"busybox" = "docker.io/busybox"
"tools/jq" = "registry.example.com/jq/jq"
"#,
        );
        assert_eq!(
            strings(conf.resolve_short_name("busybox", None, None)),
            ["docker.io/library/busybox:latest"]
        );
        assert_eq!(
            strings(conf.resolve_short_name("tools/jq", Some("1.7"), None)),
            ["registry.example.com/jq/jq:1.7"]
        );
        assert_eq!(
            strings(conf.resolve_short_name("alpine", None, None)),
            ["quay.io/alpine:latest"]
        );
    }

    #[test]
    fn invalid_aliases_are_rejected() {
        let cases = [
            (r#""quay.io/x" = "quay.io/x""#, "invalid alias name"),
            (r#""x:1" = "quay.io/x""#, "invalid alias name"),
            (r#""x" = "quay.io/x:1""#, "invalid alias value"),
            (r#""x" = "y""#, "invalid alias value"),
        ];
        for (entry, expected) in cases {
            let text = error_text(&format!("[aliases]\n{entry}\n"));
            assert!(
                text.contains(expected) && text.contains("aliases."),
                "{text}"
            );
        }
    }

    #[test]
    fn no_matching_registry_pulls_the_name_itself() {
        let conf = conf("[[registry]]\nlocation = \"quay.io\"\n");
        assert_eq!(
            sources(&conf, "docker.io/library/busybox:1"),
            [("docker.io/library/busybox:1".to_string(), false, false)]
        );
    }

    #[test]
    fn location_rewrites_the_prefix() {
        let conf = conf(
            r#"
[[registry]]
prefix = "example.com/foo"
location = "internal.example.com:5000/bar/foo"
insecure = true
"#,
        );
        assert_eq!(
            sources(&conf, "example.com/foo/app:v1"),
            [(
                "internal.example.com:5000/bar/foo/app:v1".to_string(),
                true,
                false
            )]
        );
        // Whole components only.
        assert_eq!(
            sources(&conf, "example.com/foobar/app")[0].0,
            "example.com/foobar/app"
        );
        // A prefix names a host, not a host with any port.
        assert_eq!(
            sources(&conf, "example.com:5000/foo/app")[0].0,
            "example.com:5000/foo/app"
        );
    }

    #[test]
    fn longest_prefix_wins() {
        let conf = conf(
            r#"
[[registry]]
location = "docker.io"
[[registry.mirror]]
location = "mirror.example.com"

[[registry]]
prefix = "docker.io/library"
location = "hub-mirror.example.com/library"
"#,
        );
        assert_eq!(
            sources(&conf, "docker.io/library/busybox:1"),
            [(
                "hub-mirror.example.com/library/busybox:1".to_string(),
                false,
                false
            )]
        );
        assert_eq!(
            sources(&conf, "docker.io/org/app:1"),
            [
                ("mirror.example.com/org/app:1".to_string(), false, true),
                ("docker.io/org/app:1".to_string(), false, false)
            ]
        );
    }

    #[test]
    fn wildcard_prefixes_match_subdomains() {
        let conf = conf(
            r#"
[[registry]]
prefix = "*.example.com"
insecure = true

[[registry]]
prefix = "*.corp.example.com"
location = "proxy.example.net/corp"

[[registry]]
prefix = "team.corp.example.com"
location = "team.example.net"
"#,
        );
        // No location: the name as it is, with the registry's settings.
        assert_eq!(
            sources(&conf, "a.example.com/x:1"),
            [("a.example.com/x:1".to_string(), true, false)]
        );
        assert!(sources(&conf, "a.b.example.com:5000/x")[0].1);
        assert_eq!(
            sources(&conf, "example.com/x")[0],
            ("example.com/x".to_string(), false, false)
        );
        assert!(!sources(&conf, "evilexample.com/x")[0].1);
        assert_eq!(
            sources(&conf, "git.corp.example.com:5000/ns/x:1")[0].0,
            "proxy.example.net/corp/ns/x:1"
        );
        assert_eq!(
            sources(&conf, "team.corp.example.com/x")[0].0,
            "team.example.net/x"
        );
    }

    #[test]
    fn invalid_wildcards_and_locations_are_rejected() {
        let cases = [
            ("prefix = \"*.example.com/ns\"\nlocation = \"x.io\"", "registry[0].prefix"),
            ("prefix = \"*.example.com:5000\"", "registry[0].prefix"),
            ("prefix = \"example.com\"", "registry[0].prefix"),
            ("location = \"https://quay.io\"", "registry[0].location"),
            ("location = \"quay.io/Upper\"", "registry[0].location"),
            ("insecure = true", "registry[0]"),
            ("location = \"quay.io\"\npull-from-mirror = \"all\"", "registry[0].pull-from-mirror"),
            ("location = \"quay.io\"\n[[registry.mirror]]\ninsecure = true", "registry[0].mirror[0].location"),
            (
                "location = \"quay.io\"\n[[registry.mirror]]\nlocation = \"m.io\"\npull-from-mirror = \"sometimes\"",
                "registry[0].mirror[0].pull-from-mirror",
            ),
            (
                "location = \"quay.io\"\nmirror-by-digest-only = true\n[[registry.mirror]]\nlocation = \"m.io\"\npull-from-mirror = \"tag-only\"",
                "registry[0].mirror[0].pull-from-mirror",
            ),
        ];
        for (body, key) in cases {
            let text = error_text(&format!("[[registry]]\n{body}\n"));
            assert!(text.contains(&format!("key {key}:")), "{body}: {text}");
            assert!(text.contains("registries.conf"), "{text}");
        }
    }

    #[test]
    fn blocked_registry_is_an_error_naming_its_config() {
        let fixture = Fixture::new();
        fixture.main("[[registry]]\nlocation = \"evil.example.com\"\nblocked = true\n");
        let conf = fixture.conf();
        let err = conf
            .pull_sources(&name("evil.example.com/x:1"))
            .expect_err("blocked");
        let text = err.to_string();
        assert!(matches!(err, RegistriesError::Blocked { .. }));
        assert!(text.contains("evil.example.com/x:1"), "{text}");
        assert!(text.contains("prefix \"evil.example.com\""), "{text}");
        assert!(
            text.contains(&fixture.file().display().to_string()),
            "{text}"
        );
        assert!(text.contains("blocked = true"), "{text}");
    }

    #[test]
    fn mirrors_come_first_in_order_with_their_own_insecure() {
        let conf = conf(
            r#"
[[registry]]
location = "docker.io"

[[registry.mirror]]
location = "first.example.com:5000"
insecure = true

[[registry.mirror]]
location = "second.example.com/hub/"
"#,
        );
        assert_eq!(
            sources(&conf, "docker.io/library/busybox:1"),
            [
                (
                    "first.example.com:5000/library/busybox:1".to_string(),
                    true,
                    true
                ),
                (
                    "second.example.com/hub/library/busybox:1".to_string(),
                    false,
                    true
                ),
                ("docker.io/library/busybox:1".to_string(), false, false),
            ]
        );
    }

    #[test]
    fn digest_only_mirrors_serve_only_digests() {
        let conf = conf(
            r#"
[[registry]]
location = "quay.io"
mirror-by-digest-only = true
[[registry.mirror]]
location = "m.example.com"
"#,
        );
        let digest = format!("sha256:{HEX}");
        assert_eq!(
            sources(&conf, "quay.io/x:1"),
            [("quay.io/x:1".to_string(), false, false)]
        );
        let by_digest = sources(&conf, &format!("quay.io/x:1@{digest}"));
        assert_eq!(by_digest.len(), 2);
        assert_eq!(by_digest[0].0, format!("m.example.com/x:1@{digest}"));
    }

    #[test]
    fn pull_from_mirror_filters_each_mirror() {
        let conf = conf(
            r#"
[[registry]]
location = "quay.io"
[[registry.mirror]]
location = "digests.example.com"
pull-from-mirror = "digest-only"
[[registry.mirror]]
location = "tags.example.com"
pull-from-mirror = "tag-only"
[[registry.mirror]]
location = "any.example.com"
pull-from-mirror = "all"
"#,
        );
        let digest = format!("sha256:{HEX}");
        let hosts = |image: &str| -> Vec<String> {
            sources(&conf, image)
                .into_iter()
                .map(|(n, _, _)| n.split('/').next().unwrap_or_default().to_string())
                .collect()
        };
        assert_eq!(
            hosts("quay.io/x:1"),
            ["tags.example.com", "any.example.com", "quay.io"]
        );
        assert_eq!(
            hosts(&format!("quay.io/x@{digest}")),
            ["digests.example.com", "any.example.com", "quay.io"]
        );
    }

    #[test]
    fn dropins_merge_in_lexical_order() {
        let fixture = Fixture::new();
        fixture
            .main(
                r#"
unqualified-search-registries = ["quay.io"]
short-name-mode = "enforcing"
[[registry]]
location = "quay.io"
insecure = true
[[registry]]
location = "keep.example.com"
[aliases]
"a" = "quay.io/a"
"b" = "quay.io/b"
"#,
            )
            .dropin(
                "20-second.conf",
                r#"
unqualified-search-registries = ["registry.fedoraproject.org", "docker.io"]
[[registry]]
location = "quay.io"
[[registry.mirror]]
location = "m.example.com"
[aliases]
"b" = "docker.io/b"
"c" = "quay.io/c"
"#,
            )
            .dropin("10-first.conf", "unqualified-search-registries = [\"ignored.example.com\"]\n[aliases]\n\"a\" = \"\"\n")
            .dropin("30-not-a-conf.txt", "this is = not toml [")
            .dropin("05-no-mode.conf", "# nothing\n");
        std::fs::create_dir_all(fixture.dropin_dir().join("sub.conf")).expect("mkdir");
        let conf = fixture.conf();
        let names: Vec<String> = conf
            .files()
            .iter()
            .map(|p| {
                p.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(
            names,
            [
                "registries.conf",
                "05-no-mode.conf",
                "10-first.conf",
                "20-second.conf"
            ]
        );
        assert_eq!(
            conf.unqualified_search_registries(),
            ["registry.fedoraproject.org", "docker.io"]
        );
        // Set once, never reset by files that do not mention it.
        assert_eq!(conf.short_name_mode(), ShortNameMode::Enforcing);
        // The later [[registry]] with the same prefix replaced the whole entry.
        assert_eq!(
            sources(&conf, "quay.io/x:1"),
            [
                ("m.example.com/x:1".to_string(), false, true),
                ("quay.io/x:1".to_string(), false, false)
            ]
        );
        assert_eq!(conf.registries().count(), 2);
        // Aliases: "a" reset (search registries again), "b" replaced, "c" added.
        assert_eq!(
            strings(conf.resolve_short_name("a", None, None))[0],
            "registry.fedoraproject.org/a:latest"
        );
        assert_eq!(
            strings(conf.resolve_short_name("b", None, None)),
            ["docker.io/library/b:latest"]
        );
        assert_eq!(
            strings(conf.resolve_short_name("c", None, None)),
            ["quay.io/c:latest"]
        );
    }

    #[test]
    fn dropins_apply_without_a_main_file() {
        let fixture = Fixture::new();
        fixture.dropin("01.conf", "unqualified-search-registries = [\"quay.io\"]\n");
        assert_eq!(fixture.conf().unqualified_search_registries(), ["quay.io"]);
    }

    #[test]
    fn first_registry_of_a_prefix_wins_within_a_file() {
        let conf = conf(
            "[[registry]]\nprefix = \"quay.io\"\nlocation = \"one.example.com\"\n[[registry]]\nprefix = \"quay.io\"\nlocation = \"two.example.com\"\n",
        );
        assert_eq!(sources(&conf, "quay.io/x")[0].0, "one.example.com/x");
    }

    #[test]
    fn conflicting_settings_for_one_location_are_rejected() {
        let text = error_text(
            "[[registry]]\nprefix = \"a.example.com\"\nlocation = \"quay.io\"\ninsecure = true\n[[registry]]\nprefix = \"b.example.com\"\nlocation = \"quay.io\"\n",
        );
        assert!(
            text.contains("registry[1].insecure") && text.contains("conflicting"),
            "{text}"
        );
    }

    #[test]
    fn v1_format_is_rejected_clearly() {
        let text = error_text("[registries.search]\nregistries = ['docker.io']\n");
        assert!(
            text.contains("v1 format") && text.contains("not supported"),
            "{text}"
        );
        // Drop-ins too.
        let fixture = Fixture::new();
        fixture.dropin("a.conf", "[registries.block]\nregistries = []\n");
        assert!(matches!(fixture.load(), Err(RegistriesError::V1 { .. })));
    }

    #[test]
    fn bad_toml_names_file_and_line() {
        let fixture = Fixture::new();
        fixture.dropin(
            "50-bad.conf",
            "# comment\nunqualified-search-registries = [\n",
        );
        let err = fixture.load().expect_err("bad toml");
        let text = err.to_string();
        assert!(
            text.contains("50-bad.conf") && text.contains("invalid TOML"),
            "{text}"
        );
        assert!(
            matches!(err, RegistriesError::Syntax { line, .. } if line >= 2),
            "{text}"
        );
    }

    #[test]
    fn wrong_types_name_the_key() {
        let text = error_text("[[registry]]\nlocation = \"quay.io\"\ninsecure = \"yes\"\n");
        assert!(text.contains("key registry[0].insecure"), "{text}");
        let text = error_text("unqualified-search-registries = \"quay.io\"\n");
        assert!(text.contains("key unqualified-search-registries"), "{text}");
        let text =
            error_text("[[registry]]\nlocation = \"quay.io\"\n[[registry.mirror]]\nlocation = 5\n");
        assert!(
            text.contains("key registry[0].mirror[0].location"),
            "{text}"
        );
    }

    #[test]
    fn unknown_and_unsupported_keys_are_ignored() {
        let conf = conf(
            "credential-helpers = [\"containers-auth.json\"]\nsomething-new = 1\n[[registry]]\nlocation = \"quay.io\"\nfuture = true\n",
        );
        assert_eq!(conf.registries().count(), 1);
    }

    #[test]
    fn default_paths_follow_the_environment() {
        let defaults = (PathBuf::from(DEFAULT_FILE), PathBuf::from(DEFAULT_DIR));
        assert_eq!(paths_from(None), defaults);
        assert_eq!(paths_from(Some(OsString::new())), defaults);
        assert_eq!(
            paths_from(Some("/tmp/test-registries.conf".into())),
            (
                PathBuf::from("/tmp/test-registries.conf"),
                PathBuf::from(DEFAULT_DIR)
            )
        );
    }

    #[test]
    fn watcher_reloads_on_change() {
        let fixture = Fixture::new();
        fixture.main("unqualified-search-registries = [\"quay.io\"]\n");
        let watcher = RegistriesWatcher::new(fixture.file(), fixture.dropin_dir());
        let first = watcher.current().expect("load");
        assert_eq!(first.unqualified_search_registries(), ["quay.io"]);
        // Unchanged files: the same Arc, no reload.
        assert!(Arc::ptr_eq(&first, &watcher.current().expect("cached")));

        fixture.main("unqualified-search-registries = [\"registry.example.com\"]\n");
        assert_eq!(
            watcher
                .current()
                .expect("reload")
                .unqualified_search_registries(),
            ["registry.example.com"]
        );

        // A new drop-in is noticed too.
        fixture.dropin("10-x.conf", "short-name-mode = \"disabled\"\n");
        assert_eq!(
            watcher.current().expect("reload").short_name_mode(),
            ShortNameMode::Disabled
        );
    }

    #[test]
    fn watcher_reports_a_failed_reload_until_fixed() {
        let fixture = Fixture::new();
        fixture.main("unqualified-search-registries = [\"quay.io\"]\n");
        let watcher = RegistriesWatcher::new(fixture.file(), fixture.dropin_dir());
        watcher.current().expect("load");
        fixture.main("unqualified-search-registries = [\n");
        assert!(matches!(
            watcher.current(),
            Err(RegistriesError::Syntax { .. })
        ));
        // Still failing while the files stay broken, not silently the old config.
        assert!(watcher.current().is_err());
        fixture.main("unqualified-search-registries = [\"docker.io\"]\n");
        assert_eq!(
            watcher
                .current()
                .expect("fixed")
                .unqualified_search_registries(),
            ["docker.io"]
        );
        // Removing the file is a change as well: back to the empty config.
        std::fs::remove_file(fixture.file()).expect("remove");
        assert!(watcher
            .current()
            .expect("empty")
            .unqualified_search_registries()
            .is_empty());
    }
}
