//! The devices the spec directories define. A later directory overrides an earlier
//! one (`/var/run/cdi` over `/etc/cdi`, as in the CDI library); one device defined
//! twice within a directory is a conflict, reported when that device is asked for.
//! A file that does not parse is skipped, and named if a device cannot be found.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::spec_file::{self, ContainerEdits, SpecFile};
use super::CdiError;

/// What a device brings: its own edits, and its spec file's (applied once per file).
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub name: String,
    pub file: PathBuf,
    pub device_edits: ContainerEdits,
    pub spec_edits: Arc<ContainerEdits>,
}

#[derive(Debug)]
enum Slot {
    Device { priority: usize, resolved: Resolved },
    Conflict { first: PathBuf, second: PathBuf },
}

#[derive(Debug, Default)]
pub(crate) struct Registry {
    devices: HashMap<String, Slot>,
    /// Files that could not be read or parsed, with why.
    problems: Vec<String>,
    dirs: Vec<PathBuf>,
}

impl Registry {
    /// Reads every `*.json`, `*.yaml` and `*.yml` file in `dirs` (missing dirs are
    /// fine: no driver has written there yet).
    pub(crate) fn load(dirs: &[PathBuf]) -> Self {
        let mut registry = Self {
            dirs: dirs.to_vec(),
            ..Self::default()
        };
        for (priority, dir) in dirs.iter().enumerate() {
            for path in spec_files(dir) {
                match std::fs::read_to_string(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|text| spec_file::parse(&path, &text))
                {
                    Ok(spec) => registry.add(priority, &path, spec),
                    Err(e) => registry.problems.push(format!("{}: {e}", path.display())),
                }
            }
        }
        registry
    }

    fn add(&mut self, priority: usize, path: &Path, spec: SpecFile) {
        let spec_edits = Arc::new(spec.container_edits);
        for device in spec.devices {
            let name = format!("{}={}", spec.kind, device.name);
            let resolved = Resolved {
                name: name.clone(),
                file: path.to_path_buf(),
                device_edits: device.container_edits,
                spec_edits: spec_edits.clone(),
            };
            let slot = match self.devices.remove(&name) {
                None => Slot::Device { priority, resolved },
                Some(Slot::Device {
                    priority: theirs,
                    resolved: existing,
                }) if theirs == priority => Slot::Conflict {
                    first: existing.file,
                    second: path.to_path_buf(),
                },
                // Directories come in order: a later one overrides.
                Some(Slot::Device { .. }) => Slot::Device { priority, resolved },
                Some(conflict @ Slot::Conflict { .. }) => conflict,
            };
            self.devices.insert(name, slot);
        }
    }

    /// The device a fully qualified name (`vendor.com/class=name`) stands for.
    pub(crate) fn resolve(&self, name: &str) -> Result<&Resolved, CdiError> {
        if spec_file::split_qualified(name).is_none() {
            return Err(CdiError::BadName(name.to_string()));
        }
        match self.devices.get(name) {
            Some(Slot::Device { resolved, .. }) => Ok(resolved),
            Some(Slot::Conflict { first, second }) => Err(CdiError::Conflict {
                name: name.to_string(),
                first: first.clone(),
                second: second.clone(),
            }),
            None => Err(CdiError::Unknown {
                name: name.to_string(),
                dirs: self
                    .dirs
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                problems: if self.problems.is_empty() {
                    String::new()
                } else {
                    format!(" (files skipped: {})", self.problems.join("; "))
                },
            }),
        }
    }
}

/// Spec files of one directory, by name.
fn spec_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.extension()
                        .is_some_and(|e| e == "json" || e == "yaml" || e == "yml")
                        && p.is_file()
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: &str, device: &str, env: &str) -> String {
        format!(
            r#"{{"cdiVersion":"0.6.0","kind":"{kind}","devices":[{{"name":"{device}","containerEdits":{{"env":["{env}"]}}}}]}}"#
        )
    }

    #[test]
    fn later_directories_override_and_conflicts_are_reported() {
        let etc = tempfile::tempdir().expect("tmp");
        let run = tempfile::tempdir().expect("tmp");
        std::fs::write(
            etc.path().join("a.json"),
            spec("x.com/gpu", "0", "FROM=etc"),
        )
        .expect("write");
        std::fs::write(
            run.path().join("a.json"),
            spec("x.com/gpu", "0", "FROM=run"),
        )
        .expect("write");
        std::fs::write(etc.path().join("b.json"), spec("x.com/nic", "1", "N=1")).expect("write");
        std::fs::write(etc.path().join("c.json"), spec("x.com/nic", "1", "N=2")).expect("write");
        std::fs::write(etc.path().join("broken.yaml"), "kind: [").expect("write");
        std::fs::write(etc.path().join("notes.txt"), "not a spec").expect("write");
        let dirs = [etc.path().to_path_buf(), run.path().to_path_buf()];
        let registry = Registry::load(&dirs);

        let gpu = registry.resolve("x.com/gpu=0").expect("gpu");
        assert_eq!(gpu.device_edits.env, ["FROM=run"]);
        assert_eq!(gpu.file, run.path().join("a.json"));

        let conflict = registry.resolve("x.com/nic=1").expect_err("defined twice");
        assert!(matches!(conflict, CdiError::Conflict { .. }), "{conflict}");
        assert!(conflict.to_string().contains("b.json"), "{conflict}");

        let unknown = registry.resolve("x.com/gpu=9").expect_err("unknown");
        let text = unknown.to_string();
        assert!(
            text.contains("x.com/gpu=9") && text.contains("broken.yaml"),
            "{text}"
        );
        assert!(!text.contains("notes.txt"), "{text}");

        assert!(matches!(
            registry.resolve("gpu0"),
            Err(CdiError::BadName(_))
        ));
    }

    #[test]
    fn missing_directories_define_nothing() {
        let registry = Registry::load(&[PathBuf::from("/nonexistent/cdi")]);
        let e = registry.resolve("x.com/gpu=0").expect_err("nothing");
        assert!(e.to_string().contains("/nonexistent/cdi"), "{e}");
    }
}
