use std::fs;
use std::path::{Path, PathBuf};

use super::*;

struct Dirs {
    _tmp: tempfile::TempDir,
    file: PathBuf,
    dir: PathBuf,
}

impl Dirs {
    fn new() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = tmp.path().join("crio.conf");
        let dir = tmp.path().join("crio.conf.d");
        fs::create_dir(&dir).expect("mkdir");
        Self {
            _tmp: tmp,
            file,
            dir,
        }
    }
    fn main(&self, text: &str) -> &Self {
        fs::write(&self.file, text).expect("write");
        self
    }
    fn dropin(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(name);
        fs::write(&path, text).expect("write");
        path
    }
    fn sources(&self) -> Sources {
        Sources {
            file: self.file.clone(),
            dir: self.dir.clone(),
        }
    }
    fn load(&self) -> Result<Loaded, ConfigError> {
        load(&self.sources(), &Overrides::default())
    }
    fn problems(&self) -> Vec<Problem> {
        match self.load() {
            Err(ConfigError::Invalid(p)) => p,
            other => panic!("expected invalid config, got {other:?}"),
        }
    }
}

fn at(path: &Path, line: usize) -> Origin {
    Origin::File {
        path: path.to_path_buf(),
        line,
    }
}

#[test]
fn no_files_gives_the_defaults() {
    let d = Dirs::new();
    let loaded = d.load().expect("load");
    assert_eq!(loaded.config, Config::default());
    assert!(loaded.files.is_empty());
    assert_eq!(
        loaded.config.crio.api.listen,
        Path::new("/var/run/crio/crio.sock")
    );
    assert_eq!(loaded.config.crio.runtime.default_runtime, "runc");
}

#[test]
fn dropins_apply_in_lexical_order_after_the_main_file() {
    let d = Dirs::new();
    d.main("[crio]\nroot = \"/main\"\nrunroot = \"/main-run\"\n");
    d.dropin("20-b.conf", "[crio]\nroot = \"/b\"\n");
    d.dropin(
        "10-a.conf",
        "[crio]\nroot = \"/a\"\nlog_dir = \"/a-logs\"\n",
    );
    d.dropin("30-ignored.txt", "[crio]\nroot = \"/txt\"\n");
    let loaded = d.load().expect("load");
    let c = &loaded.config.crio;
    assert_eq!(c.root, Path::new("/b"));
    assert_eq!(c.log_dir, Path::new("/a-logs"));
    assert_eq!(c.runroot, Path::new("/main-run"));
    let names: Vec<_> = loaded
        .files
        .iter()
        .map(|p| {
            p.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string()
        })
        .collect();
    assert_eq!(names, ["crio.conf", "10-a.conf", "20-b.conf"]);
    assert_eq!(
        loaded.origins.of("crio.root"),
        at(&d.dir.join("20-b.conf"), 2)
    );
}

#[test]
fn runtime_tables_merge_with_defaults_and_each_other() {
    let d = Dirs::new();
    d.dropin(
        "10-kata.conf",
        "[crio.runtime.runtimes.kata]\nruntime_type = \"vm\"\nruntime_path = \"/usr/bin/shim\"\n",
    );
    d.dropin(
        "20-kata-more.conf",
        "[crio.runtime.runtimes.kata]\nallowed_annotations = [\"io.kubernetes.cri-o.Devices\"]\n",
    );
    let c = d.load().expect("load").config.crio;
    assert!(
        c.runtime.runtimes.contains_key("runc"),
        "default handler kept"
    );
    let kata = &c.runtime.runtimes["kata"];
    assert_eq!(kata.runtime_type, "vm");
    assert_eq!(kata.runtime_path, "/usr/bin/shim");
    assert_eq!(kata.allowed_annotations, ["io.kubernetes.cri-o.Devices"]);
}

