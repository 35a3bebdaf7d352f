//! A pod's user namespace (`hostUsers: false`, KEP-127) and, owned by it, the
//! network, UTS and IPC namespaces its containers join, all pinned as CRI-O pins
//! them. The namespaces must belong to the pod's user namespace: a runtime that
//! enters the user namespace first may then join them, and mounting sysfs there
//! needs privilege over the network namespace's owner.
//!
//! A process with other threads cannot make a user namespace (`unshare` refuses),
//! so a forked child makes them: it unshares the user namespace, waits while the
//! daemon writes its ID maps, unshares the others, and waits while the daemon pins
//! them from `/proc/<child>/ns/`. The child makes nothing but those system calls.

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use super::pinned_ns::{NetnsError, PodNamespace};

pub(crate) use crate::store::{IdMapping, UsernsMappings};

/// The line of `/proc/<pid>/uid_map` a range is.
fn map_line(m: &IdMapping) -> String {
    format!("{} {} {}\n", m.container_id, m.host_id, m.length)
}

fn err<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(std::io::Error) -> NetnsError + 'a {
    move |source| NetnsError::Io {
        path: path.to_path_buf(),
        action,
        source,
    }
}

/// Reads one byte from `fd` (false at end of file): the child's "done".
fn wait_for(fd: &OwnedFd) -> bool {
    let mut byte = [0u8; 1];
    loop {
        match nix::unistd::read(fd, &mut byte) {
            Ok(1) => return true,
            Err(nix::errno::Errno::EINTR) => continue,
            _ => return false,
        }
    }
}

/// The forked child: new user namespace, wait for the maps, new `flags`
/// namespaces, wait until pinned. Only async-signal-safe calls.
fn child(flags: libc::c_int, ready: libc::c_int, go: libc::c_int, parents: [libc::c_int; 2]) -> ! {
    let byte = [1u8];
    let mut buf = [0u8; 1];
    // SAFETY: plain system calls on integers and stack buffers, in a freshly forked
    // child that only makes such calls and then exits.
    unsafe {
        // The daemon's ends: with them open here, the last read never saw the end.
        libc::close(parents[0]);
        libc::close(parents[1]);
        if libc::unshare(libc::CLONE_NEWUSER) != 0
            || libc::write(ready, byte.as_ptr().cast(), 1) != 1
            || libc::read(go, buf.as_mut_ptr().cast(), 1) != 1
            || libc::unshare(flags) != 0
            || libc::write(ready, byte.as_ptr().cast(), 1) != 1
        {
            libc::_exit(1);
        }
        // Until the daemon closes its end: the namespaces are pinned by then.
        libc::read(go, buf.as_mut_ptr().cast(), 1);
        libc::_exit(0)
    }
}

/// Creates the pod's user namespace with `mappings` and pins it at `user_pin`, then
/// the namespaces of `owned` inside it, each pinned at its path. A network
/// namespace gets `lo` up, a UTS namespace `hostname`. On error nothing stays
/// pinned.
pub(crate) fn create_pinned_userns(
    user_pin: &Path,
    owned: &[(PodNamespace, PathBuf)],
    mappings: &UsernsMappings,
    hostname: &str,
) -> Result<(), NetnsError> {
    let pins: Vec<(&str, &Path)> = std::iter::once(("user", user_pin))
        .chain(owned.iter().map(|(k, p)| (k.proc_name(), p.as_path())))
        .collect();
    for (_, path) in &pins {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(err(dir, "create directory"))?;
        }
        std::fs::File::create(path).map_err(err(path, "create mount point"))?;
    }
    let result = make_and_pin(&pins, owned, mappings, hostname);
    if result.is_err() {
        for (_, path) in &pins {
            let _ = super::pinned_ns::remove_pinned(path);
        }
    }
    result
}

