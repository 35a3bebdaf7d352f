//! The guest's containers: created, started, signalled and deleted with youki's
//! `libcontainer` through runc's command line ([`youki_cli`], answered by this same
//! binary re-executed), as the youki shim does on a host. Each container's exit is
//! caught by the agent's reaper (the agent is PID 1 and a subreaper).

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use shim_support::console::ConsoleSocket;
use shim_support::oom::OomCounter;
use shim_support::reaper::Reaper;
use shim_support::stdio::ChildStdio;
use shim_support::task::oci_cli::{Runtime, RuntimeOptions};
use shim_support::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, watch};

/// The namespace directory of the runtime's state (as containerd names it).
const NAMESPACE: &str = "k8s.io";

/// One process of a container: its init, or one it exec'd.
#[derive(Debug)]
struct Process {
    pid: i32,
    /// The exit code once it has exited.
    exit: watch::Receiver<Option<i32>>,
    io: Arc<Pipes>,
}

/// One container the agent made.
#[derive(Debug)]
struct Entry {
    init: Process,
    /// The OOM kills of the container's cgroup (cgroup v2, the guest's).
    oom: Option<Arc<OomCounter>>,
    /// Exec'd processes by exec id.
    execs: HashMap<String, Process>,
}

type Reader = Box<dyn AsyncRead + Send + Unpin>;
type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// The agent's ends of a process's stdio: pipes, or its terminal's master (read
/// as stdout, written as stdin; no stderr). `None` once closed (or, for stdin,
/// never opened).
struct Pipes {
    stdout: tokio::sync::Mutex<Option<Reader>>,
    stderr: tokio::sync::Mutex<Option<Reader>>,
    stdin: tokio::sync::Mutex<Option<Writer>>,
    /// The terminal's master, for resizes.
    console: Option<std::fs::File>,
}

impl std::fmt::Debug for Pipes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipes")
            .field("terminal", &self.console.is_some())
            .finish_non_exhaustive()
    }
}

/// Which output stream of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Stdout,
    Stderr,
}

/// The most one read returns.
const MAX_READ: usize = 1 << 20;

/// A pipe: (read end, write end), both close-on-exec (the runtime's stdio are
/// dup'ed copies).
fn pipe_pair(what: &str) -> Result<(OwnedFd, OwnedFd), Error> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::io(format!("{what} pipe"), e.into()))
}

/// A process's stdio: the agent's ends, and the ends the runtime gives it.
fn stdio_pipes(stdin: bool) -> Result<(Arc<Pipes>, ChildStdio), Error> {
    let (out_r, out_w) = pipe_pair("stdout")?;
    let (err_r, err_w) = pipe_pair("stderr")?;
    let (in_r, in_w) = match stdin {
        true => pipe_pair("stdin").map(|(r, w)| (Some(r), Some(w)))?,
        false => (None, None),
    };
    let reader = |fd, what| {
        pipe::Receiver::from_owned_fd(fd)
            .map(|r| Box::new(r) as Reader)
            .map_err(|e| Error::io(what, e))
    };
    let io = Arc::new(Pipes {
        stdout: Some(reader(out_r, "stdout")?).into(),
        stderr: Some(reader(err_r, "stderr")?).into(),
        stdin: in_w
            .map(|w| pipe::Sender::from_owned_fd(w).map(|s| Box::new(s) as Writer))
            .transpose()
            .map_err(|e| Error::io("stdin", e))?
            .into(),
        console: None,
    });
    let child = ChildStdio {
        stdin: in_r,
        stdout: Some(out_w),
        stderr: Some(err_w),
    };
    Ok((io, child))
}

/// A process's stdio through the terminal whose master the runtime sent.
fn terminal_pipes(master: std::fs::File, stdin: bool) -> Result<Arc<Pipes>, Error> {
    let copy = |what| {
        master
            .try_clone()
            .map(tokio::fs::File::from_std)
            .map_err(|e| Error::io(format!("terminal {what}"), e))
    };
    let stdout = copy("output")?;
    let stdin = match stdin {
        true => Some(Box::new(copy("input")?) as Writer),
        false => None,
    };
    Ok(Arc::new(Pipes {
        stdout: Some(Box::new(stdout) as Reader).into(),
        stderr: None.into(),
        stdin: stdin.into(),
        console: Some(master),
    }))
}

/// A process's stdio before it runs: the agent's pipes and the runtime's ends,
/// or the console socket its terminal will come through.
struct PreparedStdio {
    pipes: Option<Arc<Pipes>>,
    child: ChildStdio,
    console: Option<ConsoleSocket>,
}

