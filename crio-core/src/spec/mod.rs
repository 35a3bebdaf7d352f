//! CRI configs -> OCI runtime specs (the `config.json` a shim hands to its runtime).
//!
//! The defaults are CRI-O's: its default capability set, masked and read-only paths,
//! `/dev` as tmpfs, `/sys` read-only. Everything here is pure: inputs in, a spec out;
//! the caller writes it into the bundle.

mod defaults;
pub(crate) mod devices;
mod host;
pub(crate) mod propagation;
pub(crate) mod rlimits;
pub(crate) mod seccomp;
mod seccomp_default;
pub(crate) mod sysctl;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capability, Hooks, Linux, LinuxBuilder, LinuxCapabilities, LinuxCpu, LinuxHugepageLimit,
    LinuxIdMapping, LinuxMemory, LinuxNamespace, LinuxNamespaceType, LinuxPids, LinuxResources,
    Mount, Process, Root, Spec, User,
};

pub(crate) use defaults::{DEFAULT_CAPABILITIES, MASKED_PATHS, READONLY_PATHS};
pub(crate) use devices::Device;
pub(crate) use host::{held_capabilities, hostname as host_hostname, own_oom_score_adj, HostFacts};
pub(crate) use seccomp::Seccomp;

/// containerd's grouping annotations: every task of a pod carries them, so any shim
/// groups the pod's containers into one shim process.
pub(crate) const CRI_SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
pub(crate) const CRI_CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
pub(crate) const CRIO_SANDBOX_ID: &str = "io.kubernetes.cri-o.SandboxID";
pub(crate) const CRIO_CONTAINER_TYPE: &str = "io.kubernetes.cri-o.ContainerType";
pub(crate) const CRI_SANDBOX_NAME: &str = "io.kubernetes.cri.sandbox-name";
pub(crate) const CRI_SANDBOX_NAMESPACE: &str = "io.kubernetes.cri.sandbox-namespace";
pub(crate) const CRI_CONTAINER_NAME: &str = "io.kubernetes.cri.container-name";

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("capability {0:?} is not a Linux capability")]
    UnknownCapability(String),
    #[error("seccomp profile {path}: {reason}")]
    Seccomp { path: PathBuf, reason: String },
    #[error("invalid spec: {0}")]
    Build(String),
}

fn build_err(e: impl std::fmt::Display) -> SpecError {
    SpecError::Build(e.to_string())
}

/// How a pod's namespaces are shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct PodNamespaces {
    pub host_network: bool,
    pub host_pid: bool,
    pub host_ipc: bool,
    /// Containers share the pause process's PID namespace.
    pub pod_pid: bool,
}

/// What the infra (pause) container needs.
#[derive(Debug, Clone)]
pub(crate) struct SandboxSpec {
    pub hostname: String,
    pub rootfs: PathBuf,
    /// The built-in pause rootfs is shared by every pod: read-only.
    pub readonly_rootfs: bool,
    pub command: Vec<String>,
    pub namespaces: PodNamespaces,
    /// The pod's pinned network namespace (`None` = a new one, or the host's).
    pub netns_path: Option<PathBuf>,
    /// The pod's pinned UTS and IPC namespaces (`None` = new ones, or the host's).
    pub utsns_path: Option<PathBuf>,
    pub ipcns_path: Option<PathBuf>,
    pub cgroups_path: String,
    pub annotations: BTreeMap<String, String>,
    pub oom_score_adj: i32,
    /// A privileged pod: pause mounts sysfs read-write, as CRI-O's privileged infra
    /// does. sysfs is one superblock per network namespace and the first mount sets
    /// its read-only flag, so a privileged container gets a writable /sys only if
    /// pause did not mount it read-only first.
    pub privileged: bool,
    /// The pod's shm and files, as its containers get them.
    pub pod_mounts: Vec<Mount>,
    pub seccomp: Seccomp,
    pub kernel_release: String,
    /// The pod's own user namespace (`hostUsers: false`), `None` = the host's.
    pub userns: Option<UserNamespace>,
    /// The pod's sysctls, for a shim whose pod has namespaces of its own (a
    /// VM's); empty where the pinned namespaces, which have them, are the pod's.
    pub sysctls: BTreeMap<String, String>,
    /// `default_capabilities` (`None`: CRI-O's).
    pub default_capabilities: Option<Vec<String>>,
    /// `infra_ctr_cpuset`: the CPUs pause runs on (empty = any).
    pub cpuset: String,
    /// `add_inheritable_capabilities`: the capabilities are inheritable too.
    pub inheritable_capabilities: bool,
}

