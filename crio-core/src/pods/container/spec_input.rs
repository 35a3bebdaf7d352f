//! A CRI `ContainerConfig` (with its pod and image) -> the spec builder's input:
//! user and groups, environment, mounts (the CRI's, the pod's files, the image's
//! volumes), devices, resources and the security fields. Checks happen here, before
//! anything is started, so a bad request leaves nothing behind.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use protocols::cri;

use super::process::{self, ResolvedUser};
use super::security;
use crate::error::CriError;
use crate::image::image_config::ImageConfig;
use crate::network::userns::UsernsMappings;
use crate::pods::PodRuntime;
use crate::spec::{self, devices, BindMount, ContainerSpec, PodNamespaces, Resources};
use crate::store::ContainerState;
use crate::store::{ContainerRecord, SandboxRecord};

use crate::config::DEVICES_ANNOTATION;
/// Our annotation listing paths to unmask (`/proc/acpi:/proc/kcore`, or `ALL`). The
/// CRI cannot say "unmasked" (an empty list is the same as none on the wire), so
/// this is how a pod asks for what Kubernetes' `procMount: Unmasked` means; only
/// on handlers whose `allowed_annotations` name it.
pub(super) use crate::config::UNMASK_ANNOTATION;

fn invalid(msg: impl Into<String>) -> CriError {
    CriError::InvalidArgument(msg.into())
}

fn propagation(p: i32) -> &'static str {
    match cri::MountPropagation::try_from(p) {
        Ok(cri::MountPropagation::PropagationHostToContainer) => "rslave",
        Ok(cri::MountPropagation::PropagationBidirectional) => "rshared",
        _ => "rprivate",
    }
}

