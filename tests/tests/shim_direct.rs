//! The in-tree runc shim driven the way a container manager drives it: `start`
//! in the bundle directory with `TTRPC_ADDRESS` pointing at an Events server this
//! test serves, then the task API over ttrpc, asserting what the manager sees
//! (replies, exit statuses, output, events).

use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use containerd_shim_protos::api;
use containerd_shim_protos::events::task::{TaskExit, TaskOOM};
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::{Message, MessageField};
use containerd_shim_protos::shim::event::Envelope;
use containerd_shim_protos::shim::events::ForwardRequest;
use containerd_shim_protos::shim::oci::Options;
use containerd_shim_protos::shim_async::{create_events, Client, Events, TaskClient};
use containerd_shim_protos::ttrpc::context::{self, Context};
use containerd_shim_protos::ttrpc::r#async::{Server, TtrpcContext};
use containerd_shim_protos::types::task::Status;
use crio_tests::bundle::{self, Bundle};
use crio_tests::containerd::{self, shim_binary};
use serde_json::json;
use tokio::sync::{mpsc, Mutex};

const TIMEOUT: Duration = Duration::from_secs(20);

struct Collector(mpsc::UnboundedSender<Envelope>);

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
struct EventsServer {
    _server: Server,
    rx: Mutex<mpsc::UnboundedReceiver<Envelope>>,
    seen: Mutex<VecDeque<Envelope>>,
}

