//! Applying a CDI `containerEdits` to a container's spec input: environment, device
//! nodes (with their device-cgroup rules), mounts, OCI hooks and extra groups.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{Hook, Hooks, Mount};

use super::spec_file::{ContainerEdits, DeviceNode, HookEdit, MountEdit};
use super::CdiError;
use crate::spec::{devices, ContainerSpec, Device};

/// OCI's default mode for a device node it creates.
const DEFAULT_DEVICE_MODE: u32 = 0o666;

pub(super) fn apply(
    edits: &ContainerEdits,
    spec: &mut ContainerSpec,
    name: &str,
) -> Result<(), CdiError> {
    let fail = |message: String| CdiError::Edit {
        name: name.to_string(),
        message,
    };
    if edits.intel_rdt.is_some() {
        return Err(fail("intelRdt edits are not supported".into()));
    }
    for env in &edits.env {
        let key = env.split_once('=').map_or(env.as_str(), |(k, _)| k);
        spec.env
            .retain(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) != key);
        spec.env.push(env.clone());
    }
    for node in &edits.device_nodes {
        let device = device(node).map_err(|source| CdiError::DeviceNode {
            name: name.to_string(),
            path: node.path.clone(),
            source,
        })?;
        spec.devices
            .retain(|d| d.container_path != device.container_path);
        spec.devices.push(device);
    }
    for edit in &edits.mounts {
        let mount = mount(edit);
        spec.device_mounts
            .retain(|m| m.destination() != mount.destination());
        spec.device_mounts.push(mount);
    }
    for edit in &edits.hooks {
        add_hook(spec.hooks.get_or_insert_with(Hooks::default), edit).map_err(fail)?;
    }
    for gid in &edits.additional_gids {
        if *gid != 0 && !spec.additional_gids.contains(gid) {
            spec.additional_gids.push(*gid);
        }
    }
    Ok(())
}

/// A device node: its numbers as given, else those of the host node (`hostPath`,
/// or `path` when there is none).
fn device(node: &DeviceNode) -> Result<Device, devices::DeviceError> {
    let container_path = PathBuf::from(&node.path);
    let host = if node.host_path.is_empty() {
        &node.path
    } else {
        &node.host_path
    };
    let permissions = devices::permissions(&container_path, &node.permissions)?;
    let mut device = match (node.typ.as_str(), node.major, node.minor) {
        (typ @ ("c" | "u" | "b"), Some(major), Some(minor)) => Device {
            container_path: container_path.clone(),
            block: typ == "b",
            major,
            minor,
            file_mode: DEFAULT_DEVICE_MODE,
            uid: 0,
            gid: 0,
            permissions,
        },
        _ => devices::host_devices(Path::new(host), &container_path, &permissions)?
            .into_iter()
            .next()
            .ok_or_else(|| devices::DeviceError::NotADevice(PathBuf::from(host)))?,
    };
    if let Some(mode) = node.file_mode {
        device.file_mode = mode;
    }
    if let Some(uid) = node.uid {
        device.uid = uid;
    }
    if let Some(gid) = node.gid {
        device.gid = gid;
    }
    Ok(device)
}

fn mount(edit: &MountEdit) -> Mount {
    let bind = edit.options.iter().any(|o| o == "bind" || o == "rbind");
    let typ = match edit.typ.as_str() {
        "" if bind => Some("bind".to_string()),
        "" => None,
        t => Some(t.to_string()),
    };
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(&edit.container_path));
    m.set_source(Some(PathBuf::from(&edit.host_path)));
    m.set_typ(typ);
    m.set_options((!edit.options.is_empty()).then(|| edit.options.clone()));
    m
}

fn add_hook(hooks: &mut Hooks, edit: &HookEdit) -> Result<(), String> {
    let mut hook = Hook::default();
    hook.set_path(PathBuf::from(&edit.path));
    hook.set_args((!edit.args.is_empty()).then(|| edit.args.clone()));
    hook.set_env((!edit.env.is_empty()).then(|| edit.env.clone()));
    hook.set_timeout(edit.timeout);
    crate::spec::add_hook(hooks, &edit.hook_name, hook)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edits(yaml: &str) -> ContainerEdits {
        serde_yaml_ng::from_str(yaml).expect("edits")
    }

    #[test]
    fn env_devices_mounts_hooks_and_groups_are_applied() {
        let mut spec = ContainerSpec {
            env: vec!["PATH=/bin".into(), "GPU=old".into()],
            additional_gids: vec![10],
            ..ContainerSpec::default()
        };
        let e = edits(
            r#"
env: ["GPU=0", "EXTRA=1"]
deviceNodes:
  - {path: /dev/gpu0, hostPath: /dev/null, permissions: rw, fileMode: 0o600}
  - {path: /dev/fake, type: c, major: 511, minor: 7, gid: 44}
mounts:
  - {hostPath: /usr/lib/gpu, containerPath: /usr/lib/gpu, options: [ro, nosuid, bind]}
  - {hostPath: tmpfs, containerPath: /scratch, type: tmpfs}
hooks:
  - {hookName: createContainer, path: /usr/bin/gpu-hook, args: [gpu-hook, update], timeout: 5}
  - {hookName: poststop, path: /usr/bin/gpu-hook}
additionalGids: [0, 10, 44]
"#,
        );
        apply(&e, &mut spec, "x.com/gpu=0").expect("apply");
        assert_eq!(spec.env, ["PATH=/bin", "GPU=0", "EXTRA=1"]);

        let null = &spec.devices[0];
        assert_eq!(null.container_path, Path::new("/dev/gpu0"));
        assert_eq!((null.major, null.minor, null.block), (1, 3, false));
        assert_eq!((null.file_mode, null.permissions.as_str()), (0o600, "rw"));
        let fake = &spec.devices[1];
        assert_eq!((fake.major, fake.minor, fake.gid), (511, 7, 44));
        assert_eq!(fake.permissions, "rwm");

        assert_eq!(spec.device_mounts[0].typ().as_deref(), Some("bind"));
        assert_eq!(spec.device_mounts[1].typ().as_deref(), Some("tmpfs"));
        let hooks = spec.hooks.as_ref().expect("hooks");
        let create = hooks.create_container().as_ref().expect("createContainer");
        assert_eq!(create[0].path(), Path::new("/usr/bin/gpu-hook"));
        assert_eq!(create[0].timeout(), Some(5));
        assert_eq!(hooks.poststop().as_ref().map(Vec::len), Some(1));
        assert_eq!(spec.additional_gids, [10, 44]);
    }

    #[test]
    fn a_device_node_missing_on_the_host_or_rdt_edits_fail() {
        let mut spec = ContainerSpec::default();
        let e = edits("deviceNodes: [{path: /dev/nope-cdi}]");
        let err = apply(&e, &mut spec, "x.com/gpu=0").expect_err("missing node");
        assert!(err.to_string().contains("/dev/nope-cdi"), "{err}");
        let e = edits("intelRdt: {closID: gold}");
        let err = apply(&e, &mut spec, "x.com/gpu=0").expect_err("rdt");
        assert!(err.to_string().contains("intelRdt"), "{err}");
    }
}
