//! Benchmark (not a test): start-to-socket-ready time and idle RSS of `crio`, side by
//! side with Debian's containerd when it is installed, in one run.
//!
//! `bench-startup [CRIO_BINARY] [RUNS]` (default `target/release/crio`, 20 runs).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crio_tests::process;

struct Sample {
    ready: Duration,
    rss_kib: u64,
}

fn measure(mut cmd: Command, socket: &Path) -> Sample {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    process::die_with_parent(&mut cmd);
    let start = Instant::now();
    let mut child: Child = cmd.spawn().expect("spawn");
    while std::os::unix::net::UnixStream::connect(socket).is_err() {
        assert!(
            child.try_wait().expect("wait").is_none(),
            "daemon exited during start-up"
        );
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "not ready in 60 s"
        );
        std::thread::sleep(Duration::from_micros(500));
    }
    let ready = start.elapsed();
    // Idle: let start-up work settle before reading the resident set.
    std::thread::sleep(Duration::from_secs(2));
    let rss_kib = crio_tests::process::rss_kib(child.id() as i32);
    process::terminate(&mut child, Duration::from_secs(15));
    Sample { ready, rss_kib }
}

fn crio_run(binary: &Path) -> Sample {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("crio.sock");
    let mut cmd = Command::new(binary);
    cmd.arg("-c")
        .arg(dir.path().join("none.conf"))
        .arg("-d")
        .arg(dir.path().join("none.d"))
        .arg("--root")
        .arg(dir.path().join("root"))
        .arg("--runroot")
        .arg(dir.path().join("run"))
        .arg("--listen")
        .arg(&socket)
        .args(["--log-level", "warn"]);
    measure(cmd, &socket)
}

fn containerd_run(binary: &Path) -> Sample {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("containerd.sock");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "version = 2\n").expect("config");
    let mut cmd = Command::new(binary);
    cmd.arg("--config")
        .arg(&config)
        .arg("--root")
        .arg(dir.path().join("root"))
        .arg("--state")
        .arg(dir.path().join("state"))
        .arg("--address")
        .arg(&socket)
        .args(["--log-level", "warn"]);
    measure(cmd, &socket)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(name: &str, samples: &[Sample]) -> (f64, f64) {
    let mut ready: Vec<f64> = samples
        .iter()
        .map(|s| s.ready.as_secs_f64() * 1e3)
        .collect();
    ready.sort_by(f64::total_cmp);
    let mut rss: Vec<f64> = samples.iter().map(|s| s.rss_kib as f64 / 1024.0).collect();
    rss.sort_by(f64::total_cmp);
    let (p50, rss50) = (percentile(&ready, 0.5), percentile(&rss, 0.5));
    println!(
        "{name:<12} ready p50 {p50:8.1} ms  p95 {:8.1} ms  | idle RSS p50 {rss50:6.1} MiB",
        percentile(&ready, 0.95)
    );
    (p50, rss50)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let crio = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/release/crio"));
    let runs: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(20);
    let containerd = PathBuf::from("/usr/bin/containerd");
    let with_reference = containerd.is_file();

    let mut ours = Vec::new();
    let mut reference = Vec::new();
    // Interleaved, so machine noise hits both alike.
    for _ in 0..runs {
        ours.push(crio_run(&crio));
        if with_reference {
            reference.push(containerd_run(&containerd));
        }
    }
    println!("{runs} runs each, start to socket accepting connections, RSS 2 s after");
    let (c_ready, c_rss) = report("crio", &ours);
    if with_reference {
        let (r_ready, r_rss) = report("containerd", &reference);
        println!(
            "ratio crio/containerd: ready {:.2}x, idle RSS {:.2}x",
            c_ready / r_ready,
            c_rss / r_rss
        );
    } else {
        println!("(containerd not installed: apt-get install containerd for the reference)");
    }
}
