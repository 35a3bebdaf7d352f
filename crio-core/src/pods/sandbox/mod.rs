//! Pod sandboxes: the infra (pause) task that owns a pod's namespaces, run through
//! the pod's shim, and the persisted record that lets a restarted core find it.
//!
//! An `impl` of [`PodRuntime`], the context pods and containers work in.

pub mod cri_events;
pub(crate) mod network;
pub mod pause;
pub mod pod_files;
pub mod userns;
mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use protocols::cri;
use protocols::shim::api;

use super::PodRuntime;

use crate::error::CriError;
use crate::image::image_config::ImageConfig;
use crate::network::pinned_ns::{self, PodNamespace};
use crate::network::userns::UsernsMappings;
use crate::spec::{self, PodNamespaces, SandboxSpec};
use crate::storage::rootfs;
use crate::store::SandboxState;
use crate::store::{new_id, now_nanos, ContainerRecord, ImageRecord, SandboxRecord};

/// How long the pause process gets to exit on StopPodSandbox.
const PAUSE_STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The record's field holding the pin of `kind`.
fn pin_slot(record: &mut SandboxRecord, kind: PodNamespace) -> &mut String {
    match kind {
        PodNamespace::Net => &mut record.netns_path,
        PodNamespace::Uts => &mut record.utsns_path,
        PodNamespace::Ipc => &mut record.ipcns_path,
    }
}

/// Where pods' user namespaces are pinned, under the run root.
pub const USERNS_DIR: &str = "userns";

/// The pod's user namespace as its specs join it (`None` = the host's).
pub(crate) fn pod_user_namespace(record: &SandboxRecord) -> Option<spec::UserNamespace> {
    let m = record.userns?;
    let oci = |r: crate::network::userns::IdMapping| {
        oci_spec::runtime::LinuxIdMappingBuilder::default()
            .container_id(r.container_id)
            .host_id(r.host_id)
            .size(r.length)
            .build()
            .map(|m| vec![m])
            .unwrap_or_default()
    };
    Some(spec::UserNamespace {
        path: PathBuf::from(&record.userns_path),
        uid_mappings: oci(m.uids),
        gid_mappings: oci(m.gids),
    })
}

/// CRI-O's unique name of a pod sandbox.
pub(crate) fn full_name(meta: &cri::PodSandboxMetadata) -> String {
    format!(
        "k8s_POD_{}_{}_{}_{}",
        meta.name, meta.namespace, meta.uid, meta.attempt
    )
}

/// What a pod asks for beyond its namespaces, checked before anything is created.
#[derive(Debug)]
struct PodSetup {
    /// The pod's own user namespace (`None` = the host's).
    userns: Option<UsernsMappings>,
    sysctls: BTreeMap<String, String>,
    seccomp: spec::Seccomp,
    dns: Option<cri::DnsConfig>,
    shm_size: u64,
    /// containerd's sandbox resource annotations, from the pod's
    /// `linux.resources` (the sum of its containers' limits): a VM handler sizes
    /// the pod's VM by them.
    resource_annotations: BTreeMap<String, String>,
    /// The handler runs the pod in a VM, whose guest has namespaces of its own:
    /// the pod's sysctls go in its sandbox spec too.
    in_vm: bool,
}

/// containerd's annotations of a pod's summed limits (`io.kubernetes.cri.sandbox-*`),
/// for the values the kubelet set.
fn resource_annotations(
    resources: Option<&cri::LinuxContainerResources>,
) -> BTreeMap<String, String> {
    let Some(r) = resources else {
        return BTreeMap::new();
    };
    [
        ("io.kubernetes.cri.sandbox-cpu-period", r.cpu_period),
        ("io.kubernetes.cri.sandbox-cpu-quota", r.cpu_quota),
        ("io.kubernetes.cri.sandbox-cpu-shares", r.cpu_shares),
        ("io.kubernetes.cri.sandbox-memory", r.memory_limit_in_bytes),
    ]
    .into_iter()
    .filter(|(_, v)| *v > 0)
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// `value`, annotation `name`'s on a pod of `handler`: only where the handler
/// allows it (`allowed_annotations`), as CRI-O gates annotation-driven features.
pub(crate) fn allowed_annotation<'a>(
    handler: &crate::runtime::Handler,
    name: &str,
    value: Option<&'a String>,
) -> Option<&'a str> {
    let value = value?;
    if handler.config.allows(name) {
        return Some(value);
    }
    tracing::info!(
        handler = %handler.name,
        annotation = name,
        "annotation ignored: not in the handler's allowed_annotations"
    );
    None
}

fn pod_setup(
    config: &cri::PodSandboxConfig,
    ns: PodNamespaces,
    handler: &crate::runtime::Handler,
    node: &crate::pods::NodeDefaults,
) -> Result<PodSetup, CriError> {
    let linux = config.linux.as_ref();
    let sc = linux.and_then(|l| l.security_context.as_ref());
    let sysctls = match linux {
        Some(l) => {
            crate::pods::container::security::pod_sysctls(&l.sysctls, ns.host_network, ns.host_ipc)?
        }
        None => BTreeMap::new(),
    };
    let sysctls = node.pod_sysctls(sysctls, ns.host_network, ns.host_ipc);
    let asked = crate::pods::container::security::seccomp_choice(
        sc.and_then(|s| s.seccomp.as_ref()),
        #[allow(deprecated)]
        sc.map_or("", |s| s.seccomp_profile_path.as_str()),
    )?;
    let (seccomp, _) = node.seccomp(asked, privileged(config), &handler.name)?;
    let shm = crate::config::SHM_SIZE_ANNOTATION;
    let shm_size = pod_files::shm_size(allowed_annotation(
        handler,
        shm,
        config.annotations.get(shm),
    ))
    .map_err(CriError::InvalidArgument)?;
    Ok(PodSetup {
        userns: userns::pod_mappings(config, ns)?,
        sysctls,
        seccomp,
        dns: config.dns_config.clone(),
        shm_size,
        resource_annotations: resource_annotations(linux.and_then(|l| l.resources.as_ref())),
        in_vm: false,
    })
}

