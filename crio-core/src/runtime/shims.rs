//! The shim host: one shim per pod, launched through the bootstrap protocol,
//! reached over ttrpc, reconnected after a core restart, cleaned up when it dies.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use protocols::shim::api;

use super::bootstrap::ShimAddress;
use super::launcher::{drain_shim_log, Launch, LaunchError};
use super::task::{TaskApi, TaskClient, TaskError};

#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error(transparent)]
    Launch(#[from] LaunchError),
    #[error(transparent)]
    Task(#[from] TaskError),
    #[error("no shim is serving pod {0}")]
    NoShim(String),
}

/// The shim serving one pod.
#[derive(Debug)]
pub(crate) struct PodShim {
    pub sandbox_id: String,
    pub binary: PathBuf,
    pub bundle: PathBuf,
    pub client: Arc<dyn TaskApi>,
    log_drain: Option<tokio::task::JoinHandle<()>>,
}

impl PodShim {
    pub(crate) fn address(&self) -> &ShimAddress {
        self.client.address()
    }
}

impl Drop for PodShim {
    fn drop(&mut self) {
        if let Some(task) = self.log_drain.take() {
            task.abort();
        }
    }
}

/// How shims are started, cleaned up after and reached: the seam between the pod
/// lifecycle and shim processes. [`ProcessLauncher`] runs shim binaries with
/// containerd's bootstrap protocol; the lifecycle's unit tests use fakes.
#[async_trait::async_trait]
pub(crate) trait ShimLauncher: Send + Sync + std::fmt::Debug {
    /// The shim binary's `start` action for task `id` in `bundle`: its address.
    async fn start(
        &self,
        binary: &Path,
        id: &str,
        bundle: &Path,
    ) -> Result<ShimAddress, LaunchError>;
    /// The shim binary's `delete` action: cleans up task `id` without its server.
    async fn delete(
        &self,
        binary: &Path,
        id: &str,
        bundle: &Path,
    ) -> Result<api::DeleteResponse, LaunchError>;
    /// A Task API client for the shim serving at `address`.
    async fn connect(&self, address: &ShimAddress) -> Result<Arc<dyn TaskApi>, TaskError>;
}

/// Shims as processes: containerd's bootstrap protocol, ttrpc.
#[derive(Debug)]
pub(crate) struct ProcessLauncher {
    events_address: PathBuf,
    publish_binary: PathBuf,
    debug: bool,
}

impl ProcessLauncher {
    fn launch(&self, binary: &Path, id: &str, bundle: &Path) -> Launch {
        Launch {
            binary: binary.to_path_buf(),
            id: id.to_string(),
            bundle: bundle.to_path_buf(),
            events_address: self.events_address.clone(),
            publish_binary: self.publish_binary.clone(),
            debug: self.debug,
        }
    }
}

#[async_trait::async_trait]
impl ShimLauncher for ProcessLauncher {
    async fn start(
        &self,
        binary: &Path,
        id: &str,
        bundle: &Path,
    ) -> Result<ShimAddress, LaunchError> {
        self.launch(binary, id, bundle).start().await
    }

    async fn delete(
        &self,
        binary: &Path,
        id: &str,
        bundle: &Path,
    ) -> Result<api::DeleteResponse, LaunchError> {
        self.launch(binary, id, bundle).delete().await
    }

    async fn connect(&self, address: &ShimAddress) -> Result<Arc<dyn TaskApi>, TaskError> {
        Ok(Arc::new(TaskClient::connect(address).await?))
    }
}

/// Every pod's shim, by sandbox id.
#[derive(Debug)]
pub struct ShimHost {
    launcher: Arc<dyn ShimLauncher>,
    pods: Mutex<HashMap<String, Arc<PodShim>>>,
}

impl ShimHost {
    pub(crate) fn new(events_address: PathBuf, publish_binary: PathBuf, debug: bool) -> Self {
        Self::with_launcher(Arc::new(ProcessLauncher {
            events_address,
            publish_binary,
            debug,
        }))
    }

    /// Shims started and reached through `launcher`.
    pub(crate) fn with_launcher(launcher: Arc<dyn ShimLauncher>) -> Self {
        Self {
            launcher,
            pods: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn get(&self, sandbox_id: &str) -> Option<Arc<PodShim>> {
        self.pods.lock().ok()?.get(sandbox_id).cloned()
    }

    /// Every pod's shim: `(pod id, the shim's bundle)`.
    pub(crate) fn list(&self) -> Vec<(String, PathBuf)> {
        self.pods
            .lock()
            .map(|p| {
                p.values()
                    .map(|s| (s.sandbox_id.clone(), s.bundle.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(crate) fn require(&self, sandbox_id: &str) -> Result<Arc<PodShim>, ShimError> {
        self.get(sandbox_id)
            .ok_or_else(|| ShimError::NoShim(sandbox_id.to_string()))
    }

    fn insert(&self, shim: PodShim) -> Arc<PodShim> {
        let shim = Arc::new(shim);
        if let Ok(mut pods) = self.pods.lock() {
            pods.insert(shim.sandbox_id.clone(), shim.clone());
        }
        shim
    }

    /// Runs the shim's `start` for task `id` of pod `sandbox_id` in `bundle`. For the
    /// pod's first task this launches the pod's shim; for later ones the shim finds the
    /// pod's server through the grouping annotations and answers its address.
    pub(crate) async fn start(
        &self,
        binary: &Path,
        sandbox_id: &str,
        id: &str,
        bundle: &Path,
    ) -> Result<Arc<PodShim>, ShimError> {
        let first = id == sandbox_id;
        // Named before the shim exists, so a crash from here on leaves a bundle
        // whose shim can still be asked to clean up.
        super::orphans::record_shim_binary(bundle, binary).map_err(|source| {
            LaunchError::Bundle {
                path: bundle.to_path_buf(),
                source,
            }
        })?;
        // The server of a pod logs into the FIFO of the bundle it was started in.
        let log_drain = if first {
            Some(drain_shim_log(bundle, sandbox_id)?)
        } else {
            None
        };
        let address = match self.launcher.start(binary, id, bundle).await {
            Ok(address) => address,
            Err(e) => {
                if let Some(task) = log_drain {
                    task.abort();
                }
                return Err(e.into());
            }
        };
        if let Some(existing) = self.get(sandbox_id) {
            if existing.address().address == address.address {
                return Ok(existing);
            }
            tracing::warn!(pod = sandbox_id, old = %existing.address().address, new = %address.address, "shim answered a new address for a known pod");
        }
        let client = self.launcher.connect(&address).await?;
        tracing::debug!(pod = sandbox_id, address = %address.address, version = address.version, "connected to shim");
        Ok(self.insert(PodShim {
            sandbox_id: sandbox_id.to_string(),
            binary: binary.to_path_buf(),
            bundle: bundle.to_path_buf(),
            client,
            log_drain,
        }))
    }

    /// The shim for task `id` of pod `sandbox_id`. A shim known to serve a whole pod
    /// in one server (`pod_wide`: ours) and already connected is used as is, without
    /// its `start` action, which would only answer the same address; otherwise
    /// [`Self::start`] asks the binary.
    pub(crate) async fn for_task(
        &self,
        binary: &Path,
        sandbox_id: &str,
        id: &str,
        bundle: &Path,
        pod_wide: bool,
    ) -> Result<Arc<PodShim>, ShimError> {
        match self.get(sandbox_id).filter(|_| pod_wide) {
            Some(shim) => {
                super::orphans::record_shim_binary(bundle, binary).map_err(|source| {
                    LaunchError::Bundle {
                        path: bundle.to_path_buf(),
                        source,
                    }
                })?;
                Ok(shim)
            }
            None => self.start(binary, sandbox_id, id, bundle).await,
        }
    }

    /// After a core restart: reconnects to a pod's shim at its recorded address.
    pub(crate) async fn reconnect(
        &self,
        binary: &Path,
        sandbox_id: &str,
        bundle: &Path,
        address: &ShimAddress,
    ) -> Result<Arc<PodShim>, ShimError> {
        let log_drain = drain_shim_log(bundle, sandbox_id).ok();
        let client = self.launcher.connect(address).await?;
        Ok(self.insert(PodShim {
            sandbox_id: sandbox_id.to_string(),
            binary: binary.to_path_buf(),
            bundle: bundle.to_path_buf(),
            client,
            log_drain,
        }))
    }

    /// Undoes whatever may be left of task `id` in `bundle` without a shim to ask:
    /// the shim binary's `delete` action (force-deletes the task in its runtime by
    /// id), then every process still working in the bundle (a shim server no record
    /// names, a `runc init`) is killed.
    pub(crate) async fn reap(&self, binary: &Path, id: &str, bundle: &Path) {
        if let Err(e) = self.cleanup(binary, id, bundle).await {
            tracing::debug!(task = id, "shim delete: {e}");
        }
        let dir = bundle.to_path_buf();
        let killed = tokio::task::spawn_blocking(move || super::orphans::kill_processes_in(&dir))
            .await
            .unwrap_or(0);
        if killed > 0 {
            tracing::info!(
                task = id,
                killed,
                "killed processes left in the task's bundle"
            );
        }
    }

    /// Stops the pod's shim (its tasks must be deleted first) and forgets it.
    pub(crate) async fn shutdown(&self, sandbox_id: &str) {
        let shim = self.pods.lock().ok().and_then(|mut p| p.remove(sandbox_id));
        let Some(shim) = shim else { return };
        let req = api::ShutdownRequest {
            id: sandbox_id.to_string(),
            now: true,
            ..Default::default()
        };
        match shim.client.shutdown(&req).await {
            // The shim exits while answering: a broken connection is success.
            Ok(_) => {}
            Err(e) if e.is_disconnected() || e.is_not_found() => {}
            Err(e) => tracing::warn!(pod = sandbox_id, "shim shutdown: {e}"),
        }
    }

    /// Forgets a pod's shim without talking to it (it is gone).
    pub(crate) fn forget(&self, sandbox_id: &str) {
        if let Ok(mut pods) = self.pods.lock() {
            pods.remove(sandbox_id);
        }
    }

    /// The shim's own cleanup for task `id` after its server died.
    pub(crate) async fn cleanup(
        &self,
        binary: &Path,
        id: &str,
        bundle: &Path,
    ) -> Result<api::DeleteResponse, ShimError> {
        Ok(self.launcher.delete(binary, id, bundle).await?)
    }
}
