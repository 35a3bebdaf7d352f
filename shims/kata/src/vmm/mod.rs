//! Starting and stopping a pod's VM, behind the [`Hypervisor`] trait.

mod accel;
mod qemu;

use std::path::PathBuf;
use std::time::Duration;

pub use accel::{kvm_usable, Accel};
pub use qemu::{Qemu, FIRST_NIC_FD};

/// What a pod's VM is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmSpec {
    /// The guest kernel: an uncompressed `vmlinux` (PVH boot).
    pub kernel: PathBuf,
    /// The initramfs whose `/init` is our agent.
    pub initramfs: PathBuf,
    pub memory_mib: u32,
    pub vcpus: u32,
    /// The VM's own directory: the agent's socket, the guest console's log and
    /// the hypervisor's own log (see the methods).
    pub run_dir: PathBuf,
    pub accel: Accel,
    /// The host TSC's frequency in kHz, passed to the guest (`tsc_early_khz`):
    /// under TCG the guest's own calibration can hang its boot.
    pub tsc_khz: Option<u64>,
    /// The guest's NICs, one per pod interface.
    pub nics: Vec<Nic>,
    /// How the shared directory reaches the guest.
    pub shared_fs: SharedFs,
}

/// How the pod's shared directory (the container bundles) reaches the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SharedFs {
    /// virtio-9p, served by the hypervisor itself.
    Virtio9p,
    /// virtio-fs, served by a `virtiofsd` process (this binary) beside the
    /// hypervisor.
    VirtioFs { daemon: PathBuf },
}

pub use protocols::agent::VIRTIOFS_CMDLINE;

/// A guest NIC backed by a tap device on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    /// The guest NIC's MAC: the pod interface's, so the pod's peers see one
    /// address.
    pub mac: [u8; 6],
    /// An open descriptor of the tap, which the caller keeps open until the
    /// hypervisor has started (it gets its own copy).
    pub tap: std::os::fd::RawFd,
}

impl VmSpec {
    /// The unix socket the hypervisor listens on for the agent's port.
    pub fn agent_socket(&self) -> PathBuf {
        self.run_dir.join("agent.sock")
    }

    /// The directory shared with the guest (tag `shared`): the pod's container
    /// bundles.
    pub fn shared_dir(&self) -> PathBuf {
        self.run_dir.join("shared")
    }

    /// The hypervisor's pid, written by itself: what the `delete` action of a
    /// lost shim kills.
    pub fn pid_file(&self) -> PathBuf {
        self.run_dir.join("hypervisor.pid")
    }

    /// The socket virtio-fs's daemon serves the hypervisor on.
    pub fn virtiofsd_socket(&self) -> PathBuf {
        self.run_dir.join("virtiofsd.sock")
    }

    /// virtio-fs's daemon's own messages.
    pub fn virtiofsd_log(&self) -> PathBuf {
        self.run_dir.join("virtiofsd.log")
    }

    /// The guest's serial console.
    pub fn console_log(&self) -> PathBuf {
        self.run_dir.join("console.log")
    }

    /// The hypervisor's own messages (its stderr).
    pub fn hypervisor_log(&self) -> PathBuf {
        self.run_dir.join("hypervisor.log")
    }
}

/// Why a VM could not be started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    #[error("{what} {path} does not exist")]
    Missing { what: &'static str, path: PathBuf },
    #[error("start {binary}: {source}")]
    Spawn {
        binary: PathBuf,
        source: std::io::Error,
    },
    #[error("{binary} exited during start ({status}): {message}")]
    Exited {
        binary: PathBuf,
        status: String,
        /// The hypervisor's last words (its log's tail).
        message: String,
    },
    #[error("{binary} did not open the agent socket {socket} within {timeout:?}")]
    NoSocket {
        binary: PathBuf,
        socket: PathBuf,
        timeout: Duration,
    },
    #[error("VM {pid}: {source}")]
    Io { pid: u32, source: std::io::Error },
}

/// A hypervisor that runs a [`VmSpec`] as a process.
#[async_trait::async_trait]
pub trait Hypervisor: Send + Sync + std::fmt::Debug {
    /// Starts the VM. It runs until [`RunningVm::stop`] or its guest powers off.
    async fn launch(&self, spec: &VmSpec) -> Result<RunningVm, VmmError>;
}

