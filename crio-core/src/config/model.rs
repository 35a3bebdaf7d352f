//! The typed configuration, laid out exactly as CRI-O's TOML: `[crio]`, `[crio.api]`,
//! `[crio.runtime]`, `[crio.runtime.runtimes.NAME]`, `[crio.image]`, `[crio.network]`,
//! `[crio.metrics]`. Defaults live here, in one place; `conf.d/00-default.conf` writes them out.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The whole merged configuration (the document root holds one `[crio]` table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Config {
    pub crio: CrioConfig,
}

/// `[crio]`: where state lives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CrioConfig {
    /// Persistent state: the metadata store, images, layers, container upper dirs.
    pub root: PathBuf,
    /// Volatile state (tmpfs): sockets, pinned namespaces, shim bundles.
    pub runroot: PathBuf,
    /// Default directory for container logs when the kubelet gives none.
    pub log_dir: PathBuf,
    /// How container root filesystems are built from image layers: `overlay`
    /// (an overlayfs mount) or `vfs` (a private copy, where overlayfs is unavailable).
    /// Empty means `overlay`, as CRI-O's empty value means containers/storage's default.
    pub storage_driver: String,
    /// On a tmpfs: missing at start means the node rebooted, and pods from before
    /// are wiped (see `crate::wipe`). Empty = never.
    pub version_file: String,
    /// Kept across reboots: another major.minor version in it means crio was
    /// upgraded, and images are wiped. Empty (the default) = never.
    pub version_file_persist: String,
    /// Written at a clean stop; missing at start means the store is checked and
    /// repaired first (`internal_repair`). Empty = never.
    pub clean_shutdown_file: String,
    /// The daemon wipes at start what the version files say (else `crio wipe`
    /// must).
    pub internal_wipe: bool,
    /// After an unclean stop the daemon checks and repairs the store at start.
    pub internal_repair: bool,
    pub api: ApiConfig,
    pub runtime: RuntimeSection,
    pub image: ImageConfig,
    pub network: NetworkConfig,
    pub metrics: MetricsConfig,
    pub stats: StatsConfig,
}

/// `[crio.api]`: the CRI socket and the streaming server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ApiConfig {
    /// Path of the CRI unix socket.
    pub listen: PathBuf,
    /// Address the exec/attach/port-forward server binds.
    pub stream_address: String,
    /// Port of the streaming server (a string, as in CRI-O; "0" picks a free port).
    pub stream_port: String,
    /// Streaming sessions with no traffic for this long are closed (Go duration;
    /// empty = 4h, the kubelet's default).
    pub stream_idle_timeout: String,
    /// Serve the streaming server over TLS with `stream_tls_cert` / `stream_tls_key`
    /// (PEM); with `stream_tls_ca`, clients must present a certificate it signed.
    pub stream_enable_tls: bool,
    pub stream_tls_cert: String,
    pub stream_tls_key: String,
    pub stream_tls_ca: String,
    /// Streaming sessions served at once; more are refused (HTTP 429). Not a CRI-O
    /// key.
    pub stream_max_sessions: usize,
    pub grpc_max_send_msg_size: usize,
    pub grpc_max_recv_msg_size: usize,
    /// The streaming server's lowest TLS version: `VersionTLS12` or
    /// `VersionTLS13` (empty = 1.2).
    pub tls_min_version: String,
    /// The TLS 1.2 cipher suites the streaming server offers, by their IANA
    /// names (Go's); empty = all rustls has.
    pub tls_cipher_suites: Vec<String>,
}

