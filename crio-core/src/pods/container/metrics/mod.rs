//! `ListMetricDescriptors` / `ListPodSandboxMetrics`: the cAdvisor-compatible set the
//! kubelet's CRI stats provider (`PodAndContainerStatsFromCRI`) serves on
//! `/metrics/cadvisor`, with CRI-O's names, groups and labels.
//!
//! Per running container: CPU, memory and OOM counters from its cgroup (the shim's
//! `Stats`), block I/O and hugetlb likewise, processes, open files and sockets of its
//! cgroup and its init's `nofile` limit (`/proc`), its writable layer and the
//! filesystem under it, its CRI resources, and PSI where the host has cgroup v2.
//! Per pod: network counters of every interface in its namespace but `lo`. Labels are
//! `id, image, namespace, pod, container` (the pod's are its id, `""` and `POD`), then
//! the metric's own. The groups served are fixed at start (the kubelet reads the
//! descriptors once), from `[crio.stats] included_pod_metrics` less what the host
//! cannot serve.

mod procfs;
mod table;

use std::path::Path;

use protocols::cri;

use super::cgroup_metrics::CgroupMetrics;
use super::stats::NetDev;
use crate::error::CriError;
use crate::pods::PodRuntime;
use crate::store::{ContainerRecord, SandboxRecord};
use crate::store::{ContainerState, SandboxState};
use table::{Group, BASE_LABELS, METRICS};

pub(crate) use table::Group as MetricGroup;

/// What the host can serve beyond cgroup v1 basics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct MetricHost {
    /// cgroup v2 with pressure stall information.
    pub psi: bool,
    /// A hugetlb controller and huge page sizes.
    pub hugetlb: bool,
    /// Block I/O accounted per cgroup: v2's `io.stat`, or a v1 blkio controller
    /// whose root has counted any I/O at all (on recent kernels with multi-queue
    /// schedulers, v1's throttle counters stay at zero).
    pub block_io: bool,
}

impl MetricHost {
    pub(crate) fn read() -> Self {
        let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").is_file();
        let controllers =
            std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers").unwrap_or_default();
        let page_sizes =
            std::fs::read_dir("/sys/kernel/mm/hugepages").is_ok_and(|mut d| d.next().is_some());
        let v1_blkio_counts = std::fs::read_to_string(
            "/sys/fs/cgroup/blkio/blkio.throttle.io_service_bytes_recursive",
        )
        .is_ok_and(|t| {
            t.lines()
                .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
                .any(|v| v > 0)
        });
        MetricHost {
            psi: v2 && Path::new("/proc/pressure/cpu").is_file(),
            block_io: if v2 {
                controllers.split_whitespace().any(|c| c == "io")
            } else {
                v1_blkio_counts
            },
            hugetlb: page_sizes
                && if v2 {
                    controllers.split_whitespace().any(|c| c == "hugetlb")
                } else {
                    Path::new("/sys/fs/cgroup/hugetlb").is_dir()
                },
        }
    }
}

/// Which groups `included_pod_metrics` leaves out for want of host support, and why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Omitted {
    /// Groups asked for by name (warn about them).
    pub named: bool,
    pub notes: Vec<String>,
}

/// The groups to serve for `included_pod_metrics` (validated: `["all"]`, or group
/// names), and what the host cannot serve of them.
pub(crate) fn resolve_groups(included: &[String], host: MetricHost) -> (Vec<MetricGroup>, Omitted) {
    let all = included.iter().any(|g| g == crate::config::METRICS_ALL);
    let mut groups = vec![Group::Always];
    let mut notes = Vec::new();
    for group in Group::CONFIGURABLE {
        if !all && !included.iter().any(|g| g == group.name()) {
            continue;
        }
        let missing = match group {
            Group::Pressure if !host.psi => Some("cgroup v2 with pressure stall information"),
            Group::Hugetlb if !host.hugetlb => Some("a hugetlb cgroup controller"),
            Group::DiskIo if !host.block_io => Some("a cgroup controller that accounts block I/O"),
            _ => None,
        };
        match missing {
            // Asked for by name: a warning. "all" means what there is: a note.
            Some(what) => notes.push(format!(
                "[crio.stats] included_pod_metrics: {:?} needs {what}, which this host lacks: \
                 not served",
                group.name()
            )),
            None => groups.push(group),
        }
    }
    (groups, Omitted { named: !all, notes })
}

