//! What containerd-shim's cgroup metrics leave out, read from cgroupfs, so our shims
//! report what containerd's Go shim reports (the kubelet's stats and the CRI
//! metrics are built from it).
//!
//! v1: CPU time (`cpuacct.usage`; the crate looks for v2's `usage_usec`), per-CPU
//! time, user and system time, CFS throttling, the memory limit, failcnt and peak,
//! RSS, cache and page faults, block I/O, hugetlb. v2: block I/O (`io.stat`),
//! hugetlb and pressure (PSI).

use std::path::{Path, PathBuf};

use containerd_shim_protos::cgroups::metrics::{BlkIOEntry, HugetlbStat, Metrics};
use containerd_shim_protos::cgroups_v2::metrics::{
    HugeTlbStat, IOEntry, Metrics as MetricsV2, PSIData, PSIStats,
};
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::Message;

/// The cgroup metrics of `pid` (blocking: reads cgroupfs), as containerd's Go shim
/// fills them: `io.containerd.cgroups.v2.Metrics` or `...v1.Metrics`.
pub fn metrics_of(pid: u32) -> Result<Any, crate::Error> {
    let cgroup = containerd_shim::cgroup::get_cgroup(pid)?;
    if cgroup.v2() {
        let mut m = containerd_shim::cgroup::collect_metrics_v2(&cgroup)?;
        fill_v2(pid, &mut m);
        Ok(Any {
            type_url: "io.containerd.cgroups.v2.Metrics".into(),
            value: m.write_to_bytes()?,
            ..Default::default()
        })
    } else {
        let mut m = containerd_shim::cgroup::collect_metrics(&cgroup)?;
        fill_v1(pid, &mut m);
        Ok(Any {
            type_url: "io.containerd.cgroups.v1.Metrics".into(),
            value: m.write_to_bytes()?,
            ..Default::default()
        })
    }
}

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

/// The host's huge page sizes as cgroup file names use them (`2MB`, `1GB`).
fn huge_page_sizes() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/sys/kernel/mm/hugepages") else {
        return Vec::new();
    };
    let mut sizes: Vec<u64> = dir
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_prefix("hugepages-")?
                .strip_suffix("kB")?
                .parse()
                .ok()
        })
        .collect();
    sizes.sort_unstable();
    sizes.into_iter().map(page_size_name).collect()
}

/// `2048` kB -> `2MB`, as runc and the kernel name hugetlb files.
fn page_size_name(kb: u64) -> String {
    match kb {
        kb if kb >= 1 << 20 && kb % (1 << 20) == 0 => format!("{}GB", kb >> 20),
        kb if kb >= 1 << 10 && kb % (1 << 10) == 0 => format!("{}MB", kb >> 10),
        kb => format!("{kb}KB"),
    }
}

/// v1 `blkio.*_recursive` lines (`8:0 Read 4096`; the `Total` line has no device).
fn blkio_entries(text: &str) -> Vec<BlkIOEntry> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let (device, op, value) = (f.next()?, f.next()?, f.next()?);
            let (major, minor) = device.split_once(':')?;
            Some(BlkIOEntry {
                op: op.to_string(),
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
                value: value.parse().ok()?,
                ..Default::default()
            })
        })
        .collect()
}

/// The first of `files` in `dir` that has entries: runc reads the throttle files,
/// which count every device, before the CFQ/BFQ ones.
fn blkio_file(dir: &Path, files: &[&str]) -> Vec<BlkIOEntry> {
    files
        .iter()
        .map(|f| blkio_entries(&std::fs::read_to_string(dir.join(f)).unwrap_or_default()))
        .find(|e| !e.is_empty())
        .unwrap_or_default()
}

/// Fills the fields containerd-shim leaves empty on cgroup v1 for the task `pid`.
pub fn fill_v1(pid: u32, m: &mut Metrics) {
    if let Some(dir) = cgroup_dir(pid, "cpuacct") {
        if let Some(total) = read_u64(&dir.join("cpuacct.usage")) {
            let cpu = m.cpu.mut_or_insert_default();
            let usage = cpu.usage.mut_or_insert_default();
            usage.total = total;
            if let Ok(stat) = std::fs::read_to_string(dir.join("cpuacct.stat")) {
                // USER_HZ ticks (100/s) -> ns.
                usage.user = stat_value(&stat, "user").unwrap_or_default() * 10_000_000;
                usage.kernel = stat_value(&stat, "system").unwrap_or_default() * 10_000_000;
            }
            if let Ok(per_cpu) = std::fs::read_to_string(dir.join("cpuacct.usage_percpu")) {
                usage.per_cpu = per_cpu
                    .split_whitespace()
                    .filter_map(|v| v.parse().ok())
                    .collect();
            }
        }
    }
    if let Some(dir) = cgroup_dir(pid, "cpu") {
        if let Ok(stat) = std::fs::read_to_string(dir.join("cpu.stat")) {
            let t = m
                .cpu
                .mut_or_insert_default()
                .throttling
                .mut_or_insert_default();
            t.periods = stat_value(&stat, "nr_periods").unwrap_or_default();
            t.throttled_periods = stat_value(&stat, "nr_throttled").unwrap_or_default();
            t.throttled_time = stat_value(&stat, "throttled_time").unwrap_or_default();
        }
    }
    if let Some(dir) = cgroup_dir(pid, "memory") {
        let mem = m.memory.mut_or_insert_default();
        let usage = mem.usage.mut_or_insert_default();
        let file = |name: &str| read_u64(&dir.join(name));
        if let Some(limit) = file("memory.limit_in_bytes") {
            usage.limit = limit;
        }
        if let Some(bytes) = file("memory.usage_in_bytes") {
            usage.usage = bytes;
        }
        usage.max = file("memory.max_usage_in_bytes").unwrap_or_default();
        usage.failcnt = file("memory.failcnt").unwrap_or_default();
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
            mem.total_active_file = v("total_active_file");
            mem.hierarchical_memory_limit = v("hierarchical_memory_limit");
        }
    }
    if let Some(dir) = cgroup_dir(pid, "blkio") {
        let blkio = m.blkio.mut_or_insert_default();
        blkio.io_service_bytes_recursive = blkio_file(
            &dir,
            &[
                "blkio.throttle.io_service_bytes_recursive",
                "blkio.io_service_bytes_recursive",
                "blkio.bfq.io_service_bytes_recursive",
            ],
        );
        blkio.io_serviced_recursive = blkio_file(
            &dir,
            &[
                "blkio.throttle.io_serviced_recursive",
                "blkio.io_serviced_recursive",
                "blkio.bfq.io_serviced_recursive",
            ],
        );
    }
    if let Some(dir) = cgroup_dir(pid, "hugetlb") {
        m.hugetlb = huge_page_sizes()
            .into_iter()
            .map(|size| {
                let file = |suffix: &str| {
                    read_u64(&dir.join(format!("hugetlb.{size}.{suffix}"))).unwrap_or_default()
                };
                HugetlbStat {
                    usage: file("usage_in_bytes"),
                    max: file("max_usage_in_bytes"),
                    failcnt: file("failcnt"),
                    pagesize: size,
                    ..Default::default()
                }
            })
            .collect();
    }
}

