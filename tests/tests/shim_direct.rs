//! The in-tree runc shim driven the way a container manager drives it: `start`
//! in the bundle directory with `TTRPC_ADDRESS` pointing at an Events server this
//! test serves, then the task API over ttrpc, asserting what the manager sees
//! (replies, exit statuses, output, events).

use std::fs::OpenOptions;
use std::io::Read;
use std::path::Path;
use std::process::Command;

use containerd_shim_protos::api;
use containerd_shim_protos::events::task::{TaskExit, TaskOOM};
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::{Message, MessageField};
use containerd_shim_protos::shim::oci::Options;
use containerd_shim_protos::types::task::Status;
use crio_tests::bundle::{self, Bundle};
use crio_tests::containerd::{self, shim_binary};
use crio_tests::shim_harness::{
    collect_fifo, connect, create_request, decode, log_fifo, shim_pid, wait_gone, Harness, TIMEOUT,
};
use serde_json::json;

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
