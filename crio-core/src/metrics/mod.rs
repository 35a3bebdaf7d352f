//! The Prometheus endpoint (`[crio.metrics]`): CRI-O's metric families, by
//! CRI-O's names and labels (`container_runtime_crio_*`), and ours about shims
//! (`crio_rs_*`). Collectors not in `metrics_collectors` are not registered, and
//! with metrics disabled every update is a no-op.

mod collectors;
pub(crate) mod self_signed;
mod server;
mod summary;

use std::sync::Arc;
use std::time::Duration;

pub(crate) use collectors::{Collector, ShimList, COLLECTORS};
pub(crate) use server::serve;
pub use server::MetricsServerError;

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};

/// CRI-O's prefix: subsystem `container_runtime`, names `crio_<x>`.
const SUBSYSTEM: &str = "container_runtime";

/// CRI-O's byte buckets for layer sizes.
const LAYER_SIZE_BUCKETS: &[f64] = &[1e3, 1e6, 1e7, 5e7, 1e8, 2e8, 3e8, 4e8, 5e8, 1e9, 1e10];
/// Our shim start buckets, seconds.
const SHIM_START_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

fn crio_opts(name: &str, help: &str) -> Opts {
    Opts::new(format!("crio_{name}"), help).subsystem(SUBSYSTEM)
}

/// Every family, registered or not; updating an unregistered one costs little
/// and shows nowhere.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    enabled: bool,
    operations: IntCounterVec,
    operation_errors: IntCounterVec,
    operation_latency: prometheus::GaugeVec,
    operation_latency_summary: Arc<summary::SummaryVec>,
    pulls_bytes: prometheus::CounterVec,
    pulls_failure: IntCounterVec,
    pulls_success: IntCounter,
    pulls_layer_size: Histogram,
    layer_reuse: IntCounterVec,
    events_dropped: IntCounter,
    oom: IntCounter,
    oom_by_name: IntCounterVec,
    stopped_monitor: IntCounterVec,
    default_runtime: IntGaugeVec,
    shim_starts: prometheus::HistogramVec,
    shim_gauges: collectors::ShimGauges,
}

/// Unregistered families are only ever this process's.
fn must<T>(r: prometheus::Result<T>) -> T {
    match r {
        Ok(v) => v,
        // Names and label sets are constants: a failure is a bug here.
        Err(e) => unreachable!("metric definition: {e}"),
    }
}