/// The user, primary group and supplemental groups, by the CRI's rules: run_as_user
/// (+ run_as_group), run_as_username, else the image's `User`; supplemental groups
/// from the image's `/etc/group` too unless the policy is `Strict`.
pub(super) fn user_and_groups(
    sc: Option<&cri::LinuxContainerSecurityContext>,
    image_config: &ImageConfig,
    rootfs: &Path,
) -> Result<(ResolvedUser, Vec<u32>), CriError> {
    let user_err = |e: process::UserError| invalid(e.to_string());
    if let Some(sc) = sc {
        if sc.run_as_group.is_some() && sc.run_as_user.is_none() && sc.run_as_username.is_empty() {
            // The kubelet's and containerd's rule: a group alone would pair with
            // whatever user the image names.
            return Err(invalid(
                "run_as_group is set without run_as_user or run_as_username",
            ));
        }
    }
    let user = match sc {
        Some(sc) if sc.run_as_user.is_some() => {
            let uid = sc.run_as_user.as_ref().map_or(0, |v| v.value);
            let uid = u32::try_from(uid)
                .map_err(|_| invalid(format!("run_as_user {uid} is out of range")))?;
            let resolved = process::resolve_user(&uid.to_string(), rootfs).map_err(user_err)?;
            let gid = match sc.run_as_group.as_ref() {
                Some(g) => u32::try_from(g.value)
                    .map_err(|_| invalid(format!("run_as_group {} is out of range", g.value)))?,
                None => resolved.gid,
            };
            ResolvedUser { uid, gid }
        }
        Some(sc) if !sc.run_as_username.is_empty() => {
            let mut u = process::resolve_user(&sc.run_as_username, rootfs).map_err(user_err)?;
            if let Some(g) = sc.run_as_group.as_ref() {
                u.gid = u32::try_from(g.value)
                    .map_err(|_| invalid(format!("run_as_group {} is out of range", g.value)))?;
            }
            u
        }
        _ => process::resolve_user(&image_config.config.user, rootfs).map_err(user_err)?,
    };
    let strict = sc.is_some_and(|s| {
        s.supplemental_groups_policy == cri::SupplementalGroupsPolicy::Strict as i32
    });
    // The primary group is in the process's group list too (containerd's
    // additionalGids, and what the kubelet reads back in ContainerStatus.user),
    // then the CRI's groups, then (Merge) the image's memberships.
    let mut groups = vec![user.gid];
    for g in sc
        .map(|s| s.supplemental_groups.as_slice())
        .unwrap_or_default()
    {
        let g = u32::try_from(*g)
            .map_err(|_| invalid(format!("supplemental group {g} is out of range")))?;
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    if !strict {
        for g in process::member_groups(user.uid, user.gid, rootfs) {
            if !groups.contains(&g) {
                groups.push(g);
            }
        }
    }
    Ok((user, groups))
}

/// CRI resources -> ours, with the node's pids limit; refuses a memory limit below
/// `min_memory` (CRI-O's check).
pub(super) fn resources(
    r: Option<&cri::LinuxContainerResources>,
    pids_limit: i64,
    min_memory: u64,
) -> Result<Resources, CriError> {
    let mut out = Resources {
        pids_limit: pids_limit.max(0),
        ..Resources::default()
    };
    let Some(r) = r else {
        return Ok(out);
    };
    super::validate::resources(r)?;
    if r.memory_limit_in_bytes > 0 && (r.memory_limit_in_bytes as u64) < min_memory {
        return Err(invalid(format!(
            "memory limit {} is too low; it must be at least {min_memory} bytes \
             (container_min_memory)",
            r.memory_limit_in_bytes
        )));
    }
    if r.memory_swap_limit_in_bytes > 0
        && r.memory_limit_in_bytes > 0
        && r.memory_swap_limit_in_bytes < r.memory_limit_in_bytes
    {
        return Err(invalid(format!(
            "memory_swap_limit_in_bytes {} is below memory_limit_in_bytes {}",
            r.memory_swap_limit_in_bytes, r.memory_limit_in_bytes
        )));
    }
    out.cpu_shares = r.cpu_shares;
    out.cpu_quota = r.cpu_quota;
    out.cpu_period = r.cpu_period;
    out.memory_limit = r.memory_limit_in_bytes;
    out.memory_swap = r.memory_swap_limit_in_bytes;
    out.cpuset_cpus = r.cpuset_cpus.clone();
    out.cpuset_mems = r.cpuset_mems.clone();
    out.oom_score_adj = r.oom_score_adj;
    out.hugepages = r
        .hugepage_limits
        .iter()
        .map(|h| (h.page_size.clone(), h.limit))
        .collect();
    out.unified = r
        .unified
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(out)
}

/// The swap rules of CRI-O and containerd: a swap limit is only written where the
/// kernel accounts swap; on an update, a new memory limit without a swap limit
/// means no swap (memory+swap may never be below memory).
pub(super) fn fit_swap(r: &mut Resources, accounted: bool, update: bool) {
    if !accounted {
        r.memory_swap = 0;
    } else if update && r.memory_limit > 0 && r.memory_swap == 0 {
        r.memory_swap = r.memory_limit;
    }
}

/// `path` inside `root`, resolving symlinks as if `root` were `/` (an image's
/// symlinks never lead out of its rootfs).
pub(super) fn secure_join(root: &Path, path: &Path) -> PathBuf {
    let mut resolved = PathBuf::new();
    let mut pending: Vec<PathBuf> = vec![path.to_path_buf()];
    let mut links = 0;
    while let Some(p) = pending.pop() {
        let mut comps: Vec<Component> = p.components().collect();
        comps.reverse();
        while let Some(c) = comps.pop() {
            match c {
                Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
                Component::ParentDir => {
                    resolved.pop();
                }
                Component::Normal(name) => {
                    let candidate = resolved.join(name);
                    match std::fs::read_link(root.join(&candidate)) {
                        Ok(target) if links < 40 => {
                            links += 1;
                            if target.is_absolute() {
                                resolved = PathBuf::new();
                            }
                            let rest: PathBuf = comps.iter().rev().collect();
                            comps.clear();
                            pending.push(rest);
                            pending.push(target);
                        }
                        _ => resolved = candidate,
                    }
                }
            }
        }
    }
    root.join(resolved)
}

/// The image's `Volumes` as CRI-O's `image_volumes` says: created in the rootfs
/// (`mkdir`), or a private directory bind-mounted there (`bind`).
fn image_volumes(
    mode: &str,
    image_config: &ImageConfig,
    rootfs: &Path,
    storage: &Path,
    taken: &[BindMount],
) -> Result<Vec<BindMount>, CriError> {
    let volumes: Vec<&String> = image_config
        .config
        .volumes
        .as_ref()
        .map(|v| v.keys().collect())
        .unwrap_or_default();
    let mut out = Vec::new();
    if mode == "ignore" {
        return Ok(out);
    }
    for (i, dest) in volumes.into_iter().enumerate() {
        if taken.iter().any(|m| m.container_path == Path::new(dest)) {
            continue;
        }
        let inside = secure_join(rootfs, Path::new(dest));
        std::fs::create_dir_all(&inside)
            .map_err(|e| CriError::internal_in(format!("image volume {dest}"), e))?;
        if mode == "bind" {
            let host = storage.join("volumes").join(i.to_string());
            std::fs::create_dir_all(&host)
                .map_err(|e| CriError::internal_in(format!("image volume {dest}"), e))?;
            out.push(BindMount::private(host, PathBuf::from(dest)));
        }
    }
    Ok(out)
}

/// The CRI's bind mounts; a missing host path is created as a directory (CRI-O).
/// Image volumes (`Mount.image`) are checked here and mounted by `image_volumes`.
/// A mount with ID mappings needs them to be its pod's (`pod_userns`).
fn cri_mounts(
    config: &cri::ContainerConfig,
    pod_userns: Option<&UsernsMappings>,
    reject_absent: &[PathBuf],
) -> Result<Vec<BindMount>, CriError> {
    let mut mounts = Vec::new();
    for m in &config.mounts {
        if is_image_volume(m) {
            if m.container_path.is_empty() || !m.host_path.is_empty() {
                return Err(invalid(format!(
                    "image volume {:?}: needs a container_path and no host_path",
                    m.container_path
                )));
            }
            continue;
        }
        if !m.image_sub_path.is_empty() {
            return Err(invalid(format!(
                "mount {}: image_sub_path is only for image volumes (Mount.image)",
                m.container_path
            )));
        }
        if m.container_path.is_empty() || m.host_path.is_empty() {
            return Err(invalid("mounts need both container_path and host_path"));
        }
        let idmapped = match crate::pods::sandbox::userns::mount_mappings(m)? {
            None => false,
            Some(asked) if Some(&asked) == pod_userns => true,
            Some(_) => {
                return Err(invalid(format!(
                    "mount {}: uid_mappings/gid_mappings must be the pod's user namespace \
                     mappings (and the pod must have its own user namespace)",
                    m.container_path
                )))
            }
        };
        let prop = propagation(m.propagation);
        if m.recursive_read_only && (!m.readonly || prop != "rprivate") {
            return Err(invalid(format!(
                "mount {}: recursive_read_only needs readonly and private propagation",
                m.container_path
            )));
        }
        let host = PathBuf::from(&m.host_path);
        if !host.exists() {
            // `absent_mount_sources_to_reject`: CRI-O's exact-path check and message.
            let cleaned: PathBuf = host.components().collect();
            if reject_absent.contains(&cleaned) {
                return Err(invalid(format!(
                    "cannot mount {}: path does not exist and will cause issues as a directory \
                     (absent_mount_sources_to_reject)",
                    cleaned.display()
                )));
            }
            std::fs::create_dir_all(&host).map_err(|e| {
                invalid(format!(
                    "mount host path {} does not exist and cannot be created: {e}",
                    host.display()
                ))
            })?;
        }
        // The host's mount must be able to carry what is asked; containerd and
        // CRI-O refuse, rather than silently not propagate.
        spec::propagation::check_source(&host, prop).map_err(|e| {
            CriError::FailedPrecondition(format!("mount {}: {e}", m.container_path))
        })?;
        mounts.push(BindMount {
            host_path: host,
            container_path: PathBuf::from(&m.container_path),
            readonly: m.readonly,
            propagation: prop,
            recursive_readonly: m.recursive_read_only,
            hardened: false,
            idmapped,
        });
    }
    Ok(mounts)
}

/// What a container of a VM pod cannot have, refused rather than not applied: the
/// guest's kernel is its own, so no mount made in it reaches the host
/// (Bidirectional), and its PID namespaces are not the host's (Node, Target).
fn refuse_in_vm(handler: &str, config: &cri::ContainerConfig) -> Result<(), CriError> {
    let bidirectional = config
        .mounts
        .iter()
        .find(|m| m.propagation == cri::MountPropagation::PropagationBidirectional as i32);
    if let Some(m) = bidirectional {
        return Err(invalid(format!(
            "mount {}: runtime handler {handler:?} runs each pod in a VM, whose mounts \
             cannot reach the host (Bidirectional propagation)",
            m.container_path
        )));
    }
    let pid = config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.as_ref())
        .map(|n| n.pid);
    if pid == Some(cri::NamespaceMode::Node as i32)
        || pid == Some(cri::NamespaceMode::Target as i32)
    {
        return Err(invalid(format!(
            "runtime handler {handler:?} runs each pod in a VM, which cannot have the host's \
             PID namespace or another container's (NamespaceOption.pid NODE or TARGET)"
        )));
    }
    Ok(())
}

