//! Containers: created as tasks in their pod's shim (rootfs from the image's layers,
//! stdio drained into the CRI log), started, stopped with their stop signal and a
//! grace period, removed; `ExecSync` through the shim's `Exec`.

mod attach;
mod cgroup_metrics;
mod exec;
mod exec_stream;
pub(crate) mod image_volumes;
pub(crate) use attach::{AttachIo, AttachStream, SharedStdin};
pub(crate) use exec_stream::ExecStream;
pub(crate) use image_volumes::ImageVolume;
pub(crate) use spec_input::is_image_volume;
pub(crate) mod metrics;
pub(crate) mod process;
pub(crate) mod security;
mod signal;
mod spec_input;
pub(crate) mod stats;
mod update;
mod validate;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use protocols::cri;
use protocols::shim::api;

use crate::error::CriError;
use crate::image::image_config::ImageConfig;
use crate::logs::{drain_to_log, ContainerLog, StdioFifos, StdioPaths, Stream};
use crate::pods::PodRuntime;
use crate::runtime::bundle::write_spec;
use crate::spec;
use crate::storage::{rootfs, trash};
use crate::store::{new_id, now_nanos};
use crate::store::{ContainerRecord, ImageRecord, MountRecord, SandboxRecord};
use crate::store::{ContainerState, SandboxState};
use signal::parse_signal;

/// How long SIGKILL gets before StopContainer gives up.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// CRI-O's unique name of a container.
pub(crate) fn full_name(meta: &cri::ContainerMetadata, pod: &SandboxRecord) -> String {
    format!(
        "k8s_{}_{}_{}_{}_{}",
        meta.name, pod.name, pod.namespace, pod.uid, meta.attempt
    )
}

fn container_state(record: &ContainerRecord) -> cri::ContainerState {
    match record.state {
        ContainerState::Created => cri::ContainerState::ContainerCreated,
        ContainerState::Running => cri::ContainerState::ContainerRunning,
        ContainerState::Exited => cri::ContainerState::ContainerExited,
    }
}

fn cri_resources(r: &spec::Resources) -> cri::LinuxContainerResources {
    cri::LinuxContainerResources {
        cpu_period: r.cpu_period,
        cpu_quota: r.cpu_quota,
        cpu_shares: r.cpu_shares,
        memory_limit_in_bytes: r.memory_limit,
        oom_score_adj: r.oom_score_adj,
        cpuset_cpus: r.cpuset_cpus.clone(),
        cpuset_mems: r.cpuset_mems.clone(),
        hugepage_limits: r
            .hugepages
            .iter()
            .map(|(page_size, limit)| cri::HugepageLimit {
                page_size: page_size.clone(),
                limit: *limit,
            })
            .collect(),
        unified: r.unified.clone().into_iter().collect(),
        memory_swap_limit_in_bytes: r.memory_swap,
    }
}

fn container_metadata(record: &ContainerRecord) -> cri::ContainerMetadata {
    cri::ContainerMetadata {
        name: record.name.clone(),
        attempt: record.attempt,
    }
}

/// What a container's bundle is made from: owned, as it is made on the blocking pool.
#[derive(Debug, Clone)]
struct BundleInputs {
    pod: SandboxRecord,
    config: cri::ContainerConfig,
    image: ImageRecord,
    image_config: ImageConfig,
    volumes: Vec<ImageVolume>,
    /// The process's command line (the request's over the image's).
    args: Vec<String>,
}

/// A container name claimed by a CreateContainer in flight, settled when the
/// request ends; a request dropped midway (its client gone) settles it from a task.
struct NameClaim {
    pods: Arc<PodRuntime>,
    id: Option<String>,
}

impl NameClaim {
    async fn settle(mut self) {
        if let Some(id) = self.id.take() {
            self.pods.names.lock().await.settle(&id);
        }
    }
}

impl Drop for NameClaim {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            let pods = Arc::clone(&self.pods);
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move { pods.names.lock().await.settle(&id) });
            }
        }
    }
}