#[test]
fn flags_override_files() {
    let d = Dirs::new();
    d.main("[crio]\nroot = \"/file\"\n[crio.api]\nlisten = \"/file.sock\"\n");
    let loaded = load(
        &d.sources(),
        &Overrides {
            root: Some("/flag".into()),
            listen: Some("/flag.sock".into()),
            runroot: None,
            log_level: Some("debug".into()),
        },
    )
    .expect("load");
    let c = &loaded.config.crio;
    assert_eq!(c.root, Path::new("/flag"));
    assert_eq!(c.api.listen, Path::new("/flag.sock"));
    assert_eq!(c.runtime.log_level, "debug");
    assert_eq!(loaded.origins.of("crio.root"), Origin::Flag("--root"));
}

#[test]
fn crio_keys_keep_their_meaning_and_tables() {
    let d = Dirs::new();
    let f = d.dropin(
        "10.conf",
        "[crio.runtime]\nimage_volumes = \"bind\"\ncontainer_min_memory = \"1MiB\"\n\
         [crio.image]\nimage_volumes = \"ignore\"\n\
         [crio.runtime.runtimes.crun]\nruntime_type = \"pod\"\n\
         monitor_path = \"/usr/libexec/crio/conmon-rs\"\ncontainer_min_memory = \"500KiB\"\n",
    );
    let loaded = d.load().expect("a CRI-O drop-in loads");
    let c = &loaded.config.crio;
    assert_eq!(c.image.image_volumes, "ignore", "read from [crio.image]");
    let crun = &c.runtime.runtimes["crun"];
    assert_eq!(crun.container_min_memory_bytes(), 500 << 10, "per handler");
    assert_eq!(
        c.runtime.runtimes["runc"].container_min_memory_bytes(),
        12 << 20
    );
    let w = loaded.warnings.join("\n");
    for said in [
        format!(
            "{}:2: crio.runtime.image_volumes is ignored: CRI-O reads image_volumes from [crio.image]",
            f.display()
        ),
        format!("{}:3: crio.runtime.container_min_memory is ignored", f.display()),
        format!(
            "{}:8: crio.runtime.runtimes.crun.monitor_path is ignored: it names conmon",
            f.display()
        ),
        format!(
            "{}:7: crio.runtime.runtimes.crun.runtime_type \"pod\" (conmon-rs) is served like \"oci\"",
            f.display()
        ),
    ] {
        assert!(w.contains(&said), "{said}\nin\n{w}");
    }
    // A bad size is named per handler.
    d.dropin(
        "20.conf",
        "[crio.runtime.runtimes.crun]\ncontainer_min_memory = \"lots\"\n",
    );
    let p = d.problems();
    assert!(
        p.iter()
            .any(|p| p.key == "crio.runtime.runtimes.crun.container_min_memory"),
        "{p:?}"
    );
}

#[test]
fn container_defaults_are_checked_by_entry() {
    let d = Dirs::new();
    d.dropin(
        "1.conf",
        "[crio.runtime]\ndefault_capabilities = [\"CHOWN\", \"FLY\"]\n\
         default_env = [\"=x\"]\ndefault_ulimits = [\"nofile=9:3\"]\n",
    );
    let keys: Vec<String> = d.problems().into_iter().map(|p| p.key).collect();
    for key in [
        "crio.runtime.default_capabilities.1",
        "crio.runtime.default_env.0",
        "crio.runtime.default_ulimits.0",
    ] {
        assert!(keys.iter().any(|k| k == key), "{key} in {keys:?}");
    }
}

#[test]
fn unknown_keys_warn_with_file_and_line() {
    let d = Dirs::new();
    let f = d.dropin(
        "10.conf",
        "[crio.runtime]\nconmon = \"/usr/bin/conmon\"\n\n[crio.nonsense]\nx = 1\n",
    );
    let loaded = d.load().expect("unknown keys are not fatal");
    let w = loaded.warnings.join("\n");
    // A CRI-O key says why it does nothing; any other is unknown.
    assert!(
        w.contains(&format!(
            "{}:2: crio.runtime.conmon is ignored: it configures conmon",
            f.display()
        )),
        "{w}"
    );
    assert!(
        w.contains(&format!("{}:4: unknown key crio.nonsense", f.display())),
        "{w}"
    );
}

