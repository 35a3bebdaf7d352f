//! Driving a shim v2 binary the way a container manager does, for the shim
//! tests: `start` in the bundle directory with `TTRPC_ADDRESS` pointing at an
//! Events server the test serves, the task API over ttrpc, the stdio FIFOs read
//! as a manager reads them, and cleanup of the shims and containers.

use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use containerd_shim_protos::api;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::shim::event::Envelope;
use containerd_shim_protos::shim::events::ForwardRequest;
use containerd_shim_protos::shim_async::{create_events, Client, Events, TaskClient};
use containerd_shim_protos::ttrpc::context::{self, Context};
use containerd_shim_protos::ttrpc::r#async::{Server, TtrpcContext};
use tokio::sync::{mpsc, Mutex};

use crate::bundle::Bundle;
use crate::containerd;

/// How long a shim test waits for one thing.
pub const TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug)]
pub struct Collector(mpsc::UnboundedSender<Envelope>);

#[async_trait::async_trait]
impl Events for Collector {
    async fn forward(
        &self,
        _ctx: &TtrpcContext,
        req: ForwardRequest,
    ) -> containerd_shim_protos::ttrpc::Result<api::Empty> {
        let _ = self.0.send(req.envelope.unwrap_or_default());
        Ok(api::Empty::new())
    }
}

/// The Events server the shim publishes to.
#[allow(missing_debug_implementations)]
pub struct EventsServer {
    _server: Server,
    rx: Mutex<mpsc::UnboundedReceiver<Envelope>>,
    seen: Mutex<VecDeque<Envelope>>,
}

impl EventsServer {
    pub async fn start(path: &Path) -> EventsServer {
        let (tx, rx) = mpsc::unbounded_channel();
        let service = create_events(Arc::new(Collector(tx)));
        let mut server = Server::new()
            .bind(&format!("unix://{}", path.display()))
            .expect("bind events")
            .register_service(service);
        server.start().await.expect("start events server");
        EventsServer {
            _server: server,
            rx: Mutex::new(rx),
            seen: Mutex::new(VecDeque::new()),
        }
    }

    /// The next event on `topic` matching `pred` (events before it are kept).
    pub async fn expect(&self, topic: &str, pred: impl Fn(&Envelope) -> bool) -> Envelope {
        let deadline = Instant::now() + TIMEOUT;
        {
            let mut seen = self.seen.lock().await;
            if let Some(i) = seen.iter().position(|e| e.topic == topic && pred(e)) {
                return seen.remove(i).expect("index");
            }
        }
        let mut rx = self.rx.lock().await;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let env = tokio::time::timeout(left, rx.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "no {topic} event in time; seen: {:?}",
                        self.seen
                            .try_lock()
                            .map(|s| s.iter().map(|e| e.topic.clone()).collect::<Vec<_>>())
                    )
                })
                .expect("events channel open");
            if env.topic == topic && pred(&env) {
                return env;
            }
            self.seen.lock().await.push_back(env);
        }
    }
}

pub fn decode<M: Message>(env: &Envelope) -> M {
    M::parse_from_bytes(&env.event.value).expect("event payload")
}

/// Cleans up after the shim processes and containers of one test.
#[derive(Debug)]
pub struct Cleanup {
    pub bundles: Vec<PathBuf>,
    pub namespace: String,
    pub addresses: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for b in &self.bundles {
            containerd::kill_shims_under(b);
        }
        let root = Path::new(containerd::RUNC_ROOT).join(&self.namespace);
        containerd::delete_containers("runc", &root);
        containerd::delete_containers("crun", &root);
        let _ = std::fs::remove_dir_all(&root);
        for a in &self.addresses {
            let _ = std::fs::remove_file(a.trim_start_matches("unix://"));
        }
    }
}

/// One shim test: its directory, namespace, Events server, and the shim binary.
#[allow(missing_debug_implementations)]
pub struct Harness {
    // Dropped first: it reads shim.pid files inside `dir`.
    pub cleanup: Cleanup,
    pub dir: tempfile::TempDir,
    pub namespace: String,
    pub events: EventsServer,
    pub events_path: PathBuf,
    pub binary: PathBuf,
    /// More environment for the shim.
    pub env: Vec<(String, String)>,
}

