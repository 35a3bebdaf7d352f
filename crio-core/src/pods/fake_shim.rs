//! A shim in memory, for the lifecycle's unit tests: it answers the Task API and
//! the shim binary's actions the way a shim does (tasks created, started, exited,
//! deleted), records every call, fails a call when told to, and can die.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use protocols::shim::api;
use protocols::shim::protobuf::well_known_types::empty::Empty;
use protocols::shim::types::task::Status;
use tokio::sync::watch;

use crate::runtime::launcher::LaunchError;
use crate::runtime::shims::ShimLauncher;
use crate::runtime::task::TaskApi;
use crate::runtime::{RuntimeEvent, ShimAddress, TaskError};

/// A task's key: its id, or `id/exec_id` for an exec process.
fn key(id: &str, exec_id: &str) -> String {
    if exec_id.is_empty() {
        id.to_string()
    } else {
        format!("{id}/{exec_id}")
    }
}

/// What an exec process does when started.
#[derive(Debug, Clone)]
pub(super) struct ExecScript {
    /// Written to its stdout.
    pub stdout: Vec<u8>,
    /// Its exit status; `None` runs until killed.
    pub exit: Option<u32>,
}

/// One task the fake shim holds.
#[derive(Debug, Clone)]
struct Task {
    status: Status,
    pid: u32,
    /// An exec process: its script and stdout path.
    exec: Option<(ExecScript, String)>,
}

/// What the fake shim knows and did; shared by its clients and its launcher.
#[derive(Debug, Default)]
pub(super) struct FakeState {
    tasks: HashMap<String, Task>,
    /// Every call, as `method id` (`start-action`, `delete-action` for the binary's).
    pub calls: Vec<String>,
    /// The next call of a method fails with this error.
    failures: Vec<(&'static str, TaskError)>,
    /// The next `start` action fails.
    fail_start_action: bool,
    /// Exit statuses by task, for `wait`.
    exits: HashMap<String, watch::Sender<Option<u32>>>,
    /// The shim process died: every call and wait fails as a broken connection.
    dead: Option<watch::Sender<bool>>,
    next_pid: u32,
    /// What the next exec processes do.
    exec_script: Option<ExecScript>,
    /// Where exits are published, as a shim's `TaskExit` events.
    events: Option<tokio::sync::mpsc::UnboundedSender<RuntimeEvent>>,
    /// Called by `create` before it answers (an exit that beats the reply).
    on_create: Option<Hook>,
}

/// A test's hook, run inside a shim call.
#[derive(Clone)]
struct Hook(Arc<dyn Fn(&str) + Send + Sync>);

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("hook")
    }
}

impl FakeState {
    /// Keeps the sender: waits subscribed to it must not see it dropped.
    fn revive(&mut self) {
        if let Some(dead) = &self.dead {
            dead.send_replace(false);
        }
    }
}

/// The fake shim's controls, as a test holds them.
#[derive(Debug, Clone, Default)]
pub(super) struct FakeShim {
    pub state: Arc<Mutex<FakeState>>,
}

fn disconnected(method: &'static str) -> TaskError {
    TaskError::Disconnected {
        method,
        message: "the fake shim died".into(),
    }
}

impl FakeShim {
    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next call of `method` fails with `error`.
    pub(super) fn fail_next(&self, method: &'static str, error: TaskError) {
        self.lock().failures.push((method, error));
    }

    /// The next `start` action fails (the shim binary cannot start).
    pub(super) fn fail_start_action(&self) {
        self.lock().fail_start_action = true;
    }

    /// Every exec process from now on runs `script`.
    pub(super) fn on_exec(&self, script: ExecScript) {
        self.lock().exec_script = Some(script);
    }

    /// Runs `hook(id)` inside every `create`, before it answers.
    pub(super) fn on_create(&self, hook: impl Fn(&str) + Send + Sync + 'static) {
        self.lock().on_create = Some(Hook(Arc::new(hook)));
    }

    /// Every call so far.
    pub(super) fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// Whether the shim holds task `id`.
    pub(super) fn has_task(&self, id: &str) -> bool {
        self.lock().tasks.contains_key(id)
    }

    /// The shim loses task `id` (a create the daemon's death cut short).
    pub(super) fn forget_task(&self, id: &str) {
        self.lock().tasks.remove(id);
    }

    /// Forgets the calls so far.
    pub(super) fn clear_calls(&self) {
        self.lock().calls.clear();
    }

    /// Publishes every exit to `events`, as a shim's `TaskExit` events.
    pub(super) fn publish_to(&self, events: tokio::sync::mpsc::UnboundedSender<RuntimeEvent>) {
        self.lock().events = Some(events);
    }

