//! One CDI spec file (`cdiVersion`, `kind`, `devices`, `containerEdits`), in JSON or
//! YAML, and the checks a file must pass before any of its devices is used. Fields
//! this runtime has no use for (`annotations`) are ignored.

use std::path::Path;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SpecFile {
    pub cdi_version: String,
    pub kind: String,
    pub devices: Vec<DeviceEntry>,
    #[serde(default)]
    pub container_edits: ContainerEdits,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DeviceEntry {
    pub name: String,
    #[serde(default)]
    pub container_edits: ContainerEdits,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ContainerEdits {
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub device_nodes: Vec<DeviceNode>,
    #[serde(default)]
    pub mounts: Vec<MountEdit>,
    #[serde(default)]
    pub hooks: Vec<HookEdit>,
    #[serde(default, alias = "additionalGIDs")]
    pub additional_gids: Vec<u32>,
    /// Kept only to refuse it clearly: this runtime does not manage resctrl.
    #[serde(default)]
    pub intel_rdt: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeviceNode {
    pub path: String,
    #[serde(default)]
    pub host_path: String,
    #[serde(default, rename = "type")]
    pub typ: String,
    pub major: Option<i64>,
    pub minor: Option<i64>,
    pub file_mode: Option<u32>,
    #[serde(default)]
    pub permissions: String,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MountEdit {
    pub host_path: String,
    pub container_path: String,
    #[serde(default, rename = "type")]
    pub typ: String,
    #[serde(default)]
    pub options: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HookEdit {
    pub hook_name: String,
    pub path: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    pub timeout: Option<i64>,
}

/// The OCI hook stages a CDI hook may name.
use crate::spec::HOOK_STAGES as HOOK_NAMES;

/// Parses a spec file's text: `.json` as JSON, anything else as YAML.
pub(super) fn parse(path: &Path, text: &str) -> Result<SpecFile, String> {
    let spec: SpecFile = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(text).map_err(|e| e.to_string())?
    } else {
        serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?
    };
    validate(&spec)?;
    Ok(spec)
}

fn validate(spec: &SpecFile) -> Result<(), String> {
    if spec.cdi_version.is_empty() {
        return Err("cdiVersion is empty".into());
    }
    let (vendor, class) = spec
        .kind
        .split_once('/')
        .ok_or_else(|| format!("kind {:?} is not vendor.com/class", spec.kind))?;
    if !valid_vendor(vendor) || !valid_class(class) {
        return Err(format!("kind {:?} is not vendor.com/class", spec.kind));
    }
    if spec.devices.is_empty() {
        return Err("no devices".into());
    }
    for d in &spec.devices {
        if !valid_device_name(&d.name) {
            return Err(format!("device name {:?} is not valid", d.name));
        }
        validate_edits(&d.container_edits).map_err(|e| format!("device {}: {e}", d.name))?;
    }
    validate_edits(&spec.container_edits)
}

fn validate_edits(edits: &ContainerEdits) -> Result<(), String> {
    for env in &edits.env {
        if !env.contains('=') || env.starts_with('=') {
            return Err(format!("env {env:?} is not NAME=VALUE"));
        }
    }
    for node in &edits.device_nodes {
        if !node.path.starts_with('/') {
            return Err(format!("device node path {:?} is not absolute", node.path));
        }
        if !matches!(node.typ.as_str(), "" | "c" | "u" | "b") {
            return Err(format!(
                "device node {}: type {:?} is not c, u or b",
                node.path, node.typ
            ));
        }
        crate::spec::devices::permissions(Path::new(&node.path), &node.permissions)
            .map_err(|e| e.to_string())?;
    }
    for m in &edits.mounts {
        if m.host_path.is_empty() || !m.container_path.starts_with('/') {
            return Err(format!(
                "mount {:?} -> {:?} needs a host path and an absolute container path",
                m.host_path, m.container_path
            ));
        }
    }
    for h in &edits.hooks {
        if !HOOK_NAMES.contains(&h.hook_name.as_str()) {
            return Err(format!(
                "hook {:?}: hookName must be one of {}",
                h.hook_name,
                HOOK_NAMES.join(", ")
            ));
        }
        if !h.path.starts_with('/') {
            return Err(format!("hook path {:?} is not absolute", h.path));
        }
        if h.timeout.is_some_and(|t| t <= 0) {
            return Err(format!("hook {}: timeout must be positive", h.path));
        }
    }
    Ok(())
}

fn alnum_ends(s: &str) -> bool {
    let ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    ok(s.chars().next()) && ok(s.chars().last())
}

/// A DNS-like vendor: `vendor.com`.
fn valid_vendor(s: &str) -> bool {
    alnum_ends(s)
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

fn valid_class(s: &str) -> bool {
    alnum_ends(s)
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
}

fn valid_device_name(s: &str) -> bool {
    alnum_ends(s)
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

/// Splits a fully qualified device name, `vendor.com/class=name`, into its kind
/// (`vendor.com/class`) and its name.
pub(super) fn split_qualified(name: &str) -> Option<(&str, &str)> {
    let (kind, device) = name.split_once('=')?;
    let (vendor, class) = kind.split_once('/')?;
    (valid_vendor(vendor) && valid_class(class) && valid_device_name(device))
        .then_some((kind, device))
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
cdiVersion: "0.6.0"
kind: example.com/gpu
devices:
  - name: gpu0
    containerEdits:
      env: ["GPU=0"]
      deviceNodes:
        - path: /dev/gpu0
          hostPath: /dev/null
          permissions: rw
containerEdits:
  mounts:
    - hostPath: /usr/lib/gpu
      containerPath: /usr/lib/gpu
      options: [ro, nosuid, nodev, bind]
  hooks:
    - hookName: createContainer
      path: /usr/bin/gpu-hook
      args: [gpu-hook, update]
  additionalGids: [44]
"#;

    #[test]
    fn yaml_and_json_specs_parse() {
        let spec = parse(Path::new("/etc/cdi/gpu.yaml"), YAML).expect("yaml");
        assert_eq!(spec.kind, "example.com/gpu");
        let edits = &spec.devices[0].container_edits;
        assert_eq!(edits.env, ["GPU=0"]);
        assert_eq!(edits.device_nodes[0].host_path, "/dev/null");
        assert_eq!(spec.container_edits.mounts[0].options.len(), 4);
        assert_eq!(spec.container_edits.hooks[0].hook_name, "createContainer");
        assert_eq!(spec.container_edits.additional_gids, [44]);

        let json = r#"{"cdiVersion":"0.5.0","kind":"example.com/net","devices":[
            {"name":"a","containerEdits":{"additionalGIDs":[7]}}]}"#;
        let spec = parse(Path::new("/var/run/cdi/net.json"), json).expect("json");
        assert_eq!(spec.devices[0].container_edits.additional_gids, [7]);
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        let bad = |text: &str| parse(Path::new("x.yaml"), text).expect_err(text);
        assert!(bad("cdiVersion: 0.6.0\nkind: gpu\ndevices: [{name: a}]").contains("kind"));
        assert!(bad("cdiVersion: 0.6.0\nkind: a.com/gpu\ndevices: []").contains("no devices"));
        assert!(bad("cdiVersion: 0.6.0\nkind: a.com/gpu\ndevices: [{name: -a}]").contains("-a"));
        let hook = "cdiVersion: 0.6.0\nkind: a.com/g\ndevices: [{name: a}]\ncontainerEdits:\n  hooks: [{hookName: later, path: /x}]";
        assert!(bad(hook).contains("hookName"));
        let node = "cdiVersion: 0.6.0\nkind: a.com/g\ndevices: [{name: a, containerEdits: {deviceNodes: [{path: dev/x}]}}]";
        assert!(bad(node).contains("not absolute"));
        let perms = "cdiVersion: 0.6.0\nkind: a.com/g\ndevices: [{name: a, containerEdits: {deviceNodes: [{path: /dev/x, permissions: rwx}]}}]";
        assert!(bad(perms).contains("rwx"));
        assert!(bad("kind: [").contains("line"));
    }

    #[test]
    fn qualified_names_split_into_kind_and_device() {
        assert_eq!(
            split_qualified("nvidia.com/gpu=0"),
            Some(("nvidia.com/gpu", "0"))
        );
        assert_eq!(
            split_qualified("example.com/net=eth:1"),
            Some(("example.com/net", "eth:1"))
        );
        assert_eq!(split_qualified("gpu0"), None);
        assert_eq!(split_qualified("nvidia.com/gpu"), None);
        assert_eq!(split_qualified("nvidia.com/gpu=-x"), None);
        assert_eq!(split_qualified("nvidia.com/a/b=x"), None);
    }
}
