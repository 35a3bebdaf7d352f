//! Which sysctls a pod may set: only those scoped to a namespace it owns (CRI-O's
//! rules, the kubelet's namespaced list). A node-wide one would change the host.

/// The namespace a sysctl belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SysctlNamespace {
    Ipc,
    Net,
}

const EXACT: &[(&str, SysctlNamespace)] = &[("kernel.sem", SysctlNamespace::Ipc)];

const PREFIXES: &[(&str, SysctlNamespace)] = &[
    ("kernel.shm", SysctlNamespace::Ipc),
    ("kernel.msg", SysctlNamespace::Ipc),
    ("fs.mqueue.", SysctlNamespace::Ipc),
    ("net.", SysctlNamespace::Net),
];

/// `net/ipv4/ip_forward` and `net.ipv4.ip_forward` name the same sysctl (the
/// kubelet accepts both); a name with both separators keeps its dots.
pub(crate) fn normalize(name: &str) -> String {
    if name.contains('.') {
        name.to_string()
    } else {
        name.replace('/', ".")
    }
}

/// The namespace `name` is scoped to, if any.
pub(crate) fn namespace_of(name: &str) -> Option<SysctlNamespace> {
    EXACT
        .iter()
        .find(|(n, _)| *n == name)
        .or_else(|| PREFIXES.iter().find(|(p, _)| name.starts_with(p)))
        .map(|(_, ns)| *ns)
}

/// Checks one sysctl against the pod's namespaces; the error says why it is refused.
pub(crate) fn validate(name: &str, host_network: bool, host_ipc: bool) -> Result<(), String> {
    match namespace_of(name) {
        None => Err(format!(
            "sysctl {name:?} is not namespaced: only kernel.shm*, kernel.msg*, kernel.sem, \
             fs.mqueue.* and net.* may be set for a pod"
        )),
        Some(SysctlNamespace::Net) if host_network => Err(format!(
            "sysctl {name:?} is not allowed with the host network namespace"
        )),
        Some(SysctlNamespace::Ipc) if host_ipc => Err(format!(
            "sysctl {name:?} is not allowed with the host IPC namespace"
        )),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_namespaced_sysctls_pass() {
        assert!(validate("net.ipv4.ip_forward", false, false).is_ok());
        assert!(validate("kernel.shm_rmid_forced", false, false).is_ok());
        assert!(validate("kernel.sem", false, false).is_ok());
        assert!(validate("fs.mqueue.msg_max", false, false).is_ok());
        let e = validate("kernel.panic", false, false).expect_err("host-wide");
        assert!(
            e.contains("kernel.panic") && e.contains("not namespaced"),
            "{e}"
        );
        assert!(validate("vm.swappiness", false, false).is_err());
        assert!(validate("net.core.somaxconn", true, false).is_err());
        assert!(validate("kernel.msgmax", false, true).is_err());
        assert!(validate("kernel.msgmax", true, false).is_ok());
        assert_eq!(normalize("net/ipv4/ip_forward"), "net.ipv4.ip_forward");
        assert_eq!(
            normalize("net.ipv4.conf.eth0/1.forwarding"),
            "net.ipv4.conf.eth0/1.forwarding"
        );
    }
}
