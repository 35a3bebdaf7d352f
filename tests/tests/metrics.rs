//! The Prometheus endpoint (`[crio.metrics]`), scraped over TCP and its unix
//! socket after real work: pulls (one that fails), a pod, an OOM kill.

use std::io::{Read, Write};
use std::time::Duration;

use crio_tests::{Daemon, TestImage};
use protocols::cri;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The exposition, as a scraper gets it over the unix socket (raw HTTP/1.1).
fn scrape_socket(path: &std::path::Path) -> String {
    let mut stream = std::os::unix::net::UnixStream::connect(path).expect("metrics socket");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .expect("request");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("response");
    text
}

/// The value of the sample `series` (name and labels as printed), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_endpoint_counts_operations_pulls_shims_and_oom_kills() {
    crio_tests::require_root();
    let registry = crio_tests::Registry::with_test_images();
    let port = free_port();
    let tmp = tempfile::tempdir().expect("tempdir");
    let socket = tmp.path().join("metrics.sock");
    let daemon = Daemon::builder()
        .dropin(
            "20-metrics.conf",
            &format!(
                "[crio.metrics]\nenable_metrics = true\nmetrics_port = {port}\nmetrics_socket = \"{}\"\n",
                socket.display()
            ),
        )
        .registries_conf(&registry.insecure_conf())
        .start();
    let mut cri = daemon.client().await;
    let image = registry.reference(TestImage::Busybox);
    cri.pull(&image, None).await.expect("pull");
    cri.pull(&image, None)
        .await
        .expect("pull again: layers reused");
    let missing = format!("{}/test/missing:1", registry.addr);
    cri.pull(&missing, None).await.expect_err("no such image");

    let pod = crio_tests::pods::pod_config("metrics", &daemon.dirs.log_dir);
    let pod_id = cri.run_pod(&pod, "").await.expect("RunPodSandbox");
    let mut hog = crio_tests::pods::container_config("hog", &image, "exec tail /dev/zero");
    hog.linux = Some(cri::LinuxContainerConfig {
        resources: Some(cri::LinuxContainerResources {
            memory_limit_in_bytes: 32 << 20,
            ..Default::default()
        }),
        security_context: None,
    });
    let hog_id = cri.started_container(&pod_id, &hog, &pod).await;
    cri.wait_exited(&hog_id, Duration::from_secs(60)).await;
    // The OOM event and the exit come apart: wait for both.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while cri.container_status(&hog_id).await.expect("status").reason != "OOMKilled" {
        assert!(std::time::Instant::now() < deadline, "not OOM-killed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let url = format!("http://127.0.0.1:{port}/metrics");
    let response = crio_tests::http::get(&url, &[], None).expect("scrape");
    assert_eq!(response.status, 200);
    assert!(
        response
            .header("content-type")
            .is_some_and(|c| c.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        response.header("content-type")
    );
    let text = String::from_utf8_lossy(&response.body).to_string();
    let at_least = |series: &str, min: f64| {
        let v = sample(&text, series).unwrap_or_else(|| panic!("{series} missing in\n{text}"));
        assert!(v >= min, "{series} = {v}, expected at least {min}");
    };
    at_least(
        "container_runtime_crio_operations_total{operation=\"RunPodSandbox\"}",
        1.0,
    );
    at_least(
        "container_runtime_crio_operations_total{operation=\"PullImage\"}",
        3.0,
    );
    at_least(
        "container_runtime_crio_operations_errors_total{operation=\"PullImage\"}",
        1.0,
    );
    at_least("container_runtime_crio_operations_latency_seconds_total_count{operation=\"CreateContainer\"}", 1.0);
    at_least("container_runtime_crio_image_pulls_success_total", 2.0);
    at_least(
        "container_runtime_crio_image_pulls_failure_total{error=\"MANIFEST_UNKNOWN\"}",
        1.0,
    );
    at_least("container_runtime_crio_image_pulls_layer_size_count", 1.0);
    assert!(
        text.contains("container_runtime_crio_image_layer_reuse_total{name="),
        "the second pull reused layers:\n{text}"
    );
    at_least("container_runtime_crio_containers_oom_total", 1.0);
    assert!(
        text.lines().any(|l| l.starts_with(
            "container_runtime_crio_containers_oom_count_total{name=\"k8s_hog_metrics"
        )),
        "{text}"
    );
    at_least(
        "container_runtime_crio_default_runtime{runtime=\"runc\"}",
        1.0,
    );
    at_least("crio_rs_shims{handler=\"runc\"}", 1.0);
    at_least("crio_rs_shim_memory_bytes{handler=\"runc\"}", 100_000.0);
    at_least("crio_rs_shim_start_seconds_count{handler=\"runc\"}", 1.0);
    assert!(
        text.contains("# TYPE container_runtime_crio_processes_defunct gauge"),
        "{text}"
    );

    let over_socket = scrape_socket(&socket);
    assert!(over_socket.starts_with("HTTP/1.1 200"), "{over_socket}");
    assert!(
        over_socket.contains("container_runtime_crio_operations_total{"),
        "{over_socket}"
    );
    let other =
        crio_tests::http::get(&format!("http://127.0.0.1:{port}/other"), &[], None).expect("404");
    assert_eq!(other.status, 404);

    cri.stop_and_remove_pod(&pod_id).await;
    let text =
        String::from_utf8_lossy(&crio_tests::http::get(&url, &[], None).expect("scrape").body)
            .to_string();
    assert!(
        !text.contains("containers_oom_count_total{name=\"k8s_hog"),
        "removed with the container"
    );
    assert!(
        sample(&text, "crio_rs_shims{handler=\"runc\"}").is_none(),
        "no shim left:\n{text}"
    );
}

#[test]
fn an_unknown_collector_or_half_a_tls_pair_stops_the_start() {
    crio_tests::require_root();
    let mut daemon = Daemon::builder()
        .dropin(
            "20-metrics.conf",
            "[crio.metrics]\nenable_metrics = true\nmetrics_collectors = [\"operations\"]\nmetrics_cert = \"/etc/crio/metrics.crt\"\n",
        )
        .spawn();
    assert!(!daemon
        .wait_exit(Duration::from_secs(10))
        .expect("exits")
        .success());
    let log = daemon.log();
    assert!(
        log.contains("crio.metrics.metrics_collectors.0") && log.contains("operations_total"),
        "{log}"
    );
    assert!(
        log.contains("metrics_cert and metrics_key go together"),
        "{log}"
    );
}

/// `metrics_cert` and `metrics_key` where neither file exists: a self-signed pair
/// is made there (as CRI-O does) and the endpoint serves TLS with it, with the
/// process's own families.
#[test]
fn a_self_signed_certificate_when_none_is_on_disk() {
    crio_tests::require_root();
    let port = free_port();
    let tmp = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (
        tmp.path().join("tls/metrics.crt"),
        tmp.path().join("tls/metrics.key"),
    );
    let _daemon = Daemon::builder()
        .dropin(
            "20-metrics.conf",
            &format!(
                "[crio.metrics]\nenable_metrics = true\nmetrics_port = {port}\nmetrics_cert = \"{}\"\nmetrics_key = \"{}\"\n",
                cert.display(),
                key.display()
            ),
        )
        .start();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key)
        .expect("key made")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let subject = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
        .arg(&cert)
        .output()
        .expect("openssl x509");
    let subject = String::from_utf8_lossy(&subject.stdout);
    assert!(subject.contains("DNS:localhost"), "{subject}");
    // A scrape over TLS, trusting the generated certificate.
    let mut client = std::process::Command::new("openssl")
        .args(["s_client", "-quiet", "-verify_return_error", "-CAfile"])
        .arg(&cert)
        .args(["-servername", "localhost", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("openssl s_client");
    client
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .expect("request");
    let out = client.wait_with_output().expect("response");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        sample(&text, "process_resident_memory_bytes").is_some_and(|v| v > 1e6),
        "{text}"
    );
}
