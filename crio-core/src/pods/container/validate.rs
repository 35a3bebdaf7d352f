//! CreateContainer's request, checked before anything is made: what a runtime or
//! the kernel would refuse later (with an error that reads as the daemon's fault)
//! is `InvalidArgument` naming the field, and the log path cannot leave the pod's
//! log directory.

use std::path::{Component, Path, PathBuf};

use protocols::cri;

use crate::error::CriError;

fn invalid(msg: impl Into<String>) -> CriError {
    CriError::InvalidArgument(msg.into())
}

/// What a CreateContainer request must carry and may not hold, checked before its
/// pod is looked up: its metadata (a name), environment, paths and resources.
pub(super) fn request(config: &cri::ContainerConfig) -> Result<&cri::ContainerMetadata, CriError> {
    let meta = config
        .metadata
        .as_ref()
        .filter(|m| !m.name.is_empty())
        .ok_or_else(|| {
            CriError::InvalidArgument("ContainerConfig.metadata.name is required".into())
        })?;
    environment(&config.envs)?;
    paths(config)?;
    if let Some(r) = config.linux.as_ref().and_then(|l| l.resources.as_ref()) {
        resources(r)?;
    }
    Ok(meta)
}

/// The container's log file: `log_path` joined to the pod's `log_directory`, as the
/// kubelet means it (`<container>/<restart>.log`). An absolute `log_path` or one
/// that climbs out with `..` is refused; either empty means no log, as the CRI
/// allows.
pub(super) fn log_file(log_directory: &str, log_path: &str) -> Result<Option<PathBuf>, CriError> {
    if log_directory.is_empty() || log_path.is_empty() {
        return Ok(None);
    }
    let relative = Path::new(log_path);
    let escapes = relative.components().any(|c| {
        matches!(
            c,
            Component::RootDir | Component::ParentDir | Component::Prefix(_)
        )
    });
    if escapes || log_path.contains('\0') {
        return Err(invalid(format!(
            "log_path {log_path:?} must be a path inside the pod's log directory \
             (relative, without '..')"
        )));
    }
    Ok(Some(Path::new(log_directory).join(relative)))
}

/// Environment variables: a name that is not empty and has no `=`, no NUL anywhere
/// (runc refuses all three when it starts the process).
pub(super) fn environment(envs: &[cri::KeyValue]) -> Result<(), CriError> {
    for kv in envs {
        if kv.key.is_empty() || kv.key.contains('=') || kv.key.contains('\0') {
            return Err(invalid(format!(
                "environment variable name {:?} is empty or holds '=' or NUL",
                kv.key
            )));
        }
        if kv.value.contains(&0) {
            return Err(invalid(format!(
                "environment variable {} holds a NUL byte",
                kv.key
            )));
        }
    }
    Ok(())
}

fn absolute(what: &str, path: &str) -> Result<(), CriError> {
    if !path.starts_with('/') || path.contains('\0') {
        return Err(invalid(format!("{what} {path:?} is not an absolute path")));
    }
    Ok(())
}

/// The working directory and mount paths are absolute.
pub(super) fn paths(config: &cri::ContainerConfig) -> Result<(), CriError> {
    if !config.working_dir.is_empty() {
        absolute("working_dir", &config.working_dir)?;
    }
    for m in &config.mounts {
        absolute("mount container_path", &m.container_path)?;
        if !m.host_path.is_empty() {
            absolute("mount host_path", &m.host_path)?;
        }
    }
    Ok(())
}

/// A cpuset list (`0-3,5`): what the kernel's `cpuset.cpus` and `cpuset.mems` take.
pub(super) fn cpuset(field: &str, value: &str) -> Result<(), CriError> {
    if value.is_empty() {
        return Ok(());
    }
    let bad = || {
        invalid(format!(
            "{field} {value:?} is not a CPU or memory node list such as \"0-3,5\""
        ))
    };
    for part in value.split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b): (u32, u32) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
        if a > b {
            return Err(bad());
        }
    }
    Ok(())
}