/// `[crio.runtime]`: handlers and process-wide runtime settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RuntimeSection {
    /// Handler used when a pod names none (empty RuntimeClass handler).
    pub default_runtime: String,
    /// `cgroupfs` or `systemd`.
    pub cgroup_manager: String,
    /// One of `fatal panic error warn info debug trace`.
    pub log_level: String,
    /// The RuntimeClass handlers, by name.
    pub runtimes: BTreeMap<String, RuntimeHandler>,
    /// Processes per container (`pids.max`); -1 or 0 = unlimited.
    pub pids_limit: i64,
    /// Bytes a container's log may grow to before it is truncated; -1 = no limit.
    pub log_size_max: i64,
    /// Where CDI spec files are read from; a later directory overrides an earlier one.
    pub cdi_spec_dirs: Vec<String>,
    /// Pods run no infra (pause) process where nothing needs one: the pod shares no
    /// PID namespace and its handler's shim runs containers without a sandbox task.
    pub drop_infra_ctr: bool,
    /// The capabilities a container gets when it asks for none (names, with or
    /// without `CAP_`); CRI-O's nine by default.
    pub default_capabilities: Vec<String>,
    /// `KEY=value` entries every container's environment starts from (the
    /// image's and the CRI's entries override them).
    pub default_env: Vec<String>,
    /// `name=soft:hard` (or `name=limit`) resource limits of every container,
    /// `name` as in `ulimit`: `nofile`, `nproc`, `core`, ... (`-1`: unlimited).
    pub default_ulimits: Vec<String>,
    /// `key=value` sysctls every pod's namespaces get, under the pod's own (a
    /// sysctl the pod cannot have, such as `net.*` with the host's network, is
    /// skipped with a warning, as CRI-O does).
    pub default_sysctls: Vec<String>,
    /// Directories of OCI hook files (oci-hooks(5), version 1.0.0); a later
    /// directory's file replaces an earlier one's of the same name.
    pub hooks_dir: Vec<PathBuf>,
    /// A mounts.conf (`/SRC:/DST` lines): host files and directories copied into
    /// every container. Empty = `/etc/containers/mounts.conf`, else
    /// `/usr/share/containers/mounts.conf`.
    pub default_mounts_file: String,
    /// Host paths a container's bind mount may not have created when missing:
    /// CreateContainer fails instead.
    pub absent_mount_sources_to_reject: Vec<PathBuf>,
    /// Host devices pods may ask for with the `io.kubernetes.cri-o.Devices`
    /// annotation (where their handler allows it).
    pub allowed_devices: Vec<String>,
    /// `/dev/host[:/dev/ctr][:rwm]` devices every container gets.
    pub additional_devices: Vec<String>,
    /// A container's devices belong to its RunAsUser/RunAsGroup (when not 0)
    /// instead of the host node's owner.
    pub device_ownership_from_security_context: bool,
    /// The CPUs infra (pause) processes run on (`0-1,3`); empty = any.
    pub infra_ctr_cpuset: String,
    /// A seccomp profile (containers' JSON) for `RuntimeDefault`; empty or a
    /// missing file = the built-in one.
    pub seccomp_profile: String,
    /// A seccomp profile every privileged container gets, whatever it asks for;
    /// empty = none (privileged containers are unconfined).
    pub privileged_seccomp_profile: String,
    /// The AppArmor profile of `RuntimeDefault` on hosts with AppArmor;
    /// `unconfined` = none.
    pub apparmor_profile: String,
    /// Capabilities are put in the inheritable set too (CRI-O before 1.24).
    pub add_inheritable_capabilities: bool,
    /// Every container's root filesystem is read-only, with tmpfs on `/run`,
    /// `/tmp` and `/var/tmp`.
    pub read_only: bool,
    /// Containers' `/etc/localtime`: empty = the image's, `Local` = the host's,
    /// else a time zone name (`Europe/Paris`).
    pub timezone: String,
    /// Pods' hostPort mappings are accepted and not set up (another component
    /// maps them).
    pub disable_hostport_mapping: bool,
    /// The OCI runtime creates containers without pivot_root (MS_MOVE), for
    /// roots on ramfs.
    pub no_pivot: bool,
}

/// The accepted `[crio.image] image_volumes` values.
pub const IMAGE_VOLUMES: &[&str] = &["mkdir", "bind", "ignore"];

/// Where packaging/install.sh installs the VM pods' guest kernel and initramfs.
pub const KATA_GUEST_DIR: &str = "/usr/local/share/crio-rs/kata";

