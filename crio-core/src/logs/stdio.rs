//! Stdio FIFOs: the core creates them in the bundle, holds a read end before the
//! shim opens its write ends, and drains them into the container log.
//!
//! A reader alone would see end-of-file until the shim connects, so the core also
//! holds a write end until the shim has opened its own ([`StdioFifos::release`]);
//! after that, end-of-file means the process and everything sharing its output
//! are gone.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;

use super::format::{LineSplitter, Stream};
use super::{ContainerLog, LogError};

/// Paths to hand to the shim (empty = not connected).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct StdioPaths {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
}

/// Open read ends (and, until released, our write ends) of a process's FIFOs.
#[derive(Debug)]
pub(crate) struct StdioFifos {
    pub paths: StdioPaths,
    pub stdout: Option<pipe::Receiver>,
    pub stderr: Option<pipe::Receiver>,
    /// The write end of the process's stdin (when it has one): dropping it is the
    /// process's end-of-file.
    pub stdin: Option<pipe::Sender>,
    holders: Vec<pipe::Sender>,
}

fn mkfifo(path: &Path) -> Result<(), LogError> {
    match nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => Ok(()),
        Err(e) => Err(LogError::Fifo {
            path: path.to_path_buf(),
            source: e.into(),
        }),
    }
}

fn open_reader(path: &Path) -> Result<(pipe::Receiver, pipe::Sender), LogError> {
    let err = |source| LogError::Fifo {
        path: path.to_path_buf(),
        source,
    };
    let reader = pipe::OpenOptions::new().open_receiver(path).map_err(err)?;
    let holder = pipe::OpenOptions::new().open_sender(path).map_err(err)?;
    Ok((reader, holder))
}

impl StdioFifos {
    /// Creates `<dir>/<prefix>-stdout` and `-stderr` (stderr omitted with a tty, whose
    /// output all arrives on stdout) and opens them.
    pub(crate) fn create(dir: &Path, prefix: &str, tty: bool) -> Result<Self, LogError> {
        std::fs::create_dir_all(dir).map_err(|source| LogError::Fifo {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut fifos = Self {
            paths: StdioPaths::default(),
            stdout: None,
            stderr: None,
            stdin: None,
            holders: Vec::new(),
        };
        let out = dir.join(format!("{prefix}-stdout"));
        mkfifo(&out)?;
        let (reader, holder) = open_reader(&out)?;
        fifos.stdout = Some(reader);
        fifos.holders.push(holder);
        fifos.paths.stdout = out.display().to_string();
        if !tty {
            let err = dir.join(format!("{prefix}-stderr"));
            mkfifo(&err)?;
            let (reader, holder) = open_reader(&err)?;
            fifos.stderr = Some(reader);
            fifos.holders.push(holder);
            fifos.paths.stderr = err.display().to_string();
        }
        Ok(fifos)
    }

    /// Adds `<dir>/<prefix>-stdin`, its write end held open read-write (so it opens
    /// before the shim's reader does).
    pub(crate) fn with_stdin(mut self, dir: &Path, prefix: &str) -> Result<Self, LogError> {
        let path = dir.join(format!("{prefix}-stdin"));
        mkfifo(&path)?;
        let sender = pipe::OpenOptions::new()
            .read_write(true)
            .open_sender(&path)
            .map_err(|source| LogError::Fifo {
                path: path.clone(),
                source,
            })?;
        self.stdin = Some(sender);
        self.paths.stdin = path.display().to_string();
        Ok(self)
    }

    /// Re-opens the read ends of existing FIFOs after a core restart (the shim still
    /// holds the write ends, so no holder is needed).
    pub(crate) fn reopen(paths: &StdioPaths) -> Result<Self, LogError> {
        let open = |p: &str| -> Result<Option<pipe::Receiver>, LogError> {
            if p.is_empty() {
                return Ok(None);
            }
            pipe::OpenOptions::new()
                .open_receiver(p)
                .map(Some)
                .map_err(|source| LogError::Fifo {
                    path: PathBuf::from(p),
                    source,
                })
        };
        let stdin = if paths.stdin.is_empty() {
            None
        } else {
            pipe::OpenOptions::new()
                .read_write(true)
                .open_sender(&paths.stdin)
                .map(Some)
                .map_err(|source| LogError::Fifo {
                    path: PathBuf::from(&paths.stdin),
                    source,
                })?
        };
        Ok(Self {
            stdout: open(&paths.stdout)?,
            stderr: open(&paths.stderr)?,
            stdin,
            paths: paths.clone(),
            holders: Vec::new(),
        })
    }

    /// The shim has opened its write ends: drop ours, so end-of-file can come.
    pub(crate) fn release(&mut self) {
        self.holders.clear();
    }
}

/// Output chunks of a container, for attach sessions.
pub(crate) type OutputTee = tokio::sync::broadcast::Sender<(Stream, bytes::Bytes)>;

/// Drains one FIFO into the log until end-of-file, also handing each chunk to
/// `tee` (attached clients; nobody listening costs nothing). The caller counted the
/// stream in with [`ContainerLog::stream_opened`] before spawning this; it is
/// counted out at the end.
pub(crate) async fn drain_to_log(
    mut reader: pipe::Receiver,
    stream: Stream,
    log: ContainerLog,
    tee: Option<OutputTee>,
) {
    let mut splitter = LineSplitter::new(stream);
    let mut buf = vec![0u8; 32 * 1024];
    let mut records = Vec::new();
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                splitter.push(&buf[..n], SystemTime::now(), &mut records);
                log.write(&records);
                records.clear();
                if let Some(tee) = &tee {
                    if tee.receiver_count() > 0 {
                        let _ = tee.send((stream, bytes::Bytes::copy_from_slice(&buf[..n])));
                    }
                }
            }
        }
    }
    splitter.finish(SystemTime::now(), &mut records);
    log.write(&records);
    log.stream_closed();
}

/// Reads one FIFO to end-of-file, keeping at most `limit` bytes (the rest is read
/// and dropped so the writer never blocks).
pub(crate) async fn read_all(mut reader: pipe::Receiver, limit: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = limit.saturating_sub(out.len());
                out.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    out
}