/// v2 `io.stat` lines (`8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0`).
fn io_stat(text: &str) -> Vec<IOEntry> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let (major, minor) = f.next()?.split_once(':')?;
            let mut e = IOEntry {
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
                ..Default::default()
            };
            for kv in f {
                let Some((k, v)) = kv.split_once('=') else {
                    continue;
                };
                let v = v.parse().unwrap_or_default();
                match k {
                    "rbytes" => e.rbytes = v,
                    "wbytes" => e.wbytes = v,
                    "rios" => e.rios = v,
                    "wios" => e.wios = v,
                    _ => {}
                }
            }
            Some(e)
        })
        .collect()
}

/// A `*.pressure` file (`some avg10=0.00 avg60=0.00 avg300=0.00 total=123`).
fn psi(text: &str) -> PSIStats {
    let line = |kind: &str| {
        let rest = text.lines().find_map(|l| l.strip_prefix(kind))?;
        let mut d = PSIData::default();
        for kv in rest.split_whitespace() {
            match kv.split_once('=') {
                Some(("avg10", v)) => d.avg10 = v.parse().unwrap_or_default(),
                Some(("avg60", v)) => d.avg60 = v.parse().unwrap_or_default(),
                Some(("avg300", v)) => d.avg300 = v.parse().unwrap_or_default(),
                Some(("total", v)) => d.total = v.parse().unwrap_or_default(),
                _ => {}
            }
        }
        Some(d)
    };
    PSIStats {
        some: line("some ").into(),
        full: line("full ").into(),
        ..Default::default()
    }
}

/// The cgroup v2 directory of `pid`.
fn cgroup_v2_dir(pid: u32) -> Option<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    let dir = Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
    dir.is_dir().then_some(dir)
}

/// Fills the fields containerd-shim leaves empty on cgroup v2 for the task `pid`.
pub fn fill_v2(pid: u32, m: &mut MetricsV2) {
    let Some(dir) = cgroup_v2_dir(pid) else {
        return;
    };
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
    let io = m.io.mut_or_insert_default();
    io.usage = io_stat(&read("io.stat").unwrap_or_default());
    if let Some(text) = read("io.pressure") {
        io.psi = Some(psi(&text)).into();
    }
    if let Some(text) = read("cpu.pressure") {
        m.cpu.mut_or_insert_default().psi = Some(psi(&text)).into();
    }
    if let Some(text) = read("memory.pressure") {
        m.memory.mut_or_insert_default().psi = Some(psi(&text)).into();
    }
    m.hugetlb = huge_page_sizes()
        .into_iter()
        .filter_map(|size| {
            let current = read_u64(&dir.join(format!("hugetlb.{size}.current")))?;
            let max = read(&format!("hugetlb.{size}.max"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(u64::MAX);
            Some(HugeTlbStat {
                current,
                max,
                pagesize: size,
                ..Default::default()
            })
        })
        .collect();
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
            assert!(!m.cpu().usage().per_cpu.is_empty());
        }
    }

    #[test]
    fn blkio_lines_name_device_and_operation() {
        let text = "8:0 Read 4096\n8:0 Write 512\n8:0 Sync 0\n8:0 Total 4608\nTotal 4608\n";
        let e = blkio_entries(text);
        assert_eq!(e.len(), 4);
        assert_eq!((e[0].major, e[0].minor, e[0].op.as_str()), (8, 0, "Read"));
        assert_eq!(e[1].value, 512);
    }

    #[test]
    fn v2_io_stat_and_pressure_parse() {
        let e = io_stat("254:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n");
        assert_eq!(
            (e[0].major, e[0].rbytes, e[0].wbytes, e[0].rios, e[0].wios),
            (254, 10, 20, 1, 2)
        );
        let p = psi("some avg10=0.50 avg60=0.00 avg300=0.00 total=1234\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=99\n");
        assert_eq!(p.some.total, 1234);
        assert_eq!(p.full.total, 99);
        assert!((p.some.avg10 - 0.5).abs() < 1e-9);
    }

    #[test]
    fn page_sizes_are_named_as_cgroup_files_are() {
        assert_eq!(page_size_name(2048), "2MB");
        assert_eq!(page_size_name(1 << 20), "1GB");
        assert_eq!(page_size_name(64), "64KB");
    }
}
