//! VM pods through the daemon (the `kata` handler, pointed at the test guest by
//! a drop-in as an operator would): a container running in the guest, its log in
//! the CRI format, the pod network, terminals, stats, OOM kills, sizing, restarts
//! and crashes, refusals, VMs that cannot come up, and nothing left behind.

use std::path::Path;
use std::time::{Duration, Instant};

use crio_tests::cri::CriClient;
use crio_tests::kata::{handler_dropin, qemus_gone_under, qemus_under};
use crio_tests::network::{
    free_port, http_from, http_get, pod_ips, web_pod, TestNetwork, WEB_BODY,
};
use crio_tests::pods::{container_config, pod_config, wait_for_file_text};
use crio_tests::process::command_lines;
use crio_tests::{Daemon, Registry, TestImage};
use protocols::cri::{PodSandboxState, PortMapping, Protocol};

/// Every host process's command line.
fn host_processes() -> Vec<String> {
    command_lines().into_iter().map(|(_, c)| c).collect()
}

/// A daemon with a `kata` handler naming the VM pods' shim (an operator's
/// drop-in) whose VMs live under `vms`, with busybox pulled.
async fn kata_daemon(registry: &Registry, vms: &Path) -> (Daemon, CriClient, String) {
    let dropin = handler_dropin();
    let daemon = Daemon::builder()
        .dropin("10-kata.conf", &dropin)
        .registries_conf(&registry.insecure_conf())
        .env("CRIO_KATA_VM_ROOT", &vms.display().to_string())
        .start();
    let mut cri = daemon.client().await;
    let image = registry.reference(TestImage::Busybox);
    cri.pull(&image, None).await.expect("pull busybox");
    (daemon, cri, image)
}

/// A VM pod named `name` with one started container running `script`; the
/// pod's config, its id and the container's.
async fn vm_pod_running(
    cri: &mut CriClient,
    daemon: &Daemon,
    name: &str,
    image: &str,
    script: &str,
) -> (protocols::cri::PodSandboxConfig, String, String) {
    let pod = pod_config(name, &daemon.dirs.log_dir);
    let pod_id = cri.run_pod(&pod, "kata").await.expect("RunPodSandbox");
    let config = container_config("app", image, script);
    let id = cri
        .create_container(&pod_id, &config, &pod)
        .await
        .expect("CreateContainer");
    cri.start_container(&id).await.expect("StartContainer");
    (pod, pod_id, id)
}