fn make_and_pin(
    pins: &[(&str, &Path)],
    owned: &[(PodNamespace, PathBuf)],
    mappings: &UsernsMappings,
    hostname: &str,
) -> Result<(), NetnsError> {
    let user_pin = pins[0].1;
    let sys = |action: &'static str| err(user_pin, action);
    let (ready_r, ready_w) = nix::unistd::pipe().map_err(|e| sys("pipe")(e.into()))?;
    let (go_r, go_w) = nix::unistd::pipe().map_err(|e| sys("pipe")(e.into()))?;
    let flags = owned.iter().fold(0, |f, (k, _)| f | k.clone_flag().bits());
    // SAFETY: the child runs `child`, which only makes async-signal-safe system
    // calls before `_exit`, as a fork of a threaded process must.
    let pid = match unsafe { libc::fork() } {
        -1 => return Err(sys("fork")(std::io::Error::last_os_error())),
        0 => child(
            flags,
            ready_w.as_raw_fd(),
            go_r.as_raw_fd(),
            [ready_r.as_raw_fd(), go_w.as_raw_fd()],
        ),
        pid => pid,
    };
    drop(ready_w);
    drop(go_r);
    let mut go = std::fs::File::from(go_w);
    let outcome = (|| {
        if !wait_for(&ready_r) {
            return Err(sys("create user namespace")(std::io::Error::other(
                "the helper process could not unshare a user namespace",
            )));
        }
        for (file, m) in [("uid_map", mappings.uids), ("gid_map", mappings.gids)] {
            let path = PathBuf::from(format!("/proc/{pid}/{file}"));
            std::fs::write(&path, map_line(&m)).map_err(err(&path, "write ID map"))?;
        }
        go.write_all(&[1]).map_err(sys("signal helper"))?;
        if !wait_for(&ready_r) {
            return Err(sys("create pod namespaces")(std::io::Error::other(
                "the helper process could not unshare the pod's namespaces",
            )));
        }
        for (proc_name, path) in pins {
            let source = format!("/proc/{pid}/ns/{proc_name}");
            nix::mount::mount(
                Some(source.as_str()),
                *path,
                None::<&str>,
                nix::mount::MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| err(path, "bind mount")(e.into()))?;
        }
        Ok(())
    })();
    // Closing our end lets the child exit; reap it either way.
    drop(go);
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    outcome?;
    for (kind, path) in owned {
        super::pinned_ns::set_up_pinned(*kind, path, hostname)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn ids_map_within_their_range() {
        let m = IdMapping {
            container_id: 0,
            host_id: 65536,
            length: 65536,
        };
        assert_eq!(m.to_host(0), Some(65536));
        assert_eq!(m.to_host(1000), Some(66536));
        assert_eq!(m.to_host(65536), None);
        assert_eq!(map_line(&m), "0 65536 65536\n");
    }

    #[test]
    fn a_pinned_user_namespace_owns_the_pod_namespaces() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "making user namespaces with maps needs root (tests/run.sh runs as root)"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let user = dir.path().join("userns/pod");
        let owned = [
            (PodNamespace::Net, dir.path().join("netns/pod")),
            (PodNamespace::Uts, dir.path().join("utsns/pod")),
        ];
        let mappings = UsernsMappings {
            uids: IdMapping {
                container_id: 0,
                host_id: 1 << 20,
                length: 65536,
            },
            gids: IdMapping {
                container_id: 0,
                host_id: 1 << 20,
                length: 65536,
            },
        };
        // Unpinned however the test ends.
        struct Unpin(Vec<std::path::PathBuf>);
        impl Drop for Unpin {
            fn drop(&mut self) {
                for path in &self.0 {
                    let _ = super::super::pinned_ns::remove_pinned(path);
                }
            }
        }
        let _unpin = Unpin(
            std::iter::once(user.clone())
                .chain(owned.iter().map(|(_, p)| p.clone()))
                .collect(),
        );
        create_pinned_userns(&user, &owned, &mappings, "in-userns").expect("create");
        assert!(super::super::pinned_ns::is_pinned(&user));
        assert_ne!(
            std::fs::metadata(&user).expect("user").ino(),
            std::fs::metadata("/proc/self/ns/user").expect("own").ino()
        );
        // NS_GET_USERNS on the pinned network namespace names the pinned user one.
        let net = std::fs::File::open(&owned[0].1).expect("netns");
        // SAFETY: NS_GET_USERNS takes no argument and returns a new fd or -1.
        let owner = unsafe { libc::ioctl(net.as_raw_fd(), 0xb701) };
        assert!(owner >= 0, "{}", std::io::Error::last_os_error());
        // SAFETY: `owner` is a file descriptor this test now owns.
        let owner = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(owner) };
        assert_eq!(
            owner.metadata().expect("owner").ino(),
            std::fs::metadata(&user).expect("user").ino()
        );
    }
}
