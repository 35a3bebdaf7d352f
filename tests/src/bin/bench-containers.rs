//! Benchmark (not a test): container create + start + delete latency per runtime
//! handler, p50/p95, interleaved in one run, and the RSS of the shim serving a pod
//! with one running container.
//!
//! `CRIO_BINARY=/usr/local/bin/crio [BENCH_DROPIN=FILE] bench-containers [ROUNDS] [HANDLER...]`
//! Handlers: `youki` (our libcontainer shim), `runc` (our runc shim) and `go`
//! (Debian's containerd-shim-runc-v2 as a drop-in); the default is all three, 100
//! rounds. One host-network pod per handler; each round creates, starts and removes
//! one busybox `sleep` container in every pod in turn.

use std::time::{Duration, Instant};

use crio_tests::pods::{container_config, host_network, pod_config};
use crio_tests::{Daemon, Registry, TestImage};
use protocols::cri::{RemoveContainerRequest, RemovePodSandboxRequest};

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

#[derive(Default, Clone)]
struct Phases {
    create: Vec<Duration>,
    start: Vec<Duration>,
    delete: Vec<Duration>,
    total: Vec<Duration>,
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let mut handlers: Vec<String> = args.collect();
    if handlers.is_empty() {
        handlers = vec!["youki".into(), "runc".into(), "go".into()];
    }
    let registry = Registry::with_test_images();
    let mut daemon = Daemon::builder()
        .no_network()
        .dropin("10-go-shim.conf", crio_tests::GO_SHIM_DROPIN)
        .registries_conf(&registry.insecure_conf());
    // More handlers to compare, from a config drop-in file.
    if let Ok(path) = std::env::var("BENCH_DROPIN") {
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        daemon = daemon.dropin("20-bench.conf", &text);
    }
    let daemon = daemon.start();
    let mut cri = daemon.client().await;
    let image = registry.reference(TestImage::Busybox);
    cri.pull(&image, None).await.expect("pull busybox");

    let mut pods = Vec::new();
    for handler in &handlers {
        let mut pod = host_network(pod_config(
            &format!("bench-{handler}"),
            &daemon.dirs.log_dir,
        ));
        // Each container in a PID namespace of its own, as the kubelet asks by default.
        if let Some(ns) = pod
            .linux
            .as_mut()
            .and_then(|l| l.security_context.as_mut())
            .and_then(|s| s.namespace_options.as_mut())
        {
            ns.pid = protocols::cri::NamespaceMode::Container as i32;
        }
        let pod_id = cri.run_pod(&pod, handler).await.expect("RunPodSandbox");
        pods.push((pod, pod_id));
    }
    let mut phases = vec![Phases::default(); handlers.len()];
    for n in 0..rounds {
        for (h, (pod, pod_id)) in pods.iter().enumerate() {
            let config = container_config(&format!("c{n}"), &image, "sleep 1000");
            let t0 = Instant::now();
            let id = cri
                .create_container(pod_id, &config, pod)
                .await
                .expect("CreateContainer");
            let t1 = Instant::now();
            cri.start_container(&id).await.expect("StartContainer");
            let t2 = Instant::now();
            cri.runtime
                .remove_container(RemoveContainerRequest {
                    container_id: id.clone(),
                })
                .await
                .expect("RemoveContainer");
            let t3 = Instant::now();
            let p = &mut phases[h];
            p.create.push(t1 - t0);
            p.start.push(t2 - t1);
            p.delete.push(t3 - t2);
            p.total.push(t3 - t0);
        }
    }
    // Shim memory with one running container, once idle.
    let mut rss = Vec::new();
    for (pod, pod_id) in &pods {
        let id = cri
            .create_container(pod_id, &container_config("idle", &image, "sleep 1000"), pod)
            .await
            .expect("CreateContainer");
        cri.start_container(&id).await.expect("StartContainer");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (_, pod_id) in &pods {
        let bundle = daemon.dirs.runroot.join("bundles").join(pod_id);
        let pids = crio_tests::cleanup::processes_with_cwd_under(&bundle);
        rss.push(
            pids.iter()
                .copied()
                .map(crio_tests::process::rss_kib)
                .sum::<u64>(),
        );
    }
    println!(
        "container create + start + delete (busybox sleep, RemoveContainer kills it), {rounds} rounds, interleaved:"
    );
    for (h, handler) in handlers.iter().enumerate() {
        let p = &mut phases[h];
        for v in [&mut p.create, &mut p.start, &mut p.delete, &mut p.total] {
            v.sort();
        }
        println!(
            "  {handler:>6}: total p50 {:>6.1} ms p95 {:>6.1} ms | create p50 {:>5.1} start p50 {:>5.1} delete p50 {:>5.1} ms | shim RSS (1 pod, 1 container) {:>6} KiB",
            percentile(&p.total, 0.5),
            percentile(&p.total, 0.95),
            percentile(&p.create, 0.5),
            percentile(&p.start, 0.5),
            percentile(&p.delete, 0.5),
            rss[h],
        );
    }
    for (_, pod_id) in pods {
        let _ = cri
            .runtime
            .remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: pod_id,
            })
            .await;
    }
}
