//! The agent's end of its virtio-serial port, as the connections of a ttrpc server.
//!
//! A virtio-serial port is one byte stream, open by one process at a time. Its host
//! end is qemu's chardev socket, which the shim connects to and may leave and
//! connect to again (a restarted shim). While no host is connected the guest's
//! reads return 0 and its writes are dropped. So a "connection" here is one open of
//! the port while the host is connected: it starts with [`HELLO`](crate::HELLO) and
//! ends at the first end-of-file, when the host leaves; the next one opens the port
//! again once the previous one is closed.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How often a port whose host end is not connected is looked at again.
const HOST_POLL: Duration = Duration::from_millis(10);

/// The device of the virtio-serial port called `name`, found through
/// `<sys_class>/<vportNpM>/name` (`/sys/class/virtio-ports`): the `vportNpM`
/// number moves with the order of qemu's devices, the name does not.
pub fn find_port(sys_class: &Path, dev: &Path, name: &str) -> io::Result<PathBuf> {
    for entry in std::fs::read_dir(sys_class)? {
        let entry = entry?;
        let Ok(found) = std::fs::read_to_string(entry.path().join("name")) else {
            continue;
        };
        if found.trim_end() == name {
            return Ok(dev.join(entry.file_name()));
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!(
            "no virtio-serial port named {name:?} in {}",
            sys_class.display()
        ),
    ))
}

/// One open of the port, as an async byte stream. Closing it (dropping it) lets
/// the next connection open the port.
#[derive(Debug)]
pub struct PortConnection {
    fd: AsyncFd<OwnedFd>,
    _turn: OwnedSemaphorePermit,
}

impl PortConnection {
    fn open(path: &Path, turn: OwnedSemaphorePermit) -> io::Result<Self> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_RDWR | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC | OFlag::O_NOCTTY,
            Mode::empty(),
        )?;
        // SAFETY: the OwnedFd is moved into the AsyncFd, so the fd stays open and
        // the same for the AsyncFd's whole life.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)?;
        Ok(PortConnection { fd, _turn: turn })
    }

    /// Whether a host is connected to the port's other end (no `POLLHUP`).
    fn host_connected(&self) -> io::Result<bool> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let mut fds = [PollFd::new(self.fd.get_ref().as_fd(), PollFlags::POLLOUT)];
        poll(&mut fds, PollTimeout::ZERO)?;
        Ok(!fds[0]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLHUP)))
    }
}

impl AsyncRead for PortConnection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.fd.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match guard
                .try_io(|fd| nix::unistd::read(fd.get_ref(), unfilled).map_err(io::Error::from))
            {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for PortConnection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.fd.poll_write_ready(cx))?;
            match guard.try_io(|fd| nix::unistd::write(fd.get_ref(), buf).map_err(io::Error::from))
            {
                Ok(result) => return Poll::Ready(result),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The port's connections, one at a time: each opens the port once the previous
/// one is closed, waits for the host end, and has written [`HELLO`](crate::HELLO).
pub fn connections(
    path: PathBuf,
) -> impl futures::Stream<Item = io::Result<PortConnection>> + Send + 'static {
    let turns = Arc::new(Semaphore::new(1));
    futures::stream::unfold((path, turns), |(path, turns)| async move {
        let next = next_connection(&path, &turns).await;
        Some((next, (path, turns)))
    })
}

async fn next_connection(path: &Path, turns: &Arc<Semaphore>) -> io::Result<PortConnection> {
    let turn = Arc::clone(turns)
        .acquire_owned()
        .await
        .map_err(io::Error::other)?;
    let mut port = PortConnection::open(path, turn)?;
    while !port.host_connected()? {
        tokio::time::sleep(HOST_POLL).await;
    }
    port.write_all(crate::HELLO.as_bytes()).await?;
    tracing::info!(port = %path.display(), "host connected");
    Ok(port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_is_found_by_its_name_not_its_number() {
        let sys = tempfile::tempdir().expect("tempdir");
        for (dir, name) in [("vport0p0", "console.0"), ("vport1p1", "agent")] {
            std::fs::create_dir(sys.path().join(dir)).expect("mkdir");
            std::fs::write(sys.path().join(dir).join("name"), format!("{name}\n")).expect("write");
        }
        std::fs::create_dir(sys.path().join("vport2p1")).expect("a port without a name file");
        let found = find_port(sys.path(), Path::new("/dev"), "agent").expect("found");
        assert_eq!(found, Path::new("/dev/vport1p1"));
        let missing = find_port(sys.path(), Path::new("/dev"), "other").expect_err("missing");
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
        assert!(missing.to_string().contains("\"other\""), "{missing}");
    }
}
