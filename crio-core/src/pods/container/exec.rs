//! `ExecSync`: one process in a running container through the shim's `Exec`, its
//! output collected, its exit code returned, its deadline enforced.

use std::time::Duration;

use protocols::shim::api;
use protocols::shim::protobuf::well_known_types::any::Any;

use crate::error::CriError;
use crate::logs::{read_all, StdioFifos};
use crate::pods::PodRuntime;
use crate::store::new_id;
use crate::store::ContainerState;

/// Output kept per stream, as CRI-O caps it (the rest is read and dropped).
const MAX_OUTPUT: usize = 16 * 1024 * 1024;

/// containerd's type URL for a JSON-encoded OCI `Process`.
const PROCESS_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";

/// What an exec produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
}

/// The process of an exec: the container's own settings (user, env, cwd, caps),
/// another command, as containerd's JSON-encoded OCI `Process`.
pub(super) fn exec_process(
    record: &crate::store::ContainerRecord,
    cmd: &[String],
    tty: bool,
) -> Result<Any, CriError> {
    let spec_path = record.bundle.join("config.json");
    let spec = oci_spec::runtime::Spec::load(&spec_path)
        .map_err(|e| CriError::internal_in(format!("read {}", spec_path.display()), e))?;
    let mut process = spec.process().clone().unwrap_or_default();
    process.set_args(Some(cmd.to_vec()));
    process.set_terminal(Some(tty));
    let mut any = Any::new();
    any.type_url = PROCESS_TYPE_URL.into();
    any.value =
        serde_json::to_vec(&process).map_err(|e| CriError::internal_in("encode process", e))?;
    Ok(any)
}

impl PodRuntime {
    /// The container, if it is running (`FailedPrecondition` otherwise).
    pub(crate) fn running_container(
        &self,
        id: &str,
    ) -> Result<crate::store::ContainerRecord, CriError> {
        let record = self.container(id)?;
        if record.state != ContainerState::Running || self.has_exited(&record.id) {
            return Err(CriError::FailedPrecondition(format!(
                "container {} is not running",
                record.id
            )));
        }
        Ok(record)
    }

    /// ExecSync: `timeout` of zero waits as long as it takes.
    pub(crate) async fn exec_sync(
        &self,
        id: &str,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, CriError> {
        if cmd.is_empty() {
            return Err(CriError::InvalidArgument("ExecSync needs a command".into()));
        }
        let record = self.running_container(id)?;
        let shim = self.shims.require(&record.sandbox_id)?;
        let any = exec_process(&record, cmd, false)?;

        let exec_id = format!("exec-{}", &new_id()[..16]);
        let exec_dir = record.bundle.join("exec");
        let mut fifos = StdioFifos::create(&exec_dir, &exec_id, false)?;
        let result = async {
            shim.client
                .exec(&api::ExecProcessRequest {
                    id: record.id.clone(),
                    exec_id: exec_id.clone(),
                    terminal: false,
                    stdout: fifos.paths.stdout.clone(),
                    stderr: fifos.paths.stderr.clone(),
                    spec: Some(any).into(),
                    ..Default::default()
                })
                .await?;
            shim.client
                .start(&api::StartRequest {
                    id: record.id.clone(),
                    exec_id: exec_id.clone(),
                    ..Default::default()
                })
                .await
                .map_err(|e| match e {
                    // The runtime could not start the command (not found, not
                    // executable): containerd's and CRI-O's answer.
                    crate::runtime::TaskError::Other { .. } => CriError::Unknown(format!(
                        "failed to start exec in container {}: {e}",
                        record.id
                    )),
                    other => other.into(),
                })?;
            fifos.release();
            let stdout = fifos
                .stdout
                .take()
                .map(|r| tokio::spawn(read_all(r, MAX_OUTPUT)));
            let stderr = fifos
                .stderr
                .take()
                .map(|r| tokio::spawn(read_all(r, MAX_OUTPUT)));
            let wait_req = api::WaitRequest {
                id: record.id.clone(),
                exec_id: exec_id.clone(),
                ..Default::default()
            };
            let wait = shim.client.wait(&wait_req);
            let waited = if timeout.is_zero() {
                Ok(wait.await)
            } else {
                tokio::time::timeout(timeout, wait).await
            };
            let exit = match waited {
                Ok(result) => result?,
                Err(_) => {
                    let _ = shim
                        .client
                        .kill(&api::KillRequest {
                            id: record.id.clone(),
                            exec_id: exec_id.clone(),
                            signal: 9,
                            ..Default::default()
                        })
                        .await;
                    return Err(CriError::DeadlineExceeded(format!(
                        "command {cmd:?} in container {} timed out after {timeout:?}",
                        record.id
                    )));
                }
            };
            let collect = |h: Option<tokio::task::JoinHandle<Vec<u8>>>| async move {
                match h {
                    Some(h) => tokio::time::timeout(Duration::from_secs(5), h)
                        .await
                        .ok()
                        .and_then(Result::ok)
                        .unwrap_or_default(),
                    None => Vec::new(),
                }
            };
            Ok(ExecOutput {
                stdout: collect(stdout).await,
                stderr: collect(stderr).await,
                exit_code: i32::try_from(exit.exit_status).unwrap_or(255),
            })
        }
        .await;
        let _ = shim
            .client
            .delete(&api::DeleteRequest {
                id: record.id.clone(),
                exec_id: exec_id.clone(),
                ..Default::default()
            })
            .await;
        for path in [&fifos.paths.stdout, &fifos.paths.stderr] {
            if !path.is_empty() {
                let _ = std::fs::remove_file(path);
            }
        }
        result
    }
}
