//! Pinned pod namespaces (network, UTS, IPC), as CRI-O pins them: created before
//! the pause process and kept alive by a bind mount under the run root, so a pod
//! keeps its network, hostname and IPC objects when its infra process dies, and a
//! restarted daemon finds them by path.

use std::path::{Path, PathBuf};

/// A namespace a pod owns and pins (a pod's user namespace is pinned too, by
/// [`super::userns`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodNamespace {
    Net,
    Uts,
    Ipc,
}

impl PodNamespace {
    pub const ALL: [PodNamespace; 3] = [PodNamespace::Net, PodNamespace::Uts, PodNamespace::Ipc];

    /// The directory under the run root holding one pin per pod (CRI-O's names).
    pub fn dir_name(self) -> &'static str {
        match self {
            PodNamespace::Net => "netns",
            PodNamespace::Uts => "utsns",
            PodNamespace::Ipc => "ipcns",
        }
    }

    /// Its name under `/proc/<pid>/ns/`.
    pub(super) fn proc_name(self) -> &'static str {
        match self {
            PodNamespace::Net => "net",
            PodNamespace::Uts => "uts",
            PodNamespace::Ipc => "ipc",
        }
    }

    pub(super) fn clone_flag(self) -> nix::sched::CloneFlags {
        match self {
            PodNamespace::Net => nix::sched::CloneFlags::CLONE_NEWNET,
            PodNamespace::Uts => nix::sched::CloneFlags::CLONE_NEWUTS,
            PodNamespace::Ipc => nix::sched::CloneFlags::CLONE_NEWIPC,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("pod namespace {path}: {action}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
}

impl NetnsError {
    /// The kernel refused a value or name written there (EINVAL, ENOENT): the
    /// caller's input, not the namespace, is wrong.
    pub fn is_refused_value(&self) -> bool {
        let NetnsError::Io { source, .. } = self;
        matches!(
            source.kind(),
            std::io::ErrorKind::InvalidInput | std::io::ErrorKind::NotFound
        )
    }
}

fn err<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(std::io::Error) -> NetnsError + 'a {
    move |source| NetnsError::Io {
        path: path.to_path_buf(),
        action,
        source,
    }
}

/// Creates a new namespace of `kind` and pins it at `path` (a bind mount of the
/// namespace file). See [`create_pinned_set`].
pub fn create_pinned(kind: PodNamespace, path: &Path, hostname: &str) -> Result<(), NetnsError> {
    create_pinned_set(&[(kind, path.to_path_buf())], hostname)
}

/// Creates a new namespace of each kind in `pins` and pins it at its path (a bind
/// mount of the namespace file). One short-lived thread unshares them all at once,
/// so the daemon's threads never change namespace. A network namespace gets `lo`
/// up; a UTS namespace gets `hostname` (when not empty), so it is set whatever the
/// runtime does with a joined UTS namespace (youki's libcontainer sets none). On
/// failure none of them is left pinned.
pub fn create_pinned_set(
    pins: &[(PodNamespace, PathBuf)],
    hostname: &str,
) -> Result<(), NetnsError> {
    if pins.is_empty() {
        return Ok(());
    }
    let mount_point = |path: &Path| -> Result<(), NetnsError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(err(dir, "create directory"))?;
        }
        std::fs::File::create(path).map_err(err(path, "create mount point"))?;
        Ok(())
    };
    if let Err(e) = pins.iter().try_for_each(|(_, path)| mount_point(path)) {
        remove_all(pins);
        return Err(e);
    }
    let flags = pins
        .iter()
        .fold(nix::sched::CloneFlags::empty(), |f, (kind, _)| {
            f | kind.clone_flag()
        });
    let owned = pins.to_vec();
    let hostname = hostname.to_string();
    let pinned = std::thread::spawn(move || -> Result<(), NetnsError> {
        let first = owned.first().map_or(Path::new(""), |(_, p)| p.as_path());
        nix::sched::unshare(flags).map_err(|e| err(first, "unshare")(e.into()))?;
        for (kind, target) in &owned {
            configure(*kind, target, &hostname)?;
            let source = format!("/proc/thread-self/ns/{}", kind.proc_name());
            nix::mount::mount(
                Some(source.as_str()),
                target,
                None::<&str>,
                nix::mount::MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| err(target, "bind mount")(e.into()))?;
        }
        Ok(())
    })
    .join()
    .unwrap_or_else(|_| {
        Err(NetnsError::Io {
            path: pins.first().map(|(_, p)| p.clone()).unwrap_or_default(),
            action: "pin",
            source: std::io::Error::other("pinning thread panicked"),
        })
    });
    if pinned.is_err() {
        remove_all(pins);
    }
    pinned
}

/// Unpins (or removes the mount point of) every path in `pins`, best effort.
fn remove_all(pins: &[(PodNamespace, PathBuf)]) {
    for (_, path) in pins {
        let _ = remove_pinned(path);
    }
}

