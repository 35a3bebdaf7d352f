//! runc's command line, the subset the task service uses, answered with youki's
//! `libcontainer` and `libcgroups`:
//!
//! ```text
//! --root R --log L --log-format json [--systemd-cgroup] COMMAND ...
//!   create --bundle B --pid-file P [--console-socket S] [--no-pivot] [--no-new-keyring] ID
//!   start ID | pause ID | resume ID | delete [--force] ID | kill [--all] ID SIGNAL
//!   exec --detach --process F --pid-file P [--console-socket S] ID
//!   update --resources F ID | ps --format json ID
//! ```
//!
//! The process's stdio is the container's (the task service sets it up as for
//! runc), so nothing is printed on it: errors go to the `--log` file as runc's JSON
//! lines, where the task service reads them.

use std::io::Write;
use std::path::{Path, PathBuf};

use libcgroups::common::{create_cgroup_manager, CgroupConfig, CgroupManager, ControllerOpt};
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::oci_spec::runtime::LinuxResources;
use libcontainer::syscall::syscall::SyscallType;

/// The global options and the command's own arguments.
#[derive(Debug, Default, PartialEq)]
pub struct Invocation {
    pub root: PathBuf,
    pub log: Option<PathBuf>,
    pub systemd_cgroup: bool,
    pub command: String,
    /// `--flag value` options of the command (`--all`-style switches map to "").
    pub options: Vec<(String, String)>,
    pub positional: Vec<String>,
}

/// Command switches that take no value.
const SWITCHES: &[&str] = &[
    "--all",
    "--force",
    "--detach",
    "--no-pivot",
    "--no-new-keyring",
    "--systemd-cgroup",
];

pub fn parse(args: &[String]) -> Result<Invocation, String> {
    let mut inv = Invocation::default();
    let mut it = args.iter();
    let value = |it: &mut std::slice::Iter<String>, flag: &str| {
        it.next()
            .cloned()
            .ok_or_else(|| format!("{flag} needs a value"))
    };
    // Global options, up to the command.
    loop {
        let Some(arg) = it.next() else {
            return Err("no command".into());
        };
        match arg.as_str() {
            "--root" => inv.root = PathBuf::from(value(&mut it, arg)?),
            "--log" => inv.log = Some(PathBuf::from(value(&mut it, arg)?)),
            "--log-format" => {
                value(&mut it, arg)?;
            }
            "--systemd-cgroup" => inv.systemd_cgroup = true,
            other if other.starts_with('-') => return Err(format!("unknown option {other}")),
            command => {
                inv.command = command.to_string();
                break;
            }
        }
    }
    while let Some(arg) = it.next() {
        if SWITCHES.contains(&arg.as_str()) {
            inv.options.push((arg.clone(), String::new()));
        } else if arg.starts_with("--") {
            inv.options.push((arg.clone(), value(&mut it, arg)?));
        } else {
            inv.positional.push(arg.clone());
        }
    }
    if inv.root.as_os_str().is_empty() {
        return Err("--root is required".into());
    }
    Ok(inv)
}

impl Invocation {
    fn option(&self, name: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn has(&self, name: &str) -> bool {
        self.option(name).is_some()
    }

    fn required(&self, name: &str) -> Result<&str, String> {
        self.option(name)
            .ok_or_else(|| format!("{} needs {name}", self.command))
    }

    fn id(&self) -> Result<&str, String> {
        self.positional
            .first()
            .map(String::as_str)
            .ok_or_else(|| format!("{} needs a container id", self.command))
    }
}

/// Runs one command; the exit code (errors are in the log file).
pub fn run(args: &[String]) -> i32 {
    let inv = match parse(args) {
        Ok(inv) => inv,
        Err(e) => {
            log_error(None, &e);
            return 2;
        }
    };
    trace_to_log(inv.log.as_deref());
    match execute(&inv) {
        Ok(()) => 0,
        Err(e) => {
            // What libcontainer traced says why (its errors cross from the init as text).
            let traced: Vec<String> = inv
                .log
                .as_deref()
                .and_then(|p| std::fs::read_to_string(p).ok())
                .unwrap_or_default()
                .lines()
                .filter(|l| !l.starts_with('{') && !l.trim().is_empty())
                .map(|l| l.trim().to_string())
                .collect();
            let detail = if traced.is_empty() {
                String::new()
            } else {
                format!(" [{}]", traced.join("; "))
            };
            log_error(inv.log.as_deref(), &format!("{} {e}{detail}", inv.command));
            1
        }
    }
}

/// libcontainer's own error reports (from the container's init too, where the
/// details of a failed setup are) go to the log file as plain lines, beside the
/// JSON lines the task service reads.
fn trace_to_log(log: Option<&Path>) {
    let Some(file) = log.and_then(|p| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .ok()
    }) else {
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing_subscriber::filter::LevelFilter::ERROR)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .try_init();
}

