//! What libcontainer 0.7.0 leaves undone in a created container's mounts, finished
//! from the helper before the container starts, inside the container's mount
//! namespace:
//!
//! - bind mounts get no propagation type of their own (it mounts with
//!   `open_tree`/`move_mount` and never sets `propagation`, so every bind stays a
//!   slave of the host): `rprivate`/`rslave`/`rshared` are applied here;
//! - cgroup v1 hierarchies are mounted read-write even when the spec's
//!   `/sys/fs/cgroup` mount says `ro`: they are remounted read-only here.
//!
//! The container's init is still waiting for `start`, so none of its code has run.

use std::path::Path;

use libcontainer::oci_spec::runtime::Spec;

/// One line of `/proc/self/mountinfo`: mount point and filesystem type.
fn mount_points(mountinfo: &str) -> Vec<(String, String)> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let fields: Vec<&str> = l.split(' ').collect();
            let point = fields.get(4)?;
            let sep = fields.iter().position(|f| *f == "-")?;
            let fstype = fields.get(sep + 1)?;
            Some((point.replace("\\040", " "), fstype.to_string()))
        })
        .collect()
}

/// The propagation a mount's options ask for.
fn propagation(options: &[String]) -> Option<libc::c_ulong> {
    options.iter().rev().find_map(|o| match o.as_str() {
        "rprivate" => Some(libc::MS_PRIVATE | libc::MS_REC),
        "private" => Some(libc::MS_PRIVATE),
        "rslave" => Some(libc::MS_SLAVE | libc::MS_REC),
        "slave" => Some(libc::MS_SLAVE),
        "rshared" => Some(libc::MS_SHARED | libc::MS_REC),
        "shared" => Some(libc::MS_SHARED),
        _ => None,
    })
}

fn mount_call(target: &str, flags: libc::c_ulong) -> Result<(), String> {
    let c = std::ffi::CString::new(target).map_err(|e| e.to_string())?;
    // SAFETY: mount(2) with no source, type or data, on a NUL-terminated path.
    let rc = unsafe {
        libc::mount(
            std::ptr::null(),
            c.as_ptr(),
            std::ptr::null(),
            flags,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(format!("{target}: {}", std::io::Error::last_os_error()))
    }
}

/// Fixes the mounts the spec describes, from a thread that enters the mount
/// namespace of `pid` (with its own filesystem context, so this process keeps its
/// root and can still write its log).
pub fn finish(pid: i32, spec: &Spec) -> Result<(), String> {
    let spec = spec.clone();
    std::thread::spawn(move || finish_in_thread(pid, &spec))
        .join()
        .map_err(|_| "mount fixing thread panicked".to_string())?
}

fn finish_in_thread(pid: i32, spec: &Spec) -> Result<(), String> {
    let mounts = spec.mounts().clone().unwrap_or_default();
    let cgroup_ro = mounts.iter().any(|m| {
        m.destination() == Path::new("/sys/fs/cgroup")
            && m.options()
                .as_ref()
                .is_some_and(|o| o.iter().any(|x| x == "ro"))
    });
    let wanted: Vec<(String, libc::c_ulong)> = mounts
        .iter()
        .filter(|m| m.typ().as_deref() == Some("bind"))
        .filter_map(|m| {
            let p = propagation(m.options().as_deref().unwrap_or_default())?;
            Some((m.destination().display().to_string(), p))
        })
        .collect();
    if wanted.is_empty() && !cgroup_ro {
        return Ok(());
    }
    // Read before entering: the container's /proc belongs to its PID namespace,
    // where this helper has no /proc/self.
    let info = std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .map_err(|e| format!("mounts of {pid}: {e}"))?;
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/mnt"))
        .map_err(|e| format!("mount namespace of {pid}: {e}"))?;
    use std::os::fd::AsRawFd;
    // SAFETY: unshare(2) of this thread's filesystem context (root, cwd) only.
    if unsafe { libc::unshare(libc::CLONE_FS) } != 0 {
        return Err(format!("unshare fs: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: setns(2) on an fd we own, from a thread with its own fs context.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNS) } != 0 {
        return Err(format!(
            "enter mount namespace of {pid}: {}",
            std::io::Error::last_os_error()
        ));
    }
    let points = mount_points(&info);
    for (dest, flags) in &wanted {
        if points.iter().any(|(p, _)| p == dest) {
            mount_call(dest, *flags)?;
        }
    }
    if cgroup_ro {
        for (point, fstype) in &points {
            if fstype == "cgroup" && point.starts_with("/sys/fs/cgroup/") {
                mount_call(
                    point,
                    libc::MS_REMOUNT
                        | libc::MS_BIND
                        | libc::MS_RDONLY
                        | libc::MS_NOSUID
                        | libc::MS_NODEV
                        | libc::MS_NOEXEC,
                )?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_and_options_parse() {
        let info = "36 35 0:30 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
                    40 35 254:0 /tmp/x /ro ro,relatime master:1 - ext4 /dev/vda rw\n";
        let points = mount_points(info);
        assert_eq!(points[0], ("/sys/fs/cgroup/cpu".into(), "cgroup".into()));
        assert_eq!(points[1], ("/ro".into(), "ext4".into()));
        let o = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            propagation(&o(&["rbind", "rprivate", "ro"])),
            Some(libc::MS_PRIVATE | libc::MS_REC)
        );
        assert_eq!(propagation(&o(&["rbind", "ro"])), None);
    }
}
