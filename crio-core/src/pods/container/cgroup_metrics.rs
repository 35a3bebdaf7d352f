//! A shim's `Stats` payload (containerd's cgroup v1 or v2 `Metrics`), decoded once
//! into what the CRI's stats and metrics are built from, with v1 and v2 meanings
//! reconciled (swap alone, time in nanoseconds, the kernel's names for counters).

use protocols::shim::protobuf::well_known_types::any::Any;
use protocols::shim::protobuf::Message;
use protocols::shim::{cgroups, cgroups_v2};

/// CPU time in nanoseconds and CFS counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Cpu {
    pub total_ns: u64,
    pub user_ns: u64,
    pub system_ns: u64,
    /// Per CPU, where the cgroup version keeps it (v1 only).
    pub per_cpu_ns: Vec<u64>,
    pub periods: u64,
    pub throttled_periods: u64,
    pub throttled_ns: u64,
}

/// Memory, in bytes and counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Memory {
    pub usage: u64,
    pub limit: u64,
    pub max_usage: u64,
    pub failcnt: u64,
    pub cache: u64,
    pub rss: u64,
    pub mapped_file: u64,
    pub kernel: u64,
    /// Swap alone (v1's memsw counter less memory).
    pub swap: u64,
    pub inactive_file: u64,
    pub page_faults: u64,
    pub major_page_faults: u64,
    pub oom_kills: u64,
}

impl Memory {
    /// containerd's and cAdvisor's working set: usage less inactive file pages.
    pub(crate) fn working_set(&self) -> u64 {
        self.usage.saturating_sub(self.inactive_file)
    }
}

/// Block I/O of one device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct IoDevice {
    pub major: u64,
    pub minor: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub reads: u64,
    pub writes: u64,
}

/// One huge page size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HugeTlb {
    /// As cgroup files name it: `2MB`, `1GB`.
    pub pagesize: String,
    pub usage: u64,
    pub max_usage: u64,
}

/// Pressure stall totals (cgroup v2 PSI), in microseconds: (some, full).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Pressure {
    pub cpu: (u64, u64),
    pub memory: (u64, u64),
    pub io: (u64, u64),
}

/// One task's cgroup, whichever version it came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CgroupMetrics {
    pub cpu: Cpu,
    pub memory: Memory,
    pub pids: u64,
    pub pids_limit: u64,
    pub io: Vec<IoDevice>,
    pub hugetlb: Vec<HugeTlb>,
    pub pressure: Option<Pressure>,
}

/// The device row for `major:minor`, made on first use.
fn device(io: &mut Vec<IoDevice>, major: u64, minor: u64) -> &mut IoDevice {
    let at = match io.iter().position(|d| d.major == major && d.minor == minor) {
        Some(at) => at,
        None => {
            io.push(IoDevice {
                major,
                minor,
                ..Default::default()
            });
            io.len() - 1
        }
    };
    &mut io[at]
}

fn from_v1(m: &cgroups::metrics::Metrics) -> CgroupMetrics {
    let usage = m.cpu().usage();
    let throttling = m.cpu().throttling();
    let mem = m.memory();
    let mut io = Vec::new();
    for e in &m.blkio().io_service_bytes_recursive {
        let d = device(&mut io, e.major, e.minor);
        match e.op.to_ascii_lowercase().as_str() {
            "read" => d.read_bytes = e.value,
            "write" => d.write_bytes = e.value,
            _ => {}
        }
    }
    for e in &m.blkio().io_serviced_recursive {
        let d = device(&mut io, e.major, e.minor);
        match e.op.to_ascii_lowercase().as_str() {
            "read" => d.reads = e.value,
            "write" => d.writes = e.value,
            _ => {}
        }
    }
    CgroupMetrics {
        cpu: Cpu {
            total_ns: usage.total(),
            user_ns: usage.user(),
            system_ns: usage.kernel(),
            per_cpu_ns: usage.per_cpu.clone(),
            periods: throttling.periods(),
            throttled_periods: throttling.throttled_periods(),
            throttled_ns: throttling.throttled_time(),
        },
        memory: Memory {
            usage: mem.usage().usage(),
            limit: mem.usage().limit(),
            max_usage: mem.usage().max(),
            failcnt: mem.usage().failcnt(),
            cache: mem.total_cache(),
            rss: mem.total_rss(),
            mapped_file: mem.total_mapped_file(),
            kernel: mem.kernel().usage(),
            // v1's swap entry is memsw: memory and swap together.
            swap: mem.swap().usage().saturating_sub(mem.usage().usage()),
            inactive_file: mem.total_inactive_file(),
            page_faults: mem.total_pg_fault(),
            major_page_faults: mem.total_pg_maj_fault(),
            oom_kills: m.memory_oom_control().oom_kill(),
        },
        pids: m.pids().current(),
        pids_limit: m.pids().limit(),
        io,
        hugetlb: m
            .hugetlb
            .iter()
            .map(|h| HugeTlb {
                pagesize: h.pagesize.clone(),
                usage: h.usage,
                max_usage: h.max,
            })
            .collect(),
        pressure: None,
    }
}

