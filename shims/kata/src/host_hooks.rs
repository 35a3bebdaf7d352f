//! A container's OCI hooks, run on the host by the shim: their binaries are the
//! host's, and the guest has none of them (Kata runs them on the host too).
//!
//! `prestart` and `createRuntime` run before the container is created in the
//! guest (a failure fails the create), `poststart` after it started and
//! `poststop` after it is gone (failures there are logged, as the runtime spec
//! says). `createContainer` and `startContainer` would run in the container's
//! namespaces, which are in the guest: they are left out, with a warning.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use shim_support::Error;
use tokio::io::AsyncWriteExt;

/// How long a hook without its own `timeout` may run.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// One hook of the spec.
#[derive(Debug, Clone, PartialEq)]
pub struct Hook {
    pub path: String,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub timeout: Option<Duration>,
}

/// The hooks the shim runs on the host, by when.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostHooks {
    /// `prestart`, then `createRuntime`.
    pub create: Vec<Hook>,
    pub poststart: Vec<Hook>,
    pub poststop: Vec<Hook>,
}

fn hooks_of(hooks: &Value, stage: &str) -> Vec<Hook> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    hooks[stage]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|h| {
                    Some(Hook {
                        path: h["path"].as_str()?.to_string(),
                        args: strings(&h["args"]),
                        env: strings(&h["env"]),
                        timeout: h["timeout"].as_u64().map(Duration::from_secs),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

impl HostHooks {
    /// The spec's `hooks` object (absent: none).
    pub fn from_spec(hooks: Option<&Value>) -> Self {
        let Some(hooks) = hooks else {
            return Self::default();
        };
        for stage in ["createContainer", "startContainer"] {
            if !hooks_of(hooks, stage).is_empty() {
                tracing::warn!(
                    stage,
                    "OCI hooks of this stage run in the container's namespaces, which \
                     are in the pod's VM: not run"
                );
            }
        }
        let mut create = hooks_of(hooks, "prestart");
        create.extend(hooks_of(hooks, "createRuntime"));
        HostHooks {
            create,
            poststart: hooks_of(hooks, "poststart"),
            poststop: hooks_of(hooks, "poststop"),
        }
    }
}

/// The container's state as a hook reads it on its stdin; `pid` is the VM's
/// (the host has no process of the container).
pub fn state(id: &str, status: &str, pid: u32, bundle: &Path, annotations: &Value) -> Value {
    json!({
        "ociVersion": "1.0.2",
        "id": id,
        "status": status,
        "pid": pid,
        "bundle": bundle,
        "annotations": annotations.as_object().cloned().unwrap_or_default(),
    })
}

/// Runs `hooks` in order, each with `state` on its stdin; the first that fails
/// (exit status, timeout, not found) ends the run, named.
pub async fn run(hooks: &[Hook], state: &Value) -> Result<(), Error> {
    let input = serde_json::to_vec(state)?;
    for hook in hooks {
        run_one(hook, &input).await?;
    }
    Ok(())
}

/// When a container's hooks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// `prestart` and `createRuntime`, before the container is created.
    Create,
    Poststart,
    Poststop,
}

/// One container's host hooks and what their state names.
#[derive(Debug)]
pub struct ContainerHooks {
    id: String,
    bundle: PathBuf,
    annotations: Value,
    hooks: HostHooks,
}

impl ContainerHooks {
    /// Container `id`'s `hooks` (taken from its spec, whose annotations the
    /// state carries; its bundle on the host).
    pub fn new(id: &str, bundle: &Path, spec: &Value, hooks: Option<&Value>) -> Self {
        ContainerHooks {
            id: id.to_string(),
            bundle: bundle.to_path_buf(),
            annotations: spec["annotations"].clone(),
            hooks: HostHooks::from_spec(hooks),
        }
    }

    /// Runs `stage`'s hooks (`vm_pid`: the state's pid); nothing to do builds
    /// nothing.
    pub async fn run(&self, stage: Stage, vm_pid: u32) -> Result<(), Error> {
        let (hooks, status) = match stage {
            Stage::Create => (&self.hooks.create, "creating"),
            Stage::Poststart => (&self.hooks.poststart, "running"),
            Stage::Poststop => (&self.hooks.poststop, "stopped"),
        };
        if hooks.is_empty() {
            return Ok(());
        }
        let state = state(&self.id, status, vm_pid, &self.bundle, &self.annotations);
        run(hooks, &state).await
    }

    /// The same, a failure logged instead of returned (poststart and poststop,
    /// as the runtime spec says).
    pub async fn run_logged(&self, stage: Stage, vm_pid: u32) {
        if let Err(e) = self.run(stage, vm_pid).await {
            tracing::warn!(container = %self.id, ?stage, "hook: {e}");
        }
    }
}

async fn run_one(hook: &Hook, input: &[u8]) -> Result<(), Error> {
    let failed = |what: String| Error::Other(format!("hook {}: {what}", hook.path));
    let mut cmd = tokio::process::Command::new(&hook.path);
    if let Some(arg0) = hook.args.first() {
        cmd.arg0(arg0);
    }
    cmd.args(hook.args.iter().skip(1))
        .env_clear()
        .envs(hook.env.iter().filter_map(|kv| kv.split_once('=')))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| failed(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its state closes the pipe: not an error.
        let _ = stdin.write_all(input).await;
    }
    let limit = hook.timeout.unwrap_or(DEFAULT_TIMEOUT);
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .map_err(|_| failed(format!("still running after {limit:?}: killed")))?
        .map_err(|e| failed(e.to_string()))?;
    if !out.status.success() {
        return Err(failed(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_are_sorted_and_guest_side_ones_left_out() {
        let hooks = json!({
            "prestart": [{"path": "/a"}],
            "createRuntime": [{"path": "/b", "args": ["b", "-x"], "env": ["K=V"], "timeout": 5}],
            "createContainer": [{"path": "/c"}],
            "startContainer": [{"path": "/d"}],
            "poststart": [{"path": "/e"}],
            "poststop": [{"path": "/f"}]
        });
        let h = HostHooks::from_spec(Some(&hooks));
        let paths = |l: &[Hook]| l.iter().map(|h| h.path.clone()).collect::<Vec<_>>();
        assert_eq!(paths(&h.create), ["/a", "/b"]);
        assert_eq!(h.create[1].args, ["b", "-x"]);
        assert_eq!(h.create[1].env, ["K=V"]);
        assert_eq!(h.create[1].timeout, Some(Duration::from_secs(5)));
        assert_eq!(paths(&h.poststart), ["/e"]);
        assert_eq!(paths(&h.poststop), ["/f"]);
        assert_eq!(HostHooks::from_spec(None), HostHooks::default());
    }

    #[tokio::test]
    async fn a_hook_reads_the_state_and_a_failing_one_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("state");
        let copy = Hook {
            path: "/bin/sh".into(),
            args: vec!["sh".into(), "-c".into(), format!("cat > {}", out.display())],
            env: vec![],
            timeout: None,
        };
        let state = state("c1", "creating", 7, Path::new("/b"), &json!({"k": "v"}));
        run(std::slice::from_ref(&copy), &state).await.expect("run");
        let seen: Value =
            serde_json::from_slice(&std::fs::read(&out).expect("read")).expect("json");
        assert_eq!(seen["id"], "c1");
        assert_eq!(seen["pid"], 7);
        assert_eq!(seen["annotations"]["k"], "v");
        let failing = Hook {
            args: vec!["sh".into(), "-c".into(), "echo nope >&2; exit 3".into()],
            ..copy.clone()
        };
        let err = run(&[failing], &state).await.expect_err("exit 3");
        assert!(
            err.to_string().contains("/bin/sh") && err.to_string().contains("nope"),
            "{err}"
        );
        let slow = Hook {
            args: vec!["sh".into(), "-c".into(), "sleep 5".into()],
            timeout: Some(Duration::from_millis(200)),
            ..copy
        };
        let err = run(&[slow], &state).await.expect_err("timeout");
        assert!(err.to_string().contains("killed"), "{err}");
    }

    #[tokio::test]
    async fn each_stage_tells_its_status_and_an_empty_one_runs_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("state");
        let copy =
            json!([{"path": "/bin/sh", "args": ["sh", "-c", format!("cat >> {}", out.display())]}]);
        let spec = json!({"annotations": {"k": "v"}});
        let hooks = ContainerHooks::new(
            "c1",
            Path::new("/b"),
            &spec,
            Some(&json!({"createRuntime": copy, "poststop": copy})),
        );
        hooks.run(Stage::Create, 9).await.expect("create");
        hooks
            .run(Stage::Poststart, 9)
            .await
            .expect("no poststart hooks");
        hooks.run_logged(Stage::Poststop, 0).await;
        let text = std::fs::read_to_string(&out).expect("read");
        let states: Vec<Value> = serde_json::Deserializer::from_str(&text)
            .into_iter()
            .map(|v| v.expect("json"))
            .collect();
        let statuses: Vec<&str> = states
            .iter()
            .map(|s| s["status"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(statuses, ["creating", "stopped"]);
        assert_eq!(states[0]["pid"], 9);
        assert_eq!(states[0]["annotations"]["k"], "v");
        assert_eq!(states[0]["bundle"], "/b");
    }
}
