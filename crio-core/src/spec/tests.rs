use std::collections::HashSet;

use oci_spec::runtime::{Capability, LinuxNamespaceType};

use super::host::capabilities_in_mask;
use super::*;

/// Every capability but CAP_SYS_RESOURCE, as on this machine kind.
fn restricted_host() -> HashSet<Capability> {
    capabilities_in_mask(0x1ff_feff_ffff)
}

fn names(caps: &HashSet<Capability>) -> Vec<String> {
    let mut v: Vec<String> = caps.iter().map(|c| c.to_string()).collect();
    v.sort();
    v
}

#[test]
fn the_restricted_host_lacks_only_sys_resource() {
    let held = restricted_host();
    assert_eq!(held.len(), 40);
    assert!(!held.contains(&Capability::SysResource));
}

#[test]
fn default_capabilities_are_crio_s() {
    let caps = capabilities(false, None, &[], &[], &restricted_host()).expect("caps");
    assert_eq!(caps.len(), DEFAULT_CAPABILITIES.len());
    assert!(caps.contains(&Capability::NetBindService));
    assert!(!caps.contains(&Capability::NetRaw));
}

#[test]
fn add_drop_and_all_follow_crio_rules() {
    let held = restricted_host();
    let caps =
        capabilities(false, None, &["net_admin".into()], &["KILL".into()], &held).expect("caps");
    assert!(caps.contains(&Capability::NetAdmin));
    assert!(!caps.contains(&Capability::Kill));
    let caps =
        capabilities(false, None, &["NET_RAW".into()], &["ALL".into()], &held).expect("caps");
    assert_eq!(names(&caps), ["NET_RAW"]);
    let caps = capabilities(false, None, &["ALL".into()], &[], &held).expect("caps");
    assert_eq!(caps, held);
    assert!(capabilities(false, None, &["NOPE".into()], &[], &held).is_err());
}

#[test]
fn privileged_gets_what_the_host_holds_and_no_more() {
    let held = restricted_host();
    let caps = capabilities(true, None, &[], &[], &held).expect("caps");
    assert!(caps.contains(&Capability::SysAdmin));
    assert!(!caps.contains(&Capability::SysResource));
    let caps = capabilities(false, None, &["SYS_RESOURCE".into()], &[], &held).expect("caps");
    assert!(!caps.contains(&Capability::SysResource));
}

#[test]
fn cgroup_paths_are_named_like_crio() {
    assert_eq!(cgroups_path("", "abc", false), "/crio/crio-abc");
    assert_eq!(
        cgroups_path("/kubepods/pod1/", "abc", false),
        "/kubepods/pod1/crio-abc"
    );
    assert_eq!(
        cgroups_path("kubepods-pod1.slice", "abc", true),
        "kubepods-pod1.slice:crio:abc"
    );
}

fn container_input() -> ContainerSpec {
    ContainerSpec {
        default_capabilities: None,
        seccomp_privileged: false,
        inheritable_capabilities: false,
        ulimits: Vec::new(),
        rootfs: "/r".into(),
        args: vec!["sh".into()],
        env: vec!["A=1".into()],
        cwd: String::new(),
        uid: 1000,
        gid: 1000,
        additional_gids: vec![],
        tty: false,
        hostname: "pod".into(),
        sandbox_pid: 42,
        netns_path: None,
        utsns_path: None,
        ipcns_path: None,
        userns: None,
        namespaces: PodNamespaces::default(),
        mounts: vec![BindMount {
            host_path: "/h".into(),
            container_path: "/data".into(),
            readonly: true,
            propagation: "rprivate",
            recursive_readonly: false,
            hardened: false,
            idmapped: false,
        }],
        privileged: false,
        readonly_rootfs: false,
        no_new_privileges: true,
        add_capabilities: vec![],
        drop_capabilities: vec![],
        resources: Resources {
            memory_limit: 64 << 20,
            ..Default::default()
        },
        cgroups_path: "/crio/crio-c".into(),
        annotations: BTreeMap::new(),
        oom_score_adj: 0,
        seccomp: Seccomp::RuntimeDefault,
        kernel_release: "6.1.0".into(),
        masked_paths: None,
        readonly_paths: None,
        sysctls: BTreeMap::new(),
        devices: vec![],
        pod_mounts: vec![],
        target_pid: None,
        apparmor_profile: None,
        selinux_label: None,
        device_mounts: Vec::new(),
        hooks: None,
    }
}

#[test]
fn containers_join_the_pinned_namespaces_when_there_are_pins() {
    let mut input = container_input();
    input.netns_path = Some("/run/netns/p".into());
    input.utsns_path = Some("/run/utsns/p".into());
    input.ipcns_path = Some("/run/ipcns/p".into());
    let spec = container(&input, &restricted_host()).expect("spec");
    let ns = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .expect("namespaces");
    let path_of = |t: LinuxNamespaceType| {
        ns.iter()
            .find(|n| n.typ() == t)
            .and_then(|n| n.path().clone())
    };
    assert_eq!(path_of(LinuxNamespaceType::Network), input.netns_path);
    assert_eq!(path_of(LinuxNamespaceType::Uts), input.utsns_path);
    assert_eq!(path_of(LinuxNamespaceType::Ipc), input.ipcns_path);
}

#[test]
fn containers_join_the_pause_namespaces() {
    let spec = container(&container_input(), &restricted_host()).expect("spec");
    let linux = spec.linux().as_ref().expect("linux");
    let ns = linux.namespaces().as_ref().expect("namespaces");
    let path_of =
        |t: LinuxNamespaceType| ns.iter().find(|n| n.typ() == t).map(|n| n.path().clone());
    assert_eq!(
        path_of(LinuxNamespaceType::Network),
        Some(Some("/proc/42/ns/net".into()))
    );
    assert_eq!(
        path_of(LinuxNamespaceType::Uts),
        Some(Some("/proc/42/ns/uts".into()))
    );
    // A private PID namespace unless the pod shares one.
    assert_eq!(path_of(LinuxNamespaceType::Pid), Some(None));
    assert_eq!(
        linux.masked_paths().as_ref().map(Vec::len),
        Some(MASKED_PATHS.len())
    );
    let mounts = spec.mounts().as_ref().expect("mounts");
    let data = mounts
        .iter()
        .find(|m| m.destination() == &PathBuf::from("/data"))
        .expect("bind mount");
    assert_eq!(
        data.options().as_ref().expect("options"),
        &["rbind", "rprivate", "ro"]
    );
    let process = spec.process().as_ref().expect("process");
    assert_eq!(process.user().uid(), 1000);
    assert_eq!(process.no_new_privileges(), Some(true));
}

#[test]
fn privileged_containers_see_everything() {
    let mut input = container_input();
    input.privileged = true;
    input.namespaces.host_network = true;
    let spec = container(&input, &restricted_host()).expect("spec");
    let linux = spec.linux().as_ref().expect("linux");
    assert!(linux.masked_paths().is_none());
    let ns = linux.namespaces().as_ref().expect("namespaces");
    assert!(!ns.iter().any(|n| n.typ() == LinuxNamespaceType::Network));
    let sys = spec
        .mounts()
        .as_ref()
        .expect("mounts")
        .iter()
        .find(|m| m.destination() == &PathBuf::from("/sys"))
        .expect("/sys");
    assert!(sys
        .options()
        .as_ref()
        .expect("opts")
        .contains(&"rw".to_string()));
}