/// The descriptors of the served groups.
pub(crate) fn descriptors(groups: &[MetricGroup]) -> Vec<cri::MetricDescriptor> {
    METRICS
        .iter()
        .filter(|d| groups.contains(&d.group))
        .map(|d| cri::MetricDescriptor {
            name: d.name.into(),
            help: d.help.into(),
            label_keys: BASE_LABELS
                .iter()
                .chain(d.extra_labels)
                .map(|s| s.to_string())
                .collect(),
        })
        .collect()
}

/// Metrics being built for one container or pod.
struct Samples<'a> {
    groups: &'a [MetricGroup],
    base: [String; 5],
    now: i64,
    out: Vec<cri::Metric>,
}

impl Samples<'_> {
    /// Adds `name` (if its group is served) with the extra label values.
    fn push(&mut self, name: &str, extra: &[&str], value: u64) {
        let Some(def) = table::lookup(name) else {
            return;
        };
        if !self.groups.contains(&def.group) {
            return;
        }
        debug_assert_eq!(def.extra_labels.len(), extra.len(), "{name}");
        self.out.push(cri::Metric {
            name: def.name.into(),
            timestamp: self.now,
            metric_type: def.kind as i32,
            label_values: self
                .base
                .iter()
                .cloned()
                .chain(extra.iter().map(|s| s.to_string()))
                .collect(),
            value: Some(cri::UInt64Value { value }),
        });
    }

    fn served(&self, group: Group) -> bool {
        self.groups.contains(&group)
    }
}

const NS: u64 = 1_000_000_000;

fn cgroup_samples(s: &mut Samples<'_>, m: &CgroupMetrics) {
    let cpu = &m.cpu;
    s.push("container_cpu_user_seconds_total", &[], cpu.user_ns / NS);
    s.push(
        "container_cpu_system_seconds_total",
        &[],
        cpu.system_ns / NS,
    );
    // The kubelet's cAdvisor ran with per-CPU metrics off: one `total` series.
    s.push(
        "container_cpu_usage_seconds_total",
        &["total"],
        cpu.total_ns / NS,
    );
    s.push("container_cpu_cfs_periods_total", &[], cpu.periods);
    s.push(
        "container_cpu_cfs_throttled_periods_total",
        &[],
        cpu.throttled_periods,
    );
    s.push(
        "container_cpu_cfs_throttled_seconds_total",
        &[],
        cpu.throttled_ns / NS,
    );
    let mem = &m.memory;
    s.push("container_memory_cache", &[], mem.cache);
    s.push("container_memory_rss", &[], mem.rss);
    s.push("container_memory_kernel_usage", &[], mem.kernel);
    s.push("container_memory_mapped_file", &[], mem.mapped_file);
    s.push("container_memory_swap", &[], mem.swap);
    s.push("container_memory_failcnt", &[], mem.failcnt);
    s.push("container_memory_usage_bytes", &[], mem.usage);
    s.push("container_memory_max_usage_bytes", &[], mem.max_usage);
    s.push("container_memory_working_set_bytes", &[], mem.working_set());
    for (kind, value) in [
        ("pgfault", mem.page_faults),
        ("pgmajfault", mem.major_page_faults),
    ] {
        // The counters are hierarchical; cAdvisor reports them under both scopes.
        for scope in ["container", "hierarchy"] {
            s.push("container_memory_failures_total", &[kind, scope], value);
        }
    }
    s.push("container_oom_events_total", &[], mem.oom_kills);
    for d in &m.io {
        let device = procfs::device_name(d.major, d.minor);
        let (major, minor) = (d.major.to_string(), d.minor.to_string());
        s.push("container_fs_reads_bytes_total", &[&device], d.read_bytes);
        s.push("container_fs_reads_total", &[&device], d.reads);
        s.push("container_fs_writes_bytes_total", &[&device], d.write_bytes);
        s.push("container_fs_writes_total", &[&device], d.writes);
        for (op, bytes) in [("read", d.read_bytes), ("write", d.write_bytes)] {
            s.push(
                "container_blkio_device_usage_total",
                &[&device, &major, &minor, op],
                bytes,
            );
        }
    }
    for h in &m.hugetlb {
        s.push("container_hugetlb_usage_bytes", &[&h.pagesize], h.usage);
        s.push(
            "container_hugetlb_max_usage_bytes",
            &[&h.pagesize],
            h.max_usage,
        );
    }
    s.push("container_threads", &[], m.pids);
    s.push("container_threads_max", &[], m.pids_limit);
    if let Some(p) = &m.pressure {
        const US: u64 = 1_000_000;
        for (what, (some, full)) in [("cpu", p.cpu), ("memory", p.memory), ("io", p.io)] {
            s.push(
                &format!("container_pressure_{what}_stalled_seconds_total"),
                &[],
                full / US,
            );
            s.push(
                &format!("container_pressure_{what}_waiting_seconds_total"),
                &[],
                some / US,
            );
        }
    }
}

