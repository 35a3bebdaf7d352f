//! Benchmark (not a test): pod start latency (RunPodSandbox + CreateContainer +
//! StartContainer of busybox) per runtime handler, p50/p95, interleaved in one run,
//! and the RSS of the shim serving one pod.
//!
//! `CRIO_BINARY=target/release/crio bench-pods [PODS] [HANDLER...]`
//! Handlers: `go` (Debian's containerd-shim-runc-v2 as a drop-in) and `runc` (ours,
//! when its binary sits next to crio).

use std::time::{Duration, Instant};

use crio_tests::pods::{container_config, pod_config};
use crio_tests::{Daemon, Registry, TestImage};
use protocols::cri::RemovePodSandboxRequest;

const GO_SHIM_DROPIN: &str = "[crio.runtime.runtimes.go]\nruntime_type = \"vm\"\nruntime_path = \"/usr/bin/containerd-shim-runc-v2\"\n";

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let pods: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(50);
    let mut handlers: Vec<String> = args.collect();
    if handlers.is_empty() {
        handlers = vec!["go".into(), "runc".into()];
    }
    let registry = Registry::with_test_images();
    let daemon = Daemon::builder()
        .dropin("10-go-shim.conf", GO_SHIM_DROPIN)
        .registries_conf(&format!(
            "[[registry]]\nlocation = \"{}\"\ninsecure = true\n",
            registry.addr
        ))
        .start();
    let mut cri = daemon.client().await;
    let image = registry.reference(TestImage::Busybox);
    cri.pull(&image, None).await.expect("pull busybox");

    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); handlers.len()];
    let mut rss: Vec<u64> = vec![0; handlers.len()];
    let mut pod_ids = Vec::new();
    for n in 0..pods {
        for (h, handler) in handlers.iter().enumerate() {
            let pod = pod_config(&format!("bench-{handler}-{n}"), &daemon.dirs.log_dir);
            let started = Instant::now();
            let pod_id = cri.run_pod(&pod, handler).await.expect("RunPodSandbox");
            let id = cri
                .create_container(&pod_id, &container_config("c", &image, "sleep 1000"), &pod)
                .await
                .expect("CreateContainer");
            cri.start_container(&id).await.expect("StartContainer");
            times[h].push(started.elapsed());
            if n == 0 {
                let bundle = daemon.dirs.runroot.join("bundles").join(&pod_id);
                rss[h] = crio_tests::cleanup::processes_with_cwd_under(&bundle)
                    .into_iter()
                    .map(rss_kib)
                    .sum();
            }
            pod_ids.push(pod_id);
        }
    }
    println!("pod start (RunPodSandbox+CreateContainer+StartContainer), {pods} pods per handler:");
    for (h, handler) in handlers.iter().enumerate() {
        let mut t = times[h].clone();
        t.sort();
        println!(
            "  {handler:>6}: p50 {:>7.1} ms  p95 {:>7.1} ms   shim RSS (1 pod, 1 container) {:>6} KiB",
            percentile(&t, 0.5).as_secs_f64() * 1000.0,
            percentile(&t, 0.95).as_secs_f64() * 1000.0,
            rss[h]
        );
    }
    for pod_id in pod_ids {
        let _ = cri
            .runtime
            .remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: pod_id,
            })
            .await;
    }
}
