//! The pod and container lifecycle through real shims: our runc shim and Debian's
//! containerd `containerd-shim-runc-v2` as a drop-in handler, each driving real runc.
//! Every scenario runs once per handler.

use std::time::Duration;

use crio_tests::pods::{
    container_config, has_pause, host_network, pod_config, shared_pid, wait_for_file_text,
};
use crio_tests::{Daemon, Registry, TestImage};
use protocols::cri::{
    ContainerFilter, ContainerState, ContainerStateValue, ExecSyncRequest, ImageSpec,
    ListContainersRequest, ListPodSandboxRequest, Mount, PodSandboxFilter, PodSandboxState,
    PodSandboxStateValue, PodSandboxStatusRequest, RemoveContainerRequest, RemoveImageRequest,
    RemovePodSandboxRequest, ReopenContainerLogRequest, Signal, StopContainerRequest,
    StopPodSandboxRequest,
};
use tonic::Code;

fn daemon(registry: &Registry) -> Daemon {
    Daemon::builder()
        .dropin("10-go-shim.conf", crio_tests::GO_SHIM_DROPIN)
        .dropin("10-kata.conf", &crio_tests::kata::handler_dropin())
        .registries_conf(&registry.insecure_conf())
        .start()
}

async fn full_lifecycle(handler: &str) {
    let registry = Registry::with_test_images();
    let daemon = daemon(&registry);
    let mut cri = daemon.client().await;
    let image = registry.reference(TestImage::Busybox);
    cri.pull(&image, None).await.expect("pull busybox");

    let pod = pod_config(&format!("life-{handler}"), &daemon.dirs.log_dir);
    let pod_id = cri.run_pod(&pod, handler).await.expect("RunPodSandbox");
    let status = cri.pod_status(&pod_id).await;
    assert_eq!(status.state, PodSandboxState::SandboxReady as i32);
    assert_eq!(status.runtime_handler, handler);
    assert_eq!(
        status.labels.get("app").map(String::as_str),
        pod.labels.get("app").map(String::as_str)
    );

    // A long-running container writing to both streams.
    let config = container_config(
        "app",
        &image,
        "echo hello; echo oops >&2; trap 'exit 0' TERM; while true; do sleep 1; done",
    );
    let id = cri
        .create_container(&pod_id, &config, &pod)
        .await
        .expect("CreateContainer");
    let created = cri.container_status(&id).await.expect("status");
    assert_eq!(created.state, ContainerState::ContainerCreated as i32);
    cri.start_container(&id).await.expect("StartContainer");
    let running = cri.container_status(&id).await.expect("status");
    assert_eq!(running.state, ContainerState::ContainerRunning as i32);
    assert!(running.started_at >= running.created_at);
    assert_eq!(
        running.image.as_ref().map(|i| i.image.as_str()),
        Some(image.as_str())
    );

    let log_path = std::path::PathBuf::from(&running.log_path);
    let log = wait_for_file_text(&log_path, "stderr F oops", Duration::from_secs(10)).await;
    assert!(log.contains(" stdout F hello\n"), "{log}");

    // ExecSync: output, exit code, a deadline.
    let exec = cri
        .exec(&id, &["sh", "-c", "echo out; echo err >&2; exit 3"])
        .await;
    assert_eq!(exec.stdout, b"out\n");
    assert_eq!(exec.stderr, b"err\n");
    assert_eq!(exec.exit_code, 3);
    let slow = cri
        .runtime
        .exec_sync(ExecSyncRequest {
            container_id: id.clone(),
            cmd: vec!["sleep".into(), "30".into()],
            timeout: 1,
        })
        .await
        .expect_err("a 30 s command with a 1 s timeout");
    assert_eq!(slow.code(), Code::DeadlineExceeded, "{slow:?}");

    // Kubelet log rotation: rename, reopen, nothing lost.
    let rotated = log_path.with_extension("log.1");
    std::fs::rename(&log_path, &rotated).expect("rotate");
    cri.runtime
        .reopen_container_log(ReopenContainerLogRequest {
            container_id: id.clone(),
        })
        .await
        .expect("ReopenContainerLog");
    assert!(log_path.exists(), "a new log file is opened at the path");

    // Stop with a grace period: the trap makes it exit 0 on SIGTERM.
    cri.runtime
        .stop_container(StopContainerRequest {
            container_id: id.clone(),
            timeout: 10,
        })
        .await
        .expect("StopContainer");
    let stopped = cri.container_status(&id).await.expect("status");
    assert_eq!(stopped.state, ContainerState::ContainerExited as i32);
    assert_eq!(stopped.exit_code, 0);
    assert_eq!(stopped.reason, "Completed");
    // Idempotent.
    cri.runtime
        .stop_container(StopContainerRequest {
            container_id: id.clone(),
            timeout: 10,
        })
        .await
        .expect("StopContainer again");

    // A container that fails by itself, and one a signal ends.
    let failing = cri
        .create_container(&pod_id, &container_config("fail", &image, "exit 7"), &pod)
        .await
        .expect("create fail");
    cri.start_container(&failing).await.expect("start fail");
    let exited = cri.wait_exited(&failing, Duration::from_secs(10)).await;
    assert_eq!(exited.exit_code, 7);
    assert_eq!(exited.reason, "Error");
    assert!(exited.finished_at >= exited.started_at);
    let stubborn = cri
        .create_container(
            &pod_id,
            &container_config("stubborn", &image, "while true; do sleep 1; done"),
            &pod,
        )
        .await
        .expect("create stubborn");
    cri.start_container(&stubborn)
        .await
        .expect("start stubborn");
    // PID 1 ignores SIGTERM without a handler: SIGKILL after the grace period.
    cri.runtime
        .stop_container(StopContainerRequest {
            container_id: stubborn.clone(),
            timeout: 1,
        })
        .await
        .expect("StopContainer stubborn");
    let killed = cri.container_status(&stubborn).await.expect("status");
    assert_eq!(killed.exit_code, 137);

    let listed = cri.containers().await;
    assert_eq!(listed.len(), 3);
    // Filters: by state, by pod, by id prefix, by labels.
    let filtered = |filter: ContainerFilter| {
        let mut cri = cri.clone();
        async move {
            let mut ids: Vec<String> = cri
                .runtime
                .list_containers(ListContainersRequest {
                    filter: Some(filter),
                })
                .await
                .expect("ListContainers")
                .into_inner()
                .containers
                .into_iter()
                .map(|c| c.id)
                .collect();
            ids.sort();
            ids
        }
    };
    let mut exited_ids = vec![id.clone(), failing.clone(), stubborn.clone()];
    exited_ids.sort();
    let state = |s: ContainerState| Some(ContainerStateValue { state: s as i32 });
    assert_eq!(
        filtered(ContainerFilter {
            state: state(ContainerState::ContainerExited),
            ..Default::default()
        })
        .await,
        exited_ids
    );
    assert!(filtered(ContainerFilter {
        state: state(ContainerState::ContainerRunning),
        ..Default::default()
    })
    .await
    .is_empty());
    assert_eq!(
        filtered(ContainerFilter {
            id: failing[..12].to_string(),
            pod_sandbox_id: pod_id.clone(),
            ..Default::default()
        })
        .await,
        std::slice::from_ref(&failing)
    );
    assert!(filtered(ContainerFilter {
        pod_sandbox_id: "0000".into(),
        ..Default::default()
    })
    .await
    .is_empty());
    assert!(filtered(ContainerFilter {
        label_selector: [("app".to_string(), "nope".to_string())].into(),
        ..Default::default()
    })
    .await
    .is_empty());
    let pods_by = |filter: PodSandboxFilter| {
        let mut cri = cri.clone();
        async move {
            cri.runtime
                .list_pod_sandbox(ListPodSandboxRequest {
                    filter: Some(filter),
                })
                .await
                .expect("ListPodSandbox")
                .into_inner()
                .items
                .len()
        }
    };
    let app = pod.labels.clone();
    assert_eq!(
        pods_by(PodSandboxFilter {
            label_selector: app.into_iter().collect(),
            state: Some(PodSandboxStateValue {
                state: PodSandboxState::SandboxReady as i32,
            }),
            id: pod_id[..8].to_string(),
        })
        .await,
        1
    );
    assert_eq!(
        pods_by(PodSandboxFilter {
            state: Some(PodSandboxStateValue {
                state: PodSandboxState::SandboxNotready as i32,
            }),
            ..Default::default()
        })
        .await,
        0
    );
    // The shim's own log reaches the daemon's (the `<bundle>/log` FIFO is drained).
    assert!(
        daemon.log().contains(" shim: "),
        "no shim log line in the daemon log"
    );

    cri.runtime
        .remove_container(RemoveContainerRequest {
            container_id: failing.clone(),
        })
        .await
        .expect("RemoveContainer");
    let gone = cri.container_status(&failing).await.expect_err("removed");
    assert_eq!(gone.code(), Code::NotFound);
    cri.runtime
        .remove_container(RemoveContainerRequest {
            container_id: failing.clone(),
        })
        .await
        .expect("RemoveContainer is idempotent");

    cri.runtime
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod_id.clone(),
        })
        .await
        .expect("StopPodSandbox");
    let pods = cri.pods().await;
    assert_eq!(pods.len(), 1);
    assert_eq!(pods[0].state, PodSandboxState::SandboxNotready as i32);
    for _ in 0..2 {
        cri.runtime
            .remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: pod_id.clone(),
            })
            .await
            .expect("RemovePodSandbox (twice: idempotent)");
    }
    let pods = cri.pods().await;
    assert!(pods.is_empty());
    let containers = cri.containers().await;
    assert!(containers.is_empty(), "{containers:?}");
    // Nothing left behind: no bundle, no rootfs mount.
    let bundles = daemon.dirs.runroot.join("bundles");
    let left: Vec<_> = std::fs::read_dir(&bundles)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "bundles left: {left:?}");
    assert!(crio_tests::cleanup::mounts_under(&daemon.dirs.base).is_empty());
}