/// Whether a CRI mount is an image volume (KEP-4639).
pub(crate) fn is_image_volume(m: &cri::Mount) -> bool {
    m.image.as_ref().is_some_and(|i| !i.image.is_empty())
}

/// Masked and read-only paths: CRI-O's defaults, plus the kubelet's masked paths
/// (CRI-O takes the union), the kubelet's read-only list when it sends one, minus
/// what the unmask annotation (`unmask`, where allowed) names.
fn proc_paths(
    sc: Option<&cri::LinuxContainerSecurityContext>,
    unmask: Option<&str>,
) -> (Option<Vec<String>>, Option<Vec<String>>) {
    let mut masked: Vec<String> = spec::MASKED_PATHS.iter().map(|s| s.to_string()).collect();
    for p in sc.map(|s| s.masked_paths.as_slice()).unwrap_or_default() {
        if !masked.contains(p) {
            masked.push(p.clone());
        }
    }
    let mut readonly = sc
        .map(|s| s.readonly_paths.clone())
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| spec::READONLY_PATHS.iter().map(|s| s.to_string()).collect());
    if let Some(unmask) = unmask {
        if unmask == "ALL" {
            masked.clear();
            readonly.clear();
        } else {
            let listed: Vec<&str> = unmask.split(':').collect();
            masked.retain(|p| !listed.contains(&p.as_str()));
            readonly.retain(|p| !listed.contains(&p.as_str()));
        }
    }
    (Some(masked), Some(readonly))
}