/// `[crio.runtime.runtimes.NAME]`: one RuntimeClass handler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RuntimeHandler {
    /// For `oci`: the OCI runtime binary our runc shim drives (empty = `runc` from `PATH`).
    /// For `vm`: the shim v2 binary itself.
    pub runtime_path: String,
    /// `oci` (through the in-tree runc shim) or `vm` (`runtime_path` is a shim v2 binary).
    pub runtime_type: String,
    /// The runtime's state root (`--root` of runc/crun).
    pub runtime_root: String,
    /// A config file handed to the runtime (e.g. kata's `configuration.toml`).
    pub runtime_config_path: String,
    /// CRI-O's conmon path. crio-rs runs a shim v2 per pod, not conmon: accepted
    /// and ignored with a warning (`shim_path` names the shim).
    pub monitor_path: String,
    /// Ours: the shim v2 binary for `oci` handlers (empty = the in-tree
    /// `containerd-shim-runc-rs-v2`).
    pub shim_path: String,
    /// The smallest memory limit a container of this handler may ask for (a size:
    /// "12MiB"; empty = 12MiB, as CRI-O).
    pub container_min_memory: String,
    /// Annotations a pod may use to tune this handler.
    pub allowed_annotations: Vec<String>,
    /// Privileged pods of this handler do not get the host's devices.
    pub privileged_without_host_devices: bool,
    /// Annotations every pod of this handler gets unless it sets them.
    pub default_annotations: BTreeMap<String, String>,
    /// `"os/arch" = "/path"`: the `runtime_path` on that platform.
    pub platform_runtime_paths: BTreeMap<String, String>,
    /// A seccomp profile for `RuntimeDefault` on this handler (over the node's).
    pub seccomp_profile: String,
    /// Ours (`vm_*`), for `vm` handlers served by crio-rs's VM shim
    /// (`containerd-shim-kata-rs-v2`): its pod VMs. Unset keys keep the shim's
    /// defaults. Passed to the shim in the sandbox task's Create options.
    /// The hypervisor binary (qemu-system-x86_64).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vm_hypervisor_path: Option<String>,
    /// The guest kernel (an uncompressed vmlinux).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vm_kernel: Option<String>,
    /// The guest initramfs whose init is our agent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vm_initramfs: Option<String>,
    /// The VM's memory, MiB, for a pod without a memory limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vm_memory_mib: Option<u32>,
    /// The VM's vCPUs for a pod without a CPU limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vm_vcpus: Option<u32>,
    /// Memory added to a pod's memory limit for the guest's kernel and agent, MiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vm_memory_overhead_mib: Option<u32>,
    /// How long the VM may take to boot and its agent to answer, seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vm_boot_timeout_secs: Option<u32>,
    /// How the container bundles reach the guest: `virtio-9p` or `virtio-fs`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vm_shared_fs: Option<String>,
    /// virtio-fs's daemon (`virtiofsd`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vm_virtiofsd_path: Option<String>,
}

/// The `vm_*` keys of a handler, as the VM shim reads them (its TOML
/// configuration has the same keys).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
struct VmKeys<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    vm_hypervisor_path: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vm_kernel: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vm_initramfs: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vm_memory_mib: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vm_vcpus: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vm_memory_overhead_mib: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vm_boot_timeout_secs: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vm_shared_fs: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vm_virtiofsd_path: Option<&'a str>,
}

/// The pod annotations crio-rs acts on, each only for pods of a handler whose
/// `allowed_annotations` names it (as CRI-O gates its annotation-driven features).
pub const SHM_SIZE_ANNOTATION: &str = "io.kubernetes.cri-o.ShmSize";
/// Ours: `/proc` paths to unmask (`procMount: Unmasked`, which the CRI cannot say).
pub const UNMASK_ANNOTATION: &str = "crio-rs.io/unmask";
/// CRI-O's: host devices (`/dev/fuse,/dev/net/tun:rw`) from `allowed_devices`
/// for every container of the pod.
pub const DEVICES_ANNOTATION: &str = "io.kubernetes.cri-o.Devices";
pub const APPLIED_ANNOTATIONS: &[&str] =
    &[SHM_SIZE_ANNOTATION, UNMASK_ANNOTATION, DEVICES_ANNOTATION];

