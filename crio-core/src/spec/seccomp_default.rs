//! The built-in `RuntimeDefault` seccomp profile: CRI-O's default profile, i.e. the
//! containers/common (`go.podman.io/common`) default profile (`pkg/seccomp/seccomp.json`,
//! generated from `default_linux.go`) plus CRI-O's own tightening of namespace creation
//! (`internal/config/seccomp/seccomp.go`, `DefaultProfile()`), already reduced to the OCI
//! form for an x86_64 host and one container's capabilities.
//!
//! Derived from go.podman.io/common v0.66.2-0.20260126213724-1e46b0756b39 as vendored by
//! cri-o/cri-o at f954a17e505f8931e91004403b5f5eac71ab6085 (v1.36.0+). The rules keep
//! upstream's order and meaning: a rule's `includes.caps` needs every listed capability,
//! its `excludes.caps` drops it if any listed capability is held; rules for other
//! architectures (arm, ppc64le, s390, riscv64) are left out.
//!
//! Unlike Docker's profile, containers/common does not gate `mount`, `reboot`, `ptrace`,
//! `syslog`... on capabilities: the kernel's own capability checks guard those.

use std::collections::HashSet;

use oci_spec::runtime::{
    Arch, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompOperator, LinuxSyscall,
};

const EPERM: u32 = 1;
const EINVAL: u32 = 22;
const ENOSYS: u32 = 38;

/// The errno of the default action (`SCMP_ACT_ERRNO`) when no rule matches. Upstream
/// returns ENOSYS (not EPERM) so that programs probing for newer syscalls fall back to
/// older ones, as they would on an older kernel.
const DEFAULT_ERRNO: u32 = ENOSYS;

/// amd64's `archMap` entry: the native arch and the sub-arches its kernel also runs.
const ARCHES: &[Arch] = &[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32];

