//! Configuration through the real binary: merge order, flags and env vars for every
//! subcommand, and start-up refused with file, line, key and what is accepted.

use std::process::Command;
use std::time::Duration;

use crio_tests::daemon::crio_binary;
use crio_tests::Daemon;

/// Waits for a daemon that must refuse to start; returns its log.
fn refused(daemon: &mut Daemon) -> String {
    let status = daemon
        .wait_exit(Duration::from_secs(10))
        .expect("must exit");
    assert!(!status.success(), "started despite a bad config");
    daemon.log()
}

fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().expect("run crio");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn crio_config_prints_the_merge_in_lexical_order() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let main = tmp.path().join("crio.conf");
    let dir = tmp.path().join("crio.conf.d");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::write(
        &main,
        "[crio]\nroot = \"/from-main\"\nlog_dir = \"/main-logs\"\n",
    )
    .expect("w");
    std::fs::write(dir.join("20-b.conf"), "[crio]\nroot = \"/from-b\"\n").expect("w");
    std::fs::write(
        dir.join("10-a.conf"),
        "[crio]\nroot = \"/from-a\"\n[crio.runtime.runtimes.crun]\nruntime_path = \"/usr/bin/crun\"\n",
    )
    .expect("w");

    let (ok, stdout, stderr) = run(Command::new(crio_binary())
        .arg("-c")
        .arg(&main)
        .arg("-d")
        .arg(&dir)
        .arg("config"));
    assert!(ok, "{stderr}");
    let merged: toml::Table = stdout.parse().expect("crio config prints TOML");
    assert_eq!(merged["crio"]["root"].as_str(), Some("/from-b"));
    assert_eq!(merged["crio"]["log_dir"].as_str(), Some("/main-logs"));
    let runtimes = merged["crio"]["runtime"]["runtimes"]
        .as_table()
        .expect("runtimes");
    assert!(runtimes.contains_key("runc") && runtimes.contains_key("crun"));

    // The same through CRI-O's environment variables, with a flag on top.
    let (ok, stdout, _) = run(Command::new(crio_binary())
        .env("CONTAINER_CONFIG", &main)
        .env("CONTAINER_CONFIG_DIR", &dir)
        .env("CONTAINER_RUNROOT", "/from-env")
        .args(["config", "--root", "/from-flag"]));
    assert!(ok);
    let merged: toml::Table = stdout.parse().expect("toml");
    assert_eq!(merged["crio"]["root"].as_str(), Some("/from-flag"));
    assert_eq!(merged["crio"]["runroot"].as_str(), Some("/from-env"));
}

#[test]
fn bad_config_refuses_to_start_naming_file_line_key_and_accepted_values() {
    let mut daemon = Daemon::builder()
        .dropin(
            "50-bad.conf",
            "[crio.runtime]\n\ncgroup_manager = \"cgroupv3\"\n",
        )
        .spawn();
    let status = daemon
        .wait_exit(Duration::from_secs(10))
        .expect("must exit");
    assert!(!status.success());
    let log = daemon.log();
    let file = daemon.dirs.config_dir.join("50-bad.conf");
    assert!(
        log.contains(&format!(
            "{}:3: key crio.runtime.cgroup_manager: \"cgroupv3\" is not accepted (accepted: cgroupfs, systemd)",
            file.display()
        )),
        "{log}"
    );
    assert!(!daemon.dirs.socket.exists(), "nothing served");
}

#[test]
fn wrong_type_and_syntax_errors_name_file_and_line() {
    let mut daemon = Daemon::builder()
        .dropin("50-bad.conf", "[crio.metrics]\nmetrics_port = \"http\"\n")
        .spawn();
    let log = refused(&mut daemon);
    assert!(
        log.contains("50-bad.conf:2: key crio.metrics.metrics_port: invalid type"),
        "{log}"
    );

    let mut daemon = Daemon::builder()
        .dropin("50-bad.conf", "[crio\nroot = 1\n")
        .spawn();
    let log = refused(&mut daemon);
    assert!(log.contains("50-bad.conf:1: invalid TOML"), "{log}");
}

#[test]
fn unknown_default_runtime_lists_the_configured_handlers() {
    let mut daemon = Daemon::builder()
        .main_config("[crio.runtime]\ndefault_runtime = \"gvisor\"\n")
        .spawn();
    let log = refused(&mut daemon);
    assert!(
        log.contains("crio.conf:2: key crio.runtime.default_runtime"),
        "{log}"
    );
    assert!(
        log.contains("accepted: a configured handler: kata, runc, youki"),
        "{log}"
    );
}

