//! The core's side of shim events: containerd's `Events` ttrpc service on the core's
//! own socket (shims call `Forward` on the address in `TTRPC_ADDRESS`), and the legacy
//! `publish` path (`<publish-binary> --address A publish --topic T --namespace N`
//! with the event on stdin).
//!
//! The socket listens before any shim starts: containerd's shims fail to start when
//! nothing answers there.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use protocols::shim::events::task::{TaskExit, TaskOOM};
use protocols::shim::protobuf::well_known_types::any::Any;
use protocols::shim::protobuf::well_known_types::empty::Empty;
use protocols::shim::protobuf::Message;
use protocols::shim::shim::event::Envelope;
use protocols::shim::shim::events::ForwardRequest;
use protocols::shim::shim_async::{create_events, Events, EventsClient};
use protocols::shim::ttrpc;
use tokio::sync::mpsc;

/// What the core acts on; other topics are only logged.
#[derive(Debug, Clone, PartialEq)]
pub enum RuntimeEvent {
    Exit {
        container_id: String,
        /// The exec id, or the container id for the container's init process.
        id: String,
        pid: u32,
        exit_status: u32,
        /// Unix nanoseconds.
        exited_at: i64,
    },
    Oom {
        container_id: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("events socket {path}: {message}")]
    Listen { path: PathBuf, message: String },
    #[error("publish: {0}")]
    Publish(String),
}

/// Decodes an envelope into what the core acts on (`None` for the rest).
pub fn decode(envelope: &Envelope) -> Option<RuntimeEvent> {
    let event = envelope.event.as_ref()?;
    let type_name = event.type_url.rsplit('/').next().unwrap_or_default();
    match (envelope.topic.as_str(), type_name) {
        ("/tasks/exit", _) | (_, "containerd.events.TaskExit") => {
            let exit = TaskExit::parse_from_bytes(&event.value).ok()?;
            let exited_at = exit
                .exited_at
                .as_ref()
                .map_or(0, |t| t.seconds * 1_000_000_000 + i64::from(t.nanos));
            Some(RuntimeEvent::Exit {
                container_id: exit.container_id,
                id: exit.id,
                pid: exit.pid,
                exit_status: exit.exit_status,
                exited_at,
            })
        }
        ("/tasks/oom", _) | (_, "containerd.events.TaskOOM") => {
            let oom = TaskOOM::parse_from_bytes(&event.value).ok()?;
            Some(RuntimeEvent::Oom {
                container_id: oom.container_id,
            })
        }
        _ => None,
    }
}

struct Sink {
    tx: mpsc::UnboundedSender<RuntimeEvent>,
}

#[async_trait::async_trait]
impl Events for Sink {
    async fn forward(
        &self,
        _ctx: &ttrpc::r#async::TtrpcContext,
        req: ForwardRequest,
    ) -> ttrpc::Result<Empty> {
        if let Some(envelope) = req.envelope.as_ref() {
            tracing::debug!(topic = %envelope.topic, namespace = %envelope.namespace, "shim event");
            if let Some(event) = decode(envelope) {
                // The receiver lives as long as the daemon; a send error means shutdown.
                let _ = self.tx.send(event);
            }
        }
        Ok(Empty::new())
    }
}

/// The running events server. Dropping it stops it.
pub struct EventServer {
    server: ttrpc::asynchronous::Server,
    path: PathBuf,
}

impl std::fmt::Debug for EventServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventServer")
            .field("path", &self.path)
            .finish()
    }
}

