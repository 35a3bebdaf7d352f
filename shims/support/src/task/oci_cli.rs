//! The OCI runtime CLI (`runc`, `crun`, or the youki shim itself: all take runc's
//! commands), run through the shim's reaper so its exit status is never lost.

use std::path::{Path, PathBuf};
use std::process::Command;

use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::shim::oci::Options;
use serde::{Deserialize, Serialize};

use super::Flavor;
use crate::reaper::Reaper;
use crate::stdio::ChildStdio;
use crate::Error;

/// The type URL containerd gives `containerd.runc.v1.Options`.
pub const OPTIONS_TYPE: &str = "containerd.runc.v1.Options";

/// The runtime options of a container, as the shim keeps them in the bundle
/// (`options.json`) for the `delete` action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeOptions {
    pub binary_name: String,
    pub root: String,
    pub systemd_cgroup: bool,
    pub no_pivot_root: bool,
    pub no_new_keyring: bool,
}

impl RuntimeOptions {
    /// The shim's defaults: its runtime binary and state root.
    pub fn defaults(flavor: &Flavor) -> RuntimeOptions {
        RuntimeOptions {
            binary_name: (flavor.default_binary)(),
            root: flavor.default_root.into(),
            systemd_cgroup: false,
            no_pivot_root: false,
            no_new_keyring: false,
        }
    }

    /// Decodes `CreateTaskRequest.options`: `containerd.runc.v1.Options` (any
    /// host prefix in the type URL); nothing, or an empty message, means defaults.
    pub fn from_any(
        type_url: &str,
        value: &[u8],
        flavor: &Flavor,
    ) -> Result<RuntimeOptions, Error> {
        if type_url.is_empty() && value.is_empty() {
            return Ok(RuntimeOptions::defaults(flavor));
        }
        let name = type_url.rsplit('/').next().unwrap_or_default();
        if name != OPTIONS_TYPE {
            return Err(Error::InvalidArgument(format!(
                "unsupported runtime options type {type_url:?} (want {OPTIONS_TYPE})"
            )));
        }
        let o = Options::parse_from_bytes(value)?;
        let mut opts = RuntimeOptions::defaults(flavor);
        if !o.binary_name.is_empty() {
            opts.binary_name = o.binary_name;
        }
        if !o.root.is_empty() {
            opts.root = o.root;
        }
        opts.systemd_cgroup = o.systemd_cgroup;
        opts.no_pivot_root = o.no_pivot_root;
        opts.no_new_keyring = o.no_new_keyring;
        Ok(opts)
    }

    pub fn write(&self, bundle: &Path) -> Result<(), Error> {
        crate::launch::write_atomic(&bundle.join("options.json"), &serde_json::to_vec(self)?)
    }

    /// What `write` stored, or the defaults.
    pub fn read(bundle: &Path, flavor: &Flavor) -> RuntimeOptions {
        std::fs::read(bundle.join("options.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_else(|| RuntimeOptions::defaults(flavor))
    }
}

/// One runtime binary with its state root.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub options: RuntimeOptions,
    /// `<root>/<namespace>`.
    pub root: PathBuf,
    /// Where `--log` goes.
    pub log: PathBuf,
    reaper: Reaper,
}

/// The last error message in a runtime's JSON log (`{"level":"error","msg":…}`).
pub fn last_error(log: &str) -> Option<String> {
    log.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["level"] == "error")
        .and_then(|v| v["msg"].as_str().map(str::to_string))
}

/// `name` as a path, or found in `$PATH`, if it is an executable file.
pub fn find_binary(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if name.contains('/') {
        let p = PathBuf::from(name);
        return executable(&p).then_some(p);
    }
    let path = std::env::var_os("PATH")
        .unwrap_or_else(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| executable(p))
}

