//! Port-forward in the guest: TCP connections to the guest's loopback (where the
//! pod's containers listen, the VM being the pod's network namespace), opened
//! for the host and then read and written by id.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use shim_support::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// The most one read returns.
const MAX_READ: usize = 256 * 1024;

/// One forwarded connection's halves; `None` once closed.
#[derive(Debug)]
struct Connection {
    read: tokio::sync::Mutex<Option<OwnedReadHalf>>,
    write: tokio::sync::Mutex<Option<OwnedWriteHalf>>,
}

/// The open forwarded connections.
#[derive(Debug, Default)]
pub struct Ports {
    next: AtomicU64,
    table: Mutex<HashMap<u64, Arc<Connection>>>,
}

impl Ports {
    fn get(&self, id: u64) -> Result<Arc<Connection>, Error> {
        self.table
            .lock()
            .map_err(|_| Error::Other("port table".into()))?
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("port-forward connection {id} not found")))
    }

    /// Connects to `port` on the loopback, IPv4 then IPv6; its id.
    pub async fn open(&self, port: u32) -> Result<u64, Error> {
        let port = u16::try_from(port)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| Error::InvalidArgument(format!("invalid port {port}")))?;
        let stream = match TcpStream::connect(("127.0.0.1", port)).await {
            Ok(s) => s,
            Err(e) => TcpStream::connect(("::1", port)).await.map_err(|_| {
                Error::FailedPrecondition(format!(
                    "connect to localhost:{port} in the pod's VM: {e}"
                ))
            })?,
        };
        let (read, write) = stream.into_split();
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        self.table
            .lock()
            .map_err(|_| Error::Other("port table".into()))?
            .insert(
                id,
                Arc::new(Connection {
                    read: Some(read).into(),
                    write: Some(write).into(),
                }),
            );
        Ok(id)
    }

    /// What the connection has, waiting for at least one byte; empty at its end.
    pub async fn read(&self, id: u64, max: usize) -> Result<Vec<u8>, Error> {
        let conn = self.get(id)?;
        let mut read = conn.read.lock().await;
        let Some(half) = read.as_mut() else {
            return Ok(Vec::new());
        };
        let mut buf = vec![0; max.clamp(1, MAX_READ)];
        let n = half
            .read(&mut buf)
            .await
            .map_err(|e| Error::io(format!("read port-forward connection {id}"), e))?;
        if n == 0 {
            *read = None;
        }
        buf.truncate(n);
        Ok(buf)
    }

    pub async fn write(&self, id: u64, data: &[u8]) -> Result<(), Error> {
        let conn = self.get(id)?;
        let mut write = conn.write.lock().await;
        let half = write.as_mut().ok_or_else(|| {
            Error::FailedPrecondition(format!(
                "port-forward connection {id} is closed for writing"
            ))
        })?;
        half.write_all(data)
            .await
            .map_err(|e| Error::io(format!("write port-forward connection {id}"), e))
    }

    /// Ends the writing side (the peer reads end-of-file), or the connection.
    pub async fn close(&self, id: u64, write_only: bool) -> Result<(), Error> {
        let conn = self.get(id)?;
        if let Some(mut half) = conn.write.lock().await.take() {
            let _ = half.shutdown().await;
        }
        if !write_only {
            if let Ok(mut table) = self.table.lock() {
                table.remove(&id);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_connection_carries_both_ways_and_closes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("listen");
        let port = listener.local_addr().expect("addr").port();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut got = Vec::new();
            s.read_to_end(&mut got).await.expect("read");
            s.write_all(&got).await.expect("echo");
        });
        let ports = Ports::default();
        let id = ports.open(u32::from(port)).await.expect("open");
        ports.write(id, b"ping").await.expect("write");
        ports.close(id, true).await.expect("half-close");
        let mut echoed = Vec::new();
        loop {
            let data = ports.read(id, 1024).await.expect("read");
            if data.is_empty() {
                break;
            }
            echoed.extend(data);
        }
        assert_eq!(echoed, b"ping");
        server.await.expect("server");
        ports.close(id, false).await.expect("close");
        assert!(matches!(ports.read(id, 1).await, Err(Error::NotFound(_))));
        assert!(matches!(
            ports.open(0).await,
            Err(Error::InvalidArgument(_))
        ));
    }
}
