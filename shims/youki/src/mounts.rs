//! What libcontainer 0.7.0 leaves undone in a created container's mounts, finished
//! from the helper before the container starts, inside the container's mount
//! namespace:
//!
//! - bind mounts get no propagation type of their own (it mounts with
//!   `open_tree`/`move_mount` and never sets `propagation`, so every bind stays a
//!   slave of the host): `rprivate`/`rslave`/`rshared` are applied here;
//! - the cgroup v1 mount is done here, as runc lays it out (a tmpfs with a bind of
//!   the container's own cgroup per hierarchy, and symlinks for co-mounted ones).
//!   libcontainer's own v1 mount looks its init's PID up in the host's `/proc`,
//!   which fails in a joined PID namespace once that PID is not a host process too
//!   (`rootfs/mount.rs:281`), and it mounts the hierarchies read-write even when
//!   the spec says `ro`. [`crate::cli::normalize_spec`] takes the mount out of what
//!   libcontainer sees.
//!
//! The container's init is still waiting for `start`, so none of its code has run.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use libcontainer::oci_spec::runtime::Spec;

/// One line of `/proc/<pid>/mountinfo`.
#[derive(Debug, PartialEq)]
struct MountLine {
    /// The directory of the filesystem that is mounted.
    root: String,
    point: String,
    fstype: String,
    super_options: String,
}

fn mount_lines(mountinfo: &str) -> Vec<MountLine> {
    let unescape = |s: &str| s.replace("\\040", " ");
    mountinfo
        .lines()
        .filter_map(|l| {
            let fields: Vec<&str> = l.split(' ').collect();
            let sep = fields.iter().position(|f| *f == "-")?;
            Some(MountLine {
                root: unescape(fields.get(3)?),
                point: unescape(fields.get(4)?),
                fstype: fields.get(sep + 1)?.to_string(),
                super_options: fields.get(sep + 3)?.to_string(),
            })
        })
        .collect()
}

/// A cgroup v1 hierarchy as the container sees it: its directory name under
/// `/sys/fs/cgroup` and, on the host, the container's cgroup in it.
#[derive(Debug, PartialEq)]
struct Hierarchy {
    name: String,
    source: PathBuf,
}

/// Matches the host's v1 hierarchy mounts with the container's cgroups
/// (`/proc/<pid>/cgroup`: `id:controllers:path`, controllers as in the mount's
/// options, `name=systemd` for a named hierarchy).
fn v1_hierarchies(host_mountinfo: &str, proc_cgroup: &str) -> Vec<Hierarchy> {
    let cgroups: Vec<(Vec<&str>, &str)> = proc_cgroup
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            let mut controllers: Vec<&str> = controllers.split(',').collect();
            controllers.sort_unstable();
            (id != "0").then_some((controllers, path))
        })
        .collect();
    mount_lines(host_mountinfo)
        .into_iter()
        .filter(|m| m.fstype == "cgroup" && m.point.starts_with("/sys/fs/cgroup/"))
        .filter_map(|m| {
            let mut wanted: Vec<&str> = m
                .super_options
                .split(',')
                .filter(|o| !matches!(*o, "rw" | "ro" | "clone_children" | "noprefix" | "xattr"))
                .filter(|o| !o.starts_with("release_agent="))
                .collect();
            wanted.sort_unstable();
            let (_, path) = cgroups.iter().find(|(c, _)| *c == wanted)?;
            let relative = path.strip_prefix(m.root.as_str()).unwrap_or(path);
            Some(Hierarchy {
                name: Path::new(&m.point).file_name()?.to_str()?.to_string(),
                source: Path::new(&m.point).join(relative.trim_start_matches('/')),
            })
        })
        .collect()
}