impl Harness {
    /// A test of the in-tree runc shim.
    pub async fn new(name: &str) -> Harness {
        Self::for_binary(name, containerd::shim_binary()).await
    }

    /// A test of the shim `binary`.
    pub async fn for_binary(name: &str, binary: PathBuf) -> Harness {
        crate::require_root();
        let dir = tempfile::Builder::new()
            .prefix("crio-shim-")
            .tempdir()
            .expect("tempdir");
        let events_path = dir.path().join("events.sock");
        let events = EventsServer::start(&events_path).await;
        let namespace = format!("shimtest-{name}-{}", std::process::id());
        Harness {
            cleanup: Cleanup {
                bundles: Vec::new(),
                namespace: namespace.clone(),
                addresses: Vec::new(),
            },
            dir,
            namespace,
            events,
            events_path,
            binary,
            env: Vec::new(),
        }
    }

    pub fn bundle(&mut self, id: &str, args: &[&str], terminal: bool) -> Bundle {
        let b = Bundle::create(&self.dir.path().join(id), args, terminal);
        self.cleanup.bundles.push(b.dir.clone());
        b
    }

    /// `<shim> … start` in the bundle; returns the raw reply.
    pub fn start_shim(
        &mut self,
        bundle: &Bundle,
        id: &str,
        max_shim_version: Option<&str>,
    ) -> Vec<u8> {
        let mut cmd = Command::new(&self.binary);
        cmd.args(["-namespace", &self.namespace, "-id", id])
            .arg("-address")
            .arg(self.dir.path().join("manager.sock"))
            .args(["-publish-binary", "/bin/false", "start"])
            .current_dir(&bundle.dir)
            .env("TTRPC_ADDRESS", &self.events_path)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env_remove("MAX_SHIM_VERSION");
        if let Some(v) = max_shim_version {
            cmd.env("MAX_SHIM_VERSION", v);
        }
        let out = cmd.output().expect("run shim start");
        assert!(
            out.status.success(),
            "shim start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "start wrote to stderr (containerd 1.6 reads it as the address): {:?}",
            String::from_utf8_lossy(&out.stderr)
        );
        let address = std::fs::read_to_string(bundle.dir.join("address")).expect("address file");
        self.cleanup.addresses.push(address);
        out.stdout
    }

    pub fn ctx(&self) -> Context {
        let mut ctx = context::with_timeout(TIMEOUT.as_nanos() as i64);
        ctx.add("containerd-namespace".into(), self.namespace.clone());
        ctx
    }
}

/// Reads a FIFO the way a manager does: opened before the process starts, read
/// until the writers are gone after some output came (an empty read before any
/// output only means the shim has not opened it yet).
pub fn collect_fifo(path: &Path) -> std::thread::JoinHandle<String> {
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .expect("open fifo for reading");
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        let deadline = Instant::now() + TIMEOUT;
        loop {
            match f.read(&mut buf) {
                Ok(0) if !out.is_empty() => break,
                Ok(0) => {
                    if Instant::now() > deadline {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() > deadline {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(_) => break,
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    })
}

/// The `log` FIFO a manager opens in the bundle; returns its reader.
pub fn log_fifo(bundle: &Bundle) -> std::fs::File {
    let path = bundle.fifo("log");
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .expect("open log fifo")
}

pub fn create_request(
    bundle: &Bundle,
    id: &str,
    stdout: &Path,
    stderr: Option<&Path>,
    terminal: bool,
) -> api::CreateTaskRequest {
    api::CreateTaskRequest {
        id: id.to_string(),
        bundle: bundle.dir.display().to_string(),
        stdout: stdout.display().to_string(),
        stderr: stderr.map(|p| p.display().to_string()).unwrap_or_default(),
        terminal,
        ..Default::default()
    }
}

pub async fn connect(address: &str) -> (TaskClient, Client) {
    let client = Client::connect(address).await.expect("connect to shim");
    (TaskClient::new(client.clone()), client)
}

pub fn shim_pid(bundle: &Bundle) -> i32 {
    std::fs::read_to_string(bundle.dir.join("shim.pid"))
        .expect("shim.pid")
        .trim()
        .parse()
        .expect("pid")
}

pub fn wait_gone(pid: i32) {
    let deadline = Instant::now() + TIMEOUT;
    while Path::new(&format!("/proc/{pid}")).exists() {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.contains(") Z ") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "shim {pid} still running after Shutdown"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