/// Unmounts a container's image volumes and rootfs and moves its storage and bundle
/// into their trashes; returns the trashed directories, to delete off the request
/// path. Blocking (unmounts, renames).
fn retire_container_files(
    driver: rootfs::StorageDriver,
    id: &str,
    storage: &Path,
    bundle: &Path,
) -> Vec<PathBuf> {
    image_volumes::release(driver, storage);
    let mut trashed = Vec::new();
    match rootfs::retire_container_dir(storage) {
        Ok(dir) => trashed.extend(dir),
        // It stays; the orphan sweep at the next start tries again.
        Err(e) => tracing::warn!(container = %id, "{e}"),
    }
    if !bundle.as_os_str().is_empty() {
        match trash::move_to_trash(bundle) {
            Ok(dir) => trashed.extend(dir),
            Err(e) => tracing::warn!(container = %id, "remove {}: {e}", bundle.display()),
        }
    }
    trashed
}

/// How long the steps of a container's create took.
struct CreateSteps {
    /// Storage, rootfs mount and spec.
    bundle: Duration,
    /// Log and FIFOs.
    files: Duration,
    /// The record's commit.
    record: Duration,
    /// The pod's shim looked up and its Create (the runtime's create inside it).
    shim_create: Duration,
}

use super::ms;

impl PodRuntime {
    /// CreateContainer, with the image already resolved by the caller: the record
    /// planned and its name claimed, then its bundle, its record and its task.
    pub(crate) async fn create_container(
        self: &Arc<Self>,
        sandbox_id: &str,
        config: &cri::ContainerConfig,
        image: &ImageRecord,
        image_config: &ImageConfig,
        volumes: &[ImageVolume],
    ) -> Result<String, CriError> {
        let started = std::time::Instant::now();
        let meta = validate::request(config)?;
        let pod = self
            .sandbox(sandbox_id)?
            .ok_or_else(|| CriError::NotFound(format!("pod sandbox {sandbox_id} not found")))?;
        let (mut record, args) =
            self.plan_container(&pod, meta, config, image, image_config, volumes)?;
        let id = record.id.clone();
        let claim = self.claim_name(&record).await?;
        let _lock = self.locks.lock(&id).await;
        let claimed = started.elapsed();
        let inputs = BundleInputs {
            pod,
            config: config.clone(),
            image: image.clone(),
            image_config: image_config.clone(),
            volumes: volumes.to_vec(),
            args,
        };
        let outcome = self.create_task(&mut record, inputs).await;
        if let Err(e) = &outcome {
            tracing::warn!(container = %id, "CreateContainer failed, cleaning up: {e}");
            self.destroy_container(&record).await;
        }
        claim.settle().await;
        let steps = outcome?;
        // Where a create's time goes (docs/performance.md).
        tracing::debug!(
            container = %id,
            claim_ms = ms(claimed),
            bundle_ms = ms(steps.bundle),
            files_ms = ms(steps.files),
            record_ms = ms(steps.record),
            shim_create_ms = ms(steps.shim_create),
            total_ms = ms(started.elapsed()),
            "CreateContainer steps"
        );
        self.emit(
            &id,
            &record.sandbox_id,
            cri::ContainerEventType::ContainerCreatedEvent,
        );
        Ok(id)
    }

