//! The daemon's unix sockets (the CRI socket, the shims' events socket): parent dir created, a stale socket from a dead daemon replaced,
//! a live one refused, mode 0660 (root-only, as CRI-O).

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Permission bits of the CRI socket.
pub(crate) const SOCKET_MODE: u32 = 0o660;

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("another process is already serving on {0}: stop it first, or set [crio.api] listen / --listen to another path")]
    InUse(PathBuf),
    #[error("{0} exists and is not a socket: refusing to replace it")]
    NotASocket(PathBuf),
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SocketError + 'a {
    move |source| SocketError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Binds the socket, replacing a stale one. Must be called inside a tokio runtime.
pub(crate) fn bind(path: &Path) -> Result<tokio::net::UnixListener, SocketError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io_err("create directory", parent))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(SocketError::NotASocket(path.to_path_buf()))
        }
        Ok(_) => match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => return Err(SocketError::InUse(path.to_path_buf())),
            // Nobody listens: a dead daemon's leftover.
            Err(_) => {
                tracing::info!(path = %path.display(), "removing stale socket");
                std::fs::remove_file(path).map_err(io_err("remove stale socket", path))?;
            }
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("inspect", path)(e)),
    }
    let listener = std::os::unix::net::UnixListener::bind(path).map_err(io_err("bind", path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))
        .map_err(io_err("chmod", path))?;
    listener
        .set_nonblocking(true)
        .map_err(io_err("configure", path))?;
    tokio::net::UnixListener::from_std(listener).map_err(io_err("register", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn binds_0660_replaces_stale_refuses_live_and_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a/b/crio.sock");
        let live = bind(&path).expect("bind");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, SOCKET_MODE);
        assert!(matches!(bind(&path), Err(SocketError::InUse(_))));
        drop(live);
        // The listener is gone but the file is left: stale.
        assert!(path.exists());
        let _again = bind(&path).expect("stale socket replaced");

        let file = dir.path().join("plain");
        std::fs::write(&file, "keep me").expect("write");
        assert!(matches!(bind(&file), Err(SocketError::NotASocket(_))));
        assert_eq!(std::fs::read_to_string(&file).expect("read"), "keep me");
    }
}
