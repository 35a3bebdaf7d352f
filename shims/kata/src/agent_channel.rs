//! The shim's end of the agent's channel: the unix socket qemu serves the VM's
//! virtio-serial port on, after the agent's hello, as a ttrpc client.

use std::path::{Path, PathBuf};
use std::time::Duration;

use protocols::agent::ttrpc::context;
use protocols::agent::ttrpc::r#async::transport::Socket;
use protocols::agent::ttrpc::r#async::Client;
pub use protocols::agent::Stream;
use protocols::agent::{
    AgentClient, CheckRequest, CheckResponse, CloseStdinRequest, ConfigureNetworkRequest,
    ConfigurePodRequest, CreateContainerRequest, ExecProcessRequest, ReadStreamRequest,
    RemoveContainerRequest, ResizeTerminalRequest, ShutdownRequest, SignalContainerRequest,
    StartContainerRequest, WaitContainerRequest, WriteStdinRequest, HELLO,
};
use protocols::agent::{
    ClosePortRequest, OpenPortRequest, ReadPortRequest, StatsContainerRequest,
    UpdateContainerRequest, WaitOomRequest, WritePortRequest,
};
use tokio::io::AsyncReadExt;
use tokio::net::UnixStream;

/// Why the agent could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("connect to the agent socket {path}: {source}")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the guest agent did not answer within {0:?} (no hello on its port)")]
    NoHello(Duration),
    #[error("the agent's port said {0:?}, not the agent's hello")]
    BadHello(String),
    #[error("read the agent's hello: {0}")]
    Read(std::io::Error),
    #[error("agent call {call}: {source}")]
    Call {
        call: &'static str,
        source: protocols::agent::ttrpc::Error,
    },
}

/// A connected agent.
pub struct Agent {
    client: AgentClient,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent").finish_non_exhaustive()
    }
}

/// What a failed agent call `call` returns.
fn failed(call: &'static str) -> impl FnOnce(protocols::agent::ttrpc::Error) -> ChannelError {
    move |source| ChannelError::Call { call, source }
}

/// A ttrpc deadline `timeout` from now.
fn deadline(timeout: Duration) -> context::Context {
    context::with_timeout(i64::try_from(timeout.as_nanos()).unwrap_or(i64::MAX))
}

impl Agent {
    /// Who answers: the agent's version and the guest kernel.
    pub async fn check(&self, timeout: Duration) -> Result<CheckResponse, ChannelError> {
        self.client
            .check(deadline(timeout), &CheckRequest::default())
            .await
            .map_err(failed("Check"))
    }

    /// Creates container `id` from the bundle directory `bundle` of the VM's
    /// shared directory; returns its init's pid in the guest.
    /// With `stdin`, the container gets a stdin pipe ([`Agent::write_stdin`]);
    /// with `terminal` (its spec asks for one), a terminal for its stdio.
    pub async fn create_container(
        &self,
        id: &str,
        bundle: &str,
        stdin: bool,
        terminal: bool,
        timeout: Duration,
    ) -> Result<u32, ChannelError> {
        let req = CreateContainerRequest {
            id: id.into(),
            bundle: bundle.into(),
            stdin,
            terminal,
            ..Default::default()
        };
        self.client
            .create_container(deadline(timeout), &req)
            .await
            .map(|r| r.pid)
            .map_err(failed("CreateContainer"))
    }

    pub async fn start_container(&self, id: &str, timeout: Duration) -> Result<(), ChannelError> {
        let req = StartContainerRequest {
            id: id.into(),
            ..Default::default()
        };
        self.client
            .start_container(deadline(timeout), &req)
            .await
            .map(drop)
            .map_err(failed("StartContainer"))
    }

    /// The exit code of the container's init (`exec_id` empty) or of one of
    /// its exec'd processes, once it has exited.
    pub async fn wait_container(
        &self,
        id: &str,
        exec_id: &str,
        timeout: Duration,
    ) -> Result<i32, ChannelError> {
        let req = WaitContainerRequest {
            id: id.into(),
            exec_id: exec_id.into(),
            ..Default::default()
        };
        self.client
            .wait_container(deadline(timeout), &req)
            .await
            .map(|r| r.exit_status)
            .map_err(failed("WaitContainer"))
    }

    pub async fn signal_container(
        &self,
        id: &str,
        exec_id: &str,
        signal: u32,
        all: bool,
        timeout: Duration,
    ) -> Result<(), ChannelError> {
        let req = SignalContainerRequest {
            id: id.into(),
            exec_id: exec_id.into(),
            signal,
            all,
            ..Default::default()
        };
        self.client
            .signal_container(deadline(timeout), &req)
            .await
            .map(drop)
            .map_err(failed("SignalContainer"))
    }

    pub async fn remove_container(&self, id: &str, timeout: Duration) -> Result<(), ChannelError> {
        let req = RemoveContainerRequest {
            id: id.into(),
            ..Default::default()
        };
        self.client
            .remove_container(deadline(timeout), &req)
            .await
            .map(drop)
            .map_err(failed("RemoveContainer"))
    }