/// A pod's pinned user namespace and its mappings, which runtimes want written out
/// even when they join it by path (runc 1.1 requires them).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct UserNamespace {
    pub path: PathBuf,
    pub uid_mappings: Vec<LinuxIdMapping>,
    pub gid_mappings: Vec<LinuxIdMapping>,
}

/// Adds the user namespace to a spec's namespaces, and its mappings.
fn set_user_namespace(userns: Option<&UserNamespace>, linux: &mut Linux) {
    let Some(u) = userns else {
        return;
    };
    let mut namespaces = linux.namespaces().clone().unwrap_or_default();
    namespaces.push(namespace(LinuxNamespaceType::User, Some(u.path.clone())));
    linux.set_namespaces(Some(namespaces));
    linux.set_uid_mappings(Some(u.uid_mappings.clone()));
    linux.set_gid_mappings(Some(u.gid_mappings.clone()));
}

/// A bind mount asked for by the CRI.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BindMount {
    pub host_path: PathBuf,
    pub container_path: PathBuf,
    pub readonly: bool,
    /// `rprivate`, `rslave` or `rshared`.
    pub propagation: &'static str,
    /// Read-only all the way down (`rro`, kernel 5.12+).
    pub recursive_readonly: bool,
    /// `noexec`, `nosuid` and `nodev`: how CRI-O mounts image volumes.
    pub hardened: bool,
    /// The source is to be seen through the pod's user namespace (the CRI's mount
    /// `uid_mappings`): the daemon replaces it with an ID-mapped clone.
    pub idmapped: bool,
}

impl BindMount {
    /// A plain read-write bind, private: what crio itself mounts in (image
    /// volumes in `bind` mode, mounts.conf's copies).
    pub(crate) fn private(host_path: PathBuf, container_path: PathBuf) -> Self {
        Self {
            host_path,
            container_path,
            readonly: false,
            propagation: "rprivate",
            recursive_readonly: false,
            hardened: false,
            idmapped: false,
        }
    }
}

pub(crate) use crate::store::Resources;

/// What one application container needs.
#[derive(Debug, Clone, Default)]
pub(crate) struct ContainerSpec {
    /// `default_capabilities` (`None`: CRI-O's).
    pub default_capabilities: Option<Vec<String>>,
    /// `default_ulimits`: the process's rlimits (none: the runtime's own).
    pub ulimits: Vec<rlimits::Ulimit>,
    /// The seccomp filter applies although the container is privileged
    /// (`privileged_seccomp_profile`).
    pub seccomp_privileged: bool,
    /// `add_inheritable_capabilities`: the capabilities are inheritable too
    /// (not for privileged containers, which get every set whole anyway).
    pub inheritable_capabilities: bool,
    pub rootfs: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub tty: bool,
    pub hostname: String,
    /// The pause process: containers join its namespaces through `/proc/<pid>/ns`.
    pub sandbox_pid: u32,
    /// The pod's pinned network namespace (else the pause process's).
    pub netns_path: Option<PathBuf>,
    /// The pod's pinned UTS and IPC namespaces (else the pause process's: pods
    /// created before these were pinned).
    pub utsns_path: Option<PathBuf>,
    pub ipcns_path: Option<PathBuf>,
    /// The pod's own user namespace, joined by path (`None` = the host's).
    pub userns: Option<UserNamespace>,
    pub namespaces: PodNamespaces,
    pub mounts: Vec<BindMount>,
    pub privileged: bool,
    pub readonly_rootfs: bool,
    pub no_new_privileges: bool,
    pub add_capabilities: Vec<String>,
    pub drop_capabilities: Vec<String>,
    pub resources: Resources,
    pub cgroups_path: String,
    pub annotations: BTreeMap<String, String>,
    pub oom_score_adj: i32,
    pub seccomp: Seccomp,
    /// `uname -r`, for profiles' `minKernel`.
    pub kernel_release: String,
    /// `None` = CRI-O's defaults; the kubelet sends an empty list for `Unmasked`.
    pub masked_paths: Option<Vec<String>>,
    pub readonly_paths: Option<Vec<String>>,
    /// Already validated (`sysctl::validate`).
    pub sysctls: BTreeMap<String, String>,
    pub devices: Vec<Device>,
    /// The pod's files and shm (`/etc/hosts`, `/etc/resolv.conf`, `/etc/hostname`,
    /// `/dev/shm`), mounted before the CRI's own mounts.
    pub pod_mounts: Vec<Mount>,
    /// NamespaceMode TARGET: the PID namespace of this process.
    pub target_pid: Option<u32>,
    /// Applied only where the host has AppArmor / SELinux.
    pub apparmor_profile: Option<String>,
    pub selinux_label: Option<String>,
    /// Mounts CDI devices bring, as their specs give them; mounted last.
    pub device_mounts: Vec<Mount>,
    /// OCI hooks (from CDI devices).
    pub hooks: Option<Hooks>,
}

