//! PID 1 duties: the filesystems a Linux userland expects (and the pod's shared
//! directory), and powering off.

use std::path::Path;

use nix::mount::{mount, MsFlags};
use protocols::agent::VIRTIOFS_CMDLINE;

/// A filesystem PID 1 mounts at start.
struct Mount {
    fstype: &'static str,
    target: &'static str,
    flags: MsFlags,
    data: Option<&'static str>,
}

const MOUNTS: &[Mount] = &[
    Mount {
        fstype: "proc",
        target: "/proc",
        flags: MsFlags::MS_NOSUID
            .union(MsFlags::MS_NODEV)
            .union(MsFlags::MS_NOEXEC),
        data: None,
    },
    Mount {
        fstype: "sysfs",
        target: "/sys",
        flags: MsFlags::MS_NOSUID
            .union(MsFlags::MS_NODEV)
            .union(MsFlags::MS_NOEXEC),
        data: None,
    },
    Mount {
        fstype: "cgroup2",
        target: "/sys/fs/cgroup",
        flags: MsFlags::MS_NOSUID
            .union(MsFlags::MS_NODEV)
            .union(MsFlags::MS_NOEXEC),
        data: None,
    },
    Mount {
        fstype: "devtmpfs",
        target: "/dev",
        flags: MsFlags::MS_NOSUID,
        data: Some("mode=0755"),
    },
    Mount {
        fstype: "tmpfs",
        target: "/run",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        data: Some("mode=0755"),
    },
    Mount {
        fstype: "tmpfs",
        target: "/tmp",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        data: Some("mode=1777"),
    },
];

/// Where the root is bound before it is moved over `/`.
const ROOT_BIND: &str = "/.root";

/// Moves the agent's root off the initramfs's own mount: `pivot_root(2)`, which
/// the containers' runtime uses, refuses to leave a root mount without a parent
/// (EINVAL). A bind of the root, moved over `/` and entered with `chroot`, is an
/// ordinary mount with the initramfs as its parent. No copy is made.
pub fn leave_initramfs_mount() -> std::io::Result<()> {
    let step = |what: &str, e: nix::Error| std::io::Error::other(format!("{what}: {e}"));
    std::fs::create_dir_all(ROOT_BIND)?;
    mount(
        Some("/"),
        ROOT_BIND,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| step("bind / on /.root", e))?;
    nix::unistd::chdir(ROOT_BIND).map_err(|e| step("chdir /.root", e))?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
        .map_err(|e| step("move /.root over /", e))?;
    nix::unistd::chroot(".").map_err(|e| step("chroot", e))?;
    nix::unistd::chdir("/").map_err(|e| step("chdir /", e))
}

/// Mounts `/proc`, `/sys` with the cgroup v2 hierarchy, `/dev`, `/run` and `/tmp`
/// (the initramfs holds only their directories). Each failure names the target.
pub fn mount_base() -> std::io::Result<()> {
    for m in MOUNTS {
        std::fs::create_dir_all(m.target)?;
        mount(
            Some(m.fstype),
            Path::new(m.target),
            Some(m.fstype),
            m.flags,
            m.data,
        )
        .map_err(|e| std::io::Error::other(format!("mount {} on {}: {e}", m.fstype, m.target)))?;
    }
    Ok(())
}

/// Where the pod's shared directory (container bundles) appears in the guest.
pub const SHARED_DIR: &str = protocols::agent::GUEST_SHARED_DIR;

/// The virtio-9p tag the host exports the shared directory under.
pub const SHARED_TAG: &str = "shared";

/// Whether the kernel command line `cmdline` asks for virtio-fs.
pub fn wants_virtiofs(cmdline: &str) -> bool {
    cmdline.split_whitespace().any(|w| w == VIRTIOFS_CMDLINE)
}

/// Mounts the host's shared directory at [`SHARED_DIR`]: virtio-fs when the
/// kernel command line says so, else virtio-9p.
pub fn mount_shared() -> std::io::Result<()> {
    std::fs::create_dir_all(SHARED_DIR)?;
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let (fstype, data) = if wants_virtiofs(&cmdline) {
        ("virtiofs", None)
    } else {
        (
            "9p",
            Some("trans=virtio,version=9p2000.L,msize=262144,cache=none"),
        )
    };
    mount(
        Some(SHARED_TAG),
        Path::new(SHARED_DIR),
        Some(fstype),
        MsFlags::MS_NODEV,
        data,
    )
    .map_err(|e| std::io::Error::other(format!("mount {fstype} {SHARED_TAG} on {SHARED_DIR}: {e}")))
}

/// Where the pod's /dev/shm is in the guest (the containers bind it).
pub const POD_SHM_DIR: &str = protocols::agent::GUEST_SHM_DIR;

/// Mounts the pod's /dev/shm, a tmpfs of `size` bytes, at [`POD_SHM_DIR`]
/// (once: a second call finds it mounted and leaves it).
pub fn mount_pod_shm(size: u64) -> Result<(), shim_support::Error> {
    if shim_support::mounts::mounted_below(Path::new(POD_SHM_DIR)).is_some() {
        return Ok(());
    }
    std::fs::create_dir_all(POD_SHM_DIR)
        .map_err(|e| shim_support::Error::io(format!("create {POD_SHM_DIR}"), e))?;
    mount(
        Some("shm"),
        Path::new(POD_SHM_DIR),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(format!("mode=1777,size={size}").as_str()),
    )
    .map_err(|e| shim_support::Error::io(format!("mount tmpfs on {POD_SHM_DIR}"), e.into()))
}

/// Powers the VM off: qemu runs with `-no-reboot` and the kernel with `reboot=t`,
/// so a restart ends the VM (a microvm without ACPI has no power-off).
/// Anywhere but as PID 1 (an agent run on the host by a test) it only exits: a
/// reboot from the host's root would restart the host.
pub fn power_off() -> ! {
    if std::process::id() == 1 {
        nix::unistd::sync();
        let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT);
    }
    std::process::exit(0)
}
