//! Pulls from registries that serve TLS with a certificate from a private CA: the CA
//! goes in `<certs_dir>/<host:port>/ca.crt` (containers-certs.d(5)), read at every
//! pull; without it the pull fails saying which certificate and where a CA would go.

use std::path::Path;

use crio_tests::registry::{RegistryOptions, TestCa};
use crio_tests::{Daemon, Registry, TestImage};
use tonic::Code;

fn tls_registry(ca: &TestCa) -> Registry {
    let registry = Registry::start_with(RegistryOptions {
        tls: Some(ca),
        ..RegistryOptions::default()
    });
    registry.push_test_images(&[TestImage::Busybox]);
    registry
}

fn daemon_with_certs_dir(certs_dir: &Path, registries_conf: &str) -> Daemon {
    Daemon::builder()
        .registries_conf(registries_conf)
        .dropin(
            "50-certs.conf",
            &format!(
                "[crio.image]\ncerts_dir = {:?}\n",
                certs_dir.display().to_string()
            ),
        )
        .start()
}

#[tokio::test(flavor = "multi_thread")]
async fn pull_over_tls_needs_the_registry_ca_in_certs_d() {
    let ca = TestCa::new();
    let registry = tls_registry(&ca);
    let name = registry.reference(TestImage::Busybox);
    let certs = tempfile::tempdir().expect("certs dir");
    let daemon = daemon_with_certs_dir(certs.path(), "");
    let mut cri = daemon.client().await;

    let err = cri.pull(&name, None).await.expect_err("untrusted CA");
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    let message = err.message();
    assert!(
        message.contains(&format!("certificate of {} is not trusted", registry.addr)),
        "{message}"
    );
    assert!(message.contains("UnknownIssuer"), "{message}");
    let wanted = certs.path().join(&registry.addr).join("ca.crt");
    assert!(
        message.contains(&wanted.display().to_string()),
        "says where the CA goes: {message}"
    );
    assert!(cri.images().await.is_empty());

    // The CA filed under another port is another registry's.
    ca.install(certs.path(), "127.0.0.1:1");
    let err = cri.pull(&name, None).await.expect_err("CA of another host");
    assert!(err.message().contains("not trusted"), "{err}");

    // Filed under host:port it is trusted, without a restart.
    let installed = ca.install(certs.path(), &registry.addr);
    assert_eq!(installed, wanted);
    let id = cri.pull(&name, None).await.expect("pull over TLS");
    let images = cri.images().await;
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].id, id);
    assert_eq!(images[0].repo_tags, std::slice::from_ref(&name));
    assert!(
        registry.get_count("/v2/test/busybox/manifests/latest") >= 1,
        "{}",
        registry.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tls_mirror_is_trusted_through_its_own_certs_d_entry() {
    let ca = TestCa::new();
    let mirror = tls_registry(&ca);
    let certs = tempfile::tempdir().expect("certs dir");
    // The origin does not exist: only the mirror can serve, over verified TLS.
    let conf = format!(
        "[[registry]]\nprefix = \"registry.origin.test\"\nlocation = \"registry.origin.test\"\n[[registry.mirror]]\nlocation = \"{}\"\n",
        mirror.addr
    );
    let daemon = daemon_with_certs_dir(certs.path(), &conf);
    let mut cri = daemon.client().await;
    let name = "registry.origin.test/test/busybox:latest";

    let err = cri.pull(name, None).await.expect_err("mirror CA unknown");
    assert!(
        err.message()
            .contains(&format!("certificate of {} is not trusted", mirror.addr)),
        "the mirror's failure is reported: {err}"
    );

    ca.install(certs.path(), &mirror.addr);
    cri.pull(name, None)
        .await
        .expect("pull through the TLS mirror");
    let images = cri.images().await;
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].repo_tags, [name]);
    assert!(mirror.get_count("/v2/test/busybox/manifests/latest") >= 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_certificate_without_its_key_is_refused_by_name() {
    let ca = TestCa::new();
    let registry = tls_registry(&ca);
    let certs = tempfile::tempdir().expect("certs dir");
    ca.install(certs.path(), &registry.addr);
    let cert = certs.path().join(&registry.addr).join("client.cert");
    std::fs::copy(&ca.server_cert, &cert).expect("client.cert");
    let daemon = daemon_with_certs_dir(certs.path(), "");
    let mut cri = daemon.client().await;
    let err = cri
        .pull(&registry.reference(TestImage::Busybox), None)
        .await
        .expect_err("half a client pair");
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    let key = certs.path().join(&registry.addr).join("client.key");
    assert!(
        err.message()
            .contains(&format!("missing key {}", key.display())),
        "{err}"
    );
    assert!(cri.images().await.is_empty());
}

#[test]
fn certs_dir_must_be_an_absolute_path() {
    let mut daemon = Daemon::builder()
        .dropin("50-certs.conf", "[crio.image]\ncerts_dir = \"certs.d\"\n")
        .spawn();
    let status = daemon
        .wait_exit(std::time::Duration::from_secs(20))
        .expect("crio refuses the config");
    assert!(!status.success());
    let log = daemon.log();
    assert!(
        log.contains("50-certs.conf:2: key crio.image.certs_dir"),
        "{log}"
    );
    assert!(log.contains("absolute path"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_insecure_registry_is_tried_over_unverified_tls_then_http() {
    // A TLS registry marked insecure: HTTPS without verification, no CA needed.
    let ca = TestCa::new();
    let registry = tls_registry(&ca);
    let conf = registry.insecure_conf();
    let certs = tempfile::tempdir().expect("certs dir");
    let daemon = daemon_with_certs_dir(certs.path(), &conf);
    let mut cri = daemon.client().await;
    cri.pull(&registry.reference(TestImage::Busybox), None)
        .await
        .expect("insecure TLS registry");
    assert!(registry.get_count("/v2/test/busybox/manifests/latest") >= 1);

    // A plain-HTTP registry marked insecure: the HTTPS attempt fails, HTTP works.
    let plain = Registry::start();
    plain.push_test_images(&[TestImage::Busybox]);
    std::fs::write(
        daemon.dirs.base.join("registries.conf"),
        format!("{conf}{}", plain.insecure_conf()),
    )
    .expect("rewrite registries.conf");
    cri.pull(&plain.reference(TestImage::Busybox), None)
        .await
        .expect("insecure HTTP registry");
    // The same image under two names.
    let images = cri.images().await;
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].repo_tags.len(), 2, "{:?}", images[0].repo_tags);
    assert!(plain.get_count("/v2/test/busybox/manifests/latest") >= 1);
}