/// Sets up the calling thread's new namespace of `kind` (pinned at `path`): `lo` up
/// in a network namespace, as CRI-O and containerd do for every pod whatever the CNI
/// list holds; `hostname` in a UTS namespace.
fn configure(kind: PodNamespace, path: &Path, hostname: &str) -> Result<(), NetnsError> {
    if kind == PodNamespace::Net {
        set_loopback_up().map_err(err(path, "bring up lo"))?;
    }
    if kind == PodNamespace::Uts && !hostname.is_empty() {
        nix::unistd::sethostname(hostname).map_err(|e| err(path, "set hostname")(e.into()))?;
    }
    Ok(())
}

/// Sets up a namespace pinned at `path` by someone else (see [`configure`]), from a
/// short-lived thread that joins it.
pub(super) fn set_up_pinned(
    kind: PodNamespace,
    path: &Path,
    hostname: &str,
) -> Result<(), NetnsError> {
    let target = path.to_path_buf();
    let hostname = hostname.to_string();
    // `configure`'s own error (naming its action) travels inside the thread's Ok.
    on_thread_in(kind, path, move || Ok(configure(kind, &target, &hostname)))
        .map_err(err(path, "set up"))?
}

/// Runs `f` on a short-lived thread that joins the namespace of `kind` pinned at
/// `path`, so the daemon's own threads never change namespace.
fn on_thread_in<T: Send + 'static>(
    kind: PodNamespace,
    path: &Path,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    let ns = std::fs::File::open(path)?;
    std::thread::spawn(move || {
        nix::sched::setns(&ns, kind.clone_flag()).map_err(std::io::Error::from)?;
        f()
    })
    .join()
    .unwrap_or_else(|_| Err(std::io::Error::other("namespace thread panicked")))
}

/// `/proc/sys/` path of a sysctl: dots separate levels, a slash stands for a dot
/// inside one (`net.ipv4.conf.eth0/1.forwarding`), as runc and the kubelet read it.
fn sysctl_path(name: &str) -> PathBuf {
    let relative: String = name
        .chars()
        .map(|c| match c {
            '.' => '/',
            '/' => '.',
            c => c,
        })
        .collect();
    Path::new("/proc/sys").join(relative)
}

/// Writes sysctl `name` in the namespace of `kind` pinned at `path` (the namespace
/// the sysctl belongs to, as the caller checked).
pub fn write_sysctl(
    kind: PodNamespace,
    path: &Path,
    name: &str,
    value: &str,
) -> Result<(), NetnsError> {
    let file = sysctl_path(name);
    let value = value.to_string();
    on_thread_in(kind, path, move || std::fs::write(file, value)).map_err(err(path, "write sysctl"))
}

/// Reads `/proc/thread-self/<relative>` as a thread in the namespace of `kind`
/// pinned at `path` sees it (`net/dev` of a pod's network namespace, say).
pub fn read_proc_in(kind: PodNamespace, path: &Path, relative: &str) -> Result<String, NetnsError> {
    let file = Path::new("/proc/thread-self").join(relative);
    on_thread_in(kind, path, move || std::fs::read_to_string(file)).map_err(err(path, "read"))
}

/// Sets `lo` up in the calling thread's network namespace.
fn set_loopback_up() -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the name and writes the flags of `req`, which
    // lives for the call; the socket fd is open.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the flags member is the one SIOCGIFFLAGS just filled.
    unsafe { req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
    // SAFETY: as above; SIOCSIFFLAGS reads `req`.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Unpins and removes a pinned namespace (idempotent).
pub fn remove_pinned(path: &Path) -> Result<(), NetnsError> {
    match nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(err(path, "unmount")(e.into())),
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(err(path, "remove")(e)),
    }
}

/// Connects to `port` on the loopback of the network namespace at `netns` (the
/// host's when `None`), IPv4 first, then IPv6: what port-forwarding dials. The
/// socket is made on a short-lived thread inside the namespace and keeps it.
pub fn connect_in(netns: Option<&Path>, port: u16) -> std::io::Result<std::net::TcpStream> {
    let dial = move || {
        let v4 = std::net::TcpStream::connect(("127.0.0.1", port));
        v4.or_else(|e| std::net::TcpStream::connect(("::1", port)).map_err(|_| e))
    };
    match netns {
        Some(path) => on_thread_in(PodNamespace::Net, path, dial),
        None => dial(),
    }
}

