//! Changing a running daemon's configuration as an operator does: a handler
//! dropped into the config directory (added, changed, removed, broken) takes
//! effect without a restart while pods run; SIGHUP applies the default seccomp
//! profile and the pause image, and `crio status config` shows the live values.

use std::path::Path;
use std::time::Duration;

use crio_tests::cri::CriClient;
use crio_tests::{Daemon, TestImage};
use protocols::cri;

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// The handler names `Status` lists (the default's "" first).
async fn handler_names(cri: &mut CriClient) -> Vec<String> {
    cri.status(false)
        .await
        .runtime_handlers
        .into_iter()
        .map(|h| h.name)
        .collect()
}

/// Each handler's readiness, as verbose `Status` reports it.
async fn handler_readiness(cri: &mut CriClient) -> serde_json::Value {
    serde_json::from_str(&cri.status(true).await.info["runtimeHandlers"])
        .expect("runtimeHandlers is JSON")
}

/// Waits until `Status` lists the `wanted` handlers (in any order), or panics with the daemon's log.
async fn wait_handlers(daemon: &Daemon, cri: &mut CriClient, wanted: &[String]) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let mut names = handler_names(cri).await;
        names.sort();
        let mut wanted = wanted.to_vec();
        wanted.sort();
        if names == wanted {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Status lists {names:?}, not {wanted:?}:\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether runc keeps `id`'s state under `root` (in the shim's namespace dir).
fn has_state(root: &Path, id: &str) -> bool {
    std::fs::read_dir(root)
        .map(|dirs| dirs.flatten().any(|ns| ns.path().join(id).is_dir()))
        .unwrap_or(false)
}