/// The OCI runtime spec's hook stages (`prestart` is its deprecated one), as CDI
/// specs and hook files name them.
pub(crate) const HOOK_STAGES: &[&str] = &[
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

/// Appends `hook` to the OCI hooks of `stage` (`prestart`, `createRuntime`, ...).
pub(crate) fn add_hook(
    hooks: &mut Hooks,
    stage: &str,
    hook: oci_spec::runtime::Hook,
) -> Result<(), String> {
    let push = |list: &Option<Vec<oci_spec::runtime::Hook>>| {
        let mut list = list.clone().unwrap_or_default();
        list.push(hook.clone());
        Some(list)
    };
    match stage {
        #[allow(deprecated)]
        "prestart" => hooks.set_prestart(push(hooks.prestart())),
        "createRuntime" => hooks.set_create_runtime(push(hooks.create_runtime())),
        "createContainer" => hooks.set_create_container(push(hooks.create_container())),
        "startContainer" => hooks.set_start_container(push(hooks.start_container())),
        "poststart" => hooks.set_poststart(push(hooks.poststart())),
        "poststop" => hooks.set_poststop(push(hooks.poststop())),
        other => return Err(format!("hook {other:?} is not an OCI hook")),
    };
    Ok(())
}

/// A pod file or directory bind-mounted into its containers (CRI-O's options).
pub(crate) fn pod_mount(source: &Path, dest: &str, readonly: bool) -> Mount {
    let mode = if readonly { "ro" } else { "rw" };
    mount(
        dest,
        "bind",
        &source.display().to_string(),
        &["rbind", "rprivate", "nosuid", "nodev", "noexec", mode],
    )
}

/// The cgroups path of a task: `<parent>/crio-<id>` (cgroupfs) or
/// `<parent slice>:crio:<id>` (systemd), as CRI-O names them.
pub(crate) fn cgroups_path(parent: &str, id: &str, systemd: bool) -> String {
    if systemd {
        let parent = if parent.is_empty() {
            "system.slice"
        } else {
            parent
        };
        format!("{parent}:crio:{id}")
    } else {
        let parent = if parent.is_empty() { "/crio" } else { parent };
        format!("{}/crio-{id}", parent.trim_end_matches('/'))
    }
}

/// Parses CRI capability names (`NET_ADMIN`, `CAP_NET_ADMIN`, any case).
pub(crate) fn capability(name: &str) -> Result<Capability, SpecError> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    bare.parse::<Capability>()
        .map_err(|_| SpecError::UnknownCapability(name.to_string()))
}

/// CRI-O's capability rules: start from the default set (all held capabilities when
/// privileged or when `ALL` is added), add, then drop (`ALL` drops everything not
/// added back explicitly). Never more than the daemon holds.
pub(crate) fn capabilities(
    privileged: bool,
    defaults: Option<&[String]>,
    add: &[String],
    drop: &[String],
    held: &HashSet<Capability>,
) -> Result<HashSet<Capability>, SpecError> {
    let is_all = |s: &String| s.eq_ignore_ascii_case("ALL");
    let mut caps: HashSet<Capability> = if privileged || add.iter().any(is_all) {
        held.clone()
    } else {
        match defaults {
            Some(names) => names
                .iter()
                .map(|c| capability(c))
                .collect::<Result<_, _>>()?,
            None => DEFAULT_CAPABILITIES
                .iter()
                .map(|c| capability(c))
                .collect::<Result<_, _>>()?,
        }
    };
    let added: HashSet<Capability> = add
        .iter()
        .filter(|c| !is_all(c))
        .map(|c| capability(c))
        .collect::<Result<_, _>>()?;
    caps.extend(added.iter().copied());
    if drop.iter().any(is_all) {
        caps = if add.iter().any(is_all) {
            HashSet::new()
        } else {
            added
        };
    }
    for c in drop.iter().filter(|c| !is_all(c)) {
        caps.remove(&capability(c)?);
    }
    caps.retain(|c| held.contains(c));
    Ok(caps)
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(dest));
    m.set_typ(Some(typ.to_string()));
    m.set_source(Some(PathBuf::from(source)));
    m.set_options(Some(options.iter().map(|s| s.to_string()).collect()));
    m
}

