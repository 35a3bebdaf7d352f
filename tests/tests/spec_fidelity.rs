//! Every CRI field as a container sees it, read from inside real containers through
//! our runc shim and, as the cross-check that the spec is right, through Debian's
//! containerd Go shim as a drop-in: process, pod files, security context, resources,
//! mounts and devices, stats, events and runtime config.

use std::collections::HashMap;
use std::time::Duration;

use crio_tests::cri::CriClient;
use crio_tests::pods::{container_config, pod_config};
use crio_tests::{Daemon, Registry, TestImage};
use protocols::cri::{
    Capability, CdiDevice, ContainerEventType, ContainerStatsRequest, Device, DnsConfig,
    GetEventsRequest, Int64Value, LinuxContainerConfig, LinuxContainerResources,
    LinuxContainerSecurityContext, LinuxSandboxSecurityContext, ListContainerStatsRequest,
    ListMetricDescriptorsRequest, ListPodSandboxMetricsRequest, Mount, MountPropagation,
    NamespaceMode, NamespaceOption, NetworkConfig, PodSandboxConfig, PodSandboxStatsRequest,
    RemoveContainerRequest, RemovePodSandboxRequest, RuntimeConfig, SecurityProfile,
    StopContainerRequest, StopPodSandboxRequest, SupplementalGroupsPolicy,
    UpdateContainerResourcesRequest, UpdateRuntimeConfigRequest,
};
use tonic::Code;

/// CRI-O's default capabilities as a mask: CHOWN DAC_OVERRIDE FOWNER FSETID KILL
/// SETGID SETUID SETPCAP NET_BIND_SERVICE.
const DEFAULT_CAPS: &str = "00000000000005fb";

struct Fixture {
    _registry: Registry,
    daemon: Daemon,
    cri: CriClient,
    image: String,
    handler: String,
}

async fn fixture(handler: &str, extra_config: &str) -> Fixture {
    let registry = Registry::with_test_images();
    let daemon = Daemon::builder()
        .dropin("10-go-shim.conf", crio_tests::GO_SHIM_DROPIN)
        .dropin("10-kata.conf", &crio_tests::kata::handler_dropin())
        // The annotations these scenarios use, allowed as CRI-O gates them.
        .dropin(
            "15-annotations.conf",
            &format!(
                "[crio.runtime.runtimes.{handler}]\nallowed_annotations = \
                 [\"io.kubernetes.cri-o.ShmSize\", \"crio-rs.io/unmask\"]\n"
            ),
        )
        .dropin("20-spec.conf", extra_config)
        .registries_conf(&registry.insecure_conf())
        .start();
    let mut cri = daemon.client().await;
    let image = registry.reference(TestImage::Busybox);
    cri.pull(&image, None).await.expect("pull busybox");
    Fixture {
        _registry: registry,
        daemon,
        cri,
        image,
        handler: handler.to_string(),
    }
}

impl Fixture {
    fn pod(&self, name: &str) -> PodSandboxConfig {
        pod_config(
            &format!("{name}-{}", self.handler),
            &self.daemon.dirs.log_dir,
        )
    }

    /// A privileged pod (its containers may be privileged too).
    fn privileged_pod(&self, name: &str) -> PodSandboxConfig {
        let mut pod = self.pod(name);
        pod.linux
            .get_or_insert_with(Default::default)
            .security_context
            .get_or_insert_with(LinuxSandboxSecurityContext::default)
            .privileged = true;
        pod
    }

    async fn run_pod(&mut self, pod: &PodSandboxConfig) -> String {
        self.cri
            .run_pod(pod, &self.handler)
            .await
            .expect("RunPodSandbox")
    }

    /// A container that sleeps, with `sc` and `resources`, started.
    async fn sleeper(
        &mut self,
        pod_id: &str,
        pod: &PodSandboxConfig,
        name: &str,
        sc: LinuxContainerSecurityContext,
        edit: impl FnOnce(&mut protocols::cri::ContainerConfig),
    ) -> Result<String, tonic::Status> {
        let mut config = container_config(name, &self.image, "sleep 3600");
        config.linux = Some(LinuxContainerConfig {
            security_context: Some(sc),
            resources: None,
        });
        edit(&mut config);
        let id = self.cri.create_container(pod_id, &config, pod).await?;
        self.cri.start_container(&id).await?;
        Ok(id)
    }

