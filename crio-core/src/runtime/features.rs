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

/// The CRI `RuntimeHandlerFeatures` of one handler.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HandlerFeatures {
    pub recursive_read_only_mounts: bool,
    pub user_namespaces: bool,
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
/// `kernel_release`, as containerd derives them: recursive read-only mounts need the
/// `rro` option and `mount_setattr` (Linux 5.12); user namespaces need idmapped mounts.
pub fn from_oci_features(json: &[u8], kernel_release: &str) -> HandlerFeatures {
    let Ok(f) = serde_json::from_slice::<OciFeatures>(json) else {
        return HandlerFeatures::default();
    };
    let idmap = f
        .linux
        .and_then(|l| l.mount_extensions)
        .and_then(|m| m.idmap)
        .and_then(|i| i.enabled)
        .unwrap_or(false);
    HandlerFeatures {
        recursive_read_only_mounts: f.mount_options.iter().any(|o| o == "rro")
            && kernel_at_least(kernel_release, 5, 12),
        user_namespaces: idmap,
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
pub async fn probe(handler: &Handler, shim: Option<&Path>) -> HandlerFeatures {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    if let Some(shim) = shim {
        let options = crate::sandbox::runtime_options(handler, false)
            .and_then(|any| any.write_to_bytes().ok())
            .unwrap_or_default();
        if let Some(out) = run(shim, &["-info"], &options).await {
            if let Ok(info) =
                protocols::shim::types::introspection::RuntimeInfo::parse_from_bytes(&out)
            {
                if let Some(features) = info.features.as_ref() {
                    return from_oci_features(&features.value, &kernel);
                }
            }
        }
    }
    if let Some(runtime) = handler.oci_runtime_binary() {
        if let Some(out) = run(Path::new(&runtime), &["features"], &[]).await {
            return from_oci_features(&out, &kernel);
        }
    }
    HandlerFeatures::default()
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
        let json = br#"{"mountOptions":["bind","rro"],"linux":{"namespaces":["user"]}}"#;
        let f = from_oci_features(json, "6.18.0-cloud");
        assert!(f.recursive_read_only_mounts);
        assert!(
            !f.user_namespaces,
            "a user namespace without idmap mounts is not enough"
        );
        assert!(!from_oci_features(json, "5.10.0").recursive_read_only_mounts);
    }

    #[test]
    fn user_namespaces_need_idmapped_mounts() {
        let json = br#"{"linux":{"mountExtensions":{"idmap":{"enabled":true}}}}"#;
        assert!(from_oci_features(json, "6.1.0").user_namespaces);
        assert_eq!(
            from_oci_features(b"not json", "6.1"),
            HandlerFeatures::default()
        );
    }
}