async fn host_network_pod(handler: &str) {
    let registry = Registry::with_test_images();
    let daemon = daemon(&registry);
    let mut cri = daemon.client().await;
    let image = registry.reference(TestImage::Busybox);
    cri.pull(&image, None).await.expect("pull");
    let pod = host_network(pod_config(
        &format!("hostnet-{handler}"),
        &daemon.dirs.log_dir,
    ));
    let pod_id = cri.run_pod(&pod, handler).await.expect("RunPodSandbox");
    let id = cri
        .create_container(&pod_id, &container_config("c", &image, "sleep 100"), &pod)
        .await
        .expect("create");
    cri.start_container(&id).await.expect("start");
    let exec = cri.exec(&id, &["hostname"]).await;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    assert_eq!(String::from_utf8_lossy(&exec.stdout).trim(), host.trim());
    let links = cri.exec(&id, &["cat", "/proc/net/dev"]).await;
    let host_links = std::fs::read_to_string("/proc/net/dev").expect("/proc/net/dev");
    assert_eq!(
        String::from_utf8_lossy(&links.stdout).lines().count(),
        host_links.lines().count(),
        "a host-network container sees the host's interfaces"
    );
}

async fn errors_leave_nothing(handler: &str) {
    let registry = Registry::with_test_images();
    let daemon = daemon(&registry);
    let mut cri = daemon.client().await;
    let image = registry.reference(TestImage::Busybox);
    cri.pull(&image, None).await.expect("pull");
    let pod = pod_config(&format!("err-{handler}"), &daemon.dirs.log_dir);

    let unknown = cri
        .run_pod(&pod, "no-such-handler")
        .await
        .expect_err("unknown handler");
    assert_eq!(unknown.code(), Code::InvalidArgument);
    assert!(unknown.message().contains("no-such-handler"), "{unknown:?}");

    let pod_id = cri.run_pod(&pod, handler).await.expect("RunPodSandbox");
    let dup = cri
        .run_pod(&pod, handler)
        .await
        .expect_err("same name twice");
    assert_eq!(dup.code(), Code::AlreadyExists);
    assert!(dup.message().contains(&pod_id), "names the holder: {dup:?}");

    let missing = cri
        .create_container(
            &pod_id,
            &container_config("m", "no-such-image:1", "true"),
            &pod,
        )
        .await
        .expect_err("missing image");
    assert_eq!(missing.code(), Code::NotFound);
    let no_pod = cri
        .create_container("0000", &container_config("m", &image, "true"), &pod)
        .await
        .expect_err("unknown pod");
    assert_eq!(no_pod.code(), Code::NotFound);

    let c = cri
        .create_container(&pod_id, &container_config("same", &image, "true"), &pod)
        .await
        .expect("create");
    let dup = cri
        .create_container(&pod_id, &container_config("same", &image, "true"), &pod)
        .await
        .expect_err("same container name twice");
    assert_eq!(dup.code(), Code::AlreadyExists);
    assert!(dup.message().contains(&c), "{dup:?}");

    let bad = cri.container_status("").await.expect_err("empty id");
    assert_eq!(bad.code(), Code::InvalidArgument);
    let status = cri
        .runtime
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: "ffff".into(),
            verbose: false,
        })
        .await
        .expect_err("unknown pod");
    assert_eq!(status.code(), Code::NotFound);
    // Stopping and removing unknown things succeeds, as the kubelet expects.
    cri.runtime
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: "ffff".into(),
        })
        .await
        .expect("stop unknown pod");
    cri.runtime
        .remove_container(RemoveContainerRequest {
            container_id: "ffff".into(),
        })
        .await
        .expect("remove unknown container");
}

