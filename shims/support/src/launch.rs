//! The shim's two lives: the short `start` action a manager runs in the bundle
//! directory, and the long-lived server it launches.
//!
//! # Which reply `start` gives
//!
//! Every containerd generation reads the reply differently:
//!
//! | caller | how it calls | what it reads |
//! |---|---|---|
//! | containerd ≤ 1.6 | flags + `TTRPC_ADDRESS`, no `MAX_SHIM_VERSION` | the stdout, trimmed, as an address; task API v2 |
//! | containerd 1.7 – 2.2 | the same plus `MAX_SHIM_VERSION=2` | JSON `{"version","address","protocol"}`, else a plain address as v2; 1.7 refuses version > 2 |
//! | containerd ≥ 2.3 | a `BootstrapParams` protobuf on stdin | a `BootstrapResult` protobuf |
//!
//! containerd 1.7 and 2.x both set `MAX_SHIM_VERSION` to 2, so the variable does
//! not tell them apart; the only reply both accept is version 2. So: bootstrap
//! params on stdin get a `BootstrapResult` (version 3); a caller that sets
//! `MAX_SHIM_VERSION=N` gets JSON with version `min(N, 3)`; a caller that sets
//! none gets the plain address. The server answers both task API versions, so
//! whichever the caller picks works.

use std::collections::HashMap;
use std::io::{IsTerminal, Read};
use std::os::fd::{FromRawFd, IntoRawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use containerd_shim::Flags;
use containerd_shim_protos::bootstrap_api::{BootstrapParams, BootstrapResult};
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::shim_async::{create_task, Task};
use containerd_shim_protos::ttrpc::r#async::{transport::Listener, Server, Service};
use tokio::sync::Notify;

use crate::error::{io_err, Error, Result};
use crate::events::EventSink;
use crate::reaper::Reaper;

/// The task service name containerd 1.x (and 2.x for version-2 shims) calls.
pub const TASK_V2: &str = "containerd.task.v2.Task";
/// The task service name containerd 2.x calls for version-3 shims.
pub const TASK_V3: &str = "containerd.task.v3.Task";

const TTRPC_ADDRESS: &str = "TTRPC_ADDRESS";
const GRPC_ADDRESS: &str = "GRPC_ADDRESS";
const MAX_SHIM_VERSION: &str = "MAX_SHIM_VERSION";
/// The task API version this shim speaks best.
pub const CURRENT_VERSION: u32 = 3;
/// The listener fd the `start` action hands to the server.
const LISTENER_FD: i32 = 3;
const MAX_STDIN: u64 = 10 << 20;

/// The reply format a `start` caller understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyFormat {
    /// The bare socket address (containerd ≤ 1.6; task API v2).
    PlainAddress,
    /// `{"version":N,"address":…,"protocol":"ttrpc"}` (containerd 1.7 – 2.2).
    Json { version: u32 },
    /// A `BootstrapResult` protobuf (containerd ≥ 2.3; task API v3).
    Bootstrap,
}

/// What the caller of `start` passed, from whichever protocol it used.
#[derive(Debug, Clone)]
pub struct StartParams {
    pub id: String,
    pub namespace: String,
    /// The manager's ttrpc address (events go there).
    pub ttrpc_address: String,
    /// The manager's grpc address (part of the socket name).
    pub grpc_address: String,
    pub debug: bool,
    /// Where the caller wants the socket (bootstrap protocol only).
    pub socket_dir: Option<String>,
    /// Runtime options passed along (e.g. `containerd.runc.v1.Options`).
    pub options: Vec<Any>,
    pub format: ReplyFormat,
}

/// The environment variables `start` looks at.
#[derive(Debug, Clone, Default)]
pub struct StartEnv {
    pub ttrpc_address: Option<String>,
    pub grpc_address: Option<String>,
    pub max_shim_version: Option<String>,
}

impl StartEnv {
    pub fn from_process() -> Self {
        StartEnv {
            ttrpc_address: std::env::var(TTRPC_ADDRESS).ok(),
            grpc_address: std::env::var(GRPC_ADDRESS).ok(),
            max_shim_version: std::env::var(MAX_SHIM_VERSION).ok(),
        }
    }
}

/// The reply format for a legacy (non-bootstrap) caller.
pub fn legacy_format(max_shim_version: Option<&str>) -> ReplyFormat {
    match max_shim_version.map(str::trim) {
        None | Some("") => ReplyFormat::PlainAddress,
        Some(v) => match v.parse::<u32>() {
            Ok(n) if n >= 2 => ReplyFormat::Json {
                version: n.min(CURRENT_VERSION),
            },
            // A value we cannot read: the reply every version understands.
            _ => ReplyFormat::PlainAddress,
        },
    }
}

