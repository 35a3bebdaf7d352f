//! The VM pods' shim (`containerd-shim-kata-rs-v2`) driven the way a container
//! manager drives it: the pod's sandbox task boots the VM, a container task runs
//! in the guest with its output on the manager's FIFOs, exit statuses and events
//! come back, and the VM is gone after the sandbox is deleted.

use std::path::Path;
use std::time::Duration;

use containerd_shim_protos::api;
use containerd_shim_protos::events::task::TaskExit;
use containerd_shim_protos::shim_async::TaskClient;
use containerd_shim_protos::types::task::Status;
use crio_tests::kata::{guest, shim_binary};
use crio_tests::process::alive;
use crio_tests::shim_harness::{collect_fifo, connect, create_request, decode, Harness};

async fn harness(name: &str) -> Harness {
    let mut h = Harness::for_binary(name, shim_binary()).await;
    let vm_root = h.dir.path().join("vm");
    h.env = vec![
        (
            "CRIO_KATA_KERNEL".into(),
            guest().kernel.display().to_string(),
        ),
        (
            "CRIO_KATA_INITRAMFS".into(),
            guest().initramfs.display().to_string(),
        ),
        ("CRIO_KATA_VM_ROOT".into(), vm_root.display().to_string()),
    ];
    h
}

/// The shim started for pod `pod` and its sandbox task created: the task
/// client and the sandbox task's pid.
async fn start_pod(h: &mut Harness) -> (TaskClient, u32) {
    let pod = h.bundle("pod", &["sleep", "1000"], false);
    let address = String::from_utf8(h.start_shim(&pod, "pod", None)).expect("utf8");
    let (task, _) = connect(&address).await;
    let created = task
        .create(
            h.ctx(),
            &api::CreateTaskRequest {
                id: "pod".into(),
                bundle: pod.dir.display().to_string(),
                ..Default::default()
            },
        )
        .await
        .expect("create the sandbox");
    (task, created.pid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_task_is_a_vm_and_containers_run_in_it() {
    let mut h = harness("kata").await;
    // The sandbox task boots the pod's VM: its pid is qemu's.
    let (task, qemu) = start_pod(&mut h).await;
    let cmdline = std::fs::read(format!("/proc/{qemu}/cmdline")).expect("qemu runs");
    assert!(
        String::from_utf8_lossy(&cmdline).contains("qemu-system"),
        "pid {qemu}"
    );
    task.start(
        h.ctx(),
        &api::StartRequest {
            id: "pod".into(),
            ..Default::default()
        },
    )
    .await
    .expect("start the sandbox");

    // A container: its output on the manager's FIFOs, written in the guest.
    let c1 = h.bundle(
        "c1",
        &[
            "sh",
            "-c",
            "echo hello from $(uname -r); echo to stderr >&2; exit 3",
        ],
        false,
    );
    let (out_path, err_path) = (c1.fifo("stdout"), c1.fifo("stderr"));
    let (out, err) = (collect_fifo(&out_path), collect_fifo(&err_path));
    let created = task
        .create(
            h.ctx(),
            &create_request(&c1, "c1", &out_path, Some(&err_path), false),
        )
        .await
        .expect("create the container");
    assert!(created.pid > 0);
    task.start(
        h.ctx(),
        &api::StartRequest {
            id: "c1".into(),
            ..Default::default()
        },
    )
    .await
    .expect("start the container");
    let waited = task
        .wait(
            h.ctx(),
            &api::WaitRequest {
                id: "c1".into(),
                ..Default::default()
            },
        )
        .await
        .expect("wait");
    assert_eq!(waited.exit_status, 3);
    let exit: TaskExit = decode(
        &h.events
            .expect("/tasks/exit", |e| {
                decode::<TaskExit>(e).container_id == "c1"
            })
            .await,
    );
    assert_eq!(exit.exit_status, 3);
    let out = out.join().expect("stdout");
    assert!(out.starts_with("hello from 6.1."), "{out:?}");
    assert_ne!(
        out.trim_start_matches("hello from ").trim(),
        nix::sys::utsname::uname()
            .expect("uname")
            .release()
            .to_string_lossy()
    );
    assert_eq!(err.join().expect("stderr"), "to stderr\n");
    let state = task
        .state(
            h.ctx(),
            &api::StateRequest {
                id: "c1".into(),
                ..Default::default()
            },
        )
        .await
        .expect("state");
    assert_eq!(state.status.enum_value_or_default(), Status::STOPPED);
    let deleted = task
        .delete(
            h.ctx(),
            &api::DeleteRequest {
                id: "c1".into(),
                ..Default::default()
            },
        )
        .await
        .expect("delete the container");
    assert_eq!(deleted.exit_status, 3);
    let vm_root = h.dir.path().join("vm");
    let shared_left: Vec<_> = walk(&vm_root, "c1");
    assert!(
        shared_left.is_empty(),
        "the container's shared directory is gone: {shared_left:?}"
    );

    // Killing the sandbox powers the VM off.
    task.kill(
        h.ctx(),
        &api::KillRequest {
            id: "pod".into(),
            signal: 9,
            ..Default::default()
        },
    )
    .await
    .expect("kill the sandbox");
    task.wait(
        h.ctx(),
        &api::WaitRequest {
            id: "pod".into(),
            ..Default::default()
        },
    )
    .await
    .expect("the sandbox ends");
    task.delete(
        h.ctx(),
        &api::DeleteRequest {
            id: "pod".into(),
            ..Default::default()
        },
    )
    .await
    .expect("delete the sandbox");
    assert!(!alive(qemu), "qemu {qemu} is gone");
    assert!(
        std::fs::read_dir(&vm_root).map(|d| d.count()).unwrap_or(0) == 0,
        "the VM's directory is gone"
    );
    let _ = task
        .shutdown(
            h.ctx(),
            &api::ShutdownRequest {
                id: "pod".into(),
                ..Default::default()
            },
        )
        .await;
}

/// Paths below `dir` whose name is `name`.
fn walk(dir: &Path, name: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for e in entries.flatten() {
        let p = e.path();
        if e.file_name() == name {
            found.push(p.clone());
        }
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            found.extend(walk(&p, name));
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_that_dies_ends_its_containers() {
    let mut h = harness("katacrash").await;
    let (task, qemu) = start_pod(&mut h).await;
    let c1 = h.bundle("c1", &["sleep", "1000"], false);
    let out_path = c1.fifo("stdout");
    let _out = collect_fifo(&out_path);
    task.create(h.ctx(), &create_request(&c1, "c1", &out_path, None, false))
        .await
        .expect("create");
    task.start(
        h.ctx(),
        &api::StartRequest {
            id: "c1".into(),
            ..Default::default()
        },
    )
    .await
    .expect("start");
    // The hypervisor dies (by its pid, which the shim reported).
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(qemu as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill qemu");
    let waited = tokio::time::timeout(
        Duration::from_secs(20),
        task.wait(
            h.ctx(),
            &api::WaitRequest {
                id: "c1".into(),
                ..Default::default()
            },
        ),
    )
    .await
    .expect("the container's wait returns")
    .expect("wait");
    assert_eq!(waited.exit_status, 255);
    task.delete(
        h.ctx(),
        &api::DeleteRequest {
            id: "c1".into(),
            ..Default::default()
        },
    )
    .await
    .expect("delete the container");
    task.delete(
        h.ctx(),
        &api::DeleteRequest {
            id: "pod".into(),
            ..Default::default()
        },
    )
    .await
    .expect("delete the sandbox");
    assert!(walk(&h.dir.path().join("vm"), "c1").is_empty());
    let _ = task
        .shutdown(
            h.ctx(),
            &api::ShutdownRequest {
                id: "pod".into(),
                ..Default::default()
            },
        )
        .await;
}
