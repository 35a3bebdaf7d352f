//! The node-wide settings of `[crio.runtime]` that every pod or container gets
//! unless it asks otherwise (CRI-O's keys: default capabilities, environment,
//! ulimits, sysctls, mounts, devices, hooks, seccomp and AppArmor defaults),
//! loaded once at start. Files they name are checked then: a bad one stops the
//! start, naming the key and the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::{ImageConfig, RuntimeSection};
use crate::oci_hooks::HooksDirs;
use crate::spec::devices::{self, Device};
use crate::spec::rlimits::Ulimit;
use crate::spec::seccomp::{self, ProfileFile};

/// containers/common's mounts.conf locations, tried in order when
/// `default_mounts_file` is empty; the first that exists is the only one read.
const MOUNTS_FILES: &[&str] = &[
    "/etc/containers/mounts.conf",
    "/usr/share/containers/mounts.conf",
];

/// The AppArmor profile CRI-O installs for `RuntimeDefault`; crio-rs ships none.
const CRIO_DEFAULT_APPARMOR: &str = "crio-default";

#[derive(Debug, thiserror::Error)]
pub enum NodeDefaultsError {
    #[error("[crio.runtime] {key}: {message}")]
    Key { key: &'static str, message: String },
}

fn key_error(key: &'static str, message: impl Into<String>) -> NodeDefaultsError {
    NodeDefaultsError::Key {
        key,
        message: message.into(),
    }
}

/// One `default_mounts_file` entry: a host path copied into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DefaultMount {
    pub source: PathBuf,
    pub destination: PathBuf,
}

/// The node's defaults, as loaded.
#[derive(Debug, Default)]
pub struct NodeDefaults {
    pub(crate) capabilities: Vec<String>,
    pub(crate) env: Vec<String>,
    pub(crate) ulimits: Vec<Ulimit>,
    /// `default_sysctls`, in file order (the pod's own override them).
    pub(crate) sysctls: Vec<(String, String)>,
    pub(crate) hooks: HooksDirs,
    /// Where mounts.conf is looked for, in order.
    pub(crate) mounts_files: Vec<PathBuf>,
    pub(crate) reject_absent: Vec<PathBuf>,
    pub(crate) allowed_devices: Vec<PathBuf>,
    pub(crate) additional_devices: Vec<Device>,
    pub(crate) device_ownership_from_security_context: bool,
    /// The infra process's CPUs (`infra_ctr_cpuset`; empty = any).
    pub(crate) infra_cpuset: String,
    /// `[crio.image] pause_command`: what a `pause_image`'s infra container runs
    /// (empty = the image's own command).
    pub(crate) pause_command: String,
    /// `seccomp_profile`, parsed: what `RuntimeDefault` means (`None` = built in).
    pub(crate) seccomp_default: Option<ProfileFile>,
    /// `privileged_seccomp_profile`: read at each privileged container's create.
    pub(crate) privileged_seccomp: Option<PathBuf>,
    /// The AppArmor profile `RuntimeDefault` gets on hosts with AppArmor (`None`:
    /// the runtime's own default).
    pub(crate) apparmor_default: Option<String>,
    /// Handlers' own `seccomp_profile`s, parsed, by handler name.
    pub(crate) handler_seccomp: std::collections::HashMap<String, ProfileFile>,
    /// `add_inheritable_capabilities`.
    pub(crate) inheritable_capabilities: bool,
    /// `read_only`: every container's rootfs read-only, tmpfs on /run, /tmp, /var/tmp.
    pub(crate) read_only: bool,
    /// `timezone`: the zone file containers get as /etc/localtime (`None`: the
    /// image's).
    pub(crate) timezone: Option<PathBuf>,
}

/// The node's defaults a SIGHUP may replace (`seccomp_profile`, `apparmor_profile`,
/// `pause_command`, handlers' profiles); each use takes the current ones.
/// Clones share one value.
#[derive(Debug, Default, Clone)]
pub struct LiveNode(std::sync::Arc<std::sync::RwLock<std::sync::Arc<NodeDefaults>>>);