/// A CRI limit as a gauge: unset, negative or "unlimited" (beyond 2^62) is 0.
fn limit(v: i64) -> u64 {
    u64::try_from(v).ok().filter(|v| *v < 1 << 62).unwrap_or(0)
}

fn spec_samples(s: &mut Samples<'_>, c: &ContainerRecord) {
    let r = &c.resources;
    s.push("container_spec_cpu_period", &[], limit(r.cpu_period));
    s.push("container_spec_cpu_shares", &[], limit(r.cpu_shares));
    if r.cpu_quota > 0 {
        s.push("container_spec_cpu_quota", &[], limit(r.cpu_quota));
    }
    s.push(
        "container_spec_memory_limit_bytes",
        &[],
        limit(r.memory_limit),
    );
    let reservation = r
        .unified
        .get("memory.min")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    s.push(
        "container_spec_memory_reservation_limit_bytes",
        &[],
        reservation,
    );
    s.push(
        "container_spec_memory_swap_limit_bytes",
        &[],
        limit(r.memory_swap),
    );
    let started = if c.started_at > 0 {
        c.started_at
    } else {
        c.created_at
    };
    s.push(
        "container_start_time_seconds",
        &[],
        u64::try_from(started).unwrap_or_default() / NS,
    );
}

/// What is read on the host for one container (blocking).
fn host_samples(s: &mut Samples<'_>, c: &ContainerRecord, containers_dir: &Path) {
    if s.served(Group::Process) {
        if let Some(p) = procfs::sample(c.pid) {
            s.push("container_processes", &[], p.processes);
            s.push("container_file_descriptors", &[], p.file_descriptors);
            s.push("container_sockets", &[], p.sockets);
            if let Some(nofile) = p.max_open_files {
                s.push("container_ulimits_soft", &["max_open_files"], nofile);
            }
        }
    }
    if s.served(Group::Disk) {
        let writable = containers_dir.join(&c.id);
        if let Some(fs) = procfs::filesystem(&writable) {
            s.push("container_fs_inodes_free", &[], fs.inodes_free);
            s.push("container_fs_inodes_total", &[], fs.inodes_total);
            s.push("container_fs_limit_bytes", &[], fs.limit_bytes);
            let (bytes, _) = crate::storage::usage::disk_usage(&writable);
            s.push("container_fs_usage_bytes", &[], bytes);
        }
    }
}