/// CRI-O 1.31's `AllAllowedAnnotations`: what its `allowed_annotations` accept
/// (the others crio-rs accepts too, warning that it does not act on them).
pub const CRIO_ALLOWED_ANNOTATIONS: &[&str] = &[
    "io.kubernetes.cri-o.userns-mode",
    "io.kubernetes.cri-o.cgroup2-mount-hierarchy-rw",
    "io.kubernetes.cri-o.UnifiedCgroup",
    SHM_SIZE_ANNOTATION,
    "io.kubernetes.cri-o.Devices",
    "cpu-load-balancing.crio.io",
    "cpu-quota.crio.io",
    "irq-load-balancing.crio.io",
    "io.containers.trace-syscall",
    "io.kubernetes.cri.rdt-class",
    "io.kubernetes.cri-o.TrySkipVolumeSELinuxLabel",
    "cpu-c-states.crio.io",
    "cpu-freq-governor.crio.io",
    "io.kubernetes.cri-o.seccompNotifierAction",
    "io.kubernetes.cri-o.umask",
    "io.kubernetes.cri-o.PodLinuxOverhead",
    "io.kubernetes.cri-o.PodLinuxResources",
    "io.kubernetes.cri-o.LinkLogs",
    "cpu-shared.crio.io",
    "seccomp-profile.kubernetes.cri-o.io",
    "io.kubernetes.cri-o.DisableFIPS",
    "bundle",
    "org.systemd.property.",
    "org.criu.config",
    "module.wasm.image/variant",
    "io.kubernetes.cri.container-type",
    "run.oci.",
];

/// CRI-O's `container_min_memory` when a handler sets none.
pub const DEFAULT_CONTAINER_MIN_MEMORY: u64 = 12 << 20;

impl RuntimeHandler {
    /// Whether pods of this handler may use `annotation`.
    pub fn allows(&self, annotation: &str) -> bool {
        self.allowed_annotations.iter().any(|a| a == annotation)
    }

    /// The smallest memory limit its containers may ask for, in bytes (the
    /// config is validated: a value that is not a size reads as the default).
    pub fn container_min_memory_bytes(&self) -> u64 {
        crate::size::parse(&self.container_min_memory).unwrap_or(DEFAULT_CONTAINER_MIN_MEMORY)
    }

    /// The `vm_*` keys set, as TOML; `None` when none is.
    pub fn vm_config(&self) -> Option<String> {
        let keys = VmKeys {
            vm_hypervisor_path: self.vm_hypervisor_path.as_deref(),
            vm_kernel: self.vm_kernel.as_deref(),
            vm_initramfs: self.vm_initramfs.as_deref(),
            vm_memory_mib: self.vm_memory_mib,
            vm_vcpus: self.vm_vcpus,
            vm_memory_overhead_mib: self.vm_memory_overhead_mib,
            vm_boot_timeout_secs: self.vm_boot_timeout_secs,
            vm_shared_fs: self.vm_shared_fs.as_deref(),
            vm_virtiofsd_path: self.vm_virtiofsd_path.as_deref(),
        };
        if keys == VmKeys::default() {
            return None;
        }
        toml::to_string(&keys).ok()
    }
}

