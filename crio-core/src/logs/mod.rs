//! Container output: stdio FIFOs between a shim and the core, drained into the CRI
//! log file the kubelet reads (`log_directory/log_path`), reopened on rotation.

pub mod format;
mod stdio;

use std::fs::{File, OpenOptions};
use std::io::Write;
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
}

fn open_append(path: &Path) -> Result<File, LogError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| LogError::Open {
            path: path.to_path_buf(),
            source,
        })?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| LogError::Open {
            path: path.to_path_buf(),
            source,
        })
}

impl ContainerLog {
    /// Opens (creating) the log file; an empty path logs nowhere, as the CRI allows.
    pub fn open(path: &Path) -> Result<Self, LogError> {
        let file = if path.as_os_str().is_empty() {
            None
        } else {
            Some(open_append(path)?)
        };
        Ok(Self {
            inner: Arc::new(Mutex::new(LogFile {
                path: path.to_path_buf(),
                file,
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
        if let Some(file) = log.file.as_mut() {
            if let Err(e) = file.write_all(records) {
                tracing::warn!("cannot write container log: {e}");
            }
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
        log.file = Some(file);
        Ok(())
    }
}
