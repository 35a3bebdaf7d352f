//! What a probe of the running daemon found, each as a test: hostile requests get
//! the right gRPC status and change nothing, secrets are root's, logs stay whole on
//! a full disk and never flood the daemon's log, a killed shim or daemon leaves
//! nothing behind, and the pod/PID namespace defaults read as the CRI says.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::Duration;

use crio_tests::pods::{container_config, pod_config};
use crio_tests::{Daemon, Registry, TestImage};
use protocols::cri::{
    ContainerStatusRequest, DnsConfig, ExecSyncRequest, KeyValue, LinuxContainerConfig,
    LinuxContainerResources, LinuxPodSandboxConfig, Mount, NamespaceMode, NamespaceOption,
    PodSandboxConfig, PortMapping,
};
use tonic::Code;

/// A change to a container config.
type Edit = Box<dyn Fn(&mut protocols::cri::ContainerConfig)>;

/// A daemon with busybox pulled.
async fn setup() -> (Registry, Daemon, crio_tests::cri::CriClient, String) {
    let registry = Registry::with_test_images();
    let daemon = Daemon::builder()
        .registries_conf(&registry.insecure_conf())
        .start();
    let mut cri = daemon.client().await;
    let image = registry.reference(TestImage::Busybox);
    cri.pull(&image, None).await.expect("pull");
    (registry, daemon, cri, image)
}

/// Whether uid 65534 (nobody) can read `path`.
fn nobody_can_read(path: &Path) -> bool {
    let out = std::process::Command::new("/bin/cat")
        .arg(path)
        .uid(65534)
        .gid(65534)
        .output()
        .expect("run cat as nobody");
    out.status.success()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o7777
}