/// A pod sharing one PID namespace: pause is PID 1 and sees the containers.
async fn shared_pid_namespace(handler: &str) {
    let registry = Registry::with_test_images();
    let daemon = daemon(&registry);
    let mut cri = daemon.client().await;
    let image = registry.reference(TestImage::Busybox);
    cri.pull(&image, None).await.expect("pull");
    let pod = shared_pid(pod_config(
        &format!("pidns-{handler}"),
        &daemon.dirs.log_dir,
    ));
    let pod_id = cri.run_pod(&pod, handler).await.expect("RunPodSandbox");
    // The subshell exits at once: its `sleep 1` is orphaned to the pod's PID 1.
    let id = cri
        .create_container(
            &pod_id,
            &container_config("c", &image, "(sleep 1 &); exec sleep 100"),
            &pod,
        )
        .await
        .expect("create");
    cri.start_container(&id).await.expect("start");
    let out = cri.exec(&id, &["cat", "/proc/1/cmdline"]).await;
    assert_eq!(out.stdout, b"/pause\0", "pause is PID 1 of the pod");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stats = cri
        .runtime
        .exec_sync(ExecSyncRequest {
            container_id: id,
            cmd: vec![
                "sh".into(),
                "-c".into(),
                "for f in /proc/[0-9]*/stat; do cat $f; echo; done".into(),
            ],
            timeout: 10,
        })
        .await
        .expect("ExecSync")
        .into_inner();
    let text = String::from_utf8_lossy(&stats.stdout);
    let zombies: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('Z'))
        })
        .collect();
    assert!(zombies.is_empty(), "pause reaps orphans: {zombies:?}");

    // Each new container gets a higher PID in the pod's namespace: a runtime that
    // looks its namespaced PID up in the host's /proc (libcontainer 0.7.0's cgroup v1
    // mount does) fails once that PID is not a host process too. Each container
    // sees its own cgroup, read-only.
    for i in 0..12 {
        let cid = cri
            .create_container(
                &pod_id,
                &container_config(
                    &format!("one-shot-{i}"),
                    &image,
                    "test -r /sys/fs/cgroup/memory/memory.limit_in_bytes || echo unreadable; \
                     mkdir /sys/fs/cgroup/memory/x && echo writable; \
                     exit 0",
                ),
                &pod,
            )
            .await
            .unwrap_or_else(|e| panic!("create container {i} in a shared PID namespace: {e}"));
        cri.start_container(&cid).await.expect("start one-shot");
        let status = cri.wait_exited(&cid, Duration::from_secs(20)).await;
        let log = std::fs::read_to_string(&status.log_path).unwrap_or_default();
        assert_eq!(status.exit_code, 0, "container {i}: {status:?}");
        assert!(
            !log.contains("unreadable") && !log.contains("writable"),
            "container {i} sees its cgroups read-only: {log}"
        );
        cri.runtime
            .remove_container(RemoveContainerRequest { container_id: cid })
            .await
            .expect("remove one-shot");
    }
}