/// A pod in a VM has the guest's network, PID and IPC namespaces: it cannot use
/// the host's, and its containers cannot share one PID namespace (there is no
/// pause process in the guest to hold it).
fn refuse_host_sharing(handler: &str, ns: PodNamespaces) -> Result<(), CriError> {
    let asked: Vec<&str> = [
        (ns.host_network, "the host's network namespace"),
        (ns.host_pid, "the host's PID namespace"),
        (ns.host_ipc, "the host's IPC namespace"),
        (ns.pod_pid, "one PID namespace shared by its containers"),
    ]
    .into_iter()
    .filter(|(asked, _)| *asked)
    .map(|(_, what)| what)
    .collect();
    if asked.is_empty() {
        return Ok(());
    }
    Err(CriError::InvalidArgument(format!(
        "runtime handler {handler:?} runs each pod in a VM, which cannot have {}",
        asked.join(", ")
    )))
}

fn privileged(config: &cri::PodSandboxConfig) -> bool {
    config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .is_some_and(|s| s.privileged)
}

fn namespaces(config: &cri::PodSandboxConfig) -> PodNamespaces {
    let opts = config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.as_ref());
    let node = cri::NamespaceMode::Node as i32;
    PodNamespaces {
        host_network: opts.is_some_and(|o| o.network == node),
        host_pid: opts.is_some_and(|o| o.pid == node),
        host_ipc: opts.is_some_and(|o| o.ipc == node),
        // The proto's default: no options, or no PID mode, is POD.
        pod_pid: opts.is_none_or(|o| o.pid == cri::NamespaceMode::Pod as i32),
    }
}

/// Unpins a pod's namespaces, unmounts its shm and removes its bundle. Blocking
/// (unmounts, a tree removal).
fn remove_pod_files(record: &SandboxRecord) {
    for path in [
        &record.netns_path,
        &record.utsns_path,
        &record.ipcns_path,
        &record.userns_path,
    ] {
        if !path.is_empty() {
            if let Err(e) = pinned_ns::remove_pinned(Path::new(path)) {
                tracing::warn!(pod = %record.id, "{e}");
            }
        }
    }
    if !record.bundle.as_os_str().is_empty() {
        let shm = pod_files::PodFiles::new(&record.bundle).shm();
        if let Err(e) = pod_files::unmount_shm(&shm) {
            tracing::warn!(pod = %record.id, "unmount shm: {e}");
        }
        if let Err(e) = std::fs::remove_dir_all(&record.bundle) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(pod = %record.id, "remove bundle: {e}");
            }
        }
    }
}

impl PodRuntime {
    /// A pod with its own user namespace needs a handler whose runtime can join one
    /// (the daemon ID-maps the rootfs and volumes itself) and overlay storage.
    fn check_userns_support(&self, handler: &crate::runtime::Handler) -> Result<(), CriError> {
        if !handler.features.user_namespaces {
            return Err(CriError::FailedPrecondition(format!(
                "runtime handler {:?} does not support user namespaces (hostUsers: false): its \
                 runtime reports none it can join, or the kernel cannot ID-map mounts",
                handler.name
            )));
        }
        if self.config.storage_driver != crate::storage::rootfs::StorageDriver::Overlay {
            return Err(CriError::FailedPrecondition(
                "user namespaces (hostUsers: false) need the overlay storage driver".into(),
            ));
        }
        Ok(())
    }

    /// Whether a pod gets an infra (pause) process: CRI-O's `drop_infra_ctr` rule. A
    /// pod sharing one PID namespace needs its init; a shim that has not said it
    /// serves containers without a sandbox task gets one (containerd always gives
    /// one). A privileged pod keeps it too: sysfs is one superblock per network
    /// namespace whose first mount fixes it read-only or not, and only pause mounts
    /// it read-write first for the pod's privileged containers. The pod's other
    /// namespaces are pinned by the core either way.
    pub(crate) fn needs_infra(&self, config: &cri::PodSandboxConfig, handler_name: &str) -> bool {
        let Ok(handler) = self.handler(handler_name) else {
            return true;
        };
        let droppable = self.config.drop_infra && handler.features.sandbox_task_optional;
        !droppable || namespaces(config).pod_pid || privileged(config)
    }

