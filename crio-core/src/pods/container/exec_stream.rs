//! A streamed exec (the CRI `Exec` RPC's session): a process in a running container
//! through the shim's `Exec`, its stdio handed to the streaming server as pipes,
//! its terminal resized through `ResizePty`, its exit code from `Wait`.

use std::sync::Arc;

use protocols::shim::api;
use tokio::net::unix::pipe;

use super::exec::exec_process;
use crate::error::CriError;
use crate::logs::{StdioFifos, StdioPaths};
use crate::pods::PodRuntime;
use crate::runtime::PodShim;
use crate::store::new_id;

/// A running exec. Its owner must call [`ExecStream::finish`] (a client that went
/// away leaves no process behind).
#[derive(Debug)]
pub(crate) struct ExecStream {
    /// Write end of the process's stdin (when asked for); drop it for end-of-file.
    pub stdin: Option<pipe::Sender>,
    pub stdout: Option<pipe::Receiver>,
    /// None with a tty (its output all comes on stdout).
    pub stderr: Option<pipe::Receiver>,
    shim: Arc<PodShim>,
    container_id: String,
    exec_id: String,
    paths: StdioPaths,
}

impl PodRuntime {
    /// Starts `cmd` in container `id`.
    pub(crate) async fn start_exec(
        &self,
        id: &str,
        cmd: &[String],
        tty: bool,
        stdin: bool,
    ) -> Result<ExecStream, CriError> {
        if cmd.is_empty() {
            return Err(CriError::InvalidArgument("Exec needs a command".into()));
        }
        let record = self.running_container(id)?;
        let shim = self.shims.require(&record.sandbox_id)?;
        let spec = exec_process(&record, cmd, tty)?;
        let exec_id = format!("exec-{}", &new_id()[..16]);
        let dir = record.bundle.join("exec");
        let mut fifos = StdioFifos::create(&dir, &exec_id, tty)?;
        if stdin {
            fifos = fifos.with_stdin(&dir, &exec_id)?;
        }
        let mut stream = ExecStream {
            stdin: fifos.stdin.take(),
            stdout: fifos.stdout.take(),
            stderr: fifos.stderr.take(),
            shim,
            container_id: record.id.clone(),
            exec_id,
            paths: fifos.paths.clone(),
        };
        let started = async {
            stream
                .shim
                .client
                .exec(&api::ExecProcessRequest {
                    id: stream.container_id.clone(),
                    exec_id: stream.exec_id.clone(),
                    terminal: tty,
                    stdin: stream.paths.stdin.clone(),
                    stdout: stream.paths.stdout.clone(),
                    stderr: stream.paths.stderr.clone(),
                    spec: Some(spec).into(),
                    ..Default::default()
                })
                .await?;
            stream
                .shim
                .client
                .start(&api::StartRequest {
                    id: stream.container_id.clone(),
                    exec_id: stream.exec_id.clone(),
                    ..Default::default()
                })
                .await?;
            Ok::<(), CriError>(())
        }
        .await;
        // The shim holds its ends now (or never will): end-of-file can come.
        fifos.release();
        match started {
            Ok(()) => Ok(stream),
            Err(e) => {
                stream.stdin.take();
                stream.finish().await;
                Err(e)
            }
        }
    }
}

impl ExecStream {
    pub(crate) async fn resize(&self, width: u32, height: u32) -> Result<(), CriError> {
        self.shim
            .client
            .resize_pty(&api::ResizePtyRequest {
                id: self.container_id.clone(),
                exec_id: self.exec_id.clone(),
                width,
                height,
                ..Default::default()
            })
            .await?;
        Ok(())
    }

    /// End-of-file on the process's stdin: our write end goes, and the shim closes
    /// its own (`CloseIO`), as containerd does when a client closes stdin.
    pub(crate) async fn close_stdin(&mut self) {
        self.stdin = None;
        if let Err(e) = self
            .shim
            .client
            .close_io(&api::CloseIORequest {
                id: self.container_id.clone(),
                exec_id: self.exec_id.clone(),
                stdin: true,
                ..Default::default()
            })
            .await
        {
            tracing::debug!(exec = %self.exec_id, "CloseIO: {e}");
        }
    }

    /// Waits for the process to exit; its exit code.
    pub(crate) async fn wait(&self) -> Result<i32, CriError> {
        let exit = self
            .shim
            .client
            .wait(&api::WaitRequest {
                id: self.container_id.clone(),
                exec_id: self.exec_id.clone(),
                ..Default::default()
            })
            .await?;
        Ok(i32::try_from(exit.exit_status).unwrap_or(255))
    }

    /// Kills the process if it still runs, deletes it from the shim and removes
    /// its FIFOs.
    pub(crate) async fn finish(self) {
        let _ = self
            .shim
            .client
            .kill(&api::KillRequest {
                id: self.container_id.clone(),
                exec_id: self.exec_id.clone(),
                signal: 9,
                ..Default::default()
            })
            .await;
        let _ = self.wait().await;
        let _ = self
            .shim
            .client
            .delete(&api::DeleteRequest {
                id: self.container_id.clone(),
                exec_id: self.exec_id.clone(),
                ..Default::default()
            })
            .await;
        for path in [&self.paths.stdin, &self.paths.stdout, &self.paths.stderr] {
            if !path.is_empty() {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}