/// Allowed whatever the container's capabilities. Upstream's list, less `clone`,
/// `clone3` and `unshare`, which CRI-O moves under the namespace rules below. The 32-bit
/// and `_time64` variants are here because x86 and x32 binaries are filtered too.
#[rustfmt::skip]
const ALLOWED: &[&str] = &[
    "_llseek", "_newselect",
    "accept", "accept4", "access", "adjtimex", "alarm",
    "bind", "brk",
    "capget", "capset", "chdir", "chmod", "chown", "chown32", "clock_adjtime",
    "clock_adjtime64", "clock_getres", "clock_getres_time64", "clock_gettime",
    "clock_gettime64", "clock_nanosleep", "clock_nanosleep_time64", "close", "close_range",
    "connect", "copy_file_range", "creat",
    "dup", "dup2", "dup3",
    "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait",
    "epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "execve", "execveat",
    "exit", "exit_group",
    "faccessat", "faccessat2", "fadvise64", "fadvise64_64", "fallocate", "fanotify_init",
    "fanotify_mark", "fchdir", "fchmod", "fchmodat", "fchmodat2", "fchown", "fchown32",
    "fchownat", "fcntl", "fcntl64", "fdatasync", "fgetxattr", "flistxattr", "flock", "fork",
    "fremovexattr", "fsconfig", "fsetxattr", "fsmount", "fsopen", "fspick", "fstat", "fstat64",
    "fstatat64", "fstatfs", "fstatfs64", "fsync", "ftruncate", "ftruncate64", "futex",
    "futex_time64", "futimesat",
    "get_mempolicy", "get_robust_list", "get_thread_area", "getcpu", "getcwd", "getdents",
    "getdents64", "getegid", "getegid32", "geteuid", "geteuid32", "getgid", "getgid32",
    "getgroups", "getgroups32", "getitimer", "getpeername", "getpgid", "getpgrp", "getpid",
    "getppid", "getpriority", "getrandom", "getresgid", "getresgid32", "getresuid",
    "getresuid32", "getrlimit", "getrusage", "getsid", "getsockname", "getsockopt", "gettid",
    "gettimeofday", "getuid", "getuid32", "getxattr",
    "inotify_add_watch", "inotify_init", "inotify_init1", "inotify_rm_watch", "io_cancel",
    "io_destroy", "io_getevents", "io_setup", "io_submit", "ioctl", "ioprio_get", "ioprio_set",
    "ipc",
    "keyctl", "kill",
    "landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self", "lchown",
    "lchown32", "lgetxattr", "link", "linkat", "listen", "listxattr", "llistxattr",
    "lremovexattr", "lseek", "lsetxattr", "lstat", "lstat64",
    "madvise", "mbind", "membarrier", "memfd_create", "memfd_secret", "mincore", "mkdir",
    "mkdirat", "mknod", "mknodat", "mlock", "mlock2", "mlockall", "mmap", "mmap2", "mount",
    "mount_setattr", "move_mount", "mprotect", "mq_getsetattr", "mq_notify", "mq_open",
    "mq_timedreceive", "mq_timedreceive_time64", "mq_timedsend", "mq_timedsend_time64",
    "mq_unlink", "mremap", "msgctl", "msgget", "msgrcv", "msgsnd", "msync", "munlock",
    "munlockall", "munmap",
    "name_to_handle_at", "nanosleep", "newfstatat",
    "open", "open_tree", "openat", "openat2",
    "pause", "pidfd_getfd", "pidfd_open", "pidfd_send_signal", "pipe", "pipe2", "pivot_root",
    "pkey_alloc", "pkey_free", "pkey_mprotect", "poll", "ppoll", "ppoll_time64", "prctl",
    "pread64", "preadv", "preadv2", "prlimit64", "process_mrelease", "process_vm_readv",
    "process_vm_writev", "pselect6", "pselect6_time64", "ptrace", "pwrite64", "pwritev",
    "pwritev2",
    "read", "readahead", "readlink", "readlinkat", "readv", "reboot", "recv", "recvfrom",
    "recvmmsg", "recvmmsg_time64", "recvmsg", "remap_file_pages", "removexattr", "rename",
    "renameat", "renameat2", "restart_syscall", "rmdir", "rseq", "rt_sigaction",
    "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend",
    "rt_sigtimedwait", "rt_sigtimedwait_time64", "rt_tgsigqueueinfo",
    "sched_get_priority_max", "sched_get_priority_min", "sched_getaffinity", "sched_getattr",
    "sched_getparam", "sched_getscheduler", "sched_rr_get_interval",
    "sched_rr_get_interval_time64", "sched_setaffinity", "sched_setattr", "sched_setparam",
    "sched_setscheduler", "sched_yield", "seccomp", "select", "semctl", "semget", "semop",
    "semtimedop", "semtimedop_time64", "send", "sendfile", "sendfile64", "sendmmsg", "sendmsg",
    "sendto", "set_mempolicy", "set_robust_list", "set_thread_area", "set_tid_address",
    "setfsgid", "setfsgid32", "setfsuid", "setfsuid32", "setgid", "setgid32", "setgroups",
    "setgroups32", "setitimer", "setns", "setpgid", "setpriority", "setregid", "setregid32",
    "setresgid", "setresgid32", "setresuid", "setresuid32", "setreuid", "setreuid32",
    "setrlimit", "setsid", "setsockopt", "setuid", "setuid32", "setxattr", "shmat", "shmctl",
    "shmdt", "shmget", "shutdown", "sigaltstack", "signal", "signalfd", "signalfd4",
    "sigprocmask", "sigreturn", "socketcall", "socketpair", "splice", "stat", "stat64",
    "statfs", "statfs64", "statx", "symlink", "symlinkat", "sync", "sync_file_range", "syncfs",
    "sysinfo", "syslog",
    "tee", "tgkill", "time", "timer_create", "timer_delete", "timer_getoverrun",
    "timer_gettime", "timer_gettime64", "timer_settime", "timer_settime64", "timerfd_create",
    "timerfd_gettime", "timerfd_gettime64", "timerfd_settime", "timerfd_settime64", "times",
    "tkill", "truncate", "truncate64",
    "ugetrlimit", "umask", "umount", "umount2", "uname", "unlink", "unlinkat", "utime",
    "utimensat", "utimensat_time64", "utimes",
    "vfork",
    "wait4", "waitid", "waitpid", "write", "writev",
];

/// Refused with EPERM outright: obsolete, kernel-wide or known-dangerous calls
/// (`kexec_load`, `swapon`, `userfaultfd`, `vmsplice`...), and the `syscall` indirection.
#[rustfmt::skip]
const DENIED: &[&str] = &[
    "bdflush",
    "cachestat",
    "futex_requeue", "futex_wait", "futex_waitv", "futex_wake",
    "io_pgetevents", "io_pgetevents_time64",
    "kexec_file_load", "kexec_load",
    "map_shadow_stack", "migrate_pages", "move_pages",
    "nfsservctl", "nice",
    "oldfstat", "oldlstat", "oldolduname", "oldstat", "olduname",
    "pciconfig_iobase", "pciconfig_read", "pciconfig_write",
    "sgetmask", "ssetmask", "swapoff", "swapon", "syscall", "sysfs",
    "uselib", "userfaultfd", "ustat",
    "vm86", "vm86old", "vmsplice",
];

