//! Container and pod stats from the shims' `Stats` (cgroup v1 or v2 metrics, as
//! containerd's CRI maps them), the writable layer's usage, and the pod's network
//! counters from its namespace.

use std::collections::HashMap;
use std::sync::Mutex;

use protocols::cri;
use protocols::shim::api;

use super::cgroup_metrics::{parse_metrics, CgroupMetrics};

use crate::error::CriError;
use crate::pods::PodRuntime;
use crate::store::now_nanos;
use crate::store::{ContainerRecord, SandboxRecord};
use crate::store::{ContainerState, SandboxState};

/// The kernel reports "no limit" as about 2^63 rounded to a page.
const UNLIMITED: u64 = 1 << 62;

/// One task's metrics, whichever cgroup version they came from.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct TaskMetrics {
    pub cpu_ns: u64,
    pub memory_usage: u64,
    pub memory_limit: u64,
    pub inactive_file: u64,
    pub rss: u64,
    pub page_faults: u64,
    pub major_page_faults: u64,
    pub pids: u64,
}

impl TaskMetrics {
    /// containerd's working set: usage less inactive file pages, never negative.
    pub(crate) fn working_set(&self) -> u64 {
        self.memory_usage.saturating_sub(self.inactive_file)
    }

    fn available(&self) -> u64 {
        if self.memory_limit == 0 || self.memory_limit > UNLIMITED {
            0
        } else {
            self.memory_limit.saturating_sub(self.working_set())
        }
    }

    fn add(&mut self, o: &TaskMetrics) {
        self.cpu_ns += o.cpu_ns;
        self.memory_usage += o.memory_usage;
        self.inactive_file += o.inactive_file;
        self.rss += o.rss;
        self.page_faults += o.page_faults;
        self.major_page_faults += o.major_page_faults;
        self.pids += o.pids;
    }
}

impl From<&CgroupMetrics> for TaskMetrics {
    fn from(m: &CgroupMetrics) -> Self {
        TaskMetrics {
            cpu_ns: m.cpu.total_ns,
            memory_usage: m.memory.usage,
            memory_limit: m.memory.limit,
            inactive_file: m.memory.inactive_file,
            rss: m.memory.rss,
            page_faults: m.memory.page_faults,
            major_page_faults: m.memory.major_page_faults,
            pids: m.pids,
        }
    }
}

/// Previous CPU samples, for `usage_nano_cores` (the rate since the last query).
#[derive(Debug, Default)]
pub(crate) struct CpuSamples(Mutex<HashMap<String, (i64, u64)>>);

impl CpuSamples {
    /// `None` on the first sample or after a counter reset.
    fn rate(&self, id: &str, now: i64, cpu_ns: u64) -> Option<u64> {
        let mut map = self.0.lock().ok()?;
        let prev = map.insert(id.to_string(), (now, cpu_ns));
        let (then, old) = prev?;
        let dt = now - then;
        if dt <= 0 || cpu_ns < old {
            return None;
        }
        Some(((cpu_ns - old) as u128 * 1_000_000_000 / dt as u128) as u64)
    }

    pub(crate) fn forget(&self, id: &str) {
        if let Ok(mut map) = self.0.lock() {
            map.remove(id);
        }
    }
}

fn value(v: u64) -> Option<cri::UInt64Value> {
    Some(cri::UInt64Value { value: v })
}

fn cpu(m: &TaskMetrics, now: i64, rate: Option<u64>) -> cri::CpuUsage {
    cri::CpuUsage {
        timestamp: now,
        usage_core_nano_seconds: value(m.cpu_ns),
        usage_nano_cores: rate.map(|v| cri::UInt64Value { value: v }),
        ..Default::default()
    }
}

fn memory(m: &TaskMetrics, now: i64) -> cri::MemoryUsage {
    cri::MemoryUsage {
        timestamp: now,
        working_set_bytes: value(m.working_set()),
        available_bytes: value(m.available()),
        usage_bytes: value(m.memory_usage),
        rss_bytes: value(m.rss),
        page_faults: value(m.page_faults),
        major_page_faults: value(m.major_page_faults),
        ..Default::default()
    }
}

/// `/proc/<pid>/net/dev` -> interface counters, `lo` left out.
/// One interface's counters from `/proc/<pid>/net/dev`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct NetDev {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// The interfaces of a `/proc/<pid>/net/dev`, loopback left out (as cAdvisor does).
pub(crate) fn net_dev(text: &str) -> Vec<NetDev> {
    text.lines()
        .skip(2)
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let name = name.trim();
            let f: Vec<u64> = rest
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
            (name != "lo" && f.len() >= 16).then(|| NetDev {
                name: name.to_string(),
                rx_bytes: f[0],
                rx_packets: f[1],
                rx_errors: f[2],
                rx_dropped: f[3],
                tx_bytes: f[8],
                tx_packets: f[9],
                tx_errors: f[10],
                tx_dropped: f[11],
            })
        })
        .collect()
}

