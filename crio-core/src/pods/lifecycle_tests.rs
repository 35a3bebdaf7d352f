//! The pod and container lifecycle against a shim in memory ([`FakeShim`]) and a
//! real store in a temp dir: no root, no runtime, no registry. Pods use the host's
//! network and IPC namespaces (nothing to pin or mount) and the vfs storage driver
//! (a copy of a layer the test writes), so every step the lifecycle takes is the
//! production code's; only the shim is fake.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use protocols::cri;
use tokio::sync::mpsc;

use super::fake_shim::{ExecScript, FakeShim};
use super::{PodRuntime, PodRuntimeConfig};
use crate::image::image_config::ImageConfig;
use crate::image::images::ImageStore;
use crate::runtime::{HandlerRegistry, RuntimeEvent, ShimHost, TaskError};
use crate::store::{
    ContainerRecord, ContainerState, ImageRecord, SandboxRecord, SandboxState, Store,
};

const LAYER: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const IMAGE: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

struct Harness {
    dir: tempfile::TempDir,
    store: Arc<Store>,
    shim: FakeShim,
    pods: Arc<PodRuntime>,
    events: mpsc::UnboundedSender<RuntimeEvent>,
    image: ImageRecord,
    image_config: ImageConfig,
}

fn config(dir: &std::path::Path) -> crate::config::Config {
    let fake_binary = dir.join("fake-shim");
    std::fs::write(&fake_binary, "#!/bin/false\n").expect("fake shim binary");
    std::fs::set_permissions(&fake_binary, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut config = crate::config::Config::default();
    let runtime = &mut config.crio.runtime;
    runtime.runtimes.clear();
    runtime.runtimes.insert(
        "fake".into(),
        crate::config::RuntimeHandler {
            runtime_type: crate::config::RUNTIME_TYPE_VM.into(),
            runtime_path: fake_binary.display().to_string(),
            ..Default::default()
        },
    );
    runtime.default_runtime = "fake".into();
    config
}

fn runtime_config(dir: &std::path::Path) -> PodRuntimeConfig {
    PodRuntimeConfig {
        bundles_dir: dir.join("run/bundles"),
        containers_dir: dir.join("root/containers"),
        pause_rootfs: dir.join("root/pause/rootfs"),
        run_root: dir.join("run"),
        storage_driver: crate::storage::rootfs::StorageDriver::Vfs,
        systemd_cgroup: false,
        held_capabilities: crate::spec::held_capabilities(),
        min_oom_score_adj: crate::spec::own_oom_score_adj(),
        pids_limit: 0,
        node: Default::default(),
        log_dir: dir.join("pod-logs"),
        hostport_mapping: true,
        metrics: crate::metrics::Metrics::new(false, &[], "fake"),
        log_size_max: -1,
        image_volumes: "mkdir".into(),
        cdi_spec_dirs: Vec::new(),
        drop_infra: true,
        host: crate::spec::HostFacts::read(),
        metric_groups: Vec::new(),
    }
}

/// A PodRuntime on `dir` (a restarted daemon when the store holds records).
fn runtime_on(
    dir: &std::path::Path,
    store: &Arc<Store>,
    shim: &FakeShim,
    pod_wide: bool,
) -> Harness2 {
    let config = config(dir);
    // `pod_wide`: the fake shim says, as ours do, that it serves a pod without a
    // sandbox task (pods then run no pause task).
    let images =
        Arc::new(ImageStore::open(store.clone(), &dir.join("root/images")).expect("images"));
    let network = crate::network::PodNetworks::new(
        crate::config::NetworkConfig {
            network_dir: dir.join("net.d"),
            ..Default::default()
        },
        Arc::new(crate::network::ProcessExec),
    );
    let pods = Arc::new(PodRuntime::new(
        runtime_config(dir),
        store.clone(),
        images,
        HandlerRegistry::from_config(&config).with_features(
            "fake",
            crate::runtime::HandlerFeatures {
                sandbox_task_optional: pod_wide,
                ..Default::default()
            },
        ),
        ShimHost::with_launcher(Arc::new(shim.clone())),
        network,
    ));
    let (tx, rx) = mpsc::unbounded_channel();
    shim.publish_to(tx.clone());
    pods.spawn_event_loop(rx);
    Harness2 { pods, events: tx }
}

struct Harness2 {
    pods: Arc<PodRuntime>,
    events: mpsc::UnboundedSender<RuntimeEvent>,
}

fn harness() -> Harness {
    harness_with(false)
}

/// Pods without a pause task (`drop_infra_ctr` with a shim that allows it).
fn harness_without_infra() -> Harness {
    harness_with(true)
}

fn harness_with(pod_wide: bool) -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(&dir.path().join("root/metadata.redb")).expect("store"));
    // One layer with what user lookup reads.
    let diff = dir
        .path()
        .join("root/images/layers")
        .join(LAYER.trim_start_matches("sha256:"))
        .join("diff");
    std::fs::create_dir_all(diff.join("etc")).expect("layer");
    std::fs::create_dir_all(diff.join("bin")).expect("layer");
    std::fs::write(diff.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("passwd");
    std::fs::write(diff.join("etc/group"), "root:x:0:\n").expect("group");
    let image = ImageRecord {
        id: IMAGE.into(),
        repo_tags: vec!["test/fake:latest".into()],
        layers: vec![LAYER.into()],
        ..Default::default()
    };
    store.put(&image).expect("image record");
    let image_config = ImageConfig::parse(
        format!(
            r#"{{"architecture":"amd64","os":"linux","config":{{"Cmd":["sh"]}},"rootfs":{{"type":"layers","diff_ids":["{LAYER}"]}}}}"#
        )
        .as_bytes(),
        1,
    )
    .expect("image config");
    let shim = FakeShim::default();
    let h = runtime_on(dir.path(), &store, &shim, pod_wide);
    Harness {
        dir,
        store,
        shim,
        pods: h.pods,
        events: h.events,
        image,
        image_config,
    }
}

