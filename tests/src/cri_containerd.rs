//! Debian's containerd 1.6 with its CRI plugin and Go shim, on a private root, state
//! and socket: the reference the benchmarks measure against. Its sandbox image is
//! the test registry's pause image.

use std::time::{Duration, Instant};

use crate::cri::CriClient;
use crate::Registry;

/// Debian's containerd with its CRI plugin, on a private root, state and socket.
#[derive(Debug)]
pub struct CriContainerd {
    dir: tempfile::TempDir,
    child: std::process::Child,
}

impl CriContainerd {
    /// `conflist`: the CNI network its pods get (none: host-network pods only).
    pub fn start(registry: &Registry, conflist: Option<&str>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("bench-containerd-")
            .tempdir()
            .expect("tempdir");
        let d = dir.path();
        std::fs::create_dir_all(d.join("net.d")).expect("net.d");
        if let Some(list) = conflist {
            std::fs::write(d.join("net.d/10-bench.conflist"), list).expect("conflist");
        }
        let addr = &registry.addr;
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{addr}/test/pause:latest"
  # No CAP_SYS_RESOURCE on this machine kind: never below containerd's own score.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{netd}"
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."{addr}"]
    endpoint = ["http://{addr}"]
"#,
            root = d.join("root").display(),
            state = d.join("state").display(),
            sock = d.join("containerd.sock").display(),
            netd = d.join("net.d").display(),
        );
        std::fs::write(d.join("config.toml"), config).expect("config");
        let log = std::fs::File::create(d.join("containerd.log")).expect("log");
        let child = std::process::Command::new("/usr/bin/containerd")
            .arg("--config")
            .arg(d.join("config.toml"))
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("start containerd (apt-get install containerd)");
        let sock = d.join("containerd.sock");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect(&sock).is_err() {
            assert!(Instant::now() < deadline, "containerd did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { dir, child }
    }

    /// For a benchmark whose `handlers` name `containerd`: containerd started as
    /// [`Self::start`] does, and a client on it that has pulled `image`.
    pub async fn for_handlers(
        handlers: &[String],
        registry: &Registry,
        conflist: Option<&str>,
        image: &str,
    ) -> Option<(Self, CriClient)> {
        if !handlers.iter().any(|h| h == "containerd") {
            return None;
        }
        let containerd = Self::start(registry, conflist);
        let mut cri = containerd.client().await;
        cri.pull(image, None).await.expect("containerd: pull");
        Some((containerd, cri))
    }

    pub async fn client(&self) -> CriClient {
        CriClient::connect(&self.dir.path().join("containerd.sock"))
            .await
            .expect("connect to containerd")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where containerd's shim for a pod works.
    pub fn bundle(&self, pod_id: &str) -> std::path::PathBuf {
        self.dir
            .path()
            .join("state/io.containerd.runtime.v2.task/k8s.io")
            .join(pod_id)
    }
}

impl Drop for CriContainerd {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
        crate::cleanup::kill_pods_under(self.dir.path(), self.dir.path());
        crate::cleanup::unmount_all_under(self.dir.path());
    }
}

/// In a benchmark comparing handlers: the CRI endpoint serving `handler` and the
/// runtime handler name to ask it for (containerd's default for `containerd`).
pub fn endpoint<'a>(
    handler: &'a str,
    crio: &'a mut CriClient,
    containerd: Option<&'a mut CriClient>,
) -> (&'a mut CriClient, &'a str) {
    match (handler, containerd) {
        ("containerd", Some(c)) => (c, ""),
        _ => (crio, handler),
    }
}
