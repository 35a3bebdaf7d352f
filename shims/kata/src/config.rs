//! What a VM pod is made of: where the hypervisor, kernel and initramfs are, and
//! the VM's size. Read from the shim's environment (the core passes its own) until
//! the handler's table in crio's config carries it.

use std::path::PathBuf;
use std::time::Duration;

use crate::vmm::{tsc_khz, Accel, VmSpec};

/// Where `packaging/install.sh` puts the guest.
pub const GUEST_DIR: &str = "/usr/local/share/crio-rs/kata";

#[derive(Debug, Clone, PartialEq)]
pub struct KataConfig {
    pub qemu: PathBuf,
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    pub memory_mib: u32,
    pub vcpus: u32,
    pub boot_timeout: Duration,
    /// Each VM's run directory is a child of this (short: qemu's socket paths
    /// must fit in 108 bytes).
    pub vm_root: PathBuf,
}

impl KataConfig {
    /// `CRIO_KATA_QEMU`, `CRIO_KATA_KERNEL`, `CRIO_KATA_INITRAMFS`,
    /// `CRIO_KATA_MEMORY_MIB`, `CRIO_KATA_VCPUS`, `CRIO_KATA_VM_ROOT`, else defaults.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> KataConfig {
        let path = |name: &str, default: String| PathBuf::from(var(name).unwrap_or(default));
        KataConfig {
            qemu: path("CRIO_KATA_QEMU", "qemu-system-x86_64".into()),
            kernel: path("CRIO_KATA_KERNEL", format!("{GUEST_DIR}/vmlinux")),
            initramfs: path("CRIO_KATA_INITRAMFS", format!("{GUEST_DIR}/initramfs.cpio")),
            memory_mib: var("CRIO_KATA_MEMORY_MIB")
                .and_then(|v| v.parse().ok())
                .unwrap_or(256),
            vcpus: var("CRIO_KATA_VCPUS")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1),
            boot_timeout: Duration::from_secs(30),
            vm_root: path("CRIO_KATA_VM_ROOT", "/run/crio-rs-vm".into()),
        }
    }

    /// The run directory of the VM of the pod whose sandbox id is `sandbox_id`
    /// (its first 16 characters: qemu's socket paths must stay short).
    pub fn run_dir(&self, sandbox_id: &str) -> PathBuf {
        let short: String = sandbox_id.chars().take(16).collect();
        self.vm_root.join(short)
    }

    /// The VM of a pod whose run directory is `run_dir`.
    pub fn vm_spec(&self, run_dir: PathBuf) -> VmSpec {
        VmSpec {
            kernel: self.kernel.clone(),
            initramfs: self.initramfs.clone(),
            memory_mib: self.memory_mib,
            vcpus: self.vcpus,
            run_dir,
            accel: Accel::detect(),
            tsc_khz: tsc_khz(&std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default()),
            nics: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let d = KataConfig::from_env(|_| None);
        assert_eq!(
            d.kernel,
            PathBuf::from("/usr/local/share/crio-rs/kata/vmlinux")
        );
        assert_eq!((d.memory_mib, d.vcpus), (256, 1));
        let o = KataConfig::from_env(|k| match k {
            "CRIO_KATA_KERNEL" => Some("/k".into()),
            "CRIO_KATA_MEMORY_MIB" => Some("512".into()),
            "CRIO_KATA_VCPUS" => Some("many".into()),
            _ => None,
        });
        assert_eq!(o.kernel, PathBuf::from("/k"));
        assert_eq!(o.memory_mib, 512);
        assert_eq!(o.vcpus, 1, "a bad number keeps the default");
        assert_eq!(
            d.run_dir(&"ab".repeat(32)),
            PathBuf::from("/run/crio-rs-vm/abababababababab")
        );
    }
}