    /// RunPodSandbox.
    /// `infra` is the `pause_image` (resolved by the caller when the pod needs an
    /// infra process), `None` for the built-in pause.
    pub(crate) async fn run_sandbox(
        self: &Arc<Self>,
        config: &cri::PodSandboxConfig,
        handler_name: &str,
        infra: Option<(&ImageRecord, &ImageConfig)>,
    ) -> Result<String, CriError> {
        let begun = std::time::Instant::now();
        let meta = validate::pod_request(config)?;
        let handler = self.handler(handler_name)?;
        // The handler's `default_annotations`, under the pod's own (CRI-O 1.31).
        let defaulted;
        let config = if handler.config.default_annotations.is_empty() {
            config
        } else {
            let mut c = config.clone();
            for (k, v) in &handler.config.default_annotations {
                c.annotations.entry(k.clone()).or_insert_with(|| v.clone());
            }
            defaulted = c;
            &defaulted
        };
        let shim_binary = self.shim_binary(&handler)?;
        let ns = namespaces(config);
        let in_vm = handler.features.pod_in_vm;
        if in_vm {
            refuse_host_sharing(&handler.name, ns)?;
        }
        let setup = PodSetup {
            in_vm,
            ..pod_setup(config, ns, &handler, &self.config.node.current())?
        };
        if setup.userns.is_some() {
            self.check_userns_support(&handler)?;
        }
        let id = new_id();
        let cgroup_parent = config
            .linux
            .as_ref()
            .map(|l| l.cgroup_parent.clone())
            .unwrap_or_default();
        let infra_dropped = !self.needs_infra(config, handler_name);
        let network = if ns.host_network {
            None
        } else {
            Some(self.plan_network(config, &cgroup_parent)?)
        };
        let mut record = SandboxRecord {
            id: id.clone(),
            name: meta.name.clone(),
            namespace: meta.namespace.clone(),
            uid: meta.uid.clone(),
            attempt: meta.attempt,
            runtime_handler: handler.name.clone(),
            created_at: now_nanos(),
            state: SandboxState::NotReady,
            labels: config.labels.clone().into_iter().collect(),
            annotations: config.annotations.clone().into_iter().collect(),
            full_name: full_name(meta),
            hostname: config.hostname.clone(),
            // CRI-O's: a pod the kubelet gave no log directory logs under log_dir.
            log_directory: if config.log_directory.is_empty() {
                self.config.log_dir.join(&id).display().to_string()
            } else {
                config.log_directory.clone()
            },
            cgroup_parent,
            host_network: ns.host_network,
            host_pid: ns.host_pid,
            host_ipc: ns.host_ipc,
            pod_pid: ns.pod_pid,
            privileged: privileged(config),
            bundle: self.bundle_dir(&id),
            shim_binary: shim_binary.clone(),
            infra_image: infra
                .filter(|_| !infra_dropped)
                .map(|(i, _)| i.id.clone())
                .unwrap_or_default(),
            infra_dropped,
            userns: setup.userns,
            ..Default::default()
        };
        // What is about to exist is recorded with the name, in one commit, so a crash
        // at any later point leaves a record to undo it by: the namespaces' paths and
        // the network attachment (whose DEL works where ADD never ran).
        self.plan_pinned_namespaces(&mut record, ns);
        if let Some(plan) = &network {
            Self::record_attachment(&mut record, plan);
        }
        let planned = begun.elapsed();
        let _lock = self.locks.lock(&id).await;
        let pinned = {
            // Name reservation and the record land together. The pod's namespaces
            // are made while the record commits: a crash before the commit lands
            // leaves pins and a bundle no record names, which start-up removes, and
            // nothing reaches the network before both are done.
            let mut names = self.names.lock().await;
            if let Some(holder) = names.holder::<SandboxRecord>(&self.store, &record.full_name)? {
                return Err(CriError::AlreadyExists(format!(
                    "pod sandbox name {:?} is reserved by {holder}",
                    record.full_name
                )));
            }
            let this = Arc::clone(self);
            let (to_pin, sysctls) = (record.clone(), setup.sysctls.clone());
            let pinning = super::start_off_worker(move || {
                let started = std::time::Instant::now();
                this.make_pod_namespaces(&to_pin, ns, &sysctls)
                    .map(|()| started.elapsed())
            });
            let committed = self.store.put_async(record.clone()).await;
            if committed.is_ok() {
                names.hold(&record);
            }
            // Other pods' names wait for the commit only, not for the namespaces.
            drop(names);
            let pinned = pinning.await;
            if let Err(e) = committed {
                // Unrecorded: what the namespaces' step made goes now.
                let pod = record.clone();
                let _ = super::off_worker(move || {
                    remove_pod_files(&pod);
                    Ok(())
                })
                .await;
                return Err(e.into());
            }
            pinned
        };
        crate::failpoint::hit("run_sandbox.recorded");
        tracing::debug!(
            pod = %id,
            plan_ms = super::ms(planned),
            record_ms = super::ms(begun.elapsed() - planned),
            pin_ms = pinned.as_ref().map_or(0.0, |d| super::ms(*d)),
            "pod sandbox recorded, namespaces pinned"
        );
        let started = match pinned {
            Ok(_) => {
                self.start_sandbox(&mut record, &handler, ns, infra, network, setup)
                    .await
            }
            Err(e) => Err(e),
        };
        match started {
            Ok(()) => {
                self.emit(&id, &id, cri::ContainerEventType::ContainerCreatedEvent);
                self.emit(&id, &id, cri::ContainerEventType::ContainerStartedEvent);
                Ok(id)
            }
            Err(e) => {
                tracing::warn!(pod = %id, "RunPodSandbox failed, cleaning up: {e}");
                self.destroy_sandbox(&record).await;
                Err(e)
            }
        }
    }

    /// The pod's start after its record and namespaces: the network (CNI ADD) side
    /// by side with the pod's files and the pause task (or only the shim).
    async fn start_sandbox(
        self: &Arc<Self>,
        record: &mut SandboxRecord,
        handler: &crate::runtime::Handler,
        ns: PodNamespaces,
        infra: Option<(&ImageRecord, &ImageConfig)>,
        network: Option<network::NetworkPlan>,
        setup: PodSetup,
    ) -> Result<(), CriError> {
        let infra = infra.map(|(image, config)| (image.clone(), config.clone()));
        let this = Arc::clone(self);
        let planned = record.clone();
        let files = super::off_worker(move || {
            this.write_pod_bundle(&planned, ns, infra, setup)?;
            crate::failpoint::hit("run_sandbox.spec_written");
            Ok(())
        });
        self.run_infra_and_network(record, handler, network, files)
            .await
    }

    /// The namespaces the pod pins (net and UTS unless it uses the host's network,
    /// IPC unless the host's).
    fn pinned_namespaces(ns: PodNamespaces) -> Vec<PodNamespace> {
        [
            (PodNamespace::Net, !ns.host_network),
            (PodNamespace::Uts, !ns.host_network),
            (PodNamespace::Ipc, !ns.host_ipc),
        ]
        .into_iter()
        .filter_map(|(kind, want)| want.then_some(kind))
        .collect()
    }

