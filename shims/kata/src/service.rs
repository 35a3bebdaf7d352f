//! The task service of a VM pod's shim: the pod's sandbox task is its VM, every
//! other task a container the guest agent runs.
//!
//! - **Sandbox task** (the pod's first Create): boots the VM ([`crate::boot`]); its
//!   pid is the hypervisor's; it ends when the VM ends. Kill asks the agent to
//!   power off (SIGKILL to the hypervisor if it does not).
//! - **Container tasks**: the container's rootfs and the host files its spec binds
//!   are bound into the VM's shared directory, the spec fitted for the guest
//!   ([`crate::guest_bundle`]), and the agent creates, starts, signals and removes
//!   it. Its stdio reaches the manager's FIFOs through the agent's streams.
//! - A VM that ends while containers run (a crash, a guest panic) ends them: each
//!   gets exit status 255 and its exit event.

use std::collections::{BTreeMap, HashMap};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use shim_support::error::ttrpc_result as ttrpc;
use shim_support::events::{self, timestamp, topics};
use shim_support::launch::ServeContext;
use shim_support::protos::api;
use shim_support::protos::protobuf::{EnumOrUnknown, MessageField};
use shim_support::protos::shim_async::Task;
use shim_support::protos::ttrpc::r#async::TtrpcContext;
use shim_support::protos::ttrpc::Result as TtrpcResult;
use shim_support::protos::types::task::Status;
use shim_support::stdio::{ChildStdio, ProcessIo, StdioConfig};
use shim_support::Error;
use tokio::net::unix::pipe;
use tokio::sync::{watch, Mutex};

use crate::agent_channel::{Agent, Stream};
use crate::boot::boot;
use crate::config::KataConfig;
use crate::guest_bundle;
use crate::host_hooks::{ContainerHooks, Stage};
use crate::shared_mounts;
use crate::vmm::{Nic, Qemu, RunningVm, VmSpec};

/// How long one agent call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a powered-off VM may take to end before its hypervisor is killed.
const POWER_OFF_GRACE: Duration = Duration::from_secs(5);
/// How long an exit waits for the process's output to be delivered.
const EXIT_IO_WAIT: Duration = Duration::from_secs(3);
/// The exit status of a container whose VM ended under it.
const VM_GONE_STATUS: i32 = 255;

type Exit = Option<(i32, SystemTime)>;

/// The task table's key of a container's init (`exec_id` empty) or exec'd
/// process. Container ids hold no `/`.
fn key(id: &str, exec_id: &str) -> String {
    if exec_id.is_empty() {
        id.to_string()
    } else {
        format!("{id}/{exec_id}")
    }
}

/// A container created in the guest.
struct CreatedContainer {
    pid: u32,
    io: ProcessIo,
    shared: PathBuf,
    hooks: Arc<ContainerHooks>,
}

/// One task: the sandbox (the VM), a container, or a process exec'd in one
/// (keyed by [`key`]).
#[derive(Debug)]
struct TaskEntry {
    /// The container (or sandbox) id, and the exec id of an exec'd process.
    container: String,
    exec_id: String,
    /// An exec'd process's OCI `process` JSON, until it is started.
    process: Option<Vec<u8>>,
    bundle: PathBuf,
    pid: u32,
    stdio: StdioConfig,
    started: bool,
    exit: watch::Sender<Exit>,
    io: Option<Arc<ProcessIo>>,
    /// The container's directory in the VM's shared directory (not the sandbox).
    shared: Option<PathBuf>,
    /// A terminal size asked for before an exec'd process exists in the guest:
    /// applied once it does.
    pending_size: Option<(u32, u32)>,
    /// A container's OCI hooks, run on the host.
    hooks: Option<Arc<ContainerHooks>>,
}

/// The pod's VM, once booted.
#[derive(Debug)]
struct PodVm {
    sandbox_id: String,
    agent: Arc<Agent>,
    spec: VmSpec,
    pid: u32,
}

#[derive(Debug)]
struct Inner {
    ctx: ServeContext,
    config: KataConfig,
    vm: Mutex<Option<PodVm>>,
    tasks: Mutex<HashMap<String, TaskEntry>>,
}

/// The task service of one VM pod.
#[derive(Debug, Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

fn agent_err(e: crate::agent_channel::ChannelError) -> Error {
    use shim_support::protos::ttrpc::{Code, Error as TtrpcError};
    match e {
        crate::agent_channel::ChannelError::Call {
            source: TtrpcError::RpcStatus(s),
            ..
        } => match s.code() {
            Code::NOT_FOUND => Error::NotFound(s.message().to_string()),
            Code::ALREADY_EXISTS => Error::AlreadyExists(s.message().to_string()),
            Code::INVALID_ARGUMENT => Error::InvalidArgument(s.message().to_string()),
            Code::FAILED_PRECONDITION => Error::FailedPrecondition(s.message().to_string()),
            _ => Error::Other(format!("agent: {}", s.message())),
        },
        other => Error::Other(other.to_string()),
    }
}

