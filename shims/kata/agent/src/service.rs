//! The agent API's handlers.

use std::sync::Arc;
use std::time::Duration;

use protocols::agent::ttrpc::r#async::TtrpcContext;
use protocols::agent::ttrpc::Result as TtrpcResult;
use protocols::agent::{
    Agent, CheckRequest, CheckResponse, CloseStdinRequest, CloseStdinResponse,
    ConfigureNetworkRequest, ConfigureNetworkResponse, ConfigurePodRequest, ConfigurePodResponse,
    CreateContainerRequest, CreateContainerResponse, ExecProcessRequest, ExecProcessResponse,
    ReadStreamRequest, ReadStreamResponse, RemoveContainerRequest, RemoveContainerResponse,
    ResizeTerminalRequest, ResizeTerminalResponse, ShutdownRequest, ShutdownResponse,
    SignalContainerRequest, SignalContainerResponse, StartContainerRequest, StartContainerResponse,
    Stream, WaitContainerRequest, WaitContainerResponse, WriteStdinRequest, WriteStdinResponse,
};
use protocols::agent::{
    ClosePortRequest, ClosePortResponse, OpenPortRequest, OpenPortResponse, ReadPortRequest,
    ReadPortResponse, StatsContainerRequest, StatsContainerResponse, UpdateContainerRequest,
    UpdateContainerResponse, WaitOomRequest, WaitOomResponse, WritePortRequest, WritePortResponse,
};
use tokio::sync::Notify;

use crate::containers::{Containers, Output};

/// The agent's state: what it says of the guest, its containers, and the shutdown
/// it was asked for.
#[derive(Debug)]
pub struct AgentService {
    /// Milliseconds after the guest kernel started that the agent was ready.
    ready_after_ms: u64,
    containers: Containers,
    ports: crate::ports::Ports,
    shutdown: Arc<Notify>,
}