    /// Fills in the paths of the namespaces the pod will pin.
    fn plan_pinned_namespaces(&self, record: &mut SandboxRecord, ns: PodNamespaces) {
        for kind in Self::pinned_namespaces(ns) {
            let path = self.config.run_root.join(kind.dir_name()).join(&record.id);
            *pin_slot(record, kind) = path.display().to_string();
        }
        if record.userns.is_some() {
            record.userns_path = self
                .config
                .run_root
                .join(USERNS_DIR)
                .join(&record.id)
                .display()
                .to_string();
        }
    }

    /// The pod's bundle directory and its pinned namespaces with the pod's sysctls:
    /// what CNI ADD needs. Blocking (mounts, forks, writes).
    fn make_pod_namespaces(
        &self,
        record: &SandboxRecord,
        ns: PodNamespaces,
        sysctls: &BTreeMap<String, String>,
    ) -> Result<(), CriError> {
        let group = record.userns.map(|m| m.gids.host_id);
        crate::storage::private_dir(&record.bundle, group).map_err(|e| {
            CriError::internal_in(format!("create bundle {}", record.bundle.display()), e)
        })?;
        self.pin_namespaces(record, ns)?;
        self.set_sysctls(record, sysctls)?;
        crate::failpoint::hit("run_sandbox.namespaces_pinned");
        Ok(())
    }

    /// What the pod's shim needs in the bundle: the pod's files, and the pause spec
    /// when it has an infra process. Blocking (mounts, writes).
    fn write_pod_bundle(
        &self,
        record: &SandboxRecord,
        ns: PodNamespaces,
        infra: Option<(ImageRecord, ImageConfig)>,
        setup: PodSetup,
    ) -> Result<(), CriError> {
        let pod_mounts = self.write_pod_files(record, &setup)?;
        if record.infra_dropped {
            return Ok(());
        }
        self.write_pause_spec(record, ns, infra, setup, pod_mounts)
    }

    /// The pause process's rootfs (a `pause_image`'s layers, or the built-in one)
    /// and its spec in the bundle. Blocking.
    fn write_pause_spec(
        &self,
        record: &SandboxRecord,
        ns: PodNamespaces,
        infra: Option<(ImageRecord, ImageConfig)>,
        setup: PodSetup,
        pod_mounts: Vec<oci_spec::runtime::Mount>,
    ) -> Result<(), CriError> {
        let id = record.id.clone();
        let (rootfs, command, readonly) = match &infra {
            None => (
                self.config.pause_rootfs.clone(),
                vec![pause::PAUSE_COMMAND.to_string()],
                true,
            ),
            Some((image, image_config)) => {
                let rootfs = self.prepare_infra_rootfs(&id, image)?;
                (rootfs, self.infra_command(image, image_config)?, false)
            }
        };
        let pinned = |path: &String| (!path.is_empty()).then(|| PathBuf::from(path));
        let mut annotations: BTreeMap<String, String> = record.annotations.clone();
        annotations.extend(grouping_annotations(&id, "sandbox"));
        annotations.insert(spec::CRI_SANDBOX_NAME.into(), record.name.clone());
        annotations.insert(spec::CRI_SANDBOX_NAMESPACE.into(), record.namespace.clone());
        annotations.extend(setup.resource_annotations.clone());
        let node = self.config.node.current();
        let oci = spec::sandbox(
            &SandboxSpec {
                hostname: record.hostname.clone(),
                rootfs,
                readonly_rootfs: readonly,
                command,
                namespaces: ns,
                netns_path: pinned(&record.netns_path),
                utsns_path: pinned(&record.utsns_path),
                ipcns_path: pinned(&record.ipcns_path),
                cgroups_path: spec::cgroups_path(
                    &record.cgroup_parent,
                    &id,
                    self.config.systemd_cgroup,
                ),
                annotations,
                // CRI-O gives the infra container -998; never below what we may set.
                oom_score_adj: (-998).max(self.config.min_oom_score_adj),
                privileged: record.privileged,
                pod_mounts,
                seccomp: setup.seccomp,
                kernel_release: self.config.host.kernel_release.clone(),
                userns: pod_user_namespace(record),
                sysctls: if setup.in_vm {
                    setup.sysctls
                } else {
                    BTreeMap::new()
                },
                default_capabilities: Some(node.capabilities.clone()),
                inheritable_capabilities: node.inheritable_capabilities,
                cpuset: node.infra_cpuset.clone(),
            },
            &self.config.held_capabilities,
        )?;
        crate::runtime::bundle::write_spec(&record.bundle, &oci).map_err(|e| {
            CriError::internal_in(format!("write {}/config.json", record.bundle.display()), e)
        })
    }

    /// The pod's sysctls, written in the pinned namespaces they belong to (as CRI-O's
    /// `pinns` does), so they hold whether or not a pause process runs. Validation
    /// let through only those of namespaces the pod owns. Blocking.
    fn set_sysctls(
        &self,
        record: &SandboxRecord,
        sysctls: &BTreeMap<String, String>,
    ) -> Result<(), CriError> {
        use crate::spec::sysctl::{namespace_of, SysctlNamespace};
        for (name, value) in sysctls {
            let (kind, path) = match namespace_of(name) {
                Some(SysctlNamespace::Net) => (PodNamespace::Net, &record.netns_path),
                Some(SysctlNamespace::Ipc) => (PodNamespace::Ipc, &record.ipcns_path),
                None => continue,
            };
            pinned_ns::write_sysctl(kind, Path::new(path), name, value).map_err(|e| {
                if e.is_refused_value() {
                    CriError::InvalidArgument(format!("pod sysctl {name}={value:?}: {e}"))
                } else {
                    CriError::internal_in(format!("pod sysctl {name}"), e)
                }
            })?;
        }
        Ok(())
    }

