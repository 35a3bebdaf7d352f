//! What a pod asks of user namespaces (`NamespaceOption.userns_options`, KEP-127),
//! checked before anything is made: mode `NODE` (or nothing) shares the host's user
//! namespace; mode `POD` gives the pod its own, with the kubelet's one uid and one
//! gid range, shared by all its containers.

use protocols::cri;

use crate::error::CriError;
use crate::network::userns::{IdMapping, UsernsMappings};
use crate::spec::PodNamespaces;

fn invalid(msg: impl Into<String>) -> CriError {
    CriError::InvalidArgument(msg.into())
}

fn one_range(what: &str, ranges: &[cri::IdMapping]) -> Result<IdMapping, CriError> {
    let [r] = ranges else {
        return Err(invalid(format!(
            "userns_options: {} {what} mappings, expected exactly one (the kubelet's)",
            ranges.len()
        )));
    };
    if r.length == 0 || r.host_id.checked_add(r.length).is_none() {
        return Err(invalid(format!(
            "userns_options: {what} mapping {}:{}:{} is empty or runs past the last ID",
            r.container_id, r.host_id, r.length
        )));
    }
    if r.container_id != 0 {
        return Err(invalid(format!(
            "userns_options: {what} mapping must start at container ID 0, not {}",
            r.container_id
        )));
    }
    if r.host_id == 0 {
        return Err(invalid(format!(
            "userns_options: {what} mapping to host ID 0 would make the pod's root the host's"
        )));
    }
    Ok(IdMapping {
        container_id: r.container_id,
        host_id: r.host_id,
        length: r.length,
    })
}

/// The mappings of `opts` (`None`: the host's user namespace).
pub(crate) fn mappings(
    opts: Option<&cri::UserNamespace>,
) -> Result<Option<UsernsMappings>, CriError> {
    let Some(opts) = opts else {
        return Ok(None);
    };
    match cri::NamespaceMode::try_from(opts.mode) {
        Ok(cri::NamespaceMode::Node) => Ok(None),
        Ok(cri::NamespaceMode::Pod) => Ok(Some(UsernsMappings {
            uids: one_range("uid", &opts.uids)?,
            gids: one_range("gid", &opts.gids)?,
        })),
        _ => Err(invalid(format!(
            "userns_options mode {} is not POD or NODE",
            opts.mode
        ))),
    }
}

fn userns_options(n: Option<&cri::NamespaceOption>) -> Option<&cri::UserNamespace> {
    n?.userns_options.as_ref()
}

/// The pod's user namespace mappings; refuses host namespaces with one (the API
/// server's rule: a pod in its own user namespace shares none of the host's).
pub(crate) fn pod_mappings(
    config: &cri::PodSandboxConfig,
    ns: PodNamespaces,
) -> Result<Option<UsernsMappings>, CriError> {
    let opts = config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| userns_options(s.namespace_options.as_ref()));
    let found = mappings(opts)?;
    if found.is_some() && (ns.host_network || ns.host_pid || ns.host_ipc) {
        return Err(invalid(
            "a pod with its own user namespace cannot use the host's network, PID or IPC \
             namespace",
        ));
    }
    Ok(found)
}

/// Checks a container's user namespace request against its pod's: a container
/// joins its pod's (containerd refuses a different one too).
pub(crate) fn check_container(
    config: &cri::ContainerConfig,
    pod: Option<&UsernsMappings>,
) -> Result<(), CriError> {
    let opts = config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| userns_options(s.namespace_options.as_ref()));
    let asked = mappings(opts)?;
    // No options at all: the container simply joins whatever the pod has.
    if opts.is_some() && asked.as_ref() != pod {
        return Err(invalid(format!(
            "the container's user namespace ({}) differs from its pod's ({})",
            describe(asked.as_ref()),
            describe(pod)
        )));
    }
    Ok(())
}

fn describe(m: Option<&UsernsMappings>) -> String {
    match m {
        None => "the host's".into(),
        Some(m) => format!(
            "uids {}:{}:{}, gids {}:{}:{}",
            m.uids.container_id,
            m.uids.host_id,
            m.uids.length,
            m.gids.container_id,
            m.gids.host_id,
            m.gids.length
        ),
    }
}

/// A CRI mount's ID mappings, as `UsernsMappings` (`None` when it has none).
pub(crate) fn mount_mappings(m: &cri::Mount) -> Result<Option<UsernsMappings>, CriError> {
    if m.uid_mappings.is_empty() && m.gid_mappings.is_empty() {
        return Ok(None);
    }
    let what = |kind: &str| format!("mount {} {kind}", m.container_path);
    Ok(Some(UsernsMappings {
        uids: one_range(&what("uid"), &m.uid_mappings)?,
        gids: one_range(&what("gid"), &m.gid_mappings)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(host: u32) -> cri::IdMapping {
        cri::IdMapping {
            host_id: host,
            container_id: 0,
            length: 65536,
        }
    }

    fn pod(mode: cri::NamespaceMode, uids: Vec<cri::IdMapping>) -> cri::UserNamespace {
        cri::UserNamespace {
            mode: mode as i32,
            gids: uids.clone(),
            uids,
        }
    }

    #[test]
    fn pod_mode_takes_the_kubelets_one_range() {
        let m = mappings(Some(&pod(cri::NamespaceMode::Pod, vec![range(65536)])))
            .expect("valid")
            .expect("own namespace");
        assert_eq!(m.uids.host_id, 65536);
        assert_eq!(m.gids.length, 65536);
        assert_eq!(
            mappings(Some(&pod(cri::NamespaceMode::Node, vec![]))).expect("node"),
            None
        );
        assert_eq!(mappings(None).expect("none"), None);
    }

    #[test]
    fn bad_requests_are_invalid_arguments() {
        for (what, ns) in [
            ("no range", pod(cri::NamespaceMode::Pod, vec![])),
            (
                "two ranges",
                pod(cri::NamespaceMode::Pod, vec![range(65536), range(131072)]),
            ),
            ("host root", pod(cri::NamespaceMode::Pod, vec![range(0)])),
            (
                "mode CONTAINER",
                pod(cri::NamespaceMode::Container, vec![range(65536)]),
            ),
            (
                "past the last ID",
                pod(
                    cri::NamespaceMode::Pod,
                    vec![cri::IdMapping {
                        host_id: u32::MAX - 10,
                        container_id: 0,
                        length: 65536,
                    }],
                ),
            ),
        ] {
            assert!(
                matches!(mappings(Some(&ns)), Err(CriError::InvalidArgument(_))),
                "{what}"
            );
        }
    }

    #[test]
    fn containers_join_their_pods_namespace() {
        let own = mappings(Some(&pod(cri::NamespaceMode::Pod, vec![range(65536)]))).expect("valid");
        let mut config = cri::ContainerConfig::default();
        check_container(&config, own.as_ref()).expect("no options: joins");
        config.linux = Some(cri::LinuxContainerConfig {
            security_context: Some(cri::LinuxContainerSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    userns_options: Some(pod(cri::NamespaceMode::Pod, vec![range(131072)])),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            resources: None,
        });
        assert!(matches!(
            check_container(&config, own.as_ref()),
            Err(CriError::InvalidArgument(_))
        ));
    }
}