/// Decodes `stdin` as bootstrap params meant for this shim, if they are.
fn bootstrap_params(stdin: &[u8], flags: &Flags) -> Result<Option<BootstrapParams>> {
    if stdin.is_empty() {
        return Ok(None);
    }
    let Ok(params) = BootstrapParams::parse_from_bytes(stdin) else {
        return Ok(None);
    };
    if params.instance_id == flags.id && params.namespace == flags.namespace {
        return Ok(Some(params));
    }
    // A legacy runtime-options `Any` decodes as params too: type URL in
    // instance_id, value in namespace, nothing else.
    let identity_only = BootstrapParams {
        instance_id: params.instance_id.clone(),
        namespace: params.namespace.clone(),
        ..Default::default()
    };
    if params == identity_only {
        return Ok(None);
    }
    Err(Error::InvalidArgument(format!(
        "bootstrap params for {}/{} do not match -namespace {} -id {}",
        params.namespace, params.instance_id, flags.namespace, flags.id
    )))
}

/// Normalises what the caller of `start` passed.
pub fn parse_start(stdin: &[u8], flags: &Flags, env: &StartEnv) -> Result<StartParams> {
    let params = if let Some(p) = bootstrap_params(stdin, flags)? {
        StartParams {
            id: p.instance_id.clone(),
            namespace: p.namespace.clone(),
            ttrpc_address: p.containerd_ttrpc_address.clone(),
            grpc_address: p.containerd_grpc_address.clone(),
            debug: flags.debug
                || p.log_level.value()
                    <= containerd_shim_protos::bootstrap_api::LogLevel::LOG_LEVEL_DEBUG as i32,
            socket_dir: p.socket_dir.clone().filter(|d| !d.is_empty()),
            options: p
                .extensions
                .iter()
                .filter_map(|e| e.value.clone().into_option())
                .collect(),
            format: ReplyFormat::Bootstrap,
        }
    } else {
        let options = Any::parse_from_bytes(stdin)
            .ok()
            .filter(|a| !a.type_url.is_empty())
            .into_iter()
            .collect();
        let grpc_address = if flags.address.is_empty() {
            env.grpc_address.clone().unwrap_or_default()
        } else {
            flags.address.clone()
        };
        StartParams {
            id: flags.id.clone(),
            namespace: flags.namespace.clone(),
            ttrpc_address: env.ttrpc_address.clone().unwrap_or_default(),
            grpc_address,
            debug: flags.debug,
            socket_dir: None,
            options,
            format: legacy_format(env.max_shim_version.as_deref()),
        }
    };
    if params.ttrpc_address.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "{TTRPC_ADDRESS} is not set: the shim cannot publish events"
        )));
    }
    if params.namespace.is_empty() {
        return Err(Error::InvalidArgument(
            "shim namespace cannot be empty".into(),
        ));
    }
    Ok(params)
}

/// The bytes `start` prints for `address`.
pub fn encode_reply(format: ReplyFormat, address: &str) -> Result<Vec<u8>> {
    Ok(match format {
        ReplyFormat::PlainAddress => address.as_bytes().to_vec(),
        ReplyFormat::Json { version } => serde_json::to_vec(&serde_json::json!({
            "version": version,
            "address": address,
            "protocol": "ttrpc",
        }))?,
        ReplyFormat::Bootstrap => BootstrapResult {
            version: CURRENT_VERSION as i32,
            address: address.to_string(),
            protocol: "ttrpc".to_string(),
            ..Default::default()
        }
        .write_to_bytes()?,
    })
}

/// The socket address of the shim serving `grouping`.
pub fn socket_address(params: &StartParams, grouping: &str) -> String {
    let opts = containerd_shim::StartOpts {
        id: params.id.clone(),
        address: params.grpc_address.clone(),
        namespace: params.namespace.clone(),
        socket_dir: params.socket_dir.clone(),
        ..Default::default()
    };
    opts.socket_address(grouping)
}

fn socket_path(address: &str) -> &str {
    address.strip_prefix("unix://").unwrap_or(address)
}

fn read_stdin() -> Vec<u8> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Vec::new();
    }
    let mut buf = Vec::new();
    let _ = stdin.lock().take(MAX_STDIN).read_to_end(&mut buf);
    buf
}