/// `personality(2)` personas allowed: PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32
/// and 0xffffffff (the query).
const PERSONALITIES: &[u64] = &[0x0, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff];

/// Allowed only on x86_64 and x32 (`includes.arches: [amd64, x32]`).
const X86_64_ONLY: &[&str] = &["arch_prctl"];
/// Allowed on every x86 flavour (`includes.arches: [amd64, x32, x86]`).
const X86_ANY: &[&str] = &["modify_ldt"];

/// Allowed with CAP_SYS_ADMIN.
#[rustfmt::skip]
const SYS_ADMIN_ALLOWED: &[&str] = &[
    "bpf", "lookup_dcookie", "perf_event_open", "quotactl", "quotactl_fd", "setdomainname",
    "sethostname", "setns",
];
/// EPERM without CAP_SYS_ADMIN (`bpf` and `perf_event_open` have their own rules below).
/// `setns` is also in [`ALLOWED`], as upstream: libseccomp keeps the first argument-less
/// rule for a syscall, so it stays allowed (joining a namespace still needs the
/// capability in its owner).
#[rustfmt::skip]
const SYS_ADMIN_DENIED: &[&str] = &[
    "lookup_dcookie", "quotactl", "quotactl_fd", "setdomainname", "sethostname", "setns",
];

/// Syscalls allowed with one capability and refused with EPERM without it, in upstream's
/// order (after the CAP_SYS_ADMIN pair, which is not symmetric).
#[rustfmt::skip]
const CAP_GATED: &[(Capability, &[&str])] = &[
    (Capability::SysChroot, &["chroot"]),
    (Capability::SysModule, &["delete_module", "finit_module", "init_module", "query_module"]),
    (Capability::SysPacct, &["acct"]),
    (Capability::SysPtrace, &["kcmp", "process_madvise"]),
    (Capability::SysRawio, &["ioperm", "iopl"]),
    (Capability::SysTime, &["clock_settime", "clock_settime64", "settimeofday", "stime"]),
    (Capability::SysTtyConfig, &["vhangup"]),
];

/// Creating namespaces is for CAP_SYS_ADMIN holders only (CRI-O's addition).
const NAMESPACE_CALLS: &[&str] = &["clone", "clone3", "unshare"];

// clone(2) namespace flags.
const CLONE_NEWNS: u64 = 0x0002_0000;
const CLONE_NEWCGROUP: u64 = 0x0200_0000;
const CLONE_NEWUTS: u64 = 0x0400_0000;
const CLONE_NEWIPC: u64 = 0x0800_0000;
const CLONE_NEWUSER: u64 = 0x1000_0000;
const CLONE_NEWPID: u64 = 0x2000_0000;
const CLONE_NEWNET: u64 = 0x4000_0000;
#[rustfmt::skip]
const CLONE_NEW_FLAGS: &[u64] = &[
    CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET,
    CLONE_NEWCGROUP,
];
const CLONE_NEW_MASK: u64 = CLONE_NEWNS
    | CLONE_NEWUTS
    | CLONE_NEWIPC
    | CLONE_NEWUSER
    | CLONE_NEWPID
    | CLONE_NEWNET
    | CLONE_NEWCGROUP;

// socket(2) arguments the audit rules look at.
const AF_NETLINK: u64 = 16;
const AF_VSOCK: u64 = 40;
const NETLINK_AUDIT: u64 = 9;

fn syscall(names: &[&str], action: LinuxSeccompAction, errno: Option<u32>) -> LinuxSyscall {
    let mut s = LinuxSyscall::default();
    s.set_names(names.iter().map(|&n| n.to_owned()).collect());
    s.set_action(action);
    s.set_errno_ret(errno);
    s
}

fn allow(names: &[&str]) -> LinuxSyscall {
    syscall(names, LinuxSeccompAction::ScmpActAllow, None)
}

fn errno(names: &[&str], errno: u32) -> LinuxSyscall {
    syscall(names, LinuxSeccompAction::ScmpActErrno, Some(errno))
}

/// The rule applies only when every comparison holds (libseccomp ANDs a rule's args).
fn with_args(mut s: LinuxSyscall, args: Vec<LinuxSeccompArg>) -> LinuxSyscall {
    s.set_args(Some(args));
    s
}

fn arg(index: usize, op: LinuxSeccompOperator, value: u64, value_two: u64) -> LinuxSeccompArg {
    let b = LinuxSeccompArgBuilder::default()
        .index(index)
        .op(op)
        .value(value);
    // Upstream omits a zero `valueTwo`; runtimes read a missing one as 0.
    let b = if value_two == 0 {
        b
    } else {
        b.value_two(value_two)
    };
    b.build()
        .expect("every LinuxSeccompArg field has a default")
}