/// `[crio.image]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageConfig {
    /// Empty: the built-in pause rootfs, no registry needed. Otherwise an image to pull.
    pub pause_image: String,
    /// The command of the infra container.
    pub pause_command: String,
    /// Registries searched for short names (deprecated in CRI-O in favour of registries.conf).
    pub registries: Vec<String>,
    /// Cancel a pull that makes no progress for this long ("0s" = never).
    pub pull_progress_timeout: String,
    /// Registry credentials (containers-auth.json); empty = `REGISTRY_AUTH_FILE`,
    /// else `/etc/containers/auth.json`.
    pub global_auth_file: String,
    /// Credentials used only to pull `pause_image` (containers-auth.json).
    pub pause_image_auth_file: String,
    /// Per-registry TLS files, in `<certs_dir>/<host[:port]>/` (containers-certs.d(5)):
    /// empty = `/etc/containers/certs.d`, then `/etc/docker/certs.d`.
    pub certs_dir: String,
    /// What the image's `Volumes` become: `mkdir` (a directory in the container's
    /// writable layer), `bind` (a private directory bind-mounted there) or `ignore`.
    pub image_volumes: String,
    /// Images never removed and reported `pinned` (the kubelet's GC skips them):
    /// exact names, `prefix*` or `*keyword*`, as CRI-O matches them; the pause
    /// image is always pinned.
    pub pinned_images: Vec<String>,
    /// Registries (`host[:port]`, or an IP range `10.0.0.0/8`) pulled from
    /// without TLS verification, falling back to plain HTTP.
    pub insecure_registries: Vec<String>,
    /// `enforcing` (a short name with several candidates is refused),
    /// `disabled` or empty (every candidate is tried, as CRI-O up to 1.33 does).
    pub short_name_mode: String,
    /// containers-policy.json(5): which images may be pulled, from where, signed
    /// by whom. Empty = `/etc/containers/policy.json`; no file = accept all.
    pub signature_policy: String,
    /// Per-namespace policies: `<dir>/<namespace>.json` replaces the policy for
    /// pulls made for a pod of that namespace.
    pub signature_policy_dir: String,
    /// registries.d(5): where each registry's signatures are (its `lookaside`).
    pub registries_d: String,
}

/// `[crio.network]`: CNI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkConfig {
    /// Network name to use; empty = the first conflist in `network_dir`.
    pub cni_default_network: String,
    /// Where CNI conflists are read from.
    pub network_dir: PathBuf,
    /// Where CNI plugin binaries are searched, in order.
    pub plugin_dirs: Vec<PathBuf>,
    /// CRI-O's older single plugin directory: appended to `plugin_dirs`, as
    /// CRI-O does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin_dir: Option<PathBuf>,
    /// How long the network may be failing before Status says NetworkReady
    /// false (a Go duration; "0s" = at once).
    pub cni_status_grace_period: String,
}

/// `[crio.stats]`: what the CRI's pod metrics (`ListPodSandboxMetrics`) include.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StatsConfig {
    /// Metric groups (CRI-O's names: `cpu`, `memory`, `oom`, `network`, `disk`,
    /// `diskIO`, `hugetlb`, `process`, `spec`, `pressure`), or `["all"]`; empty means
    /// only `container_last_seen`, as in CRI-O. A group the host cannot serve
    /// (`pressure` without cgroup v2 PSI, `hugetlb` without its controller) is left
    /// out with a warning.
    pub included_pod_metrics: Vec<String>,
}

/// `[crio.metrics]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MetricsConfig {
    /// Serve Prometheus metrics on `metrics_host:metrics_port` at `/metrics`.
    pub enable_metrics: bool,
    pub metrics_host: String,
    pub metrics_port: u16,
    /// Also serve them on this unix socket (empty = no socket).
    pub metrics_socket: String,
    /// TLS for the endpoint: both PEM files, or neither.
    pub metrics_cert: String,
    pub metrics_key: String,
    /// CRI-O's collectors to serve (names with or without `crio_` or
    /// `container_runtime_crio_`); all by default.
    pub metrics_collectors: Vec<String>,
}

