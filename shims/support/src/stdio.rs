//! A process's stdio as containerd describes it: a path is a FIFO the caller
//! made, `file:///path` appends to a file, `binary:///path?k=v` hands the output
//! to a logging binary (fds 3 and 4, readiness on fd 5, as containerd does).
//!
//! Without a terminal the process gets pipes, and one thread per stream copies
//! between each pipe and its target; with a terminal the same copies run
//! between the pty master and the targets ([`ProcessIo::attach_console`]).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::error::{io_err, Error, Result};

/// Where one stdio stream goes (or comes from).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Not wanted.
    Null,
    /// A FIFO the caller created.
    Fifo(PathBuf),
    /// `file://`: appended to.
    File(PathBuf),
    /// `binary://`: a logging binary and its arguments (`k`, `v` pairs flattened).
    Binary { path: PathBuf, args: Vec<String> },
}

fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a stdio string from a task request.
pub fn parse_target(s: &str) -> Result<Target> {
    if s.is_empty() {
        return Ok(Target::Null);
    }
    let Some((scheme, rest)) = s.split_once("://") else {
        return Ok(Target::Fifo(PathBuf::from(s)));
    };
    let (path_part, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    // `scheme://host/path`: only an empty host (three slashes) is a local path.
    let path = if path_part.starts_with('/') {
        path_part.to_string()
    } else {
        match path_part.split_once('/') {
            Some((_, p)) => format!("/{p}"),
            None => String::new(),
        }
    };
    let path = percent_decode(&path);
    if path.is_empty() {
        return Err(Error::InvalidArgument(format!("stdio {s:?} has no path")));
    }
    match scheme {
        "fifo" => Ok(Target::Fifo(path.into())),
        "file" => Ok(Target::File(path.into())),
        "binary" => {
            let mut args = Vec::new();
            for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                args.push(percent_decode(k));
                if !v.is_empty() {
                    args.push(percent_decode(v));
                }
            }
            Ok(Target::Binary {
                path: path.into(),
                args,
            })
        }
        other => Err(Error::InvalidArgument(format!(
            "unsupported stdio scheme {other:?} in {s:?}"
        ))),
    }
}

/// The stdio of one process, as the task request gives it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StdioConfig {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

/// The runtime-side ends to give `runc create`/`runc exec` as its stdio.
#[derive(Debug, Default)]
pub struct ChildStdio {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

impl ChildStdio {
    /// Sets the command's stdio to these ends (`/dev/null` where absent).
    pub fn apply(self, cmd: &mut Command) {
        cmd.stdin(self.stdin.map(Stdio::from).unwrap_or_else(Stdio::null));
        cmd.stdout(self.stdout.map(Stdio::from).unwrap_or_else(Stdio::null));
        cmd.stderr(self.stderr.map(Stdio::from).unwrap_or_else(Stdio::null));
    }
}

type Shared<T> = Arc<Mutex<Option<T>>>;

/// The shim's side of a process's stdio: the copy threads and what CloseIO closes.
#[derive(Debug)]
pub struct ProcessIo {
    config: StdioConfig,
    id: String,
    namespace: String,
    /// The shim's own writer on the stdin FIFO, so that clients coming and going
    /// do not end the input; CloseIO drops it.
    stdin_hold: Shared<File>,
    /// Where input is copied to (the pipe into the process, or the pty master).
    stdin_dest: Shared<File>,
    /// Output copies still running.
    outputs: watch::Sender<usize>,
    /// Outputs opened before the process existed, waiting for their source.
    pending_outputs: Mutex<Vec<File>>,
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::io("pipe2", e.into()))
}

/// Opens a FIFO for reading, plus a writer that keeps it from reporting EOF.
fn open_input_fifo(path: &Path) -> Result<(File, File)> {
    let reader = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(io_err(format!("open stdin {}", path.display())))?;
    let hold = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(io_err(format!("hold stdin {}", path.display())))?;
    set_blocking(&reader)?;
    Ok((reader, hold))
}

fn set_blocking(f: &impl AsRawFd) -> Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    // SAFETY: the fd is open for the duration of this call (borrowed from `f`).
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(f.as_raw_fd()) };
    let flags = fcntl(fd, FcntlArg::F_GETFL).map_err(|e| Error::io("F_GETFL", e.into()))?;
    let flags = OFlag::from_bits_truncate(flags) & !OFlag::O_NONBLOCK;
    fcntl(fd, FcntlArg::F_SETFL(flags)).map_err(|e| Error::io("F_SETFL", e.into()))?;
    Ok(())
}