    /// stdout of `sh -c script` in the container (asserting exit 0).
    async fn sh(&mut self, id: &str, script: &str) -> String {
        let out = self.cri.exec(id, &["sh", "-c", script]).await;
        assert_eq!(
            out.exit_code,
            0,
            "{script}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Whether `sh -c script` succeeds.
    async fn ok(&mut self, id: &str, script: &str) -> bool {
        self.cri.exec(id, &["sh", "-c", script]).await.exit_code == 0
    }
}

/// The supplementary groups (`Groups:` of /proc/PID/status, sorted by the kernel)
/// of the container's sleeping main process, checked to be those of an exec too.
async fn groups_of(f: &mut Fixture, id: &str) -> String {
    let out = f
        .sh(
            id,
            "for s in /proc/[0-9]*/status; do grep -q '^Name:.sleep' $s && grep '^Groups:' $s; \
             done; grep '^Groups:' /proc/self/status",
        )
        .await;
    let lines: Vec<&str> = out.lines().map(|l| l["Groups:".len()..].trim()).collect();
    assert_eq!(lines.len(), 2, "the main process and the exec: {out}");
    assert_eq!(lines[0], lines[1], "main process and exec differ: {out}");
    lines[0].to_string()
}

fn status_field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

async fn process_and_pod_files(handler: &str) {
    let mut f = fixture(handler, "").await;
    let mut pod = f.pod("files");
    pod.dns_config = Some(DnsConfig {
        servers: vec!["10.96.0.10".into()],
        searches: vec!["ns.svc.cluster.local".into(), "cluster.local".into()],
        options: vec!["ndots:5".into()],
    });
    pod.annotations
        .insert("io.kubernetes.cri-o.ShmSize".into(), "32Mi".into());
    let linux = pod.linux.get_or_insert_with(Default::default);
    linux
        .sysctls
        .insert("kernel.shm_rmid_forced".into(), "1".into());
    linux
        .sysctls
        .insert("net/ipv4/ip_unprivileged_port_start".into(), "80".into());
    let pod_id = f.run_pod(&pod).await;

    let sc = LinuxContainerSecurityContext {
        run_as_username: "user".into(),
        supplemental_groups: vec![3000],
        ..Default::default()
    };
    // The kubelet's termination-log: a host file mounted over a path in /dev.
    let host = tempfile::tempdir().expect("tempdir");
    let termination_log = host.path().join("termination-log");
    std::fs::write(&termination_log, "").expect("termination log");
    std::fs::set_permissions(
        &termination_log,
        std::os::unix::fs::PermissionsExt::from_mode(0o666),
    )
    .expect("chmod");
    let term_mount = Mount {
        container_path: "/dev/termination-log".into(),
        host_path: termination_log.display().to_string(),
        ..Default::default()
    };
    let a = f
        .sleeper(&pod_id, &pod, "a", sc, |c| {
            c.mounts = vec![term_mount];
            c.working_dir = "/work/dir".into();
            c.envs = vec![protocols::cri::KeyValue {
                key: "GREETING".into(),
                value: b"hi".to_vec(),
            }];
        })
        .await
        .expect("container a");

    // The user by name; its groups: the primary one, the CRI's, then the image's
    // memberships (Merge policy), in the process and in ContainerStatus.user.
    let id = f.sh(&a, "id").await;
    assert!(id.starts_with("uid=1000(user) gid=1000(user)"), "{id}");
    assert_eq!(groups_of(&mut f, &a).await, "1000 2000 3000 50000");
    let status = f.cri.container_status(&a).await.expect("status");
    let user = status
        .user
        .and_then(|u| u.linux)
        .expect("ContainerStatus.user");
    assert_eq!((user.uid, user.gid), (1000, 1000));
    assert_eq!(user.supplemental_groups, [1000, 3000, 2000, 50000]);
    f.sh(&a, "echo 'last words' > /dev/termination-log").await;
    assert_eq!(
        std::fs::read_to_string(&termination_log).expect("read"),
        "last words\n"
    );
    // Working dir created; env merged.
    assert_eq!(f.sh(&a, "pwd").await.trim(), "/work/dir");
    let env = f.sh(&a, "env").await;
    assert!(
        env.contains("GREETING=hi") && env.contains("PATH=/"),
        "{env}"
    );
    // Pod files.
    let resolv = f.sh(&a, "cat /etc/resolv.conf").await;
    assert_eq!(
        resolv,
        "search ns.svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
    );
    let hostname = pod.hostname.clone();
    assert_eq!(f.sh(&a, "cat /etc/hostname").await.trim(), hostname);
    assert_eq!(f.sh(&a, "hostname").await.trim(), hostname);
    let hosts = f.sh(&a, "cat /etc/hosts").await;
    assert!(hosts.contains("127.0.0.1\tlocalhost"), "{hosts}");
    // Pod sysctls, set in the namespaces the pod owns.
    assert_eq!(
        f.sh(&a, "cat /proc/sys/kernel/shm_rmid_forced")
            .await
            .trim(),
        "1"
    );
    assert_eq!(
        f.sh(&a, "cat /proc/sys/net/ipv4/ip_unprivileged_port_start")
            .await
            .trim(),
        "80"
    );
    // /dev/shm: sized by the annotation and shared by the pod's containers.
    let df = f.sh(&a, "df -k /dev/shm | tail -1").await;
    assert!(df.split_whitespace().nth(1) == Some("32768"), "{df}");
    f.sh(&a, "echo shared > /dev/shm/note").await;

    let strict = LinuxContainerSecurityContext {
        run_as_user: Some(Int64Value { value: 1000 }),
        supplemental_groups: vec![3000],
        supplemental_groups_policy: SupplementalGroupsPolicy::Strict as i32,
        ..Default::default()
    };
    let b = f
        .sleeper(&pod_id, &pod, "b", strict, |_| {})
        .await
        .expect("container b");
    assert_eq!(f.sh(&b, "cat /dev/shm/note").await, "shared\n");
    assert_eq!(groups_of(&mut f, &b).await, "1000 3000", "Strict");
    let user = f
        .cri
        .container_status(&b)
        .await
        .expect("status")
        .user
        .and_then(|u| u.linux)
        .expect("ContainerStatus.user");
    assert_eq!(user.supplemental_groups, [1000, 3000], "Strict");

    // A group without a user is refused, as the kubelet and containerd refuse it.
    let group_only = LinuxContainerSecurityContext {
        run_as_group: Some(Int64Value { value: 1000 }),
        ..Default::default()
    };
    let before = f.cri.containers().await.len();
    let err = f
        .sleeper(&pod_id, &pod, "group-only", group_only, |_| {})
        .await
        .expect_err("run_as_group alone");
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    assert!(err.message().contains("run_as_group"), "{err}");
    assert_eq!(f.cri.containers().await.len(), before, "nothing created");
    let mut group_only_pod = f.pod("grouponly");
    group_only_pod
        .linux
        .get_or_insert_with(Default::default)
        .security_context
        .get_or_insert_with(Default::default)
        .run_as_group = Some(Int64Value { value: 1000 });
    let err = f
        .cri
        .run_pod(&group_only_pod, handler)
        .await
        .expect_err("pod run_as_group alone");
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");

    // A host-level sysctl is refused before anything is created.
    let mut bad = f.pod("badsysctl");
    bad.linux
        .get_or_insert_with(Default::default)
        .sysctls
        .insert("kernel.panic".into(), "1".into());
    let err = f.cri.run_pod(&bad, handler).await.expect_err("host sysctl");
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    assert!(err.message().contains("kernel.panic"), "{err}");
    assert_eq!(f.cri.pods().await.len(), 1, "the refused pod left nothing");

    f.cri
        .runtime
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod_id.clone(),
        })
        .await
        .expect("stop");
    f.cri
        .runtime
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod_id,
        })
        .await
        .expect("remove");
}