    /// The next bytes of the container's stdout or stderr (at most `max`), once
    /// there are some; empty at the stream's end. No deadline: output may be long
    /// in coming.
    pub async fn read_stream(
        &self,
        id: &str,
        exec_id: &str,
        stream: Stream,
        max: u32,
    ) -> Result<Vec<u8>, ChannelError> {
        let req = ReadStreamRequest {
            id: id.into(),
            exec_id: exec_id.into(),
            stream: stream.into(),
            max_bytes: max,
            ..Default::default()
        };
        self.client
            .read_stream(context::Context::default(), &req)
            .await
            .map(|r| r.data)
            .map_err(failed("ReadStream"))
    }

    pub async fn write_stdin(
        &self,
        id: &str,
        exec_id: &str,
        data: &[u8],
        timeout: Duration,
    ) -> Result<(), ChannelError> {
        let req = WriteStdinRequest {
            id: id.into(),
            exec_id: exec_id.into(),
            data: data.to_vec(),
            ..Default::default()
        };
        self.client
            .write_stdin(deadline(timeout), &req)
            .await
            .map(drop)
            .map_err(failed("WriteStdin"))
    }

    pub async fn close_stdin(
        &self,
        id: &str,
        exec_id: &str,
        timeout: Duration,
    ) -> Result<(), ChannelError> {
        let req = CloseStdinRequest {
            id: id.into(),
            exec_id: exec_id.into(),
            ..Default::default()
        };
        self.client
            .close_stdin(deadline(timeout), &req)
            .await
            .map(drop)
            .map_err(failed("CloseStdin"))
    }

    /// Forgets exec'd process `exec_id` of container `id`, which has exited.
    pub async fn remove_process(
        &self,
        id: &str,
        exec_id: &str,
        timeout: Duration,
    ) -> Result<(), ChannelError> {
        let req = RemoveContainerRequest {
            id: id.into(),
            exec_id: exec_id.into(),
            ..Default::default()
        };
        self.client
            .remove_container(deadline(timeout), &req)
            .await
            .map(drop)
            .map_err(failed("RemoveContainer"))
    }

    /// Runs `process` (the OCI `process` object as JSON) in container `id` as
    /// `exec_id`; returns its pid in the guest.
    pub async fn exec_process(
        &self,
        id: &str,
        exec_id: &str,
        process: &[u8],
        stdin: bool,
        terminal: bool,
        timeout: Duration,
    ) -> Result<u32, ChannelError> {
        let req = ExecProcessRequest {
            id: id.into(),
            exec_id: exec_id.into(),
            process: process.to_vec(),
            stdin,
            terminal,
            ..Default::default()
        };
        self.client
            .exec_process(deadline(timeout), &req)
            .await
            .map(|r| r.pid)
            .map_err(failed("ExecProcess"))
    }

    /// Sets the window size of a process's terminal.
    pub async fn resize_terminal(
        &self,
        id: &str,
        exec_id: &str,
        (width, height): (u32, u32),
        timeout: Duration,
    ) -> Result<(), ChannelError> {
        let req = ResizeTerminalRequest {
            id: id.into(),
            exec_id: exec_id.into(),
            width,
            height,
            ..Default::default()
        };
        self.client
            .resize_terminal(deadline(timeout), &req)
            .await
            .map(drop)
            .map_err(failed("ResizeTerminal"))
    }

    /// A running container's cgroup metrics in the guest.
    pub async fn stats_container(
        &self,
        id: &str,
        timeout: Duration,
    ) -> Result<protocols::shim::protobuf::well_known_types::any::Any, ChannelError> {
        let req = StatsContainerRequest {
            id: id.into(),
            ..Default::default()
        };
        self.client
            .stats_container(deadline(timeout), &req)
            .await
            .map(|r| protocols::shim::protobuf::well_known_types::any::Any {
                type_url: r.type_url,
                value: r.metrics,
                ..Default::default()
            })
            .map_err(failed("StatsContainer"))
    }

    /// Changes a container's cgroup limits (OCI `LinuxResources` JSON).
    pub async fn update_container(
        &self,
        id: &str,
        resources: &[u8],
        timeout: Duration,
    ) -> Result<(), ChannelError> {
        let req = UpdateContainerRequest {
            id: id.into(),
            resources: resources.to_vec(),
            ..Default::default()
        };
        self.client
            .update_container(deadline(timeout), &req)
            .await
            .map(drop)
            .map_err(failed("UpdateContainer"))
    }

    /// Opens a TCP connection to `port` on the guest's loopback; its id.
    pub async fn open_port(&self, port: u16, timeout: Duration) -> Result<u64, ChannelError> {
        let req = OpenPortRequest {
            port: port.into(),
            ..Default::default()
        };
        self.client
            .open_port(deadline(timeout), &req)
            .await
            .map(|r| r.connection)
            .map_err(failed("OpenPort"))
    }