    /// A pause image's layers, mounted as the infra container's rootfs.
    fn prepare_infra_rootfs(&self, id: &str, image: &ImageRecord) -> Result<PathBuf, CriError> {
        let layers = self
            .images
            .layers
            .diff_paths(&image.layers)
            .map_err(CriError::internal)?;
        let storage = self.config.containers_dir.join(id);
        crate::storage::private_dir(&storage, None)
            .map_err(|e| CriError::internal_in(format!("create {}", storage.display()), e))?;
        rootfs::prepare_rootfs(self.config.storage_driver, &layers, &storage)
            .map_err(CriError::internal)
    }

    /// What a pause image's infra container runs: `pause_command`, or the image's own.
    fn infra_command(
        &self,
        image: &ImageRecord,
        image_config: &ImageConfig,
    ) -> Result<Vec<String>, CriError> {
        let node = self.config.node.current();
        if !node.pause_command.is_empty() {
            return Ok(vec![node.pause_command.clone()]);
        }
        crate::pods::container::process::command_line(&[], &[], &image_config.config).ok_or_else(
            || {
                CriError::FailedPrecondition(format!(
                    "pause image {} has no Entrypoint or Cmd and pause_command is empty",
                    image.id
                ))
            },
        )
    }

    /// Pins the pod's namespaces at the recorded paths; in its own user namespace
    /// when it has one, which then owns them.
    fn pin_namespaces(&self, record: &SandboxRecord, ns: PodNamespaces) -> Result<(), CriError> {
        let kinds = Self::pinned_namespaces(ns);
        let path_of = |kind: PodNamespace| {
            PathBuf::from(match kind {
                PodNamespace::Net => &record.netns_path,
                PodNamespace::Uts => &record.utsns_path,
                PodNamespace::Ipc => &record.ipcns_path,
            })
        };
        match &record.userns {
            Some(mappings) => {
                let owned: Vec<(PodNamespace, PathBuf)> =
                    kinds.iter().map(|kind| (*kind, path_of(*kind))).collect();
                crate::network::userns::create_pinned_userns(
                    Path::new(&record.userns_path),
                    &owned,
                    mappings,
                    &record.hostname,
                )
                .map_err(CriError::internal)
            }
            None => {
                let pins: Vec<(PodNamespace, PathBuf)> = kinds
                    .into_iter()
                    .map(|kind| (kind, path_of(kind)))
                    .collect();
                pinned_ns::create_pinned_set(&pins, &record.hostname).map_err(CriError::internal)
            }
        }
    }

    /// The pause task (or, without one, only the pod's shim) and the pod's network
    /// (CNI ADD), side by side; the outcome recorded.
    async fn run_infra_and_network(
        self: &Arc<Self>,
        record: &mut SandboxRecord,
        handler: &crate::runtime::Handler,
        network: Option<network::NetworkPlan>,
        files: impl std::future::Future<Output = Result<(), CriError>>,
    ) -> Result<(), CriError> {
        let id = record.id.clone();
        // CNI ADD runs while the pod's files are written and the shim starts (and
        // starts the pause task): both only need the pinned namespaces, and neither
        // waits for the other.
        let attach = match network {
            Some(plan) => Some(self.attach(record, plan)),
            None => {
                record.ips = crate::network::pod_ips::host_ips()
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                None
            }
        };
        let bundle = record.bundle.clone();
        let shim_binary = record.shim_binary.clone();
        let infra_dropped = record.infra_dropped;
        let infra = async {
            let begun = std::time::Instant::now();
            if let Err(e) = files.await {
                return (Err(e), begun.elapsed());
            }
            let started = if infra_dropped {
                self.start_pod_shim(&id, &handler.name, &shim_binary, &bundle)
                    .await
                    .map(|shim| (shim, 0))
            } else {
                self.start_infra_task(&id, &shim_binary, &bundle, handler)
                    .await
            };
            (started, begun.elapsed())
        };
        // A shim that needs its sandbox task (a VM's: it gives the guest the pod's
        // interfaces at boot) gets the network first, as containerd does it.
        let network_first = !handler.features.sandbox_task_optional;
        let (added, (started, infra_time)) = match attach {
            Some(attach) if network_first => {
                let added = attach.await;
                let started = match &added.result {
                    Ok(_) => infra.await,
                    Err(_) => {
                        drop(infra);
                        (
                            Err(CriError::FailedPrecondition(
                                "pod network not attached: sandbox task not started".into(),
                            )),
                            std::time::Duration::ZERO,
                        )
                    }
                };
                (Some(added), started)
            }
            Some(attach) => {
                let (added, started) = tokio::join!(attach, infra);
                (Some(added), started)
            }
            None => (None, infra.await),
        };
        let mut hosts = Ok(());
        if let Some(added) = &added {
            Self::finish_attach(record, added);
            hosts = self.write_pod_hosts(record);
        }
        // What exists is recorded before an error is returned, so cleanup finds it;
        // on success, in the same commit as the pod's readiness.
        if let Ok((shim, pid)) = &started {
            record.shim_address = shim.address().address.clone();
            record.task_version = shim.address().version;
            record.pid = *pid;
        }
        let cni_time = added.as_ref().map(|a| a.elapsed);
        if let Some(a) = added.as_ref().filter(|a| a.result.is_ok()) {
            self.config.metrics.network_setup(a.elapsed);
        }
        let attached = added.map_or(Ok(()), |a| a.result.map(drop)).and(hosts);
        if started.is_ok() && attached.is_ok() {
            record.state = SandboxState::Ready;
        }
        let committing = std::time::Instant::now();
        self.store.put_async(record.clone()).await?;
        attached?;
        let (shim, _) = started?;
        // What the pod's start spent where (the two ran side by side).
        tracing::info!(
            pod = %id,
            cni_add_ms = cni_time.map_or(0.0, super::ms),
            infra_ms = super::ms(infra_time),
            commit_ms = super::ms(committing.elapsed()),
            "pod sandbox ready"
        );
        if !record.infra_dropped {
            self.watch_exit(shim, id.clone(), id);
        }
        Ok(())
    }

