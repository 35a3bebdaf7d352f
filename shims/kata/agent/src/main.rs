//! `crio-kata-agent`: PID 1 of a VM pod's guest (see the library's docs).
//!
//! As PID 1 it mounts the base filesystems, reaps orphans and serves on the
//! virtio-serial port named `agent`. `crio-kata-agent --port PATH` serves on the
//! device or FIFO-like file at PATH instead, without PID 1's duties.

use std::sync::Arc;

use crio_kata_agent::{init, port, service};
use protocols::agent::create_agent;
use protocols::agent::ttrpc::r#async::transport::Listener;
use protocols::agent::ttrpc::r#async::Server;
use tokio::sync::Notify;

fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .without_time()
        .init();
    let pid1 = std::process::id() == 1;
    if pid1 {
        if let Err(e) = init::mount_base() {
            fail(&format!("mount the base filesystems: {e}"));
        }
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => fail(&format!("tokio runtime: {e}")),
    };
    if let Err(e) = runtime.block_on(serve(pid1)) {
        fail(&e);
    }
    init::power_off();
}

/// Serves until a Shutdown call has been answered.
async fn serve(pid1: bool) -> Result<(), String> {
    if pid1 {
        init::spawn_reaper().map_err(|e| format!("SIGCHLD handler: {e}"))?;
    }
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
    let service = service::AgentService::new(service::since_boot(), Arc::clone(&shutdown));
    let mut server = Server::new()
        .add_listener(Listener::new(port::connections(path.clone())))
        .register_service(create_agent(Arc::new(service)));
    server
        .start()
        .await
        .map_err(|e| format!("serve on {}: {e}", path.display()))?;
    tracing::info!(port = %path.display(), kernel = %service::kernel_release(), "agent serving");
    shutdown.notified().await;
    server.disconnect().await;
    tracing::info!("shutting down");
    Ok(())
}

/// A PID 1 that returns panics the kernel; the message is on the console first.
fn fail(message: &str) -> ! {
    tracing::error!("crio-kata-agent: {message}");
    init::power_off()
}