/// Binds the shim socket, or finds the live shim already serving it.
enum Bound {
    New(UnixListener),
    Existing,
}

fn bind(address: &str) -> Result<Bound> {
    let path = Path::new(socket_path(address));
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io_err(format!("mkdir {}", parent.display())))?;
    }
    match UnixListener::bind(path) {
        Ok(l) => Ok(Bound::New(l)),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            if UnixStream::connect(path).is_ok() {
                return Ok(Bound::Existing);
            }
            // A socket left by a shim that died.
            std::fs::remove_file(path).map_err(io_err(format!("remove {}", path.display())))?;
            UnixListener::bind(path)
                .map(Bound::New)
                .map_err(io_err(format!("bind {}", path.display())))
        }
        Err(e) => Err(Error::io(format!("bind {}", path.display()), e)),
    }
}

/// Writes `contents` to `path` through a temporary file and a rename.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).map_err(io_err(format!("write {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(io_err(format!("rename {}", path.display())))
}

/// The `start` action: launches (or finds) the server for this container's
/// group and returns the reply to print. Runs in the bundle directory.
/// `grouping` is the key from [`crate::grouping`].
pub fn start(flags: &Flags, grouping: &str) -> Result<Vec<u8>> {
    let stdin = read_stdin();
    let params = parse_start(&stdin, flags, &StartEnv::from_process())?;
    let address = socket_address(&params, grouping);
    let bundle = std::env::current_dir().map_err(io_err("getcwd"))?;
    match bind(&address)? {
        Bound::Existing => {}
        Bound::New(listener) => {
            if let Err(e) = launch_server(&params, &address, listener, &bundle) {
                let _ = std::fs::remove_file(socket_path(&address));
                return Err(e);
            }
        }
    }
    write_atomic(&bundle.join("address"), address.as_bytes())?;
    encode_reply(params.format, &address)
}

/// Starts `<self> -namespace … -id … -address … -socket …` (no action: serve) in
/// its own session, with the bound listener as fd 3.
fn launch_server(
    params: &StartParams,
    address: &str,
    listener: UnixListener,
    bundle: &Path,
) -> Result<()> {
    let exe = std::env::current_exe().map_err(io_err("current exe"))?;
    let mut cmd = Command::new(exe);
    cmd.current_dir(bundle)
        .args(["-namespace", &params.namespace, "-id", &params.id])
        .args(["-address", &params.grpc_address, "-socket", address])
        .env(TTRPC_ADDRESS, &params.ttrpc_address)
        .env(GRPC_ADDRESS, &params.grpc_address)
        .env("NAMESPACE", &params.namespace)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if params.debug {
        cmd.arg("-debug");
    }
    let fd = listener.into_raw_fd();
    // SAFETY: only async-signal-safe calls (setsid, dup2, fcntl) run between fork
    // and exec, on fds this process owns.
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            if fd == LISTENER_FD {
                if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(fd, LISTENER_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let spawned = cmd.spawn();
    // SAFETY: `fd` came from `into_raw_fd` above and is closed exactly once here.
    drop(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) });
    let child = spawned.map_err(io_err("spawn shim server"))?;
    write_atomic(&bundle.join("shim.pid"), child.id().to_string().as_bytes())?;
    Ok(())
}

/// Registers `task` under both task API names.
pub fn task_services(task: Arc<dyn Task + Send + Sync>) -> HashMap<String, Service> {
    let mut services = HashMap::new();
    for name in [TASK_V3, TASK_V2] {
        for (_, service) in create_task(task.clone()) {
            services.insert(name.to_string(), service);
        }
    }
    services
}

/// Asks the serve loop to stop (after the Shutdown RPC, or a signal).
#[derive(Debug, Clone, Default)]
pub struct ShutdownSignal(Arc<(Notify, std::sync::atomic::AtomicBool)>);

impl ShutdownSignal {
    pub fn signal(&self) {
        self.0 .1.store(true, std::sync::atomic::Ordering::SeqCst);
        self.0 .0.notify_waiters();
    }

