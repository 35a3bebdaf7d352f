//! `stream_idle_timeout`: a session's connection that carries no byte either way
//! for that long reads as closed by the client, so the session ends the way it
//! does when a client leaves (an exec'd process is killed, nothing leaks).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

#[derive(Debug)]
struct Shared {
    start: Instant,
    /// Milliseconds after `start` of the last byte moved.
    last: AtomicU64,
    expired: AtomicBool,
    reader: Mutex<Option<Waker>>,
}

impl Shared {
    fn touch(&self) {
        let now = self.start.elapsed().as_millis() as u64;
        self.last.store(now, Ordering::Relaxed);
    }
}

/// An IO whose reads end (and writes fail) once it has been idle `timeout`.
#[derive(Debug)]
pub(crate) struct IdleIo<T> {
    inner: T,
    shared: Arc<Shared>,
}

impl<T> IdleIo<T> {
    pub(crate) fn new(inner: T, timeout: Duration) -> Self {
        let shared = Arc::new(Shared {
            start: Instant::now(),
            last: AtomicU64::new(0),
            expired: AtomicBool::new(false),
            reader: Mutex::new(None),
        });
        tokio::spawn(watch(Arc::downgrade(&shared), timeout));
        Self { inner, shared }
    }
}

async fn watch(shared: Weak<Shared>, timeout: Duration) {
    let mut wait = timeout;
    loop {
        tokio::time::sleep(wait).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let idle = shared
            .start
            .elapsed()
            .saturating_sub(Duration::from_millis(shared.last.load(Ordering::Relaxed)));
        if idle >= timeout {
            tracing::debug!(?timeout, "closing an idle streaming session");
            shared.expired.store(true, Ordering::Relaxed);
            if let Some(waker) = shared.reader.lock().ok().and_then(|mut w| w.take()) {
                waker.wake();
            }
            return;
        }
        wait = timeout - idle;
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.shared.expired.load(Ordering::Relaxed) {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        match &polled {
            Poll::Ready(Ok(())) if buf.filled().len() > before => self.shared.touch(),
            Poll::Pending => {
                if let Ok(mut w) = self.shared.reader.lock() {
                    *w = Some(cx.waker().clone());
                }
            }
            _ => {}
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.shared.expired.load(Ordering::Relaxed) {
            return Poll::Ready(Err(std::io::ErrorKind::TimedOut.into()));
        }
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = &polled {
            if *n > 0 {
                self.shared.touch();
            }
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn an_idle_connection_reads_as_closed_and_traffic_keeps_it_open() {
        let (client, server) = tokio::io::duplex(64);
        let mut server = IdleIo::new(server, Duration::from_millis(300));
        let mut client = client;
        let mut buf = [0u8; 8];
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            client.write_all(b"x").await.expect("write");
            assert_eq!(server.read(&mut buf).await.expect("read"), 1, "still open");
        }
        let started = Instant::now();
        assert_eq!(
            server.read(&mut buf).await.expect("read"),
            0,
            "idle: end of file"
        );
        assert!(started.elapsed() >= Duration::from_millis(250));
        assert!(server.write_all(b"late").await.is_err());
    }
}