/// Where a process's stdio goes: pipes, or (`terminal`) a terminal the runtime
/// makes and sends over a console socket.
fn process_stdio(stdin: bool, terminal: bool) -> Result<PreparedStdio, Error> {
    if terminal {
        Ok(PreparedStdio {
            pipes: None,
            child: ChildStdio {
                stdin: None,
                stdout: None,
                stderr: None,
            },
            console: Some(ConsoleSocket::new()?),
        })
    } else {
        let (io, child) = stdio_pipes(stdin)?;
        Ok(PreparedStdio {
            pipes: Some(io),
            child,
            console: None,
        })
    }
}

/// The process's pipes: those made before it ran, or its terminal's.
fn pipes_after(
    io: Option<Arc<Pipes>>,
    console: Option<ConsoleSocket>,
    stdin: bool,
) -> Result<Arc<Pipes>, Error> {
    match (io, console) {
        (Some(io), _) => Ok(io),
        (None, Some(socket)) => terminal_pipes(socket.receive()?, stdin),
        (None, None) => Err(Error::Other("a process without stdio".into())),
    }
}

/// The pid a runtime wrote.
fn read_pid(path: &Path) -> Result<i32, Error> {
    std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("read {}", path.display()), e))?
        .trim()
        .parse()
        .map_err(|e| Error::Other(format!("pid file {}: {e}", path.display())))
}

/// The exit of `pid`, from a subscription made before it was started.
fn exit_of(
    mut exits: shim_support::reaper::Subscription,
    pid: i32,
) -> watch::Receiver<Option<i32>> {
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        if let Some(exit) = exits.wait_for(pid).await {
            let _ = tx.send(Some(exit.status));
        }
    });
    rx
}

/// The guest's containers.
#[derive(Debug)]
pub struct Containers {
    /// Where the host's shared directory (bundles) is mounted.
    shared: PathBuf,
    /// The agent's own state per container (pid files, runtime logs).
    state: PathBuf,
    options: RuntimeOptions,
    reaper: Reaper,
    table: Arc<Mutex<HashMap<String, Entry>>>,
    /// Each OOM kill in a container's cgroup, by container id.
    oom_tx: mpsc::UnboundedSender<String>,
    oom_rx: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<String>>>,
}

/// A container id or bundle name: one path component of safe characters.
fn check_name(what: &str, name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && name.len() <= 255
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "{what} {name:?}: want 1-255 of [A-Za-z0-9_.-], not . or .."
        )))
    }
}

impl Containers {
    /// Containers whose bundles are in `shared`, with the runtime `binary` (this
    /// agent's own executable) keeping its state under `runtime_root`.
    pub fn new(
        shared: PathBuf,
        state: PathBuf,
        binary: &Path,
        runtime_root: &Path,
        reaper: Reaper,
    ) -> Self {
        let (oom_tx, oom_rx) = mpsc::unbounded_channel();
        Containers {
            shared,
            state,
            options: RuntimeOptions {
                binary_name: binary.display().to_string(),
                root: runtime_root.display().to_string(),
                systemd_cgroup: false,
                no_pivot_root: false,
                no_new_keyring: false,
            },
            reaper,
            table: Arc::default(),
            oom_tx,
            oom_rx: Arc::new(tokio::sync::Mutex::new(oom_rx)),
        }
    }

    /// Forwards the OOM kills of the cgroup of container `id`'s init (polled; and
    /// once more before the container is removed, see [`Containers::remove`]).
    fn watch_oom(&self, id: &str, pid: i32) -> Option<Arc<OomCounter>> {
        let counter = u32::try_from(pid)
            .map_err(|_| Error::Other(format!("pid {pid}")))
            .and_then(OomCounter::of);
        let counter = match counter {
            Ok(c) => Arc::new(c),
            Err(e) => {
                tracing::warn!(container = id, "cannot watch for OOM: {e}");
                return None;
            }
        };
        shim_support::oom::poll(Arc::clone(&counter), self.oom_tx.clone(), id.to_string());
        Some(counter)
    }

    /// The next container whose cgroup had an OOM kill.
    pub async fn next_oom(&self) -> Result<String, Error> {
        self.oom_rx
            .lock()
            .await
            .recv()
            .await
            .ok_or_else(|| Error::Other("OOM watch ended".into()))
    }