    /// Task `id`'s process exits with `status`: `Wait` returns, an event is sent.
    pub(super) fn exit(&self, id: &str, status: u32) {
        let mut s = self.lock();
        let pid = match s.tasks.get_mut(id) {
            Some(t) => {
                t.status = Status::STOPPED;
                t.pid
            }
            None => 0,
        };
        if let Some(events) = &s.events {
            // An exec's event names its container and the exec's own id.
            let (container_id, process_id) = id.split_once('/').unwrap_or((id, id));
            let _ = events.send(RuntimeEvent::Exit {
                container_id: container_id.to_string(),
                id: process_id.to_string(),
                pid,
                exit_status: status,
                exited_at: crate::store::now_nanos(),
            });
        }
        s.exits
            .entry(id.to_string())
            .or_insert_with(|| watch::channel(None).0)
            .send_replace(Some(status));
    }

    /// The shim process dies: connections break, waits return.
    pub(super) fn die(&self) {
        let mut s = self.lock();
        let dead = s.dead.get_or_insert_with(|| watch::channel(false).0);
        dead.send_replace(true);
    }

    /// Records `method id`; the error the test armed for it, or a dead shim's.
    fn call(&self, method: &'static str, id: &str) -> Result<(), TaskError> {
        let mut s = self.lock();
        s.calls.push(format!("{method} {id}"));
        if s.dead.as_ref().is_some_and(|d| *d.borrow()) {
            return Err(disconnected(method));
        }
        if let Some(at) = s.failures.iter().position(|(m, _)| *m == method) {
            return Err(s.failures.remove(at).1);
        }
        Ok(())
    }

    fn not_found(method: &'static str, id: &str) -> TaskError {
        TaskError::NotFound {
            method,
            message: format!("task {id} not found"),
        }
    }
}

/// A client of the fake shim.
#[derive(Debug)]
struct FakeClient {
    shim: FakeShim,
    address: ShimAddress,
}

#[async_trait::async_trait]
impl TaskApi for FakeClient {
    fn address(&self) -> &ShimAddress {
        &self.address
    }

