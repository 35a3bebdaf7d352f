//! The context pods and containers live in, exit tracking, shim-death handling and
//! the reconciliation a restarted core runs.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oci_spec::runtime::Capability;
use protocols::shim::api;
use tokio::sync::{mpsc, watch};

use crate::error::CriError;
use crate::image::images::ImageStore;
use crate::logs::ContainerLog;
use crate::network::pinned_ns::{self, PodNamespace};
use crate::runtime::{
    Handler, HandlerRegistry, LiveHandlers, PodShim, RuntimeEvent, ShimAddress, ShimHost,
};
use crate::store::now_nanos;
use crate::store::ContainerState;
use crate::store::{ContainerRecord, SandboxRecord, Store};

/// A process's end, as the shim reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Exit {
    pub status: u32,
    /// Unix nanoseconds.
    pub at: i64,
}

/// Fixed facts the lifecycle needs.
#[derive(Debug, Clone)]
pub struct PodRuntimeConfig {
    /// Bundles (config.json, FIFOs, shim address) live here: `<runroot>/bundles/<id>`.
    pub bundles_dir: PathBuf,
    /// Container upper/work dirs: `<root>/containers/<id>`.
    pub containers_dir: PathBuf,
    pub pause_rootfs: PathBuf,
    /// The run root: pinned pod namespaces live in `netns/`, `utsns/` and `ipcns/`
    /// under it, one file per pod id.
    pub run_root: PathBuf,
    /// How container root filesystems are built (`[crio] storage_driver`).
    pub storage_driver: crate::storage::rootfs::StorageDriver,
    pub systemd_cgroup: bool,
    pub held_capabilities: HashSet<Capability>,
    /// The daemon's own `oom_score_adj`: nothing may ask for less.
    pub min_oom_score_adj: i32,
    /// `[crio.runtime] pids_limit` (<= 0 = unlimited).
    pub pids_limit: i64,
    /// `[crio.runtime]`'s node-wide defaults (capabilities, env, ulimits,
    /// sysctls, mounts, devices, hooks, seccomp and AppArmor).
    pub node: super::node_defaults::LiveNode,
    /// Pods' hostPorts are mapped (`[crio.runtime] disable_hostport_mapping`
    /// false).
    pub hostport_mapping: bool,
    /// The Prometheus families the pods update (OOM kills, shim starts...).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// `[crio] log_dir`: pods the kubelet gives no log directory log in
    /// `<log_dir>/<pod id>`.
    pub log_dir: PathBuf,
    /// `[crio.runtime] log_size_max` (< 0 = no limit).
    pub log_size_max: i64,
    /// `[crio.image] image_volumes`: `mkdir`, `bind` or `ignore`.
    pub image_volumes: String,
    /// `[crio.runtime] cdi_spec_dirs`, lowest priority first.
    pub cdi_spec_dirs: Vec<PathBuf>,
    /// `[crio.runtime] drop_infra_ctr`.
    pub drop_infra: bool,
    /// The kernel's facts specs depend on (AppArmor, SELinux, swap accounting...).
    pub host: crate::spec::HostFacts,
    /// The CRI pod metric groups served (`[crio.stats] included_pod_metrics`, less
    /// what the host cannot serve), fixed for the daemon's life.
    pub metric_groups: Vec<crate::pods::container::metrics::MetricGroup>,
}

/// Serializes operations on one pod or container.
#[derive(Debug, Default)]
pub(crate) struct KeyedLocks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl KeyedLocks {
    pub(crate) async fn lock(&self, key: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = self
            .locks
            .lock()
            .map(|mut l| l.entry(key.to_string()).or_default().clone())
            .unwrap_or_default();
        lock.lock_owned().await
    }

    fn remove(&self, key: &str) {
        if let Ok(mut l) = self.locks.lock() {
            l.remove(key);
        }
    }
}

