//! The pod's sysctls, written under `/proc/sys` of the guest (whose network and
//! IPC namespaces are the pod's), as runc writes a container's.

use std::path::{Path, PathBuf};

use shim_support::Error;

/// `/proc/sys/...` of a sysctl name: dots separate levels, a slash stands for a
/// dot inside one (`net.ipv4.conf.eth0/1.forwarding`), as runc and the kubelet
/// read it; InvalidArgument for a name that could leave `/proc/sys`.
pub fn path_of(root: &Path, name: &str) -> Result<PathBuf, Error> {
    let parts: Vec<String> = name.split('.').map(|p| p.replace('/', ".")).collect();
    let bad = parts.iter().any(|p| p.is_empty() || p.starts_with('.'))
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c));
    if bad {
        return Err(Error::InvalidArgument(format!(
            "sysctl {name:?}: not a sysctl name"
        )));
    }
    Ok(parts
        .iter()
        .fold(root.to_path_buf(), |p, part| p.join(part)))
}

/// Writes each sysctl under `root` (`/proc/sys` in the guest), naming the first
/// that fails.
pub fn set_all<'a>(
    root: &Path,
    sysctls: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> Result<(), Error> {
    for (name, value) in sysctls {
        let path = path_of(root, name)?;
        if !path.is_file() {
            return Err(Error::InvalidArgument(format!(
                "sysctl {name:?}: the guest kernel has no such sysctl"
            )));
        }
        std::fs::write(&path, value)
            .map_err(|e| Error::InvalidArgument(format!("sysctl {name:?} = {value:?}: {e}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn names_map_under_the_root_and_escapes_are_refused() {
        let root = Path::new("/proc/sys");
        assert_eq!(
            path_of(root, "net.ipv4.ip_forward").expect("dotted"),
            Path::new("/proc/sys/net/ipv4/ip_forward")
        );
        assert_eq!(
            path_of(root, "net.ipv4.conf.eth0/1.forwarding").expect("a dot in a level"),
            Path::new("/proc/sys/net/ipv4/conf/eth0.1/forwarding")
        );
        for bad in [
            "",
            "net..x",
            "../etc/passwd",
            "net.//.x",
            "a b",
            "/net",
            "net./x",
        ] {
            assert!(
                matches!(path_of(root, bad), Err(Error::InvalidArgument(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn each_sysctl_is_written_and_a_missing_one_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("kernel")).expect("mkdir");
        std::fs::write(dir.path().join("kernel/shm_rmid_forced"), "0").expect("write");
        let mut set = BTreeMap::new();
        set.insert("kernel.shm_rmid_forced".to_string(), "1".to_string());
        set_all(dir.path(), &set).expect("set");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("kernel/shm_rmid_forced")).expect("read"),
            "1"
        );
        set.insert("net.nope".to_string(), "1".to_string());
        let err = set_all(dir.path(), &set).expect_err("missing");
        assert!(err.to_string().contains("net.nope"), "{err}");
    }
}
