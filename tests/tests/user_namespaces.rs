//! Pods in their own user namespace (`hostUsers: false`, KEP-127), as the kubelet
//! asks for them: mode POD with one uid and one gid range, the same ranges on every
//! volume it mounts. The pod's root is root inside and an unprivileged uid on the
//! host; its image files and volumes are ID-mapped so ownership reads the same
//! inside as on disk; a handler that cannot do it is never used for such a pod.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crio_tests::pods::{container_config, pod_config};
use crio_tests::{Daemon, Registry, TestImage};
use protocols::cri::{
    IdMapping, LinuxContainerConfig, LinuxContainerSecurityContext, Mount, NamespaceMode,
    NamespaceOption, PodSandboxConfig, RemovePodSandboxRequest, StopPodSandboxRequest,
    UserNamespace,
};
use tonic::Code;

/// A host range no other test's pods use: 65536 IDs from `(2 + n) << 16`, past
/// any real user of this machine.
fn mapping(n: u32) -> IdMapping {
    IdMapping {
        host_id: (2 + n) << 16,
        container_id: 0,
        length: 65536,
    }
}

fn userns(m: IdMapping) -> UserNamespace {
    UserNamespace {
        mode: NamespaceMode::Pod as i32,
        uids: vec![m],
        gids: vec![m],
    }
}

fn with_userns(mut pod: PodSandboxConfig, m: IdMapping) -> PodSandboxConfig {
    let sc = pod
        .linux
        .get_or_insert_with(Default::default)
        .security_context
        .get_or_insert_with(Default::default);
    sc.namespace_options
        .get_or_insert_with(NamespaceOption::default)
        .userns_options = Some(userns(m));
    pod
}

/// The host PID of the process of container `id` whose command is `comm`.
fn host_pid(id: &str, comm: &str) -> u32 {
    let cgroup = format!("crio-{id}");
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
                .is_ok_and(|c| c.contains(&cgroup))
                && std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|c| c.trim() == comm)
        })
        .unwrap_or_else(|| panic!("no {comm} process of container {id}"))
}

fn daemon(registry: &Registry) -> Daemon {
    Daemon::builder()
        .dropin("10-go-shim.conf", crio_tests::GO_SHIM_DROPIN)
        .registries_conf(&registry.insecure_conf())
        .start()
}

async fn a_pod_in_its_own_user_namespace(handler: &str, n: u32) {
    let registry = Registry::with_test_images();
    let daemon = daemon(&registry);
    let mut cri = daemon.client().await;
    let status = cri.status(false).await;
    let features = status
        .runtime_handlers
        .iter()
        .find(|h| h.name == handler)
        .and_then(|h| h.features)
        .expect("the handler is listed");
    assert!(features.user_namespaces, "{handler} says it can");

    let image = registry.reference(TestImage::Busybox);
    cri.pull(&image, None).await.expect("pull");
    let m = mapping(n);
    let pod = with_userns(
        pod_config(&format!("userns-{handler}"), &daemon.dirs.log_dir),
        m,
    );
    let pod_id = cri.run_pod(&pod, handler).await.expect("RunPodSandbox");

    // A volume with a root-owned file, as the kubelet mounts volumes: ID-mapped with
    // the pod's ranges.
    let volume = tempfile::tempdir().expect("volume");
    std::fs::write(volume.path().join("from-host"), "host\n").expect("host file");
    let mut config = container_config("app", &image, "sleep 3600");
    config.mounts = vec![Mount {
        container_path: "/vol".into(),
        host_path: volume.path().display().to_string(),
        uid_mappings: vec![m],
        gid_mappings: vec![m],
        ..Default::default()
    }];
    config.linux = Some(LinuxContainerConfig {
        security_context: Some(LinuxContainerSecurityContext {
            namespace_options: Some(NamespaceOption {
                userns_options: Some(userns(m)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        resources: None,
    });
    let id = cri
        .create_container(&pod_id, &config, &pod)
        .await
        .unwrap_or_else(|e| panic!("CreateContainer: {e}\n{}", daemon.log()));
    cri.start_container(&id)
        .await
        .unwrap_or_else(|e| panic!("StartContainer: {e}\n{}", daemon.log()));

    // Root inside, host uid H outside.
    let out = cri.exec(&id, &["id", "-u"]).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0");
    let pid = host_pid(&id, "sleep");
    let uid_map = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).expect("uid_map");
    let fields: Vec<&str> = uid_map.split_whitespace().collect();
    assert_eq!(
        fields,
        ["0", &m.host_id.to_string(), "65536"],
        "the pod's mapping"
    );
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let uid_line = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .expect("Uid line");
    assert!(
        uid_line
            .split_whitespace()
            .skip(1)
            .all(|u| u == m.host_id.to_string()),
        "an unprivileged uid on the host: {uid_line}"
    );
    // The container is in the pod's pinned user namespace (the one its network
    // namespace belongs to).
    let pinned = daemon.dirs.runroot.join("userns").join(&pod_id);
    let pinned_ino = std::os::unix::fs::MetadataExt::ino(
        &std::fs::metadata(&pinned).unwrap_or_else(|e| panic!("{}: {e}", pinned.display())),
    );
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/ns/user")).expect("container userns"),
        std::path::PathBuf::from(format!("user:[{pinned_ino}]")),
        "one user namespace per pod"
    );

    // The image's files are root's inside (ID-mapped layers); the root dir is
    // writable.
    let exec = |cmd: &'static str| vec!["sh", "-c", cmd];
    let out = cri
        .exec(
            &id,
            &exec("stat -c %u:%g /bin/busybox /etc; touch /new-in-rootfs && echo ok"),
        )
        .await;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "0:0\n0:0\nok\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The volume: on-disk owners read the same inside, and what the pod writes lands
    // on disk with the pod's IDs.
    let out = cri
        .exec(
            &id,
            &exec(
                "stat -c %u /vol/from-host; echo pod > /vol/by-root; \
                 touch /vol/by-1000 && chown 1000:1000 /vol/by-1000 && echo ok",
            ),
        )
        .await;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "0\nok\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let owner = |name: &str| {
        let meta = std::fs::metadata(volume.path().join(name)).expect(name);
        (meta.uid(), meta.gid())
    };
    assert_eq!(owner("by-root"), (0, 0), "the pod's root is on-disk 0");
    assert_eq!(owner("by-1000"), (1000, 1000));

    cri.runtime
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod_id.clone(),
        })
        .await
        .expect("StopPodSandbox");
    cri.runtime
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod_id.clone(),
        })
        .await
        .expect("RemovePodSandbox");
    let pins: Vec<PathBuf> = std::fs::read_dir(daemon.dirs.runroot.join("userns"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(pins.is_empty(), "the user namespace is unpinned: {pins:?}");
    assert!(
        mounts_under(&daemon.dirs.root).is_empty(),
        "no ID-mapped mount is left: {:?}",
        mounts_under(&daemon.dirs.root)
    );
}

fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&prefix))
        .map(String::from)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn runc_runs_a_pod_in_its_own_user_namespace() {
    a_pod_in_its_own_user_namespace("runc", 1).await;
}

