//! One shim per pod: which group a container's shim belongs to.

use std::path::Path;

/// Annotations naming the pod sandbox of a container, in the order they are tried:
/// containerd's CRI plugin, then CRI-O's (which crio-rs writes).
pub const SANDBOX_ANNOTATIONS: &[&str] = &[
    "io.kubernetes.cri.sandbox-id",
    "io.kubernetes.cri-o.SandboxID",
];

/// The grouping key: the sandbox id from the annotations, else the task id.
pub fn grouping_key(
    annotations: Option<&serde_json::Map<String, serde_json::Value>>,
    id: &str,
) -> String {
    annotations
        .and_then(|a| {
            SANDBOX_ANNOTATIONS
                .iter()
                .find_map(|key| a.get(*key).and_then(|v| v.as_str()))
        })
        .filter(|s| !s.is_empty())
        .unwrap_or(id)
        .to_string()
}

/// Reads `<bundle>/config.json` and returns its grouping key; a bundle without a
/// readable spec groups by the task id.
pub fn read_grouping_key(bundle: &Path, id: &str) -> String {
    let spec: Option<serde_json::Value> = std::fs::read(bundle.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let annotations = spec
        .as_ref()
        .and_then(|s| s.get("annotations"))
        .and_then(|a| a.as_object());
    grouping_key(annotations, id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        v.as_object().cloned().expect("object")
    }

    #[test]
    fn containerd_sandbox_annotation_wins() {
        let a = map(json!({
            "io.kubernetes.cri.sandbox-id": "pod1",
            "io.kubernetes.cri-o.SandboxID": "pod2"
        }));
        assert_eq!(grouping_key(Some(&a), "ctr"), "pod1");
    }

    #[test]
    fn crio_sandbox_annotation_is_used() {
        let a = map(json!({"io.kubernetes.cri-o.SandboxID": "pod2"}));
        assert_eq!(grouping_key(Some(&a), "ctr"), "pod2");
    }

    #[test]
    fn falls_back_to_task_id() {
        assert_eq!(grouping_key(None, "ctr"), "ctr");
        let a = map(json!({"io.kubernetes.cri.sandbox-id": ""}));
        assert_eq!(grouping_key(Some(&a), "ctr"), "ctr");
        let a = map(json!({"other": "x"}));
        assert_eq!(grouping_key(Some(&a), "ctr"), "ctr");
    }

    #[test]
    fn reads_bundle_spec() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(read_grouping_key(dir.path(), "c1"), "c1");
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"ociVersion":"1.0.2","annotations":{"io.kubernetes.cri.sandbox-id":"sb"}}"#,
        )
        .expect("write");
        assert_eq!(read_grouping_key(dir.path(), "c1"), "sb");
    }
}