impl Runtime {
    pub fn new(options: RuntimeOptions, namespace: &str, bundle: &Path, reaper: Reaper) -> Runtime {
        Runtime {
            root: Path::new(&options.root).join(namespace),
            log: bundle.join("log.json"),
            options,
            reaper,
        }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.options.binary_name);
        cmd.arg("--root").arg(&self.root);
        cmd.arg("--log")
            .arg(&self.log)
            .args(["--log-format", "json"]);
        if self.options.systemd_cgroup {
            cmd.arg("--systemd-cgroup");
        }
        cmd
    }

    fn failure(&self, what: &str, status: i32, stderr: &[u8]) -> Error {
        let from_log = std::fs::read_to_string(&self.log)
            .ok()
            .and_then(|l| last_error(&l));
        let stderr = String::from_utf8_lossy(stderr).trim().to_string();
        let msg = from_log
            .or((!stderr.is_empty()).then_some(stderr))
            .unwrap_or_else(|| format!("exit status {status}"));
        Error::Other(format!("{} {what}: {msg}", self.options.binary_name))
    }

    /// How long a runtime command took: the runtime's own share of a task call.
    fn trace_duration(&self, what: &str, started: std::time::Instant) {
        tracing::debug!(
            runtime = %self.options.binary_name,
            command = what,
            ms = started.elapsed().as_secs_f64() * 1000.0,
            "runtime command done"
        );
    }

    /// Fails early for a binary that is not there (spawning it would race the
    /// reaper for the failed child).
    fn check_binary(&self) -> Result<(), Error> {
        if find_binary(&self.options.binary_name).is_none() {
            return Err(Error::NotFound(format!(
                "runtime binary {:?} not found",
                self.options.binary_name
            )));
        }
        Ok(())
    }

    async fn run(&self, what: &str, cmd: Command) -> Result<Vec<u8>, Error> {
        self.check_binary()?;
        // Only the messages of this command.
        let _ = std::fs::remove_file(&self.log);
        let started = std::time::Instant::now();
        let out = self.reaper.run_output(cmd).await?;
        self.trace_duration(what, started);
        if out.status != 0 {
            return Err(self.failure(what, out.status, &out.stderr));
        }
        Ok(out.stdout)
    }

    async fn run_with_stdio(
        &self,
        what: &str,
        mut cmd: Command,
        stdio: ChildStdio,
    ) -> Result<(), Error> {
        self.check_binary()?;
        let _ = std::fs::remove_file(&self.log);
        stdio.apply(&mut cmd);
        let started = std::time::Instant::now();
        let status = self.reaper.run_status(cmd).await?;
        self.trace_duration(what, started);
        if status != 0 {
            return Err(self.failure(what, status, &[]));
        }
        Ok(())
    }

    /// `create --bundle … --pid-file …`, the process's stdio on the command's.
    pub async fn create(
        &self,
        id: &str,
        bundle: &Path,
        pid_file: &Path,
        console_socket: Option<&Path>,
        stdio: ChildStdio,
    ) -> Result<(), Error> {
        let mut cmd = self.command();
        cmd.arg("create")
            .arg("--bundle")
            .arg(bundle)
            .arg("--pid-file")
            .arg(pid_file);
        if let Some(socket) = console_socket {
            cmd.arg("--console-socket").arg(socket);
        }
        if self.options.no_pivot_root {
            cmd.arg("--no-pivot");
        }
        if self.options.no_new_keyring {
            cmd.arg("--no-new-keyring");
        }
        cmd.arg(id).current_dir(bundle);
        self.run_with_stdio("create", cmd, stdio).await
    }

    pub async fn start(&self, id: &str) -> Result<(), Error> {
        let mut cmd = self.command();
        cmd.args(["start", id]);
        self.run("start", cmd).await.map(drop)
    }

    /// `exec --detach --process … --pid-file …`.
    pub async fn exec(
        &self,
        id: &str,
        process: &Path,
        pid_file: &Path,
        console_socket: Option<&Path>,
        stdio: ChildStdio,
    ) -> Result<(), Error> {
        let mut cmd = self.command();
        cmd.args(["exec", "--detach", "--process"])
            .arg(process)
            .arg("--pid-file")
            .arg(pid_file);
        if let Some(socket) = console_socket {
            cmd.arg("--console-socket").arg(socket);
        }
        cmd.arg(id);
        self.run_with_stdio("exec", cmd, stdio).await
    }

    pub async fn kill(&self, id: &str, signal: u32, all: bool) -> Result<(), Error> {
        let mut cmd = self.command();
        cmd.arg("kill");
        if all {
            cmd.arg("--all");
        }
        cmd.arg(id).arg(signal.to_string());
        self.run("kill", cmd).await.map(drop)
    }

    pub async fn delete(&self, id: &str, force: bool) -> Result<(), Error> {
        let mut cmd = self.command();
        cmd.arg("delete");
        if force {
            cmd.arg("--force");
        }
        cmd.arg(id);
        self.run("delete", cmd).await.map(drop)
    }

    pub async fn pause(&self, id: &str) -> Result<(), Error> {
        let mut cmd = self.command();
        cmd.args(["pause", id]);
        self.run("pause", cmd).await.map(drop)
    }

    pub async fn resume(&self, id: &str) -> Result<(), Error> {
        let mut cmd = self.command();
        cmd.args(["resume", id]);
        self.run("resume", cmd).await.map(drop)
    }

    /// `update --resources <file>` with an OCI `LinuxResources` JSON file.
    pub async fn update(&self, id: &str, resources: &Path) -> Result<(), Error> {
        let mut cmd = self.command();
        cmd.arg("update").arg("--resources").arg(resources).arg(id);
        self.run("update", cmd).await.map(drop)
    }

    /// The pids in the container (`ps --format json`).
    pub async fn ps(&self, id: &str) -> Result<Vec<u32>, Error> {
        let mut cmd = self.command();
        cmd.args(["ps", "--format", "json", id]);
        let out = self.run("ps", cmd).await?;
        let pids: Option<Vec<u32>> = serde_json::from_slice(&out)?;
        Ok(pids.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT_ROOT: &str = "/run/containerd/runc";
    static RUNC: Flavor = Flavor {
        runtime_name: "io.containerd.runc-rs.v2",
        default_binary: || "runc".to_string(),
        default_root: DEFAULT_ROOT,
        features: None,
    };

    #[test]
    fn decodes_runc_options() {
        let o = Options {
            binary_name: "crun".into(),
            root: "/run/x".into(),
            systemd_cgroup: true,
            ..Default::default()
        };
        let bytes = o.write_to_bytes().expect("encode");
        let opts =
            RuntimeOptions::from_any("containerd.runc.v1.Options", &bytes, &RUNC).expect("decode");
        assert_eq!(opts.binary_name, "crun");
        assert_eq!(opts.root, "/run/x");
        assert!(opts.systemd_cgroup);
        let opts = RuntimeOptions::from_any(
            "type.googleapis.com/containerd.runc.v1.Options",
            &bytes,
            &RUNC,
        )
        .expect("decode with host");
        assert_eq!(opts.binary_name, "crun");
    }

    #[test]
    fn empty_options_are_defaults() {
        assert_eq!(
            RuntimeOptions::from_any("", &[], &RUNC).expect("defaults"),
            RuntimeOptions::defaults(&RUNC)
        );
        let opts =
            RuntimeOptions::from_any("containerd.runc.v1.Options", &[], &RUNC).expect("empty");
        assert_eq!(opts.binary_name, "runc");
        assert_eq!(opts.root, DEFAULT_ROOT);
    }

    #[test]
    fn finds_binaries() {
        assert!(find_binary("sh").is_some());
        assert_eq!(find_binary("/bin/sh"), Some(PathBuf::from("/bin/sh")));
        assert!(find_binary("no-such-runtime-binary").is_none());
    }

    #[test]
    fn other_option_types_are_refused() {
        assert!(RuntimeOptions::from_any("runtimeoptions.v1.Options", b"x", &RUNC).is_err());
    }

    #[test]
    fn options_round_trip_through_the_bundle() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(
            RuntimeOptions::read(dir.path(), &RUNC),
            RuntimeOptions::defaults(&RUNC)
        );
        let opts = RuntimeOptions {
            binary_name: "crun".into(),
            ..RuntimeOptions::defaults(&RUNC)
        };
        opts.write(dir.path()).expect("write");
        assert_eq!(RuntimeOptions::read(dir.path(), &RUNC), opts);
    }

    #[test]
    fn finds_the_last_error_in_a_runtime_log() {
        let log = r#"{"level":"warning","msg":"w"}
{"level":"error","msg":"first"}
{"level":"error","msg":"container_linux.go: starting container process caused: exec: \"nope\": executable file not found in $PATH"}
{"level":"info","msg":"i"}"#;
        assert_eq!(
            last_error(log).as_deref(),
            Some("container_linux.go: starting container process caused: exec: \"nope\": executable file not found in $PATH")
        );
        assert_eq!(last_error("garbage"), None);
    }
}