    /// The request checked and its record: what is to be created, nothing made yet.
    /// `meta` is the request's, already checked by [`validate::request`].
    fn plan_container(
        &self,
        pod: &SandboxRecord,
        meta: &cri::ContainerMetadata,
        config: &cri::ContainerConfig,
        image: &ImageRecord,
        image_config: &ImageConfig,
        volumes: &[ImageVolume],
    ) -> Result<(ContainerRecord, Vec<String>), CriError> {
        if pod.state != SandboxState::Ready {
            return Err(CriError::FailedPrecondition(format!(
                "pod sandbox {} is not ready",
                pod.id
            )));
        }
        let args = process::command_line(&config.command, &config.args, &image_config.config)
            .ok_or_else(|| {
                CriError::InvalidArgument(format!(
                    "container {:?}: no command given and the image has no Entrypoint or Cmd",
                    meta.name
                ))
            })?;
        // The container's own stop signal wins over the image's (KEP-4960).
        let asked = signal::from_cri(config.stop_signal)
            .map_err(|e| CriError::InvalidArgument(format!("container {:?}: {e}", meta.name)))?;
        let stop_signal = asked.unwrap_or_else(|| image_config.config.stop_signal.clone());
        if parse_signal(&stop_signal).is_none() {
            return Err(CriError::InvalidArgument(format!(
                "image {}: unknown StopSignal {stop_signal:?}",
                image.id
            )));
        }
        let id = new_id();
        let bundle = self.bundle_dir(&id);
        // No log_path: CRI-O's `<log directory>/<container id>.log`.
        let log_path = if config.log_path.is_empty() && !pod.log_directory.is_empty() {
            Some(Path::new(&pod.log_directory).join(format!("{id}.log")))
        } else {
            validate::log_file(&pod.log_directory, &config.log_path)?
        }
        .map(|p| p.display().to_string())
        .unwrap_or_default();
        let record = ContainerRecord {
            id: id.clone(),
            sandbox_id: pod.id.clone(),
            name: meta.name.clone(),
            attempt: meta.attempt,
            image_ref: image.id.clone(),
            image_volumes: volumes.iter().map(|v| v.image.id.clone()).collect(),
            created_at: now_nanos(),
            state: ContainerState::Created,
            labels: config.labels.clone().into_iter().collect(),
            annotations: config.annotations.clone().into_iter().collect(),
            full_name: full_name(meta, pod),
            image: config
                .image
                .as_ref()
                .map(|i| i.image.clone())
                .unwrap_or_default(),
            image_name: image.repo_tags.first().cloned().unwrap_or_default(),
            log_path,
            log_path_relative: config.log_path.clone(),
            bundle: bundle.clone(),
            tty: config.tty,
            stdin: config.stdin,
            stdin_once: config.stdin_once,
            stop_signal,
            mounts: config
                .mounts
                .iter()
                .map(|m| MountRecord {
                    container_path: m.container_path.clone(),
                    host_path: m.host_path.clone(),
                    // Image volumes are read-only whatever the request says.
                    readonly: m.readonly || is_image_volume(m),
                    propagation: m.propagation,
                    image: m
                        .image
                        .as_ref()
                        .map(|i| i.image.clone())
                        .unwrap_or_default(),
                    image_sub_path: m.image_sub_path.clone(),
                })
                .collect(),
            ..Default::default()
        };
        Ok((record, args))
    }

    /// Claims the container's name, if it is free: held from now on, by the claim
    /// until the record is committed.
    async fn claim_name(self: &Arc<Self>, record: &ContainerRecord) -> Result<NameClaim, CriError> {
        let mut names = self.names.lock().await;
        if let Some(holder) = names.holder::<ContainerRecord>(&self.store, &record.full_name)? {
            return Err(CriError::AlreadyExists(format!(
                "container name {:?} is reserved by {holder}",
                record.full_name
            )));
        }
        names.claim(record);
        Ok(NameClaim {
            pods: Arc::clone(self),
            id: Some(record.id.clone()),
        })
    }

    /// Commits the container's record, whole, if its images are still there
    /// (checked in the same transaction).
    async fn commit_container(
        &self,
        record: &ContainerRecord,
        image: &ImageRecord,
    ) -> Result<(), CriError> {
        let held: Vec<String> = std::iter::once(&image.id)
            .chain(&record.image_volumes)
            .cloned()
            .collect();
        let recorded = record.clone();
        let removed = self
            .store
            .write_async(move |tx| {
                for id in held {
                    if tx.get::<ImageRecord>(&id)?.is_none() {
                        return Ok(Some(id));
                    }
                }
                tx.put(&recorded)?;
                Ok(None)
            })
            .await?;
        match removed {
            Some(id) => Err(CriError::NotFound(format!("image {id} was removed"))),
            None => Ok(()),
        }
    }

    /// `log_size_max` as a limit (`None` = unlimited).
    fn log_size_max(&self) -> Option<u64> {
        u64::try_from(self.config.log_size_max)
            .ok()
            .filter(|m| *m > 0)
    }

    fn container_storage(&self, id: &str) -> PathBuf {
        self.config.containers_dir.join(id)
    }