impl Metrics {
    /// The families `collectors` name (CRI-O's names, with or without the
    /// `crio_` / `container_runtime_crio_` prefix) and ours; `enabled` false makes
    /// a registry nothing serves.
    pub(crate) fn new(enabled: bool, collectors: &[String], default_runtime: &str) -> Arc<Self> {
        let registry = Registry::new();
        let m = Self {
            enabled,
            operations: must(IntCounterVec::new(
                crio_opts("operations_total", "Cumulative number of CRI-O operations by operation type."),
                &["operation"],
            )),
            operation_errors: must(IntCounterVec::new(
                crio_opts(
                    "operations_errors_total",
                    "Cumulative number of CRI-O operation errors by operation type.",
                ),
                &["operation"],
            )),
            operation_latency: must(prometheus::GaugeVec::new(
                crio_opts(
                    "operations_latency_seconds",
                    "Latency in seconds of individual CRI calls for CRI-O operations. Broken down by operation type.",
                ),
                &["operation"],
            )),
            operation_latency_summary: Arc::new(summary::SummaryVec::new(
                "container_runtime_crio_operations_latency_seconds_total",
                "Latency in seconds of CRI-O operations. Broken down by operation type.",
                "operation",
            )),
            pulls_bytes: must(prometheus::CounterVec::new(
                crio_opts("image_pulls_bytes_total", "Bytes transferred by CRI-O image pulls"),
                &["mediatype", "size"],
            )),
            pulls_failure: must(IntCounterVec::new(
                crio_opts(
                    "image_pulls_failure_total",
                    "Cumulative number of CRI-O image pull failures by error.",
                ),
                &["error"],
            )),
            pulls_success: must(IntCounter::with_opts(crio_opts(
                "image_pulls_success_total",
                "Cumulative number of CRI-O image pull successes.",
            ))),
            pulls_layer_size: must(Histogram::with_opts(
                HistogramOpts::new(
                    "crio_image_pulls_layer_size",
                    "Bytes transferred by CRI-O image pulls per layer",
                )
                .subsystem(SUBSYSTEM)
                .buckets(LAYER_SIZE_BUCKETS.to_vec()),
            )),
            layer_reuse: must(IntCounterVec::new(
                crio_opts(
                    "image_layer_reuse_total",
                    "Reused (not pulled) local image layer count by name",
                ),
                &["name"],
            )),
            events_dropped: must(IntCounter::with_opts(crio_opts(
                "containers_events_dropped_total",
                "Amount of container events dropped",
            ))),
            oom: must(IntCounter::with_opts(crio_opts(
                "containers_oom_total",
                "Amount of containers killed because they ran out of memory (OOM)",
            ))),
            oom_by_name: must(IntCounterVec::new(
                crio_opts(
                    "containers_oom_count_total",
                    "Amount of containers killed because they ran out of memory (OOM) by their name",
                ),
                &["name"],
            )),
            stopped_monitor: must(IntCounterVec::new(
                crio_opts(
                    "containers_stopped_monitor_count",
                    "Amount of containers whose monitor process has exited by their name",
                ),
                &["name"],
            )),
            default_runtime: must(IntGaugeVec::new(
                crio_opts(
                    "default_runtime",
                    "Default container runtime configured. Value is always 1.",
                ),
                &["runtime"],
            )),
            shim_starts: must(prometheus::HistogramVec::new(
                HistogramOpts::new(
                    "crio_rs_shim_start_seconds",
                    "Seconds from launching a pod's shim v2 binary to its ttrpc address, by handler.",
                )
                .buckets(SHIM_START_BUCKETS.to_vec()),
                &["handler"],
            )),
            shim_gauges: collectors::ShimGauges::new(Default::default()),
            registry,
        };
        m.default_runtime
            .with_label_values(&[default_runtime])
            .set(1);
        if enabled {
            m.register(collectors);
        }
        Arc::new(m)
    }

