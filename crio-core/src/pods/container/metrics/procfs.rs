//! What the `process` and `disk` metric groups read on the host: the processes of a
//! container's cgroup and their open files, its init's `nofile` limit, the
//! filesystem holding its writable layer, and block device names.

use std::path::{Path, PathBuf};

/// The processes of one container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct ProcessSample {
    pub processes: u64,
    pub file_descriptors: u64,
    pub sockets: u64,
    /// The soft `RLIMIT_NOFILE` of the container's init; `None` when unlimited.
    pub max_open_files: Option<u64>,
}

/// The cgroup directory holding `pid`, from `/proc/<pid>/cgroup`: the v1 `pids`
/// hierarchy, else the unified one.
fn cgroup_dir(pid: u32) -> Option<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let mut unified = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let rel = path.trim_start_matches('/');
        if controllers.split(',').any(|c| c == "pids") {
            return Some(Path::new("/sys/fs/cgroup/pids").join(rel));
        }
        if controllers.is_empty() {
            unified = Some(rel.to_string());
        }
    }
    let rel = unified?;
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .iter()
        .map(|root| Path::new(root).join(&rel))
        .find(|d| d.join("cgroup.procs").is_file())
}

/// The PIDs listed in `cgroup.procs` text.
fn pids(text: &str) -> Vec<u32> {
    text.lines().filter_map(|l| l.trim().parse().ok()).collect()
}

/// The soft "Max open files" of a `/proc/<pid>/limits` text; `None` if unlimited.
fn soft_nofile(limits: &str) -> Option<u64> {
    let rest = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?;
    rest.split_whitespace().next()?.parse().ok()
}

/// Samples the processes of the cgroup `init_pid` is in (`None` if it has gone).
pub(super) fn sample(init_pid: u32) -> Option<ProcessSample> {
    let dir = cgroup_dir(init_pid)?;
    let procs = pids(&std::fs::read_to_string(dir.join("cgroup.procs")).ok()?);
    let mut out = ProcessSample {
        processes: procs.len() as u64,
        max_open_files: std::fs::read_to_string(format!("/proc/{init_pid}/limits"))
            .ok()
            .and_then(|l| soft_nofile(&l)),
        ..Default::default()
    };
    for pid in procs {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            out.file_descriptors += 1;
            if std::fs::read_link(fd.path())
                .is_ok_and(|t| t.as_os_str().as_encoded_bytes().starts_with(b"socket:"))
            {
                out.sockets += 1;
            }
        }
    }
    Some(out)
}

/// Size and inodes of the filesystem holding `path` (`statfs`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct FsSample {
    pub limit_bytes: u64,
    pub inodes_total: u64,
    pub inodes_free: u64,
}

pub(super) fn filesystem(path: &Path) -> Option<FsSample> {
    let s = nix::sys::statfs::statfs(path).ok()?;
    let block = u64::try_from(s.block_size()).unwrap_or_default();
    Some(FsSample {
        limit_bytes: s.blocks().saturating_mul(block),
        inodes_total: s.files(),
        inodes_free: s.files_free(),
    })
}

/// A block device's name as cAdvisor labels it (`/dev/vda`), else `major:minor`.
pub(super) fn device_name(major: u64, minor: u64) -> String {
    std::fs::read_to_string(format!("/sys/dev/block/{major}:{minor}/uevent"))
        .ok()
        .and_then(|u| {
            u.lines()
                .find_map(|l| l.strip_prefix("DEVNAME="))
                .map(|n| format!("/dev/{n}"))
        })
        .unwrap_or_else(|| format!("{major}:{minor}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_procs_parse() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max processes             63459                63459                processes\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(soft_nofile(limits), Some(1024));
        assert_eq!(
            soft_nofile(
                "Max open files            unlimited            unlimited            files\n"
            ),
            None
        );
        assert_eq!(pids("12\n345\n"), [12, 345]);
    }

    #[test]
    fn this_process_is_sampled() {
        let s = sample(std::process::id()).expect("own cgroup");
        assert!(s.processes >= 1);
        assert!(s.file_descriptors >= 3, "{s:?}");
        assert!(filesystem(Path::new("/")).expect("statfs /").limit_bytes > 0);
    }
}