async fn security_context(handler: &str) {
    let mut f = fixture(handler, "").await;
    let pod = f.privileged_pod("sec");
    let pod_id = f.run_pod(&pod).await;

    // Defaults: CRI-O's capabilities, masked and read-only paths, and no seccomp
    // filter when none is asked for (the CRI's reading; the kubelet sends
    // RuntimeDefault when the pod or the node asks for it).
    let plain = f
        .sleeper(&pod_id, &pod, "plain", Default::default(), |_| {})
        .await
        .expect("plain");
    // The container's process (PID 1 of its PID namespace)...
    let st = f.sh(&plain, "cat /proc/1/status").await;
    assert_eq!(status_field(&st, "CapBnd:"), DEFAULT_CAPS, "{st}");
    assert_eq!(status_field(&st, "CapEff:"), DEFAULT_CAPS, "{st}");
    assert_eq!(status_field(&st, "Seccomp:"), "0", "no profile: {st}");
    assert_eq!(status_field(&st, "NoNewPrivs:"), "0", "{st}");
    // ...and an exec'd one: the same capabilities, and no filter either.
    let st = f.sh(&plain, "cat /proc/self/status").await;
    assert_eq!(status_field(&st, "CapEff:"), DEFAULT_CAPS, "{st}");
    assert_eq!(status_field(&st, "Seccomp:"), "0", "no profile: {st}");
    // RuntimeDefault asked for: the built-in filter, for the process and its execs.
    let runtime_default = LinuxContainerSecurityContext {
        seccomp: Some(SecurityProfile {
            profile_type: 0,
            localhost_ref: String::new(),
        }),
        ..Default::default()
    };
    let filtered = f
        .sleeper(&pod_id, &pod, "rtdefault", runtime_default, |_| {})
        .await
        .expect("RuntimeDefault");
    for process in ["1", "self"] {
        let st = f
            .sh(&filtered, &format!("cat /proc/{process}/status"))
            .await;
        assert_eq!(status_field(&st, "Seccomp:"), "2", "RuntimeDefault: {st}");
    }
    // Masked: /dev/null over a file (this kernel has no /proc/kcore), a tmpfs over a dir.
    assert_eq!(
        f.sh(&plain, "cat /proc/interrupts | wc -c").await.trim(),
        "0"
    );
    assert_eq!(f.sh(&plain, "ls /proc/acpi | wc -l").await.trim(), "0");
    assert!(!f.ok(&plain, "echo 1 > /proc/sys/kernel/domainname").await);
    assert!(f.ok(&plain, "touch /rootfs-is-writable").await);
    // sysfs and every cgroup hierarchy are read-only (runc keeps the tmpfs holding
    // the v1 hierarchies writable, under CRI-O too; a VM's guest has cgroup v2).
    let sys = f
        .sh(&plain, "grep -E ' (sysfs|cgroup2?) ' /proc/mounts")
        .await;
    assert!(sys.lines().count() >= 2, "{sys}");
    assert!(
        sys.lines().all(|l| l
            .split_whitespace()
            .nth(3)
            .is_some_and(|o| o.starts_with("ro"))),
        "sysfs and cgroups are read-only: {sys}"
    );

    // Add/drop, no_new_privs, read-only rootfs, unconfined seccomp.
    let tight = LinuxContainerSecurityContext {
        capabilities: Some(Capability {
            add_capabilities: vec!["NET_RAW".into()],
            drop_capabilities: vec!["ALL".into()],
            ..Default::default()
        }),
        no_new_privs: true,
        readonly_rootfs: true,
        seccomp: Some(SecurityProfile {
            profile_type: 1,
            localhost_ref: String::new(),
        }),
        ..Default::default()
    };
    let tight = f
        .sleeper(&pod_id, &pod, "tight", tight, |_| {})
        .await
        .expect("tight");
    let st = f.sh(&tight, "cat /proc/1/status").await;
    assert_eq!(
        status_field(&st, "CapEff:"),
        "0000000000002000",
        "NET_RAW only: {st}"
    );
    assert_eq!(status_field(&st, "NoNewPrivs:"), "1", "{st}");
    assert_eq!(status_field(&st, "Seccomp:"), "0", "Unconfined: {st}");
    assert!(!f.ok(&tight, "touch /nope").await, "read-only rootfs");
    assert!(
        f.ok(&tight, "touch /dev/shm/ok").await,
        "shm stays writable"
    );

    // A Localhost profile in the containers format: everything but mkdir.
    let dir = tempfile::tempdir().expect("tempdir");
    let profile = dir.path().join("no-mkdir.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":1}]}"#,
    )
    .expect("profile");
    let local = LinuxContainerSecurityContext {
        seccomp: Some(SecurityProfile {
            profile_type: 2,
            localhost_ref: profile.display().to_string(),
        }),
        ..Default::default()
    };
    let local = f
        .sleeper(&pod_id, &pod, "local", local, |_| {})
        .await
        .expect("localhost profile");
    assert!(!f.ok(&local, "mkdir /tmp/x").await, "mkdir is denied");
    assert!(f.ok(&local, "touch /tmp/y").await);
    let bad = LinuxContainerSecurityContext {
        seccomp: Some(SecurityProfile {
            profile_type: 2,
            localhost_ref: dir.path().join("missing.json").display().to_string(),
        }),
        ..Default::default()
    };
    let err = f
        .sleeper(&pod_id, &pod, "badprofile", bad, |_| {})
        .await
        .expect_err("missing profile");
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    assert!(err.message().contains("missing.json"), "{err}");

    // Privileged: every capability the host grants, unconfined, nothing masked,
    // writable sysfs, the host's devices.
    let privileged = LinuxContainerSecurityContext {
        privileged: true,
        ..Default::default()
    };
    let p = f
        .sleeper(&pod_id, &pod, "priv", privileged, |_| {})
        .await
        .expect("privileged");
    let st = f.sh(&p, "cat /proc/self/status").await;
    let own = std::fs::read_to_string("/proc/self/status").expect("status");
    assert_eq!(
        status_field(&st, "CapEff:"),
        status_field(&own, "CapBnd:"),
        "{st}"
    );
    assert_eq!(status_field(&st, "Seccomp:"), "0", "{st}");
    assert!(
        f.sh(&p, "cat /proc/interrupts | wc -c").await.trim() != "0",
        "nothing masked"
    );
    let mounts = f.sh(&p, "grep ' /sys ' /proc/mounts").await;
    assert!(mounts.contains(" rw,"), "{mounts}");
    assert!(f.ok(&p, "test -c /dev/kmsg").await, "host devices");

    // AppArmor and SELinux fields are accepted; this host has neither, and Status
    // says so.
    let mac = LinuxContainerSecurityContext {
        apparmor: Some(SecurityProfile {
            profile_type: 2,
            localhost_ref: "crio-rs-test".into(),
        }),
        selinux_options: Some(protocols::cri::SeLinuxOption {
            r#type: "spc_t".into(),
            level: "s0:c1,c2".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mac = f
        .sleeper(&pod_id, &pod, "mac", mac, |_| {})
        .await
        .expect("AppArmor and SELinux fields accepted");
    assert_eq!(f.sh(&mac, "echo ok").await, "ok\n");
    let info = f.cri.status(true).await.info;
    let host: serde_json::Value = serde_json::from_str(&info["host"]).expect("host info");
    assert_eq!(
        host["apparmor"],
        std::path::Path::new("/sys/module/apparmor").exists()
    );
    assert_eq!(
        host["selinux"],
        std::path::Path::new("/sys/fs/selinux/enforce").exists()
    );

    // A privileged container in an unprivileged pod is refused.
    // (No namespace options: the proto's default, one PID namespace for the pod,
    // which a VM pod refuses.)
    let vm = handler == "kata";
    let mut plain_pod = f.pod("unpriv");
    if !vm {
        plain_pod.linux = Some(Default::default());
    }
    let plain_id = f.run_pod(&plain_pod).await;
    let err = f
        .sleeper(
            &plain_id,
            &plain_pod,
            "priv",
            LinuxContainerSecurityContext {
                privileged: true,
                ..Default::default()
            },
            |_| {},
        )
        .await
        .expect_err("privileged in an unprivileged pod");
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");

    // Unmasked through the annotation; run_as_user with run_as_group.
    let unmasked = LinuxContainerSecurityContext {
        run_as_user: Some(Int64Value { value: 1000 }),
        run_as_group: Some(Int64Value { value: 2000 }),
        ..Default::default()
    };
    let u = f
        .sleeper(&plain_id, &plain_pod, "unmasked", unmasked, |c| {
            c.annotations
                .insert("crio-rs.io/unmask".into(), "/proc/interrupts".into());
        })
        .await
        .expect("unmasked");
    assert_ne!(f.sh(&u, "cat /proc/interrupts | wc -c").await.trim(), "0");
    assert_eq!(
        f.sh(&u, "ls /proc/acpi | wc -l").await.trim(),
        "0",
        "still masked"
    );
    assert!(f
        .sh(&u, "id")
        .await
        .starts_with("uid=1000(user) gid=2000(extra)"));

    // Host PID: the container sees the host's processes.
    let host_pid = LinuxContainerSecurityContext {
        namespace_options: Some(NamespaceOption {
            pid: NamespaceMode::Node as i32,
            ..Default::default()
        }),
        ..Default::default()
    };
    let hp = f
        .sleeper(&plain_id, &plain_pod, "hostpid", host_pid, |_| {})
        .await;
    if vm {
        // A VM's guest has no host processes to share: refused, not ignored.
        assert_eq!(
            hp.expect_err("host PID in a VM").code(),
            Code::InvalidArgument
        );
    } else {
        let hp = hp.expect("host pid");
        let daemon_pid = f.daemon.pid();
        assert!(f.ok(&hp, &format!("test -d /proc/{daemon_pid}")).await);
    }

    // Target PID namespace: another container's.
    let target = f
        .sleeper(&plain_id, &plain_pod, "target", Default::default(), |_| {})
        .await
        .expect("target");
    let joiner = LinuxContainerSecurityContext {
        namespace_options: Some(NamespaceOption {
            pid: NamespaceMode::Target as i32,
            target_id: target.clone(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let j = f
        .sleeper(&plain_id, &plain_pod, "joiner", joiner, |_| {})
        .await;
    if vm {
        assert_eq!(j.expect_err("Target in a VM").code(), Code::InvalidArgument);
    } else {
        let j = j.expect("target namespace");
        let inode = |s: String| s.split("pid:").nth(1).map(str::to_string);
        let a = inode(f.sh(&target, "ls -l /proc/self/ns/pid").await);
        let b = inode(f.sh(&j, "ls -l /proc/self/ns/pid").await);
        assert!(a.is_some() && a == b, "{a:?} {b:?}");
    }

    // Host IPC: the host's IPC namespace and /dev/shm.
    let mut ipc_pod = f.pod("hostipc");
    ipc_pod.linux = Some(protocols::cri::LinuxPodSandboxConfig {
        security_context: Some(LinuxSandboxSecurityContext {
            namespace_options: Some(NamespaceOption {
                ipc: NamespaceMode::Node as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    if vm {
        // A VM's guest has no host IPC namespace to share: refused by name.
        let err = f
            .cri
            .run_pod(&ipc_pod, handler)
            .await
            .expect_err("host IPC in a VM");
        assert_eq!(err.code(), Code::InvalidArgument, "{err}");
        assert!(err.message().contains("IPC"), "{err}");
        return;
    }
    let ipc_id = f.run_pod(&ipc_pod).await;
    let c = f
        .sleeper(&ipc_id, &ipc_pod, "ipc", Default::default(), |_| {})
        .await
        .expect("host ipc");
    let host_ipc = std::fs::read_link("/proc/self/ns/ipc").expect("ns");
    let inside = f.sh(&c, "readlink /proc/self/ns/ipc").await;
    assert_eq!(inside.trim(), host_ipc.display().to_string());
}

fn cgroup_file(f: &str) -> String {
    format!("cat /sys/fs/cgroup/{f}")
}

async fn resources_and_updates(handler: &str) {
    // hugetlb on its own v1 hierarchy (this machine kind keeps it on v2 otherwise).
    crio_tests::containerd::prepare_crun();
    let mut f = fixture(
        handler,
        "[crio.runtime]\npids_limit = 100\nlog_size_max = 8192\n",
    )
    .await;
    let pod = f.pod("res");
    let pod_id = f.run_pod(&pod).await;
    let resources = LinuxContainerResources {
        cpu_period: 100_000,
        cpu_quota: 50_000,
        cpu_shares: 512,
        memory_limit_in_bytes: 64 << 20,
        // This host kind accounts swap (memory.memsw.*), though it has no swap device.
        memory_swap_limit_in_bytes: 96 << 20,
        oom_score_adj: 500,
        cpuset_cpus: "0".into(),
        cpuset_mems: "0".into(),
        hugepage_limits: vec![protocols::cri::HugepageLimit {
            page_size: "2MB".into(),
            limit: 4 << 20,
        }],
        ..Default::default()
    };
    let id = f
        .sleeper(&pod_id, &pod, "limited", Default::default(), |c| {
            c.linux.get_or_insert_with(Default::default).resources = Some(resources.clone());
        })
        .await
        .expect("limited");
    // This host has cgroup v1; a VM's guest has v2 (the same limits in v2's files).
    let v2 = f.ok(&id, "test -f /sys/fs/cgroup/cgroup.controllers").await;
    assert_eq!(v2, handler == "kata");
    assert_cpu_and_memory(&mut f, &id, v2, 512, 64 << 20, "at create").await;
    let (cpuset, pids) = if v2 {
        ("cpuset.cpus", "pids.max")
    } else {
        ("cpuset/cpuset.cpus", "pids/pids.max")
    };
    assert_eq!(f.sh(&id, &cgroup_file(cpuset)).await.trim(), "0");
    assert_eq!(f.sh(&id, &cgroup_file(pids)).await.trim(), "100");
    assert_eq!(
        f.sh(&id, "cat /proc/self/oom_score_adj").await.trim(),
        "500"
    );

    // Live update through the shim's Update.
    f.cri
        .runtime
        .update_container_resources(UpdateContainerResourcesRequest {
            container_id: id.clone(),
            linux: Some(LinuxContainerResources {
                memory_limit_in_bytes: 128 << 20,
                cpu_shares: 256,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("UpdateContainerResources");
    // The quota the update leaves out is kept.
    assert_cpu_and_memory(&mut f, &id, v2, 256, 128 << 20, "after the update").await;
    let status = f.cri.container_status(&id).await.expect("status");
    let linux = status
        .resources
        .and_then(|r| r.linux)
        .expect("ContainerStatus.resources");
    assert_eq!(linux.memory_limit_in_bytes, 128 << 20);
    assert_eq!(linux.cpu_quota, 50_000);

    // container_min_memory, at create and at update.
    let err = f
        .sleeper(&pod_id, &pod, "tiny", Default::default(), |c| {
            c.linux.get_or_insert_with(Default::default).resources =
                Some(LinuxContainerResources {
                    memory_limit_in_bytes: 1 << 20,
                    ..Default::default()
                });
        })
        .await
        .expect_err("below container_min_memory");
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    let err = f
        .cri
        .runtime
        .update_container_resources(UpdateContainerResourcesRequest {
            container_id: id.clone(),
            linux: Some(LinuxContainerResources {
                memory_limit_in_bytes: 1 << 20,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect_err("below container_min_memory");
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    assert_cpu_and_memory(&mut f, &id, v2, 256, 128 << 20, "a refused update").await;
}

/// cgroup v2's `cpu.weight` for CPU shares: runc's mapping, which libcontainer
/// and crun share.
fn cpu_weight(shares: u64) -> u64 {
    let l = (shares as f64).log2();
    10f64.powf((l * l + 125.0 * l) / 612.0 - 7.0 / 34.0).ceil() as u64
}

/// The container's CPU shares, its 50000/100000 quota and its memory limit, read
/// from the v1 or v2 files.
async fn assert_cpu_and_memory(
    f: &mut Fixture,
    id: &str,
    v2: bool,
    shares: u64,
    memory: u64,
    when: &str,
) {
    let read = [
        ("cpu/cpu.shares", "cpu.weight"),
        ("cpu/cpu.cfs_quota_us", "cpu.max"),
        ("memory/memory.limit_in_bytes", "memory.max"),
    ];
    let mut got = Vec::new();
    for (v1_file, v2_file) in read {
        let file = if v2 { v2_file } else { v1_file };
        got.push(f.sh(id, &cgroup_file(file)).await.trim().to_string());
    }
    let want = if v2 {
        [
            cpu_weight(shares).to_string(),
            "50000 100000".to_string(),
            memory.to_string(),
        ]
    } else {
        [shares.to_string(), "50000".to_string(), memory.to_string()]
    };
    assert_eq!(got, want, "{when}");
    if !v2 {
        assert_eq!(
            f.sh(id, &cgroup_file("cpu/cpu.cfs_period_us")).await.trim(),
            "100000"
        );
    }
}

async fn mounts_and_devices(handler: &str) {
    let mut f = fixture(handler, "").await;
    let pod = f.pod("mounts");
    let pod_id = f.run_pod(&pod).await;
    let host = tempfile::tempdir().expect("tempdir");
    std::fs::write(host.path().join("file"), "from the host\n").expect("write");
    // A shared mount of our own, so propagation into the container can be seen.
    let shared = SharedMount::new(host.path());
    let created = host.path().join("made/by/crio");
    let nonroot = f._registry.reference(TestImage::NonRoot);
    f.cri.pull(&nonroot, None).await.expect("pull nonroot");
    let mount = |container: &str, host: &std::path::Path, readonly: bool| Mount {
        container_path: container.into(),
        host_path: host.display().to_string(),
        readonly,
        ..Default::default()
    };
    let mut config = container_config("m", &nonroot, "sleep 3600");
    config.command = vec!["sleep".into(), "3600".into()];
    config.mounts = vec![
        mount("/ro", host.path(), true),
        mount("/rw", host.path(), false),
        Mount {
            propagation: MountPropagation::PropagationHostToContainer as i32,
            ..mount("/slave", host.path(), true)
        },
        Mount {
            recursive_read_only: true,
            ..mount("/rro", host.path(), true)
        },
        mount("/created", &created, false),
    ];
    config.devices = vec![
        Device {
            container_path: "/dev/mynull".into(),
            host_path: "/dev/null".into(),
            permissions: "rwm".into(),
        },
        // /dev/kmsg is not among runc's default devices: only this rule allows it.
        Device {
            container_path: "/dev/kmsg-ro".into(),
            host_path: "/dev/kmsg".into(),
            permissions: "r".into(),
        },
    ];
    config.linux = Some(LinuxContainerConfig {
        security_context: Some(LinuxContainerSecurityContext {
            run_as_user: Some(Int64Value { value: 0 }),
            ..Default::default()
        }),
        resources: None,
    });
    let id = f
        .cri
        .create_container(&pod_id, &config, &pod)
        .await
        .expect("create");
    f.cri.start_container(&id).await.expect("start");

    assert_eq!(f.sh(&id, "cat /ro/file").await, "from the host\n");
    assert!(!f.ok(&id, "touch /ro/x").await, "read-only bind");
    assert!(!f.ok(&id, "touch /rro/x").await, "recursive read-only bind");
    f.sh(&id, "echo written > /rw/new").await;
    assert_eq!(
        std::fs::read_to_string(host.path().join("new")).expect("host sees it"),
        "written\n"
    );
    // A mount made on the host afterwards reaches the rslave mount only. In a VM
    // the guest sees its files through the shared directory, not a mount.
    shared.mount_tmpfs("sub");
    std::fs::write(host.path().join("sub/marker"), "late\n").expect("marker");
    assert_eq!(f.sh(&id, "cat /slave/sub/marker").await, "late\n");
    assert!(!f.ok(&id, "test -e /ro/sub/marker").await, "rprivate");
    if handler != "kata" {
        let mounts = f.sh(&id, "cat /proc/self/mountinfo").await;
        let slave = mounts
            .lines()
            .find(|l| l.split_whitespace().nth(4) == Some("/slave"))
            .expect("/slave in mountinfo");
        assert!(slave.contains("master:"), "rslave: {slave}");
        assert!(f.ok(&id, "grep -q ' /slave/sub ' /proc/mounts").await);
    }
    assert!(created.is_dir(), "a missing host path is created");
    // Devices with their cgroup permissions.
    assert!(f.ok(&id, "echo x > /dev/mynull").await);
    assert!(f.ok(&id, "test -c /dev/kmsg-ro").await);
    let denied = f
        .cri
        .exec(&id, &["sh", "-c", "echo crio-rs-test > /dev/kmsg-ro"])
        .await;
    assert_ne!(denied.exit_code, 0, "r only");
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("not permitted"),
        "the device cgroup refuses: {denied:?}"
    );
    let mut writer = container_config("w", &f.image, "sleep 3600");
    writer.devices = vec![Device {
        container_path: "/dev/kmsg-rw".into(),
        host_path: "/dev/kmsg".into(),
        permissions: "rw".into(),
    }];
    let w = f
        .cri
        .create_container(&pod_id, &writer, &pod)
        .await
        .expect("create w");
    f.cri.start_container(&w).await.expect("start w");
    assert!(
        f.ok(&w, "echo crio-rs spec test > /dev/kmsg-rw").await,
        "rw"
    );
    // The image's Volumes (image_volumes = mkdir).
    assert!(f.ok(&id, "test -d /data-volume").await);

    // recursive_read_only needs readonly.
    let mut bad = container_config("bad", &f.image, "true");
    bad.mounts = vec![Mount {
        recursive_read_only: true,
        ..mount("/x", host.path(), false)
    }];
    let err = f
        .cri
        .create_container(&pod_id, &bad, &pod)
        .await
        .expect_err("rro without readonly");
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    let mut bad = container_config("bad2", &f.image, "true");
    bad.devices = vec![Device {
        container_path: "/dev/x".into(),
        host_path: "/dev/x".into(),
        permissions: "rwx".into(),
    }];
    let err = f
        .cri
        .create_container(&pod_id, &bad, &pod)
        .await
        .expect_err("bad permissions");
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
}

/// CDI devices: named in `CDI_devices` or a `cdi.k8s.io/` annotation, defined by a
/// spec file in `cdi_spec_dirs` (read at each CreateContainer, so one written after
/// the daemon started works), their edits seen from inside the container.
async fn cdi_devices(handler: &str) {
    let cdi = tempfile::tempdir().expect("tempdir");
    let (specs, data) = (cdi.path().join("specs"), cdi.path().join("data"));
    std::fs::create_dir_all(&specs).expect("specs dir");
    std::fs::create_dir_all(&data).expect("data dir");
    std::fs::write(data.join("file"), "cdi data\n").expect("write");
    let hook_ran = cdi.path().join("hook-ran");
    let config = format!("[crio.runtime]\ncdi_spec_dirs = [\"/nonexistent/cdi\", {specs:?}]\n");
    let mut f = fixture(handler, &config).await;
    let pod = f.pod("cdi");
    let pod_id = f.run_pod(&pod).await;
    std::fs::write(
        specs.join("test.yaml"),
        format!(
            r#"cdiVersion: "0.6.0"
kind: crio-rs.test/dev
devices:
  - name: null0
    containerEdits:
      env: [CDI_NULL=0]
      deviceNodes:
        - {{path: /dev/cdi-null, hostPath: /dev/null, permissions: rw}}
  - name: kmsg
    containerEdits:
      deviceNodes:
        - {{path: /dev/cdi-kmsg, hostPath: /dev/kmsg, permissions: r}}
containerEdits:
  env: [CDI_VENDOR=crio-rs]
  mounts:
    - {{hostPath: {data:?}, containerPath: /cdi-data, options: [ro, nosuid, nodev, bind]}}
  hooks:
    - {{hookName: createRuntime, path: /bin/sh, args: [sh, -c, "echo ran > {}"]}}
  additionalGids: [4242]
"#,
            hook_ran.display()
        ),
    )
    .expect("write spec");

    let id = f
        .sleeper(
            &pod_id,
            &pod,
            "devs",
            LinuxContainerSecurityContext::default(),
            |c| {
                c.cdi_devices = ["crio-rs.test/dev=null0", "crio-rs.test/dev=kmsg"]
                    .map(|name| CdiDevice { name: name.into() })
                    .to_vec();
            },
        )
        .await
        .expect("container with CDI devices");
    assert_eq!(f.sh(&id, "echo $CDI_NULL $CDI_VENDOR").await, "0 crio-rs\n");
    assert!(f.ok(&id, "echo x > /dev/cdi-null").await, "rw device");
    assert!(f.ok(&id, "test -c /dev/cdi-kmsg").await);
    assert!(
        !f.ok(&id, "echo crio-rs-test > /dev/cdi-kmsg").await,
        "the device cgroup allows r only"
    );
    assert_eq!(f.sh(&id, "cat /cdi-data/file").await, "cdi data\n");
    assert!(!f.ok(&id, "touch /cdi-data/x").await, "read-only mount");
    let groups = status_field(&f.sh(&id, "cat /proc/self/status").await, "Groups:");
    assert!(groups.split_whitespace().any(|g| g == "4242"), "{groups}");
    assert_eq!(
        std::fs::read_to_string(&hook_ran).expect("the createRuntime hook ran"),
        "ran\n"
    );

    // The annotation form, as older device plugins send it.
    let by_annotation = f
        .sleeper(
            &pod_id,
            &pod,
            "annotated",
            LinuxContainerSecurityContext::default(),
            |c| {
                c.annotations
                    .insert("cdi.k8s.io/test".into(), "crio-rs.test/dev=null0".into());
            },
        )
        .await
        .expect("container with a CDI annotation");
    assert!(f.ok(&by_annotation, "test -c /dev/cdi-null").await);

    // Unknown devices and bad names: InvalidArgument, nothing created.
    let before = f.cri.containers().await.len();
    for name in ["crio-rs.test/dev=nope", "null0"] {
        let mut config = container_config("bad", &f.image, "true");
        config.cdi_devices = vec![CdiDevice { name: name.into() }];
        let err = f
            .cri
            .create_container(&pod_id, &config, &pod)
            .await
            .expect_err(name);
        assert_eq!(err.code(), Code::InvalidArgument, "{err}");
        assert!(err.message().contains(name), "{err}");
    }
    assert_eq!(f.cri.containers().await.len(), before);
}

async fn stats_events_and_runtime_config(handler: &str) {
    let mut f = fixture(handler, "").await;
    let mut events = f
        .cri
        .runtime
        .get_container_events(GetEventsRequest {})
        .await
        .expect("GetContainerEvents")
        .into_inner();
    let pod = f.pod("stats");
    let pod_id = f.run_pod(&pod).await;
    let mut config = container_config(
        "busy",
        &f.image,
        "dd if=/dev/zero of=/fill bs=1M count=2; while true; do :; done",
    );
    config.command = vec!["sh".into(), "-c".into(), config.command[2].clone()];
    let id = f
        .cri
        .create_container(&pod_id, &config, &pod)
        .await
        .expect("create");
    f.cri.start_container(&id).await.expect("start");
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let stats = f
        .cri
        .runtime
        .container_stats(ContainerStatsRequest {
            container_id: id.clone(),
        })
        .await
        .expect("ContainerStats")
        .into_inner()
        .stats
        .expect("stats");
    let cpu = stats.cpu.expect("cpu");
    assert!(
        cpu.usage_core_nano_seconds.expect("cpu ns").value > 100_000_000,
        "a busy loop used CPU"
    );
    let memory = stats.memory.expect("memory");
    assert!(memory.working_set_bytes.expect("ws").value > 0);
    let layer = stats.writable_layer.expect("writable layer");
    assert!(
        layer.used_bytes.expect("bytes").value >= 2 << 20,
        "{layer:?}"
    );
    assert!(layer.inodes_used.expect("inodes").value >= 1);
    let list = |cri: &mut CriClient| {
        let mut rt = cri.runtime.clone();
        async move {
            rt.list_container_stats(ListContainerStatsRequest { filter: None })
                .await
                .expect("ListContainerStats")
                .into_inner()
                .stats
        }
    };
    list(&mut f.cri).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let listed = list(&mut f.cri).await;
    let nano = listed[0]
        .cpu
        .as_ref()
        .and_then(|c| c.usage_nano_cores.as_ref())
        .expect("nano cores on the second sample")
        .value;
    assert!(nano > 200_000_000, "a spinning shell uses a core: {nano}");

    let pod_stats = f
        .cri
        .runtime
        .pod_sandbox_stats(PodSandboxStatsRequest {
            pod_sandbox_id: pod_id.clone(),
        })
        .await
        .expect("PodSandboxStats")
        .into_inner()
        .stats
        .expect("stats")
        .linux
        .expect("linux");
    assert_eq!(pod_stats.containers.len(), 1);
    assert_eq!(
        pod_stats
            .process
            .and_then(|p| p.process_count)
            .expect("process count")
            .value,
        1 + u64::from(crio_tests::pods::has_pause(handler)),
        "the shell, and pause where the pod has one"
    );
    assert!(pod_stats.network.is_some(), "the pod's network namespace");

    let descriptors = f
        .cri
        .runtime
        .list_metric_descriptors(ListMetricDescriptorsRequest {})
        .await
        .expect("descriptors")
        .into_inner()
        .descriptors;
    assert_eq!(descriptors[0].name, "container_last_seen");
    let metrics = f
        .cri
        .runtime
        .list_pod_sandbox_metrics(ListPodSandboxMetricsRequest {})
        .await
        .expect("metrics")
        .into_inner()
        .pod_metrics;
    assert_eq!(metrics[0].container_metrics[0].container_id, id);

    f.cri
        .runtime
        .stop_container(StopContainerRequest {
            container_id: id.clone(),
            timeout: 0,
        })
        .await
        .expect("stop");
    f.cri
        .runtime
        .remove_container(RemoveContainerRequest {
            container_id: id.clone(),
        })
        .await
        .expect("remove");
    f.cri
        .runtime
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod_id.clone(),
        })
        .await
        .expect("remove pod");

    // Events in order, each with the pod's status.
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while seen.len() < 8 {
        let event = tokio::time::timeout_at(deadline, events.message())
            .await
            .expect("events in time")
            .expect("stream")
            .expect("an event");
        assert!(event.pod_sandbox_status.is_some(), "{event:?}");
        let who = if event.container_id == pod_id {
            "pod"
        } else {
            "ctr"
        };
        assert!(who == "pod" || event.container_id == id);
        seen.push((who, event.container_event_type));
    }
    use ContainerEventType::*;
    let expected = [
        ("pod", ContainerCreatedEvent as i32),
        ("pod", ContainerStartedEvent as i32),
        ("ctr", ContainerCreatedEvent as i32),
        ("ctr", ContainerStartedEvent as i32),
        ("ctr", ContainerStoppedEvent as i32),
        ("ctr", ContainerDeletedEvent as i32),
        ("pod", ContainerStoppedEvent as i32),
        ("pod", ContainerDeletedEvent as i32),
    ];
    assert_eq!(seen, expected);

    // UpdateRuntimeConfig and Status' verbose info.
    let err = f
        .cri
        .runtime
        .update_runtime_config(UpdateRuntimeConfigRequest {
            runtime_config: Some(RuntimeConfig {
                network_config: Some(NetworkConfig {
                    pod_cidr: "10.244.0.0".into(),
                }),
            }),
        })
        .await
        .expect_err("not a CIDR");
    assert_eq!(err.code(), Code::InvalidArgument);
    f.cri
        .runtime
        .update_runtime_config(UpdateRuntimeConfigRequest {
            runtime_config: Some(RuntimeConfig {
                network_config: Some(NetworkConfig {
                    pod_cidr: "10.244.1.0/24".into(),
                }),
            }),
        })
        .await
        .expect("UpdateRuntimeConfig");
    let info: HashMap<String, String> = f.cri.status(true).await.info;
    let config: serde_json::Value = serde_json::from_str(&info["config"]).expect("config is JSON");
    assert!(config["crio"]["crio"]["runtime"]["runtimes"]["go"].is_object());
    assert_eq!(info["podCIDRs"], r#"["10.244.1.0/24"]"#);
}

/// Mount propagation from the host: after the container started, a tmpfs mounted on
/// the host under each source reaches the `Bidirectional` and `HostToContainer`
/// mounts and not the `Private` one; a source whose host mount cannot carry the
/// propagation asked for is refused, naming it, and nothing is created.
async fn mount_propagation(handler: &str) {
    let mut f = fixture(handler, "").await;
    // Bidirectional is for privileged containers (the API server's rule), which can
    // mount inside it.
    let pod = f.privileged_pod("propagation");
    let pod_id = f.run_pod(&pod).await;
    let host = tempfile::tempdir().expect("tempdir");
    let shared = SharedMount::new(host.path());
    let privileged = LinuxContainerSecurityContext {
        privileged: true,
        ..Default::default()
    };
    // A VM's guest has a kernel of its own: nothing it mounts can reach the host,
    // so a VM pod refuses Bidirectional; what the host mounts later reaches it
    // as files through the shared directory.
    let vm = handler == "kata";
    let host_mount = |path: &str, mode: MountPropagation| {
        let source = host.path().join(path.trim_start_matches('/'));
        std::fs::create_dir_all(&source).expect("mkdir");
        Mount {
            container_path: path.to_string(),
            host_path: source.display().to_string(),
            propagation: mode as i32,
            ..Default::default()
        }
    };
    if vm {
        let before = f.cri.containers().await.len();
        let bidir = host_mount("/bidir", MountPropagation::PropagationBidirectional);
        let err = f
            .sleeper(&pod_id, &pod, "bidir", privileged.clone(), |c| {
                c.mounts = vec![bidir]
            })
            .await
            .expect_err("Bidirectional in a VM pod");
        assert_eq!(err.code(), Code::InvalidArgument, "{err}");
        assert!(err.message().contains("Bidirectional"), "{err}");
        assert_eq!(f.cri.containers().await.len(), before, "nothing created");
    }
    let modes: Vec<(&str, MountPropagation)> = [
        ("/bidir", MountPropagation::PropagationBidirectional),
        ("/slave", MountPropagation::PropagationHostToContainer),
        ("/private", MountPropagation::PropagationPrivate),
    ]
    .into_iter()
    .filter(|(_, mode)| !vm || *mode != MountPropagation::PropagationBidirectional)
    .collect();
    let mounts: Vec<Mount> = modes
        .iter()
        .map(|(path, mode)| host_mount(path, *mode))
        .collect();
    let id = f
        .sleeper(&pod_id, &pod, "prop", privileged, |c| {
            c.mounts = mounts.clone()
        })
        .await
        .expect("create and start");
    for (path, _) in &modes {
        let sub = format!("{}/late", path.trim_start_matches('/'));
        shared.mount_tmpfs(&sub);
        std::fs::write(host.path().join(&sub).join("marker"), "late\n").expect("marker");
    }
    if !vm {
        assert_eq!(
            f.sh(&id, "cat /bidir/late/marker").await,
            "late\n",
            "Bidirectional"
        );
    }
    assert_eq!(
        f.sh(&id, "cat /slave/late/marker").await,
        "late\n",
        "HostToContainer"
    );
    assert!(
        !f.ok(&id, "test -e /private/late/marker").await,
        "Private sees no later mount"
    );
    // And back: only a Bidirectional mount shows the host what the container mounts.
    for (path, _) in &modes {
        f.sh(
            &id,
            &format!("mkdir -p {path}/inner && mount -t tmpfs tmpfs {path}/inner && echo in > {path}/inner/x"),
        )
        .await;
    }
    let on_host = |p: &str| host.path().join(p).join("inner/x").exists();
    assert!(
        vm || on_host("bidir"),
        "Bidirectional shares the container's mount"
    );
    assert!(!on_host("slave"), "HostToContainer keeps it in");
    assert!(!on_host("private"), "Private keeps it in");
    let status = f.cri.container_status(&id).await.expect("status");
    let reported: Vec<(String, i32)> = status
        .mounts
        .iter()
        .map(|m| (m.container_path.clone(), m.propagation))
        .collect();
    for (path, mode) in &modes {
        assert!(
            reported.contains(&(path.to_string(), *mode as i32)),
            "{path}: {reported:?}"
        );
    }

    // A plain directory on a private host mount cannot carry either.
    let private = tempfile::tempdir().expect("tempdir");
    let plain = SharedMount::private(private.path());
    let before = f.cri.containers().await.len();
    for (mode, says) in [
        (
            MountPropagation::PropagationBidirectional,
            "not a shared mount",
        ),
        (
            MountPropagation::PropagationHostToContainer,
            "not a shared or slave mount",
        ),
    ]
    .into_iter()
    .filter(|(mode, _)| !vm || *mode != MountPropagation::PropagationBidirectional)
    {
        let refused = Mount {
            container_path: "/refused".into(),
            host_path: plain.dir.display().to_string(),
            propagation: mode as i32,
            ..Default::default()
        };
        let err = f
            .sleeper(&pod_id, &pod, "refused", Default::default(), |c| {
                c.mounts = vec![refused]
            })
            .await
            .expect_err("a private source");
        assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
        assert!(
            err.message().contains(says)
                && err.message().contains(&plain.dir.display().to_string()),
            "{err}"
        );
    }
    assert_eq!(f.cri.containers().await.len(), before, "nothing created");
}

/// A directory bind-mounted onto itself and made shared; unmounted (with what was
/// mounted under it) on drop, even when the test fails.
struct SharedMount {
    dir: std::path::PathBuf,
}

impl SharedMount {
    fn new(dir: &std::path::Path) -> Self {
        Self::bind(dir, nix::mount::MsFlags::MS_SHARED)
    }

    /// A bind of `dir` onto itself made private: a mount no propagation can use,
    /// whatever the host's `/` is.
    fn private(dir: &std::path::Path) -> Self {
        Self::bind(dir, nix::mount::MsFlags::MS_PRIVATE)
    }

    /// `dir` bound onto itself with `propagation`.
    fn bind(dir: &std::path::Path, propagation: nix::mount::MsFlags) -> Self {
        use nix::mount::{mount, MsFlags};
        mount(Some(dir), dir, None::<&str>, MsFlags::MS_BIND, None::<&str>).expect("bind");
        let m = SharedMount {
            dir: dir.to_path_buf(),
        };
        mount(None::<&str>, dir, None::<&str>, propagation, None::<&str>).expect("set propagation");
        m
    }

    fn mount_tmpfs(&self, name: &str) {
        use nix::mount::{mount, MsFlags};
        let target = self.dir.join(name);
        std::fs::create_dir_all(&target).expect("mkdir");
        mount(
            Some("tmpfs"),
            &target,
            Some("tmpfs"),
            MsFlags::empty(),
            None::<&str>,
        )
        .expect("tmpfs");
    }
}

impl Drop for SharedMount {
    fn drop(&mut self) {
        crio_tests::cleanup::unmount_all_under(&self.dir);
    }
}

crio_tests::per_handler!(
    process_and_pod_files,
    security_context,
    resources_and_updates,
    mounts_and_devices,
    mount_propagation,
    cdi_devices,
    stats_events_and_runtime_config;
    kata: process_and_pod_files,
    security_context,
    resources_and_updates,
    mounts_and_devices,
    mount_propagation,
    cdi_devices,
    stats_events_and_runtime_config
);