    pub fn is_signalled(&self) -> bool {
        self.0 .1.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub async fn wait(&self) {
        loop {
            let notified = self.0 .0.notified();
            if self.is_signalled() {
                return;
            }
            notified.await;
        }
    }
}

/// What a shim's task service gets from the serve loop.
#[derive(Debug, Clone)]
pub struct ServeContext {
    pub id: String,
    pub namespace: String,
    pub bundle: PathBuf,
    pub events: EventSink,
    pub reaper: Reaper,
    pub shutdown: ShutdownSignal,
    pub debug: bool,
    /// The socket the task service is served on (the shim's address), where it
    /// has a path.
    pub socket: Option<PathBuf>,
}

fn inherited_listener() -> Option<std::os::unix::net::UnixListener> {
    // Only take fd 3 if it is a listening socket (the `start` action's).
    let st = nix::sys::stat::fstat(
        // SAFETY: fstat on a raw fd number only reads its metadata; an fd that is
        // not open yields EBADF.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(LISTENER_FD) },
    )
    .ok()?;
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return None;
    }
    // SAFETY: fd 3 is an open socket the parent passed to this process, owned by
    // nothing else here.
    let listener = unsafe { UnixListener::from_raw_fd(LISTENER_FD) };
    listener.local_addr().ok()?;
    let _ = nix::fcntl::fcntl(
        &listener,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    Some(listener)
}

/// The serve mode: logs to `<bundle>/log`, reaps children, builds the task
/// service with `make`, serves it (v2 and v3) until shut down, then removes the
/// socket.
pub async fn serve<F, Fut>(flags: &Flags, make: F) -> Result<()>
where
    F: FnOnce(ServeContext) -> Fut,
    Fut: std::future::Future<Output = Result<Arc<dyn Task + Send + Sync>>>,
{
    let bundle = if flags.bundle.is_empty() {
        std::env::current_dir().map_err(io_err("getcwd"))?
    } else {
        PathBuf::from(&flags.bundle)
    };
    crate::logging::init(&bundle, flags.debug);
    let reaper = Reaper::start()?;
    let ttrpc_address = std::env::var(TTRPC_ADDRESS).unwrap_or_default();
    let events = EventSink::connect(&ttrpc_address, &flags.namespace).await;
    let shutdown = ShutdownSignal::default();
    let std_listener = match inherited_listener() {
        Some(l) => l,
        None => {
            if flags.socket.is_empty() {
                return Err(Error::InvalidArgument(
                    "no -socket and no listener on fd 3".into(),
                ));
            }
            match bind(&flags.socket)? {
                Bound::New(l) => l,
                Bound::Existing => {
                    return Err(Error::AlreadyExists(format!(
                        "{} is served already",
                        flags.socket
                    )))
                }
            }
        }
    };
    let socket_file = std_listener
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(Path::to_path_buf));
    let ctx = ServeContext {
        id: flags.id.clone(),
        namespace: flags.namespace.clone(),
        bundle,
        events,
        reaper,
        shutdown: shutdown.clone(),
        debug: flags.debug,
        socket: socket_file.clone(),
    };
    let task = match make(ctx).await {
        Ok(task) => task,
        Err(e) => {
            if let Some(path) = &socket_file {
                let _ = std::fs::remove_file(path);
            }
            return Err(e);
        }
    };
    std_listener
        .set_nonblocking(true)
        .map_err(io_err("listener nonblocking"))?;
    let listener = Listener::try_from(std_listener).map_err(io_err("ttrpc listener"))?;
    let mut server = Server::new()
        .add_listener(listener)
        .register_service(task_services(task));
    server.start().await?;
    tracing::info!(id = %flags.id, namespace = %flags.namespace, "shim serving");

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(io_err("SIGTERM handler"))?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(io_err("SIGINT handler"))?;
    tokio::select! {
        _ = shutdown.wait() => {}
        _ = term.recv() => tracing::info!("SIGTERM"),
        _ = int.recv() => tracing::info!("SIGINT"),
    }
    tracing::info!("shim shutting down");
    // Nobody new may find this shim; then let the Shutdown reply reach the
    // caller before closing connections.
    if let Some(path) = socket_file {
        let _ = std::fs::remove_file(path);
    }
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), server.shutdown()).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags() -> Flags {
        Flags {
            id: "c1".into(),
            namespace: "k8s.io".into(),
            address: "/run/containerd/containerd.sock".into(),
            ..Default::default()
        }
    }

    fn env(max: Option<&str>) -> StartEnv {
        StartEnv {
            ttrpc_address: Some("/run/containerd/containerd.sock.ttrpc".into()),
            grpc_address: None,
            max_shim_version: max.map(str::to_string),
        }
    }

    #[test]
    fn legacy_reply_formats() {
        assert_eq!(legacy_format(None), ReplyFormat::PlainAddress);
        assert_eq!(legacy_format(Some("")), ReplyFormat::PlainAddress);
        assert_eq!(legacy_format(Some("2")), ReplyFormat::Json { version: 2 });
        assert_eq!(legacy_format(Some("3")), ReplyFormat::Json { version: 3 });
        assert_eq!(legacy_format(Some("9")), ReplyFormat::Json { version: 3 });
        assert_eq!(legacy_format(Some("x")), ReplyFormat::PlainAddress);
    }

    #[test]
    fn containerd_16_gets_a_plain_address() {
        let p = parse_start(&[], &flags(), &env(None)).expect("params");
        assert_eq!(p.format, ReplyFormat::PlainAddress);
        assert_eq!(
            encode_reply(p.format, "unix:///s/x").expect("reply"),
            b"unix:///s/x"
        );
    }

    #[test]
    fn containerd_17_and_2x_get_json_version_2() {
        let p = parse_start(&[], &flags(), &env(Some("2"))).expect("params");
        let reply = encode_reply(p.format, "unix:///s/x").expect("reply");
        let v: serde_json::Value = serde_json::from_slice(&reply).expect("json");
        assert_eq!(v["version"], 2);
        assert_eq!(v["address"], "unix:///s/x");
        assert_eq!(v["protocol"], "ttrpc");
    }

    #[test]
    fn runtime_options_on_stdin_are_kept_and_are_not_bootstrap() {
        let opts = containerd_shim_protos::shim::oci::Options {
            binary_name: "crun".into(),
            ..Default::default()
        };
        let any = Any {
            type_url: "containerd.runc.v1.Options".into(),
            value: opts.write_to_bytes().expect("encode"),
            ..Default::default()
        };
        let p = parse_start(&any.write_to_bytes().expect("encode"), &flags(), &env(None))
            .expect("params");
        assert_eq!(p.format, ReplyFormat::PlainAddress);
        assert_eq!(p.options.len(), 1);
        assert_eq!(p.options[0].type_url, "containerd.runc.v1.Options");
    }

    #[test]
    fn bootstrap_params_get_a_bootstrap_result() {
        let params = BootstrapParams {
            instance_id: "c1".into(),
            namespace: "k8s.io".into(),
            containerd_ttrpc_address: "/t.sock".into(),
            containerd_grpc_address: "/g.sock".into(),
            ..Default::default()
        };
        let p = parse_start(
            &params.write_to_bytes().expect("encode"),
            &flags(),
            &env(None),
        )
        .expect("params");
        assert_eq!(p.format, ReplyFormat::Bootstrap);
        assert_eq!(p.ttrpc_address, "/t.sock");
        let reply = encode_reply(p.format, "unix:///s/x").expect("reply");
        let r = BootstrapResult::parse_from_bytes(&reply).expect("decode");
        assert_eq!(r.version, 3);
        assert_eq!(r.address, "unix:///s/x");
        assert_eq!(r.protocol, "ttrpc");
    }

    #[test]
    fn bootstrap_params_for_another_shim_are_refused() {
        let params = BootstrapParams {
            instance_id: "other".into(),
            namespace: "k8s.io".into(),
            containerd_ttrpc_address: "/t.sock".into(),
            ..Default::default()
        };
        assert!(parse_start(
            &params.write_to_bytes().expect("encode"),
            &flags(),
            &env(None)
        )
        .is_err());
    }

    #[test]
    fn missing_ttrpc_address_is_refused() {
        let e = StartEnv::default();
        assert!(parse_start(&[], &flags(), &e).is_err());
    }

    #[test]
    fn socket_address_depends_on_grouping_only() {
        let p = parse_start(&[], &flags(), &env(None)).expect("params");
        let a = socket_address(&p, "pod");
        let mut p2 = p.clone();
        p2.id = "c2".into();
        assert_eq!(a, socket_address(&p2, "pod"));
        assert_ne!(a, socket_address(&p, "other"));
        assert!(a.starts_with("unix:///run/containerd/s/"), "{a}");
    }

    #[test]
    fn both_task_versions_are_registered() {
        struct Dummy;
        #[async_trait::async_trait]
        impl Task for Dummy {}
        let services = task_services(Arc::new(Dummy));
        assert!(services.contains_key(TASK_V2));
        assert!(services.contains_key(TASK_V3));
        assert_eq!(services.len(), 2);
    }

    #[tokio::test]
    async fn shutdown_signal_wakes_late_waiters() {
        let s = ShutdownSignal::default();
        s.signal();
        s.wait().await;
        assert!(s.is_signalled());
    }
}
