//! A VM pod through the daemon: a handler naming the VM pods' shim (as an
//! operator's drop-in would; crio-rs offers no `kata` handler of its own until
//! VM pods pass every suite), a pod whose container runs in the guest, its log in
//! the CRI format, and no qemu left after the pod is removed.

use std::path::Path;
use std::time::Duration;

use crio_tests::kata::{guest, shim_binary};
use crio_tests::pods::{container_config, pod_config, wait_for_file_text};
use crio_tests::{Daemon, Registry, TestImage};
use protocols::cri::{PodSandboxState, RemovePodSandboxRequest, StopPodSandboxRequest};

/// The qemu processes whose command line names `dir`.
fn qemus_under(dir: &Path) -> Vec<u32> {
    let needle = dir.display().to_string();
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    let c = String::from_utf8_lossy(&c);
                    c.contains("qemu-system") && c.contains(&needle)
                })
                .unwrap_or(false)
        })
        .collect()
}

/// Every host process's command line.
fn host_processes() -> Vec<String> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vm_pod_runs_its_container_in_the_guest_and_leaves_nothing() {
    crio_tests::require_root();
    let vms = tempfile::tempdir().expect("tempdir");
    let registry = Registry::with_test_images();
    let dropin = format!(
        "[crio.runtime.runtimes.kata]\nruntime_type = \"vm\"\nruntime_path = \"{}\"\n",
        shim_binary().display()
    );
    let daemon = Daemon::builder()
        .dropin("10-kata.conf", &dropin)
        .registries_conf(&registry.insecure_conf())
        .env("CRIO_KATA_KERNEL", &guest().kernel.display().to_string())
        .env(
            "CRIO_KATA_INITRAMFS",
            &guest().initramfs.display().to_string(),
        )
        .env("CRIO_KATA_VM_ROOT", &vms.path().display().to_string())
        .start();
    let mut cri = daemon.client().await;
    let image = registry.reference(TestImage::Busybox);
    cri.pull(&image, None).await.expect("pull busybox");

    let pod = pod_config("vm-pod", &daemon.dirs.log_dir);
    let pod_id = cri.run_pod(&pod, "kata").await.expect("RunPodSandbox");
    assert_eq!(
        cri.pod_status(&pod_id).await.state,
        PodSandboxState::SandboxReady as i32
    );
    assert_eq!(qemus_under(vms.path()).len(), 1, "one qemu for the pod");

    let config = container_config("app", &image, "echo hello; echo oops >&2; uname -r; exit 3");
    let id = cri
        .create_container(&pod_id, &config, &pod)
        .await
        .expect("CreateContainer");
    cri.start_container(&id).await.expect("StartContainer");
    let exited = cri.wait_exited(&id, Duration::from_secs(30)).await;
    assert_eq!(exited.exit_code, 3);
    let log = wait_for_file_text(
        Path::new(&exited.log_path),
        "stderr F oops",
        Duration::from_secs(10),
    )
    .await;
    assert!(log.contains(" stdout F hello\n"), "{log}");
    // The guest's kernel, not the host's.
    assert!(log.contains(" stdout F 6.1."), "{log}");
    let host = nix::sys::utsname::uname().expect("uname");
    assert!(
        !log.contains(&format!(" stdout F {}\n", host.release().to_string_lossy())),
        "{log}"
    );

    // Isolation: a running container's process is the guest's, not the host's;
    // inside, the host's processes are not there; the host sees one qemu.
    let marker = "sleep 4242";
    let config = container_config(
        "sleeper",
        &image,
        "echo visible $(ls -d /proc/[0-9]* | wc -l); exec sleep 4242",
    );
    let sleeper = cri
        .create_container(&pod_id, &config, &pod)
        .await
        .expect("CreateContainer");
    cri.start_container(&sleeper).await.expect("StartContainer");
    let log_path = cri
        .container_status(&sleeper)
        .await
        .expect("status")
        .log_path;
    let log = wait_for_file_text(Path::new(&log_path), "visible", Duration::from_secs(30)).await;
    let visible: usize = log
        .split("visible ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(usize::MAX);
    // Its shell, the command substitution's subshell, ls and wc; the host has
    // hundreds.
    assert!(
        visible <= 5,
        "the container sees only its own processes: {log}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !host_processes().iter().any(|c| c.contains(marker)),
        "the container's process is not the host's"
    );
    assert_eq!(
        qemus_under(vms.path()).len(),
        1,
        "still one qemu for the pod"
    );

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
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !qemus_under(vms.path()).is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        qemus_under(vms.path()),
        Vec::<u32>::new(),
        "no qemu is left"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_daemon_finds_its_vm_pod_running() {
    crio_tests::require_root();
    let vms = tempfile::tempdir().expect("tempdir");
    let registry = Registry::with_test_images();
    let dropin = format!(
        "[crio.runtime.runtimes.kata]\nruntime_type = \"vm\"\nruntime_path = \"{}\"\n",
        shim_binary().display()
    );
    let mut daemon = Daemon::builder()
        .dropin("10-kata.conf", &dropin)
        .registries_conf(&registry.insecure_conf())
        .env("CRIO_KATA_KERNEL", &guest().kernel.display().to_string())
        .env(
            "CRIO_KATA_INITRAMFS",
            &guest().initramfs.display().to_string(),
        )
        .env("CRIO_KATA_VM_ROOT", &vms.path().display().to_string())
        .start();
    let mut cri = daemon.client().await;
    let image = registry.reference(TestImage::Busybox);
    cri.pull(&image, None).await.expect("pull busybox");
    let pod = pod_config("vm-restart", &daemon.dirs.log_dir);
    let pod_id = cri.run_pod(&pod, "kata").await.expect("RunPodSandbox");
    let config = container_config("app", &image, "echo up; exec sleep 4243");
    let id = cri
        .create_container(&pod_id, &config, &pod)
        .await
        .expect("CreateContainer");
    cri.start_container(&id).await.expect("StartContainer");
    let qemu = qemus_under(vms.path());
    assert_eq!(qemu.len(), 1);

    daemon.stop();
    daemon.restart();
    let mut cri = daemon.client().await;
    assert_eq!(
        cri.pod_status(&pod_id).await.state,
        PodSandboxState::SandboxReady as i32
    );
    assert_eq!(
        cri.container_status(&id).await.expect("status").state,
        protocols::cri::ContainerState::ContainerRunning as i32
    );
    assert_eq!(qemus_under(vms.path()), qemu, "the same VM");
    let exec = cri.exec(&id, &["echo", "still here"]).await;
    assert_eq!(String::from_utf8_lossy(&exec.stdout), "still here\n");

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
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !qemus_under(vms.path()).is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        qemus_under(vms.path()),
        Vec::<u32>::new(),
        "no qemu is left"
    );
}
