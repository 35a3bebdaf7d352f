//! The daemon over its socket: permissions, Version/Status/RuntimeConfig, health,
//! Unimplemented for what is not served (checkpointing), the inspect endpoints, and shutdown.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::time::Duration;

use crio_tests::Daemon;
use protocols::cri::{
    CgroupDriver, CheckpointContainerRequest, ContainerStatsRequest, RuntimeConfigRequest,
    VersionRequest,
};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

#[tokio::test(flavor = "multi_thread")]
async fn socket_is_root_only_and_version_answers() {
    let daemon = Daemon::builder().start();
    let meta = std::fs::symlink_metadata(&daemon.dirs.socket).expect("socket");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    use std::os::unix::fs::MetadataExt;
    assert_eq!((meta.uid(), meta.gid()), (0, 0));

    let mut cri = daemon.client().await;
    let v = cri
        .runtime
        .version(VersionRequest {
            version: "v1".into(),
        })
        .await
        .expect("Version")
        .into_inner();
    assert_eq!(v.runtime_name, "crio-rs");
    assert_eq!(v.runtime_api_version, "v1");
    assert_eq!(v.runtime_version, env!("CARGO_PKG_VERSION"));
}

#[tokio::test(flavor = "multi_thread")]
async fn status_tells_why_runtime_and_network_are_not_ready() {
    // The default handler's shim is not where its config says.
    let daemon = Daemon::builder()
        .dropin(
            "50-missing-shim.conf",
            "[crio.runtime.runtimes.runc]\nshim_path = \"/nonexistent/containerd-shim-runc-rs-v2\"\n",
        )
        .no_network()
        .start();
    let mut cri = daemon.client().await;
    let status = cri.status(false).await;
    let conditions = status.status.expect("conditions").conditions;
    let runtime = conditions
        .iter()
        .find(|c| c.r#type == "RuntimeReady")
        .expect("RuntimeReady");
    assert!(!runtime.status);
    assert_eq!(runtime.reason, "ShimBinaryNotFound");
    assert!(runtime
        .message
        .contains("/nonexistent/containerd-shim-runc-rs-v2"));
    let network = conditions
        .iter()
        .find(|c| c.r#type == "NetworkReady")
        .expect("NetworkReady");
    assert!(!network.status);
    assert_eq!(network.reason, "NetworkPluginNotReady");
    assert!(network
        .message
        .contains(&daemon.dirs.network_dir.display().to_string()));
    assert!(status.info.is_empty(), "info only when verbose");

    let handlers: Vec<_> = status
        .runtime_handlers
        .iter()
        .map(|h| h.name.as_str())
        .collect();
    assert_eq!(handlers, ["", "kata", "runc", "youki"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn status_turns_ready_when_binaries_and_a_conflist_appear() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let shim = tmp.path().join("containerd-shim-test-v2");
    std::fs::write(&shim, "#!/bin/sh\nexit 0\n").expect("write");
    std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let daemon = Daemon::builder()
        .dropin(
            "50-vm.conf",
            &format!(
                "[crio.runtime]\ndefault_runtime = \"vmtest\"\n[crio.runtime.runtimes.vmtest]\nruntime_type = \"vm\"\nruntime_path = {:?}\n",
                shim
            ),
        )
        .no_network()
        .start();
    let mut cri = daemon.client().await;
    let before = cri.status(false).await;
    assert!(before
        .status
        .expect("conditions")
        .conditions
        .iter()
        .any(|c| c.r#type == "NetworkReady" && !c.status));
    // A conflist written after start-up is picked up without a restart.
    std::fs::write(
        daemon.dirs.network_dir.join("10-test.conflist"),
        r#"{"cniVersion":"1.0.0","name":"crio-test","plugins":[{"type":"bridge","bridge":"criotest0"},{"type":"portmap","capabilities":{"portMappings":true}}]}"#,
    )
    .expect("write conflist");
    let status = cri.status(true).await;
    for c in status.status.expect("conditions").conditions {
        assert!(
            c.status,
            "{} not ready: {} {}",
            c.r#type, c.reason, c.message
        );
    }
    let config: serde_json::Value =
        serde_json::from_str(status.info.get("config").expect("verbose config")).expect("json");
    assert_eq!(
        config["crio"]["crio"]["runtime"]["default_runtime"],
        "vmtest"
    );
    let names: Vec<_> = status
        .runtime_handlers
        .iter()
        .map(|h| h.name.clone())
        .collect();
    assert_eq!(names, ["", "kata", "runc", "vmtest", "youki"]);
}

async fn cgroup_driver(daemon: &Daemon) -> i32 {
    let mut cri = daemon.client().await;
    cri.runtime
        .runtime_config(RuntimeConfigRequest {})
        .await
        .expect("RuntimeConfig")
        .into_inner()
        .linux
        .expect("linux")
        .cgroup_driver
}

#[tokio::test(flavor = "multi_thread")]
async fn runtime_config_reports_the_configured_cgroup_driver() {
    let daemon = Daemon::builder().start();
    assert_eq!(cgroup_driver(&daemon).await, CgroupDriver::Cgroupfs as i32);
    let daemon = Daemon::builder()
        .dropin("50.conf", "[crio.runtime]\ncgroup_manager = \"systemd\"\n")
        .start();
    assert_eq!(cgroup_driver(&daemon).await, CgroupDriver::Systemd as i32);
}

fn assert_unimplemented<T: std::fmt::Debug>(result: Result<T, tonic::Status>) {
    let status = result.expect_err("not served");
    assert_eq!(status.code(), tonic::Code::Unimplemented, "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn checkpointing_answers_unimplemented_and_stats_of_nothing_not_found() {
    let daemon = Daemon::builder().start();
    let mut cri = daemon.client().await;
    assert_unimplemented(
        cri.runtime
            .checkpoint_container(CheckpointContainerRequest::default())
            .await,
    );
    let missing = cri
        .runtime
        .container_stats(ContainerStatsRequest {
            container_id: "nope".into(),
        })
        .await
        .expect_err("no such container");
    assert_eq!(missing.code(), tonic::Code::NotFound, "{missing}");
}

#[tokio::test(flavor = "multi_thread")]
async fn health_service_reports_serving() {
    let daemon = Daemon::builder().start();
    let channel = crio_tests::cri::channel(&daemon.dirs.socket)
        .await
        .expect("channel");
    let mut health = HealthClient::new(channel);
    for service in ["", "runtime.v1.RuntimeService", "runtime.v1.ImageService"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap_or_else(|e| panic!("health {service:?}: {e}"))
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_with_a_connected_client_exits_cleanly_and_removes_the_socket() {
    let mut daemon = Daemon::builder().start();
    let mut cri = daemon.client().await;
    cri.runtime
        .version(VersionRequest::default())
        .await
        .expect("Version");
    // The client stays connected and answers the server's GOAWAY: no grace period needed.
    let started = std::time::Instant::now();
    let status = daemon.stop();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        started.elapsed()
    );
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        daemon.log()
    );
    assert!(!daemon.dirs.socket.exists(), "socket left behind");
    assert!(daemon.log().contains("received SIGTERM"));
    assert!(cri
        .runtime
        .version(VersionRequest::default())
        .await
        .is_err());
}

#[test]
fn sigint_exits_cleanly() {
    let mut daemon = Daemon::builder().start();
    let pid = nix::unistd::Pid::from_raw(daemon.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("SIGINT");
    let status = daemon
        .wait_exit(Duration::from_secs(15))
        .expect("exits on SIGINT");
    assert!(status.success());
    assert!(!daemon.dirs.socket.exists());
}

#[test]
fn stale_socket_is_replaced_after_a_crash() {
    let mut daemon = Daemon::builder().start();
    daemon.kill9();
    // kill -9 leaves the socket file behind with nobody listening.
    assert!(daemon.dirs.socket.exists());
    daemon.restart();
    assert!(daemon.log().contains("removing stale socket"));
}

#[test]
fn a_live_socket_is_not_taken_over() {
    let first = Daemon::builder().start();
    let mut second = Daemon::builder()
        .arg("--listen")
        .arg(first.dirs.socket.to_str().expect("utf-8 path"))
        .spawn();
    let status = second
        .wait_exit(Duration::from_secs(15))
        .expect("second daemon must give up");
    assert!(!status.success());
    let log = second.log();
    assert!(log.contains("already serving on"), "{log}");
    assert!(std::os::unix::net::UnixStream::connect(&first.dirs.socket).is_ok());
}

#[test]
fn a_regular_file_at_the_socket_path_is_kept() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("not-a-socket");
    std::fs::write(&path, "precious").expect("write");
    let mut daemon = Daemon::builder()
        .arg("--listen")
        .arg(path.to_str().expect("utf-8"))
        .spawn();
    let status = daemon.wait_exit(Duration::from_secs(15)).expect("exits");
    assert!(!status.success());
    assert!(daemon.log().contains("is not a socket"), "{}", daemon.log());
    assert_eq!(std::fs::read_to_string(&path).expect("read"), "precious");
}

#[test]
fn crio_status_asks_the_running_daemon() {
    let daemon = Daemon::builder().start();
    let info = daemon.status_info();
    assert_eq!(info["cgroup_driver"], "cgroupfs");
    assert_eq!(
        info["storage_root"],
        daemon.dirs.root.display().to_string().as_str()
    );

    let out = daemon
        .command()
        .args(["status", "config"])
        .output()
        .expect("crio status config");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("listen = {:?}", daemon.dirs.socket)),
        "{text}"
    );

    // No daemon behind the socket: a clear error, not a hang.
    let out = daemon
        .command()
        .args(["status", "--socket", "/nonexistent/crio.sock", "info"])
        .output()
        .expect("crio status");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is crio running?"), "{err}");
}

#[test]
fn metadata_store_is_created_under_root_and_reopened_after_restart() {
    let mut daemon = Daemon::builder().start();
    let store = daemon.dirs.root.join("metadata.redb");
    assert!(store.is_file());
    assert!(daemon.stop().success());
    daemon.restart();
    assert!(store.is_file());
}

/// Handler features come from the runtime: runc (1.1) knows `rro` on this kernel but
/// has no idmapped mounts; a shim that answers neither `-info` nor is an `oci`
/// handler gets nothing assumed.
#[tokio::test(flavor = "multi_thread")]
async fn status_reports_each_handlers_features() {
    let daemon = Daemon::builder()
        .dropin(
            "50-go.conf",
            "[crio.runtime.runtimes.go]\nruntime_type = \"vm\"\nruntime_path = \"/usr/bin/containerd-shim-runc-v2\"\n",
        )
        .start();
    let mut cri = daemon.client().await;
    let status = cri.status(false).await;
    let features = |name: &str| {
        status
            .runtime_handlers
            .iter()
            .find(|h| h.name == name)
            .and_then(|h| h.features)
            .unwrap_or_else(|| panic!("handler {name:?} in {:?}", status.runtime_handlers))
    };
    let runc = features("runc");
    assert!(runc.recursive_read_only_mounts, "runc features lists rro");
    // runc joins user namespaces; the daemon ID-maps the rootfs and volumes itself.
    assert!(
        runc.user_namespaces,
        "runc features lists the user namespace"
    );
    assert_eq!(features(""), runc, "the default handler is runc");
    let go = features("go");
    assert!(!go.recursive_read_only_mounts && !go.user_namespaces);
}

/// containerd's legacy event path: `crio --address A publish --topic T --namespace N`
/// with the event on stdin reaches the daemon's events socket.
#[tokio::test(flavor = "multi_thread")]
async fn publish_subcommand_forwards_an_event() {
    use protocols::shim::protobuf::Message;
    use std::io::Write;
    let daemon = Daemon::builder().start();
    let events = daemon.dirs.runroot.join("shim-events.sock");
    let mut oom = protocols::shim::events::task::TaskOOM::new();
    oom.container_id = "c-published".into();
    let mut any = protocols::shim::protobuf::well_known_types::any::Any::new();
    any.type_url = "containerd.events.TaskOOM".into();
    any.value = oom.write_to_bytes().expect("encode");
    let publish = |stdin: Vec<u8>| {
        let mut child = std::process::Command::new(crio_tests::daemon::crio_binary())
            .arg("--address")
            .arg(&events)
            .args(["publish", "--topic", "/tasks/oom", "--namespace", "k8s.io"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("crio publish");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(&stdin)
            .expect("write event");
        child.wait_with_output().expect("wait")
    };
    let out = publish(any.write_to_bytes().expect("encode"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !daemon.log().contains("topic=/tasks/oom") {
        assert!(
            std::time::Instant::now() < deadline,
            "the event never reached the daemon:\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let bad = publish(b"\xff\xff not protobuf".to_vec());
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("not a protobuf Any"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

/// The datagrams a daemon sent to its NOTIFY_SOCKET, read for up to `within`
/// until `until` is among them.
fn notifications(
    socket: &std::os::unix::net::UnixDatagram,
    until: &str,
    within: Duration,
) -> Vec<String> {
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let deadline = std::time::Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while std::time::Instant::now() < deadline && !got.iter().any(|s| s == until) {
        if let Ok(len) = socket.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..len]).into_owned());
        }
    }
    got
}

/// Under systemd (`Type=notify`, `WatchdogSec`): READY=1 once the socket serves,
/// WATCHDOG=1 pings, RELOADING=1/READY=1 around a SIGHUP, STOPPING=1 on SIGTERM.
#[test]
fn systemd_hears_ready_watchdog_reload_and_stopping() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("notify");
    let socket = std::os::unix::net::UnixDatagram::bind(&path).expect("bind");
    let mut daemon = Daemon::builder()
        .env("NOTIFY_SOCKET", path.to_str().expect("utf-8"))
        .env("WATCHDOG_USEC", "400000")
        .start();
    let got = notifications(&socket, "READY=1", Duration::from_secs(10));
    assert!(got.contains(&"READY=1".to_string()), "{got:?}");
    assert!(daemon.dirs.socket.exists(), "READY after the socket");
    let got = notifications(&socket, "WATCHDOG=1", Duration::from_secs(3));
    assert!(got.contains(&"WATCHDOG=1".to_string()), "{got:?}");
    let pid = nix::unistd::Pid::from_raw(daemon.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).expect("SIGHUP");
    let got = notifications(&socket, "READY=1", Duration::from_secs(5));
    assert!(
        got.contains(&"RELOADING=1".to_string())
            && got.last().map(String::as_str) == Some("READY=1"),
        "{got:?}"
    );
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let got = notifications(&socket, "STOPPING=1", Duration::from_secs(5));
    assert!(got.contains(&"STOPPING=1".to_string()), "{got:?}");
    assert!(daemon
        .wait_exit(Duration::from_secs(15))
        .expect("exits")
        .success());
}

/// SIGHUP re-reads the files: the log level changes live, other changes are named
/// as taking effect at the next start, and a broken file changes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_the_log_level_and_names_what_waits_for_a_restart() {
    let daemon = Daemon::builder()
        .dropin("90-level.conf", "[crio.runtime]\nlog_level = \"info\"\n")
        .start();
    let reload = |daemon: &Daemon| {
        let pid = nix::unistd::Pid::from_raw(daemon.pid() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).expect("SIGHUP");
    };
    let dropin = daemon.dirs.config_dir.join("90-level.conf");
    std::fs::write(
        &dropin,
        "[crio.runtime]\nlog_level = \"debug\"\ndefault_env = [\"A=1\"]\n[crio.image]\npinned_images = [\"x*\"]\n",
    )
    .expect("edit");
    reload(&daemon);
    daemon.wait_for_log("SIGHUP: log_level is now debug", 1);
    daemon.wait_for_log("SIGHUP: pinned images are now [\"x*\"]", 1);
    daemon.wait_for_log(
        "SIGHUP: crio.runtime.default_env changed; it takes effect at the next start",
        1,
    );
    // Debug lines appear now (a pod's shim connecting logs one): the filter changed.
    let mut cri = daemon.client().await;
    let pod = crio_tests::pods::pod_config("reloaded", &daemon.dirs.log_dir);
    let pod_id = cri.run_pod(&pod, "").await.expect("RunPodSandbox");
    cri.stop_and_remove_pod(&pod_id).await;
    std::fs::write(&dropin, "[crio.runtime]\nlog_level = \"loud\"\n").expect("break");
    reload(&daemon);
    daemon.wait_for_log(
        "SIGHUP: the configuration is not reloaded, nothing changes",
        1,
    );
    assert!(
        daemon.log().contains("crio.runtime.log_level"),
        "the error names the key"
    );
    assert!(
        daemon.log().contains("DEBUG"),
        "debug logging is on:\n{}",
        daemon.log()
    );
}
