//! OCI hooks from hooks directories (`[crio.runtime] hooks_dir`), in
//! containers-common's JSON format (oci-hooks(5), version 1.0.0), as CRI-O runs
//! them: every `*.json` file of the directories, a file in a later directory
//! replacing one of the same name in an earlier, applied in file-name order to the
//! containers its `when` matches. The directories are read at each
//! CreateContainer, so a hook dropped in applies to the next container.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{Hook, Hooks};
use regex::Regex;
use serde::Deserialize;

/// CRI-O's default `hooks_dir` (containers/common's `hooks.DefaultDir`).
pub(crate) const DEFAULT_DIR: &str = "/usr/share/containers/oci/hooks.d";

use crate::spec::HOOK_STAGES as STAGES;

#[derive(Debug, thiserror::Error)]
pub(crate) enum HookError {
    #[error("hook file {}: {message}", path.display())]
    File { path: PathBuf, message: String },
    #[error("hooks directory {}: {source}", path.display())]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HookFile {
    version: String,
    hook: Command,
    when: When,
    stages: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Command {
    path: PathBuf,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: Vec<String>,
    timeout: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct When {
    always: Option<bool>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    commands: Vec<String>,
    #[serde(rename = "hasBindMounts")]
    has_bind_mounts: Option<bool>,
}

/// One hook file, checked: its command exists, its patterns compile.
#[derive(Debug, Clone)]
pub(crate) struct OciHook {
    pub file: PathBuf,
    command: Command,
    always: Option<bool>,
    has_bind_mounts: Option<bool>,
    annotations: Vec<(Regex, Regex)>,
    commands: Vec<Regex>,
    stages: Vec<String>,
}

/// What a hook's `when` is matched against.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target<'a> {
    pub annotations: &'a BTreeMap<String, String>,
    /// The container's `process.args[0]`.
    pub command: &'a str,
    pub has_bind_mounts: bool,
}

fn file_error(path: &Path, message: impl Into<String>) -> HookError {
    HookError::File {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Go's `regexp.MatchString` finds a match anywhere: so does `Regex::is_match`.
fn pattern(path: &Path, what: &str, text: &str) -> Result<Regex, HookError> {
    Regex::new(text).map_err(|e| file_error(path, format!("{what} {text:?}: {e}")))
}

impl OciHook {
    /// Parses and checks one hook file.
    pub(crate) fn read(path: &Path) -> Result<Self, HookError> {
        let text = std::fs::read(path).map_err(|e| file_error(path, e.to_string()))?;
        let version = serde_json::from_slice::<serde_json::Value>(&text)
            .map_err(|e| file_error(path, e.to_string()))?
            .get("version")
            .and_then(|v| v.as_str().map(String::from));
        if version.as_deref() != Some("1.0.0") {
            return Err(file_error(
                path,
                format!(
                    "version {version:?} is not supported (accepted: \"1.0.0\"; \
                     convert 0.1.0 files to 1.0.0, oci-hooks(5))"
                ),
            ));
        }
        let file: HookFile =
            serde_json::from_slice(&text).map_err(|e| file_error(path, e.to_string()))?;
        debug_assert_eq!(file.version, "1.0.0");
        if !file.hook.path.is_absolute() {
            return Err(file_error(path, "hook.path must be an absolute path"));
        }
        if let Err(e) = std::fs::metadata(&file.hook.path) {
            return Err(file_error(
                path,
                format!("hook.path {}: {e}", file.hook.path.display()),
            ));
        }
        let when = &file.when;
        if when.always.is_none()
            && when.has_bind_mounts.is_none()
            && when.annotations.is_empty()
            && when.commands.is_empty()
        {
            return Err(file_error(
                path,
                "when: at least one of always, annotations, commands, hasBindMounts must be set",
            ));
        }
        if file.stages.is_empty() {
            return Err(file_error(path, "stages must name at least one stage"));
        }
        for stage in &file.stages {
            if !STAGES.contains(&stage.as_str()) {
                return Err(file_error(
                    path,
                    format!("unknown stage {stage:?} (accepted: {})", STAGES.join(", ")),
                ));
            }
        }
        let mut annotations = Vec::new();
        for (key, value) in &when.annotations {
            annotations.push((
                pattern(path, "when.annotations key", key)?,
                pattern(path, "when.annotations value", value)?,
            ));
        }
        let commands = when
            .commands
            .iter()
            .map(|c| pattern(path, "when.commands", c))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            file: path.to_path_buf(),
            command: file.hook,
            always: when.always,
            has_bind_mounts: when.has_bind_mounts,
            annotations,
            commands,
            stages: file.stages,
        })
    }

    /// containers-common's rule: every condition that is set must hold (`always:
    /// false` never does); `commands` holds when any pattern matches.
    pub(crate) fn matches(&self, target: &Target<'_>) -> bool {
        if self.always == Some(false) {
            return false;
        }
        if self.has_bind_mounts.is_some()
            && !(self.has_bind_mounts == Some(true) && target.has_bind_mounts)
        {
            return false;
        }
        for (key, value) in &self.annotations {
            let found = target
                .annotations
                .iter()
                .any(|(k, v)| key.is_match(k) && value.is_match(v));
            if !found {
                return false;
            }
        }
        if !self.commands.is_empty() {
            return self.commands.iter().any(|c| c.is_match(target.command));
        }
        true
    }

    /// Adds this hook to `hooks` at each of its stages.
    pub(crate) fn add_to(&self, hooks: &mut Hooks) {
        let mut hook = Hook::default();
        hook.set_path(self.command.path.clone());
        hook.set_args((!self.command.args.is_empty()).then(|| self.command.args.clone()));
        hook.set_env((!self.command.env.is_empty()).then(|| self.command.env.clone()));
        hook.set_timeout(self.command.timeout);
        for stage in &self.stages {
            // CRI-O's containers/common puts `prestart` hooks with `createRuntime`
            // (the same moment; `prestart` is deprecated in the runtime spec).
            let stage = if stage == "prestart" {
                "createRuntime"
            } else {
                stage
            };
            // Checked at read: every stage is an OCI one.
            let _ = crate::spec::add_hook(hooks, stage, hook.clone());
        }
    }
}

/// The hooks of `dirs`, in file-name order; a later directory's file replaces an
/// earlier one of the same name. A missing directory has no hooks. Files that
/// fail their checks are returned apart, for the caller to refuse or report.
pub(crate) fn load(dirs: &[PathBuf]) -> (Vec<OciHook>, Vec<HookError>) {
    let mut by_name: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut errors = Vec::new();
    for dir in dirs {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => {
                errors.push(HookError::Dir {
                    path: dir.clone(),
                    source,
                });
                continue;
            }
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".json") && entry.path().is_file() {
                by_name.insert(name, entry.path());
            }
        }
    }
    let mut hooks = Vec::new();
    for path in by_name.into_values() {
        match OciHook::read(&path) {
            Ok(hook) => hooks.push(hook),
            Err(e) => errors.push(e),
        }
    }
    (hooks, errors)
}

