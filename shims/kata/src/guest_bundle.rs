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
//! - The pod's `/dev/shm` (a bind of the pod's host tmpfs) becomes a bind of the
//!   guest's tmpfs for it ([`GUEST_SHM_DIR`], sized like the host's).
//! - The guest has cgroup v2: each container gets a cgroup namespace, as
//!   containerd and CRI-O give one on v2 hosts, so its `/sys/fs/cgroup` is its
//!   own cgroup (with its limits' files), not the guest's root.
//! - Hooks name host binaries: they leave the spec, for the shim to run on the
//!   host ([`crate::host_hooks`]).
//! - Propagation: a bind keeps its `rslave` on the host, so what the host mounts
//!   below its source later reaches the guest (as files, through the shared
//!   directory); any other is made private there. `rshared` (Bidirectional) is
//!   refused: nothing the guest mounts can reach the host.

use std::path::PathBuf;

use serde_json::Value;
use shim_support::Error;

/// Where the agent mounts the shared directory in the guest.
pub use protocols::agent::{GUEST_SHARED_DIR, GUEST_SHM_DIR};

/// The fitted spec and the host paths to bind beside it.
#[derive(Debug, Clone, PartialEq)]
pub struct GuestBundle {
    pub spec: Value,
    /// The host's rootfs as the spec named it (absolute, or relative to the
    /// bundle).
    pub rootfs: PathBuf,
    pub binds: Vec<HostBind>,
    /// The spec's hooks, run on the host.
    pub hooks: Option<Value>,
}

/// A host path bound into the container's shared directory.
#[derive(Debug, Clone, PartialEq)]
pub struct HostBind {
    pub source: PathBuf,
    /// Its name in the container's shared directory.
    pub name: String,
    /// Whether later mounts below `source` on the host reach it (`rslave`).
    pub slave: bool,
}

fn has_option(mount: &Value, option: &str) -> bool {
    mount["options"]
        .as_array()
        .is_some_and(|o| o.iter().any(|x| x == option))
}

fn is_bind(mount: &Value) -> bool {
    mount["type"] == "bind"
        || mount["options"]
            .as_array()
            .is_some_and(|o| o.iter().any(|x| x == "bind" || x == "rbind"))
}

/// Fits `spec` (the core's `config.json`) for container `id` in the guest;
/// InvalidArgument for what a guest cannot have.
pub fn for_guest(mut spec: Value, id: &str) -> Result<GuestBundle, Error> {
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
        if !namespaces.iter().any(|ns| ns["type"] == "cgroup") {
            namespaces.push(serde_json::json!({"type": "cgroup"}));
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
            // The pod's /dev/shm is the guest's tmpfs: shared memory over 9p would
            // be neither sized nor mappable.
            if mount["destination"] == "/dev/shm" {
                mount["source"] = Value::from(GUEST_SHM_DIR);
                continue;
            }
            if has_option(mount, "rshared") || has_option(mount, "shared") {
                return Err(Error::InvalidArgument(format!(
                    "mount {}: shared (Bidirectional) propagation cannot reach the host \
                     from a VM",
                    mount["destination"].as_str().unwrap_or_default()
                )));
            }
            let name = format!("mount-{i}");
            binds.push(HostBind {
                source: PathBuf::from(source),
                name: name.clone(),
                slave: has_option(mount, "rslave") || has_option(mount, "slave"),
            });
            mount["source"] = Value::from(format!("{GUEST_SHARED_DIR}/{id}/{name}"));
        }
    }
    let hooks = spec.as_object_mut().and_then(|o| o.remove("hooks"));
    Ok(GuestBundle {
        spec,
        rootfs,
        binds,
        hooks,
    })
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
                {"destination": "/data", "type": "none", "source": "/srv/data",
                 "options": ["rbind", "rslave"]},
                {"destination": "/dev/shm", "type": "tmpfs", "source": "shm"},
                {"destination": "/dev/shm", "type": "bind", "source": "/run/crio-rs/pods/p/shm",
                 "options": ["rbind"]}
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
        let fitted = for_guest(spec, "c1").expect("fitted");
        assert_eq!(fitted.spec["root"]["path"], "rootfs");
        assert_eq!(
            fitted.rootfs,
            PathBuf::from("/var/lib/crio-rs/containers/c1/rootfs")
        );
        assert!(fitted.spec.get("hooks").is_none());
        assert_eq!(
            fitted.hooks,
            Some(json!({"prestart": [{"path": "/usr/bin/hook"}]}))
        );
        let types: Vec<&str> = fitted.spec["linux"]["namespaces"]
            .as_array()
            .expect("namespaces")
            .iter()
            .map(|n| n["type"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(types, ["pid", "uts", "mount", "user", "cgroup"]);
        for ns in fitted.spec["linux"]["namespaces"]
            .as_array()
            .expect("namespaces")
        {
            assert!(ns.get("path").is_none(), "{ns}");
        }
        assert_eq!(
            fitted.binds,
            [
                HostBind {
                    source: PathBuf::from("/run/crio-rs/pods/p/hosts"),
                    name: "mount-1".to_string(),
                    slave: false,
                },
                HostBind {
                    source: PathBuf::from("/srv/data"),
                    name: "mount-2".to_string(),
                    slave: true,
                }
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
        assert_eq!(
            fitted.spec["mounts"][4]["source"], GUEST_SHM_DIR,
            "the guest's shm"
        );
    }

    #[test]
    fn a_spec_without_namespaces_or_mounts_is_left_alone() {
        let fitted = for_guest(json!({"root": {"path": "r"}}), "c").expect("fitted");
        assert_eq!(fitted.spec, json!({"root": {"path": "rootfs"}}));
        assert_eq!(fitted.rootfs, PathBuf::from("r"));
        assert!(fitted.binds.is_empty());
    }

    #[test]
    fn a_shared_bind_is_refused() {
        let spec = json!({"root": {"path": "r"}, "mounts": [
            {"destination": "/bidir", "type": "bind", "source": "/srv", "options": ["rbind", "rshared"]}
        ]});
        let err = for_guest(spec, "c").expect_err("rshared");
        assert!(
            matches!(&err, Error::InvalidArgument(m) if m.contains("/bidir")),
            "{err}"
        );
    }
}
