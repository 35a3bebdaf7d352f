//! Fitting a spec to what the shim itself may grant on a restricted host: an
//! `oomScoreAdj` below the shim's own needs CAP_SYS_RESOURCE, and a capability
//! outside the shim's bounding set cannot be given to a container. Runtimes on
//! such hosts clamp the one and drop the other instead of failing.

use std::path::Path;

use serde_json::Value;

use crate::error::{io_err, Result};

/// The number of a capability name (`CAP_` prefix optional, any case).
pub fn cap_number(name: &str) -> Option<u32> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    full.parse::<caps::Capability>()
        .ok()
        .map(|c| u32::from(c.index()))
}

/// The capability bounding set from `/proc/<pid>/status` text (`CapBnd:`).
pub fn bounding_set(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

/// What [`restrict_process`] changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    /// `(asked, given)` when `oomScoreAdj` was raised.
    pub oom_score_adj: Option<(i64, i64)>,
    /// Capabilities dropped, each once, in the order met.
    pub dropped: Vec<String>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.oom_score_adj.is_none() && self.dropped.is_empty()
    }
}

/// Clamps `oomScoreAdj` of a spec (the whole config.json) to no lower than
/// `own_oom`, and drops from every capability set of its process the
/// capabilities missing from `bounding`.
pub fn restrict_spec(spec: &mut Value, own_oom: i64, bounding: u64) -> Changes {
    let mut changes = Changes::default();
    if let Some(process) = spec.get_mut("process") {
        changes = restrict_process(process, bounding);
    }
    if let Some(adj) = spec
        .get_mut("process")
        .and_then(|p| p.get_mut("oomScoreAdj"))
    {
        if let Some(asked) = adj.as_i64() {
            if asked < own_oom {
                *adj = Value::from(own_oom);
                changes.oom_score_adj = Some((asked, own_oom));
            }
        }
    }
    changes
}

/// Drops from every capability set of a process object the capabilities
/// missing from `bounding` (unknown names are left alone).
pub fn restrict_process(process: &mut Value, bounding: u64) -> Changes {
    let mut changes = Changes::default();
    let Some(caps) = process
        .get_mut("capabilities")
        .and_then(Value::as_object_mut)
    else {
        return changes;
    };
    for (_, set) in caps.iter_mut() {
        let Some(list) = set.as_array_mut() else {
            continue;
        };
        list.retain(|name| {
            let Some(name) = name.as_str() else {
                return true;
            };
            match cap_number(name) {
                Some(n) if n < 64 && bounding & (1u64 << n) == 0 => {
                    if !changes.dropped.iter().any(|d| d == name) {
                        changes.dropped.push(name.to_string());
                    }
                    false
                }
                _ => true,
            }
        });
    }
    changes
}

/// This process's `oom_score_adj`.
pub fn own_oom_score_adj() -> Result<i64> {
    let text = std::fs::read_to_string("/proc/self/oom_score_adj")
        .map_err(io_err("read /proc/self/oom_score_adj"))?;
    Ok(text.trim().parse().unwrap_or(0))
}

/// This process's capability bounding set.
pub fn own_bounding_set() -> Result<u64> {
    let text =
        std::fs::read_to_string("/proc/self/status").map_err(io_err("read /proc/self/status"))?;
    Ok(bounding_set(&text).unwrap_or(u64::MAX))
}

/// Restricts `<bundle>/config.json` in place (rewritten only if changed).
pub fn restrict_bundle(bundle: &Path) -> Result<Changes> {
    let path = bundle.join("config.json");
    let bytes = std::fs::read(&path).map_err(io_err(format!("read {}", path.display())))?;
    let mut spec: Value = serde_json::from_slice(&bytes)?;
    let changes = restrict_spec(&mut spec, own_oom_score_adj()?, own_bounding_set()?);
    log_changes("container", &changes);
    if !changes.is_empty() {
        crate::launch::write_atomic(&path, &serde_json::to_vec(&spec)?)?;
    }
    Ok(changes)
}

/// Logs what was changed, at debug level.
pub fn log_changes(what: &str, changes: &Changes) {
    if let Some((asked, given)) = changes.oom_score_adj {
        tracing::debug!(what, asked, given, "oomScoreAdj raised to the shim's own");
    }
    if !changes.dropped.is_empty() {
        tracing::debug!(what, dropped = ?changes.dropped, "capabilities outside the shim's bounding set dropped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cap_numbers() {
        assert_eq!(cap_number("CAP_CHOWN"), Some(0));
        assert_eq!(cap_number("sys_resource"), Some(24));
        assert_eq!(cap_number("CAP_CHECKPOINT_RESTORE"), Some(40));
        assert_eq!(cap_number("CAP_NOPE"), None);
    }

    #[test]
    fn reads_bounding_set() {
        assert_eq!(
            bounding_set("Name:\tx\nCapBnd:\t000001fffeffffff\n"),
            Some(0x1fffeffffff)
        );
    }

    #[test]
    fn clamps_oom_and_drops_missing_caps() {
        let mut spec = json!({
            "process": {
                "oomScoreAdj": -998,
                "capabilities": {
                    "bounding": ["CAP_CHOWN", "CAP_SYS_RESOURCE", "CAP_FUTURE"],
                    "effective": ["CAP_SYS_RESOURCE", "CAP_KILL"],
                    "permitted": ["CAP_SYS_RESOURCE"]
                }
            },
            "root": {"path": "rootfs"}
        });
        // Everything but CAP_SYS_RESOURCE (24), like this host.
        let bounding = 0x1fffeffffffu64;
        let changes = restrict_spec(&mut spec, 0, bounding);
        assert_eq!(changes.oom_score_adj, Some((-998, 0)));
        assert_eq!(changes.dropped, vec!["CAP_SYS_RESOURCE".to_string()]);
        assert_eq!(spec["process"]["oomScoreAdj"], 0);
        assert_eq!(
            spec["process"]["capabilities"]["bounding"],
            json!(["CAP_CHOWN", "CAP_FUTURE"])
        );
        assert_eq!(
            spec["process"]["capabilities"]["effective"],
            json!(["CAP_KILL"])
        );
        assert_eq!(spec["root"]["path"], "rootfs");
    }

    #[test]
    fn leaves_allowed_specs_alone() {
        let mut spec =
            json!({"process": {"oomScoreAdj": 500, "capabilities": {"bounding": ["CAP_KILL"]}}});
        let before = spec.clone();
        let changes = restrict_spec(&mut spec, 0, u64::MAX);
        assert!(changes.is_empty());
        assert_eq!(spec, before);
    }
}
