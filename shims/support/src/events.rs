//! Publishing task events (`/tasks/exit`, …) to the manager's Events service
//! (`containerd.services.events.ttrpc.v1.Events/Forward` on `TTRPC_ADDRESS`).

use std::time::SystemTime;

use containerd_shim::publisher::RemotePublisher;
use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim_protos::protobuf::MessageDyn;
use containerd_shim_protos::ttrpc::context::Context;

pub use containerd_shim_protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskOOM, TaskPaused,
    TaskResumed, TaskStart,
};
pub use containerd_shim_protos::topics;

/// Publishes events for one namespace; without a publisher it only logs.
#[derive(Clone)]
pub struct EventSink {
    namespace: String,
    publisher: Option<std::sync::Arc<RemotePublisher>>,
}

impl std::fmt::Debug for EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSink")
            .field("namespace", &self.namespace)
            .field("connected", &self.publisher.is_some())
            .finish()
    }
}

impl EventSink {
    /// Connects to the manager's ttrpc address; an empty address or a failed
    /// connection leaves a sink that only logs (events are then lost, as the
    /// manager is not listening).
    pub async fn connect(ttrpc_address: &str, namespace: &str) -> EventSink {
        let publisher = if ttrpc_address.is_empty() {
            tracing::warn!("no TTRPC_ADDRESS: events will not be published");
            None
        } else {
            match RemotePublisher::new(ttrpc_address).await {
                Ok(p) => Some(std::sync::Arc::new(p)),
                Err(e) => {
                    tracing::error!("cannot connect to {ttrpc_address} to publish events: {e}");
                    None
                }
            }
        };
        EventSink {
            namespace: namespace.to_string(),
            publisher,
        }
    }

    /// A sink that publishes nothing.
    pub fn disconnected(namespace: &str) -> EventSink {
        EventSink {
            namespace: namespace.to_string(),
            publisher: None,
        }
    }

    /// Queues `event` under `topic` (the publisher retries on its own).
    pub async fn publish(&self, topic: &str, event: Box<dyn MessageDyn>) {
        tracing::debug!(topic, "event");
        let Some(publisher) = &self.publisher else {
            return;
        };
        if let Err(e) = publisher
            .publish(Context::default(), topic, &self.namespace, event)
            .await
        {
            tracing::error!(topic, "publish event: {e}");
        }
    }
}

/// A protobuf timestamp of `t`.
pub fn timestamp(t: SystemTime) -> Timestamp {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps() {
        let t = SystemTime::UNIX_EPOCH + Duration::new(5, 7);
        let ts = timestamp(t);
        assert_eq!((ts.seconds, ts.nanos), (5, 7));
    }
}
