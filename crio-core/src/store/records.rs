//! The persisted records, schema version 1. Fields added later carry
//! `#[serde(default)]` so older records still decode; removing or retyping a field
//! needs a schema bump and a migration.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Record;

/// One ID range: `length` IDs from `container_id` in the pod are `host_id`... on
/// the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMapping {
    pub container_id: u32,
    pub host_id: u32,
    pub length: u32,
}

impl IdMapping {
    /// The host ID of `id` in the pod, if the range holds it.
    pub fn to_host(&self, id: u32) -> Option<u32> {
        let offset = id.checked_sub(self.container_id)?;
        (offset < self.length).then(|| self.host_id + offset)
    }
}

/// A pod's user and group mappings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsernsMappings {
    pub uids: IdMapping,
    pub gids: IdMapping,
}

/// Resources of one container, as the CRI gives them (0 = unset).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Resources {
    pub cpu_shares: i64,
    pub cpu_quota: i64,
    pub cpu_period: i64,
    pub memory_limit: i64,
    pub cpuset_cpus: String,
    pub cpuset_mems: String,
    pub pids_limit: i64,
    /// Memory plus swap (-1 = unlimited swap); 0 = unset.
    pub memory_swap: i64,
    /// `(page size, bytes)`, e.g. `("2MB", 0)`.
    pub hugepages: Vec<(String, u64)>,
    /// cgroup v2 files (`memory.high`...).
    pub unified: BTreeMap<String, String>,
    /// Kept for `ContainerStatus.resources`; applied through `process.oomScoreAdj`.
    pub oom_score_adj: i64,
}

/// Where a pod is in its life (stored by name: `ready`, `notready`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SandboxState {
    /// Its pause runs and its network is attached.
    #[serde(rename = "ready")]
    Ready,
    /// Being started, stopped, or broken.
    #[default]
    #[serde(rename = "notready")]
    NotReady,
}

/// Where a container is in its life (stored by name: `created`, `running`,
/// `exited`). It only moves forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ContainerState {
    #[default]
    #[serde(rename = "created")]
    Created,
    #[serde(rename = "running")]
    Running,
    #[serde(rename = "exited")]
    Exited,
}

impl ContainerRecord {
    /// Its process started: created becomes running; an exit recorded meanwhile (a
    /// process that ends at once) stays. Returns whether the state changed.
    pub fn mark_running(&mut self) -> bool {
        let changed = self.state == ContainerState::Created;
        if changed {
            self.state = ContainerState::Running;
        }
        changed
    }

    /// Its process exited with `status` at `at` (Unix nanoseconds): the first exit
    /// reported wins. Returns whether the state changed.
    pub fn mark_exited(&mut self, status: u32, at: i64) -> bool {
        if self.state == ContainerState::Exited {
            return false;
        }
        self.state = ContainerState::Exited;
        self.exit_code = Some(i32::try_from(status).unwrap_or(255));
        self.finished_at = at;
        self.reason = if self.oom_killed {
            "OOMKilled"
        } else if status == 0 {
            "Completed"
        } else {
            "Error"
        }
        .into();
        true
    }
}

impl SandboxRecord {
    /// The pod can no longer run containers (stopped, its pause or shim gone).
    /// Returns whether the state changed.
    pub fn mark_not_ready(&mut self) -> bool {
        let changed = self.state != SandboxState::NotReady;
        self.state = SandboxState::NotReady;
        changed
    }
}

impl std::fmt::Display for ContainerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ContainerState::Created => "created",
            ContainerState::Running => "running",
            ContainerState::Exited => "exited",
        })
    }
}

/// A pod sandbox as persisted before RunPodSandbox is acknowledged.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SandboxRecord {
    pub id: String,
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub attempt: u32,
    pub runtime_handler: String,
    /// Unix nanoseconds.
    pub created_at: i64,
    pub state: SandboxState,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// The CRI-O style name (`k8s_POD_<name>_<namespace>_<uid>_<attempt>`) reserved by it.
    #[serde(default)]
    pub full_name: String,
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub log_directory: String,
    #[serde(default)]
    pub cgroup_parent: String,
    #[serde(default)]
    pub host_network: bool,
    #[serde(default)]
    pub host_pid: bool,
    #[serde(default)]
    pub host_ipc: bool,
    /// Containers share the pause process's PID namespace.
    #[serde(default)]
    pub pod_pid: bool,
    /// `LinuxSandboxSecurityContext.privileged`: its containers may be privileged.
    #[serde(default)]
    pub privileged: bool,
    #[serde(default)]
    pub bundle: PathBuf,
    /// The shim: binary, address and task API version it declared.
    #[serde(default)]
    pub shim_binary: PathBuf,
    #[serde(default)]
    pub shim_address: String,
    #[serde(default)]
    pub task_version: i32,
    /// The pause process (host PID namespace view); 0 when the pod has none.
    #[serde(default)]
    pub pid: u32,
    /// The pod runs no pause process (`drop_infra_ctr`): its shim serves only its
    /// containers, and the pod is ready from its start to StopPodSandbox.
    #[serde(default)]
    pub infra_dropped: bool,
    /// The infra image's id when `pause_image` is set (empty = the built-in pause).
    #[serde(default)]
    pub infra_image: String,
    /// The pinned network namespace (empty for host-network pods).
    #[serde(default)]
    pub netns_path: String,
    /// The pinned UTS namespace (empty for host-network pods) and IPC namespace
    /// (empty for host-IPC pods).
    #[serde(default)]
    pub utsns_path: String,
    #[serde(default)]
    pub ipcns_path: String,
    /// The CNI list the pod was attached with (`.conflist` JSON), kept from before
    /// ADD until a DEL succeeded: non-empty = the network may hold resources.
    #[serde(default)]
    pub network_config: String,
    /// The ADD result (the `prevResult` of DEL and CHECK).
    #[serde(default)]
    pub network_result: String,
    /// The runtime config ADD was given (DEL gets the same, as libcni's cache does).
    #[serde(default)]
    pub network_runtime_config: String,
    /// The pod's IPs, primary first (the host's for a host-network pod).
    #[serde(default)]
    pub ips: Vec<String>,
    /// The pod's own pinned user namespace (`hostUsers: false`; empty = the host's)
    /// and its mappings.
    #[serde(default)]
    pub userns_path: String,
    #[serde(default)]
    pub userns: Option<UsernsMappings>,
}

