//! Container output: stdio FIFOs between a shim and the core, drained into the CRI
//! log file the kubelet reads (`log_directory/log_path`), reopened on rotation.

pub mod format;
mod stdio;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use format::{LineSplitter, Stream};
pub use stdio::{drain_to_log, read_all, OutputTee, StdioFifos, StdioPaths};

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("container log {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("stdio FIFO {path}: {source}")]
    Fifo {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One container's CRI log file, shared by its stdout and stderr drains.
#[derive(Debug, Clone)]
pub struct ContainerLog {
    inner: Arc<Mutex<LogFile>>,
}

#[derive(Debug)]
struct LogFile {
    path: PathBuf,
    file: Option<File>,
    /// Bytes in the current file.
    size: u64,
    /// `log_size_max`: past it the file is truncated and starts over (conmon's rule).
    max: Option<u64>,
}

fn open_append(path: &Path) -> Result<File, LogError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| LogError::Open {
            path: path.to_path_buf(),
            source,
        })?;
    }
    let err = |source| LogError::Open {
        path: path.to_path_buf(),
        source,
    };
    // Root only (the kubelet reads it as root): a container's output may hold secrets.
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(LOG_MODE)
        .open(path)
        .map_err(err)?;
    // A file made by an older daemon, or by someone else, gets the same mode.
    file.set_permissions(std::fs::Permissions::from_mode(LOG_MODE))
        .map_err(err)?;
    Ok(file)
}

/// Container log files: read and written by root only.
pub const LOG_MODE: u32 = 0o600;

impl ContainerLog {
    /// Opens (creating) the log file; an empty path logs nowhere, as the CRI allows.
    /// `max` is `log_size_max` (`None` = no limit).
    pub fn open(path: &Path, max: Option<u64>) -> Result<Self, LogError> {
        let file = if path.as_os_str().is_empty() {
            None
        } else {
            Some(open_append(path)?)
        };
        let size = file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map_or(0, |m| m.len());
        Ok(Self {
            inner: Arc::new(Mutex::new(LogFile {
                path: path.to_path_buf(),
                file,
                size,
                max,
            })),
        })
    }

    /// Appends whole records (never a torn record: one write per batch).
    pub fn write(&self, records: &[u8]) {
        if records.is_empty() {
            return;
        }
        let Ok(mut log) = self.inner.lock() else {
            return;
        };
        let log = &mut *log;
        let Some(file) = log.file.as_mut() else {
            return;
        };
        if log
            .max
            .is_some_and(|max| log.size + records.len() as u64 > max)
        {
            // Appending after set_len(0) writes at the new end: the file starts over.
            if let Err(e) = file.set_len(0) {
                tracing::warn!("cannot truncate container log: {e}");
            }
            log.size = 0;
        }
        match file.write_all(records) {
            Ok(()) => log.size += records.len() as u64,
            Err(e) => tracing::warn!("cannot write container log: {e}"),
        }
    }

    /// `ReopenContainerLog`: the kubelet renamed the file; start a new one at the path.
    /// Records written before the call are in the old file, later ones in the new.
    pub fn reopen(&self) -> Result<(), LogError> {
        let mut log = self.inner.lock().map_err(|_| LogError::Open {
            path: PathBuf::new(),
            source: std::io::Error::other("log lock poisoned"),
        })?;
        if log.path.as_os_str().is_empty() {
            return Ok(());
        }
        let file = open_append(&log.path)?;
        log.size = file.metadata().map_or(0, |m| m.len());
        log.file = Some(file);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_size_max_starts_the_file_over() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.log");
        let log = ContainerLog::open(&path, Some(100)).expect("open");
        log.write(&[b'a'; 60]);
        log.write(&[b'b'; 30]);
        assert_eq!(std::fs::metadata(&path).expect("len").len(), 90);
        log.write(&[b'c'; 30]);
        assert_eq!(std::fs::read(&path).expect("read"), vec![b'c'; 30]);
        let unlimited = ContainerLog::open(&dir.path().join("u.log"), None).expect("open");
        unlimited.write(&[b'x'; 1000]);
        unlimited.write(&[b'x'; 1000]);
        assert_eq!(
            std::fs::metadata(dir.path().join("u.log"))
                .expect("len")
                .len(),
            2000
        );
    }
}
