//! RunPodSandbox's request, checked before anything is made: what the daemon writes
//! into files (hostname, hosts, resolv.conf) or hands to plugins (ports) must be
//! what it claims to be, so a request cannot add lines to a pod's files or fail
//! deep in a plugin with an internal error.

use protocols::cri;

use crate::error::CriError;

fn invalid(msg: impl Into<String>) -> CriError {
    CriError::InvalidArgument(msg.into())
}

/// The metadata's required fields; the pod-level `run_as_group` rule; the
/// hostname, DNS, port mappings and log directory.
pub(super) fn pod_request(
    config: &cri::PodSandboxConfig,
) -> Result<&cri::PodSandboxMetadata, CriError> {
    let meta = config
        .metadata
        .as_ref()
        .ok_or_else(|| invalid("PodSandboxConfig.metadata is required"))?;
    for (field, value) in [
        ("name", &meta.name),
        ("namespace", &meta.namespace),
        ("uid", &meta.uid),
    ] {
        if value.is_empty() {
            return Err(invalid(format!(
                "PodSandboxConfig.metadata.{field} is required"
            )));
        }
    }
    let sc = config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref());
    if sc.is_some_and(|s| s.run_as_group.is_some() && s.run_as_user.is_none()) {
        return Err(invalid("the pod's run_as_group is set without run_as_user"));
    }
    if !config.hostname.is_empty() {
        hostname(&config.hostname)?;
    }
    if let Some(dns) = &config.dns_config {
        dns_config(dns)?;
    }
    for p in &config.port_mappings {
        port_mapping(p)?;
    }
    if !config.log_directory.is_empty() && !config.log_directory.starts_with('/') {
        return Err(invalid(format!(
            "log_directory {:?} is not an absolute path",
            config.log_directory
        )));
    }
    Ok(meta)
}

/// An RFC 1123 host name: dot-separated labels of letters, digits and `-` (not at
/// either end), 1 to 63 bytes each, 253 in all.
pub(super) fn hostname(name: &str) -> Result<(), CriError> {
    let bad = |why: &str| {
        invalid(format!(
            "hostname {name:?} is not an RFC 1123 host name: {why}"
        ))
    };
    if name.len() > 253 {
        return Err(bad("longer than 253 bytes"));
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(bad("each dot-separated label has 1 to 63 characters"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(bad("only letters, digits, '-' and '.' are allowed"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(bad("a label cannot start or end with '-'"));
        }
    }
    Ok(())
}

/// resolv.conf entries: servers are IP addresses; searches and options are single
/// printable words (a space or a control character would start another entry or line).
fn dns_config(dns: &cri::DnsConfig) -> Result<(), CriError> {
    for server in &dns.servers {
        if server.parse::<std::net::IpAddr>().is_err() {
            return Err(invalid(format!(
                "dns_config server {server:?} is not an IP address"
            )));
        }
    }
    for (what, values) in [("search", &dns.searches), ("option", &dns.options)] {
        for value in values.iter() {
            if value.is_empty() || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(invalid(format!(
                    "dns_config {what} {value:?} is empty or holds a space or control \
                     character"
                )));
            }
        }
    }
    Ok(())
}

/// Ports are 1-65535 (a host port of 0 means none).
fn port_mapping(p: &cri::PortMapping) -> Result<(), CriError> {
    if !(1..=65535).contains(&p.container_port) {
        return Err(invalid(format!(
            "port mapping: container_port {} is not a port (1-65535)",
            p.container_port
        )));
    }
    if !(0..=65535).contains(&p.host_port) {
        return Err(invalid(format!(
            "port mapping: host_port {} is not a port (1-65535, or 0 for none)",
            p.host_port
        )));
    }
    if !p.host_ip.is_empty() && p.host_ip.parse::<std::net::IpAddr>().is_err() {
        return Err(invalid(format!(
            "port mapping: host_ip {:?} is not an IP address",
            p.host_ip
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> cri::PodSandboxConfig {
        cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: "p".into(),
                namespace: "ns".into(),
                uid: "u".into(),
                attempt: 0,
            }),
            hostname: "web-0.example".into(),
            log_directory: "/var/log/pods/ns_p_u".into(),
            ..Default::default()
        }
    }

    fn refused(edit: impl FnOnce(&mut cri::PodSandboxConfig)) -> String {
        let mut config = pod();
        edit(&mut config);
        match pod_request(&config) {
            Err(CriError::InvalidArgument(m)) => m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_kubelet_pod_passes() {
        let mut config = pod();
        config.dns_config = Some(cri::DnsConfig {
            servers: vec!["10.96.0.10".into(), "fd00::a".into()],
            searches: vec!["ns.svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        });
        config.port_mappings = vec![cri::PortMapping {
            container_port: 80,
            host_port: 0,
            ..Default::default()
        }];
        pod_request(&config).expect("valid");
    }

    #[test]
    fn what_would_add_lines_to_pod_files_is_refused() {
        assert!(refused(|c| c.hostname = "h\n6.6.6.6 evil".into()).contains("hostname"));
        assert!(refused(|c| c.hostname = "-h".into()).contains("'-'"));
        assert!(refused(|c| c.hostname = "a".repeat(64)).contains("63"));
        let dns = |servers: &[&str], searches: &[&str], options: &[&str]| cri::DnsConfig {
            servers: servers.iter().map(|s| s.to_string()).collect(),
            searches: searches.iter().map(|s| s.to_string()).collect(),
            options: options.iter().map(|s| s.to_string()).collect(),
        };
        let m = refused(|c| c.dns_config = Some(dns(&["1.1.1.1\nnameserver 6.6.6.6"], &[], &[])));
        assert!(m.contains("not an IP address"), "{m}");
        refused(|c| c.dns_config = Some(dns(&[], &["a b"], &[])));
        refused(|c| c.dns_config = Some(dns(&[], &[], &["ndots:5\nnameserver 6.6.6.6"])));
    }

    #[test]
    fn ports_and_log_directory_are_checked() {
        let port = |container_port, host_port| cri::PortMapping {
            container_port,
            host_port,
            ..Default::default()
        };
        refused(|c| c.port_mappings = vec![port(80, 99999)]);
        refused(|c| c.port_mappings = vec![port(80, -1)]);
        refused(|c| c.port_mappings = vec![port(0, 8080)]);
        assert!(refused(|c| c.log_directory = "relative/logs".into()).contains("absolute"));
    }
}
