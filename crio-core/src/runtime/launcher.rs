//! Launching shim binaries as containerd does: the `start` bootstrap (in the bundle
//! dir, in its own session, with containerd's flags and environment), the `delete`
//! cleanup subcommand, and the `<bundle>/log` FIFO drained into the core's log.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use protocols::shim::api::DeleteResponse;
use protocols::shim::protobuf::Message;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;

use super::bootstrap::{parse_start_reply, BootstrapError, ShimAddress, TASK_API_MAX};

/// How long `start` and `delete` may take.
pub(crate) const LAUNCH_TIMEOUT: Duration = Duration::from_secs(20);

/// The containerd namespace the core's tasks live in (containerd's CRI uses the same).
pub(crate) const NAMESPACE: &str = "k8s.io";

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("shim {binary}: cannot run: {source}")]
    Spawn {
        binary: PathBuf,
        source: std::io::Error,
    },
    #[error("shim {binary} {action} failed ({status}): {stderr}")]
    Failed {
        binary: PathBuf,
        action: &'static str,
        status: String,
        stderr: String,
    },
    #[error("shim {binary} {action} did not finish within {timeout:?}")]
    Timeout {
        binary: PathBuf,
        action: &'static str,
        timeout: Duration,
    },
    #[error("shim {binary} start: {source}")]
    Reply {
        binary: PathBuf,
        source: BootstrapError,
    },
    #[error("shim {binary} delete: bad reply: {message}")]
    DeleteReply { binary: PathBuf, message: String },
    #[error("bundle {path}: {source}")]
    Bundle {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("shim log FIFO {path}: {source}")]
    LogFifo {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Everything one invocation of a shim binary needs.
#[derive(Debug, Clone)]
pub(crate) struct Launch {
    pub binary: PathBuf,
    /// Task id: the sandbox id for the pod's first task, then each container's.
    pub id: String,
    pub bundle: PathBuf,
    /// The core's events socket (also given as `-address`, so the legacy
    /// `publish` path reaches the same place).
    pub events_address: PathBuf,
    /// The `crio` binary, for `publish`.
    pub publish_binary: PathBuf,
    pub debug: bool,
}

impl Launch {
    /// containerd's flags, in containerd's order, then the action.
    pub(crate) fn args(&self, action: &str) -> Vec<String> {
        let mut args = vec![
            "-namespace".to_string(),
            NAMESPACE.to_string(),
            "-address".to_string(),
            self.events_address.display().to_string(),
            "-publish-binary".to_string(),
            self.publish_binary.display().to_string(),
            "-id".to_string(),
            self.id.clone(),
        ];
        if action == "delete" {
            args.push("-bundle".to_string());
            args.push(self.bundle.display().to_string());
        }
        if self.debug {
            args.push("-debug".to_string());
        }
        args.push(action.to_string());
        args
    }

    /// The environment containerd sets for shims.
    pub(crate) fn env(&self) -> Vec<(&'static str, String)> {
        let events = self.events_address.display().to_string();
        vec![
            ("TTRPC_ADDRESS", events.clone()),
            ("GRPC_ADDRESS", events),
            ("NAMESPACE", NAMESPACE.to_string()),
            ("MAX_SHIM_VERSION", TASK_API_MAX.to_string()),
        ]
    }

    fn command(&self, action: &str) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.args(self.args(action))
            .envs(self.env())
            .current_dir(&self.bundle)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // systemd's notify socket is the daemon's, not its shims'.
        for var in crate::systemd::ENV {
            cmd.env_remove(var);
        }
        // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                // Own session: the shim (and the server it forks) must outlive the core
                // and never get the core's terminal signals.
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd
    }

    /// Runs `action` and returns its stdout. A shim's server child may keep the
    /// pipes open, so output is collected until the shim itself exits.
    async fn run(&self, action: &'static str) -> Result<Vec<u8>, LaunchError> {
        let mut child = self
            .command(action)
            .spawn()
            .map_err(|source| LaunchError::Spawn {
                binary: self.binary.clone(),
                source,
            })?;
        let mut stdout = child.stdout.take();
        let mut stderr = child.stderr.take();
        let out_reader = tokio::spawn(async move {
            let mut buf = Vec::new();
            if let Some(s) = stdout.as_mut() {
                let _ = s.read_to_end(&mut buf).await;
            }
            buf
        });
        let err_reader = tokio::spawn(async move {
            let mut buf = Vec::new();
            if let Some(s) = stderr.as_mut() {
                let _ = s.take(64 * 1024).read_to_end(&mut buf).await;
            }
            buf
        });
        let timeout = LAUNCH_TIMEOUT;
        let status = match tokio::time::timeout(timeout, child.wait()).await {
            Ok(Ok(status)) => status,
            Ok(Err(source)) => {
                return Err(LaunchError::Spawn {
                    binary: self.binary.clone(),
                    source,
                })
            }
            Err(_) => {
                let _ = child.start_kill();
                return Err(LaunchError::Timeout {
                    binary: self.binary.clone(),
                    action,
                    timeout,
                });
            }
        };
        let grace = Duration::from_millis(500);
        let out = tokio::time::timeout(grace, out_reader)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let err = tokio::time::timeout(grace, err_reader)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        if !status.success() {
            return Err(LaunchError::Failed {
                binary: self.binary.clone(),
                action,
                status: status.to_string(),
                stderr: String::from_utf8_lossy(&err)
                    .trim()
                    .chars()
                    .take(2000)
                    .collect(),
            });
        }
        if !err.is_empty() {
            tracing::debug!(shim = %self.binary.display(), id = %self.id, "{action}: {}", String::from_utf8_lossy(&err).trim());
        }
        Ok(out)
    }

    /// `start`: returns where the (possibly already running) shim serves the task API.
    pub(crate) async fn start(&self) -> Result<ShimAddress, LaunchError> {
        let out = self.run("start").await?;
        parse_start_reply(&out).map_err(|source| LaunchError::Reply {
            binary: self.binary.clone(),
            source,
        })
    }

    /// `delete`: the shim's cleanup after its server died (kills what is left of the
    /// task, unmounts, removes runtime state). Returns the exit it recorded.
    pub(crate) async fn delete(&self) -> Result<DeleteResponse, LaunchError> {
        let out = self.run("delete").await?;
        DeleteResponse::parse_from_bytes(&out).map_err(|e| LaunchError::DeleteReply {
            binary: self.binary.clone(),
            message: e.to_string(),
        })
    }
}

