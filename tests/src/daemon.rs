//! The real `crio` binary, on a private root, runroot, socket and config per test.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::cri::CriClient;
use crate::process;

/// How long a daemon gets to open its socket.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The `crio` binary under test: `$CRIO_BINARY`, else `target/<profile>/crio` beside
/// the test executable (build it first: `cargo build --bins`).
pub fn crio_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("CRIO_BINARY") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("current exe");
    // target/debug/deps/<test> -> target/debug/crio
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test exe has a target dir");
    let crio = profile_dir.join("crio");
    assert!(
        crio.is_file(),
        "{} not found: run `cargo build --bins` first or set CRIO_BINARY",
        crio.display()
    );
    crio
}

/// The CNI list every test daemon has unless a test brings its own: pods get a
/// network namespace with only `lo`, through a real plugin, and touch nothing
/// outside it. A test's own list sorts before it (`10-...`) and wins.
pub const LOOPBACK_CONFLIST: &str =
    r#"{"cniVersion":"1.0.0","name":"crio-test-loopback","plugins":[{"type":"loopback"}]}"#;

/// What to start a daemon with.
#[derive(Debug, Default)]
pub struct DaemonBuilder {
    main_config: Option<String>,
    dropins: Vec<(String, String)>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    registries_conf: Option<String>,
    root_tmpfs_bytes: Option<u64>,
    no_network: bool,
}

impl DaemonBuilder {
    /// A registries.conf for this daemon only (`CONTAINERS_REGISTRIES_CONF`).
    pub fn registries_conf(mut self, text: &str) -> Self {
        self.registries_conf = Some(text.to_string());
        self
    }

    /// Puts `[crio] root` on a tmpfs of this size (for disk-full tests).
    pub fn root_on_tmpfs(mut self, bytes: u64) -> Self {
        self.root_tmpfs_bytes = Some(bytes);
        self
    }

    /// Leaves the CNI conf dir empty (by default it holds [`LOOPBACK_CONFLIST`]).
    pub fn no_network(mut self) -> Self {
        self.no_network = true;
        self
    }

    /// Text of the main `crio.conf` (by default there is none).
    pub fn main_config(mut self, text: &str) -> Self {
        self.main_config = Some(text.to_string());
        self
    }

    /// A drop-in, read after the harness's own `00-test.conf`.
    pub fn dropin(mut self, name: &str, text: &str) -> Self {
        self.dropins.push((name.to_string(), text.to_string()));
        self
    }

    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_string());
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Starts the daemon and waits until its socket accepts connections.
    pub fn start(self) -> Daemon {
        let mut daemon = self.spawn();
        daemon.wait_ready();
        daemon
    }

    /// Starts the daemon without waiting (for tests of start-up failures).
    pub fn spawn(self) -> Daemon {
        crate::require_root();
        let dir = tempfile::Builder::new()
            .prefix("crio-test-")
            .tempdir()
            .expect("temp dir");
        let base = dir.path().to_path_buf();
        let daemon_dir = DaemonDirs::new(&base);
        fs::create_dir_all(&daemon_dir.config_dir).expect("config dir");
        fs::create_dir_all(&daemon_dir.network_dir).expect("cni dir");
        if !self.no_network {
            fs::write(
                daemon_dir.network_dir.join("99-loopback.conflist"),
                LOOPBACK_CONFLIST,
            )
            .expect("write loopback conflist");
        }
        fs::write(
            daemon_dir.config_dir.join("00-test.conf"),
            daemon_dir.test_dropin(),
        )
        .expect("write 00-test.conf");
        if let Some(text) = &self.main_config {
            fs::write(&daemon_dir.config_file, text).expect("write crio.conf");
        }
        for (name, text) in &self.dropins {
            fs::write(daemon_dir.config_dir.join(name), text).expect("write drop-in");
        }
        let mut env = self.env;
        // Never the host's registries.conf or credentials.
        let registries = daemon_dir.base.join("registries.conf");
        fs::write(&registries, self.registries_conf.unwrap_or_default()).expect("registries.conf");
        env.push((
            "CONTAINERS_REGISTRIES_CONF".into(),
            registries.display().to_string(),
        ));
        if !env.iter().any(|(k, _)| k == "REGISTRY_AUTH_FILE") {
            env.push((
                "REGISTRY_AUTH_FILE".into(),
                daemon_dir.base.join("auth.json").display().to_string(),
            ));
        }
        if let Some(bytes) = self.root_tmpfs_bytes {
            fs::create_dir_all(&daemon_dir.root).expect("root dir");
            nix::mount::mount(
                Some("tmpfs"),
                &daemon_dir.root,
                Some("tmpfs"),
                nix::mount::MsFlags::empty(),
                Some(format!("size={bytes}").as_str()),
            )
            .expect("mount tmpfs root");
        }
        let mut daemon = Daemon {
            dirs: daemon_dir,
            child: None,
            _dir: dir,
            args: self.args,
            env,
        };
        daemon.launch();
        daemon
    }
}

