//! Terminals: the console socket the OCI runtime sends the pty master over
//! (`--console-socket`), and resizing.

use std::fs::File;
use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

use crate::error::{io_err, Error, Result};

/// A listening socket in a private temporary directory for one process.
#[derive(Debug)]
pub struct ConsoleSocket {
    dir: PathBuf,
    path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    /// Binds `<tmp>/pty<random>/pty.sock` (kept short: socket paths are limited).
    pub fn new() -> Result<ConsoleSocket> {
        let dir = tempfile::Builder::new()
            .prefix("pty")
            .tempdir_in("/tmp")
            .map_err(io_err("console socket dir"))?
            .keep();
        let path = dir.join("pty.sock");
        let listener =
            UnixListener::bind(&path).map_err(io_err(format!("bind {}", path.display())))?;
        listener
            .set_nonblocking(true)
            .map_err(io_err("console socket nonblocking"))?;
        Ok(ConsoleSocket {
            dir,
            path,
            listener,
        })
    }

    /// The path to pass as `--console-socket`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the pty master the runtime sent. Call after the runtime command
    /// succeeded: it connects and sends before exiting, so nothing waits here.
    pub fn receive(&self) -> Result<File> {
        let (stream, _) = self
            .listener
            .accept()
            .map_err(io_err("no console received from the runtime"))?;
        stream
            .set_nonblocking(false)
            .map_err(io_err("console stream blocking"))?;
        let mut buf = [0u8; 4096];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| Error::io("recvmsg console", e.into()))?;
        for cmsg in msg
            .cmsgs()
            .map_err(|e| Error::io("console cmsgs", e.into()))?
        {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                let mut iter = fds.into_iter();
                if let Some(fd) = iter.next() {
                    for extra in iter {
                        // SAFETY: received fds are new and owned by this process.
                        drop(unsafe { OwnedFd::from_raw_fd(extra) });
                    }
                    // SAFETY: the fd was just received over SCM_RIGHTS; nothing else owns it.
                    return Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }));
                }
            }
        }
        Err(Error::Other("console socket message carried no fd".into()))
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Sets the window size of the terminal whose master is `master`.
pub fn resize(master: &File, width: u32, height: u32) -> Result<()> {
    let ws = libc::winsize {
        ws_row: height.min(u16::MAX as u32) as u16,
        ws_col: width.min(u16::MAX as u32) as u16,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize struct that lives for the whole call, on
    // an fd `master` keeps open.
    let rc = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    if rc < 0 {
        return Err(Error::io("TIOCSWINSZ", std::io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{sendmsg, ControlMessage};
    use std::io::IoSlice;
    use std::os::unix::net::UnixStream;

    #[test]
    fn receives_a_pty_master_and_resizes_it() {
        let socket = ConsoleSocket::new().expect("socket");
        let pty = nix::pty::openpty(None, None).expect("openpty");
        let stream = UnixStream::connect(socket.path()).expect("connect");
        let fds = [pty.master.as_raw_fd()];
        sendmsg::<()>(
            stream.as_raw_fd(),
            &[IoSlice::new(b"/dev/ptmx")],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )
        .expect("sendmsg");
        let master = socket.receive().expect("receive");
        resize(&master, 100, 40).expect("resize");
        let mut ws: libc::winsize = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ writes into `ws`, which outlives the call.
        let rc = unsafe { libc::ioctl(pty.slave.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
        assert_eq!(rc, 0);
        assert_eq!((ws.ws_col, ws.ws_row), (100, 40));
        let dir = socket.path().parent().map(Path::to_path_buf).expect("dir");
        drop(socket);
        assert!(!dir.exists());
    }
}