#[test]
fn unknown_keys_are_warned_about_with_file_and_line_but_start() {
    let daemon = Daemon::builder()
        .dropin(
            "60-crio-o.conf",
            "[crio.runtime]\nconmon_cgroup = \"pod\"\n[crio.runtime.runtimes.runc]\nruntime_root = \"/run/runc\"\nmonitor_env = []\n",
        )
        .start();
    let log = daemon.log();
    let file = daemon.dirs.config_dir.join("60-crio-o.conf");
    assert!(
        log.contains(&format!(
            "{}:2: crio.runtime.conmon_cgroup is ignored: it configures conmon",
            file.display()
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "{}:5: crio.runtime.runtimes.runc.monitor_env is ignored: it configures conmon",
            file.display()
        )),
        "{log}"
    );
}

/// A handler table as CRI-O's docs write one for crun with conmon-rs: no
/// runtime_path (CRI-O looks up the handler's name), `runtime_type = "pod"`, a
/// conmon `monitor_path`, a per-handler `container_min_memory`. It serves pods
/// through our shim driving crun, and says what it ignores.
#[tokio::test(flavor = "multi_thread")]
async fn a_cri_o_crun_handler_with_conmon_rs_runs_pods_through_our_shim() {
    crio_tests::containerd::prepare_crun();
    let registry = crio_tests::Registry::with_test_images();
    let daemon = Daemon::builder()
        .dropin(
            "10-crun.conf",
            "[crio.runtime.runtimes.crun]\nruntime_type = \"pod\"\nruntime_root = \"/run/crun\"\n\
             monitor_path = \"/usr/libexec/crio/conmon-rs\"\nmonitor_cgroup = \"pod\"\n\
             container_min_memory = \"64MiB\"\n",
        )
        .registries_conf(&registry.insecure_conf())
        .start();
    let log = daemon.log();
    let file = daemon.dirs.config_dir.join("10-crun.conf");
    for said in [
        format!("{}:2: crio.runtime.runtimes.crun.runtime_type \"pod\" (conmon-rs) is served like \"oci\"", file.display()),
        format!("{}:4: crio.runtime.runtimes.crun.monitor_path is ignored: it names conmon", file.display()),
    ] {
        assert!(log.contains(&said), "{said}\nin\n{log}");
    }
    let mut cri = daemon.client().await;
    let image = registry.reference(crio_tests::TestImage::Busybox);
    cri.pull(&image, None).await.expect("pull");
    let mut pod = crio_tests::pods::pod_config("crun-pod", &daemon.dirs.log_dir);
    // Not in the handler's allowed_annotations: no effect, as in CRI-O.
    pod.annotations
        .insert("io.kubernetes.cri-o.ShmSize".into(), "16Mi".into());
    let pod_id = cri
        .run_pod(&pod, "crun")
        .await
        .expect("RunPodSandbox on crun");
    // The handler's own minimum memory applies.
    let mut small = crio_tests::pods::container_config("small", &image, "sleep 60");
    small.linux = Some(protocols::cri::LinuxContainerConfig {
        resources: Some(protocols::cri::LinuxContainerResources {
            memory_limit_in_bytes: 32 << 20,
            ..Default::default()
        }),
        security_context: None,
    });
    let err = cri
        .create_container(&pod_id, &small, &pod)
        .await
        .expect_err("below the handler's container_min_memory");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    let config = crio_tests::pods::container_config("app", &image, "sleep 60");
    let id = cri.started_container(&pod_id, &config, &pod).await;
    let df = cri
        .exec(&id, &["sh", "-c", "df -k /dev/shm | tail -1"])
        .await;
    let df = String::from_utf8_lossy(&df.stdout).to_string();
    assert_eq!(
        df.split_whitespace().nth(1),
        Some("65536"),
        "the default 64 MiB: {df}"
    );
    // crun runs it: its state is under the handler's runtime_root (per
    // containerd namespace, as containerd's runc shim keeps it).
    let state = std::path::Path::new("/run/crun/k8s.io").join(&id);
    assert!(
        state.join("status").exists(),
        "crun's state {}",
        state.display()
    );
}

