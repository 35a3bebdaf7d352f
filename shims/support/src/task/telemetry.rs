//! What a container's cgroup tells: OOM kills (as `TaskOOM` events) and the
//! `Stats` metrics, cgroup v1 or v2.

use containerd_shim_protos::protobuf::well_known_types::any::Any;

use super::service::Service;
use crate::events::{self, topics};
use crate::Error;

impl Service {
    /// Publishes a `TaskOOM` event for every OOM kill in the cgroup of `pid`.
    pub(super) fn watch_oom(&self, id: &str, pid: u32) {
        let mut rx = match crate::oom::watch(pid) {
            Ok(rx) => rx,
            Err(e) => {
                tracing::warn!(container = %id, "cannot watch for OOM: {e}");
                return;
            }
        };
        let events = self.events().clone();
        let id = id.to_string();
        tokio::spawn(async move {
            while rx.recv().await.is_some() {
                tracing::info!(container = %id, "OOM");
                events
                    .publish(
                        topics::TASK_OOM_EVENT_TOPIC,
                        events::TaskOOM {
                            container_id: id.clone(),
                            ..Default::default()
                        },
                    )
                    .await;
            }
        });
    }

    /// The `Stats` of container `id`: its init's cgroup metrics, as containerd's
    /// Go shim fills them.
    pub(super) async fn stats(&self, id: &str) -> Result<Any, Error> {
        let pid = self.with_process(id, "", |_, p| Ok(p.pid)).await?;
        tokio::task::spawn_blocking(move || crate::cgroup_stats::metrics_of(pid))
            .await
            .map_err(|e| Error::Other(format!("stats task: {e}")))?
    }
}
