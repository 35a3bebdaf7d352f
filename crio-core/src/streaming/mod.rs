//! The streaming server behind the CRI `Exec` and `PortForward` RPCs, as the
//! kubelet's `pkg/cri/streaming` serves them: each RPC stores its request under a
//! single-use token and returns `http://<stream_address>:<port>/<kind>/<token>`;
//! the client (kubelet, crictl, kubectl through the apiserver) upgrades that URL
//! to SPDY/3.1 (`spdy/`) or to a WebSocket speaking the Kubernetes channel
//! protocol (`ws_channels`, `remotecommand`, `portforward`).

pub(crate) mod idle;
pub(crate) mod portforward;
pub(crate) mod remotecommand;
pub(crate) mod requests;
pub(crate) mod spdy;
pub(crate) mod target;
pub(crate) mod tls;
pub(crate) mod ws_channels;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

pub(crate) use requests::{RequestCache, StreamRequest, TooManyInFlight};

use crate::error::CriError;
use crate::pods::PodRuntime;
use remotecommand::Streams;
use target::Target;
use ws_channels::ChannelProtocol;

/// The kubelet's default `stream_idle_timeout`.
pub(crate) const DEFAULT_IDLE_TIMEOUT: std::time::Duration =
    std::time::Duration::from_secs(4 * 3600);

const SEC_WEBSOCKET_PROTOCOL: &str = "sec-websocket-protocol";
const X_STREAM_PROTOCOL_VERSION: &str = "x-stream-protocol-version";

#[derive(Debug)]
pub struct StreamingServer {
    requests: RequestCache,
    pods: Arc<PodRuntime>,
    base_url: String,
    sessions: Arc<Semaphore>,
    idle_timeout: std::time::Duration,
}

