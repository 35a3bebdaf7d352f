//! Serves `/metrics` (any method, as CRI-O; every other path is 404) over TCP on
//! `metrics_host:metrics_port`, and on `metrics_socket` when set; TLS on both
//! when `metrics_cert` and `metrics_key` are set.

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use super::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum MetricsServerError {
    #[error("metrics endpoint on {address} ([crio.metrics] metrics_host, metrics_port): {source}")]
    Tcp {
        address: String,
        source: std::io::Error,
    },
    #[error("metrics socket {path} ([crio.metrics] metrics_socket): {source}")]
    Socket {
        path: String,
        source: std::io::Error,
    },
}

/// The prometheus text format's content type.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn respond(metrics: &Metrics, path: &str) -> hyper::Response<Full<Bytes>> {
    let mut response = if path == "/metrics" {
        let mut r = hyper::Response::new(Full::new(Bytes::from(metrics.render())));
        if let Ok(value) = CONTENT_TYPE.parse() {
            r.headers_mut().insert(hyper::header::CONTENT_TYPE, value);
        }
        r
    } else {
        hyper::Response::new(Full::new(Bytes::from_static(b"404 page not found\n")))
    };
    if path != "/metrics" {
        *response.status_mut() = hyper::StatusCode::NOT_FOUND;
    }
    response
}

async fn serve_one<S>(stream: S, metrics: Arc<Metrics>, tls: Option<tokio_rustls::TlsAcceptor>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let metrics = metrics.clone();
        async move { Ok::<_, Infallible>(respond(&metrics, req.uri().path())) }
    });
    let http = hyper::server::conn::http1::Builder::new();
    let _ = match tls {
        Some(tls) => match tls.accept(stream).await {
            Ok(stream) => http.serve_connection(TokioIo::new(stream), service).await,
            Err(e) => {
                tracing::debug!("metrics TLS handshake: {e}");
                return;
            }
        },
        None => http.serve_connection(TokioIo::new(stream), service).await,
    };
}

/// Starts the listeners (failing to bind is an error naming the key) and serves
/// in the background; returns the TCP address bound.
pub(crate) async fn serve(
    metrics: Arc<Metrics>,
    host: &str,
    port: u16,
    socket: Option<&Path>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> Result<std::net::SocketAddr, MetricsServerError> {
    let address = format!("{host}:{port}");
    let tcp = tokio::net::TcpListener::bind((host, port))
        .await
        .map_err(|source| MetricsServerError::Tcp {
            address: address.clone(),
            source,
        })?;
    let local = tcp
        .local_addr()
        .map_err(|source| MetricsServerError::Tcp { address, source })?;
    tracing::info!(address = %local, "metrics endpoint listening");
    if let Some(path) = socket {
        let unix = crate::socket::bind(path).map_err(|e| MetricsServerError::Socket {
            path: path.display().to_string(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let (metrics, tls) = (metrics.clone(), tls.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = unix.accept().await else {
                    continue;
                };
                tokio::spawn(serve_one(stream, metrics.clone(), tls.clone()));
            }
        });
    }
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = tcp.accept().await else {
                continue;
            };
            tokio::spawn(serve_one(stream, metrics.clone(), tls.clone()));
        }
    });
    Ok(local)
}
