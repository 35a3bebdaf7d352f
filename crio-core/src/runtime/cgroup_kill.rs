//! Killing what is left of a task whose shim died: every process in its cgroup,
//! until the cgroup is empty. A shim's own `delete` asks its runtime to kill the
//! container, but nothing waits for the processes to go; the CRI must not report a
//! container exited while its processes still run.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The directories that may hold a task's `cgroup.procs`, for its OCI
/// `cgroupsPath` (`/parent/crio-<id>` for cgroupfs, `slice:prefix:name` for
/// systemd): the v1 `pids` and `freezer` hierarchies, then the unified one.
pub(crate) fn cgroup_dirs(cgroups_path: &str) -> Vec<PathBuf> {
    let relative = match systemd_path(cgroups_path) {
        Some(p) => p,
        None => cgroups_path.trim_start_matches('/').to_string(),
    };
    ["pids", "freezer", "unified", ""]
        .iter()
        .map(|h| Path::new("/sys/fs/cgroup").join(h).join(&relative))
        .collect()
}

/// `slice:prefix:name` -> `a.slice/a-b.slice/prefix-name.scope`, as systemd lays
/// slices out (each `-` in a slice name is one level deeper).
fn systemd_path(cgroups_path: &str) -> Option<String> {
    let mut parts = cgroups_path.splitn(3, ':');
    let (slice, prefix, name) = (parts.next()?, parts.next()?, parts.next()?);
    let slice = slice.strip_suffix(".slice")?;
    let mut dirs = Vec::new();
    let mut built = String::new();
    for (i, part) in slice.split('-').enumerate() {
        if i > 0 {
            built.push('-');
        }
        built.push_str(part);
        dirs.push(format!("{built}.slice"));
    }
    dirs.push(format!("{prefix}-{name}.scope"));
    Some(dirs.join("/"))
}

fn pids_in(dir: &Path) -> Option<Vec<i32>> {
    let text = std::fs::read_to_string(dir.join("cgroup.procs")).ok()?;
    Some(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
}

/// SIGKILLs every process of the cgroup at `cgroups_path` until none is left or
/// `timeout` passes; true when the cgroup is empty (or gone). Blocking.
pub(crate) fn kill_all(cgroups_path: &str, timeout: Duration) -> bool {
    let dirs: Vec<PathBuf> = cgroup_dirs(cgroups_path)
        .into_iter()
        .filter(|d| d.join("cgroup.procs").is_file())
        .collect();
    let deadline = Instant::now() + timeout;
    loop {
        let mut any = false;
        for dir in &dirs {
            for pid in pids_in(dir).unwrap_or_default() {
                any = true;
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        if !any {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroupfs_and_systemd_paths() {
        let dirs = cgroup_dirs("/crio/crio-abc");
        assert_eq!(dirs[0], Path::new("/sys/fs/cgroup/pids/crio/crio-abc"));
        assert_eq!(dirs[3], Path::new("/sys/fs/cgroup/crio/crio-abc"));
        assert_eq!(
            systemd_path("kubepods-besteffort-pod1.slice:crio:abc").as_deref(),
            Some("kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/crio-abc.scope")
        );
        assert_eq!(systemd_path("/crio/crio-abc"), None);
    }

    #[test]
    fn an_absent_cgroup_is_empty() {
        assert!(kill_all(
            "/crio-rs-test-no-such-cgroup",
            Duration::from_millis(10)
        ));
    }
}
