//! The names `metrics_collectors` takes (CRI-O's, with or without their
//! `crio_` / `container_runtime_crio_` prefix), CRI-O's size labels, and the
//! families computed at each scrape: defunct processes, and our shims' count and
//! memory.

use std::sync::{Arc, OnceLock};

use prometheus::core::{Collector as PromCollector, Desc};
use prometheus::proto::{Gauge, LabelPair, Metric, MetricFamily, MetricType};

/// CRI-O's collectors (1.34's list), in CRI-O's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Collector {
    ImagePullsLayerSize,
    ContainersEventsDroppedTotal,
    ContainersOomTotal,
    ProcessesDefunct,
    OperationsTotal,
    OperationsLatencySeconds,
    OperationsLatencySecondsTotal,
    OperationsErrorsTotal,
    ImagePullsBytesTotal,
    ImagePullsSkippedBytesTotal,
    ImagePullsFailureTotal,
    ImagePullsSuccessTotal,
    ImageLayerReuseTotal,
    ContainersOomCountTotal,
    ContainersSeccompNotifierCountTotal,
    ResourcesStalledAtStage,
    ContainersStoppedMonitorCount,
    DefaultRuntime,
}

/// Every collector by name, in CRI-O's order.
pub(crate) const COLLECTORS: &[(&str, Collector)] = &[
    ("image_pulls_layer_size", Collector::ImagePullsLayerSize),
    (
        "containers_events_dropped_total",
        Collector::ContainersEventsDroppedTotal,
    ),
    ("containers_oom_total", Collector::ContainersOomTotal),
    ("processes_defunct", Collector::ProcessesDefunct),
    ("operations_total", Collector::OperationsTotal),
    (
        "operations_latency_seconds",
        Collector::OperationsLatencySeconds,
    ),
    (
        "operations_latency_seconds_total",
        Collector::OperationsLatencySecondsTotal,
    ),
    ("operations_errors_total", Collector::OperationsErrorsTotal),
    ("image_pulls_bytes_total", Collector::ImagePullsBytesTotal),
    (
        "image_pulls_skipped_bytes_total",
        Collector::ImagePullsSkippedBytesTotal,
    ),
    (
        "image_pulls_failure_total",
        Collector::ImagePullsFailureTotal,
    ),
    (
        "image_pulls_success_total",
        Collector::ImagePullsSuccessTotal,
    ),
    ("image_layer_reuse_total", Collector::ImageLayerReuseTotal),
    (
        "containers_oom_count_total",
        Collector::ContainersOomCountTotal,
    ),
    (
        "containers_seccomp_notifier_count_total",
        Collector::ContainersSeccompNotifierCountTotal,
    ),
    (
        "resources_stalled_at_stage",
        Collector::ResourcesStalledAtStage,
    ),
    (
        "containers_stopped_monitor_count",
        Collector::ContainersStoppedMonitorCount,
    ),
    ("default_runtime", Collector::DefaultRuntime),
];

impl Collector {
    /// A `metrics_collectors` entry, as CRI-O strips it.
    pub(crate) fn parse(name: &str) -> Option<Self> {
        let stripped = name.strip_prefix("container_runtime_").unwrap_or(name);
        let stripped = stripped.strip_prefix("crio_").unwrap_or(stripped);
        COLLECTORS
            .iter()
            .find(|(n, _)| *n == stripped)
            .map(|(_, c)| *c)
    }

    /// Why crio-rs serves no such family, for the ones it does not.
    pub(crate) fn not_served(self) -> Option<&'static str> {
        match self {
            Collector::ImagePullsSkippedBytesTotal => {
                Some("no pull skips bytes (CRI-O never counts it either)")
            }
            Collector::ContainersSeccompNotifierCountTotal => {
                Some("crio-rs has no seccomp notifier (io.kubernetes.cri-o.seccompNotifierAction)")
            }
            Collector::ResourcesStalledAtStage => Some(
                "crio-rs refuses a second create of a name in progress at once instead of waiting",
            ),
            _ => None,
        }
    }
}

