//! The Container Device Interface (CDI): devices a container asks for by fully
//! qualified name (`vendor.com/class=name`), in `ContainerConfig.CDI_devices` or in
//! `cdi.k8s.io/*` annotations, are looked up in the spec files under
//! `[crio.runtime] cdi_spec_dirs`, and their edits applied to the container's spec.
//! The files are read at each CreateContainer that asks for a device: drivers (DRA,
//! device plugins) write them just before the container is created.

mod edits;
mod registry;
mod spec_file;

use std::collections::HashSet;
use std::path::PathBuf;

use protocols::cri;

pub(crate) use registry::Registry;

use crate::spec::ContainerSpec;

/// Container annotations whose values name CDI devices (comma-separated), as in the
/// CDI library and CRI-O.
pub(crate) const ANNOTATION_PREFIX: &str = "cdi.k8s.io/";

#[derive(Debug, thiserror::Error)]
pub(crate) enum CdiError {
    #[error("CDI device name {0:?} is not fully qualified (vendor.com/class=name)")]
    BadName(String),
    #[error("CDI device {name} is not defined by any spec file in {dirs}{problems}")]
    Unknown {
        name: String,
        dirs: String,
        problems: String,
    },
    #[error("CDI device {name} is defined twice, in {} and {}", first.display(), second.display())]
    Conflict {
        name: String,
        first: PathBuf,
        second: PathBuf,
    },
    #[error("CDI device {name}: device node {path}: {source}")]
    DeviceNode {
        name: String,
        path: String,
        source: crate::spec::devices::DeviceError,
    },
    #[error("CDI device {name}: {message}")]
    Edit { name: String, message: String },
}

/// The devices a container asks for, in order, each once: `CDI_devices` first, then
/// the annotations (by key).
pub(crate) fn requested(config: &cri::ContainerConfig) -> Vec<String> {
    let mut annotated: Vec<(&String, &String)> = config
        .annotations
        .iter()
        .filter(|(k, _)| k.starts_with(ANNOTATION_PREFIX))
        .collect();
    annotated.sort();
    let names = config
        .cdi_devices
        .iter()
        .map(|d| d.name.trim())
        .chain(
            annotated
                .into_iter()
                .flat_map(|(_, v)| v.split(',').map(str::trim)),
        )
        .filter(|n| !n.is_empty());
    let mut seen = HashSet::new();
    names
        .filter(|n| seen.insert(*n))
        .map(str::to_string)
        .collect()
}

/// Applies the devices' edits to `spec`: every name is resolved before anything is
/// changed; a spec file's own edits are applied once, before its devices'.
pub(crate) fn inject(
    dirs: &[PathBuf],
    names: &[String],
    spec: &mut ContainerSpec,
) -> Result<(), CdiError> {
    if names.is_empty() {
        return Ok(());
    }
    let registry = Registry::load(dirs);
    let resolved = names
        .iter()
        .map(|n| registry.resolve(n))
        .collect::<Result<Vec<_>, _>>()?;
    let mut files = HashSet::new();
    for device in resolved {
        if files.insert(device.file.clone()) {
            edits::apply(&device.spec_edits, spec, &device.name)?;
        }
        edits::apply(&device.device_edits, spec, &device.name)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_come_from_the_field_and_the_annotations_once_each() {
        let config = cri::ContainerConfig {
            cdi_devices: vec![
                cri::CdiDevice {
                    name: "x.com/gpu=0".into(),
                },
                cri::CdiDevice {
                    name: "x.com/gpu=1".into(),
                },
            ],
            annotations: [
                (
                    "cdi.k8s.io/b".to_string(),
                    "x.com/nic=a, x.com/gpu=0".to_string(),
                ),
                ("cdi.k8s.io/a".to_string(), "x.com/fpga=f".to_string()),
                ("other/key".to_string(), "x.com/gpu=9".to_string()),
            ]
            .into(),
            ..Default::default()
        };
        assert_eq!(
            requested(&config),
            ["x.com/gpu=0", "x.com/gpu=1", "x.com/fpga=f", "x.com/nic=a"]
        );
    }

    #[test]
    fn nothing_is_applied_when_one_device_is_unknown() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(
            dir.path().join("x.yaml"),
            "cdiVersion: 0.6.0\nkind: x.com/gpu\ndevices:\n  - name: \"0\"\n    containerEdits: {env: [A=1]}\ncontainerEdits: {env: [COMMON=1]}\n",
        )
        .expect("write");
        let dirs = [dir.path().to_path_buf()];
        let mut spec = ContainerSpec::default();
        let names = ["x.com/gpu=0".to_string(), "x.com/gpu=7".to_string()];
        let e = inject(&dirs, &names, &mut spec).expect_err("gpu=7 is unknown");
        assert!(e.to_string().contains("x.com/gpu=7"), "{e}");
        assert!(spec.env.is_empty());

        inject(&dirs, &names[..1], &mut spec).expect("gpu=0");
        assert_eq!(spec.env, ["COMMON=1", "A=1"]);
    }
}