impl StreamingServer {
    /// Listens on `address:port` (port 0 = any free one) and serves in the
    /// background.
    pub async fn start(
        address: &str,
        port: u16,
        idle_timeout: std::time::Duration,
        tls: Option<tokio_rustls::TlsAcceptor>,
        max_sessions: usize,
        pods: Arc<PodRuntime>,
    ) -> std::io::Result<Arc<Self>> {
        let listener = TcpListener::bind((address, port)).await?;
        let local = listener.local_addr()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let server = Arc::new(Self {
            requests: RequestCache::default(),
            pods,
            base_url: format!("{scheme}://{local}"),
            sessions: Arc::new(Semaphore::new(max_sessions)),
            idle_timeout,
        });
        tracing::info!(address = %local, "streaming server listening");
        let serving = server.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let server = serving.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let server = server.clone();
                        async move { Ok::<_, Infallible>(server.handle(req)) }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    let _ = match tls {
                        Some(tls) => match tls.accept(stream).await {
                            Ok(stream) => {
                                http.serve_connection(TokioIo::new(stream), service)
                                    .with_upgrades()
                                    .await
                            }
                            Err(e) => {
                                tracing::debug!("streaming TLS handshake: {e}");
                                return;
                            }
                        },
                        None => {
                            http.serve_connection(TokioIo::new(stream), service)
                                .with_upgrades()
                                .await
                        }
                    };
                });
            }
        });
        Ok(server)
    }

    /// `http://host:port`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The URL a client connects to for `request`.
    pub fn url_for(&self, request: StreamRequest) -> Result<String, TooManyInFlight> {
        let kind = match request {
            StreamRequest::Exec { .. } => "exec",
            StreamRequest::Attach { .. } => "attach",
            StreamRequest::PortForward { .. } => "portforward",
        };
        let token = self.requests.insert(request)?;
        Ok(format!("{}/{kind}/{token}", self.base_url))
    }

    fn handle(self: Arc<Self>, mut req: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_string();
        let mut parts = path.trim_start_matches('/').splitn(2, '/');
        let (Some(kind), Some(token)) = (parts.next(), parts.next()) else {
            return plain(StatusCode::NOT_FOUND, "not found");
        };
        let Some(request) = self.requests.consume(token) else {
            return plain(StatusCode::NOT_FOUND, "unknown or expired streaming token");
        };
        let expected = match &request {
            StreamRequest::Exec { .. } => "exec",
            StreamRequest::Attach { .. } => "attach",
            StreamRequest::PortForward { .. } => "portforward",
        };
        if kind != expected {
            return plain(StatusCode::NOT_FOUND, "unknown or expired streaming token");
        }
        let upgrade = header(&req, UPGRADE.as_str()).to_ascii_lowercase();
        if upgrade.contains("spdy/3.1") {
            return self.upgrade_spdy(req, request);
        }
        if upgrade != "websocket" {
            return plain(
                StatusCode::BAD_REQUEST,
                "this URL needs a WebSocket upgrade (Upgrade: websocket)",
            );
        }
        let key = header(&req, SEC_WEBSOCKET_KEY.as_str());
        if key.is_empty() {
            return plain(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key");
        }
        let offered = header(&req, SEC_WEBSOCKET_PROTOCOL);
        let supported = match request {
            StreamRequest::PortForward { .. } => ws_channels::PORTFORWARD,
            _ => ws_channels::REMOTECOMMAND,
        };
        let Some(protocol) = ws_channels::negotiate(&offered, supported) else {
            let names: Vec<&str> = supported.iter().map(|p| p.name).collect();
            return plain(
                StatusCode::BAD_REQUEST,
                &format!(
                    "no supported subprotocol in {offered:?}; supported: {}",
                    names.join(", ")
                ),
            );
        };
        let ports = match &request {
            StreamRequest::PortForward { ports, .. } => {
                match portforward::query_ports(req.uri().query().unwrap_or("")) {
                    Ok(q) if !q.is_empty() => q,
                    Ok(_) => ports.clone(),
                    Err(e) => return plain(StatusCode::BAD_REQUEST, &e),
                }
            }
            _ => Vec::new(),
        };
        if ports.len() > 127 {
            return plain(StatusCode::BAD_REQUEST, "at most 127 ports per connection");
        }
        let Ok(permit) = self.sessions.clone().try_acquire_owned() else {
            return plain(
                StatusCode::TOO_MANY_REQUESTS,
                "too many streaming sessions: try again later",
            );
        };
        let accept = derive_accept_key(key.as_bytes());
        let upgraded = hyper::upgrade::on(&mut req);
        let server = self.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let io = match upgraded.await {
                Ok(io) => idle::IdleIo::new(TokioIo::new(io), server.idle_timeout),
                Err(e) => {
                    tracing::debug!("streaming upgrade failed: {e}");
                    return;
                }
            };
            let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
            server.run_session(ws, protocol, request, ports).await;
        });
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        if let Ok(v) = HeaderValue::from_str(&accept) {
            headers.insert(SEC_WEBSOCKET_ACCEPT, v);
        }
        if !offered.is_empty() {
            headers.insert(
                SEC_WEBSOCKET_PROTOCOL,
                HeaderValue::from_static(protocol.name),
            );
        }
        response
    }

    /// The SPDY/3.1 upgrade as apimachinery's `httpstream` answers it.
    fn upgrade_spdy(
        self: Arc<Self>,
        mut req: Request<Incoming>,
        request: StreamRequest,
    ) -> Response<Full<Bytes>> {
        let offered: Vec<String> = req
            .headers()
            .get_all(X_STREAM_PROTOCOL_VERSION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_string)
            .collect();
        let supported = match request {
            StreamRequest::PortForward { .. } => spdy::PORTFORWARD,
            _ => spdy::REMOTECOMMAND,
        };
        if offered.iter().all(|v| v.trim().is_empty()) {
            return plain(
                StatusCode::BAD_REQUEST,
                "unable to upgrade: header X-Stream-Protocol-Version does not exist in request",
            );
        }
        let Some((name, version)) = spdy::negotiate(&offered, supported) else {
            let names: Vec<&str> = supported.iter().map(|(n, _)| *n).collect();
            let mut response = plain(
                StatusCode::FORBIDDEN,
                &format!(
                    "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server accepts {names:?}"
                ),
            );
            for name in names {
                response.headers_mut().append(
                    "x-accepted-stream-protocol-versions",
                    HeaderValue::from_static(name),
                );
            }
            return response;
        };
        if !header(&req, CONNECTION.as_str())
            .to_ascii_lowercase()
            .contains("upgrade")
        {
            return plain(
                StatusCode::BAD_REQUEST,
                "unable to upgrade: missing upgrade headers in request",
            );
        }
        let Ok(permit) = self.sessions.clone().try_acquire_owned() else {
            return plain(
                StatusCode::TOO_MANY_REQUESTS,
                "too many streaming sessions: try again later",
            );
        };
        let upgraded = hyper::upgrade::on(&mut req);
        let pods = self.pods.clone();
        let idle_timeout = self.idle_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            let io = match upgraded.await {
                Ok(io) => idle::IdleIo::new(TokioIo::new(io), idle_timeout),
                Err(e) => {
                    tracing::debug!("streaming upgrade failed: {e}");
                    return;
                }
            };
            let (conn, incoming) = spdy::conn::start(io);
            match request {
                StreamRequest::PortForward { pod_sandbox_id, .. } => {
                    spdy::portforward::serve_port_forward(conn, incoming, pods, pod_sandbox_id)
                        .await;
                }
                request => {
                    let (streams, cmd) = streams_of(&request);
                    let start = async move { start_target(&pods, &request).await };
                    spdy::exec::serve(conn, incoming, version, start, streams, cmd).await;
                }
            }
        });
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        headers.insert(UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        headers.insert(X_STREAM_PROTOCOL_VERSION, HeaderValue::from_static(name));
        response
    }

    async fn run_session<S>(
        &self,
        ws: WebSocketStream<S>,
        protocol: ChannelProtocol,
        request: StreamRequest,
        ports: Vec<u16>,
    ) where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        match request {
            StreamRequest::Exec { .. } | StreamRequest::Attach { .. } => {
                let (streams, cmd) = streams_of(&request);
                match start_target(&self.pods, &request).await {
                    Ok(target) => remotecommand::serve(ws, protocol, target, streams, cmd).await,
                    Err(e) => remotecommand::refuse(ws, protocol, &e.to_string()).await,
                }
            }
            StreamRequest::PortForward { pod_sandbox_id, .. } => {
                portforward::serve_port_forward(
                    ws,
                    protocol,
                    self.pods.clone(),
                    pod_sandbox_id,
                    ports,
                )
                .await
            }
        }
    }
}

