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

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

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

impl LogSink {
    /// Writes one whole line; a reader that went away turns the sink off.
    fn write_line(&self, line: &[u8]) {
        if let Ok(mut guard) = self.0.lock() {
            if let Some(file) = guard.as_mut() {
                if let Err(e) = file.write(line) {
                    if e.kind() == std::io::ErrorKind::BrokenPipe {
                        *guard = None;
                    }
                }
            }
        }
    }
}

/// A line-per-event subscriber: `LEVEL target: message key=value ...`. Spans are
/// not recorded. Smaller than tracing-subscriber's formatter, which every pod's
/// shim would carry.
struct LineSubscriber {
    sink: LogSink,
    max: Level,
}

struct Line(String);

impl Visit for Line {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            self.0.push_str(&format!(" {}={value}", field.name()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0.push_str(&format!("{value:?}"));
        } else {
            self.0.push_str(&format!(" {}={value:?}", field.name()));
        }
    }
}

impl Subscriber for LineSubscriber {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= self.max
    }

    fn new_span(&self, _span: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _span: &Id, _values: &Record<'_>) {}

    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let meta = event.metadata();
        let mut line = Line(format!("{} {}: ", meta.level(), meta.target()));
        event.record(&mut line);
        line.0.push('\n');
        self.sink.write_line(line.0.as_bytes());
    }

    fn enter(&self, _span: &Id) {}

    fn exit(&self, _span: &Id) {}
}

/// Sends `tracing` output to `<dir>/log` (debug level with `-debug`, else info;
/// `SHIM_LOG` overrides with a level name).
pub fn init(dir: &Path, debug: bool) {
    let sink = LogSink(Arc::new(Mutex::new(open_log_fifo(&dir.join("log")))));
    let default = if debug { Level::DEBUG } else { Level::INFO };
    let max = std::env::var("SHIM_LOG")
        .ok()
        .and_then(|l| l.parse::<Level>().ok())
        .unwrap_or(default);
    let _ = tracing::subscriber::set_global_default(LineSubscriber { sink, max });
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