/// Appends `{"level":"error","msg":…}` to the log (runc's format), else stderr.
fn log_error(log: Option<&Path>, msg: &str) {
    let line = serde_json::json!({"level": "error", "msg": msg}).to_string();
    let written = log.is_some_and(|path| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| writeln!(f, "{line}"))
            .is_ok()
    });
    if !written {
        eprintln!("{line}");
    }
}

/// An error with its causes (libcontainer's top-level messages say little).
fn err(e: impl std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn load(inv: &Invocation, id: &str) -> Result<Container, String> {
    Container::load(inv.root.join(id)).map_err(|e| format!("container {id}: {e}"))
}

fn execute(inv: &Invocation) -> Result<(), String> {
    match inv.command.as_str() {
        "create" => create(inv),
        "start" => load(inv, inv.id()?)?.start().map_err(err),
        "exec" => exec(inv),
        "kill" => kill(inv),
        "delete" => delete(inv),
        "pause" => load(inv, inv.id()?)?.pause().map_err(err),
        "resume" => load(inv, inv.id()?)?.resume().map_err(err),
        "update" => update(inv),
        "ps" => ps(inv),
        other => Err(format!("unknown command {other:?}")),
    }
}

fn builder(inv: &Invocation, id: &str, pid_file: &str) -> Result<ContainerBuilder, String> {
    ContainerBuilder::new(id.to_string(), SyscallType::default())
        .with_root_path(&inv.root)
        .map_err(err)?
        .with_pid_file(Some(pid_file))
        .map_err(err)?
        .with_console_socket(inv.option("--console-socket"))
        .validate_id()
        .map_err(err)
}

/// Rewrites the bundle's `config.json` where libcontainer 0.7.0 would misread it,
/// and returns the spec as it was asked for, for what `create` does after
/// libcontainer:
///
/// - it loads seccomp late (after dropping capabilities, relying on
///   no_new_privs) whenever `process.noNewPrivileges` is present, even when it is
///   `false` (`process/init/process.rs:356`), and the load then fails. `false` is the
///   OCI default, so the key is dropped;
/// - with `cgroup_v1`, the `cgroup` mount is taken out: [`crate::mounts::finish`]
///   mounts it;
/// - `linux.rootfsPropagation` is read without runc's recursive spellings
///   (`rshared` is refused as unknown, `rootfs/rootfs.rs`); it always applies
///   `MS_REC`, so `rshared`, `rslave` and `rprivate` lose their `r`.
pub fn normalize_spec(
    config: &Path,
    cgroup_v1: bool,
) -> Result<libcontainer::oci_spec::runtime::Spec, String> {
    let text = std::fs::read(config).map_err(|e| format!("{}: {e}", config.display()))?;
    let spec: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", config.display()))?;
    let mut written = spec.clone();
    if let Some(p) = written.get_mut("process").and_then(|p| p.as_object_mut()) {
        if p.get("noNewPrivileges") == Some(&serde_json::Value::Bool(false)) {
            p.remove("noNewPrivileges");
        }
    }
    if let Some(linux) = written.get_mut("linux").and_then(|l| l.as_object_mut()) {
        let plain = linux
            .get("rootfsPropagation")
            .and_then(|p| p.as_str())
            .and_then(|p| p.strip_prefix('r'))
            .filter(|p| ["shared", "slave", "private"].contains(p))
            .map(str::to_string);
        if let Some(plain) = plain {
            linux.insert("rootfsPropagation".into(), plain.into());
        }
    }
    if cgroup_v1 {
        if let Some(mounts) = written.get_mut("mounts").and_then(|m| m.as_array_mut()) {
            mounts.retain(|m| m.get("type").and_then(|t| t.as_str()) != Some("cgroup"));
        }
    }
    if written != spec {
        let bytes = serde_json::to_vec(&written).map_err(err)?;
        let tmp = config.with_extension("json.tmp");
        std::fs::write(&tmp, bytes)
            .and_then(|()| std::fs::rename(&tmp, config))
            .map_err(|e| format!("{}: {e}", config.display()))?;
    }
    serde_json::from_value(spec).map_err(|e| format!("{}: {e}", config.display()))
}

/// Whether the host has cgroup v1 hierarchies (legacy or hybrid).
fn host_cgroup_v1() -> bool {
    !matches!(
        libcgroups::common::get_cgroup_setup(),
        Ok(libcgroups::common::CgroupSetup::Unified)
    )
}

fn create(inv: &Invocation) -> Result<(), String> {
    if inv.systemd_cgroup {
        return Err("the systemd cgroup driver is not built into this shim".into());
    }
    let id = inv.id()?;
    let bundle = inv.required("--bundle")?;
    let config = Path::new(bundle).join("config.json");
    let cgroup_v1 = host_cgroup_v1();
    let spec = normalize_spec(&config, cgroup_v1)?;
    let container = builder(inv, id, inv.required("--pid-file")?)?
        .as_init(bundle)
        .with_systemd(false)
        .with_detach(true)
        .with_no_pivot(inv.has("--no-pivot"))
        .build()
        .map_err(err)?;
    let pid = container
        .pid()
        .ok_or_else(|| "created container has no pid".to_string())?;
    crate::mounts::finish(pid.as_raw(), &spec, cgroup_v1)
}

/// Runs an exec'd process under its container's seccomp filter, as runc does.
/// libcontainer 0.7.0 builds exec processes from a spec without `linux.seccomp`
/// (`container/tenant_builder.rs`), so the filter is loaded here, just before
/// `execve`. Capabilities are already dropped then, so the kernel requires
/// `no_new_privs` for the load: exec'd processes of a filtered container run with it.
#[derive(Clone)]
struct SeccompExecutor {
    seccomp: Option<libcontainer::oci_spec::runtime::LinuxSeccomp>,
}

impl libcontainer::workload::Executor for SeccompExecutor {
    fn exec(
        &self,
        spec: &libcontainer::oci_spec::runtime::Spec,
    ) -> Result<(), libcontainer::workload::ExecutorError> {
        use libcontainer::workload::ExecutorError;
        if let Some(seccomp) = &self.seccomp {
            // SAFETY: prctl(PR_SET_NO_NEW_PRIVS, 1) only sets a flag of this process.
            let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
            if rc != 0 {
                return Err(ExecutorError::Other(format!(
                    "set no_new_privs: {}",
                    std::io::Error::last_os_error()
                )));
            }
            libcontainer::seccomp::initialize_seccomp(seccomp)
                .map_err(|e| ExecutorError::Other(format!("load seccomp: {e}")))?;
        }
        libcontainer::workload::default::DefaultExecutor {}.exec(spec)
    }

    fn validate(
        &self,
        spec: &libcontainer::oci_spec::runtime::Spec,
    ) -> Result<(), libcontainer::workload::ExecutorValidationError> {
        libcontainer::workload::default::DefaultExecutor {}.validate(spec)
    }
}

/// The container's own seccomp filter, from its bundle.
fn container_seccomp(
    inv: &Invocation,
    id: &str,
) -> Result<Option<libcontainer::oci_spec::runtime::LinuxSeccomp>, String> {
    let c = load(inv, id)?;
    let config = c.bundle().join("config.json");
    let spec = libcontainer::oci_spec::runtime::Spec::load(&config)
        .map_err(|e| format!("{}: {e}", config.display()))?;
    Ok(spec.linux().as_ref().and_then(|l| l.seccomp().clone()))
}

fn exec(inv: &Invocation) -> Result<(), String> {
    let id = inv.id()?;
    let process = inv.required("--process")?;
    let seccomp = container_seccomp(inv, id)?;
    builder(inv, id, inv.required("--pid-file")?)?
        .with_executor(SeccompExecutor { seccomp })
        .as_tenant()
        .with_detach(true)
        .with_process(Some(process))
        .build()
        .map(drop)
        .map_err(err)
}

fn cgroup_manager(c: &Container, id: &str) -> Result<libcgroups::common::AnyCgroupManager, String> {
    let config = c.spec().map_err(err)?;
    create_cgroup_manager(CgroupConfig {
        cgroup_path: config.cgroup_path,
        systemd_cgroup: c.systemd(),
        container_name: id.to_string(),
    })
    .map_err(err)
}

fn signal(pid: i32, sig: i32) -> Result<(), String> {
    // SAFETY: kill(2) with a plain pid and signal number has no memory effects.
    let rc = unsafe { libc::kill(pid, sig) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().to_string())
    }
}

