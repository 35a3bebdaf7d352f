//! The CRI pod metrics the kubelet's CRI stats provider (`PodAndContainerStatsFromCRI`)
//! serves on `/metrics/cadvisor`: every descriptor the daemon lists has values for a
//! running pod of two containers on a real bridge network, with the labels its
//! descriptor names, and the values follow what the containers did (CPU, memory,
//! direct I/O, open files, packets, an OOM kill, their CRI resources). Once per
//! shim: the Go shim's cgroup stats are the reference for ours.

use std::collections::HashMap;
use std::time::Duration;

use crio_tests::network::TestNetwork;
use crio_tests::pods::{container_config, pod_config};
use crio_tests::{Daemon, Registry, TestImage};
use protocols::cri::{
    LinuxContainerConfig, LinuxContainerResources, ListMetricDescriptorsRequest,
    ListPodSandboxMetricsRequest, Metric, MetricType,
};

/// Every sample of one metric name, with its labels as a map.
fn samples<'a>(
    metrics: &'a [Metric],
    keys: &'a HashMap<String, Vec<String>>,
    name: &str,
) -> Vec<(HashMap<&'a str, &'a str>, u64)> {
    let Some(keys) = keys.get(name) else {
        return Vec::new();
    };
    metrics
        .iter()
        .filter(|m| m.name == name)
        .map(|m| {
            let labels = keys
                .iter()
                .map(String::as_str)
                .zip(m.label_values.iter().map(String::as_str))
                .collect();
            (labels, m.value.as_ref().map_or(0, |v| v.value))
        })
        .collect()
}

