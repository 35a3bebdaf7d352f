//! Container output: stdio FIFOs between a shim and the core, drained into the CRI
//! log file the kubelet reads (`log_directory/log_path`), reopened on rotation.

pub(crate) mod format;
mod stdio;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub(crate) use format::Stream;
pub(crate) use stdio::{drain_to_log, read_all, StdioFifos, StdioPaths};

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("container log {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("container {0} is not running: its output has ended")]
    Closed(String),
    #[error("stdio FIFO {path}: {source}")]
    Fifo {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One container's CRI log file, shared by its stdout and stderr drains.
///
/// The file holds whole records only: a write the disk cannot take (ENOSPC) is
/// undone to the last whole record and its bytes are dropped and counted, and the
/// daemon says so at most once per [`WARN_INTERVAL`] per container. The file is
/// closed when the container's output ends, so deleting it frees its space.
#[derive(Debug, Clone)]
pub(crate) struct ContainerLog {
    inner: Arc<Mutex<LogFile>>,
}

/// How often one container's failing log writes are reported.
pub(crate) const WARN_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct LogFile {
    /// The container, for messages.
    id: String,
    path: PathBuf,
    file: Option<File>,
    /// Bytes in the current file (all of them whole records).
    size: u64,
    /// `log_size_max`: past it the file is truncated and starts over (conmon's rule).
    max: Option<u64>,
    /// A failed write may have left part of a record: cut the file back first.
    torn: bool,
    /// Bytes dropped since the last report, and since the start.
    dropped: u64,
    dropped_total: u64,
    /// The last write failed.
    failing: bool,
    /// When dropping and recovering were last reported (near a full disk, writes
    /// can fail and succeed in turns: each kind is reported once per interval).
    last_drop_report: Option<Instant>,
    last_recovery_report: Option<Instant>,
    /// Output streams still draining into it.
    open_streams: usize,
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
pub(crate) const LOG_MODE: u32 = 0o600;

impl ContainerLog {
    /// Opens (creating) the log file; an empty path logs nowhere, as the CRI allows.
    /// `max` is `log_size_max` (`None` = no limit).
    pub(crate) fn open(id: &str, path: &Path, max: Option<u64>) -> Result<Self, LogError> {
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
                id: id.to_string(),
                path: path.to_path_buf(),
                file,
                size,
                max,
                torn: false,
                dropped: 0,
                dropped_total: 0,
                failing: false,
                last_drop_report: None,
                last_recovery_report: None,
                open_streams: 0,
            })),
        })
    }

    /// Appends whole records: a batch the file cannot take whole is cut back out.
    pub(crate) fn write(&self, records: &[u8]) {
        if records.is_empty() {
            return;
        }
        let Ok(mut log) = self.inner.lock() else {
            return;
        };
        log.write(records);
    }

    /// Bytes of output dropped because the log could not be written.
    pub(crate) fn dropped_bytes(&self) -> u64 {
        self.inner.lock().map_or(0, |l| l.dropped_total)
    }

    /// A drain starts writing to this log.
    pub(crate) fn stream_opened(&self) {
        if let Ok(mut log) = self.inner.lock() {
            log.open_streams += 1;
        }
    }

    /// A drain reached the end of its stream; after the last one the file is closed.
    pub(crate) fn stream_closed(&self) {
        if let Ok(mut log) = self.inner.lock() {
            log.open_streams = log.open_streams.saturating_sub(1);
            if log.open_streams == 0 {
                log.file = None;
            }
        }
    }

    /// Whether the file is open.
    #[cfg(test)]
    pub(crate) fn is_open(&self) -> bool {
        self.inner.lock().is_ok_and(|l| l.file.is_some())
    }

    /// `ReopenContainerLog`: the kubelet renamed the file; start a new one at the path.
    /// Records written before the call are in the old file, later ones in the new.
    pub(crate) fn reopen(&self) -> Result<(), LogError> {
        let mut log = self.inner.lock().map_err(|_| LogError::Open {
            path: PathBuf::new(),
            source: std::io::Error::other("log lock poisoned"),
        })?;
        if log.path.as_os_str().is_empty() {
            return Ok(());
        }
        if log.open_streams == 0 {
            return Err(LogError::Closed(log.id.clone()));
        }
        let file = open_append(&log.path)?;
        log.size = file.metadata().map_or(0, |m| m.len());
        log.file = Some(file);
        log.torn = false;
        Ok(())
    }
}