/// Everything `spec::container` needs for one container.
#[allow(clippy::too_many_arguments)]
pub(super) fn container_spec_input(
    rt: &PodRuntime,
    pod: &SandboxRecord,
    record: &ContainerRecord,
    config: &cri::ContainerConfig,
    image_config: &ImageConfig,
    rootfs: &Path,
    storage: &Path,
    args: Vec<String>,
) -> Result<ContainerSpec, CriError> {
    let rc = &rt.config;
    let node = rc.node.current();
    let linux = config.linux.as_ref();
    let sc = linux.and_then(|l| l.security_context.as_ref());
    let (user, groups) = user_and_groups(sc, image_config, rootfs)?;
    let cri_env: Vec<(String, String)> = config
        .envs
        .iter()
        .map(|kv| {
            (
                kv.key.clone(),
                String::from_utf8_lossy(&kv.value).into_owned(),
            )
        })
        .collect();
    // default_env first: the image's entries and then the CRI's override it.
    let base_env: Vec<String> = node
        .env
        .iter()
        .chain(image_config.config.env.as_deref().unwrap_or_default())
        .cloned()
        .collect();
    let env = process::environment(&base_env, &cri_env);
    let cwd = [&config.working_dir, &image_config.config.working_dir]
        .into_iter()
        .find(|d| !d.is_empty())
        .cloned()
        .unwrap_or_else(|| "/".to_string());
    // CRI-O creates a missing working directory (root-owned, 0755).
    std::fs::create_dir_all(secure_join(rootfs, Path::new(&cwd)))
        .map_err(|e| CriError::internal_in(format!("working directory {cwd}"), e))?;
    crate::pods::sandbox::userns::check_container(config, pod.userns.as_ref())?;
    let mut mounts = cri_mounts(config, pod.userns.as_ref(), &node.reject_absent)?;
    mounts.extend(default_mounts(&node, storage, &mounts)?);
    let volumes = image_volumes(&rc.image_volumes, image_config, rootfs, storage, &mounts)?;
    mounts.extend(volumes);

    let privileged = sc.is_some_and(|s| s.privileged);
    if privileged && !pod.privileged {
        return Err(invalid(
            "no privileged container allowed in sandbox: the pod is not privileged \
             (LinuxSandboxSecurityContext.privileged)",
        ));
    }
    let handler = rt.pod_handler(pod)?;
    if handler.features.pod_in_vm {
        refuse_in_vm(&handler.name, config)?;
    }
    let devices = container_devices(rt, &handler, pod, config, sc, privileged)?;

    let res = linux.and_then(|l| l.resources.as_ref());
    let min_memory = handler.config.container_min_memory_bytes();
    let mut resources = resources(res, rc.pids_limit, min_memory)?;
    fit_swap(&mut resources, rc.host.swap_accounting, false);
    let oom_score_adj = i32::try_from(resources.oom_score_adj)
        .unwrap_or(0)
        .max(rc.min_oom_score_adj);
    let caps = sc.and_then(|s| s.capabilities.as_ref());
    let mut annotations = record.annotations.clone();
    annotations.extend(crate::pods::sandbox::grouping_annotations(
        &pod.id,
        "container",
    ));
    annotations.insert(spec::CRI_CONTAINER_NAME.into(), record.name.clone());
    annotations.insert(spec::CRI_SANDBOX_NAME.into(), pod.name.clone());
    annotations.insert(spec::CRI_SANDBOX_NAMESPACE.into(), pod.namespace.clone());
    let ns_opts = sc.and_then(|s| s.namespace_options.as_ref());
    // No options is the proto's default, POD, as containerd and CRI-O read it
    // (the kubelet always sends them).
    let pid_mode = Some(ns_opts.map_or(cri::NamespaceMode::Pod as i32, |n| n.pid));
    let target_pid = if pid_mode == Some(cri::NamespaceMode::Target as i32) {
        let target_id = ns_opts.map(|n| n.target_id.as_str()).unwrap_or_default();
        let target = rt
            .find_container(target_id)?
            .filter(|t| t.sandbox_id == pod.id)
            .ok_or_else(|| {
                CriError::NotFound(format!(
                    "target container {target_id:?} of the PID namespace is not in pod {}",
                    pod.id
                ))
            })?;
        if target.pid == 0 || target.state != ContainerState::Running {
            return Err(CriError::FailedPrecondition(format!(
                "target container {} is not running",
                target.id
            )));
        }
        Some(target.pid)
    } else {
        None
    };
    let namespaces = PodNamespaces {
        host_network: pod.host_network,
        host_ipc: pod.host_ipc,
        host_pid: pod.host_pid || pid_mode == Some(cri::NamespaceMode::Node as i32),
        // A pod without pause shares no PID namespace (its own mode is not POD): a
        // container asking for the pod's (no options, crictl's default) gets its
        // own, as the pod declared.
        pod_pid: pid_mode == Some(cri::NamespaceMode::Pod as i32) && !pod.infra_dropped,
    };
    let readonly_rootfs = sc.is_some_and(|s| s.readonly_rootfs) || node.read_only;
    let unmask = crate::pods::sandbox::allowed_annotation(
        &handler,
        UNMASK_ANNOTATION,
        record.annotations.get(UNMASK_ANNOTATION),
    );
    let (masked_paths, readonly_paths) = proc_paths(sc, unmask);
    let asked = security::seccomp_choice(
        sc.and_then(|s| s.seccomp.as_ref()),
        #[allow(deprecated)]
        sc.map_or("", |s| s.seccomp_profile_path.as_str()),
    )?;
    let (seccomp, seccomp_privileged) = node.seccomp(asked, privileged, &handler.name)?;
    let hooks = oci_hooks(rt, pod, record, config, &args);
    Ok(ContainerSpec {
        default_capabilities: Some(node.capabilities.clone()),
        ulimits: node.ulimits.clone(),
        seccomp_privileged,
        inheritable_capabilities: node.inheritable_capabilities,
        rootfs: rootfs.to_path_buf(),
        args,
        env,
        cwd,
        uid: user.uid,
        gid: user.gid,
        additional_gids: groups,
        tty: config.tty,
        hostname: if pod.host_network {
            spec::host_hostname()
        } else {
            pod.hostname.clone()
        },
        sandbox_pid: pod.pid,
        netns_path: (!pod.netns_path.is_empty()).then(|| PathBuf::from(&pod.netns_path)),
        utsns_path: (!pod.utsns_path.is_empty()).then(|| PathBuf::from(&pod.utsns_path)),
        ipcns_path: (!pod.ipcns_path.is_empty()).then(|| PathBuf::from(&pod.ipcns_path)),
        userns: crate::pods::sandbox::pod_user_namespace(pod),
        namespaces,
        mounts,
        privileged,
        readonly_rootfs,
        no_new_privileges: sc.is_some_and(|s| s.no_new_privs),
        add_capabilities: caps.map(|c| c.add_capabilities.clone()).unwrap_or_default(),
        drop_capabilities: caps
            .map(|c| c.drop_capabilities.clone())
            .unwrap_or_default(),
        resources,
        cgroups_path: spec::cgroups_path(&pod.cgroup_parent, &record.id, rc.systemd_cgroup),
        annotations,
        oom_score_adj,
        seccomp,
        kernel_release: rc.host.kernel_release.clone(),
        masked_paths,
        readonly_paths,
        sysctls: BTreeMap::new(),
        devices,
        pod_mounts: node_mounts(
            &node,
            storage,
            readonly_rootfs,
            crate::pods::sandbox::pod_files::mounts(pod, readonly_rootfs),
        )?,
        target_pid,
        apparmor_profile: security::apparmor_profile(
            sc.and_then(|s| s.apparmor.as_ref()),
            #[allow(deprecated)]
            sc.map_or("", |s| s.apparmor_profile.as_str()),
            rc.host.apparmor && !privileged,
            node.apparmor_default.as_deref(),
        ),
        selinux_label: security::selinux_label(
            sc.and_then(|s| s.selinux_options.as_ref()),
            rc.host.selinux,
        ),
        device_mounts: Vec::new(),
        hooks,
    })
}

