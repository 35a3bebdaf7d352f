//! A real OCI registry (Debian's `docker-registry`, CNCF distribution 2.8) on a
//! loopback port, with its own config and storage, stopped when dropped.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use crate::test_images::TestImage;
use crate::{process, test_images};

pub const REGISTRY_BINARY: &str = "/usr/bin/docker-registry";

/// A running registry.
#[derive(Debug)]
pub struct Registry {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// `(user, password)` when it requires basic auth.
    pub credentials: Option<(String, String)>,
    child: Child,
    dir: tempfile::TempDir,
}

impl Registry {
    /// An empty registry, anonymous access.
    pub fn start() -> Self {
        Self::launch(None)
    }

    /// An empty registry that requires basic auth (htpasswd, bcrypt).
    pub fn start_with_auth(user: &str, password: &str) -> Self {
        Self::launch(Some((user.to_string(), password.to_string())))
    }

    /// A registry holding every [`TestImage`].
    pub fn with_test_images() -> Self {
        let registry = Self::start();
        registry.push_test_images(&TestImage::ALL);
        registry
    }

    fn launch(credentials: Option<(String, String)>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("crio-registry-")
            .tempdir()
            .expect("registry dir");
        let port = process::free_port();
        let addr = format!("127.0.0.1:{port}");
        let mut auth = String::new();
        if let Some((user, password)) = &credentials {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .expect("htpasswd (apache2-utils) must be installed");
            assert!(out.status.success(), "htpasswd failed");
            let htpasswd = dir.path().join("htpasswd");
            fs::write(&htpasswd, &out.stdout).expect("write htpasswd");
            auth = format!(
                "auth:\n  htpasswd:\n    realm: crio-test\n    path: {}\n",
                htpasswd.display()
            );
        }
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\n  formatter: text\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n  secret: crio-test-secret\n{auth}",
            dir.path().join("data").display()
        );
        let config_path = dir.path().join("config.yml");
        fs::write(&config_path, config).expect("write registry config");
        fs::write(
            dir.path().join("policy.json"),
            r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
        )
        .expect("write policy");
        let log = fs::File::create(dir.path().join("registry.log")).expect("registry log");
        let mut cmd = Command::new(REGISTRY_BINARY);
        cmd.arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log);
        process::die_with_parent(&mut cmd);
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!("{REGISTRY_BINARY}: {e} (install Debian's docker-registry: tests/setup.sh does)")
        });
        let mut registry = Self {
            addr,
            credentials,
            child,
            dir,
        };
        registry.wait_ready();
        registry
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            // /v2/ answers 200 or 401 once the registry serves.
            if let Ok(resp) = crate::http::get(&format!("http://{}/v2/", self.addr), &[], None) {
                if resp.status == 200 || resp.status == 401 {
                    return;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("registry exited ({status}): {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("registry on {} not ready: {}", self.addr, self.log());
    }

    /// How many times the registry served `GET` of `path` (from its access log).
    pub fn get_count(&self, path: &str) -> usize {
        let needle = format!("\"GET {path} ");
        self.log().matches(&needle).count()
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// `127.0.0.1:PORT/repo:tag`.
    pub fn reference(&self, image: TestImage) -> String {
        format!("{}/{}", self.addr, image.repo_tag())
    }

    /// Builds the test images and pushes `images` with skopeo.
    pub fn push_test_images(&self, images: &[TestImage]) {
        let layout_dir = self.dir.path().join("layout");
        test_images::build_layout(&layout_dir);
        for image in images {
            let (layout_ref, all, format) = test_images::push_plan(*image);
            self.push(&layout_dir, layout_ref, image.repo_tag(), all, format);
        }
    }

    /// `skopeo copy oci:<layout>:<ref> docker://<addr>/<repo_tag>`.
    pub fn push(
        &self,
        layout: &Path,
        layout_ref: &str,
        repo_tag: &str,
        all: bool,
        format: Option<&str>,
    ) {
        let mut cmd = Command::new("skopeo");
        cmd.arg("--policy")
            .arg(self.dir.path().join("policy.json"))
            .args(["copy", "--quiet", "--dest-tls-verify=false"]);
        if all {
            cmd.arg("--all");
        }
        if let Some(format) = format {
            cmd.args(["--format", format]);
        }
        if let Some((user, password)) = &self.credentials {
            cmd.arg("--dest-creds").arg(format!("{user}:{password}"));
        }
        cmd.arg(format!("oci:{}:{layout_ref}", layout.display()))
            .arg(format!("docker://{}/{repo_tag}", self.addr));
        let out = cmd.output().expect("skopeo must be installed");
        assert!(
            out.status.success(),
            "skopeo push of {repo_tag} failed: {}\nregistry log: {}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        process::terminate(&mut self.child, Duration::from_secs(5));
    }
}