async fn metrics_of_a_busy_pod(handler: &str) {
    let net = TestNetwork::new(false);
    let registry = Registry::with_test_images();
    let daemon = Daemon::builder()
        .dropin("10-go-shim.conf", crio_tests::GO_SHIM_DROPIN)
        .registries_conf(&registry.insecure_conf())
        .start();
    net.install(
        &daemon.dirs.network_dir,
        &net.conflist("1.0.0", vec![net.bridge_plugin()]),
    );
    let mut cri = daemon.client().await;
    let image = registry.reference(TestImage::Busybox);
    cri.pull(&image, None).await.expect("pull busybox");
    let pod = pod_config(&format!("metrics-{handler}"), &daemon.dirs.log_dir);
    let pod_id = cri.run_pod(&pod, handler).await.expect("RunPodSandbox");

    // One container works: direct writes (counted in its blkio cgroup), a TCP
    // attempt to the bridge's gateway (packets on eth0), a socket it keeps open,
    // and a child that outgrows the memory limit and is OOM-killed.
    let gateway = net.subnet.replace("0/24", "1");
    let mut busy = container_config(
        "busy",
        &image,
        &format!(
            "dd if=/dev/zero of=/direct bs=4096 count=256 oflag=direct; \
             nc -w 1 {gateway} 9 </dev/null; \
             nc -l -p 8080 >/dev/null & \
             head -c 100m /dev/zero | tail > /dev/null; \
             echo done > /tmp/done; sleep 3600"
        ),
    );
    busy.linux = Some(LinuxContainerConfig {
        resources: Some(LinuxContainerResources {
            cpu_period: 100_000,
            cpu_quota: 20_000,
            cpu_shares: 1024,
            memory_limit_in_bytes: 64 << 20,
            memory_swap_limit_in_bytes: 64 << 20,
            ..Default::default()
        }),
        security_context: None,
    });
    let busy_id = cri
        .create_container(&pod_id, &busy, &pod)
        .await
        .expect("CreateContainer busy");
    cri.start_container(&busy_id).await.expect("start busy");
    let idle = container_config("idle", &image, "sleep 3600");
    let idle_id = cri
        .create_container(&pod_id, &idle, &pod)
        .await
        .expect("CreateContainer idle");
    cri.start_container(&idle_id).await.expect("start idle");
    // The script's direct writes and its 20% CPU quota go at the machine's pace: a
    // few seconds here, over 30 once when the disk was busy (a full suite's
    // end). Its finishing is what is asserted, not how fast.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    // An exec may fail to start while the container's cgroup is at its memory
    // limit (the runtime's helper process joins that cgroup): not done yet.
    while !cri
        .try_exec(&busy_id, &["cat", "/tmp/done"])
        .await
        .is_ok_and(|r| r.exit_code == 0)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the busy container's script did not finish"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let descriptors = cri
        .runtime
        .list_metric_descriptors(ListMetricDescriptorsRequest {})
        .await
        .expect("ListMetricDescriptors")
        .into_inner()
        .descriptors;
    // A v1 host: no PSI; hugetlb only where its controller is mounted, block I/O
    // only where the kernel counts it.
    assert!(descriptors.len() >= 43, "{} descriptors", descriptors.len());
    let keys: HashMap<String, Vec<String>> = descriptors
        .iter()
        .map(|d| (d.name.clone(), d.label_keys.clone()))
        .collect();
    for d in &descriptors {
        assert!(!d.help.is_empty(), "{} has help", d.name);
        assert_eq!(
            d.label_keys[..5],
            ["id", "image", "namespace", "pod", "container"],
            "{}",
            d.name
        );
    }

    let pods = cri
        .runtime
        .list_pod_sandbox_metrics(ListPodSandboxMetricsRequest {})
        .await
        .expect("ListPodSandboxMetrics")
        .into_inner()
        .pod_metrics;
    assert_eq!(pods.len(), 1);
    let pm = &pods[0];
    assert_eq!(pm.pod_sandbox_id, pod_id);
    assert_eq!(pm.container_metrics.len(), 2);
    let of = |id: &str| {
        pm.container_metrics
            .iter()
            .find(|c| c.container_id == id)
            .map(|c| c.metrics.clone())
            .expect("the container's metrics")
    };
    let (busy_m, idle_m) = (of(&busy_id), of(&idle_id));

    // Every descriptor has values, each with as many labels as keys.
    let all: Vec<&Metric> = pm.metrics.iter().chain(&busy_m).chain(&idle_m).collect();
    for d in &descriptors {
        let found: Vec<_> = all.iter().filter(|m| m.name == d.name).collect();
        assert!(!found.is_empty(), "{} has no value", d.name);
        for m in found {
            assert_eq!(m.label_values.len(), d.label_keys.len(), "{}", d.name);
        }
    }
    for m in &all {
        assert!(keys.contains_key(&m.name), "{} is not described", m.name);
        assert!(m.timestamp > 0, "{}", m.name);
    }

    // Labels: the container's, or the pod's (network) with container POD.
    let (labels, _) = &samples(&busy_m, &keys, "container_memory_usage_bytes")[0];
    assert_eq!(labels["id"], busy_id);
    assert_eq!(labels["container"], "busy");
    assert_eq!(labels["pod"], pod.metadata.as_ref().expect("meta").name);
    assert_eq!(
        labels["namespace"],
        pod.metadata.as_ref().expect("meta").namespace
    );
    assert_eq!(labels["image"], image);
    let rx = samples(
        &pm.metrics,
        &keys,
        "container_network_receive_packets_total",
    );
    let eth0 = rx
        .iter()
        .find(|(l, _)| l["interface"] == "eth0")
        .unwrap_or_else(|| panic!("eth0 in {rx:?}"));
    assert_eq!(
        (eth0.0["id"], eth0.0["container"]),
        (pod_id.as_str(), "POD")
    );
    assert!(eth0.1 > 0, "the gateway answered: {rx:?}");
    assert!(rx.iter().all(|(l, _)| l["interface"] != "lo"));

    // Types: counters are counters.
    let kind = |name: &str| {
        all.iter()
            .find(|m| m.name == name)
            .map(|m| m.metric_type)
            .expect(name)
    };
    assert_eq!(
        kind("container_cpu_usage_seconds_total"),
        MetricType::Counter as i32
    );
    assert_eq!(
        kind("container_memory_working_set_bytes"),
        MetricType::Gauge as i32
    );

    // Values follow what the containers did.
    let value =
        |m: &[Metric], name: &str| -> u64 { samples(m, &keys, name).iter().map(|(_, v)| v).sum() };
    assert!(value(&busy_m, "container_memory_usage_bytes") > 0);
    assert!(value(&busy_m, "container_memory_working_set_bytes") > 0);
    assert!(
        value(&busy_m, "container_oom_events_total") >= 1,
        "the child was OOM-killed"
    );
    // Block I/O where the host's cgroups count it (cgroup v1 on this kernel does
    // not: the daemon then does not describe these metrics at all).
    if keys.contains_key("container_fs_writes_bytes_total") {
        assert!(
            value(&busy_m, "container_fs_writes_bytes_total") >= 256 * 4096,
            "1 MiB of direct writes: {:?}",
            samples(&busy_m, &keys, "container_fs_writes_bytes_total")
        );
    } else {
        assert!(
            daemon
                .log()
                .contains("\"diskIO\" needs a cgroup controller that accounts"),
            "says why diskIO is not served"
        );
    }
    assert!(
        value(&busy_m, "container_fs_usage_bytes") >= 1 << 20,
        "the file is in the writable layer"
    );
    assert!(value(&busy_m, "container_fs_limit_bytes") > 0);
    assert!(value(&busy_m, "container_sockets") >= 1, "nc listens");
    assert!(value(&busy_m, "container_processes") >= 2, "nc and sleep");
    assert!(value(&busy_m, "container_file_descriptors") >= 3);
    assert!(
        value(&busy_m, "container_threads") >= value(&busy_m, "container_processes"),
        "pids.current counts every thread"
    );
    assert_eq!(value(&idle_m, "container_processes"), 1, "sleep alone");
    assert!(value(&idle_m, "container_ulimits_soft") > 0);
    assert_eq!(value(&busy_m, "container_spec_cpu_quota"), 20_000);
    assert_eq!(value(&busy_m, "container_spec_cpu_period"), 100_000);
    assert_eq!(value(&busy_m, "container_spec_cpu_shares"), 1024);
    assert_eq!(
        value(&busy_m, "container_spec_memory_limit_bytes"),
        64 << 20
    );
    assert!(
        samples(&idle_m, &keys, "container_spec_cpu_quota").is_empty(),
        "no quota, no series"
    );
    let started = value(&busy_m, "container_start_time_seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    assert!(started <= now && started + 120 > now, "{started} vs {now}");
    let cpu = samples(&busy_m, &keys, "container_cpu_usage_seconds_total");
    assert_eq!(cpu.len(), 1);
    assert_eq!(cpu[0].0["cpu"], "total");
}

crio_tests::per_handler!(metrics_of_a_busy_pod);

async fn descriptor_names(daemon: &Daemon) -> Vec<String> {
    let mut cri = daemon.client().await;
    cri.runtime
        .list_metric_descriptors(ListMetricDescriptorsRequest {})
        .await
        .expect("descriptors")
        .into_inner()
        .descriptors
        .into_iter()
        .map(|d| d.name)
        .collect()
}

/// CRI-O's default (`included_pod_metrics = []`): only `container_last_seen`; a
/// group the host cannot serve, asked for by name, is left out with a warning.
#[tokio::test(flavor = "multi_thread")]
async fn included_pod_metrics_chooses_the_groups() {
    let daemon = Daemon::builder()
        .dropin(
            "20-stats.conf",
            "[crio.stats]\nincluded_pod_metrics = [\"cpu\", \"pressure\"]\n",
        )
        .start();
    let names = descriptor_names(&daemon).await;
    assert_eq!(names[0], "container_last_seen");
    assert!(
        names[1..].iter().all(|n| n.starts_with("container_cpu_")),
        "{names:?}"
    );
    assert_eq!(names.len(), 7);
    if !std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        assert!(
            daemon.log().contains("\"pressure\" needs cgroup v2"),
            "{}",
            daemon.log()
        );
    }
    drop(daemon);

    let daemon = Daemon::builder()
        .dropin("20-stats.conf", "[crio.stats]\nincluded_pod_metrics = []\n")
        .start();
    let names = descriptor_names(&daemon).await;
    assert_eq!(names, ["container_last_seen"]);
}