    /// The container's bundle (on the blocking pool), its stdio and log, its
    /// record, then its task in the pod's shim.
    async fn create_task(
        self: &Arc<Self>,
        record: &mut ContainerRecord,
        inputs: BundleInputs,
    ) -> Result<CreateSteps, CriError> {
        let started = std::time::Instant::now();
        let this = Arc::clone(self);
        let mut planned = record.clone();
        // On failure the record stays as planned: cleanup needs only its paths.
        let (planned, inputs) = super::off_worker(move || {
            this.make_container_bundle(&mut planned, &inputs)?;
            Ok((planned, inputs))
        })
        .await?;
        *record = planned;
        let bundle_done = std::time::Instant::now();
        let id = record.id.clone();
        let bundle = record.bundle.clone();
        let (config, pod) = (&inputs.config, &inputs.pod);
        let log = ContainerLog::open(&id, Path::new(&record.log_path), self.log_size_max())?;
        let mut fifos = StdioFifos::create(&bundle, "io", config.tty)?;
        if config.stdin {
            fifos = fifos.with_stdin(&bundle, "io")?;
        }
        record.stdout_fifo = fifos.paths.stdout.clone();
        record.stderr_fifo = fifos.paths.stderr.clone();
        record.stdin_fifo = fifos.paths.stdin.clone();
        let files_done = std::time::Instant::now();
        // One commit, of everything but the pid, before the runtime sees the
        // container: a crash before it lands leaves directories no record names, a
        // crash after it a record whose task the shim has or not, both of which
        // start-up settles.
        self.commit_container(record, &inputs.image).await?;
        crate::failpoint::hit("create_container.recorded");
        let recorded = std::time::Instant::now();

        let handler = self.pod_handler(pod)?;
        let pod_wide = handler.features.sandbox_task_optional;
        let shim = self
            .shims
            .for_task(&pod.shim_binary, &pod.id, &id, &bundle, pod_wide)
            .await?;
        let create = api::CreateTaskRequest {
            id: id.clone(),
            bundle: bundle.display().to_string(),
            terminal: config.tty,
            stdin: fifos.paths.stdin.clone(),
            stdout: fifos.paths.stdout.clone(),
            stderr: fifos.paths.stderr.clone(),
            options: handler.shim_options(self.config.systemd_cgroup).into(),
            ..Default::default()
        };
        crate::failpoint::while_awaiting("create_container.creating");
        let created = match shim.client.create(&create).await {
            Ok(created) => created,
            Err(e) => {
                if e.is_disconnected() {
                    // A pod without pause may have no Wait watching its shim: the
                    // death is reported from here too (after this request lets go
                    // of the pod), and the pod goes NotReady.
                    let this = Arc::clone(self);
                    let (pod_id, shim, cause) = (pod.id.clone(), shim.clone(), e.to_string());
                    tokio::spawn(async move { this.shim_lost(&pod_id, &shim, &cause).await });
                }
                return Err(e.into());
            }
        };
        crate::failpoint::hit("create_container.created");
        let steps = CreateSteps {
            bundle: bundle_done - started,
            files: files_done - bundle_done,
            record: recorded - files_done,
            shim_create: recorded.elapsed(),
        };
        // The pid goes into the record with the start (a restart asks the shim).
        self.note_created_pid(&id, created.pid);
        fifos.release();
        self.spawn_log_drains(&id, fifos, log);
        self.watch_exit(shim, pod.id.clone(), id);
        Ok(steps)
    }

    /// The container's storage and its rootfs from the image's layers; in a pod
    /// with its own user namespace, ID-mapped, with that namespace opened.
    fn prepare_container_rootfs(
        &self,
        pod: &SandboxRecord,
        image: &ImageRecord,
        storage: &Path,
    ) -> Result<(PathBuf, Option<std::fs::File>), CriError> {
        let lowers = self
            .images
            .layers
            .diff_paths(&image.layers)
            .map_err(CriError::internal)?;
        let group = pod.userns.map(|m| m.gids.host_id);
        crate::storage::private_dir(storage, group)
            .map_err(|e| CriError::internal_in(format!("create {}", storage.display()), e))?;
        let (mappings, path) = match (&pod.userns, pod.userns_path.as_str()) {
            (Some(m), path) if !path.is_empty() => (m, path),
            _ => {
                let rootfs = rootfs::prepare_rootfs(self.config.storage_driver, &lowers, storage)
                    .map_err(CriError::internal)?;
                return Ok((rootfs, None));
            }
        };
        let userns = std::fs::File::open(path).map_err(|e| {
            CriError::internal_in(format!("pod {} user namespace {path}", pod.id), e)
        })?;
        let rootfs = rootfs::prepare_rootfs_idmapped(
            self.config.storage_driver,
            &lowers,
            storage,
            &rootfs::RootIdmap {
                userns: &userns,
                root: (mappings.uids.host_id, mappings.gids.host_id),
            },
        )
        .map_err(CriError::internal)?;
        Ok((rootfs, Some(userns)))
    }

