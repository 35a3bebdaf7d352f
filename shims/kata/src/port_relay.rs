//! Port-forward into the pod's VM. The pod's ports are in the guest, not in its
//! network namespace, so crio cannot dial them there: it connects to this shim's
//! relay socket instead (`<task socket>.pf`, beside the socket crio already
//! knows, root-only), writes the port as a line, and reads `OK` (then the
//! connection's bytes both ways) or `ERR <why>`. The agent opens the connection
//! to the port on the guest's loopback.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::agent_channel::Agent;

/// How long one agent call of a relay may take (reads wait for data: no limit).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
const FOREVER: Duration = Duration::from_secs(u32::MAX as u64);
/// One relayed chunk.
const CHUNK: usize = 64 * 1024;

/// The relay socket of the shim whose task service is served on `socket`.
pub fn relay_path(socket: &Path) -> PathBuf {
    let mut name = socket.as_os_str().to_os_string();
    name.push(".pf");
    PathBuf::from(name)
}

/// Listens on `path` (root-only) and relays each connection to the agent
/// `agent` yields (none before the VM runs: the connection is told so).
pub fn serve<F, Fut>(path: &Path, agent: F) -> std::io::Result<()>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Option<Arc<Agent>>> + Send,
{
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    let agent = Arc::new(agent);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let agent = Arc::clone(&agent);
            tokio::spawn(async move {
                match agent().await {
                    Some(agent) => relay(stream, agent).await,
                    None => {
                        let mut stream = stream;
                        let _ = stream.write_all(b"ERR the pod's VM is not running\n").await;
                    }
                }
            });
        }
    });
    Ok(())
}

/// The port a client asks for: its first line.
fn parse_port(line: &str) -> Result<u16, String> {
    line.trim()
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("{:?} is not a port", line.trim()))
}

async fn relay(stream: UnixStream, agent: Arc<Agent>) {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut line = String::new();
    if read.read_line(&mut line).await.is_err() {
        return;
    }
    let opened = match parse_port(&line) {
        Ok(port) => agent
            .open_port(port, CALL_TIMEOUT)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    let id = match opened {
        Ok(id) => id,
        Err(e) => {
            let _ = write
                .write_all(format!("ERR {}\n", e.replace('\n', " ")).as_bytes())
                .await;
            return;
        }
    };
    if write.write_all(b"OK\n").await.is_err() {
        let _ = agent.close_port(id, false, CALL_TIMEOUT).await;
        return;
    }
    let from_guest = {
        let agent = Arc::clone(&agent);
        async move {
            loop {
                match agent.read_port(id, CHUNK as u32, FOREVER).await {
                    Ok(data) if !data.is_empty() => {
                        if write.write_all(&data).await.is_err() {
                            break;
                        }
                    }
                    _ => break,
                }
            }
            let _ = write.shutdown().await;
        }
    };
    let to_guest = {
        let agent = Arc::clone(&agent);
        async move {
            let mut buf = vec![0u8; CHUNK];
            loop {
                match read.read(&mut buf).await {
                    Ok(n) if n > 0 => {
                        if agent.write_port(id, &buf[..n], CALL_TIMEOUT).await.is_err() {
                            break;
                        }
                    }
                    _ => break,
                }
            }
            let _ = agent.close_port(id, true, CALL_TIMEOUT).await;
        }
    };
    tokio::join!(from_guest, to_guest);
    let _ = agent.close_port(id, false, CALL_TIMEOUT).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_relay_sits_beside_the_task_socket() {
        assert_eq!(
            relay_path(Path::new("/run/crio-rs/s/abc")),
            PathBuf::from("/run/crio-rs/s/abc.pf")
        );
    }

    #[test]
    fn the_first_line_names_a_port() {
        assert_eq!(parse_port("8080\n"), Ok(8080));
        assert!(parse_port("0\n").is_err());
        assert!(parse_port("http\n").is_err());
        assert!(parse_port("70000\n").is_err());
    }
}
