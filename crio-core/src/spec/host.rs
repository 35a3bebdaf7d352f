//! What the host lets the daemon grant: its own capabilities and OOM score.
//! Restricted hosts (no CAP_SYS_RESOURCE here) need both to clamp what a spec asks.

use std::collections::HashSet;

use oci_spec::runtime::Capability;

/// Every capability in this process's bounding set.
pub(crate) fn held_capabilities() -> HashSet<Capability> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    capabilities_in_mask(mask)
}

/// The capabilities whose bits are set in `mask` (bit N = capability number N).
pub(super) fn capabilities_in_mask(mask: u64) -> HashSet<Capability> {
    caps::all()
        .into_iter()
        .filter(|c| mask & c.bitmask() != 0)
        .filter_map(|c| {
            c.to_string()
                .trim_start_matches("CAP_")
                .parse::<Capability>()
                .ok()
        })
        .collect()
}

/// This process's `oom_score_adj`: without CAP_SYS_RESOURCE no task may go lower.
pub(crate) fn own_oom_score_adj() -> i32 {
    std::fs::read_to_string("/proc/self/oom_score_adj")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// The host's hostname, for host-network pods.
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// The running kernel's release (`uname -r`), for seccomp profiles' `minKernel`.
fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|r| r.trim().to_string())
        .unwrap_or_default()
}

/// Whether the kernel enforces AppArmor profiles.
fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|v| v.trim() == "Y")
}

/// Whether SELinux is enabled (its filesystem is mounted).
fn selinux_enabled() -> bool {
    std::path::Path::new("/sys/fs/selinux/enforce").exists()
}

/// Whether the kernel accounts swap per cgroup (v1 `memory.memsw.*`, v2
/// `memory.swap.max`): without it a swap limit cannot be applied.
fn swap_accounting() -> bool {
    let root = std::path::Path::new("/sys/fs/cgroup");
    root.join("memory/memory.memsw.limit_in_bytes").exists()
        || root.join("memory.swap.max").exists()
        || root.join("unified/memory.swap.max").exists()
}

/// What the host kernel offers that specs depend on, read once at start-up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFacts {
    /// `uname -r`, for seccomp profiles' `minKernel`.
    pub kernel_release: String,
    pub apparmor: bool,
    pub selinux: bool,
    /// Per-cgroup swap accounting: without it no swap limit is written.
    pub swap_accounting: bool,
}

impl HostFacts {
    pub fn read() -> HostFacts {
        HostFacts {
            kernel_release: kernel_release(),
            apparmor: apparmor_enabled(),
            selinux: selinux_enabled(),
            swap_accounting: swap_accounting(),
        }
    }
}
