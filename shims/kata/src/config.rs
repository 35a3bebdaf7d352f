//! What a VM pod is made of: where the hypervisor, kernel and initramfs are, and
//! the VM's size. Defaults, then the shim's environment (`CRIO_KATA_*`), then the
//! sandbox task's Create options (containerd's `runtimeoptions.v1.Options`: the
//! handler's `runtime_config_path` file, then its `vm_*` keys as the body, both
//! TOML with the keys of [`VmKeys`]); the pod's own limits size the VM.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::vmm::{tsc_khz, Accel, SharedFs, VmSpec};

/// containerd's sandbox resource annotations (crio-core writes them on the
/// sandbox spec from the pod's `linux.resources`).
pub const SANDBOX_MEMORY: &str = "io.kubernetes.cri.sandbox-memory";
pub const SANDBOX_CPU_QUOTA: &str = "io.kubernetes.cri.sandbox-cpu-quota";
pub const SANDBOX_CPU_PERIOD: &str = "io.kubernetes.cri.sandbox-cpu-period";

/// The keys of the shim's TOML configuration: the `vm_*` keys of a handler
/// table in crio's config.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmKeys {
    pub vm_hypervisor_path: Option<String>,
    pub vm_kernel: Option<String>,
    pub vm_initramfs: Option<String>,
    pub vm_memory_mib: Option<u32>,
    pub vm_vcpus: Option<u32>,
    pub vm_memory_overhead_mib: Option<u32>,
    pub vm_boot_timeout_secs: Option<u32>,
    /// `virtio-9p` or `virtio-fs`.
    pub vm_shared_fs: Option<String>,
    pub vm_virtiofsd_path: Option<String>,
}

/// Where `packaging/install.sh` puts the guest.
pub const GUEST_DIR: &str = "/usr/local/share/crio-rs/kata";

