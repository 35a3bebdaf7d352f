//! A real OCI registry (Debian's `docker-registry`, CNCF distribution 2.8) on a
//! loopback port, with its own config and storage, stopped when dropped. It can
//! serve TLS with a certificate from a throwaway CA ([`TestCa`]), and require basic
//! auth (htpasswd) or bearer tokens from a [`TokenServer`].

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::token_server::TokenServer;

pub use crate::test_images::TestImage;
use crate::{process, test_images};

pub const REGISTRY_BINARY: &str = "/usr/bin/docker-registry";

/// A running registry.
#[derive(Debug)]
pub struct Registry {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// `(user, password)` when it requires basic auth or tokens (what pushes use).
    pub credentials: Option<(String, String)>,
    /// Whether it serves HTTPS.
    pub tls: bool,
    child: Child,
    dir: tempfile::TempDir,
}

impl Registry {
    /// An empty registry, anonymous access.
    pub fn start() -> Self {
        Self::start_with(RegistryOptions::default())
    }

    /// An empty registry that requires basic auth (htpasswd, bcrypt).
    pub fn start_with_auth(user: &str, password: &str) -> Self {
        Self::start_with(RegistryOptions {
            basic_auth: Some((user.to_string(), password.to_string())),
            ..RegistryOptions::default()
        })
    }

    /// An empty registry as `options` say.
    pub fn start_with(options: RegistryOptions<'_>) -> Self {
        Self::launch(options)
    }

    /// A registry holding every [`TestImage`].
    pub fn with_test_images() -> Self {
        let registry = Self::start();
        registry.push_test_images(&TestImage::ALL);
        registry
    }