/// The links a co-mounted hierarchy gets (`cpu` and `cpuacct` for `cpu,cpuacct`).
fn comount_links(name: &str) -> Vec<&str> {
    if name.contains(',') {
        name.split(',')
            .filter(|n| !n.starts_with("name="))
            .collect()
    } else {
        Vec::new()
    }
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

fn cstring(s: &str) -> Result<CString, String> {
    CString::new(s).map_err(|e| format!("{s:?}: {e}"))
}

fn os_err(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

/// mount(2); `source`, `fstype` and `data` may be absent.
fn mount_call(
    source: Option<&str>,
    target: &str,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> Result<(), String> {
    let (source, fstype, data) = (
        source.map(cstring).transpose()?,
        fstype.map(cstring).transpose()?,
        data.map(cstring).transpose()?,
    );
    let ptr = |c: &Option<CString>| c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
    let c = cstring(target)?;
    // SAFETY: mount(2) with NUL-terminated strings (or null) that outlive the call.
    let rc = unsafe {
        libc::mount(
            ptr(&source),
            c.as_ptr(),
            ptr(&fstype),
            flags,
            ptr(&data).cast(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(os_err(target))
    }
}

/// Changes the flags (propagation, or a remount) of the mount at `target`.
fn remount(target: &str, flags: libc::c_ulong) -> Result<(), String> {
    mount_call(None, target, None, flags, None)
}

/// A detached copy of the mount at `path` (open_tree(2) with `OPEN_TREE_CLONE`), to
/// be attached in another mount namespace.
fn clone_tree(path: &Path) -> Result<OwnedFd, String> {
    let c = cstring(&path.display().to_string())?;
    // SAFETY: open_tree(2) on a NUL-terminated path; the returned fd is owned below.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(os_err(&format!("clone {}", path.display())));
    }
    // SAFETY: open_tree returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Attaches a detached mount (from [`clone_tree`]) at `target`.
fn attach_tree(tree: &OwnedFd, target: &str) -> Result<(), String> {
    let c = cstring(target)?;
    // SAFETY: move_mount(2) from an fd we own to a NUL-terminated path.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            c.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(os_err(&format!("attach {target}")))
    }
}

/// linux/mount.h: `from_path` is empty, the tree is the fd itself.
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x04;

const CGROUP_FLAGS: libc::c_ulong = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;

/// Fixes the mounts the spec describes, from a thread that enters the mount
/// namespace of `pid` (with its own filesystem context, so this process keeps its
/// root and can still write its log). `cgroup_v1`: the host has v1 hierarchies, so
/// the spec's `cgroup` mount is done here.
pub fn finish(pid: i32, spec: &Spec, cgroup_v1: bool) -> Result<(), String> {
    let spec = spec.clone();
    std::thread::spawn(move || finish_in_thread(pid, &spec, cgroup_v1))
        .join()
        .map_err(|_| "mount fixing thread panicked".to_string())?
}

/// The spec's cgroup mount: its destination and whether it is read-only.
fn cgroup_mount(spec: &Spec) -> Option<(String, bool)> {
    let m = spec
        .mounts()
        .as_ref()?
        .iter()
        .find(|m| m.typ().as_deref() == Some("cgroup"))?;
    let ro = m
        .options()
        .as_ref()
        .is_some_and(|o| o.iter().any(|x| x == "ro"));
    Some((m.destination().display().to_string(), ro))
}

fn finish_in_thread(pid: i32, spec: &Spec, cgroup_v1: bool) -> Result<(), String> {
    let mounts = spec.mounts().clone().unwrap_or_default();
    let wanted: Vec<(String, libc::c_ulong)> = mounts
        .iter()
        .filter(|m| m.typ().as_deref() == Some("bind"))
        .filter_map(|m| {
            let p = propagation(m.options().as_deref().unwrap_or_default())?;
            Some((m.destination().display().to_string(), p))
        })
        .collect();
    let cgroup = cgroup_mount(spec).filter(|_| cgroup_v1);
    if wanted.is_empty() && cgroup.is_none() {
        return Ok(());
    }
    // Read and opened before entering: the container's /proc belongs to its PID
    // namespace, where this helper has no /proc/self, and host paths are not
    // reachable from inside.
    let read = |path: String| std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"));
    let info = read(format!("/proc/{pid}/mountinfo"))?;
    let trees = match &cgroup {
        Some(_) => {
            let hierarchies = v1_hierarchies(
                &read("/proc/self/mountinfo".into())?,
                &read(format!("/proc/{pid}/cgroup"))?,
            );
            hierarchies
                .into_iter()
                .map(|h| Ok((h.name, clone_tree(&h.source)?)))
                .collect::<Result<Vec<_>, String>>()?
        }
        None => Vec::new(),
    };
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/mnt"))
        .map_err(|e| format!("mount namespace of {pid}: {e}"))?;
    // SAFETY: unshare(2) of this thread's filesystem context (root, cwd) only.
    if unsafe { libc::unshare(libc::CLONE_FS) } != 0 {
        return Err(os_err("unshare fs"));
    }
    // SAFETY: setns(2) on an fd we own, from a thread with its own fs context.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNS) } != 0 {
        return Err(os_err(&format!("enter mount namespace of {pid}")));
    }
    let points = mount_lines(&info);
    for (dest, flags) in &wanted {
        if points.iter().any(|m| &m.point == dest) {
            remount(dest, *flags)?;
        }
    }
    if let Some((dest, ro)) = cgroup {
        mount_cgroup_v1(&dest, ro, &trees)?;
    }
    Ok(())
}

/// runc's cgroup v1 layout at `dest`, from inside the container's mount namespace.
fn mount_cgroup_v1(dest: &str, ro: bool, trees: &[(String, OwnedFd)]) -> Result<(), String> {
    mount_call(
        Some("tmpfs"),
        dest,
        Some("tmpfs"),
        CGROUP_FLAGS,
        Some("mode=755"),
    )?;
    let read_only = if ro { libc::MS_RDONLY } else { 0 };
    for (name, tree) in trees {
        let target = format!("{dest}/{name}");
        std::fs::create_dir(&target).map_err(|e| format!("{target}: {e}"))?;
        attach_tree(tree, &target)?;
        remount(
            &target,
            libc::MS_REMOUNT | libc::MS_BIND | CGROUP_FLAGS | read_only,
        )?;
        for link in comount_links(name) {
            let at = format!("{dest}/{link}");
            if !Path::new(&at).exists() {
                std::os::unix::fs::symlink(name, &at).map_err(|e| format!("{at}: {e}"))?;
            }
        }
    }
    if ro {
        mount_call(
            None,
            dest,
            None,
            libc::MS_REMOUNT | CGROUP_FLAGS | libc::MS_RDONLY,
            Some("mode=755"),
        )?;
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
        let points = mount_lines(info);
        assert_eq!(points[0].point, "/sys/fs/cgroup/cpu");
        assert_eq!(points[0].fstype, "cgroup");
        assert_eq!(points[0].super_options, "rw,cpu");
        assert_eq!(points[1].root, "/tmp/x");
        assert_eq!(points[1].point, "/ro");
        let o = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            propagation(&o(&["rbind", "rprivate", "ro"])),
            Some(libc::MS_PRIVATE | libc::MS_REC)
        );
        assert_eq!(propagation(&o(&["rbind", "ro"])), None);
    }

    #[test]
    fn v1_hierarchies_pair_host_mounts_with_the_container_cgroups() {
        let host = "31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755\n\
                    32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpuacct,cpu\n\
                    35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
                    40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n\
                    41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n\
                    42 31 0:39 /nested /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n";
        let cgroup = "5:pids:/nested/pod/ctr\n4:memory:/pod/ctr\n\
                      2:cpu,cpuacct:/pod/ctr\n1:name=systemd:/\n0::/\n";
        let found = v1_hierarchies(host, cgroup);
        let h = |name: &str, source: &str| Hierarchy {
            name: name.into(),
            source: source.into(),
        };
        assert_eq!(
            found,
            vec![
                h("cpu,cpuacct", "/sys/fs/cgroup/cpu,cpuacct/pod/ctr"),
                h("memory", "/sys/fs/cgroup/memory/pod/ctr"),
                h("systemd", "/sys/fs/cgroup/systemd/"),
                h("pids", "/sys/fs/cgroup/pids/pod/ctr"),
            ]
        );
        assert_eq!(comount_links("cpu,cpuacct"), vec!["cpu", "cpuacct"]);
        assert!(comount_links("memory").is_empty());
    }
}
