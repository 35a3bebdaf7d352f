//! Pod networking through Debian's real CNI plugins (bridge, host-local, portmap,
//! tuning, loopback) on a bridge and subnet each test owns, and the CNI protocol
//! as plugins see it (through a recording plugin). Traffic stays on loopback and
//! inside the test's own bridge and namespaces. The pod scenarios run on our runc
//! shim and in VM pods (`kata`: the pod's interface tied to the VM's tap).

use std::net::{IpAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crio_tests::network::{
    client_pod, free_port, http_from, http_get, pod_ips, web_pod, TestNetwork, UDP_ECHO, WEB_BODY,
};
use crio_tests::pods::{container_config, host_network, pod_config};
use crio_tests::{Daemon, Registry, TestImage};
use protocols::cri::{
    Mount, PortMapping, Protocol, RemovePodSandboxRequest, StopPodSandboxRequest,
};
use serde_json::{json, Value};
use tonic::Code;

fn daemon(registry: &Registry) -> Daemon {
    daemon_with(registry, Daemon::builder())
}

fn daemon_with(registry: &Registry, builder: crio_tests::DaemonBuilder) -> Daemon {
    builder
        .dropin("10-kata.conf", &crio_tests::kata::handler_dropin())
        .registries_conf(&registry.insecure_conf())
        .start()
}

async fn stop(cri: &mut crio_tests::cri::CriClient, pod_id: &str) {
    cri.runtime
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod_id.to_string(),
        })
        .await
        .expect("StopPodSandbox");
}

async fn remove(cri: &mut crio_tests::cri::CriClient, pod_id: &str) {
    cri.runtime
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod_id.to_string(),
        })
        .await
        .expect("RemovePodSandbox");
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("an IP address")
}