/// CRI-O's size label of a blob (decimal units despite the names).
pub(crate) fn size_bucket(size: u64) -> &'static str {
    const BUCKETS: &[(u64, &str)] = &[
        (10_000_000_000, ">10 GiB"),
        (1_000_000_000, ">1 GiB"),
        (500_000_000, ">500 MiB"),
        (400_000_000, ">400 MiB"),
        (300_000_000, ">300 MiB"),
        (200_000_000, ">200 MiB"),
        (100_000_000, ">100 MiB"),
        (50_000_000, ">50 MiB"),
        (10_000_000, ">10 MiB"),
        (1_000_000, ">1 MiB"),
        (1_000, ">1 KiB"),
    ];
    BUCKETS
        .iter()
        .find(|(t, _)| size > *t)
        .map_or(">0 B", |(_, label)| label)
}

/// Zombie processes on the node (CRI-O counts every `Z` in /proc).
fn defunct() -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                == Some("Z")
        })
        .count() as f64
}

pub(crate) fn defunct_gauge() -> prometheus::PullingGauge {
    prometheus::PullingGauge::new(
        "container_runtime_crio_processes_defunct",
        "Total number of defunct processes in the node",
        Box::new(defunct),
    )
    .unwrap_or_else(|e| unreachable!("defunct gauge: {e}"))
}

/// Where the shims are: `(handler, shim pid)` of every pod's shim.
pub(crate) type ShimList = Box<dyn Fn() -> Vec<(String, u32)> + Send + Sync>;

/// `crio_rs_shims` and `crio_rs_shim_memory_bytes` (PSS, the per-pod cost) by
/// handler, read at each scrape.
#[derive(Clone)]
pub(crate) struct ShimGauges {
    pub source: Arc<OnceLock<ShimList>>,
    count: Desc,
    memory: Desc,
}

impl std::fmt::Debug for ShimGauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ShimGauges")
    }
}

impl ShimGauges {
    pub(crate) fn new(source: Arc<OnceLock<ShimList>>) -> Self {
        let desc = |name: &str, help: &str| {
            Desc::new(
                name.into(),
                help.into(),
                vec!["handler".into()],
                Default::default(),
            )
            .unwrap_or_else(|e| unreachable!("{name}: {e}"))
        };
        Self {
            source,
            count: desc(
                "crio_rs_shims",
                "Shim v2 processes serving pods, by handler.",
            ),
            memory: desc(
                "crio_rs_shim_memory_bytes",
                "Proportional set size (PSS) of the pods' shim v2 processes, by handler.",
            ),
        }
    }
}

/// A process's PSS in bytes (`smaps_rollup`).
fn pss(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let kib: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024.0)
}

fn gauge_family(desc: &Desc, values: &std::collections::BTreeMap<String, f64>) -> MetricFamily {
    let mut family = MetricFamily::default();
    family.set_name(desc.fq_name.clone());
    family.set_help(desc.help.clone());
    family.set_field_type(MetricType::GAUGE);
    let metrics: Vec<Metric> = values
        .iter()
        .map(|(handler, v)| {
            let mut label = LabelPair::default();
            label.set_name("handler".into());
            label.set_value(handler.clone());
            let mut gauge = Gauge::default();
            gauge.set_value(*v);
            let mut m = Metric::default();
            m.set_label(vec![label]);
            m.set_gauge(gauge);
            m
        })
        .collect();
    family.set_metric(metrics);
    family
}

impl PromCollector for ShimGauges {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.count, &self.memory]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let Some(list) = self.source.get() else {
            return Vec::new();
        };
        let mut count = std::collections::BTreeMap::new();
        let mut memory = std::collections::BTreeMap::new();
        for (handler, pid) in list() {
            *count.entry(handler.clone()).or_insert(0.0) += 1.0;
            *memory.entry(handler).or_insert(0.0) += pss(pid).unwrap_or(0.0);
        }
        if count.is_empty() {
            return Vec::new();
        }
        vec![
            gauge_family(&self.count, &count),
            gauge_family(&self.memory, &memory),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_or_without_prefixes() {
        for name in [
            "operations_total",
            "crio_operations_total",
            "container_runtime_crio_operations_total",
        ] {
            assert_eq!(
                Collector::parse(name),
                Some(Collector::OperationsTotal),
                "{name}"
            );
        }
        assert_eq!(Collector::parse("operations"), None);
        assert_eq!(COLLECTORS.len(), 18);
    }

    #[test]
    fn size_labels_are_cri_o_s() {
        assert_eq!(size_bucket(0), ">0 B");
        assert_eq!(size_bucket(1_000), ">0 B");
        assert_eq!(size_bucket(1_001), ">1 KiB");
        assert_eq!(size_bucket(25_000_000), ">10 MiB");
        assert_eq!(size_bucket(20_000_000_000), ">10 GiB");
    }
}