impl Default for CrioConfig {
    fn default() -> Self {
        Self {
            root: "/var/lib/crio-rs".into(),
            runroot: "/run/crio-rs".into(),
            log_dir: "/var/log/crio/pods".into(),
            storage_driver: STORAGE_DRIVER_OVERLAY.into(),
            version_file: "/run/crio-rs/version".into(),
            version_file_persist: String::new(),
            clean_shutdown_file: "/var/lib/crio-rs/clean.shutdown".into(),
            internal_wipe: true,
            internal_repair: true,
            api: ApiConfig::default(),
            runtime: RuntimeSection::default(),
            image: ImageConfig::default(),
            network: NetworkConfig::default(),
            metrics: MetricsConfig::default(),
            stats: StatsConfig::default(),
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: "/var/run/crio/crio.sock".into(),
            stream_address: "127.0.0.1".into(),
            stream_port: "0".into(),
            stream_idle_timeout: String::new(),
            stream_enable_tls: false,
            stream_tls_cert: String::new(),
            stream_tls_key: String::new(),
            stream_tls_ca: String::new(),
            stream_max_sessions: 256,
            // CRI-O's defaults: 80 MiB.
            grpc_max_send_msg_size: 80 * 1024 * 1024,
            grpc_max_recv_msg_size: 80 * 1024 * 1024,
            tls_min_version: "VersionTLS12".into(),
            tls_cipher_suites: Vec::new(),
        }
    }
}

impl Default for RuntimeHandler {
    fn default() -> Self {
        Self {
            runtime_path: String::new(),
            // As in CRI-O, a handler that names no type is an OCI runtime.
            runtime_type: RUNTIME_TYPE_OCI.into(),
            runtime_root: String::new(),
            runtime_config_path: String::new(),
            monitor_path: String::new(),
            shim_path: String::new(),
            container_min_memory: String::new(),
            allowed_annotations: Vec::new(),
            privileged_without_host_devices: false,
            default_annotations: BTreeMap::new(),
            platform_runtime_paths: BTreeMap::new(),
            seccomp_profile: String::new(),
            vm_hypervisor_path: None,
            vm_kernel: None,
            vm_initramfs: None,
            vm_memory_mib: None,
            vm_vcpus: None,
            vm_memory_overhead_mib: None,
            vm_boot_timeout_secs: None,
            vm_shared_fs: None,
            vm_virtiofsd_path: None,
        }
    }
}

impl Default for RuntimeSection {
    fn default() -> Self {
        let runc = RuntimeHandler {
            runtime_root: "/run/runc".into(),
            ..RuntimeHandler::default()
        };
        // The in-tree youki shim runs containers with libcontainer: no runtime binary.
        let youki = RuntimeHandler {
            runtime_type: RUNTIME_TYPE_VM.into(),
            runtime_path: "containerd-shim-youki-v2".into(),
            ..RuntimeHandler::default()
        };
        // VM pods: one qemu microvm per pod with our guest agent (issue 19); the
        // guest is what packaging/install.sh builds and installs.
        let kata = RuntimeHandler {
            runtime_type: RUNTIME_TYPE_VM.into(),
            runtime_path: "containerd-shim-kata-rs-v2".into(),
            vm_kernel: Some(format!("{KATA_GUEST_DIR}/vmlinux")),
            vm_initramfs: Some(format!("{KATA_GUEST_DIR}/initramfs.cpio")),
            ..RuntimeHandler::default()
        };
        Self {
            default_runtime: "runc".into(),
            // No systemd runs on the machines this is built on; CRI-O defaults to systemd.
            cgroup_manager: "cgroupfs".into(),
            log_level: "info".into(),
            runtimes: BTreeMap::from([
                ("kata".to_string(), kata),
                ("runc".to_string(), runc),
                ("youki".to_string(), youki),
            ]),
            pids_limit: -1,
            log_size_max: -1,
            drop_infra_ctr: true,
            cdi_spec_dirs: vec!["/etc/cdi".into(), "/var/run/cdi".into()],
            default_capabilities: crate::spec::DEFAULT_CAPABILITIES
                .iter()
                .map(|c| c.to_string())
                .collect(),
            default_env: Vec::new(),
            default_ulimits: Vec::new(),
            default_sysctls: Vec::new(),
            hooks_dir: vec![crate::oci_hooks::DEFAULT_DIR.into()],
            default_mounts_file: String::new(),
            absent_mount_sources_to_reject: Vec::new(),
            allowed_devices: vec!["/dev/fuse".into(), "/dev/net/tun".into()],
            additional_devices: Vec::new(),
            device_ownership_from_security_context: false,
            infra_ctr_cpuset: String::new(),
            seccomp_profile: String::new(),
            privileged_seccomp_profile: String::new(),
            apparmor_profile: "crio-default".into(),
            add_inheritable_capabilities: false,
            read_only: false,
            timezone: String::new(),
            disable_hostport_mapping: false,
            no_pivot: false,
        }
    }
}

