//! Attach: a client joins a running container's own stdio. Output comes from the
//! tee of the core's log drains (the container writes once, the log and every
//! attached client read it); stdin is the container's stdin FIFO, which the core
//! holds open for the container's life (`stdin_once`: the first client to close it
//! closes it for good).

use std::sync::Arc;

use protocols::shim::api;
use tokio::io::AsyncWriteExt;
use tokio::net::unix::pipe;
use tokio::sync::{broadcast, Mutex};

use crate::error::CriError;
use crate::logs::Stream;
use crate::pods::PodRuntime;
use crate::runtime::PodShim;
use crate::store::ContainerState;

/// What a running container offers attach clients.
#[derive(Debug, Clone)]
pub(crate) struct AttachIo {
    /// Weak: when the log drains end (the container's output closed), attached
    /// clients see the end too.
    pub output: tokio::sync::broadcast::WeakSender<(Stream, bytes::Bytes)>,
    /// The container's stdin (None: created without `stdin`, or closed for good).
    pub stdin: Arc<Mutex<Option<pipe::Sender>>>,
}

/// One attached client.
#[derive(Debug)]
pub(crate) struct AttachStream {
    pub output: broadcast::Receiver<(Stream, bytes::Bytes)>,
    stdin: Option<Arc<Mutex<Option<pipe::Sender>>>>,
    stdin_once: bool,
    container_id: String,
    shim: Arc<PodShim>,
    pods: Arc<PodRuntime>,
}

impl PodRuntime {
    /// Attaches to running container `id`; `stdin` only for a container created
    /// with `stdin`.
    pub(crate) fn attach_to(
        self: &Arc<Self>,
        id: &str,
        stdin: bool,
    ) -> Result<AttachStream, CriError> {
        let record = self.container(id)?;
        if record.state != ContainerState::Running || self.has_exited(&record.id) {
            return Err(CriError::FailedPrecondition(format!(
                "container {} is not running",
                record.id
            )));
        }
        if stdin && !record.stdin {
            return Err(CriError::InvalidArgument(format!(
                "container {} was not created with stdin",
                record.id
            )));
        }
        let io = self
            .attach
            .lock()
            .ok()
            .and_then(|a| a.get(&record.id).cloned())
            .ok_or_else(|| {
                CriError::Internal(format!("container {}: no output to attach to", record.id))
            })?;
        let output = io.output.upgrade().ok_or_else(|| {
            CriError::FailedPrecondition(format!("container {}: its output is closed", record.id))
        })?;
        Ok(AttachStream {
            output: output.subscribe(),
            stdin: stdin.then_some(io.stdin),
            stdin_once: record.stdin_once,
            container_id: record.id.clone(),
            shim: self.shims.require(&record.sandbox_id)?,
            pods: self.clone(),
        })
    }
}

/// The container's stdin, shared by its attached clients.
#[derive(Debug, Clone)]
pub(crate) struct SharedStdin(Arc<Mutex<Option<pipe::Sender>>>);

impl SharedStdin {
    /// Writes to the container's stdin (an error once it is closed).
    pub(crate) async fn write(&self, data: &[u8]) -> std::io::Result<()> {
        match self.0.lock().await.as_mut() {
            Some(w) => w.write_all(data).await,
            None => Err(std::io::ErrorKind::BrokenPipe.into()),
        }
    }
}

impl AttachStream {
    /// A handle on the container's stdin, when this client may write to it.
    pub(crate) fn stdin(&self) -> Option<SharedStdin> {
        self.stdin.clone().map(SharedStdin)
    }

    /// The client closed stdin: with `stdin_once` the container's stdin closes
    /// (end-of-file for the process); otherwise it stays open for the next client.
    pub(crate) async fn close_stdin(&mut self) {
        let Some(stdin) = self.stdin.take() else {
            return;
        };
        if !self.stdin_once {
            return;
        }
        stdin.lock().await.take();
        if let Err(e) = self
            .shim
            .client
            .close_io(&api::CloseIORequest {
                id: self.container_id.clone(),
                stdin: true,
                ..Default::default()
            })
            .await
        {
            tracing::debug!(container = %self.container_id, "CloseIO: {e}");
        }
    }

    pub(crate) async fn resize(&self, width: u32, height: u32) -> Result<(), CriError> {
        self.shim
            .client
            .resize_pty(&api::ResizePtyRequest {
                id: self.container_id.clone(),
                width,
                height,
                ..Default::default()
            })
            .await?;
        Ok(())
    }

    /// Waits for the container to exit; its exit code.
    pub(crate) async fn wait(&self) -> Result<i32, CriError> {
        let exit = self
            .pods
            .wait_exit(
                &self.container_id,
                std::time::Duration::from_secs(10 * 365 * 86400),
            )
            .await
            .ok_or_else(|| CriError::Internal("container exit not known".into()))?;
        Ok(i32::try_from(exit.status).unwrap_or(255))
    }
}
