//! CRI-O's node-wide keys, set as an operator sets them in a drop-in, seen from
//! inside running containers and through the CRI: default sysctls, OCI hook
//! files, mounts.conf, devices (added, by annotation, owned by the pod's user),
//! rejected mount sources, the infra cpuset, pinned images and signature
//! policies (with signatures skopeo and gpg make).

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crio_tests::{Daemon, TestImage};
use protocols::cri;

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

fn stdout(out: &cri::ExecSyncResponse) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The pid of the pod's pause process, found by its cgroup (which names the pod).
fn pause_pid(pod_id: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        (comm.trim() == "pause" && cgroup.contains(pod_id)).then_some(pid)
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn node_defaults_reach_pods_and_containers() {
    crio_tests::require_root();
    let registry = crio_tests::Registry::with_test_images();
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    // A hook as a vendor ships one: its JSON in a hooks directory, its program
    // reading the OCI state on stdin.
    let hook = t.join("hook.sh");
    write(
        &hook,
        &format!(
            "#!/bin/sh\ncat >> {}/hook-states\necho >> {}/hook-states\n",
            t.display(),
            t.display()
        ),
    );
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    write(
        &t.join("hooks.d/50-trace.json"),
        &format!(
            r#"{{"version": "1.0.0", "hook": {{"path": "{}"}},
                "when": {{"annotations": {{"^example\\.com/trace$": "^yes$"}}}},
                "stages": ["prestart"]}}"#,
            hook.display()
        ),
    );
    write(&t.join("secrets/token"), "s3cret\n");
    write(
        &t.join("mounts.conf"),
        &format!(
            "# subscriptions\n{}:/run/secrets\n/nonexistent/source:/x\n",
            t.join("secrets").display()
        ),
    );
    let daemon = Daemon::builder()
        .dropin(
            "20-node.conf",
            &format!(
                "[crio.runtime]\n\
                 default_sysctls = [\"kernel.shmmni=1234\", \"net.ipv4.ip_unprivileged_port_start=100\"]\n\
                 hooks_dir = [\"{hooks}\"]\n\
                 default_mounts_file = \"{mounts}\"\n\
                 absent_mount_sources_to_reject = [\"{reject}\"]\n\
                 additional_devices = [\"/dev/null:/dev/extra-null:rw\"]\n\
                 allowed_devices = [\"/dev/zero\"]\n\
                 device_ownership_from_security_context = true\n\
                 infra_ctr_cpuset = \"0\"\n\
                 [crio.runtime.runtimes.runc]\n\
                 allowed_annotations = [\"io.kubernetes.cri-o.Devices\"]\n",
                hooks = t.join("hooks.d").display(),
                mounts = t.join("mounts.conf").display(),
                reject = t.join("must-exist").display(),
            ),
        )
        .registries_conf(&registry.insecure_conf())
        .start();
    let mut cri = daemon.client().await;
    let image = registry.reference(TestImage::Busybox);
    cri.pull(&image, None).await.expect("pull");

    // A pod that shares its PID namespace, so it has a pause process.
    let mut pod = crio_tests::pods::pod_config("node-defaults", &daemon.dirs.log_dir);
    let linux = pod.linux.get_or_insert_with(Default::default);
    linux.sysctls = HashMap::from([(
        "net.ipv4.ip_unprivileged_port_start".to_string(),
        "200".to_string(),
    )]);
    linux
        .security_context
        .get_or_insert_with(Default::default)
        .namespace_options = Some(cri::NamespaceOption {
        pid: cri::NamespaceMode::Pod as i32,
        ..Default::default()
    });
    pod.annotations.insert(
        "io.kubernetes.cri-o.Devices".into(),
        "/dev/zero:/dev/annotated-zero:r".into(),
    );
    let pod_id = cri.run_pod(&pod, "").await.expect("RunPodSandbox");
    let pause = pause_pid(&pod_id).expect("the pod has a pause process");
    let status = std::fs::read_to_string(format!("/proc/{pause}/status")).expect("status");
    assert!(
        status
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["Cpus_allowed_list:", "0"]),
        "infra_ctr_cpuset: {status}"
    );

    let mut traced = crio_tests::pods::container_config("traced", &image, "sleep 60");
    traced
        .annotations
        .insert("example.com/trace".into(), "yes".into());
    traced.devices = vec![cri::Device {
        host_path: "/dev/null".into(),
        container_path: "/dev/owned-null".into(),
        permissions: "rw".into(),
    }];
    let sc = traced
        .linux
        .get_or_insert_with(Default::default)
        .security_context
        .get_or_insert_with(Default::default);
    sc.run_as_user = Some(cri::Int64Value { value: 1234 });
    sc.run_as_group = Some(cri::Int64Value { value: 5678 });
    let traced_id = cri.started_container(&pod_id, &traced, &pod).await;
    let plain_id = cri
        .started_container(
            &pod_id,
            &crio_tests::pods::container_config("plain", &image, "sleep 60"),
            &pod,
        )
        .await;

    let out = cri
        .exec(
            &traced_id,
            &[
                "sh",
                "-c",
                "cat /proc/sys/kernel/shmmni; cat /proc/sys/net/ipv4/ip_unprivileged_port_start; \
                 cat /run/secrets/token; echo changed > /run/secrets/token; \
                 ls -ln /dev/extra-null /dev/annotated-zero /dev/owned-null | awk '{print $3\":\"$4\" \"$NF}'; \
                 echo x > /dev/extra-null && echo written",
            ],
        )
        .await;
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.first(), Some(&"1234"), "default sysctl: {text}");
    assert_eq!(lines.get(1), Some(&"200"), "the pod's sysctl wins: {text}");
    assert_eq!(lines.get(2), Some(&"s3cret"), "mounts.conf: {text}");
    assert!(
        text.contains(" /dev/annotated-zero"),
        "Devices annotation: {text}"
    );
    assert!(
        text.contains(" /dev/extra-null"),
        "additional_devices: {text}"
    );
    assert!(
        text.contains("1234:5678 /dev/owned-null"),
        "device ownership: {text}"
    );
    assert!(text.ends_with("written"), "{text}");
    assert_eq!(
        std::fs::read_to_string(t.join("secrets/token")).expect("host file"),
        "s3cret\n",
        "a copy, not the host's file"
    );

    // The hook ran for the annotated container only, with the OCI state.
    let states = std::fs::read_to_string(t.join("hook-states")).expect("the hook ran");
    assert!(states.contains(&traced_id), "{states}");
    assert!(!states.contains(&plain_id), "{states}");

    // A missing mount source on the reject list fails the create, creating nothing.
    let mut rejected = crio_tests::pods::container_config("rejected", &image, "true");
    rejected.mounts = vec![cri::Mount {
        container_path: "/data".into(),
        host_path: t.join("must-exist").display().to_string(),
        ..Default::default()
    }];
    let err = cri
        .create_container(&pod_id, &rejected, &pod)
        .await
        .expect_err("rejected");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("path does not exist"), "{err:?}");
    assert!(!t.join("must-exist").exists());

    // A device the annotation names outside allowed_devices is refused.
    let mut bad_pod = crio_tests::pods::pod_config("bad-devices", &daemon.dirs.log_dir);
    bad_pod
        .annotations
        .insert("io.kubernetes.cri-o.Devices".into(), "/dev/full".into());
    let bad_id = cri.run_pod(&bad_pod, "").await.expect("RunPodSandbox");
    let err = cri
        .create_container(
            &bad_id,
            &crio_tests::pods::container_config("c", &image, "true"),
            &bad_pod,
        )
        .await
        .expect_err("not allowed");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("not in allowed_devices"), "{err:?}");
    cri.stop_and_remove_pod(&bad_id).await;
    cri.stop_and_remove_pod(&pod_id).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_without_a_log_directory_logs_under_log_dir() {
    crio_tests::require_root();
    let registry = crio_tests::Registry::with_test_images();
    let daemon = Daemon::builder()
        .registries_conf(&registry.insecure_conf())
        .start();
    let mut cri = daemon.client().await;
    let image = registry.reference(TestImage::Busybox);
    cri.pull(&image, None).await.expect("pull");
    let mut pod = crio_tests::pods::pod_config("no-log-dir", &daemon.dirs.log_dir);
    pod.log_directory.clear();
    let pod_id = cri.run_pod(&pod, "").await.expect("RunPodSandbox");
    let mut config = crio_tests::pods::container_config("app", &image, "echo logged");
    config.log_path.clear();
    let id = cri.started_container(&pod_id, &config, &pod).await;
    cri.wait_exited(&id, std::time::Duration::from_secs(30))
        .await;
    let status = cri.container_status(&id).await.expect("status");
    let expected = daemon.dirs.log_dir.join(&pod_id).join(format!("{id}.log"));
    assert_eq!(status.log_path, expected.display().to_string());
    let log = std::fs::read_to_string(&expected).expect("log file");
    assert!(log.contains("stdout F logged"), "{log}");
    cri.stop_and_remove_pod(&pod_id).await;
    assert!(
        !daemon.dirs.log_dir.join(&pod_id).exists(),
        "removed with the pod"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pinned_images_are_reported_and_never_removed() {
    crio_tests::require_root();
    let registry = crio_tests::Registry::with_test_images();
    let daemon = Daemon::builder()
        .dropin(
            "20-pinned.conf",
            "[crio.image]\npinned_images = [\"*BusyBox*\"]\n",
        )
        .registries_conf(&registry.insecure_conf())
        .start();
    let mut cri = daemon.client().await;
    let pinned = registry.reference(TestImage::Busybox);
    let other = registry.reference(TestImage::Web);
    cri.pull(&pinned, None).await.expect("pull");
    cri.pull(&other, None).await.expect("pull");
    let listed = |images: &[cri::Image], name: &str| {
        images
            .iter()
            .find(|i| i.repo_tags.iter().any(|t| t == name))
            .map(|i| i.pinned)
    };
    let images = cri.images().await;
    assert_eq!(listed(&images, &pinned), Some(true));
    assert_eq!(listed(&images, &other), Some(false));
    let remove = |name: &str| cri::RemoveImageRequest {
        image: Some(cri::ImageSpec {
            image: name.to_string(),
            ..Default::default()
        }),
    };
    let err = cri
        .image
        .remove_image(remove(&pinned))
        .await
        .expect_err("pinned");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("pinned"), "{err:?}");
    // Removing the other image runs the layer GC; the pinned image still runs.
    cri.image
        .remove_image(remove(&other))
        .await
        .expect("RemoveImage");
    let images = cri.images().await;
    assert_eq!(listed(&images, &pinned), Some(true));
    assert_eq!(listed(&images, &other), None);
    let pod = crio_tests::pods::pod_config("pinned", &daemon.dirs.log_dir);
    let pod_id = cri.run_pod(&pod, "").await.expect("RunPodSandbox");
    let id = cri
        .started_container(
            &pod_id,
            &crio_tests::pods::container_config("c", &pinned, "echo ok"),
            &pod,
        )
        .await;
    assert_eq!(
        cri.wait_exited(&id, std::time::Duration::from_secs(30))
            .await
            .exit_code,
        0
    );
    cri.stop_and_remove_pod(&pod_id).await;
}

/// A GPG key without a passphrase, in its own home.
struct Signer {
    home: tempfile::TempDir,
    fingerprint: String,
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Signer {
    fn new() -> Self {
        let home = tempfile::tempdir().expect("gnupg home");
        let params = home.path().join("params");
        write(&params, "%no-protection\nKey-Type: default\nSubkey-Type: default\nName-Real: Release\nName-Email: release@example.com\nExpire-Date: 0\n%commit\n");
        run(Command::new("gpg")
            .arg("--homedir")
            .arg(home.path())
            .args(["--batch", "--gen-key"])
            .arg(&params));
        let listing = run(Command::new("gpg")
            .arg("--homedir")
            .arg(home.path())
            .args(["--list-keys", "--with-colons"]));
        let fingerprint = listing
            .lines()
            .find_map(|l| {
                l.strip_prefix("fpr:")
                    .map(|r| r.trim_matches(':').to_string())
            })
            .expect("fingerprint");
        Self { home, fingerprint }
    }

    fn export(&self, to: &Path) {
        let key = Command::new("gpg")
            .arg("--homedir")
            .arg(self.home.path())
            .args(["--export", &self.fingerprint])
            .output()
            .expect("gpg --export");
        std::fs::write(to, key.stdout).expect("key file");
    }

    /// `skopeo copy --sign-by` from `from` to `to` in the registry, the signature
    /// written to the lookaside `registries_d` names for staging.
    fn copy_signed(&self, registries_d: &Path, from: &str, to: &str) {
        let policy = self.home.path().join("accept.json");
        write(
            &policy,
            r#"{"default": [{"type": "insecureAcceptAnything"}]}"#,
        );
        run(Command::new("skopeo")
            .env("GNUPGHOME", self.home.path())
            .arg("--policy")
            .arg(&policy)
            .arg("--registries.d")
            .arg(registries_d)
            .args([
                "copy",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
                "--sign-by",
                &self.fingerprint,
            ])
            .arg(format!("docker://{from}"))
            .arg(format!("docker://{to}")));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_signature_policy_rejects_and_requires_gpg_signatures() {
    crio_tests::require_root();
    let registry = crio_tests::Registry::with_test_images();
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let signer = Signer::new();
    let lookaside = t.join("lookaside");
    let registries_d = t.join("registries.d");
    write(
        &registries_d.join("local.yaml"),
        &format!(
            "docker:\n  {}:\n    lookaside: file://{}\n    lookaside-staging: file://{}\n",
            registry.addr,
            lookaside.display(),
            lookaside.display()
        ),
    );
    let busybox = registry.reference(TestImage::Busybox);
    let signed = format!("{}/signed/busybox:v1", registry.addr);
    // The same manifest under another tag: its signature names v1, not this tag.
    let retagged = format!("{}/signed/busybox:retagged", registry.addr);
    let unsigned = format!("{}/signed/nonroot:v1", registry.addr);
    signer.copy_signed(&registries_d, &busybox, &signed);
    for (from, to) in [
        (&busybox, &retagged),
        (&registry.reference(TestImage::NonRoot), &unsigned),
    ] {
        run(Command::new("skopeo")
            .arg("--policy")
            .arg(signer.home.path().join("accept.json"))
            .args(["copy", "--src-tls-verify=false", "--dest-tls-verify=false"])
            .arg(format!("docker://{from}"))
            .arg(format!("docker://{to}")));
    }
    let key = t.join("release.gpg");
    signer.export(&key);
    let policy = t.join("policy.json");
    write(
        &policy,
        &format!(
            r#"{{"default": [{{"type": "insecureAcceptAnything"}}],
                "transports": {{"docker": {{
                    "{addr}/signed": [{{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "{key}"}}],
                    "{addr}/test/web": [{{"type": "reject"}}]}}}}}}"#,
            addr = registry.addr,
            key = key.display()
        ),
    );
    let daemon = Daemon::builder()
        .dropin(
            "20-policy.conf",
            &format!(
                "[crio.image]\nsignature_policy = \"{}\"\nregistries_d = \"{}\"\n",
                policy.display(),
                registries_d.display()
            ),
        )
        .registries_conf(&registry.insecure_conf())
        .start();
    let mut cri = daemon.client().await;

    let err = cri
        .pull(&registry.reference(TestImage::Web), None)
        .await
        .expect_err("rejected");
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    assert!(
        err.message().contains("rejected by the signature policy")
            && err.message().contains("policy.json"),
        "{err:?}"
    );
    let err = cri
        .pull(&retagged, None)
        .await
        .expect_err("signed for another tag");
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("does not match"), "{err:?}");
    let err = cri.pull(&unsigned, None).await.expect_err("unsigned");
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("no signature exists"), "{err:?}");
    assert!(cri.images().await.is_empty(), "nothing stored");
    let layers = daemon.dirs.root.join("images/layers");
    let stored = std::fs::read_dir(&layers).map(|d| d.count()).unwrap_or(0);
    assert_eq!(stored, 0, "no layer of a refused image is kept");

    cri.pull(&signed, None)
        .await
        .expect("signed by the trusted key");
    cri.pull(&busybox, None).await.expect("the default accepts");
    assert_eq!(cri.images().await.len(), 1, "one image, two names");

    // The pod's namespace has its own policy: reject everything.
    let namespaced = t.join("policies");
    write(
        &namespaced.join("locked.json"),
        r#"{"default": [{"type": "reject"}]}"#,
    );
    drop(cri);
    let mut daemon = daemon;
    daemon.stop();
    let daemon = Daemon::builder()
        .dropin(
            "20-policy.conf",
            &format!(
                "[crio.image]\nsignature_policy = \"{}\"\nsignature_policy_dir = \"{}\"\nregistries_d = \"{}\"\n",
                policy.display(),
                namespaced.display(),
                registries_d.display()
            ),
        )
        .registries_conf(&registry.insecure_conf())
        .start();
    let mut cri = daemon.client().await;
    let mut pod = crio_tests::pods::pod_config("locked", &daemon.dirs.log_dir);
    pod.metadata.as_mut().expect("metadata").namespace = "locked".into();
    let request = |pod: &cri::PodSandboxConfig| cri::PullImageRequest {
        image: Some(cri::ImageSpec {
            image: registry.reference(TestImage::NonRoot),
            ..Default::default()
        }),
        auth: None,
        sandbox_config: Some(pod.clone()),
    };
    let err = cri
        .image
        .pull_image(request(&pod))
        .await
        .expect_err("namespace policy");
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("locked.json"), "{err:?}");
    pod.metadata.as_mut().expect("metadata").namespace = "default".into();
    cri.image
        .pull_image(request(&pod))
        .await
        .expect("other namespaces: the node policy");
}

