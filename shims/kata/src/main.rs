//! `containerd-shim-kata-rs-v2`: the shim v2 binary of VM pods (see the library's
//! docs and `docs/kata.md`). Work in progress: no handler names it yet.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use kata_shim::config::KataConfig;
use kata_shim::service::Service;
use shim_support::launch;
use shim_support::protos::protobuf::{Message, MessageField};
use shim_support::protos::shim_async::Task;
use shim_support::task::entry;

/// The runtime type containerd knows the shim by.
const RUNTIME_NAME: &str = "io.containerd.kata-rs.v2";

fn main() {
    if let Err(e) = run() {
        eprintln!("{RUNTIME_NAME}: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<_> = std::env::args_os().collect();
    let flags = shim_support::containerd_shim::parse(&args[1..])
        .map_err(|e| format!("parse flags: {e}"))?;
    if flags.version {
        entry::print_version();
        return Ok(());
    }
    if flags.info {
        // The VM is the pod's sandbox task: the core must create one.
        let mut info = entry::runtime_info(RUNTIME_NAME, None, false);
        // The pod runs in its VM: its ports are the guest's, not in its network
        // namespace on the host.
        info.annotations.insert(
            entry::POD_ISOLATION_ANNOTATION.into(),
            entry::POD_ISOLATION_VM.into(),
        );
        std::io::stdout().write_all(&info.write_to_bytes()?)?;
        return Ok(());
    }
    let config = KataConfig::from_env(|k| std::env::var(k).ok());
    match flags.action.as_str() {
        "start" => entry::start_action(&flags),
        "delete" => {
            let resp = delete_action(&flags, &config);
            std::io::stdout().write_all(&resp.write_to_bytes()?)?;
            Ok(())
        }
        "" => {
            shim_support::memory::single_arena();
            let rt = tokio::runtime::Builder::new_current_thread()
                .thread_keep_alive(std::time::Duration::from_secs(1))
                .enable_all()
                .build()?;
            rt.block_on(launch::serve(&flags, move |ctx| async move {
                let service = Service::new(ctx, config);
                service.serve_port_relay();
                Ok(Arc::new(service) as Arc<dyn Task + Send + Sync>)
            }))?;
            Ok(())
        }
        other => Err(format!("unknown action {other:?}").into()),
    }
}

/// The `delete` action (the manager lost the shim): a pod's VM is killed, by the
/// pid qemu wrote, if that process is still the VM's, and its directory removed.
fn delete_action(
    flags: &shim_support::containerd_shim::Flags,
    config: &KataConfig,
) -> shim_support::containerd_shim::DeleteResponse {
    let run_dir = config.run_dir(&flags.id);
    let spec = config.vm_spec(run_dir.clone());
    if let Some(pid) = std::fs::read_to_string(spec.pid_file())
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok())
    {
        if is_vm_of(pid, &run_dir) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        // Each container's directory holds mounts (its rootfs, the host files
        // and volumes its spec binds): unmounted before anything is removed.
        kata_shim::shared_mounts::remove_vm_dir(&run_dir, &spec.shared_dir());
    }
    shim_support::containerd_shim::DeleteResponse {
        exit_status: 128 + libc::SIGKILL as u32,
        exited_at: MessageField::some(
            shim_support::events::timestamp(std::time::SystemTime::now()),
        ),
        ..Default::default()
    }
}

/// Whether process `pid` is the hypervisor of the VM in `run_dir` (its command
/// line names the directory): a recycled pid is left alone.
fn is_vm_of(pid: i32, run_dir: &Path) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).contains(&*run_dir.to_string_lossy()))
        .unwrap_or(false)
}