/// Creates `<bundle>/log` (a FIFO) and drains it into the core's log until the
/// returned task is aborted. Opened read-write so it never reports end-of-file
/// between shim writers, and so a shim never blocks opening it.
pub(crate) fn drain_shim_log(
    bundle: &Path,
    id: &str,
) -> Result<tokio::task::JoinHandle<()>, LaunchError> {
    let path = bundle.join("log");
    let fifo_err = |source| LaunchError::LogFifo {
        path: path.clone(),
        source,
    };
    match nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o700)) {
        Ok(()) => {}
        Err(nix::errno::Errno::EEXIST) => {}
        Err(e) => return Err(fifo_err(e.into())),
    }
    let receiver = tokio::net::unix::pipe::OpenOptions::new()
        .read_write(true)
        .open_receiver(&path)
        .map_err(fifo_err)?;
    let id = id.to_string();
    Ok(tokio::spawn(async move {
        let mut lines = BufReader::new(receiver).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::info!(target: "shim", pod = %id, "{line}");
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch() -> Launch {
        Launch {
            binary: "/usr/bin/containerd-shim-runc-v2".into(),
            id: "abc".into(),
            bundle: "/run/b/abc".into(),
            events_address: "/run/crio/events.sock".into(),
            publish_binary: "/usr/bin/crio".into(),
            debug: false,
        }
    }

    #[test]
    fn start_and_delete_use_containerds_flags() {
        let l = launch();
        assert_eq!(
            l.args("start"),
            [
                "-namespace",
                "k8s.io",
                "-address",
                "/run/crio/events.sock",
                "-publish-binary",
                "/usr/bin/crio",
                "-id",
                "abc",
                "start"
            ]
        );
        let delete = l.args("delete");
        assert_eq!(&delete[8..], ["-bundle", "/run/b/abc", "delete"]);
        let env = l.env();
        assert!(env.contains(&("TTRPC_ADDRESS", "/run/crio/events.sock".to_string())));
        assert!(env.contains(&("MAX_SHIM_VERSION", "3".to_string())));
    }

    #[tokio::test]
    async fn a_failing_shim_reports_its_stderr_and_garbage_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let bad = dir.path().join("bad-shim");
        std::fs::write(&bad, "#!/bin/sh\necho 'no such runtime' >&2\nexit 3\n").expect("write");
        std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let mut l = launch();
        l.binary = bad;
        l.bundle = dir.path().to_path_buf();
        match l.start().await {
            Err(LaunchError::Failed { stderr, .. }) => assert_eq!(stderr, "no such runtime"),
            other => panic!("expected a start failure, got {other:?}"),
        }
        let garbage = dir.path().join("garbage-shim");
        std::fs::write(&garbage, "#!/bin/sh\necho 'hello there'\n").expect("write");
        std::fs::set_permissions(&garbage, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        l.binary = garbage;
        assert!(matches!(l.start().await, Err(LaunchError::Reply { .. })));
    }
}