/// Handlers that cannot honour it say so in `Status` and are never used for such a
/// pod: containerd's Go shim 1.6 states no features, and our youki shim leaves the
/// user namespace out of its features (libcontainer 0.7 would exec processes
/// outside it). Bad mappings are refused before anything is made.
#[tokio::test(flavor = "multi_thread")]
async fn what_cannot_be_honoured_is_refused() {
    let registry = Registry::with_test_images();
    let daemon = daemon(&registry);
    let mut cri = daemon.client().await;
    let status = cri.status(false).await;
    for handler in ["go", "youki"] {
        let features = status
            .runtime_handlers
            .iter()
            .find(|h| h.name == handler)
            .and_then(|h| h.features)
            .expect("listed");
        assert!(!features.user_namespaces, "{handler} states no support");
        let pod = with_userns(
            pod_config(&format!("userns-{handler}"), &daemon.dirs.log_dir),
            mapping(3),
        );
        let err = cri.run_pod(&pod, handler).await.expect_err("no support");
        assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
        assert!(
            err.message().contains("does not support user namespaces"),
            "{err}"
        );
    }

    let host_root = with_userns(
        pod_config("userns-root", &daemon.dirs.log_dir),
        IdMapping {
            host_id: 0,
            container_id: 0,
            length: 65536,
        },
    );
    let err = cri
        .run_pod(&host_root, "runc")
        .await
        .expect_err("host root");
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    let host_net = with_userns(
        crio_tests::pods::host_network(pod_config("userns-hostnet", &daemon.dirs.log_dir)),
        mapping(3),
    );
    let err = cri
        .run_pod(&host_net, "runc")
        .await
        .expect_err("host network");
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    assert!(cri.pods().await.is_empty(), "nothing was created");

    // A volume mapped differently from its pod is refused.
    let image = registry.reference(TestImage::Busybox);
    cri.pull(&image, None).await.expect("pull");
    let pod = with_userns(pod_config("userns-vol", &daemon.dirs.log_dir), mapping(3));
    let pod_id = cri.run_pod(&pod, "runc").await.expect("RunPodSandbox");
    let volume = tempfile::tempdir().expect("volume");
    let mut config = container_config("app", &image, "sleep 3600");
    config.mounts = vec![Mount {
        container_path: "/vol".into(),
        host_path: volume.path().display().to_string(),
        uid_mappings: vec![mapping(4)],
        gid_mappings: vec![mapping(4)],
        ..Default::default()
    }];
    let err = cri
        .create_container(&pod_id, &config, &pod)
        .await
        .expect_err("a different mapping");
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    assert!(cri.containers().await.is_empty());
}