/// `net/dev` as the pod's pinned network namespace shows it (whether or not a
/// pause process lives in it; none for a host-network pod, which pins none).
/// Blocking: a short-lived thread joins the namespace.
pub(crate) fn pinned_net_dev(pod: &SandboxRecord) -> Option<String> {
    if pod.netns_path.is_empty() {
        return None;
    }
    crate::network::pinned_ns::read_proc_in(
        crate::network::pinned_ns::PodNamespace::Net,
        std::path::Path::new(&pod.netns_path),
        "net/dev",
    )
    .ok()
}

fn interface_usage(n: &NetDev) -> cri::NetworkInterfaceUsage {
    cri::NetworkInterfaceUsage {
        name: n.name.clone(),
        rx_bytes: value(n.rx_bytes),
        rx_errors: value(n.rx_errors),
        tx_bytes: value(n.tx_bytes),
        tx_errors: value(n.tx_errors),
    }
}

impl PodRuntime {
    /// The shim's metrics for one task; `None` when it has none (not running).
    /// The cgroup metrics of a task, from its shim.
    pub(super) async fn cgroup_metrics(
        &self,
        pod_id: &str,
        task_id: &str,
    ) -> Option<CgroupMetrics> {
        let shim = self.shims.get(pod_id)?;
        let resp = shim
            .client
            .stats(&api::StatsRequest {
                id: task_id.to_string(),
                ..Default::default()
            })
            .await
            .ok()?;
        match resp.stats.as_ref().map(parse_metrics) {
            Some(Ok(m)) => Some(m),
            Some(Err(e)) => {
                tracing::debug!(task = task_id, "stats: {e}");
                None
            }
            None => None,
        }
    }

    fn container_attributes(&self, c: &ContainerRecord) -> cri::ContainerAttributes {
        cri::ContainerAttributes {
            id: c.id.clone(),
            metadata: Some(cri::ContainerMetadata {
                name: c.name.clone(),
                attempt: c.attempt,
            }),
            labels: c.labels.clone().into_iter().collect(),
            annotations: c.annotations.clone().into_iter().collect(),
        }
    }

    fn writable_layer(&self, c: &ContainerRecord, now: i64) -> cri::FilesystemUsage {
        let upper = self.config.containers_dir.join(&c.id);
        let (bytes, inodes) = crate::storage::usage::disk_usage(&upper);
        cri::FilesystemUsage {
            timestamp: now,
            fs_id: Some(cri::FilesystemIdentifier {
                mountpoint: self.config.containers_dir.display().to_string(),
            }),
            used_bytes: value(bytes),
            inodes_used: value(inodes),
        }
    }

    /// One container's stats; `with_rate` computes `usage_nano_cores` (List calls do,
    /// as containerd's).
    async fn stats_of(
        &self,
        c: &ContainerRecord,
        with_rate: bool,
    ) -> (cri::ContainerStats, Option<TaskMetrics>) {
        let now = now_nanos();
        let metrics = if c.state == ContainerState::Running {
            self.cgroup_metrics(&c.sandbox_id, &c.id)
                .await
                .map(|m| TaskMetrics::from(&m))
        } else {
            None
        };
        let rate = metrics
            .filter(|_| with_rate)
            .and_then(|m| self.cpu_samples.rate(&c.id, now, m.cpu_ns));
        let stats = cri::ContainerStats {
            attributes: Some(self.container_attributes(c)),
            cpu: metrics.map(|m| cpu(&m, now, rate)),
            memory: metrics.map(|m| memory(&m, now)),
            writable_layer: Some(self.writable_layer(c, now)),
            ..Default::default()
        };
        (stats, metrics)
    }

    /// ContainerStats.
    pub(crate) async fn container_stats(&self, id: &str) -> Result<cri::ContainerStats, CriError> {
        let c = self.container(id)?;
        Ok(self.stats_of(&c, true).await.0)
    }

    /// ListContainerStats: running containers that match the filter.
    pub(crate) async fn list_container_stats(
        &self,
        filter: Option<&cri::ContainerStatsFilter>,
    ) -> Result<Vec<cri::ContainerStats>, CriError> {
        let mut out = Vec::new();
        for c in self.store.list::<ContainerRecord>()? {
            if c.state != ContainerState::Running {
                continue;
            }
            if let Some(f) = filter {
                if !f.id.is_empty() && !c.id.starts_with(&f.id) {
                    continue;
                }
                if !f.pod_sandbox_id.is_empty() && !c.sandbox_id.starts_with(&f.pod_sandbox_id) {
                    continue;
                }
                if !f
                    .label_selector
                    .iter()
                    .all(|(k, v)| c.labels.get(k) == Some(v))
                {
                    continue;
                }
            }
            out.push(self.stats_of(&c, true).await.0);
        }
        Ok(out)
    }