impl LiveNode {
    pub(crate) fn new(node: NodeDefaults) -> Self {
        Self(std::sync::Arc::new(std::sync::RwLock::new(
            std::sync::Arc::new(node),
        )))
    }

    pub(crate) fn current(&self) -> std::sync::Arc<NodeDefaults> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn replace(&self, node: NodeDefaults) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = std::sync::Arc::new(node);
    }
}

/// The zone file `timezone` names: `Local` is the host's /etc/localtime, another
/// name a file of the host's zoneinfo (`$TZDIR`, else /usr/share/zoneinfo).
pub(crate) fn zone_file(timezone: &str) -> Result<Option<PathBuf>, String> {
    if timezone.is_empty() {
        return Ok(None);
    }
    let path = if timezone.eq_ignore_ascii_case("local") {
        PathBuf::from("/etc/localtime")
    } else {
        if timezone.starts_with('/') || timezone.split('/').any(|c| c == ".." || c.is_empty()) {
            return Err(format!("{timezone:?} is not a time zone name"));
        }
        let dir = std::env::var_os("TZDIR")
            .map_or_else(|| PathBuf::from("/usr/share/zoneinfo"), PathBuf::from);
        dir.join(timezone)
    };
    let resolved = std::fs::canonicalize(&path)
        .map_err(|e| format!("{timezone:?}: {}: {e}", path.display()))?;
    let head = std::fs::read(&resolved)
        .map_err(|e| format!("{timezone:?}: {}: {e}", resolved.display()))?;
    if !head.starts_with(b"TZif") {
        return Err(format!(
            "{timezone:?}: {} is not a zoneinfo file",
            resolved.display()
        ));
    }
    Ok(Some(resolved))
}

/// `key=value`, as CRI-O's `default_sysctls` takes it: no spaces around `=` or
/// at either end (spaces inside the value are the value's).
pub(crate) fn parse_sysctl(entry: &str) -> Result<(String, String), String> {
    let Some((key, value)) = entry.split_once('=') else {
        return Err(format!("{entry:?} is not in key=value format"));
    };
    if key.trim() != key || value.trim() != value || key.is_empty() {
        return Err(format!(
            "{entry:?} has extra spaces or no key: the format is key=value"
        ));
    }
    Ok((crate::spec::sysctl::normalize(key), value.to_string()))
}

/// The lines of a mounts.conf: `/SRC:/DST` or `/SRC`; any line not starting with
/// `/` (comments, blanks) is skipped, as containers/common does.
pub(crate) fn parse_mounts_conf(text: &str) -> Vec<DefaultMount> {
    text.lines()
        .filter(|l| l.trim_start().starts_with('/'))
        .map(|l| {
            let l = l.trim();
            let (source, destination) = l.split_once(':').unwrap_or((l, l));
            DefaultMount {
                source: source.into(),
                destination: destination.into(),
            }
        })
        .collect()
}

