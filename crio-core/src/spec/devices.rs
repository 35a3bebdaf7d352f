//! Device nodes a container gets: the CRI's `devices` (a node or a directory of
//! nodes), or every host device for privileged containers, and the device-cgroup
//! rules that go with them (deny everything else; runc adds its own defaults —
//! null, zero, full, tty, random, urandom, ptmx, pts — after these).

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType};

/// One device node as found on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Device {
    pub container_path: PathBuf,
    pub block: bool,
    pub major: i64,
    pub minor: i64,
    pub file_mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// cgroup access: any of `r`, `w`, `m`.
    pub permissions: String,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum DeviceError {
    #[error("device {path}: {source}")]
    Stat {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("device {0} is neither a character nor a block device")]
    NotADevice(PathBuf),
    #[error("device {path}: permissions {permissions:?} may only combine r, w and m")]
    Permissions { path: PathBuf, permissions: String },
}

/// Checks CRI permissions (`rwm` letters; empty = `rwm`, as CRI-O).
pub(crate) fn permissions(path: &Path, p: &str) -> Result<String, DeviceError> {
    if p.is_empty() {
        return Ok("rwm".into());
    }
    if p.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
        Ok(p.to_string())
    } else {
        Err(DeviceError::Permissions {
            path: path.to_path_buf(),
            permissions: p.to_string(),
        })
    }
}

/// CRI-O's device syntax (`additional_devices`, the Devices annotation):
/// `SRC`, `SRC:DST`, `SRC:PERMS` or `SRC:DST:PERMS`; PERMS default `rwm`, DST
/// default SRC and under `/dev/`.
pub(crate) fn parse_device_spec(spec: &str) -> Result<(PathBuf, PathBuf, String), String> {
    let valid_mode = |m: &str| {
        !m.is_empty()
            && m.chars().all(|c| matches!(c, 'r' | 'w' | 'm'))
            && ['r', 'w', 'm'].iter().all(|c| m.matches(*c).count() <= 1)
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let (src, dst, perms) = match parts.as_slice() {
        [src] => (*src, *src, "rwm"),
        [src, mode] if valid_mode(mode) => (*src, *src, *mode),
        [src, dst] if dst.starts_with('/') => (*src, *dst, "rwm"),
        [src, dst, mode] if valid_mode(mode) => (*src, *dst, *mode),
        [_, mode] | [_, _, mode] => {
            return Err(format!(
                "{spec:?}: invalid device mode {mode:?} (r, w and m, each once)"
            ))
        }
        _ => return Err(format!("{spec:?} is not SRC[:DST][:PERMS]")),
    };
    if !src.starts_with('/') {
        return Err(format!(
            "{spec:?}: the host device must be an absolute path"
        ));
    }
    if !dst.starts_with("/dev/") {
        return Err(format!("{spec:?}: the container path must be under /dev/"));
    }
    Ok((src.into(), dst.into(), perms.to_string()))
}

fn node(host: &Path, container: PathBuf, perms: &str) -> Result<Option<Device>, DeviceError> {
    let meta = std::fs::metadata(host).map_err(|source| DeviceError::Stat {
        path: host.to_path_buf(),
        source,
    })?;
    let ft = meta.file_type();
    if !ft.is_char_device() && !ft.is_block_device() {
        return Ok(None);
    }
    let rdev = meta.rdev();
    Ok(Some(Device {
        container_path: container,
        block: ft.is_block_device(),
        major: libc::major(rdev) as i64,
        minor: libc::minor(rdev) as i64,
        file_mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        permissions: perms.to_string(),
    }))
}

/// A CRI device mapping: a device node, or a directory whose nodes are all mapped
/// under `container_path` (CRI-O and containerd both accept directories).
pub(crate) fn host_devices(
    host: &Path,
    container: &Path,
    perms: &str,
) -> Result<Vec<Device>, DeviceError> {
    let perms = permissions(host, perms)?;
    let meta = std::fs::metadata(host).map_err(|source| DeviceError::Stat {
        path: host.to_path_buf(),
        source,
    })?;
    if !meta.is_dir() {
        return node(host, container.to_path_buf(), &perms)?
            .map(|d| vec![d])
            .ok_or_else(|| DeviceError::NotADevice(host.to_path_buf()));
    }
    let mut out = Vec::new();
    walk(host, &mut |path| {
        let rel = path.strip_prefix(host).unwrap_or(path);
        if let Ok(Some(d)) = node(path, container.join(rel), &perms) {
            out.push(d);
        }
    });
    Ok(out)
}

fn walk(dir: &Path, f: &mut dyn FnMut(&Path)) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => walk(&path, f),
            Ok(t) if t.is_symlink() => {}
            Ok(_) => f(&path),
            Err(_) => {}
        }
    }
}

