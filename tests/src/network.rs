//! A CNI bridge network a test owns: its own bridge name, a private subnet no other
//! network on the host uses, and host-local's allocations under the test's temp
//! dir. Dropping it deletes the bridge (and nothing else the test did not create).

use std::net::{IpAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use std::time::{Duration, Instant};

use protocols::cri::PodSandboxConfig;
use serde_json::{json, Value};

use crate::pods::container_config;
use crate::{Registry, TestImage};

/// A static UDP echo server (`udp-echo PORT`), built by `tests/build.rs`, to
/// bind-mount into busybox containers.
pub const UDP_ECHO: &str = env!("CRIO_TEST_UDP_ECHO");

static NEXT: AtomicU32 = AtomicU32::new(0);

#[derive(Debug)]
pub struct TestNetwork {
    /// Also the CNI network name.
    pub name: String,
    pub bridge: String,
    /// `10.213.N.0/24`.
    pub subnet: String,
    /// `fd85:213:N::/64` when dual-stack.
    pub subnet6: Option<String>,
    /// host-local's `dataDir`.
    pub data_dir: PathBuf,
    _dir: tempfile::TempDir,
}

fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

fn route_exists(subnet: &str) -> bool {
    let family = if subnet.contains(':') { "-6" } else { "-4" };
    Command::new("ip")
        .args([family, "route", "show", subnet])
        .output()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(true)
}

impl TestNetwork {
    /// An IPv4 network, or a dual-stack one.
    pub fn new(dual_stack: bool) -> Self {
        crate::require_root();
        let dir = tempfile::Builder::new()
            .prefix("crio-test-net-")
            .tempdir()
            .expect("temp dir");
        let seed = std::process::id();
        for _ in 0..250 {
            let n = (seed
                .wrapping_mul(7)
                .wrapping_add(NEXT.fetch_add(1, Ordering::SeqCst)))
                % 250;
            let bridge = format!("crt{:x}{n}", seed % 4096);
            let subnet = format!("10.213.{n}.0/24");
            let subnet6 = dual_stack.then(|| format!("fd85:213:{n:x}::/64"));
            if link_exists(&bridge)
                || route_exists(&subnet)
                || subnet6.as_deref().is_some_and(route_exists)
            {
                continue;
            }
            return Self {
                name: format!("crio-test-{bridge}"),
                bridge,
                subnet,
                subnet6,
                data_dir: dir.path().join("ipam"),
                _dir: dir,
            };
        }
        panic!("no free test bridge name and subnet");
    }

    /// The bridge plugin's entry: a gateway on the bridge, no masquerading (pod
    /// traffic stays on the bridge), IPs from this network's subnets.
    pub fn bridge_plugin(&self) -> Value {
        let mut ranges = vec![json!([{"subnet": self.subnet}])];
        if let Some(v6) = &self.subnet6 {
            ranges.push(json!([{"subnet": v6}]));
        }
        json!({
            "type": "bridge",
            "bridge": self.bridge,
            "isGateway": true,
            "ipMasq": false,
            "hairpinMode": true,
            "ipam": {"type": "host-local", "dataDir": self.data_dir, "ranges": ranges}
        })
    }

    pub fn portmap_plugin() -> Value {
        json!({"type": "portmap", "snat": true, "capabilities": {"portMappings": true}})
    }

    /// A `.conflist` of `plugins` under this network's name.
    pub fn conflist(&self, version: &str, plugins: Vec<Value>) -> String {
        json!({"cniVersion": version, "name": self.name, "plugins": plugins}).to_string()
    }

    /// Writes the conflist where the daemon reads it; it sorts before the
    /// harness's loopback list, so it is the default network.
    pub fn install(&self, network_dir: &Path, conflist: &str) {
        std::fs::write(network_dir.join("10-test.conflist"), conflist).expect("write conflist");
    }

    /// The addresses host-local holds right now (one file per allocated IP).
    pub fn allocated_ips(&self) -> Vec<IpAddr> {
        let Ok(entries) = std::fs::read_dir(self.data_dir.join(&self.name)) else {
            return Vec::new();
        };
        let mut ips: Vec<IpAddr> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        ips.sort();
        ips
    }

    /// Whether `ip` is in this network's IPv4 /24.
    pub fn contains(&self, ip: &str) -> bool {
        let prefix = self.subnet.trim_end_matches("0/24");
        ip.starts_with(prefix)
    }
}

impl Drop for TestNetwork {
    fn drop(&mut self) {
        if link_exists(&self.bridge) {
            let _ = Command::new("ip")
                .args(["link", "del", &self.bridge])
                .status();
        }
    }
}

/// A port on 127.0.0.1 nothing listens on right now.
pub fn free_port(udp: bool) -> u16 {
    if udp {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("free udp port")
            .port()
    } else {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("free tcp port")
            .port()
    }
}

/// What the web test image serves as `/index.html`.
pub const WEB_BODY: &str = "hello from crio-tests web\n";

/// A pod whose container serves the web image's `/www` on port 80.
pub async fn web_pod(
    cri: &mut crate::cri::CriClient,
    registry: &Registry,
    pod: &PodSandboxConfig,
    handler: &str,
) -> (String, String) {
    let image = registry.reference(TestImage::Web);
    cri.pull(&image, None).await.expect("pull web");
    let pod_id = cri.run_pod(pod, handler).await.expect("RunPodSandbox");
    let mut config = container_config("web", &image, "");
    config.command.clear();
    let id = cri
        .create_container(&pod_id, &config, pod)
        .await
        .expect("CreateContainer web");
    cri.start_container(&id).await.expect("StartContainer web");
    (pod_id, id)
}

/// A pod whose busybox container just waits (to run clients in).
pub async fn client_pod(
    cri: &mut crate::cri::CriClient,
    registry: &Registry,
    pod: &PodSandboxConfig,
    handler: &str,
) -> (String, String) {
    let image = registry.reference(TestImage::Busybox);
    cri.pull(&image, None).await.expect("pull busybox");
    let pod_id = cri.run_pod(pod, handler).await.expect("RunPodSandbox");
    let config = container_config("client", &image, "sleep 3600");
    let id = cri
        .create_container(&pod_id, &config, pod)
        .await
        .expect("CreateContainer client");
    cri.start_container(&id)
        .await
        .expect("StartContainer client");
    (pod_id, id)
}

/// An HTTP GET of `/index.html` from inside a container with busybox `nc` (Debian's
/// static busybox `wget` crashes in a fresh network namespace), retried until the
/// server answers (it may still be starting, an IPv6 address may be tentative).
/// Returns the body.
pub async fn http_from(cri: &mut crate::cri::CriClient, container: &str, addr: &str) -> String {
    let script =
        format!("printf 'GET /index.html HTTP/1.0\\r\\nHost: pod\\r\\n\\r\\n' | nc -w 3 {addr} 80");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = cri.exec(container, &["sh", "-c", &script]).await;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if out.exit_code == 0 && text.starts_with("HTTP/1.") {
            assert!(text.contains(" 200 "), "{text}");
            return text
                .split_once("\r\n\r\n")
                .map(|(_, body)| body.to_string())
                .unwrap_or_default();
        }
        assert!(
            Instant::now() < deadline,
            "GET http://{addr}/index.html from {container} kept failing ({}): {text} {}",
            out.exit_code,
            String::from_utf8_lossy(&out.stderr)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub async fn pod_ips(cri: &mut crate::cri::CriClient, pod_id: &str) -> Vec<String> {
    let status = cri.pod_status(pod_id).await;
    let network = status.network.expect("network status");
    std::iter::once(network.ip)
        .filter(|ip| !ip.is_empty())
        .chain(network.additional_ips.into_iter().map(|p| p.ip))
        .collect()
}

/// An HTTP GET of `/index.html` from the host, to `127.0.0.1:port`.
pub fn http_get(port: u16) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut stream =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(b"GET /index.html HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    Ok(text)
}
