//! The daemon's life: prepare its directories, open the store, bind the socket, serve
//! until SIGTERM/SIGINT, remove the socket.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::Loaded;
use crate::image::auth::AuthFile;
use crate::image::images::{ImageError, ImageStore};
use crate::image::manifest::Platform;
use crate::image::pull::{PullOptions, Puller};
use crate::image::registries::{RegistriesConf, RegistriesWatcher};
use crate::pods::sandbox::pause;
use crate::pods::{PodRuntime, PodRuntimeConfig};
use crate::runtime::{EventServer, HandlerRegistry, ShimHost};
use crate::server::{self, State};
use crate::socket;
use crate::store::{Store, StoreError};

/// File name of the metadata store under `[crio] root`.
pub const STORE_FILE: &str = "metadata.redb";

/// The ttrpc socket shims send events to, under `[crio] runroot`.
pub const EVENTS_SOCKET: &str = "shim-events.sock";

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot create {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("image store: {0}")]
    Images(#[from] ImageError),
    #[error(transparent)]
    Socket(#[from] socket::SocketError),
    #[error(transparent)]
    Serve(#[from] server::ServeError),
    #[error(transparent)]
    Events(#[from] crate::runtime::events::EventsError),
    #[error("recovering pods: {0}")]
    Recover(String),
    #[error(transparent)]
    StreamingTls(#[from] crate::streaming::tls::TlsError),
    #[error("streaming server on {address} ([crio.api] stream_address, stream_port): {source}")]
    Streaming {
        address: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    NodeDefaults(#[from] crate::pods::node_defaults::NodeDefaultsError),
    #[error(transparent)]
    Policy(crate::image::policy::PolicyError),
    #[error(transparent)]
    Metrics(crate::metrics::MetricsServerError),
    #[error(transparent)]
    MetricsCert(crate::metrics::self_signed::SelfSignedError),
    #[error("cannot install signal handler: {0}")]
    Signal(std::io::Error),
    #[error("cannot write the version and clean-shutdown files ([crio] version_file, version_file_persist, clean_shutdown_file): {source}")]
    Markers { source: std::io::Error },
    #[error("{0} (is crio running? stop it first)")]
    StoreBusy(StoreError),
    #[error("checking the store after an unclean stop: {0}")]
    Check(#[from] crate::check::CheckError),
}

fn create_dir(path: &Path) -> Result<(), DaemonError> {
    std::fs::create_dir_all(path).map_err(|source| DaemonError::Dir {
        path: path.to_path_buf(),
        source,
    })
}

/// Where state lives: others may pass through (a pod in its own user namespace
/// reaches its rootfs and files by path) but not list or read; what is below is
/// private per pod and container. An existing directory gets the mode too.
pub(crate) fn create_state_dir(path: &Path) -> Result<(), DaemonError> {
    use std::os::unix::fs::PermissionsExt;
    create_dir(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o711)).map_err(|source| {
        DaemonError::Dir {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// Tightens what an older daemon left readable: container and bundle dirs to 0700
/// (0710 stays for user-namespaced pods), specs to 0600. Log files get 0600 when
/// their containers' output is reopened.
fn secure_existing_state(dirs: &[PathBuf]) {
    use std::os::unix::fs::PermissionsExt;
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() && meta.permissions().mode() & 0o7777 != 0o710 {
                let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700));
            }
            let spec = path.join("config.json");
            if spec.is_file() {
                let _ = std::fs::set_permissions(&spec, std::fs::Permissions::from_mode(0o600));
            }
        }
    }
}

/// Runs the daemon to completion; `log_level` lets a SIGHUP change the log level.
pub async fn run(
    loaded: Loaded,
    log_level: Option<crate::reload::LogLevelHook>,
) -> Result<(), DaemonError> {
    let notifier = crate::systemd::Notifier::from_env();
    // Registry TLS uses rustls with ring; an error only means one is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    let config = loaded.config;
    let c = &config.crio;
    let metrics = crate::metrics::Metrics::new(
        c.metrics.enable_metrics,
        &c.metrics.metrics_collectors,
        &c.runtime.default_runtime,
    );
    let plan = crate::wipe::plan(c, false);
    if plan.unclean && c.internal_repair {
        repair_store(&c.root)?;
    }
    let Opened {
        store,
        images,
        image_root,
        container_root,
        events,
        pods,
    } = open(&config, &metrics).await?;
    if c.internal_wipe && plan.containers {
        tracing::info!(reasons = ?plan.reasons, "wiping");
        crate::wipe::remove_all(&pods, &images, &plan).await;
    }
    crate::wipe::mark_started(c).map_err(|source| DaemonError::Markers { source })?;
    let (registries_file, registries_dir) = RegistriesConf::default_paths();
    let registries = Arc::new(RegistriesWatcher::new(registries_file, registries_dir));
    let auth_file = if c.image.global_auth_file.is_empty() {
        AuthFile::default_path()
    } else {
        c.image.global_auth_file.clone().into()
    };
    let progress_timeout =
        crate::duration::parse(&c.image.pull_progress_timeout).filter(|d| !d.is_zero());
    let policy_source = crate::image::policy::PolicySource {
        file: if c.image.signature_policy.is_empty() {
            crate::image::policy::DEFAULT_POLICY.into()
        } else {
            c.image.signature_policy.clone().into()
        },
        explicit: !c.image.signature_policy.is_empty(),
        namespace_dir: (!c.image.signature_policy_dir.is_empty())
            .then(|| c.image.signature_policy_dir.clone().into()),
        registries_d: c.image.registries_d.clone().into(),
    };
    // A policy that does not parse stops the start (each pull reads it again).
    policy_source.policy(None).map_err(DaemonError::Policy)?;
    let puller = Puller::new(
        images.clone(),
        registries.clone(),
        PullOptions {
            platform: Platform::host(),
            progress_timeout,
            auth_file,
            insecure: crate::image::insecure::InsecureRegistries::new(&c.image.insecure_registries),
            enforce_short_names: c.image.short_name_mode == "enforcing",
            policy: policy_source,
            metrics: metrics.clone(),
        },
    );
    // Validated: a port number.
    let stream_port = c.api.stream_port.parse::<u16>().unwrap_or(0);
    // Validated: empty or a duration.
    let idle_timeout = crate::duration::parse(&c.api.stream_idle_timeout)
        .filter(|d| !d.is_zero())
        .unwrap_or(crate::streaming::DEFAULT_IDLE_TIMEOUT);
    let tls = if c.api.stream_enable_tls {
        let ca = (!c.api.stream_tls_ca.is_empty()).then(|| Path::new(&c.api.stream_tls_ca));
        Some(
            crate::streaming::tls::acceptor(
                Path::new(&c.api.stream_tls_cert),
                Path::new(&c.api.stream_tls_key),
                ca,
                &crate::streaming::tls::TlsPolicy::from_config(
                    &c.api.tls_min_version,
                    &c.api.tls_cipher_suites,
                ),
            )
            .map_err(DaemonError::StreamingTls)?,
        )
    } else {
        None
    };
    let streaming = crate::streaming::StreamingServer::start(
        &c.api.stream_address,
        stream_port,
        idle_timeout,
        tls,
        c.api.stream_max_sessions,
        pods.clone(),
    )
    .await
    .map_err(|source| DaemonError::Streaming {
        address: format!("{}:{}", c.api.stream_address, c.api.stream_port),
        source,
    })?;
    if metrics.enabled() {
        let weak = Arc::downgrade(&pods);
        metrics.set_shim_list(Box::new(move || {
            weak.upgrade().map(|p| p.shim_pids()).unwrap_or_default()
        }));
        let m = &c.metrics;
        let tls = if m.metrics_cert.is_empty() {
            None
        } else {
            let names = vec!["localhost".to_string(), m.metrics_host.clone()];
            let (cert, key) = (Path::new(&m.metrics_cert), Path::new(&m.metrics_key));
            if crate::metrics::self_signed::ensure(cert, key, &names)
                .map_err(DaemonError::MetricsCert)?
            {
                tracing::info!(
                    cert = %cert.display(),
                    key = %key.display(),
                    "metrics: neither file existed, a self-signed certificate was generated"
                );
            }
            Some(
                crate::streaming::tls::acceptor(
                    cert,
                    key,
                    None,
                    &crate::streaming::tls::TlsPolicy::from_config(
                        &c.api.tls_min_version,
                        &c.api.tls_cipher_suites,
                    ),
                )
                .map_err(DaemonError::StreamingTls)?,
            )
        };
        let socket = (!m.metrics_socket.is_empty()).then(|| Path::new(&m.metrics_socket));
        crate::metrics::serve(
            metrics.clone(),
            &m.metrics_host,
            m.metrics_port,
            socket,
            tls,
        )
        .await
        .map_err(DaemonError::Metrics)?;
    }
    let listen = c.api.listen.clone();
    let clean_shutdown_file = c.clean_shutdown_file.clone();
    // Handlers first: a SIGINT or SIGTERM sent as soon as the socket exists must
    // stop the daemon cleanly, not kill it.
    let shutdown = shutdown_signal().map_err(DaemonError::Signal)?;
    let stopping = notifier.clone();
    let shutdown = async move {
        shutdown.await;
        stopping.notify("STOPPING=1");
    };
    let live = Arc::new(crate::config::LiveConfig::new(config.clone()));
    crate::reload::spawn(
        loaded.sources.clone(),
        loaded.overrides.clone(),
        crate::reload::Live {
            log_level,
            images: images.clone(),
            pods: pods.clone(),
            config: live.clone(),
            apparmor: pods.config.host.apparmor,
        },
        notifier.clone(),
    )
    .map_err(DaemonError::Signal)?;
    let listener = socket::bind(&listen)?;
    let state = Arc::new(State {
        pods,
        streaming,
        store,
        images,
        puller,
        registries,
        image_root,
        container_root,
        config,
        live,
        pod_cidrs: Default::default(),
        metrics,
    });
    tracing::info!(socket = %listen.display(), "serving CRI");
    notifier.notify("READY=1");
    notifier.spawn_watchdog();
    let result = server::serve(listener, state, shutdown).await;
    if let Err(e) = std::fs::remove_file(&listen) {
        tracing::warn!("cannot remove socket {}: {e}", listen.display());
    }
    events.stop().await;
    result?;
    // Every commit is on disk when its call returns: nothing to flush first.
    if let Err(e) = crate::wipe::mark_clean_shutdown(&clean_shutdown_file) {
        tracing::warn!("cannot write {clean_shutdown_file}: {e}");
    }
    tracing::info!("stopped");
    Ok(())
}

/// The store, images and pods of a daemon, recovered, with the events socket the
/// pods' shims report to.
pub(crate) struct Opened {
    pub store: Arc<Store>,
    pub images: Arc<ImageStore>,
    pub image_root: PathBuf,
    pub container_root: PathBuf,
    pub events: EventServer,
    pub pods: Arc<PodRuntime>,
}

/// Opens the state under `[crio] root` and `runroot` and recovers the pods in it.
pub(crate) async fn open(
    config: &crate::config::Config,
    metrics: &Arc<crate::metrics::Metrics>,
) -> Result<Opened, DaemonError> {
    let c = &config.crio;
    create_state_dir(&c.root)?;
    create_state_dir(&c.runroot)?;
    let store = Arc::new(Store::open(&c.root.join(STORE_FILE))?);
    // Records name pods, labels and annotations: root's to read.
    let _ = std::fs::set_permissions(
        c.root.join(STORE_FILE),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    );
    let image_root = c.root.join("images");
    // Private images' layers: root's (overlayfs reads them with the mounter's rights).
    crate::storage::private_dir(&image_root, None).map_err(|source| DaemonError::Dir {
        path: image_root.clone(),
        source,
    })?;
    let container_root = c.root.join("containers");
    create_state_dir(&container_root)?;
    create_state_dir(&c.runroot.join("bundles"))?;
    secure_existing_state(&[container_root.clone(), c.runroot.join("bundles")]);
    let images = Arc::new(ImageStore::open(store.clone(), &image_root)?.with_pinned(
        crate::image::pinned::PinnedImages::new(&c.image.pinned_images, &c.image.pause_image),
    ));
    // Interrupted pulls leave temp data and unrecorded layers: remove them first.
    images.recover(&image_root.join("tmp"))?;
    // Shims report to this socket: it listens before any shim is started.
    let (events, events_rx) = EventServer::start(&c.runroot.join(EVENTS_SOCKET)).await?;
    let pause_rootfs =
        pause::install(&c.root.join("pause")).map_err(|source| DaemonError::Dir {
            path: c.root.join("pause"),
            source,
        })?;
    let handlers = HandlerRegistry::from_config(config).probed(None).await;
    let publish_binary = std::env::current_exe().unwrap_or_else(|_| "crio".into());
    let (metric_groups, omitted) = crate::pods::container::metrics::resolve_groups(
        &c.stats.included_pod_metrics,
        crate::pods::container::metrics::MetricHost::read(),
    );
    for note in omitted.notes {
        if omitted.named {
            tracing::warn!("{note}");
        } else {
            tracing::info!("{note}");
        }
    }
    let host = crate::spec::HostFacts::read();
    let node = crate::pods::NodeDefaults::load(&c.runtime, &c.image, host.apparmor)
        .map_err(DaemonError::NodeDefaults)?;
    let pods = Arc::new(PodRuntime::new(
        PodRuntimeConfig {
            bundles_dir: c.runroot.join("bundles"),
            containers_dir: container_root.clone(),
            pause_rootfs,
            run_root: c.runroot.clone(),
            storage_driver: c.storage_driver.parse().unwrap_or_default(),
            systemd_cgroup: c.runtime.cgroup_manager == "systemd",
            held_capabilities: crate::spec::held_capabilities(),
            min_oom_score_adj: crate::spec::own_oom_score_adj(),
            pids_limit: c.runtime.pids_limit,
            node: crate::pods::node_defaults::LiveNode::new(node),
            log_dir: c.log_dir.clone(),
            metrics: metrics.clone(),
            hostport_mapping: !c.runtime.disable_hostport_mapping,
            log_size_max: c.runtime.log_size_max,
            image_volumes: c.image.image_volumes.clone(),
            cdi_spec_dirs: c.runtime.cdi_spec_dirs.iter().map(PathBuf::from).collect(),
            drop_infra: c.runtime.drop_infra_ctr,
            host,
            metric_groups,
        },
        store.clone(),
        images.clone(),
        handlers,
        ShimHost::new(
            events.path().to_path_buf(),
            publish_binary,
            c.runtime.log_level == "debug" || c.runtime.log_level == "trace",
        ),
        crate::network::PodNetworks::new(c.network.clone(), Arc::new(crate::network::ProcessExec)),
    ));
    pods.spawn_event_loop(events_rx);
    pods.recover()
        .await
        .map_err(|e| DaemonError::Recover(e.to_string()))?;
    Ok(Opened {
        store,
        images,
        image_root,
        container_root,
        events,
        pods,
    })
}

/// After an unclean stop: `crio check --repair`'s work, before the store opens.
pub(crate) fn repair_store(root: &Path) -> Result<(), DaemonError> {
    tracing::warn!("crio did not stop cleanly: checking the store");
    let report = crate::check::check(root, true)?;
    for problem in &report.problems {
        tracing::warn!("store check: {problem}");
    }
    for repaired in &report.repaired {
        tracing::warn!("store repair: {repaired}");
    }
    Ok(())
}

fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("received SIGTERM"),
            _ = int.recv() => tracing::info!("received SIGINT"),
        }
    })
}