/// Adds the hooks that match `target` to `hooks` (after what is there, such as
/// CDI's). Returns the files applied, for the log.
pub(crate) fn apply(
    all: &[OciHook],
    target: &Target<'_>,
    hooks: &mut Option<Hooks>,
) -> Vec<PathBuf> {
    let mut applied = Vec::new();
    for hook in all.iter().filter(|h| h.matches(target)) {
        hook.add_to(hooks.get_or_insert_with(Hooks::default));
        applied.push(hook.file.clone());
    }
    applied
}

/// Reads `dirs` at each use, remembering nothing but the last errors reported, so a
/// broken file is logged once per change rather than at every container.
#[derive(Debug, Default)]
pub(crate) struct HooksDirs {
    dirs: Vec<PathBuf>,
    reported: std::sync::Mutex<HashMap<PathBuf, String>>,
}

impl HooksDirs {
    /// Checks every file now: a broken hook file stops the daemon's start (as
    /// CRI-O's), naming the file and what is wrong.
    pub(crate) fn open(dirs: Vec<PathBuf>) -> Result<Self, HookError> {
        let (_, mut errors) = load(&dirs);
        if !errors.is_empty() {
            return Err(errors.remove(0));
        }
        Ok(Self {
            dirs,
            reported: Default::default(),
        })
    }

    /// The hooks now in the directories; a file broken since start is skipped with
    /// a warning (the others still apply).
    pub(crate) fn current(&self) -> Vec<OciHook> {
        if self.dirs.is_empty() {
            return Vec::new();
        }
        let (hooks, errors) = load(&self.dirs);
        if let Ok(mut reported) = self.reported.lock() {
            let mut now = HashMap::new();
            for e in errors {
                let key = match &e {
                    HookError::File { path, .. } | HookError::Dir { path, .. } => path.clone(),
                };
                let text = e.to_string();
                if reported.get(&key) != Some(&text) {
                    tracing::warn!("{text}: the hook is skipped");
                }
                now.insert(key, text);
            }
            *reported = now;
        }
        hooks
    }
}

#[cfg(test)]
mod tests;
