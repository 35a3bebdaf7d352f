//! A container's bundle as the guest sees it: the spec the core wrote, fitted to
//! the VM, and the host paths it names, to be bound into the VM's shared
//! directory.
//!
//! - The pod's network and IPC namespaces are the VM's own: their host paths (the
//!   core's pinned namespaces) mean nothing in the guest, so those entries go and
//!   the container shares the guest's, as every container of the pod does. The
//!   UTS namespace stays, new, so the spec's hostname (the pod's) can be set in
//!   it. Other namespaces stay (new ones, made in the guest).
//! - Bind mounts of host paths (the pod's hosts, hostname and resolv.conf files,
//!   `/dev/shm`, volumes) are bound into the container's directory of the shared
//!   directory and named there by their guest path.
//! - Hooks name host binaries: they are not run in the guest.

use std::path::PathBuf;

use serde_json::Value;

/// Where the agent mounts the shared directory in the guest.
pub const GUEST_SHARED_DIR: &str = "/run/crio-rs/shared";

/// The fitted spec and the host paths to bind beside it.
#[derive(Debug, Clone, PartialEq)]
pub struct GuestBundle {
    pub spec: Value,
    /// The host's rootfs as the spec named it (absolute, or relative to the
    /// bundle).
    pub rootfs: PathBuf,
    /// (host source, name in the container's shared directory).
    pub binds: Vec<(PathBuf, String)>,
}

fn is_bind(mount: &Value) -> bool {
    mount["type"] == "bind"
        || mount["options"]
            .as_array()
            .is_some_and(|o| o.iter().any(|x| x == "bind" || x == "rbind"))
}

/// Fits `spec` (the core's `config.json`) for container `id` in the guest.
pub fn for_guest(mut spec: Value, id: &str) -> GuestBundle {
    let rootfs = PathBuf::from(spec["root"]["path"].as_str().unwrap_or("rootfs"));
    spec["root"]["path"] = Value::from("rootfs");
    // `pointer_mut`, not indexing: indexing a missing key would add it as null.
    if let Some(namespaces) = spec
        .pointer_mut("/linux/namespaces")
        .and_then(Value::as_array_mut)
    {
        namespaces.retain(|ns| {
            let shared_with_pod = ["network", "ipc"].iter().any(|t| ns["type"] == *t);
            !(shared_with_pod && ns.get("path").is_some())
        });
        for ns in namespaces.iter_mut() {
            if let Some(o) = ns.as_object_mut() {
                o.remove("path");
            }
        }
    }
    let mut binds = Vec::new();
    if let Some(mounts) = spec.pointer_mut("/mounts").and_then(Value::as_array_mut) {
        for (i, mount) in mounts.iter_mut().enumerate() {
            let Some(source) = mount["source"].as_str().filter(|s| s.starts_with('/')) else {
                continue;
            };
            if !is_bind(mount) {
                continue;
            }
            let name = format!("mount-{i}");
            binds.push((PathBuf::from(source), name.clone()));
            mount["source"] = Value::from(format!("{GUEST_SHARED_DIR}/{id}/{name}"));
        }
    }
    if let Some(o) = spec.as_object_mut() {
        o.remove("hooks");
    }
    GuestBundle {
        spec,
        rootfs,
        binds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pod_namespaces_and_host_binds_are_fitted() {
        let spec = json!({
            "root": {"path": "/var/lib/crio-rs/containers/c1/rootfs"},
            "hooks": {"prestart": [{"path": "/usr/bin/hook"}]},
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/etc/hosts", "type": "bind", "source": "/run/crio-rs/pods/p/hosts",
                 "options": ["rbind", "ro"]},
                {"destination": "/data", "type": "none", "source": "/srv/data", "options": ["rbind"]},
                {"destination": "/dev/shm", "type": "tmpfs", "source": "shm"}
            ],
            "linux": {"namespaces": [
                {"type": "pid"},
                {"type": "network", "path": "/run/crio-rs/netns/p"},
                {"type": "ipc", "path": "/run/crio-rs/ipcns/p"},
                {"type": "uts", "path": "/run/crio-rs/utsns/p"},
                {"type": "mount"},
                {"type": "user", "path": "/proc/1/ns/user"}
            ]}
        });
        let fitted = for_guest(spec, "c1");
        assert_eq!(fitted.spec["root"]["path"], "rootfs");
        assert_eq!(
            fitted.rootfs,
            PathBuf::from("/var/lib/crio-rs/containers/c1/rootfs")
        );
        assert!(fitted.spec.get("hooks").is_none());
        let types: Vec<&str> = fitted.spec["linux"]["namespaces"]
            .as_array()
            .expect("namespaces")
            .iter()
            .map(|n| n["type"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(types, ["pid", "uts", "mount", "user"]);
        for ns in fitted.spec["linux"]["namespaces"]
            .as_array()
            .expect("namespaces")
        {
            assert!(ns.get("path").is_none(), "{ns}");
        }
        assert_eq!(
            fitted.binds,
            [
                (
                    PathBuf::from("/run/crio-rs/pods/p/hosts"),
                    "mount-1".to_string()
                ),
                (PathBuf::from("/srv/data"), "mount-2".to_string())
            ]
        );
        assert_eq!(
            fitted.spec["mounts"][1]["source"],
            "/run/crio-rs/shared/c1/mount-1"
        );
        assert_eq!(
            fitted.spec["mounts"][2]["source"],
            "/run/crio-rs/shared/c1/mount-2"
        );
        assert_eq!(fitted.spec["mounts"][0]["source"], "proc");
        assert_eq!(fitted.spec["mounts"][3]["source"], "shm");
    }

    #[test]
    fn a_spec_without_namespaces_or_mounts_is_left_alone() {
        let fitted = for_guest(json!({"root": {"path": "r"}}), "c");
        assert_eq!(fitted.spec, json!({"root": {"path": "rootfs"}}));
        assert_eq!(fitted.rootfs, PathBuf::from("r"));
        assert!(fitted.binds.is_empty());
    }
}
