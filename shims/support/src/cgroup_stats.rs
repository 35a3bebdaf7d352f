//! What containerd-shim's cgroup v1 metrics leave out, read from cgroupfs: CPU time
//! (`cpuacct.usage`; the crate looks for v2's `usage_usec`), the memory limit, RSS
//! and page faults. containerd's Go shim reports them all; the kubelet needs them.

use std::path::{Path, PathBuf};

use containerd_shim_protos::cgroups::metrics::Metrics;

/// The v1 cgroup path of `pid` for a controller (`cpuacct`, `memory`).
fn cgroup_of(pid: u32, controller: &str) -> Option<(String, PathBuf)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let _id = parts.next()?;
        let controllers = parts.next()?;
        let path = parts.next()?;
        controllers
            .split(',')
            .any(|c| c == controller)
            .then(|| (controllers.to_string(), PathBuf::from(path)))
    })
}

/// The directory of `pid`'s cgroup for `controller` under `/sys/fs/cgroup`.
fn cgroup_dir(pid: u32, controller: &str) -> Option<PathBuf> {
    let (mount, path) = cgroup_of(pid, controller)?;
    let rel = path.strip_prefix("/").unwrap_or(&path);
    [controller, mount.as_str()]
        .iter()
        .map(|m| Path::new("/sys/fs/cgroup").join(m).join(rel))
        .find(|d| d.is_dir())
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// `key value` lines of a `*.stat` file.
fn stat_value(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Fills the fields containerd-shim leaves empty on cgroup v1 for the task `pid`.
pub fn fill_v1(pid: u32, m: &mut Metrics) {
    if let Some(dir) = cgroup_dir(pid, "cpuacct") {
        if let Some(total) = read_u64(&dir.join("cpuacct.usage")) {
            let cpu = m.cpu.mut_or_insert_default();
            cpu.usage.mut_or_insert_default().total = total;
            if let Ok(stat) = std::fs::read_to_string(dir.join("cpuacct.stat")) {
                // USER_HZ ticks (100/s) -> ns.
                let usage = cpu.usage.mut_or_insert_default();
                usage.user = stat_value(&stat, "user").unwrap_or_default() * 10_000_000;
                usage.kernel = stat_value(&stat, "system").unwrap_or_default() * 10_000_000;
            }
        }
    }
    if let Some(dir) = cgroup_dir(pid, "memory") {
        let mem = m.memory.mut_or_insert_default();
        if let Some(limit) = read_u64(&dir.join("memory.limit_in_bytes")) {
            mem.usage.mut_or_insert_default().limit = limit;
        }
        if let Some(usage) = read_u64(&dir.join("memory.usage_in_bytes")) {
            mem.usage.mut_or_insert_default().usage = usage;
        }
        if let Ok(stat) = std::fs::read_to_string(dir.join("memory.stat")) {
            let v = |k: &str| stat_value(&stat, k).unwrap_or_default();
            mem.cache = v("cache");
            mem.rss = v("rss");
            mem.mapped_file = v("mapped_file");
            mem.pg_fault = v("pgfault");
            mem.pg_maj_fault = v("pgmajfault");
            mem.inactive_file = v("inactive_file");
            mem.total_cache = v("total_cache");
            mem.total_rss = v("total_rss");
            mem.total_mapped_file = v("total_mapped_file");
            mem.total_pg_fault = v("total_pgfault");
            mem.total_pg_maj_fault = v("total_pgmajfault");
            mem.total_inactive_file = v("total_inactive_file");
            mem.hierarchical_memory_limit = v("hierarchical_memory_limit");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_by_exact_key() {
        let text = "total_rss 4096\nrss 1024\ntotal_pgfault 7\n";
        assert_eq!(stat_value(text, "rss"), Some(1024));
        assert_eq!(stat_value(text, "total_rss"), Some(4096));
        assert_eq!(stat_value(text, "pgfault"), None);
    }

    #[test]
    fn this_process_has_v1_cpu_time() {
        let mut m = Metrics::new();
        fill_v1(std::process::id(), &mut m);
        // On a v1 host the test process's own cgroup has cpuacct; elsewhere nothing is set.
        if cgroup_dir(std::process::id(), "cpuacct").is_some() {
            assert!(m.cpu().usage().total() > 0);
        }
    }
}
