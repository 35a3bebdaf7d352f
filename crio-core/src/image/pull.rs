//! Pulling an image: name resolution through registries.conf, mirrors then origin,
//! credentials, platform selection, digest verification of every byte, layers
//! downloaded in parallel and unpacked as they stream in (no compressed copy is kept),
//! each blob fetched once even when pulls overlap, and a stall timeout.

use std::collections::HashMap;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use oci_client::client::{BlobResponse, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use super::auth::{AuthFile, Credentials, CriAuth};
use super::image_config::{chain_ids, ImageConfig};
use super::images::{candidates, tag_of, ImageStore};
use super::manifest::{self, Layer, Manifest, Platform, ACCEPTED_MEDIA_TYPES};
use super::reference::ImageName;
use super::registries::{PullSource, RegistriesWatcher};
use super::tls::{CertsDirs, RegistryTls};
use crate::storage::content::sha256;
use crate::storage::layers::{LayerError, LayerSource};
use crate::store::ImageRecord;

/// Layers fetched at once per pull.
const PARALLEL_LAYERS: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("invalid image name {name:?}: {message}")]
    InvalidName { name: String, message: String },
    #[error("{0}")]
    Registries(String),
    #[error("image {0} not found")]
    NotFound(String),
    #[error("pulling {image}: not authorized (check the credentials for {registry})")]
    Unauthorized { image: String, registry: String },
    #[error("pulling {image}: no progress for {timeout:?} (pull_progress_timeout): cancelled")]
    Stalled { image: String, timeout: Duration },
    #[error("pulling {image}: {message}")]
    Invalid { image: String, message: String },
    #[error("pulling {image}: {message}")]
    Registry { image: String, message: String },
    #[error("pulling {image}: storing it: {message}")]
    Storage { image: String, message: String },
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    AllFailed(Vec<PullError>),
    /// The signature policy refuses the image, or cannot be read.
    #[error(transparent)]
    Policy(#[from] super::policy::PolicyError),
}

impl PullError {
    /// Whether every source said the image does not exist.
    pub(crate) fn is_not_found(&self) -> bool {
        match self {
            PullError::NotFound(_) => true,
            PullError::AllFailed(errors) => errors.iter().all(PullError::is_not_found),
            _ => false,
        }
    }
}

/// Settings of the puller.
#[derive(Debug, Clone)]
pub(crate) struct PullOptions {
    pub platform: Platform,
    /// `None` = no stall timeout.
    pub progress_timeout: Option<Duration>,
    pub auth_file: PathBuf,
    /// `insecure_registries`: pulled from as registries.conf's `insecure = true`.
    pub insecure: super::insecure::InsecureRegistries,
    /// `short_name_mode = "enforcing"`. Otherwise every candidate is tried, as
    /// CRI-O up to 1.33 does whatever registries.conf says.
    pub enforce_short_names: bool,
    /// The signature policy and where signatures are found.
    pub policy: super::policy::PolicySource,
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl PullError {
    /// CRI-O's `image_pulls_failure_total` label: the registry error code the
    /// failure carries, else the connection failure, else `UNKNOWN`.
    pub(crate) fn metric_label(&self) -> &'static str {
        if self.is_not_found() {
            return "MANIFEST_UNKNOWN";
        }
        let text = self.to_string().to_lowercase();
        match self {
            PullError::Unauthorized { .. } => "UNAUTHORIZED",
            _ if text.contains("connection refused") => "CONNECTION_REFUSED",
            _ if text.contains("timed out") => "CONNECTION_TIMEOUT",
            _ if text.contains("too many requests") => "TOOMANYREQUESTS",
            _ if text.contains("denied") => "DENIED",
            _ => "UNKNOWN",
        }
    }
}

/// Pulls images into an [`ImageStore`].
#[derive(Debug)]
pub struct Puller {
    images: Arc<ImageStore>,
    registries: Arc<RegistriesWatcher>,
    options: PullOptions,
    /// One lock per layer chain ID: overlapping pulls download a layer once.
    layer_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Releases held layers when a pull ends, however it ends.
struct Hold<'a> {
    images: &'a ImageStore,
    layers: Vec<String>,
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        self.images.release(&self.layers);
    }
}

