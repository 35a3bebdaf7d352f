//! Running one CNI plugin binary: the only OS effect of CNI invocation, behind a
//! trait so the protocol logic in `cni.rs` is tested without plugins.

use std::path::Path;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;

/// What a plugin run produced when it did not succeed.
#[derive(Debug)]
pub(crate) enum PluginRunError {
    /// It could not be started or talked to.
    Io(std::io::Error),
    /// It exited non-zero; a CNI plugin prints its error object on stdout.
    Failed {
        status: Option<i32>,
        stdout: Vec<u8>,
        stderr: Vec<u8>,
    },
}

#[async_trait::async_trait]
pub(crate) trait PluginExec: Send + Sync + std::fmt::Debug {
    /// Runs `binary` with the CNI variables in `env` and `stdin` as its
    /// configuration; returns its stdout.
    async fn run(
        &self,
        binary: &Path,
        env: &[(&'static str, String)],
        stdin: Vec<u8>,
    ) -> Result<Vec<u8>, PluginRunError>;
}

/// Runs plugins as processes, with the daemon's environment plus the CNI variables
/// (plugins such as portmap need `PATH` for iptables).
#[derive(Debug, Default)]
pub(crate) struct ProcessExec;

#[async_trait::async_trait]
impl PluginExec for ProcessExec {
    async fn run(
        &self,
        binary: &Path,
        env: &[(&'static str, String)],
        stdin: Vec<u8>,
    ) -> Result<Vec<u8>, PluginRunError> {
        let mut child = tokio::process::Command::new(binary)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A cancelled RunPodSandbox does not leave a plugin running.
            .kill_on_drop(true)
            .spawn()
            .map_err(PluginRunError::Io)?;
        if let Some(mut input) = child.stdin.take() {
            input.write_all(&stdin).await.map_err(PluginRunError::Io)?;
        }
        let out = child.wait_with_output().await.map_err(PluginRunError::Io)?;
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(PluginRunError::Failed {
                status: out.status.code(),
                stdout: out.stdout,
                stderr: out.stderr,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shell-script plugin. Runs retry ETXTBSY: another test thread may fork
    /// while the script is still open for writing.
    fn script(dir: &Path, body: &str) -> std::path::PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("plugin");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    }

    async fn run(
        binary: &Path,
        env: &[(&'static str, String)],
        stdin: &[u8],
    ) -> Result<Vec<u8>, PluginRunError> {
        loop {
            match ProcessExec.run(binary, env, stdin.to_vec()).await {
                Err(PluginRunError::Io(e)) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await
                }
                other => return other,
            }
        }
    }

    #[tokio::test]
    async fn a_process_gets_its_config_and_environment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let plugin = script(dir.path(), r#"echo "$CNI_COMMAND:$(cat)""#);
        let out = run(&plugin, &[("CNI_COMMAND", "ADD".into())], b"{}")
            .await
            .expect("run");
        assert_eq!(out, b"ADD:{}\n");
    }

    #[tokio::test]
    async fn a_failing_process_returns_its_output() {
        let dir = tempfile::tempdir().expect("tempdir");
        let plugin = script(dir.path(), "echo '{\"code\":7}'\necho oops >&2\nexit 1");
        match run(&plugin, &[], b"").await {
            Err(PluginRunError::Failed {
                status,
                stdout,
                stderr,
            }) => {
                assert_eq!(status, Some(1));
                assert_eq!(stdout, b"{\"code\":7}\n");
                assert_eq!(stderr, b"oops\n");
            }
            other => panic!("expected a failure, got {other:?}"),
        }
    }
}
