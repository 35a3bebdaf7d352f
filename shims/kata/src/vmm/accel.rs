//! Hardware virtualization (KVM) where it works, software emulation (TCG) elsewhere.

use std::path::Path;

/// How the guest's CPU runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

/// Whether KVM can run a stock guest kernel here: `/dev/kvm` opens read-write and
/// the loaded KVM vendor module is Intel's or AMD's. Nested setups such as
/// `kvm_pvm` also give a `/dev/kvm`, but run only specially built guests: a stock
/// kernel hangs there, so they count as no KVM.
pub fn kvm_usable(sys_module: &Path, dev_kvm: &Path) -> bool {
    let vendor = ["kvm_intel", "kvm_amd"]
        .iter()
        .any(|m| sys_module.join(m).exists());
    let foreign = ["kvm_pvm"].iter().any(|m| sys_module.join(m).exists());
    vendor
        && !foreign
        && std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(dev_kvm)
            .is_ok()
}

impl Accel {
    /// KVM where [`kvm_usable`] says so, else TCG.
    pub fn detect() -> Accel {
        if kvm_usable(Path::new("/sys/module"), Path::new("/dev/kvm")) {
            Accel::Kvm
        } else {
            Accel::Tcg
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kvm_needs_a_vendor_module_and_no_nested_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let modules = dir.path().join("module");
        let kvm = dir.path().join("kvm");
        std::fs::create_dir_all(modules.join("kvm")).expect("mkdir");
        std::fs::write(&kvm, "").expect("a stand-in for /dev/kvm");
        assert!(!kvm_usable(&modules, &kvm), "kvm alone is no vendor module");
        std::fs::create_dir(modules.join("kvm_intel")).expect("mkdir");
        assert!(kvm_usable(&modules, &kvm));
        std::fs::create_dir(modules.join("kvm_pvm")).expect("mkdir");
        assert!(!kvm_usable(&modules, &kvm), "kvm_pvm runs no stock kernel");
        std::fs::remove_dir(modules.join("kvm_pvm")).expect("rmdir");
        assert!(
            !kvm_usable(&modules, &dir.path().join("none")),
            "no /dev/kvm"
        );
    }
}