impl Harness {
    /// A pod on the host's network and IPC namespaces (nothing to pin or mount).
    fn pod_config(&self, name: &str) -> cri::PodSandboxConfig {
        cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: name.into(),
                uid: format!("uid-{name}"),
                namespace: "default".into(),
                attempt: 0,
            }),
            hostname: name.into(),
            log_directory: self
                .dir
                .path()
                .join("logs")
                .join(name)
                .display()
                .to_string(),
            linux: Some(cri::LinuxPodSandboxConfig {
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(cri::NamespaceOption {
                        network: cri::NamespaceMode::Node as i32,
                        ipc: cri::NamespaceMode::Node as i32,
                        pid: cri::NamespaceMode::Container as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// A pod "web" with a running container "app": (pod, container).
    async fn running_container(&self) -> (String, String) {
        let pod = self.run_pod("web").await.expect("RunPodSandbox");
        let id = self.create(&pod, "app").await.expect("CreateContainer");
        self.pods
            .start_container(&id)
            .await
            .expect("StartContainer");
        (pod, id)
    }

    fn container_config(&self, name: &str) -> cri::ContainerConfig {
        cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            image: Some(cri::ImageSpec {
                image: IMAGE.into(),
                ..Default::default()
            }),
            command: vec!["sleep".into(), "3600".into()],
            log_path: format!("{name}.log"),
            ..Default::default()
        }
    }

    async fn run_pod(&self, name: &str) -> Result<String, crate::error::CriError> {
        self.pods
            .run_sandbox(&self.pod_config(name), "fake", None)
            .await
    }

    async fn create(&self, pod: &str, name: &str) -> Result<String, crate::error::CriError> {
        self.pods
            .create_container(
                pod,
                &self.container_config(name),
                &self.image,
                &self.image_config,
                &[],
            )
            .await
    }

    fn sandbox(&self, id: &str) -> Option<SandboxRecord> {
        self.store.get::<SandboxRecord>(id).expect("store")
    }

    fn container(&self, id: &str) -> Option<ContainerRecord> {
        self.store.get::<ContainerRecord>(id).expect("store")
    }

    fn sandboxes(&self) -> Vec<SandboxRecord> {
        self.store.list::<SandboxRecord>().expect("store")
    }

    fn containers(&self) -> Vec<ContainerRecord> {
        self.store.list::<ContainerRecord>().expect("store")
    }

    /// Waits until the container's record says exited.
    async fn exited(&self, id: &str) -> ContainerRecord {
        for _ in 0..200 {
            if let Some(c) = self
                .container(id)
                .filter(|c| c.state == ContainerState::Exited)
            {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("container {id} never exited: {:?}", self.container(id));
    }

    fn bundles(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.dir.path().join("run/bundles"))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    }
}

/// The process id of the (first) exec the shim was asked for.
fn exec_call(calls: &[String]) -> &str {
    calls
        .iter()
        .find_map(|c| c.strip_prefix("exec "))
        .expect("an exec call")
}

fn other(method: &'static str) -> TaskError {
    TaskError::Other {
        method,
        message: "the fake shim was told to fail".into(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_and_its_container_live_and_go() {
    let h = harness();
    let pod = h.run_pod("web").await.expect("RunPodSandbox");
    assert_eq!(h.sandbox(&pod).expect("record").state, SandboxState::Ready);
    let id = h.create(&pod, "app").await.expect("CreateContainer");
    assert_eq!(
        h.container(&id).expect("record").state,
        ContainerState::Created
    );
    h.pods.start_container(&id).await.expect("StartContainer");
    assert_eq!(
        h.container(&id).expect("record").state,
        ContainerState::Running
    );
    h.shim.exit(&id, 3);
    let c = h.exited(&id).await;
    assert_eq!((c.exit_code, c.reason.as_str()), (Some(3), "Error"));
    h.pods.remove_container(&id).await.expect("RemoveContainer");
    h.pods.stop_sandbox(&pod).await.expect("StopPodSandbox");
    h.pods.remove_sandbox(&pod).await.expect("RemovePodSandbox");
    assert!(h.sandboxes().is_empty() && h.containers().is_empty());
    assert!(h.bundles().is_empty(), "{:?}", h.bundles());
    let calls = h.shim.calls();
    assert!(calls.contains(&format!("shutdown {pod}")), "{calls:?}");
    assert!(
        !calls.iter().any(|c| c.starts_with("delete-action")),
        "{calls:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failure_at_any_step_of_run_pod_sandbox_leaves_nothing() {
    type Arm = fn(&FakeShim);
    let steps: [(&str, Arm); 3] = [
        ("the shim's start action", |s| s.fail_start_action()),
        ("Create", |s| s.fail_next("create", other("Create"))),
        ("Start", |s| s.fail_next("start", other("Start"))),
    ];
    for (step, arm) in steps {
        let h = harness();
        arm(&h.shim);
        let err = h.run_pod("broken").await.expect_err(step);
        let status = tonic::Status::from(err);
        assert_eq!(status.code(), tonic::Code::Internal, "{step}: {status:?}");
        assert!(h.sandboxes().is_empty(), "{step}: a record is left");
        assert!(h.bundles().is_empty(), "{step}: {:?}", h.bundles());
        let pod_tasks: Vec<String> = h
            .shim
            .calls()
            .into_iter()
            .filter(|c| c.starts_with("create ") || c.starts_with("delete "))
            .collect();
        if step != "the shim's start action" {
            assert!(
                !h.shim.has_task(&pod_tasks[0]["create ".len()..]),
                "{step}: the shim still holds the pause task"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failure_at_any_step_of_create_container_leaves_no_record_and_the_pod_ready() {
    type Arm = fn(&FakeShim, &mut cri::ContainerConfig);
    let steps: [(&str, Arm); 3] = [
        // After the rootfs is mounted, before the bundle is written.
        ("an unknown CDI device", |_, c| {
            c.cdi_devices = vec![cri::CdiDevice {
                name: "vendor.example/gpu=none".into(),
            }]
        }),
        ("Create", |s, _| s.fail_next("create", other("Create"))),
        ("a connection broken in Create", |s, _| {
            s.fail_next(
                "create",
                TaskError::Disconnected {
                    method: "Create",
                    message: "connection reset".into(),
                },
            )
        }),
    ];
    for (step, arm) in steps {
        let h = harness();
        let pod = h.run_pod("web").await.expect("RunPodSandbox");
        let mut config = h.container_config("app");
        arm(&h.shim, &mut config);
        h.pods
            .create_container(&pod, &config, &h.image, &h.image_config, &[])
            .await
            .expect_err(step);
        assert!(
            h.containers().is_empty(),
            "{step}: a container record is left"
        );
        assert_eq!(h.bundles().len(), 1, "{step}: {:?}", h.bundles());
        let storage: Vec<_> = std::fs::read_dir(h.dir.path().join("root/containers"))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(
            storage.is_empty(),
            "{step}: container storage left: {storage:?}"
        );
        assert_eq!(
            h.sandbox(&pod).expect("pod").state,
            SandboxState::Ready,
            "{step}"
        );
        let id = h.create(&pod, "app").await.expect("the name is free again");
        h.pods.start_container(&id).await.expect("and it runs");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_taken_name_is_refused_and_leaves_its_holder_and_nothing_else() {
    let h = harness();
    let pod = h.run_pod("web").await.expect("RunPodSandbox");
    let first = h.create(&pod, "app").await.expect("CreateContainer");
    let storage = || -> Vec<_> {
        std::fs::read_dir(h.dir.path().join("root/containers"))
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default()
    };
    let (bundles, stored) = (h.bundles(), storage());
    let err = h.create(&pod, "app").await.expect_err("the name is taken");
    let status = tonic::Status::from(err);
    assert_eq!(status.code(), tonic::Code::AlreadyExists, "{status:?}");
    // The bundle made while the reservation was tried is gone; the holder's stays.
    assert_eq!(h.bundles(), bundles);
    assert_eq!(storage(), stored);
    assert_eq!(h.containers().len(), 1);
    h.pods
        .start_container(&first)
        .await
        .expect("the holder still runs");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exit_that_beats_the_create_reply_is_kept() {
    let h = harness();
    let pod = h.run_pod("web").await.expect("RunPodSandbox");
    let events = h.events.clone();
    h.shim.on_create(move |id| {
        let _ = events.send(RuntimeEvent::Exit {
            container_id: id.to_string(),
            id: id.to_string(),
            pid: 1,
            exit_status: 7,
            exited_at: 1,
        });
    });
    let id = h.create(&pod, "quick").await.expect("CreateContainer");
    let c = h.container(&id).expect("record");
    assert_eq!(
        c.state,
        ContainerState::Exited,
        "the exit is not overwritten"
    );
    assert_eq!(c.exit_code, Some(7));
    // The pid from Create is known before the start records it.
    assert!(h.pods.pid_of(&c) > 0, "the pid from Create is kept");
    assert_eq!((c.state, c.exit_code), (ContainerState::Exited, Some(7)));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oom_kill_and_the_exit_race_without_losing_either() {
    let h = harness();
    // Many rounds, the OOM and the exit recorded at once: whichever lands first,
    // the container ends exited, with its code, as OOMKilled.
    for round in 0..20 {
        let pod = h
            .run_pod(&format!("oom{round}"))
            .await
            .expect("RunPodSandbox");
        let id = h.create(&pod, "hog").await.expect("CreateContainer");
        h.pods.start_container(&id).await.expect("StartContainer");
        let (a, b) = (h.pods.clone(), h.pods.clone());
        let (ia, ib) = (id.clone(), id.clone());
        let oom = tokio::spawn(async move { a.record_oom(&ia).await });
        let exit = tokio::spawn(async move { b.record_exit(&ib, 137, 1).await });
        oom.await.expect("join").expect("record_oom");
        exit.await.expect("join");
        let c = h.container(&id).expect("record");
        assert_eq!(
            c.state,
            ContainerState::Exited,
            "round {round}: the exit is kept"
        );
        assert_eq!(c.exit_code, Some(137));
        assert_eq!(c.reason, "OOMKilled", "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_shim_exits_its_tasks_and_makes_the_pod_not_ready() {
    let h = harness();
    let (pod, id) = h.running_container().await;
    h.shim.die();
    let c = h.exited(&id).await;
    assert_eq!(c.exit_code, Some(137), "the shim's delete action's status");
    assert_eq!(c.message, "the container's shim died");
    assert_eq!(h.sandbox(&pod).expect("pod").state, SandboxState::NotReady);
    let calls = h.shim.calls();
    assert!(calls.contains(&format!("delete-action {id}")), "{calls:?}");
    assert!(calls.contains(&format!("delete-action {pod}")), "{calls:?}");
    // Removing it all still works, and what is left is cleaned.
    h.pods.remove_sandbox(&pod).await.expect("RemovePodSandbox");
    assert!(h.sandboxes().is_empty() && h.containers().is_empty());
}

/// The daemon dies with its tokio runtime (every wait and event loop gone); a
/// second runtime on the same store and shims recovers.
#[test]
fn a_restart_finds_running_tasks_exits_and_tasks_the_shim_lost() {
    let first = tokio::runtime::Runtime::new().expect("runtime");
    let (h, pod, running, exited, lost, created) = first.block_on(async {
        let h = harness();
        let pod = h.run_pod("web").await.expect("RunPodSandbox");
        let running = h.create(&pod, "running").await.expect("create");
        h.pods.start_container(&running).await.expect("start");
        let exited = h.create(&pod, "exited").await.expect("create");
        h.pods.start_container(&exited).await.expect("start");
        let lost = h.create(&pod, "lost").await.expect("create");
        let created = h.create(&pod, "created").await.expect("create");
        (h, pod, running, exited, lost, created)
    });
    first.shutdown_background();
    // While no daemon runs, one task exits and the shim loses another.
    h.shim.exit(&exited, 4);
    h.shim.forget_task(&lost);
    // A created container's record gets its pid with the start.
    assert_eq!(h.container(&created).expect("record").pid, 0);
    h.shim.clear_calls();
    let second = tokio::runtime::Runtime::new().expect("runtime");
    second.block_on(async {
        let again = runtime_on(h.dir.path(), &h.store, &h.shim, false);
        again.pods.recover().await.expect("recover");
        let get = |id: &str| {
            h.store
                .get::<ContainerRecord>(id)
                .expect("store")
                .expect("record")
        };
        assert_eq!(get(&running).state, ContainerState::Running);
        assert_eq!(h.sandbox(&pod).expect("pod").state, SandboxState::Ready);
        let e = get(&exited);
        assert_eq!((e.state, e.exit_code), (ContainerState::Exited, Some(4)));
        let l = get(&lost);
        assert_eq!((l.state, l.exit_code), (ContainerState::Exited, Some(255)));
        let c = get(&created);
        assert_eq!(c.state, ContainerState::Created);
        assert!(c.pid > 0, "the pid comes from the shim: {c:?}");
        assert!(
            h.shim.calls().contains(&format!("delete-action {lost}")),
            "the lost task is undone in its runtime: {:?}",
            h.shim.calls()
        );
        // The running one is followed again: its exit arrives.
        h.shim.exit(&running, 0);
        for _ in 0..200 {
            if get(&running).state == ContainerState::Exited {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the exit after the restart was not seen");
    });
}

#[test]
fn a_restart_with_the_shim_gone_reports_its_tasks_exited() {
    let first = tokio::runtime::Runtime::new().expect("runtime");
    let (h, pod, app) = first.block_on(async {
        let h = harness();
        let pod = h.run_pod("web").await.expect("RunPodSandbox");
        let app = h.create(&pod, "app").await.expect("create");
        h.pods.start_container(&app).await.expect("start");
        (h, pod, app)
    });
    first.shutdown_background();
    h.shim.die();
    let second = tokio::runtime::Runtime::new().expect("runtime");
    second.block_on(async {
        let again = runtime_on(h.dir.path(), &h.store, &h.shim, false);
        again.pods.recover().await.expect("recover");
        let c = h.container(&app).expect("record");
        assert_eq!((c.state, c.exit_code), (ContainerState::Exited, Some(137)));
        assert_eq!(h.sandbox(&pod).expect("pod").state, SandboxState::NotReady);
        let calls = h.shim.calls();
        for id in [&app, &pod] {
            assert!(calls.contains(&format!("delete-action {id}")), "{calls:?}");
        }
        again
            .pods
            .remove_sandbox(&pod)
            .await
            .expect("RemovePodSandbox");
        assert!(h.sandboxes().is_empty() && h.containers().is_empty());
        assert!(h.bundles().is_empty(), "{:?}", h.bundles());
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_sync_returns_the_output_and_status_and_deletes_the_process() {
    let h = harness();
    let (_, id) = h.running_container().await;
    h.shim.on_exec(ExecScript {
        stdout: b"hello\n".to_vec(),
        exit: Some(3),
    });
    let out = h
        .pods
        .exec_sync(&id, &["echo".into()], Duration::from_secs(5))
        .await
        .expect("ExecSync");
    assert_eq!((out.stdout.as_slice(), out.exit_code), (&b"hello\n"[..], 3));
    let calls = h.shim.calls();
    let exec = exec_call(&calls);
    assert!(calls.contains(&format!("delete {exec}")), "{calls:?}");
    assert!(!h.shim.has_task(exec), "the exec process is deleted");
    let fifos: Vec<_> = std::fs::read_dir(h.container(&id).expect("record").bundle.join("exec"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(fifos.is_empty(), "exec fifos left: {fifos:?}");
    // The container is untouched.
    assert_eq!(
        h.container(&id).expect("record").state,
        ContainerState::Running
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_sync_past_its_timeout_kills_the_process() {
    let h = harness();
    let (_, id) = h.running_container().await;
    h.shim.on_exec(ExecScript {
        stdout: Vec::new(),
        exit: None,
    });
    let err = h
        .pods
        .exec_sync(&id, &["sleep".into()], Duration::from_millis(200))
        .await
        .expect_err("timeout");
    assert!(
        matches!(err, crate::error::CriError::DeadlineExceeded(_)),
        "{err:?}"
    );
    let calls = h.shim.calls();
    let exec = exec_call(&calls);
    assert!(calls.contains(&format!("kill {exec}")), "{calls:?}");
    assert!(calls.contains(&format!("delete {exec}")), "{calls:?}");
    assert_eq!(
        h.container(&id).expect("record").state,
        ContainerState::Running
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_of_a_command_the_runtime_cannot_start_is_unknown_and_a_stopped_container_refuses() {
    let h = harness();
    let pod = h.run_pod("web").await.expect("RunPodSandbox");
    let id = h.create(&pod, "app").await.expect("CreateContainer");
    let err = h
        .pods
        .exec_sync(&id, &["true".into()], Duration::ZERO)
        .await
        .expect_err("not started");
    assert!(
        matches!(err, crate::error::CriError::FailedPrecondition(_)),
        "{err:?}"
    );
    h.pods.start_container(&id).await.expect("StartContainer");
    h.shim.fail_next("start", other("Start"));
    let err = h
        .pods
        .exec_sync(&id, &["/nonexistent".into()], Duration::ZERO)
        .await
        .expect_err("cannot start");
    assert!(matches!(err, crate::error::CriError::Unknown(_)), "{err:?}");
    assert!(h
        .shim
        .calls()
        .iter()
        .any(|c| c.starts_with(&format!("delete {id}/"))));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_without_a_pause_task_runs_its_containers_in_its_shim() {
    let h = harness_without_infra();
    let pod = h.run_pod("web").await.expect("RunPodSandbox");
    let record = h.sandbox(&pod).expect("record");
    assert!(record.infra_dropped && record.pid == 0, "{record:?}");
    assert_eq!(record.state, SandboxState::Ready);
    assert!(!h.shim.has_task(&pod), "no pause task");
    assert!(
        !record.bundle.join("config.json").exists(),
        "no pause spec written"
    );
    let id = h.create(&pod, "app").await.expect("CreateContainer");
    // Its config has no namespace options (PID mode POD, crictl's default): there
    // is no pod PID namespace to join, so it gets its own.
    let bundle = h.container(&id).expect("record").bundle;
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).expect("spec"))
            .expect("json");
    let pid_ns = spec["linux"]["namespaces"]
        .as_array()
        .expect("namespaces")
        .iter()
        .find(|n| n["type"] == "pid")
        .cloned();
    assert_eq!(pid_ns, Some(serde_json::json!({"type": "pid"})), "{spec}");
    h.pods.start_container(&id).await.expect("StartContainer");
    let calls = h.shim.calls();
    assert_eq!(
        calls
            .iter()
            .filter(|c| c.starts_with("start-action"))
            .count(),
        1,
        "one start action (the pod's); the container uses the connected shim: {calls:?}"
    );
    assert!(!calls.contains(&format!("create {pod}")), "{calls:?}");
    // The pod stays ready without a pause process until StopPodSandbox.
    h.shim.exit(&id, 0);
    h.exited(&id).await;
    assert_eq!(h.sandbox(&pod).expect("record").state, SandboxState::Ready);
    let mut events = h.pods.subscribe_events();
    h.pods.stop_sandbox(&pod).await.expect("StopPodSandbox");
    assert_eq!(
        h.sandbox(&pod).expect("record").state,
        SandboxState::NotReady
    );
    let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("an event")
        .expect("open");
    assert_eq!(
        (event.container_id.as_str(), event.container_event_type),
        (
            pod.as_str(),
            cri::ContainerEventType::ContainerStoppedEvent as i32
        ),
        "the pod's stop is reported as its pause's exit would be"
    );
    h.pods.remove_sandbox(&pod).await.expect("RemovePodSandbox");
    assert!(h.sandboxes().is_empty() && h.containers().is_empty());
    assert!(h.bundles().is_empty(), "{:?}", h.bundles());
    let calls = h.shim.calls();
    assert!(calls.contains(&format!("shutdown {pod}")), "{calls:?}");
    assert!(
        !calls.contains(&format!("kill {pod}")),
        "no pause to kill: {calls:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn shared_pid_and_privileged_pods_keep_their_pause_task() {
    let h = harness_without_infra();
    let mut config = h.pod_config("shared");
    if let Some(o) = config
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
        .and_then(|s| s.namespace_options.as_mut())
    {
        o.pid = cri::NamespaceMode::Pod as i32;
    }
    let pod = h
        .pods
        .run_sandbox(&config, "fake", None)
        .await
        .expect("RunPodSandbox");
    let record = h.sandbox(&pod).expect("record");
    assert!(!record.infra_dropped, "{record:?}");
    assert!(h.shim.has_task(&pod), "pause is the PID namespace's init");
    h.pods.remove_sandbox(&pod).await.expect("RemovePodSandbox");
    // A privileged pod too: pause mounts the pod's sysfs read-write first.
    let mut config = h.pod_config("privileged");
    if let Some(s) = config
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
    {
        s.privileged = true;
    }
    let pod = h
        .pods
        .run_sandbox(&config, "fake", None)
        .await
        .expect("RunPodSandbox");
    assert!(h.shim.has_task(&pod), "a privileged pod keeps pause");
    h.pods.remove_sandbox(&pod).await.expect("RemovePodSandbox");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_shim_of_a_pod_without_pause_is_seen_at_the_next_create() {
    let h = harness_without_infra();
    let pod = h.run_pod("web").await.expect("RunPodSandbox");
    h.shim.die();
    h.create(&pod, "app").await.expect_err("the shim is gone");
    for _ in 0..200 {
        if h.sandbox(&pod).expect("record").state == SandboxState::NotReady {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        h.sandbox(&pod).expect("record").state,
        SandboxState::NotReady,
        "the kubelet sees the pod broken and makes a new one"
    );
    h.pods.remove_sandbox(&pod).await.expect("RemovePodSandbox");
    assert!(h.sandboxes().is_empty() && h.containers().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exited_containers_task_is_deleted_at_its_exit_and_its_record_kept() {
    let h = harness();
    let (_pod, id) = h.running_container().await;
    h.shim.exit(&id, 0);
    h.exited(&id).await;
    // The exit's own cleanup runs after the exit is recorded.
    for _ in 0..200 {
        if !h.shim.has_task(&id) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!h.shim.has_task(&id), "{:?}", h.shim.calls());
    let c = h
        .container(&id)
        .expect("the record stays until RemoveContainer");
    assert_eq!(c.state, ContainerState::Exited);
    assert!(c.bundle.exists(), "the bundle stays until RemoveContainer");
    h.pods.remove_container(&id).await.expect("RemoveContainer");
    assert!(h.container(&id).is_none());
    assert!(!c.bundle.exists());
    let deletes = h
        .shim
        .calls()
        .iter()
        .filter(|c| *c == &format!("delete {id}"))
        .count();
    assert_eq!(deletes, 1, "one task delete: {:?}", h.shim.calls());
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_container_deletes_the_task_before_it_returns() {
    let h = harness();
    let (_pod, id) = h.running_container().await;
    h.pods.stop_container(&id, 0).await.expect("StopContainer");
    assert!(!h.shim.has_task(&id), "{:?}", h.shim.calls());
    assert_eq!(
        h.container(&id).expect("record").state,
        ContainerState::Exited
    );
}

/// A removal that the daemon's death cut short between moving a container's
/// directories aside and deleting them: the next start deletes them.
#[tokio::test(flavor = "multi_thread")]
async fn a_restart_empties_what_removals_left_in_the_trash() {
    let h = harness();
    let left = [
        h.dir.path().join("root/trash/containers/c1/upper/etc"),
        h.dir.path().join("run/trash/bundles/c1"),
    ];
    for dir in &left {
        std::fs::create_dir_all(dir).expect("leftover");
        std::fs::write(dir.join("data"), "x").expect("leftover file");
    }
    let again = runtime_on(h.dir.path(), &h.store, &h.shim, false);
    again.pods.recover().await.expect("recover");
    for trash in ["root/trash/containers", "run/trash/bundles"] {
        let entries = std::fs::read_dir(h.dir.path().join(trash))
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(entries, 0, "{trash} still holds something");
    }
}
