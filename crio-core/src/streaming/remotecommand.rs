//! Exec over the WebSocket channel protocol (remotecommand v1, v4, v5): stdin on
//! channel 0, stdout 1, stderr 2, the exit status on 3, terminal resizes on 4, and
//! (v5) channel 255 to close stdin.

use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::ws_channels::{decode, encode, ChannelProtocol};
use crate::container::ExecStream;

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const ERROR: u8 = 3;
pub const RESIZE: u8 = 4;
/// v5: `[255, channel]` half-closes a channel (stdin).
pub const CLOSE: u8 = 255;

/// How long output may still drain after the process exited.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Which streams the client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Streams {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// A terminal size message (remotecommand's `TerminalSize`).
#[derive(Debug, Deserialize, Serialize, PartialEq)]
pub struct TerminalSize {
    #[serde(rename = "Width")]
    pub width: u16,
    #[serde(rename = "Height")]
    pub height: u16,
}

/// What the error channel carries at the end (v4 and later): a metav1.Status.
pub fn exit_status_json(cmd: &[String], exit_code: i32) -> String {
    if exit_code == 0 {
        return r#"{"metadata":{},"status":"Success"}"#.to_string();
    }
    serde_json::json!({
        "metadata": {},
        "status": "Failure",
        "message": format!(
            "command terminated with non-zero exit code: error executing command {cmd:?}, exit code {exit_code}"
        ),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": exit_code.to_string()}]}
    })
    .to_string()
}

/// Why the session loop stopped.
enum Step {
    Exited(Result<i32, crate::server::CriError>),
    Gone,
    CloseStdin,
}

/// Ends a session that could not start: the reason on the error channel.
pub async fn refuse<S>(mut ws: WebSocketStream<S>, protocol: ChannelProtocol, reason: &str)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let text = if protocol.version >= 4 {
        serde_json::json!({"metadata": {}, "status": "Failure", "message": reason}).to_string()
    } else {
        reason.to_string()
    };
    let _ = ws
        .send(encode(protocol.encoding, ERROR, text.as_bytes()))
        .await;
    let _ = ws.close(None).await;
}

/// Runs one exec session until the process exits (its status goes on the error
/// channel) or the client goes away (the process is killed).
pub async fn serve_exec<S>(
    ws: WebSocketStream<S>,
    protocol: ChannelProtocol,
    mut exec: ExecStream,
    streams: Streams,
    cmd: Vec<String>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let encoding = protocol.encoding;
    let (mut sink, mut source) = ws.split();
    let (tx, mut rx) = mpsc::channel::<Message>(64);
    let writer = tokio::spawn(async move {
        while let Some(message) = rx.recv().await {
            if sink.send(message).await.is_err() {
                return;
            }
        }
        let _ = sink.close().await;
    });
    // The client learns the session is up from an empty message on its first
    // output channel, as the kubelet sends it.
    let first = if streams.stdout {
        STDOUT
    } else if streams.stderr {
        STDERR
    } else {
        ERROR
    };
    let _ = tx.send(encode(encoding, first, b"")).await;

    let pumps: Vec<_> = [
        (exec.stdout.take(), STDOUT, streams.stdout),
        (exec.stderr.take(), STDERR, streams.stderr),
    ]
    .into_iter()
    .filter_map(|(reader, channel, wanted)| {
        let mut reader = reader?;
        let tx = tx.clone();
        Some(tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match reader.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) if wanted => {
                        if tx.send(encode(encoding, channel, &buf[..n])).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                }
            }
        }))
    })
    .collect();

    // Stdin is written here, between waits; closing it needs the shim (CloseIO).
    let mut stdin = exec.stdin.take();
    let exit = loop {
        let step = {
            let wait = exec.wait();
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    code = &mut wait => break Step::Exited(code),
                    message = source.next() => {
                        let Some(Ok(message)) = message else { break Step::Gone };
                        if message.is_close() {
                            break Step::Gone;
                        }
                        let Some((channel, data)) = decode(encoding, &message) else { continue };
                        match channel {
                            STDIN => {
                                if let Some(w) = stdin.as_mut() {
                                    if w.write_all(&data).await.is_err() {
                                        break Step::CloseStdin;
                                    }
                                }
                            }
                            RESIZE => {
                                if let Ok(size) = serde_json::from_slice::<TerminalSize>(&data) {
                                    if let Err(e) = exec.resize(size.width.into(), size.height.into()).await {
                                        tracing::debug!("resize: {e}");
                                    }
                                }
                            }
                            CLOSE if protocol.version >= 5 && data.first() == Some(&STDIN) => {
                                break Step::CloseStdin;
                            }
                            _ => {}
                        }
                    }
                }
            }
        };
        match step {
            Step::Exited(code) => break Some(code),
            Step::Gone => break None,
            Step::CloseStdin => {
                if stdin.take().is_some() {
                    exec.close_stdin().await;
                }
            }
        }
    };
    match exit {
        Some(code) => {
            for pump in pumps {
                let _ = tokio::time::timeout(DRAIN_TIMEOUT, pump).await;
            }
            let status = match code {
                Ok(code) if protocol.version >= 4 => Some(exit_status_json(&cmd, code)),
                Ok(0) => None,
                Ok(code) => Some(format!(
                    "command terminated with non-zero exit code: error executing command {cmd:?}, exit code {code}"
                )),
                Err(e) => Some(if protocol.version >= 4 {
                    serde_json::json!({"metadata": {}, "status": "Failure", "message": e.to_string()})
                        .to_string()
                } else {
                    e.to_string()
                }),
            };
            if let Some(status) = status {
                let _ = tx.send(encode(encoding, ERROR, status.as_bytes())).await;
            }
        }
        None => {
            tracing::debug!("exec client went away: killing the process");
            for pump in pumps {
                pump.abort();
            }
        }
    }
    drop(tx);
    let _ = writer.await;
    exec.finish().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses_as_the_kubelet_writes_them() {
        assert_eq!(
            exit_status_json(&["true".into()], 0),
            r#"{"metadata":{},"status":"Success"}"#
        );
        let failed: serde_json::Value = serde_json::from_str(&exit_status_json(
            &["sh".into(), "-c".into(), "exit 3".into()],
            3,
        ))
        .expect("json");
        assert_eq!(failed["status"], "Failure");
        assert_eq!(failed["reason"], "NonZeroExitCode");
        assert_eq!(failed["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(failed["details"]["causes"][0]["message"], "3");
    }

    #[test]
    fn terminal_sizes_use_the_kubelet_field_names() {
        let size: TerminalSize =
            serde_json::from_str(r#"{"Width":120,"Height":40}"#).expect("json");
        assert_eq!(
            size,
            TerminalSize {
                width: 120,
                height: 40
            }
        );
    }
}