impl LogFile {
    fn write(&mut self, records: &[u8]) {
        let Some(file) = self.file.as_mut() else {
            return;
        };
        if self.torn {
            // Whatever a failed write left past the last whole record goes.
            if file.set_len(self.size).is_err() {
                return self.dropped_write(records.len(), "cannot cut a partial record");
            }
            self.torn = false;
        }
        if self
            .max
            .is_some_and(|max| self.size + records.len() as u64 > max)
        {
            // Appending after set_len(0) writes at the new end: the file starts over.
            if let Err(e) = file.set_len(0) {
                tracing::warn!(container = %self.id, "cannot truncate container log: {e}");
            }
            self.size = 0;
        }
        match file.write_all(records) {
            Ok(()) => {
                self.size += records.len() as u64;
                if self.failing && due(self.last_recovery_report) {
                    tracing::info!(
                        container = %self.id,
                        dropped_bytes_total = self.dropped_total,
                        "container log {} is written again",
                        self.path.display()
                    );
                    self.last_recovery_report = Some(Instant::now());
                }
                self.failing = false;
            }
            Err(e) => {
                // Cut back to the last whole record now; if that fails, before the
                // next write.
                self.torn = file.set_len(self.size).is_err();
                self.dropped_write(records.len(), &e.to_string());
            }
        }
    }

    /// Counts a batch that was not written; reports at most once per interval.
    fn dropped_write(&mut self, len: usize, why: &str) {
        self.dropped += len as u64;
        self.dropped_total += len as u64;
        self.failing = true;
        if due(self.last_drop_report) {
            tracing::warn!(
                container = %self.id,
                dropped_bytes = self.dropped,
                "cannot write container log {}: {why}; dropping its output until it can \
                 (reported at most every {}s)",
                self.path.display(),
                WARN_INTERVAL.as_secs()
            );
            self.dropped = 0;
            self.last_drop_report = Some(Instant::now());
        }
    }
}

/// Whether a report last made at `last` may be made again.
fn due(last: Option<Instant>) -> bool {
    last.is_none_or(|t| t.elapsed() >= WARN_INTERVAL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_size_max_starts_the_file_over() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.log");
        let log = ContainerLog::open("c", &path, Some(100)).expect("open");
        log.write(&[b'a'; 60]);
        log.write(&[b'b'; 30]);
        assert_eq!(std::fs::metadata(&path).expect("len").len(), 90);
        log.write(&[b'c'; 30]);
        assert_eq!(std::fs::read(&path).expect("read"), vec![b'c'; 30]);
        let unlimited = ContainerLog::open("u", &dir.path().join("u.log"), None).expect("open");
        unlimited.write(&[b'x'; 1000]);
        unlimited.write(&[b'x'; 1000]);
        assert_eq!(
            std::fs::metadata(dir.path().join("u.log"))
                .expect("len")
                .len(),
            2000
        );
    }

    #[test]
    fn the_file_closes_after_the_last_stream_and_cannot_be_reopened() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = ContainerLog::open("c", &dir.path().join("c.log"), None).expect("open");
        log.stream_opened();
        log.stream_opened();
        log.stream_closed();
        assert!(log.is_open(), "stderr still drains");
        log.reopen().expect("reopen while running");
        log.stream_closed();
        assert!(!log.is_open(), "closed after the last stream");
        log.write(b"late\n");
        assert!(matches!(log.reopen(), Err(LogError::Closed(_))));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("c.log"))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, LOG_MODE);
    }
}
