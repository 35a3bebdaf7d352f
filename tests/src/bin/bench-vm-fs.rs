//! Benchmark (not a test): the VM pods' shared directory over virtio-9p against
//! virtio-fs, side by side in one run (handler keys `vm_shared_fs`): pod start
//! (RunPodSandbox + CreateContainer + StartContainer), file work in the container
//! timed as ExecSync (reading a 32 MiB file, listing 500 files, writing 16 MiB,
//! exec of `true`), all on a host volume, and the memory of one pod's VM
//! (hypervisor + virtiofsd + shim, PSS).
//!
//! `CRIO_BINARY=target/dist/crio CRIO_KATA_KERNEL=.. CRIO_KATA_INITRAMFS=..
//! bench-vm-fs [PODS]` (default 10 per handler, interleaved). The kata shim is the
//! one beside `CRIO_BINARY`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crio_tests::cri::CriClient;
use crio_tests::kata::guest;
use crio_tests::pods::{container_config, pod_config};
use crio_tests::{Daemon, Registry, TestImage};
use protocols::cri::{ExecSyncRequest, Mount};

const HANDLERS: [(&str, &str); 2] = [("kata-9p", "virtio-9p"), ("kata-vfs", "virtio-fs")];
/// What each pod's container does, timed as ExecSync (`N`: the pod's number).
const WORK: [(&str, &str); 4] = [
    ("read 32 MiB", "cat /data/big > /dev/null"),
    ("list 500 files", "ls -lR /data/many > /dev/null"),
    (
        "write 16 MiB",
        "dd if=/dev/zero of=/data/out-N bs=1M count=16 2>/dev/null && rm /data/out-N",
    ),
    ("exec true", "true"),
];

fn p50(values: &mut [Duration]) -> f64 {
    values.sort();
    values
        .get(values.len() / 2)
        .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
}

fn handler_table(name: &str, fs: &str, shim: &Path) -> String {
    format!(
        "[crio.runtime.runtimes.{name}]\nruntime_type = \"vm\"\nruntime_path = \"{}\"\n\
         vm_kernel = \"{}\"\nvm_initramfs = \"{}\"\nvm_shared_fs = \"{fs}\"\n",
        shim.display(),
        guest().kernel.display(),
        guest().initramfs.display(),
    )
}

/// A volume with a 32 MiB file and 500 small ones.
fn volume() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("big"), vec![7u8; 32 << 20]).expect("big");
    let many = dir.path().join("many");
    std::fs::create_dir(&many).expect("mkdir");
    for i in 0..500 {
        std::fs::write(many.join(format!("f{i}")), format!("{i}\n")).expect("small");
    }
    dir
}

async fn exec_timed(cri: &mut CriClient, id: &str, script: &str) -> Duration {
    let t = Instant::now();
    let out = cri
        .runtime
        .exec_sync(ExecSyncRequest {
            container_id: id.into(),
            cmd: vec!["sh".into(), "-c".into(), script.into()],
            timeout: 120,
        })
        .await
        .expect("ExecSync")
        .into_inner();
    assert_eq!(
        out.exit_code,
        0,
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    t.elapsed()
}

/// PSS (KiB) of a pod's processes: those working in its `bundle` (shim,
/// hypervisor) and its VM's virtiofsd (in a root of its own: found by the VM's
/// directory, named after the pod, on its command line).
fn pod_pss(bundle: &Path, pod_id: &str) -> (u64, usize) {
    let mut pids: Vec<u32> = crio_tests::cleanup::processes_with_cwd_under(bundle)
        .into_iter()
        .map(|p| p as u32)
        .collect();
    let vm_dir = format!("/{}/", &pod_id[..16]);
    pids.extend(
        crio_tests::process::command_lines()
            .into_iter()
            .filter(|(_, c)| c.contains("virtiofsd") && c.contains(&vm_dir))
            .map(|(pid, _)| pid),
    );
    let pss = pids
        .iter()
        .map(|p| crio_tests::process::rollup_kib(*p, "Pss:"))
        .sum();
    (pss, pids.len())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    crio_tests::require_root();
    let pods: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10);
    let crio = PathBuf::from(std::env::var("CRIO_BINARY").expect("CRIO_BINARY"));
    let shim = std::fs::canonicalize(crio)
        .expect("CRIO_BINARY")
        .with_file_name("containerd-shim-kata-rs-v2");
    let registry = Registry::with_test_images();
    let mut builder = Daemon::builder().registries_conf(&registry.insecure_conf());
    for (name, fs) in HANDLERS {
        builder = builder.dropin(&format!("20-{name}.conf"), &handler_table(name, fs, &shim));
    }
    let daemon = builder.start();
    let mut cri = daemon.client().await;
    let image = registry.reference(TestImage::Busybox);
    cri.pull(&image, None).await.expect("pull busybox");
    let data = volume();

    let mut start = vec![Vec::new(); HANDLERS.len()];
    let mut work = vec![vec![Vec::new(); WORK.len()]; HANDLERS.len()];
    let mut memory = vec![(0, 0); HANDLERS.len()];
    for n in 0..pods {
        for (h, (handler, _)) in HANDLERS.iter().enumerate() {
            let pod = pod_config(&format!("fs-{handler}-{n}"), &daemon.dirs.log_dir);
            let mut config = container_config("c", &image, "sleep 3600");
            config.mounts = vec![Mount {
                container_path: "/data".into(),
                host_path: data.path().display().to_string(),
                ..Default::default()
            }];
            let t = Instant::now();
            let pod_id = cri.run_pod(&pod, handler).await.expect("RunPodSandbox");
            let id = cri
                .create_container(&pod_id, &config, &pod)
                .await
                .expect("CreateContainer");
            cri.start_container(&id).await.expect("StartContainer");
            start[h].push(t.elapsed());
            for (w, (_, script)) in WORK.iter().enumerate() {
                let script = script.replace('N', &n.to_string());
                work[h][w].push(exec_timed(&mut cri, &id, &script).await);
            }
            if n == 0 {
                memory[h] = pod_pss(&daemon.dirs.runroot.join("bundles").join(&pod_id), &pod_id);
            }
            cri.stop_and_remove_pod(&pod_id).await;
        }
    }
    println!("VM pods' shared directory, {pods} pods per handler, interleaved (p50, ms):");
    print!("{:>16}", "");
    for (handler, fs) in HANDLERS {
        print!("  {:>20}", format!("{handler} ({fs})"));
    }
    println!("  ratio vfs/9p");
    let row = |name: &str, values: Vec<f64>| {
        print!("{name:>16}");
        for v in &values {
            print!("  {v:>20.1}");
        }
        println!("  {:>12.2}", values[1] / values[0]);
    };
    row(
        "pod start",
        start.iter_mut().map(|v| p50(v)).collect::<Vec<_>>(),
    );
    for (w, (name, _)) in WORK.iter().enumerate() {
        row(name, work.iter_mut().map(|v| p50(&mut v[w])).collect());
    }
    row(
        "PSS of 1 pod KiB",
        memory.iter().map(|(kib, _)| *kib as f64).collect(),
    );
    println!(
        "(processes counted: {})",
        memory
            .iter()
            .map(|(_, n)| n.to_string())
            .collect::<Vec<_>>()
            .join(" / ")
    );
}
