//! Exec over SPDY (remotecommand v2–v4): the client opens one stream per stdio
//! channel (`streamtype` header: error, stdin, stdout, stderr, resize), the server
//! replies to each; at the end the exit status goes on the error stream.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;

use super::conn::{IncomingStream, SpdyConn, StreamEvent};
use super::frame::header;
use super::next_event;
use crate::error::CriError;
use crate::logs::Stream;
use crate::streaming::remotecommand::{status_message, take_sizes, Step, Streams};
use crate::streaming::target::{Emit, Target};

/// How long the client has to open its streams.
pub(crate) const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);
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
pub(crate) async fn accept_streams(
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

/// Runs an exec or attach session on an upgraded SPDY connection: the target
/// starts once the client has opened its streams.
pub(crate) async fn serve(
    conn: SpdyConn,
    mut incoming: UnboundedReceiver<IncomingStream>,
    version: u8,
    start: impl std::future::Future<Output = Result<Target, CriError>>,
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
    let mut target = match start.await {
        Ok(target) => target,
        Err(e) => return end(status_message(version, &cmd, &Err(e))),
    };
    let out = conn.clone();
    let (stdout_id, stderr_id) = (
        got.get("stdout").map(|s| s.id),
        got.get("stderr").map(|s| s.id),
    );
    let emit: Emit = std::sync::Arc::new(move |stream, data| {
        let id = match stream {
            Stream::Stdout => stdout_id,
            Stream::Stderr => stderr_id,
        };
        if let Some(id) = id {
            match data {
                Some(data) => out.data(id, &data),
                None => out.fin(id),
            }
        }
        Box::pin(async {})
    });
    let pumps = target.spawn_output(emit);

    let mut stdin_events = got.remove("stdin").map(|s| s.events);
    let mut resize_events = got.remove("resize").map(|s| s.events);
    let mut stdin = target.take_stdin();
    let mut resize_buf: Vec<u8> = Vec::new();
    let exit = loop {
        let step = {
            let wait = target.wait();
            tokio::pin!(wait);
            loop {
                // Biased, resizes before stdin: a client's first size (sent as the
                // session opens) reaches the terminal before the input that was
                // queued behind it while the process started.
                tokio::select! {
                    biased;
                    code = &mut wait => break Step::Exited(code),
                    _ = conn.closed() => break Step::Gone,
                    event = next_event(&mut resize_events) => match event {
                        Some(StreamEvent::Data(data)) => {
                            resize_buf.extend_from_slice(&data);
                            if let Some(size) = take_sizes(&mut resize_buf) {
                                if let Err(e) = target.resize(size.width.into(), size.height.into()).await {
                                    tracing::debug!("resize: {e}");
                                }
                            }
                        }
                        _ => resize_events = None,
                    },
                    event = next_event(&mut stdin_events) => match event {
                        Some(StreamEvent::Data(data)) => {
                            if let Some(w) = stdin.as_mut() {
                                if w.write(&data).await.is_err() {
                                    break Step::CloseStdin;
                                }
                            }
                        }
                        _ => {
                            stdin_events = None;
                            break Step::CloseStdin;
                        }
                    },
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
            for id in got
                .iter()
                .filter(|(k, _)| !matches!(**k, "error" | "stdout" | "stderr"))
                .map(|(_, s)| s.id)
            {
                conn.reset(id);
            }
            // An attach ends well when its container exits, whatever the code.
            let code = if target.is_attach() { Ok(0) } else { code };
            end(status_message(version, &cmd, &code));
        }
        None => {
            tracing::debug!("streaming client went away");
            for pump in pumps {
                pump.abort();
            }
            conn.close();
        }
    }
    target.finish().await;
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
}
