//! The guest of VM pods for the tests: kernel and initramfs from
//! `packaging/kata/build-guest.sh` (tests/run.sh builds them and exports
//! `CRIO_KATA_KERNEL` and `CRIO_KATA_INITRAMFS`; a test run alone builds them).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The guest kernel and the agent's initramfs.
#[derive(Debug, Clone)]
pub struct Guest {
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
}

/// The guest, built once per test process when the environment names none.
pub fn guest() -> &'static Guest {
    static GUEST: OnceLock<Guest> = OnceLock::new();
    GUEST.get_or_init(|| {
        if let (Some(kernel), Some(initramfs)) = (
            std::env::var_os("CRIO_KATA_KERNEL"),
            std::env::var_os("CRIO_KATA_INITRAMFS"),
        ) {
            return Guest {
                kernel: kernel.into(),
                initramfs: initramfs.into(),
            };
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let out = Command::new(root.join("packaging/kata/build-guest.sh"))
            .arg("dev")
            .current_dir(&root)
            .output()
            .expect("run packaging/kata/build-guest.sh");
        assert!(
            out.status.success(),
            "build-guest.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        Guest {
            kernel: lines.next().expect("kernel path").into(),
            initramfs: lines.next().expect("initramfs path").into(),
        }
    })
}

/// An initramfs at `out` whose `/init` is a shell script running `script` with
/// busybox: a guest without our agent.
pub fn initramfs_with_init(out: &Path, script: &str) {
    let root = tempfile::tempdir().expect("tempdir");
    for dir in ["bin", "dev", "proc", "sys"] {
        std::fs::create_dir(root.path().join(dir)).expect("mkdir");
    }
    std::fs::copy(crate::test_images::BUSYBOX, root.path().join("bin/busybox")).expect("busybox");
    std::os::unix::fs::symlink("busybox", root.path().join("bin/sh")).expect("sh");
    let init = root.path().join("init");
    std::fs::write(&init, format!("#!/bin/sh\n{script}\n")).expect("init");
    std::fs::set_permissions(&init, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "find . | cpio -o -H newc --quiet > '{}'",
            out.display()
        ))
        .current_dir(root.path())
        .status()
        .expect("cpio");
    assert!(status.success(), "cpio");
}

/// The VM pods' shim binary, beside the test executable's profile directory
/// (build it first: `cargo build --bins`).
/// A drop-in for the `kata` handler: the shim built here, the test guest, and
/// 64 MiB of overhead (the shim's default is 128) — through the handler's keys,
/// as an operator sets them.
pub fn handler_dropin() -> String {
    handler_table("kata", "")
}

/// The same handler table named `name`, with `extra` keys.
pub fn handler_table(name: &str, extra: &str) -> String {
    format!(
        "[crio.runtime.runtimes.{name}]\nruntime_type = \"vm\"\nruntime_path = \"{}\"\n\
         vm_kernel = \"{}\"\nvm_initramfs = \"{}\"\nvm_memory_overhead_mib = 64\n{extra}",
        shim_binary().display(),
        guest().kernel.display(),
        guest().initramfs.display(),
    )
}

pub fn shim_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let shim = exe
        .parent()
        .and_then(Path::parent)
        .expect("test exe has a target dir")
        .join("containerd-shim-kata-rs-v2");
    assert!(
        shim.is_file(),
        "{} not found: run `cargo build --bins` first",
        shim.display()
    );
    shim
}

/// The live qemu processes whose command line names `dir` (each test's VMs
/// live in a directory of their own).
pub fn qemus_under(dir: &Path) -> Vec<u32> {
    let needle = dir.display().to_string();
    crate::process::command_lines()
        .into_iter()
        .filter(|(_, c)| c.contains("qemu-system") && c.contains(&needle))
        .map(|(pid, _)| pid)
        .collect()
}

/// Waits up to 10 s for the qemu processes under `dir` to be gone; returns those
/// left.
pub async fn qemus_gone_under(dir: &Path) -> Vec<u32> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let left = qemus_under(dir);
        if left.is_empty() || std::time::Instant::now() >= deadline {
            return left;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
