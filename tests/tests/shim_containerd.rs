//! The in-tree shims under Debian's containerd 1.6 (which calls the task API v2 and
//! reads a plain address from `start`), driven with `ctr` as a user would: the runc
//! shim (`io.containerd.runc-rs.v2`) and the youki shim (`io.containerd.youki.v2`).

use std::process::{Command, Stdio};
use std::time::Duration;

use crio_tests::containerd::{self, Containerd, RUNTIME};
use crio_tests::{Registry, TestImage};

fn setup() -> (Registry, Containerd, String) {
    let registry = Registry::start();
    registry.push_test_images(&[TestImage::Busybox]);
    let containerd = Containerd::start();
    let image = registry.reference(TestImage::Busybox);
    containerd.pull(&image);
    (registry, containerd, image)
}

/// The youki shim's runtime type: containerd finds `containerd-shim-youki-v2`.
const YOUKI: &str = "io.containerd.youki.v2";

#[test]
fn ctr_run_prints_output_and_returns_the_exit_code() {
    run_prints_output(RUNTIME);
}

#[test]
fn ctr_run_through_the_youki_shim() {
    run_prints_output(YOUKI);
}

fn run_prints_output(runtime: &str) {
    let (_registry, c, image) = setup();
    let out = c.ctr(&[
        "run",
        "--rm",
        "--runtime",
        runtime,
        &image,
        "hello",
        "sh",
        "-c",
        "echo hello; echo to-stderr >&2; exit 3",
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "ctr run: stdout {:?} stderr {:?}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        c.tail_log()
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("to-stderr"));
    // --rm removed the task and the container.
    assert!(c.ctr_ok(&["container", "ls", "-q"]).trim().is_empty());
}

#[test]
fn ctr_exec_kill_pause_and_resume_a_running_task() {
    exec_kill_pause_resume(RUNTIME);
}

#[test]
fn youki_shim_exec_kill_pause_and_resume() {
    exec_kill_pause_resume(YOUKI);
}

fn exec_kill_pause_resume(runtime: &str) {
    let (_registry, c, image) = setup();
    c.ctr_ok(&[
        "run",
        "-d",
        "--runtime",
        runtime,
        &image,
        "sleeper",
        "sleep",
        "300",
    ]);
    c.wait_task_status("sleeper", "RUNNING", Duration::from_secs(10));

    let out = c.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        "sleeper",
        "sh",
        "-c",
        "echo exec-hi; hostname; exit 5",
    ]);
    assert_eq!(
        out.status.code(),
        Some(5),
        "exec: {:?}\n{}",
        out,
        c.tail_log()
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("exec-hi\n"), "{text:?}");

    let ps = c.ctr_ok(&["task", "ps", "sleeper"]);
    assert!(ps.lines().count() >= 2, "task ps: {ps}");

    c.ctr_ok(&["task", "pause", "sleeper"]);
    c.wait_task_status("sleeper", "PAUSED", Duration::from_secs(10));
    c.ctr_ok(&["task", "resume", "sleeper"]);
    c.wait_task_status("sleeper", "RUNNING", Duration::from_secs(10));

    let metrics = c.ctr_ok(&["task", "metrics", "sleeper"]);
    assert!(
        metrics.contains("memory") || metrics.contains("MEMORY") || metrics.contains("pids"),
        "metrics: {metrics}"
    );

    c.ctr_ok(&["task", "kill", "-s", "SIGKILL", "sleeper"]);
    c.wait_task_status("sleeper", "STOPPED", Duration::from_secs(10));
    let deleted = c.ctr_ok(&["task", "delete", "sleeper"]);
    assert!(
        deleted.contains("137") || deleted.trim().is_empty(),
        "task delete: {deleted}"
    );
    c.ctr_ok(&["container", "delete", "sleeper"]);
}

#[test]
fn runc_binary_option_selects_crun() {
    containerd::prepare_crun();
    let (_registry, c, image) = setup();
    // `--runc-binary` is only accepted for io.containerd.runc.v2, which this
    // containerd resolves to the in-tree shim on its PATH.
    c.ctr_ok(&[
        "run",
        "-d",
        "--runtime",
        "io.containerd.runc.v2",
        "--runc-binary",
        "crun",
        &image,
        "viacrun",
        "sleep",
        "300",
    ]);
    c.wait_task_status("viacrun", "RUNNING", Duration::from_secs(10));
    let listed = Command::new("crun")
        .arg("--root")
        .arg(c.runc_root())
        .args(["list", "-q"])
        .output()
        .expect("crun list");
    assert!(
        String::from_utf8_lossy(&listed.stdout)
            .lines()
            .any(|l| l == "viacrun"),
        "crun does not know the container: {listed:?}\n{}",
        c.tail_log()
    );
    let out = c.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e",
        "viacrun",
        "echo",
        "in-crun",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "in-crun\n");
    c.ctr_ok(&["task", "kill", "-s", "SIGKILL", "viacrun"]);
    c.wait_task_status("viacrun", "STOPPED", Duration::from_secs(10));
    c.ctr_ok(&["task", "delete", "viacrun"]);
}

#[test]
fn ctr_run_with_a_terminal() {
    run_with_a_terminal(RUNTIME);
}

#[test]
fn youki_shim_run_with_a_terminal() {
    run_with_a_terminal(YOUKI);
}

fn run_with_a_terminal(runtime: &str) {
    let (_registry, c, image) = setup();
    // `ctr run -t` needs a terminal of its own: `script` gives it one.
    let mut cmd = c.ctr_command(&[
        "run",
        "-t",
        "--rm",
        "--runtime",
        runtime,
        &image,
        "tty1",
        "sh",
        "-c",
        "tty; exit 7",
    ]);
    let line = format!("{cmd:?}").replace('"', "");
    let _ = &mut cmd;
    let out = Command::new("script")
        .args(["-qefc", &line, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("script (bsdutils)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("/dev/pts/0"),
        "tty run output: {text:?}\n{}",
        c.tail_log()
    );
    assert_eq!(out.status.code(), Some(7), "{text:?}");
}