/// A started VM: its hypervisor process (and virtio-fs's daemon, which ends
/// with it).
#[derive(Debug)]
pub struct RunningVm {
    child: tokio::process::Child,
    daemon: Option<tokio::process::Child>,
    pid: u32,
    binary: PathBuf,
    /// The hypervisor's own log (its stderr).
    log: PathBuf,
}

/// The last non-empty line of the file at `path` (a log's last words).
pub fn last_line(path: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_string)
}

impl RunningVm {
    pub(crate) fn new(
        child: tokio::process::Child,
        binary: PathBuf,
        log: PathBuf,
    ) -> Result<Self, std::io::Error> {
        let pid = child
            .id()
            .ok_or_else(|| std::io::Error::other("the hypervisor exited at once"))?;
        Ok(RunningVm {
            child,
            daemon: None,
            pid,
            binary,
            log,
        })
    }

    /// Ties a helper process (virtio-fs's daemon) to the VM: stopped with it.
    pub(crate) fn with_daemon(mut self, daemon: tokio::process::Child) -> Self {
        self.daemon = Some(daemon);
        self
    }

    /// What to say of a hypervisor that ended while the VM was starting.
    pub fn exited(&self, status: std::process::ExitStatus) -> VmmError {
        VmmError::Exited {
            binary: self.binary.clone(),
            status: status.to_string(),
            message: last_line(&self.log).unwrap_or_else(|| "no message".into()),
        }
    }

    /// Waits for the hypervisor to end, however long it takes.
    pub async fn exit(&mut self) -> Result<std::process::ExitStatus, VmmError> {
        let pid = self.pid;
        let status = self
            .child
            .wait()
            .await
            .map_err(|source| VmmError::Io { pid, source })?;
        if let Some(daemon) = self.daemon.as_mut() {
            let _ = daemon.start_kill();
            let _ = daemon.wait().await;
        }
        Ok(status)
    }

    /// The hypervisor process's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Waits for the VM to end by itself (its guest powered off), for at most
    /// `timeout`; `None` if it still runs.
    pub async fn wait_exit(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<std::process::ExitStatus>, VmmError> {
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => status.map(Some).map_err(|source| VmmError::Io {
                pid: self.pid,
                source,
            }),
            Err(_) => Ok(None),
        }
    }

    /// Ends the VM at once (SIGKILL to the hypervisor) and reaps it.
    pub async fn stop(&mut self) -> Result<(), VmmError> {
        let pid = self.pid;
        if self
            .child
            .try_wait()
            .map_err(|source| VmmError::Io { pid, source })?
            .is_none()
        {
            self.child
                .kill()
                .await
                .map_err(|source| VmmError::Io { pid, source })?;
        }
        if let Some(daemon) = self.daemon.as_mut() {
            // It ends by itself once the hypervisor is gone; a stop does not wait.
            let _ = daemon.start_kill();
            let _ = daemon.wait().await;
        }
        Ok(())
    }
}

/// The host's TSC frequency in kHz, from the first `cpu MHz` of `cpuinfo` text.
pub fn tsc_khz(cpuinfo: &str) -> Option<u64> {
    let mhz: f64 = cpuinfo
        .lines()
        .find(|l| l.starts_with("cpu MHz"))?
        .split(':')
        .nth(1)?
        .trim()
        .parse()
        .ok()?;
    // Rounded to whole kHz; the float is never negative or huge here.
    let khz = (mhz * 1000.0).round();
    (khz > 0.0 && khz < 1e9).then_some(khz as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsc_khz_comes_from_the_first_cpu_mhz_line() {
        let text = "processor\t: 0\ncpu MHz\t\t: 2596.122\nprocessor\t: 1\ncpu MHz\t\t: 1000.000\n";
        assert_eq!(tsc_khz(text), Some(2_596_122));
        assert_eq!(tsc_khz("processor: 0\n"), None);
        assert_eq!(tsc_khz("cpu MHz : fast\n"), None);
    }
}
