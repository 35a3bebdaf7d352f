//! The serve process's log: the `log` FIFO containerd opens for reading in the
//! bundle directory, whose lines containerd copies into its own log.
//!
//! The FIFO is opened for writing without blocking: when nobody reads it (a
//! manager that does not create it, or one that went away) the shim logs nowhere
//! instead of blocking or dying, and a full FIFO drops lines instead of stalling
//! the shim.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::sync::{Arc, Mutex};

use tracing_subscriber::fmt::MakeWriter;

/// Where log lines go.
#[derive(Clone, Debug)]
pub struct LogSink(Arc<Mutex<Option<File>>>);

/// Opens `path` for writing if it is a FIFO somebody reads, without blocking.
pub fn open_log_fifo(path: &Path) -> Option<File> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.file_type().is_fifo() {
        return None;
    }
    OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .ok()
}

impl Write for &LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut guard) = self.0.lock() {
            if let Some(file) = guard.as_mut() {
                match file.write(buf) {
                    // A full FIFO drops the line; a reader that went away ends logging.
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => *guard = None,
                    _ => {}
                }
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogSink {
    type Writer = &'a LogSink;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

/// Sends `tracing` output to `<dir>/log` (debug level with `-debug`, else info;
/// `SHIM_LOG` overrides with an env-filter directive).
pub fn init(dir: &Path, debug: bool) {
    let sink = LogSink(Arc::new(Mutex::new(open_log_fifo(&dir.join("log")))));
    let default = if debug { "debug" } else { "info" };
    let filter = std::env::var("SHIM_LOG").unwrap_or_else(|_| default.to_string());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_ansi(false)
        .with_writer(sink)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_without_reader_is_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("log");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        assert!(open_log_fifo(&fifo).is_none());
        assert!(open_log_fifo(&dir.path().join("missing")).is_none());
        // With a reader it opens.
        let _reader = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .expect("reader");
        assert!(open_log_fifo(&fifo).is_some());
    }
}
