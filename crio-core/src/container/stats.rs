//! Container and pod stats from the shims' `Stats` (cgroup v1 or v2 metrics, as
//! containerd's CRI maps them), the writable layer's usage, and the pod's network
//! counters from its namespace.

use std::collections::HashMap;
use std::sync::Mutex;

use protocols::cri;
use protocols::shim::protobuf::well_known_types::any::Any;
use protocols::shim::protobuf::Message;
use protocols::shim::{api, cgroups, cgroups_v2};

use crate::sandbox::{now_nanos, PodRuntime, STATE_READY};
use crate::server::CriError;
use crate::store::{ContainerRecord, SandboxRecord};

/// The kernel reports "no limit" as about 2^63 rounded to a page.
const UNLIMITED: u64 = 1 << 62;

/// One task's metrics, whichever cgroup version they came from.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TaskMetrics {
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
    pub fn working_set(&self) -> u64 {
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

/// Decodes a shim's `Stats` payload. The type URL has no `/` (containerd's typeurl
/// for unregistered types), so it is matched by hand.
pub fn parse_metrics(any: &Any) -> Result<TaskMetrics, String> {
    let name = any.type_url.rsplit('/').next().unwrap_or_default();
    match name {
        "io.containerd.cgroups.v1.Metrics" => {
            let m = cgroups::metrics::Metrics::parse_from_bytes(&any.value)
                .map_err(|e| format!("{name}: {e}"))?;
            let mem = m.memory();
            Ok(TaskMetrics {
                cpu_ns: m.cpu().usage().total(),
                memory_usage: mem.usage().usage(),
                memory_limit: mem.usage().limit(),
                inactive_file: mem.total_inactive_file(),
                rss: mem.total_rss(),
                page_faults: mem.total_pg_fault(),
                major_page_faults: mem.total_pg_maj_fault(),
                pids: m.pids().current(),
            })
        }
        "io.containerd.cgroups.v2.Metrics" => {
            let m = cgroups_v2::metrics::Metrics::parse_from_bytes(&any.value)
                .map_err(|e| format!("{name}: {e}"))?;
            let mem = m.memory();
            Ok(TaskMetrics {
                cpu_ns: m.cpu().usage_usec() * 1000,
                memory_usage: mem.usage(),
                memory_limit: mem.usage_limit(),
                inactive_file: mem.inactive_file(),
                rss: mem.anon(),
                page_faults: mem.pgfault(),
                major_page_faults: mem.pgmajfault(),
                pids: m.pids().current(),
            })
        }
        other => Err(format!("unknown metrics type {other:?}")),
    }
}

/// Previous CPU samples, for `usage_nano_cores` (the rate since the last query).
#[derive(Debug, Default)]
pub struct CpuSamples(Mutex<HashMap<String, (i64, u64)>>);

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

    pub fn forget(&self, id: &str) {
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
pub fn net_dev(text: &str) -> Vec<cri::NetworkInterfaceUsage> {
    text.lines()
        .skip(2)
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let name = name.trim();
            let f: Vec<u64> = rest
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
            (name != "lo" && f.len() >= 16).then(|| cri::NetworkInterfaceUsage {
                name: name.to_string(),
                rx_bytes: value(f[0]),
                rx_errors: value(f[2]),
                tx_bytes: value(f[8]),
                tx_errors: value(f[10]),
            })
        })
        .collect()
}

impl PodRuntime {
    /// The shim's metrics for one task; `None` when it has none (not running).
    async fn task_metrics(&self, pod_id: &str, task_id: &str) -> Option<TaskMetrics> {
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
        let metrics = if c.state == super::STATE_RUNNING {
            self.task_metrics(&c.sandbox_id, &c.id).await
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
    pub async fn container_stats(&self, id: &str) -> Result<cri::ContainerStats, CriError> {
        let c = self.container(id)?;
        Ok(self.stats_of(&c, true).await.0)
    }

    /// ListContainerStats: running containers that match the filter.
    pub async fn list_container_stats(
        &self,
        filter: Option<&cri::ContainerStatsFilter>,
    ) -> Result<Vec<cri::ContainerStats>, CriError> {
        let mut out = Vec::new();
        for c in self.store.list::<ContainerRecord>()? {
            if c.state != super::STATE_RUNNING {
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
    pub async fn pod_sandbox_stats(&self, id: &str) -> Result<cri::PodSandboxStats, CriError> {
        let pod = self
            .sandbox(id)?
            .ok_or_else(|| CriError::NotFound(format!("pod sandbox {id} not found")))?;
        self.pod_stats(&pod).await
    }

    async fn pod_stats(&self, pod: &SandboxRecord) -> Result<cri::PodSandboxStats, CriError> {
        let now = now_nanos();
        let mut total = self
            .task_metrics(&pod.id, &pod.id)
            .await
            .unwrap_or_default();
        let mut containers = Vec::new();
        for c in self.containers_of(&pod.id)? {
            if c.state != super::STATE_RUNNING {
                continue;
            }
            let (stats, metrics) = self.stats_of(&c, true).await;
            if let Some(m) = metrics {
                total.add(&m);
            }
            containers.push(stats);
        }
        let rate = self.cpu_samples.rate(&pod.id, now, total.cpu_ns);
        let network = (!pod.host_network && pod.pid != 0)
            .then(|| std::fs::read_to_string(format!("/proc/{}/net/dev", pod.pid)).ok())
            .flatten()
            .map(|text| {
                let interfaces = net_dev(&text);
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
    pub async fn list_pod_sandbox_stats(
        &self,
        filter: Option<&cri::PodSandboxStatsFilter>,
    ) -> Result<Vec<cri::PodSandboxStats>, CriError> {
        let mut out = Vec::new();
        for pod in self.store.list::<SandboxRecord>()? {
            if pod.state != STATE_READY {
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
    fn v1_metrics_map_like_containerd() {
        let mut m = cgroups::metrics::Metrics::new();
        m.cpu
            .mut_or_insert_default()
            .usage
            .mut_or_insert_default()
            .total = 5_000;
        let mem = m.memory.mut_or_insert_default();
        mem.usage.mut_or_insert_default().usage = 100 << 20;
        mem.usage.mut_or_insert_default().limit = 256 << 20;
        mem.total_inactive_file = 30 << 20;
        mem.total_rss = 60 << 20;
        m.pids.mut_or_insert_default().current = 3;
        let any = Any {
            type_url: "io.containerd.cgroups.v1.Metrics".into(),
            value: m.write_to_bytes().expect("encode"),
            ..Default::default()
        };
        let t = parse_metrics(&any).expect("metrics");
        assert_eq!(t.cpu_ns, 5_000);
        assert_eq!(t.working_set(), 70 << 20);
        assert_eq!(t.available(), 186 << 20);
        assert_eq!(t.pids, 3);
        let unlimited = TaskMetrics {
            memory_limit: u64::MAX - 4095,
            ..t
        };
        assert_eq!(unlimited.available(), 0);
        assert!(parse_metrics(&Any::default()).is_err());
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
        assert_eq!(n[0].rx_bytes, value(1500));
        assert_eq!(n[0].tx_errors, value(2));
    }
}