/// Whether `path` is a pinned namespace (a bind-mounted nsfs file).
pub fn is_pinned(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_a_new_namespace_and_unpins_it() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "pinning a network namespace needs root (tests/run.sh runs as root)"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("netns/pod");
        create_pinned(PodNamespace::Net, &path, "").expect("pin");
        assert!(is_pinned(&path));
        let ours = std::fs::read_link("/proc/self/ns/net").expect("own netns");
        let meta = std::fs::metadata(&path).expect("stat pinned");
        let own = std::fs::metadata("/proc/self/ns/net").expect("stat own");
        use std::os::unix::fs::MetadataExt;
        assert_ne!(
            meta.ino(),
            own.ino(),
            "a new namespace, not ours ({ours:?})"
        );
        assert!(loopback_is_up_in(&path), "lo is up in the new namespace");
        remove_pinned(&path).expect("unpin");
        assert!(!path.exists());
        remove_pinned(&path).expect("idempotent");
    }

    /// Enters the namespace on a thread of its own and reads lo's flags there.
    fn loopback_is_up_in(path: &Path) -> bool {
        on_thread_in(PodNamespace::Net, path, || {
            Ok(nix::ifaddrs::getifaddrs()?.any(|i| {
                i.interface_name == "lo" && i.flags.contains(nix::net::if_::InterfaceFlags::IFF_UP)
            }))
        })
        .expect("read lo in the namespace")
    }

    #[test]
    fn pins_a_set_of_namespaces_from_one_thread() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let pins: Vec<(PodNamespace, PathBuf)> = PodNamespace::ALL
            .iter()
            .map(|k| (*k, dir.path().join(k.dir_name()).join("pod")))
            .collect();
        create_pinned_set(&pins, "set-host").expect("pin");
        for (kind, path) in &pins {
            assert!(is_pinned(path), "{kind:?}");
            let own = format!("/proc/self/ns/{}", kind.proc_name());
            assert_ne!(
                std::fs::metadata(path).expect("stat").ino(),
                std::fs::metadata(own).expect("stat own").ino(),
                "{kind:?} is a new namespace"
            );
        }
        assert!(loopback_is_up_in(&pins[0].1));
        let name = on_thread_in(PodNamespace::Uts, &pins[1].1, || {
            Ok(nix::unistd::gethostname()?)
        })
        .expect("hostname in the namespace");
        assert_eq!(name, "set-host");
        for (_, path) in &pins {
            remove_pinned(path).expect("unpin");
        }

        // A pin that cannot be made leaves none of the set behind.
        let blocked = dir.path().join("file");
        std::fs::write(&blocked, "").expect("write");
        let bad = vec![
            (PodNamespace::Net, dir.path().join("netns/other")),
            (PodNamespace::Uts, blocked.join("under-a-file")),
        ];
        create_pinned_set(&bad, "").expect_err("a path under a file");
        assert!(!bad[0].1.exists(), "the first pin was undone");
    }

    #[test]
    fn sysctls_are_written_in_the_pinned_namespace_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let net = dir.path().join("netns/pod");
        create_pinned(PodNamespace::Net, &net, "").expect("pin");
        let key = "net.ipv4.ip_unprivileged_port_start";
        let host = std::fs::read_to_string(sysctl_path(key)).expect("host value");
        let wanted = if host.trim() == "80" { "81" } else { "80" };
        write_sysctl(PodNamespace::Net, &net, key, wanted).expect("write");
        let read = |rel: &str| read_proc_in(PodNamespace::Net, &net, rel).expect("read");
        let inside = on_thread_in(PodNamespace::Net, &net, move || {
            std::fs::read_to_string(sysctl_path(key))
        })
        .expect("read inside");
        assert_eq!(inside.trim(), wanted);
        assert_eq!(
            std::fs::read_to_string(sysctl_path(key)).expect("host"),
            host,
            "the host's value is untouched"
        );
        assert!(
            read("net/dev").contains("lo:"),
            "net/dev of the pod's namespace"
        );
        assert!(!read("net/dev").contains("eth0"));
        let bad = write_sysctl(PodNamespace::Net, &net, "net.ipv4.no_such_key", "1")
            .expect_err("no such sysctl");
        assert!(bad.is_refused_value(), "{bad}");
        let bad =
            write_sysctl(PodNamespace::Net, &net, key, "not-a-number").expect_err("bad value");
        assert!(bad.is_refused_value(), "{bad}");
        remove_pinned(&net).expect("unpin");
    }

    #[test]
    fn sysctl_names_map_to_proc_paths() {
        assert_eq!(
            sysctl_path("net.ipv4.conf.eth0/1.forwarding"),
            Path::new("/proc/sys/net/ipv4/conf/eth0.1/forwarding")
        );
        assert_eq!(
            sysctl_path("kernel.shm_rmid_forced"),
            Path::new("/proc/sys/kernel/shm_rmid_forced")
        );
    }

    #[test]
    fn pins_uts_and_ipc_namespaces() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().expect("tempdir");
        for (kind, own) in [
            (PodNamespace::Uts, "/proc/self/ns/uts"),
            (PodNamespace::Ipc, "/proc/self/ns/ipc"),
        ] {
            let path = dir.path().join(kind.dir_name()).join("pod");
            create_pinned(kind, &path, "pinned-host").expect("pin");
            assert!(is_pinned(&path));
            let pinned = std::fs::metadata(&path).expect("stat").ino();
            assert_ne!(
                pinned,
                std::fs::metadata(own).expect("stat").ino(),
                "{kind:?}"
            );
            if kind == PodNamespace::Uts {
                let name = on_thread_in(kind, &path, || Ok(nix::unistd::gethostname()?))
                    .expect("hostname in the namespace");
                assert_eq!(name, "pinned-host");
            }
            remove_pinned(&path).expect("unpin");
            assert!(!path.exists());
        }
    }
}