impl NodeDefaults {
    /// Loads what `[crio.runtime]` names; `apparmor` says whether the host
    /// enforces AppArmor. The config's syntax is already validated.
    pub fn load(
        c: &RuntimeSection,
        image: &ImageConfig,
        apparmor: bool,
    ) -> Result<Self, NodeDefaultsError> {
        let mut handler_seccomp = std::collections::HashMap::new();
        for (name, handler) in &c.runtimes {
            if handler.seccomp_profile.is_empty() {
                continue;
            }
            // No fallback for a missing file here, as CRI-O's handler key.
            let file = seccomp::read_profile(Path::new(&handler.seccomp_profile)).map_err(|e| {
                key_error("runtimes.*.seccomp_profile", format!("handler {name}: {e}"))
            })?;
            handler_seccomp.insert(name.clone(), file);
        }
        let timezone = zone_file(&c.timezone).map_err(|m| key_error("timezone", m))?;
        let sysctls = c
            .default_sysctls
            .iter()
            .filter(|e| !e.is_empty())
            .map(|e| parse_sysctl(e).map_err(|m| key_error("default_sysctls", m)))
            .collect::<Result<_, _>>()?;
        let hooks = HooksDirs::open(c.hooks_dir.clone())
            .map_err(|e| key_error("hooks_dir", e.to_string()))?;
        let mut additional_devices = Vec::new();
        for entry in &c.additional_devices {
            let (host, container, perms) = devices::parse_device_spec(entry)
                .map_err(|m| key_error("additional_devices", m))?;
            let found = devices::host_devices(&host, &container, &perms)
                .map_err(|e| key_error("additional_devices", e.to_string()))?;
            additional_devices.extend(found);
        }
        let seccomp_default = match c.seccomp_profile.as_str() {
            "" => None,
            path if !Path::new(path).exists() => {
                // CRI-O's rule: a missing file means the built-in profile.
                tracing::info!(
                    "seccomp_profile {path} does not exist: RuntimeDefault is the built-in profile"
                );
                None
            }
            path => Some(
                seccomp::read_profile(Path::new(path))
                    .map_err(|e| key_error("seccomp_profile", e.to_string()))?,
            ),
        };
        let apparmor_default = match c.apparmor_profile.as_str() {
            _ if !apparmor => None,
            "unconfined" => None,
            "" | CRIO_DEFAULT_APPARMOR => {
                tracing::warn!(
                    "apparmor_profile {CRIO_DEFAULT_APPARMOR:?}: crio-rs ships no such profile; \
                     RuntimeDefault containers get the OCI runtime's default"
                );
                None
            }
            name => {
                if !apparmor_loaded(name) {
                    return Err(key_error(
                        "apparmor_profile",
                        format!(
                            "AppArmor profile {name:?} is not loaded (apparmor_parser -r it first)"
                        ),
                    ));
                }
                Some(name.to_string())
            }
        };
        Ok(Self {
            capabilities: c.default_capabilities.clone(),
            env: c.default_env.clone(),
            // Validated at load: every entry parses.
            ulimits: c
                .default_ulimits
                .iter()
                .filter_map(|u| crate::spec::rlimits::parse(u).ok())
                .collect(),
            sysctls,
            hooks,
            mounts_files: if c.default_mounts_file.is_empty() {
                MOUNTS_FILES.iter().map(PathBuf::from).collect()
            } else {
                vec![PathBuf::from(&c.default_mounts_file)]
            },
            reject_absent: c.absent_mount_sources_to_reject.clone(),
            allowed_devices: c.allowed_devices.iter().map(PathBuf::from).collect(),
            additional_devices,
            device_ownership_from_security_context: c.device_ownership_from_security_context,
            infra_cpuset: c.infra_ctr_cpuset.clone(),
            pause_command: image.pause_command.clone(),
            seccomp_default,
            privileged_seccomp: (!c.privileged_seccomp_profile.is_empty())
                .then(|| PathBuf::from(&c.privileged_seccomp_profile)),
            apparmor_default,
            handler_seccomp,
            inheritable_capabilities: c.add_inheritable_capabilities,
            read_only: c.read_only,
            timezone,
        })
    }

