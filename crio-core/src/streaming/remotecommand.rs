//! Exec over the WebSocket channel protocol (remotecommand v1, v4, v5): stdin on
//! channel 0, stdout 1, stderr 2, the exit status on 3, terminal resizes on 4, and
//! (v5) channel 255 to close stdin.

use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;

use super::target::{Emit, Target};
use super::ws_channels::{decode, encode, split_with_writer, ChannelProtocol};
use crate::error::CriError;
use crate::logs::Stream;

pub(crate) const STDIN: u8 = 0;
pub(crate) const STDOUT: u8 = 1;
pub(crate) const STDERR: u8 = 2;
pub(crate) const ERROR: u8 = 3;
pub(crate) const RESIZE: u8 = 4;
/// v5: `[255, channel]` half-closes a channel (stdin).
pub(crate) const CLOSE: u8 = 255;

/// How long output may still drain after the process exited.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Which streams the client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Streams {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl Streams {
    /// The kubelet's rules for an Exec or Attach request.
    pub(crate) fn validate(&self) -> Result<(), CriError> {
        if !(self.stdin || self.stdout || self.stderr) {
            return Err(CriError::InvalidArgument(
                "one of stdin, stdout, or stderr must be set".into(),
            ));
        }
        if self.tty && self.stderr {
            return Err(CriError::InvalidArgument(
                "tty and stderr cannot both be true".into(),
            ));
        }
        Ok(())
    }
}

/// Consumes the complete `TerminalSize` JSON values at the front of `buf` (a
/// partial one stays for the next bytes); the last one, which is the size now.
pub(crate) fn take_sizes(buf: &mut Vec<u8>) -> Option<TerminalSize> {
    let mut sizes = serde_json::Deserializer::from_slice(buf).into_iter::<TerminalSize>();
    let mut last = None;
    while let Some(Ok(size)) = sizes.next() {
        last = Some(size);
    }
    let used = sizes.byte_offset();
    buf.drain(..used);
    last
}

/// A terminal size message (remotecommand's `TerminalSize`).
#[derive(Debug, Deserialize, Serialize, PartialEq)]
pub(crate) struct TerminalSize {
    #[serde(rename = "Width")]
    pub width: u16,
    #[serde(rename = "Height")]
    pub height: u16,
}

/// What the error channel carries at the end (v4 and later): a metav1.Status.
pub(crate) fn exit_status_json(cmd: &[String], exit_code: i32) -> String {
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
pub(crate) enum Step {
    Exited(Result<i32, CriError>),
    Gone,
    CloseStdin,
}

/// Ends a session that could not start: the reason on the error channel.
pub(crate) async fn refuse<S>(mut ws: WebSocketStream<S>, protocol: ChannelProtocol, reason: &str)
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

/// Runs one session until the process (or attached container) exits, its status
/// going on the error channel, or the client goes away (an exec'd process is
/// killed then).
pub(crate) async fn serve<S>(
    ws: WebSocketStream<S>,
    protocol: ChannelProtocol,
    mut target: Target,
    streams: Streams,
    cmd: Vec<String>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let encoding = protocol.encoding;
    let (mut source, tx, writer) = split_with_writer(ws);
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

    let out = tx.clone();
    let emit: Emit = std::sync::Arc::new(move |stream, data| {
        let out = out.clone();
        let (channel, wanted) = match stream {
            Stream::Stdout => (STDOUT, streams.stdout),
            Stream::Stderr => (STDERR, streams.stderr),
        };
        Box::pin(async move {
            if let (Some(data), true) = (data, wanted) {
                let _ = out.send(encode(encoding, channel, &data)).await;
            }
        })
    });
    let pumps = target.spawn_output(emit);

    let mut stdin = target.take_stdin();
    let exit = loop {
        let step = {
            let wait = target.wait();
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
                                    if w.write(&data).await.is_err() {
                                        break Step::CloseStdin;
                                    }
                                }
                            }
                            RESIZE => {
                                if let Ok(size) = serde_json::from_slice::<TerminalSize>(&data) {
                                    if let Err(e) = target.resize(size.width.into(), size.height.into()).await {
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
                    target.close_stdin().await;
                }
            }
        }
    };
    drop(stdin);
    match exit {
        Some(code) => {
            for pump in pumps {
                let _ = tokio::time::timeout(DRAIN_TIMEOUT, pump).await;
            }
            // An attach ends well when its container exits, whatever the code.
            let code = if target.is_attach() { Ok(0) } else { code };
            if let Some(status) = status_message(protocol.version, &cmd, &code) {
                let _ = tx.send(encode(encoding, ERROR, status.as_bytes())).await;
            }
        }
        None => {
            tracing::debug!("streaming client went away");
            for pump in pumps {
                pump.abort();
            }
        }
    }
    drop(tx);
    let _ = writer.await;
    target.finish().await;
}

/// What the error channel (or stream) carries at the end: v4 and later a
/// metav1.Status JSON, earlier versions the failure's text (nothing on success).
pub(crate) fn status_message(
    version: u8,
    cmd: &[String],
    result: &Result<i32, CriError>,
) -> Option<String> {
    match result {
        Ok(code) if version >= 4 => Some(exit_status_json(cmd, *code)),
        Ok(0) => None,
        Ok(code) => Some(format!(
            "command terminated with non-zero exit code: error executing command {cmd:?}, exit code {code}"
        )),
        Err(e) if version >= 4 => Some(
            serde_json::json!({
                "metadata": {}, "status": "Failure", "reason": "InternalError", "code": 500,
                "message": format!("Internal error occurred: error executing command in container: {e}"),
            })
            .to_string(),
        ),
        Err(e) => Some(format!("error executing command in container: {e}")),
    }
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
    fn status_messages_per_version() {
        let cmd = vec!["false".to_string()];
        assert_eq!(status_message(2, &cmd, &Ok(0)), None);
        assert!(status_message(2, &cmd, &Ok(1)).is_some_and(|m| m.contains("exit code 1")));
        let v4: serde_json::Value =
            serde_json::from_str(&status_message(4, &cmd, &Ok(1)).expect("status")).expect("json");
        assert_eq!(v4["reason"], "NonZeroExitCode");
        let internal: serde_json::Value = serde_json::from_str(
            &status_message(4, &cmd, &Err(CriError::Internal("boom".into()))).expect("status"),
        )
        .expect("json");
        assert_eq!(internal["reason"], "InternalError");
        assert_eq!(internal["code"], 500);
    }

    #[test]
    fn sizes_are_taken_whole_and_a_partial_one_waits() {
        let mut buf = br#"{"Width":1,"Height":2}
{"Width":3,"Height":4}
{"Wid"#
            .to_vec();
        assert_eq!(
            take_sizes(&mut buf),
            Some(TerminalSize {
                width: 3,
                height: 4
            })
        );
        assert_eq!(buf, b"{\"Wid", "the partial value stays");
        buf.extend_from_slice(br#"th":5,"Height":6}"#);
        assert_eq!(
            take_sizes(&mut buf),
            Some(TerminalSize {
                width: 5,
                height: 6
            })
        );
    }

    #[test]
    fn streams_follow_the_kubelet_rules() {
        let s = |stdin, stdout, stderr, tty| Streams {
            stdin,
            stdout,
            stderr,
            tty,
        };
        assert!(s(false, true, false, true).validate().is_ok());
        assert!(s(false, false, false, false).validate().is_err());
        assert!(s(false, true, true, true).validate().is_err());
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
