//! Publishing task events (`/tasks/exit`, …) to the manager's Events service
//! (`containerd.services.events.ttrpc.v1.Events/Forward` on `TTRPC_ADDRESS`).

use std::time::{Duration, SystemTime};

use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::shim::event::Envelope;
use containerd_shim_protos::shim::events::ForwardRequest;
use containerd_shim_protos::shim_async::{Client, EventsClient};
use containerd_shim_protos::ttrpc::context::with_timeout;
use tokio::sync::mpsc;

pub use containerd_shim_protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskOOM, TaskPaused,
    TaskResumed, TaskStart,
};
pub use containerd_shim_protos::topics;

/// How often one event is tried before it is dropped (the manager may be restarting).
const ATTEMPTS: u32 = 6;
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);
const QUEUE: usize = 1024;

/// The `Any` type name of each task topic's event, as containerd's typeurl writes
/// it. Known by topic rather than asked from protobuf reflection, whose descriptors
/// cost every pod's shim code and heap.
pub fn event_type(topic: &str) -> Option<&'static str> {
    Some(match topic {
        topics::TASK_CREATE_EVENT_TOPIC => "containerd.events.TaskCreate",
        topics::TASK_START_EVENT_TOPIC => "containerd.events.TaskStart",
        topics::TASK_EXIT_EVENT_TOPIC => "containerd.events.TaskExit",
        topics::TASK_DELETE_EVENT_TOPIC => "containerd.events.TaskDelete",
        topics::TASK_OOM_EVENT_TOPIC => "containerd.events.TaskOOM",
        topics::TASK_EXEC_ADDED_EVENT_TOPIC => "containerd.events.TaskExecAdded",
        topics::TASK_EXEC_STARTED_EVENT_TOPIC => "containerd.events.TaskExecStarted",
        topics::TASK_PAUSED_EVENT_TOPIC => "containerd.events.TaskPaused",
        topics::TASK_RESUMED_EVENT_TOPIC => "containerd.events.TaskResumed",
        topics::TASK_CHECKPOINTED_EVENT_TOPIC => "containerd.events.TaskCheckpointed",
        _ => return None,
    })
}

/// Publishes events for one namespace; without a manager address it only logs.
#[derive(Clone, Debug)]
pub struct EventSink {
    namespace: String,
    queue: Option<mpsc::Sender<Envelope>>,
}

impl EventSink {
    /// Starts forwarding to the manager's ttrpc address. Events are queued and
    /// retried (with reconnection) while the manager is away, then dropped.
    pub async fn connect(ttrpc_address: &str, namespace: &str) -> EventSink {
        if ttrpc_address.is_empty() {
            tracing::warn!("no TTRPC_ADDRESS: events will not be published");
            return EventSink::disconnected(namespace);
        }
        let address = if ttrpc_address.contains("://") {
            ttrpc_address.to_string()
        } else {
            format!("unix://{ttrpc_address}")
        };
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(forward_loop(address, rx));
        EventSink {
            namespace: namespace.to_string(),
            queue: Some(tx),
        }
    }

    /// A sink that publishes nothing.
    pub fn disconnected(namespace: &str) -> EventSink {
        EventSink {
            namespace: namespace.to_string(),
            queue: None,
        }
    }

    /// Queues `event` under `topic`. Encoded through its static type: through
    /// `dyn MessageDyn`, rust-protobuf builds the reflection descriptors of every
    /// proto file the message depends on (about 0.4 MB of heap in every shim).
    pub async fn publish<M: Message>(&self, topic: &str, event: M) {
        tracing::debug!(topic, "event");
        let Some(queue) = &self.queue else {
            return;
        };
        let Some(type_url) = event_type(topic) else {
            tracing::error!(topic, "no event type known for this topic: not published");
            return;
        };
        let value = match event.write_to_bytes() {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(topic, "encode event: {e}");
                return;
            }
        };
        let mut any = Any::new();
        any.type_url = type_url.to_string();
        any.value = value;
        let mut envelope = Envelope::new();
        envelope.timestamp = Some(timestamp(SystemTime::now())).into();
        envelope.namespace = self.namespace.clone();
        envelope.topic = topic.to_string();
        envelope.event = Some(any).into();
        if queue.send(envelope).await.is_err() {
            tracing::error!(topic, "event queue closed");
        }
    }
}

async fn forward_loop(address: String, mut rx: mpsc::Receiver<Envelope>) {
    let mut client: Option<EventsClient> = None;
    while let Some(envelope) = rx.recv().await {
        let mut req = ForwardRequest::new();
        req.envelope = Some(envelope).into();
        for attempt in 1..=ATTEMPTS {
            if client.is_none() {
                client = Client::connect(&address).await.ok().map(EventsClient::new);
            }
            if let Some(c) = &client {
                let timeout = i64::try_from(FORWARD_TIMEOUT.as_nanos()).unwrap_or(i64::MAX);
                match c.forward(with_timeout(timeout), &req).await {
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(attempt, "forward event: {e}");
                        client = None;
                    }
                }
            }
            if attempt == ATTEMPTS {
                tracing::error!(topic = %req.envelope.topic, "event dropped: manager unreachable");
            } else {
                tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
            }
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
    fn every_task_topic_has_its_event_type() {
        assert_eq!(
            event_type(topics::TASK_EXIT_EVENT_TOPIC),
            Some("containerd.events.TaskExit")
        );
        assert_eq!(
            event_type(topics::TASK_OOM_EVENT_TOPIC),
            Some("containerd.events.TaskOOM")
        );
        assert_eq!(event_type("/nope"), None);
    }

    #[test]
    fn timestamps() {
        let t = SystemTime::UNIX_EPOCH + Duration::new(5, 7);
        let ts = timestamp(t);
        assert_eq!((ts.seconds, ts.nanos), (5, 7));
    }
}
