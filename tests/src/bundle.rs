//! OCI bundles for shim tests: a rootfs made from Debian's `busybox-static` with
//! applet symlinks, and a `config.json` close to `runc spec`'s.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::test_images::{APPLETS, BUSYBOX};

/// A bundle directory: `rootfs/` and `config.json`.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub dir: PathBuf,
    pub spec: Value,
}

/// Writes a busybox rootfs into `rootfs` (a directory that may not exist yet).
pub fn busybox_rootfs(rootfs: &Path) {
    for dir in ["bin", "etc", "tmp", "proc", "sys", "dev", "root", "var"] {
        fs::create_dir_all(rootfs.join(dir)).expect("rootfs dir");
    }
    fs::copy(BUSYBOX, rootfs.join("bin/busybox"))
        .unwrap_or_else(|e| panic!("{BUSYBOX}: {e} (install busybox-static)"));
    for applet in APPLETS.iter().chain(["tty", "stty"].iter()) {
        let link = rootfs.join("bin").join(applet);
        if !link.exists() {
            symlink("busybox", &link).expect("applet symlink");
        }
    }
    fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("passwd");
    fs::write(rootfs.join("etc/group"), "root:x:0:\n").expect("group");
}

/// A process spec running `args` as root.
pub fn process(args: &[&str], terminal: bool) -> Value {
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    json!({
        "terminal": terminal,
        "user": {"uid": 0, "gid": 0},
        "args": args,
        "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
        "cwd": "/",
        "capabilities": {
            "bounding": caps, "effective": caps, "permitted": caps, "ambient": caps
        },
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
        "noNewPrivileges": true
    })
}

/// The spec of a container running `args` with its own namespaces.
pub fn spec(args: &[&str], terminal: bool) -> Value {
    json!({
        "ociVersion": "1.0.2",
        "process": process(args, terminal),
        "root": {"path": "rootfs", "readonly": false},
        "hostname": "shimtest",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]}
        ],
        "linux": {
            "namespaces": [
                {"type": "pid"}, {"type": "ipc"}, {"type": "uts"},
                {"type": "mount"}, {"type": "network"}
            ],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    })
}

impl Bundle {
    /// A bundle at `dir` running `args`.
    pub fn create(dir: &Path, args: &[&str], terminal: bool) -> Bundle {
        Self::with_spec(dir, spec(args, terminal))
    }

    /// A bundle at `dir` with `spec` and a busybox rootfs.
    pub fn with_spec(dir: &Path, spec: Value) -> Bundle {
        fs::create_dir_all(dir).expect("bundle dir");
        busybox_rootfs(&dir.join("rootfs"));
        let bundle = Bundle {
            dir: dir.to_path_buf(),
            spec,
        };
        bundle.write_spec();
        bundle
    }

    /// Sets an annotation (e.g. the sandbox id that groups containers into one shim).
    pub fn annotate(&mut self, key: &str, value: &str) {
        self.spec["annotations"][key] = Value::from(value);
        self.write_spec();
    }

    fn write_spec(&self) {
        fs::write(
            self.dir.join("config.json"),
            serde_json::to_vec_pretty(&self.spec).expect("spec json"),
        )
        .expect("write config.json");
    }

    /// Makes a FIFO named `name` in the bundle and returns its path.
    pub fn fifo(&self, name: &str) -> PathBuf {
        let path = self.dir.join(name);
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        path
    }
}