/// Secrets in a container's spec, its log and its writable layer are root's; the
/// state dirs can be passed through but not listed; a restart tightens what an
/// older daemon left readable.
#[tokio::test(flavor = "multi_thread")]
async fn secrets_are_not_readable_by_other_users() {
    let (_registry, mut daemon, mut cri, image) = setup().await;
    let pod = pod_config("secrets", &daemon.dirs.log_dir);
    let pod_id = cri.run_pod(&pod, "runc").await.expect("RunPodSandbox");
    let mut config = container_config(
        "db",
        &image,
        "echo password=hunter2; echo hunter2 > /secret; sleep 3600",
    );
    config.envs = vec![KeyValue {
        key: "DB_PASSWORD".into(),
        value: b"hunter2".to_vec(),
    }];
    let id = cri
        .create_container(&pod_id, &config, &pod)
        .await
        .expect("CreateContainer");
    cri.start_container(&id).await.expect("start");
    let status = cri.container_status(&id).await.expect("status");
    let log = std::path::PathBuf::from(&status.log_path);
    crio_tests::pods::wait_for_file_text(&log, "password", Duration::from_secs(10)).await;

    let spec = daemon
        .dirs
        .runroot
        .join("bundles")
        .join(&id)
        .join("config.json");
    let secret = daemon
        .dirs
        .root
        .join("containers")
        .join(&id)
        .join("upper/secret");
    assert!(std::fs::read_to_string(&spec)
        .expect("root reads it")
        .contains("hunter2"));
    assert!(secret.exists(), "the file is in the writable layer");
    for path in [&spec, &log, &secret] {
        assert!(
            !nobody_can_read(path),
            "{} is readable by nobody",
            path.display()
        );
    }
    assert_eq!(mode(&spec), 0o600);
    assert_eq!(mode(&log), 0o600);
    for dir in [&daemon.dirs.root, &daemon.dirs.runroot] {
        assert_eq!(mode(dir), 0o711, "{}", dir.display());
    }

    // An older daemon's modes are tightened at start.
    std::fs::set_permissions(&daemon.dirs.root, std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    std::fs::set_permissions(&spec, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let container_dir = daemon.dirs.root.join("containers").join(&id);
    std::fs::set_permissions(&container_dir, std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    drop(cri);
    daemon.stop();
    daemon.restart();
    let _cri = daemon.client().await;
    assert_eq!(mode(&daemon.dirs.root), 0o711);
    assert_eq!(mode(&spec), 0o600);
    assert_eq!(mode(&container_dir), 0o700);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while mode(&log) != 0o600 {
        assert!(std::time::Instant::now() < deadline, "log mode not fixed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Log paths stay inside the pod's log directory; a relative log directory is
/// refused.
#[tokio::test(flavor = "multi_thread")]
async fn log_paths_cannot_escape_the_log_directory() {
    let (_registry, daemon, mut cri, image) = setup().await;
    let mut relative = pod_config("rel-logs", &daemon.dirs.log_dir);
    relative.log_directory = "relative/logs".into();
    let err = cri.run_pod(&relative, "runc").await.expect_err("relative");
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");

    let pod = pod_config("logs", &daemon.dirs.log_dir);
    let pod_id = cri.run_pod(&pod, "runc").await.expect("RunPodSandbox");
    let outside = tempfile::tempdir().expect("tempdir");
    let target = outside.path().join("x.log");
    let climbing = format!("../../../../../../../..{}", target.display());
    for log_path in [target.display().to_string(), climbing] {
        let mut config = container_config("esc", &image, "echo escaped");
        config.log_path = log_path.clone();
        let err = cri
            .create_container(&pod_id, &config, &pod)
            .await
            .expect_err("escaping log path");
        assert_eq!(err.code(), Code::InvalidArgument, "{log_path}: {err}");
        assert!(!target.exists(), "{log_path} wrote outside");
    }
    assert!(cri.containers().await.is_empty(), "nothing created");
}

/// Values written into /etc/hosts and resolv.conf cannot add lines there.
#[tokio::test(flavor = "multi_thread")]
async fn hostname_and_dns_cannot_inject_lines() {
    let (_registry, daemon, mut cri, _image) = setup().await;
    let mut evil_host = pod_config("evil-host", &daemon.dirs.log_dir);
    evil_host.hostname = "h\n6.6.6.6 evil".into();
    let mut evil_server = pod_config("evil-dns", &daemon.dirs.log_dir);
    evil_server.dns_config = Some(DnsConfig {
        servers: vec!["10.0.0.1\nnameserver 6.6.6.6".into()],
        ..Default::default()
    });
    let mut evil_option = pod_config("evil-opt", &daemon.dirs.log_dir);
    evil_option.dns_config = Some(DnsConfig {
        options: vec!["ndots:5\nnameserver 6.6.6.6".into()],
        ..Default::default()
    });
    for pod in [evil_host, evil_server, evil_option] {
        let err = cri.run_pod(&pod, "runc").await.expect_err("injection");
        assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    }
    assert!(cri.pods().await.is_empty(), "nothing created");
}

/// Requests the runtime or the kernel would fail on deep inside are
/// InvalidArgument naming the field, and create nothing.
#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_are_invalid_arguments_naming_the_field() {
    let (_registry, daemon, mut cri, image) = setup().await;
    let port = |host_port| PortMapping {
        container_port: 80,
        host_port,
        ..Default::default()
    };
    for (field, mapping) in [("host_port", port(99999)), ("host_port", port(-5))] {
        let mut pod = pod_config("ports", &daemon.dirs.log_dir);
        pod.port_mappings = vec![mapping];
        let err = cri.run_pod(&pod, "runc").await.expect_err("bad port");
        assert_eq!(err.code(), Code::InvalidArgument, "{err}");
        assert!(err.message().contains(field), "{err}");
    }

    let pod = pod_config("bad-requests", &daemon.dirs.log_dir);
    let pod_id = cri.run_pod(&pod, "runc").await.expect("RunPodSandbox");
    let resources = |edit: fn(&mut LinuxContainerResources)| {
        let mut r = LinuxContainerResources::default();
        edit(&mut r);
        r
    };
    let cases: Vec<(&str, Edit)> = vec![
        (
            "cpu_shares",
            Box::new(move |c| {
                c.linux = Some(LinuxContainerConfig {
                    resources: Some(resources(|r| r.cpu_shares = i64::MAX)),
                    security_context: None,
                })
            }),
        ),
        (
            "cpu_period",
            Box::new(move |c| {
                c.linux = Some(LinuxContainerConfig {
                    resources: Some(resources(|r| r.cpu_period = i64::MAX)),
                    security_context: None,
                })
            }),
        ),
        (
            "oom_score_adj",
            Box::new(move |c| {
                c.linux = Some(LinuxContainerConfig {
                    resources: Some(resources(|r| r.oom_score_adj = 5000)),
                    security_context: None,
                })
            }),
        ),
        (
            "cpuset_cpus",
            Box::new(move |c| {
                c.linux = Some(LinuxContainerConfig {
                    resources: Some(resources(|r| r.cpuset_cpus = "zzz".into())),
                    security_context: None,
                })
            }),
        ),
        (
            "environment variable",
            Box::new(|c| {
                c.envs = vec![KeyValue {
                    key: "=".into(),
                    value: b"x".to_vec(),
                }]
            }),
        ),
        (
            "environment variable",
            Box::new(|c| {
                c.envs = vec![KeyValue {
                    key: String::new(),
                    value: b"x".to_vec(),
                }]
            }),
        ),
        (
            "environment variable",
            Box::new(|c| {
                c.envs = vec![KeyValue {
                    key: "A\0B".into(),
                    value: b"x".to_vec(),
                }]
            }),
        ),
        (
            "working_dir",
            Box::new(|c| c.working_dir = "relative".into()),
        ),
        (
            "host_path",
            Box::new(|c| {
                c.mounts = vec![Mount {
                    container_path: "/data".into(),
                    host_path: "../..".into(),
                    ..Default::default()
                }]
            }),
        ),
        (
            "container_path",
            Box::new(|c| {
                c.mounts = vec![Mount {
                    container_path: "data".into(),
                    host_path: "/tmp".into(),
                    ..Default::default()
                }]
            }),
        ),
    ];
    for (field, edit) in cases {
        let mut config = container_config("bad", &image, "true");
        edit(&mut config);
        let err = cri
            .create_container(&pod_id, &config, &pod)
            .await
            .expect_err(field);
        assert_eq!(err.code(), Code::InvalidArgument, "{field}: {err}");
        assert!(err.message().contains(field), "{field}: {err}");
    }
    assert!(cri.containers().await.is_empty(), "nothing created");

    // ExecSync of a binary that is not there: the error runc's peers give (a gRPC
    // error with runc's message), not an internal error.
    let config = container_config("ok", &image, "sleep 3600");
    let id = cri
        .create_container(&pod_id, &config, &pod)
        .await
        .expect("create");
    cri.start_container(&id).await.expect("start");
    let err = cri
        .runtime
        .exec_sync(ExecSyncRequest {
            container_id: id.clone(),
            cmd: vec!["/no/such/binary".into()],
            timeout: 10,
        })
        .await
        .expect_err("missing binary");
    assert_eq!(err.code(), Code::Unknown, "{err}");
    assert!(err.message().contains("/no/such/binary"), "{err}");
}

/// An id of a megabyte is not echoed back whole: the reply stays small enough for
/// any client to read.
#[tokio::test(flavor = "multi_thread")]
async fn huge_ids_are_not_echoed_back() {
    let daemon = Daemon::builder().start();
    let mut cri = daemon.client().await;
    let huge = "a".repeat(1 << 20);
    let err = cri
        .runtime
        .container_status(ContainerStatusRequest {
            container_id: huge,
            verbose: false,
        })
        .await
        .expect_err("no such container");
    assert_eq!(err.code(), Code::NotFound, "{}", err.message().len());
    assert!(err.message().len() < 1024, "{} bytes", err.message().len());
}

/// The PID namespace mode read as the CRI says: an absent mode is POD (share the
/// pod's, pause is PID 1) whether the options or the whole `linux` part are missing;
/// CONTAINER gives a container its own.
#[tokio::test(flavor = "multi_thread")]
async fn an_absent_pid_mode_means_the_pods_namespace() {
    let (_registry, daemon, mut cri, image) = setup().await;
    let pid1 = |cri: &mut crio_tests::cri::CriClient, id: String| {
        let mut cri = cri.clone();
        async move {
            let out = cri.exec(&id, &["cat", "/proc/1/comm"]).await;
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        }
    };
    let bare = |name: &str, linux: Option<LinuxPodSandboxConfig>| PodSandboxConfig {
        linux,
        ..pod_config(name, &daemon.dirs.log_dir)
    };
    let unset = Some(LinuxPodSandboxConfig {
        security_context: Some(protocols::cri::LinuxSandboxSecurityContext {
            namespace_options: Some(NamespaceOption::default()),
            ..Default::default()
        }),
        ..Default::default()
    });
    for (name, pod) in [
        (
            "linux-empty",
            bare("linux-empty", Some(LinuxPodSandboxConfig::default())),
        ),
        ("no-linux", bare("no-linux", None)),
        ("pid-unset", bare("pid-unset", unset)),
    ] {
        let pod_id = cri.run_pod(&pod, "runc").await.expect(name);
        let mut config = container_config("c", &image, "sleep 3600");
        config.linux = None;
        let id = cri
            .create_container_raw(&pod_id, &config, &pod)
            .await
            .expect(name);
        cri.start_container(&id).await.expect(name);
        assert_eq!(
            pid1(&mut cri, id).await,
            "pause",
            "{name}: shares the pod's"
        );
    }
    let pod = pod_config("own-pid", &daemon.dirs.log_dir);
    let pod_id = cri.run_pod(&pod, "runc").await.expect("pod");
    let mut config = container_config("c", &image, "sleep 3600");
    config.linux = Some(LinuxContainerConfig {
        security_context: Some(protocols::cri::LinuxContainerSecurityContext {
            namespace_options: Some(NamespaceOption {
                pid: NamespaceMode::Container as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        resources: None,
    });
    let id = cri
        .create_container_raw(&pod_id, &config, &pod)
        .await
        .expect("create");
    cri.start_container(&id).await.expect("start");
    assert_eq!(pid1(&mut cri, id).await, "sleep", "CONTAINER: its own");
}

/// A tmpfs the test mounts under its own dir; unmounted on drop, even on failure.
struct SmallFs {
    dir: std::path::PathBuf,
}

impl SmallFs {
    fn mount(dir: &Path, bytes: u64) -> Self {
        std::fs::create_dir_all(dir).expect("mkdir");
        nix::mount::mount(
            Some("tmpfs"),
            dir,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some(format!("size={bytes}").as_str()),
        )
        .expect("mount tmpfs");
        SmallFs {
            dir: dir.to_path_buf(),
        }
    }

    fn free_bytes(&self) -> u64 {
        let s = nix::sys::statvfs::statvfs(&self.dir).expect("statvfs");
        s.blocks_available() * s.fragment_size()
    }

    fn size_bytes(&self) -> u64 {
        let s = nix::sys::statvfs::statvfs(&self.dir).expect("statvfs");
        s.blocks() * s.fragment_size()
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.dir, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Whether `line` is one whole CRI log record (`<RFC 3339 time> <stream> <P|F> <text>`).
fn whole_record(line: &str) -> bool {
    let mut f = line.splitn(4, ' ');
    let (Some(time), Some(stream), Some(tag)) = (f.next(), f.next(), f.next()) else {
        return false;
    };
    time.len() >= 20
        && time.as_bytes()[4] == b'-'
        && time.contains('T')
        && (stream == "stdout" || stream == "stderr")
        && (tag == "F" || tag == "P")
}

/// A container that fills its log's filesystem: the daemon reports it a few times
/// (with the container and the bytes dropped), not once per write; the file keeps
/// whole records only, before and after space comes back; the drop count shows in
/// the verbose status; and once the container's output has ended the file is
/// closed, so deleting it gives its space back.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_log_disk_is_reported_sparingly_and_leaves_whole_records() {
    let (_registry, daemon, mut cri, image) = setup().await;
    let logs = SmallFs::mount(&daemon.dirs.base.join("small-logs"), 2 << 20);
    let filler = logs.dir.join("filler");
    std::fs::write(&filler, vec![b'f'; 512 << 10]).expect("filler");
    let mut pod = pod_config("fulldisk", &daemon.dirs.log_dir);
    pod.log_directory = logs.dir.join("pod").display().to_string();
    let pod_id = cri.run_pod(&pod, "runc").await.expect("RunPodSandbox");
    let config = container_config(
        "flood",
        &image,
        "i=0; while true; do echo \"line $i of the flood, padded to a fair length\"; \
         i=$((i+1)); done",
    );
    let id = cri
        .create_container(&pod_id, &config, &pod)
        .await
        .expect("create");
    cri.start_container(&id).await.expect("start");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while logs.free_bytes() > 64 << 10 {
        assert!(
            std::time::Instant::now() < deadline,
            "the log never filled the disk"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Space comes back while the container still writes.
    std::fs::remove_file(&filler).expect("free space");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !daemon.log().contains("is written again") {
        assert!(std::time::Instant::now() < deadline, "recovery is reported");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = cri.container_status(&id).await.expect("status");
    let log_path = std::path::PathBuf::from(&status.log_path);
    cri.runtime
        .stop_container(protocols::cri::StopContainerRequest {
            container_id: id.clone(),
            timeout: 2,
        })
        .await
        .expect("stop");
    cri.wait_exited(&id, Duration::from_secs(10)).await;

    let text = std::fs::read_to_string(&log_path).expect("log");
    assert!(text.ends_with('\n'), "the file ends with a whole record");
    let torn: Vec<&str> = text.lines().filter(|l| !whole_record(l)).collect();
    assert!(
        torn.is_empty(),
        "{} torn lines, e.g. {:?}",
        torn.len(),
        &torn[..torn.len().min(3)]
    );
    assert!(
        text.lines().all(|l| l.ends_with("padded to a fair length")),
        "every record is a whole line of output"
    );

    let reports: Vec<String> = daemon
        .log()
        .lines()
        .filter(|l| l.contains("cannot write container log"))
        .map(String::from)
        .collect();
    assert!(!reports.is_empty(), "the full disk is reported");
    assert!(
        reports.len() <= 4,
        "{} reports: {reports:#?}",
        reports.len()
    );
    assert!(
        reports
            .iter()
            .all(|r| r.contains(&id) && r.contains("dropped_bytes")),
        "{reports:#?}"
    );
    assert!(
        daemon.log().contains("is written again"),
        "recovery is reported"
    );
    let verbose = cri
        .runtime
        .container_status(ContainerStatusRequest {
            container_id: id.clone(),
            verbose: true,
        })
        .await
        .expect("verbose status")
        .into_inner();
    let info: serde_json::Value =
        serde_json::from_str(&verbose.info["info"]).expect("info is JSON");
    assert!(info["logDroppedBytes"].as_u64() > Some(0), "{info}");

    // Output ended: deleting the log gives its space back before RemoveContainer.
    std::fs::remove_file(&log_path).expect("delete the log");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while logs.free_bytes() < logs.size_bytes() - (256 << 10) {
        assert!(
            std::time::Instant::now() < deadline,
            "the deleted log is still held open: {} of {} bytes free",
            logs.free_bytes(),
            logs.size_bytes()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn shim_sockets() -> std::collections::BTreeSet<std::ffi::OsString> {
    std::fs::read_dir("/run/containerd/s")
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default()
}

/// Host PIDs of the processes in the cgroup of task `id` (`crio-<id>`).
fn task_processes(id: &str) -> Vec<i32> {
    let cgroup = format!("crio-{id}");
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
                .is_ok_and(|c| c.lines().any(|l| l.ends_with(&cgroup)))
        })
        .collect()
}

/// kill -9 of a pod's shim: its containers are reported exited only once their
/// processes (and pause) are gone, and the shim's socket is removed.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_shim_leaves_no_process_and_no_socket() {
    let (_registry, daemon, mut cri, image) = setup().await;
    let before = shim_sockets();
    // A pod with a pause process (one sharing its PID namespace): pause too must
    // go with its shim.
    let pod = crio_tests::pods::shared_pid(pod_config("shimkill", &daemon.dirs.log_dir));
    let pod_id = cri.run_pod(&pod, "runc").await.expect("RunPodSandbox");
    let config = container_config("app", &image, "sleep 3600");
    let id = cri
        .create_container(&pod_id, &config, &pod)
        .await
        .expect("create");
    cri.start_container(&id).await.expect("start");
    let ours: Vec<_> = shim_sockets().difference(&before).cloned().collect();
    assert_eq!(ours.len(), 1, "one shim socket for the pod: {ours:?}");
    assert!(!task_processes(&id).is_empty() && !task_processes(&pod_id).is_empty());
    let shims = crio_tests::cleanup::processes_with_cwd_under(
        &daemon.dirs.runroot.join("bundles").join(&pod_id),
    );
    assert_eq!(shims.len(), 1, "the pod's shim: {shims:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(shims[0]),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9 the shim");

    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = cri.container_status(&id).await.expect("status");
        if status.state == protocols::cri::ContainerState::ContainerExited as i32 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never reported exited"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        task_processes(&id),
        Vec::<i32>::new(),
        "the container's processes"
    );
    let pause_deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !task_processes(&pod_id).is_empty() {
        assert!(
            std::time::Instant::now() < pause_deadline,
            "pause outlived its shim"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = cri.pod_status(&pod_id).await;
    assert_eq!(
        status.state,
        protocols::cri::PodSandboxState::SandboxNotready as i32
    );
    let left: Vec<_> = shim_sockets()
        .intersection(&ours.iter().cloned().collect())
        .cloned()
        .collect();
    assert!(
        left.is_empty(),
        "the dead shim's socket is removed: {left:?}; daemon log:\n{}",
        daemon.log()
    );
}

/// runc's containers whose bundle is under `dir` (any namespace of runc's root).
fn runc_containers_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for root in ["/run/runc/k8s.io", "/run/runc"] {
        let Ok(o) = std::process::Command::new("runc")
            .args(["--root", root, "list", "--format", "json"])
            .output()
        else {
            continue;
        };
        let list: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap_or_default();
        for c in list {
            if c["bundle"]
                .as_str()
                .is_some_and(|b| Path::new(b).starts_with(dir))
            {
                out.push(format!("{} ({})", c["id"], c["status"]));
            }
        }
    }
    out
}

/// What a crash may leave: processes working in the daemon's dirs (shims, `runc
/// init`), runc containers of its bundles, mounts under its dirs, bundles and
/// container storage, pinned namespaces.
fn leftovers(daemon: &Daemon) -> Vec<String> {
    let mut found = Vec::new();
    for pid in crio_tests::cleanup::processes_with_cwd_under(&daemon.dirs.runroot) {
        let cmd = std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
            .unwrap_or_default()
            .replace('\0', " ");
        found.push(format!("process {pid}: {cmd}"));
    }
    found.extend(
        runc_containers_under(&daemon.dirs.runroot)
            .into_iter()
            .map(|c| format!("runc container {c}")),
    );
    for m in crio_tests::cleanup::mounts_under(&daemon.dirs.base) {
        // The pause rootfs is the daemon's own, not a pod's.
        found.push(format!("mount {}", m.display()));
    }
    for dir in [
        daemon.dirs.runroot.join("bundles"),
        daemon.dirs.root.join("containers"),
        daemon.dirs.runroot.join("netns"),
        daemon.dirs.runroot.join("utsns"),
        daemon.dirs.runroot.join("ipcns"),
    ] {
        for e in std::fs::read_dir(&dir)
            .map(|d| d.flatten().collect::<Vec<_>>())
            .unwrap_or_default()
        {
            found.push(format!("left in {}: {:?}", dir.display(), e.file_name()));
        }
    }
    found
}

/// Stops and removes every pod, as the kubelet does with pods it does not expect,
/// then checks that nothing is left (a stopped shim finishes its replies first, so
/// it gets a moment to exit).
async fn remove_every_pod_and_check(
    cri: &mut crio_tests::cri::CriClient,
    daemon: &Daemon,
    what: &str,
) {
    for p in cri.pods().await {
        cri.runtime
            .stop_pod_sandbox(protocols::cri::StopPodSandboxRequest {
                pod_sandbox_id: p.id.clone(),
            })
            .await
            .unwrap_or_else(|e| panic!("{what}: StopPodSandbox: {e}"));
        cri.runtime
            .remove_pod_sandbox(protocols::cri::RemovePodSandboxRequest {
                pod_sandbox_id: p.id.clone(),
            })
            .await
            .unwrap_or_else(|e| panic!("{what}: RemovePodSandbox: {e}"));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut left = leftovers(daemon);
    while !left.is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = leftovers(daemon);
    }
    assert!(
        left.is_empty(),
        "{what}: left behind:\n{}\n{}",
        left.join("\n"),
        daemon.log()
    );
}

/// The daemon is killed at each step of RunPodSandbox and CreateContainer in turn
/// (failpoints, and mid-Create for the requests in flight). Restarted, then the
/// kubelet's cleanup (stop and remove every pod): nothing is left.
#[tokio::test(flavor = "multi_thread")]
async fn a_crash_at_any_step_of_a_pod_start_leaves_nothing_after_restart() {
    let registry = Registry::with_test_images();
    let image = registry.reference(TestImage::Busybox);
    for point in crio_core::failpoint::POINTS {
        let mut daemon = Daemon::builder()
            .registries_conf(&registry.insecure_conf())
            .env(crio_core::failpoint::ENV, point)
            .start();
        let mut cri = daemon.client().await;
        cri.pull(&image, None).await.expect("pull");
        // The pause points are reached by a pod that has a pause process: one
        // sharing its PID namespace (a kubelet-shaped pod runs none on runc).
        let pod = if point.contains("pause") {
            crio_tests::pods::shared_pid(pod_config("crash", &daemon.dirs.log_dir))
        } else {
            pod_config("crash", &daemon.dirs.log_dir)
        };
        let in_create = point.starts_with("create_container");
        let ran = cri.run_pod(&pod, "runc").await;
        if in_create {
            let pod_id = ran.unwrap_or_else(|e| panic!("{point}: RunPodSandbox: {e}"));
            let config = container_config("app", &image, "sleep 3600");
            let created = cri.create_container(&pod_id, &config, &pod).await;
            // Killed while the shim's Create is in flight, the daemon may still
            // answer first on a fast run: it dies either way.
            if !point.ends_with(".creating") {
                created.expect_err("the daemon dies creating the container");
            }
        } else if !point.ends_with(".creating_pause") {
            ran.expect_err("the daemon dies starting the pod");
        }
        assert!(
            daemon.wait_exit(Duration::from_secs(10)).is_some(),
            "{point}: the daemon died at the failpoint"
        );
        drop(cri);
        daemon.remove_env(crio_core::failpoint::ENV);
        daemon.restart();
        let mut cri = daemon.client().await;
        // The kubelet's view after the restart: stop and remove every pod.
        remove_every_pod_and_check(&mut cri, &daemon, point).await;
        // And a pod still runs.
        let pod = pod_config("after", &daemon.dirs.log_dir);
        let pod_id = cri
            .run_pod(&pod, "runc")
            .await
            .expect("a pod after the crash");
        let config = container_config("app", &image, "true");
        cri.create_container(&pod_id, &config, &pod)
            .await
            .unwrap_or_else(|e| panic!("{point}: {e}"));
    }
}

/// cgroups the daemon's tasks left (`crio-<id>` under the default parent).
fn task_cgroups() -> std::collections::BTreeSet<String> {
    std::fs::read_dir("/sys/fs/cgroup/pids/crio")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.starts_with("crio-"))
                .collect()
        })
        .unwrap_or_default()
}

/// Pods started `n` at a time on a real bridge, each with a container, then
/// stopped and removed: every cycle ends with no shim, mount, pinned namespace, IP
/// or cgroup left.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_pod_cycles_leak_nothing() {
    let net = crio_tests::network::TestNetwork::new(false);
    let (_registry, daemon, cri, image) = setup().await;
    net.install(
        &daemon.dirs.network_dir,
        &net.conflist("1.0.0", vec![net.bridge_plugin()]),
    );
    let cgroups_before = task_cgroups();
    for cycle in 0..2 {
        let mut started = Vec::new();
        for i in 0..20 {
            let mut cri = cri.clone();
            let image = image.clone();
            let log_dir = daemon.dirs.log_dir.clone();
            started.push(tokio::spawn(async move {
                let pod = pod_config(&format!("load-{cycle}-{i}"), &log_dir);
                let pod_id = cri.run_pod(&pod, "runc").await?;
                let config = container_config("app", &image, "sleep 3600");
                let id = cri.create_container(&pod_id, &config, &pod).await?;
                cri.start_container(&id).await?;
                Ok::<String, tonic::Status>(pod_id)
            }));
        }
        let mut pods = Vec::new();
        for s in started {
            pods.push(s.await.expect("task").expect("a pod of the load"));
        }
        assert_eq!(net.allocated_ips().len(), 20, "cycle {cycle}");
        let mut removed = Vec::new();
        for pod_id in pods {
            let mut cri = cri.clone();
            removed.push(tokio::spawn(async move {
                cri.runtime
                    .stop_pod_sandbox(protocols::cri::StopPodSandboxRequest {
                        pod_sandbox_id: pod_id.clone(),
                    })
                    .await?;
                cri.runtime
                    .remove_pod_sandbox(protocols::cri::RemovePodSandboxRequest {
                        pod_sandbox_id: pod_id,
                    })
                    .await
            }));
        }
        for r in removed {
            r.await.expect("task").expect("remove");
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut left = leftovers(&daemon);
        while !left.is_empty() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            left = leftovers(&daemon);
        }
        assert!(left.is_empty(), "cycle {cycle}: {left:#?}");
        assert!(net.allocated_ips().is_empty(), "cycle {cycle}: IPs kept");
        let extra: Vec<_> = task_cgroups()
            .difference(&cgroups_before)
            .cloned()
            .collect();
        assert!(extra.is_empty(), "cycle {cycle}: cgroups left {extra:?}");
    }
}

/// The probe's crash: ten pods started at once on a real bridge, the daemon killed
/// 55 ms in, restarted, its NotReady pods stopped and removed: nothing is left.
#[tokio::test(flavor = "multi_thread")]
async fn a_crash_among_concurrent_pod_starts_leaks_nothing() {
    let net = crio_tests::network::TestNetwork::new(false);
    let registry = Registry::with_test_images();
    let mut daemon = Daemon::builder()
        .registries_conf(&registry.insecure_conf())
        .start();
    net.install(
        &daemon.dirs.network_dir,
        &net.conflist("1.0.0", vec![net.bridge_plugin()]),
    );
    for trial in 0..3 {
        let cri = daemon.client().await;
        let mut started = Vec::new();
        for i in 0..10 {
            let mut cri = cri.clone();
            let log_dir = daemon.dirs.log_dir.clone();
            started.push(tokio::spawn(async move {
                let pod = pod_config(&format!("crashload-{trial}-{i}"), &log_dir);
                let _ = cri.run_pod(&pod, "runc").await;
            }));
        }
        tokio::time::sleep(Duration::from_millis(55)).await;
        daemon.kill9();
        for s in started {
            let _ = s.await;
        }
        drop(cri);
        daemon.restart();
        let mut cri = daemon.client().await;
        remove_every_pod_and_check(&mut cri, &daemon, &format!("trial {trial}")).await;
        assert!(net.allocated_ips().is_empty(), "trial {trial}: IPs kept");
    }
}

/// One raw HTTP/2 frame.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK literal without indexing (short names and values only).
fn hpack_literal(out: &mut Vec<u8>, name: &str, value: &str) {
    assert!(name.len() < 127 && value.len() < 127);
    out.push(0);
    out.push(name.len() as u8);
    out.extend_from_slice(name.as_bytes());
    out.push(value.len() as u8);
    out.extend_from_slice(value.as_bytes());
}

/// A gRPC `Version` call on the CRI socket, written byte by byte as a client does
/// that names the socket in `:authority`; what the stream ended with: the reply's
/// bytes, or the RST_STREAM error code.
async fn version_call_with_authority(socket: &Path, authority: &str) -> Result<Vec<u8>, u32> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::UnixStream::connect(socket)
        .await
        .expect("connect");
    let mut block = Vec::new();
    for (n, v) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/runtime.v1.RuntimeService/Version"),
        (":authority", authority),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ] {
        hpack_literal(&mut block, n, v);
    }
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(h2_frame(0x4, 0, 0, &[]));
    out.extend(h2_frame(0x1, 0x4, 1, &block));
    out.extend(h2_frame(0x0, 0x1, 1, &[0, 0, 0, 0, 0]));
    conn.write_all(&out).await.expect("write");
    let mut data = Vec::new();
    let mut buf = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        while buf.len() >= 9 {
            let len = usize::from(buf[0]) << 16 | usize::from(buf[1]) << 8 | usize::from(buf[2]);
            if buf.len() < 9 + len {
                break;
            }
            let frame: Vec<u8> = buf.drain(..9 + len).collect();
            let (kind, flags) = (frame[3], frame[4]);
            let stream = u32::from_be_bytes([frame[5], frame[6], frame[7], frame[8]]);
            match (kind, stream) {
                (0x4, 0) if flags & 1 == 0 => {
                    conn.write_all(&h2_frame(0x4, 1, 0, &[]))
                        .await
                        .expect("ack");
                }
                (0x3, 1) => {
                    return Err(u32::from_be_bytes([
                        frame[9], frame[10], frame[11], frame[12],
                    ]))
                }
                (0x0, 1) => data.extend_from_slice(&frame[9..]),
                (0x1, 1) if flags & 1 != 0 => return Ok(data),
                _ => {}
            }
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, conn.read(&mut chunk))
            .await
            .expect("a reply in time")
            .expect("read");
        assert!(n > 0, "the daemon closed the connection");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// gRPC clients that name the socket in `:authority` (grpc-core since 1.57, which
/// Python's grpcio is, sends it percent-encoded; grpc-java sends the path) are
/// served, as containerd and CRI-O serve them.
#[tokio::test(flavor = "multi_thread")]
async fn any_authority_is_accepted_on_the_socket() {
    let daemon = Daemon::builder().start();
    let socket = daemon.dirs.socket.clone();
    let encoded = socket
        .display()
        .to_string()
        .trim_start_matches('/')
        .replace('/', "%2F");
    for authority in ["localhost", &encoded, &socket.display().to_string()] {
        let reply = version_call_with_authority(&socket, authority)
            .await
            .unwrap_or_else(|code| panic!("{authority:?}: RST_STREAM {code}"));
        assert!(
            reply.windows(7).any(|w| w == b"crio-rs"),
            "{authority:?}: a Version reply: {reply:?}"
        );
    }
    // The inspect endpoints (HTTP/1.1) on the same socket still answer.
    daemon.status_info();
}
