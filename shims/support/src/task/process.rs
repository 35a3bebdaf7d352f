//! The process table of one shim: each container's init and exec processes with
//! their status and exit, which process a reaped pid was, and the exits of pids
//! no process has yet. Bookkeeping only: the service drives the runtime and
//! reports exits; this decides whose they are.

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use containerd_shim_protos::types::task::Status;
use tokio::sync::watch;

use super::oci_cli::Runtime;
use crate::reaper::Exit;
use crate::stdio::{ProcessIo, StdioConfig};
use crate::Error;

/// A process's exit status and time, once reported.
pub(super) type ExitState = Option<(i32, SystemTime)>;

#[derive(Debug)]
pub(super) struct Process {
    pub(super) exec_id: String,
    pub(super) pid: u32,
    pub(super) status: Status,
    pub(super) stdio: StdioConfig,
    pub(super) io: Option<Arc<ProcessIo>>,
    pub(super) console: Option<File>,
    /// Set once the exit is reported; `Wait` watches it.
    pub(super) exited: watch::Sender<ExitState>,
    /// The exec's process spec (JSON), for exec processes.
    pub(super) spec: Option<serde_json::Value>,
}

impl Process {
    pub(super) fn new(exec_id: &str, stdio: StdioConfig) -> Process {
        Process {
            exec_id: exec_id.to_string(),
            pid: 0,
            status: Status::CREATED,
            stdio,
            io: None,
            console: None,
            exited: watch::channel(None).0,
            spec: None,
        }
    }

    pub(super) fn exit(&self) -> ExitState {
        *self.exited.borrow()
    }

    /// Whether a reaped `pid` is this process's exit still to report.
    fn is_live_pid(&self, pid: i32) -> bool {
        self.pid as i32 == pid && self.exit().is_none() && self.status != Status::STOPPED
    }
}

#[derive(Debug)]
pub(super) struct Container {
    pub(super) id: String,
    pub(super) bundle: PathBuf,
    pub(super) runtime: Runtime,
    pub(super) init: Process,
    pub(super) execs: HashMap<String, Process>,
    pub(super) rootfs_mounted: bool,
    /// Without its own pid namespace, the init's exit does not end the others.
    pub(super) shared_pid_ns: bool,
}

impl Container {
    pub(super) fn process(&self, exec_id: &str) -> Result<&Process, Error> {
        if exec_id.is_empty() {
            return Ok(&self.init);
        }
        self.execs
            .get(exec_id)
            .ok_or_else(|| Error::NotFound(format!("exec {exec_id} of {} not found", self.id)))
    }

    pub(super) fn process_mut(&mut self, exec_id: &str) -> Result<&mut Process, Error> {
        if exec_id.is_empty() {
            return Ok(&mut self.init);
        }
        let id = self.id.clone();
        self.execs
            .get_mut(exec_id)
            .ok_or_else(|| Error::NotFound(format!("exec {exec_id} of {id} not found")))
    }
}

pub(super) fn not_found(id: &str) -> Error {
    Error::NotFound(format!("container {id} not found"))
}

/// The process a reaped pid was, with what its exit is reported through.
#[derive(Debug)]
pub(super) struct Claimed {
    pub(super) container_id: String,
    /// Empty for the container's init.
    pub(super) exec_id: String,
    /// The init of a container sharing the pod's pid namespace: its other
    /// processes must be killed, nothing else ends them.
    pub(super) kill_the_rest: bool,
    pub(super) runtime: Runtime,
    pub(super) io: Option<Arc<ProcessIo>>,
    pub(super) exited: watch::Sender<ExitState>,
}

/// Marks the live process that had `pid` stopped and says whose exit it is;
/// `None` when no live process has it (yet).
pub(super) fn claim_exit(containers: &mut HashMap<String, Container>, pid: i32) -> Option<Claimed> {
    containers.values_mut().find_map(|c| {
        let (id, runtime) = (&c.id, &c.runtime);
        if c.init.is_live_pid(pid) {
            c.init.status = Status::STOPPED;
            return Some(Claimed {
                container_id: id.clone(),
                exec_id: String::new(),
                kill_the_rest: c.shared_pid_ns,
                runtime: runtime.clone(),
                io: c.init.io.clone(),
                exited: c.init.exited.clone(),
            });
        }
        c.execs.values_mut().find(|p| p.is_live_pid(pid)).map(|p| {
            p.status = Status::STOPPED;
            Claimed {
                container_id: id.clone(),
                exec_id: p.exec_id.clone(),
                kill_the_rest: false,
                runtime: runtime.clone(),
                io: p.io.clone(),
                exited: p.exited.clone(),
            }
        })
    })
}