fn network_samples(s: &mut Samples<'_>, interfaces: &[NetDev]) {
    for i in interfaces {
        let name = [i.name.as_str()];
        s.push("container_network_receive_bytes_total", &name, i.rx_bytes);
        s.push(
            "container_network_receive_packets_total",
            &name,
            i.rx_packets,
        );
        s.push(
            "container_network_receive_packets_dropped_total",
            &name,
            i.rx_dropped,
        );
        s.push("container_network_receive_errors_total", &name, i.rx_errors);
        s.push("container_network_transmit_bytes_total", &name, i.tx_bytes);
        s.push(
            "container_network_transmit_packets_total",
            &name,
            i.tx_packets,
        );
        s.push(
            "container_network_transmit_packets_dropped_total",
            &name,
            i.tx_dropped,
        );
        s.push(
            "container_network_transmit_errors_total",
            &name,
            i.tx_errors,
        );
    }
}

/// The `net/dev` a pod's traffic shows in: its pinned network namespace's, or the
/// host's for host-network pods (as CRI-O reports them). Blocking.
fn pod_interfaces(pod: &SandboxRecord) -> Vec<NetDev> {
    let text = if pod.host_network {
        std::fs::read_to_string("/proc/self/net/dev").ok()
    } else {
        super::stats::pinned_net_dev(pod)
    };
    text.map(|t| super::stats::net_dev(&t)).unwrap_or_default()
}

impl PodRuntime {
    /// ListMetricDescriptors.
    pub(crate) fn metric_descriptors(&self) -> Vec<cri::MetricDescriptor> {
        descriptors(&self.config.metric_groups)
    }