/// Signals the init (or every process of the container with `--all`) directly:
/// libcontainer's own kill records the container as stopped after any signal.
fn kill(inv: &Invocation) -> Result<(), String> {
    let id = inv.id()?;
    let sig: i32 = inv
        .positional
        .get(1)
        .map_or(Ok(libc::SIGTERM), |s| s.parse())
        .map_err(|_| format!("bad signal {:?}", inv.positional.get(1)))?;
    let c = load(inv, id)?;
    if inv.has("--all") {
        for pid in cgroup_manager(&c, id)?.get_all_pids().map_err(err)? {
            // A process that exits meanwhile is no error.
            let _ = signal(pid.as_raw(), sig);
        }
        return Ok(());
    }
    let pid = c.pid().ok_or_else(|| "container not running".to_string())?;
    signal(pid.as_raw(), sig).map_err(|e| format!("container not running: {e}"))
}

fn delete(inv: &Invocation) -> Result<(), String> {
    let id = inv.id()?;
    let force = inv.has("--force");
    let dir = inv.root.join(id);
    if !dir.exists() {
        return if force {
            Ok(())
        } else {
            Err(format!("container {id} does not exist"))
        };
    }
    let mut c = load(inv, id)?;
    match c.delete(force) {
        Ok(()) => Ok(()),
        // Forced: whatever is left of the state goes too.
        Err(_) if force => std::fs::remove_dir_all(&dir).or_else(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Ok(())
            } else {
                Err(e.to_string())
            }
        }),
        Err(e) => Err(err(e)),
    }
}