/// Pods and containers: their records, shims, exits and logs.
#[derive(Debug)]
pub struct PodRuntime {
    pub config: PodRuntimeConfig,
    pub store: Arc<Store>,
    pub images: Arc<ImageStore>,
    /// The handlers, replaced whole by a reload.
    pub(crate) handlers: LiveHandlers,
    pub shims: ShimHost,
    pub network: crate::network::PodNetworks,
    pub(crate) locks: KeyedLocks,
    /// The names records hold; locked while a name is checked and reserved.
    pub(crate) names: tokio::sync::Mutex<super::names::NameIndex>,
    exits: Mutex<HashMap<String, watch::Sender<Option<Exit>>>>,
    /// Containers whose task their shim confirmed deleted when they exited.
    tasks_deleted: Mutex<HashSet<String>>,
    /// The pids of created containers not started yet: their records get the pid
    /// with the start (a restart takes it from the shim).
    created_pids: Mutex<HashMap<String, u32>>,
    pub(crate) logs: Mutex<HashMap<String, ContainerLog>>,
    /// Running containers' output tees and stdin, for attach.
    pub(crate) attach: Mutex<HashMap<String, crate::pods::container::AttachIo>>,
    /// Previous CPU samples for `usage_nano_cores`.
    pub(crate) cpu_samples: crate::pods::container::stats::CpuSamples,
    /// `GetContainerEvents` subscribers.
    pub(crate) cri_events: tokio::sync::broadcast::Sender<protocols::cri::ContainerEventResponse>,
}

impl PodRuntime {
    pub(crate) fn new(
        config: PodRuntimeConfig,
        store: Arc<Store>,
        images: Arc<ImageStore>,
        handlers: HandlerRegistry,
        shims: ShimHost,
        network: crate::network::PodNetworks,
    ) -> Self {
        Self {
            config,
            store,
            images,
            handlers: LiveHandlers::new(handlers),
            shims,
            network,
            locks: KeyedLocks::default(),
            names: tokio::sync::Mutex::default(),
            exits: Mutex::new(HashMap::new()),
            tasks_deleted: Mutex::new(HashSet::new()),
            created_pids: Mutex::new(HashMap::new()),
            logs: Mutex::new(HashMap::new()),
            attach: Mutex::new(HashMap::new()),
            cpu_samples: Default::default(),
            cri_events: super::sandbox::cri_events::channel(),
        }
    }

    /// The handler a new pod named `name` gets.
    pub(crate) fn handler(&self, name: &str) -> Result<Handler, CriError> {
        let handlers = self.handlers.current();
        handlers.resolve(name).cloned().ok_or_else(|| {
            CriError::InvalidArgument(format!(
                "runtime handler {name:?} is not configured (configured: {})",
                handlers.names().join(", ")
            ))
        })
    }

    /// The handler an existing pod runs on: the one it was started with, even
    /// when a reload has changed or removed it since.
    pub(crate) fn pod_handler(&self, pod: &SandboxRecord) -> Result<Handler, CriError> {
        self.handlers
            .for_pod(&pod.id, &pod.runtime_handler)
            .ok_or_else(|| {
                CriError::FailedPrecondition(format!(
                    "pod sandbox {}: its runtime handler {:?} is no longer configured",
                    pod.id, pod.runtime_handler
                ))
            })
    }

    /// Starts new pods on `next` from now on; pods already running keep the
    /// handler they were started with.
    pub(crate) fn replace_handlers(
        &self,
        next: HandlerRegistry,
    ) -> Result<crate::runtime::live::HandlerChanges, CriError> {
        let pods = self.store.list::<SandboxRecord>()?;
        Ok(self
            .handlers
            .replace(next, pods.into_iter().map(|p| (p.id, p.runtime_handler))))
    }

    pub(crate) fn shim_binary(&self, handler: &Handler) -> Result<PathBuf, CriError> {
        self.handlers.current().locate_shim(handler).ok_or_else(|| {
            CriError::FailedPrecondition(format!(
                "runtime handler {:?}: shim v2 binary {:?} not found or not executable",
                handler.name,
                handler.shim_binary()
            ))
        })
    }