    /// The container's bundle directory, storage and rootfs (ID-mapped in a pod
    /// with its own user namespace), image volumes, and its spec, written.
    /// Blocking (mounts, copies, writes). Fills in the record's ids and resources.
    fn make_container_bundle(
        &self,
        record: &mut ContainerRecord,
        inputs: &BundleInputs,
    ) -> Result<(), CriError> {
        let BundleInputs {
            pod,
            config,
            image,
            image_config,
            volumes,
            args,
        } = inputs;
        let id = record.id.clone();
        let bundle = record.bundle.clone();
        let group = pod.userns.map(|m| m.gids.host_id);
        crate::storage::private_dir(&bundle, group)
            .map_err(|e| CriError::internal_in(format!("create bundle {}", bundle.display()), e))?;
        let storage = self.container_storage(&id);
        let (rootfs, userns) = self.prepare_container_rootfs(pod, image, &storage)?;
        crate::failpoint::hit("create_container.rootfs_mounted");

        let mut input = spec_input::container_spec_input(
            self,
            pod,
            record,
            config,
            image_config,
            &rootfs,
            &storage,
            args.clone(),
        )?;
        crate::cdi::inject(
            &self.config.cdi_spec_dirs,
            &crate::cdi::requested(config),
            &mut input,
        )
        .map_err(|e| CriError::InvalidArgument(e.to_string()))?;
        let volume_mounts = image_volumes::prepare(
            self.config.storage_driver,
            &self.images.layers,
            &storage,
            volumes,
        )?;
        for mount in volume_mounts {
            input
                .mounts
                .retain(|m| m.container_path != mount.container_path);
            input.mounts.push(mount);
        }
        if let Some(file) = &userns {
            for (i, mount) in input.mounts.iter_mut().enumerate() {
                if mount.idmapped {
                    mount.host_path =
                        rootfs::stage_idmapped_volume(&storage, i, &mount.host_path, file)
                            .map_err(CriError::internal)?;
                }
            }
        }
        record.uid = input.uid;
        record.gid = input.gid;
        record.supplemental_groups = input.additional_gids.clone();
        record.resources = input.resources.clone();
        let oci = spec::container(&input, &self.config.held_capabilities)
            .map_err(|e| CriError::InvalidArgument(e.to_string()))?;
        write_spec(&bundle, &oci).map_err(|e| {
            CriError::internal_in(format!("write {}/config.json", bundle.display()), e)
        })
    }

    fn spawn_log_drains(&self, id: &str, mut fifos: StdioFifos, log: ContainerLog) {
        let (tee, _) = tokio::sync::broadcast::channel(256);
        // Both streams are counted before either drain runs: the file closes after
        // the last one ends.
        for _ in fifos.stdout.iter().chain(fifos.stderr.iter()) {
            log.stream_opened();
        }
        if let Some(out) = fifos.stdout.take() {
            tokio::spawn(drain_to_log(
                out,
                Stream::Stdout,
                log.clone(),
                Some(tee.clone()),
            ));
        }
        if let Some(err) = fifos.stderr.take() {
            tokio::spawn(drain_to_log(
                err,
                Stream::Stderr,
                log.clone(),
                Some(tee.clone()),
            ));
        }
        if let Ok(mut logs) = self.logs.lock() {
            logs.insert(id.to_string(), log);
        }
        if let Ok(mut attach) = self.attach.lock() {
            attach.insert(
                id.to_string(),
                AttachIo {
                    output: tee.downgrade(),
                    stdin: Arc::new(tokio::sync::Mutex::new(fifos.stdin.take())),
                },
            );
        }
    }