fn eq(index: usize, value: u64) -> LinuxSeccompArg {
    arg(index, LinuxSeccompOperator::ScmpCmpEq, value, 0)
}

fn ne(index: usize, value: u64) -> LinuxSeccompArg {
    arg(index, LinuxSeccompOperator::ScmpCmpNe, value, 0)
}

/// `(arg & mask) == value`.
fn masked_eq(index: usize, mask: u64, value: u64) -> LinuxSeccompArg {
    arg(index, LinuxSeccompOperator::ScmpCmpMaskedEq, mask, value)
}

/// The default profile for a container whose final capability set is `held_caps`.
/// The default action (no rule matched) is SCMP_ACT_ERRNO with ENOSYS (38), as upstream;
/// explicit refusals use EPERM (1).
pub(super) fn runtime_default(held_caps: &HashSet<Capability>) -> LinuxSeccomp {
    // `includes.caps: [c]` is `has(c)`; `excludes.caps: [a, b]` is `none(&[a, b])`.
    let has = |c: Capability| held_caps.contains(&c);
    let none = |cs: &[Capability]| !cs.iter().any(|c| held_caps.contains(c));

    let mut rules = vec![errno(DENIED, EPERM), allow(ALLOWED)];
    for &persona in PERSONALITIES {
        rules.push(with_args(allow(&["personality"]), vec![eq(0, persona)]));
    }
    rules.push(allow(X86_64_ONLY));
    rules.push(allow(X86_ANY));

    // open_by_handle_at can escape a bind mount ("shocker"), hence CAP_DAC_READ_SEARCH.
    if has(Capability::DacReadSearch) {
        rules.push(allow(&["open_by_handle_at"]));
    } else {
        rules.push(errno(&["open_by_handle_at"], EPERM));
    }
    if has(Capability::SysAdmin) {
        rules.push(allow(SYS_ADMIN_ALLOWED));
    } else {
        rules.push(errno(SYS_ADMIN_DENIED, EPERM));
    }
    for (cap, names) in CAP_GATED {
        if has(*cap) {
            rules.push(allow(names));
        } else {
            rules.push(errno(names, EPERM));
        }
    }

    // socket(2): anything is fine except AF_VSOCK (EPERM, host communication) and, without
    // CAP_AUDIT_WRITE, a NETLINK_AUDIT socket (EINVAL, as if audit were not built in).
    rules.push(with_args(errno(&["socket"], EPERM), vec![eq(0, AF_VSOCK)]));
    if has(Capability::AuditWrite) {
        rules.push(with_args(allow(&["socket"]), vec![ne(0, AF_VSOCK)]));
    } else {
        rules.push(with_args(
            errno(&["socket"], EINVAL),
            vec![eq(0, AF_NETLINK), eq(2, NETLINK_AUDIT)],
        ));
        rules.push(with_args(
            allow(&["socket"]),
            vec![eq(0, AF_NETLINK), ne(2, NETLINK_AUDIT)],
        ));
        rules.push(with_args(allow(&["socket"]), vec![ne(0, AF_NETLINK)]));
    }

    // bpf and perf_event_open: EPERM unless CAP_SYS_ADMIN (allowed above) or their own
    // narrower capability.
    if none(&[Capability::SysAdmin, Capability::Bpf]) {
        rules.push(errno(&["bpf"], EPERM));
    }
    if has(Capability::Bpf) {
        rules.push(allow(&["bpf"]));
    }
    if none(&[Capability::SysAdmin, Capability::Perfmon]) {
        rules.push(errno(&["perf_event_open"], EPERM));
    }
    if has(Capability::Perfmon) {
        rules.push(allow(&["perf_event_open"]));
    }

    // CRI-O: only CAP_SYS_ADMIN holders may create namespaces. Others may clone without
    // namespace flags (threads, fork), get EPERM with them, and get ENOSYS from clone3,
    // whose flags sit in a struct seccomp cannot read, so libc falls back to clone.
    if has(Capability::SysAdmin) {
        rules.push(allow(NAMESPACE_CALLS));
    }
    rules.push(with_args(
        allow(&["clone"]),
        vec![masked_eq(0, CLONE_NEW_MASK, 0)],
    ));
    if !has(Capability::SysAdmin) {
        // Upstream's one rule with all seven comparisons (ANDed), kept as is.
        let args = CLONE_NEW_FLAGS
            .iter()
            .map(|&f| masked_eq(0, f, f))
            .collect();
        rules.push(with_args(errno(&["clone"], EPERM), args));
        rules.push(errno(&["clone3"], ENOSYS));
    }

    let mut seccomp = LinuxSeccomp::default();
    seccomp.set_default_action(LinuxSeccompAction::ScmpActErrno);
    seccomp.set_default_errno_ret(Some(DEFAULT_ERRNO));
    seccomp.set_architectures(Some(ARCHES.to_vec()));
    seccomp.set_syscalls(Some(rules));
    seccomp
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rules naming `name` that apply whatever its arguments.
    fn plain_rules<'a>(p: &'a LinuxSeccomp, name: &str) -> Vec<&'a LinuxSyscall> {
        p.syscalls()
            .as_ref()
            .expect("rules")
            .iter()
            .filter(|s| s.names().iter().any(|n| n == name) && s.args().is_none())
            .collect()
    }

    fn allowed(p: &LinuxSeccomp, name: &str) -> bool {
        plain_rules(p, name)
            .iter()
            .any(|s| s.action() == LinuxSeccompAction::ScmpActAllow)
    }

    /// The errno a plain ERRNO rule gives `name`, if any.
    fn refused(p: &LinuxSeccomp, name: &str) -> Option<u32> {
        plain_rules(p, name)
            .iter()
            .find(|s| s.action() == LinuxSeccompAction::ScmpActErrno)
            .and_then(|s| s.errno_ret())
    }

    fn caps(cs: &[Capability]) -> HashSet<Capability> {
        cs.iter().copied().collect()
    }

    #[test]
    fn default_action_is_errno_enosys_as_upstream() {
        let p = runtime_default(&HashSet::new());
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(p.default_errno_ret(), Some(ENOSYS));
        assert_eq!(p.architectures().as_deref(), Some(ARCHES));
    }

    #[test]
    fn common_syscalls_are_allowed_without_capabilities() {
        let p = runtime_default(&HashSet::new());
        // mount and reboot too: containers/common leaves them to the kernel's cap checks.
        for name in [
            "read",
            "write",
            "execve",
            "openat",
            "exit_group",
            "mount",
            "reboot",
        ] {
            assert!(allowed(&p, name), "{name}");
        }
        for name in ["kexec_load", "userfaultfd", "syscall"] {
            assert_eq!(refused(&p, name), Some(EPERM), "{name}");
        }
    }

    #[test]
    fn namespace_creation_needs_cap_sys_admin() {
        let p = runtime_default(&HashSet::new());
        for name in ["unshare", "clone", "sethostname"] {
            assert!(!allowed(&p, name), "{name}");
        }
        assert_eq!(refused(&p, "clone3"), Some(ENOSYS));
        assert_eq!(refused(&p, "sethostname"), Some(EPERM));
        let p = runtime_default(&caps(&[Capability::SysAdmin]));
        for name in ["unshare", "setns", "clone", "clone3", "sethostname", "bpf"] {
            assert!(allowed(&p, name), "{name}");
            assert_eq!(refused(&p, name), None, "{name}");
        }
    }

    #[test]
    fn capability_gated_syscalls() {
        let none = runtime_default(&HashSet::new());
        assert_eq!(refused(&none, "chroot"), Some(EPERM));
        assert_eq!(refused(&none, "bpf"), Some(EPERM));
        assert_eq!(refused(&none, "init_module"), Some(EPERM));
        let p = runtime_default(&caps(&[Capability::SysChroot, Capability::Bpf]));
        assert!(allowed(&p, "chroot") && allowed(&p, "bpf"));
        assert_eq!(refused(&p, "bpf"), None);
        assert_eq!(refused(&p, "init_module"), Some(EPERM));
    }

    #[test]
    fn lists_are_sorted_and_disjoint() {
        for list in [ALLOWED, DENIED] {
            assert!(list.windows(2).all(|w| w[0] < w[1]), "{list:?}");
        }
        assert!(ALLOWED.iter().all(|n| !DENIED.contains(n)));
        assert!(ALLOWED.iter().all(|n| !NAMESPACE_CALLS.contains(n)));
    }

    #[test]
    fn serializes_as_oci_json() {
        let json = serde_json::to_string(&runtime_default(&HashSet::new())).expect("json");
        assert!(
            json.contains(r#""defaultAction":"SCMP_ACT_ERRNO""#),
            "{json}"
        );
        assert!(json.contains(r#""defaultErrnoRet":38"#), "{json}");
        assert!(json.contains(r#""SCMP_ARCH_X86_64","SCMP_ARCH_X86","SCMP_ARCH_X32""#));
        assert!(json.contains(r#""op":"SCMP_CMP_MASKED_EQ""#), "{json}");
    }
}
