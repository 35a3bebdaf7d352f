//! What a remotecommand session drives, whichever the transport: a process exec'd
//! in a container, or a container's own stdio (attach).

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::error::CriError;
use crate::logs::Stream;
use crate::pods::container::{AttachStream, ExecStream, SharedStdin};

#[derive(Debug)]
pub(crate) enum Target {
    Exec(ExecStream),
    Attach(AttachStream),
}

/// Where the client's stdin goes.
#[derive(Debug)]
pub(crate) enum StdinWriter {
    Pipe(pipe::Sender),
    Shared(SharedStdin),
}

impl StdinWriter {
    pub(crate) async fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            StdinWriter::Pipe(p) => p.write_all(data).await,
            StdinWriter::Shared(s) => s.write(data).await,
        }
    }
}

/// Receives output: `Some(data)` for a chunk, `None` once that stream ended; the
/// copy waits for the returned future (the transport's backpressure).
pub(crate) type Emit = std::sync::Arc<
    dyn Fn(Stream, Option<Bytes>) -> futures::future::BoxFuture<'static, ()> + Send + Sync,
>;

impl Target {
    pub(crate) fn is_attach(&self) -> bool {
        matches!(self, Target::Attach(_))
    }

    pub(crate) fn take_stdin(&mut self) -> Option<StdinWriter> {
        match self {
            Target::Exec(e) => e.stdin.take().map(StdinWriter::Pipe),
            Target::Attach(a) => a.stdin().map(StdinWriter::Shared),
        }
    }

    /// Starts copying the output to `emit`; the tasks end at end-of-file.
    pub(crate) fn spawn_output(&mut self, emit: Emit) -> Vec<JoinHandle<()>> {
        match self {
            Target::Exec(e) => [
                (e.stdout.take(), Stream::Stdout),
                (e.stderr.take(), Stream::Stderr),
            ]
            .into_iter()
            .filter_map(|(reader, stream)| {
                let mut reader = reader?;
                let emit = emit.clone();
                Some(tokio::spawn(async move {
                    let mut buf = vec![0u8; 32 * 1024];
                    loop {
                        match reader.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => emit(stream, Some(Bytes::copy_from_slice(&buf[..n]))).await,
                        }
                    }
                    emit(stream, None).await;
                }))
            })
            .collect(),
            Target::Attach(a) => {
                let mut output = a.output.resubscribe();
                vec![tokio::spawn(async move {
                    loop {
                        match output.recv().await {
                            Ok((stream, data)) => emit(stream, Some(data)).await,
                            Err(broadcast::error::RecvError::Lagged(n)) => {
                                tracing::debug!("attach client fell {n} chunks behind");
                            }
                            Err(broadcast::error::RecvError::Closed) => break,
                        }
                    }
                    emit(Stream::Stdout, None).await;
                    emit(Stream::Stderr, None).await;
                })]
            }
        }
    }

    pub(crate) async fn close_stdin(&mut self) {
        match self {
            Target::Exec(e) => e.close_stdin().await,
            Target::Attach(a) => a.close_stdin().await,
        }
    }

    pub(crate) async fn resize(&self, width: u32, height: u32) -> Result<(), CriError> {
        match self {
            Target::Exec(e) => e.resize(width, height).await,
            Target::Attach(a) => a.resize(width, height).await,
        }
    }

    /// Waits for the process (or container) to exit; its exit code.
    pub(crate) async fn wait(&self) -> Result<i32, CriError> {
        match self {
            Target::Exec(e) => e.wait().await,
            Target::Attach(a) => a.wait().await,
        }
    }

    /// An exec'd process is killed if still running and removed; an attached
    /// container is left as it is.
    pub(crate) async fn finish(self) {
        if let Target::Exec(e) = self {
            e.finish().await;
        }
    }
}