    /// Changes container `id`'s cgroup limits to `resources` (OCI
    /// `LinuxResources` JSON) through the runtime's `update`.
    pub async fn update(&self, id: &str, resources: &[u8]) -> Result<(), Error> {
        self.entry(id, |_| ())?;
        serde_json::from_slice::<serde_json::Value>(resources)
            .map_err(|e| Error::InvalidArgument(format!("resources of {id}: {e}")))?;
        let path = self.state.join(id).join("resources.json");
        std::fs::write(&path, resources)
            .map_err(|e| Error::io(format!("write {}", path.display()), e))?;
        let updated = self.runtime(id).update(id, &path).await;
        let _ = std::fs::remove_file(&path);
        updated
    }

    /// The cgroup metrics of container `id`'s init, while it runs.
    pub async fn stats(
        &self,
        id: &str,
    ) -> Result<shim_support::protos::protobuf::well_known_types::any::Any, Error> {
        let (pid, exited) = self.process(id, "", |p| (p.pid, p.exit.borrow().is_some()))?;
        if exited {
            return Err(Error::NotFound(format!("container {id} is not running")));
        }
        let pid = u32::try_from(pid).map_err(|_| Error::Other(format!("pid {pid}")))?;
        tokio::task::spawn_blocking(move || shim_support::cgroup_stats::metrics_of(pid))
            .await
            .map_err(|e| Error::Other(format!("stats of {id}: {e}")))?
    }

    fn runtime(&self, id: &str) -> Runtime {
        Runtime::new(
            self.options.clone(),
            NAMESPACE,
            &self.state.join(id),
            self.reaper.clone(),
        )
    }

    fn entry<T>(&self, id: &str, f: impl FnOnce(&Entry) -> T) -> Result<T, Error> {
        let table = self
            .table
            .lock()
            .map_err(|_| Error::Other("container table".into()))?;
        table
            .get(id)
            .map(f)
            .ok_or_else(|| Error::NotFound(format!("container {id} not found")))
    }

    /// Process `exec_id` of container `id` (its init when `exec_id` is empty).
    fn process<T>(
        &self,
        id: &str,
        exec_id: &str,
        f: impl FnOnce(&Process) -> T,
    ) -> Result<T, Error> {
        self.entry(id, |e| {
            if exec_id.is_empty() {
                Some(f(&e.init))
            } else {
                e.execs.get(exec_id).map(f)
            }
        })?
        .ok_or_else(|| Error::NotFound(format!("process {exec_id} of container {id} not found")))
    }

    /// Creates container `id` from the bundle `bundle` of the shared directory,
    /// with pipes for its stdout and stderr (and stdin when `stdin`); returns its
    /// init's pid.
    pub async fn create(
        &self,
        id: &str,
        bundle: &str,
        stdin: bool,
        terminal: bool,
    ) -> Result<u32, Error> {
        check_name("container id", id)?;
        check_name("bundle", bundle)?;
        let bundle = self.shared.join(bundle);
        if !bundle.join("config.json").is_file() {
            return Err(Error::NotFound(format!(
                "bundle {}: no config.json",
                bundle.display()
            )));
        }
        if self.entry(id, |_| ()).is_ok() {
            return Err(Error::AlreadyExists(format!("container {id} exists")));
        }
        let state = self.state.join(id);
        std::fs::create_dir_all(&state)
            .map_err(|e| Error::io(format!("create {}", state.display()), e))?;
        let pid_file = state.join("init.pid");
        let PreparedStdio {
            pipes: io,
            child: stdio,
            console,
        } = process_stdio(stdin, terminal)?;
        // Subscribed before the init exists: its exit cannot be missed.
        let exits = self.reaper.subscribe();
        let socket = console.as_ref().map(ConsoleSocket::path);
        self.runtime(id)
            .create(id, &bundle, &pid_file, socket, stdio)
            .await?;
        let io = pipes_after(io, console, stdin)?;
        let pid = read_pid(&pid_file)?;
        let init = Process {
            pid,
            exit: exit_of(exits, pid),
            io,
        };
        self.table
            .lock()
            .map_err(|_| Error::Other("container table".into()))?
            .insert(
                id.to_string(),
                Entry {
                    init,
                    oom: None,
                    execs: HashMap::new(),
                },
            );
        let oom = self.watch_oom(id, pid);
        if let Ok(mut table) = self.table.lock() {
            if let Some(entry) = table.get_mut(id) {
                entry.oom = oom;
            }
        }
        tracing::info!(container = id, pid, "created");
        u32::try_from(pid).map_err(|_| Error::Other(format!("pid {pid}")))
    }

