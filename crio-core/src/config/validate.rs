//! Semantic checks of a merged configuration. Each problem names its key and origin.

use std::path::Path;

use super::error::Problem;
use super::model::{
    Config, APPLIED_ANNOTATIONS, CGROUP_MANAGERS, CRIO_ALLOWED_ANNOTATIONS, IMAGE_VOLUMES,
    LOG_LEVELS, METRICS_ALL, METRIC_GROUPS, RUNTIME_TYPES, RUNTIME_TYPE_VM, STORAGE_DRIVERS,
    UNMASK_ANNOTATION,
};
use super::origin::Origins;

/// Every problem found, in key order; empty means valid.
pub(super) fn validate(config: &Config, origins: &Origins) -> Vec<Problem> {
    let mut out = Checker {
        origins,
        problems: Vec::new(),
    };
    let c = &config.crio;
    out.absolute("crio.root", &c.root);
    out.absolute("crio.runroot", &c.runroot);
    out.absolute("crio.log_dir", &c.log_dir);
    for (key, file) in [
        ("crio.version_file", &c.version_file),
        ("crio.version_file_persist", &c.version_file_persist),
        ("crio.clean_shutdown_file", &c.clean_shutdown_file),
    ] {
        if !file.is_empty() {
            out.absolute(key, std::path::Path::new(file));
        }
    }
    if !c.storage_driver.is_empty() {
        out.one_of("crio.storage_driver", &c.storage_driver, STORAGE_DRIVERS);
    }
    out.absolute("crio.api.listen", &c.api.listen);
    if c.api.stream_port.parse::<u16>().is_err() {
        out.problem(
            "crio.api.stream_port",
            format!("{:?} is not a port number", c.api.stream_port),
            "a string holding 0-65535, \"0\" for any free port",
        );
    }
    if !c.api.stream_idle_timeout.is_empty()
        && crate::duration::parse(&c.api.stream_idle_timeout).is_none()
    {
        out.problem(
            "crio.api.stream_idle_timeout",
            format!("{:?} is not a duration", c.api.stream_idle_timeout),
            "a Go duration such as \"4h\" or \"30m\", empty for 4h",
        );
    }
    if c.api.stream_enable_tls {
        for (key, value) in [
            ("crio.api.stream_tls_cert", &c.api.stream_tls_cert),
            ("crio.api.stream_tls_key", &c.api.stream_tls_key),
        ] {
            if value.is_empty() {
                out.problem(
                    key,
                    "is required when stream_enable_tls = true".to_string(),
                    "the absolute path of a PEM file",
                );
            } else {
                out.absolute(key, std::path::Path::new(value));
            }
        }
    }
    if c.api.stream_max_sessions == 0 {
        out.problem(
            "crio.api.stream_max_sessions",
            "0 would refuse every session".to_string(),
            "a positive number (default 256)",
        );
    }
    if !c.api.stream_tls_ca.is_empty() {
        out.absolute(
            "crio.api.stream_tls_ca",
            std::path::Path::new(&c.api.stream_tls_ca),
        );
    }
    if c.api.stream_address.parse::<std::net::IpAddr>().is_err() {
        out.problem(
            "crio.api.stream_address",
            format!("{:?} is not an IP address", c.api.stream_address),
            "an IPv4 or IPv6 address such as \"127.0.0.1\"",
        );
    }
    for dir in &c.runtime.cdi_spec_dirs {
        out.absolute("crio.runtime.cdi_spec_dirs", std::path::Path::new(dir));
    }
    out.one_of(
        "crio.image.image_volumes",
        &c.image.image_volumes,
        IMAGE_VOLUMES,
    );
    for (i, name) in c.runtime.default_capabilities.iter().enumerate() {
        if crate::spec::capability(name).is_err() {
            out.problem(
                &format!("crio.runtime.default_capabilities.{i}"),
                format!("{name:?} is not a Linux capability"),
                "capability names such as \"CHOWN\" or \"CAP_NET_RAW\"",
            );
        }
    }
    for (i, entry) in c.runtime.default_env.iter().enumerate() {
        let name = entry.split_once('=').map_or("", |(k, _)| k);
        if name.is_empty() || entry.contains('\0') {
            out.problem(
                &format!("crio.runtime.default_env.{i}"),
                format!("{entry:?} is not KEY=value"),
                "entries such as \"NSS_SDB_USE_CACHE=no\"",
            );
        }
    }
    for (i, entry) in c.runtime.default_ulimits.iter().enumerate() {
        if let Err(e) = crate::spec::rlimits::parse(entry) {
            out.problem(
                &format!("crio.runtime.default_ulimits.{i}"),
                e,
                "name=soft:hard or name=limit, name as ulimit says it (nofile, nproc, core, ...), -1 for unlimited",
            );
        }
    }
    if c.runtime.log_size_max >= 0 && c.runtime.log_size_max < 8192 {
        out.problem(
            "crio.runtime.log_size_max",
            format!("{} is too small", c.runtime.log_size_max),
            "-1 (no limit) or at least 8192 bytes",
        );
    }
    out.one_of(
        "crio.runtime.cgroup_manager",
        &c.runtime.cgroup_manager,
        CGROUP_MANAGERS,
    );
    out.one_of("crio.runtime.log_level", &c.runtime.log_level, LOG_LEVELS);
    let groups = &c.stats.included_pod_metrics;
    for group in groups {
        if group == METRICS_ALL {
            if groups.len() > 1 {
                out.problem(
                    "crio.stats.included_pod_metrics",
                    "\"all\" must be the only element".to_string(),
                    "[\"all\"], or a list of groups",
                );
            }
        } else if !METRIC_GROUPS.contains(&group.as_str()) {
            out.problem(
                "crio.stats.included_pod_metrics",
                format!("{group:?} is not a metric group"),
                &format!("\"all\" alone, or any of {}", METRIC_GROUPS.join(", ")),
            );
        }
    }

    let names: Vec<&str> = c.runtime.runtimes.keys().map(String::as_str).collect();
    if !c.runtime.runtimes.contains_key(&c.runtime.default_runtime) {
        out.problem(
            "crio.runtime.default_runtime",
            format!(
                "{:?} has no [crio.runtime.runtimes.{}] table",
                c.runtime.default_runtime, c.runtime.default_runtime
            ),
            &format!("a configured handler: {}", names.join(", ")),
        );
    }
    for (name, handler) in &c.runtime.runtimes {
        let key = |field: &str| format!("crio.runtime.runtimes.{name}.{field}");
        if !valid_handler_name(name) {
            out.problem(
                &format!("crio.runtime.runtimes.{name}"),
                format!("{name:?} is not a valid RuntimeClass handler name"),
                "a DNS label: lower-case letters, digits and '-', at most 63 characters",
            );
        }
        out.one_of(&key("runtime_type"), &handler.runtime_type, RUNTIME_TYPES);
        if handler.runtime_type == RUNTIME_TYPE_VM && handler.runtime_path.is_empty() {
            out.problem(
                &key("runtime_path"),
                "a \"vm\" handler needs the path of its shim v2 binary".into(),
                "an absolute path such as /usr/bin/containerd-shim-kata-v2",
            );
        }
        check_vm_keys(&mut out, name, handler);
        for (i, annotation) in handler.allowed_annotations.iter().enumerate() {
            let known = CRIO_ALLOWED_ANNOTATIONS.contains(&annotation.as_str())
                || APPLIED_ANNOTATIONS.contains(&annotation.as_str());
            if !known {
                out.problem(
                    &format!("{}.{i}", key("allowed_annotations")),
                    format!("{annotation:?} is not an annotation a handler can allow"),
                    &format!(
                        "CRI-O's: {}; or ours: {UNMASK_ANNOTATION}",
                        CRIO_ALLOWED_ANNOTATIONS.join(", ")
                    ),
                );
            }
        }
        let min_memory = &handler.container_min_memory;
        if !min_memory.is_empty() && crate::size::parse(min_memory).is_none() {
            out.problem(
                &key("container_min_memory"),
                format!("{min_memory:?} is not a size"),
                "a size such as \"12MiB\" or \"12582912\", or empty for 12MiB",
            );
        }
        // Binaries may also be bare names, looked up next to crio and in PATH.
        for (field, value) in [
            ("runtime_path", &handler.runtime_path),
            ("shim_path", &handler.shim_path),
        ] {
            if value.contains('/') && !Path::new(value).is_absolute() {
                out.problem(
                    &key(field),
                    format!("{value:?} is a relative path"),
                    "an absolute path, a file name looked up next to crio and in PATH, or empty for the default",
                );
            }
        }
        for (field, value) in [
            ("runtime_config_path", &handler.runtime_config_path),
            ("runtime_root", &handler.runtime_root),
        ] {
            if !value.is_empty() && !Path::new(value).is_absolute() {
                out.problem(
                    &key(field),
                    format!("{value:?} is not an absolute path"),
                    "an absolute path, or empty for the default",
                );
            }
        }
    }

    out.absolute("crio.network.network_dir", &c.network.network_dir);
    if let Some(dir) = &c.network.plugin_dir {
        out.absolute("crio.network.plugin_dir", dir);
    }
    for (i, dir) in c.network.plugin_dirs.iter().enumerate() {
        out.absolute(&format!("crio.network.plugin_dirs.{i}"), dir);
    }
    if !c.image.global_auth_file.is_empty() && !Path::new(&c.image.global_auth_file).is_absolute() {
        out.problem(
            "crio.image.global_auth_file",
            format!("{:?} is not an absolute path", c.image.global_auth_file),
            "an absolute path, or empty for $REGISTRY_AUTH_FILE or /etc/containers/auth.json",
        );
    }
    if !c.image.certs_dir.is_empty() && !Path::new(&c.image.certs_dir).is_absolute() {
        out.problem(
            "crio.image.certs_dir",
            format!("{:?} is not an absolute path", c.image.certs_dir),
            "an absolute path, or empty for /etc/containers/certs.d then /etc/docker/certs.d",
        );
    }
    if crate::duration::parse(&c.image.pull_progress_timeout).is_none() {
        out.problem(
            "crio.image.pull_progress_timeout",
            format!("{:?} is not a duration", c.image.pull_progress_timeout),
            "a Go-style duration such as \"0s\", \"90s\", \"10m\", \"1h30m\"",
        );
    }
    super::validate_node::check(&mut out, c);
    out.problems
}