    /// The pod's sysctls over the defaults; a default the pod's namespaces
    /// cannot have is skipped with a warning, as CRI-O does.
    pub(crate) fn pod_sysctls(
        &self,
        pod: BTreeMap<String, String>,
        host_network: bool,
        host_ipc: bool,
    ) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (name, value) in &self.sysctls {
            match crate::spec::sysctl::validate(name, host_network, host_ipc) {
                Ok(()) => {
                    out.insert(name.clone(), value.clone());
                }
                Err(why) => tracing::warn!("default_sysctls: skipped for this pod: {why}"),
            }
        }
        out.extend(pod);
        out
    }

    /// The mounts.conf entries whose source exists (the first file found).
    pub(crate) fn default_mounts(&self) -> Vec<DefaultMount> {
        for file in &self.mounts_files {
            match std::fs::read_to_string(file) {
                Ok(text) => {
                    return parse_mounts_conf(&text)
                        .into_iter()
                        .filter(|m| {
                            let exists = m.source.exists();
                            if !exists {
                                tracing::debug!(file = %file.display(), source = %m.source.display(), "default mount source does not exist: skipped");
                            }
                            exists
                        })
                        .collect();
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    tracing::warn!(
                        "default_mounts_file {}: {e}: no default mounts",
                        file.display()
                    );
                    return Vec::new();
                }
            }
        }
        Vec::new()
    }

    /// The seccomp filter of a container (or pod) that asked for `asked`:
    /// `RuntimeDefault` is `seccomp_profile` where one is set, and a privileged
    /// one gets `privileged_seccomp_profile` (read now: a missing or bad file
    /// fails the create) whatever it asked. The flag says the filter applies
    /// although the container is privileged.
    pub(crate) fn seccomp(
        &self,
        asked: crate::spec::Seccomp,
        privileged: bool,
        handler: &str,
    ) -> Result<(crate::spec::Seccomp, bool), crate::error::CriError> {
        use crate::spec::Seccomp;
        if privileged {
            if let Some(path) = &self.privileged_seccomp {
                let file = seccomp::read_profile(path).map_err(|e| {
                    crate::error::CriError::FailedPrecondition(format!(
                        "privileged_seccomp_profile: {e}"
                    ))
                })?;
                return Ok((Seccomp::Profile(Box::new(file)), true));
            }
        }
        // The handler's own profile wins over the node's (CRI-O 1.34).
        let default = self
            .handler_seccomp
            .get(handler)
            .or(self.seccomp_default.as_ref());
        Ok(match (asked, default) {
            (Seccomp::RuntimeDefault, Some(file)) => {
                (Seccomp::Profile(Box::new(file.clone())), false)
            }
            (asked, _) => (asked, false),
        })
    }
}

/// Whether AppArmor has a profile of this name loaded.
fn apparmor_loaded(name: &str) -> bool {
    std::fs::read_to_string("/sys/kernel/security/apparmor/profiles").is_ok_and(|list| {
        list.lines()
            .any(|l| l.rsplit_once(" (").map_or(l, |(n, _)| n) == name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_entries_follow_cri_o_s_syntax() {
        assert_eq!(
            parse_sysctl("net.ipv4.ping_group_range=0 2147483647"),
            Ok(("net.ipv4.ping_group_range".into(), "0 2147483647".into()))
        );
        assert_eq!(
            parse_sysctl("net/ipv4/ip_forward=1"),
            Ok(("net.ipv4.ip_forward".into(), "1".into()))
        );
        for bad in [
            "kernel.shmmax",
            "kernel.shmmax = 1",
            " kernel.shmmax=1",
            "=1",
        ] {
            assert!(parse_sysctl(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pod_sysctls_win_and_unfit_defaults_are_skipped() {
        let d = NodeDefaults {
            sysctls: vec![
                ("net.ipv4.ip_unprivileged_port_start".into(), "0".into()),
                ("kernel.shmmni".into(), "100".into()),
                ("vm.swappiness".into(), "1".into()),
            ],
            ..NodeDefaults::default()
        };
        let pod = BTreeMap::from([("kernel.shmmni".to_string(), "200".to_string())]);
        let out = d.pod_sysctls(pod.clone(), false, false);
        assert_eq!(out.get("kernel.shmmni").map(String::as_str), Some("200"));
        assert_eq!(
            out.get("net.ipv4.ip_unprivileged_port_start")
                .map(String::as_str),
            Some("0")
        );
        assert!(!out.contains_key("vm.swappiness"), "not namespaced");
        let host_net = d.pod_sysctls(BTreeMap::new(), true, false);
        assert!(!host_net.contains_key("net.ipv4.ip_unprivileged_port_start"));
    }

    #[test]
    fn mounts_conf_lines() {
        let text =
            "# subscriptions\n/usr/share/rhel/secrets:/run/secrets\n\n  /etc/pki\nrelative:/x\n";
        assert_eq!(
            parse_mounts_conf(text),
            [
                DefaultMount {
                    source: "/usr/share/rhel/secrets".into(),
                    destination: "/run/secrets".into()
                },
                DefaultMount {
                    source: "/etc/pki".into(),
                    destination: "/etc/pki".into()
                },
            ]
        );
    }
}