    /// Writes the pod's hostname, resolv.conf and hosts and mounts its shm; returns
    /// the mounts pause gets.
    fn write_pod_files(
        &self,
        record: &SandboxRecord,
        setup: &PodSetup,
    ) -> Result<Vec<oci_spec::runtime::Mount>, CriError> {
        let files = pod_files::PodFiles::new(&record.bundle);
        let io = |what: &str, e: std::io::Error| {
            CriError::internal_in(format!("pod {}: {what}", record.id), e)
        };
        let hostname = if record.host_network {
            spec::host_hostname()
        } else {
            record.hostname.clone()
        };
        pod_files::write_file(&files.hostname(), &format!("{hostname}\n"))
            .map_err(|e| io("write hostname", e))?;
        match pod_files::resolv_conf(setup.dns.as_ref()) {
            Some(text) => pod_files::write_file(&files.resolv_conf(), &text),
            None => std::fs::copy("/etc/resolv.conf", files.resolv_conf()).map(|_| ()),
        }
        .map_err(|e| io("write resolv.conf", e))?;
        if record.host_network {
            std::fs::copy("/etc/hosts", files.hosts()).map(|_| ())
        } else {
            pod_files::write_file(&files.hosts(), &pod_files::hosts(&hostname, &[]))
        }
        .map_err(|e| io("write hosts", e))?;
        let mut mounts = Vec::new();
        if record.host_ipc {
            mounts.push(spec::pod_mount(Path::new("/dev/shm"), "/dev/shm", false));
        } else {
            pod_files::mount_shm(&files.shm(), setup.shm_size).map_err(|e| io("mount shm", e))?;
            mounts.push(spec::pod_mount(&files.shm(), "/dev/shm", false));
        }
        Ok(mounts)
    }

    /// Rewrites the pod's hosts file once its IPs are known.
    fn write_pod_hosts(&self, record: &SandboxRecord) -> Result<(), CriError> {
        let ips: Vec<std::net::IpAddr> =
            record.ips.iter().filter_map(|ip| ip.parse().ok()).collect();
        let files = pod_files::PodFiles::new(&record.bundle);
        pod_files::write_file(&files.hosts(), &pod_files::hosts(&record.hostname, &ips))
            .map_err(|e| CriError::internal_in(format!("pod {}: write hosts", record.id), e))
    }

    /// Starts the pod's shim and its pause task; returns the shim and the pause PID.
    async fn start_infra_task(
        &self,
        id: &str,
        shim_binary: &Path,
        bundle: &Path,
        handler: &crate::runtime::Handler,
    ) -> Result<(Arc<crate::runtime::PodShim>, u32), CriError> {
        let shim = self
            .start_pod_shim(id, &handler.name, shim_binary, bundle)
            .await?;
        // Its address recorded at once: a crash from here on leaves a shim serving a
        // sandbox task (a VM's, that boots for seconds) to reconnect to.
        if let Some(mut record) = self.store.get::<SandboxRecord>(id)? {
            record.shim_address = shim.address().address.clone();
            record.task_version = shim.address().version;
            self.store.put_async(record).await?;
        }
        let create = api::CreateTaskRequest {
            id: id.to_string(),
            bundle: bundle.display().to_string(),
            options: handler.shim_options(self.config.systemd_cgroup).into(),
            ..Default::default()
        };
        crate::failpoint::while_awaiting("run_sandbox.creating_pause");
        shim.client.create(&create).await?;
        crate::failpoint::hit("run_sandbox.pause_created");
        let start = api::StartRequest {
            id: id.to_string(),
            ..Default::default()
        };
        let started = shim.client.start(&start).await?;
        crate::failpoint::hit("run_sandbox.pause_started");
        Ok((shim, started.pid))
    }

    /// The pod's shim. A crash before its address is recorded leaves a record
    /// without one, whose pod start-up removes, reaping the shim by its bundle.
    async fn start_pod_shim(
        &self,
        id: &str,
        handler: &str,
        shim_binary: &Path,
        bundle: &Path,
    ) -> Result<Arc<crate::runtime::PodShim>, CriError> {
        let started = std::time::Instant::now();
        let shim = self.shims.start(shim_binary, id, id, bundle).await?;
        self.config.metrics.shim_started(handler, started.elapsed());
        crate::failpoint::hit("run_sandbox.shim_started");
        Ok(shim)
    }