/// The pod's files and shm, then what the node adds: with `read_only`, tmpfs on
/// `/run`, `/tmp` and `/var/tmp` (CRI-O's options); with `timezone`, the zone
/// file (copied into the container's storage) on `/etc/localtime`. A CRI mount
/// at one of these places replaces it.
fn node_mounts(
    node: &crate::pods::NodeDefaults,
    storage: &Path,
    readonly: bool,
    mut mounts: Vec<oci_spec::runtime::Mount>,
) -> Result<Vec<oci_spec::runtime::Mount>, CriError> {
    if node.read_only {
        for (dest, mode) in [("/run", "0755"), ("/tmp", "1777"), ("/var/tmp", "1777")] {
            let mut m = oci_spec::runtime::Mount::default();
            m.set_destination(PathBuf::from(dest));
            m.set_typ(Some("tmpfs".into()));
            m.set_source(Some(PathBuf::from("tmpfs")));
            m.set_options(Some(
                ["rw", "noexec", "nosuid", "nodev", "tmpcopyup"]
                    .iter()
                    .map(|o| o.to_string())
                    .chain(std::iter::once(format!("mode={mode}")))
                    .collect(),
            ));
            mounts.retain(|p| p.destination() != m.destination());
            mounts.push(m);
        }
    }
    if let Some(zone) = &node.timezone {
        let copy = storage.join("localtime");
        if !copy.exists() {
            std::fs::copy(zone, &copy)
                .map_err(|e| CriError::internal_in(format!("timezone {}", zone.display()), e))?;
        }
        mounts.push(spec::pod_mount(&copy, "/etc/localtime", readonly));
    }
    Ok(mounts)
}