impl Puller {
    pub(crate) fn new(
        images: Arc<ImageStore>,
        registries: Arc<RegistriesWatcher>,
        options: PullOptions,
    ) -> Self {
        Self {
            images,
            registries,
            options,
            layer_locks: Mutex::new(HashMap::new()),
        }
    }

    /// Pulls `spec` and returns its record. `credentials` (from the CRI request) win
    /// over the auth file. Registry TLS files come from the default certs.d
    /// directories; [`Puller::pull_with`] takes the configured ones.
    pub(crate) async fn pull(
        &self,
        spec: &str,
        credentials: Option<Credentials>,
    ) -> Result<ImageRecord, PullError> {
        self.pull_with(
            spec,
            credentials.map(CriAuth::Basic),
            &CertsDirs::default(),
            None,
        )
        .await
    }

    /// Pulls `spec` with the CRI request's auth (which wins over the auth file) and
    /// per-registry TLS files from `certs` (`[crio.image] certs_dir`), under the
    /// signature policy of the pod's `namespace` (if the pull is for a pod).
    pub(crate) async fn pull_with(
        &self,
        spec: &str,
        request_auth: Option<CriAuth>,
        certs: &CertsDirs,
        namespace: Option<&str>,
    ) -> Result<ImageRecord, PullError> {
        let policy = self.options.policy.policy(namespace)?;
        let registries = self
            .registries
            .current()
            .map_err(|e| PullError::Registries(e.to_string()))?;
        let candidates = candidates(spec, &registries).map_err(|e| PullError::InvalidName {
            name: spec.to_string(),
            message: e.to_string(),
        })?;
        // containers/image without a terminal: an enforcing mode refuses a short
        // name that could mean several images rather than guess.
        if self.options.enforce_short_names && candidates.len() > 1 {
            return Err(PullError::InvalidName {
                name: spec.to_string(),
                message: format!(
                    "short name mode is enforcing, but the name is ambiguous: {} \
                     (use a fully qualified name or an alias in registries.conf)",
                    candidates
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        let auth_file = AuthFile::load(&self.options.auth_file)
            .map_err(|e| PullError::Registries(e.to_string()))?;
        let mut errors = Vec::new();
        for name in candidates {
            let sources = registries
                .pull_sources(&name)
                .map_err(|e| PullError::Registries(e.to_string()))?;
            for mut source in sources {
                source.insecure |= self.options.insecure.contains(&source.name.registry).await;
                let creds = request_auth.clone().or_else(|| {
                    auth_file
                        .lookup(&source.name.registry, &source.name.repository)
                        .map(CriAuth::Basic)
                });
                let pulled = self
                    .pull_from(&name, &source, creds, certs, policy.as_ref())
                    .await;
                match &pulled {
                    Ok(_) => self.options.metrics.pull_succeeded(),
                    Err(e) => self.options.metrics.pull_failed(e.metric_label()),
                }
                match pulled {
                    Ok(record) => return Ok(record),
                    // The policy's verdict is final: another mirror does not change it.
                    Err(e @ PullError::Policy(_)) => return Err(e),
                    Err(e) => {
                        tracing::info!(image = %name, source = %source.name, "pull attempt failed: {e}");
                        errors.push(e);
                    }
                }
            }
        }
        // Layers the failed attempts installed belong to no image: nothing is kept.
        let images = self.images.clone();
        match tokio::task::spawn_blocking(move || images.collect_garbage()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("after a failed pull of {spec}: {e}"),
            Err(e) => tracing::warn!("after a failed pull of {spec}: {e}"),
        }
        match errors.len() {
            0 => Err(PullError::NotFound(spec.to_string())),
            1 => Err(errors.remove(0)),
            _ => Err(PullError::AllFailed(errors)),
        }
    }

    async fn pull_from(
        &self,
        name: &ImageName,
        source: &PullSource,
        creds: Option<CriAuth>,
        certs: &CertsDirs,
        policy: Option<&super::policy::Policy>,
    ) -> Result<ImageRecord, PullError> {
        let shown = source.name.to_string();
        let registry = source.name.registry.as_str();
        let tls = certs.load(registry).map_err(|e| PullError::Registry {
            image: shown.clone(),
            message: e.to_string(),
        })?;
        if let Some((cert, _)) = tls.client_pairs.first() {
            tracing::warn!(registry, cert = %cert.display(), "client certificates are not supported: pulling without presenting it");
        }
        let client_err = |e: OciDistributionError| PullError::Registry {
            image: shown.clone(),
            message: match tls.dir.as_deref() {
                Some(dir) => format!("TLS settings from {}: {}", dir.display(), chain(&e)),
                // The system's CA store is the only other input of the client.
                None => format!(
                    "the registry client (with the system's CA certificates: \
                     is ca-certificates installed?): {}",
                    chain(&e)
                ),
            },
        };
        // An insecure registry is tried over HTTPS without verification first, then
        // over plain HTTP, as containers/image does.
        let client = client_for(source, &tls, true).map_err(client_err)?;
        let ctx = ErrorContext {
            image: shown.clone(),
            registry: registry.to_string(),
            tls_hint: if source.insecure {
                None
            } else {
                Some(tls.describe(registry, certs))
            },
            client_cert: !tls.client_pairs.is_empty(),
        };
        let auth = match creds {
            Some(CriAuth::Basic(c)) => RegistryAuth::Basic(c.username, c.password),
            Some(CriAuth::RegistryToken(token)) => RegistryAuth::Bearer(token),
            None => RegistryAuth::Anonymous,
        };
        let reference = oci_reference(&source.name);
        let fail = |e: OciDistributionError| classify(&ctx, e);

        let mut first = self
            .timed(
                &shown,
                client.pull_manifest_raw(&reference, &auth, ACCEPTED_MEDIA_TYPES),
            )
            .await?;
        let mut client = client;
        if source.insecure {
            if let Err(OciDistributionError::RequestError(e)) = &first {
                tracing::debug!(
                    registry,
                    "insecure registry: HTTPS failed ({}), trying HTTP",
                    chain(e)
                );
                client = client_for(source, &tls, false).map_err(client_err)?;
                first = self
                    .timed(
                        &shown,
                        client.pull_manifest_raw(&reference, &auth, ACCEPTED_MEDIA_TYPES),
                    )
                    .await?;
            }
        }
        let (top_bytes, _) = first.map_err(fail)?;
        let top_digest = sha256(&top_bytes);
        if let Some(wanted) = &source.name.digest {
            if &top_digest != wanted {
                return Err(PullError::Invalid {
                    image: shown,
                    message: format!("manifest digest is {top_digest}, expected {wanted}"),
                });
            }
        }
        let invalid = |message: String| PullError::Invalid {
            image: shown.clone(),
            message,
        };
        let storage = |message: String| PullError::Storage {
            image: shown.clone(),
            message,
        };
        let mut kept = vec![(top_digest.clone(), top_bytes.to_vec())];
        let (config_desc, layers) =
            match manifest::parse(&top_bytes, None).map_err(|e| invalid(e.to_string()))? {
                Manifest::Image { config, layers, .. } => (config, layers),
                Manifest::Index { manifests, .. } => {
                    let chosen = manifest::select_platform(&manifests, &self.options.platform)
                        .map_err(|e| invalid(e.to_string()))?;
                    let by_digest = reference.clone_with_digest(chosen.digest.clone());
                    let (bytes, _) = self
                        .timed(
                            &shown,
                            client.pull_manifest_raw(&by_digest, &auth, ACCEPTED_MEDIA_TYPES),
                        )
                        .await?
                        .map_err(fail)?;
                    if sha256(&bytes) != chosen.digest {
                        return Err(invalid(format!(
                            "manifest {} failed digest verification",
                            chosen.digest
                        )));
                    }
                    kept.push((chosen.digest.clone(), bytes.to_vec()));
                    match manifest::parse(&bytes, None).map_err(|e| invalid(e.to_string()))? {
                        Manifest::Image { config, layers, .. } => (config, layers),
                        Manifest::Index { .. } => {
                            return Err(invalid("an index inside an index is not supported".into()))
                        }
                    }
                }
            };

        // The policy judges the image manifest (a platform's, for an index) before
        // anything of the image is stored, as containers/image does.
        if let (Some(policy), Some((digest, _))) = (policy, kept.last()) {
            self.options
                .policy
                .check(policy, name, &source.name, digest)
                .await?;
        }
        let mut config_bytes = Vec::new();
        self.timed(
            &shown,
            client.pull_blob(&reference, config_desc.digest.as_str(), &mut config_bytes),
        )
        .await?
        .map_err(fail)?;
        let config =
            ImageConfig::parse(&config_bytes, layers.len()).map_err(|e| invalid(e.to_string()))?;
        let chains = chain_ids(&config.rootfs.diff_ids);
        self.images.hold(&chains);
        let _hold = Hold {
            images: &self.images,
            layers: chains.clone(),
        };
        for (digest, bytes) in &kept {
            self.images
                .content
                .put(digest, bytes)
                .map_err(|e| storage(e.to_string()))?;
        }
        self.images
            .content
            .put(&config_desc.digest, &config_bytes)
            .map_err(|e| storage(e.to_string()))?;

        // Boxed so the future stays `Send` for every lifetime tonic's handler asks of it.
        type Job<'a> =
            std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), PullError>> + Send + 'a>>;
        let mut jobs: Vec<Job<'_>> = Vec::new();
        for ((layer, diff_id), chain_id) in layers.iter().zip(&config.rootfs.diff_ids).zip(&chains)
        {
            jobs.push(Box::pin(
                self.fetch_layer(&client, &reference, &ctx, layer, diff_id, chain_id),
            ));
        }
        let results: Vec<Result<(), PullError>> = futures::stream::iter(jobs)
            .buffer_unordered(PARALLEL_LAYERS)
            .collect()
            .await;
        for result in results {
            result?;
        }

        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        let record = ImageRecord {
            id: config_desc.digest.clone(),
            // The name asked for, not the mirror's: a mirror serves the same image.
            repo_tags: tag_of(name).into_iter().collect(),
            repo_digests: vec![format!("{}@{top_digest}", name.repo())],
            size: config_desc.size + layers.iter().map(|l| l.descriptor.size).sum::<u64>(),
            layers: chains,
            manifests: kept.into_iter().map(|(d, _)| d).collect(),
            pulled_at: now,
            user: config.config.user.clone(),
        };
        // The commit waits on fsync: off the async workers.
        let images = Arc::clone(&self.images);
        tokio::task::spawn_blocking(move || images.commit(record))
            .await
            .map_err(|e| storage(format!("image commit did not run: {e}")))?
            .map_err(|e| storage(e.to_string()))
    }

    async fn fetch_layer(
        &self,
        client: &Client,
        reference: &Reference,
        ctx: &ErrorContext,
        layer: &Layer,
        diff_id: &str,
        chain_id: &str,
    ) -> Result<(), PullError> {
        let lock = {
            let mut locks = self.layer_locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(chain_id.to_string()).or_default().clone()
        };
        let _guard = lock.lock().await;
        if self.images.layers.contains(chain_id) {
            self.options
                .metrics
                .layer_reused(&format!("{}@{}", ctx.image, layer.descriptor.digest));
            return Ok(());
        }
        let shown = ctx.image.as_str();
        let fail = |e: OciDistributionError| classify(ctx, e);
        // Asked as a range from byte 0: a registry that honours it answers 206, which
        // oci-client passes on without hashing it. The layer store hashes every blob
        // anyway (`LayerStore::install` fails on a mismatch), so this saves hashing
        // each compressed byte twice. A registry that ignores ranges answers 200, and
        // oci-client verifies that stream too.
        let response = self
            .timed(
                shown,
                client.pull_blob_stream_partial(
                    reference,
                    layer.descriptor.digest.as_str(),
                    0,
                    None,
                ),
            )
            .await?
            .map_err(fail)?;
        let mut stream = match response {
            BlobResponse::Full(s) | BlobResponse::Partial(s) => s,
        };
        let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(32);
        let store = self.images.layers.clone();
        let (chain, blob, diff, compression) = (
            chain_id.to_string(),
            layer.descriptor.digest.clone(),
            diff_id.to_string(),
            layer.compression,
        );
        let install = tokio::task::spawn_blocking(move || {
            let source = LayerSource {
                chain_id: &chain,
                blob_digest: &blob,
                diff_id: &diff,
                compression,
            };
            store.install(&source, ChannelReader::new(rx))
        });
        let mut stalled = false;
        loop {
            let next = match self.options.progress_timeout {
                Some(limit) => match tokio::time::timeout(limit, stream.next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        stalled = true;
                        let _ = tx.send(Err(io::Error::other("download stalled"))).await;
                        break;
                    }
                },
                None => stream.next().await,
            };
            match next {
                Some(Ok(bytes)) => {
                    // The installer stopped early (bad data): its error says why.
                    if tx.send(Ok(bytes)).await.is_err() {
                        break;
                    }
                }
                Some(Err(e)) => {
                    let _ = tx.send(Err(e)).await;
                    break;
                }
                None => break,
            }
        }
        drop(tx);
        let installed = install.await.map_err(|e| PullError::Storage {
            image: shown.to_string(),
            message: format!("layer task failed: {e}"),
        })?;
        if stalled {
            return Err(PullError::Stalled {
                image: shown.to_string(),
                timeout: self.options.progress_timeout.unwrap_or_default(),
            });
        }
        if installed.is_ok() {
            self.options
                .metrics
                .layer_pulled(&layer.descriptor.media_type, layer.descriptor.size);
        }
        installed.map(|_| ()).map_err(|e| match e {
            // The registry served other bytes than the image names.
            LayerError::BlobDigest { .. } | LayerError::DiffId { .. } => PullError::Invalid {
                image: shown.to_string(),
                message: e.to_string(),
            },
            _ => PullError::Storage {
                image: shown.to_string(),
                message: e.to_string(),
            },
        })
    }

    /// Bounds a registry request by the stall timeout.
    async fn timed<T>(
        &self,
        image: &str,
        fut: impl std::future::Future<Output = T>,
    ) -> Result<T, PullError> {
        match self.options.progress_timeout {
            Some(limit) => tokio::time::timeout(limit, fut)
                .await
                .map_err(|_| PullError::Stalled {
                    image: image.to_string(),
                    timeout: limit,
                }),
            None => Ok(fut.await),
        }
    }
}

/// One client per registry host and pull: its own protocol and TLS roots.
/// (`Client::new` would fall back to a default client on a bad setting; errors
/// must surface instead.)
/// `https`: TLS (verified unless the registry is insecure); else plain HTTP.
fn client_for(
    source: &PullSource,
    tls: &RegistryTls,
    https: bool,
) -> Result<Client, OciDistributionError> {
    let protocol = if https {
        ClientProtocol::Https
    } else {
        ClientProtocol::HttpsExcept(vec![source.name.registry.clone()])
    };
    Client::try_from(ClientConfig {
        protocol,
        accept_invalid_certificates: source.insecure,
        extra_root_certificates: tls.certificates(),
        platform_resolver: None,
        connect_timeout: Some(Duration::from_secs(30)),
        user_agent: concat!("crio-rs/", env!("CARGO_PKG_VERSION")),
        ..ClientConfig::default()
    })
}

/// What an error message about one pull source says besides the error.
#[derive(Debug)]
struct ErrorContext {
    image: String,
    registry: String,
    /// Which TLS files were used (`None` for an insecure registry).
    tls_hint: Option<String>,
    /// A client certificate was configured but not presented.
    client_cert: bool,
}

/// An error and its sources, `: `-separated, each said once (reqwest's own message
/// hides the cause: "error sending request for url (...)").
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(error);
    while let Some(e) = current {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}

/// The rustls error somewhere in `error`'s chain. It sits inside nested
/// `io::Error`s, whose `source()` skips the error they wrap: look inside them too.
fn rustls_cause<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(found) = error.downcast_ref::<rustls::Error>() {
        return Some(found);
    }
    if let Some(inner) = error
        .downcast_ref::<io::Error>()
        .and_then(io::Error::get_ref)
    {
        let inner: &(dyn std::error::Error + 'static) = inner;
        if let Some(found) = rustls_cause(inner) {
            return Some(found);
        }
    }
    error.source().and_then(rustls_cause)
}

/// A transport error as a user can act on it: the whole cause, and for a
/// certificate the registry's TLS files and where a CA would go.
fn transport_message(ctx: &ErrorContext, error: &(dyn std::error::Error + 'static)) -> String {
    let text = chain(error);
    let Some(cause) = rustls_cause(error) else {
        return text;
    };
    let hint = ctx.tls_hint.as_deref().unwrap_or_default();
    match cause {
        rustls::Error::InvalidCertificate(_) => format!(
            "TLS: the certificate of {} is not trusted ({cause}); {hint} [{text}]",
            ctx.registry
        ),
        _ if ctx.client_cert => format!("TLS with {}: {cause}; {hint} [{text}]", ctx.registry),
        _ => format!("TLS with {}: {text}", ctx.registry),
    }
}

fn oci_reference(name: &ImageName) -> Reference {
    match &name.digest {
        Some(digest) => Reference::with_digest(
            name.registry.clone(),
            name.repository.clone(),
            digest.clone(),
        ),
        None => Reference::with_tag(
            name.registry.clone(),
            name.repository.clone(),
            name.tag.clone().unwrap_or_else(|| "latest".into()),
        ),
    }
}

fn classify(ctx: &ErrorContext, error: OciDistributionError) -> PullError {
    let (image, registry) = (ctx.image.as_str(), ctx.registry.as_str());
    let not_found = |codes: &[OciErrorCode]| {
        codes.iter().any(|c| {
            matches!(
                c,
                OciErrorCode::ManifestUnknown
                    | OciErrorCode::NameUnknown
                    | OciErrorCode::NotFound
                    | OciErrorCode::BlobUnknown
            )
        })
    };
    match error {
        OciDistributionError::ImageManifestNotFoundError(_) => {
            PullError::NotFound(image.to_string())
        }
        OciDistributionError::RegistryError { envelope, .. } => {
            let codes: Vec<OciErrorCode> = envelope.errors.into_iter().map(|e| e.code).collect();
            if not_found(&codes) {
                PullError::NotFound(image.to_string())
            } else if codes
                .iter()
                .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
            {
                PullError::Unauthorized {
                    image: image.to_string(),
                    registry: registry.to_string(),
                }
            } else {
                PullError::Registry {
                    image: image.to_string(),
                    message: format!("registry error {codes:?}"),
                }
            }
        }
        OciDistributionError::ServerError { code: 404, .. } => {
            PullError::NotFound(image.to_string())
        }
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_)
        | OciDistributionError::ServerError {
            code: 401 | 403, ..
        } => PullError::Unauthorized {
            image: image.to_string(),
            registry: registry.to_string(),
        },
        OciDistributionError::DigestError(e) => PullError::Invalid {
            image: image.to_string(),
            message: format!("digest verification failed: {e}"),
        },
        other => PullError::Registry {
            image: image.to_string(),
            message: transport_message(ctx, &other),
        },
    }
}

/// A blocking reader over chunks sent from the async download.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
}

impl ChannelReader {
    fn new(rx: tokio::sync::mpsc::Receiver<io::Result<Bytes>>) -> Self {
        Self {
            rx,
            current: Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(bytes)) => self.current = bytes,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}