    /// What the connection has (waits for at least one byte); empty at its end.
    pub async fn read_port(
        &self,
        connection: u64,
        max: u32,
        timeout: Duration,
    ) -> Result<Vec<u8>, ChannelError> {
        let req = ReadPortRequest {
            connection,
            max_bytes: max,
            ..Default::default()
        };
        self.client
            .read_port(deadline(timeout), &req)
            .await
            .map(|r| r.data)
            .map_err(failed("ReadPort"))
    }

    pub async fn write_port(
        &self,
        connection: u64,
        data: &[u8],
        timeout: Duration,
    ) -> Result<(), ChannelError> {
        let req = WritePortRequest {
            connection,
            data: data.to_vec(),
            ..Default::default()
        };
        self.client
            .write_port(deadline(timeout), &req)
            .await
            .map(drop)
            .map_err(failed("WritePort"))
    }

    /// Ends the connection's writing side (`write_only`) or the connection.
    pub async fn close_port(
        &self,
        connection: u64,
        write_only: bool,
        timeout: Duration,
    ) -> Result<(), ChannelError> {
        let req = ClosePortRequest {
            connection,
            write_only,
            ..Default::default()
        };
        self.client
            .close_port(deadline(timeout), &req)
            .await
            .map(drop)
            .map_err(failed("ClosePort"))
    }

    /// The next container of the guest whose cgroup had an OOM kill (waits).
    pub async fn wait_oom(&self, timeout: Duration) -> Result<String, ChannelError> {
        self.client
            .wait_oom(deadline(timeout), &WaitOomRequest::default())
            .await
            .map(|r| r.id)
            .map_err(failed("WaitOom"))
    }

    /// Gives the guest the pod's network.
    pub async fn configure_network(
        &self,
        req: &ConfigureNetworkRequest,
        timeout: Duration,
    ) -> Result<(), ChannelError> {
        self.client
            .configure_network(deadline(timeout), req)
            .await
            .map(drop)
            .map_err(failed("ConfigureNetwork"))
    }

    /// Sets up what the pod's containers share in the guest.
    pub async fn configure_pod(
        &self,
        req: &ConfigurePodRequest,
        timeout: Duration,
    ) -> Result<(), ChannelError> {
        self.client
            .configure_pod(deadline(timeout), req)
            .await
            .map(drop)
            .map_err(failed("ConfigurePod"))
    }

    /// Asks the guest to power off; the VM ends after the reply.
    pub async fn shutdown(&self, timeout: Duration) -> Result<(), ChannelError> {
        self.client
            .shutdown(deadline(timeout), &ShutdownRequest::default())
            .await
            .map(drop)
            .map_err(failed("Shutdown"))
    }
}

/// Connects to the agent through `socket` and waits up to `timeout` (the guest's
/// boot) for its hello; then the channel carries ttrpc.
pub async fn connect(socket: &Path, timeout: Duration) -> Result<Agent, ChannelError> {
    let deadline = tokio::time::Instant::now() + timeout;
    // qemu creates the socket file when it binds, a moment before it listens:
    // a refused connection is retried until the deadline.
    let mut stream = loop {
        match UnixStream::connect(socket).await {
            Ok(stream) => break stream,
            Err(e)
                if e.kind() == std::io::ErrorKind::ConnectionRefused
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(source) => {
                return Err(ChannelError::Connect {
                    path: socket.to_path_buf(),
                    source,
                })
            }
        }
    };
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    let mut hello = vec![0u8; HELLO.len()];
    match tokio::time::timeout(left, stream.read_exact(&mut hello)).await {
        Err(_) => return Err(ChannelError::NoHello(timeout)),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Err(ChannelError::NoHello(timeout))
        }
        Ok(Err(e)) => return Err(ChannelError::Read(e)),
        Ok(Ok(_)) => {}
    }
    if hello != HELLO.as_bytes() {
        return Err(ChannelError::BadHello(
            String::from_utf8_lossy(&hello).into_owned(),
        ));
    }
    Ok(Agent {
        client: AgentClient::new(Client::new(Socket::new(stream))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn waits_for_the_hello_and_names_a_silent_agent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("agent.sock");
        let listener = tokio::net::UnixListener::bind(&path).expect("bind");
        let silent = tokio::spawn(async move { listener.accept().await.map(|(s, _)| s) });
        let err = connect(&path, Duration::from_millis(100))
            .await
            .expect_err("no hello");
        assert!(matches!(err, ChannelError::NoHello(_)), "{err}");
        assert!(err.to_string().contains("did not answer"), "{err}");
        drop(silent);
    }

    #[tokio::test]
    async fn a_stranger_on_the_port_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("agent.sock");
        let listener = tokio::net::UnixListener::bind(&path).expect("bind");
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let text = "login: ".repeat(HELLO.len());
            let _ = s.write_all(text.as_bytes()).await;
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        let err = connect(&path, Duration::from_secs(5))
            .await
            .expect_err("bad hello");
        assert!(matches!(err, ChannelError::BadHello(_)), "{err}");
    }

    #[tokio::test]
    async fn a_missing_socket_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = connect(&dir.path().join("none.sock"), Duration::from_secs(1))
            .await
            .expect_err("no socket");
        assert!(err.to_string().contains("none.sock"), "{err}");
    }
}
