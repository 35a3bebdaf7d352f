//! The agent API's handlers.

use std::sync::Arc;
use std::time::Duration;

use protocols::agent::ttrpc::r#async::TtrpcContext;
use protocols::agent::{Agent, CheckRequest, CheckResponse, ShutdownRequest, ShutdownResponse};
use tokio::sync::Notify;

/// The agent's state: what it says of the guest, and the shutdown it was asked for.
#[derive(Debug)]
pub struct AgentService {
    /// Milliseconds after the guest kernel started that the agent was ready.
    ready_after_ms: u64,
    shutdown: Arc<Notify>,
}

impl AgentService {
    /// `shutdown` is notified once a Shutdown call is answered.
    pub fn new(ready_after: Duration, shutdown: Arc<Notify>) -> Self {
        AgentService {
            ready_after_ms: u64::try_from(ready_after.as_millis()).unwrap_or(u64::MAX),
            shutdown,
        }
    }
}

/// The running kernel's release (`uname -r`).
pub fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Time since the kernel started (`CLOCK_BOOTTIME`).
pub fn since_boot() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .map(Duration::from)
        .unwrap_or_default()
}

#[async_trait::async_trait]
impl Agent for AgentService {
    async fn check(
        &self,
        _ctx: &TtrpcContext,
        _req: CheckRequest,
    ) -> protocols::agent::ttrpc::Result<CheckResponse> {
        Ok(CheckResponse {
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            kernel_release: kernel_release(),
            ready_after_ms: self.ready_after_ms,
            ..Default::default()
        })
    }

    async fn shutdown(
        &self,
        _ctx: &TtrpcContext,
        _req: ShutdownRequest,
    ) -> protocols::agent::ttrpc::Result<ShutdownResponse> {
        // The caller (main) powers off once the reply has gone out.
        self.shutdown.notify_one();
        Ok(ShutdownResponse::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocols::agent::ttrpc::context;
    use protocols::agent::ttrpc::r#async::transport::{Listener, Socket};
    use protocols::agent::ttrpc::r#async::{Client, Server};
    use protocols::agent::{create_agent, AgentClient};

    /// The service over an in-memory byte stream, as the shim reaches it.
    async fn serve() -> (Server, AgentClient, Arc<Notify>) {
        let shutdown = Arc::new(Notify::new());
        let service = AgentService::new(Duration::from_millis(420), Arc::clone(&shutdown));
        let (host, guest) = tokio::io::duplex(4096);
        let listener =
            Listener::new(futures::stream::iter([Ok(guest)]).chain(futures::stream::pending()));
        let mut server = Server::new()
            .add_listener(listener)
            .register_service(create_agent(Arc::new(service)));
        server.start().await.expect("start");
        let client = AgentClient::new(Client::new(Socket::new(host)));
        (server, client, shutdown)
    }

    use futures::StreamExt;

    #[tokio::test]
    async fn check_names_the_kernel_and_the_ready_time() {
        let (_server, client, _) = serve().await;
        let reply = client
            .check(
                context::with_timeout(5_000_000_000),
                &CheckRequest::default(),
            )
            .await
            .expect("check");
        assert_eq!(reply.agent_version, env!("CARGO_PKG_VERSION"));
        assert_eq!(reply.kernel_release, kernel_release());
        assert!(!reply.kernel_release.is_empty());
        assert_eq!(reply.ready_after_ms, 420);
    }

    #[tokio::test]
    async fn shutdown_is_answered_then_signalled() {
        let (_server, client, shutdown) = serve().await;
        let notified = shutdown.notified();
        client
            .shutdown(
                context::with_timeout(5_000_000_000),
                &ShutdownRequest::default(),
            )
            .await
            .expect("shutdown");
        tokio::time::timeout(Duration::from_secs(5), notified)
            .await
            .expect("main is told to power off");
    }
}