/// The pod's network namespace is pinned under the run root: containers join it, it
/// outlives the pause process, and RemovePodSandbox unpins it.
async fn pod_namespaces_are_pinned(handler: &str) {
    use std::os::unix::fs::MetadataExt;
    let registry = Registry::with_test_images();
    let daemon = daemon(&registry);
    let mut cri = daemon.client().await;
    let image = registry.reference(TestImage::Busybox);
    cri.pull(&image, None).await.expect("pull");
    let pod = pod_config(&format!("netns-{handler}"), &daemon.dirs.log_dir);
    let pod_id = cri.run_pod(&pod, handler).await.expect("RunPodSandbox");
    let pins: Vec<(&str, std::path::PathBuf, u64)> =
        [("net", "netns"), ("uts", "utsns"), ("ipc", "ipcns")]
            .into_iter()
            .map(|(kind, dir)| {
                let pinned = daemon.dirs.runroot.join(dir).join(&pod_id);
                let inode = std::fs::metadata(&pinned)
                    .unwrap_or_else(|e| panic!("{}: {e}", pinned.display()))
                    .ino();
                (kind, pinned, inode)
            })
            .collect();
    let id = cri
        .create_container(&pod_id, &container_config("c", &image, "sleep 100"), &pod)
        .await
        .expect("create");
    cri.start_container(&id).await.expect("start");
    for (kind, _, inode) in &pins {
        let out = cri
            .exec(&id, &["ls", "-l", &format!("/proc/self/ns/{kind}")])
            .await;
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&format!("{kind}:[{inode}]")),
            "the container is in the pinned {kind} namespace {inode}: {text}"
        );
    }
    let hostname = cri.exec(&id, &["hostname"]).await;
    assert_eq!(
        String::from_utf8_lossy(&hostname.stdout).trim(),
        pod.hostname,
        "the pod's hostname is set in its pinned UTS namespace"
    );
    let procs = format!("/sys/fs/cgroup/pids/crio/crio-{pod_id}/cgroup.procs");
    if has_pause(handler) {
        // The pause process dies; the namespaces stay.
        let pause: i32 = std::fs::read_to_string(&procs)
            .unwrap_or_else(|e| panic!("{procs}: {e}"))
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .expect("pause pid");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pause),
            nix::sys::signal::Signal::SIGKILL,
        )
        .expect("kill pause");
    } else {
        // No pause process at all; the container goes, the namespaces stay.
        assert!(
            !std::path::Path::new(&procs).exists(),
            "{handler}: a pod sharing no PID namespace runs no pause process"
        );
        cri.runtime
            .remove_container(RemoveContainerRequest {
                container_id: id.clone(),
            })
            .await
            .expect("RemoveContainer");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (_, pinned, inode) in &pins {
        assert_eq!(
            std::fs::metadata(pinned).expect("still pinned").ino(),
            *inode
        );
    }
    assert_eq!(
        cri.pod_status(&pod_id).await.state,
        if has_pause(handler) {
            PodSandboxState::SandboxNotready
        } else {
            PodSandboxState::SandboxReady
        } as i32,
        "a pod is ready until its pause process dies, or without one until it is stopped"
    );
    cri.runtime
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod_id,
        })
        .await
        .expect("RemovePodSandbox");
    for (_, pinned, _) in &pins {
        assert!(!pinned.exists(), "{} unpinned on removal", pinned.display());
    }
}

/// A namespace pinned by a daemon that died before recording its pod is unpinned
/// at the next start.
#[tokio::test(flavor = "multi_thread")]
async fn leaked_network_namespaces_are_unpinned_at_start() {
    let mut daemon = Daemon::builder().start();
    daemon.stop();
    use crio_core::network::pinned_ns::{create_pinned, is_pinned, PodNamespace};
    let leaked: Vec<_> = PodNamespace::ALL
        .into_iter()
        .map(|kind| {
            let path = daemon.dirs.runroot.join(kind.dir_name()).join("leaked");
            create_pinned(kind, &path, "").expect("pin");
            assert!(is_pinned(&path));
            path
        })
        .collect();
    daemon.restart();
    for path in leaked {
        assert!(
            !path.exists(),
            "the leaked namespace {} is unpinned and removed",
            path.display()
        );
    }
}

/// Kill -9 the daemon with pods running: containers keep running, an exit that
/// happens while it is down is reported after the restart, output written meanwhile
/// reaches the log, and new operations work.
async fn restart_keeps_pods(handler: &str) {
    let registry = Registry::with_test_images();
    let mut daemon = daemon(&registry);
    let mut cri = daemon.client().await;
    let image = registry.reference(TestImage::Busybox);
    cri.pull(&image, None).await.expect("pull");
    let pod = pod_config(&format!("restart-{handler}"), &daemon.dirs.log_dir);
    let pod_id = cri.run_pod(&pod, handler).await.expect("RunPodSandbox");
    let ticker = cri
        .create_container(
            &pod_id,
            &container_config(
                "ticker",
                &image,
                "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done",
            ),
            &pod,
        )
        .await
        .expect("create ticker");
    cri.start_container(&ticker).await.expect("start ticker");
    let short = cri
        .create_container(
            &pod_id,
            &container_config("short", &image, "sleep 2; exit 5"),
            &pod,
        )
        .await
        .expect("create short");
    cri.start_container(&short).await.expect("start short");
    let log = cri
        .container_status(&ticker)
        .await
        .expect("status")
        .log_path;
    let log = std::path::PathBuf::from(log);
    wait_for_file_text(&log, "tick 3\n", Duration::from_secs(10)).await;

    daemon.kill9();
    tokio::time::sleep(Duration::from_secs(3)).await;
    daemon.restart();
    let mut cri = daemon.client().await;

    let short_status = cri.wait_exited(&short, Duration::from_secs(10)).await;
    assert_eq!(
        short_status.exit_code, 5,
        "the exit while the daemon was down"
    );
    let ticker_status = cri.container_status(&ticker).await.expect("status");
    assert_eq!(ticker_status.state, ContainerState::ContainerRunning as i32);
    // Ticks written while the daemon was down reach the log, none missing.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let text = std::fs::read_to_string(&log).expect("log");
    let ticks: Vec<u64> = text
        .lines()
        .filter_map(|l| {
            l.rsplit_once("stdout F tick ")
                .and_then(|(_, n)| n.parse().ok())
        })
        .collect();
    // At ~10 a second (fewer in an emulated VM), 3 s down and 1 s after.
    assert!(ticks.len() > 25, "ticks kept coming: {}", ticks.len());
    for pair in ticks.windows(2) {
        assert_eq!(pair[1], pair[0] + 1, "a tick is missing from the log");
    }
    let exec = cri
        .runtime
        .exec_sync(ExecSyncRequest {
            container_id: ticker.clone(),
            cmd: vec!["echo".into(), "alive".into()],
            timeout: 10,
        })
        .await
        .expect("ExecSync after restart")
        .into_inner();
    assert_eq!(exec.stdout, b"alive\n");
    cri.runtime
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod_id,
        })
        .await
        .expect("RemovePodSandbox after restart");
    assert!(crio_tests::cleanup::mounts_under(&daemon.dirs.base).is_empty());
}

