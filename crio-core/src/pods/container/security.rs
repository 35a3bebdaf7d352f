//! The CRI's security fields -> what the spec builder takes: the seccomp choice,
//! validated sysctls, AppArmor and SELinux where the host has them.

use std::collections::BTreeMap;
use std::path::Path;

use protocols::cri;

use crate::error::CriError;
use crate::spec::{self, seccomp, sysctl, Seccomp};

/// The seccomp profile from a security context's `seccomp` field, or its deprecated
/// `seccomp_profile_path` (`runtime/default`, `unconfined`, `localhost/<path>`). An
/// absent profile is `Unconfined`, as the CRI says and containerd and CRI-O do: the
/// kubelet sends `RuntimeDefault` itself when the pod or the node asks for it.
pub(crate) fn seccomp_choice(
    profile: Option<&cri::SecurityProfile>,
    legacy_path: &str,
) -> Result<Seccomp, CriError> {
    use cri::security_profile::ProfileType;
    let invalid = |e: spec::SpecError| CriError::InvalidArgument(e.to_string());
    if let Some(p) = profile {
        return match ProfileType::try_from(p.profile_type) {
            Ok(ProfileType::RuntimeDefault) => Ok(Seccomp::RuntimeDefault),
            Ok(ProfileType::Unconfined) => Ok(Seccomp::Unconfined),
            Ok(ProfileType::Localhost) => {
                let file = seccomp::read_profile(Path::new(&p.localhost_ref)).map_err(invalid)?;
                Ok(Seccomp::Profile(Box::new(file)))
            }
            Err(_) => Err(CriError::InvalidArgument(format!(
                "seccomp profile type {} is not RuntimeDefault, Unconfined or Localhost",
                p.profile_type
            ))),
        };
    }
    match legacy_path {
        "runtime/default" | "docker/default" => Ok(Seccomp::RuntimeDefault),
        "" | "unconfined" => Ok(Seccomp::Unconfined),
        other => match other.strip_prefix("localhost/") {
            Some(path) => {
                let file = seccomp::read_profile(Path::new(path)).map_err(invalid)?;
                Ok(Seccomp::Profile(Box::new(file)))
            }
            None => Err(CriError::InvalidArgument(format!(
                "seccomp_profile_path {other:?}: expected runtime/default, unconfined or \
                 localhost/<absolute path>"
            ))),
        },
    }
}

/// Validated pod sysctls (names normalised to dots).
pub(crate) fn pod_sysctls(
    sysctls: &std::collections::HashMap<String, String>,
    host_network: bool,
    host_ipc: bool,
) -> Result<BTreeMap<String, String>, CriError> {
    let mut out = BTreeMap::new();
    for (name, value) in sysctls {
        let name = sysctl::normalize(name);
        sysctl::validate(&name, host_network, host_ipc).map_err(CriError::InvalidArgument)?;
        out.insert(name, value.clone());
    }
    Ok(out)
}

/// The AppArmor profile to apply, if the host enforces AppArmor: `localhost/<name>`
/// names a loaded profile; `runtime/default` has no profile loaded by us, so the
/// runtime's own default applies. On hosts without AppArmor the field is accepted
/// and has no effect.
pub(crate) fn apparmor_profile(
    profile: Option<&cri::SecurityProfile>,
    legacy: &str,
    enabled: bool,
    runtime_default: Option<&str>,
) -> Option<String> {
    if !enabled {
        return None;
    }
    use cri::security_profile::ProfileType;
    let default = || runtime_default.map(str::to_string);
    match profile {
        Some(p) if p.profile_type == ProfileType::Localhost as i32 => {
            Some(p.localhost_ref.clone()).filter(|r| !r.is_empty())
        }
        Some(p) if p.profile_type == ProfileType::RuntimeDefault as i32 => default(),
        Some(_) => None,
        None => match legacy {
            // CRI-O: nothing asked is RuntimeDefault (`apparmor_profile`).
            "" | "runtime/default" => default(),
            other => other.strip_prefix("localhost/").map(str::to_string),
        },
    }
}

