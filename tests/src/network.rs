//! A CNI bridge network a test owns: its own bridge name, a private subnet no other
//! network on the host uses, and host-local's allocations under the test's temp
//! dir. Dropping it deletes the bridge (and nothing else the test did not create).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::{json, Value};

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
