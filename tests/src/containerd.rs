//! Debian's `containerd` (1.6) on a private root, state, socket and ttrpc address,
//! with the in-tree shims first on its PATH, driven with `ctr`. Everything it
//! starts is stopped by PID when dropped, and what it mounted is unmounted.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::process;

pub const CONTAINERD_BINARY: &str = "/usr/bin/containerd";
pub const CTR_BINARY: &str = "/usr/bin/ctr";
/// The shim binary name; containerd maps `io.containerd.runc-rs.v2` to it.
pub const SHIM_NAME: &str = "containerd-shim-runc-rs-v2";
/// The runtime name of the in-tree shim.
pub const RUNTIME: &str = "io.containerd.runc-rs.v2";
/// The in-tree youki shim, next to the runc shim.
pub const YOUKI_SHIM_NAME: &str = "containerd-shim-youki-v2";
/// Default runtime state root of the shim (a namespace directory below it).
pub const RUNC_ROOT: &str = "/run/containerd/runc";

/// The in-tree runc shim: `$SHIM_BINARY`, else `target/<profile>/containerd-shim-runc-rs-v2`
/// beside the test executable (build it first: `cargo build --bins`).
pub fn shim_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("SHIM_BINARY") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test exe has a target dir");
    let shim = profile_dir.join(SHIM_NAME);
    assert!(
        shim.is_file(),
        "{} not found: run `cargo build --bins` first or set SHIM_BINARY",
        shim.display()
    );
    shim
}

/// crun refuses hybrid cgroup hosts while cgroup2 lists a controller; on this
/// machine kind that is hugetlb, which is moved to its own v1 hierarchy (the
/// host preparation the host notes describe; left in place for other tests).
pub fn prepare_crun() {
    let controllers =
        fs::read_to_string("/sys/fs/cgroup/unified/cgroup.controllers").unwrap_or_default();
    if controllers.trim().is_empty() {
        return;
    }
    let target = Path::new("/sys/fs/cgroup/hugetlb");
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    if mountinfo
        .lines()
        .any(|l| l.split(' ').nth(4) == Some("/sys/fs/cgroup/hugetlb"))
    {
        return;
    }
    fs::create_dir_all(target).expect("mkdir /sys/fs/cgroup/hugetlb");
    let status = Command::new("mount")
        .args(["-t", "cgroup", "-o", "hugetlb", "cgroup"])
        .arg(target)
        .status()
        .expect("mount");
    assert!(
        status.success(),
        "moving hugetlb to cgroup v1 for crun failed"
    );
}