#[test]
fn a_broken_policy_or_hook_file_stops_the_start_naming_it() {
    crio_tests::require_root();
    let tmp = tempfile::tempdir().expect("tempdir");
    let policy = tmp.path().join("policy.json");
    write(
        &policy,
        r#"{"default": [{"type": "signedBy", "keyType": "GPGKeys"}]}"#,
    );
    let mut daemon = Daemon::builder()
        .dropin(
            "20-policy.conf",
            &format!(
                "[crio.image]\nsignature_policy = \"{}\"\n",
                policy.display()
            ),
        )
        .spawn();
    assert!(!daemon
        .wait_exit(std::time::Duration::from_secs(10))
        .expect("exits")
        .success());
    let log = daemon.log();
    assert!(
        log.contains(&policy.display().to_string()) && log.contains("exactly one of keyPath"),
        "{log}"
    );

    write(
        &tmp.path().join("hooks/bad.json"),
        r#"{"version": "1.0.0", "hook": {"path": "/bin/true"}, "when": {}, "stages": ["prestart"]}"#,
    );
    let mut daemon = Daemon::builder()
        .dropin(
            "20-hooks.conf",
            &format!(
                "[crio.runtime]\nhooks_dir = [\"{}\"]\n",
                tmp.path().join("hooks").display()
            ),
        )
        .spawn();
    assert!(!daemon
        .wait_exit(std::time::Duration::from_secs(10))
        .expect("exits")
        .success());
    let log = daemon.log();
    assert!(
        log.contains("hooks_dir") && log.contains("bad.json") && log.contains("at least one of"),
        "{log}"
    );

    let mut daemon = Daemon::builder()
        .dropin("20-bad.conf", "[crio.runtime]\ndefault_sysctls = [\"kernel.shmmni = 1\"]\n[crio.image]\npinned_images = [\"*\"]\n")
        .spawn();
    assert!(!daemon
        .wait_exit(std::time::Duration::from_secs(10))
        .expect("exits")
        .success());
    let log = daemon.log();
    assert!(
        log.contains("crio.runtime.default_sysctls.0")
            && log.contains("crio.image.pinned_images.0"),
        "{log}"
    );
}

