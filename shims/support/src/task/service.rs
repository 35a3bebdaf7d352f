//! The task service: every container of one pod, driven through a runc-compatible
//! runtime CLI (runc, crun, or the youki shim's own libcontainer front end). The
//! process table is `task::process`'s, exit reporting `task::exits`', OOM
//! events and stats `task::telemetry`'s; this file creates, starts, signals and
//! deletes, and answers the Task API.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::console::{self, ConsoleSocket};
use crate::error::ttrpc_result as ttrpc;
use crate::events::{self, timestamp, topics, EventSink};
use crate::launch::ServeContext;
use crate::reaper::Reaper;
use crate::stdio::{ProcessIo, StdioConfig};
use crate::Error;
use async_trait::async_trait;
use containerd_shim_protos::api;
use containerd_shim_protos::protobuf::{EnumOrUnknown, MessageField};
use containerd_shim_protos::shim_async::Task;
use containerd_shim_protos::ttrpc::r#async::TtrpcContext;
use containerd_shim_protos::ttrpc::Result as TtrpcResult;
use containerd_shim_protos::types::task::Status;
use tokio::sync::Mutex;

use super::exits::UNCLAIMED_EXIT_TTL;
use super::oci_cli::{Runtime, RuntimeOptions};
use super::process::{not_found, Container, Process, UnclaimedExits};
use super::Flavor;

/// How long delete waits for output still being copied.
const DELETE_IO_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub(super) struct Inner {
    ctx: ServeContext,
    flavor: &'static Flavor,
    pub(super) containers: Mutex<HashMap<String, Container>>,
    /// Exits of pids no process has yet.
    pub(super) unclaimed: std::sync::Mutex<UnclaimedExits>,
}

/// The task service of one pod's shim.
#[derive(Debug, Clone)]
pub struct Service {
    pub(super) inner: Arc<Inner>,
}

/// For a terminal process: takes the pty master the runtime sent on `socket` and
/// starts copying between it and the process's stdio. The master is kept for resizes.
fn take_console(socket: Option<&ConsoleSocket>, io: &ProcessIo) -> Result<Option<File>, Error> {
    let Some(socket) = socket else {
        return Ok(None);
    };
    let master = socket.receive()?;
    io.attach_console(
        master
            .try_clone()
            .map_err(|e| Error::io("dup console", e))?,
    )?;
    Ok(Some(master))
}

fn read_pid(path: &Path) -> Result<u32, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("read {}", path.display()), e))?;
    text.trim()
        .parse()
        .map_err(|_| Error::Other(format!("bad pid file {}: {text:?}", path.display())))
}

impl Service {
    /// Builds the service and starts handling exits.
    pub fn new(ctx: ServeContext, flavor: &'static Flavor) -> Service {
        let sub = ctx.reaper.subscribe();
        let service = Service {
            inner: Arc::new(Inner {
                ctx,
                flavor,
                containers: Mutex::new(HashMap::new()),
                unclaimed: std::sync::Mutex::new(UnclaimedExits::new(UNCLAIMED_EXIT_TTL)),
            }),
        };
        let handler = service.clone();
        tokio::spawn(async move {
            let mut sub = sub;
            while let Some(exit) = sub.recv().await {
                handler.handle_exit(exit).await;
            }
        });
        service
    }

    pub(super) fn events(&self) -> &EventSink {
        &self.inner.ctx.events
    }

    fn reaper(&self) -> &Reaper {
        &self.inner.ctx.reaper
    }