impl EventServer {
    /// Listens on `path` (a stale socket there is replaced) and sends decoded events
    /// to the returned receiver.
    pub async fn start(
        path: &Path,
    ) -> Result<(Self, mpsc::UnboundedReceiver<RuntimeEvent>), EventsError> {
        let listen_err = |message: String| EventsError::Listen {
            path: path.to_path_buf(),
            message,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let service = create_events(Arc::new(Sink { tx }));
        // Same rules as the CRI socket: 0660, a stale socket replaced, a live one refused.
        let listener = crate::socket::bind(path).map_err(|e| listen_err(e.to_string()))?;
        let listener = listener
            .into_std()
            .and_then(ttrpc::r#async::transport::Listener::try_from)
            .map_err(|e| listen_err(e.to_string()))?;
        let mut server = ttrpc::asynchronous::Server::new()
            .add_listener(listener)
            .register_service(service);
        server
            .start()
            .await
            .map_err(|e| listen_err(e.to_string()))?;
        Ok((
            Self {
                server,
                path: path.to_path_buf(),
            },
            rx,
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub async fn stop(mut self) {
        let _ = self.server.shutdown().await;
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The legacy publish path: forwards one event (a protobuf `Any` read from stdin by
/// the caller) to the events socket at `address`.
pub async fn publish(
    address: &str,
    topic: &str,
    namespace: &str,
    event: &[u8],
) -> Result<(), EventsError> {
    let any = Any::parse_from_bytes(event)
        .map_err(|e| EventsError::Publish(format!("event on stdin is not a protobuf Any: {e}")))?;
    let target = if address.starts_with("unix://") {
        address.to_string()
    } else {
        format!("unix://{address}")
    };
    let client = ttrpc::asynchronous::Client::connect(&target)
        .await
        .map_err(|e| EventsError::Publish(format!("connect {address}: {e}")))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut envelope = Envelope::new();
    envelope.topic = topic.to_string();
    envelope.namespace = namespace.to_string();
    envelope.event = Some(any).into();
    let mut ts = protocols::shim::protobuf::well_known_types::timestamp::Timestamp::new();
    ts.seconds = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    ts.nanos = i32::try_from(now.subsec_nanos()).unwrap_or(0);
    envelope.timestamp = Some(ts).into();
    let mut req = ForwardRequest::new();
    req.envelope = Some(envelope).into();
    EventsClient::new(client)
        .forward(ttrpc::context::with_timeout(5_000_000_000), &req)
        .await
        .map_err(|e| EventsError::Publish(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(topic: &str, type_url: &str, value: Vec<u8>) -> Envelope {
        let mut any = Any::new();
        any.type_url = type_url.into();
        any.value = value;
        let mut e = Envelope::new();
        e.topic = topic.into();
        e.event = Some(any).into();
        e
    }

    #[test]
    fn exit_and_oom_events_decode() {
        let mut exit = TaskExit::new();
        exit.container_id = "c1".into();
        exit.id = "c1".into();
        exit.pid = 42;
        exit.exit_status = 3;
        let e = envelope(
            "/tasks/exit",
            "containerd.events.TaskExit",
            exit.write_to_bytes().expect("encode"),
        );
        assert_eq!(
            decode(&e),
            Some(RuntimeEvent::Exit {
                container_id: "c1".into(),
                id: "c1".into(),
                pid: 42,
                exit_status: 3,
                exited_at: 0
            })
        );
        let mut oom = TaskOOM::new();
        oom.container_id = "c2".into();
        let e = envelope(
            "/tasks/oom",
            "containerd.events.TaskOOM",
            oom.write_to_bytes().expect("encode"),
        );
        assert_eq!(
            decode(&e),
            Some(RuntimeEvent::Oom {
                container_id: "c2".into()
            })
        );
        assert_eq!(decode(&envelope("/tasks/start", "x", vec![])), None);
    }

    #[tokio::test]
    async fn published_events_reach_the_server() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.sock");
        let (server, mut rx) = EventServer::start(&path).await.expect("start");
        let mut oom = TaskOOM::new();
        oom.container_id = "c3".into();
        let mut any = Any::new();
        any.type_url = "containerd.events.TaskOOM".into();
        any.value = oom.write_to_bytes().expect("encode");
        let bytes = any.write_to_bytes().expect("encode");
        publish(path.to_str().expect("utf8"), "/tasks/oom", "k8s.io", &bytes)
            .await
            .expect("publish");
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
            .await
            .expect("in time");
        assert_eq!(
            got,
            Some(RuntimeEvent::Oom {
                container_id: "c3".into()
            })
        );
        server.stop().await;
        assert!(!path.exists());
    }
}
