//! Benchmark (not a test): pull a multi-layer image of ~200 MB from the local registry
//! with our daemon, with containerd 1.6's CRI (Debian's; it unpacks on pull, as we
//! do: the reference) and with `skopeo copy` to an OCI dir, interleaved, in one run;
//! each puller starts on an empty root every run.
//!
//! `CRIO_BINARY=target/release/crio bench-pull [RUNS] [LAYERS] [MIB_PER_LAYER]`

use std::process::Command;
use std::time::{Duration, Instant};

use crio_tests::bench_results::record;
use crio_tests::cri_containerd::CriContainerd;
use crio_tests::images::{Entry, ImageSpec, OciLayout};
use crio_tests::process::cpu_time;
use crio_tests::test_images::noise;
use crio_tests::{Daemon, Registry};
use protocols::cri::{ImageSpec as CriImageSpec, PullImageRequest};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// CPU time used per run by the puller and by the registry serving it.
#[derive(Default)]
struct Cpu {
    puller: Vec<Duration>,
    /// The part of `puller` spent in the kernel.
    system: Vec<Duration>,
    registry: Vec<Duration>,
}

impl Cpu {
    fn push(&mut self, puller: Duration, system: Duration, registry: Duration) {
        self.puller.push(puller);
        self.system.push(system);
        self.registry.push(registry);
    }

    fn line(&self, what: &str) -> String {
        format!(
            "{what}: median {:?} CPU ({:?} in the kernel), registry {:?} CPU",
            median(self.puller.clone()),
            median(self.system.clone()),
            median(self.registry.clone())
        )
    }
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>().ok());
    let runs = args.next().flatten().unwrap_or(3);
    let layers = args.next().flatten().unwrap_or(8);
    let mib = args.next().flatten().unwrap_or(25);

    let registry = Registry::start();
    let layout_dir = tempfile::tempdir().expect("tempdir");
    let layout = {
        let mut layout = OciLayout::create(layout_dir.path());
        let spec = ImageSpec {
            architecture: "amd64".into(),
            os: "linux".into(),
            config: serde_json::json!({"Cmd": ["sh"]}),
            layers: (0..layers)
                .map(|i| {
                    // Half noise, half zeros: compressible like real layers, not trivially.
                    let mut data = noise(mib << 19, i as u64 + 100);
                    data.resize(mib << 20, 0);
                    vec![Entry::file(&format!("layer{i}.bin"), data)]
                })
                .collect(),
            compression: Vec::new(),
        };
        let d = layout.add_image(&spec);
        layout.tag(&d, "bench");
        layout
    };
    registry.push(layout.dir(), "bench", "bench/big:latest", false, None);
    let name = format!("{}/bench/big:latest", registry.addr);
    let policy = layout_dir.path().join("policy.json");
    std::fs::write(
        &policy,
        r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
    )
    .expect("policy");

    let mut ours = Vec::new();
    let mut containerd = Vec::new();
    let mut skopeo = Vec::new();
    let mut skopeo_umoci = Vec::new();
    let (mut ours_cpu, mut skopeo_cpu) = (Cpu::default(), Cpu::default());
    let mut containerd_cpu = Cpu::default();
    let registry_cpu = || cpu_time(registry.pid()).own();
    for _ in 0..runs {
        let daemon = Daemon::builder()
            .registries_conf(&registry.insecure_conf())
            .dropin("50-quiet.conf", "[crio.runtime]\nlog_level = \"warn\"\n")
            .start();
        let mut cri = daemon.client().await;
        let (daemon_before, registry_before) = (cpu_time(daemon.pid()), registry_cpu());
        let start = Instant::now();
        cri.image
            .pull_image(PullImageRequest {
                image: Some(CriImageSpec {
                    image: name.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .expect("pull");
        ours.push(start.elapsed());
        let daemon_after = cpu_time(daemon.pid());
        ours_cpu.push(
            daemon_after.own() - daemon_before.own(),
            daemon_after.system - daemon_before.system,
            registry_cpu() - registry_before,
        );
        drop(daemon);

        let reference = CriContainerd::start(&registry, None);
        let mut cri = reference.client().await;
        let (before, registry_before) = (cpu_time(reference.pid()), registry_cpu());
        let start = Instant::now();
        cri.pull(&name, None).await.expect("containerd: pull");
        containerd.push(start.elapsed());
        let after = cpu_time(reference.pid());
        containerd_cpu.push(
            after.own() - before.own(),
            after.system - before.system,
            registry_cpu() - registry_before,
        );
        drop(reference);

        let dest = tempfile::tempdir().expect("tempdir");
        let me = std::process::id();
        let (children_before, registry_before) = (cpu_time(me), registry_cpu());
        let start = Instant::now();
        let status = Command::new("skopeo")
            .arg("--policy")
            .arg(&policy)
            .args(["copy", "--quiet", "--src-tls-verify=false"])
            .arg(format!("docker://{name}"))
            .arg(format!("oci:{}:bench", dest.path().display()))
            .status()
            .expect("skopeo");
        assert!(status.success());
        skopeo.push(start.elapsed());
        let children_after = cpu_time(me);
        skopeo_cpu.push(
            children_after.children() - children_before.children(),
            children_after.children_system - children_before.children_system,
            registry_cpu() - registry_before,
        );
        // What it takes to get a usable root filesystem out of that OCI dir.
        let status = Command::new("umoci")
            .args(["raw", "unpack", "--image"])
            .arg(format!("{}:bench", dest.path().display()))
            .arg(dest.path().join("rootfs"))
            .status()
            .expect("umoci");
        assert!(status.success());
        skopeo_umoci.push(start.elapsed());
    }
    let (o, s) = (median(ours.clone()), median(skopeo.clone()));
    println!(
        "image: {layers} layers x {mib} MiB ({} MiB), {runs} runs each, interleaved",
        layers * mib
    );
    let c = median(containerd.clone());
    let figure = format!("PullImage, {layers} layers x {mib} MiB, median");
    record("pull", &figure, "crio", o.as_secs_f64() * 1000.0, "ms");
    record(
        "pull",
        &figure,
        "containerd",
        c.as_secs_f64() * 1000.0,
        "ms",
    );
    println!("crio PullImage (download+verify+unpack+sync): median {o:?}  all {ours:?}");
    println!("containerd CRI PullImage (download+unpack):   median {c:?}  all {containerd:?}");
    println!("skopeo copy to OCI dir (download+verify):     median {s:?}  all {skopeo:?}");
    let u = median(skopeo_umoci.clone());
    println!("skopeo copy + umoci raw unpack (usable rootfs): median {u:?}  all {skopeo_umoci:?}");
    // On a machine with few cores the pull is bound by CPU: these say how much each
    // side needs (crio also inflates and hashes the uncompressed stream).
    println!("{}", ours_cpu.line("crio CPU per pull"));
    println!("{}", containerd_cpu.line("containerd CPU per pull"));
    println!("{}", skopeo_cpu.line("skopeo CPU per copy"));
    println!(
        "ratio crio/containerd: {:.2}x, crio/skopeo: {:.2}x, crio/(skopeo+umoci): {:.2}x (below 1 = crio faster)",
        o.as_secs_f64() / c.as_secs_f64(),
        o.as_secs_f64() / s.as_secs_f64(),
        o.as_secs_f64() / u.as_secs_f64()
    );
}