    fn register(&self, names: &[String]) {
        let wanted = |c: Collector| names.iter().any(|n| Collector::parse(n) == Some(c));
        let families: Vec<(Collector, Box<dyn prometheus::core::Collector>)> = vec![
            (
                Collector::OperationsTotal,
                Box::new(self.operations.clone()),
            ),
            (
                Collector::OperationsErrorsTotal,
                Box::new(self.operation_errors.clone()),
            ),
            (
                Collector::OperationsLatencySeconds,
                Box::new(self.operation_latency.clone()),
            ),
            (
                Collector::OperationsLatencySecondsTotal,
                Box::new(summary::Registered(self.operation_latency_summary.clone())),
            ),
            (
                Collector::ImagePullsBytesTotal,
                Box::new(self.pulls_bytes.clone()),
            ),
            (
                Collector::ImagePullsFailureTotal,
                Box::new(self.pulls_failure.clone()),
            ),
            (
                Collector::ImagePullsSuccessTotal,
                Box::new(self.pulls_success.clone()),
            ),
            (
                Collector::ImagePullsLayerSize,
                Box::new(self.pulls_layer_size.clone()),
            ),
            (
                Collector::ImageLayerReuseTotal,
                Box::new(self.layer_reuse.clone()),
            ),
            (
                Collector::ContainersEventsDroppedTotal,
                Box::new(self.events_dropped.clone()),
            ),
            (Collector::ContainersOomTotal, Box::new(self.oom.clone())),
            (
                Collector::ContainersOomCountTotal,
                Box::new(self.oom_by_name.clone()),
            ),
            (
                Collector::ContainersStoppedMonitorCount,
                Box::new(self.stopped_monitor.clone()),
            ),
            (
                Collector::ProcessesDefunct,
                Box::new(collectors::defunct_gauge()),
            ),
            (
                Collector::DefaultRuntime,
                Box::new(self.default_runtime.clone()),
            ),
        ];
        for (collector, family) in families {
            if wanted(collector) {
                must(self.registry.register(family));
            }
        }
        for (name, collector) in COLLECTORS {
            if let (true, Some(why)) = (wanted(*collector), collector.not_served()) {
                tracing::warn!("metrics collector {name} is not served: {why}");
            }
        }
        // The process's own families, as Go's default registry gives CRI-O's.
        must(self.registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        )));
        // Ours, always with the endpoint.
        must(self.registry.register(Box::new(self.shim_starts.clone())));
        must(self.registry.register(Box::new(self.shim_gauges.clone())));
    }

    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    /// One unary CRI call, as CRI-O's interceptor counts it.
    pub(crate) fn operation(&self, operation: &str, elapsed: Duration, failed: bool) {
        if !self.enabled {
            return;
        }
        let seconds = elapsed.as_secs_f64();
        self.operations.with_label_values(&[operation]).inc();
        self.operation_latency
            .with_label_values(&[operation])
            .set(seconds);
        self.operation_latency_summary.observe(operation, seconds);
        if failed {
            self.operation_errors.with_label_values(&[operation]).inc();
        }
    }

    /// CNI's part of a pod's start (CRI-O's `network_setup_pod` latency).
    pub(crate) fn network_setup(&self, elapsed: Duration) {
        if self.enabled {
            self.operation_latency
                .with_label_values(&["network_setup_pod"])
                .set(elapsed.as_secs_f64());
        }
    }

    pub(crate) fn pull_succeeded(&self) {
        self.pulls_success.inc();
    }

    /// A failed pull attempt (one per candidate name, as CRI-O), by CRI-O's labels.
    pub(crate) fn pull_failed(&self, label: &str) {
        self.pulls_failure.with_label_values(&[label]).inc();
    }

    /// A layer blob pulled: its bytes by media type and CRI-O's size bucket.
    pub(crate) fn layer_pulled(&self, media_type: &str, size: u64) {
        let bucket = collectors::size_bucket(size);
        self.pulls_bytes
            .with_label_values(&[media_type, bucket])
            .inc_by(size as f64);
        self.pulls_layer_size.observe(size as f64);
    }

    /// A layer already stored: `name` is `<image>@<blob digest>`.
    pub(crate) fn layer_reused(&self, name: &str) {
        self.layer_reuse.with_label_values(&[name]).inc();
    }

    pub(crate) fn events_dropped(&self, count: u64) {
        self.events_dropped.inc_by(count);
    }

    /// A container the kernel killed for memory (`name`: CRI-O's full name).
    pub(crate) fn oom_killed(&self, name: &str) {
        self.oom.inc();
        self.oom_by_name.with_label_values(&[name]).inc();
    }

    /// A removed container leaves the per-name OOM count (the total stays).
    pub(crate) fn container_removed(&self, name: &str) {
        let _ = self.oom_by_name.remove_label_values(&[name]);
    }

    /// A running container whose shim (its monitor) died.
    pub(crate) fn monitor_stopped(&self, name: &str) {
        self.stopped_monitor.with_label_values(&[name]).inc();
    }

    /// A pod's shim started (launched and reached) in `elapsed`.
    pub(crate) fn shim_started(&self, handler: &str, elapsed: Duration) {
        self.shim_starts
            .with_label_values(&[handler])
            .observe(elapsed.as_secs_f64());
    }

    /// Where scrapes find the pods' shims (set once the pods exist).
    pub(crate) fn set_shim_list(&self, list: ShimList) {
        let _ = self.shim_gauges.source.set(list);
    }

    /// The text exposition of every registered family.
    pub(crate) fn render(&self) -> Vec<u8> {
        use prometheus::Encoder;
        let mut out = Vec::new();
        let families = self.registry.gather();
        // Encoding into a Vec fails only on a malformed family, which gather never yields.
        let _ = prometheus::TextEncoder::new().encode(&families, &mut out);
        out
    }
}

#[cfg(test)]
mod tests;
