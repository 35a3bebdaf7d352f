//! CRI-O's inspect endpoints on the CRI socket (`GET /info`, `GET /config`), which
//! `crio status` reads; plain HTTP/1.1 beside gRPC's HTTP/2 on the same socket.

use std::path::Path;
use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::routing::get;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use serde::Serialize;

use super::State;
use crate::storage::rootfs::StorageDriver;

/// The `/info` document, with CRI-O's keys.
#[derive(Debug, Serialize)]
pub struct Info {
    pub storage_driver: String,
    pub storage_root: String,
    pub storage_image: String,
    pub cgroup_driver: String,
    pub default_runtime: String,
    pub runtime_version: String,
}

impl Info {
    fn of(state: &State) -> Self {
        let c = &state.config.crio;
        Self {
            // The driver that builds container root filesystems (CRI's ImageFsInfo
            // has no field for it: its mountpoints must stay real directories).
            storage_driver: c
                .storage_driver
                .parse::<StorageDriver>()
                .unwrap_or_default()
                .to_string(),
            storage_root: c.root.display().to_string(),
            storage_image: String::new(),
            cgroup_driver: c.runtime.cgroup_manager.clone(),
            default_runtime: c.runtime.default_runtime.clone(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

/// Adds the inspect routes to the gRPC router.
pub fn routes(router: axum::Router, state: Arc<State>) -> axum::Router {
    let info_state = state.clone();
    router
        .route(
            "/info",
            get(move || {
                let body = serde_json::to_string(&Info::of(&info_state)).unwrap_or_default();
                async move { ([(header::CONTENT_TYPE, "application/json")], body) }
            }),
        )
        .route(
            "/config",
            get(move || {
                let body = state.live.current().to_toml();
                async move { ([(header::CONTENT_TYPE, "application/toml")], body) }
            }),
        )
}

/// Client errors of `crio status`.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("cannot connect to {path}: {source} (is crio running?)")]
    Connect {
        path: String,
        source: std::io::Error,
    },
    #[error("request to {path} failed: {source}")]
    Http { path: String, source: hyper::Error },
    #[error("{path} answered {status}: {body}")]
    Status {
        path: String,
        status: StatusCode,
        body: String,
    },
}

/// `GET <endpoint>` over the daemon's socket; the body as text.
pub async fn get_endpoint(socket: &Path, endpoint: &str) -> Result<String, InspectError> {
    let path = socket.display().to_string();
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|source| InspectError::Connect {
            path: path.clone(),
            source,
        })?;
    let http = |source| InspectError::Http {
        path: path.clone(),
        source,
    };
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(http)?;
    tokio::spawn(conn);
    let request = hyper::Request::get(endpoint)
        .header(header::HOST, "crio")
        .body(Empty::<Bytes>::new())
        .map_err(|e| InspectError::Status {
            path: path.clone(),
            status: StatusCode::BAD_REQUEST,
            body: e.to_string(),
        })?;
    let response = sender.send_request(request).await.map_err(http)?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(http)?
        .to_bytes();
    let body = String::from_utf8_lossy(&body).into_owned();
    if !status.is_success() {
        return Err(InspectError::Status { path, status, body });
    }
    Ok(body)
}
