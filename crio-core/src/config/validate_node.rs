//! Checks of the node-wide keys CRI-O operators set: default sysctls, hooks,
//! mounts and devices, seccomp and AppArmor defaults, image pinning, registries
//! and signature policies, the network grace period and the streaming TLS.

use std::path::Path;

use super::model::CrioConfig;
use super::validate::Checker;

/// `short_name_mode` values (CRI-O 1.34's; empty = registries.conf's).
const SHORT_NAME_MODES: &[&str] = &["", "enforcing", "disabled"];
/// `tls_min_version` values crio-rs (rustls) serves.
const TLS_VERSIONS: &[&str] = &["", "VersionTLS12", "VersionTLS13"];

pub(super) fn check(out: &mut Checker<'_>, c: &CrioConfig) {
    let r = &c.runtime;
    for (i, entry) in r.default_sysctls.iter().enumerate() {
        if entry.is_empty() {
            continue;
        }
        if let Err(e) = crate::pods::node_defaults::parse_sysctl(entry) {
            out.problem(
                &format!("crio.runtime.default_sysctls.{i}"),
                e,
                "key=value entries such as \"net.ipv4.ping_group_range=0 2147483647\"",
            );
        }
    }
    for (i, dir) in r.hooks_dir.iter().enumerate() {
        out.absolute(&format!("crio.runtime.hooks_dir.{i}"), dir);
    }
    for (i, dir) in r.absent_mount_sources_to_reject.iter().enumerate() {
        out.absolute(
            &format!("crio.runtime.absent_mount_sources_to_reject.{i}"),
            dir,
        );
    }
    for (key, value) in [
        ("crio.runtime.default_mounts_file", &r.default_mounts_file),
        ("crio.runtime.seccomp_profile", &r.seccomp_profile),
        (
            "crio.runtime.privileged_seccomp_profile",
            &r.privileged_seccomp_profile,
        ),
        ("crio.image.signature_policy", &c.image.signature_policy),
        (
            "crio.image.signature_policy_dir",
            &c.image.signature_policy_dir,
        ),
        ("crio.image.registries_d", &c.image.registries_d),
        (
            "crio.image.pause_image_auth_file",
            &c.image.pause_image_auth_file,
        ),
    ] {
        if !value.is_empty() {
            out.absolute(key, Path::new(value));
        }
    }
    for (i, device) in r.allowed_devices.iter().enumerate() {
        if !device.starts_with("/dev/") {
            out.problem(
                &format!("crio.runtime.allowed_devices.{i}"),
                format!("{device:?} is not a device path"),
                "host device paths under /dev/, such as \"/dev/fuse\"",
            );
        }
    }
    for (i, device) in r.additional_devices.iter().enumerate() {
        if let Err(e) = crate::spec::devices::parse_device_spec(device) {
            out.problem(
                &format!("crio.runtime.additional_devices.{i}"),
                e,
                "\"/dev/SRC[:/dev/DST][:PERMS]\", PERMS of r, w and m (default rwm)",
            );
        }
    }
    for (name, handler) in &r.runtimes {
        if !handler.seccomp_profile.is_empty() {
            out.absolute(
                &format!("crio.runtime.runtimes.{name}.seccomp_profile"),
                Path::new(&handler.seccomp_profile),
            );
        }
        for platform in handler.platform_runtime_paths.keys() {
            let parts: Vec<&str> = platform.split('/').collect();
            if parts.len() != 2 || parts.iter().any(|p| p.is_empty()) {
                out.problem(
                    &format!("crio.runtime.runtimes.{name}.platform_runtime_paths"),
                    format!("{platform:?} is not os/arch"),
                    "\"os/arch\" keys such as \"linux/amd64\"",
                );
            }
        }
    }
    if !r.infra_ctr_cpuset.is_empty() && !valid_cpu_list(&r.infra_ctr_cpuset) {
        out.problem(
            "crio.runtime.infra_ctr_cpuset",
            format!("{:?} is not a CPU list", r.infra_ctr_cpuset),
            "a Linux CPU list such as \"0-1,3\", or empty",
        );
    }
    for (i, pattern) in c.image.pinned_images.iter().enumerate() {
        if pattern.is_empty() || pattern == "*" || pattern == "**" {
            out.problem(
                &format!("crio.image.pinned_images.{i}"),
                format!("{pattern:?} names no image (CRI-O would panic on \"*\")"),
                "an image name, \"prefix*\" or \"*keyword*\"",
            );
        }
    }
    for (i, registry) in c.image.insecure_registries.iter().enumerate() {
        if crate::image::insecure::InsecureRegistries::parse_entry(registry).is_none() {
            out.problem(
                &format!("crio.image.insecure_registries.{i}"),
                format!("{registry:?} is not a registry or an IP range"),
                "host[:port] such as \"registry.local:5000\", or a CIDR such as \"10.0.0.0/8\"",
            );
        }
    }
    let m = &c.metrics;
    for (i, name) in m.metrics_collectors.iter().enumerate() {
        if crate::metrics::Collector::parse(name).is_none() {
            out.problem(
                &format!("crio.metrics.metrics_collectors.{i}"),
                format!("{name:?} is not a collector"),
                &crate::metrics::COLLECTORS
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", "),
            );
        }
    }
    if m.metrics_cert.is_empty() != m.metrics_key.is_empty() {
        out.problem(
            "crio.metrics.metrics_cert",
            "metrics_cert and metrics_key go together".into(),
            "both PEM files (TLS), or neither (plain HTTP)",
        );
    }
    for (key, value) in [
        ("crio.metrics.metrics_cert", &m.metrics_cert),
        ("crio.metrics.metrics_key", &m.metrics_key),
        ("crio.metrics.metrics_socket", &m.metrics_socket),
    ] {
        if !value.is_empty() {
            out.absolute(key, Path::new(value));
        }
    }
    out.one_of(
        "crio.image.short_name_mode",
        &c.image.short_name_mode,
        SHORT_NAME_MODES,
    );
    match crate::duration::parse(&c.network.cni_status_grace_period) {
        Some(_) => {}
        None => out.problem(
            "crio.network.cni_status_grace_period",
            format!("{:?} is not a duration", c.network.cni_status_grace_period),
            "a non-negative Go duration such as \"0s\", \"30s\", \"1m\"",
        ),
    }
    match c.api.tls_min_version.as_str() {
        "VersionTLS10" | "VersionTLS11" => out.problem(
            "crio.api.tls_min_version",
            format!("{} is not supported", c.api.tls_min_version),
            "VersionTLS12 or VersionTLS13 (as CRI-O)",
        ),
        v => out.one_of("crio.api.tls_min_version", v, TLS_VERSIONS),
    }
    for (i, name) in c.api.tls_cipher_suites.iter().enumerate() {
        if crate::streaming::tls::cipher_suite(name).is_none() {
            out.problem(
                &format!("crio.api.tls_cipher_suites.{i}"),
                format!("cipher suite {name:?} is not supported"),
                &crate::streaming::tls::CIPHER_SUITE_NAMES.join(", "),
            );
        }
    }
}

/// `0-3,7`: comma-separated CPUs and ascending ranges.
fn valid_cpu_list(list: &str) -> bool {
    list.split(',').all(|part| {
        let mut ends = part.splitn(2, '-').map(|n| n.trim().parse::<u32>());
        match (ends.next(), ends.next()) {
            (Some(Ok(_)), None) => true,
            (Some(Ok(a)), Some(Ok(b))) => a <= b,
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn cpu_lists() {
        for ok in ["0", "0-3", "0-1,3", "2,4-7"] {
            assert!(super::valid_cpu_list(ok), "{ok}");
        }
        for bad in ["", "a", "3-1", "1,", "-1"] {
            assert!(!super::valid_cpu_list(bad), "{bad}");
        }
    }
}