    /// After a restart: drain a live container's FIFOs into its log again.
    pub(crate) fn reopen_logs(&self, record: &ContainerRecord) {
        let paths = StdioPaths {
            stdin: record.stdin_fifo.clone(),
            stdout: record.stdout_fifo.clone(),
            stderr: record.stderr_fifo.clone(),
        };
        let opened = StdioFifos::reopen(&paths).and_then(|f| {
            Ok((
                f,
                ContainerLog::open(&record.id, Path::new(&record.log_path), self.log_size_max())?,
            ))
        });
        match opened {
            Ok((fifos, log)) => self.spawn_log_drains(&record.id, fifos, log),
            Err(e) => tracing::warn!(container = %record.id, "cannot reopen output: {e}"),
        }
    }

    /// Bytes of a container's output dropped because its log could not be written.
    pub(crate) fn log_dropped_bytes(&self, id: &str) -> u64 {
        self.logs
            .lock()
            .ok()
            .and_then(|l| l.get(id).map(ContainerLog::dropped_bytes))
            .unwrap_or(0)
    }

    /// ReopenContainerLog.
    pub(crate) fn reopen_container_log(&self, id: &str) -> Result<(), CriError> {
        let record = self.container(id)?;
        if record.state != ContainerState::Running {
            return Err(CriError::FailedPrecondition(format!(
                "container {} is not running",
                record.id
            )));
        }
        let log = self
            .logs
            .lock()
            .ok()
            .and_then(|l| l.get(&record.id).cloned());
        match log {
            Some(log) => Ok(log.reopen()?),
            None => Err(CriError::Internal(format!(
                "container {}: no log writer",
                record.id
            ))),
        }
    }

    /// Finds a container by id or unique id prefix; NotFound otherwise.
    pub(crate) fn container(&self, id: &str) -> Result<ContainerRecord, CriError> {
        self.find_container(id)?
            .ok_or_else(|| CriError::NotFound(format!("container {id} not found")))
    }

    /// Finds a container by id or unique id prefix.
    pub(crate) fn find_container(&self, id: &str) -> Result<Option<ContainerRecord>, CriError> {
        self.find_by_id_or_prefix(id, "container")
    }

    /// StartContainer.
    pub(crate) async fn start_container(self: &Arc<Self>, id: &str) -> Result<(), CriError> {
        let record = self.container(id)?;
        let _lock = self.locks.lock(&record.id).await;
        let record = self.container(&record.id)?;
        if record.state != ContainerState::Created {
            return Err(CriError::FailedPrecondition(format!(
                "container {} is {}, not created",
                record.id, record.state
            )));
        }
        let shim = self.shims.require(&record.sandbox_id)?;
        // Taken before Start: a process that exits at once must not finish before it
        // started.
        let started_at = now_nanos();
        let started = shim
            .client
            .start(&api::StartRequest {
                id: record.id.clone(),
                ..Default::default()
            })
            .await?;
        self.forget_created_pid(&record.id);
        // One transaction: the exit of a process that ends at once may be recorded
        // concurrently, and must not be overwritten with "running".
        let (key, pid) = (record.id.clone(), started.pid);
        self.store
            .write_async(move |tx| {
                let Some(mut current) = tx.get::<ContainerRecord>(&key)? else {
                    return Ok(());
                };
                current.pid = pid;
                current.started_at = started_at;
                current.mark_running();
                tx.put(&current)
            })
            .await?;
        self.emit(
            &record.id,
            &record.sandbox_id,
            cri::ContainerEventType::ContainerStartedEvent,
        );
        Ok(())
    }

    /// StopContainer: the stop signal, `timeout` seconds, then SIGKILL. Idempotent.
    pub(crate) async fn stop_container(&self, id: &str, timeout: i64) -> Result<(), CriError> {
        let Some(record) = self.find_container(id)? else {
            return Ok(());
        };
        let _lock = self.locks.lock(&record.id).await;
        let record = self.container(&record.id)?;
        if record.state == ContainerState::Exited || self.has_exited(&record.id) {
            return Ok(());
        }
        let Some(shim) = self.shims.get(&record.sandbox_id) else {
            return Ok(());
        };
        self.stop_task(&record, &shim, timeout).await?;
        self.release_exited(&record).await;
        Ok(())
    }