/// The SELinux process label from the CRI options, if the host has SELinux.
pub(crate) fn selinux_label(options: Option<&cri::SeLinuxOption>, enabled: bool) -> Option<String> {
    let o = options?;
    if !enabled || (o.user.is_empty() && o.role.is_empty() && o.r#type.is_empty()) {
        return None;
    }
    let or = |v: &str, d: &str| {
        if v.is_empty() {
            d.to_string()
        } else {
            v.to_string()
        }
    };
    Some(format!(
        "{}:{}:{}:{}",
        or(&o.user, "system_u"),
        or(&o.role, "system_r"),
        or(&o.r#type, "container_t"),
        or(&o.level, "s0")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seccomp_choices() {
        let p = |t: i32, r: &str| cri::SecurityProfile {
            profile_type: t,
            localhost_ref: r.into(),
        };
        assert!(matches!(seccomp_choice(None, ""), Ok(Seccomp::Unconfined)));
        assert!(matches!(
            seccomp_choice(None, "runtime/default"),
            Ok(Seccomp::RuntimeDefault)
        ));
        assert!(matches!(
            seccomp_choice(Some(&p(0, "")), ""),
            Ok(Seccomp::RuntimeDefault)
        ));
        assert!(matches!(
            seccomp_choice(Some(&p(1, "")), ""),
            Ok(Seccomp::Unconfined)
        ));
        assert!(matches!(
            seccomp_choice(None, "unconfined"),
            Ok(Seccomp::Unconfined)
        ));
        let e = seccomp_choice(Some(&p(2, "/no/such/profile.json")), "").expect_err("missing");
        assert!(matches!(&e, CriError::InvalidArgument(m) if m.contains("/no/such/profile.json")));
        assert!(seccomp_choice(None, "bogus").is_err());
    }

    #[test]
    fn host_wide_sysctls_are_invalid_arguments() {
        let ok =
            std::collections::HashMap::from([("net/ipv4/ip_forward".to_string(), "1".to_string())]);
        assert_eq!(
            pod_sysctls(&ok, false, false)
                .expect("ok")
                .get("net.ipv4.ip_forward")
                .map(String::as_str),
            Some("1")
        );
        let bad = std::collections::HashMap::from([("kernel.panic".to_string(), "1".to_string())]);
        assert!(matches!(
            pod_sysctls(&bad, false, false),
            Err(CriError::InvalidArgument(_))
        ));
    }

    #[test]
    fn mac_fields_apply_only_where_the_host_has_them() {
        let lh = cri::SecurityProfile {
            profile_type: 2,
            localhost_ref: "my-profile".into(),
        };
        assert_eq!(
            apparmor_profile(Some(&lh), "", true, Some("node")).as_deref(),
            Some("my-profile")
        );
        assert_eq!(apparmor_profile(Some(&lh), "", false, Some("node")), None);
        // apparmor_profile: what RuntimeDefault (or nothing asked) means.
        let rd = cri::SecurityProfile {
            profile_type: 0,
            localhost_ref: String::new(),
        };
        assert_eq!(
            apparmor_profile(Some(&rd), "", true, Some("node")).as_deref(),
            Some("node")
        );
        assert_eq!(
            apparmor_profile(None, "", true, Some("node")).as_deref(),
            Some("node")
        );
        assert_eq!(
            apparmor_profile(None, "unconfined", true, Some("node")),
            None
        );
        assert_eq!(apparmor_profile(Some(&rd), "", true, None), None);
        let o = cri::SeLinuxOption {
            level: "s0:c1,c2".into(),
            r#type: "spc_t".into(),
            ..Default::default()
        };
        assert_eq!(
            selinux_label(Some(&o), true).as_deref(),
            Some("system_u:system_r:spc_t:s0:c1,c2")
        );
        assert_eq!(selinux_label(Some(&o), false), None);
    }
}