    pub(crate) fn bundle_dir(&self, id: &str) -> PathBuf {
        self.config.bundles_dir.join(id)
    }

    fn exit_channel(&self, id: &str) -> watch::Sender<Option<Exit>> {
        let mut exits = match self.exits.lock() {
            Ok(e) => e,
            Err(poisoned) => poisoned.into_inner(),
        };
        exits
            .entry(id.to_string())
            .or_insert_with(|| watch::channel(None).0)
            .clone()
    }

    /// The record named by `id` or by a unique prefix of ids, as crictl accepts
    /// them; an empty or ambiguous `id` is `InvalidArgument` naming `what`.
    pub(crate) fn find_by_id_or_prefix<R: crate::store::Record>(
        &self,
        id: &str,
        what: &str,
    ) -> Result<Option<R>, CriError> {
        if id.is_empty() {
            return Err(CriError::InvalidArgument(format!("{what} id is required")));
        }
        if let Some(record) = self.store.get::<R>(id)? {
            return Ok(Some(record));
        }
        let mut matches = self
            .store
            .list::<R>()?
            .into_iter()
            .filter(|r| r.id().starts_with(id));
        match (matches.next(), matches.next()) {
            (None, _) => Ok(None),
            (Some(only), None) => Ok(Some(only)),
            (Some(_), Some(_)) => Err(CriError::InvalidArgument(format!(
                "{what} id prefix {id:?} is ambiguous"
            ))),
        }
    }

    /// Whether container `id`'s task is known deleted from its shim.
    pub(crate) fn task_deleted(&self, id: &str) -> bool {
        self.tasks_deleted
            .lock()
            .map(|d| d.contains(id))
            .unwrap_or(false)
    }

    pub(crate) fn mark_task_deleted(&self, id: &str) {
        if let Ok(mut d) = self.tasks_deleted.lock() {
            d.insert(id.to_string());
        }
    }

    /// Whether the task `id` is known to have exited.
    pub(crate) fn has_exited(&self, id: &str) -> bool {
        self.exit_channel(id).borrow().is_some()
    }

    /// Waits up to `timeout` for task `id` to exit.
    pub(crate) async fn wait_exit(&self, id: &str, timeout: Duration) -> Option<Exit> {
        let mut rx = self.exit_channel(id).subscribe();
        let waited = tokio::time::timeout(timeout, rx.wait_for(Option::is_some)).await;
        match waited {
            Ok(Ok(exit)) => *exit,
            _ => None,
        }
    }

    /// Notes the pid of a container created and not started yet.
    pub(crate) fn note_created_pid(&self, id: &str, pid: u32) {
        if let Ok(mut pids) = self.created_pids.lock() {
            pids.insert(id.to_string(), pid);
        }
    }

    /// Drops the pid noted at a container's create (its record has it now, or
    /// the container is gone).
    pub(crate) fn forget_created_pid(&self, id: &str) {
        if let Ok(mut pids) = self.created_pids.lock() {
            pids.remove(id);
        }
    }

    /// A container's pid: its record's, or for one created and not started yet
    /// (whose record gets it with the start) the one its create returned.
    pub(crate) fn pid_of(&self, record: &ContainerRecord) -> u32 {
        if record.pid != 0 {
            return record.pid;
        }
        self.created_pids
            .lock()
            .ok()
            .and_then(|pids| pids.get(&record.id).copied())
            .unwrap_or(0)
    }

    /// Drops what is kept in memory for a removed pod or container.
    pub(crate) fn forget(&self, id: &str) {
        if let Ok(mut exits) = self.exits.lock() {
            exits.remove(id);
        }
        if let Ok(mut deleted) = self.tasks_deleted.lock() {
            deleted.remove(id);
        }
        self.forget_created_pid(id);
        if let Ok(mut logs) = self.logs.lock() {
            logs.remove(id);
        }
        if let Ok(mut attach) = self.attach.lock() {
            attach.remove(id);
        }
        self.locks.remove(id);
    }