/// How a `vm` handler's guest may get the container bundles.
const VM_SHARED_FS: [&str; 2] = ["virtio-9p", "virtio-fs"];

/// The `vm_*` keys: only on `vm` handlers, absolute paths, sizes in range.
fn check_vm_keys(out: &mut Checker<'_>, name: &str, handler: &super::model::RuntimeHandler) {
    let key = |field: &str| format!("crio.runtime.runtimes.{name}.{field}");
    let is_vm = handler.runtime_type == RUNTIME_TYPE_VM;
    if let Some(fs) = &handler.vm_shared_fs {
        if !is_vm {
            out.problem(
                &key("vm_shared_fs"),
                format!(
                    "vm_shared_fs is set on a {:?} handler",
                    handler.runtime_type
                ),
                "only on handlers with runtime_type = \"vm\" served by containerd-shim-kata-rs-v2",
            );
        } else if !VM_SHARED_FS.contains(&fs.as_str()) {
            out.problem(
                &key("vm_shared_fs"),
                format!("{fs:?} is not a shared filesystem"),
                "\"virtio-9p\" or \"virtio-fs\"",
            );
        }
    }
    for (field, value) in [
        ("vm_hypervisor_path", &handler.vm_hypervisor_path),
        ("vm_kernel", &handler.vm_kernel),
        ("vm_initramfs", &handler.vm_initramfs),
        ("vm_virtiofsd_path", &handler.vm_virtiofsd_path),
    ] {
        let Some(value) = value else { continue };
        if !is_vm {
            out.problem(
                &key(field),
                format!("{field} is set on a {:?} handler", handler.runtime_type),
                "only on handlers with runtime_type = \"vm\" served by containerd-shim-kata-rs-v2",
            );
        } else if !Path::new(value).is_absolute() {
            out.problem(
                &key(field),
                format!("{value:?} is not an absolute path"),
                "an absolute path, or no key for the shim's default",
            );
        }
    }
    for (field, value, min, max) in [
        ("vm_memory_mib", handler.vm_memory_mib, 64, 1 << 20),
        ("vm_vcpus", handler.vm_vcpus, 1, 255),
        (
            "vm_memory_overhead_mib",
            handler.vm_memory_overhead_mib,
            0,
            1 << 16,
        ),
        ("vm_boot_timeout_secs", handler.vm_boot_timeout_secs, 1, 600),
    ] {
        let Some(value) = value else { continue };
        if !is_vm {
            out.problem(
                &key(field),
                format!("{field} is set on a {:?} handler", handler.runtime_type),
                "only on handlers with runtime_type = \"vm\" served by containerd-shim-kata-rs-v2",
            );
        } else if !(min..=max).contains(&value) {
            out.problem(
                &key(field),
                format!("{value} is out of range"),
                &format!("a number from {min} to {max}"),
            );
        }
    }
}

pub(super) struct Checker<'a> {
    origins: &'a Origins,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    pub(super) fn problem(&mut self, key: &str, message: String, accepted: &str) {
        self.problems.push(Problem {
            origin: self.origins.of(key),
            key: key.to_string(),
            message,
            accepted: Some(accepted.to_string()),
        });
    }

    pub(super) fn absolute(&mut self, key: &str, path: &Path) {
        if !path.is_absolute() {
            self.problem(
                key,
                format!("{:?} is not an absolute path", path.display().to_string()),
                "an absolute path",
            );
        }
    }

    pub(super) fn one_of(&mut self, key: &str, value: &str, accepted: &[&str]) {
        if !accepted.contains(&value) {
            self.problem(
                key,
                format!("{value:?} is not accepted"),
                &accepted.join(", "),
            );
        }
    }
}

/// RuntimeClass handlers are DNS labels (Kubernetes validates them so).
fn valid_handler_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}