    /// The stop signal, `timeout` seconds, SIGKILL; until the task has exited.
    async fn stop_task(
        &self,
        record: &ContainerRecord,
        shim: &crate::runtime::PodShim,
        timeout: i64,
    ) -> Result<(), CriError> {
        let kill = |signal: u32, all: bool| api::KillRequest {
            id: record.id.clone(),
            signal,
            all,
            ..Default::default()
        };
        let ignore_gone = |r: Result<_, crate::runtime::TaskError>| match r {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() || e.is_disconnected() => Ok(()),
            Err(e) => Err(CriError::from(e)),
        };
        if timeout > 0 && record.state == ContainerState::Running {
            let signal = parse_signal(&record.stop_signal).unwrap_or(15);
            ignore_gone(shim.client.kill(&kill(signal, false)).await)?;
            let grace = Duration::from_secs(u64::try_from(timeout).unwrap_or(0));
            if self.wait_exit(&record.id, grace).await.is_some() {
                return Ok(());
            }
        }
        ignore_gone(shim.client.kill(&kill(9, true)).await)?;
        if self.wait_exit(&record.id, KILL_TIMEOUT).await.is_none() {
            return Err(CriError::Internal(format!(
                "container {} did not exit within {KILL_TIMEOUT:?} of SIGKILL",
                record.id
            )));
        }
        Ok(())
    }

    /// What an exited container no longer needs, given up as soon as it exits (as
    /// containerd deletes the task and CRI-O unmounts the rootfs when a container
    /// stops): its task in the shim and its rootfs mount. Its directories, logs and
    /// record stay for RemoveContainer. Call under the container's lock; idempotent.
    pub(crate) async fn release_exited(&self, record: &ContainerRecord) {
        if self.task_deleted(&record.id) {
            return;
        }
        // If the shim does not confirm it, RemoveContainer reaps what is left.
        self.delete_task(record).await;
        let driver = self.config.storage_driver;
        let storage = self.container_storage(&record.id);
        let _ = super::off_worker(move || {
            if let Err(e) = rootfs::unmount_rootfs(driver, &storage) {
                tracing::warn!("{e}");
            }
            Ok(())
        })
        .await;
    }

    /// [`Self::release_exited`] for task `id` once its exit is recorded, when it is a
    /// container's (not a pause task's).
    pub(crate) async fn release_after_exit(&self, id: &str) {
        let _lock = self.locks.lock(id).await;
        if let Ok(Some(record)) = self.store.get::<ContainerRecord>(id) {
            if record.state == ContainerState::Exited {
                self.release_exited(&record).await;
            }
        }
    }

    /// RemoveContainer: kills it if running, deletes its task (unless its exit did),
    /// unmounts and removes its rootfs and bundle, then its record. Idempotent.
    pub(crate) async fn remove_container(&self, id: &str) -> Result<(), CriError> {
        let Some(record) = self.find_container(id)? else {
            return Ok(());
        };
        self.stop_container(&record.id, 0).await?;
        let _lock = self.locks.lock(&record.id).await;
        let Some(record) = self.store.get::<ContainerRecord>(&record.id)? else {
            return Ok(());
        };
        self.destroy_container(&record).await;
        self.cpu_samples.forget(&record.id);
        self.config.metrics.container_removed(&record.full_name);
        self.emit(
            &record.id,
            &record.sandbox_id,
            cri::ContainerEventType::ContainerDeletedEvent,
        );
        Ok(())
    }

    /// Deletes the container's task from its pod's shim; whether the shim confirmed
    /// it (then it is remembered, and not asked again).
    async fn delete_task(&self, record: &ContainerRecord) -> bool {
        let Some(shim) = self.shims.get(&record.sandbox_id) else {
            return false;
        };
        let del = api::DeleteRequest {
            id: record.id.clone(),
            ..Default::default()
        };
        match shim.client.delete(&del).await {
            Ok(_) => {
                self.mark_task_deleted(&record.id);
                true
            }
            Err(e) if e.is_not_found() || e.is_disconnected() => false,
            Err(e) => {
                tracing::warn!(container = %record.id, "delete task: {e}");
                false
            }
        }
    }