/// `insecure_registries` (an IP range) lets a plain-HTTP registry be pulled from
/// with no registries.conf entry; `short_name_mode = "enforcing"` refuses a short
/// name that two search registries could serve.
#[tokio::test(flavor = "multi_thread")]
async fn insecure_registries_and_enforced_short_names() {
    crio_tests::require_root();
    let registry = crio_tests::Registry::with_test_images();
    let search = format!(
        "unqualified-search-registries = [\"{}\", \"127.0.0.1:1\"]\n",
        registry.addr
    );
    let daemon = Daemon::builder().registries_conf(&search).start();
    let mut cri = daemon.client().await;
    let err = cri
        .pull(&registry.reference(TestImage::Busybox), None)
        .await
        .expect_err("HTTPS only without an insecure entry");
    // The registry speaks plain HTTP: a TLS client gets no answer it accepts.
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert!(err.message().contains(&registry.addr), "{err:?}");
    drop(cri);
    drop(daemon);

    let daemon = Daemon::builder()
        .dropin(
            "20-insecure.conf",
            "[crio.image]\ninsecure_registries = [\"127.0.0.0/8\"]\n",
        )
        .registries_conf(&search)
        .start();
    let mut cri = daemon.client().await;
    cri.pull(&registry.reference(TestImage::Busybox), None)
        .await
        .expect("insecure by IP range");
    cri.pull("test/nonroot:latest", None)
        .await
        .expect("the first search registry serves it");
    drop(cri);
    drop(daemon);

    let daemon = Daemon::builder()
        .dropin(
            "20-enforcing.conf",
            "[crio.image]\ninsecure_registries = [\"127.0.0.0/8\"]\nshort_name_mode = \"enforcing\"\n",
        )
        .registries_conf(&search)
        .start();
    let mut cri = daemon.client().await;
    let err = cri
        .pull("test/nonroot:latest", None)
        .await
        .expect_err("ambiguous");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("short name mode is enforcing"),
        "{err:?}"
    );
    cri.pull(&registry.reference(TestImage::NonRoot), None)
        .await
        .expect("a fully qualified name is fine");
}

