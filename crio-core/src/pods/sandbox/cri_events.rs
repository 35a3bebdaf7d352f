//! `GetContainerEvents` (the kubelet's evented PLEG): created, started, stopped and
//! deleted events for containers and pods (a pod's events carry its own id), each
//! with the pod's status and its containers' statuses. Sent to every subscriber
//! through a bounded broadcast: a subscriber that falls 1000 events behind loses
//! the oldest, as under CRI-O, rather than stalling the runtime.

use protocols::cri::{self, ContainerEventType};
use tokio::sync::broadcast;

use super::PodRuntime;

/// Events buffered per subscriber.
pub const EVENT_BUFFER: usize = 1000;

pub(crate) fn channel() -> broadcast::Sender<cri::ContainerEventResponse> {
    broadcast::channel(EVENT_BUFFER).0
}

impl PodRuntime {
    pub(crate) fn subscribe_events(&self) -> broadcast::Receiver<cri::ContainerEventResponse> {
        self.cri_events.subscribe()
    }

    /// Publishes an event about `id` (a container, or the pod itself) of pod
    /// `sandbox_id`. Skipped when nobody listens or the pod is gone (the kubelet
    /// drops events without a pod status).
    pub(crate) fn emit(&self, id: &str, sandbox_id: &str, kind: ContainerEventType) {
        if self.cri_events.receiver_count() == 0 {
            return;
        }
        let Ok(Some(pod)) = self.store.get::<crate::store::SandboxRecord>(sandbox_id) else {
            return;
        };
        let statuses = self
            .containers_of(sandbox_id)
            .unwrap_or_default()
            .iter()
            .map(|c| self.container_status(c))
            .collect();
        let _ = self.cri_events.send(cri::ContainerEventResponse {
            container_id: id.to_string(),
            container_event_type: kind as i32,
            created_at: crate::store::now_nanos(),
            pod_sandbox_status: Some(self.sandbox_status(&pod)),
            containers_statuses: statuses,
        });
    }
}
