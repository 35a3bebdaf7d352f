//! Port-forward over SPDY (`portforward.k8s.io`): for each connection the client
//! forwards, it opens an error stream and a data stream carrying the same `port`
//! and `requestid` headers; once both exist, the data stream is joined to a TCP
//! connection to that port inside the pod.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;

use super::conn::{IncomingStream, SpdyConn, StreamEvent};
use super::frame::header;
use super::next_event;
use crate::pods::PodRuntime;

/// How long a pair may wait for its second stream: the kubelet's stream creation
/// timeout.
const PAIR_TIMEOUT: Duration = Duration::from_secs(30);

struct Pair {
    port: u16,
    data: Option<IncomingStream>,
    error: Option<IncomingStream>,
    since: Instant,
}

/// What [`Pairs::add`] made of a stream.
enum Added {
    Waiting,
    Complete {
        port: u16,
        data: IncomingStream,
        error: IncomingStream,
    },
    /// The request already has a stream of this type: it is refused, with a message
    /// for the pair's error stream (if it has one).
    Duplicate {
        message: String,
        error_stream: Option<u32>,
    },
}

/// Streams waiting for their partner, by request id.
struct Pairs {
    waiting: HashMap<String, Pair>,
    timeout: Duration,
}

impl Pairs {
    fn new(timeout: Duration) -> Self {
        Self {
            waiting: HashMap::new(),
            timeout,
        }
    }

    fn add(
        &mut self,
        request: &str,
        port: u16,
        is_data: bool,
        stream: IncomingStream,
        now: Instant,
    ) -> Added {
        let pair = self
            .waiting
            .entry(request.to_string())
            .or_insert_with(|| Pair {
                port,
                data: None,
                error: None,
                since: now,
            });
        pair.port = port;
        let slot = if is_data {
            &mut pair.data
        } else {
            &mut pair.error
        };
        if slot.is_some() {
            let kind = if is_data { "data" } else { "error" };
            return Added::Duplicate {
                message: format!(
                    "error processing stream for request {request}: {kind} stream already assigned"
                ),
                error_stream: pair.error.as_ref().map(|e| e.id),
            };
        }
        *slot = Some(stream);
        if pair.data.is_none() || pair.error.is_none() {
            return Added::Waiting;
        }
        match self.waiting.remove(request) {
            Some(Pair {
                port,
                data: Some(data),
                error: Some(error),
                ..
            }) => Added::Complete { port, data, error },
            _ => Added::Waiting,
        }
    }

    /// When the oldest waiting pair times out.
    fn next_deadline(&self) -> Option<Instant> {
        self.waiting.values().map(|p| p.since + self.timeout).min()
    }

    /// Takes out the pairs that waited too long.
    fn expire(&mut self, now: Instant) -> Vec<(String, Pair)> {
        let late: Vec<String> = self
            .waiting
            .iter()
            .filter(|(_, p)| p.since + self.timeout <= now)
            .map(|(r, _)| r.clone())
            .collect();
        late.into_iter()
            .filter_map(|r| self.waiting.remove(&r).map(|p| (r, p)))
            .collect()
    }
}

/// Serves until the client closes the connection; many pairs, on one port or
/// several, run at once. A pair whose second stream does not come within
/// [`PAIR_TIMEOUT`] is dropped, as the kubelet does.
pub(crate) async fn serve_port_forward(
    conn: SpdyConn,
    mut incoming: UnboundedReceiver<IncomingStream>,
    pods: Arc<PodRuntime>,
    pod_id: String,
) {
    let mut pairs = Pairs::new(PAIR_TIMEOUT);
    loop {
        let deadline = pairs.next_deadline();
        let stream = tokio::select! {
            stream = incoming.recv() => match stream {
                Some(stream) => stream,
                None => break,
            },
            () = sleep_until(deadline), if deadline.is_some() => {
                for (request, pair) in pairs.expire(Instant::now()) {
                    tracing::debug!(request, "port-forward pair incomplete: timed out");
                    if let Some(error) = &pair.error {
                        let message = format!("request {request}: timed out waiting for streams");
                        conn.data(error.id, message.as_bytes());
                    }
                    for stream in [pair.data, pair.error].into_iter().flatten() {
                        conn.reset(stream.id);
                    }
                }
                continue;
            }
        };
        let port = header(&stream.headers, "port").and_then(|p| p.parse::<u16>().ok());
        let kind = header(&stream.headers, "streamtype").unwrap_or("");
        let (Some(port), "data" | "error") = (port.filter(|p| *p > 0), kind) else {
            tracing::debug!(
                stream = stream.id,
                "port-forward stream without a valid port or type"
            );
            conn.reset(stream.id);
            continue;
        };
        let is_data = kind == "data";
        conn.reply(stream.id);
        // Very old clients send no request id: pair the streams by their ids.
        let request = header(&stream.headers, "requestid")
            .map(str::to_string)
            .unwrap_or_else(|| {
                if is_data {
                    stream.id.saturating_sub(2).to_string()
                } else {
                    stream.id.to_string()
                }
            });
        let id = stream.id;
        match pairs.add(&request, port, is_data, stream, Instant::now()) {
            Added::Waiting => {}
            Added::Duplicate {
                message,
                error_stream,
            } => {
                if let Some(error) = error_stream {
                    conn.data(error, message.as_bytes());
                }
                conn.reset(id);
            }
            Added::Complete { port, data, error } => {
                tokio::spawn(forward(
                    conn.clone(),
                    pods.clone(),
                    pod_id.clone(),
                    port,
                    data,
                    error,
                ));
            }
        }
    }
    conn.close();
}