/// The streams a remotecommand request asked for, and its command (empty for
/// attach).
fn streams_of(request: &StreamRequest) -> (Streams, Vec<String>) {
    match request {
        StreamRequest::Exec {
            cmd,
            tty,
            stdin,
            stdout,
            stderr,
            ..
        } => (
            Streams {
                stdin: *stdin,
                stdout: *stdout,
                stderr: *stderr,
                tty: *tty,
            },
            cmd.clone(),
        ),
        StreamRequest::Attach {
            tty,
            stdin,
            stdout,
            stderr,
            ..
        } => (
            Streams {
                stdin: *stdin,
                stdout: *stdout,
                stderr: *stderr,
                tty: *tty,
            },
            Vec::new(),
        ),
        StreamRequest::PortForward { .. } => (
            Streams {
                stdin: false,
                stdout: false,
                stderr: false,
                tty: false,
            },
            Vec::new(),
        ),
    }
}

/// Starts what a remotecommand request names: an exec, or an attach.
async fn start_target(pods: &Arc<PodRuntime>, request: &StreamRequest) -> Result<Target, CriError> {
    match request {
        StreamRequest::Exec {
            container_id,
            cmd,
            tty,
            stdin,
            ..
        } => pods
            .start_exec(container_id, cmd, *tty, *stdin)
            .await
            .map(Target::Exec),
        StreamRequest::Attach {
            container_id,
            stdin,
            ..
        } => pods.attach_to(container_id, *stdin).map(Target::Attach),
        StreamRequest::PortForward { .. } => Err(CriError::Internal(
            "port-forward is not a remotecommand".into(),
        )),
    }
}

fn header(req: &Request<Incoming>, name: &str) -> String {
    req.headers()
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",")
}

fn plain(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(format!("{text}\n"))));
    *response.status_mut() = status;
    response
}

impl From<TooManyInFlight> for CriError {
    fn from(err: TooManyInFlight) -> Self {
        CriError::ResourceExhausted(err.to_string())
    }
}
