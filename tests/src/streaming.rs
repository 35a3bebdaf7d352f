//! A client for the Kubernetes channel protocol over WebSocket, written from the
//! protocol's description (apimachinery `wsstream`, remotecommand, port-forward):
//! each message starts with its channel, a byte in binary protocols, an ASCII digit
//! before base64 data in `base64.` ones.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

#[derive(Debug)]
pub struct ChannelClient {
    ws: WebSocketStream<TcpStream>,
    /// The subprotocol the server chose.
    pub protocol: String,
}

impl ChannelClient {
    /// Connects to a streaming URL (`http://...`) offering `protocols`.
    pub async fn connect(
        url: &str,
        protocols: &[&str],
    ) -> Result<Self, tokio_tungstenite::tungstenite::Error> {
        let ws_url = url.replacen("http://", "ws://", 1);
        let mut request = ws_url.as_str().into_client_request()?;
        if !protocols.is_empty() {
            request.headers_mut().insert(
                "Sec-WebSocket-Protocol",
                HeaderValue::from_str(&protocols.join(", ")).expect("header"),
            );
        }
        let host = request
            .uri()
            .authority()
            .expect("host")
            .as_str()
            .to_string();
        let tcp = TcpStream::connect(&host)
            .await
            .map_err(tokio_tungstenite::tungstenite::Error::Io)?;
        let (ws, response) = tokio_tungstenite::client_async(request, tcp).await?;
        let protocol = response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        Ok(Self { ws, protocol })
    }

    fn base64(&self) -> bool {
        self.protocol.contains("base64")
    }

    pub async fn send(&mut self, channel: u8, data: &[u8]) {
        let message = if self.base64() {
            let mut text = String::from(char::from(b'0' + channel));
            text.push_str(&base64::engine::general_purpose::STANDARD.encode(data));
            Message::Text(text.into())
        } else {
            let mut frame = vec![channel];
            frame.extend_from_slice(data);
            Message::Binary(frame.into())
        };
        self.ws.send(message).await.expect("send");
    }

    /// The next data message; `None` once the server closed (or after 20 s).
    pub async fn recv(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            let message = tokio::time::timeout(Duration::from_secs(20), self.ws.next())
                .await
                .ok()??
                .ok()?;
            match message {
                Message::Binary(frame) if !frame.is_empty() => {
                    return Some((frame[0], frame[1..].to_vec()))
                }
                Message::Text(text) if !text.is_empty() => {
                    let channel = text.as_bytes()[0] - b'0';
                    let data = base64::engine::general_purpose::STANDARD
                        .decode(&text.as_str()[1..])
                        .expect("base64");
                    return Some((channel, data));
                }
                Message::Close(_) => return None,
                _ => {}
            }
        }
    }

    /// Everything each channel received until the server closed.
    pub async fn collect(&mut self) -> BTreeMap<u8, Vec<u8>> {
        let mut out: BTreeMap<u8, Vec<u8>> = BTreeMap::new();
        while let Some((channel, data)) = self.recv().await {
            out.entry(channel).or_default().extend(data);
        }
        out
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// The text a channel received.
pub fn text(channels: &BTreeMap<u8, Vec<u8>>, channel: u8) -> String {
    channels
        .get(&channel)
        .map(|d| String::from_utf8_lossy(d).to_string())
        .unwrap_or_default()
}