    async fn create_container(
        &self,
        req: api::CreateTaskRequest,
    ) -> Result<api::CreateTaskResponse, Error> {
        let started = std::time::Instant::now();
        let ns = self.inner.ctx.namespace.clone();
        if req.id.is_empty() {
            return Err(Error::InvalidArgument("container id is empty".into()));
        }
        if self.inner.containers.lock().await.contains_key(&req.id) {
            return Err(Error::AlreadyExists(format!(
                "container {} already exists",
                req.id
            )));
        }
        if !req.checkpoint.is_empty() {
            return Err(Error::Unimplemented(
                "restoring from a checkpoint is not supported".into(),
            ));
        }
        let options = match req.options.as_ref() {
            Some(any) => RuntimeOptions::from_any(&any.type_url, &any.value, self.inner.flavor)?,
            None => RuntimeOptions::defaults(self.inner.flavor),
        };
        let bundle = PathBuf::from(&req.bundle);
        options.write(&bundle)?;
        let runtime = Runtime::new(options, &ns, &bundle, self.reaper().clone());

        // The rootfs the manager prepared as mounts.
        let rootfs = bundle.join("rootfs");
        let mut rootfs_mounted = false;
        if !req.rootfs.is_empty() {
            std::fs::create_dir_all(&rootfs)
                .map_err(|e| Error::io(format!("mkdir {}", rootfs.display()), e))?;
            for m in &req.rootfs {
                let (ty, source, opts, target) = (
                    m.type_.clone(),
                    m.source.clone(),
                    m.options.clone(),
                    rootfs.clone(),
                );
                tokio::task::spawn_blocking(move || {
                    containerd_shim::mount::mount_rootfs(
                        Some(ty.as_str()).filter(|s| !s.is_empty()),
                        Some(source.as_str()).filter(|s| !s.is_empty()),
                        &opts,
                        &target,
                    )
                })
                .await
                .map_err(|e| Error::Other(format!("mount task: {e}")))??;
                rootfs_mounted = true;
            }
        }
        let result = self
            .create_with_rootfs(&req, &bundle, runtime.clone())
            .await;
        let (init, shared_pid_ns) = match result {
            Ok(v) => v,
            Err(e) => {
                if rootfs_mounted {
                    unmount_rootfs(&rootfs);
                }
                return Err(e);
            }
        };
        let pid = init.pid;
        let container = Container {
            id: req.id.clone(),
            bundle: bundle.clone(),
            runtime,
            init,
            execs: HashMap::new(),
            rootfs_mounted,
            shared_pid_ns,
        };
        self.claim_early_exit(&container, "", pid);
        self.inner
            .containers
            .lock()
            .await
            .insert(req.id.clone(), container);
        self.watch_oom(&req.id, pid);
        self.events()
            .publish(
                topics::TASK_CREATE_EVENT_TOPIC,
                events::TaskCreate {
                    container_id: req.id.clone(),
                    bundle: req.bundle.clone(),
                    rootfs: req.rootfs.clone(),
                    io: MessageField::some(events::TaskIO {
                        stdin: req.stdin.clone(),
                        stdout: req.stdout.clone(),
                        stderr: req.stderr.clone(),
                        terminal: req.terminal,
                        ..Default::default()
                    }),
                    checkpoint: req.checkpoint.clone(),
                    pid,
                    ..Default::default()
                },
            )
            .await;
        // The shim's whole Create, beside the runtime's share ("runtime command done").
        tracing::debug!(
            container = %req.id,
            ms = started.elapsed().as_secs_f64() * 1000.0,
            "task create done"
        );
        Ok(api::CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }

    async fn create_with_rootfs(
        &self,
        req: &api::CreateTaskRequest,
        bundle: &Path,
        runtime: Runtime,
    ) -> Result<(Process, bool), Error> {
        let changes = crate::restrict::restrict_bundle(bundle)?;
        let _ = changes;
        let spec: serde_json::Value = serde_json::from_slice(
            &std::fs::read(bundle.join("config.json"))
                .map_err(|e| Error::io("read config.json", e))?,
        )?;
        let shared_pid_ns = !spec["linux"]["namespaces"]
            .as_array()
            .map(|ns| {
                ns.iter().any(|n| {
                    n["type"] == "pid" && n.get("path").is_none_or(|p| p.as_str() == Some(""))
                })
            })
            .unwrap_or(false);
        let stdio = StdioConfig {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        let mut init = Process::new("", stdio.clone());
        let (io, child) = ProcessIo::create(&stdio, &req.id, &self.inner.ctx.namespace)?;
        let socket = if req.terminal {
            Some(ConsoleSocket::new()?)
        } else {
            None
        };
        let pid_file = bundle.join("init.pid");
        runtime
            .create(
                &req.id,
                bundle,
                &pid_file,
                socket.as_ref().map(|s| s.path()),
                child,
            )
            .await?;
        init.console = take_console(socket.as_ref(), &io)?;
        init.pid = read_pid(&pid_file)?;
        init.io = Some(Arc::new(io));
        Ok((init, shared_pid_ns))
    }

    async fn start_process(&self, id: &str, exec_id: &str) -> Result<u32, Error> {
        let mut containers = self.inner.containers.lock().await;
        let c = containers.get_mut(id).ok_or_else(|| not_found(id))?;
        if exec_id.is_empty() {
            if c.init.status != Status::CREATED {
                return Err(Error::FailedPrecondition(format!(
                    "container {id} is not in the created state"
                )));
            }
            c.runtime.start(id).await?;
            if c.init.exit().is_none() && c.init.status == Status::CREATED {
                c.init.status = Status::RUNNING;
            }
            let pid = c.init.pid;
            drop(containers);
            self.events()
                .publish(
                    topics::TASK_START_EVENT_TOPIC,
                    events::TaskStart {
                        container_id: id.to_string(),
                        pid,
                        ..Default::default()
                    },
                )
                .await;
            return Ok(pid);
        }
        if c.init.status != Status::RUNNING && c.init.status != Status::PAUSED {
            return Err(Error::FailedPrecondition(format!(
                "container {id} is not running"
            )));
        }
        let bundle = c.bundle.clone();
        let runtime = c.runtime.clone();
        let p = c.process_mut(exec_id)?;
        if p.status != Status::CREATED || p.pid != 0 {
            return Err(Error::FailedPrecondition(format!(
                "exec {exec_id} was started already"
            )));
        }
        let mut spec = p.spec.clone().unwrap_or_default();
        let changes =
            crate::restrict::restrict_process(&mut spec, crate::restrict::own_bounding_set()?);
        crate::restrict::log_changes("exec", &changes);
        let spec_path = bundle.join(format!("{exec_id}.json"));
        crate::launch::write_atomic(&spec_path, &serde_json::to_vec(&spec)?)?;
        let (io, child) = ProcessIo::create(&p.stdio, id, &self.inner.ctx.namespace)?;
        let socket = if p.stdio.terminal {
            Some(ConsoleSocket::new()?)
        } else {
            None
        };
        let pid_file = bundle.join(format!("{exec_id}.pid"));
        let created = runtime
            .exec(
                id,
                &spec_path,
                &pid_file,
                socket.as_ref().map(|s| s.path()),
                child,
            )
            .await;
        let _ = std::fs::remove_file(&spec_path);
        if let Err(e) = created {
            p.status = Status::STOPPED;
            return Err(e);
        }
        p.console = take_console(socket.as_ref(), &io)?;
        p.pid = read_pid(&pid_file)?;
        let _ = std::fs::remove_file(&pid_file);
        p.io = Some(Arc::new(io));
        p.status = Status::RUNNING;
        let pid = p.pid;
        let c = containers.get(id).ok_or_else(|| not_found(id))?;
        self.claim_early_exit(c, exec_id, pid);
        drop(containers);
        self.events()
            .publish(
                topics::TASK_EXEC_STARTED_EVENT_TOPIC,
                events::TaskExecStarted {
                    container_id: id.to_string(),
                    exec_id: exec_id.to_string(),
                    pid,
                    ..Default::default()
                },
            )
            .await;
        Ok(pid)
    }

    async fn delete_process(&self, id: &str, exec_id: &str) -> Result<api::DeleteResponse, Error> {
        let mut containers = self.inner.containers.lock().await;
        let c = containers.get_mut(id).ok_or_else(|| not_found(id))?;
        if !exec_id.is_empty() {
            let p = c.process(exec_id)?;
            if p.status == Status::RUNNING || p.status == Status::PAUSED {
                return Err(Error::FailedPrecondition(format!(
                    "exec {exec_id} is still running"
                )));
            }
            let p = c.execs.remove(exec_id).ok_or_else(|| not_found(exec_id))?;
            drop(containers);
            return Ok(finish_delete(&p).await);
        }
        let p = &c.init;
        if p.status == Status::RUNNING || p.status == Status::PAUSED {
            return Err(Error::FailedPrecondition(format!(
                "container {id} is still running"
            )));
        }
        // A created-but-never-started container is killed with the delete.
        if let Err(e) = c.runtime.delete(id, true).await {
            tracing::warn!(container = %id, "runtime delete: {e}");
        }
        let c = containers.remove(id).ok_or_else(|| not_found(id))?;
        drop(containers);
        let resp = finish_delete(&c.init).await;
        for p in c.execs.values() {
            if let Some(io) = &p.io {
                io.shutdown();
            }
        }
        if c.rootfs_mounted {
            unmount_rootfs(&c.bundle.join("rootfs"));
        }
        self.events()
            .publish(
                topics::TASK_DELETE_EVENT_TOPIC,
                events::TaskDelete {
                    container_id: id.to_string(),
                    pid: resp.pid,
                    exit_status: resp.exit_status,
                    exited_at: resp.exited_at.clone(),
                    id: id.to_string(),
                    ..Default::default()
                },
            )
            .await;
        Ok(resp)
    }

    pub(super) async fn with_process<T>(
        &self,
        id: &str,
        exec_id: &str,
        f: impl FnOnce(&Container, &Process) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let containers = self.inner.containers.lock().await;
        let c = containers.get(id).ok_or_else(|| not_found(id))?;
        let p = c.process(exec_id)?;
        f(c, p)
    }

    async fn kill_process(&self, req: &api::KillRequest) -> Result<(), Error> {
        let (runtime, pid, status, exited) = self
            .with_process(&req.id, &req.exec_id, |c, p| {
                Ok((c.runtime.clone(), p.pid, p.status, p.exit()))
            })
            .await?;
        if req.exec_id.is_empty() {
            if exited.is_some() || (status == Status::STOPPED && !req.all) {
                return Err(Error::NotFound(format!(
                    "process of {} already finished",
                    req.id
                )));
            }
            return runtime.kill(&req.id, req.signal, req.all).await;
        }
        if pid == 0 || exited.is_some() || status == Status::STOPPED {
            return Err(Error::NotFound(format!(
                "exec {} is not running",
                req.exec_id
            )));
        }
        let signal = nix::sys::signal::Signal::try_from(req.signal as i32)
            .map_err(|_| Error::InvalidArgument(format!("bad signal {}", req.signal)))?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal)
            .map_err(|e| Error::io(format!("kill {pid}"), e.into()))
    }

    async fn set_paused(&self, id: &str, pause: bool) -> Result<(), Error> {
        let mut containers = self.inner.containers.lock().await;
        let c = containers.get_mut(id).ok_or_else(|| not_found(id))?;
        if pause {
            if c.init.status != Status::RUNNING {
                return Err(Error::FailedPrecondition(format!(
                    "container {id} is not running"
                )));
            }
            c.runtime.pause(id).await?;
            c.init.status = Status::PAUSED;
        } else {
            if c.init.status != Status::PAUSED {
                return Err(Error::FailedPrecondition(format!(
                    "container {id} is not paused"
                )));
            }
            c.runtime.resume(id).await?;
            c.init.status = Status::RUNNING;
        }
        drop(containers);
        if pause {
            self.events()
                .publish(
                    topics::TASK_PAUSED_EVENT_TOPIC,
                    events::TaskPaused {
                        container_id: id.to_string(),
                        ..Default::default()
                    },
                )
                .await;
        } else {
            self.events()
                .publish(
                    topics::TASK_RESUMED_EVENT_TOPIC,
                    events::TaskResumed {
                        container_id: id.to_string(),
                        ..Default::default()
                    },
                )
                .await;
        }
        Ok(())
    }
}

async fn finish_delete(p: &Process) -> api::DeleteResponse {
    if let Some(io) = &p.io {
        io.shutdown();
        io.wait_outputs(DELETE_IO_WAIT).await;
    }
    let (status, at) = p.exit().unwrap_or((0, SystemTime::now()));
    api::DeleteResponse {
        pid: p.pid,
        exit_status: status as u32,
        exited_at: MessageField::some(timestamp(at)),
        ..Default::default()
    }
}

/// Unmounts the rootfs mounted for a container (lazily, recursively).
pub fn unmount_rootfs(rootfs: &Path) {
    if let Some(path) = rootfs.to_str() {
        if let Err(e) = containerd_shim::mount::umount_recursive(Some(path), libc::MNT_DETACH) {
            tracing::warn!("unmount {path}: {e}");
        }
    }
}

#[async_trait]
impl Task for Service {
    async fn state(
        &self,
        _ctx: &TtrpcContext,
        req: api::StateRequest,
    ) -> TtrpcResult<api::StateResponse> {
        ttrpc(
            self.with_process(&req.id, &req.exec_id, |c, p| {
                let exit = p.exit();
                Ok(api::StateResponse {
                    id: if p.exec_id.is_empty() {
                        c.id.clone()
                    } else {
                        p.exec_id.clone()
                    },
                    bundle: c.bundle.display().to_string(),
                    pid: p.pid,
                    status: EnumOrUnknown::new(if exit.is_some() {
                        Status::STOPPED
                    } else {
                        p.status
                    }),
                    stdin: p.stdio.stdin.clone(),
                    stdout: p.stdio.stdout.clone(),
                    stderr: p.stdio.stderr.clone(),
                    terminal: p.stdio.terminal,
                    exit_status: exit.map(|(s, _)| s as u32).unwrap_or(0),
                    exited_at: exit.map(|(_, at)| timestamp(at)).into(),
                    exec_id: p.exec_id.clone(),
                    ..Default::default()
                })
            })
            .await,
        )
    }

