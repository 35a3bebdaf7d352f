//! Exec over SPDY (remotecommand v2–v4): the client opens one stream per stdio
//! channel (`streamtype` header: error, stdin, stdout, stderr, resize), the server
//! replies to each; at the end the exit status goes on the error stream.

use std::collections::HashMap;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc::UnboundedReceiver;

use super::conn::{IncomingStream, SpdyConn, StreamEvent};
use super::frame::header;
use super::next_event;
use crate::container::ExecStream;
use crate::server::CriError;
use crate::streaming::remotecommand::{exit_status_json, Streams, TerminalSize};

/// How long the client has to open its streams.
pub const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The streams the client must open for these options.
fn expected(streams: Streams, version: u8) -> Vec<&'static str> {
    let mut out = vec!["error"];
    if streams.stdin {
        out.push("stdin");
    }
    if streams.stdout {
        out.push("stdout");
    }
    if streams.stderr && !streams.tty {
        out.push("stderr");
    }
    if streams.tty && version >= 3 {
        out.push("resize");
    }
    out
}

/// Accepts the client's streams; `None` if it did not open them in time or left.
pub async fn accept_streams(
    conn: &SpdyConn,
    incoming: &mut UnboundedReceiver<IncomingStream>,
    wanted: &[&'static str],
) -> Option<HashMap<&'static str, IncomingStream>> {
    let mut got: HashMap<&'static str, IncomingStream> = HashMap::new();
    let deadline = tokio::time::sleep(STREAM_CREATION_TIMEOUT);
    tokio::pin!(deadline);
    while got.len() < wanted.len() {
        tokio::select! {
            stream = incoming.recv() => {
                let stream = stream?;
                let kind = header(&stream.headers, "streamtype").unwrap_or("");
                match wanted.iter().find(|w| w.eq_ignore_ascii_case(kind)) {
                    Some(w) if !got.contains_key(w) => {
                        conn.reply(stream.id);
                        got.insert(w, stream);
                    }
                    _ => {
                        tracing::debug!(kind, "unexpected exec stream");
                        conn.reset(stream.id);
                    }
                }
            }
            _ = &mut deadline => {
                tracing::debug!("timed out waiting for client to create streams");
                return None;
            }
        }
    }
    Some(got)
}

fn status_message(version: u8, cmd: &[String], result: &Result<i32, CriError>) -> Option<String> {
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

enum Step {
    Exited(Result<i32, CriError>),
    Gone,
    CloseStdin,
}

/// Runs an exec session on an upgraded SPDY connection.
pub async fn serve_exec(
    conn: SpdyConn,
    mut incoming: UnboundedReceiver<IncomingStream>,
    version: u8,
    start: impl std::future::Future<Output = Result<ExecStream, CriError>>,
    streams: Streams,
    cmd: Vec<String>,
) {
    let wanted = expected(streams, version);
    let Some(mut got) = accept_streams(&conn, &mut incoming, &wanted).await else {
        conn.go_away(0);
        conn.close();
        return;
    };
    let last_id = got.values().map(|s| s.id).max().unwrap_or(0);
    let error_id = got.get("error").map_or(0, |s| s.id);
    let end = |status: Option<String>| {
        if let Some(status) = status {
            conn.data(error_id, status.as_bytes());
        }
        conn.fin(error_id);
        conn.go_away(last_id);
        conn.close();
    };
    let mut exec = match start.await {
        Ok(exec) => exec,
        Err(e) => return end(status_message(version, &cmd, &Err(e))),
    };
    let pumps: Vec<_> = [
        (exec.stdout.take(), got.get("stdout").map(|s| s.id)),
        (exec.stderr.take(), got.get("stderr").map(|s| s.id)),
    ]
    .into_iter()
    .filter_map(|(reader, stream_id)| {
        let mut reader = reader?;
        let conn = conn.clone();
        Some(tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match reader.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if let Some(id) = stream_id {
                            conn.data(id, &buf[..n]);
                        }
                    }
                }
            }
            if let Some(id) = stream_id {
                conn.fin(id);
            }
        }))
    })
    .collect();

    let mut stdin_events = got.remove("stdin").map(|s| s.events);
    let mut resize_events = got.remove("resize").map(|s| s.events);
    let mut stdin = exec.stdin.take();
    let mut resize_buf: Vec<u8> = Vec::new();
    let exit = loop {
        let step = {
            let wait = exec.wait();
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    code = &mut wait => break Step::Exited(code),
                    _ = conn.closed() => break Step::Gone,
                    event = next_event(&mut stdin_events) => match event {
                        Some(StreamEvent::Data(data)) => {
                            if let Some(w) = stdin.as_mut() {
                                if w.write_all(&data).await.is_err() {
                                    break Step::CloseStdin;
                                }
                            }
                        }
                        _ => {
                            stdin_events = None;
                            break Step::CloseStdin;
                        }
                    },
                    event = next_event(&mut resize_events) => match event {
                        Some(StreamEvent::Data(data)) => {
                            resize_buf.extend_from_slice(&data);
                            let mut sizes = serde_json::Deserializer::from_slice(&resize_buf)
                                .into_iter::<TerminalSize>();
                            let mut last = None;
                            while let Some(Ok(size)) = sizes.next() {
                                last = Some(size);
                            }
                            let used = sizes.byte_offset();
                            resize_buf.drain(..used);
                            if let Some(size) = last {
                                if let Err(e) = exec.resize(size.width.into(), size.height.into()).await {
                                    tracing::debug!("resize: {e}");
                                }
                            }
                        }
                        _ => resize_events = None,
                    },
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
    drop(stdin);
    match exit {
        Some(code) => {
            for pump in pumps {
                let _ = tokio::time::timeout(DRAIN_TIMEOUT, pump).await;
            }
            for id in got
                .iter()
                .filter(|(k, _)| !matches!(**k, "error" | "stdout" | "stderr"))
                .map(|(_, s)| s.id)
            {
                conn.reset(id);
            }
            end(status_message(version, &cmd, &code));
        }
        None => {
            tracing::debug!("exec client went away: killing the process");
            for pump in pumps {
                pump.abort();
            }
            conn.close();
        }
    }
    exec.finish().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_streams_a_client_opens_follow_its_options_and_version() {
        let s = |stdin, stdout, stderr, tty| Streams {
            stdin,
            stdout,
            stderr,
            tty,
        };
        assert_eq!(
            expected(s(false, true, true, false), 4),
            ["error", "stdout", "stderr"]
        );
        assert_eq!(
            expected(s(true, true, false, true), 4),
            ["error", "stdin", "stdout", "resize"]
        );
        assert_eq!(
            expected(s(true, true, false, true), 2),
            ["error", "stdin", "stdout"]
        );
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
}