impl Service {
    pub fn new(ctx: ServeContext, config: KataConfig) -> Service {
        Service {
            inner: Arc::new(Inner {
                ctx,
                config,
                vm: Mutex::new(None),
                tasks: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Serves port-forward into the VM on the relay socket beside the task
    /// socket ([`crate::port_relay`]); without a socket path, no relay.
    pub fn serve_port_relay(&self) {
        let Some(socket) = self.inner.ctx.socket.as_deref() else {
            return;
        };
        let path = crate::port_relay::relay_path(socket);
        let this = self.clone();
        let served = crate::port_relay::serve(&path, move || {
            let this = this.clone();
            async move { this.agent().await.ok() }
        });
        if let Err(e) = served {
            tracing::warn!("port-forward relay {}: {e}", path.display());
        }
    }

    async fn agent(&self) -> Result<Arc<Agent>, Error> {
        self.inner
            .vm
            .lock()
            .await
            .as_ref()
            .map(|vm| Arc::clone(&vm.agent))
            .ok_or_else(|| Error::FailedPrecondition("the pod's VM is not running".into()))
    }

    async fn is_sandbox(&self, id: &str) -> bool {
        self.inner
            .vm
            .lock()
            .await
            .as_ref()
            .is_some_and(|vm| vm.sandbox_id == id)
    }

    /// Records `id`'s exit once and publishes it.
    async fn record_exit(&self, key: &str, status: i32) {
        let at = SystemTime::now();
        let (pid, container, id) = {
            let tasks = self.inner.tasks.lock().await;
            let Some(task) = tasks.get(key) else { return };
            if task.exit.borrow().is_some() {
                return;
            }
            task.exit.send_replace(Some((status, at)));
            let id = if task.exec_id.is_empty() {
                task.container.clone()
            } else {
                task.exec_id.clone()
            };
            (task.pid, task.container.clone(), id)
        };
        tracing::info!(task = key, status, "exited");
        self.inner
            .ctx
            .events
            .publish(
                topics::TASK_EXIT_EVENT_TOPIC,
                events::TaskExit {
                    container_id: container,
                    id,
                    pid,
                    exit_status: status as u32,
                    exited_at: MessageField::some(timestamp(at)),
                    ..Default::default()
                },
            )
            .await;
    }

    /// Boots the pod's VM; its hypervisor is the sandbox task's process.
    async fn create_sandbox(&self, req: &api::CreateTaskRequest) -> Result<RunningVm, Error> {
        let mut config = self.inner.config.clone();
        config
            .apply_options(req.options.as_ref())
            .map_err(Error::InvalidArgument)?;
        let pod = read_spec(Path::new(&req.bundle))?;
        let annotations: BTreeMap<String, String> = pod
            .get("annotations")
            .and_then(|a| serde_json::from_value(a.clone()).ok())
            .unwrap_or_default();
        let run_dir = config.run_dir(&req.id);
        std::fs::create_dir_all(&run_dir)
            .map_err(|e| Error::io(format!("create {}", run_dir.display()), e))?;
        let mut spec = config.vm_spec(run_dir);
        (spec.memory_mib, spec.vcpus) = config.size_for(&annotations);
        let nics = match pod_nics(&pod).await {
            Ok(nics) => nics,
            Err(e) => {
                shared_mounts::remove_vm_dir(&spec.run_dir, &spec.shared_dir());
                return Err(e);
            }
        };
        spec.nics = nics
            .network
            .interfaces
            .iter()
            .zip(&nics.taps)
            .map(|(interface, tap)| Nic {
                mac: interface.mac,
                tap: tap.as_raw_fd(),
            })
            .collect();
        let qemu = Qemu {
            binary: config.qemu.clone(),
        };
        let booted = boot(&qemu, &spec, config.boot_timeout).await;
        // qemu has its own copies of the taps now (or is gone).
        let network = nics.network;
        drop(nics.taps);
        let mut booted = match booted {
            Ok(b) => b,
            Err(e) => {
                shared_mounts::remove_vm_dir(&spec.run_dir, &spec.shared_dir());
                return Err(Error::Other(format!("pod VM: {e}")));
            }
        };
        // The network always: with no interface it still brings the guest's
        // loopback up. Then the pod's sysctls and /dev/shm.
        let sysctls: HashMap<String, String> = pod
            .pointer("/linux/sysctl")
            .and_then(|s| serde_json::from_value(s.clone()).ok())
            .unwrap_or_default();
        let pod_req = protocols::agent::ConfigurePodRequest {
            sysctls,
            shm_size: pod_shm_size(&pod),
            ..Default::default()
        };
        let prepared = async {
            let req = crate::pod_network::request(&network);
            booted.agent.configure_network(&req, CALL_TIMEOUT).await?;
            booted.agent.configure_pod(&pod_req, CALL_TIMEOUT).await
        };
        if let Err(e) = prepared.await {
            let _ = booted.vm.stop().await;
            shared_mounts::remove_vm_dir(&spec.run_dir, &spec.shared_dir());
            return Err(Error::Other(format!("pod VM: {e}")));
        }
        tracing::info!(
            boot_ms = booted.boot_time.as_millis() as u64,
            pid = booted.vm.pid(),
            "pod VM up"
        );
        let pid = booted.vm.pid();
        let agent = Arc::new(booted.agent);
        self.watch_ooms(Arc::clone(&agent));
        *self.inner.vm.lock().await = Some(PodVm {
            sandbox_id: req.id.clone(),
            agent,
            spec,
            pid,
        });
        Ok(booted.vm)
    }

    /// Records the VM's end, for the sandbox task `sandbox` (in the task table
    /// by now, so the exit is not lost).
    /// Publishes a TaskOOM event for each OOM kill the guest reports, for as long
    /// as the agent answers.
    fn watch_ooms(&self, agent: Arc<Agent>) {
        let this = self.clone();
        tokio::spawn(async move {
            let forever = Duration::from_secs(u32::MAX.into());
            while let Ok(id) = agent.wait_oom(forever).await {
                tracing::info!(container = %id, "OOM in the guest");
                this.inner
                    .ctx
                    .events
                    .publish(
                        topics::TASK_OOM_EVENT_TOPIC,
                        events::TaskOOM {
                            container_id: id,
                            ..Default::default()
                        },
                    )
                    .await;
            }
        });
    }

    fn watch_vm(&self, mut vm: RunningVm, sandbox: String) {
        let this = self.clone();
        tokio::spawn(async move {
            let status = match vm.exit().await {
                Ok(s) => s.code().unwrap_or(VM_GONE_STATUS),
                Err(_) => VM_GONE_STATUS,
            };
            this.vm_ended(&sandbox, status).await;
        });
    }

    /// The VM ended: every container still running ends with it.
    async fn vm_ended(&self, sandbox: &str, status: i32) {
        let ids: Vec<String> = self.inner.tasks.lock().await.keys().cloned().collect();
        for id in ids.iter().filter(|id| *id != sandbox) {
            self.record_exit(id, VM_GONE_STATUS).await;
        }
        self.record_exit(sandbox, status).await;
    }

    async fn create_container(
        &self,
        req: &api::CreateTaskRequest,
    ) -> Result<CreatedContainer, Error> {
        let (agent, shared_root, vm_pid) = {
            let vm = self.inner.vm.lock().await;
            let vm = vm
                .as_ref()
                .ok_or_else(|| Error::FailedPrecondition("the pod's VM is not running".into()))?;
            (Arc::clone(&vm.agent), vm.spec.shared_dir(), vm.pid)
        };
        let bundle = Path::new(&req.bundle);
        let text = std::fs::read(bundle.join("config.json"))
            .map_err(|e| Error::io(format!("read {}/config.json", bundle.display()), e))?;
        let spec: serde_json::Value = serde_json::from_slice(&text)?;
        let fitted = guest_bundle::for_guest(spec, &req.id)?;
        let hooks = ContainerHooks::new(&req.id, bundle, &fitted.spec, fitted.hooks.as_ref());
        let shared = shared_root.join(&req.id);
        // Joining an absolute path gives that path.
        let rootfs = bundle.join(&fitted.rootfs);
        shared_mounts::bind_bundle(&shared, &rootfs, &fitted)?;
        // The guest's terminal (if any) reaches the host as a byte stream: pipes
        // to the manager's FIFOs either way.
        let stdio = StdioConfig {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: false,
        };
        let created = async {
            hooks.run(Stage::Create, vm_pid).await?;
            let (io, child) = ProcessIo::create(&stdio, &req.id, &self.inner.ctx.namespace)?;
            let pid = agent
                .create_container(
                    &req.id,
                    &req.id,
                    child.stdin.is_some(),
                    req.terminal,
                    CALL_TIMEOUT,
                )
                .await
                .map_err(agent_err)?;
            forward_stdio(&agent, &req.id, "", child);
            Ok::<_, Error>((pid, io))
        }
        .await;
        match created {
            Ok((pid, io)) => Ok(CreatedContainer {
                pid,
                io,
                shared,
                hooks: Arc::new(hooks),
            }),
            Err(e) => {
                shared_mounts::release(&shared);
                Err(e)
            }
        }
    }

    /// Waits for the end of a container's init or exec'd process in the guest
    /// and records it.
    fn watch_exit(&self, agent: Arc<Agent>, id: String, exec_id: String) {
        let this = self.clone();
        tokio::spawn(async move {
            // No deadline: a process may run for as long as it likes.
            let forever = Duration::from_secs(u32::MAX.into());
            match agent.wait_container(&id, &exec_id, forever).await {
                Ok(status) => {
                    let k = key(&id, &exec_id);
                    // The process's last output reaches its log before its exit
                    // is told (the agent's streams end once it has exited).
                    let io = this
                        .inner
                        .tasks
                        .lock()
                        .await
                        .get(&k)
                        .and_then(|t| t.io.clone());
                    if let Some(io) = io {
                        if !io.wait_outputs(EXIT_IO_WAIT).await {
                            tracing::debug!(task = %k, "output still open after exit");
                        }
                    }
                    this.record_exit(&k, status).await
                }
                Err(e) => {
                    tracing::warn!(container = %id, exec = %exec_id, "wait in the guest: {e}")
                }
            }
        });
    }

    /// Runs exec'd process `exec_id` of container `id` in the guest.
    async fn start_exec(&self, id: &str, exec_id: &str) -> Result<u32, Error> {
        let k = key(id, exec_id);
        let (process, stdio) = {
            let mut tasks = self.inner.tasks.lock().await;
            let task = tasks
                .get_mut(&k)
                .ok_or_else(|| Error::NotFound(format!("process {exec_id} of {id} not found")))?;
            let process = task.process.take().ok_or_else(|| {
                Error::FailedPrecondition(format!("process {exec_id} of {id} was started"))
            })?;
            (process, task.stdio.clone())
        };
        let agent = self.agent().await?;
        let terminal = stdio.terminal;
        let pipes = StdioConfig {
            terminal: false,
            ..stdio
        };
        let (io, child) = ProcessIo::create(&pipes, exec_id, &self.inner.ctx.namespace)?;
        let pid = agent
            .exec_process(
                id,
                exec_id,
                &process,
                child.stdin.is_some(),
                terminal,
                CALL_TIMEOUT,
            )
            .await
            .map_err(agent_err)?;
        forward_stdio(&agent, id, exec_id, child);
        let pending_size = self.inner.tasks.lock().await.get_mut(&k).and_then(|task| {
            task.pid = pid;
            task.io = Some(Arc::new(io));
            task.pending_size.take()
        });
        if let Some(size) = pending_size {
            if let Err(e) = agent.resize_terminal(id, exec_id, size, CALL_TIMEOUT).await {
                tracing::warn!(container = %id, exec = %exec_id, "early resize: {e}");
            }
        }
        self.watch_exit(agent, id.to_string(), exec_id.to_string());
        Ok(pid)
    }

    async fn kill_sandbox(&self) -> Result<(), Error> {
        let Some((agent, pid)) = self
            .inner
            .vm
            .lock()
            .await
            .as_ref()
            .map(|vm| (Arc::clone(&vm.agent), vm.pid))
        else {
            return Ok(());
        };
        let exit = {
            let tasks = self.inner.tasks.lock().await;
            tasks
                .values()
                .find(|t| t.pid == pid)
                .map(|t| t.exit.subscribe())
        };
        if let Err(e) = agent.shutdown(CALL_TIMEOUT).await {
            tracing::warn!("agent shutdown: {e}");
        }
        let ended = match exit {
            Some(mut rx) => tokio::time::timeout(POWER_OFF_GRACE, rx.wait_for(Option::is_some))
                .await
                .is_ok(),
            None => false,
        };
        if !ended {
            // By its pid: the hypervisor is this shim's child.
            let pid = nix::unistd::Pid::from_raw(pid as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
        Ok(())
    }

    /// Forgets an exec'd process once it has exited (here and in the guest).
    async fn delete_exec(&self, id: &str, exec_id: &str) -> Result<api::DeleteResponse, Error> {
        let task = {
            let mut tasks = self.inner.tasks.lock().await;
            let k = key(id, exec_id);
            let task = tasks
                .get(&k)
                .ok_or_else(|| Error::NotFound(format!("process {exec_id} of {id} not found")))?;
            if task.started && task.exit.borrow().is_none() {
                return Err(Error::FailedPrecondition(format!(
                    "process {exec_id} of {id} is running"
                )));
            }
            tasks.remove(&k).ok_or_else(|| Error::NotFound(k.clone()))?
        };
        if task.started {
            if let Ok(agent) = self.agent().await {
                if let Err(e) = agent.remove_process(id, exec_id, CALL_TIMEOUT).await {
                    tracing::debug!(container = id, exec = exec_id, "remove in the guest: {e}");
                }
            }
        }
        if let Some(io) = task.io {
            io.wait_outputs(Duration::from_secs(5)).await;
            io.shutdown();
        }
        let exit = *task.exit.borrow();
        let (status, at) = exit.unwrap_or((0, SystemTime::now()));
        Ok(api::DeleteResponse {
            pid: task.pid,
            exit_status: status as u32,
            exited_at: MessageField::some(timestamp(at)),
            ..Default::default()
        })
    }

    /// The VM's pid (0 once it is gone).
    async fn vm_pid(&self) -> u32 {
        self.inner.vm.lock().await.as_ref().map_or(0, |vm| vm.pid)
    }

    /// Runs `stage` of container `id`'s host hooks, logging a failure.
    async fn run_hooks(&self, id: &str, stage: Stage) {
        let hooks = self
            .inner
            .tasks
            .lock()
            .await
            .get(id)
            .and_then(|t| t.hooks.clone());
        if let Some(hooks) = hooks {
            hooks.run_logged(stage, self.vm_pid().await).await;
        }
    }

    async fn delete_task(&self, id: &str) -> Result<api::DeleteResponse, Error> {
        let sandbox = self.is_sandbox(id).await;
        let (pid, exit, shared, io, hooks) = {
            let mut tasks = self.inner.tasks.lock().await;
            let task = tasks
                .get(id)
                .ok_or_else(|| Error::NotFound(format!("task {id} not found")))?;
            if task.started && task.exit.borrow().is_none() && !sandbox {
                return Err(Error::FailedPrecondition(format!(
                    "task {id} is running: kill it first"
                )));
            }
            let task = tasks.remove(id).ok_or_else(|| Error::NotFound(id.into()))?;
            // Its exec'd processes go with it.
            let prefix = format!("{id}/");
            tasks.retain(|k, _| !k.starts_with(&prefix));
            let exit = *task.exit.borrow();
            (task.pid, exit, task.shared, task.io, task.hooks)
        };
        if sandbox {
            self.kill_sandbox().await?;
            if let Some(vm) = self.inner.vm.lock().await.take() {
                shared_mounts::remove_vm_dir(&vm.spec.run_dir, &vm.spec.shared_dir());
            }
        } else if let Ok(agent) = self.agent().await {
            if let Err(e) = agent.remove_container(id, CALL_TIMEOUT).await {
                tracing::warn!(container = id, "remove in the guest: {e}");
            }
        }
        if let Some(io) = io {
            io.wait_outputs(Duration::from_secs(5)).await;
            io.shutdown();
        }
        if let Some(shared) = shared {
            shared_mounts::release(&shared);
        }
        if let Some(hooks) = hooks {
            hooks.run_logged(Stage::Poststop, self.vm_pid().await).await;
        }
        let (status, at) = exit.unwrap_or((VM_GONE_STATUS, SystemTime::now()));
        self.inner
            .ctx
            .events
            .publish(
                topics::TASK_DELETE_EVENT_TOPIC,
                events::TaskDelete {
                    container_id: id.into(),
                    id: id.into(),
                    pid,
                    exit_status: status as u32,
                    exited_at: MessageField::some(timestamp(at)),
                    ..Default::default()
                },
            )
            .await;
        Ok(api::DeleteResponse {
            pid,
            exit_status: status as u32,
            exited_at: MessageField::some(timestamp(at)),
            ..Default::default()
        })
    }
}

/// Connects a process's stdio in the guest with the manager's (`child`: the
/// ends ProcessIo gave for the process).
fn forward_stdio(agent: &Arc<Agent>, id: &str, exec_id: &str, child: ChildStdio) {
    forward_output(agent, id, exec_id, Stream::STDOUT, child.stdout);
    forward_output(agent, id, exec_id, Stream::STDERR, child.stderr);
    forward_input(agent, id, exec_id, child.stdin);
}

/// Copies the process's `stream` from the agent into `sink` (the write end of
/// the pipe whose reader feeds the manager's FIFO), to its end.
fn forward_output(
    agent: &Arc<Agent>,
    id: &str,
    exec_id: &str,
    stream: Stream,
    sink: Option<OwnedFd>,
) {
    let Some(sink) = sink else { return };
    let (agent, id, exec_id) = (Arc::clone(agent), id.to_string(), exec_id.to_string());
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let Ok(mut sink) = pipe::Sender::from_owned_fd(sink) else {
            return;
        };
        loop {
            match agent.read_stream(&id, &exec_id, stream, 64 * 1024).await {
                Ok(data) if data.is_empty() => break,
                Ok(data) => {
                    if sink.write_all(&data).await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    tracing::debug!(container = %id, "{stream:?}: {e}");
                    break;
                }
            }
        }
    });
}

/// Copies what the manager writes to the process's stdin (`source`, the read
/// end of its pipe) to the agent; closes the process's stdin at its end.
fn forward_input(agent: &Arc<Agent>, id: &str, exec_id: &str, source: Option<OwnedFd>) {
    let Some(source) = source else { return };
    let (agent, id, exec_id) = (Arc::clone(agent), id.to_string(), exec_id.to_string());
    tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let Ok(mut source) = pipe::Receiver::from_owned_fd(source) else {
            return;
        };
        let mut buf = vec![0; 64 * 1024];
        loop {
            match source.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if agent
                        .write_stdin(&id, &exec_id, &buf[..n], CALL_TIMEOUT)
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
        let _ = agent.close_stdin(&id, &exec_id, CALL_TIMEOUT).await;
    });
}

/// The OCI spec in `bundle`, as JSON.
fn read_spec(bundle: &Path) -> Result<serde_json::Value, Error> {
    let path = bundle.join("config.json");
    let text =
        std::fs::read(&path).map_err(|e| Error::io(format!("read {}", path.display()), e))?;
    serde_json::from_slice(&text)
        .map_err(|e| Error::InvalidArgument(format!("{}: {e}", path.display())))
}

/// The size of the pod's /dev/shm: the host tmpfs the core made for it (the
/// sandbox spec's `/dev/shm` bind), which the guest's replaces; 0 without one.
fn pod_shm_size(spec: &serde_json::Value) -> u64 {
    let source = spec["mounts"].as_array().and_then(|mounts| {
        mounts
            .iter()
            .filter(|m| m["destination"] == "/dev/shm")
            .find_map(|m| m["source"].as_str().filter(|s| s.starts_with('/')))
    });
    source
        .and_then(|s| nix::sys::statvfs::statvfs(s).ok())
        .map_or(0, |fs| fs.blocks() * fs.fragment_size())
}

/// The pod's interfaces and their taps, from the network namespace the sandbox
/// spec names (none for a pod in the host's network).
async fn pod_nics(spec: &serde_json::Value) -> Result<crate::pod_network::PodNics, Error> {
    let Some(netns) = crate::pod_network::netns_of(spec) else {
        return Ok(crate::pod_network::PodNics {
            network: Default::default(),
            taps: Vec::new(),
        });
    };
    tokio::task::spawn_blocking(move || crate::pod_network::prepare(&netns))
        .await
        .map_err(|e| Error::Other(format!("pod network: {e}")))?
        .map_err(|e| Error::Other(format!("pod network: {e}")))
}

#[async_trait]
impl Task for Service {
    async fn create(
        &self,
        _ctx: &TtrpcContext,
        req: api::CreateTaskRequest,
    ) -> TtrpcResult<api::CreateTaskResponse> {
        tracing::info!(id = %req.id, bundle = %req.bundle, "create");
        if self.inner.tasks.lock().await.contains_key(&req.id) {
            return ttrpc(Err(Error::AlreadyExists(format!("task {} exists", req.id))));
        }
        let first = self.inner.vm.lock().await.is_none();
        let (pid, io, shared, hooks, vm) = if first {
            let vm = ttrpc(self.create_sandbox(&req).await)?;
            (vm.pid(), None, None, None, Some(vm))
        } else {
            let c = ttrpc(self.create_container(&req).await)?;
            (
                c.pid,
                Some(Arc::new(c.io)),
                Some(c.shared),
                Some(c.hooks),
                None,
            )
        };
        let (exit, _) = watch::channel(None);
        self.inner.tasks.lock().await.insert(
            req.id.clone(),
            TaskEntry {
                container: req.id.clone(),
                exec_id: String::new(),
                process: None,
                bundle: PathBuf::from(&req.bundle),
                pid,
                stdio: StdioConfig {
                    stdin: req.stdin.clone(),
                    stdout: req.stdout.clone(),
                    stderr: req.stderr.clone(),
                    terminal: req.terminal,
                },
                started: false,
                exit,
                io,
                shared,
                pending_size: None,
                hooks,
            },
        );
        match vm {
            Some(vm) => self.watch_vm(vm, req.id.clone()),
            None => {
                if let Ok(agent) = self.agent().await {
                    self.watch_exit(agent, req.id.clone(), String::new());
                }
            }
        }
        self.inner
            .ctx
            .events
            .publish(
                topics::TASK_CREATE_EVENT_TOPIC,
                events::TaskCreate {
                    container_id: req.id.clone(),
                    bundle: req.bundle.clone(),
                    pid,
                    ..Default::default()
                },
            )
            .await;
        Ok(api::CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }

    async fn start(
        &self,
        _ctx: &TtrpcContext,
        req: api::StartRequest,
    ) -> TtrpcResult<api::StartResponse> {
        tracing::info!(id = %req.id, exec = %req.exec_id, "start");
        if !req.exec_id.is_empty() {
            let pid = ttrpc(self.start_exec(&req.id, &req.exec_id).await)?;
            if let Some(task) = self
                .inner
                .tasks
                .lock()
                .await
                .get_mut(&key(&req.id, &req.exec_id))
            {
                task.started = true;
            }
            self.inner
                .ctx
                .events
                .publish(
                    topics::TASK_EXEC_STARTED_EVENT_TOPIC,
                    events::TaskExecStarted {
                        container_id: req.id.clone(),
                        exec_id: req.exec_id.clone(),
                        pid,
                        ..Default::default()
                    },
                )
                .await;
            return Ok(api::StartResponse {
                pid,
                ..Default::default()
            });
        }
        let pid = {
            let tasks = self.inner.tasks.lock().await;
            let task = tasks
                .get(&req.id)
                .ok_or_else(|| Error::NotFound(format!("task {} not found", req.id)));
            ttrpc(task)?.pid
        };
        if !self.is_sandbox(&req.id).await {
            let agent = ttrpc(self.agent().await)?;
            ttrpc(
                agent
                    .start_container(&req.id, CALL_TIMEOUT)
                    .await
                    .map_err(agent_err),
            )?;
            self.run_hooks(&req.id, Stage::Poststart).await;
        }
        if let Some(task) = self.inner.tasks.lock().await.get_mut(&req.id) {
            task.started = true;
        }
        self.inner
            .ctx
            .events
            .publish(
                topics::TASK_START_EVENT_TOPIC,
                events::TaskStart {
                    container_id: req.id.clone(),
                    pid,
                    ..Default::default()
                },
            )
            .await;
        Ok(api::StartResponse {
            pid,
            ..Default::default()
        })
    }

    async fn exec(
        &self,
        _ctx: &TtrpcContext,
        req: api::ExecProcessRequest,
    ) -> TtrpcResult<api::Empty> {
        tracing::info!(id = %req.id, exec = %req.exec_id, "exec");
        let k = key(&req.id, &req.exec_id);
        {
            let mut tasks = self.inner.tasks.lock().await;
            let bundle = match tasks.get(&req.id) {
                Some(c) if c.exit.borrow().is_none() => c.bundle.clone(),
                Some(_) => {
                    return ttrpc(Err(Error::FailedPrecondition(format!(
                        "container {} has exited",
                        req.id
                    ))))
                }
                None => {
                    return ttrpc(Err(Error::NotFound(format!(
                        "container {} not found",
                        req.id
                    ))))
                }
            };
            if req.exec_id.is_empty() {
                return ttrpc(Err(Error::InvalidArgument("exec id is empty".into())));
            }
            if tasks.contains_key(&k) {
                return ttrpc(Err(Error::AlreadyExists(format!(
                    "process {:?} of {} exists",
                    req.exec_id, req.id
                ))));
            }
            let (exit, _) = watch::channel(None);
            tasks.insert(
                k,
                TaskEntry {
                    container: req.id.clone(),
                    exec_id: req.exec_id.clone(),
                    process: Some(
                        req.spec
                            .as_ref()
                            .map(|a| a.value.clone())
                            .unwrap_or_default(),
                    ),
                    bundle,
                    pid: 0,
                    stdio: StdioConfig {
                        stdin: req.stdin.clone(),
                        stdout: req.stdout.clone(),
                        stderr: req.stderr.clone(),
                        terminal: req.terminal,
                    },
                    started: false,
                    exit,
                    io: None,
                    shared: None,
                    pending_size: None,
                    hooks: None,
                },
            );
        }
        self.inner
            .ctx
            .events
            .publish(
                topics::TASK_EXEC_ADDED_EVENT_TOPIC,
                events::TaskExecAdded {
                    container_id: req.id.clone(),
                    exec_id: req.exec_id.clone(),
                    ..Default::default()
                },
            )
            .await;
        Ok(api::Empty::new())
    }

    async fn state(
        &self,
        _ctx: &TtrpcContext,
        req: api::StateRequest,
    ) -> TtrpcResult<api::StateResponse> {
        let tasks = self.inner.tasks.lock().await;
        let task = ttrpc(
            tasks
                .get(&key(&req.id, &req.exec_id))
                .ok_or_else(|| Error::NotFound(format!("task {} not found", req.id))),
        )?;
        let exit = *task.exit.borrow();
        let status = match (exit, task.started) {
            (Some(_), _) => Status::STOPPED,
            (None, true) => Status::RUNNING,
            (None, false) => Status::CREATED,
        };
        Ok(api::StateResponse {
            id: req.id.clone(),
            bundle: task.bundle.display().to_string(),
            pid: task.pid,
            status: EnumOrUnknown::new(status),
            stdin: task.stdio.stdin.clone(),
            stdout: task.stdio.stdout.clone(),
            stderr: task.stdio.stderr.clone(),
            terminal: task.stdio.terminal,
            exit_status: exit.map(|(s, _)| s as u32).unwrap_or(0),
            exited_at: exit.map(|(_, at)| timestamp(at)).into(),
            ..Default::default()
        })
    }

    async fn stats(
        &self,
        _ctx: &TtrpcContext,
        req: api::StatsRequest,
    ) -> TtrpcResult<api::StatsResponse> {
        if self.is_sandbox(&req.id).await {
            return ttrpc(Err(Error::NotFound(format!(
                "task {}: the pod's VM has no container cgroup",
                req.id
            ))));
        }
        let agent = ttrpc(self.agent().await)?;
        let metrics = ttrpc(
            agent
                .stats_container(&req.id, CALL_TIMEOUT)
                .await
                .map_err(agent_err),
        )?;
        Ok(api::StatsResponse {
            stats: MessageField::some(metrics),
            ..Default::default()
        })
    }

    async fn update(
        &self,
        _ctx: &TtrpcContext,
        req: api::UpdateTaskRequest,
    ) -> TtrpcResult<api::Empty> {
        if self.is_sandbox(&req.id).await {
            return ttrpc(Err(Error::InvalidArgument(format!(
                "task {}: the pod's VM is sized at its start",
                req.id
            ))));
        }
        let Some(resources) = req.resources.as_ref() else {
            return ttrpc(Err(Error::InvalidArgument(
                "update without resources".into(),
            )));
        };
        let agent = ttrpc(self.agent().await)?;
        ttrpc(
            agent
                .update_container(&req.id, &resources.value, CALL_TIMEOUT)
                .await
                .map_err(agent_err),
        )?;
        Ok(api::Empty::new())
    }

    async fn close_io(
        &self,
        _ctx: &TtrpcContext,
        req: api::CloseIORequest,
    ) -> TtrpcResult<api::Empty> {
        if req.stdin {
            let tasks = self.inner.tasks.lock().await;
            let task = ttrpc(tasks.get(&key(&req.id, &req.exec_id)).ok_or_else(|| {
                Error::NotFound(format!("process {:?} of {} not found", req.exec_id, req.id))
            }))?;
            // The shim lets go of stdin; once the client's writer is gone the
            // forwarding reads end-of-file and closes the guest's stdin.
            if let Some(io) = &task.io {
                io.close_stdin();
            }
        }
        Ok(api::Empty::new())
    }

    async fn resize_pty(
        &self,
        _ctx: &TtrpcContext,
        req: api::ResizePtyRequest,
    ) -> TtrpcResult<api::Empty> {
        let agent = ttrpc(self.agent().await)?;
        let size = (req.width, req.height);
        {
            // An exec'd process not started in the guest yet gets the size when
            // it is (the client may resize before it starts).
            let k = key(&req.id, &req.exec_id);
            let mut tasks = self.inner.tasks.lock().await;
            if let Some(task) = tasks
                .get_mut(&k)
                .filter(|t| !t.exec_id.is_empty() && t.pid == 0)
            {
                task.pending_size = Some(size);
                return Ok(api::Empty::new());
            }
        }
        ttrpc(
            agent
                .resize_terminal(&req.id, &req.exec_id, size, CALL_TIMEOUT)
                .await
                .map_err(agent_err),
        )?;
        Ok(api::Empty::new())
    }

    async fn kill(&self, _ctx: &TtrpcContext, req: api::KillRequest) -> TtrpcResult<api::Empty> {
        tracing::info!(id = %req.id, signal = req.signal, all = req.all, "kill");
        if self.is_sandbox(&req.id).await {
            ttrpc(self.kill_sandbox().await)?;
            return Ok(api::Empty::new());
        }
        let known = self
            .inner
            .tasks
            .lock()
            .await
            .contains_key(&key(&req.id, &req.exec_id));
        if !known {
            return ttrpc(Err(Error::NotFound(format!("task {} not found", req.id))));
        }
        let agent = ttrpc(self.agent().await)?;
        ttrpc(
            agent
                .signal_container(&req.id, &req.exec_id, req.signal, req.all, CALL_TIMEOUT)
                .await
                .map_err(agent_err),
        )?;
        Ok(api::Empty::new())
    }

    async fn delete(
        &self,
        _ctx: &TtrpcContext,
        req: api::DeleteRequest,
    ) -> TtrpcResult<api::DeleteResponse> {
        tracing::info!(id = %req.id, exec = %req.exec_id, "delete");
        if !req.exec_id.is_empty() {
            return ttrpc(self.delete_exec(&req.id, &req.exec_id).await);
        }
        ttrpc(self.delete_task(&req.id).await)
    }

    async fn wait(
        &self,
        _ctx: &TtrpcContext,
        req: api::WaitRequest,
    ) -> TtrpcResult<api::WaitResponse> {
        let mut rx = {
            let tasks = self.inner.tasks.lock().await;
            let task = tasks
                .get(&key(&req.id, &req.exec_id))
                .ok_or_else(|| Error::NotFound(format!("task {} not found", req.id)));
            ttrpc(task)?.exit.subscribe()
        };
        let exit = rx
            .wait_for(Option::is_some)
            .await
            .map(|e| *e)
            .map_err(|_| Error::NotFound(format!("task {} went away", req.id)));
        let (status, at) = ttrpc(exit)?.unwrap_or((0, SystemTime::now()));
        Ok(api::WaitResponse {
            exit_status: status as u32,
            exited_at: MessageField::some(timestamp(at)),
            ..Default::default()
        })
    }

    async fn pids(
        &self,
        _ctx: &TtrpcContext,
        req: api::PidsRequest,
    ) -> TtrpcResult<api::PidsResponse> {
        let tasks = self.inner.tasks.lock().await;
        let task = ttrpc(
            tasks
                .get(&req.id)
                .ok_or_else(|| Error::NotFound(format!("task {} not found", req.id))),
        )?;
        Ok(api::PidsResponse {
            processes: vec![shim_support::protos::types::task::ProcessInfo {
                pid: task.pid,
                ..Default::default()
            }],
            ..Default::default()
        })
    }

    async fn connect(
        &self,
        _ctx: &TtrpcContext,
        req: api::ConnectRequest,
    ) -> TtrpcResult<api::ConnectResponse> {
        let task_pid = self
            .inner
            .tasks
            .lock()
            .await
            .get(&req.id)
            .map(|t| t.pid)
            .unwrap_or(0);
        Ok(api::ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        })
    }

    async fn shutdown(
        &self,
        _ctx: &TtrpcContext,
        req: api::ShutdownRequest,
    ) -> TtrpcResult<api::Empty> {
        let remaining = self.inner.tasks.lock().await.len();
        if remaining > 0 && !req.now {
            return Ok(api::Empty::new());
        }
        if req.now {
            ttrpc(self.kill_sandbox().await)?;
        }
        tracing::info!("shutdown");
        if let Some(socket) = self.inner.ctx.socket.as_deref() {
            let _ = std::fs::remove_file(crate::port_relay::relay_path(socket));
        }
        self.inner.ctx.shutdown.signal();
        Ok(api::Empty::new())
    }
}
