//! What each handler can do, for the CRI `Status`: asked from the shim (`-info`,
//! containerd 2.x's `RuntimeInfo` with the OCI runtime's features), or, for `oci`
//! handlers whose shim does not answer, from the OCI runtime itself (`runc features`).
//! Unknown means unsupported: a feature is never assumed.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use protocols::shim::protobuf::Message;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use super::Handler;

const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The annotation of a shim's `-info` (`RuntimeInfo.annotations`) saying it runs a
/// pod's containers without a sandbox (pause) task. Our shims set it; a shim that
/// does not is given a pause task, as containerd always gives one.
pub(crate) const SANDBOX_TASK_ANNOTATION: &str = "io.crio-rs.sandbox-task";

/// The annotation of a shim's `-info` saying how a pod is isolated: `vm` when it
/// runs in a VM (its ports, processes and IPC are the guest's, not in the pod's
/// namespaces on the host).
pub(crate) const POD_ISOLATION_ANNOTATION: &str = "io.crio-rs.pod-isolation";

/// The CRI `RuntimeHandlerFeatures` of one handler, and what the core needs to know
/// of its shim.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct HandlerFeatures {
    pub recursive_read_only_mounts: bool,
    pub user_namespaces: bool,
    /// The shim serves a pod's containers in one server whether or not the pod has
    /// a sandbox task (`SANDBOX_TASK_ANNOTATION` = `optional`): `drop_infra_ctr` may
    /// apply, and a pod's later tasks need no `start` action to find the server.
    pub sandbox_task_optional: bool,
    /// The pod runs in a VM (`POD_ISOLATION_ANNOTATION` = `vm`): its ports cannot
    /// be dialled from its network namespace, and it cannot share the host's
    /// namespaces.
    pub pod_in_vm: bool,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct OciFeatures {
    #[serde(default)]
    mount_options: Vec<String>,
    #[serde(default)]
    linux: Option<LinuxFeatures>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct LinuxFeatures {
    #[serde(default)]
    namespaces: Vec<String>,
    #[serde(default)]
    mount_extensions: Option<MountExtensions>,
}

#[derive(Deserialize, Default)]
struct MountExtensions {
    #[serde(default)]
    idmap: Option<Enabled>,
}

#[derive(Deserialize, Default)]
struct Enabled {
    #[serde(default)]
    enabled: Option<bool>,
}

/// The features an OCI runtime's `features` document implies on a kernel of
/// `kernel_release`: recursive read-only mounts need the `rro` option and
/// `mount_setattr` (Linux 5.12), as containerd derives them. User namespaces
/// (`hostUsers: false`) need a runtime that joins one and ID-mapped mounts: the
/// daemon ID-maps the rootfs layers and volumes itself, which needs ID-mapped
/// overlayfs layers (Linux 5.19), so the runtime's own idmap support is not needed,
/// only the `user` namespace (or idmap support, which implies it).
pub(crate) fn from_oci_features(json: &[u8], kernel_release: &str) -> HandlerFeatures {
    let Ok(f) = serde_json::from_slice::<OciFeatures>(json) else {
        return HandlerFeatures::default();
    };
    let linux = f.linux.unwrap_or_default();
    let idmap = linux
        .mount_extensions
        .and_then(|m| m.idmap)
        .and_then(|i| i.enabled)
        .unwrap_or(false);
    let joins_user_namespaces = idmap || linux.namespaces.iter().any(|n| n == "user");
    HandlerFeatures {
        recursive_read_only_mounts: f.mount_options.iter().any(|o| o == "rro")
            && kernel_at_least(kernel_release, 5, 12),
        user_namespaces: joins_user_namespaces && kernel_at_least(kernel_release, 5, 19),
        sandbox_task_optional: false,
        pod_in_vm: false,
    }
}

fn kernel_at_least(release: &str, major: u32, minor: u32) -> bool {
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u32>().ok());
    match (parts.next(), parts.next()) {
        (Some(a), Some(b)) => (a, b) >= (major, minor),
        _ => false,
    }
}

/// Asks the handler's shim (then its OCI runtime) what it supports.
pub(crate) async fn probe(handler: &Handler, shim: Option<&Path>) -> HandlerFeatures {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut info = None;
    if let Some(shim) = shim {
        let options = handler
            .shim_options(false)
            .and_then(|any| any.write_to_bytes().ok())
            .unwrap_or_default();
        if let Some(out) = run(shim, &["-info"], &options).await {
            info = protocols::shim::types::introspection::RuntimeInfo::parse_from_bytes(&out).ok();
        }
    }
    let sandbox_task_optional = info
        .as_ref()
        .and_then(|i| i.annotations.get(SANDBOX_TASK_ANNOTATION))
        .is_some_and(|v| v == "optional");
    let oci_features = match info.as_ref().and_then(|i| i.features.as_ref()) {
        Some(features) => Some(features.value.clone()),
        None => match handler.oci_runtime_binary() {
            Some(runtime) => run(Path::new(&runtime), &["features"], &[]).await,
            None => None,
        },
    };
    let pod_in_vm = info
        .as_ref()
        .and_then(|i| i.annotations.get(POD_ISOLATION_ANNOTATION))
        .is_some_and(|v| v == "vm");
    HandlerFeatures {
        sandbox_task_optional,
        pod_in_vm,
        ..oci_features
            .map(|json| from_oci_features(&json, &kernel))
            .unwrap_or_default()
    }
}

/// Runs a probe; its stdout when it succeeds in time.
async fn run(binary: &Path, args: &[&str], stdin: &[u8]) -> Option<Vec<u8>> {
    let mut child = tokio::process::Command::new(binary)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .ok()?;
    if let Some(mut input) = child.stdin.take() {
        let _ = input.write_all(stdin).await;
    }
    let out = tokio::time::timeout(PROBE_TIMEOUT, child.wait_with_output())
        .await
        .ok()?
        .ok()?;
    out.status.success().then_some(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rro_needs_the_option_and_a_new_kernel() {
        let json = br#"{"mountOptions":["bind","rro"],"linux":{"namespaces":["pid"]}}"#;
        let f = from_oci_features(json, "6.18.0-cloud");
        assert!(f.recursive_read_only_mounts);
        assert!(!f.user_namespaces, "no user namespace to join");
        assert!(!from_oci_features(json, "5.10.0").recursive_read_only_mounts);
    }

    #[test]
    fn user_namespaces_need_a_runtime_that_joins_them_and_idmapped_layers() {
        let json = br#"{"linux":{"mountExtensions":{"idmap":{"enabled":true}}}}"#;
        assert!(from_oci_features(json, "6.1.0").user_namespaces);
        let joins = br#"{"linux":{"namespaces":["mount","user"]}}"#;
        assert!(from_oci_features(joins, "6.18.0").user_namespaces);
        assert!(
            !from_oci_features(joins, "5.15.0").user_namespaces,
            "overlayfs takes ID-mapped layers from 5.19"
        );
        assert_eq!(
            from_oci_features(b"not json", "6.1"),
            HandlerFeatures::default()
        );
    }
}