fn update(inv: &Invocation) -> Result<(), String> {
    let id = inv.id()?;
    let path = inv.required("--resources")?;
    let bytes = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    let resources: LinuxResources =
        serde_json::from_slice(&bytes).map_err(|e| format!("{path}: {e}"))?;
    let c = load(inv, id)?;
    cgroup_manager(&c, id)?
        .apply(&ControllerOpt {
            resources: &resources,
            disable_oom_killer: false,
            oom_score_adj: None,
            freezer_state: None,
        })
        .map_err(err)
}

/// `ps --format json`: the pids in the container's cgroup, on stdout.
fn ps(inv: &Invocation) -> Result<(), String> {
    let id = inv.id()?;
    let c = load(inv, id)?;
    let pids: Vec<i32> = cgroup_manager(&c, id)?
        .get_all_pids()
        .map_err(err)?
        .into_iter()
        .map(|p| p.as_raw())
        .collect();
    let json = serde_json::to_string(&pids).map_err(err)?;
    println!("{json}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn parses_the_commands_the_task_service_sends() {
        let inv = parse(&args(
            "--root /run/y/ns --log /b/log.json --log-format json create --bundle /b --pid-file /b/init.pid --console-socket /s --no-pivot c1",
        ))
        .expect("create");
        assert_eq!(inv.root, PathBuf::from("/run/y/ns"));
        assert_eq!(inv.log, Some(PathBuf::from("/b/log.json")));
        assert_eq!(inv.command, "create");
        assert_eq!(inv.option("--bundle"), Some("/b"));
        assert_eq!(inv.option("--console-socket"), Some("/s"));
        assert!(inv.has("--no-pivot"));
        assert_eq!(inv.id(), Ok("c1"));
        let kill = parse(&args("--root /r kill --all c1 9")).expect("kill");
        assert!(kill.has("--all"));
        assert_eq!(kill.positional, ["c1", "9"]);
        assert!(parse(&args("--root /r")).is_err());
        assert!(parse(&args("create c1")).is_err(), "--root is required");
        assert!(parse(&args("--root /r --bogus x start c1")).is_err());
    }

    #[test]
    fn a_false_no_new_privileges_and_a_v1_cgroup_mount_are_left_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("config.json");
        std::fs::write(
            &config,
            r#"{"ociVersion":"1.0.2","process":{"noNewPrivileges":false,"cwd":"/","user":{"uid":0,"gid":0}},
                "mounts":[{"destination":"/proc","type":"proc","source":"proc"},
                          {"destination":"/sys/fs/cgroup","type":"cgroup","source":"cgroup","options":["ro"]}]}"#,
        )
        .expect("write");
        let spec = normalize_spec(&config, true).expect("normalize");
        assert_eq!(
            spec.process().as_ref().and_then(|p| p.no_new_privileges()),
            Some(false),
            "the spec as asked for"
        );
        assert_eq!(spec.mounts().as_ref().map(Vec::len), Some(2));
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&config).expect("read")).expect("json");
        assert!(v["process"].get("noNewPrivileges").is_none());
        assert_eq!(v["process"]["cwd"], "/");
        assert_eq!(v["mounts"].as_array().map(Vec::len), Some(1));
        assert_eq!(v["mounts"][0]["type"], "proc");
        std::fs::write(
            &config,
            r#"{"ociVersion":"1.0.2","process":{"noNewPrivileges":true,"cwd":"/","user":{"uid":0,"gid":0}}}"#,
        )
        .expect("write");
        normalize_spec(&config, false).expect("normalize");
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&config).expect("read")).expect("json");
        assert_eq!(v["process"]["noNewPrivileges"], true);
    }

    #[test]
    fn rootfs_propagation_loses_its_r() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("config.json");
        std::fs::write(
            &config,
            r#"{"ociVersion":"1.0.2","linux":{"rootfsPropagation":"rshared"}}"#,
        )
        .expect("write");
        let spec = normalize_spec(&config, false).expect("normalize");
        assert_eq!(
            spec.linux()
                .as_ref()
                .and_then(|l| l.rootfs_propagation().clone()),
            Some("rshared".into()),
            "the spec as asked for"
        );
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&config).expect("read")).expect("json");
        assert_eq!(v["linux"]["rootfsPropagation"], "shared");
    }

    #[test]
    fn errors_go_to_the_log_as_runc_json() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("log.json");
        let code = run(&args(&format!(
            "--root {} --log {} start missing",
            dir.path().display(),
            log.display()
        )));
        assert_eq!(code, 1);
        let text = std::fs::read_to_string(&log).expect("log");
        // libcontainer's traced lines come first; the task service reads the JSON one.
        let line = text
            .lines()
            .rfind(|l| l.starts_with('{'))
            .expect("a JSON line");
        let v: serde_json::Value = serde_json::from_str(line).expect("json line");
        assert_eq!(v["level"], "error");
        assert!(
            v["msg"].as_str().expect("msg").contains("missing"),
            "{text}"
        );
    }
}
