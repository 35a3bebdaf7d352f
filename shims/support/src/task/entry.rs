//! A shim binary's `main`: containerd's flags and actions (`-v`, `-info`, `start`,
//! `delete`, and serving), the same for every shim built on the task service.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use containerd_shim_protos::protobuf::{Message, MessageField};
use containerd_shim_protos::shim_async::Task;
use containerd_shim_protos::types::introspection::{RuntimeInfo, RuntimeVersion};

use super::oci_cli::{Runtime, RuntimeOptions};
use super::{service, Flavor};
use crate::launch;

/// `-v`: the binary's name and version.
pub fn print_version() {
    let exe = std::env::current_exe().unwrap_or_default();
    let name = exe.file_name().unwrap_or_default().to_string_lossy();
    println!("{name}:");
    println!("  Version:  {}", env!("CARGO_PKG_VERSION"));
}

/// `-info`: the runtime's name and version, its OCI `features` document, and,
/// with `sandbox_task_optional`, [`SANDBOX_TASK_ANNOTATION`].
pub fn runtime_info(
    runtime_name: &str,
    features: Option<&str>,
    sandbox_task_optional: bool,
) -> RuntimeInfo {
    RuntimeInfo {
        name: runtime_name.into(),
        version: MessageField::some(RuntimeVersion {
            version: env!("CARGO_PKG_VERSION").into(),
            ..Default::default()
        }),
        features: MessageField::from_option(features.map(|json| {
            containerd_shim_protos::protobuf::well_known_types::any::Any {
                type_url: "types.containerd.io/opencontainers/runtime-spec/1/features/Features"
                    .into(),
                value: json.as_bytes().to_vec(),
                ..Default::default()
            }
        })),
        annotations: if sandbox_task_optional {
            [(SANDBOX_TASK_ANNOTATION.into(), "optional".into())].into()
        } else {
            Default::default()
        },
        ..Default::default()
    }
}

/// Runs the shim; exits 1 with the error on stderr.
pub fn main(flavor: &'static Flavor) {
    if let Err(e) = run(flavor) {
        eprintln!("{}: {e}", flavor.runtime_name);
        std::process::exit(1);
    }
}

/// The `-info` annotation saying a pod's containers run without a sandbox task
/// (crio-core's `drop_infra_ctr`).
pub const SANDBOX_TASK_ANNOTATION: &str = "io.crio-rs.sandbox-task";

/// The `-info` annotation saying how a pod is isolated: [`POD_ISOLATION_VM`] when
/// it runs in a VM (its ports, processes and IPC are the guest's, not in the
/// pod's namespaces on the host).
pub const POD_ISOLATION_ANNOTATION: &str = "io.crio-rs.pod-isolation";
pub const POD_ISOLATION_VM: &str = "vm";

fn run(flavor: &'static Flavor) -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<_> = std::env::args_os().collect();
    let flags = containerd_shim::parse(&args[1..]).map_err(|e| format!("parse flags: {e}"))?;
    if flags.version {
        print_version();
        return Ok(());
    }
    if flags.info {
        // Every container is a task of its own here: a pod needs no sandbox task
        // (crio-core then runs none where the pod shares no PID namespace).
        let info = runtime_info(flavor.runtime_name, flavor.features, true);
        std::io::stdout().write_all(&info.write_to_bytes()?)?;
        return Ok(());
    }
    match flags.action.as_str() {
        "start" => start_action(&flags),
        "delete" => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let resp = rt.block_on(delete_action(&flags, flavor))?;
            std::io::stdout().write_all(&resp.write_to_bytes()?)?;
            Ok(())
        }
        "" => {
            crate::memory::single_arena();
            let rt = tokio::runtime::Builder::new_current_thread()
                .thread_keep_alive(std::time::Duration::from_secs(1))
                .enable_all()
                .build()?;
            rt.block_on(launch::serve(&flags, move |ctx| async move {
                Ok(Arc::new(service::Service::new(ctx, flavor)) as Arc<dyn Task + Send + Sync>)
            }))?;
            Ok(())
        }
        other => Err(format!("unknown action {other:?}").into()),
    }
}

/// The `start` action, in the bundle directory: launches the pod's shim server (or
/// finds it) and prints its address in the format the manager reads.
pub fn start_action(flags: &containerd_shim::Flags) -> Result<(), Box<dyn std::error::Error>> {
    let bundle = std::env::current_dir()?;
    let grouping = crate::grouping::read_grouping_key(&bundle, &flags.id);
    let reply = launch::start(flags, &grouping)?;
    let mut out = std::io::stdout();
    out.write_all(&reply)?;
    out.flush()?;
    Ok(())
}

/// The `delete` action: the manager lost the shim; force-delete the container and
/// report it killed.
async fn delete_action(
    flags: &containerd_shim::Flags,
    flavor: &'static Flavor,
) -> Result<containerd_shim::DeleteResponse, Box<dyn std::error::Error>> {
    let bundle = if flags.bundle.is_empty() {
        std::env::current_dir()?
    } else {
        PathBuf::from(&flags.bundle)
    };
    let reaper = crate::reaper::Reaper::start()?;
    let options = RuntimeOptions::read(&bundle, flavor);
    let runtime = Runtime::new(options, &flags.namespace, &bundle, reaper);
    if let Err(e) = runtime.delete(&flags.id, true).await {
        eprintln!("{}: delete {}: {e}", flavor.runtime_name, flags.id);
    }
    service::unmount_rootfs(&bundle.join("rootfs"));
    Ok(containerd_shim::DeleteResponse {
        exit_status: 128 + libc::SIGKILL as u32,
        exited_at: MessageField::some(crate::events::timestamp(std::time::SystemTime::now())),
        ..Default::default()
    })
}
