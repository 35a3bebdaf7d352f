//! `ListMetricDescriptors` / `ListPodSandboxMetrics`: CRI-O's default set (no
//! `included_pod_metrics`), which is `container_last_seen` for each running
//! container, with CRI-O's label order. The kubelet's cAdvisor-less stats come from
//! `ListPodSandboxStats`; these metrics only say a container is alive.

use protocols::cri;

use crate::sandbox::{PodRuntime, STATE_READY};
use crate::server::CriError;
use crate::store::SandboxRecord;

pub const LAST_SEEN: &str = "container_last_seen";
const LABEL_KEYS: &[&str] = &["id", "image", "namespace", "pod", "container"];

pub fn descriptors() -> Vec<cri::MetricDescriptor> {
    vec![cri::MetricDescriptor {
        name: LAST_SEEN.into(),
        help: "Last time a container was seen by the exporter".into(),
        label_keys: LABEL_KEYS.iter().map(|s| s.to_string()).collect(),
    }]
}

impl PodRuntime {
    pub fn pod_sandbox_metrics(&self) -> Result<Vec<cri::PodSandboxMetrics>, CriError> {
        let now = crate::sandbox::now_nanos();
        let mut out = Vec::new();
        for pod in self.store.list::<SandboxRecord>()? {
            if pod.state != STATE_READY {
                continue;
            }
            let container_metrics = self
                .containers_of(&pod.id)?
                .into_iter()
                .filter(|c| c.state == super::STATE_RUNNING)
                .map(|c| cri::ContainerMetrics {
                    container_id: c.id.clone(),
                    metrics: vec![cri::Metric {
                        name: LAST_SEEN.into(),
                        timestamp: now,
                        metric_type: cri::MetricType::Gauge as i32,
                        label_values: vec![
                            c.id.clone(),
                            c.image_name.clone(),
                            pod.namespace.clone(),
                            pod.name.clone(),
                            c.name.clone(),
                        ],
                        value: Some(cri::UInt64Value {
                            value: u64::try_from(now / 1_000_000_000).unwrap_or_default(),
                        }),
                    }],
                })
                .collect();
            out.push(cri::PodSandboxMetrics {
                pod_sandbox_id: pod.id.clone(),
                metrics: Vec::new(),
                container_metrics,
            });
        }
        Ok(out)
    }
}