    async fn create(
        &self,
        req: &api::CreateTaskRequest,
    ) -> Result<api::CreateTaskResponse, TaskError> {
        self.shim.call("create", &req.id)?;
        let (pid, hook) = {
            let mut s = self.shim.lock();
            s.next_pid += 1;
            let pid = 1000 + s.next_pid;
            s.tasks.insert(
                req.id.clone(),
                Task {
                    status: Status::CREATED,
                    pid,
                    exec: None,
                },
            );
            (pid, s.on_create.clone())
        };
        if let Some(hook) = hook {
            (hook.0)(&req.id);
            // Let what the hook set off (events) run before the reply.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Ok(api::CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }

    async fn start(&self, req: &api::StartRequest) -> Result<api::StartResponse, TaskError> {
        let key = key(&req.id, &req.exec_id);
        self.shim.call("start", &key)?;
        let (pid, exec) = {
            let mut s = self.shim.lock();
            let task = s
                .tasks
                .get_mut(&key)
                .ok_or_else(|| FakeShim::not_found("Start", &key))?;
            if task.status == Status::CREATED {
                task.status = Status::RUNNING;
            }
            (task.pid, task.exec.clone())
        };
        if let Some((script, stdout)) = exec {
            // The process writes its output, closes it, and exits.
            let path = stdout.clone();
            let output = script.stdout.clone();
            tokio::task::spawn_blocking(move || {
                use std::io::Write;
                if let Ok(mut out) = std::fs::OpenOptions::new().write(true).open(&path) {
                    let _ = out.write_all(&output);
                }
            })
            .await
            .expect("write exec output");
            if let Some(status) = script.exit {
                self.shim.exit(&key, status);
            }
        }
        Ok(api::StartResponse {
            pid,
            ..Default::default()
        })
    }

    async fn state(&self, req: &api::StateRequest) -> Result<api::StateResponse, TaskError> {
        self.shim.call("state", &req.id)?;
        let s = self.shim.lock();
        let task = s
            .tasks
            .get(&req.id)
            .ok_or_else(|| FakeShim::not_found("State", &req.id))?;
        let exit = s.exits.get(&req.id).and_then(|e| *e.borrow()).unwrap_or(0);
        Ok(api::StateResponse {
            id: req.id.clone(),
            pid: task.pid,
            status: task.status.into(),
            exit_status: exit,
            ..Default::default()
        })
    }

    async fn kill(&self, req: &api::KillRequest) -> Result<Empty, TaskError> {
        let key = key(&req.id, &req.exec_id);
        self.shim.call("kill", &key)?;
        let status = self.shim.lock().tasks.get(&key).map(|t| t.status);
        let Some(status) = status else {
            return Err(FakeShim::not_found("Kill", &key));
        };
        if status != Status::STOPPED {
            self.shim.exit(&key, 128 + req.signal);
        }
        Ok(Empty::new())
    }

    async fn delete(&self, req: &api::DeleteRequest) -> Result<api::DeleteResponse, TaskError> {
        let key = key(&req.id, &req.exec_id);
        self.shim.call("delete", &key)?;
        let mut s = self.shim.lock();
        let task = s
            .tasks
            .remove(&key)
            .ok_or_else(|| FakeShim::not_found("Delete", &key))?;
        Ok(api::DeleteResponse {
            pid: task.pid,
            ..Default::default()
        })
    }

    async fn exec(&self, req: &api::ExecProcessRequest) -> Result<Empty, TaskError> {
        let key = key(&req.id, &req.exec_id);
        self.shim.call("exec", &key)?;
        let mut s = self.shim.lock();
        if !s.tasks.contains_key(&req.id) {
            return Err(FakeShim::not_found("Exec", &req.id));
        }
        let script = s.exec_script.clone().unwrap_or(ExecScript {
            stdout: Vec::new(),
            exit: Some(0),
        });
        s.next_pid += 1;
        let pid = 1000 + s.next_pid;
        s.tasks.insert(
            key,
            Task {
                status: Status::CREATED,
                pid,
                exec: Some((script, req.stdout.clone())),
            },
        );
        Ok(Empty::new())
    }

    async fn stats(&self, req: &api::StatsRequest) -> Result<api::StatsResponse, TaskError> {
        self.shim.call("stats", &req.id)?;
        Ok(api::StatsResponse::default())
    }

    async fn update(&self, req: &api::UpdateTaskRequest) -> Result<Empty, TaskError> {
        self.shim.call("update", &req.id)?;
        Ok(Empty::new())
    }

    async fn resize_pty(&self, req: &api::ResizePtyRequest) -> Result<Empty, TaskError> {
        self.shim.call("resize_pty", &req.id)?;
        Ok(Empty::new())
    }

    async fn close_io(&self, req: &api::CloseIORequest) -> Result<Empty, TaskError> {
        self.shim.call("close_io", &req.id)?;
        Ok(Empty::new())
    }

    async fn shutdown(&self, req: &api::ShutdownRequest) -> Result<Empty, TaskError> {
        self.shim.call("shutdown", &req.id)?;
        Ok(Empty::new())
    }

    async fn wait(&self, req: &api::WaitRequest) -> Result<api::WaitResponse, TaskError> {
        let key = key(&req.id, &req.exec_id);
        self.shim.call("wait", &key)?;
        let (mut exit, mut dead) = {
            let mut s = self.shim.lock();
            let exit = s
                .exits
                .entry(key)
                .or_insert_with(|| watch::channel(None).0)
                .subscribe();
            let dead = s
                .dead
                .get_or_insert_with(|| watch::channel(false).0)
                .subscribe();
            (exit, dead)
        };
        loop {
            if let Some(status) = *exit.borrow() {
                return Ok(api::WaitResponse {
                    exit_status: status,
                    ..Default::default()
                });
            }
            if *dead.borrow() {
                return Err(disconnected("Wait"));
            }
            tokio::select! {
                r = exit.changed() => if r.is_err() { return Err(disconnected("Wait")) },
                r = dead.changed() => if r.is_err() { return Err(disconnected("Wait")) },
            }
        }
    }
}

#[async_trait::async_trait]
impl ShimLauncher for FakeShim {
    async fn start(
        &self,
        binary: &Path,
        id: &str,
        _bundle: &Path,
    ) -> Result<ShimAddress, LaunchError> {
        let mut s = self.lock();
        s.calls.push(format!("start-action {id}"));
        if std::mem::take(&mut s.fail_start_action) {
            return Err(LaunchError::Failed {
                binary: binary.to_path_buf(),
                action: "start",
                status: "exit status: 1".into(),
                stderr: "the fake shim cannot start".into(),
            });
        }
        // A dead shim is replaced by a new one.
        s.revive();
        Ok(ShimAddress {
            address: "unix:///fake/shim.sock".into(),
            version: 3,
        })
    }

    async fn delete(
        &self,
        _binary: &Path,
        id: &str,
        _bundle: &Path,
    ) -> Result<api::DeleteResponse, LaunchError> {
        let mut s = self.lock();
        s.calls.push(format!("delete-action {id}"));
        s.tasks.remove(id);
        Ok(api::DeleteResponse {
            exit_status: 137,
            ..Default::default()
        })
    }

    async fn connect(&self, address: &ShimAddress) -> Result<Arc<dyn TaskApi>, TaskError> {
        if self.lock().dead.as_ref().is_some_and(|d| *d.borrow()) {
            return Err(TaskError::Connect {
                address: address.address.clone(),
                message: "the fake shim died".into(),
            });
        }
        Ok(Arc::new(FakeClient {
            shim: self.clone(),
            address: address.clone(),
        }))
    }
}