/// CRI-O's order: `additional_devices`, the pod's Devices annotation (where its
/// handler allows it), every host device for a privileged container, then the
/// CRI's devices; a later one at the same container path replaces an earlier.
fn container_devices(
    rt: &PodRuntime,
    handler: &crate::runtime::Handler,
    pod: &SandboxRecord,
    config: &cri::ContainerConfig,
    sc: Option<&cri::LinuxContainerSecurityContext>,
    privileged: bool,
) -> Result<Vec<spec::Device>, CriError> {
    let node = rt.config.node.current();
    let mut devices = node.additional_devices.clone();
    let add = |devices: &mut Vec<spec::Device>, found: Vec<spec::Device>| {
        devices.retain(|x| !found.iter().any(|f| f.container_path == x.container_path));
        devices.extend(found);
    };
    let annotated = crate::pods::sandbox::allowed_annotation(
        handler,
        DEVICES_ANNOTATION,
        pod.annotations.get(DEVICES_ANNOTATION),
    );
    for entry in annotated
        .unwrap_or_default()
        .split(',')
        .filter(|e| !e.is_empty())
    {
        let (host, container, perms) = devices::parse_device_spec(entry)
            .map_err(|e| invalid(format!("annotation {DEVICES_ANNOTATION}: {e}")))?;
        if !node.allowed_devices.contains(&host) {
            return Err(invalid(format!(
                "annotation {DEVICES_ANNOTATION}: device {} is not in allowed_devices",
                host.display()
            )));
        }
        let found = devices::host_devices(&host, &container, &perms)
            .map_err(|e| invalid(format!("annotation {DEVICES_ANNOTATION}: {e}")))?;
        add(&mut devices, found);
    }
    if privileged && !handler.config.privileged_without_host_devices {
        add(&mut devices, devices::all_host_devices());
    }
    // device_ownership_from_security_context: a device node the CRI names
    // belongs to the container's user and group (not root's 0).
    let owner = |v: Option<&cri::Int64Value>| {
        v.and_then(|v| u32::try_from(v.value).ok())
            .filter(|id| *id > 0 && node.device_ownership_from_security_context)
    };
    let uid = owner(sc.and_then(|s| s.run_as_user.as_ref()));
    let gid = owner(sc.and_then(|s| s.run_as_group.as_ref()));
    for d in &config.devices {
        let host = Path::new(&d.host_path);
        let mut found = devices::host_devices(host, Path::new(&d.container_path), &d.permissions)
            .map_err(|e| invalid(e.to_string()))?;
        if !host.is_dir() {
            for f in &mut found {
                f.uid = uid.unwrap_or(f.uid);
                f.gid = gid.unwrap_or(f.gid);
            }
        }
        add(&mut devices, found);
    }
    Ok(devices)
}