/// CRI-O 1.31's own default configuration (`crio config --default`: every key
/// written out; reconstructed from CRI-O's template into tests/fixtures) as the
/// main file, with the drop-in a host without systemd needs: crio-rs starts,
/// says of every key it does not apply why (none is merely "unknown"), and runs
/// a pod on the file's default handler, `crun`.
#[tokio::test(flavor = "multi_thread")]
async fn cri_o_s_own_default_config_starts_says_why_of_each_ignored_key_and_runs_a_pod() {
    // CRI-O's default handler is crun.
    crio_tests::containerd::prepare_crun();
    let fixture = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/cri-o-1.31-default.conf"
    ))
    .expect("fixture");
    let registry = crio_tests::Registry::with_test_images();
    let daemon = Daemon::builder()
        .main_config(&fixture)
        .dropin(
            "10-cgroupfs.conf",
            "[crio.runtime]\ncgroup_manager = \"cgroupfs\"\n",
        )
        .registries_conf(&registry.insecure_conf())
        .start();
    let log = daemon.log();
    let unknown: Vec<&str> = log.lines().filter(|l| l.contains("unknown key")).collect();
    assert!(
        unknown.is_empty(),
        "CRI-O keys without a reason: {unknown:#?}"
    );
    let main = daemon.dirs.base.join("crio.conf");
    for said in [
        "crio.runtime.conmon is ignored: it configures conmon",
        "crio.runtime.runtimes.crun.monitor_env is ignored: it configures conmon",
        "crio.nri is ignored: NRI plugins are not supported",
        "crio.image.big_files_temporary_dir is ignored: crio-rs writes no big temporary files",
    ] {
        assert!(log.contains(said), "{said}\nin\n{log}");
    }
    // Applied now, so not said to be ignored.
    for applied in [
        "crio.runtime.hooks_dir is ignored",
        "crio.image.signature_policy is ignored",
        "crio.runtime.default_sysctls is ignored",
        "crio.image.pinned_images is ignored",
    ] {
        assert!(!log.contains(applied), "{applied}\nin\n{log}");
    }
    assert!(
        log.contains(&main.display().to_string()),
        "warnings name the file"
    );
    let mut cri = daemon.client().await;
    let image = registry.reference(crio_tests::TestImage::Busybox);
    cri.pull(&image, None).await.expect("pull");
    let pod = crio_tests::pods::pod_config("cri-o-defaults", &daemon.dirs.log_dir);
    let pod_id = cri.run_pod(&pod, "").await.expect("RunPodSandbox");
    assert_eq!(cri.pod_status(&pod_id).await.runtime_handler, "crun");
    let config = crio_tests::pods::container_config("app", &image, "echo from crun");
    let id = cri.started_container(&pod_id, &config, &pod).await;
    let exited = cri.wait_exited(&id, Duration::from_secs(30)).await;
    assert_eq!(exited.exit_code, 0);
}

/// CRI-O's container defaults, set as an operator would: every container starts
/// from these capabilities, this environment (under the image's and the pod's),
/// these rlimits.
#[tokio::test(flavor = "multi_thread")]
async fn default_capabilities_env_and_ulimits_reach_every_container() {
    let registry = crio_tests::Registry::with_test_images();
    let daemon = Daemon::builder()
        .dropin(
            "10-defaults.conf",
            "[crio.runtime]\ndefault_capabilities = [\"CHOWN\", \"CAP_NET_RAW\"]\n\
             default_env = [\"FROM_CRIO=yes\", \"OVERRIDDEN=crio\"]\n\
             default_ulimits = [\"nofile=1000:2000\"]\n",
        )
        .registries_conf(&registry.insecure_conf())
        .start();
    let mut cri = daemon.client().await;
    let image = registry.reference(crio_tests::TestImage::Busybox);
    cri.pull(&image, None).await.expect("pull");
    let pod = crio_tests::pods::pod_config("defaults", &daemon.dirs.log_dir);
    let pod_id = cri.run_pod(&pod, "").await.expect("RunPodSandbox");
    let mut config = crio_tests::pods::container_config("app", &image, "sleep 60");
    config.envs = vec![protocols::cri::KeyValue {
        key: "OVERRIDDEN".into(),
        value: "pod".into(),
    }];
    let id = cri.started_container(&pod_id, &config, &pod).await;
    let out = cri
        .exec(
            &id,
            &[
                "sh",
                "-c",
                // The container's own process: runc 1.1 sets an exec's rlimits
                // racing with Go's own RLIMIT_NOFILE raise in `runc init`.
                "grep CapEff /proc/1/status; echo $FROM_CRIO $OVERRIDDEN; \
                 grep 'Max open files' /proc/1/limits | awk '{print $4, $5}'",
            ],
        )
        .await;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let lines: Vec<&str> = text.lines().collect();
    // CHOWN (bit 0) and NET_RAW (bit 13) only.
    assert_eq!(
        lines.first().map(|l| l.split_whitespace().nth(1)),
        Some(Some("0000000000002001")),
        "{text}"
    );
    assert_eq!(
        lines.get(1),
        Some(&"yes pod"),
        "the pod's entry wins: {text}"
    );
    assert_eq!(lines.get(2), Some(&"1000 2000"), "{text}");
}

#[test]
fn version_plain_and_json() {
    let (ok, stdout, _) = run(Command::new(crio_binary()).arg("version"));
    assert!(ok);
    assert!(stdout.contains(&format!("Version:       {}", env!("CARGO_PKG_VERSION"))));
    assert!(stdout.contains("GitCommit:"));
    let (ok, stdout, _) = run(Command::new(crio_binary()).args(["version", "--json"]));
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert!(v["gitCommit"].is_string());
}