    async fn create(
        &self,
        _ctx: &TtrpcContext,
        req: api::CreateTaskRequest,
    ) -> TtrpcResult<api::CreateTaskResponse> {
        tracing::info!(id = %req.id, bundle = %req.bundle, "create");
        ttrpc(self.create_container(req).await)
    }

    async fn start(
        &self,
        _ctx: &TtrpcContext,
        req: api::StartRequest,
    ) -> TtrpcResult<api::StartResponse> {
        tracing::info!(id = %req.id, exec = %req.exec_id, "start");
        let pid = ttrpc(self.start_process(&req.id, &req.exec_id).await)?;
        Ok(api::StartResponse {
            pid,
            ..Default::default()
        })
    }

    async fn delete(
        &self,
        _ctx: &TtrpcContext,
        req: api::DeleteRequest,
    ) -> TtrpcResult<api::DeleteResponse> {
        tracing::info!(id = %req.id, exec = %req.exec_id, "delete");
        ttrpc(self.delete_process(&req.id, &req.exec_id).await)
    }

    async fn pids(
        &self,
        _ctx: &TtrpcContext,
        req: api::PidsRequest,
    ) -> TtrpcResult<api::PidsResponse> {
        let runtime = ttrpc(
            self.with_process(&req.id, "", |c, _| Ok(c.runtime.clone()))
                .await,
        )?;
        let pids = ttrpc(runtime.ps(&req.id).await)?;
        Ok(api::PidsResponse {
            processes: pids
                .into_iter()
                .map(|pid| api::ProcessInfo {
                    pid,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
    }

    async fn pause(&self, _ctx: &TtrpcContext, req: api::PauseRequest) -> TtrpcResult<api::Empty> {
        ttrpc(self.set_paused(&req.id, true).await)?;
        Ok(api::Empty::new())
    }

    async fn resume(
        &self,
        _ctx: &TtrpcContext,
        req: api::ResumeRequest,
    ) -> TtrpcResult<api::Empty> {
        ttrpc(self.set_paused(&req.id, false).await)?;
        Ok(api::Empty::new())
    }

    async fn kill(&self, _ctx: &TtrpcContext, req: api::KillRequest) -> TtrpcResult<api::Empty> {
        tracing::info!(id = %req.id, exec = %req.exec_id, signal = req.signal, all = req.all, "kill");
        ttrpc(self.kill_process(&req).await)?;
        Ok(api::Empty::new())
    }

    async fn exec(
        &self,
        _ctx: &TtrpcContext,
        req: api::ExecProcessRequest,
    ) -> TtrpcResult<api::Empty> {
        tracing::info!(id = %req.id, exec = %req.exec_id, "exec");
        let r = async {
            let spec: serde_json::Value = match req.spec.as_ref() {
                Some(any) => serde_json::from_slice(&any.value)?,
                None => return Err(Error::InvalidArgument("exec without a process spec".into())),
            };
            let mut containers = self.inner.containers.lock().await;
            let c = containers
                .get_mut(&req.id)
                .ok_or_else(|| not_found(&req.id))?;
            if req.exec_id.is_empty() || c.execs.contains_key(&req.exec_id) {
                return Err(Error::AlreadyExists(format!(
                    "exec {} already exists",
                    req.exec_id
                )));
            }
            if c.init.exit().is_some() || c.init.status == Status::STOPPED {
                return Err(Error::FailedPrecondition(format!(
                    "container {} is stopped",
                    req.id
                )));
            }
            let mut p = Process::new(
                &req.exec_id,
                StdioConfig {
                    stdin: req.stdin.clone(),
                    stdout: req.stdout.clone(),
                    stderr: req.stderr.clone(),
                    terminal: req.terminal,
                },
            );
            p.spec = Some(spec);
            c.execs.insert(req.exec_id.clone(), p);
            Ok(())
        }
        .await;
        ttrpc(r)?;
        self.events()
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

    async fn resize_pty(
        &self,
        _ctx: &TtrpcContext,
        req: api::ResizePtyRequest,
    ) -> TtrpcResult<api::Empty> {
        ttrpc(
            self.with_process(&req.id, &req.exec_id, |_, p| match &p.console {
                Some(master) => console::resize(master, req.width, req.height),
                None => Err(Error::FailedPrecondition("process has no terminal".into())),
            })
            .await,
        )?;
        Ok(api::Empty::new())
    }

    async fn close_io(
        &self,
        _ctx: &TtrpcContext,
        req: api::CloseIORequest,
    ) -> TtrpcResult<api::Empty> {
        ttrpc(
            self.with_process(&req.id, &req.exec_id, |_, p| {
                if req.stdin {
                    if let Some(io) = &p.io {
                        io.close_stdin();
                    }
                }
                Ok(())
            })
            .await,
        )?;
        Ok(api::Empty::new())
    }

    async fn update(
        &self,
        _ctx: &TtrpcContext,
        req: api::UpdateTaskRequest,
    ) -> TtrpcResult<api::Empty> {
        let r = async {
            let (runtime, bundle) = self
                .with_process(&req.id, "", |c, _| {
                    Ok((c.runtime.clone(), c.bundle.clone()))
                })
                .await?;
            let resources = req
                .resources
                .as_ref()
                .ok_or_else(|| Error::InvalidArgument("update without resources".into()))?;
            // Checks it is JSON before handing it on.
            let _: serde_json::Value = serde_json::from_slice(&resources.value)?;
            let path = bundle.join("resources.json");
            crate::launch::write_atomic(&path, &resources.value)?;
            let r = runtime.update(&req.id, &path).await;
            let _ = std::fs::remove_file(&path);
            r
        }
        .await;
        ttrpc(r)?;
        Ok(api::Empty::new())
    }

    async fn wait(
        &self,
        _ctx: &TtrpcContext,
        req: api::WaitRequest,
    ) -> TtrpcResult<api::WaitResponse> {
        let mut rx = ttrpc(
            self.with_process(&req.id, &req.exec_id, |_, p| Ok(p.exited.subscribe()))
                .await,
        )?;
        let exit =
            rx.wait_for(|e| e.is_some()).await.map(|e| *e).map_err(|_| {
                Error::NotFound(format!("process {} {} went away", req.id, req.exec_id))
            });
        let (status, at) = ttrpc(exit)?.unwrap_or((0, SystemTime::now()));
        Ok(api::WaitResponse {
            exit_status: status as u32,
            exited_at: MessageField::some(timestamp(at)),
            ..Default::default()
        })
    }

    async fn stats(
        &self,
        _ctx: &TtrpcContext,
        req: api::StatsRequest,
    ) -> TtrpcResult<api::StatsResponse> {
        let stats = ttrpc(self.stats(&req.id).await)?;
        Ok(api::StatsResponse {
            stats: MessageField::some(stats),
            ..Default::default()
        })
    }

    async fn connect(
        &self,
        _ctx: &TtrpcContext,
        req: api::ConnectRequest,
    ) -> TtrpcResult<api::ConnectResponse> {
        let task_pid = {
            let containers = self.inner.containers.lock().await;
            containers.get(&req.id).map(|c| c.init.pid).unwrap_or(0)
        };
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
        let remaining = self.inner.containers.lock().await.len();
        if remaining > 0 && !req.now {
            tracing::debug!(remaining, "shutdown refused: containers remain");
            return Ok(api::Empty::new());
        }
        tracing::info!("shutdown");
        self.inner.ctx.shutdown.signal();
        Ok(api::Empty::new())
    }
}