impl Record for SandboxRecord {
    const TABLE: &'static str = "sandboxes";
    fn id(&self) -> &str {
        &self.id
    }
}

/// A container as persisted before CreateContainer is acknowledged.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub sandbox_id: String,
    pub name: String,
    pub attempt: u32,
    /// The image id (config digest) the container runs.
    pub image_ref: String,
    /// Image ids mounted as image volumes (`Mount.image`): held like `image_ref`.
    #[serde(default)]
    pub image_volumes: Vec<String>,
    pub created_at: i64,
    pub state: ContainerState,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub full_name: String,
    /// The image as the CRI request named it, and the name it resolved to.
    #[serde(default)]
    pub image: String,
    #[serde(default)]
    pub image_name: String,
    #[serde(default)]
    pub started_at: i64,
    #[serde(default)]
    pub finished_at: i64,
    /// `Completed`, `Error` or `OOMKilled` once exited.
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub oom_killed: bool,
    /// Absolute path of the CRI log file (empty = none).
    #[serde(default)]
    pub log_path: String,
    /// As the CRI request gave it (relative to the pod's log directory).
    #[serde(default)]
    pub log_path_relative: String,
    #[serde(default)]
    pub bundle: PathBuf,
    #[serde(default)]
    pub pid: u32,
    #[serde(default)]
    pub tty: bool,
    #[serde(default)]
    pub stdin: bool,
    #[serde(default)]
    pub stdin_once: bool,
    /// The signal StopContainer sends first: the container's `stop_signal`, else the
    /// image's `StopSignal` (empty = SIGTERM).
    #[serde(default)]
    pub stop_signal: String,
    #[serde(default)]
    pub stdout_fifo: String,
    #[serde(default)]
    pub stderr_fifo: String,
    /// The stdin FIFO of a container created with `stdin` (empty otherwise).
    #[serde(default)]
    pub stdin_fifo: String,
    #[serde(default)]
    pub mounts: Vec<MountRecord>,
    /// The user the process runs as (reported in `ContainerStatus.user`).
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub gid: u32,
    #[serde(default)]
    pub supplemental_groups: Vec<u32>,
    /// The resources last applied (created with, or updated to).
    #[serde(default)]
    pub resources: Resources,
}

/// A CRI mount of a container, for `ContainerStatus`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct MountRecord {
    pub container_path: String,
    pub host_path: String,
    pub readonly: bool,
    /// The CRI `MountPropagation` value.
    pub propagation: i32,
    /// An image volume's image, as the request named it, and its sub path.
    #[serde(default)]
    pub image: String,
    #[serde(default)]
    pub image_sub_path: String,
}

impl Record for ContainerRecord {
    const TABLE: &'static str = "containers";
    fn id(&self) -> &str {
        &self.id
    }
}

/// A pulled image: its config digest is its id. Written only once every blob and
/// layer it names is complete on disk.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ImageRecord {
    pub id: String,
    /// `registry/repository:tag` names pointing at it (a name points at one image).
    #[serde(default)]
    pub repo_tags: Vec<String>,
    /// `registry/repository@sha256:...` of the manifest (or index) pulled.
    #[serde(default)]
    pub repo_digests: Vec<String>,
    /// Compressed size of config and layers, as the registry reported.
    pub size: u64,
    /// Layer chain IDs, bottom first.
    #[serde(default)]
    pub layers: Vec<String>,
    /// Digests of the manifest (and index) blobs kept in the content store.
    #[serde(default)]
    pub manifests: Vec<String>,
    /// Unix nanoseconds of the pull.
    #[serde(default)]
    pub pulled_at: i64,
    /// The config's `User`, kept here so listing images reads no blob.
    #[serde(default)]
    pub user: String,
}

impl Record for ImageRecord {
    const TABLE: &'static str = "images";
    fn id(&self) -> &str {
        &self.id
    }
}