    /// Best-effort removal of everything a sandbox may have: task, shim, bundle, record.
    pub(crate) async fn destroy_sandbox(&self, record: &SandboxRecord) {
        let known_shim = self.shims.get(&record.id).is_some();
        if let Some(shim) = self.shims.get(&record.id) {
            let kill = api::KillRequest {
                id: record.id.clone(),
                signal: 9,
                all: true,
                ..Default::default()
            };
            // No exit to wait for when the shim has no such task (its create failed,
            // or the pod has no pause process).
            if !record.infra_dropped && shim.client.kill(&kill).await.is_ok() {
                let _ = self.wait_exit(&record.id, PAUSE_STOP_TIMEOUT).await;
            }
            let _ = shim
                .client
                .delete(&api::DeleteRequest {
                    id: record.id.clone(),
                    ..Default::default()
                })
                .await;
            self.shims.shutdown(&record.id).await;
        }
        if !known_shim {
            // A pod whose shim no record names (its start was cut short): the shim
            // may still serve it, its pause may be half-created.
            self.reap_task(&record.id, &record.id, &record.bundle).await;
        }
        self.forget(&record.id);
        if !record.infra_image.is_empty() {
            let driver = self.config.storage_driver;
            let storage = self.config.containers_dir.join(&record.id);
            let id = record.id.clone();
            let _ = super::off_worker(move || {
                if let Err(e) = rootfs::release_rootfs(driver, &storage) {
                    tracing::warn!(pod = %id, "{e}");
                }
                let _ = std::fs::remove_dir_all(&storage);
                Ok(())
            })
            .await;
        }
        if let Err(e) = self.detach_network(&mut record.clone()).await {
            tracing::warn!(pod = %record.id, "{e}");
        }
        // After CNI DEL: the network namespace goes last.
        let pod = record.clone();
        let _ = super::off_worker(move || {
            remove_pod_files(&pod);
            Ok(())
        })
        .await;
        if let Err(e) = self.store.delete_async::<SandboxRecord>(&record.id).await {
            tracing::warn!(pod = %record.id, "remove record: {e}");
        }
    }

    /// Finds a sandbox by id or unique id prefix.
    pub(crate) fn sandbox(&self, id: &str) -> Result<Option<SandboxRecord>, CriError> {
        self.find_by_id_or_prefix(id, "pod sandbox")
    }

    pub(crate) fn containers_of(&self, sandbox_id: &str) -> Result<Vec<ContainerRecord>, CriError> {
        Ok(self
            .store
            .list::<ContainerRecord>()?
            .into_iter()
            .filter(|c| c.sandbox_id == sandbox_id)
            .collect())
    }

    /// StopPodSandbox: idempotent; an unknown pod is already stopped.
    pub(crate) async fn stop_sandbox(&self, id: &str) -> Result<(), CriError> {
        let Some(record) = self.sandbox(id)? else {
            return Ok(());
        };
        // The pod's lock first, then its containers' (the only order taken anywhere),
        // so a shim-death cleanup in progress finishes before this goes on.
        let _lock = self.locks.lock(&record.id).await;
        self.stop_sandbox_locked(&record.id).await
    }

    async fn stop_sandbox_locked(&self, id: &str) -> Result<(), CriError> {
        for c in self.containers_of(id)? {
            self.stop_container(&c.id, 0).await?;
        }
        let Some(mut record) = self.store.get::<SandboxRecord>(id)? else {
            return Ok(());
        };
        if let Some(shim) = self.shims.get(&record.id).filter(|_| !record.infra_dropped) {
            if !self.has_exited(&record.id) {
                let kill = api::KillRequest {
                    id: record.id.clone(),
                    signal: 9,
                    all: true,
                    ..Default::default()
                };
                match shim.client.kill(&kill).await {
                    Ok(_) => {}
                    Err(e) if e.is_not_found() || e.is_disconnected() => {}
                    Err(e) => return Err(e.into()),
                }
                if self
                    .wait_exit(&record.id, PAUSE_STOP_TIMEOUT)
                    .await
                    .is_none()
                {
                    return Err(CriError::Internal(format!(
                        "pause process of pod {} did not exit within {PAUSE_STOP_TIMEOUT:?}",
                        record.id
                    )));
                }
            }
        }
        // DEL after the pod's processes are gone; a failure is returned so the
        // kubelet's retry runs it again.
        // CRI-O releases the pod's shm on stop: nothing runs in the pod any more.
        if let Err(e) = pod_files::unmount_shm(&pod_files::PodFiles::new(&record.bundle).shm()) {
            tracing::warn!(pod = %record.id, "unmount shm: {e}");
        }
        let attached = !record.network_config.is_empty();
        let detached = self.detach_network(&mut record).await;
        let stopped_now = record.mark_not_ready();
        if stopped_now || attached {
            self.store.put_async(record.clone()).await?;
        }
        if stopped_now && record.infra_dropped {
            // What the pause process's exit tells otherwise.
            self.emit(id, id, cri::ContainerEventType::ContainerStoppedEvent);
        }
        detached
    }

