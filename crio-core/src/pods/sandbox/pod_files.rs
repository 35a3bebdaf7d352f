//! The files a pod's containers share: `/etc/hostname`, `/etc/hosts`,
//! `/etc/resolv.conf` (from the CRI's `DNSConfig`) and the pod's `/dev/shm`, kept in
//! the pod's bundle directory and bind-mounted into each container.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use protocols::cri;

/// CRI-O's default `/dev/shm` size (`shm_size = "64m"`).
pub const DEFAULT_SHM_SIZE: u64 = 64 << 20;

/// containerd's entries for a pod with a network of its own.
const DEFAULT_HOSTS: &str = "127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
fe00::0\tip6-localnet
fe00::0\tip6-mcastprefix
fe00::1\tip6-allnodes
fe00::2\tip6-allrouters
";

/// Where the pod's files live.
#[derive(Debug, Clone)]
pub struct PodFiles {
    pub dir: PathBuf,
}

impl PodFiles {
    pub(crate) fn new(bundle: &Path) -> Self {
        PodFiles {
            dir: bundle.to_path_buf(),
        }
    }
    pub(crate) fn hostname(&self) -> PathBuf {
        self.dir.join("hostname")
    }
    pub(crate) fn hosts(&self) -> PathBuf {
        self.dir.join("hosts")
    }
    pub(crate) fn resolv_conf(&self) -> PathBuf {
        self.dir.join("resolv.conf")
    }
    pub(crate) fn shm(&self) -> PathBuf {
        self.dir.join("shm")
    }
}

/// `resolv.conf` from the CRI's DNS config (CRI-O's layout: search, nameservers,
/// options); `None` when the config is empty, meaning the host's file is used.
pub(crate) fn resolv_conf(dns: Option<&cri::DnsConfig>) -> Option<String> {
    let dns = dns?;
    if dns.servers.is_empty() && dns.searches.is_empty() && dns.options.is_empty() {
        return None;
    }
    let mut out = String::new();
    if !dns.searches.is_empty() {
        out.push_str(&format!("search {}\n", dns.searches.join(" ")));
    }
    for server in &dns.servers {
        out.push_str(&format!("nameserver {server}\n"));
    }
    if !dns.options.is_empty() {
        out.push_str(&format!("options {}\n", dns.options.join(" ")));
    }
    Some(out)
}

/// `/etc/hosts` for a pod with its own network: the standard entries and a line
/// for each pod IP with the pod's hostname (as the kubelet's managed file has).
pub(crate) fn hosts(hostname: &str, ips: &[IpAddr]) -> String {
    let mut out = DEFAULT_HOSTS.to_string();
    if !hostname.is_empty() {
        for ip in ips {
            out.push_str(&format!("{ip}\t{hostname}\n"));
        }
    }
    out
}

/// The size of a pod's `/dev/shm` in bytes: the `io.kubernetes.cri-o.ShmSize`
/// annotation (`64Mi`, `1G`...) or the default.
pub(crate) fn shm_size(annotation: Option<&str>) -> Result<u64, String> {
    match annotation {
        None | Some("") => Ok(DEFAULT_SHM_SIZE),
        Some(v) => crate::network::pod_request::parse_quantity(v)
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("io.kubernetes.cri-o.ShmSize {v:?} is not a size")),
    }
}

/// The pod's shared files as its tasks mount them: `/etc/hostname`, `/etc/hosts`,
/// `/etc/resolv.conf` (read-only with a read-only rootfs, as containerd) and
/// `/dev/shm` (the host's with host IPC).
pub(crate) fn mounts(
    pod: &crate::store::SandboxRecord,
    readonly: bool,
) -> Vec<oci_spec::runtime::Mount> {
    let files = PodFiles::new(&pod.bundle);
    let mut out = Vec::new();
    for (path, dest) in [
        (files.hostname(), "/etc/hostname"),
        (files.hosts(), "/etc/hosts"),
        (files.resolv_conf(), "/etc/resolv.conf"),
    ] {
        if path.exists() {
            out.push(crate::spec::pod_mount(&path, dest, readonly));
        }
    }
    if pod.host_ipc {
        out.push(crate::spec::pod_mount(
            Path::new("/dev/shm"),
            "/dev/shm",
            false,
        ));
    } else if files.shm().exists() {
        out.push(crate::spec::pod_mount(&files.shm(), "/dev/shm", false));
    }
    out
}

/// Writes a file the way the kubelet's readers expect: whole, mode 0644.
pub(crate) fn write_file(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// Mounts the pod's `/dev/shm` tmpfs (the effect; `unmount_shm` undoes it).
pub(crate) fn mount_shm(path: &Path, size: u64) -> std::io::Result<()> {
    use nix::mount::{mount, MsFlags};
    std::fs::create_dir_all(path)?;
    let data = format!("mode=1777,size={size}");
    mount(
        Some("shm"),
        path,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(data.as_str()),
    )
    .map_err(std::io::Error::from)
}

/// Unmounts the pod's shm if mounted; a path that is not a mount is left alone.
pub(crate) fn unmount_shm(path: &Path) -> std::io::Result<()> {
    use nix::mount::{umount2, MntFlags};
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_follows_crio_layout() {
        let dns = cri::DnsConfig {
            servers: vec!["10.0.0.10".into(), "10.0.0.11".into()],
            searches: vec!["ns.svc.cluster.local".into(), "svc.cluster.local".into()],
            options: vec!["ndots:5".into(), "edns0".into()],
        };
        assert_eq!(
            resolv_conf(Some(&dns)).as_deref(),
            Some(
                "search ns.svc.cluster.local svc.cluster.local\nnameserver 10.0.0.10\n\
                 nameserver 10.0.0.11\noptions ndots:5 edns0\n"
            )
        );
        assert_eq!(resolv_conf(Some(&cri::DnsConfig::default())), None);
        assert_eq!(resolv_conf(None), None);
    }

    #[test]
    fn hosts_name_the_pod() {
        let h = hosts("web-0", &["10.85.0.7".parse().expect("ip")]);
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"), "{h}");
        assert!(h.ends_with("10.85.0.7\tweb-0\n"), "{h}");
    }

    #[test]
    fn shm_size_comes_from_the_annotation() {
        assert_eq!(shm_size(None), Ok(DEFAULT_SHM_SIZE));
        assert_eq!(shm_size(Some("128Mi")), Ok(128 << 20));
        assert!(shm_size(Some("lots")).is_err());
    }
}