    fn launch(options: RegistryOptions<'_>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("crio-registry-")
            .tempdir()
            .expect("registry dir");
        let port = process::free_port();
        let addr = format!("127.0.0.1:{port}");
        let mut auth = String::new();
        let mut credentials = options.basic_auth.clone();
        if let Some(token) = options.token_auth {
            assert!(
                credentials.is_none(),
                "a registry uses basic auth or tokens, not both"
            );
            credentials = Some(token.credentials());
            auth = format!(
                "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                token.realm(),
                token.service,
                token.issuer,
                token.cert_path.display()
            );
        }
        if let Some((user, password)) = &options.basic_auth {
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
        let tls = options
            .tls
            .map(|ca| {
                format!(
                    "  tls:\n    certificate: {}\n    key: {}\n",
                    ca.server_cert.display(),
                    ca.server_key.display()
                )
            })
            .unwrap_or_default();
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\n  formatter: text\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n  secret: crio-test-secret\n{tls}{auth}",
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
            tls: options.tls.is_some(),
            child,
            dir,
        };
        registry.wait_ready();
        registry
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.tls {
                // The harness's HTTP client does not know the test CA: a TCP
                // connection means the registry listens (it binds when it serves).
                if std::net::TcpStream::connect(&self.addr).is_ok() {
                    return;
                }
            } else if let Ok(resp) =
                crate::http::get(&format!("http://{}/v2/", self.addr), &[], None)
            {
                // /v2/ answers 200 or 401 once the registry serves.
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

    /// A registries.conf that lets the daemon pull from this registry over plain
    /// HTTP.
    pub fn insecure_conf(&self) -> String {
        insecure_registry_conf(&self.addr)
    }

    /// The registry server's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How many times the registry served `GET` of `path` (from its access log).
    pub fn get_count(&self, path: &str) -> usize {
        let needle = format!("\"GET {path} ");
        self.log().matches(&needle).count()
    }

    /// The files holding the blobs the registry stores, which it serves as they are.
    pub fn blob_files(&self) -> Vec<PathBuf> {
        let root = self.dir.path().join("data/docker/registry/v2/blobs/sha256");
        let mut files = Vec::new();
        for prefix in fs::read_dir(&root).into_iter().flatten().flatten() {
            for blob in fs::read_dir(prefix.path()).into_iter().flatten().flatten() {
                let data = blob.path().join("data");
                if data.is_file() {
                    files.push(data);
                }
            }
        }
        files
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

    /// `skopeo copy oci:<layout>:<ref> docker://<addr>/<repo_tag>`, blobs unchanged
    /// unless `format` converts the manifest.
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
        match format {
            Some(format) => {
                cmd.args(["--format", format]);
            }
            // As the layout has them: skopeo would otherwise gzip uncompressed layers.
            None => {
                cmd.arg("--preserve-digests");
            }
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

/// How [`Registry::start_with`] starts a registry.
#[derive(Debug, Default, Clone)]
pub struct RegistryOptions<'a> {
    /// Require basic auth (htpasswd) with this user and password.
    pub basic_auth: Option<(String, String)>,
    /// Serve HTTPS with this CA's server certificate (for 127.0.0.1).
    pub tls: Option<&'a TestCa>,
    /// Require bearer tokens issued by this token server.
    pub token_auth: Option<&'a TokenServer>,
}

/// A throwaway CA and a server certificate it signed for `127.0.0.1` and
/// `localhost`, made with the `openssl` CLI in a temp dir removed on drop.
#[derive(Debug)]
pub struct TestCa {
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    dir: tempfile::TempDir,
}

impl TestCa {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("crio-ca-")
            .tempdir()
            .expect("ca dir");
        let p = |name: &str| dir.path().join(name);
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=crio-tests CA",
            "-keyout",
            path_str(&p("ca.key")),
            "-out",
            path_str(&p("ca.crt")),
        ]);
        openssl(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            path_str(&p("server.key")),
            "-out",
            path_str(&p("server.csr")),
        ]);
        fs::write(
            p("server.ext"),
            "subjectAltName = IP:127.0.0.1, DNS:localhost\nbasicConstraints = CA:FALSE\nkeyUsage = critical, digitalSignature\nextendedKeyUsage = serverAuth\n",
        )
        .expect("write server.ext");
        openssl(&[
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            path_str(&p("server.csr")),
            "-CA",
            path_str(&p("ca.crt")),
            "-CAkey",
            path_str(&p("ca.key")),
            "-CAcreateserial",
            "-extfile",
            path_str(&p("server.ext")),
            "-out",
            path_str(&p("server.crt")),
        ]);
        Self {
            ca_cert: p("ca.crt"),
            server_cert: p("server.crt"),
            server_key: p("server.key"),
            dir,
        }
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> Vec<u8> {
        fs::read(&self.ca_cert).expect("read CA certificate")
    }

    /// Writes the CA as `<certs_dir>/<host>/ca.crt` (containers-certs.d(5)).
    pub fn install(&self, certs_dir: &Path, host: &str) -> PathBuf {
        let dir = certs_dir.join(host);
        fs::create_dir_all(&dir).expect("certs.d host dir");
        let path = dir.join("ca.crt");
        fs::write(&path, self.ca_pem()).expect("write ca.crt");
        path
    }

    /// A client certificate (and its key) the CA signed, for mutual TLS.
    pub fn client_cert(&self, name: &str) -> (PathBuf, PathBuf) {
        let p = |f: &str| self.dir.path().join(format!("{name}.{f}"));
        openssl(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            path_str(&p("key")),
            "-out",
            path_str(&p("csr")),
        ]);
        fs::write(
            p("ext"),
            "basicConstraints = CA:FALSE\nkeyUsage = critical, digitalSignature\nextendedKeyUsage = clientAuth\n",
        )
        .expect("write client ext");
        openssl(&[
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            path_str(&p("csr")),
            "-CA",
            path_str(&self.ca_cert),
            "-CAkey",
            path_str(&self.dir.path().join("ca.key")),
            "-CAcreateserial",
            "-extfile",
            path_str(&p("ext")),
            "-out",
            path_str(&p("crt")),
        ]);
        (p("crt"), p("key"))
    }

    /// The temp dir holding the CA's files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

/// Runs `openssl args...`; panics with its stderr on failure.
/// A registries.conf that lets the daemon pull from `addr` over plain HTTP.
pub fn insecure_registry_conf(addr: &str) -> String {
    format!("[[registry]]\nlocation = \"{addr}\"\ninsecure = true\n")
}

pub fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("the openssl CLI must be installed");
    assert!(
        out.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Drop for Registry {
    fn drop(&mut self) {
        process::terminate(&mut self.child, Duration::from_secs(5));
    }
}