impl EventsServer {
    async fn start(path: &Path) -> EventsServer {
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
    async fn expect(&self, topic: &str, pred: impl Fn(&Envelope) -> bool) -> Envelope {
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

fn decode<M: Message>(env: &Envelope) -> M {
    M::parse_from_bytes(&env.event.value).expect("event payload")
}

/// Cleans up after the shim processes and containers of one test.
struct Cleanup {
    bundles: Vec<PathBuf>,
    namespace: String,
    addresses: Vec<String>,
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

struct Harness {
    // Dropped first: it reads shim.pid files inside `dir`.
    cleanup: Cleanup,
    dir: tempfile::TempDir,
    namespace: String,
    events: EventsServer,
    events_path: PathBuf,
}

impl Harness {
    async fn new(name: &str) -> Harness {
        crio_tests::require_root();
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
        }
    }

    fn bundle(&mut self, id: &str, args: &[&str], terminal: bool) -> Bundle {
        let b = Bundle::create(&self.dir.path().join(id), args, terminal);
        self.cleanup.bundles.push(b.dir.clone());
        b
    }

    /// `<shim> … start` in the bundle; returns the raw reply.
    fn start_shim(&mut self, bundle: &Bundle, id: &str, max_shim_version: Option<&str>) -> Vec<u8> {
        let mut cmd = Command::new(shim_binary());
        cmd.args(["-namespace", &self.namespace, "-id", id])
            .arg("-address")
            .arg(self.dir.path().join("manager.sock"))
            .args(["-publish-binary", "/bin/false", "start"])
            .current_dir(&bundle.dir)
            .env("TTRPC_ADDRESS", &self.events_path)
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

    fn ctx(&self) -> Context {
        let mut ctx = context::with_timeout(TIMEOUT.as_nanos() as i64);
        ctx.add("containerd-namespace".into(), self.namespace.clone());
        ctx
    }
}

/// Reads a FIFO the way a manager does: opened before the process starts, read
/// until the writers are gone after some output came (an empty read before any
/// output only means the shim has not opened it yet).
fn collect_fifo(path: &Path) -> std::thread::JoinHandle<String> {
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
fn log_fifo(bundle: &Bundle) -> std::fs::File {
    let path = bundle.fifo("log");
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .expect("open log fifo")
}

fn create_request(
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

async fn connect(address: &str) -> (TaskClient, Client) {
    let client = Client::connect(address).await.expect("connect to shim");
    (TaskClient::new(client.clone()), client)
}

fn shim_pid(bundle: &Bundle) -> i32 {
    std::fs::read_to_string(bundle.dir.join("shim.pid"))
        .expect("shim.pid")
        .trim()
        .parse()
        .expect("pid")
}

fn wait_gone(pid: i32) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_exit_codes_output_events_and_pod_grouping() {
    let mut h = Harness::new("life").await;
    let a = h.bundle(
        "a",
        &["sh", "-c", "echo hello; echo oops >&2; exit 3"],
        false,
    );
    let mut log = log_fifo(&a);
    let reply = h.start_shim(&a, "a", None);
    // No MAX_SHIM_VERSION (containerd 1.6): a plain address.
    let address = String::from_utf8(reply).expect("utf8");
    assert!(address.starts_with("unix:///"), "reply {address:?}");
    assert_eq!(
        std::fs::read_to_string(a.dir.join("address")).expect("address"),
        address
    );
    let (task, raw) = connect(&address).await;

    // The same service answers under the v2 name containerd 1.6 calls.
    let req = containerd_shim_protos::ttrpc::Request {
        service: "containerd.task.v2.Task".into(),
        method: "Connect".into(),
        payload: api::ConnectRequest {
            id: "a".into(),
            ..Default::default()
        }
        .write_to_bytes()
        .expect("encode"),
        timeout_nano: TIMEOUT.as_nanos() as i64,
        ..Default::default()
    };
    let resp = raw.request(req).await.expect("v2 Connect");
    let connect = api::ConnectResponse::parse_from_bytes(&resp.payload).expect("decode");
    assert_eq!(connect.shim_pid as i32, shim_pid(&a));

    let out_a = a.fifo("stdout");
    let err_a = a.fifo("stderr");
    let created = task
        .create(
            h.ctx(),
            &create_request(&a, "a", &out_a, Some(&err_a), false),
        )
        .await
        .expect("create a");
    assert!(created.pid > 0);
    let out_reader = collect_fifo(&out_a);
    let err_reader = collect_fifo(&err_a);
    let ev = h.events.expect("/tasks/create", |_| true).await;
    assert_eq!(ev.namespace, h.namespace);
    let state = task
        .state(
            h.ctx(),
            &api::StateRequest {
                id: "a".into(),
                ..Default::default()
            },
        )
        .await
        .expect("state");
    assert_eq!(state.status.enum_value(), Ok(Status::CREATED));
    assert_eq!(state.pid, created.pid);

    task.start(
        h.ctx(),
        &api::StartRequest {
            id: "a".into(),
            ..Default::default()
        },
    )
    .await
    .expect("start a");
    h.events.expect("/tasks/start", |_| true).await;
    let waited = task
        .wait(
            h.ctx(),
            &api::WaitRequest {
                id: "a".into(),
                ..Default::default()
            },
        )
        .await
        .expect("wait a");
    assert_eq!(waited.exit_status, 3);
    let exit = h
        .events
        .expect("/tasks/exit", |e| decode::<TaskExit>(e).container_id == "a")
        .await;
    let exit: TaskExit = decode(&exit);
    assert_eq!(
        (exit.id.as_str(), exit.exit_status, exit.pid),
        ("a", 3, created.pid)
    );
    assert_eq!(out_reader.join().expect("stdout"), "hello\n");
    assert_eq!(err_reader.join().expect("stderr"), "oops\n");
    let state = task
        .state(
            h.ctx(),
            &api::StateRequest {
                id: "a".into(),
                ..Default::default()
            },
        )
        .await
        .expect("state");
    assert_eq!(state.status.enum_value(), Ok(Status::STOPPED));
    assert_eq!(state.exit_status, 3);
    let deleted = task
        .delete(
            h.ctx(),
            &api::DeleteRequest {
                id: "a".into(),
                ..Default::default()
            },
        )
        .await
        .expect("delete a");
    assert_eq!(deleted.exit_status, 3);
    h.events.expect("/tasks/delete", |_| true).await;
    // Deleted means gone.
    let err = task
        .state(
            h.ctx(),
            &api::StateRequest {
                id: "a".into(),
                ..Default::default()
            },
        )
        .await;
    assert!(format!("{err:?}").contains("NOT_FOUND"), "{err:?}");

    // A second container of the same pod gets the same shim.
    let mut b = h.bundle("b", &["sleep", "300"], false);
    b.annotate("io.kubernetes.cri.sandbox-id", "a");
    let reply_b = h.start_shim(&b, "b", None);
    assert_eq!(String::from_utf8(reply_b).expect("utf8"), address);
    let out_b = b.fifo("stdout");
    let created_b = task
        .create(h.ctx(), &create_request(&b, "b", &out_b, None, false))
        .await
        .expect("create b");
    task.start(
        h.ctx(),
        &api::StartRequest {
            id: "b".into(),
            ..Default::default()
        },
    )
    .await
    .expect("start b");

    // Exec into it.
    let exec_out = b.fifo("exec-out");
    let spec = bundle::process(&["sh", "-c", "echo exec-out; exit 4"], false);
    task.exec(
        h.ctx(),
        &api::ExecProcessRequest {
            id: "b".into(),
            exec_id: "e1".into(),
            stdout: exec_out.display().to_string(),
            spec: MessageField::some(Any {
                type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
                value: serde_json::to_vec(&spec).expect("json"),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await
    .expect("exec");
    h.events.expect("/tasks/exec-added", |_| true).await;
    let exec_reader = collect_fifo(&exec_out);
    let started = task
        .start(
            h.ctx(),
            &api::StartRequest {
                id: "b".into(),
                exec_id: "e1".into(),
                ..Default::default()
            },
        )
        .await
        .expect("start exec");
    assert!(started.pid > 0 && started.pid != created_b.pid);
    let waited = task
        .wait(
            h.ctx(),
            &api::WaitRequest {
                id: "b".into(),
                exec_id: "e1".into(),
                ..Default::default()
            },
        )
        .await
        .expect("wait exec");
    assert_eq!(waited.exit_status, 4);
    let ev = h
        .events
        .expect("/tasks/exit", |e| decode::<TaskExit>(e).id == "e1")
        .await;
    assert_eq!(decode::<TaskExit>(&ev).exit_status, 4);
    assert_eq!(exec_reader.join().expect("exec stdout"), "exec-out\n");
    h.events.expect("/tasks/exec-started", |_| true).await;
    task.delete(
        h.ctx(),
        &api::DeleteRequest {
            id: "b".into(),
            exec_id: "e1".into(),
            ..Default::default()
        },
    )
    .await
    .expect("delete exec");

    // Pids, stats, update, pause and resume.
    let pids = task
        .pids(
            h.ctx(),
            &api::PidsRequest {
                id: "b".into(),
                ..Default::default()
            },
        )
        .await
        .expect("pids");
    assert!(
        pids.processes.iter().any(|p| p.pid == created_b.pid),
        "{pids:?}"
    );
    let stats = task
        .stats(
            h.ctx(),
            &api::StatsRequest {
                id: "b".into(),
                ..Default::default()
            },
        )
        .await
        .expect("stats");
    assert!(
        stats.stats.type_url.starts_with("io.containerd.cgroups.v"),
        "{}",
        stats.stats.type_url
    );
    assert!(!stats.stats.value.is_empty());
    task.update(
        h.ctx(),
        &api::UpdateTaskRequest {
            id: "b".into(),
            resources: MessageField::some(Any {
                type_url: "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources".into(),
                value: serde_json::to_vec(&json!({"pids": {"limit": 42}})).expect("json"),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await
    .expect("update");
    let cgroups =
        std::fs::read_to_string(format!("/proc/{}/cgroup", created_b.pid)).expect("cgroup");
    let pids_path = cgroups
        .lines()
        .find_map(|l| l.split_once(":pids:").map(|(_, p)| p.to_string()))
        .expect("pids cgroup");
    let max = std::fs::read_to_string(format!("/sys/fs/cgroup/pids{pids_path}/pids.max"))
        .expect("pids.max");
    assert_eq!(max.trim(), "42");
    task.pause(
        h.ctx(),
        &api::PauseRequest {
            id: "b".into(),
            ..Default::default()
        },
    )
    .await
    .expect("pause");
    let state = task
        .state(
            h.ctx(),
            &api::StateRequest {
                id: "b".into(),
                ..Default::default()
            },
        )
        .await
        .expect("state");
    assert_eq!(state.status.enum_value(), Ok(Status::PAUSED));
    h.events.expect("/tasks/paused", |_| true).await;
    task.resume(
        h.ctx(),
        &api::ResumeRequest {
            id: "b".into(),
            ..Default::default()
        },
    )
    .await
    .expect("resume");
    let state = task
        .state(
            h.ctx(),
            &api::StateRequest {
                id: "b".into(),
                ..Default::default()
            },
        )
        .await
        .expect("state");
    assert_eq!(state.status.enum_value(), Ok(Status::RUNNING));

    // Kill: 128 + SIGKILL.
    task.kill(
        h.ctx(),
        &api::KillRequest {
            id: "b".into(),
            signal: 9,
            ..Default::default()
        },
    )
    .await
    .expect("kill");
    let waited = task
        .wait(
            h.ctx(),
            &api::WaitRequest {
                id: "b".into(),
                ..Default::default()
            },
        )
        .await
        .expect("wait b");
    assert_eq!(waited.exit_status, 137);
    let ev = h
        .events
        .expect("/tasks/exit", |e| decode::<TaskExit>(e).container_id == "b")
        .await;
    assert_eq!(decode::<TaskExit>(&ev).exit_status, 137);
    // Killing a finished process is "not found", as containerd expects.
    let err = task
        .kill(
            h.ctx(),
            &api::KillRequest {
                id: "b".into(),
                signal: 9,
                ..Default::default()
            },
        )
        .await;
    assert!(format!("{err:?}").contains("NOT_FOUND"), "{err:?}");
    task.delete(
        h.ctx(),
        &api::DeleteRequest {
            id: "b".into(),
            ..Default::default()
        },
    )
    .await
    .expect("delete b");

    // Shutdown ends the shim and removes its socket.
    let pid = shim_pid(&a);
    let _ = task
        .shutdown(
            h.ctx(),
            &api::ShutdownRequest {
                id: "a".into(),
                ..Default::default()
            },
        )
        .await;
    wait_gone(pid);
    assert!(
        !Path::new(address.trim_start_matches("unix://")).exists(),
        "socket left behind"
    );
    // The shim logged into the log FIFO.
    let mut text = String::new();
    let _ = log.read_to_string(&mut text);
    assert!(text.contains("shim serving"), "log: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tty_json_reply_and_oom_clamp_without_log_fifo() {
    let mut h = Harness::new("tty").await;
    let mut spec = bundle::spec(
        &["sh", "-c", "tty; stty size; cat /proc/self/oom_score_adj"],
        true,
    );
    // Asks for what this host cannot grant: restricted, not refused.
    spec["process"]["oomScoreAdj"] = json!(-999);
    spec["process"]["capabilities"]["bounding"] = json!(["CAP_KILL", "CAP_SYS_RESOURCE"]);
    let t = Bundle::with_spec(&h.dir.path().join("t"), spec);
    h.cleanup.bundles.push(t.dir.clone());
    // No log FIFO at all: the shim must still serve.
    let reply = h.start_shim(&t, "t", Some("2"));
    let v: serde_json::Value =
        serde_json::from_slice(&reply).expect("JSON reply with MAX_SHIM_VERSION");
    assert_eq!(v["version"], 2);
    assert_eq!(v["protocol"], "ttrpc");
    let address = v["address"].as_str().expect("address").to_string();
    let (task, _) = connect(&address).await;
    let out = t.fifo("stdout");
    task.create(h.ctx(), &create_request(&t, "t", &out, None, true))
        .await
        .expect("create tty");
    let reader = collect_fifo(&out);
    task.resize_pty(
        h.ctx(),
        &api::ResizePtyRequest {
            id: "t".into(),
            width: 100,
            height: 40,
            ..Default::default()
        },
    )
    .await
    .expect("resize");
    task.start(
        h.ctx(),
        &api::StartRequest {
            id: "t".into(),
            ..Default::default()
        },
    )
    .await
    .expect("start");
    let waited = task
        .wait(
            h.ctx(),
            &api::WaitRequest {
                id: "t".into(),
                ..Default::default()
            },
        )
        .await
        .expect("wait");
    assert_eq!(waited.exit_status, 0);
    let text = reader.join().expect("output");
    assert!(text.contains("/dev/pts/0"), "tty output: {text:?}");
    assert!(text.contains("40 100"), "stty size: {text:?}");
    let own = std::fs::read_to_string("/proc/self/oom_score_adj")
        .expect("own oom")
        .trim()
        .to_string();
    assert!(
        text.lines().any(|l| l.trim() == own),
        "oom_score_adj clamped to {own}: {text:?}"
    );
    task.delete(
        h.ctx(),
        &api::DeleteRequest {
            id: "t".into(),
            ..Default::default()
        },
    )
    .await
    .expect("delete");
    let _ = task
        .shutdown(
            h.ctx(),
            &api::ShutdownRequest {
                id: "t".into(),
                ..Default::default()
            },
        )
        .await;
    wait_gone(shim_pid(&t));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crun_from_runtime_options_and_stdin_close_io() {
    containerd::prepare_crun();
    let mut h = Harness::new("crun").await;
    let c = h.bundle("c", &["cat"], false);
    let address = String::from_utf8(h.start_shim(&c, "c", None)).expect("utf8");
    let (task, _) = connect(&address).await;
    let stdin = c.fifo("stdin");
    let out = c.fifo("stdout");
    let mut req = create_request(&c, "c", &out, None, false);
    req.stdin = stdin.display().to_string();
    req.options = MessageField::some(Any {
        type_url: "containerd.runc.v1.Options".into(),
        value: Options {
            binary_name: "crun".into(),
            ..Default::default()
        }
        .write_to_bytes()
        .expect("encode"),
        ..Default::default()
    });
    task.create(h.ctx(), &req).await.expect("create with crun");
    let reader = collect_fifo(&out);
    // crun keeps its own state under the root: proof of which runtime ran.
    let root = Path::new(containerd::RUNC_ROOT).join(&h.namespace);
    let listed = Command::new("crun")
        .arg("--root")
        .arg(&root)
        .args(["list", "-q"])
        .output()
        .expect("crun list");
    assert!(
        String::from_utf8_lossy(&listed.stdout)
            .lines()
            .any(|l| l == "c"),
        "crun does not list c: {listed:?}"
    );
    task.start(
        h.ctx(),
        &api::StartRequest {
            id: "c".into(),
            ..Default::default()
        },
    )
    .await
    .expect("start");
    {
        use std::io::Write;
        let mut w = OpenOptions::new()
            .write(true)
            .open(&stdin)
            .expect("stdin writer");
        w.write_all(b"through stdin\n").expect("write");
    }
    task.close_io(
        h.ctx(),
        &api::CloseIORequest {
            id: "c".into(),
            stdin: true,
            ..Default::default()
        },
    )
    .await
    .expect("close io");
    let waited = task
        .wait(
            h.ctx(),
            &api::WaitRequest {
                id: "c".into(),
                ..Default::default()
            },
        )
        .await
        .expect("wait");
    assert_eq!(waited.exit_status, 0, "cat ends at EOF after CloseIO");
    assert_eq!(reader.join().expect("output"), "through stdin\n");
    task.delete(
        h.ctx(),
        &api::DeleteRequest {
            id: "c".into(),
            ..Default::default()
        },
    )
    .await
    .expect("delete");
    let _ = task
        .shutdown(
            h.ctx(),
            &api::ShutdownRequest {
                id: "c".into(),
                ..Default::default()
            },
        )
        .await;
    wait_gone(shim_pid(&c));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_limit_oom_kill_publishes_an_oom_event() {
    let mut h = Harness::new("oom").await;
    let mut spec = bundle::spec(&["sh", "-c", "tail /dev/zero"], false);
    spec["linux"]["resources"] = json!({"memory": {"limit": 16 * 1024 * 1024}});
    let o = Bundle::with_spec(&h.dir.path().join("o"), spec);
    h.cleanup.bundles.push(o.dir.clone());
    let address = String::from_utf8(h.start_shim(&o, "o", None)).expect("utf8");
    let (task, _) = connect(&address).await;
    let out = o.fifo("stdout");
    task.create(h.ctx(), &create_request(&o, "o", &out, None, false))
        .await
        .expect("create");
    task.start(
        h.ctx(),
        &api::StartRequest {
            id: "o".into(),
            ..Default::default()
        },
    )
    .await
    .expect("start");
    let waited = task
        .wait(
            h.ctx(),
            &api::WaitRequest {
                id: "o".into(),
                ..Default::default()
            },
        )
        .await
        .expect("wait");
    assert_eq!(waited.exit_status, 137, "killed by the OOM killer");
    let ev = h.events.expect("/tasks/oom", |_| true).await;
    assert_eq!(decode::<TaskOOM>(&ev).container_id, "o");
    task.delete(
        h.ctx(),
        &api::DeleteRequest {
            id: "o".into(),
            ..Default::default()
        },
    )
    .await
    .expect("delete");
    let _ = task
        .shutdown(
            h.ctx(),
            &api::ShutdownRequest {
                id: "o".into(),
                ..Default::default()
            },
        )
        .await;
    wait_gone(shim_pid(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_action_cleans_up_after_a_dead_shim() {
    let mut h = Harness::new("dead").await;
    let d = h.bundle("d", &["sleep", "300"], false);
    let address = String::from_utf8(h.start_shim(&d, "d", None)).expect("utf8");
    let (task, _) = connect(&address).await;
    let out = d.fifo("stdout");
    task.create(h.ctx(), &create_request(&d, "d", &out, None, false))
        .await
        .expect("create");
    task.start(
        h.ctx(),
        &api::StartRequest {
            id: "d".into(),
            ..Default::default()
        },
    )
    .await
    .expect("start");
    // The shim dies; the manager cleans up with `delete`.
    let pid = shim_pid(&d);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill shim");
    wait_gone(pid);
    let out = Command::new(shim_binary())
        .args(["-namespace", &h.namespace, "-id", "d"])
        .arg("-address")
        .arg(h.dir.path().join("manager.sock"))
        .arg("delete")
        .current_dir(&d.dir)
        .env("TTRPC_ADDRESS", &h.events_path)
        .output()
        .expect("shim delete");
    assert!(
        out.status.success(),
        "delete: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let resp = api::DeleteResponse::parse_from_bytes(&out.stdout).expect("DeleteResponse");
    assert_eq!(resp.exit_status, 137);
    assert!(resp.exited_at.seconds > 0);
    let root = Path::new(containerd::RUNC_ROOT).join(&h.namespace);
    let listed = Command::new("runc")
        .arg("--root")
        .arg(&root)
        .args(["list", "-q"])
        .output()
        .expect("runc list");
    assert!(
        !String::from_utf8_lossy(&listed.stdout)
            .lines()
            .any(|l| l == "d"),
        "runc still lists d"
    );
}