/// SIGKILL the pod's shim: its containers are reported exited, the pod not ready,
/// and removing the pod cleans everything.
async fn shim_killed(handler: &str) {
    let registry = Registry::with_test_images();
    let daemon = daemon(&registry);
    let mut cri = daemon.client().await;
    let image = registry.reference(TestImage::Busybox);
    cri.pull(&image, None).await.expect("pull");
    let pod = pod_config(&format!("shimkill-{handler}"), &daemon.dirs.log_dir);
    let pod_id = cri.run_pod(&pod, handler).await.expect("RunPodSandbox");
    let id = cri
        .create_container(&pod_id, &container_config("c", &image, "sleep 1000"), &pod)
        .await
        .expect("create");
    cri.start_container(&id).await.expect("start");
    // The pod's shim server is the process working in the pod's bundle (with a
    // VM pod, beside its qemu).
    let bundle = daemon.dirs.runroot.join("bundles").join(&pod_id);
    let shims: Vec<i32> = crio_tests::cleanup::processes_with_cwd_under(&bundle)
        .into_iter()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| c.contains("containerd-shim"))
        })
        .collect();
    assert_eq!(shims.len(), 1, "one shim serves the pod: {shims:?}");
    let pid = shims[0];
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill shim");
    let status = cri.wait_exited(&id, Duration::from_secs(20)).await;
    assert_ne!(status.exit_code, 0);
    let pod_status = cri.pod_status(&pod_id).await;
    assert_eq!(pod_status.state, PodSandboxState::SandboxNotready as i32);
    cri.runtime
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod_id.clone(),
        })
        .await
        .expect("RemovePodSandbox");
    assert!(crio_tests::cleanup::mounts_under(&daemon.dirs.base).is_empty());
    if handler == "kata" {
        // The VM's directory (the shim's default VM root) and the container
        // mounts in it are gone with the pod.
        let vm_dir = std::path::Path::new("/run/crio-rs-vm").join(&pod_id[..16]);
        assert!(crio_tests::cleanup::mounts_under(&vm_dir).is_empty());
        assert!(!vm_dir.exists(), "{} left", vm_dir.display());
    }
    let left: Vec<String> = crio_tests::cleanup::processes_with_cwd_under(&daemon.dirs.base)
        .iter()
        .map(|p| std::fs::read_to_string(format!("/proc/{p}/cmdline")).unwrap_or_default())
        .collect();
    assert!(
        left.is_empty(),
        "processes left: {left:?}\n{}",
        daemon.log()
    );
}

/// `storage_driver = "vfs"`: a container runs on a private copy of its image's
/// layers, writes to it, and its copy is gone after RemoveContainer.
#[tokio::test(flavor = "multi_thread")]
async fn vfs_driver_runs_containers() {
    let registry = Registry::with_test_images();
    let daemon = Daemon::builder()
        .dropin("10-go-shim.conf", crio_tests::GO_SHIM_DROPIN)
        .dropin("20-vfs.conf", "[crio]\nstorage_driver = \"vfs\"\n")
        .registries_conf(&registry.insecure_conf())
        .start();
    let mut cri = daemon.client().await;
    let image = registry.reference(TestImage::Busybox);
    cri.pull(&image, None).await.expect("pull");
    let pod = pod_config("vfs", &daemon.dirs.log_dir);
    let pod_id = cri.run_pod(&pod, "go").await.expect("RunPodSandbox");
    let id = cri
        .create_container(
            &pod_id,
            &container_config("c", &image, "echo vfs-ok > /tmp/x && cat /tmp/x"),
            &pod,
        )
        .await
        .expect("create");
    cri.start_container(&id).await.expect("start");
    let status = cri.wait_exited(&id, Duration::from_secs(10)).await;
    assert_eq!(status.exit_code, 0);
    let log = std::path::PathBuf::from(&status.log_path);
    wait_for_file_text(&log, "stdout F vfs-ok", Duration::from_secs(5)).await;
    let storage = daemon.dirs.root.join("containers").join(&id);
    assert!(
        storage.join("rootfs/bin/busybox").exists(),
        "a copied rootfs"
    );
    assert!(
        crio_tests::cleanup::mounts_under(&storage).is_empty(),
        "no overlay mount"
    );
    cri.runtime
        .remove_container(RemoveContainerRequest {
            container_id: id.clone(),
        })
        .await
        .expect("RemoveContainer");
    assert!(!storage.exists(), "the copy is removed");
}