    pub async fn start(&self, id: &str) -> Result<(), Error> {
        self.entry(id, |_| ())?;
        self.runtime(id).start(id).await
    }

    /// Runs `process` (the OCI spec's `process` object, as JSON) in container
    /// `id` as `exec_id`, with stdio pipes as the init's; returns its pid.
    pub async fn exec(
        &self,
        id: &str,
        exec_id: &str,
        process: &[u8],
        stdin: bool,
        terminal: bool,
    ) -> Result<u32, Error> {
        check_name("exec id", exec_id)?;
        let exists = self.entry(id, |e| e.execs.contains_key(exec_id))?;
        if exists {
            return Err(Error::AlreadyExists(format!(
                "process {exec_id} of container {id} exists"
            )));
        }
        serde_json::from_slice::<serde_json::Value>(process)
            .map_err(|e| Error::InvalidArgument(format!("process of {exec_id}: {e}")))?;
        let state = self.state.join(id);
        let process_file = state.join(format!("exec-{exec_id}.json"));
        let pid_file = state.join(format!("exec-{exec_id}.pid"));
        std::fs::write(&process_file, process)
            .map_err(|e| Error::io(format!("write {}", process_file.display()), e))?;
        let PreparedStdio {
            pipes: io,
            child: stdio,
            console,
        } = process_stdio(stdin, terminal)?;
        let exits = self.reaper.subscribe();
        let socket = console.as_ref().map(ConsoleSocket::path);
        let ran = self
            .runtime(id)
            .exec(id, &process_file, &pid_file, socket, stdio)
            .await;
        let _ = std::fs::remove_file(&process_file);
        ran?;
        let io = pipes_after(io, console, stdin)?;
        let pid = read_pid(&pid_file)?;
        let _ = std::fs::remove_file(&pid_file);
        let exec = Process {
            pid,
            exit: exit_of(exits, pid),
            io,
        };
        if let Ok(mut table) = self.table.lock() {
            if let Some(entry) = table.get_mut(id) {
                entry.execs.insert(exec_id.to_string(), exec);
            }
        }
        tracing::info!(container = id, exec = exec_id, pid, "exec'd");
        u32::try_from(pid).map_err(|_| Error::Other(format!("pid {pid}")))
    }

    /// The process's exit code, once it has exited.
    pub async fn wait(&self, id: &str, exec_id: &str) -> Result<i32, Error> {
        let mut exit = self.process(id, exec_id, |p| p.exit.clone())?;
        let code = exit
            .wait_for(Option::is_some)
            .await
            .map_err(|_| Error::Other(format!("container {id}: its exit was lost")))?;
        Ok(code.unwrap_or(255))
    }