/// `/proc`, `/dev`, `/dev/pts`, `/dev/shm`, `/dev/mqueue`, `/sys` (+ cgroup), as CRI-O.
fn default_mounts(sysfs_readonly: bool) -> Vec<Mount> {
    let sys_mode = if sysfs_readonly { "ro" } else { "rw" };
    vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", sys_mode],
        ),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", sys_mode],
        ),
    ]
}

fn namespace(typ: LinuxNamespaceType, path: Option<PathBuf>) -> LinuxNamespace {
    let mut ns = LinuxNamespace::default();
    ns.set_typ(typ);
    ns.set_path(path);
    ns
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn annotations(map: &BTreeMap<String, String>) -> HashMap<String, String> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// `hostname` is `None` for host-network tasks: without a UTS namespace of their own
/// they must not set one.
fn base_spec(rootfs: &Path, readonly: bool, hostname: Option<&str>) -> Spec {
    let mut spec = Spec::default();
    spec.set_version("1.0.2".to_string());
    let mut root = Root::default();
    root.set_path(rootfs.to_path_buf());
    root.set_readonly(Some(readonly));
    spec.set_root(Some(root));
    spec.set_hostname(hostname.map(str::to_string));
    spec
}

/// CRI-O's `add_inheritable_capabilities`: the inheritable set mirrors the
/// bounding one (empty otherwise, since CVE-2022-27652).
fn inherit(p: &mut Process, inheritable: bool) {
    if !inheritable {
        return;
    }
    if let Some(c) = p.capabilities().clone() {
        let mut c = c;
        c.set_inheritable(c.bounding().clone());
        p.set_capabilities(Some(c));
    }
}

fn process(
    args: Vec<String>,
    env: Vec<String>,
    cwd: &str,
    user: User,
    caps: HashSet<Capability>,
    oom_score_adj: i32,
) -> Process {
    let mut p = Process::default();
    p.set_terminal(Some(false));
    p.set_args(Some(args));
    p.set_env(Some(env));
    p.set_cwd(PathBuf::from(if cwd.is_empty() { "/" } else { cwd }));
    p.set_user(user);
    let mut c = LinuxCapabilities::default();
    c.set_bounding(Some(caps.clone()));
    c.set_effective(Some(caps.clone()));
    c.set_permitted(Some(caps));
    c.set_inheritable(None);
    c.set_ambient(None);
    p.set_capabilities(Some(c));
    p.set_rlimits(None);
    p.set_no_new_privileges(Some(false));
    p.set_oom_score_adj(Some(oom_score_adj));
    p
}

/// The infra container: the pause process, owning the pod's namespaces.
pub(crate) fn sandbox(input: &SandboxSpec, held: &HashSet<Capability>) -> Result<Spec, SpecError> {
    let ns = input.namespaces;
    let hostname = (!ns.host_network).then_some(input.hostname.as_str());
    let mut spec = base_spec(&input.rootfs, input.readonly_rootfs, hostname);
    let caps = capabilities(false, input.default_capabilities.as_deref(), &[], &[], held)?;
    let mut user = User::default();
    user.set_uid(0);
    user.set_gid(0);
    let mut p = process(
        input.command.clone(),
        vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
        "/",
        user,
        caps.clone(),
        input.oom_score_adj,
    );
    inherit(&mut p, input.inheritable_capabilities);
    spec.set_process(Some(p));
    let mut mounts = default_mounts(!input.privileged);
    for m in &input.pod_mounts {
        mounts.retain(|d| d.destination() != m.destination());
        mounts.push(m.clone());
    }
    spec.set_mounts(Some(mounts));
    let mut namespaces = vec![namespace(LinuxNamespaceType::Mount, None)];
    if !ns.host_network {
        namespaces.push(namespace(
            LinuxNamespaceType::Network,
            input.netns_path.clone(),
        ));
        namespaces.push(namespace(LinuxNamespaceType::Uts, input.utsns_path.clone()));
    }
    if !ns.host_ipc {
        namespaces.push(namespace(LinuxNamespaceType::Ipc, input.ipcns_path.clone()));
    }
    if !ns.host_pid {
        namespaces.push(namespace(LinuxNamespaceType::Pid, None));
    }
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .cgroups_path(PathBuf::from(&input.cgroups_path))
        .masked_paths(strings(MASKED_PATHS))
        .readonly_paths(strings(READONLY_PATHS))
        .resources(LinuxResources::default())
        .build()
        .map_err(build_err)?;
    linux.set_seccomp(match &input.seccomp {
        Seccomp::Unconfined => None,
        Seccomp::RuntimeDefault => Some(seccomp_default::runtime_default(&caps)),
        Seccomp::Profile(file) => Some(seccomp::to_oci(file, &caps, &input.kernel_release)?),
    });
    if !input.cpuset.is_empty() {
        let mut cpu = LinuxCpu::default();
        cpu.set_cpus(Some(input.cpuset.clone()));
        let mut resources = LinuxResources::default();
        resources.set_cpu(Some(cpu));
        linux.set_resources(Some(resources));
    }
    set_user_namespace(input.userns.as_ref(), &mut linux);
    if !input.sysctls.is_empty() {
        linux.set_sysctl(Some(input.sysctls.clone().into_iter().collect()));
    }
    spec.set_linux(Some(linux));
    spec.set_annotations(Some(annotations(&input.annotations)));
    Ok(spec)
}

/// The OCI resources of a container; also what the shim's `Update` takes for
/// `UpdateContainerResources`.
pub(crate) fn linux_resources(r: &Resources) -> LinuxResources {
    let mut out = LinuxResources::default();
    let mut cpu = LinuxCpu::default();
    if r.cpu_shares > 0 {
        cpu.set_shares(u64::try_from(r.cpu_shares).ok());
    }
    if r.cpu_quota != 0 {
        cpu.set_quota(Some(r.cpu_quota));
    }
    if r.cpu_period > 0 {
        cpu.set_period(u64::try_from(r.cpu_period).ok());
    }
    if !r.cpuset_cpus.is_empty() {
        cpu.set_cpus(Some(r.cpuset_cpus.clone()));
    }
    if !r.cpuset_mems.is_empty() {
        cpu.set_mems(Some(r.cpuset_mems.clone()));
    }
    out.set_cpu(Some(cpu));
    if r.memory_limit > 0 || r.memory_swap != 0 {
        let mut mem = LinuxMemory::default();
        if r.memory_limit > 0 {
            mem.set_limit(Some(r.memory_limit));
        }
        if r.memory_swap != 0 {
            mem.set_swap(Some(r.memory_swap));
        }
        out.set_memory(Some(mem));
    }
    if r.pids_limit > 0 {
        let mut pids = LinuxPids::default();
        pids.set_limit(r.pids_limit);
        out.set_pids(Some(pids));
    }
    if !r.hugepages.is_empty() {
        let limits = r
            .hugepages
            .iter()
            .map(|(size, limit)| {
                let mut h = LinuxHugepageLimit::default();
                h.set_page_size(size.clone());
                h.set_limit(i64::try_from(*limit).unwrap_or(i64::MAX));
                h
            })
            .collect();
        out.set_hugepage_limits(Some(limits));
    }
    if !r.unified.is_empty() {
        out.set_unified(Some(
            r.unified
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ));
    }
    out
}

/// An application container, joining its pod's namespaces.
pub(crate) fn container(
    input: &ContainerSpec,
    held: &HashSet<Capability>,
) -> Result<Spec, SpecError> {
    let ns = input.namespaces;
    let hostname = (!ns.host_network).then_some(input.hostname.as_str());
    let mut spec = base_spec(&input.rootfs, input.readonly_rootfs, hostname);
    let caps = capabilities(
        input.privileged,
        input.default_capabilities.as_deref(),
        &input.add_capabilities,
        &input.drop_capabilities,
        held,
    )?;
    let mut user = User::default();
    user.set_uid(input.uid);
    user.set_gid(input.gid);
    if !input.additional_gids.is_empty() {
        user.set_additional_gids(Some(input.additional_gids.clone()));
    }
    let mut p = process(
        input.args.clone(),
        input.env.clone(),
        &input.cwd,
        user,
        caps.clone(),
        input.oom_score_adj,
    );
    p.set_terminal(Some(input.tty));
    inherit(&mut p, input.inheritable_capabilities && !input.privileged);
    if !input.ulimits.is_empty() {
        p.set_rlimits(Some(rlimits::to_oci(&input.ulimits)));
    }
    p.set_no_new_privileges(Some(input.no_new_privileges));
    p.set_apparmor_profile(input.apparmor_profile.clone());
    p.set_selinux_label(input.selinux_label.clone());
    spec.set_process(Some(p));

    let mut mounts = default_mounts(!input.privileged);
    for m in &input.pod_mounts {
        mounts.retain(|d| d.destination() != m.destination());
        mounts.push(m.clone());
    }
    for m in &input.mounts {
        // A CRI mount over a default or pod one replaces it.
        mounts.retain(|d| d.destination() != &m.container_path);
        let mut options = vec!["rbind".to_string(), m.propagation.to_string()];
        options.push(if m.readonly { "ro" } else { "rw" }.to_string());
        if m.recursive_readonly {
            options.push("rro".to_string());
        }
        if m.hardened {
            options.extend(["noexec", "nosuid", "nodev"].map(String::from));
        }
        let mut b = Mount::default();
        b.set_destination(m.container_path.clone());
        b.set_typ(Some("bind".into()));
        b.set_source(Some(m.host_path.clone()));
        b.set_options(Some(options));
        mounts.push(b);
    }
    for m in &input.device_mounts {
        mounts.retain(|d| d.destination() != m.destination());
        mounts.push(m.clone());
    }
    spec.set_mounts(Some(mounts));
    let root_propagation =
        propagation::rootfs_propagation(input.mounts.iter().map(|m| m.propagation));
    spec.set_hooks(input.hooks.clone());

    let pause_ns = |name: &str| {
        Some(PathBuf::from(format!(
            "/proc/{}/ns/{name}",
            input.sandbox_pid
        )))
    };
    let mut namespaces = vec![namespace(LinuxNamespaceType::Mount, None)];
    if !ns.host_network {
        let net = input.netns_path.clone().or_else(|| pause_ns("net"));
        namespaces.push(namespace(LinuxNamespaceType::Network, net));
        let uts = input.utsns_path.clone().or_else(|| pause_ns("uts"));
        namespaces.push(namespace(LinuxNamespaceType::Uts, uts));
    }
    if !ns.host_ipc {
        let ipc = input.ipcns_path.clone().or_else(|| pause_ns("ipc"));
        namespaces.push(namespace(LinuxNamespaceType::Ipc, ipc));
    }
    if !ns.host_pid {
        let path = match input.target_pid {
            Some(pid) => Some(PathBuf::from(format!("/proc/{pid}/ns/pid"))),
            None if ns.pod_pid => pause_ns("pid"),
            None => None,
        };
        namespaces.push(namespace(LinuxNamespaceType::Pid, path));
    }
    let mut resources = linux_resources(&input.resources);
    resources.set_devices(Some(devices::cgroup_rules(
        &input.devices,
        input.privileged,
    )));
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .cgroups_path(PathBuf::from(&input.cgroups_path))
        .resources(resources)
        .devices(devices::linux_devices(&input.devices))
        .build()
        .map_err(build_err)?;
    if !input.sysctls.is_empty() {
        linux.set_sysctl(Some(input.sysctls.clone().into_iter().collect()));
    }
    if input.privileged {
        linux.set_masked_paths(None);
        linux.set_readonly_paths(None);
    } else {
        let or_default = |given: &Option<Vec<String>>, default: &[&str]| {
            given.clone().unwrap_or_else(|| strings(default))
        };
        linux.set_masked_paths(Some(or_default(&input.masked_paths, MASKED_PATHS)));
        linux.set_readonly_paths(Some(or_default(&input.readonly_paths, READONLY_PATHS)));
    }
    // Privileged containers run unconfined, as under CRI-O.
    let confined = !input.privileged || input.seccomp_privileged;
    let seccomp = match (&input.seccomp, confined) {
        (_, false) | (Seccomp::Unconfined, _) => None,
        (Seccomp::RuntimeDefault, true) => Some(seccomp_default::runtime_default(&caps)),
        (Seccomp::Profile(file), true) => {
            Some(seccomp::to_oci(file, &caps, &input.kernel_release)?)
        }
    };
    linux.set_seccomp(seccomp);
    linux.set_rootfs_propagation(root_propagation.map(String::from));
    set_user_namespace(input.userns.as_ref(), &mut linux);
    spec.set_linux(Some(linux));
    spec.set_annotations(Some(annotations(&input.annotations)));
    Ok(spec)
}

#[cfg(test)]
mod tests;