    /// RemovePodSandbox: stops it if needed, removes its containers, its task, its
    /// shim, its bundle and its record. Idempotent.
    pub(crate) async fn remove_sandbox(&self, id: &str) -> Result<(), CriError> {
        let Some(record) = self.sandbox(id)? else {
            return Ok(());
        };
        let _lock = self.locks.lock(&record.id).await;
        self.stop_sandbox_locked(&record.id).await?;
        for c in self.containers_of(&record.id)? {
            self.remove_container(&c.id).await?;
        }
        let Some(record) = self.store.get::<SandboxRecord>(&record.id)? else {
            return Ok(());
        };
        self.emit(
            &record.id,
            &record.id,
            cri::ContainerEventType::ContainerDeletedEvent,
        );
        self.destroy_sandbox(&record).await;
        self.cpu_samples.forget(&record.id);
        self.handlers.forget_pod(&record.id);
        // The log directory crio made (under log_dir) goes with the pod; the
        // kubelet's own stays for the kubelet to remove.
        let own_logs = self.config.log_dir.join(&record.id);
        if Path::new(&record.log_directory) == own_logs {
            if let Err(e) = std::fs::remove_dir_all(&own_logs) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(pod = %record.id, "remove {}: {e}", own_logs.display());
                }
            }
        }
        Ok(())
    }

    pub(crate) fn sandbox_status(&self, record: &SandboxRecord) -> cri::PodSandboxStatus {
        let mode = |host: bool, pod: bool| {
            if host {
                cri::NamespaceMode::Node as i32
            } else if pod {
                cri::NamespaceMode::Pod as i32
            } else {
                cri::NamespaceMode::Container as i32
            }
        };
        cri::PodSandboxStatus {
            id: record.id.clone(),
            metadata: Some(sandbox_metadata(record)),
            state: sandbox_state(record) as i32,
            created_at: record.created_at,
            network: Some(network::network_status(record)),
            linux: Some(cri::LinuxPodSandboxStatus {
                namespaces: Some(cri::Namespace {
                    options: Some(cri::NamespaceOption {
                        network: mode(record.host_network, true),
                        pid: mode(record.host_pid, record.pod_pid),
                        ipc: mode(record.host_ipc, true),
                        ..Default::default()
                    }),
                }),
            }),
            labels: record.labels.clone().into_iter().collect(),
            annotations: record.annotations.clone().into_iter().collect(),
            runtime_handler: record.runtime_handler.clone(),
        }
    }

    pub(crate) fn list_sandboxes(
        &self,
        filter: Option<&cri::PodSandboxFilter>,
    ) -> Result<Vec<cri::PodSandbox>, CriError> {
        let mut out = Vec::new();
        for record in self.store.list::<SandboxRecord>()? {
            if let Some(f) = filter {
                if !f.id.is_empty() && !record.id.starts_with(&f.id) {
                    continue;
                }
                if let Some(state) = &f.state {
                    if state.state != sandbox_state(&record) as i32 {
                        continue;
                    }
                }
                if !labels_match(&f.label_selector, &record.labels) {
                    continue;
                }
            }
            out.push(cri::PodSandbox {
                id: record.id.clone(),
                metadata: Some(sandbox_metadata(&record)),
                state: sandbox_state(&record) as i32,
                created_at: record.created_at,
                labels: record.labels.clone().into_iter().collect(),
                annotations: record.annotations.clone().into_iter().collect(),
                runtime_handler: record.runtime_handler.clone(),
            });
        }
        Ok(out)
    }
}

pub(crate) fn labels_match(
    selector: &std::collections::HashMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn sandbox_metadata(record: &SandboxRecord) -> cri::PodSandboxMetadata {
    cri::PodSandboxMetadata {
        name: record.name.clone(),
        uid: record.uid.clone(),
        namespace: record.namespace.clone(),
        attempt: record.attempt,
    }
}

fn sandbox_state(record: &SandboxRecord) -> cri::PodSandboxState {
    if record.state == SandboxState::Ready {
        cri::PodSandboxState::SandboxReady
    } else {
        cri::PodSandboxState::SandboxNotready
    }
}

/// Both runtimes' grouping annotations, so any shim puts the pod in one process.
pub(crate) fn grouping_annotations(sandbox_id: &str, kind: &str) -> [(String, String); 4] {
    [
        (spec::CRI_SANDBOX_ID.into(), sandbox_id.into()),
        (spec::CRI_CONTAINER_TYPE.into(), kind.into()),
        (spec::CRIO_SANDBOX_ID.into(), sandbox_id.into()),
        (spec::CRIO_CONTAINER_TYPE.into(), kind.into()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pods_summed_limits_become_containerds_sandbox_annotations() {
        let r = cri::LinuxContainerResources {
            cpu_period: 100_000,
            cpu_quota: 250_000,
            memory_limit_in_bytes: 512 << 20,
            ..Default::default()
        };
        let a = resource_annotations(Some(&r));
        assert_eq!(a["io.kubernetes.cri.sandbox-memory"], "536870912");
        assert_eq!(a["io.kubernetes.cri.sandbox-cpu-quota"], "250000");
        assert_eq!(a["io.kubernetes.cri.sandbox-cpu-period"], "100000");
        assert!(
            !a.contains_key("io.kubernetes.cri.sandbox-cpu-shares"),
            "unset"
        );
        assert!(resource_annotations(None).is_empty());
    }

    #[test]
    fn vm_pods_cannot_share_the_hosts_namespaces() {
        let none = PodNamespaces::default();
        assert!(refuse_host_sharing("kata", none).is_ok());
        let err = refuse_host_sharing(
            "kata",
            PodNamespaces {
                host_network: true,
                pod_pid: true,
                ..none
            },
        )
        .expect_err("refused");
        let text = err.to_string();
        assert!(matches!(err, CriError::InvalidArgument(_)), "{text}");
        assert!(
            text.contains("\"kata\"")
                && text.contains("host's network namespace")
                && text.contains("shared by its containers"),
            "{text}"
        );
    }

    #[test]
    fn names_and_ids_look_like_crio_s() {
        let meta = cri::PodSandboxMetadata {
            name: "web".into(),
            uid: "u1".into(),
            namespace: "default".into(),
            attempt: 2,
        };
        assert_eq!(full_name(&meta), "k8s_POD_web_default_u1_2");
        let id = new_id();
        assert_eq!(id.len(), 64);
        assert_ne!(id, new_id());
    }

    #[test]
    fn metadata_fields_are_required() {
        let mut config = cri::PodSandboxConfig::default();
        assert!(matches!(
            validate::pod_request(&config),
            Err(CriError::InvalidArgument(_))
        ));
        config.metadata = Some(cri::PodSandboxMetadata {
            name: "a".into(),
            uid: String::new(),
            namespace: "n".into(),
            attempt: 0,
        });
        match validate::pod_request(&config) {
            Err(CriError::InvalidArgument(m)) => assert!(m.contains("uid"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn label_selectors_match_all_pairs() {
        let labels: BTreeMap<String, String> =
            [("a".to_string(), "1".to_string()), ("b".into(), "2".into())].into();
        let mut sel = std::collections::HashMap::new();
        assert!(labels_match(&sel, &labels));
        sel.insert("a".to_string(), "1".to_string());
        assert!(labels_match(&sel, &labels));
        sel.insert("b".to_string(), "3".to_string());
        assert!(!labels_match(&sel, &labels));
    }
}