/// KEP-4960 stop signals: the container's `stop_signal` is what StopContainer sends
/// and what ContainerStatus reports; without one it is SIGTERM (busybox's image sets
/// none); a value outside the CRI enum is refused and creates nothing.
#[tokio::test(flavor = "multi_thread")]
async fn stop_signal_from_the_container_config() {
    let registry = Registry::with_test_images();
    let daemon = daemon(&registry);
    let mut cri = daemon.client().await;
    let image = registry.reference(TestImage::Busybox);
    cri.pull(&image, None).await.expect("pull");
    let pod = pod_config("stopsig", &daemon.dirs.log_dir);
    let pod_id = cri.run_pod(&pod, "runc").await.expect("RunPodSandbox");

    let plain = cri
        .create_container(&pod_id, &container_config("plain", &image, "true"), &pod)
        .await
        .expect("create plain");
    let status = cri.container_status(&plain).await.expect("status");
    assert_eq!(status.stop_signal, Signal::Sigterm as i32);

    // PID 1 ignores signals it has no handler for: only SIGUSR1 ends this one
    // before the grace period (SIGTERM would leave it to SIGKILL, exit 137).
    let mut config = container_config(
        "usr1",
        &image,
        "trap 'echo got USR1; exit 0' USR1; while true; do sleep 1; done",
    );
    config.stop_signal = Signal::Sigusr1 as i32;
    let id = cri
        .create_container(&pod_id, &config, &pod)
        .await
        .expect("create usr1");
    cri.start_container(&id).await.expect("start");
    let status = cri.container_status(&id).await.expect("status");
    assert_eq!(status.stop_signal, Signal::Sigusr1 as i32);
    let started = std::time::Instant::now();
    cri.runtime
        .stop_container(StopContainerRequest {
            container_id: id.clone(),
            timeout: 20,
        })
        .await
        .expect("StopContainer");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "not the grace period"
    );
    let stopped = cri.container_status(&id).await.expect("status");
    assert_eq!(stopped.exit_code, 0, "{stopped:?}");
    let log = std::path::PathBuf::from(&stopped.log_path);
    wait_for_file_text(&log, "stdout F got USR1", Duration::from_secs(5)).await;

    config.metadata.as_mut().expect("metadata").name = "bad".into();
    config.stop_signal = 99;
    let err = cri
        .create_container(&pod_id, &config, &pod)
        .await
        .expect_err("stop_signal 99");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("stop_signal 99"), "{err:?}");
    assert_eq!(cri.containers().await.len(), 2, "nothing created");
}

/// Image volumes (KEP-4639): `Mount.image` puts a pulled image, merged as overlayfs
/// shows it, read-only at `container_path`, or one path of it (`image_sub_path`);
/// the image is held while the container exists, and the mounts go with it.
#[tokio::test(flavor = "multi_thread")]
async fn image_volumes_mount_an_image_read_only() {
    let registry = Registry::with_test_images();
    let daemon = daemon(&registry);
    let mut cri = daemon.client().await;
    let busybox = registry.reference(TestImage::Busybox);
    cri.pull(&busybox, None).await.expect("pull busybox");
    // The kubelet mounts the image_ref PullImage returned.
    let volume_ref = cri
        .pull(&registry.reference(TestImage::Whiteout), None)
        .await
        .expect("pull whiteout");
    let pod = pod_config("imgvol", &daemon.dirs.log_dir);
    let pod_id = cri.run_pod(&pod, "runc").await.expect("RunPodSandbox");
    let image_mount = |path: &str, sub_path: &str| Mount {
        container_path: path.into(),
        image: Some(ImageSpec {
            image: volume_ref.clone(),
            ..Default::default()
        }),
        image_sub_path: sub_path.into(),
        ..Default::default()
    };

    let mut config = container_config("app", &busybox, "sleep 3600");
    config.mounts = vec![image_mount("/vol", ""), image_mount("/keep", "data/keep")];
    let id = cri
        .create_container(&pod_id, &config, &pod)
        .await
        .expect("CreateContainer with image volumes");
    cri.start_container(&id).await.expect("start");
    let status = cri.container_status(&id).await.expect("status");
    let keep = status
        .mounts
        .iter()
        .find(|m| m.container_path == "/keep")
        .expect("/keep in the status");
    assert_eq!(
        keep.image.as_ref().map(|i| i.image.as_str()),
        Some(volume_ref.as_str())
    );
    assert_eq!(keep.image_sub_path, "data/keep");
    assert!(keep.readonly && keep.host_path.is_empty(), "{keep:?}");
    let sh = |script: &'static str| {
        let mut cri = cri.clone();
        let id = id.clone();
        async move { cri.exec(&id, &["sh", "-c", script]).await }
    };
    let out = sh("cat /vol/data/keep /vol/opaque/new-file /keep").await;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "kept\nfrom the top layer\nkept\n",
        "{out:?}"
    );
    let hidden = sh("test ! -e /vol/data/remove-me && test ! -e /vol/opaque/old-file").await;
    assert_eq!(hidden.exit_code, 0, "whiteouts apply: {hidden:?}");
    let mountinfo = sh("grep ' /vol ' /proc/self/mountinfo").await;
    let line = String::from_utf8_lossy(&mountinfo.stdout).into_owned();
    for option in ["ro", "nosuid", "nodev", "noexec"] {
        assert!(
            line.split_whitespace()
                .nth(5)
                .is_some_and(|o| o.split(',').any(|x| x == option)),
            "{option}: {line}"
        );
    }
    let exec = sh("/vol/bin/busybox true").await;
    assert_ne!(exec.exit_code, 0, "noexec: {exec:?}");
    assert!(
        String::from_utf8_lossy(&exec.stderr).contains("Permission denied"),
        "noexec: {exec:?}"
    );
    let write = sh("touch /vol/new").await;
    assert_ne!(write.exit_code, 0, "read-only");
    assert!(
        String::from_utf8_lossy(&write.stderr).contains("Read-only"),
        "{write:?}"
    );

    // The volume's image is held like the container's own.
    let held = cri
        .image
        .remove_image(RemoveImageRequest {
            image: Some(ImageSpec {
                image: volume_ref.clone(),
                ..Default::default()
            }),
        })
        .await
        .expect_err("an image mounted as a volume");
    assert_eq!(held.code(), Code::FailedPrecondition, "{held:?}");
    assert!(held.message().contains(&id), "{held:?}");

    // Bad image volumes: nothing is created.
    let before = cri.containers().await.len();
    let mut missing_sub = container_config("sub", &busybox, "true");
    missing_sub.mounts = vec![image_mount("/x", "no/such/path")];
    let err = cri
        .create_container(&pod_id, &missing_sub, &pod)
        .await
        .expect_err("missing sub path");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("no/such/path"), "{err:?}");
    let mut not_pulled = container_config("np", &busybox, "true");
    not_pulled.mounts = vec![Mount {
        image: Some(ImageSpec {
            image: format!("{}/test/none:1", registry.addr),
            ..Default::default()
        }),
        ..image_mount("/x", "")
    }];
    let err = cri
        .create_container(&pod_id, &not_pulled, &pod)
        .await
        .expect_err("image not pulled");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let mut with_host = container_config("hp", &busybox, "true");
    with_host.mounts = vec![Mount {
        host_path: "/tmp".into(),
        ..image_mount("/x", "")
    }];
    let err = cri
        .create_container(&pod_id, &with_host, &pod)
        .await
        .expect_err("image and host_path");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert_eq!(cri.containers().await.len(), before);

    // RemoveContainer takes the volume mounts down and frees the image.
    let storage = daemon.dirs.root.join("containers").join(&id);
    assert!(!crio_tests::cleanup::mounts_under(&storage).is_empty());
    cri.runtime
        .remove_container(RemoveContainerRequest {
            container_id: id.clone(),
        })
        .await
        .expect("RemoveContainer");
    assert!(crio_tests::cleanup::mounts_under(&storage).is_empty());
    assert!(!storage.exists());
    cri.image
        .remove_image(RemoveImageRequest {
            image: Some(ImageSpec {
                image: volume_ref,
                ..Default::default()
            }),
        })
        .await
        .expect("RemoveImage once no container holds it");
}

