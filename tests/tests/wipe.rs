//! CRI-O's wipe, on stores made as a reboot, a crash and an upgrade leave them:
//! after a reboot the daemon wipes the pods from before at start
//! (`internal_wipe`), after a crash it checks and repairs the store first
//! (`internal_repair`), and `crio wipe` does the same offline when asked to.

use std::path::Path;
use std::time::Duration;

use crio_tests::{Daemon, Registry, TestImage};

/// What a reboot leaves: no process of the pods, no mount, an empty runroot
/// (a tmpfs). Only what the test daemon made is touched.
fn reboot(daemon: &Daemon) {
    crio_tests::cleanup::kill_pods_under(&daemon.dirs.base, &daemon.dirs.runroot);
    crio_tests::cleanup::unmount_all_under(&daemon.dirs.base);
    std::fs::remove_dir_all(&daemon.dirs.runroot).expect("empty the runroot");
}

fn crio(daemon: &Daemon, args: &[&str]) -> (bool, String) {
    let out = daemon.command().args(args).output().expect("crio");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_and_reboot_repair_the_store_and_wipe_the_pods_at_start() {
    let registry = Registry::with_test_images();
    let mut daemon = Daemon::builder()
        .registries_conf(&registry.insecure_conf())
        .start();
    let mut cri = daemon.client().await;
    let busybox = registry.reference(TestImage::Busybox);
    let web = registry.reference(TestImage::Web);
    cri.pull(&busybox, None).await.expect("pull");
    cri.pull(&web, None).await.expect("pull");
    let pod = crio_tests::pods::pod_config("before-reboot", &daemon.dirs.log_dir);
    let pod_id = cri.run_pod(&pod, "").await.expect("RunPodSandbox");
    let config = crio_tests::pods::container_config("sleeper", &busybox, "sleep 600");
    cri.started_container(&pod_id, &config, &pod).await;
    drop(cri);
    assert!(daemon.dirs.version_file().is_file(), "written at start");
    assert!(
        !daemon.dirs.clean_shutdown_file().exists(),
        "removed while running"
    );

    // A crash, then a reboot, and a layer lost on the way.
    daemon.kill9();
    reboot(&daemon);
    std::fs::remove_dir_all(daemon.dirs.newest_layer()).expect("break the store");
    daemon.restart();
    let log = daemon.log();
    assert!(
        log.contains("crio did not stop cleanly: checking the store"),
        "{log}"
    );
    assert!(log.contains("store repair: removed image"), "{log}");
    assert!(log.contains("wiped pod"), "{log}");
    let mut cri = daemon.client().await;
    assert!(cri.pods().await.is_empty(), "the pods from before are gone");
    assert!(cri.containers().await.is_empty());
    assert_eq!(entries(&daemon.dirs.root.join("containers")), 0);
    let tags: Vec<String> = cri
        .images()
        .await
        .into_iter()
        .flat_map(|i| i.repo_tags)
        .collect();
    assert!(
        tags.contains(&busybox) && !tags.contains(&web),
        "images stay, the broken one goes: {tags:?}"
    );
    // Everything works again: the broken image pulls whole and runs.
    cri.pull(&web, None).await.expect("pulled again");
    let pod = crio_tests::pods::pod_config("after-reboot", &daemon.dirs.log_dir);
    let pod_id = cri.run_pod(&pod, "").await.expect("RunPodSandbox");
    let config = crio_tests::pods::container_config("web", &web, "echo whole");
    let id = cri.started_container(&pod_id, &config, &pod).await;
    assert_eq!(
        cri.wait_exited(&id, Duration::from_secs(30))
            .await
            .exit_code,
        0
    );
    drop(cri);

    // A clean stop and start: no check, no wipe, the pod is still there.
    daemon.stop();
    assert!(
        daemon.dirs.clean_shutdown_file().is_file(),
        "written at a clean stop"
    );
    daemon.restart();
    let log = daemon.log();
    assert_eq!(log.matches("checking the store").count(), 1, "{log}");
    assert_eq!(log.matches("wiped pod").count(), 1, "{log}");
    let mut cri = daemon.client().await;
    assert_eq!(cri.pods().await.len(), 1);
    cri.stop_and_remove_pod(&pod_id).await;
}

/// `crio wipe` as CRI-O's: nothing while versions match and the node did not
/// reboot; after a reboot, the pods (and, after an upgrade, the images); with
/// `internal_wipe` on it leaves the work to the daemon; `--force` wipes anyway.
#[tokio::test(flavor = "multi_thread")]
async fn crio_wipe_offline_after_a_reboot_and_an_upgrade() {
    let registry = Registry::with_test_images();
    let tmp = tempfile::tempdir().expect("tempdir");
    let persist = tmp.path().join("version-persist");
    let mut daemon = Daemon::builder()
        .registries_conf(&registry.insecure_conf())
        .dropin(
            "50-wipe.conf",
            &format!(
                "[crio]\ninternal_wipe = false\nversion_file_persist = \"{}\"\n",
                persist.display()
            ),
        )
        .start();
    let mut cri = daemon.client().await;
    let busybox = registry.reference(TestImage::Busybox);
    cri.pull(&busybox, None).await.expect("pull");
    let pod = crio_tests::pods::pod_config("wiped", &daemon.dirs.log_dir);
    let pod_id = cri.run_pod(&pod, "").await.expect("RunPodSandbox");
    let config = crio_tests::pods::container_config("sleeper", &busybox, "sleep 600");
    cri.started_container(&pod_id, &config, &pod).await;
    drop(cri);
    let version = std::fs::read_to_string(&persist).expect("written at start");
    assert!(
        version.starts_with('"') && version.ends_with('"'),
        "{version}"
    );

    let (ok, text) = crio(&daemon, &["wipe", "--force"]);
    assert!(
        !ok && text.contains("stop it first"),
        "a running daemon: {text}"
    );
    daemon.stop();
    let (ok, text) = crio(&daemon, &["wipe"]);
    assert!(ok && text.contains("nothing to wipe"), "{text}");

    // An upgrade from another minor version, then a reboot.
    std::fs::write(&persist, "\"0.0.1\"").expect("older version");
    reboot(&daemon);
    let (ok, text) = crio(&daemon, &["wipe"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("wiped pods and containers (0 left) and images"),
        "{text}"
    );
    assert!(
        text.contains("version file") && text.contains("0.0.1"),
        "why: {text}"
    );
    daemon.restart();
    let mut cri = daemon.client().await;
    assert!(cri.pods().await.is_empty());
    assert!(
        cri.images().await.is_empty(),
        "the upgrade wiped the images"
    );
    let log = daemon.log();
    // The runroot's version file is still missing (a reboot), but with
    // internal_wipe off the daemon leaves the wipe to `crio wipe`.
    assert!(
        !log.contains("wiping"),
        "internal_wipe = false: the daemon does not wipe\n{log}"
    );

    // With internal_wipe on (CRI-O's default) `crio wipe` leaves it to the
    // daemon; --force wipes whatever the files say.
    cri.pull(&busybox, None).await.expect("pull");
    let pod_id = cri.run_pod(&pod, "").await.expect("RunPodSandbox");
    drop(cri);
    daemon.stop();
    std::fs::write(
        daemon.dirs.config_dir.join("50-wipe.conf"),
        "[crio]\ninternal_wipe = true\n",
    )
    .expect("internal wipe");
    let (ok, text) = crio(&daemon, &["wipe", "--force"]);
    assert!(
        ok && text.contains("wiped pods and containers (0 left) and images"),
        "{text}"
    );
    daemon.restart();
    let mut cri = daemon.client().await;
    assert!(
        cri.pods().await.is_empty(),
        "pod {pod_id} wiped, running as it was"
    );
    assert!(cri.images().await.is_empty());
    cri.pull(&busybox, None).await.expect("pull");
    cri.run_pod(&pod, "").await.expect("RunPodSandbox");
    drop(cri);
    daemon.stop();
    reboot(&daemon);
    let (ok, text) = crio(&daemon, &["wipe"]);
    assert!(ok && text.contains("internal_wipe is on"), "{text}");
    daemon.restart();
    assert!(daemon.log().contains("wiped pod"), "{}", daemon.log());
    let mut cri = daemon.client().await;
    assert!(cri.pods().await.is_empty());
    assert_eq!(cri.images().await.len(), 1, "no upgrade: images stay");
}
