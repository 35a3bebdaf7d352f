//! Reaping children as a subreaper, and running helper commands (the OCI runtime
//! CLI) without racing the reaper for their exit status.
//!
//! The shim is the subreaper of every container process: a container's init is
//! reparented to it when `runc create` exits. One task reaps every child on
//! SIGCHLD and hands each exit to every subscriber; a helper command is run by
//! subscribing first, spawning second, and waiting for its pid's exit in the
//! subscription, so no exit is ever lost to the reaper.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::sync::mpsc;

use crate::error::{Error, Result};

/// A reaped child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub pid: i32,
    /// The exit code; 128 + signal number for a child killed by a signal.
    pub status: i32,
    pub at: SystemTime,
}

/// The exit code containerd reports for a wait status: the code of a normal exit,
/// 128 + the signal for a signalled child; `None` for stops and continues.
pub fn exit_code(status: WaitStatus) -> Option<(i32, i32)> {
    match status {
        WaitStatus::Exited(pid, code) => Some((pid.as_raw(), code)),
        WaitStatus::Signaled(pid, signal, _) => Some((pid.as_raw(), 128 + signal as i32)),
        _ => None,
    }
}

/// Marks the calling process as the child subreaper of its descendants.
pub fn set_subreaper() -> Result<()> {
    nix::sys::prctl::set_child_subreaper(true)
        .map_err(|e| Error::io("prctl(PR_SET_CHILD_SUBREAPER)", e.into()))
}

type Subscribers = Mutex<Vec<(u64, mpsc::UnboundedSender<Exit>)>>;

/// Hands every reaped exit to every subscriber.
#[derive(Clone, Debug, Default)]
pub struct Reaper {
    subscribers: Arc<Subscribers>,
    next_id: Arc<AtomicU64>,
}

/// Exits reaped after [`Reaper::subscribe`]; unsubscribes when dropped.
#[derive(Debug)]
pub struct Subscription {
    id: u64,
    rx: mpsc::UnboundedReceiver<Exit>,
    subscribers: Arc<Subscribers>,
}

impl Subscription {
    /// The next exit, `None` once the reaper is gone.
    pub async fn recv(&mut self) -> Option<Exit> {
        self.rx.recv().await
    }

    /// Waits for `pid` to exit, skipping other exits.
    pub async fn wait_for(&mut self, pid: i32) -> Option<Exit> {
        while let Some(exit) = self.rx.recv().await {
            if exit.pid == pid {
                return Some(exit);
            }
        }
        None
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Ok(mut subs) = self.subscribers.lock() {
            subs.retain(|(id, _)| *id != self.id);
        }
    }
}

/// What a helper command printed, and how it ended.
#[derive(Debug, Clone)]
pub struct Output {
    pub status: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Reaper {
    /// Makes this process a subreaper and starts reaping on SIGCHLD. Call inside a
    /// tokio runtime, before spawning any child.
    pub fn start() -> Result<Reaper> {
        set_subreaper()?;
        let reaper = Reaper::default();
        let mut sigchld = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child())
            .map_err(|e| Error::io("listen for SIGCHLD", e))?;
        let task_reaper = reaper.clone();
        tokio::spawn(async move {
            // Children that exited before the handler was installed.
            task_reaper.reap_all();
            while sigchld.recv().await.is_some() {
                task_reaper.reap_all();
            }
        });
        Ok(reaper)
    }

    /// Exits reaped from now on.
    pub fn subscribe(&self) -> Subscription {
        let (tx, rx) = mpsc::unbounded_channel();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut subs) = self.subscribers.lock() {
            subs.push((id, tx));
        }
        Subscription {
            id,
            rx,
            subscribers: self.subscribers.clone(),
        }
    }

    /// Reaps every exited child and notifies subscribers.
    pub fn reap_all(&self) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                Ok(status) => {
                    if let Some((pid, code)) = exit_code(status) {
                        tracing::debug!(pid, code, "reaped child");
                        self.notify(Exit {
                            pid,
                            status: code,
                            at: SystemTime::now(),
                        });
                    }
                }
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    tracing::warn!("waitpid: {e}");
                    break;
                }
            }
        }
    }

    fn notify(&self, exit: Exit) {
        if let Ok(mut subs) = self.subscribers.lock() {
            subs.retain(|(_, tx)| tx.send(exit).is_ok());
        }
    }

    /// Runs `cmd` to completion and returns its exit code. The caller sets its
    /// stdio (for `runc create` it is the container's).
    pub async fn run_status(&self, mut cmd: Command) -> Result<i32> {
        let mut sub = self.subscribe();
        let child = cmd
            .spawn()
            .map_err(|e| Error::io(format!("spawn {:?}", cmd.get_program()), e))?;
        let pid = child.id() as i32;
        drop(child);
        let exit = sub
            .wait_for(pid)
            .await
            .ok_or_else(|| Error::Other("reaper stopped".into()))?;
        Ok(exit.status)
    }

    /// Runs `cmd` with stdin from /dev/null and captures its output.
    pub async fn run_output(&self, mut cmd: Command) -> Result<Output> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut sub = self.subscribe();
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::io(format!("spawn {:?}", cmd.get_program()), e))?;
        let pid = child.id() as i32;
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        drop(child);
        let out = tokio::task::spawn_blocking(move || read_all(stdout));
        let err = tokio::task::spawn_blocking(move || read_all(stderr));
        let exit = sub
            .wait_for(pid)
            .await
            .ok_or_else(|| Error::Other("reaper stopped".into()))?;
        Ok(Output {
            status: exit.status,
            stdout: out.await.unwrap_or_default(),
            stderr: err.await.unwrap_or_default(),
        })
    }
}

fn read_all(from: Option<impl Read>) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Some(mut r) = from {
        let _ = r.read_to_end(&mut buf);
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::Signal;

    #[test]
    fn exit_codes() {
        let pid = Pid::from_raw(42);
        assert_eq!(exit_code(WaitStatus::Exited(pid, 3)), Some((42, 3)));
        assert_eq!(exit_code(WaitStatus::Exited(pid, 0)), Some((42, 0)));
        assert_eq!(
            exit_code(WaitStatus::Signaled(pid, Signal::SIGKILL, false)),
            Some((42, 137))
        );
        assert_eq!(
            exit_code(WaitStatus::Signaled(pid, Signal::SIGTERM, true)),
            Some((42, 143))
        );
        assert_eq!(exit_code(WaitStatus::Stopped(pid, Signal::SIGSTOP)), None);
        assert_eq!(exit_code(WaitStatus::StillAlive), None);
    }
}
