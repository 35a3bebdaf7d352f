//! Benchmark (not a test): pod start latency (RunPodSandbox + CreateContainer +
//! StartContainer of busybox) per runtime handler, p50/p95, interleaved in one run,
//! and the RSS of the shim serving one pod.
//!
//! `CRIO_BINARY=target/release/crio [BENCH_DROPIN=FILE] [BENCH_LOG=FILE] bench-pods [PODS] [HANDLER...]`
//! Handlers: `go` (Debian's containerd-shim-runc-v2 as a drop-in), `runc` (ours,
//! when its binary sits next to crio), and `containerd` (Debian's containerd 1.6 CRI
//! with its Go shim, the reference, on a private root and socket; its sandbox image is
//! the test registry's pause image). Pods use the host network, unless
//! `BENCH_NETWORK` is set: then every runtime attaches them to one CNI bridge network
//! (Debian's bridge + host-local + portmap + loopback, a test-owned bridge and
//! subnet), and the report adds how long our RunPodSandbox spent in CNI ADD and in
//! starting the pause task (they run side by side), from the daemon's log. Then every
//! pod is stopped and removed (timed), and the RSS of crio and containerd once they
//! are all gone is reported. `BENCH_LOG` keeps the daemon's log; `BENCH_RESULTS`
//! gets the figures (see `crio_tests::bench_results`). `BENCH_GAP_MS` waits that
//! long between RunPodSandbox and CreateContainer (not counted): a diagnostic, to
//! tell what the sandbox left running (a new veth's udev and IPv6 work) from the
//! create's own cost.

use std::time::{Duration, Instant};