    /// PodSandboxStats: the pod's containers and pause summed (CPU, memory,
    /// processes), its network counters, and each container's stats.
    pub(crate) async fn pod_sandbox_stats(
        &self,
        id: &str,
    ) -> Result<cri::PodSandboxStats, CriError> {
        let pod = self
            .sandbox(id)?
            .ok_or_else(|| CriError::NotFound(format!("pod sandbox {id} not found")))?;
        self.pod_stats(&pod).await
    }

    async fn pod_stats(&self, pod: &SandboxRecord) -> Result<cri::PodSandboxStats, CriError> {
        let now = now_nanos();
        let mut total = self
            .cgroup_metrics(&pod.id, &pod.id)
            .await
            .map(|m| TaskMetrics::from(&m))
            .unwrap_or_default();
        let mut containers = Vec::new();
        for c in self.containers_of(&pod.id)? {
            if c.state != ContainerState::Running {
                continue;
            }
            let (stats, metrics) = self.stats_of(&c, true).await;
            if let Some(m) = metrics {
                total.add(&m);
            }
            containers.push(stats);
        }
        let rate = self.cpu_samples.rate(&pod.id, now, total.cpu_ns);
        // None on the host network: no pinned network namespace.
        let netns_pod = pod.clone();
        let text = crate::blocking::run(move || pinned_net_dev(&netns_pod)).await;
        let network = text.flatten().map(|text| {
            let interfaces: Vec<_> = net_dev(&text).iter().map(interface_usage).collect();
            let default = interfaces
                .iter()
                .find(|i| i.name == crate::network::POD_IFNAME)
                .or(interfaces.first())
                .cloned();
            cri::NetworkUsage {
                timestamp: now,
                default_interface: default,
                interfaces,
            }
        });
        Ok(cri::PodSandboxStats {
            attributes: Some(cri::PodSandboxAttributes {
                id: pod.id.clone(),
                metadata: Some(cri::PodSandboxMetadata {
                    name: pod.name.clone(),
                    uid: pod.uid.clone(),
                    namespace: pod.namespace.clone(),
                    attempt: pod.attempt,
                }),
                labels: pod.labels.clone().into_iter().collect(),
                annotations: pod.annotations.clone().into_iter().collect(),
            }),
            linux: Some(cri::LinuxPodSandboxStats {
                cpu: Some(cpu(&total, now, rate)),
                memory: Some(memory(&total, now)),
                network,
                process: Some(cri::ProcessUsage {
                    timestamp: now,
                    process_count: value(total.pids),
                }),
                containers,
                ..Default::default()
            }),
            windows: None,
        })
    }

    /// ListPodSandboxStats: ready pods that match the filter.
    pub(crate) async fn list_pod_sandbox_stats(
        &self,
        filter: Option<&cri::PodSandboxStatsFilter>,
    ) -> Result<Vec<cri::PodSandboxStats>, CriError> {
        let mut out = Vec::new();
        for pod in self.store.list::<SandboxRecord>()? {
            if pod.state != SandboxState::Ready {
                continue;
            }
            if let Some(f) = filter {
                if !f.id.is_empty() && !pod.id.starts_with(&f.id) {
                    continue;
                }
                if !f
                    .label_selector
                    .iter()
                    .all(|(k, v)| pod.labels.get(k) == Some(v))
                {
                    continue;
                }
            }
            out.push(self.pod_stats(&pod).await?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn available_memory_is_the_limit_less_the_working_set() {
        let t = TaskMetrics {
            memory_usage: 100 << 20,
            memory_limit: 256 << 20,
            inactive_file: 30 << 20,
            ..Default::default()
        };
        assert_eq!(t.working_set(), 70 << 20);
        assert_eq!(t.available(), 186 << 20);
        let unlimited = TaskMetrics {
            memory_limit: u64::MAX - 4095,
            ..t
        };
        assert_eq!(unlimited.available(), 0);
    }

    #[test]
    fn nano_cores_are_the_rate_since_the_last_sample() {
        let s = CpuSamples::default();
        assert_eq!(s.rate("a", 1_000_000_000, 0), None);
        assert_eq!(s.rate("a", 2_000_000_000, 500_000_000), Some(500_000_000));
        assert_eq!(s.rate("a", 3_000_000_000, 100), None, "counter reset");
    }

    #[test]
    fn net_dev_skips_lo() {
        let text = "Inter-|   Receive |  Transmit\n face |bytes packets errs drop fifo frame compressed multicast|bytes packets errs drop fifo colls carrier compressed\n    lo: 10 1 0 0 0 0 0 0 10 1 0 0 0 0 0 0\n  eth0: 1500 12 1 0 0 0 0 0 900 8 2 0 0 0 0 0\n";
        let n = net_dev(text);
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].name, "eth0");
        assert_eq!((n[0].rx_bytes, n[0].rx_packets), (1500, 12));
        assert_eq!((n[0].tx_errors, n[0].tx_packets), (2, 8));
    }
}