    /// Signals the init (through the runtime, `all` for every process of the
    /// container) or an exec'd process (by its pid).
    pub async fn signal(
        &self,
        id: &str,
        exec_id: &str,
        signal: u32,
        all: bool,
    ) -> Result<(), Error> {
        let (pid, exited) = self.process(id, exec_id, |p| (p.pid, p.exit.borrow().is_some()))?;
        if exited && !all {
            return Err(Error::NotFound(format!(
                "container {id}: process {pid} already finished"
            )));
        }
        if exec_id.is_empty() {
            return self.runtime(id).kill(id, signal, all).await;
        }
        let signal = nix::sys::signal::Signal::try_from(signal as i32)
            .map_err(|_| Error::InvalidArgument(format!("signal {signal}")))?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal)
            .map_err(|e| Error::io(format!("signal process {pid}"), e.into()))
    }

    /// What the container wrote on `output` since the last read, at most
    /// `max` bytes (capped at 1 MiB), waiting for at least one; empty at the end.
    pub async fn read(
        &self,
        id: &str,
        exec_id: &str,
        output: Output,
        max: usize,
    ) -> Result<Vec<u8>, Error> {
        use tokio::io::AsyncReadExt;
        let io = self.process(id, exec_id, |p| Arc::clone(&p.io))?;
        let mut pipe = match output {
            Output::Stdout => io.stdout.lock().await,
            Output::Stderr => io.stderr.lock().await,
        };
        let Some(reader) = pipe.as_mut() else {
            return Ok(Vec::new());
        };
        let mut buf = vec![0; max.clamp(1, MAX_READ)];
        let n = match reader.read(&mut buf).await {
            Ok(n) => n,
            // A terminal whose last slave closed: the end of its output.
            Err(e) if e.raw_os_error() == Some(libc::EIO) => 0,
            Err(e) => return Err(Error::io(format!("read {output:?} of {id}"), e)),
        };
        if n == 0 {
            *pipe = None;
        }
        buf.truncate(n);
        Ok(buf)
    }

    /// Writes all of `data` to the container's stdin.
    pub async fn write_stdin(&self, id: &str, exec_id: &str, data: &[u8]) -> Result<usize, Error> {
        use tokio::io::AsyncWriteExt;
        let io = self.process(id, exec_id, |p| Arc::clone(&p.io))?;
        let mut stdin = io.stdin.lock().await;
        let Some(writer) = stdin.as_mut() else {
            return Err(Error::FailedPrecondition(format!(
                "container {id} has no stdin open"
            )));
        };
        writer
            .write_all(data)
            .await
            .map_err(|e| Error::io(format!("write stdin of {id}"), e))?;
        Ok(data.len())
    }

    /// Sets the size of the process's terminal.
    pub fn resize(&self, id: &str, exec_id: &str, width: u32, height: u32) -> Result<(), Error> {
        let io = self.process(id, exec_id, |p| Arc::clone(&p.io))?;
        match &io.console {
            Some(master) => shim_support::console::resize(master, width, height),
            None => Err(Error::FailedPrecondition(format!(
                "process {exec_id:?} of container {id} has no terminal"
            ))),
        }
    }

    /// Closes the container's stdin (a no-op when already closed).
    pub async fn close_stdin(&self, id: &str, exec_id: &str) -> Result<(), Error> {
        let io = self.process(id, exec_id, |p| Arc::clone(&p.io))?;
        io.stdin.lock().await.take();
        Ok(())
    }

    /// Forgets exec'd process `exec_id` of container `id`, once it has exited.
    pub fn forget_exec(&self, id: &str, exec_id: &str) -> Result<(), Error> {
        let exited = self.process(id, exec_id, |p| p.exit.borrow().is_some())?;
        if !exited {
            return Err(Error::FailedPrecondition(format!(
                "process {exec_id} of container {id} is running"
            )));
        }
        if let Ok(mut table) = self.table.lock() {
            if let Some(entry) = table.get_mut(id) {
                entry.execs.remove(exec_id);
            }
        }
        Ok(())
    }

    /// Deletes the container's runtime state (killing it first if it still runs)
    /// and forgets it.
    pub async fn remove(&self, id: &str) -> Result<(), Error> {
        let (pid, exited, oom) = self.entry(id, |e| {
            (e.init.pid, e.init.exit.borrow().is_some(), e.oom.clone())
        })?;
        // A kill the poll has not seen yet is told before its cgroup goes.
        if oom.and_then(|c| c.new_kills()) == Some(true) {
            let _ = self.oom_tx.send(id.to_string());
        }
        self.runtime(id).delete(id, !exited).await?;
        if let Ok(mut table) = self.table.lock() {
            table.remove(id);
        }
        let _ = std::fs::remove_dir_all(self.state.join(id));
        tracing::info!(container = id, pid, "removed");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_one_safe_path_component() {
        for good in ["c1", "a.b-c_d", &"x".repeat(255)] {
            assert!(check_name("id", good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "a/b", "../x", "a b", &"x".repeat(256)] {
            let err = check_name("id", bad).expect_err(bad);
            assert!(matches!(err, Error::InvalidArgument(_)), "{bad}: {err}");
        }
    }

    #[tokio::test]
    async fn unknown_containers_and_bundles_are_not_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        let containers = Containers::new(
            dir.path().join("shared"),
            dir.path().join("state"),
            Path::new("/nonexistent"),
            &dir.path().join("root"),
            Reaper::default(),
        );
        let err = containers
            .create("c1", "nobundle", false, false)
            .await
            .expect_err("no bundle");
        assert!(matches!(err, Error::NotFound(_)), "{err}");
        assert!(err.to_string().contains("config.json"), "{err}");
        for err in [
            containers.start("c1").await.expect_err("start"),
            containers.wait("c1", "").await.expect_err("wait"),
            containers
                .signal("c1", "", 9, false)
                .await
                .expect_err("signal"),
            containers
                .exec("c1", "e1", b"{}", false, false)
                .await
                .map(drop)
                .expect_err("exec"),
            containers.remove("c1").await.expect_err("remove"),
            containers
                .read("c1", "", Output::Stdout, 10)
                .await
                .expect_err("read"),
            containers
                .write_stdin("c1", "", b"x")
                .await
                .map(drop)
                .expect_err("write"),
        ] {
            assert!(matches!(err, Error::NotFound(_)), "{err}");
        }
    }
}