impl Default for ImageConfig {
    fn default() -> Self {
        Self {
            pause_image: String::new(),
            pause_command: "/pause".into(),
            registries: Vec::new(),
            pull_progress_timeout: "0s".into(),
            global_auth_file: String::new(),
            pause_image_auth_file: String::new(),
            certs_dir: String::new(),
            image_volumes: "mkdir".into(),
            pinned_images: Vec::new(),
            insecure_registries: Vec::new(),
            short_name_mode: String::new(),
            signature_policy: String::new(),
            signature_policy_dir: "/etc/crio/policies".into(),
            registries_d: crate::image::policy::DEFAULT_REGISTRIES_D.into(),
        }
    }
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            cni_default_network: String::new(),
            network_dir: "/etc/cni/net.d".into(),
            // Debian's containernetworking-plugins install to /usr/lib/cni.
            plugin_dirs: vec!["/opt/cni/bin".into(), "/usr/lib/cni".into()],
            plugin_dir: None,
            cni_status_grace_period: "0s".into(),
        }
    }
}

impl Default for StatsConfig {
    fn default() -> Self {
        // CRI-O's default is `[]`; the kubelet's CRI stats provider needs the
        // cAdvisor set, so ours serves every group the host has.
        Self {
            included_pod_metrics: vec![METRICS_ALL.into()],
        }
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enable_metrics: false,
            metrics_host: "127.0.0.1".into(),
            metrics_port: 9090,
            metrics_socket: String::new(),
            metrics_cert: String::new(),
            metrics_key: String::new(),
            metrics_collectors: crate::metrics::COLLECTORS
                .iter()
                .map(|(name, _)| name.to_string())
                .collect(),
        }
    }
}

/// `included_pod_metrics` value for every group.
pub const METRICS_ALL: &str = "all";
/// Accepted `included_pod_metrics` groups (CRI-O's names).
pub const METRIC_GROUPS: &[&str] = &[
    "cpu", "memory", "oom", "network", "disk", "diskIO", "hugetlb", "process", "spec", "pressure",
];

pub const RUNTIME_TYPE_OCI: &str = "oci";
pub const RUNTIME_TYPE_VM: &str = "vm";
/// CRI-O's conmon-rs type (one monitor per pod): served like `oci`, by our shim
/// (one per pod already), with a warning.
pub const RUNTIME_TYPE_POD: &str = "pod";
/// Accepted `runtime_type` values.
pub const RUNTIME_TYPES: &[&str] = &[RUNTIME_TYPE_OCI, RUNTIME_TYPE_VM, RUNTIME_TYPE_POD];
pub const STORAGE_DRIVER_OVERLAY: &str = "overlay";
pub const STORAGE_DRIVER_VFS: &str = "vfs";
/// Accepted `storage_driver` values (empty = `overlay`).
pub const STORAGE_DRIVERS: &[&str] = &[STORAGE_DRIVER_OVERLAY, STORAGE_DRIVER_VFS];
/// Accepted `cgroup_manager` values.
pub const CGROUP_MANAGERS: &[&str] = &["cgroupfs", "systemd"];
/// Accepted `log_level` values (CRI-O's logrus levels).
pub const LOG_LEVELS: &[&str] = &["fatal", "panic", "error", "warn", "info", "debug", "trace"];