/// The paths one test daemon uses, all under its own temp dir.
#[derive(Debug, Clone)]
pub struct DaemonDirs {
    pub base: PathBuf,
    pub root: PathBuf,
    pub runroot: PathBuf,
    pub socket: PathBuf,
    pub config_file: PathBuf,
    pub config_dir: PathBuf,
    pub network_dir: PathBuf,
    pub log_dir: PathBuf,
    pub log: PathBuf,
}

impl DaemonDirs {
    fn new(base: &Path) -> Self {
        Self {
            base: base.to_path_buf(),
            root: base.join("root"),
            runroot: base.join("run"),
            socket: base.join("crio.sock"),
            config_file: base.join("crio.conf"),
            config_dir: base.join("crio.conf.d"),
            network_dir: base.join("net.d"),
            log_dir: base.join("pod-logs"),
            log: base.join("crio.log"),
        }
    }

    fn test_dropin(&self) -> String {
        format!(
            "# written by the test harness\n[crio]\nroot = {:?}\nrunroot = {:?}\nlog_dir = {:?}\n\
             version_file = {:?}\nclean_shutdown_file = {:?}\n\n\
             [crio.api]\nlisten = {:?}\n\n[crio.runtime]\nlog_level = \"debug\"\n\n\
             [crio.network]\nnetwork_dir = {:?}\nplugin_dirs = [\"/usr/lib/cni\"]\n",
            self.root,
            self.runroot,
            self.log_dir,
            self.version_file(),
            self.clean_shutdown_file(),
            self.socket,
            self.network_dir
        )
    }

    /// The layer directory stored last (the one only the last-pulled image has),
    /// for tests that break the store by hand.
    pub fn newest_layer(&self) -> PathBuf {
        let mut dirs: Vec<_> = fs::read_dir(self.root.join("images/layers"))
            .expect("layers")
            .flatten()
            .map(|e| {
                (
                    e.metadata().and_then(|m| m.modified()).expect("mtime"),
                    e.path(),
                )
            })
            .collect();
        dirs.sort();
        dirs.pop().expect("a layer").1
    }

    /// `[crio] version_file`: on the runroot, as on a tmpfs.
    pub fn version_file(&self) -> PathBuf {
        self.runroot.join("version")
    }

    /// `[crio] clean_shutdown_file`.
    pub fn clean_shutdown_file(&self) -> PathBuf {
        self.root.join("clean.shutdown")
    }
}

/// A running (or exited) test daemon. Dropping it stops the process, unmounts what
/// is mounted under its dir and removes the dir.
#[derive(Debug)]
pub struct Daemon {
    pub dirs: DaemonDirs,
    child: Option<Child>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    _dir: tempfile::TempDir,
}

impl Daemon {
    pub fn builder() -> DaemonBuilder {
        DaemonBuilder::default()
    }