/// Sleeps until `deadline` (forever without one).
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn forward(
    conn: SpdyConn,
    pods: Arc<PodRuntime>,
    pod_id: String,
    port: u16,
    data: IncomingStream,
    error: IncomingStream,
) {
    let tcp = match pods.dial_pod_port(&pod_id, port).await {
        Ok(tcp) => tcp,
        Err(e) => {
            let message = format!("error forwarding port {port} to pod {pod_id}, uid : {e}");
            conn.data(error.id, message.as_bytes());
            conn.fin(error.id);
            conn.reset(data.id);
            conn.reset(error.id);
            return;
        }
    };
    let (mut from_pod, mut to_pod) = tcp.into_split();
    let data_id = data.id;
    let up_conn = conn.clone();
    let mut up = tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match from_pod.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => up_conn.data(data_id, &buf[..n]),
            }
        }
        up_conn.fin(data_id);
    });
    let mut events = Some(data.events);
    loop {
        tokio::select! {
            _ = &mut up => break,
            event = next_event(&mut events) => match event {
                Some(StreamEvent::Data(bytes)) => {
                    if to_pod.write_all(&bytes).await.is_err() {
                        events = None;
                    }
                }
                // The client is done sending: the pod sees end-of-file, its answer
                // still comes back.
                Some(StreamEvent::Fin) => {
                    let _ = to_pod.shutdown().await;
                    events = None;
                }
                Some(StreamEvent::Reset) | None => {
                    up.abort();
                    break;
                }
            },
        }
    }
    conn.fin(error.id);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(id: u32) -> IncomingStream {
        IncomingStream {
            id,
            headers: Vec::new(),
            events: tokio::sync::mpsc::unbounded_channel().1,
        }
    }

    #[test]
    fn streams_pair_by_request_and_duplicates_are_refused() {
        let now = Instant::now();
        let mut pairs = Pairs::new(Duration::from_secs(30));
        assert!(matches!(
            pairs.add("0", 80, false, stream(1), now),
            Added::Waiting
        ));
        assert!(matches!(
            pairs.add("1", 81, true, stream(3), now),
            Added::Waiting
        ));
        match pairs.add("0", 80, false, stream(5), now) {
            Added::Duplicate {
                message,
                error_stream,
            } => {
                assert_eq!(error_stream, Some(1));
                assert!(
                    message.contains("error stream already assigned"),
                    "{message}"
                );
            }
            _ => panic!("a second error stream for request 0"),
        }
        match pairs.add("0", 80, true, stream(7), now) {
            Added::Complete { port, data, error } => {
                assert_eq!((port, data.id, error.id), (80, 7, 1));
            }
            _ => panic!("request 0 is complete"),
        }
        assert_eq!(pairs.waiting.len(), 1, "request 1 still waits");
    }

    #[test]
    fn a_pair_missing_a_stream_times_out() {
        let now = Instant::now();
        let timeout = Duration::from_secs(30);
        let mut pairs = Pairs::new(timeout);
        assert_eq!(pairs.next_deadline(), None);
        pairs.add("a", 80, true, stream(1), now);
        pairs.add("b", 80, true, stream(3), now + Duration::from_secs(10));
        assert_eq!(pairs.next_deadline(), Some(now + timeout));
        assert!(pairs.expire(now + Duration::from_secs(29)).is_empty());
        let late = pairs.expire(now + timeout);
        assert_eq!(late.len(), 1);
        assert_eq!(late[0].0, "a");
        assert_eq!(
            pairs.next_deadline(),
            Some(now + Duration::from_secs(10) + timeout)
        );
    }
}