/// `pause_image`: the infra container comes from a registry image, pulled on demand.
#[tokio::test(flavor = "multi_thread")]
async fn pause_image_is_pulled_and_run() {
    let registry = Registry::with_test_images();
    let pause = registry.reference(TestImage::Pause);
    let daemon = Daemon::builder()
        .dropin("10-go-shim.conf", crio_tests::GO_SHIM_DROPIN)
        .dropin(
            "20-pause.conf",
            &format!("[crio.image]\npause_image = {pause:?}\npause_command = \"\"\n"),
        )
        .registries_conf(&registry.insecure_conf())
        .start();
    let mut cri = daemon.client().await;
    let image = registry.reference(TestImage::Busybox);
    cri.pull(&image, None).await.expect("pull");
    let pod = shared_pid(pod_config("pause-image", &daemon.dirs.log_dir));
    let pod_id = cri.run_pod(&pod, "go").await.expect("RunPodSandbox");
    let images = cri.images().await;
    assert!(
        images.iter().any(|i| i.repo_tags.contains(&pause)),
        "the pause image was pulled: {images:?}"
    );
    let id = cri
        .create_container(&pod_id, &container_config("c", &image, "sleep 100"), &pod)
        .await
        .expect("create");
    cri.start_container(&id).await.expect("start");
    let out = cri.exec(&id, &["cat", "/proc/1/cmdline"]).await;
    assert_eq!(out.stdout, b"/pause\0");
    cri.runtime
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod_id.clone(),
        })
        .await
        .expect("RemovePodSandbox");
    assert!(crio_tests::cleanup::mounts_under(&daemon.dirs.base).is_empty());
    assert!(!daemon.dirs.root.join("containers").join(&pod_id).exists());
}

/// `drop_infra_ctr = false`: every pod gets its pause process, even on our shims.
#[tokio::test(flavor = "multi_thread")]
async fn drop_infra_ctr_false_gives_every_pod_a_pause_process() {
    let daemon = Daemon::builder()
        .dropin("10-infra.conf", "[crio.runtime]\ndrop_infra_ctr = false\n")
        .start();
    let mut cri = daemon.client().await;
    let pod = pod_config("with-pause", &daemon.dirs.log_dir);
    let pod_id = cri.run_pod(&pod, "runc").await.expect("RunPodSandbox");
    let procs = format!("/sys/fs/cgroup/pids/crio/crio-{pod_id}/cgroup.procs");
    let pause: Vec<String> = std::fs::read_to_string(&procs)
        .unwrap_or_else(|e| panic!("{procs}: {e}"))
        .lines()
        .map(|pid| std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default())
        .collect();
    assert_eq!(pause, ["/pause\0"], "the pod's cgroup holds pause");
    cri.runtime
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod_id,
        })
        .await
        .expect("RemovePodSandbox");
}

/// CRI-O's `runtime_type = "oci"` with `runtime_path = crun`: our shim drives crun.
#[tokio::test(flavor = "multi_thread")]
async fn oci_handler_with_crun_runs_through_our_shim() {
    crio_tests::containerd::prepare_crun();
    let registry = Registry::with_test_images();
    let daemon = Daemon::builder()
        .dropin(
            "10-crun.conf",
            "[crio.runtime.runtimes.crun]\nruntime_type = \"oci\"\nruntime_path = \"/usr/bin/crun\"\n",
        )
        .registries_conf(&registry.insecure_conf())
        .start();
    let mut cri = daemon.client().await;
    let image = registry.reference(TestImage::Busybox);
    cri.pull(&image, None).await.expect("pull");
    let pod = pod_config("crun", &daemon.dirs.log_dir);
    let pod_id = cri.run_pod(&pod, "crun").await.expect("RunPodSandbox");
    let id = cri
        .create_container(&pod_id, &container_config("c", &image, "exit 4"), &pod)
        .await
        .expect("create");
    // crun, not runc, holds the container's state while it exists: crun writes
    // `status`, runc `state.json`.
    let state = std::path::Path::new("/run/containerd/runc/k8s.io").join(&id);
    let files = |dir: &std::path::Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let created = files(&state);
    assert!(
        created.contains(&"status".to_string()) && !created.contains(&"state.json".to_string()),
        "the container runs under crun: {} holds {created:?}",
        state.display()
    );
    cri.start_container(&id).await.expect("start");
    let status = cri.wait_exited(&id, Duration::from_secs(10)).await;
    assert_eq!(status.exit_code, 4);
    // Its exit deletes the task: crun's state goes before RemoveContainer.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while state.exists() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!state.exists(), "{} outlived the exit", state.display());
    cri.runtime
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod_id,
        })
        .await
        .expect("RemovePodSandbox");
}

