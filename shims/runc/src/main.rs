//! `containerd-shim-runc-rs-v2`: crio-rs's containerd shim v2 for runc and crun
//! (runtime type `io.containerd.runc-rs.v2`).
//!
//! - `start`: launches (or finds) the shim server of the container's pod and
//!   prints its address in the form the caller reads;
//! - `delete`: cleans up after a shim that died (runtime delete, rootfs unmount);
//! - no action: the server, answering `containerd.task.v2.Task` and `v3`.

mod runtime;
mod service;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use containerd_shim_protos::protobuf::{Message, MessageField};
use containerd_shim_protos::shim_async::Task;
use containerd_shim_protos::types::introspection::{RuntimeInfo, RuntimeVersion};
use shim_support::launch;

use crate::runtime::{Runtime, RuntimeOptions};

const RUNTIME_NAME: &str = "io.containerd.runc-rs.v2";

fn main() {
    if let Err(e) = run() {
        eprintln!("{RUNTIME_NAME}: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let args: Vec<_> = std::env::args_os().collect();
    let flags = containerd_shim::parse(&args[1..]).context("parse flags")?;
    if flags.version {
        println!("{}:", env!("CARGO_BIN_NAME"));
        println!("  Version:  {}", env!("CARGO_PKG_VERSION"));
        return Ok(());
    }
    if flags.info {
        let info = RuntimeInfo {
            name: RUNTIME_NAME.into(),
            version: MessageField::some(RuntimeVersion {
                version: env!("CARGO_PKG_VERSION").into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        std::io::stdout().write_all(&info.write_to_bytes()?)?;
        return Ok(());
    }
    match flags.action.as_str() {
        "start" => {
            let bundle = std::env::current_dir()?;
            let grouping = shim_support::grouping::read_grouping_key(&bundle, &flags.id);
            let reply = launch::start(&flags, &grouping)?;
            let mut out = std::io::stdout();
            out.write_all(&reply)?;
            out.flush()?;
            Ok(())
        }
        "delete" => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let resp = rt.block_on(delete_action(&flags))?;
            std::io::stdout().write_all(&resp.write_to_bytes()?)?;
            Ok(())
        }
        "" => {
            shim_support::memory::single_arena();
            // One thread serves a pod's few calls; fewer threads, fewer bytes per pod.
            // Blocking-pool threads (runtime command output) go once idle, not
            // after tokio's default 10 s: an idle pod keeps only what it needs.
            let rt = tokio::runtime::Builder::new_current_thread()
                .thread_keep_alive(std::time::Duration::from_secs(1))
                .enable_all()
                .build()?;
            rt.block_on(launch::serve(&flags, |ctx| async move {
                Ok(Arc::new(service::Service::new(ctx)) as Arc<dyn Task + Send + Sync>)
            }))?;
            Ok(())
        }
        other => anyhow::bail!("unknown action {other:?}"),
    }
}

/// Cleans up after a shim that is gone: the runtime's record of the container
/// and the rootfs mount. Reports the container as killed.
async fn delete_action(
    flags: &containerd_shim::Flags,
) -> anyhow::Result<containerd_shim::DeleteResponse> {
    let bundle = if flags.bundle.is_empty() {
        std::env::current_dir()?
    } else {
        PathBuf::from(&flags.bundle)
    };
    let reaper = shim_support::reaper::Reaper::start()?;
    let options = RuntimeOptions::read(&bundle);
    let runtime = Runtime::new(options, &flags.namespace, &bundle, reaper);
    if let Err(e) = runtime.delete(&flags.id, true).await {
        eprintln!("{RUNTIME_NAME}: delete {}: {e}", flags.id);
    }
    service::unmount_rootfs(&bundle.join("rootfs"));
    Ok(containerd_shim::DeleteResponse {
        exit_status: 128 + libc::SIGKILL as u32,
        exited_at: MessageField::some(
            shim_support::events::timestamp(std::time::SystemTime::now()),
        ),
        ..Default::default()
    })
}
