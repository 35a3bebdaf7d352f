//! Port-forward over the WebSocket channel protocol: for the i-th requested port,
//! channel 2i carries its data and 2i+1 its errors; the server first writes the
//! port number (2 bytes, little-endian) on both, as the kubelet does.

use std::sync::Arc;

use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;

use super::ws_channels::{decode, encode, split_with_writer, ChannelProtocol};
use crate::pods::{PodRuntime, PodWriter};

/// The ports asked for in the URL's query (`?port=80&port=8080`).
pub(crate) fn query_ports(query: &str) -> Result<Vec<u16>, String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(k, _)| *k == "port")
        .map(|(_, v)| {
            v.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("invalid port {v:?}"))
        })
        .collect()
}

/// Forwards every port until the client goes away or every connection ended.
pub(crate) async fn serve_port_forward<S>(
    ws: WebSocketStream<S>,
    protocol: ChannelProtocol,
    pods: Arc<PodRuntime>,
    pod_id: String,
    ports: Vec<u16>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let encoding = protocol.encoding;
    let (mut source, tx, writer) = split_with_writer(ws);
    let mut conns: Vec<Option<PodWriter>> = Vec::new();
    let mut pumps = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let (data, error) = (channel(i, 0), channel(i, 1));
        for ch in [data, error] {
            let _ = tx.send(encode(encoding, ch, &port.to_le_bytes())).await;
        }
        match pods.dial_pod_port(&pod_id, *port).await {
            Ok(stream) => {
                let (mut read, write) = stream.into_split();
                conns.push(Some(write));
                let tx = tx.clone();
                pumps.push(tokio::spawn(async move {
                    let mut buf = vec![0u8; 32 * 1024];
                    loop {
                        match read.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if tx.send(encode(encoding, data, &buf[..n])).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                }));
            }
            Err(e) => {
                let _ = tx
                    .send(encode(encoding, error, e.to_string().as_bytes()))
                    .await;
                conns.push(None);
            }
        }
    }
    // Client data goes to its port's connection; the session ends when the client
    // leaves or every pod-side connection has closed.
    let all_done = futures::future::join_all(pumps);
    tokio::pin!(all_done);
    loop {
        tokio::select! {
            _ = &mut all_done => break,
            message = source.next() => {
                let Some(Ok(message)) = message else { break };
                if message.is_close() {
                    break;
                }
                let Some((ch, payload)) = decode(encoding, &message) else { continue };
                let index = usize::from(ch / 2);
                if ch % 2 != 0 {
                    continue;
                }
                if let Some(Some(conn)) = conns.get_mut(index) {
                    if conn.write_all(&payload).await.is_err() {
                        conns[index] = None;
                    }
                }
            }
        }
    }
    drop(conns);
    drop(tx);
    let _ = writer.await;
}

/// Channel `which` (0 data, 1 error) of the port at `index`.
fn channel(index: usize, which: u8) -> u8 {
    u8::try_from(index * 2).unwrap_or(u8::MAX - 1) + which
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_come_from_the_query() {
        assert_eq!(query_ports("port=80&port=8080"), Ok(vec![80, 8080]));
        assert_eq!(query_ports(""), Ok(vec![]));
        assert!(query_ports("port=http").is_err());
        assert!(query_ports("port=0").is_err());
        assert_eq!(channel(0, 0), 0);
        assert_eq!(channel(2, 1), 5);
    }
}