/// Shim binaries that fail `start` or answer garbage: a clear error, nothing leaked.
#[tokio::test(flavor = "multi_thread")]
async fn broken_shims_leave_nothing() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let failing = dir.path().join("failing-shim");
    std::fs::write(
        &failing,
        "#!/bin/sh\necho 'shim: cannot start: no runtime' >&2\nexit 1\n",
    )
    .expect("write");
    let garbage = dir.path().join("garbage-shim");
    std::fs::write(&garbage, "#!/bin/sh\necho 'this is not an address'\n").expect("write");
    for p in [&failing, &garbage] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let daemon = Daemon::builder()
        .dropin(
            "10-broken.conf",
            &format!(
                "[crio.runtime.runtimes.failing]\nruntime_type = \"vm\"\nruntime_path = {:?}\n\n[crio.runtime.runtimes.garbage]\nruntime_type = \"vm\"\nruntime_path = {:?}\n",
                failing, garbage
            ),
        )
        .start();
    let mut cri = daemon.client().await;
    let pod = pod_config("broken", &daemon.dirs.log_dir);
    let err = cri
        .run_pod(&pod, "failing")
        .await
        .expect_err("failing shim");
    assert!(
        err.message().contains("cannot start: no runtime"),
        "{err:?}"
    );
    let err = cri
        .run_pod(&pod, "garbage")
        .await
        .expect_err("garbage shim");
    assert!(err.message().contains("not an address"), "{err:?}");
    let pods = cri.pods().await;
    assert!(pods.is_empty(), "no record is left: {pods:?}");
    let bundles: Vec<_> = std::fs::read_dir(daemon.dirs.runroot.join("bundles"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(bundles.is_empty(), "no bundle is left: {bundles:?}");
    assert!(crio_tests::cleanup::mounts_under(&daemon.dirs.base).is_empty());
    assert!(crio_tests::cleanup::processes_with_cwd_under(&daemon.dirs.base).is_empty());
    // The name is free again.
    let err = cri
        .run_pod(&pod, "failing")
        .await
        .expect_err("still failing");
    assert_ne!(err.code(), Code::AlreadyExists);
}

/// A runc pod and a youki pod side by side on one daemon, each served by its own
/// shim binary, both working.
#[tokio::test(flavor = "multi_thread")]
async fn runc_and_youki_pods_side_by_side() {
    let registry = Registry::with_test_images();
    let daemon = daemon(&registry);
    let mut cri = daemon.client().await;
    let image = registry.reference(TestImage::Busybox);
    cri.pull(&image, None).await.expect("pull");
    let mut pods = Vec::new();
    for handler in ["runc", "youki"] {
        let pod = pod_config(&format!("mixed-{handler}"), &daemon.dirs.log_dir);
        let pod_id = cri.run_pod(&pod, handler).await.expect("RunPodSandbox");
        let config = container_config("app", &image, &format!("echo from-{handler}; sleep 300"));
        let id = cri
            .create_container(&pod_id, &config, &pod)
            .await
            .expect("create");
        cri.start_container(&id).await.expect("start");
        pods.push((handler, pod_id, id));
    }
    for (handler, pod_id, id) in &pods {
        let status = cri.pod_status(pod_id).await;
        assert_eq!(status.runtime_handler, *handler);
        let out = cri.exec(id, &["sh", "-c", "echo $((6*7))"]).await;
        assert_eq!(out.stdout, b"42\n", "{handler}");
        let log = cri.container_status(id).await.expect("status").log_path;
        wait_for_file_text(
            std::path::Path::new(&log),
            &format!("stdout F from-{handler}"),
            Duration::from_secs(10),
        )
        .await;
        // The pod's shim runs in its bundle: which binary is it?
        let bundle = daemon.dirs.runroot.join("bundles").join(pod_id);
        let shims = crio_tests::cleanup::processes_with_cwd_under(&bundle);
        let exes: Vec<String> = shims
            .iter()
            .filter_map(|pid| std::fs::read_link(format!("/proc/{pid}/exe")).ok())
            .map(|p| p.display().to_string())
            .collect();
        let want = if *handler == "youki" {
            "containerd-shim-youki-v2"
        } else {
            "containerd-shim-runc-rs-v2"
        };
        assert!(
            exes.iter().any(|e| e.ends_with(want)),
            "{handler}: {exes:?}"
        );
    }
    for (_, pod_id, _) in &pods {
        cri.runtime
            .remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: pod_id.clone(),
            })
            .await
            .expect("remove");
    }
    assert!(cri.pods().await.is_empty());
}

crio_tests::per_handler!(
    full_lifecycle,
    host_network_pod,
    shared_pid_namespace,
    pod_namespaces_are_pinned,
    errors_leave_nothing,
    restart_keeps_pods,
    shim_killed;
    kata: full_lifecycle, errors_leave_nothing, restart_keeps_pods, shim_killed
);