    /// ListPodSandboxMetrics: every ready pod, its running containers.
    pub(crate) async fn pod_sandbox_metrics(
        &self,
    ) -> Result<Vec<cri::PodSandboxMetrics>, CriError> {
        let groups = &self.config.metric_groups;
        let cgroups = [
            Group::Cpu,
            Group::Memory,
            Group::Oom,
            Group::DiskIo,
            Group::Hugetlb,
            Group::Process,
            Group::Pressure,
        ];
        let wants_cgroup = cgroups.iter().any(|g| groups.contains(g));
        let now = crate::store::now_nanos();
        let mut out = Vec::new();
        for pod in self.store.list::<SandboxRecord>()? {
            if pod.state != SandboxState::Ready {
                continue;
            }
            let mut pod_samples = Samples {
                groups,
                base: [
                    pod.id.clone(),
                    String::new(),
                    pod.namespace.clone(),
                    pod.name.clone(),
                    "POD".into(),
                ],
                now,
                out: Vec::new(),
            };
            if pod_samples.served(Group::Network) {
                let p = pod.clone();
                let interfaces = tokio::task::spawn_blocking(move || pod_interfaces(&p))
                    .await
                    .unwrap_or_default();
                network_samples(&mut pod_samples, &interfaces);
            }
            let mut container_metrics = Vec::new();
            for c in self.containers_of(&pod.id)? {
                if c.state != ContainerState::Running {
                    continue;
                }
                let cgroup = if wants_cgroup {
                    self.cgroup_metrics(&pod.id, &c.id).await
                } else {
                    None
                };
                let base = [
                    c.id.clone(),
                    c.image_name.clone(),
                    pod.namespace.clone(),
                    pod.name.clone(),
                    c.name.clone(),
                ];
                let groups = groups.clone();
                let containers_dir = self.config.containers_dir.clone();
                let metrics = tokio::task::spawn_blocking(move || {
                    let mut s = Samples {
                        groups: &groups,
                        base,
                        now,
                        out: Vec::new(),
                    };
                    s.push(
                        "container_last_seen",
                        &[],
                        u64::try_from(now).unwrap_or(0) / NS,
                    );
                    if let Some(m) = &cgroup {
                        cgroup_samples(&mut s, m);
                    }
                    host_samples(&mut s, &c, &containers_dir);
                    spec_samples(&mut s, &c);
                    (c.id, s.out)
                })
                .await
                .map_err(|e| CriError::internal_in("collecting metrics", e))?;
                container_metrics.push(cri::ContainerMetrics {
                    container_id: metrics.0,
                    metrics: metrics.1,
                });
            }
            out.push(cri::PodSandboxMetrics {
                pod_sandbox_id: pod.id.clone(),
                metrics: pod_samples.out,
                container_metrics,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(groups: &[MetricGroup]) -> Vec<String> {
        descriptors(groups).into_iter().map(|d| d.name).collect()
    }

    #[test]
    fn groups_follow_the_config_and_the_host() {
        let both = MetricHost {
            psi: true,
            hugetlb: true,
            block_io: true,
        };
        let (all, omitted) = resolve_groups(&["all".into()], both);
        assert_eq!(names(&all).len(), 56);
        assert!(omitted.notes.is_empty());
        // "all" on a v1 host without hugetlb nor block I/O counters: what there is.
        let (v1, omitted) = resolve_groups(&["all".into()], MetricHost::default());
        assert_eq!(names(&v1).len(), 56 - 6 - 2 - 5);
        assert_eq!(omitted.notes.len(), 3);
        assert!(!omitted.named);
        // Named: served or warned about.
        let (some, omitted) =
            resolve_groups(&["cpu".into(), "pressure".into()], MetricHost::default());
        assert_eq!(some, [Group::Always, Group::Cpu]);
        assert!(omitted.named);
        assert_eq!(omitted.notes.len(), 1);
        assert!(omitted.notes[0].contains("pressure"), "{omitted:?}");
        // CRI-O's default: only container_last_seen.
        let (none, _) = resolve_groups(&[], both);
        assert_eq!(names(&none), ["container_last_seen"]);
    }

    #[test]
    fn every_descriptor_starts_with_the_base_labels() {
        for d in descriptors(&resolve_groups(&["all".into()], MetricHost::read()).0) {
            assert_eq!(
                d.label_keys[..5],
                BASE_LABELS.map(String::from),
                "{}",
                d.name
            );
        }
    }

    #[test]
    fn samples_have_as_many_values_as_their_descriptor_has_keys() {
        let groups = resolve_groups(
            &["all".into()],
            MetricHost {
                psi: true,
                hugetlb: true,
                block_io: true,
            },
        )
        .0;
        let mut s = Samples {
            groups: &groups,
            base: Default::default(),
            now: 5 * NS as i64,
            out: Vec::new(),
        };
        let m = CgroupMetrics {
            io: vec![super::super::cgroup_metrics::IoDevice {
                major: 8,
                ..Default::default()
            }],
            hugetlb: vec![super::super::cgroup_metrics::HugeTlb {
                pagesize: "2MB".into(),
                ..Default::default()
            }],
            pressure: Some(Default::default()),
            ..Default::default()
        };
        cgroup_samples(&mut s, &m);
        let c = ContainerRecord {
            resources: crate::spec::Resources {
                cpu_quota: 20_000,
                memory_limit: -1,
                ..Default::default()
            },
            ..Default::default()
        };
        spec_samples(&mut s, &c);
        network_samples(
            &mut s,
            &[NetDev {
                name: "eth0".into(),
                ..Default::default()
            }],
        );
        let descriptors = descriptors(&groups);
        for metric in &s.out {
            let d = descriptors
                .iter()
                .find(|d| d.name == metric.name)
                .expect("described");
            assert_eq!(metric.label_values.len(), d.label_keys.len(), "{}", d.name);
        }
        let memory_limit = s
            .out
            .iter()
            .find(|m| m.name == "container_spec_memory_limit_bytes")
            .and_then(|m| m.value.as_ref());
        assert_eq!(memory_limit.map(|v| v.value), Some(0), "unlimited is 0");
    }
}
