//! The CRI gRPC server: RuntimeService, ImageService, health and CRI-O's inspect
//! endpoints on one unix socket, with graceful shutdown.

mod authority;
mod image_service;
pub mod inspect;
mod runtime_service;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use protocols::cri::image_service_server::ImageServiceServer;
use protocols::cri::runtime_service_server::RuntimeServiceServer;
use tokio_stream::wrappers::UnixListenerStream;
use tokio_stream::StreamExt;
use tonic::service::Routes;

pub(crate) use image_service::ImageServiceImpl;
pub(crate) use runtime_service::RuntimeServiceImpl;

use crate::config::Config;
use crate::image::images::ImageStore;
use crate::image::pull::Puller;
use crate::image::registries::RegistriesWatcher;
use crate::pods::PodRuntime;
use crate::store::Store;

/// How long in-flight calls get to finish after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What the services share.
#[derive(Debug)]
pub struct State {
    /// The configuration the daemon started with.
    pub config: Config,
    /// The configuration with what reloads applied since: what the pause image
    /// and `crio status config` read.
    pub live: Arc<crate::config::LiveConfig>,
    pub pods: Arc<PodRuntime>,
    /// Where Exec and PortForward sessions connect.
    pub streaming: Arc<crate::streaming::StreamingServer>,
    pub store: Arc<Store>,
    pub images: Arc<ImageStore>,
    pub puller: Puller,
    pub registries: Arc<RegistriesWatcher>,
    /// What `ImageFsInfo` measures.
    pub image_root: std::path::PathBuf,
    pub container_root: std::path::PathBuf,
    /// The pod CIDRs from the last `UpdateRuntimeConfig` (reported by `Status`).
    pub pod_cidrs: std::sync::Mutex<Vec<String>>,
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("CRI server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// CRI-O's interceptor: every unary CRI call counted by its method name, its
/// latency, and whether it failed (a gRPC status other than OK in the response
/// head, where tonic puts an error's).
async fn count_operation(
    axum::extract::State(metrics): axum::extract::State<Arc<crate::metrics::Metrics>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let path = request.uri().path();
    let operation = (path.starts_with("/runtime.v1.")
        && metrics.enabled()
        && !path.ends_with("/GetContainerEvents"))
    .then(|| path.rsplit('/').next().unwrap_or_default().to_string());
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    if let Some(operation) = operation {
        let failed = response
            .headers()
            .get("grpc-status")
            .is_some_and(|s| s.as_bytes() != b"0");
        metrics.operation(&operation, started.elapsed(), failed);
    }
    response
}

/// Serves until `shutdown` resolves, then lets in-flight calls finish (up to
/// [`SHUTDOWN_GRACE`]).
pub(crate) async fn serve(
    listener: tokio::net::UnixListener,
    state: Arc<State>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<RuntimeServiceServer<RuntimeServiceImpl>>()
        .await;
    health
        .set_serving::<ImageServiceServer<ImageServiceImpl>>()
        .await;

    let api = &state.config.crio.api;
    let runtime = RuntimeServiceServer::new(RuntimeServiceImpl::new(state.clone()))
        .max_decoding_message_size(api.grpc_max_recv_msg_size)
        .max_encoding_message_size(api.grpc_max_send_msg_size);
    let image = ImageServiceServer::new(ImageServiceImpl::new(state.clone()))
        .max_decoding_message_size(api.grpc_max_recv_msg_size)
        .max_encoding_message_size(api.grpc_max_send_msg_size);
    let grpc = Routes::new(runtime)
        .add_service(image)
        .add_service(health_service)
        .into_axum_router()
        .layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            count_operation,
        ));
    let routes = Routes::from(inspect::routes(grpc, state.clone()));

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut grace_rx = stop_rx.clone();
    let server = tonic::transport::Server::builder()
        // HTTP/1.1 only for the inspect endpoints; gRPC stays HTTP/2.
        .accept_http1(true)
        .add_routes(routes)
        .serve_with_incoming_shutdown(
            UnixListenerStream::new(listener).map(|s| s.map(authority::AuthorityFix::new)),
            async move {
                shutdown.await;
                tracing::info!("shutting down: finishing in-flight calls");
                let _ = stop_tx.send(true);
            },
        );
    tokio::select! {
        result = server => result?,
        () = async move {
            let _ = grace_rx.wait_for(|stopping| *stopping).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => tracing::warn!("calls still running after {SHUTDOWN_GRACE:?}: stopping anyway"),
    }
    drop(stop_rx);
    Ok(())
}