    /// A `crio` command reading this daemon's config (for subcommands).
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(crio_binary());
        cmd.arg("--config")
            .arg(&self.dirs.config_file)
            .arg("--config-dir")
            .arg(&self.dirs.config_dir)
            .env_remove("CONTAINER_CONFIG")
            .env_remove("CONTAINER_CONFIG_DIR")
            .env_remove("CONTAINER_LISTEN");
        cmd
    }

    /// `crio status info` against this daemon (it must succeed): its JSON.
    pub fn status_info(&self) -> serde_json::Value {
        let out = self
            .command()
            .args(["status", "info"])
            .output()
            .expect("crio status info");
        assert!(
            out.status.success(),
            "crio status info: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("crio status info: JSON")
    }

    fn launch(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.dirs.log)
            .expect("daemon log");
        let mut cmd = self.command();
        cmd.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        process::die_with_parent(&mut cmd);
        self.child = Some(cmd.spawn().expect("spawn crio"));
    }

    /// Starts the daemon again on the same dirs (after [`Daemon::stop`] or a kill).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the daemon before restarting it");
        self.launch();
        self.wait_ready();
    }

    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if std::os::unix::net::UnixStream::connect(&self.dirs.socket).is_ok() {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "crio exited during start-up ({status}); log:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "crio did not open {} within {START_TIMEOUT:?}; log:\n{}",
                self.dirs.socket.display(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon running").id()
    }

    /// Waits up to 15 s until the daemon has logged `text` `times` times; panics
    /// with the log otherwise.
    pub fn wait_for_log(&self, text: &str, times: usize) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.log().matches(text).count() < times {
            assert!(
                Instant::now() < deadline,
                "{text:?} not logged {times} time(s):\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Everything the daemon wrote to stdout and stderr.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.dirs.log).unwrap_or_default()
    }

    pub async fn client(&self) -> CriClient {
        CriClient::connect(&self.dirs.socket)
            .await
            .unwrap_or_else(|e| panic!("connecting to {}: {e}", self.dirs.socket.display()))
    }

    /// Drops an environment variable the daemon was started with, for the next
    /// [`Daemon::restart`].
    pub fn remove_env(&mut self, key: &str) {
        self.env.retain(|(k, _)| k != key);
    }

    /// SIGTERM and wait (the daemon's own grace period plus a margin).
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("daemon running");
        process::terminate(&mut child, Duration::from_secs(15))
    }

    /// SIGKILL: a crash.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("daemon running");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Waits for the daemon to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut().expect("daemon running");
        let status = process::wait_timeout(child, timeout);
        if status.is_some() {
            self.child = None;
        }
        status
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Pods outlive the daemon (that is what shims are for): remove them
            // through the CRI first, then stop it.
            if matches!(child.try_wait(), Ok(None)) {
                remove_all_pods(&self.dirs.socket);
            }
            process::terminate(&mut child, Duration::from_secs(15));
        }
        crate::cleanup::kill_pods_under(&self.dirs.base, &self.dirs.runroot);
        crate::cleanup::unmount_all_under(&self.dirs.base);
    }
}

/// StopPodSandbox + RemovePodSandbox for every pod, on a thread of its own (Drop may
/// run inside a tokio runtime), bounded in time.
fn remove_all_pods(socket: &Path) {
    let socket = socket.to_path_buf();
    let worker = std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async move {
            let work = async {
                let Ok(mut cri) = CriClient::connect(&socket).await else {
                    return;
                };
                let Ok(pods) = cri
                    .runtime
                    .list_pod_sandbox(protocols::cri::ListPodSandboxRequest::default())
                    .await
                else {
                    return;
                };
                for pod in pods.into_inner().items {
                    let _ = cri
                        .runtime
                        .remove_pod_sandbox(protocols::cri::RemovePodSandboxRequest {
                            pod_sandbox_id: pod.id,
                        })
                        .await;
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(60), work).await;
        });
    });
    let _ = worker.join();
}