    /// Follows task `id` of the pod's shim until it exits (the shim's `Wait`), then
    /// records the exit. A broken connection means the shim died.
    pub(crate) fn watch_exit(self: &Arc<Self>, shim: Arc<PodShim>, sandbox_id: String, id: String) {
        let this = self.clone();
        let _ = self.exit_channel(&id);
        tokio::spawn(async move {
            let req = api::WaitRequest {
                id: id.clone(),
                ..Default::default()
            };
            match shim.client.wait(&req).await {
                Ok(resp) => {
                    let at = resp.exited_at.as_ref().map_or_else(now_nanos, |t| {
                        t.seconds * 1_000_000_000 + i64::from(t.nanos)
                    });
                    this.record_exit(&id, resp.exit_status, at).await;
                    this.release_after_exit(&id).await;
                }
                Err(e) if e.is_disconnected() => {
                    this.shim_lost(&sandbox_id, &shim, &e.to_string()).await;
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => tracing::warn!(task = %id, "wait: {e}"),
            }
        });
    }

    /// A call to `shim` found its connection gone. Whoever sees it (a task's Wait,
    /// a Create) reports it; many see the same death, and only the first, while
    /// `shim` is still the pod's, handles it. A second call confirms it before the
    /// pod is given up: a dead shim answers nothing any more, a live one that lost
    /// one call still does.
    pub(crate) async fn shim_lost(&self, sandbox_id: &str, shim: &Arc<PodShim>, cause: &str) {
        let current = |s: Arc<PodShim>| Arc::ptr_eq(&s, shim);
        if !self.shims.get(sandbox_id).is_some_and(current) {
            return;
        }
        let probe = shim
            .client
            .state(&api::StateRequest {
                id: sandbox_id.to_string(),
                ..Default::default()
            })
            .await;
        // The shim answers for the pod: its pause task, or none (NotFound).
        let answers = match &probe {
            Ok(_) => true,
            Err(e) => e.is_not_found(),
        };
        if answers {
            tracing::warn!(pod = %sandbox_id, "a shim call lost its connection ({cause}), but the shim still answers");
            return;
        }
        tracing::warn!(pod = %sandbox_id, "shim connection lost: {cause}; then {probe:?}");
        self.on_shim_death(sandbox_id).await;
    }

    /// Records that task `id` exited (first report wins). The record is written
    /// before waiters wake, so whoever waited reads the exit from the store.
    pub(crate) async fn record_exit(&self, id: &str, status: u32, at: i64) {
        let tx = self.exit_channel(id);
        if tx.borrow().is_some() {
            return;
        }
        // Idempotent: a concurrent second report finds the record exited already.
        if let Err(e) = self.persist_exit(id, status, at).await {
            tracing::error!(task = %id, "cannot record exit: {e}");
        }
        tx.send_if_modified(|v| {
            if v.is_none() {
                *v = Some(Exit { status, at });
                true
            } else {
                false
            }
        });
    }

    /// Marks container `id` OOM-killed (its reason `OOMKilled` once exited), read
    /// and written in one transaction: a separate read and write raced the exit's
    /// own and put back a stale record, the container running again and its exit
    /// lost.
    /// `(handler, shim pid)` of every pod's shim (from the `shim.pid` file a shim
    /// writes in the bundle it was started in).
    pub(crate) fn shim_pids(&self) -> Vec<(String, u32)> {
        self.shims
            .list()
            .into_iter()
            .filter_map(|(pod, bundle)| {
                let pid = std::fs::read_to_string(bundle.join("shim.pid")).ok()?;
                let handler = self.store.get::<SandboxRecord>(&pod).ok()??.runtime_handler;
                Some((handler, pid.trim().parse().ok()?))
            })
            .collect()
    }

    pub(crate) async fn record_oom(&self, id: &str) -> Result<(), CriError> {
        let key = id.to_string();
        let newly: Option<String> = self
            .store
            .write_async(move |tx| {
                let Some(mut c) = tx.get::<ContainerRecord>(&key)? else {
                    return Ok(None);
                };
                let first = !c.oom_killed;
                c.oom_killed = true;
                if c.state == ContainerState::Exited {
                    c.reason = "OOMKilled".into();
                }
                tx.put(&c)?;
                Ok(first.then_some(c.full_name))
            })
            .await?;
        if let Some(name) = newly {
            self.config.metrics.oom_killed(&name);
        }
        Ok(())
    }

    async fn persist_exit(&self, id: &str, status: u32, at: i64) -> Result<(), CriError> {
        // Read and write in one transaction: StartContainer may update the same record.
        let key = id.to_string();
        let stopped_in: Option<String> = self
            .store
            .write_async(move |tx| {
                let id = key.as_str();
                if let Some(mut c) = tx.get::<ContainerRecord>(id)? {
                    if !c.mark_exited(status, at) {
                        return Ok(None);
                    }
                    tracing::info!(container = %id, status, "container exited");
                    tx.put(&c)?;
                    Ok(Some(c.sandbox_id))
                } else if let Some(mut s) = tx.get::<SandboxRecord>(id)? {
                    if s.mark_not_ready() {
                        tx.put(&s)?;
                        return Ok(Some(s.id));
                    }
                    Ok(None)
                } else {
                    Ok(None)
                }
            })
            .await?;
        if let Some(pod) = stopped_in {
            self.emit(
                id,
                &pod,
                protocols::cri::ContainerEventType::ContainerStoppedEvent,
            );
        }
        Ok(())
    }

    /// The shim of a pod died: let its own `delete` clean up, and report every task
    /// it served as exited (containerd reports 255 when the exit is unknown).
    pub(crate) async fn on_shim_death(&self, sandbox_id: &str) {
        let Some(shim) = self.shims.get(sandbox_id) else {
            return;
        };
        let _lock = self.locks.lock(sandbox_id).await;
        self.shims.forget(sandbox_id);
        // Nothing serves on it any more; gone before the pod reads as broken.
        remove_dead_socket(&shim.address().address).await;
        // The pod is broken from now on, whatever its tasks' cleanup takes.
        if let Ok(Some(mut s)) = self.store.get::<SandboxRecord>(sandbox_id) {
            if s.mark_not_ready() {
                let _ = self.store.put_async(s).await;
            }
        }
        let cgroup_parent = self
            .store
            .get::<SandboxRecord>(sandbox_id)
            .ok()
            .flatten()
            .map(|s| s.cgroup_parent)
            .unwrap_or_default();
        let containers = self.containers_of(sandbox_id).unwrap_or_default();
        for c in containers {
            if c.state == ContainerState::Exited {
                continue;
            }
            let exit = self
                .shims
                .cleanup(&shim.binary, &c.id, &c.bundle)
                .await
                .map(|d| d.exit_status)
                .unwrap_or(255);
            self.kill_leftovers(&cgroup_parent, &c.id).await;
            self.config.metrics.monitor_stopped(&c.full_name);
            if let Ok(Some(mut rec)) = self.store.get::<ContainerRecord>(&c.id) {
                rec.message = "the container's shim died".into();
                let _ = self.store.put_async(rec).await;
            }
            self.record_exit(&c.id, exit, now_nanos()).await;
        }
        let _ = self
            .shims
            .cleanup(&shim.binary, sandbox_id, &shim.bundle)
            .await;
        self.kill_leftovers(&cgroup_parent, sandbox_id).await;
        self.record_exit(sandbox_id, 255, now_nanos()).await;
    }

    /// Undoes whatever may be left of task `id` of pod `sandbox_id` when no shim
    /// answers for it: the shim binary's `delete`, processes in its bundle, then its
    /// cgroup.
    pub(crate) async fn reap_task(&self, sandbox_id: &str, id: &str, bundle: &Path) {
        if bundle.as_os_str().is_empty() || !bundle.exists() {
            return;
        }
        let pod = self.store.get::<SandboxRecord>(sandbox_id).ok().flatten();
        let binary = crate::runtime::orphans::shim_binary_of(bundle)
            .or_else(|| pod.as_ref().map(|p| p.shim_binary.clone()))
            .filter(|b| !b.as_os_str().is_empty());
        if let Some(binary) = binary {
            self.shims.reap(&binary, id, bundle).await;
        }
        let cgroup_parent = pod.map(|p| p.cgroup_parent).unwrap_or_default();
        self.kill_leftovers(&cgroup_parent, id).await;
    }

    /// Kills what a dead shim's cleanup left of task `id`: the task is reported
    /// exited only once its processes are gone.
    async fn kill_leftovers(&self, cgroup_parent: &str, id: &str) {
        let path = crate::spec::cgroups_path(cgroup_parent, id, self.config.systemd_cgroup);
        let emptied = tokio::task::spawn_blocking(move || {
            crate::runtime::cgroup_kill::kill_all(&path, std::time::Duration::from_secs(10))
        })
        .await
        .unwrap_or(false);
        if !emptied {
            tracing::warn!(task = %id, "processes of a dead shim's task outlived SIGKILL");
        }
    }

    /// Applies shim events. Exits also arrive through `Wait`; whichever is first wins.
    pub(crate) fn spawn_event_loop(
        self: &Arc<Self>,
        mut rx: mpsc::UnboundedReceiver<RuntimeEvent>,
    ) {
        let this = self.clone();
        tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                match event {
                    RuntimeEvent::Exit {
                        container_id,
                        id,
                        exit_status,
                        exited_at,
                        ..
                    } if container_id == id => {
                        this.record_exit(&id, exit_status, exited_at).await;
                    }
                    RuntimeEvent::Exit { .. } => {}
                    RuntimeEvent::Oom { container_id } => {
                        tracing::info!(container = %container_id, "OOM kill reported");
                        if let Err(e) = this.record_oom(&container_id).await {
                            tracing::error!(container = %container_id, "cannot record OOM: {e}");
                        }
                    }
                }
            }
        });
    }

    /// After a restart: reconnect to every pod's shim, pick up exits that happened
    /// while the core was down, follow the tasks still running, reopen their logs.
    pub(crate) async fn recover(self: &Arc<Self>) -> Result<(), CriError> {
        for sandbox in self.store.list::<SandboxRecord>()? {
            if let Err(e) = self.recover_sandbox(&sandbox).await {
                tracing::warn!(pod = %sandbox.id, "recovery: {e}");
            }
        }
        self.unpin_leaked_namespaces()?;
        self.reap_orphan_bundles().await?;
        self.spawn_network_recovery();
        Ok(())
    }

    /// Bundles and container storage no record names (a crash between making them
    /// and recording them, or between removing a record and them): their shim is
    /// asked to clean up, what still works in them is killed, mounts in them are
    /// undone, and they go.
    async fn reap_orphan_bundles(&self) -> Result<(), CriError> {
        // What removals moved aside and a stop or crash kept from deleting.
        for dir in [&self.config.bundles_dir, &self.config.containers_dir] {
            crate::storage::trash::empty(dir);
        }
        let mut known: HashSet<String> = self
            .store
            .list::<SandboxRecord>()?
            .into_iter()
            .map(|s| s.id)
            .collect();
        known.extend(
            self.store
                .list::<ContainerRecord>()?
                .into_iter()
                .map(|c| c.id),
        );
        let orphans = |dir: &Path| -> Vec<PathBuf> {
            std::fs::read_dir(dir)
                .map(|d| {
                    d.flatten()
                        .filter(|e| {
                            e.file_name()
                                .to_str()
                                .is_some_and(|n| !known.contains(n) && !n.starts_with('.'))
                        })
                        .map(|e| e.path())
                        .collect()
                })
                .unwrap_or_default()
        };
        for bundle in orphans(&self.config.bundles_dir) {
            let id = bundle
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            tracing::info!(task = %id, "removing a bundle no record names");
            if let Some(binary) = crate::runtime::orphans::shim_binary_of(&bundle) {
                self.shims.reap(&binary, &id, &bundle).await;
            } else {
                crate::runtime::orphans::kill_processes_in(&bundle);
            }
            self.kill_leftovers("", &id).await;
            let shm = super::sandbox::pod_files::PodFiles::new(&bundle).shm();
            if let Err(e) = super::sandbox::pod_files::unmount_shm(&shm) {
                tracing::warn!(task = %id, "unmount shm: {e}");
            }
            if let Err(e) = std::fs::remove_dir_all(&bundle) {
                tracing::warn!(task = %id, "remove {}: {e}", bundle.display());
            }
        }
        for storage in orphans(&self.config.containers_dir) {
            tracing::info!(dir = %storage.display(), "removing container storage no record names");
            crate::pods::container::image_volumes::release(self.config.storage_driver, &storage);
            match crate::storage::rootfs::release_rootfs(self.config.storage_driver, &storage) {
                Ok(()) => {
                    let _ = std::fs::remove_dir_all(&storage);
                }
                Err(e) => tracing::warn!("{e}"),
            }
        }
        Ok(())
    }

    /// Namespaces pinned by a daemon that crashed before recording (or after
    /// removing) their pod.
    fn unpin_leaked_namespaces(&self) -> Result<(), CriError> {
        let known: HashSet<PathBuf> = self
            .store
            .list::<SandboxRecord>()?
            .into_iter()
            .flat_map(|s| [s.netns_path, s.utsns_path, s.ipcns_path, s.userns_path])
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .collect();
        let dirs = PodNamespace::ALL
            .iter()
            .map(|k| k.dir_name())
            .chain([super::sandbox::USERNS_DIR]);
        for dir in dirs {
            let Ok(entries) = std::fs::read_dir(self.config.run_root.join(dir)) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if !known.contains(&path) {
                    tracing::info!(ns = %path.display(), "unpinning a leaked pod namespace");
                    if let Err(e) = pinned_ns::remove_pinned(&path) {
                        tracing::warn!("{e}");
                    }
                }
            }
        }
        Ok(())
    }

    async fn recover_sandbox(self: &Arc<Self>, sandbox: &SandboxRecord) -> Result<(), CriError> {
        if sandbox.shim_address.is_empty() {
            // The core died while starting this pod: undo all of it (its shim may
            // serve it unrecorded, its pause may be half-created).
            tracing::info!(pod = %sandbox.id, "removing a pod whose start was interrupted");
            self.destroy_sandbox(sandbox).await;
            return Ok(());
        }
        let address = ShimAddress {
            address: sandbox.shim_address.clone(),
            version: sandbox.task_version,
        };
        let shim = match self
            .shims
            .reconnect(&sandbox.shim_binary, &sandbox.id, &sandbox.bundle, &address)
            .await
        {
            Ok(shim) => shim,
            Err(e) => {
                tracing::warn!(pod = %sandbox.id, "shim unreachable ({e}): reporting its tasks exited");
                let shim_binary = sandbox.shim_binary.clone();
                for c in self.containers_of(&sandbox.id)? {
                    if c.state != ContainerState::Exited {
                        let exit = self
                            .shims
                            .cleanup(&shim_binary, &c.id, &c.bundle)
                            .await
                            .map(|d| d.exit_status)
                            .unwrap_or(255);
                        self.record_exit(&c.id, exit, now_nanos()).await;
                    }
                }
                let _ = self
                    .shims
                    .cleanup(&shim_binary, &sandbox.id, &sandbox.bundle)
                    .await;
                self.record_exit(&sandbox.id, 255, now_nanos()).await;
                return Ok(());
            }
        };
        if !sandbox.infra_dropped {
            self.recover_task(&shim, &sandbox.id, &sandbox.id).await;
        }
        for c in self.containers_of(&sandbox.id)? {
            if c.state == ContainerState::Exited {
                continue;
            }
            if c.state == ContainerState::Running || c.state == ContainerState::Created {
                self.reopen_logs(&c);
            }
            self.recover_task(&shim, &sandbox.id, &c.id).await;
        }
        Ok(())
    }

    async fn recover_task(self: &Arc<Self>, shim: &Arc<PodShim>, sandbox_id: &str, id: &str) {
        let state = shim
            .client
            .state(&api::StateRequest {
                id: id.to_string(),
                ..Default::default()
            })
            .await;
        match state {
            Ok(s)
                if s.status.enum_value_or_default()
                    == protocols::shim::types::task::Status::STOPPED =>
            {
                let at = s.exited_at.as_ref().map_or_else(now_nanos, |t| {
                    t.seconds * 1_000_000_000 + i64::from(t.nanos)
                });
                self.record_exit(id, s.exit_status, at).await;
            }
            Ok(s) => {
                let running = s.status.enum_value_or_default()
                    == protocols::shim::types::task::Status::RUNNING;
                // In one transaction: an exit event may be recorded meanwhile. A
                // container created and not started before the core died has no
                // pid in its record (the start records it): the shim has it.
                let (key, pid) = (id.to_string(), s.pid);
                let _ = self
                    .store
                    .write_async(move |tx| {
                        if let Some(mut c) = tx.get::<ContainerRecord>(&key)? {
                            let pid_found = c.pid == 0 && pid != 0;
                            if pid_found {
                                c.pid = pid;
                            }
                            if (running && c.mark_running()) || pid_found {
                                tx.put(&c)?;
                            }
                        }
                        Ok(())
                    })
                    .await;
                self.watch_exit(shim.clone(), sandbox_id.to_string(), id.to_string());
            }
            Err(e) if e.is_not_found() => {
                // The shim does not know it: a Create the core's death cut short. Its
                // runtime may hold it still (`runc init` waiting in "created").
                let bundle = if id == sandbox_id {
                    self.store
                        .get::<SandboxRecord>(id)
                        .ok()
                        .flatten()
                        .map(|s| s.bundle)
                } else {
                    self.store
                        .get::<ContainerRecord>(id)
                        .ok()
                        .flatten()
                        .map(|c| c.bundle)
                };
                if let Some(bundle) = bundle {
                    self.reap_task(sandbox_id, id, &bundle).await;
                }
                self.record_exit(id, 255, now_nanos()).await;
            }
            Err(e) => tracing::warn!(task = %id, "state after restart: {e}"),
        }
    }
}

/// How long a shim whose connection was lost may still hold its listener: the
/// kernel closes a dying process's descriptors one by one.
const DEAD_SHIM_LISTENER_GRACE: Duration = Duration::from_secs(2);

/// Removes the socket of a shim whose connection was lost, once nothing listens
/// on it any more; a shim still listening after the grace keeps its socket.
async fn remove_dead_socket(address: &str) {
    let path = address.strip_prefix("unix://").unwrap_or(address);
    if path.is_empty() {
        return;
    }
    let deadline = tokio::time::Instant::now() + DEAD_SHIM_LISTENER_GRACE;
    while std::os::unix::net::UnixStream::connect(path).is_ok() {
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(socket = %path, "a shim whose connection was lost still listens: its socket is kept");
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    match std::fs::remove_file(path) {
        Ok(()) => tracing::debug!(socket = %path, "removed a dead shim's socket"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(socket = %path, "cannot remove a dead shim's socket: {e}"),
    }
}