    async fn destroy_container(&self, record: &ContainerRecord) {
        let deleted = self.task_deleted(&record.id) || self.delete_task(record).await;
        if !deleted {
            // No shim confirmed the task gone (a Create cut short, a dead shim): its
            // runtime may still hold it.
            self.reap_task(&record.sandbox_id, &record.id, &record.bundle)
                .await;
        }
        let driver = self.config.storage_driver;
        let storage = self.container_storage(&record.id);
        let (id, bundle) = (record.id.clone(), record.bundle.clone());
        let trashed =
            super::off_worker(move || Ok(retire_container_files(driver, &id, &storage, &bundle)))
                .await
                .unwrap_or_default();
        if let Err(e) = self.store.delete_async::<ContainerRecord>(&record.id).await {
            tracing::warn!(container = %record.id, "remove record: {e}");
        }
        // The data goes after the reply: nothing names these directories any more.
        if !trashed.is_empty() {
            tokio::task::spawn_blocking(move || trashed.iter().for_each(|d| trash::delete(d)));
        }
        self.forget(&record.id);
    }

    pub(crate) fn container_status(&self, record: &ContainerRecord) -> cri::ContainerStatus {
        cri::ContainerStatus {
            id: record.id.clone(),
            metadata: Some(container_metadata(record)),
            state: container_state(record) as i32,
            created_at: record.created_at,
            started_at: record.started_at,
            finished_at: record.finished_at,
            exit_code: record.exit_code.unwrap_or(0),
            image: Some(cri::ImageSpec {
                image: record.image.clone(),
                ..Default::default()
            }),
            image_ref: record.image_ref.clone(),
            image_id: record.image_ref.clone(),
            reason: record.reason.clone(),
            message: record.message.clone(),
            labels: record.labels.clone().into_iter().collect(),
            annotations: record.annotations.clone().into_iter().collect(),
            mounts: record
                .mounts
                .iter()
                .map(|m| cri::Mount {
                    container_path: m.container_path.clone(),
                    host_path: m.host_path.clone(),
                    readonly: m.readonly,
                    propagation: m.propagation,
                    image: (!m.image.is_empty()).then(|| cri::ImageSpec {
                        image: m.image.clone(),
                        ..Default::default()
                    }),
                    image_sub_path: m.image_sub_path.clone(),
                    ..Default::default()
                })
                .collect(),
            log_path: record.log_path.clone(),
            user: Some(cri::ContainerUser {
                linux: Some(cri::LinuxContainerUser {
                    uid: i64::from(record.uid),
                    gid: i64::from(record.gid),
                    supplemental_groups: record
                        .supplemental_groups
                        .iter()
                        .map(|g| i64::from(*g))
                        .collect(),
                }),
            }),
            resources: Some(cri::ContainerResources {
                linux: Some(cri_resources(&record.resources)),
                windows: None,
            }),
            stop_signal: signal::to_cri(parse_signal(&record.stop_signal).unwrap_or(15)) as i32,
        }
    }

    pub(crate) fn list_containers(
        &self,
        filter: Option<&cri::ContainerFilter>,
    ) -> Result<Vec<cri::Container>, CriError> {
        let mut out = Vec::new();
        for record in self.store.list::<ContainerRecord>()? {
            if let Some(f) = filter {
                if !f.id.is_empty() && !record.id.starts_with(&f.id) {
                    continue;
                }
                if !f.pod_sandbox_id.is_empty() && !record.sandbox_id.starts_with(&f.pod_sandbox_id)
                {
                    continue;
                }
                if let Some(state) = &f.state {
                    if state.state != container_state(&record) as i32 {
                        continue;
                    }
                }
                if !crate::pods::sandbox::labels_match(&f.label_selector, &record.labels) {
                    continue;
                }
            }
            out.push(cri::Container {
                id: record.id.clone(),
                pod_sandbox_id: record.sandbox_id.clone(),
                metadata: Some(container_metadata(&record)),
                image: Some(cri::ImageSpec {
                    image: record.image.clone(),
                    ..Default::default()
                }),
                image_ref: record.image_ref.clone(),
                image_id: record.image_ref.clone(),
                state: container_state(&record) as i32,
                created_at: record.created_at,
                labels: record.labels.clone().into_iter().collect(),
                annotations: record.annotations.clone().into_iter().collect(),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_names_look_like_crio_s() {
        let pod = SandboxRecord {
            name: "web".into(),
            namespace: "default".into(),
            uid: "u1".into(),
            ..Default::default()
        };
        let meta = cri::ContainerMetadata {
            name: "nginx".into(),
            attempt: 1,
        };
        assert_eq!(full_name(&meta, &pod), "k8s_nginx_web_default_u1_1");
    }
}
