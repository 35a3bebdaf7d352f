//! Benchmark (not a test): the latency of `ExecSync` of `true` and of a streamed
//! exec of `true` (the `Exec` RPC, a WebSocket `v4.channel.k8s.io` session to the
//! returned URL, until the exit status arrives), p50/p95 over N runs, interleaved,
//! for each target in one run.
//!
//! `CRIO_BINARY=target/release/crio bench-exec [RUNS] [TARGET...]`
//! Targets: `runc` (our daemon, our shim), `go` (our daemon, Debian's Go shim),
//! `containerd` (Debian's containerd 1.6 CRI and its Go shim: the reference).

use std::time::{Duration, Instant};

use crio_tests::cri::CriClient;
use crio_tests::cri_containerd::CriContainerd;
use crio_tests::pods::{container_config, host_network, pod_config};
use crio_tests::streaming::ChannelClient;
use crio_tests::{Daemon, Registry, TestImage};
use protocols::cri::{ExecRequest, ExecSyncRequest};

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

async fn exec_sync(cri: &mut CriClient, id: &str) -> Duration {
    let started = Instant::now();
    let out = cri
        .runtime
        .exec_sync(ExecSyncRequest {
            container_id: id.to_string(),
            cmd: vec!["true".into()],
            timeout: 10,
        })
        .await
        .expect("ExecSync")
        .into_inner();
    assert_eq!(out.exit_code, 0);
    started.elapsed()
}

async fn streamed(cri: &mut CriClient, id: &str) -> Duration {
    let started = Instant::now();
    let url = cri
        .runtime
        .exec(ExecRequest {
            container_id: id.to_string(),
            cmd: vec!["true".into()],
            tty: false,
            stdin: false,
            stdout: true,
            stderr: true,
        })
        .await
        .expect("Exec")
        .into_inner()
        .url;
    let mut client = ChannelClient::connect(&url, &["v4.channel.k8s.io"])
        .await
        .expect("connect");
    let got = client.collect().await;
    let status =
        String::from_utf8_lossy(got.get(&3).map(Vec::as_slice).unwrap_or_default()).to_string();
    assert!(status.contains("Success"), "status {status:?}");
    started.elapsed()
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let runs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let mut targets: Vec<String> = args.collect();
    if targets.is_empty() {
        targets = vec!["runc".into(), "go".into(), "containerd".into()];
    }
    let registry = Registry::with_test_images();
    let daemon = Daemon::builder()
        .dropin("10-go-shim.conf", crio_tests::GO_SHIM_DROPIN)
        .registries_conf(&registry.insecure_conf())
        .start();
    let containerd = targets
        .iter()
        .any(|t| t == "containerd")
        .then(|| CriContainerd::start(&registry, None));
    let image = registry.reference(TestImage::Busybox);
    // One pod with one sleeping container per target.
    let mut clients = Vec::new();
    for target in &targets {
        let (mut cri, handler) = match (target.as_str(), &containerd) {
            ("containerd", Some(c)) => (c.client().await, ""),
            _ => (daemon.client().await, target.as_str()),
        };
        cri.pull(&image, None).await.expect("pull");
        let mut pod = host_network(pod_config(&format!("exec-{target}"), &daemon.dirs.log_dir));
        pod.hostname = String::new();
        let pod_id = cri.run_pod(&pod, handler).await.expect("RunPodSandbox");
        let id = cri
            .create_container(&pod_id, &container_config("c", &image, "sleep 3600"), &pod)
            .await
            .expect("CreateContainer");
        cri.start_container(&id).await.expect("StartContainer");
        clients.push((cri, id));
    }
    let mut sync_times = vec![Vec::new(); targets.len()];
    let mut stream_times = vec![Vec::new(); targets.len()];
    for _ in 0..runs {
        for (t, (cri, id)) in clients.iter_mut().enumerate() {
            sync_times[t].push(exec_sync(cri, id).await);
            stream_times[t].push(streamed(cri, id).await);
        }
    }
    println!("exec of `true`, {runs} runs per target (ms):");
    for (t, target) in targets.iter().enumerate() {
        sync_times[t].sort();
        stream_times[t].sort();
        println!(
            "  {target:>10}: ExecSync p50 {:>6.1} p95 {:>6.1}   streamed (WebSocket v4) p50 {:>6.1} p95 {:>6.1}",
            percentile(&sync_times[t], 0.5),
            percentile(&sync_times[t], 0.95),
            percentile(&stream_times[t], 0.5),
            percentile(&stream_times[t], 0.95),
        );
    }
}