/// Stops every shim whose `shim.pid` is under `dir` (SIGTERM, then SIGKILL after
/// a grace period) and removes the socket its `address` file names.
pub fn kill_shims_under(dir: &Path) {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() && !path.is_symlink() && !path.ends_with("rootfs") {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n == "shim.pid") {
                let pid = fs::read_to_string(&path)
                    .ok()
                    .and_then(|t| t.trim().parse::<i32>().ok());
                let address = fs::read_to_string(d.join("address")).ok();
                if let Some(pid) = pid {
                    found.push((pid, address));
                }
            }
        }
    }
    for (pid, _) in &found {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    for (pid, address) in &found {
        while alive(*pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if alive(*pid) {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
        }
        if let Some(address) = address {
            let socket = Path::new(address.trim().trim_start_matches("unix://"));
            if fs::symlink_metadata(socket).is_ok_and(|m| {
                use std::os::unix::fs::FileTypeExt;
                m.file_type().is_socket()
            }) && std::os::unix::net::UnixStream::connect(socket).is_err()
            {
                let _ = fs::remove_file(socket);
            }
        }
    }
}

/// Whether `pid` is running (a zombie counts as gone).
fn alive(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

/// Removes the per-namespace cgroup directories containerd's specs put the
/// containers under (`/<namespace>/<id>`): the runtime removes only the leaves.
pub fn remove_namespace_cgroups(namespace: &str) {
    let Ok(entries) = fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for e in entries.flatten() {
        let dir = e.path().join(namespace);
        if dir.is_dir() {
            if let Err(err) = fs::remove_dir(&dir) {
                eprintln!("cleanup: cannot remove {}: {err}", dir.display());
            }
        }
    }
}

/// Force-deletes every container `binary` lists under `root`.
pub fn delete_containers(binary: &str, root: &Path) {
    if !root.exists() {
        return;
    }
    let list = Command::new(binary)
        .arg("--root")
        .arg(root)
        .args(["list", "-q"])
        .output();
    if let Ok(out) = list {
        for id in String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.is_empty())
        {
            let _ = Command::new(binary)
                .arg("--root")
                .arg(root)
                .args(["delete", "--force", id])
                .status();
        }
    }
}

/// A running containerd.
#[derive(Debug)]
pub struct Containerd {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub namespace: String,
    child: Option<Child>,
}

impl Containerd {
    /// Starts containerd with the CRI plugin off, the in-tree shim on PATH (also
    /// as `containerd-shim-runc-v2`, so `--runtime io.containerd.runc.v2
    /// --runc-binary` reaches it), and waits for its socket.
    pub fn start() -> Containerd {
        crate::require_root();
        let dir = tempfile::Builder::new()
            .prefix("crio-containerd-")
            .tempdir()
            .expect("temp dir");
        let base = dir.path();
        let bin = base.join("bin");
        fs::create_dir_all(&bin).expect("bin dir");
        let shim = shim_binary();
        for name in [SHIM_NAME, "containerd-shim-runc-v2"] {
            std::os::unix::fs::symlink(&shim, bin.join(name)).expect("shim symlink");
        }
        let youki = shim.with_file_name(YOUKI_SHIM_NAME);
        if youki.is_file() {
            std::os::unix::fs::symlink(&youki, bin.join(YOUKI_SHIM_NAME)).expect("shim symlink");
        }
        let socket = base.join("containerd.sock");
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[debug]
  address = "{base}/debug.sock"
  level = "debug"
[metrics]
  address = ""
"#,
            root = base.join("root").display(),
            state = base.join("state").display(),
            sock = socket.display(),
            base = base.display(),
        );
        let config_path = base.join("config.toml");
        fs::write(&config_path, config).expect("config.toml");
        let log = fs::File::create(base.join("containerd.log")).expect("log");
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = Command::new(CONTAINERD_BINARY);
        cmd.arg("--config")
            .arg(&config_path)
            .env("PATH", path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log);
        process::die_with_parent(&mut cmd);
        let child = cmd.spawn().expect("containerd must be installed");
        let namespace = format!(
            "crio-shim-{}-{}",
            std::process::id(),
            base.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("x")
                .replace('.', "")
        );
        let mut c = Containerd {
            dir,
            socket,
            namespace,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if c.socket.exists() && c.ctr(&["version"]).status.success() {
                break;
            }
            if let Some(child) = c.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("containerd exited ({status}):\n{}", c.log());
                }
            }
            assert!(
                Instant::now() < deadline,
                "containerd did not start:\n{}",
                c.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        c
    }

    /// containerd's own log.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    /// `ctr -a <socket> -n <namespace> <args>`.
    pub fn ctr_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(CTR_BINARY);
        cmd.arg("-a")
            .arg(&self.socket)
            .args(["-n", &self.namespace])
            .args(args);
        cmd
    }

    /// Runs ctr and returns its output.
    pub fn ctr(&self, args: &[&str]) -> Output {
        self.ctr_command(args)
            .stdin(Stdio::null())
            .output()
            .expect("ctr")
    }

    /// Runs ctr, asserting success; returns its stdout.
    pub fn ctr_ok(&self, args: &[&str]) -> String {
        let out = self.ctr(args);
        assert!(
            out.status.success(),
            "ctr {args:?} failed ({}): {}\n--- containerd log ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.tail_log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The last lines of containerd's log (shim logs included).
    pub fn tail_log(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    /// Pulls `reference` from a plain-HTTP registry.
    pub fn pull(&self, reference: &str) {
        self.ctr_ok(&["images", "pull", "--plain-http", reference]);
    }

    /// The status column of `ctr task ls` for `id` (RUNNING, PAUSED, STOPPED…).
    pub fn task_status(&self, id: &str) -> Option<String> {
        let out = self.ctr_ok(&["task", "ls"]);
        out.lines()
            .skip(1)
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|cols| cols.first() == Some(&id))
            .and_then(|cols| cols.get(2).map(|s| s.to_string()))
    }

    /// Waits until `ctr task ls` shows `status` for `id`.
    pub fn wait_task_status(&self, id: &str, status: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let now = self.task_status(id);
            if now.as_deref() == Some(status) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "task {id} is {now:?}, not {status}\n{}",
                self.tail_log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The runtime state root the shim uses for this namespace.
    pub fn runc_root(&self) -> PathBuf {
        Path::new(RUNC_ROOT).join(&self.namespace)
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Tasks first, through containerd, while it runs.
        if let Some(child) = self.child.as_mut() {
            if matches!(child.try_wait(), Ok(None)) {
                let out = self.ctr(&["task", "ls", "-q"]);
                for id in String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .filter(|l| !l.is_empty())
                {
                    let _ = self.ctr(&["task", "kill", "-s", "KILL", id]);
                    let _ = self.ctr(&["task", "delete", "-f", id]);
                }
            }
        }
        if let Some(mut child) = self.child.take() {
            process::terminate(&mut child, Duration::from_secs(10));
        }
        let state = self.dir.path().join("state");
        kill_shims_under(&state);
        let root = self.runc_root();
        delete_containers("runc", &root);
        delete_containers("crun", &root);
        let _ = fs::remove_dir_all(&root);
        remove_namespace_cgroups(&self.namespace);
        crate::cleanup::unmount_all_under(self.dir.path());
    }
}
