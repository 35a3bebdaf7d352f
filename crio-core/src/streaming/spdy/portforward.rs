//! Port-forward over SPDY (`portforward.k8s.io`): for each connection the client
//! forwards, it opens an error stream and a data stream carrying the same `port`
//! and `requestid` headers; once both exist, the data stream is joined to a TCP
//! connection to that port inside the pod.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc::UnboundedReceiver;

use super::conn::{IncomingStream, SpdyConn, StreamEvent};
use super::frame::header;
use super::next_event;
use crate::sandbox::PodRuntime;

#[derive(Default)]
struct Pair {
    port: u16,
    data: Option<IncomingStream>,
    error: Option<IncomingStream>,
}

/// Serves until the client closes the connection; many pairs, on one port or
/// several, run at once.
pub async fn serve_port_forward(
    conn: SpdyConn,
    mut incoming: UnboundedReceiver<IncomingStream>,
    pods: Arc<PodRuntime>,
    pod_id: String,
) {
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    while let Some(stream) = incoming.recv().await {
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
        let pair = pairs.entry(request.clone()).or_default();
        pair.port = port;
        let slot = if is_data {
            &mut pair.data
        } else {
            &mut pair.error
        };
        if slot.is_some() {
            let message = format!(
                "error processing stream for request {request}: {kind} stream already assigned"
            );
            if let Some(error) = &pair.error {
                conn.data(error.id, message.as_bytes());
            }
            conn.reset(stream.id);
            continue;
        }
        *slot = Some(stream);
        if pair.data.is_some() && pair.error.is_some() {
            if let Some(Pair {
                port,
                data: Some(data),
                error: Some(error),
            }) = pairs.remove(&request)
            {
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
