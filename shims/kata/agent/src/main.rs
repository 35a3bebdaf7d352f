//! `crio-kata-agent`: PID 1 of a VM pod's guest (see the library's docs).
//!
//! As PID 1 it mounts the base filesystems and the pod's shared directory, reaps
//! orphans and serves on the virtio-serial port named `agent`.
//! `crio-kata-agent --port PATH` serves on the device at PATH instead, without PID
//! 1's duties. Run as `crio-kata-agent --root ...` it is the containers' runtime:
//! runc's command line, answered by youki's libcontainer.

use std::sync::Arc;

use crio_kata_agent::containers::Containers;
use crio_kata_agent::{init, port, service};
use protocols::agent::create_agent;
use protocols::agent::ttrpc::r#async::transport::Listener;
use protocols::agent::ttrpc::r#async::Server;
use tokio::sync::Notify;

/// The runtime's state in the guest.
const RUNTIME_ROOT: &str = "/run/crio-rs/youki";
/// The agent's own per-container state in the guest.
const STATE_DIR: &str = "/run/crio-rs/containers";

/// How long the Shutdown reply is given before the VM powers off.
const REPLY_GRACE: std::time::Duration = std::time::Duration::from_millis(100);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // The runtime commands always start with `--root`.
    if args.get(1).map(String::as_str) == Some("--root") {
        std::process::exit(youki_cli::cli::run(&args[1..]));
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .without_time()
        .init();
    let pid1 = std::process::id() == 1;
    if pid1 {
        if let Err(e) = init::leave_initramfs_mount() {
            fail(&format!("leave the initramfs mount: {e}"));
        }
        if let Err(e) = init::mount_base() {
            fail(&format!("mount the base filesystems: {e}"));
        }
        // A VM without the shared directory still answers Check; creating a
        // container then says its bundle is missing.
        if let Err(e) = init::mount_shared() {
            tracing::warn!("{e}");
        }
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => fail(&format!("tokio runtime: {e}")),
    };
    if let Err(e) = runtime.block_on(serve()) {
        fail(&e);
    }
    init::power_off();
}

/// Serves until a Shutdown call has been answered.
async fn serve() -> Result<(), String> {
    // As PID 1 every orphan of the guest is the agent's to reap.
    let reaper = shim_support::reaper::Reaper::start().map_err(|e| format!("reaper: {e}"))?;
    let path = match std::env::args().skip_while(|a| a != "--port").nth(1) {
        Some(path) => path.into(),
        None => port::find_port(
            std::path::Path::new("/sys/class/virtio-ports"),
            std::path::Path::new("/dev"),
            crio_kata_agent::PORT_NAME,
        )
        .map_err(|e| e.to_string())?,
    };
    let shutdown = Arc::new(Notify::new());
    let own = std::env::current_exe().map_err(|e| format!("own executable: {e}"))?;
    let containers = Containers::new(
        init::SHARED_DIR.into(),
        STATE_DIR.into(),
        &own,
        std::path::Path::new(RUNTIME_ROOT),
        reaper,
    );
    let service =
        service::AgentService::new(service::since_boot(), containers, Arc::clone(&shutdown));
    let mut server = Server::new()
        .add_listener(Listener::new(port::connections(path.clone())))
        .register_service(create_agent(Arc::new(service)));
    server
        .start()
        .await
        .map_err(|e| format!("serve on {}: {e}", path.display()))?;
    tracing::info!(port = %path.display(), kernel = %service::kernel_release(), "agent serving");
    shutdown.notified().await;
    // The reply is on its way by now; a connection the host keeps open would hold
    // `disconnect` for ttrpc's whole 10 s timeout.
    let _ = tokio::time::timeout(REPLY_GRACE, server.disconnect()).await;
    tracing::info!("shutting down");
    Ok(())
}

/// A PID 1 that returns panics the kernel; the message is on the console first.
fn fail(message: &str) -> ! {
    tracing::error!("crio-kata-agent: {message}");
    init::power_off()
}