fn from_v2(m: &cgroups_v2::metrics::Metrics) -> CgroupMetrics {
    let cpu = m.cpu();
    let mem = m.memory();
    let psi = |p: &cgroups_v2::metrics::PSIStats| (p.some().total(), p.full().total());
    let pressure =
        (cpu.psi.is_some() || mem.psi.is_some() || m.io().psi.is_some()).then(|| Pressure {
            cpu: psi(cpu.psi()),
            memory: psi(mem.psi()),
            io: psi(m.io().psi()),
        });
    CgroupMetrics {
        cpu: Cpu {
            total_ns: cpu.usage_usec() * 1000,
            user_ns: cpu.user_usec() * 1000,
            system_ns: cpu.system_usec() * 1000,
            per_cpu_ns: Vec::new(),
            periods: cpu.nr_periods(),
            throttled_periods: cpu.nr_throttled(),
            throttled_ns: cpu.throttled_usec() * 1000,
        },
        memory: Memory {
            usage: mem.usage(),
            limit: mem.usage_limit(),
            max_usage: mem.max_usage(),
            failcnt: 0,
            cache: mem.file(),
            rss: mem.anon(),
            mapped_file: mem.file_mapped(),
            kernel: mem.kernel_stack() + mem.slab(),
            swap: mem.swap_usage(),
            inactive_file: mem.inactive_file(),
            page_faults: mem.pgfault(),
            major_page_faults: mem.pgmajfault(),
            oom_kills: m.memory_events().oom_kill(),
        },
        pids: m.pids().current(),
        pids_limit: m.pids().limit(),
        io: m
            .io()
            .usage
            .iter()
            .map(|e| IoDevice {
                major: e.major,
                minor: e.minor,
                read_bytes: e.rbytes,
                write_bytes: e.wbytes,
                reads: e.rios,
                writes: e.wios,
            })
            .collect(),
        hugetlb: m
            .hugetlb
            .iter()
            .map(|h| HugeTlb {
                pagesize: h.pagesize.clone(),
                usage: h.current,
                max_usage: 0,
            })
            .collect(),
        pressure,
    }
}

/// Decodes a shim's `Stats` payload. The type URL has no `/` (containerd's typeurl
/// for unregistered types), so it is matched by hand.
pub(super) fn parse_metrics(any: &Any) -> Result<CgroupMetrics, String> {
    let name = any.type_url.rsplit('/').next().unwrap_or_default();
    match name {
        "io.containerd.cgroups.v1.Metrics" => {
            let m = cgroups::metrics::Metrics::parse_from_bytes(&any.value)
                .map_err(|e| format!("{name}: {e}"))?;
            Ok(from_v1(&m))
        }
        "io.containerd.cgroups.v2.Metrics" => {
            let m = cgroups_v2::metrics::Metrics::parse_from_bytes(&any.value)
                .map_err(|e| format!("{name}: {e}"))?;
            Ok(from_v2(&m))
        }
        other => Err(format!("unknown metrics type {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn any(type_url: &str, value: Vec<u8>) -> Any {
        Any {
            type_url: type_url.into(),
            value,
            ..Default::default()
        }
    }

    #[test]
    fn v1_metrics_map_like_containerd_and_cadvisor() {
        let mut m = cgroups::metrics::Metrics::new();
        let usage = m.cpu.mut_or_insert_default().usage.mut_or_insert_default();
        usage.total = 5_000;
        usage.per_cpu = vec![2_000, 3_000];
        let mem = m.memory.mut_or_insert_default();
        mem.usage.mut_or_insert_default().usage = 100 << 20;
        mem.usage.mut_or_insert_default().failcnt = 4;
        mem.swap.mut_or_insert_default().usage = 110 << 20;
        mem.total_inactive_file = 30 << 20;
        mem.total_rss = 60 << 20;
        m.memory_oom_control.mut_or_insert_default().oom_kill = 2;
        let blkio = m.blkio.mut_or_insert_default();
        for (op, v) in [("Read", 4096), ("Write", 8192), ("Total", 12288)] {
            blkio
                .io_service_bytes_recursive
                .push(cgroups::metrics::BlkIOEntry {
                    op: op.into(),
                    major: 8,
                    minor: 0,
                    value: v,
                    ..Default::default()
                });
        }
        let t = parse_metrics(&any(
            "io.containerd.cgroups.v1.Metrics",
            m.write_to_bytes().expect("encode"),
        ))
        .expect("metrics");
        assert_eq!(t.cpu.total_ns, 5_000);
        assert_eq!(t.cpu.per_cpu_ns, [2_000, 3_000]);
        assert_eq!(t.memory.working_set(), 70 << 20);
        assert_eq!(t.memory.swap, 10 << 20, "swap alone");
        assert_eq!(t.memory.failcnt, 4);
        assert_eq!(t.memory.oom_kills, 2);
        assert_eq!(
            t.io,
            [IoDevice {
                major: 8,
                minor: 0,
                read_bytes: 4096,
                write_bytes: 8192,
                ..Default::default()
            }]
        );
        assert!(parse_metrics(&Any::default()).is_err());
    }

    #[test]
    fn v2_metrics_are_read_in_v2_units() {
        let mut m = cgroups_v2::metrics::Metrics::new();
        let cpu = m.cpu.mut_or_insert_default();
        cpu.usage_usec = 7;
        cpu.throttled_usec = 3;
        cpu.psi
            .mut_or_insert_default()
            .some
            .mut_or_insert_default()
            .total = 99;
        m.memory.mut_or_insert_default().swap_usage = 5;
        m.memory_events.mut_or_insert_default().oom_kill = 1;
        let t = parse_metrics(&any(
            "io.containerd.cgroups.v2.Metrics",
            m.write_to_bytes().expect("encode"),
        ))
        .expect("metrics");
        assert_eq!(t.cpu.total_ns, 7_000);
        assert_eq!(t.cpu.throttled_ns, 3_000);
        assert_eq!(t.memory.swap, 5);
        assert_eq!(t.memory.oom_kills, 1);
        assert_eq!(t.pressure.map(|p| p.cpu), Some((99, 0)));
    }
}