#[test]
fn syntax_error_names_file_and_line() {
    let d = Dirs::new();
    let f = d.dropin("10.conf", "[crio]\nroot = \"/ok\"\nrunroot = = 3\n");
    match d.load() {
        Err(ConfigError::Syntax { path, line, .. }) => {
            assert_eq!(path, f);
            assert_eq!(line, 3);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn wrong_type_names_file_line_and_key() {
    let d = Dirs::new();
    d.main("[crio.api]\n\nlisten = 5\n");
    let p = d.problems();
    assert_eq!(p[0].key, "crio.api.listen");
    assert_eq!(p[0].origin, at(&d.file, 3));
    assert!(p[0].message.contains("invalid type"), "{}", p[0].message);
}

#[test]
fn wrong_type_in_a_list_names_the_list() {
    let d = Dirs::new();
    let f = d.dropin("1.conf", "[crio.network]\nplugin_dirs = [\"/a\", 7]\n");
    let p = d.problems();
    assert_eq!(p[0].key, "crio.network.plugin_dirs.1");
    assert_eq!(p[0].origin, at(&f, 2));
}

#[test]
fn out_of_range_port_is_refused() {
    let d = Dirs::new();
    d.main("[crio.metrics]\nmetrics_port = 70000\n");
    let p = d.problems();
    assert_eq!(p[0].key, "crio.metrics.metrics_port");
    assert_eq!(p[0].origin, at(&d.file, 2));
}

#[test]
fn bad_enum_values_list_what_is_accepted() {
    let d = Dirs::new();
    let f = d.dropin(
        "1.conf",
        "[crio.runtime]\ncgroup_manager = \"cgroupv3\"\nlog_level = \"loud\"\n[crio.runtime.runtimes.x]\nruntime_type = \"wasm\"\n",
    );
    let p = d.problems();
    let find = |key: &str| {
        p.iter()
            .find(|p| p.key == key)
            .unwrap_or_else(|| panic!("no problem for {key}: {p:?}"))
    };
    let cg = find("crio.runtime.cgroup_manager");
    assert_eq!(cg.origin, at(&f, 2));
    assert_eq!(cg.accepted.as_deref(), Some("cgroupfs, systemd"));
    let ll = find("crio.runtime.log_level");
    assert!(ll.accepted.as_deref().unwrap_or("").contains("debug"));
    let rt = find("crio.runtime.runtimes.x.runtime_type");
    assert_eq!(rt.origin, at(&f, 5));
    assert_eq!(rt.accepted.as_deref(), Some("oci, vm, pod"));
    let shown = ConfigError::Invalid(p.clone()).to_string();
    assert!(shown.contains(&format!(
        "{}:2: key crio.runtime.cgroup_manager",
        f.display()
    )));
}

#[test]
fn default_runtime_must_exist() {
    let d = Dirs::new();
    d.main("[crio.runtime]\ndefault_runtime = \"vmx\"\n");
    let p = d.problems();
    assert_eq!(p[0].key, "crio.runtime.default_runtime");
    assert_eq!(p[0].origin, at(&d.file, 2));
    assert!(p[0].accepted.as_deref().unwrap_or("").contains("runc"));
}

#[test]
fn cdi_spec_dirs_must_be_absolute() {
    let d = Dirs::new();
    d.main("[crio.runtime]\ncdi_spec_dirs = [\"/etc/cdi\", \"run/cdi\"]\n");
    let p = d.problems();
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].key, "crio.runtime.cdi_spec_dirs");
    assert_eq!(p[0].origin, at(&d.file, 2));
    assert!(p[0].message.contains("run/cdi"), "{:?}", p[0]);
}

#[test]
fn vm_handler_needs_a_shim_path_and_paths_must_be_absolute() {
    let d = Dirs::new();
    d.main("[crio.runtime.runtimes.vmx]\nruntime_type = \"vm\"\nshim_path = \"bin/shim\"\n");
    let p = d.problems();
    let keys: Vec<_> = p.iter().map(|p| p.key.as_str()).collect();
    assert!(
        keys.contains(&"crio.runtime.runtimes.vmx.runtime_path"),
        "{keys:?}"
    );
    assert!(
        keys.contains(&"crio.runtime.runtimes.vmx.shim_path"),
        "{keys:?}"
    );
}

#[test]
fn bad_handler_name_paths_ports_and_durations() {
    let d = Dirs::new();
    d.main(concat!(
        "[crio]\nroot = \"relative\"\n",
        "[crio.api]\nstream_port = \"http\"\nstream_address = \"localhost:1\"\n",
        "[crio.image]\npull_progress_timeout = \"soon\"\n",
        "[crio.runtime.runtimes.Bad_Name]\n",
    ));
    let keys: Vec<_> = d.problems().into_iter().map(|p| p.key).collect();
    for key in [
        "crio.root",
        "crio.api.stream_port",
        "crio.api.stream_address",
        "crio.image.pull_progress_timeout",
        "crio.runtime.runtimes.Bad_Name",
    ] {
        assert!(keys.iter().any(|k| k == key), "{key} missing from {keys:?}");
    }
}

#[test]
fn unreadable_dropin_dir_is_an_error() {
    let d = Dirs::new();
    let not_a_dir = d.dir.join("file");
    fs::write(&not_a_dir, "").expect("write");
    let err = load(
        &Sources {
            file: d.file.clone(),
            dir: not_a_dir.clone(),
        },
        &Overrides::default(),
    )
    .expect_err("not a dir");
    assert!(err.to_string().contains(&not_a_dir.display().to_string()));
}

#[test]
fn printed_config_loads_back_identically() {
    let d = Dirs::new();
    d.dropin(
        "1.conf",
        "[crio.runtime.runtimes.crun]\nruntime_path = \"/usr/bin/crun\"\nruntime_type = \"oci\"\n",
    );
    let first = d.load().expect("load").config;
    d.main(&first.to_toml());
    fs::remove_file(d.dir.join("1.conf")).expect("rm");
    assert_eq!(d.load().expect("reload").config, first);
}

#[test]
fn shipped_default_dropin_is_valid_and_matches_the_defaults() {
    let d = Dirs::new();
    let shipped = include_str!("../../../conf.d/00-default.conf");
    d.dropin("00-default.conf", shipped);
    let loaded = d.load().expect("shipped default loads");
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(loaded.config, Config::default());
}

#[test]
fn storage_driver_defaults_to_overlay_and_accepts_vfs() {
    let d = Dirs::new();
    assert_eq!(
        d.load().expect("load").config.crio.storage_driver,
        "overlay"
    );
    let f = d.dropin("10-vfs.conf", "[crio]\nstorage_driver = \"vfs\"\n");
    let loaded = d.load().expect("vfs is accepted");
    assert_eq!(loaded.config.crio.storage_driver, "vfs");
    assert_eq!(loaded.origins.of("crio.storage_driver"), at(&f, 2));
    // CRI-O's empty value (containers/storage's default) means overlay.
    d.dropin("20-empty.conf", "[crio]\nstorage_driver = \"\"\n");
    assert_eq!(
        d.load()
            .expect("empty is accepted")
            .config
            .crio
            .storage_driver,
        ""
    );
}

#[test]
fn unknown_storage_driver_names_file_key_and_accepted_values() {
    let d = Dirs::new();
    let f = d.dropin("10.conf", "[crio]\n\nstorage_driver = \"btrfs\"\n");
    let p = d.problems();
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].key, "crio.storage_driver");
    assert_eq!(p[0].origin, at(&f, 3));
    assert_eq!(p[0].accepted.as_deref(), Some("overlay, vfs"));
    let shown = ConfigError::Invalid(p).to_string();
    assert!(
        shown.contains(&format!("{}:3: key crio.storage_driver", f.display())),
        "{shown}"
    );
    assert!(shown.contains("\"btrfs\""), "{shown}");
}