/// Every device node under the host's `/dev` for a privileged container, minus the
/// ones its own mounts provide (as runc's `HostDevices`).
pub(crate) fn all_host_devices() -> Vec<Device> {
    let mut out = Vec::new();
    let skip = [
        "/dev/pts",
        "/dev/shm",
        "/dev/mqueue",
        "/dev/fd",
        "/dev/console",
    ];
    walk(Path::new("/dev"), &mut |path| {
        if skip.iter().any(|s| path.starts_with(s)) {
            return;
        }
        if let Ok(Some(d)) = node(path, path.to_path_buf(), "rwm") {
            out.push(d);
        }
    });
    out.sort_by(|a, b| a.container_path.cmp(&b.container_path));
    out
}

/// The spec's `linux.devices`.
pub(crate) fn linux_devices(devices: &[Device]) -> Vec<LinuxDevice> {
    devices
        .iter()
        .map(|d| {
            let mut l = LinuxDevice::default();
            l.set_path(d.container_path.clone());
            l.set_typ(if d.block {
                LinuxDeviceType::B
            } else {
                LinuxDeviceType::C
            });
            l.set_major(d.major);
            l.set_minor(d.minor);
            l.set_file_mode(Some(d.file_mode));
            l.set_uid(Some(d.uid));
            l.set_gid(Some(d.gid));
            l
        })
        .collect()
}

fn rule(
    allow: bool,
    typ: LinuxDeviceType,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut r = LinuxDeviceCgroup::default();
    r.set_allow(allow);
    r.set_typ(Some(typ));
    r.set_major(major);
    r.set_minor(minor);
    r.set_access(Some(access.to_string()));
    r
}

/// The device cgroup: everything for privileged containers; otherwise deny all and
/// allow each mapped device with its permissions.
pub(crate) fn cgroup_rules(devices: &[Device], privileged: bool) -> Vec<LinuxDeviceCgroup> {
    if privileged {
        return vec![rule(true, LinuxDeviceType::A, None, None, "rwm")];
    }
    let mut rules = vec![rule(false, LinuxDeviceType::A, None, None, "rwm")];
    rules.extend(devices.iter().map(|d| {
        let typ = if d.block {
            LinuxDeviceType::B
        } else {
            LinuxDeviceType::C
        };
        rule(true, typ, Some(d.major), Some(d.minor), &d.permissions)
    }));
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_node_is_found_with_its_numbers() {
        let d = host_devices(Path::new("/dev/null"), Path::new("/dev/mynull"), "rw").expect("null");
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].major, d[0].minor, d[0].block), (1, 3, false));
        assert_eq!(d[0].container_path, Path::new("/dev/mynull"));
        let rules = cgroup_rules(&d, false);
        assert!(!rules[0].allow());
        assert_eq!(rules[1].access().as_deref(), Some("rw"));
        assert_eq!(rules[1].major(), Some(1));
    }

    #[test]
    fn cri_o_device_specs() {
        let p = |s: &str| {
            parse_device_spec(s)
                .map(|(a, b, c)| (a.display().to_string(), b.display().to_string(), c))
        };
        assert_eq!(
            p("/dev/fuse"),
            Ok(("/dev/fuse".into(), "/dev/fuse".into(), "rwm".into()))
        );
        assert_eq!(
            p("/dev/sdc:r"),
            Ok(("/dev/sdc".into(), "/dev/sdc".into(), "r".into()))
        );
        assert_eq!(
            p("/dev/sdc:/dev/xvdc"),
            Ok(("/dev/sdc".into(), "/dev/xvdc".into(), "rwm".into()))
        );
        assert_eq!(
            p("/dev/sdc:/dev/xvdc:rw"),
            Ok(("/dev/sdc".into(), "/dev/xvdc".into(), "rw".into()))
        );
        for bad in [
            "/dev/sdc:rr",
            "/dev/sdc:x",
            "/dev/a:/dev/b:q",
            "/dev/a:/dev/b:r:w",
            "/dev/a:/xvdc",
            "sdc",
            "",
        ] {
            assert!(parse_device_spec(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_mappings_are_refused() {
        assert!(matches!(
            host_devices(Path::new("/dev/null"), Path::new("/dev/x"), "rwx"),
            Err(DeviceError::Permissions { .. })
        ));
        assert!(matches!(
            host_devices(Path::new("/etc/hostname"), Path::new("/dev/x"), ""),
            Err(DeviceError::NotADevice(_))
        ));
        let e = host_devices(Path::new("/dev/nope"), Path::new("/dev/x"), "").expect_err("missing");
        assert!(e.to_string().contains("/dev/nope"), "{e}");
    }

    #[test]
    fn privileged_containers_get_every_host_device() {
        let all = all_host_devices();
        assert!(all
            .iter()
            .any(|d| d.container_path == Path::new("/dev/null")));
        assert!(!all.iter().any(|d| d.container_path.starts_with("/dev/pts")));
        assert!(cgroup_rules(&all, true)[0].allow());
    }
}