fn pinned_namespaces(daemon: &Daemon) -> Vec<PathBuf> {
    std::fs::read_dir(daemon.dirs.runroot.join("netns"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

async fn pods_on_a_bridge_reach_each_other_and_stop_releases_their_ips(handler: &str) {
    let net = TestNetwork::new(false);
    let registry = Registry::with_test_images();
    let daemon = daemon(&registry);
    net.install(
        &daemon.dirs.network_dir,
        &net.conflist(
            "1.0.0",
            vec![net.bridge_plugin(), TestNetwork::portmap_plugin()],
        ),
    );
    let mut cri = daemon.client().await;

    let (web, _) = web_pod(
        &mut cri,
        &registry,
        &pod_config("web", &daemon.dirs.log_dir),
        handler,
    )
    .await;
    let (client, client_ctr) = client_pod(
        &mut cri,
        &registry,
        &pod_config("client", &daemon.dirs.log_dir),
        handler,
    )
    .await;
    let web_ips = pod_ips(&mut cri, &web).await;
    let client_ips = pod_ips(&mut cri, &client).await;
    assert_eq!(web_ips.len(), 1, "{web_ips:?}");
    assert_eq!(client_ips.len(), 1, "{client_ips:?}");
    assert_ne!(web_ips, client_ips);
    for addr in web_ips.iter().chain(&client_ips) {
        assert!(net.contains(addr), "{addr} is not in {}", net.subnet);
    }
    let mut both = vec![ip(&web_ips[0]), ip(&client_ips[0])];
    both.sort();
    assert_eq!(net.allocated_ips(), both, "host-local holds both");

    // The container sees its address on eth0, and lo is up.
    let addrs = cri.exec(&client_ctr, &["ip", "-o", "addr"]).await;
    let addrs = String::from_utf8_lossy(&addrs.stdout).to_string();
    assert!(
        addrs.contains(&format!("eth0    inet {}/24", client_ips[0])),
        "{addrs}"
    );
    assert!(addrs.contains("lo    inet 127.0.0.1/8"), "{addrs}");

    let body = http_from(&mut cri, &client_ctr, &web_ips[0]).await;
    assert_eq!(body, WEB_BODY);

    stop(&mut cri, &web).await;
    assert_eq!(
        net.allocated_ips(),
        [ip(&client_ips[0])],
        "stop released the IP"
    );
    stop(&mut cri, &web).await;
    remove(&mut cri, &web).await;
    remove(&mut cri, &client).await;
    assert!(net.allocated_ips().is_empty());
    assert!(pinned_namespaces(&daemon).is_empty());
}

async fn the_host_reaches_tcp_and_udp_host_ports_on_loopback(handler: &str) {
    let net = TestNetwork::new(false);
    let registry = Registry::with_test_images();
    let daemon = daemon(&registry);
    net.install(
        &daemon.dirs.network_dir,
        &net.conflist(
            "1.0.0",
            vec![net.bridge_plugin(), TestNetwork::portmap_plugin()],
        ),
    );
    let mut cri = daemon.client().await;
    let (tcp_port, udp_port) = (free_port(false), free_port(true));
    let mut pod = pod_config("ports", &daemon.dirs.log_dir);
    pod.port_mappings = vec![
        PortMapping {
            protocol: Protocol::Tcp as i32,
            container_port: 80,
            host_port: i32::from(tcp_port),
            host_ip: "127.0.0.1".into(),
        },
        PortMapping {
            protocol: Protocol::Udp as i32,
            container_port: 9999,
            host_port: i32::from(udp_port),
            host_ip: "127.0.0.1".into(),
        },
    ];
    let (pod_id, _) = web_pod(&mut cri, &registry, &pod, handler).await;
    // busybox has no UDP server: a static echo server, mounted in.
    let mut udp = container_config(
        "udp",
        &registry.reference(TestImage::Busybox),
        "exec /udp-echo 9999",
    );
    udp.mounts = vec![Mount {
        container_path: "/udp-echo".into(),
        host_path: UDP_ECHO.into(),
        readonly: true,
        ..Default::default()
    }];
    cri.pull(&registry.reference(TestImage::Busybox), None)
        .await
        .expect("pull busybox");
    let udp_id = cri
        .create_container(&pod_id, &udp, &pod)
        .await
        .expect("CreateContainer udp");
    cri.start_container(&udp_id)
        .await
        .expect("StartContainer udp");

    let deadline = Instant::now() + Duration::from_secs(15);
    let response = loop {
        match http_get(tcp_port) {
            Ok(text) if text.contains(WEB_BODY) => break text,
            other => assert!(
                Instant::now() < deadline,
                "127.0.0.1:{tcp_port} did not serve the pod's page: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        response.starts_with("HTTP/1.") && response.contains(" 200 "),
        "{response}"
    );

    let socket = UdpSocket::bind("127.0.0.1:0").expect("udp socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let deadline = Instant::now() + Duration::from_secs(15);
    let echoed = loop {
        socket
            .send_to(b"ping-from-host", ("127.0.0.1", udp_port))
            .expect("send");
        let mut buf = [0u8; 64];
        if let Ok(n) = socket.recv(&mut buf) {
            break String::from_utf8_lossy(&buf[..n]).to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no UDP echo through 127.0.0.1:{udp_port}"
        );
    };
    assert_eq!(echoed, "echo:ping-from-host");

    // After StopPodSandbox the mapping is gone with the pod's network.
    stop(&mut cri, &pod_id).await;
    assert!(
        http_get(tcp_port).is_err(),
        "127.0.0.1:{tcp_port} still answers after the pod stopped"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_network_pod_sees_the_host_interfaces_and_reports_its_ip() {
    let registry = Registry::with_test_images();
    let daemon = daemon(&registry);
    let mut cri = daemon.client().await;
    let pod = host_network(pod_config("hostnet", &daemon.dirs.log_dir));
    let (pod_id, ctr) = client_pod(&mut cri, &registry, &pod, "").await;
    let ips = pod_ips(&mut cri, &pod_id).await;
    assert!(!ips.is_empty(), "a host-network pod reports the host's IP");
    let host_addrs: Vec<IpAddr> = nix::ifaddrs::getifaddrs()
        .expect("getifaddrs")
        .filter_map(|i| {
            let a = i.address?;
            a.as_sockaddr_in()
                .map(|s| IpAddr::V4(s.ip()))
                .or_else(|| a.as_sockaddr_in6().map(|s| IpAddr::V6(s.ip())))
        })
        .collect();
    for addr in &ips {
        assert!(host_addrs.contains(&ip(addr)), "{addr} is not the host's");
    }
    let inside = cri.exec(&ctr, &["cat", "/proc/net/dev"]).await;
    let inside = String::from_utf8_lossy(&inside.stdout).to_string();
    let host = std::fs::read_to_string("/proc/net/dev").expect("host /proc/net/dev");
    for iface in host.lines().skip(2).filter_map(|l| l.split(':').next()) {
        assert!(
            inside.contains(&format!("{}:", iface)),
            "{} missing inside the pod:\n{inside}",
            iface.trim()
        );
    }
    assert!(pinned_namespaces(&daemon).is_empty(), "no namespace pinned");
}

async fn a_dual_stack_pod_gets_and_serves_on_ipv4_and_ipv6(handler: &str) {
    let net = TestNetwork::new(true);
    let registry = Registry::with_test_images();
    let daemon = daemon(&registry);
    // A 0.4.0 list: the plugins answer with 0.4.0 results (`ips` with `version`).
    net.install(
        &daemon.dirs.network_dir,
        &net.conflist("0.4.0", vec![net.bridge_plugin()]),
    );
    let mut cri = daemon.client().await;
    let (web, _) = web_pod(
        &mut cri,
        &registry,
        &pod_config("web6", &daemon.dirs.log_dir),
        handler,
    )
    .await;
    let (_, client) = client_pod(
        &mut cri,
        &registry,
        &pod_config("client6", &daemon.dirs.log_dir),
        handler,
    )
    .await;
    let ips = pod_ips(&mut cri, &web).await;
    assert_eq!(ips.len(), 2, "{ips:?}");
    assert!(
        ip(&ips[0]).is_ipv4() && net.contains(&ips[0]),
        "primary {ips:?}"
    );
    assert!(
        ip(&ips[1]).is_ipv6() && ips[1].starts_with("fd85:213:"),
        "additional {ips:?}"
    );
    for addr in &ips {
        assert_eq!(http_from(&mut cri, &client, addr).await, WEB_BODY, "{addr}");
    }
}

async fn a_failing_plugin_fails_the_pod_by_name_and_leaks_nothing(handler: &str) {
    let net = TestNetwork::new(false);
    let registry = Registry::with_test_images();
    let daemon = daemon(&registry);
    // bridge and host-local succeed (an IP is taken), then tuning fails.
    let tuning =
        json!({"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.crio_test_no_such_key": "1"}});
    net.install(
        &daemon.dirs.network_dir,
        &net.conflist("1.0.0", vec![net.bridge_plugin(), tuning]),
    );
    let mut cri = daemon.client().await;
    let err = cri
        .run_pod(&pod_config("broken", &daemon.dirs.log_dir), handler)
        .await
        .expect_err("tuning fails");
    assert_eq!(err.code(), Code::Internal, "{err:?}");
    assert!(
        err.message().contains("CNI plugin tuning failed ADD")
            && err.message().contains("crio_test_no_such_key"),
        "{}",
        err.message()
    );
    assert!(cri.pods().await.is_empty(), "no pod is left");
    assert!(net.allocated_ips().is_empty(), "the IP went back");
    assert!(
        pinned_namespaces(&daemon).is_empty(),
        "no namespace is left"
    );
    // The shim was told to shut down and exits on its own.
    let begun = Instant::now();
    loop {
        let left: Vec<String> = crio_tests::cleanup::processes_with_cwd_under(&daemon.dirs.base)
            .iter()
            .map(|p| std::fs::read_to_string(format!("/proc/{p}/cmdline")).unwrap_or_default())
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            begun.elapsed() < Duration::from_secs(5),
            "no shim or VM is left: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn restart_keeps_networking_and_a_later_stop_releases_ips(handler: &str) {
    let net = TestNetwork::new(false);
    let registry = Registry::with_test_images();
    let mut daemon = daemon(&registry);
    net.install(
        &daemon.dirs.network_dir,
        &net.conflist(
            "1.0.0",
            vec![net.bridge_plugin(), TestNetwork::portmap_plugin()],
        ),
    );
    let mut cri = daemon.client().await;
    let (web, _) = web_pod(
        &mut cri,
        &registry,
        &pod_config("web-r", &daemon.dirs.log_dir),
        handler,
    )
    .await;
    let (gone, _) = client_pod(
        &mut cri,
        &registry,
        &pod_config("gone-r", &daemon.dirs.log_dir),
        handler,
    )
    .await;
    let web_ip = pod_ips(&mut cri, &web).await;
    let gone_ip = pod_ips(&mut cri, &gone).await;
    drop(cri);

    daemon.stop();
    daemon.restart();
    let mut cri = daemon.client().await;
    assert_eq!(
        pod_ips(&mut cri, &web).await,
        web_ip,
        "same IP after restart"
    );
    let (client, client_ctr) = client_pod(
        &mut cri,
        &registry,
        &pod_config("client-r", &daemon.dirs.log_dir),
        handler,
    )
    .await;
    let body = http_from(&mut cri, &client_ctr, &web_ip[0]).await;
    assert_eq!(body, WEB_BODY);

    // A pod whose namespace vanished (unpinned behind the daemon's back) still
    // stops, and its IP is released.
    let pin = daemon.dirs.runroot.join("netns").join(&gone);
    nix::mount::umount2(&pin, nix::mount::MntFlags::MNT_DETACH).expect("unpin");
    stop(&mut cri, &gone).await;
    assert!(!net.allocated_ips().contains(&ip(&gone_ip[0])));

    stop(&mut cri, &web).await;
    let client_ip = pod_ips(&mut cri, &client).await;
    assert_eq!(net.allocated_ips(), [ip(&client_ip[0])]);
}

async fn bandwidth_annotations_shape_the_pod_through_the_bandwidth_plugin(handler: &str) {
    let net = TestNetwork::new(false);
    let registry = Registry::with_test_images();
    let daemon = daemon(&registry);
    let bandwidth = json!({"type": "bandwidth", "capabilities": {"bandwidth": true}});
    net.install(
        &daemon.dirs.network_dir,
        &net.conflist("1.0.0", vec![net.bridge_plugin(), bandwidth]),
    );
    let mut cri = daemon.client().await;
    let mut pod = pod_config("shaped", &daemon.dirs.log_dir);
    pod.annotations
        .insert("kubernetes.io/ingress-bandwidth".into(), "1M".into());
    let pod_id = cri.run_pod(&pod, handler).await.expect("RunPodSandbox");
    // The pod's host-side veth is the one port of the test's bridge; ingress to the
    // pod is shaped there with a token bucket at the annotation's rate.
    let links = std::process::Command::new("ip")
        .args(["-o", "link", "show", "master", &net.bridge])
        .output()
        .expect("ip link");
    let links = String::from_utf8_lossy(&links.stdout).to_string();
    let veth = links
        .split(": ")
        .nth(1)
        .and_then(|n| n.split('@').next())
        .unwrap_or_else(|| panic!("no port on {}: {links}", net.bridge))
        .to_string();
    let qdisc = std::process::Command::new("tc")
        .args(["qdisc", "show", "dev", &veth])
        .output()
        .expect("tc");
    let qdisc = String::from_utf8_lossy(&qdisc.stdout).to_string();
    assert!(
        qdisc.contains("tbf") && qdisc.contains("rate 1Mbit"),
        "{veth}: {qdisc}"
    );
    stop(&mut cri, &pod_id).await;
    assert!(net.allocated_ips().is_empty());
}

// ---- the protocol as a plugin sees it ----

/// A plugin dir holding the recording plugin, and the log it writes.
struct Recorder {
    dir: tempfile::TempDir,
}

impl Recorder {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink(
            env!("CARGO_BIN_EXE_cni-recorder"),
            dir.path().join("cni-recorder"),
        )
        .expect("link plugin");
        Self { dir }
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("calls.jsonl")
    }

    fn dropin(&self) -> String {
        format!(
            "[crio.network]\nplugin_dirs = [{:?}, \"/usr/lib/cni\"]\n",
            self.dir.path()
        )
    }

    fn conflist(&self, fail_status: bool) -> String {
        json!({
            "cniVersion": "1.1.0",
            "name": "recorded",
            "plugins": [{
                "type": "cni-recorder",
                "logFile": self.log(),
                "address": "10.213.251.7/24",
                "failStatus": fail_status,
                "capabilities": {"portMappings": true, "bandwidth": true, "ips": true}
            }]
        })
        .to_string()
    }

    /// The complete records so far (a line still being written is left for later).
    fn calls(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.log()).unwrap_or_default();
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        complete
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    }

    fn calls_of(&self, command: &str) -> Vec<Value> {
        self.calls()
            .into_iter()
            .filter(|c| c["command"] == command)
            .collect()
    }

    async fn wait_for(&self, command: &str) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let calls = self.calls_of(command);
            if !calls.is_empty() {
                return calls;
            }
            assert!(
                Instant::now() < deadline,
                "no {command} call: {:?}",
                self.calls()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn network_condition(cri: &mut crio_tests::cri::CriClient) -> (bool, String) {
    let status = cri.status(false).await;
    let c = status
        .status
        .expect("conditions")
        .conditions
        .into_iter()
        .find(|c| c.r#type == "NetworkReady")
        .expect("NetworkReady");
    (c.status, c.message)
}

#[tokio::test(flavor = "multi_thread")]
async fn plugins_get_the_pod_args_capabilities_and_every_command() {
    let recorder = Recorder::new();
    let registry = Registry::with_test_images();
    let mut daemon = daemon_with(
        &registry,
        Daemon::builder()
            .no_network()
            .dropin("50-recorder.conf", &recorder.dropin()),
    );
    let mut cri = daemon.client().await;

    // No conflist yet: not ready, and a pod with its own network is refused.
    let (ready, message) = network_condition(&mut cri).await;
    assert!(!ready);
    assert!(
        message.contains(&daemon.dirs.network_dir.display().to_string()),
        "{message}"
    );
    let err = cri
        .run_pod(&pod_config("early", &daemon.dirs.log_dir), "")
        .await
        .expect_err("no network");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");

    // A list naming a plugin nobody installed is not ready either.
    std::fs::write(
        daemon.dirs.network_dir.join("10-test.conflist"),
        r#"{"cniVersion":"1.0.0","name":"m","plugins":[{"type":"crio-test-missing"}]}"#,
    )
    .expect("write");
    let (ready, message) = network_condition(&mut cri).await;
    assert!(!ready && message.contains("crio-test-missing"), "{message}");

    // A 1.1.0 list: STATUS decides readiness.
    std::fs::write(
        daemon.dirs.network_dir.join("10-test.conflist"),
        recorder.conflist(true),
    )
    .expect("write");
    let (ready, message) = network_condition(&mut cri).await;
    assert!(!ready, "STATUS failed");
    assert!(
        message.contains("cni-recorder failed STATUS (code 50): recorder not ready: told to fail"),
        "{message}"
    );
    std::fs::write(
        daemon.dirs.network_dir.join("10-test.conflist"),
        recorder.conflist(false),
    )
    .expect("write");
    assert!(
        network_condition(&mut cri).await.0,
        "ready once STATUS passes"
    );
    let status = &recorder.calls_of("STATUS")[0];
    assert_eq!(status["containerId"], "", "STATUS is not about a container");

    // Bad bandwidth: refused before anything is created.
    let mut bad = pod_config("bad", &daemon.dirs.log_dir);
    bad.annotations
        .insert("kubernetes.io/ingress-bandwidth".into(), "fast".into());
    let err = cri.run_pod(&bad, "").await.expect_err("bad annotation");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("kubernetes.io/ingress-bandwidth"),
        "{err:?}"
    );
    assert!(recorder.calls_of("ADD").is_empty());

    let mut pod = pod_config("recorded", &daemon.dirs.log_dir);
    pod.port_mappings = vec![PortMapping {
        protocol: Protocol::Udp as i32,
        container_port: 53,
        host_port: 5353,
        host_ip: "127.0.0.1".into(),
    }];
    pod.annotations
        .insert("kubernetes.io/ingress-bandwidth".into(), "1M".into());
    pod.annotations
        .insert("crio-rs.io/ips".into(), "10.213.251.7/24".into());
    let pod_id = cri.run_pod(&pod, "").await.expect("RunPodSandbox");
    assert_eq!(pod_ips(&mut cri, &pod_id).await, ["10.213.251.7"]);
    let add = &recorder.calls_of("ADD")[0];
    let meta = pod.metadata.as_ref().expect("metadata");
    assert_eq!(
        add["args"],
        format!(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=recorded;K8S_POD_INFRA_CONTAINER_ID={pod_id};K8S_POD_UID={}",
            meta.uid
        )
    );
    assert_eq!(add["containerId"], pod_id.as_str());
    assert_eq!(add["ifname"], "eth0");
    let netns = daemon.dirs.runroot.join("netns").join(&pod_id);
    assert_eq!(add["netns"], netns.display().to_string());
    assert!(add["path"]
        .as_str()
        .is_some_and(|p| p.starts_with(&recorder.dir.path().display().to_string())));
    let conf = &add["config"];
    assert_eq!(conf["name"], "recorded");
    assert_eq!(conf["cniVersion"], "1.1.0");
    assert_eq!(
        conf["runtimeConfig"],
        json!({
            "portMappings": [{"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "127.0.0.1"}],
            "bandwidth": {"ingressRate": 1_000_000u64, "ingressBurst": 34_359_738_359u64},
            "ips": ["10.213.251.7/24"]
        }),
        "only the capabilities the plugin declared"
    );

    // A restart CHECKs the pod's attachment with its ADD result, then GCs with
    // the pod as a valid attachment.
    daemon.stop();
    daemon.restart();
    let check = &recorder.wait_for("CHECK").await[0];
    assert_eq!(check["containerId"], pod_id.as_str());
    assert_eq!(
        check["config"]["prevResult"]["ips"][0]["address"],
        "10.213.251.7/24"
    );
    let gc = &recorder.wait_for("GC").await[0];
    assert_eq!(
        gc["config"]["cni.dev/valid-attachments"],
        json!([{"containerID": pod_id, "ifname": "eth0"}])
    );

    let mut cri = daemon.client().await;
    stop(&mut cri, &pod_id).await;
    let del = recorder.calls_of("DEL");
    assert_eq!(del.len(), 1, "{del:?}");
    assert_eq!(del[0]["netns"], netns.display().to_string());
    assert_eq!(
        del[0]["config"]["prevResult"]["ips"][0]["address"],
        "10.213.251.7/24"
    );
    assert_eq!(del[0]["config"]["runtimeConfig"], conf["runtimeConfig"]);
    // DEL ran once; stopping again and removing does not repeat it.
    stop(&mut cri, &pod_id).await;
    remove(&mut cri, &pod_id).await;
    assert_eq!(recorder.calls_of("DEL").len(), 1);
    assert!(!Path::new(&netns).exists());
}

crio_tests::on_runc_and_kata!(
    pods_on_a_bridge_reach_each_other_and_stop_releases_their_ips,
    the_host_reaches_tcp_and_udp_host_ports_on_loopback,
    a_dual_stack_pod_gets_and_serves_on_ipv4_and_ipv6,
    a_failing_plugin_fails_the_pod_by_name_and_leaks_nothing,
    restart_keeps_networking_and_a_later_stop_releases_ips,
    bandwidth_annotations_shape_the_pod_through_the_bandwidth_plugin,
);

/// `disable_hostport_mapping`: a pod's hostPorts are accepted and not handed to
/// the plugins (whatever maps them on the node does), as CRI-O does.
#[tokio::test(flavor = "multi_thread")]
async fn disabled_hostport_mapping_keeps_port_mappings_from_the_plugins() {
    let recorder = Recorder::new();
    let registry = Registry::with_test_images();
    let daemon = daemon_with(
        &registry,
        Daemon::builder()
            .no_network()
            .dropin("50-recorder.conf", &recorder.dropin())
            .dropin(
                "60-hostports.conf",
                "[crio.runtime]\ndisable_hostport_mapping = true\n",
            ),
    );
    std::fs::write(
        daemon.dirs.network_dir.join("10-test.conflist"),
        recorder.conflist(false),
    )
    .expect("write");
    let mut cri = daemon.client().await;
    let mut pod = pod_config("no-hostports", &daemon.dirs.log_dir);
    pod.port_mappings = vec![PortMapping {
        protocol: Protocol::Tcp as i32,
        container_port: 80,
        host_port: 8080,
        host_ip: String::new(),
    }];
    pod.annotations
        .insert("kubernetes.io/ingress-bandwidth".into(), "1M".into());
    let pod_id = cri.run_pod(&pod, "").await.expect("RunPodSandbox");
    let add = &recorder.calls_of("ADD")[0];
    assert_eq!(
        add["config"]["runtimeConfig"],
        json!({"bandwidth": {"ingressRate": 1_000_000u64, "ingressBurst": 34_359_738_359u64}}),
        "no portMappings"
    );
    stop(&mut cri, &pod_id).await;
}