/// An `oci` handler running runc with its state under `root`: where a
/// container's state lies shows which definition created it.
fn extra_handler(root: &Path) -> String {
    format!(
        "[crio.runtime.runtimes.extra]\nruntime_path = \"/usr/sbin/runc\"\nruntime_root = \"{}\"\n",
        root.display()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn handlers_dropped_in_changed_removed_and_broken_without_a_restart() {
    crio_tests::require_root();
    let registry = crio_tests::Registry::with_test_images();
    let tmp = tempfile::tempdir().expect("tempdir");
    let (first_root, second_root) = (tmp.path().join("runc-a"), tmp.path().join("runc-b"));
    let daemon = Daemon::builder()
        .registries_conf(&registry.insecure_conf())
        .start();
    let mut cri = daemon.client().await;
    let image = registry.reference(TestImage::Busybox);
    cri.pull(&image, None).await.expect("pull");
    let before = handler_names(&mut cri).await;
    assert!(!before.contains(&"extra".to_string()), "{before:?}");

    // A pod of the default handler runs throughout.
    let runc_pod = crio_tests::pods::pod_config("runc-pod", &daemon.dirs.log_dir);
    let runc_pod_id = cri.run_pod(&runc_pod, "").await.expect("RunPodSandbox");
    let sleeper = crio_tests::pods::container_config("sleeper", &image, "sleep 600");
    let runc_ctr = cri
        .started_container(&runc_pod_id, &sleeper, &runc_pod)
        .await;

    // Added: a file dropped in.
    let dropin = daemon.dirs.config_dir.join("50-extra.conf");
    write(&dropin, &extra_handler(&first_root));
    let mut with_extra = before.clone();
    with_extra.push("extra".into());
    wait_handlers(&daemon, &mut cri, &with_extra).await;
    let readiness = handler_readiness(&mut cri).await;
    assert_eq!(readiness["extra"]["ready"], true, "{readiness}");
    let extra_pod = crio_tests::pods::pod_config("extra-pod", &daemon.dirs.log_dir);
    let extra_pod_id = cri.run_pod(&extra_pod, "extra").await.expect("on extra");
    let first = cri
        .started_container(&extra_pod_id, &sleeper, &extra_pod)
        .await;
    assert!(
        has_state(&first_root, &first),
        "runc state of {first} under the handler's runtime_root"
    );

    // Changed: a new runtime_root. New pods get it; the running pod keeps the
    // definition it was started with, for its new containers too.
    write(&dropin, &extra_handler(&second_root));
    daemon.wait_for_log("runtime handlers reloaded", 2);
    let second = cri
        .started_container(
            &extra_pod_id,
            &crio_tests::pods::container_config("second", &image, "sleep 600"),
            &extra_pod,
        )
        .await;
    assert!(
        has_state(&first_root, &second),
        "the running pod keeps its handler"
    );
    let other_pod = crio_tests::pods::pod_config("extra-pod-2", &daemon.dirs.log_dir);
    let other_pod_id = cri.run_pod(&other_pod, "extra").await.expect("on extra");
    let third = cri
        .started_container(&other_pod_id, &sleeper, &other_pod)
        .await;
    assert!(
        has_state(&second_root, &third),
        "a new pod gets the changed handler"
    );
    cri.stop_and_remove_pod(&other_pod_id).await;

    // A handler whose runtime is missing is served, and said not ready.
    let missing = daemon.dirs.config_dir.join("60-missing.conf");
    write(
        &missing,
        "[crio.runtime.runtimes.missing]\nruntime_path = \"/nonexistent/runc\"\n",
    );
    let mut with_missing = with_extra.clone();
    with_missing.push("missing".into());
    wait_handlers(&daemon, &mut cri, &with_missing).await;
    let readiness = handler_readiness(&mut cri).await;
    assert_eq!(readiness["missing"]["ready"], false, "{readiness}");
    assert_eq!(
        readiness["missing"]["reason"], "RuntimeBinaryNotFound",
        "{readiness}"
    );
    std::fs::remove_file(&missing).expect("remove");
    wait_handlers(&daemon, &mut cri, &with_extra).await;

    // Broken: the running set stays, the log names the file and line.
    write(
        &dropin,
        "[crio.runtime.runtimes.extra]\nruntime_type = \"bogus\"\n",
    );
    daemon.wait_for_log("the configuration is not reloaded, nothing changes", 1);
    let log = daemon.log();
    assert!(
        log.contains("50-extra.conf:2"),
        "file and line named:\n{log}"
    );
    assert!(log.contains("runtime_type"), "key named:\n{log}");
    wait_handlers(&daemon, &mut cri, &with_extra).await;

    // Removed: no new pod on it; the pod on it keeps running and is stopped and
    // removed as usual.
    std::fs::remove_file(&dropin).expect("remove");
    wait_handlers(&daemon, &mut cri, &before).await;
    let err = cri
        .run_pod(
            &crio_tests::pods::pod_config("refused", &daemon.dirs.log_dir),
            "extra",
        )
        .await
        .expect_err("extra is gone");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    let status = cri.container_status(&first).await.expect("status");
    assert_eq!(status.state, cri::ContainerState::ContainerRunning as i32);
    let out = cri.exec(&second, &["echo", "alive"]).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "alive");
    cri.stop_and_remove_pod(&extra_pod_id).await;
    assert!(
        !has_state(&first_root, &first),
        "removed through its handler"
    );

    // The default handler's pod never noticed.
    let status = cri.container_status(&runc_ctr).await.expect("status");
    assert_eq!(status.state, cri::ContainerState::ContainerRunning as i32);
    cri.stop_and_remove_pod(&runc_pod_id).await;
}

/// SIGHUP applies a new default seccomp profile (the next container gets it) and
/// pause image; `crio status config` shows the live values.
#[tokio::test(flavor = "multi_thread")]
async fn sighup_applies_the_seccomp_profile_and_pause_image() {
    crio_tests::require_root();
    let registry = crio_tests::Registry::with_test_images();
    let tmp = tempfile::tempdir().expect("tempdir");
    let profile = tmp.path().join("no-mkdir.json");
    crio_tests::pods::refusing_seccomp_profile(&profile, &["mkdir", "mkdirat"]);
    let daemon = Daemon::builder()
        .registries_conf(&registry.insecure_conf())
        .start();
    let mut cri = daemon.client().await;
    let image = registry.reference(TestImage::Busybox);
    cri.pull(&image, None).await.expect("pull");
    let pod = crio_tests::pods::pod_config("seccomp-reload", &daemon.dirs.log_dir);
    let pod_id = cri.run_pod(&pod, "").await.expect("RunPodSandbox");
    let runtime_default = |name: &str| {
        let mut c = crio_tests::pods::container_config(name, &image, "sleep 600");
        c.linux
            .get_or_insert_with(Default::default)
            .security_context
            .get_or_insert_with(Default::default)
            .seccomp = Some(cri::SecurityProfile {
            profile_type: cri::security_profile::ProfileType::RuntimeDefault as i32,
            localhost_ref: String::new(),
        });
        c
    };
    let try_mkdir = "mkdir /tmp/d 2>/dev/null && echo made || echo refused";
    let before = cri
        .started_container(&pod_id, &runtime_default("before"), &pod)
        .await;
    let out = cri.exec(&before, &["sh", "-c", try_mkdir]).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "made");

    write(
        &daemon.dirs.config_dir.join("60-reload.conf"),
        &format!(
            "[crio.runtime]\nseccomp_profile = \"{}\"\n[crio.image]\npause_image = \"{}\"\n",
            profile.display(),
            registry.reference(TestImage::Busybox)
        ),
    );
    // The files changed: SIGHUP keys wait for the signal.
    daemon.wait_for_log(
        "crio.runtime.seccomp_profile changed; a SIGHUP applies it",
        1,
    );
    let pid = nix::unistd::Pid::from_raw(daemon.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).expect("SIGHUP");
    daemon.wait_for_log("SIGHUP: the node's default profiles", 1);
    let after = cri
        .started_container(&pod_id, &runtime_default("after"), &pod)
        .await;
    let out = cri.exec(&after, &["sh", "-c", try_mkdir]).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "refused");
    let out = cri
        .exec(&before, &["sh", "-c", "mkdir /tmp/e && echo made"])
        .await;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "made",
        "a running container keeps its filter"
    );

    let live = daemon
        .command()
        .args(["status", "config"])
        .output()
        .expect("crio status config");
    let live = String::from_utf8_lossy(&live.stdout);
    assert!(
        live.contains(&format!("seccomp_profile = \"{}\"", profile.display())),
        "{live}"
    );
    assert!(
        live.contains(&format!(
            "pause_image = \"{}\"",
            registry.reference(TestImage::Busybox)
        )),
        "{live}"
    );
    let info = cri.status(true).await.info;
    assert!(
        info["config"].contains(&registry.reference(TestImage::Busybox)),
        "Status shows the live sandbox image: {}",
        info["config"]
    );
    cri.stop_and_remove_pod(&pod_id).await;
}
