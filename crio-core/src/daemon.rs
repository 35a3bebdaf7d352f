//! The daemon's life: prepare its directories, open the store, bind the socket, serve
//! until SIGTERM/SIGINT, remove the socket.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::Loaded;
use crate::runtime::HandlerRegistry;
use crate::server::{self, socket, State};
use crate::store::{Store, StoreError};

/// File name of the metadata store under `[crio] root`.
pub const STORE_FILE: &str = "metadata.redb";

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot create {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Socket(#[from] socket::SocketError),
    #[error(transparent)]
    Serve(#[from] server::ServeError),
    #[error("cannot install signal handler: {0}")]
    Signal(std::io::Error),
}

fn create_dir(path: &Path) -> Result<(), DaemonError> {
    std::fs::create_dir_all(path).map_err(|source| DaemonError::Dir {
        path: path.to_path_buf(),
        source,
    })
}

/// Runs the daemon to completion.
pub async fn run(loaded: Loaded) -> Result<(), DaemonError> {
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    let config = loaded.config;
    let c = &config.crio;
    create_dir(&c.root)?;
    create_dir(&c.runroot)?;
    if c.metrics.enable_metrics {
        tracing::warn!("[crio.metrics] enable_metrics is set, but the metrics endpoint is not implemented yet: nothing listens on {}:{}", c.metrics.metrics_host, c.metrics.metrics_port);
    }
    let store = Store::open(&c.root.join(STORE_FILE))?;
    let listen = c.api.listen.clone();
    let listener = socket::bind(&listen)?;
    let state = Arc::new(State {
        handlers: HandlerRegistry::from_config(&config),
        config,
        store,
    });
    let shutdown = shutdown_signal().map_err(DaemonError::Signal)?;
    tracing::info!(socket = %listen.display(), "serving CRI");
    let result = server::serve(listener, state, shutdown).await;
    if let Err(e) = std::fs::remove_file(&listen) {
        tracing::warn!("cannot remove socket {}: {e}", listen.display());
    }
    tracing::info!("stopped");
    Ok(result?)
}

fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("received SIGTERM"),
            _ = int.recv() => tracing::info!("received SIGINT"),
        }
    })
}