/// Stops and removes the pod, then asserts its qemu is gone.
async fn remove_pod(cri: &mut CriClient, pod_id: &str, vms: &Path) {
    cri.stop_and_remove_pod(pod_id).await;
    assert_eq!(
        qemus_gone_under(vms).await,
        Vec::<u32>::new(),
        "no qemu is left"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vm_pod_runs_its_container_in_the_guest_and_leaves_nothing() {
    crio_tests::require_root();
    let vms = tempfile::tempdir().expect("tempdir");
    let registry = Registry::with_test_images();
    let (daemon, mut cri, image) = kata_daemon(&registry, vms.path()).await;

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

    // ExecSync runs in the guest, beside the container's process.
    for round in 0..2 {
        let exec = cri
            .exec(
                &sleeper,
                &[
                    "sh",
                    "-c",
                    "echo in-guest $(uname -r); pidof sleep; echo err >&2; exit 5",
                ],
            )
            .await;
        let out = String::from_utf8_lossy(&exec.stdout);
        assert_eq!(exec.exit_code, 5, "round {round}: {out}");
        assert!(out.starts_with("in-guest 6.1."), "{out}");
        assert_eq!(
            out.lines().nth(1),
            Some("1"),
            "the container's sleep is its PID 1: {out}"
        );
        assert_eq!(String::from_utf8_lossy(&exec.stderr), "err\n");
    }

    remove_pod(&mut cri, &pod_id, vms.path()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_daemon_finds_its_vm_pod_running() {
    crio_tests::require_root();
    let vms = tempfile::tempdir().expect("tempdir");
    let registry = Registry::with_test_images();
    let (mut daemon, mut cri, image) = kata_daemon(&registry, vms.path()).await;

    let (_, pod_id, id) = vm_pod_running(
        &mut cri,
        &daemon,
        "vm-restart",
        &image,
        "echo up; exec sleep 4243",
    )
    .await;
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

    remove_pod(&mut cri, &pod_id, vms.path()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vm_pod_has_its_pod_ip_and_talks_to_runc_pods_and_its_host_port() {
    crio_tests::require_root();
    let vms = tempfile::tempdir().expect("tempdir");
    let net = TestNetwork::new(true);
    let registry = Registry::with_test_images();
    let (daemon, mut cri, _) = kata_daemon(&registry, vms.path()).await;
    // With a default route through the bridge, for the guest to copy.
    let mut bridge = net.bridge_plugin();
    bridge["ipam"]["routes"] = serde_json::json!([{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]);
    net.install(
        &daemon.dirs.network_dir,
        &net.conflist("1.0.0", vec![bridge, TestNetwork::portmap_plugin()]),
    );
    let (runc_web, runc_web_ctr) = web_pod(
        &mut cri,
        &registry,
        &pod_config("runc-web", &daemon.dirs.log_dir),
        "",
    )
    .await;
    let port = free_port(false);
    let mut pod = pod_config("vm-web", &daemon.dirs.log_dir);
    pod.port_mappings = vec![PortMapping {
        protocol: Protocol::Tcp as i32,
        container_port: 80,
        host_port: i32::from(port),
        host_ip: "127.0.0.1".into(),
    }];
    let (vm_web, vm_web_ctr) = web_pod(&mut cri, &registry, &pod, "kata").await;
    assert_eq!(qemus_under(vms.path()).len(), 1, "one qemu: the VM pod's");

    let vm_ips = pod_ips(&mut cri, &vm_web).await;
    let runc_ips = pod_ips(&mut cri, &runc_web).await;
    assert_eq!(runc_ips.len(), 2, "dual-stack: {runc_ips:?}");
    assert_eq!(vm_ips.len(), 2, "dual-stack: {vm_ips:?}");
    assert!(net.contains(&vm_ips[0]), "{vm_ips:?} in {}", net.subnet);
    assert!(
        vm_ips[1].parse::<std::net::Ipv6Addr>().is_ok(),
        "{vm_ips:?}"
    );

    // The guest's eth0 has the pod's IP (and the MAC the host side has), lo is up,
    // and the default route leads to the bridge.
    let addrs = cri.exec(&vm_web_ctr, &["ip", "-o", "addr"]).await;
    let addrs = String::from_utf8_lossy(&addrs.stdout).to_string();
    assert!(
        addrs.contains(&format!("eth0    inet {}/24", vm_ips[0])),
        "{addrs}"
    );
    assert!(
        addrs.contains(&format!("eth0    inet6 {}/64", vm_ips[1])),
        "{addrs}"
    );
    assert!(addrs.contains("lo    inet 127.0.0.1/8"), "{addrs}");
    let routes = cri.exec(&vm_web_ctr, &["ip", "route"]).await;
    let routes = String::from_utf8_lossy(&routes.stdout).to_string();
    assert!(routes.contains("default via "), "{routes}");
    // The same routes as a runc pod's on the same network (but its own source).
    let runc_routes = cri.exec(&runc_web_ctr, &["ip", "route"]).await;
    let runc_routes =
        String::from_utf8_lossy(&runc_routes.stdout).replace(&runc_ips[0], &vm_ips[0]);
    assert_eq!(routes, runc_routes);
    let kernel = cri.exec(&vm_web_ctr, &["uname", "-r"]).await;
    assert!(
        String::from_utf8_lossy(&kernel.stdout).starts_with("6.1."),
        "the web server runs in the guest"
    );

    // Pod to pod, both ways, over the bridge, on both families.
    for (vm, runc) in vm_ips.iter().zip(&runc_ips) {
        assert_eq!(
            http_from(&mut cri, &vm_web_ctr, runc).await,
            WEB_BODY,
            "VM pod -> runc pod {runc}"
        );
        assert_eq!(
            http_from(&mut cri, &runc_web_ctr, vm).await,
            WEB_BODY,
            "runc pod -> VM pod {vm}"
        );
    }

    // The host's port reaches the server in the guest.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match http_get(port) {
            Ok(text) if text.contains(WEB_BODY) => break,
            other => assert!(
                Instant::now() < deadline,
                "127.0.0.1:{port} did not serve the VM pod's page: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Port-forward reaches the server in the guest (through the shim's relay and
    // the agent), and names a port nothing listens on.
    for (port, wanted) in [(80u16, WEB_BODY), (81, "")] {
        let url = cri
            .runtime
            .port_forward(protocols::cri::PortForwardRequest {
                pod_sandbox_id: vm_web.clone(),
                port: vec![port.into()],
            })
            .await
            .expect("PortForward")
            .into_inner()
            .url;
        let mut client = crio_tests::streaming::ChannelClient::connect(
            &format!("{url}?port={port}"),
            &["v4.channel.k8s.io"],
        )
        .await
        .expect("connect");
        assert_eq!(client.recv().await, Some((0, port.to_le_bytes().to_vec())));
        assert_eq!(client.recv().await, Some((1, port.to_le_bytes().to_vec())));
        client
            .send(0, b"GET /index.html HTTP/1.0\r\nHost: pod\r\n\r\n")
            .await;
        let got = client.collect().await;
        let data = crio_tests::streaming::text(&got, 0);
        let error = crio_tests::streaming::text(&got, 1);
        if wanted.is_empty() {
            assert!(error.contains("localhost:81"), "{error:?}");
            assert!(data.is_empty(), "{data:?}");
        } else {
            assert!(
                data.starts_with("HTTP/1.") && data.contains(wanted),
                "data {data:?}, error {error:?}"
            );
        }
    }

    remove_pod(&mut cri, &vm_web, vms.path()).await;
    assert!(
        http_get(port).is_err(),
        "127.0.0.1:{port} still answers after the VM pod is gone"
    );
    let mut left: Vec<std::net::IpAddr> =
        runc_ips.iter().map(|ip| ip.parse().expect("ip")).collect();
    left.sort();
    assert_eq!(net.allocated_ips(), left, "the VM pod's IPs are released");
}

#[tokio::test(flavor = "multi_thread")]
async fn vm_pod_terminals_for_the_container_and_for_exec_follow_resizes() {
    use crio_tests::streaming::{text, ChannelClient};
    const STDIN: u8 = 0;
    const STDOUT: u8 = 1;
    const STDERR: u8 = 2;
    const RESIZE: u8 = 4;
    crio_tests::require_root();
    let vms = tempfile::tempdir().expect("tempdir");
    let registry = Registry::with_test_images();
    let (daemon, mut cri, image) = kata_daemon(&registry, vms.path()).await;
    let pod = pod_config("vm-tty", &daemon.dirs.log_dir);
    let pod_id = cri.run_pod(&pod, "kata").await.expect("RunPodSandbox");

    // The container's own stdio is a terminal in the guest; its output reaches
    // the CRI log.
    let mut config = container_config("term", &image, "echo on $(tty); exec sleep 3600");
    config.tty = true;
    config.stdin = true;
    let id = cri
        .create_container(&pod_id, &config, &pod)
        .await
        .expect("CreateContainer");
    cri.start_container(&id).await.expect("StartContainer");
    let log_path = cri.container_status(&id).await.expect("status").log_path;
    let log = wait_for_file_text(
        Path::new(&log_path),
        "on /dev/pts/",
        Duration::from_secs(30),
    )
    .await;
    assert!(
        log.contains(" stdout "),
        "a terminal's output is stdout: {log}"
    );

    // An exec with a terminal sees the client's window size.
    let url = cri
        .runtime
        .exec(protocols::cri::ExecRequest {
            container_id: id.clone(),
            cmd: ["sh", "-c", "read x; stty size; tty"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            tty: true,
            stdin: true,
            stdout: true,
            stderr: false,
        })
        .await
        .expect("Exec")
        .into_inner()
        .url;
    let mut client = ChannelClient::connect(&url, &["v5.channel.k8s.io"])
        .await
        .expect("connect");
    client.send(RESIZE, br#"{"Width":123,"Height":45}"#).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    client.send(STDIN, b"go\r").await;
    let got = client.collect().await;
    let out = text(&got, STDOUT);
    assert!(out.contains("45 123"), "stty size saw the resize: {out:?}");
    assert!(
        out.contains("/dev/pts/"),
        "the exec has a terminal: {out:?}"
    );
    assert!(
        !got.contains_key(&STDERR),
        "a terminal has no separate stderr"
    );

    remove_pod(&mut cri, &pod_id, vms.path()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn vm_pod_containers_report_stats_take_updates_and_report_oom_kills() {
    use protocols::cri::{ContainerStatsRequest, LinuxContainerConfig, LinuxContainerResources};
    crio_tests::require_root();
    let vms = tempfile::tempdir().expect("tempdir");
    let registry = Registry::with_test_images();
    let (daemon, mut cri, image) = kata_daemon(&registry, vms.path()).await;
    let pod = pod_config("vm-stats", &daemon.dirs.log_dir);
    let pod_id = cri.run_pod(&pod, "kata").await.expect("RunPodSandbox");
    let limited = |memory: i64| {
        Some(LinuxContainerConfig {
            resources: Some(LinuxContainerResources {
                memory_limit_in_bytes: memory,
                ..Default::default()
            }),
            security_context: None,
        })
    };

    // A container that keeps 8 MB (in its shell's memory: the pod's /dev/shm is
    // the host's) and burns a little CPU reports both.
    let mut busy = container_config(
        "busy",
        &image,
        "x=$(head -c 8000000 /dev/zero | tr '\\0' a); i=0; \
         while [ $i -lt 20000 ]; do i=$((i+1)); done; while :; do sleep 1; done",
    );
    busy.linux = limited(128 << 20);
    let busy_id = cri
        .create_container(&pod_id, &busy, &pod)
        .await
        .expect("CreateContainer busy");
    cri.start_container(&busy_id).await.expect("StartContainer");
    let deadline = Instant::now() + Duration::from_secs(30);
    let (memory, cpu) = loop {
        let stats = cri
            .runtime
            .container_stats(ContainerStatsRequest {
                container_id: busy_id.clone(),
            })
            .await
            .expect("ContainerStats")
            .into_inner()
            .stats
            .expect("stats");
        let memory = stats
            .memory
            .and_then(|m| m.working_set_bytes)
            .map_or(0, |v| v.value);
        let cpu = stats
            .cpu
            .and_then(|c| c.usage_core_nano_seconds)
            .map_or(0, |v| v.value);
        if memory >= 8_000_000 && cpu > 0 {
            break (memory, cpu);
        }
        assert!(
            Instant::now() < deadline,
            "stats from the guest: memory {memory}, cpu {cpu}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        memory < 128 << 20,
        "the container's cgroup, not the VM's: {memory}"
    );
    assert!(cpu > 0);

    // UpdateContainerResources changes the limit in the guest's cgroup.
    cri.runtime
        .update_container_resources(protocols::cri::UpdateContainerResourcesRequest {
            container_id: busy_id.clone(),
            linux: Some(LinuxContainerResources {
                memory_limit_in_bytes: 96 << 20,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("UpdateContainerResources");
    let max = cri
        .exec(
            &busy_id,
            &[
                "sh",
                "-c",
                "cat /sys/fs/cgroup/$(cut -d: -f3 /proc/self/cgroup)/memory.max",
            ],
        )
        .await;
    assert_eq!(
        String::from_utf8_lossy(&max.stdout).trim(),
        (96u64 << 20).to_string(),
        "{}",
        String::from_utf8_lossy(&max.stderr)
    );

    // A container that outgrows its limit is OOM-killed in the guest, and says so.
    let mut hog = container_config("hog", &image, "exec tail /dev/zero");
    hog.linux = limited(32 << 20);
    let hog_id = cri
        .create_container(&pod_id, &hog, &pod)
        .await
        .expect("CreateContainer hog");
    cri.start_container(&hog_id).await.expect("StartContainer");
    let exited = cri.wait_exited(&hog_id, Duration::from_secs(60)).await;
    assert_eq!(exited.exit_code, 137, "killed: {exited:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = cri.container_status(&hog_id).await.expect("status");
        if status.reason == "OOMKilled" {
            break;
        }
        assert!(Instant::now() < deadline, "reason {:?}", status.reason);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The busy container lives on: the VM did not run out of memory.
    assert_eq!(
        cri.container_status(&busy_id).await.expect("status").state,
        protocols::cri::ContainerState::ContainerRunning as i32
    );

    remove_pod(&mut cri, &pod_id, vms.path()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_vm_is_sized_by_the_pods_limits_plus_the_handlers_overhead() {
    use protocols::cri::{LinuxContainerResources, LinuxPodSandboxConfig};
    crio_tests::require_root();
    let vms = tempfile::tempdir().expect("tempdir");
    let registry = Registry::with_test_images();
    let (daemon, mut cri, image) = kata_daemon(&registry, vms.path()).await;
    // MemTotal (kB) and CPUs the guest sees, from a container of a pod.
    async fn guest_size(
        cri: &mut CriClient,
        pod: &protocols::cri::PodSandboxConfig,
        image: &str,
    ) -> (String, u64, usize) {
        let pod_id = cri.run_pod(pod, "kata").await.expect("RunPodSandbox");
        let config = container_config("size", image, "sleep 3600");
        let id = cri
            .create_container(&pod_id, &config, pod)
            .await
            .expect("CreateContainer");
        cri.start_container(&id).await.expect("StartContainer");
        let out = cri
            .exec(
                &id,
                &[
                    "sh",
                    "-c",
                    "grep MemTotal /proc/meminfo; grep -c ^processor /proc/cpuinfo",
                ],
            )
            .await;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let mut lines = text.lines();
        let kb = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("MemTotal in {text:?}"));
        let cpus = lines
            .next()
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("CPUs in {text:?}"));
        (pod_id, kb, cpus)
    }

    // No limits: the shim's default, 256 MiB and 1 vCPU.
    let plain = pod_config("vm-plain", &daemon.dirs.log_dir);
    let (plain_id, plain_kb, plain_cpus) = guest_size(&mut cri, &plain, &image).await;
    assert!(plain_kb < 256 * 1024, "{plain_kb} kB");
    assert_eq!(plain_cpus, 1);
    remove_pod(&mut cri, &plain_id, vms.path()).await;

    // Limits summing to 512 MiB and 1.5 CPUs: 512 + the handler's 64 MiB, 2 vCPUs.
    let mut sized = pod_config("vm-sized", &daemon.dirs.log_dir);
    sized.linux = Some(LinuxPodSandboxConfig {
        resources: Some(LinuxContainerResources {
            memory_limit_in_bytes: 512 << 20,
            cpu_period: 100_000,
            cpu_quota: 150_000,
            ..Default::default()
        }),
        ..sized.linux.unwrap_or_default()
    });
    let (sized_id, sized_kb, sized_cpus) = guest_size(&mut cri, &sized, &image).await;
    assert!(
        sized_kb > 512 * 1024 && sized_kb <= 576 * 1024,
        "{sized_kb} kB for 512 + 64 MiB"
    );
    assert_eq!(sized_cpus, 2);
    remove_pod(&mut cri, &sized_id, vms.path()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vm_that_dies_while_crio_is_down_is_reported_after_its_restart() {
    crio_tests::require_root();
    let vms = tempfile::tempdir().expect("tempdir");
    let registry = Registry::with_test_images();
    let (mut daemon, mut cri, image) = kata_daemon(&registry, vms.path()).await;
    let (_, pod_id, id) =
        vm_pod_running(&mut cri, &daemon, "vm-crash", &image, "exec sleep 4244").await;
    let qemu = qemus_under(vms.path());
    assert_eq!(qemu.len(), 1);

    // crio goes down; the VM dies under its shim (a crash: SIGKILL to qemu).
    daemon.stop();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(qemu[0] as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill qemu");
    assert_eq!(qemus_gone_under(vms.path()).await, Vec::<u32>::new());
    daemon.restart();
    let mut cri = daemon.client().await;

    // The restarted crio learns from the shim that the container ended with its
    // VM, and that the pod is not ready.
    let exited = cri.wait_exited(&id, Duration::from_secs(30)).await;
    assert_eq!(exited.exit_code, 255, "the VM's end: {exited:?}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while cri.pod_status(&pod_id).await.state != PodSandboxState::SandboxNotready as i32 {
        assert!(Instant::now() < deadline, "the pod is not ready any more");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    remove_pod(&mut cri, &pod_id, vms.path()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vm_pod_cannot_have_the_hosts_namespaces_and_leaves_nothing_when_refused() {
    use crio_tests::pods::{host_network, shared_pid};
    crio_tests::require_root();
    let vms = tempfile::tempdir().expect("tempdir");
    let registry = Registry::with_test_images();
    let (daemon, mut cri, _) = kata_daemon(&registry, vms.path()).await;
    for (pod, what) in [
        (
            host_network(pod_config("vm-hostnet", &daemon.dirs.log_dir)),
            "the host's network namespace",
        ),
        (
            shared_pid(pod_config("vm-sharedpid", &daemon.dirs.log_dir)),
            "one PID namespace shared by its containers",
        ),
    ] {
        let err = cri.run_pod(&pod, "kata").await.expect_err("refused");
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains(what), "{}", err.message());
    }
    assert!(cri.pods().await.is_empty(), "no pod recorded");
    assert!(qemus_under(vms.path()).is_empty(), "no VM started");
}

/// A handler table of ours for a VM pod whose VM cannot come up.
fn broken_handler(name: &str, qemu: &str, kernel: &Path, initramfs: &Path, extra: &str) -> String {
    format!(
        "[crio.runtime.runtimes.{name}]\nruntime_type = \"vm\"\nruntime_path = \"{}\"\n\
         vm_hypervisor_path = \"{qemu}\"\nvm_kernel = \"{}\"\nvm_initramfs = \"{}\"\n{extra}",
        crio_tests::kata::shim_binary().display(),
        kernel.display(),
        initramfs.display(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vm_that_cannot_come_up_fails_its_pod_by_name_and_leaves_nothing() {
    crio_tests::require_root();
    let vms = tempfile::tempdir().expect("tempdir");
    let bad = tempfile::tempdir().expect("tempdir");
    let corrupt = bad.path().join("vmlinux");
    std::fs::write(&corrupt, "not a kernel").expect("write");
    let silent = bad.path().join("silent.cpio");
    crio_tests::kata::initramfs_with_init(&silent, "exec /bin/busybox sleep 1000");
    let guest = crio_tests::kata::guest();
    let qemu = "/usr/bin/qemu-system-x86_64";
    let missing = Path::new("/nonexistent/crio-rs/vmlinux");
    let cases = [
        (
            "vm-noqemu",
            broken_handler(
                "vm-noqemu",
                "/nonexistent/crio-rs/qemu-system-x86_64",
                &guest.kernel,
                &guest.initramfs,
                "",
            ),
            "/nonexistent/crio-rs/qemu-system-x86_64",
        ),
        (
            "vm-nokernel",
            broken_handler("vm-nokernel", qemu, missing, &guest.initramfs, ""),
            "/nonexistent/crio-rs/vmlinux",
        ),
        (
            "vm-badkernel",
            broken_handler("vm-badkernel", qemu, &corrupt, &guest.initramfs, ""),
            "kernel",
        ),
        (
            "vm-silent",
            broken_handler(
                "vm-silent",
                qemu,
                &guest.kernel,
                &silent,
                "vm_boot_timeout_secs = 5\n",
            ),
            "did not answer within 5s",
        ),
    ];
    let registry = Registry::with_test_images();
    let mut builder = Daemon::builder()
        .registries_conf(&registry.insecure_conf())
        .env("CRIO_KATA_VM_ROOT", &vms.path().display().to_string());
    for (name, table, _) in &cases {
        builder = builder.dropin(&format!("20-{name}.conf"), table);
    }
    let daemon = builder.start();
    let mut cri = daemon.client().await;
    for (name, _, cause) in &cases {
        let pod = pod_config(name, &daemon.dirs.log_dir);
        let begun = Instant::now();
        let err = cri
            .run_pod(&pod, name)
            .await
            .expect_err("the VM cannot come up");
        assert!(err.message().contains(cause), "{name}: {}", err.message());
        assert!(
            begun.elapsed() < Duration::from_secs(30),
            "{name}: failed after {:?}",
            begun.elapsed()
        );
        assert!(cri.pods().await.is_empty(), "{name}: no pod is left");
        assert!(
            qemus_under(vms.path()).is_empty(),
            "{name}: no qemu is left"
        );
        let vm_dirs: Vec<_> = std::fs::read_dir(vms.path())
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(
            vm_dirs.is_empty(),
            "{name}: VM directories left: {vm_dirs:?}"
        );
        assert!(
            crio_tests::cleanup::mounts_under(vms.path()).is_empty()
                && crio_tests::cleanup::mounts_under(&daemon.dirs.base).is_empty(),
            "{name}: no mount is left"
        );
        let netns = std::fs::read_dir(daemon.dirs.runroot.join("netns"))
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(
            netns, 0,
            "{name}: no pod network namespace (nor its tap) is left"
        );
        // The pod's shim was told to go and exits on its own.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = crio_tests::cleanup::processes_with_cwd_under(&daemon.dirs.base);
            if left.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{name}: processes left: {left:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The virtio-fs daemons whose command line names `dir`.
fn virtiofsds_under(dir: &Path) -> Vec<u32> {
    let needle = dir.display().to_string();
    command_lines()
        .into_iter()
        .filter(|(_, c)| c.contains("virtiofsd") && c.contains(&needle))
        .map(|(pid, _)| pid)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vm_pod_on_virtio_fs_shares_bundles_and_volumes_and_leaves_nothing() {
    crio_tests::require_root();
    let vms = tempfile::tempdir().expect("tempdir");
    let volume = tempfile::tempdir().expect("tempdir");
    std::fs::write(volume.path().join("in"), "from the host\n").expect("write");
    let registry = Registry::with_test_images();
    let daemon = Daemon::builder()
        .dropin(
            "10-kata-vfs.conf",
            &crio_tests::kata::handler_table("kata-vfs", "vm_shared_fs = \"virtio-fs\"\n"),
        )
        .registries_conf(&registry.insecure_conf())
        .env("CRIO_KATA_VM_ROOT", &vms.path().display().to_string())
        .start();
    let mut cri = daemon.client().await;
    let image = registry.reference(TestImage::Busybox);
    cri.pull(&image, None).await.expect("pull busybox");
    let pod = pod_config("vm-vfs", &daemon.dirs.log_dir);
    let pod_id = cri.run_pod(&pod, "kata-vfs").await.expect("RunPodSandbox");
    // (C virtiofsd forks into its sandbox: a few processes, one daemon.)
    assert!(
        !virtiofsds_under(vms.path()).is_empty(),
        "the pod's virtiofsd"
    );
    let mut config = container_config(
        "app",
        &image,
        "grep ' / ' /proc/mounts; cat /data/in; echo out > /data/out; exec sleep 3600",
    );
    config.mounts = vec![protocols::cri::Mount {
        container_path: "/data".into(),
        host_path: volume.path().display().to_string(),
        ..Default::default()
    }];
    let id = cri.started_container(&pod_id, &config, &pod).await;
    let log_path = cri.container_status(&id).await.expect("status").log_path;
    let log = wait_for_file_text(
        Path::new(&log_path),
        "from the host",
        Duration::from_secs(30),
    )
    .await;
    assert!(
        log.contains(" virtiofs "),
        "the rootfs comes over virtio-fs: {log}"
    );
    // The log line comes before the write: wait for the file, not the line.
    let out = wait_for_file_text(&volume.path().join("out"), "out", Duration::from_secs(30)).await;
    assert_eq!(out, "out\n", "written in the guest");
    // What the host writes later is seen (cache=auto revalidates).
    std::fs::write(volume.path().join("late"), "later\n").expect("write");
    let out = cri.exec(&id, &["cat", "/data/late"]).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "later\n");

    remove_pod(&mut cri, &pod_id, vms.path()).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !virtiofsds_under(vms.path()).is_empty() {
        assert!(Instant::now() < deadline, "virtiofsd left");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
