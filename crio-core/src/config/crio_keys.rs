//! CRI-O's keys that crio-rs accepts without applying, each with why, so a CRI-O
//! configuration loads and says what it does not do (CRI-O 1.31's keys: the
//! `toml` tags of its `pkg/config/config.go`). Keys crio-rs applies are in the
//! model; anything else is an unknown key.

/// crio-rs has no conmon: CRI-O's container monitor settings have nothing to set.
const CONMON: &str =
    "it configures conmon, CRI-O's container monitor; crio-rs runs a shim v2 per pod instead";
const STORAGE: &str =
    "it configures containers/storage; crio-rs has its own store (storage_driver overlay or vfs)";
const CPU_TUNING: &str = "CPU and IRQ tuning of high-performance pods is not supported by crio-rs";
const USERNS: &str =
    "deprecated in CRI-O: a pod's user namespace comes from the CRI (hostUsers: false)";
const SELINUX: &str = "SELinux labelling is not supported by crio-rs";

/// `[crio.runtime]` (and other tables') keys, by dotted path.
const KEYS: &[(&str, &str)] = &[
    ("crio.imagestore", STORAGE),
    ("crio.storage_option", STORAGE),
    ("crio.image.default_transport", "crio-rs pulls from registries only (docker://)"),
    ("crio.image.auto_reload_registries", "crio-rs always reloads registries.conf when it changes"),
    ("crio.image.big_files_temporary_dir", "crio-rs writes no big temporary files: layer blobs stream straight into their unpacked layer"),
    ("crio.network.included_pod_metrics", "CRI-O reads it from [crio.stats] (its own template writes it under [crio.network])"),
    ("crio.nri", "NRI plugins are not supported by crio-rs"),
    ("crio.tracing", "OpenTelemetry tracing is not supported by crio-rs"),
    ("crio.stats.collection_period", "crio-rs collects stats when they are asked for"),
    ("crio.stats.stats_collection_period", "crio-rs collects stats when they are asked for"),
    ("crio.runtime.workloads", "workloads are not supported by crio-rs yet"),
    ("crio.runtime.conmon", CONMON),
    ("crio.runtime.conmon_cgroup", CONMON),
    ("crio.runtime.conmon_env", CONMON),
    ("crio.runtime.container_exits_dir", CONMON),
    ("crio.runtime.container_attach_socket_dir", CONMON),
    ("crio.runtime.log_to_journald", CONMON),
    ("crio.runtime.ctr_stop_timeout", "CRI-O only raises it to 30 and reads it for nothing else; StopContainer's timeout is the kubelet's"),
    ("crio.runtime.log_filter", "crio-rs filters its log by level (log_level), not by a message pattern"),
    ("crio.runtime.separate_pull_cgroup", "crio-rs pulls in its own cgroup; pulling in a pod's or a separate systemd cgroup is not supported"),
    ("crio.runtime.bind_mount_prefix", "it is for running CRI-O in a container, which crio-rs does not support"),
    ("crio.runtime.blockio_config_file", "blockio classes are not supported by crio-rs"),
    ("crio.runtime.blockio_reload", "blockio classes are not supported by crio-rs"),
    ("crio.runtime.rdt_config_file", "RDT classes are not supported by crio-rs"),
    ("crio.runtime.decryption_keys_path", "encrypted images are not supported by crio-rs"),
    ("crio.runtime.enable_criu_support", "checkpoint and restore are not supported by crio-rs"),
    ("crio.runtime.enable_pod_events", "crio-rs always serves container events (GetContainerEvents)"),
    ("crio.runtime.uid_mappings", USERNS),
    ("crio.runtime.gid_mappings", USERNS),
    ("crio.runtime.minimum_mappable_uid", USERNS),
    ("crio.runtime.minimum_mappable_gid", USERNS),
    ("crio.runtime.irqbalance_config_file", CPU_TUNING),
    ("crio.runtime.irqbalance_config_restore_file", CPU_TUNING),
    ("crio.runtime.shared_cpuset", CPU_TUNING),
    ("crio.runtime.namespaces_dir", "crio-rs pins the pods' namespaces itself, under its runroot"),
    ("crio.runtime.pinns_path", "crio-rs pins the pods' namespaces itself, without pinns"),
    ("crio.runtime.selinux", SELINUX),
    ("crio.runtime.hostnetwork_disable_selinux", SELINUX),
];

/// A handler table's keys (`[crio.runtime.runtimes.NAME]`), by field.
const HANDLER_KEYS: &[(&str, &str)] = &[
    ("monitor_cgroup", CONMON),
    ("monitor_env", CONMON),
    ("monitor_exec_cgroup", CONMON),
    (
        "inherit_default_runtime",
        "crio-rs merges handler tables key by key: a table always keeps what earlier files set",
    ),
    (
        "stream_websockets",
        "crio-rs's streaming server always serves WebSocket and SPDY",
    ),
    (
        "no_sync_log",
        "crio-rs never fsyncs container logs: they behave as with no_sync_log = true",
    ),
    ("exec_cpu_affinity", CPU_TUNING),
    (
        "runtime_pull_image",
        "pulling images through the runtime is not supported by crio-rs",
    ),
    // CRI-O's template writes these three after the handler table, where CRI-O
    // does not read them either.
    ("hostnetwork_disable_selinux", SELINUX),
    (
        "disable_hostport_mapping",
        "CRI-O reads it from [crio.runtime], not from a handler table",
    ),
    (
        "timezone",
        "CRI-O reads it from [crio.runtime], not from a handler table",
    ),
];

/// Why the CRI-O key `key` (a dotted path, possibly into a table crio-rs does not
/// read) is accepted without effect; `None` for a key CRI-O does not have.
pub(super) fn why_ignored(key: &str) -> Option<&'static str> {
    if let Some((_, why)) = KEYS
        .iter()
        .find(|(k, _)| key == *k || key.starts_with(&format!("{k}.")))
    {
        return Some(why);
    }
    let field = key
        .strip_prefix("crio.runtime.runtimes.")?
        .split_once('.')?
        .1;
    HANDLER_KEYS
        .iter()
        .find(|(k, _)| field == *k || field.starts_with(&format!("{k}.")))
        .map(|(_, why)| *why)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_o_keys_say_why_and_others_do_not() {
        assert_eq!(why_ignored("crio.runtime.conmon"), Some(CONMON));
        assert_eq!(
            why_ignored("crio.runtime.runtimes.crun.monitor_env"),
            Some(CONMON)
        );
        assert_eq!(
            why_ignored("crio.runtime.runtimes.crun.monitor_env.0"),
            Some(CONMON),
            "inside an array"
        );
        assert!(
            why_ignored("crio.nri.enable_nri").is_some(),
            "inside a table"
        );
        assert_eq!(why_ignored("crio.runtime.conmonx"), None);
        assert_eq!(why_ignored("crio.runtime.runtimes.crun.nonsense"), None);
        assert_eq!(why_ignored("crio.nonsense"), None);
    }

    #[test]
    fn docs_config_md_lists_every_key_with_its_reason() {
        let docs = include_str!("../../../docs/config.md");
        for (key, why) in KEYS {
            assert!(docs.contains(&format!("| `{key}` | {why} |")), "{key}");
        }
        for (field, why) in HANDLER_KEYS {
            let row = format!("| `crio.runtime.runtimes.NAME.{field}` | {why} |");
            assert!(docs.contains(&row), "{field}");
        }
    }
}