use crio_tests::bench_results::record;
use crio_tests::cri_containerd::{endpoint, CriContainerd};
use crio_tests::network::TestNetwork;
use crio_tests::pods::{container_config, host_network, pod_config};
use crio_tests::{Daemon, Registry, TestImage};
use protocols::cri::{RemovePodSandboxRequest, StopPodSandboxRequest};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// RssAnon / RssFile / Threads of a process, and its Pss (shared pages divided among
/// the processes mapping them), from /proc.
fn memory_detail(pid: i32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    std::iter::once(format!("pid {pid}"))
        .chain(
            status
                .lines()
                .filter(|l| {
                    l.starts_with("RssAnon") || l.starts_with("RssFile") || l.starts_with("Threads")
                })
                .chain(rollup.lines().filter(|l| l.starts_with("Pss:")))
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")),
        )
        .chain(std::iter::once(threads(pid)))
        .chain(std::iter::once(smaps(pid)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Resident KiB per mapping (perms + path), largest first, when BENCH_SMAPS is set;
/// its private dirty KiB (a process's own memory) with `BENCH_SMAPS=dirty`.
fn smaps(pid: i32) -> String {
    let field = match std::env::var("BENCH_SMAPS").as_deref() {
        Err(_) => return String::new(),
        Ok("dirty") => "Private_Dirty:",
        Ok(_) => "Rss:",
    };
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut out: Vec<(u64, String)> = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields
            .first()
            .is_some_and(|f| f.contains('-') && !f.ends_with(':'))
        {
            current = format!(
                "{} {}",
                fields.get(1).unwrap_or(&""),
                fields.get(5).unwrap_or(&"[anon]")
            );
        } else if fields.first() == Some(&field) {
            let kib: u64 = fields.get(1).and_then(|v| v.parse().ok()).unwrap_or(0);
            if kib > 0 {
                out.push((kib, current.clone()));
            }
        }
    }
    out.sort_by_key(|b| std::cmp::Reverse(b.0));
    out.iter()
        .take(12)
        .map(|(k, m)| format!("{k} {m}"))
        .collect::<Vec<_>>()
        .join(" | ")
}

/// The names of a process's threads.
fn threads(pid: i32) -> String {
    let mut names: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.flatten()
                .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                .map(|c| c.trim().to_string())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    format!("threads [{}]", names.join(" "))
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let pods: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(50);
    let mut handlers: Vec<String> = args.collect();
    if handlers.is_empty() {
        handlers = vec!["go".into(), "runc".into()];
    }
    let gap = std::env::var("BENCH_GAP_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis);
    let network = std::env::var_os("BENCH_NETWORK").map(|_| TestNetwork::new(false));
    let conflist = network.as_ref().map(|net| {
        net.conflist(
            "1.0.0",
            vec![
                net.bridge_plugin(),
                TestNetwork::portmap_plugin(),
                serde_json::json!({"type": "loopback"}),
            ],
        )
    });
    let registry = Registry::with_test_images();
    let mut daemon = Daemon::builder()
        .dropin("10-go-shim.conf", crio_tests::GO_SHIM_DROPIN)
        .registries_conf(&registry.insecure_conf());
    // More handlers or settings, from a config drop-in file.
    if let Ok(path) = std::env::var("BENCH_DROPIN") {
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        daemon = daemon.dropin("20-bench.conf", &text);
    }
    let daemon = daemon.start();
    if let (Some(net), Some(list)) = (&network, &conflist) {
        net.install(&daemon.dirs.network_dir, list);
    }
    let mut crio = daemon.client().await;
    let image = registry.reference(TestImage::Busybox);
    crio.pull(&image, None).await.expect("pull busybox");
    let (containerd, mut reference) =
        CriContainerd::for_handlers(&handlers, &registry, conflist.as_deref(), &image)
            .await
            .unzip();

    let mut phases: Vec<Phases> = vec![Phases::default(); handlers.len()];
    let mut rss: Vec<u64> = vec![0; handlers.len()];
    let mut pss: Vec<u64> = vec![0; handlers.len()];
    let mut detail: Vec<String> = vec![String::new(); handlers.len()];
    let mut pod_ids = Vec::new();
    for n in 0..pods {
        for (h, handler) in handlers.iter().enumerate() {
            let mut pod = pod_config(&format!("bench-{handler}-{n}"), &daemon.dirs.log_dir);
            if network.is_none() {
                pod = host_network(pod);
            }
            // containerd 1.6 refuses a hostname without a UTS namespace of its own.
            pod.hostname = String::new();
            let (cri, runtime_handler) = endpoint(handler, &mut crio, reference.as_mut());
            let t0 = Instant::now();
            let pod_id = cri
                .run_pod(&pod, runtime_handler)
                .await
                .expect("RunPodSandbox");
            let t1 = Instant::now();
            let p = &mut phases[h];
            p.sandbox.push(t1 - t0);
            // BENCH_PODS_ONLY: just the sandbox (to tell a shim's base cost from a task's).
            let mut waited = Duration::ZERO;
            if std::env::var_os("BENCH_PODS_ONLY").is_none() {
                if let Some(gap) = gap {
                    tokio::time::sleep(gap).await;
                    waited = t1.elapsed();
                }
                let t1 = t1 + waited;
                let id = cri
                    .create_container(&pod_id, &container_config("c", &image, "sleep 1000"), &pod)
                    .await
                    .expect("CreateContainer");
                let t2 = Instant::now();
                cri.start_container(&id).await.expect("StartContainer");
                p.create.push(t2 - t1);
                p.start.push(t2.elapsed());
            }
            p.total.push(t0.elapsed() - waited);
            pod_ids.push((h, pod_id));
        }
    }
    // Memory of each handler's first pod, idle since: the steady state a pod lives in.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (h, handler) in handlers.iter().enumerate() {
        let (_, pod_id) = &pod_ids[h];
        let bundle = match &containerd {
            Some(c) if handler == "containerd" => c.bundle(pod_id),
            _ => daemon.dirs.runroot.join("bundles").join(pod_id),
        };
        let pids = crio_tests::cleanup::processes_with_cwd_under(&bundle);
        rss[h] = pids.iter().copied().map(crio_tests::process::rss_kib).sum();
        pss[h] = pids
            .iter()
            .map(|p| crio_tests::process::rollup_kib(*p as u32, "Pss:"))
            .sum();
        detail[h] = pids
            .iter()
            .map(|p| memory_detail(*p))
            .collect::<Vec<_>>()
            .join("; ");
    }
    // BENCH_HOLD=SECONDS: time to look at the running shims (their pids are printed).
    if let Some(secs) = std::env::var("BENCH_HOLD")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        println!("holding {secs} s: {detail:?}");
        tokio::time::sleep(Duration::from_secs(secs)).await;
    }
    // Every pod stopped and removed, interleaved as they were started.
    for (h, pod_id) in pod_ids {
        let (cri, _) = endpoint(&handlers[h], &mut crio, reference.as_mut());
        let t0 = Instant::now();
        cri.runtime
            .stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: pod_id.clone(),
            })
            .await
            .expect("StopPodSandbox");
        let t1 = Instant::now();
        cri.runtime
            .remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: pod_id,
            })
            .await
            .expect("RemovePodSandbox");
        phases[h].stop_pod.push(t1 - t0);
        phases[h].remove_pod.push(t1.elapsed());
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    println!("pod start (RunPodSandbox+CreateContainer+StartContainer), {pods} pods per handler;");
    println!("shim RSS of each handler's first pod once all pods have started:");
    for (h, handler) in handlers.iter().enumerate() {
        let p = &mut phases[h];
        for v in [
            &mut p.sandbox,
            &mut p.create,
            &mut p.start,
            &mut p.total,
            &mut p.stop_pod,
            &mut p.remove_pod,
        ] {
            v.sort();
        }
        println!(
            "  {handler:>10}: p50 {:>7.1} ms  p95 {:>7.1} ms   shim RSS (1 pod, 1 container) {:>6} KiB",
            ms(percentile(&p.total, 0.5)),
            ms(percentile(&p.total, 0.95)),
            rss[h]
        );
        println!("          {}", detail[h]);
        let suffix = if network.is_some() {
            " (CNI bridge)"
        } else {
            " (host network)"
        };
        for (figure, values, p) in [
            ("pod start p50", &p.total, 0.5),
            ("pod start p95", &p.total, 0.95),
            ("RunPodSandbox p50", &p.sandbox, 0.5),
            ("CreateContainer p50", &p.create, 0.5),
            ("StartContainer p50", &p.start, 0.5),
            ("StopPodSandbox p50", &p.stop_pod, 0.5),
            ("RemovePodSandbox p50", &p.remove_pod, 0.5),
        ] {
            if !values.is_empty() {
                let figure = format!("{figure}{suffix}");
                record("pods", &figure, handler, ms(percentile(values, p)), "ms");
            }
        }
        let shim_memory = format!("shim memory per pod, {pods} pods running");
        record(
            "memory",
            &format!("{shim_memory}: PSS"),
            handler,
            pss[h] as f64,
            "KiB",
        );
        record(
            "memory",
            &format!("{shim_memory}: RSS"),
            handler,
            rss[h] as f64,
            "KiB",
        );
        println!(
            "          p50: RunPodSandbox {:.1} CreateContainer {:.1} StartContainer {:.1} | StopPodSandbox {:.1} RemovePodSandbox {:.1} ms",
            ms(percentile(&p.sandbox, 0.5)),
            ms(percentile(&p.create, 0.5)),
            ms(percentile(&p.start, 0.5)),
            ms(percentile(&p.stop_pod, 0.5)),
            ms(percentile(&p.remove_pod, 0.5)),
        );
    }
    // What the runtime itself keeps once every pod is gone.
    let started = pods * handlers.iter().filter(|h| *h != "containerd").count();
    let daemon_rss = format!("daemon RSS after {started} pods started and removed");
    record(
        "memory",
        &daemon_rss,
        "crio",
        crio_tests::process::rss_kib(daemon.pid() as i32) as f64,
        "KiB",
    );
    if let Some(c) = &containerd {
        let kib = crio_tests::process::rss_kib(c.pid() as i32) as f64;
        record("memory", &daemon_rss, "containerd", kib, "KiB");
    }
    println!(
        "RSS after {pods} pods per handler started and removed: crio {} KiB ({}){}",
        crio_tests::process::rss_kib(daemon.pid() as i32),
        memory_detail(daemon.pid() as i32),
        containerd.as_ref().map_or(String::new(), |c| format!(
            ", containerd {} KiB",
            crio_tests::process::rss_kib(c.pid() as i32)
        ))
    );
    if network.is_some() {
        let (cni, infra) = start_breakdown(&daemon.log());
        println!(
            "our RunPodSandbox, {} pods: CNI ADD p50 {:.1} ms, pause task (or, without one, shim) start p50 {:.1} ms (side by side)",
            cni.len(),
            median(cni),
            median(infra)
        );
    }
    if let Some(path) = std::env::var_os("BENCH_LOG") {
        std::fs::write(path, daemon.log()).expect("BENCH_LOG");
    }
    if let Some(secs) = std::env::var("BENCH_HOLD")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        println!("holding {secs} s: crio pid {}", daemon.pid());
        tokio::time::sleep(Duration::from_secs(secs)).await;
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Per handler, each call's latency.
#[derive(Default, Clone)]
struct Phases {
    sandbox: Vec<Duration>,
    create: Vec<Duration>,
    start: Vec<Duration>,
    total: Vec<Duration>,
    stop_pod: Vec<Duration>,
    remove_pod: Vec<Duration>,
}

/// `cni_add_ms` and `infra_ms` of every "pod sandbox ready" line in the daemon's log.
fn start_breakdown(log: &str) -> (Vec<f64>, Vec<f64>) {
    let field = |line: &str, key: &str| -> Option<f64> {
        let rest = &line[line.find(key)? + key.len()..];
        rest.split_whitespace().next()?.parse().ok()
    };
    let mut cni = Vec::new();
    let mut infra = Vec::new();
    for line in log.lines().filter(|l| l.contains("pod sandbox ready")) {
        if let (Some(c), Some(i)) = (field(line, "cni_add_ms="), field(line, "infra_ms=")) {
            cni.push(c);
            infra.push(i);
        }
    }
    (cni, infra)
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
