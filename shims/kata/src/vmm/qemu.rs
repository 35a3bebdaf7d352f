//! qemu (`qemu-system-x86_64`, Debian's 7.2) as the pod VM's hypervisor.
//!
//! `-M microvm` (no PCI, no firmware, no ACPI: the fastest boot under TCG), the
//! uncompressed kernel booted through PVH, memory from a shared memfd (virtio-fs
//! needs it), and one virtio-serial port named `agent` whose host end is a unix
//! socket qemu listens on.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use super::{Accel, Hypervisor, RunningVm, SharedFs, VmSpec, VmmError, VIRTIOFS_CMDLINE};

/// How long qemu may take to open the agent socket (it does so before the guest
/// runs).
const SOCKET_TIMEOUT: Duration = Duration::from_secs(10);

/// The descriptor number qemu gets the first NIC's tap as (the next NIC's one
/// more).
pub const FIRST_NIC_FD: i32 = 3;

/// qemu, by its binary's path.
#[derive(Debug, Clone)]
pub struct Qemu {
    pub binary: PathBuf,
}

impl Qemu {
    /// qemu's arguments for `spec`.
    pub fn args(spec: &VmSpec) -> Vec<String> {
        let mem = format!("{}M", spec.memory_mib);
        let mut cmdline = vec![
            "console=ttyS0".to_string(),
            // A restart ends the VM (`-no-reboot`), and so does a panic: the agent
            // as PID 1 powers off by restarting (microvm has no ACPI power-off).
            "reboot=t".into(),
            "panic=-1".into(),
            "quiet".into(),
        ];
        if let Some(khz) = spec.tsc_khz {
            cmdline.push(format!("tsc_early_khz={khz}"));
        }
        if matches!(spec.shared_fs, SharedFs::VirtioFs { .. }) {
            cmdline.push(VIRTIOFS_CMDLINE.into());
        }
        let mut args: Vec<String> = vec![
            // Without ACPI in the guest kernel, qemu must not offer it: only then does
            // it list the virtio-mmio devices on the kernel command line.
            "-M".into(),
            "microvm,acpi=off,memory-backend=mem".into(),
            "-object".into(),
            format!("memory-backend-memfd,id=mem,size={mem},share=on"),
            "-m".into(),
            mem,
            "-smp".into(),
            spec.vcpus.to_string(),
        ];
        match spec.accel {
            Accel::Kvm => {
                args.extend(["-accel".into(), "kvm".into(), "-cpu".into(), "host".into()])
            }
            // TCG's translation cache defaults to 1 GiB of address space, much of it
            // touched: 32 MiB holds what a pod's guest runs.
            Accel::Tcg => args.extend(["-accel".into(), "tcg,tb-size=32".into()]),
        }
        args.extend([
            "-nodefaults".into(),
            "-no-user-config".into(),
            "-display".into(),
            "none".into(),
            "-no-reboot".into(),
            "-pidfile".into(),
            spec.pid_file().display().to_string(),
            "-serial".into(),
            format!("file:{}", spec.console_log().display()),
            "-kernel".into(),
            spec.kernel.display().to_string(),
            "-initrd".into(),
            spec.initramfs.display().to_string(),
            "-append".into(),
            cmdline.join(" "),
            // Modern virtio-mmio: virtio-fs refuses the legacy transport.
            "-global".into(),
            "virtio-mmio.force-legacy=false".into(),
            "-device".into(),
            "virtio-serial-device".into(),
            "-chardev".into(),
            format!(
                "socket,id=agent,path={},server=on,wait=off",
                spec.agent_socket().display()
            ),
            "-device".into(),
            "virtserialport,chardev=agent,name=agent".into(),
        ]);
        match spec.shared_fs {
            // The pod's bundles. qemu reads the host's paths itself, so a rootfs
            // mounted there later is seen; `remap` keeps inode numbers apart across
            // the host filesystems below it.
            SharedFs::Virtio9p => args.extend([
                "-fsdev".into(),
                format!(
                    "local,id=shared,path={},security_model=passthrough,multidevs=remap",
                    spec.shared_dir().display()
                ),
                "-device".into(),
                "virtio-9p-device,fsdev=shared,mount_tag=shared".into(),
            ]),
            // virtiofsd serves them; guest memory is a shared memfd for it.
            SharedFs::VirtioFs { .. } => args.extend([
                "-chardev".into(),
                format!("socket,id=vfs,path={}", spec.virtiofsd_socket().display()),
                "-device".into(),
                "vhost-user-fs-device,chardev=vfs,tag=shared".into(),
            ]),
        }
        for (index, nic) in spec.nics.iter().enumerate() {
            let fd = FIRST_NIC_FD + index as i32;
            args.extend([
                "-netdev".into(),
                format!("tap,id=net{index},fd={fd}"),
                "-device".into(),
                format!(
                    "virtio-net-device,netdev=net{index},mac={}",
                    kata_net::mac_text(&nic.mac)
                ),
            ]);
        }
        args
    }