/// `cni_status_grace_period`: a network that was ready stays reported ready for
/// the period after its config goes away; without it, NotReady at once.
#[tokio::test(flavor = "multi_thread")]
async fn cni_status_grace_period_keeps_network_ready_for_a_while() {
    crio_tests::require_root();
    let network_ready = |status: &cri::StatusResponse| {
        status
            .status
            .as_ref()
            .expect("conditions")
            .conditions
            .iter()
            .find(|c| c.r#type == "NetworkReady")
            .map(|c| c.status)
    };
    for (grace, ready_after) in [("1h", true), ("0s", false)] {
        let daemon = Daemon::builder()
            .dropin(
                "20-grace.conf",
                &format!("[crio.network]\ncni_status_grace_period = \"{grace}\"\n"),
            )
            .start();
        let mut cri = daemon.client().await;
        assert_eq!(network_ready(&cri.status(false).await), Some(true));
        for entry in std::fs::read_dir(&daemon.dirs.network_dir)
            .expect("net.d")
            .flatten()
        {
            std::fs::remove_file(entry.path()).expect("remove conflist");
        }
        assert_eq!(
            network_ready(&cri.status(false).await),
            Some(ready_after),
            "grace {grace}"
        );
    }
}

/// `seccomp_profile` is what RuntimeDefault means; `privileged_seccomp_profile`
/// confines privileged containers, whatever they ask.
#[tokio::test(flavor = "multi_thread")]
async fn seccomp_profiles_from_the_node_config() {
    crio_tests::require_root();
    let registry = crio_tests::Registry::with_test_images();
    let tmp = tempfile::tempdir().expect("tempdir");
    let default_profile = tmp.path().join("default.json");
    let privileged_profile = tmp.path().join("privileged.json");
    crio_tests::pods::refusing_seccomp_profile(&default_profile, &["mkdir", "mkdirat"]);
    crio_tests::pods::refusing_seccomp_profile(
        &privileged_profile,
        &["chmod", "fchmodat", "fchmodat2"],
    );
    let daemon = Daemon::builder()
        .dropin(
            "20-seccomp.conf",
            &format!(
                "[crio.runtime]\nseccomp_profile = \"{}\"\nprivileged_seccomp_profile = \"{}\"\n",
                default_profile.display(),
                privileged_profile.display()
            ),
        )
        .registries_conf(&registry.insecure_conf())
        .start();
    let mut cri = daemon.client().await;
    let image = registry.reference(TestImage::Busybox);
    cri.pull(&image, None).await.expect("pull");
    let mut pod = crio_tests::pods::pod_config("seccomp", &daemon.dirs.log_dir);
    pod.linux
        .get_or_insert_with(Default::default)
        .security_context
        .get_or_insert_with(Default::default)
        .privileged = true;
    let pod_id = cri.run_pod(&pod, "").await.expect("RunPodSandbox");
    let with = |name: &str, profile: i32, privileged: bool| {
        let mut c = crio_tests::pods::container_config(name, &image, "sleep 60");
        let sc = c
            .linux
            .get_or_insert_with(Default::default)
            .security_context
            .get_or_insert_with(Default::default);
        sc.seccomp = Some(cri::SecurityProfile {
            profile_type: profile,
            localhost_ref: String::new(),
        });
        sc.privileged = privileged;
        c
    };
    let runtime_default = cri::security_profile::ProfileType::RuntimeDefault as i32;
    let unconfined = cri::security_profile::ProfileType::Unconfined as i32;
    let script = "mkdir /tmp/d && echo mkdir-ok; touch /tmp/f; chmod 600 /tmp/f && echo chmod-ok";
    let confined = cri
        .started_container(&pod_id, &with("default", runtime_default, false), &pod)
        .await;
    let out = stdout(&cri.exec(&confined, &["sh", "-c", script]).await);
    assert_eq!(
        out, "chmod-ok",
        "RuntimeDefault is the node's profile: {out}"
    );
    let free = cri
        .started_container(&pod_id, &with("free", unconfined, false), &pod)
        .await;
    let out = stdout(&cri.exec(&free, &["sh", "-c", script]).await);
    assert_eq!(out, "mkdir-ok\nchmod-ok", "Unconfined: {out}");
    let privileged = cri
        .started_container(&pod_id, &with("privileged", unconfined, true), &pod)
        .await;
    let out = stdout(&cri.exec(&privileged, &["sh", "-c", script]).await);
    assert_eq!(out, "mkdir-ok", "privileged_seccomp_profile: {out}");
    cri.stop_and_remove_pod(&pod_id).await;
}

/// `read_only`, `timezone`, `add_inheritable_capabilities` and `no_pivot` for
/// every container, and a handler's `default_annotations`, `seccomp_profile` and
/// `platform_runtime_paths` (the OCI runtime: a wrapper logging how it is run).
#[tokio::test(flavor = "multi_thread")]
async fn node_and_handler_settings_shape_every_container() {
    crio_tests::require_root();
    let registry = crio_tests::Registry::with_test_images();
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let wrapper = t.join("runc-logged");
    write(
        &wrapper,
        &format!(
            "#!/bin/sh\necho \"$@\" >> {}/runc-args\nexec runc \"$@\"\n",
            t.display()
        ),
    );
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let profile = t.join("handler-seccomp.json");
    crio_tests::pods::refusing_seccomp_profile(&profile, &["mkdir", "mkdirat"]);
    let platform = format!(
        "linux/{}",
        std::env::consts::ARCH
            .replace("x86_64", "amd64")
            .replace("aarch64", "arm64")
    );
    let daemon = Daemon::builder()
        .dropin(
            "20-shape.conf",
            &format!(
                "[crio.runtime]\nread_only = true\ntimezone = \"Asia/Tokyo\"\n\
                 add_inheritable_capabilities = true\nno_pivot = true\n\
                 [crio.runtime.runtimes.logged]\nruntime_path = \"/nonexistent/runc\"\n\
                 runtime_root = \"/run/runc-logged\"\n\
                 allowed_annotations = [\"io.kubernetes.cri-o.ShmSize\"]\n\
                 seccomp_profile = \"{}\"\n\
                 [crio.runtime.runtimes.logged.platform_runtime_paths]\n\"{platform}\" = \"{}\"\n\
                 [crio.runtime.runtimes.logged.default_annotations]\n\"io.kubernetes.cri-o.ShmSize\" = \"32Mi\"\n",
                profile.display(),
                wrapper.display()
            ),
        )
        .registries_conf(&registry.insecure_conf())
        .start();
    let mut cri = daemon.client().await;
    let image = registry.reference(TestImage::Busybox);
    cri.pull(&image, None).await.expect("pull");
    let pod = crio_tests::pods::pod_config("shaped", &daemon.dirs.log_dir);
    let pod_id = cri.run_pod(&pod, "logged").await.expect("RunPodSandbox");
    let mut config = crio_tests::pods::container_config("c", &image, "sleep 60");
    config
        .linux
        .get_or_insert_with(Default::default)
        .security_context
        .get_or_insert_with(Default::default)
        .seccomp = Some(cri::SecurityProfile {
        profile_type: cri::security_profile::ProfileType::RuntimeDefault as i32,
        localhost_ref: String::new(),
    });
    let id = cri.started_container(&pod_id, &config, &pod).await;
    let out = cri
        .exec(
            &id,
            &[
                "sh",
                "-c",
                "touch /rootfs-file 2>/dev/null || echo rootfs-ro; touch /tmp/f && echo tmp-rw; \
                 date +%Z; grep -E 'CapInh|CapBnd' /proc/1/status | awk '{print $2}' | uniq | wc -l; \
                 df -k /dev/shm | awk 'NR==2 {print $2}'; mkdir /tmp/d 2>/dev/null || echo mkdir-refused",
            ],
        )
        .await;
    let text = stdout(&out);
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        ["rootfs-ro", "tmp-rw", "JST", "1", "32768", "mkdir-refused"],
        "read_only, timezone, inheritable = bounding, default ShmSize annotation, handler seccomp: {text}"
    );
    let args = std::fs::read_to_string(t.join("runc-args")).expect("the platform's runtime ran");
    assert!(
        args.lines()
            .any(|l| l.contains("create") && l.contains("--no-pivot")),
        "{args}"
    );
    cri.stop_and_remove_pod(&pod_id).await;
}