/// The CRI's resources, in the ranges the kernel takes (0 = unset).
pub(super) fn resources(r: &cri::LinuxContainerResources) -> Result<(), CriError> {
    let range = |field: &str, v: i64, lo: i64, hi: i64, extra: &str| {
        if v != 0 && !(lo..=hi).contains(&v) {
            Err(invalid(format!(
                "{field} {v} is out of range: 0 (unset) or {lo}-{hi}{extra}"
            )))
        } else {
            Ok(())
        }
    };
    range("cpu_shares", r.cpu_shares, 2, 262_144, "")?;
    range(
        "cpu_period",
        r.cpu_period,
        1_000,
        1_000_000,
        " microseconds",
    )?;
    if r.cpu_quota != -1 {
        range("cpu_quota", r.cpu_quota, 1_000, i64::MAX, ", or -1 (none)")?;
    }
    if !(-1000..=1000).contains(&r.oom_score_adj) {
        return Err(invalid(format!(
            "oom_score_adj {} is out of range: -1000 to 1000",
            r.oom_score_adj
        )));
    }
    if r.memory_limit_in_bytes < 0 {
        return Err(invalid(format!(
            "memory_limit_in_bytes {} is negative",
            r.memory_limit_in_bytes
        )));
    }
    cpuset("cpuset_cpus", &r.cpuset_cpus)?;
    cpuset("cpuset_mems", &r.cpuset_mems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_paths_stay_in_the_log_directory() {
        assert_eq!(
            log_file("/var/log/pods/p", "app/0.log").expect("ok"),
            Some(PathBuf::from("/var/log/pods/p/app/0.log"))
        );
        assert_eq!(log_file("", "app/0.log").expect("ok"), None);
        for bad in ["/tmp/x.log", "../../../../tmp/x.log", "app/../../x.log"] {
            assert!(
                matches!(log_file("/logs", bad), Err(CriError::InvalidArgument(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn env_names_and_paths() {
        let kv = |k: &str, v: &[u8]| cri::KeyValue {
            key: k.into(),
            value: v.to_vec(),
        };
        environment(&[kv("A", b"1"), kv("B", b"")]).expect("ok");
        for bad in [
            kv("", b"x"),
            kv("=", b"x"),
            kv("A=B", b"x"),
            kv("A\0", b"x"),
            kv("A", b"\0"),
        ] {
            assert!(environment(&[bad]).is_err());
        }
        let mut c = cri::ContainerConfig {
            working_dir: "rel".into(),
            ..Default::default()
        };
        assert!(paths(&c).is_err());
        c.working_dir = "/work".into();
        c.mounts = vec![cri::Mount {
            container_path: "/data".into(),
            host_path: "../..".into(),
            ..Default::default()
        }];
        assert!(paths(&c).is_err());
    }

    #[test]
    fn resources_in_the_kernels_ranges() {
        let ok = cri::LinuxContainerResources {
            cpu_shares: 1024,
            cpu_period: 100_000,
            cpu_quota: 20_000,
            oom_score_adj: -998,
            cpuset_cpus: "0-1,3".into(),
            ..Default::default()
        };
        resources(&ok).expect("valid");
        let unlimited = cri::LinuxContainerResources {
            cpu_quota: -1,
            ..Default::default()
        };
        resources(&unlimited).expect("-1 is no quota");
        for bad in [
            cri::LinuxContainerResources {
                cpu_shares: i64::MAX,
                ..ok.clone()
            },
            cri::LinuxContainerResources {
                cpu_period: i64::MAX,
                ..ok.clone()
            },
            cri::LinuxContainerResources {
                oom_score_adj: 5000,
                ..ok.clone()
            },
            cri::LinuxContainerResources {
                cpuset_cpus: "zzz".into(),
                ..ok.clone()
            },
            cri::LinuxContainerResources {
                cpuset_mems: "3-1".into(),
                ..ok.clone()
            },
        ] {
            assert!(
                matches!(resources(&bad), Err(CriError::InvalidArgument(_))),
                "{bad:?}"
            );
        }
    }
}