    fn missing(what: &'static str, path: &Path) -> Result<(), VmmError> {
        if path.exists() {
            Ok(())
        } else {
            Err(VmmError::Missing {
                what,
                path: path.to_path_buf(),
            })
        }
    }
}

/// Copies of the NICs' taps numbered above the range they are moved to in qemu
/// (so no move overwrites another's source), closed on exec.
fn nic_fds_above(nics: &[super::Nic]) -> std::io::Result<Vec<OwnedFd>> {
    let floor = FIRST_NIC_FD + nics.len() as i32;
    nics.iter()
        .map(|nic| {
            // SAFETY: F_DUPFD_CLOEXEC only reads the descriptor, which the
            // caller keeps open (`Nic::tap`).
            let fd = unsafe { libc::fcntl(nic.tap, libc::F_DUPFD_CLOEXEC, floor) };
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // SAFETY: `fd` was just opened here and is owned by nothing else.
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        })
        .collect()
}

#[async_trait::async_trait]
impl Hypervisor for Qemu {
    async fn launch(&self, spec: &VmSpec) -> Result<RunningVm, VmmError> {
        Self::missing("the guest kernel", &spec.kernel)?;
        Self::missing("the guest initramfs", &spec.initramfs)?;
        Self::missing("the VM's run directory", &spec.run_dir)?;
        std::fs::create_dir_all(spec.shared_dir()).map_err(|source| VmmError::Spawn {
            binary: self.binary.clone(),
            source,
        })?;
        let log =
            std::fs::File::create(spec.hypervisor_log()).map_err(|source| VmmError::Spawn {
                binary: self.binary.clone(),
                source,
            })?;
        let daemon = match &spec.shared_fs {
            SharedFs::Virtio9p => None,
            SharedFs::VirtioFs { daemon } => Some(start_virtiofsd(daemon, spec).await?),
        };
        let taps = nic_fds_above(&spec.nics).map_err(|source| VmmError::Spawn {
            binary: self.binary.clone(),
            source,
        })?;
        let mut command = tokio::process::Command::new(&self.binary);
        command
            .args(Self::args(spec))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true);
        let raw: Vec<i32> = taps.iter().map(AsRawFd::as_raw_fd).collect();
        // SAFETY: the hook only calls dup2, which is async-signal-safe, on
        // descriptors open in the parent (so in the child), none of them in the
        // target range (see `nic_fds_above`).
        unsafe {
            command.pre_exec(move || {
                for (index, fd) in raw.iter().enumerate() {
                    if libc::dup2(*fd, FIRST_NIC_FD + index as i32) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = command.spawn().map_err(|source| VmmError::Spawn {
            binary: self.binary.clone(),
            source,
        })?;
        let mut vm = RunningVm::new(child, self.binary.clone(), spec.hypervisor_log()).map_err(
            |source| VmmError::Spawn {
                binary: self.binary.clone(),
                source,
            },
        )?;
        if let Some(daemon) = daemon {
            vm = vm.with_daemon(daemon);
        }
        // qemu opens the socket before the guest runs; a wrong option or a missing
        // device makes it exit, before or soon after (see `boot`).
        let deadline = tokio::time::Instant::now() + SOCKET_TIMEOUT;
        while !spec.agent_socket().exists() {
            if let Some(status) = vm.wait_exit(Duration::from_millis(5)).await? {
                let text = std::fs::read_to_string(spec.hypervisor_log()).unwrap_or_default();
                return Err(VmmError::Exited {
                    binary: self.binary.clone(),
                    status: status.to_string(),
                    message: text
                        .trim()
                        .lines()
                        .last()
                        .unwrap_or("no message")
                        .to_string(),
                });
            }
            if tokio::time::Instant::now() >= deadline {
                vm.stop().await?;
                return Err(VmmError::NoSocket {
                    binary: self.binary.clone(),
                    socket: spec.agent_socket(),
                    timeout: SOCKET_TIMEOUT,
                });
            }
        }
        Ok(vm)
    }
}

/// Starts virtio-fs's daemon on the shared directory and waits for its socket.
/// It serves one hypervisor connection and exits when that ends; until qemu
/// connects it is killed with its handle.
async fn start_virtiofsd(binary: &Path, spec: &VmSpec) -> Result<tokio::process::Child, VmmError> {
    let spawn_err = |source| VmmError::Spawn {
        binary: binary.to_path_buf(),
        source,
    };
    crate::shared_mounts::share(&spec.shared_dir()).map_err(|e| VmmError::Spawn {
        binary: binary.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let log = std::fs::File::create(spec.virtiofsd_log()).map_err(spawn_err)?;
    let mut child = tokio::process::Command::new(binary)
        .arg(format!(
            "--socket-path={}",
            spec.virtiofsd_socket().display()
        ))
        .args(["-o", &format!("source={}", spec.shared_dir().display())])
        // Its own mount namespace, a slave of the host's: the rootfs and volumes
        // bound into the directory after the VM started still reach the guest.
        .args(["-o", "sandbox=namespace", "-o", "cache=auto"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .map_err(spawn_err)?;
    let deadline = tokio::time::Instant::now() + SOCKET_TIMEOUT;
    while !spec.virtiofsd_socket().exists() {
        let exited = child.try_wait().map_err(spawn_err)?;
        if exited.is_some() || tokio::time::Instant::now() >= deadline {
            let _ = child.kill().await;
            return Err(VmmError::Exited {
                binary: binary.to_path_buf(),
                status: exited.map_or("did not open its socket".into(), |s| s.to_string()),
                message: super::last_line(&spec.virtiofsd_log())
                    .unwrap_or_else(|| "no message".into()),
            });
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(child)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(accel: Accel) -> VmSpec {
        VmSpec {
            kernel: "/k/vmlinux".into(),
            initramfs: "/k/initramfs".into(),
            memory_mib: 256,
            vcpus: 2,
            run_dir: "/run/vm".into(),
            accel,
            tsc_khz: Some(2_596_122),
            nics: Vec::new(),
            shared_fs: SharedFs::Virtio9p,
        }
    }

    fn value_of<'a>(args: &'a [String], flag: &str) -> Vec<&'a str> {
        args.windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].as_str())
            .collect()
    }

    #[test]
    fn a_tcg_microvm_with_the_agent_port() {
        let args = Qemu::args(&spec(Accel::Tcg));
        assert_eq!(
            value_of(&args, "-M"),
            ["microvm,acpi=off,memory-backend=mem"]
        );
        assert_eq!(value_of(&args, "-m"), ["256M"]);
        assert_eq!(value_of(&args, "-smp"), ["2"]);
        assert_eq!(value_of(&args, "-accel"), ["tcg,tb-size=32"]);
        assert!(value_of(&args, "-cpu").is_empty());
        assert_eq!(value_of(&args, "-kernel"), ["/k/vmlinux"]);
        assert_eq!(value_of(&args, "-initrd"), ["/k/initramfs"]);
        assert_eq!(value_of(&args, "-serial"), ["file:/run/vm/console.log"]);
        assert_eq!(
            value_of(&args, "-chardev"),
            ["socket,id=agent,path=/run/vm/agent.sock,server=on,wait=off"]
        );
        assert!(value_of(&args, "-device").contains(&"virtserialport,chardev=agent,name=agent"));
        assert_eq!(
            value_of(&args, "-fsdev"),
            ["local,id=shared,path=/run/vm/shared,security_model=passthrough,multidevs=remap"]
        );
        assert!(
            value_of(&args, "-device").contains(&"virtio-9p-device,fsdev=shared,mount_tag=shared")
        );
        let cmdline = value_of(&args, "-append")[0];
        for word in [
            "console=ttyS0",
            "reboot=t",
            "panic=-1",
            "tsc_early_khz=2596122",
        ] {
            assert!(cmdline.split(' ').any(|w| w == word), "{word} in {cmdline}");
        }
        assert!(args.contains(&"-no-reboot".to_string()));
        assert_eq!(
            value_of(&args, "-object"),
            ["memory-backend-memfd,id=mem,size=256M,share=on"]
        );
    }

    #[test]
    fn each_nic_is_a_tap_descriptor_with_the_pod_interfaces_mac() {
        let mut s = spec(Accel::Tcg);
        s.nics = vec![
            crate::vmm::Nic {
                mac: [0x0a, 0x58, 0x0a, 0x58, 0, 5],
                tap: 17,
            },
            crate::vmm::Nic {
                mac: [0x0a, 0x58, 0x0a, 0x59, 0, 6],
                tap: 18,
            },
        ];
        let args = Qemu::args(&s);
        assert_eq!(
            value_of(&args, "-netdev"),
            ["tap,id=net0,fd=3", "tap,id=net1,fd=4"]
        );
        let devices = value_of(&args, "-device");
        assert!(devices.contains(&"virtio-net-device,netdev=net0,mac=0a:58:0a:58:00:05"));
        assert!(devices.contains(&"virtio-net-device,netdev=net1,mac=0a:58:0a:59:00:06"));
        assert!(value_of(&Qemu::args(&spec(Accel::Tcg)), "-netdev").is_empty());
    }

    #[test]
    fn virtio_fs_replaces_9p_and_tells_the_agent() {
        let mut s = spec(Accel::Tcg);
        s.shared_fs = SharedFs::VirtioFs {
            daemon: "/usr/lib/qemu/virtiofsd".into(),
        };
        let args = Qemu::args(&s);
        assert!(value_of(&args, "-fsdev").is_empty());
        assert!(value_of(&args, "-chardev").contains(&"socket,id=vfs,path=/run/vm/virtiofsd.sock"));
        assert!(value_of(&args, "-device").contains(&"vhost-user-fs-device,chardev=vfs,tag=shared"));
        assert!(value_of(&args, "-append")[0]
            .split(' ')
            .any(|w| w == VIRTIOFS_CMDLINE));
        let nine_p = Qemu::args(&spec(Accel::Tcg));
        assert!(!value_of(&nine_p, "-append")[0].contains(VIRTIOFS_CMDLINE));
    }

    #[test]
    fn kvm_uses_the_host_cpu() {
        let mut s = spec(Accel::Kvm);
        s.tsc_khz = None;
        let args = Qemu::args(&s);
        assert_eq!(value_of(&args, "-accel"), ["kvm"]);
        assert_eq!(value_of(&args, "-cpu"), ["host"]);
        assert!(!value_of(&args, "-append")[0].contains("tsc_early_khz"));
    }

    #[tokio::test]
    async fn a_missing_kernel_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = spec(Accel::Tcg);
        s.kernel = dir.path().join("vmlinux");
        s.run_dir = dir.path().to_path_buf();
        let err = Qemu {
            binary: "qemu-system-x86_64".into(),
        }
        .launch(&s)
        .await
        .expect_err("no kernel");
        assert!(
            matches!(
                err,
                VmmError::Missing {
                    what: "the guest kernel",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("vmlinux"), "{err}");
    }
}