impl AgentService {
    /// `shutdown` is notified once a Shutdown call is answered.
    pub fn new(ready_after: Duration, containers: Containers, shutdown: Arc<Notify>) -> Self {
        AgentService {
            ready_after_ms: u64::try_from(ready_after.as_millis()).unwrap_or(u64::MAX),
            containers,
            ports: crate::ports::Ports::default(),
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
    async fn check(&self, _ctx: &TtrpcContext, _req: CheckRequest) -> TtrpcResult<CheckResponse> {
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
    ) -> TtrpcResult<ShutdownResponse> {
        // The caller (main) powers off once the reply has gone out.
        self.shutdown.notify_one();
        Ok(ShutdownResponse::default())
    }

    async fn resize_terminal(
        &self,
        _ctx: &TtrpcContext,
        req: ResizeTerminalRequest,
    ) -> TtrpcResult<ResizeTerminalResponse> {
        self.containers
            .resize(&req.id, &req.exec_id, req.width, req.height)?;
        Ok(ResizeTerminalResponse::default())
    }

    async fn stats_container(
        &self,
        _ctx: &TtrpcContext,
        req: StatsContainerRequest,
    ) -> TtrpcResult<StatsContainerResponse> {
        let metrics = self.containers.stats(&req.id).await?;
        Ok(StatsContainerResponse {
            type_url: metrics.type_url,
            metrics: metrics.value,
            ..Default::default()
        })
    }

    async fn update_container(
        &self,
        _ctx: &TtrpcContext,
        req: UpdateContainerRequest,
    ) -> TtrpcResult<UpdateContainerResponse> {
        self.containers.update(&req.id, &req.resources).await?;
        Ok(UpdateContainerResponse::default())
    }

    async fn open_port(
        &self,
        _ctx: &TtrpcContext,
        req: OpenPortRequest,
    ) -> TtrpcResult<OpenPortResponse> {
        let connection = self.ports.open(req.port).await?;
        Ok(OpenPortResponse {
            connection,
            ..Default::default()
        })
    }

    async fn read_port(
        &self,
        _ctx: &TtrpcContext,
        req: ReadPortRequest,
    ) -> TtrpcResult<ReadPortResponse> {
        let max = usize::try_from(req.max_bytes).unwrap_or(usize::MAX);
        let data = self.ports.read(req.connection, max).await?;
        Ok(ReadPortResponse {
            data,
            ..Default::default()
        })
    }

    async fn write_port(
        &self,
        _ctx: &TtrpcContext,
        req: WritePortRequest,
    ) -> TtrpcResult<WritePortResponse> {
        self.ports.write(req.connection, &req.data).await?;
        Ok(WritePortResponse::default())
    }

    async fn close_port(
        &self,
        _ctx: &TtrpcContext,
        req: ClosePortRequest,
    ) -> TtrpcResult<ClosePortResponse> {
        self.ports.close(req.connection, req.write_only).await?;
        Ok(ClosePortResponse::default())
    }

    async fn wait_oom(
        &self,
        _ctx: &TtrpcContext,
        _req: WaitOomRequest,
    ) -> TtrpcResult<WaitOomResponse> {
        let id = self.containers.next_oom().await?;
        Ok(WaitOomResponse {
            id,
            ..Default::default()
        })
    }

    async fn configure_network(
        &self,
        _ctx: &TtrpcContext,
        req: ConfigureNetworkRequest,
    ) -> TtrpcResult<ConfigureNetworkResponse> {
        let network = crate::network::pod_network(&req)?;
        tokio::task::spawn_blocking(move || crate::network::configure(&network))
            .await
            .map_err(|e| shim_support::Error::Other(format!("configure the pod network: {e}")))??;
        Ok(ConfigureNetworkResponse::default())
    }

    async fn configure_pod(
        &self,
        _ctx: &TtrpcContext,
        req: ConfigurePodRequest,
    ) -> TtrpcResult<ConfigurePodResponse> {
        crate::sysctl::set_all(std::path::Path::new("/proc/sys"), &req.sysctls)?;
        if req.shm_size > 0 {
            crate::init::mount_pod_shm(req.shm_size)?;
        }
        Ok(ConfigurePodResponse::default())
    }

    async fn create_container(
        &self,
        _ctx: &TtrpcContext,
        req: CreateContainerRequest,
    ) -> TtrpcResult<CreateContainerResponse> {
        let pid = self
            .containers
            .create(&req.id, &req.bundle, req.stdin, req.terminal)
            .await?;
        Ok(CreateContainerResponse {
            pid,
            ..Default::default()
        })
    }

    async fn start_container(
        &self,
        _ctx: &TtrpcContext,
        req: StartContainerRequest,
    ) -> TtrpcResult<StartContainerResponse> {
        self.containers.start(&req.id).await?;
        Ok(StartContainerResponse::default())
    }

    async fn wait_container(
        &self,
        _ctx: &TtrpcContext,
        req: WaitContainerRequest,
    ) -> TtrpcResult<WaitContainerResponse> {
        let exit_status = self.containers.wait(&req.id, &req.exec_id).await?;
        Ok(WaitContainerResponse {
            exit_status,
            ..Default::default()
        })
    }

    async fn signal_container(
        &self,
        _ctx: &TtrpcContext,
        req: SignalContainerRequest,
    ) -> TtrpcResult<SignalContainerResponse> {
        self.containers
            .signal(&req.id, &req.exec_id, req.signal, req.all)
            .await?;
        Ok(SignalContainerResponse::default())
    }

    async fn remove_container(
        &self,
        _ctx: &TtrpcContext,
        req: RemoveContainerRequest,
    ) -> TtrpcResult<RemoveContainerResponse> {
        if req.exec_id.is_empty() {
            self.containers.remove(&req.id).await?;
        } else {
            self.containers.forget_exec(&req.id, &req.exec_id)?;
        }
        Ok(RemoveContainerResponse::default())
    }

    async fn exec_process(
        &self,
        _ctx: &TtrpcContext,
        req: ExecProcessRequest,
    ) -> TtrpcResult<ExecProcessResponse> {
        let pid = self
            .containers
            .exec(&req.id, &req.exec_id, &req.process, req.stdin, req.terminal)
            .await?;
        Ok(ExecProcessResponse {
            pid,
            ..Default::default()
        })
    }

    async fn read_stream(
        &self,
        _ctx: &TtrpcContext,
        req: ReadStreamRequest,
    ) -> TtrpcResult<ReadStreamResponse> {
        let output = match req.stream.enum_value_or_default() {
            Stream::STDOUT => Output::Stdout,
            Stream::STDERR => Output::Stderr,
        };
        let max = usize::try_from(req.max_bytes).unwrap_or(usize::MAX);
        let data = self
            .containers
            .read(&req.id, &req.exec_id, output, max)
            .await?;
        Ok(ReadStreamResponse {
            data,
            ..Default::default()
        })
    }

    async fn write_stdin(
        &self,
        _ctx: &TtrpcContext,
        req: WriteStdinRequest,
    ) -> TtrpcResult<WriteStdinResponse> {
        let written = self
            .containers
            .write_stdin(&req.id, &req.exec_id, &req.data)
            .await?;
        Ok(WriteStdinResponse {
            written: u32::try_from(written).unwrap_or(u32::MAX),
            ..Default::default()
        })
    }

    async fn close_stdin(
        &self,
        _ctx: &TtrpcContext,
        req: CloseStdinRequest,
    ) -> TtrpcResult<CloseStdinResponse> {
        self.containers.close_stdin(&req.id, &req.exec_id).await?;
        Ok(CloseStdinResponse::default())
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
        let dir = std::env::temp_dir();
        let containers = Containers::new(
            dir.join("shared"),
            dir.join("state"),
            std::path::Path::new("/nonexistent"),
            &dir.join("root"),
            shim_support::reaper::Reaper::default(),
        );
        let service = AgentService::new(
            Duration::from_millis(420),
            containers,
            Arc::clone(&shutdown),
        );
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
    async fn container_calls_carry_the_error_kind() {
        let (_server, client, _) = serve().await;
        let err = client
            .start_container(
                context::with_timeout(5_000_000_000),
                &StartContainerRequest {
                    id: "nothere".into(),
                    ..Default::default()
                },
            )
            .await
            .expect_err("unknown container");
        match err {
            protocols::agent::ttrpc::Error::RpcStatus(s) => {
                assert_eq!(s.code(), protocols::agent::ttrpc::Code::NOT_FOUND);
                assert!(s.message().contains("nothere"), "{}", s.message());
            }
            other => panic!("{other:?}"),
        }
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