#[test]
fn certs_dir_must_be_absolute() {
    let d = Dirs::new();
    d.dropin(
        "10.conf",
        "[crio.image]\ncerts_dir = \"/etc/crio/certs.d\"\n",
    );
    assert_eq!(
        d.load().expect("absolute").config.crio.image.certs_dir,
        "/etc/crio/certs.d"
    );
    let f = d.dropin("20.conf", "[crio.image]\ncerts_dir = \"certs.d\"\n");
    let p = d.problems();
    assert_eq!(p[0].key, "crio.image.certs_dir");
    assert_eq!(p[0].origin, at(&f, 2));
}

#[test]
fn metric_groups_are_checked_by_name() {
    let d = Dirs::new();
    let f = d.dropin(
        "1.conf",
        "[crio.stats]\nincluded_pod_metrics = [\"cpu\", \"diskio\"]\n",
    );
    let p = d.problems();
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].key, "crio.stats.included_pod_metrics");
    assert_eq!(p[0].origin, at(&f, 2));
    assert!(
        p[0].to_string().contains("diskIO"),
        "lists the groups: {}",
        p[0]
    );
    let d = Dirs::new();
    d.dropin(
        "1.conf",
        "[crio.stats]\nincluded_pod_metrics = [\"all\", \"cpu\"]\n",
    );
    assert_eq!(d.problems().len(), 1, "all must be alone");
}