#[derive(Debug, Clone, PartialEq)]
pub struct KataConfig {
    pub qemu: PathBuf,
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    /// Memory for a pod without a memory limit.
    pub memory_mib: u32,
    /// vCPUs for a pod without a CPU limit.
    pub vcpus: u32,
    /// Added to a pod's memory limit: the guest kernel's and agent's share.
    pub memory_overhead_mib: u32,
    pub boot_timeout: Duration,
    /// How the container bundles reach the guest.
    pub shared_fs: SharedFs,
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
            memory_overhead_mib: 128,
            boot_timeout: Duration::from_secs(30),
            shared_fs: SharedFs::Virtio9p,
            vm_root: path("CRIO_KATA_VM_ROOT", "/run/crio-rs-vm".into()),
        }
    }

    /// Applies a TOML configuration (`origin` names it in errors): the keys of
    /// [`VmKeys`], any other key an error.
    pub fn apply_toml(&mut self, text: &str, origin: &str) -> Result<(), String> {
        let keys: VmKeys = toml::from_str(text).map_err(|e| format!("{origin}: {e}"))?;
        if let Some(p) = keys.vm_hypervisor_path {
            self.qemu = p.into();
        }
        if let Some(p) = keys.vm_kernel {
            self.kernel = p.into();
        }
        if let Some(p) = keys.vm_initramfs {
            self.initramfs = p.into();
        }
        if let Some(v) = keys.vm_memory_mib {
            self.memory_mib = v;
        }
        if let Some(v) = keys.vm_vcpus {
            self.vcpus = v;
        }
        if let Some(v) = keys.vm_memory_overhead_mib {
            self.memory_overhead_mib = v;
        }
        if let Some(v) = keys.vm_boot_timeout_secs {
            self.boot_timeout = Duration::from_secs(v.into());
        }
        match keys.vm_shared_fs.as_deref() {
            None => {}
            Some("virtio-9p") => self.shared_fs = SharedFs::Virtio9p,
            Some("virtio-fs") => {
                self.shared_fs = SharedFs::VirtioFs {
                    daemon: protocols::agent::DEFAULT_VIRTIOFSD.into(),
                }
            }
            Some(other) => {
                return Err(format!(
                    "{origin}: vm_shared_fs {other:?}: accepted: \"virtio-9p\", \"virtio-fs\""
                ))
            }
        }
        if let (Some(path), SharedFs::VirtioFs { daemon }) =
            (keys.vm_virtiofsd_path, &mut self.shared_fs)
        {
            *daemon = path.into();
        }
        Ok(())
    }

    /// Applies a sandbox Create's `options`: `runtimeoptions.v1.Options` (its
    /// file, then its body); other options are not ours and change nothing.
    pub fn apply_options(
        &mut self,
        options: Option<&protocols::shim::protobuf::well_known_types::any::Any>,
    ) -> Result<(), String> {
        use protocols::shim::protobuf::Message;
        let Some(any) =
            options.filter(|a| a.type_url.ends_with(protocols::runtimeoptions::TYPE_URL))
        else {
            return Ok(());
        };
        let options = protocols::runtimeoptions::Options::parse_from_bytes(&any.value)
            .map_err(|e| format!("runtime options: {e}"))?;
        if !options.config_path.is_empty() {
            let text = std::fs::read_to_string(&options.config_path)
                .map_err(|e| format!("{}: {e}", options.config_path))?;
            self.apply_toml(&text, &options.config_path)?;
        }
        if !options.config_body.is_empty() {
            self.apply_toml(&options.config_body, "the handler's vm_* keys")?;
        }
        Ok(())
    }

    /// The VM's (memory MiB, vCPUs) for a pod whose sandbox spec carries
    /// containerd's sandbox resource annotations: its memory limit plus the
    /// overhead, its CPU limit rounded up; the defaults where it sets none.
    pub fn size_for(&self, annotations: &BTreeMap<String, String>) -> (u32, u32) {
        let number = |key: &str| {
            annotations
                .get(key)
                .and_then(|v| v.parse::<i64>().ok())
                .filter(|v| *v > 0)
        };
        let memory = number(SANDBOX_MEMORY)
            .map(|bytes| {
                let mib = (bytes as u64).div_ceil(1 << 20);
                u32::try_from(mib)
                    .unwrap_or(u32::MAX)
                    .saturating_add(self.memory_overhead_mib)
            })
            .unwrap_or(self.memory_mib);
        let vcpus = match (number(SANDBOX_CPU_QUOTA), number(SANDBOX_CPU_PERIOD)) {
            (Some(quota), Some(period)) => {
                u32::try_from((quota as u64).div_ceil(period as u64)).unwrap_or(u32::MAX)
            }
            _ => self.vcpus,
        };
        (memory, vcpus.max(1))
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
            shared_fs: self.shared_fs.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_bring_the_handlers_keys_and_unknown_keys_are_named() {
        use protocols::shim::protobuf::Message;
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("kata.toml");
        std::fs::write(&file, "vm_kernel = \"/file/vmlinux\"\nvm_vcpus = 2\n").expect("write");
        let options = protocols::runtimeoptions::Options {
            config_path: file.display().to_string(),
            config_body: "vm_vcpus = 3\nvm_memory_mib = 512\nvm_boot_timeout_secs = 9\n".into(),
            ..Default::default()
        };
        let any = protocols::shim::protobuf::well_known_types::any::Any {
            type_url: protocols::runtimeoptions::TYPE_URL.into(),
            value: options.write_to_bytes().expect("encode"),
            ..Default::default()
        };
        let mut c = KataConfig::from_env(|_| None);
        c.apply_options(Some(&any)).expect("valid");
        assert_eq!(c.kernel, PathBuf::from("/file/vmlinux"));
        assert_eq!((c.vcpus, c.memory_mib), (3, 512), "the body comes last");
        assert_eq!(c.boot_timeout, Duration::from_secs(9));
        let err = c
            .apply_toml("vm_kernal = \"/x\"\n", "/etc/kata.toml")
            .expect_err("typo");
        assert!(
            err.contains("/etc/kata.toml") && err.contains("vm_kernal"),
            "{err}"
        );
    }

    #[test]
    fn the_shared_filesystem_and_its_daemon_are_chosen_by_name() {
        let mut c = KataConfig::from_env(|_| None);
        assert_eq!(c.shared_fs, SharedFs::Virtio9p);
        c.apply_toml("vm_shared_fs = \"virtio-fs\"\n", "t")
            .expect("vfs");
        assert_eq!(
            c.shared_fs,
            SharedFs::VirtioFs {
                daemon: protocols::agent::DEFAULT_VIRTIOFSD.into()
            }
        );
        c.apply_toml("vm_virtiofsd_path = \"/opt/virtiofsd\"\n", "t")
            .expect("daemon");
        assert_eq!(
            c.shared_fs,
            SharedFs::VirtioFs {
                daemon: "/opt/virtiofsd".into()
            }
        );
        let err = c
            .apply_toml("vm_shared_fs = \"nfs\"\n", "/etc/kata.toml")
            .expect_err("nfs");
        assert!(
            err.contains("/etc/kata.toml") && err.contains("virtio-9p"),
            "{err}"
        );
    }

    #[test]
    fn the_pods_limits_size_the_vm() {
        let c = KataConfig::from_env(|_| None);
        let none = BTreeMap::new();
        assert_eq!(c.size_for(&none), (256, 1));
        let pod: BTreeMap<String, String> = [
            (SANDBOX_MEMORY, "536870912"),
            (SANDBOX_CPU_QUOTA, "250000"),
            (SANDBOX_CPU_PERIOD, "100000"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(c.size_for(&pod), (512 + 128, 3));
    }

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