/// Exits of pids no process has yet (a process that exits before its start
/// returned its pid), kept for `ttl`.
#[derive(Debug)]
pub(super) struct UnclaimedExits {
    exits: HashMap<i32, (Exit, Instant)>,
    ttl: Duration,
}

impl UnclaimedExits {
    pub(super) fn new(ttl: Duration) -> Self {
        Self {
            exits: HashMap::new(),
            ttl,
        }
    }

    pub(super) fn keep(&mut self, exit: Exit, now: Instant) {
        self.exits.insert(exit.pid, (exit, now));
    }

    /// The exit of `pid`, if it came and has not expired; forgets expired ones.
    pub(super) fn take(&mut self, pid: u32, now: Instant) -> Option<Exit> {
        let ttl = self.ttl;
        self.exits
            .retain(|_, (_, at)| now.saturating_duration_since(*at) < ttl);
        self.exits.remove(&(pid as i32)).map(|(e, _)| e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reaper::Reaper;
    use crate::task::oci_cli::RuntimeOptions;

    fn container(id: &str, init_pid: u32, shared_pid_ns: bool) -> Container {
        let options = RuntimeOptions {
            binary_name: "runc".into(),
            root: "/run/runc".into(),
            systemd_cgroup: false,
            no_pivot_root: false,
            no_new_keyring: false,
        };
        let mut init = Process::new("", StdioConfig::default());
        init.pid = init_pid;
        init.status = Status::RUNNING;
        Container {
            id: id.into(),
            bundle: PathBuf::from("/b"),
            runtime: Runtime::new(options, "k8s.io", &PathBuf::from("/b"), Reaper::default()),
            init,
            execs: HashMap::new(),
            rootfs_mounted: false,
            shared_pid_ns,
        }
    }

    fn exec(exec_id: &str, pid: u32) -> Process {
        let mut p = Process::new(exec_id, StdioConfig::default());
        p.pid = pid;
        p.status = Status::RUNNING;
        p
    }

    fn exit(pid: i32) -> Exit {
        Exit {
            pid,
            status: 0,
            at: SystemTime::now(),
        }
    }

    #[test]
    fn a_container_finds_its_init_and_execs_and_names_what_is_missing() {
        let mut c = container("c1", 10, false);
        c.execs.insert("e1".into(), exec("e1", 11));
        assert_eq!(c.process("").expect("init").pid, 10);
        assert_eq!(c.process("e1").expect("exec").pid, 11);
        let err = c.process_mut("e2").expect_err("no such exec");
        assert!(err.to_string().contains("exec e2 of c1 not found"), "{err}");
    }

    #[test]
    fn an_exit_is_claimed_by_the_live_process_with_its_pid_once() {
        let mut table = HashMap::new();
        let mut a = container("a", 10, true);
        a.execs.insert("e1".into(), exec("e1", 11));
        table.insert("a".to_string(), a);
        table.insert("b".to_string(), container("b", 20, false));

        let init = claim_exit(&mut table, 10).expect("a's init");
        assert_eq!(
            (init.container_id.as_str(), init.exec_id.as_str()),
            ("a", "")
        );
        assert!(init.kill_the_rest, "a shares the pod's pid namespace");
        assert_eq!(table["a"].init.status, Status::STOPPED);
        assert!(claim_exit(&mut table, 10).is_none(), "claimed once");

        let e = claim_exit(&mut table, 11).expect("a's exec");
        assert_eq!((e.container_id.as_str(), e.exec_id.as_str()), ("a", "e1"));
        assert!(!e.kill_the_rest, "an exec's exit ends nothing else");

        let b = claim_exit(&mut table, 20).expect("b's init");
        assert!(!b.kill_the_rest, "b has its own pid namespace");
        assert!(claim_exit(&mut table, 99).is_none(), "nobody's pid");
    }

    #[test]
    fn a_reported_exit_is_not_claimed_again() {
        let mut table = HashMap::new();
        let c = container("c", 10, false);
        c.init.exited.send_replace(Some((0, SystemTime::now())));
        table.insert("c".to_string(), c);
        assert!(claim_exit(&mut table, 10).is_none());
    }

    #[test]
    fn unclaimed_exits_wait_for_their_pid_until_they_expire() {
        let mut unclaimed = UnclaimedExits::new(Duration::from_secs(60));
        let start = Instant::now();
        unclaimed.keep(exit(30), start);
        unclaimed.keep(exit(31), start);
        assert_eq!(unclaimed.take(30, start).map(|e| e.pid), Some(30));
        assert!(unclaimed.take(30, start).is_none(), "taken once");
        let later = start + Duration::from_secs(61);
        assert!(unclaimed.take(31, later).is_none(), "expired");
    }
}