#[test]
fn vm_keys_belong_to_vm_handlers_and_are_checked() {
    let d = Dirs::new();
    d.main(
        "[crio.runtime.runtimes.kata]\nruntime_type = \"vm\"\nruntime_path = \"/usr/bin/shim\"\n\
         vm_kernel = \"boot/vmlinux\"\nvm_memory_mib = 16\nvm_vcpus = 2\n\
         vm_boot_timeout_secs = 0\nvm_shared_fs = \"nfs\"\n\
         [crio.runtime.runtimes.runc]\nvm_vcpus = 2\n",
    );
    let p = d.problems();
    let find = |key: &str| {
        p.iter()
            .find(|p| p.key == key)
            .unwrap_or_else(|| panic!("{key} in {p:?}"))
    };
    assert!(find("crio.runtime.runtimes.kata.vm_kernel")
        .message
        .contains("not an absolute path"));
    let memory = find("crio.runtime.runtimes.kata.vm_memory_mib");
    assert_eq!(
        memory.accepted.as_deref(),
        Some("a number from 64 to 1048576")
    );
    assert_eq!(
        find("crio.runtime.runtimes.kata.vm_boot_timeout_secs")
            .accepted
            .as_deref(),
        Some("a number from 1 to 600")
    );
    assert_eq!(
        find("crio.runtime.runtimes.kata.vm_shared_fs")
            .accepted
            .as_deref(),
        Some("\"virtio-9p\" or \"virtio-fs\"")
    );
    assert!(find("crio.runtime.runtimes.runc.vm_vcpus")
        .message
        .contains("\"oci\" handler"));
    assert!(
        !p.iter()
            .any(|p| p.key == "crio.runtime.runtimes.kata.vm_vcpus"),
        "2 vCPUs are fine: {p:?}"
    );
}

#[test]
fn vm_keys_reach_the_shim_as_toml_with_the_same_names() {
    let handler = RuntimeHandler {
        runtime_type: RUNTIME_TYPE_VM.into(),
        vm_kernel: Some("/k/vmlinux".into()),
        vm_memory_mib: Some(512),
        ..RuntimeHandler::default()
    };
    let text = handler.vm_config().expect("keys set");
    let back: toml::Value = toml::from_str(&text).expect("TOML");
    assert_eq!(back["vm_kernel"].as_str(), Some("/k/vmlinux"));
    assert_eq!(back["vm_memory_mib"].as_integer(), Some(512));
    assert!(back.get("vm_vcpus").is_none());
    assert_eq!(RuntimeHandler::default().vm_config(), None);
}
