//! PID 1 duties: the filesystems a Linux userland expects, and reaping orphans.

use std::path::Path;

use nix::mount::{mount, MsFlags};

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

/// Mounts `/proc`, `/sys`, `/dev`, `/run` and `/tmp` (the initramfs holds only
/// their directories). Each failure names the target.
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

/// Reaps every exited child on each SIGCHLD: as PID 1 the agent inherits every
/// orphan in the guest.
pub fn spawn_reaper() -> std::io::Result<()> {
    let mut sigchld = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child())?;
    tokio::spawn(async move {
        while sigchld.recv().await.is_some() {
            use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
            while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                if status == WaitStatus::StillAlive {
                    break;
                }
            }
        }
    });
    Ok(())
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