/// Opens an output target for writing.
fn open_output(target: &Target, id: &str, namespace: &str) -> Result<Option<File>> {
    match target {
        Target::Null => Ok(None),
        Target::Fifo(path) => {
            // Read-write: opening never blocks, and writes never fail for want of a
            // reader; the caller's reader sees EOF once the copy closes it.
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(path)
                .map_err(io_err(format!("open {}", path.display())))?;
            Ok(Some(f))
        }
        Target::File(path) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(io_err(format!("mkdir {}", dir.display())))?;
            }
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(path)
                .map_err(io_err(format!("open {}", path.display())))?;
            Ok(Some(f))
        }
        Target::Binary { .. } => {
            let _ = (id, namespace);
            Err(Error::InvalidArgument(
                "binary targets are opened in pairs".into(),
            ))
        }
    }
}

/// Starts the logging binary with the read ends of two pipes on fds 3 and 4 and
/// waits until it closes fd 5; returns the write ends (stdout, stderr).
fn start_logger(path: &Path, args: &[String], id: &str, namespace: &str) -> Result<(File, File)> {
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (ready_r, ready_w) = pipe()?;
    let fds = [out_r.as_raw_fd(), err_r.as_raw_fd(), ready_w.as_raw_fd()];
    let mut cmd = Command::new(path);
    cmd.args(args)
        .env("CONTAINER_ID", id)
        .env("CONTAINER_NAMESPACE", namespace)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: only dup2 (async-signal-safe) runs between fork and exec; the fds are
    // open in the parent until spawn returns. Fds are first moved above 10 so that
    // placing them on 3..5 cannot clobber one another.
    unsafe {
        cmd.pre_exec(move || {
            let mut high = [0; 3];
            for (i, fd) in fds.iter().enumerate() {
                let h = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 10);
                if h < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                high[i] = h;
            }
            for (i, h) in high.iter().enumerate() {
                if libc::dup2(*h, 3 + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(io_err(format!("start logger {}", path.display())))?;
    drop(cmd);
    drop((out_r, err_r, ready_w));
    tracing::debug!(pid = child.id(), logger = %path.display(), "logging binary started");
    // Wait (bounded) for the logger to close or write to its readiness fd.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut ready = File::from(ready_r);
        let mut b = [0u8; 1];
        let _ = ready.read(&mut b);
        let _ = tx.send(());
    });
    if rx.recv_timeout(Duration::from_secs(10)).is_err() {
        return Err(Error::Other(format!(
            "logging binary {} did not become ready",
            path.display()
        )));
    }
    Ok((File::from(out_w), File::from(err_w)))
}

impl ProcessIo {
    /// Opens the targets and, without a terminal, makes the pipes whose far ends
    /// the runtime passes to the process. Output copies start at once.
    pub fn create(
        config: &StdioConfig,
        id: &str,
        namespace: &str,
    ) -> Result<(ProcessIo, ChildStdio)> {
        let stdin = parse_target(&config.stdin)?;
        let stdout = parse_target(&config.stdout)?;
        let stderr = parse_target(&config.stderr)?;
        let (outputs, _) = watch::channel(0usize);
        let io = ProcessIo {
            config: config.clone(),
            id: id.to_string(),
            namespace: namespace.to_string(),
            stdin_hold: Arc::new(Mutex::new(None)),
            stdin_dest: Arc::new(Mutex::new(None)),
            outputs,
            pending_outputs: Mutex::new(Vec::new()),
        };

        // Output targets.
        let (out_sink, err_sink) = match (&stdout, &stderr) {
            (Target::Binary { path, args }, _) => {
                let (o, e) = start_logger(path, args, id, namespace)?;
                (
                    Some(o),
                    if stderr == Target::Null {
                        None
                    } else {
                        Some(e)
                    },
                )
            }
            _ => (
                open_output(&stdout, id, namespace)?,
                if config.terminal {
                    None
                } else {
                    open_output(&stderr, id, namespace)?
                },
            ),
        };

        let mut child = ChildStdio::default();
        let stdin_reader = match &stdin {
            Target::Null => None,
            Target::Fifo(path) => {
                let (reader, hold) = open_input_fifo(path)?;
                if let Ok(mut h) = io.stdin_hold.lock() {
                    *h = Some(hold);
                }
                Some(reader)
            }
            other => {
                return Err(Error::InvalidArgument(format!(
                    "stdin must be a FIFO, not {other:?}"
                )))
            }
        };

        if config.terminal {
            // Copies start once the console arrives.
            if let Ok(mut pending) = io.pending_outputs.lock() {
                pending.extend(out_sink);
            }
            if let Some(reader) = stdin_reader {
                io.pending_stdin(reader);
            }
            return Ok((io, child));
        }

        if let Some(reader) = stdin_reader {
            let (r, w) = pipe()?;
            child.stdin = Some(r);
            if let Ok(mut d) = io.stdin_dest.lock() {
                *d = Some(File::from(w));
            }
            io.spawn_stdin_copy(reader);
        }
        // The process writes straight into its targets (the FIFO the manager reads,
        // a file, the logging binary's pipe): no copy and no thread per stream. The
        // FIFO is open read-write, so a write never fails while the manager is away;
        // the manager sees end-of-file once every writer has exited.
        for (sink, slot) in [(out_sink, &mut child.stdout), (err_sink, &mut child.stderr)] {
            if let Some(sink) = sink {
                *slot = Some(OwnedFd::from(sink));
            }
        }
        Ok((io, child))
    }

    fn pending_stdin(&self, reader: File) {
        // Keep the reader until the console is attached.
        if let Ok(mut pending) = self.pending_outputs.lock() {
            // Stored after the outputs; marked by position in attach_console.
            pending.push(reader);
        }
    }

    /// The config this io was made from.
    pub fn config(&self) -> &StdioConfig {
        &self.config
    }

    /// Starts copying between the pty master and the targets.
    pub fn attach_console(&self, master: File) -> Result<()> {
        let mut pending = self
            .pending_outputs
            .lock()
            .map_err(|_| Error::Other("stdio lock poisoned".into()))?;
        let has_stdout = parse_target(&self.config.stdout)? != Target::Null;
        let has_stdin = parse_target(&self.config.stdin)? != Target::Null;
        let mut items = std::mem::take(&mut *pending).into_iter();
        let out = if has_stdout { items.next() } else { None };
        let input = if has_stdin { items.next() } else { None };
        if let Some(input) = input {
            let w = master.try_clone().map_err(io_err("dup console"))?;
            if let Ok(mut d) = self.stdin_dest.lock() {
                *d = Some(w);
            }
            self.spawn_stdin_copy(input);
        }
        match out {
            Some(sink) => self.spawn_output_copy(master, sink),
            None => {
                // Nobody reads the terminal: drain it so the process never blocks.
                let sink = OpenOptions::new()
                    .write(true)
                    .open("/dev/null")
                    .map_err(io_err("open /dev/null"))?;
                self.spawn_output_copy(master, sink);
            }
        }
        Ok(())
    }

    fn spawn_stdin_copy(&self, mut reader: File) {
        let dest = self.stdin_dest.clone();
        let hold = self.stdin_hold.clone();
        let id = self.id.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                };
                let Ok(mut guard) = dest.lock() else { break };
                let Some(d) = guard.as_mut() else { break };
                if d.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            tracing::debug!(%id, "stdin copy done");
            if let Ok(mut d) = dest.lock() {
                *d = None;
            }
            if let Ok(mut h) = hold.lock() {
                *h = None;
            }
        });
    }

    fn spawn_output_copy(&self, mut from: File, mut to: File) {
        self.outputs.send_modify(|n| *n += 1);
        let outputs = self.outputs.clone();
        let id = self.id.clone();
        std::thread::spawn(move || {
            // A pipe holds 64 KiB; 8 KiB reads keep up and cost each container less.
            let mut buf = vec![0u8; 8 * 1024];
            loop {
                let n = match from.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    // EIO: the terminal's last slave closed.
                    Err(_) => break,
                };
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            tracing::debug!(%id, "output copy done");
            drop(to);
            outputs.send_modify(|n| *n = n.saturating_sub(1));
        });
    }

    /// CloseIO: lets go of the shim's hold on stdin, so the process sees EOF once
    /// the client's writer is gone too.
    pub fn close_stdin(&self) {
        // With the hold gone, the copy reads EOF as soon as no client writer is
        // left (at once for a FIFO nobody opened for writing).
        if let Ok(mut h) = self.stdin_hold.lock() {
            *h = None;
        }
    }

    /// Waits up to `timeout` for the output copies to deliver everything.
    pub async fn wait_outputs(&self, timeout: Duration) -> bool {
        let mut rx = self.outputs.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|n| *n == 0))
            .await
            .map(|r| r.is_ok())
            .unwrap_or(false)
    }

    /// Drops the input side for good (process deleted).
    pub fn shutdown(&self) {
        self.close_stdin();
        if let Ok(mut d) = self.stdin_dest.lock() {
            *d = None;
        }
        if let Ok(mut p) = self.pending_outputs.lock() {
            p.clear();
        }
    }

    /// Id the io belongs to (for logs).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Namespace the io belongs to (for loggers).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_targets() {
        assert_eq!(parse_target("").expect("empty"), Target::Null);
        assert_eq!(
            parse_target("/run/x/stdout").expect("fifo"),
            Target::Fifo("/run/x/stdout".into())
        );
        assert_eq!(
            parse_target("fifo:///run/x/stdout").expect("fifo"),
            Target::Fifo("/run/x/stdout".into())
        );
        assert_eq!(
            parse_target("file:///var/log/a%20b.log").expect("file"),
            Target::File("/var/log/a b.log".into())
        );
        assert_eq!(
            parse_target("binary:///usr/bin/logger?id=1&flag&name=a%2Fb").expect("binary"),
            Target::Binary {
                path: "/usr/bin/logger".into(),
                args: vec![
                    "id".into(),
                    "1".into(),
                    "flag".into(),
                    "name".into(),
                    "a/b".into()
                ],
            }
        );
        assert!(parse_target("http://x/y").is_err());
        assert!(parse_target("file://").is_err());
    }

    #[tokio::test]
    async fn pipes_copy_to_file_targets_and_report_completion() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("out.log");
        std::fs::write(&log, "before\n").expect("seed");
        let config = StdioConfig {
            stdout: format!("file://{}", log.display()),
            stderr: format!("file://{}", log.display()),
            ..Default::default()
        };
        let (io, child) = ProcessIo::create(&config, "c", "ns").expect("create");
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "echo out; echo err >&2"]);
        child.apply(&mut cmd);
        let status = cmd.status().expect("run");
        drop(cmd);
        assert!(status.success());
        assert!(io.wait_outputs(Duration::from_secs(5)).await);
        let text = std::fs::read_to_string(&log).expect("read");
        assert!(text.starts_with("before\n"), "{text}");
        assert!(text.contains("out\n") && text.contains("err\n"), "{text}");
    }

    #[tokio::test]
    async fn binary_targets_hand_output_to_a_logging_binary() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let logger = dir.path().join("logger.sh");
        let log = dir.path().join("log.txt");
        std::fs::write(
            &logger,
            "#!/bin/sh\nexec 5>&-\necho \"$CONTAINER_NAMESPACE/$CONTAINER_ID\" > \"$1\"\ncat <&3 >> \"$1\"\n",
        )
        .expect("logger");
        std::fs::set_permissions(&logger, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let uri = format!("binary://{}?{}", logger.display(), log.display());
        let config = StdioConfig {
            stdout: uri.clone(),
            stderr: uri,
            ..Default::default()
        };
        let (io, child) = ProcessIo::create(&config, "c1", "ns1").expect("create");
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "echo via-logger"]);
        child.apply(&mut cmd);
        assert!(cmd.status().expect("run").success());
        drop(cmd);
        assert!(io.wait_outputs(Duration::from_secs(5)).await);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text == "ns1/c1\nvia-logger\n" {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "logger wrote {text:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[tokio::test]
    async fn stdin_fifo_reaches_process_and_close_io_ends_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo_in = dir.path().join("in");
        nix::unistd::mkfifo(&fifo_in, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        let out = dir.path().join("out");
        let config = StdioConfig {
            stdin: fifo_in.display().to_string(),
            stdout: format!("file://{}", out.display()),
            ..Default::default()
        };
        let (io, child) = ProcessIo::create(&config, "c", "ns").expect("create");
        let mut cmd = Command::new("/bin/cat");
        child.apply(&mut cmd);
        let mut proc = cmd.spawn().expect("cat");
        drop(cmd);
        {
            let mut w = OpenOptions::new()
                .write(true)
                .open(&fifo_in)
                .expect("writer");
            w.write_all(b"hello\n").expect("write");
        }
        // The client's writer is gone but the shim's hold keeps cat reading.
        std::thread::sleep(Duration::from_millis(200));
        assert!(proc.try_wait().expect("try_wait").is_none());
        io.close_stdin();
        let status = proc.wait().expect("wait");
        assert!(status.success());
        assert!(io.wait_outputs(Duration::from_secs(5)).await);
        assert_eq!(std::fs::read_to_string(&out).expect("read"), "hello\n");
    }
}
