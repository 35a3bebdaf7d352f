//! Mount propagation of CRI bind mounts, as containerd and CRI-O check it: a
//! `Bidirectional` (rshared) mount needs its host source on a shared mount, a
//! `HostToContainer` (rslave) one on a shared or slave mount, or mounts made on the
//! host later could never reach the container. The container's root then gets the
//! propagation its mounts need (`linux.rootfsPropagation`).

use std::path::{Path, PathBuf};

/// The mount a path lives on: its mount point and its propagation fields
/// (`shared:N`, `master:N`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SourceMount {
    pub mount_point: PathBuf,
    pub optional: Vec<String>,
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        if let Some(d) = octal {
            let v = d.iter().fold(0u32, |n, b| n * 8 + u32::from(b - b'0'));
            out.push(u8::try_from(v).unwrap_or(b'?'));
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount holding `path` (already canonical) in a `/proc/self/mountinfo` text:
/// the longest mount point that is a whole-component prefix of it, the topmost of
/// mounts stacked there.
pub(crate) fn source_mount(mountinfo: &str, path: &Path) -> Option<SourceMount> {
    let mut best: Option<SourceMount> = None;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        if sep < 6 {
            continue;
        }
        let mount_point = PathBuf::from(unescape(fields[4]));
        if !path.starts_with(&mount_point) {
            continue;
        }
        let longer = best
            .as_ref()
            .is_none_or(|b| mount_point.as_os_str().len() >= b.mount_point.as_os_str().len());
        if longer {
            best = Some(SourceMount {
                mount_point,
                optional: fields[6..sep].iter().map(|s| s.to_string()).collect(),
            });
        }
    }
    best
}

/// Why a mount's propagation cannot be had.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum PropagationError {
    #[error("path {path:?} is mounted on {mount_point:?} but it is not a shared mount (Bidirectional propagation needs one: `mount --make-shared {mount_point}`)")]
    NotShared { path: String, mount_point: String },
    #[error("path {path:?} is mounted on {mount_point:?} but it is not a shared or slave mount (HostToContainer propagation needs one)")]
    NotSharedOrSlave { path: String, mount_point: String },
    #[error("path {path:?}: {reason}")]
    Lookup { path: String, reason: String },
}

/// Checks that `host_path`'s mount can carry `propagation` (`rshared`, `rslave`;
/// `rprivate` needs nothing), reading the daemon's mountinfo.
pub(crate) fn check_source(host_path: &Path, propagation: &str) -> Result<(), PropagationError> {
    if propagation != "rshared" && propagation != "rslave" {
        return Ok(());
    }
    let shown = host_path.display().to_string();
    let lookup = |reason: String| PropagationError::Lookup {
        path: shown.clone(),
        reason,
    };
    let canonical = std::fs::canonicalize(host_path).map_err(|e| lookup(e.to_string()))?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| lookup(format!("reading /proc/self/mountinfo: {e}")))?;
    let source = source_mount(&mountinfo, &canonical)
        .ok_or_else(|| lookup("no mount holds it".to_string()))?;
    check(&shown, &source, propagation)
}

fn check(path: &str, source: &SourceMount, propagation: &str) -> Result<(), PropagationError> {
    let has = |prefix: &str| source.optional.iter().any(|o| o.starts_with(prefix));
    let mount_point = source.mount_point.display().to_string();
    match propagation {
        "rshared" if !has("shared:") => Err(PropagationError::NotShared {
            path: path.to_string(),
            mount_point,
        }),
        "rslave" if !has("shared:") && !has("master:") => Err(PropagationError::NotSharedOrSlave {
            path: path.to_string(),
            mount_point,
        }),
        _ => Ok(()),
    }
}

/// The container root's propagation for mounts asking for `propagations`: shared if
/// one is bidirectional (else the container's copy of the source is a slave and
/// nothing goes back), slave if one is host-to-container, else the runtime's default.
pub(crate) fn rootfs_propagation<'a>(
    propagations: impl IntoIterator<Item = &'a str>,
) -> Option<&'static str> {
    let mut out = None;
    for p in propagations {
        match p {
            "rshared" => return Some("rshared"),
            "rslave" => out = Some("rslave"),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 254:0 / / rw,relatime - ext4 /dev/vda rw
30 22 0:26 / /sys rw,nosuid shared:7 - sysfs sysfs rw
40 22 0:40 / /tmp/shared rw shared:12 - tmpfs tmpfs rw
41 40 0:41 / /tmp/shared/slave rw master:12 - tmpfs tmpfs rw
42 22 0:42 / /tmp/with\\040space rw shared:13 - tmpfs tmpfs rw
43 40 0:43 / /tmp/shared rw - tmpfs tmpfs rw
";

    #[test]
    fn the_longest_whole_component_prefix_holds_a_path() {
        let m = source_mount(MOUNTINFO, Path::new("/tmp/shared/slave/x")).expect("mount");
        assert_eq!(m.mount_point, Path::new("/tmp/shared/slave"));
        assert_eq!(m.optional, ["master:12"]);
        // `/tmp/sharedX` is not under `/tmp/shared`.
        let m = source_mount(MOUNTINFO, Path::new("/tmp/sharedX")).expect("mount");
        assert_eq!(m.mount_point, Path::new("/"));
        let m = source_mount(MOUNTINFO, Path::new("/tmp/with space/a")).expect("mount");
        assert_eq!(m.optional, ["shared:13"]);
    }

    #[test]
    fn the_top_of_stacked_mounts_counts() {
        // 43 is mounted over 40 at the same point and is private.
        let m = source_mount(MOUNTINFO, Path::new("/tmp/shared/a")).expect("mount");
        assert!(m.optional.is_empty(), "{m:?}");
    }

    #[test]
    fn shared_and_slave_rules() {
        let at = |opt: &[&str]| SourceMount {
            mount_point: "/m".into(),
            optional: opt.iter().map(|s| s.to_string()).collect(),
        };
        assert!(check("/m/a", &at(&["shared:1"]), "rshared").is_ok());
        assert!(check("/m/a", &at(&["master:1"]), "rslave").is_ok());
        assert!(check("/m/a", &at(&["shared:1"]), "rslave").is_ok());
        assert!(check("/m/a", &at(&[]), "rprivate").is_ok());
        let e = check("/m/a", &at(&["master:1"]), "rshared").expect_err("slave is not shared");
        assert!(e.to_string().contains("not a shared mount"), "{e}");
        let e = check("/m/a", &at(&[]), "rslave").expect_err("private");
        assert!(e.to_string().contains("not a shared or slave mount"), "{e}");
    }

    #[test]
    fn the_root_follows_the_strongest_mount() {
        assert_eq!(rootfs_propagation(["rprivate", "rslave"]), Some("rslave"));
        assert_eq!(
            rootfs_propagation(["rslave", "rshared", "rprivate"]),
            Some("rshared")
        );
        assert_eq!(rootfs_propagation(["rprivate"]), None);
    }
}
