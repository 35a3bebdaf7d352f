//! Benchmark (not a test): container create, start, stop and remove latency per
//! runtime handler, p50/p95, interleaved in one run, and the RSS of the shim serving
//! a pod with one running container.
//!
//! `CRIO_BINARY=/usr/local/bin/crio [BENCH_DROPIN=FILE] bench-containers [ROUNDS] [HANDLER...]`
//! Handlers: `youki` (our libcontainer shim), `runc` (our runc shim), `go`
//! (Debian's containerd-shim-runc-v2 as our drop-in) and `containerd` (Debian's
//! containerd 1.6 CRI with its Go shim, the reference, on a private root); the
//! default is `youki runc go containerd`, 100 rounds. One host-network pod per
//! handler; each round creates, starts, stops (timeout 0: SIGKILL, as the kubelet's
//! forced stop) and removes one busybox `sleep` container in every pod in turn.

use std::time::{Duration, Instant};

use crio_tests::bench_results::record;
use crio_tests::cri_containerd::{endpoint, CriContainerd};
use crio_tests::pods::{container_config, host_network, pod_config};
use crio_tests::{Daemon, Registry, TestImage};
use protocols::cri::{RemoveContainerRequest, RemovePodSandboxRequest, StopContainerRequest};

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

#[derive(Default, Clone)]
struct Phases {
    create: Vec<Duration>,
    start: Vec<Duration>,
    stop: Vec<Duration>,
    remove: Vec<Duration>,
    total: Vec<Duration>,
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let mut handlers: Vec<String> = args.collect();
    if handlers.is_empty() {
        handlers = ["youki", "runc", "go", "containerd"]
            .map(String::from)
            .to_vec();
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
    let mut crio = daemon.client().await;
    let image = registry.reference(TestImage::Busybox);
    crio.pull(&image, None).await.expect("pull busybox");
    let (containerd, mut reference) =
        CriContainerd::for_handlers(&handlers, &registry, None, &image)
            .await
            .unzip();

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
        pod.hostname = String::new();
        let (cri, runtime_handler) = endpoint(handler, &mut crio, reference.as_mut());
        let pod_id = cri
            .run_pod(&pod, runtime_handler)
            .await
            .expect("RunPodSandbox");
        pods.push((pod, pod_id));
    }
    let mut phases = vec![Phases::default(); handlers.len()];
    for n in 0..rounds {
        for (h, (pod, pod_id)) in pods.iter().enumerate() {
            let (cri, _) = endpoint(&handlers[h], &mut crio, reference.as_mut());
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
                .stop_container(StopContainerRequest {
                    container_id: id.clone(),
                    timeout: 0,
                })
                .await
                .expect("StopContainer");
            let t3 = Instant::now();
            cri.runtime
                .remove_container(RemoveContainerRequest {
                    container_id: id.clone(),
                })
                .await
                .expect("RemoveContainer");
            let t4 = Instant::now();
            let p = &mut phases[h];
            p.create.push(t1 - t0);
            p.start.push(t2 - t1);
            p.stop.push(t3 - t2);
            p.remove.push(t4 - t3);
            p.total.push(t4 - t0);
        }
    }
    // Shim memory with one running container, once idle.
    let mut rss = Vec::new();
    for (h, (pod, pod_id)) in pods.iter().enumerate() {
        let (cri, _) = endpoint(&handlers[h], &mut crio, reference.as_mut());
        let id = cri
            .create_container(pod_id, &container_config("idle", &image, "sleep 1000"), pod)
            .await
            .expect("CreateContainer");
        cri.start_container(&id).await.expect("StartContainer");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (h, (_, pod_id)) in pods.iter().enumerate() {
        let bundle = match &containerd {
            Some(c) if handlers[h] == "containerd" => c.bundle(pod_id),
            _ => daemon.dirs.runroot.join("bundles").join(pod_id),
        };
        let pids = crio_tests::cleanup::processes_with_cwd_under(&bundle);
        rss.push(
            pids.iter()
                .copied()
                .map(crio_tests::process::rss_kib)
                .sum::<u64>(),
        );
    }
    println!(
        "container create + start + stop (timeout 0) + remove (busybox sleep), {rounds} rounds, interleaved:"
    );
    for (h, handler) in handlers.iter().enumerate() {
        let p = &mut phases[h];
        // Per round, before the phases are sorted apart.
        let mut create_start: Vec<Duration> = (0..p.create.len())
            .map(|i| p.create[i] + p.start[i])
            .collect();
        create_start.sort();
        for v in [
            &mut p.create,
            &mut p.start,
            &mut p.stop,
            &mut p.remove,
            &mut p.total,
        ] {
            v.sort();
        }
        println!(
            "  {handler:>10}: total p50 {:>6.1} ms p95 {:>6.1} | create+start p50 {:>5.1} (create {:>5.1} start {:>5.1}) stop {:>5.1} remove {:>5.1} ms | shim RSS (1 pod, 1 container) {:>6} KiB",
            percentile(&p.total, 0.5),
            percentile(&p.total, 0.95),
            percentile(&create_start, 0.5),
            percentile(&p.create, 0.5),
            percentile(&p.start, 0.5),
            percentile(&p.stop, 0.5),
            percentile(&p.remove, 0.5),
            rss[h],
        );
        for (figure, values) in [
            ("create + start p50", &create_start),
            ("CreateContainer p50", &p.create),
            ("StartContainer p50", &p.start),
            ("StopContainer p50", &p.stop),
            ("RemoveContainer p50", &p.remove),
            ("create + start + stop + remove p50", &p.total),
        ] {
            record("containers", figure, handler, percentile(values, 0.5), "ms");
        }
    }
    // The daemon's log, to read where the time went.
    if let Some(path) = std::env::var_os("BENCH_LOG") {
        std::fs::write(path, daemon.log()).expect("BENCH_LOG");
    }
    for (h, (_, pod_id)) in pods.into_iter().enumerate() {
        let (cri, _) = endpoint(&handlers[h], &mut crio, reference.as_mut());
        let _ = cri
            .runtime
            .remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: pod_id,
            })
            .await;
    }
}