/// `default_mounts_file`'s entries, copied into the container's storage (once:
/// a restart finds them there) and bind-mounted read-write, as containers/common
/// does; a CRI mount at the same place wins.
fn default_mounts(
    node: &crate::pods::NodeDefaults,
    storage: &Path,
    cri: &[BindMount],
) -> Result<Vec<BindMount>, CriError> {
    let mut out = Vec::new();
    for m in node.default_mounts() {
        if cri.iter().any(|c| c.container_path == m.destination) {
            continue;
        }
        let copy = secure_join(&storage.join("default-mounts"), &m.destination);
        if !copy.exists() {
            crate::storage::copy_tree(&m.source, &copy).map_err(|e| {
                CriError::internal_in(format!("default mount {}", m.source.display()), e)
            })?;
        }
        out.push(BindMount::private(copy, m.destination));
    }
    Ok(out)
}

/// The hooks-directory hooks this container gets: matched on its annotations
/// with the pod's over them, its command, and whether the CRI asked for bind
/// mounts (CRI-O's inputs). `prestart` hooks run as `createRuntime`, as CRI-O
/// puts them.
fn oci_hooks(
    rt: &PodRuntime,
    pod: &SandboxRecord,
    record: &ContainerRecord,
    config: &cri::ContainerConfig,
    args: &[String],
) -> Option<oci_spec::runtime::Hooks> {
    let all = rt.config.node.current().hooks.current();
    if all.is_empty() {
        return None;
    }
    let mut annotations = record.annotations.clone();
    annotations.extend(pod.annotations.clone());
    let target = crate::oci_hooks::Target {
        annotations: &annotations,
        command: args.first().map(String::as_str).unwrap_or_default(),
        has_bind_mounts: !config.mounts.is_empty(),
    };
    let mut hooks = None;
    let applied = crate::oci_hooks::apply(&all, &target, &mut hooks);
    if !applied.is_empty() {
        tracing::debug!(container = %record.id, ?applied, "OCI hooks from hooks_dir");
    }
    hooks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secure_join_stays_inside_the_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("real")).expect("mkdir");
        std::os::unix::fs::symlink("/etc", root.join("abs")).expect("symlink");
        std::os::unix::fs::symlink("../../..", root.join("real/up")).expect("symlink");
        std::os::unix::fs::symlink("real", root.join("rel")).expect("symlink");
        assert_eq!(secure_join(root, Path::new("/abs/x")), root.join("etc/x"));
        assert_eq!(secure_join(root, Path::new("/real/up/y")), root.join("y"));
        assert_eq!(secure_join(root, Path::new("/rel/z")), root.join("real/z"));
        assert_eq!(secure_join(root, Path::new("/../../w")), root.join("w"));
    }

    #[test]
    fn resources_check_min_memory_and_swap() {
        let r = cri::LinuxContainerResources {
            memory_limit_in_bytes: 1 << 20,
            ..Default::default()
        };
        let e = resources(Some(&r), -1, 12 << 20).expect_err("too low");
        assert!(e.to_string().contains("container_min_memory"), "{e}");
        let r = cri::LinuxContainerResources {
            memory_limit_in_bytes: 64 << 20,
            memory_swap_limit_in_bytes: 32 << 20,
            ..Default::default()
        };
        assert!(resources(Some(&r), -1, 12 << 20).is_err());
        let r = cri::LinuxContainerResources {
            memory_limit_in_bytes: 64 << 20,
            hugepage_limits: vec![cri::HugepageLimit {
                page_size: "2MB".into(),
                limit: 4 << 20,
            }],
            ..Default::default()
        };
        let out = resources(Some(&r), 100, 12 << 20).expect("ok");
        assert_eq!(out.pids_limit, 100);
        assert_eq!(out.hugepages, [("2MB".to_string(), 4 << 20)]);
    }

    #[test]
    fn swap_is_written_only_where_accounted() {
        let limit = Resources {
            memory_limit: 64 << 20,
            memory_swap: 96 << 20,
            ..Default::default()
        };
        let mut r = limit.clone();
        fit_swap(&mut r, false, false);
        assert_eq!(r.memory_swap, 0);
        let mut r = limit.clone();
        fit_swap(&mut r, true, true);
        assert_eq!(r.memory_swap, 96 << 20, "an explicit swap limit stays");
        let mut r = Resources {
            memory_swap: 0,
            ..limit
        };
        fit_swap(&mut r, true, true);
        assert_eq!(r.memory_swap, 64 << 20, "update: no swap beyond memory");
    }

    #[test]
    fn unmask_annotation_clears_paths() {
        let (m, r) = proc_paths(None, None);
        assert_eq!(m.expect("masked").len(), spec::MASKED_PATHS.len());
        assert_eq!(r.expect("ro").len(), spec::READONLY_PATHS.len());
        let (m, r) = proc_paths(None, Some("/proc/kcore:/proc/sys"));
        assert!(!m.expect("masked").contains(&"/proc/kcore".to_string()));
        assert!(!r.expect("ro").contains(&"/proc/sys".to_string()));
        let (m, _) = proc_paths(None, Some("ALL"));
        assert_eq!(m, Some(vec![]));
    }

    #[test]
    fn annotations_count_only_where_the_handler_allows_them() {
        let mut handler = crate::runtime::Handler {
            name: "runc".into(),
            config: crate::config::RuntimeHandler::default(),
            no_pivot: false,
            features: Default::default(),
        };
        let value = "ALL".to_string();
        let gate = crate::pods::sandbox::allowed_annotation;
        assert_eq!(gate(&handler, UNMASK_ANNOTATION, Some(&value)), None);
        handler.config.allowed_annotations = vec![UNMASK_ANNOTATION.into()];
        assert_eq!(gate(&handler, UNMASK_ANNOTATION, Some(&value)), Some("ALL"));
        assert_eq!(gate(&handler, UNMASK_ANNOTATION, None), None);
    }

    #[test]
    fn a_vm_pod_refuses_bidirectional_mounts_and_host_or_target_pid() {
        let mut config = cri::ContainerConfig::default();
        assert!(refuse_in_vm("kata", &config).is_ok());
        config.mounts = vec![cri::Mount {
            container_path: "/m".into(),
            host_path: "/srv".into(),
            propagation: cri::MountPropagation::PropagationHostToContainer as i32,
            ..Default::default()
        }];
        assert!(refuse_in_vm("kata", &config).is_ok(), "HostToContainer");
        config.mounts[0].propagation = cri::MountPropagation::PropagationBidirectional as i32;
        let err = refuse_in_vm("kata", &config).expect_err("Bidirectional");
        assert!(
            matches!(&err, CriError::InvalidArgument(m) if m.contains("/m")),
            "{err}"
        );
        config.mounts.clear();
        for (mode, refused) in [
            (cri::NamespaceMode::Pod, false),
            (cri::NamespaceMode::Container, false),
            (cri::NamespaceMode::Node, true),
            (cri::NamespaceMode::Target, true),
        ] {
            config.linux = Some(cri::LinuxContainerConfig {
                security_context: Some(cri::LinuxContainerSecurityContext {
                    namespace_options: Some(cri::NamespaceOption {
                        pid: mode as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                resources: None,
            });
            assert_eq!(refuse_in_vm("kata", &config).is_err(), refused, "{mode:?}");
        }
    }
}
