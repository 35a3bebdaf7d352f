use std::time::Duration;

use super::*;

fn text(m: &Metrics) -> String {
    String::from_utf8(m.render()).expect("utf-8")
}

#[test]
fn cri_o_s_names_labels_and_types() {
    let all: Vec<String> = COLLECTORS.iter().map(|(n, _)| n.to_string()).collect();
    let m = Metrics::new(true, &all, "runc");
    m.operation("RunPodSandbox", Duration::from_millis(120), false);
    m.operation("RunPodSandbox", Duration::from_millis(80), true);
    m.pull_succeeded();
    m.pull_failed("UNAUTHORIZED");
    m.layer_pulled("application/vnd.oci.image.layer.v1.tar+gzip", 2_000_000);
    m.layer_reused("r/busybox:1@sha256:00");
    m.oom_killed("k8s_hog_pod_ns_uid_0");
    let out = text(&m);
    for line in [
        "# TYPE container_runtime_crio_operations_total counter",
        "container_runtime_crio_operations_total{operation=\"RunPodSandbox\"} 2",
        "container_runtime_crio_operations_errors_total{operation=\"RunPodSandbox\"} 1",
        "container_runtime_crio_operations_latency_seconds{operation=\"RunPodSandbox\"} 0.08",
        "# TYPE container_runtime_crio_operations_latency_seconds_total summary",
        "container_runtime_crio_operations_latency_seconds_total_count{operation=\"RunPodSandbox\"} 2",
        "container_runtime_crio_image_pulls_success_total 1",
        "container_runtime_crio_image_pulls_failure_total{error=\"UNAUTHORIZED\"} 1",
        "container_runtime_crio_image_pulls_bytes_total{mediatype=\"application/vnd.oci.image.layer.v1.tar+gzip\",size=\">1 MiB\"} 2000000",
        "container_runtime_crio_image_pulls_layer_size_count 1",
        "container_runtime_crio_image_layer_reuse_total{name=\"r/busybox:1@sha256:00\"} 1",
        "container_runtime_crio_containers_oom_total 1",
        "container_runtime_crio_containers_oom_count_total{name=\"k8s_hog_pod_ns_uid_0\"} 1",
        "container_runtime_crio_default_runtime{runtime=\"runc\"} 1",
        "# TYPE container_runtime_crio_processes_defunct gauge",
    ] {
        assert!(out.contains(line), "{line}\nin\n{out}");
    }
    m.container_removed("k8s_hog_pod_ns_uid_0");
    let out = text(&m);
    assert!(
        !out.contains("containers_oom_count_total{"),
        "the name goes with the container"
    );
    assert!(
        out.contains("container_runtime_crio_containers_oom_total 1"),
        "the total stays"
    );
}

#[test]
fn only_the_listed_collectors_are_served() {
    let m = Metrics::new(true, &["crio_operations_total".to_string()], "runc");
    m.operation("Version", Duration::from_millis(1), false);
    m.pull_succeeded();
    let out = text(&m);
    assert!(out.contains("container_runtime_crio_operations_total{operation=\"Version\"} 1"));
    assert!(!out.contains("image_pulls_success_total"), "{out}");
    assert!(!out.contains("default_runtime"), "{out}");
}

#[test]
fn disabled_metrics_serve_nothing() {
    let m = Metrics::new(false, &["operations_total".to_string()], "runc");
    m.operation("Version", Duration::from_millis(1), false);
    assert_eq!(text(&m), "");
}