/// `pause_image_auth_file`: the pause image comes from a registry that wants
/// credentials, which only that file has.
#[tokio::test(flavor = "multi_thread")]
async fn the_pause_image_is_pulled_with_its_own_credentials() {
    crio_tests::require_root();
    let registry = crio_tests::Registry::start_with_auth("pause", "s3cret");
    registry.push_test_images(&[TestImage::Pause]);
    let tmp = tempfile::tempdir().expect("tempdir");
    let auth = tmp.path().join("pause-auth.json");
    write(
        &auth,
        &format!(
            r#"{{"auths": {{"{}": {{"auth": "cGF1c2U6czNjcmV0"}}}}}}"#,
            registry.addr
        ),
    );
    let pause = registry.reference(TestImage::Pause);
    let shared_pid = |mut pod: cri::PodSandboxConfig| {
        pod.linux
            .get_or_insert_with(Default::default)
            .security_context
            .get_or_insert_with(Default::default)
            .namespace_options = Some(cri::NamespaceOption {
            pid: cri::NamespaceMode::Pod as i32,
            ..Default::default()
        });
        pod
    };
    let without = Daemon::builder()
        .dropin(
            "20-pause.conf",
            &format!("[crio.image]\npause_image = \"{pause}\"\npause_command = \"\"\n"),
        )
        .registries_conf(&registry.insecure_conf())
        .start();
    let mut cri = without.client().await;
    let pod = shared_pid(crio_tests::pods::pod_config(
        "no-creds",
        &without.dirs.log_dir,
    ));
    let err = cri.run_pod(&pod, "").await.expect_err("no credentials");
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
    drop(cri);
    drop(without);

    let daemon = Daemon::builder()
        .dropin(
            "20-pause.conf",
            &format!(
                "[crio.image]\npause_image = \"{pause}\"\npause_command = \"\"\npause_image_auth_file = \"{}\"\n",
                auth.display()
            ),
        )
        .registries_conf(&registry.insecure_conf())
        .start();
    let mut cri = daemon.client().await;
    let pod = shared_pid(crio_tests::pods::pod_config("creds", &daemon.dirs.log_dir));
    let pod_id = cri
        .run_pod(&pod, "")
        .await
        .expect("pulled with the pause credentials");
    assert!(
        pause_pid(&pod_id).is_some(),
        "the pause image's /pause runs"
    );
    cri.stop_and_remove_pod(&pod_id).await;
}
