//! Benchmark (not a test): how long a VM pod's guest takes to boot until its
//! agent answers, how often a boot fails or hangs, and the hypervisor's memory.
//!
//! `bench-vm-boot [BOOTS]` (default 20), serial boots of the guest that
//! `packaging/kata/build-guest.sh` builds (`CRIO_KATA_KERNEL` and
//! `CRIO_KATA_INITRAMFS` name it; without them the dev build is made). Each boot:
//! qemu launched, the agent's hello, Check, Shutdown, qemu's exit. Reports the
//! launch-to-hello time (p50/p95/max), the guest's own share (kernel start to
//! agent ready), the shutdown time, qemu's PSS and RSS once the agent answered,
//! and the boots that failed (a hang is a boot past 30 s).

use std::time::{Duration, Instant};

use crio_tests::kata::guest;
use kata_shim::boot::boot;
use kata_shim::config::KataConfig;
use kata_shim::vmm::{Accel, Qemu};

const BOOT_TIMEOUT: Duration = Duration::from_secs(30);

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn summary(name: &str, mut values: Vec<f64>, unit: &str) {
    values.sort_by(f64::total_cmp);
    println!(
        "{name:>28}: p50 {:8.1} {unit}  p95 {:8.1} {unit}  max {:8.1} {unit}  (n={})",
        percentile(&values, 0.5),
        percentile(&values, 0.95),
        values.last().copied().unwrap_or(f64::NAN),
        values.len()
    );
}

#[tokio::main]
async fn main() {
    let boots: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20);
    let guest = guest();
    // The shim's VM (its defaults) with this guest.
    let config = KataConfig {
        kernel: guest.kernel.clone(),
        initramfs: guest.initramfs.clone(),
        ..KataConfig::from_env(|_| None)
    };
    let accel = Accel::detect();
    let qemu = Qemu {
        binary: "qemu-system-x86_64".into(),
    };
    let (mut boot_ms, mut guest_ms, mut down_ms, mut pss, mut rss) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut failures = Vec::new();
    for n in 0..boots {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = config.vm_spec(dir.path().to_path_buf());
        let mut booted = match boot(&qemu, &spec, BOOT_TIMEOUT).await {
            Ok(b) => b,
            Err(e) => {
                failures.push(format!("boot {n}: {e}"));
                continue;
            }
        };
        boot_ms.push(booted.boot_time.as_secs_f64() * 1000.0);
        pss.push(crio_tests::process::rollup_kib(booted.vm.pid(), "Pss:") as f64);
        rss.push(crio_tests::process::rollup_kib(booted.vm.pid(), "Rss:") as f64);
        match booted.agent.check(Duration::from_secs(10)).await {
            Ok(c) => guest_ms.push(c.ready_after_ms as f64),
            Err(e) => failures.push(format!("boot {n}: check: {e}")),
        }
        let down = Instant::now();
        if let Err(e) = booted.agent.shutdown(Duration::from_secs(10)).await {
            failures.push(format!("boot {n}: shutdown: {e}"));
        }
        match booted.vm.wait_exit(Duration::from_secs(20)).await {
            Ok(Some(_)) => down_ms.push(down.elapsed().as_secs_f64() * 1000.0),
            _ => {
                failures.push(format!("boot {n}: qemu did not exit after shutdown"));
                let _ = booted.vm.stop().await;
            }
        }
    }
    println!(
        "VM pod guest boots: {boots} serial, {accel:?}, kernel {}, initramfs {} ({} kB)",
        guest.kernel.display(),
        guest.initramfs.display(),
        std::fs::metadata(&guest.initramfs)
            .map(|m| m.len() / 1024)
            .unwrap_or(0)
    );
    summary("launch to agent hello", boot_ms, "ms");
    summary("guest: kernel to agent ready", guest_ms, "ms");
    summary("shutdown to qemu exit", down_ms, "ms");
    summary("qemu PSS, agent answering", pss, "kB");
    summary("qemu RSS, agent answering", rss, "kB");
    println!("failed or hung boots: {} of {boots}", failures.len());
    for f in &failures {
        println!("  {f}");
    }
}
