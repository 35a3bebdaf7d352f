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

/// A connection the client speaks over: plain TCP or TLS.
pub trait Io:
    tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + std::fmt::Debug
{
}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + std::fmt::Debug> Io for T {}

/// TLS settings for `https://` streaming URLs: the CA to trust, and a client
/// certificate and key to present.
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    pub ca_pem: Vec<u8>,
    pub client: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

async fn tls_connect(tcp: TcpStream, tls: &ClientTls) -> std::io::Result<Box<dyn Io>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use tokio_rustls::rustls;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&tls.ca_pem) {
        roots
            .add(cert.map_err(std::io::Error::other)?)
            .map_err(std::io::Error::other)?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_root_certificates(roots);
    let config = match &tls.client {
        Some((cert, key)) => {
            let certs = CertificateDer::pem_file_iter(cert)
                .map_err(std::io::Error::other)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(std::io::Error::other)?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(std::io::Error::other)?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(std::io::Error::other)?
        }
        None => builder.with_no_client_auth(),
    };
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let name = ServerName::try_from("127.0.0.1").map_err(std::io::Error::other)?;
    Ok(Box::new(connector.connect(name, tcp).await?))
}

#[derive(Debug)]
pub struct ChannelClient {
    ws: WebSocketStream<Box<dyn Io>>,
    /// The subprotocol the server chose.
    pub protocol: String,
}

impl ChannelClient {
    /// Connects to a streaming URL (`http://...`) offering `protocols`.
    pub async fn connect(
        url: &str,
        protocols: &[&str],
    ) -> Result<Self, tokio_tungstenite::tungstenite::Error> {
        Self::connect_with(url, protocols, None).await
    }

    /// Connects to an `http://` or (with `tls`) an `https://` streaming URL.
    pub async fn connect_with(
        url: &str,
        protocols: &[&str],
        tls: Option<&ClientTls>,
    ) -> Result<Self, tokio_tungstenite::tungstenite::Error> {
        let ws_url = url
            .replacen("https://", "ws://", 1)
            .replacen("http://", "ws://", 1);
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
        let io: Box<dyn Io> = match tls {
            Some(tls) => tls_connect(tcp, tls)
                .await
                .map_err(tokio_tungstenite::tungstenite::Error::Io)?,
            None => Box::new(tcp),
        };
        let (ws, response) = tokio_tungstenite::client_async(request, io).await?;
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
