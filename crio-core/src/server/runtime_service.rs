//! CRI `RuntimeService`: thin adapters from CRI messages to the core. RPCs this
//! runtime does not serve (checkpointing, `UpdatePodSandboxResources`) keep the
//! generated default, which answers `Unimplemented`.

use std::collections::HashMap;
use std::sync::Arc;

use protocols::cri::runtime_service_server::RuntimeService;
use protocols::cri::{
    AttachRequest, AttachResponse, CgroupDriver, ContainerStatusRequest, ContainerStatusResponse,
    CreateContainerRequest, CreateContainerResponse, ExecRequest, ExecResponse, ExecSyncRequest,
    ExecSyncResponse, LinuxRuntimeConfiguration, ListContainersRequest, ListContainersResponse,
    ListPodSandboxRequest, ListPodSandboxResponse, PodSandboxStatusRequest,
    PodSandboxStatusResponse, PortForwardRequest, PortForwardResponse, RemoveContainerRequest,
    RemoveContainerResponse, RemovePodSandboxRequest, RemovePodSandboxResponse,
    ReopenContainerLogRequest, ReopenContainerLogResponse, RunPodSandboxRequest,
    RunPodSandboxResponse, RuntimeCondition, RuntimeConfigRequest, RuntimeConfigResponse,
    RuntimeFeatures, RuntimeHandler, RuntimeHandlerFeatures, RuntimeStatus, StartContainerRequest,
    StartContainerResponse, StatusRequest, StatusResponse, StopContainerRequest,
    StopContainerResponse, StopPodSandboxRequest, StopPodSandboxResponse, VersionRequest,
    VersionResponse,
};
use protocols::cri::{
    ContainerEventResponse, ContainerStatsRequest, ContainerStatsResponse, GetEventsRequest,
    ListContainerStatsRequest, ListContainerStatsResponse, ListMetricDescriptorsRequest,
    ListMetricDescriptorsResponse, ListPodSandboxMetricsRequest, ListPodSandboxMetricsResponse,
    ListPodSandboxStatsRequest, ListPodSandboxStatsResponse, PodSandboxStatsRequest,
    PodSandboxStatsResponse, UpdateContainerResourcesRequest, UpdateContainerResourcesResponse,
    UpdateRuntimeConfigRequest, UpdateRuntimeConfigResponse,
};
use tonic::{Request, Response, Status};

use super::State;
use crate::error::CriError;
use crate::image::image_config::ImageConfig;
use crate::pods::container::{is_image_volume, ImageVolume};
use crate::runtime::Readiness;
use crate::store::ImageRecord;
use crate::streaming::remotecommand::Streams;
use crate::streaming::StreamRequest;
use crate::version::{CRI_API_VERSION, RUNTIME_NAME};

/// The stream `GetContainerEvents` answers with (tonic's `BoxStream`, which it keeps private).
type EventStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<ContainerEventResponse, Status>> + Send>>;

/// CRI condition types.
const RUNTIME_READY: &str = "RuntimeReady";
const NETWORK_READY: &str = "NetworkReady";

/// `pause_image_auth_file`'s credentials for the pause image's registry (the
/// pause image is a fully qualified name; empty file = none).
fn pause_credentials(
    name: &str,
    auth_file: &str,
) -> Result<Option<crate::image::auth::Credentials>, CriError> {
    if auth_file.is_empty() {
        return Ok(None);
    }
    let file = crate::image::auth::AuthFile::load(std::path::Path::new(auth_file))
        .map_err(|e| CriError::FailedPrecondition(format!("pause_image_auth_file: {e}")))?;
    Ok(match crate::image::reference::ImageName::parse(name) {
        Ok(crate::image::reference::ParsedName::Qualified(n)) => {
            file.lookup(&n.registry, &n.repository)
        }
        _ => None,
    })
}

#[derive(Debug, Clone)]
pub(crate) struct RuntimeServiceImpl {
    state: Arc<State>,
}

impl RuntimeServiceImpl {
    pub(crate) fn new(state: Arc<State>) -> Self {
        Self { state }
    }

    /// `Status` verbose info: CRI-O's `config` (`sandboxImage` and the daemon's
    /// configuration), plus what the kubelet told us and what the host lacks.
    fn verbose_info(&self) -> Result<HashMap<String, String>, Status> {
        let pod_cidrs = self
            .state
            .pod_cidrs
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default();
        let live = self.state.live.current();
        let config = serde_json::json!({
            "sandboxImage": live.crio.image.pause_image,
            "crio": *live,
        });
        let facts = &self.state.pods.config.host;
        let host = serde_json::json!({
            "apparmor": facts.apparmor,
            "selinux": facts.selinux,
            "kernel": facts.kernel_release,
            "swapAccounting": facts.swap_accounting,
        });
        // Each live handler's readiness: RuntimeReady covers the default only, and
        // a handler dropped in with a missing binary or guest shows here.
        let handlers: serde_json::Map<String, serde_json::Value> = self
            .state
            .pods
            .handlers
            .current()
            .readiness()
            .into_iter()
            .map(|(name, readiness)| {
                let value = match readiness {
                    Readiness::Ready => serde_json::json!({"ready": true}),
                    Readiness::NotReady { reason, message } => {
                        serde_json::json!({"ready": false, "reason": reason, "message": message})
                    }
                };
                (name, value)
            })
            .collect();
        let encode = |v: &serde_json::Value| {
            serde_json::to_string(v).map_err(|e| Status::internal(format!("encoding info: {e}")))
        };
        Ok(HashMap::from([
            ("config".to_string(), encode(&config)?),
            (
                "podCIDRs".to_string(),
                encode(&serde_json::json!(pod_cidrs))?,
            ),
            ("host".to_string(), encode(&host)?),
            (
                "runtimeHandlers".to_string(),
                encode(&serde_json::Value::Object(handlers))?,
            ),
        ]))
    }

    /// The configured `pause_image`, pulled when missing (`None` = built-in pause).
    async fn infra_image(&self) -> Result<Option<(ImageRecord, ImageConfig)>, CriError> {
        let live = self.state.live.current();
        let name = &live.crio.image.pause_image;
        if name.is_empty() {
            return Ok(None);
        }
        let registries = self
            .state
            .registries
            .current()
            .map_err(CriError::internal)?;
        let image = match self.state.images.resolve(name, &registries)? {
            Some(image) => image,
            None => {
                tracing::info!(image = %name, "pulling the pause image");
                let credentials = pause_credentials(name, &live.crio.image.pause_image_auth_file)?;
                self.state.puller.pull(name, credentials).await?
            }
        };
        let config = self.state.images.config(&image)?;
        Ok(Some((image, config)))
    }

    async fn conditions(&self) -> Vec<RuntimeCondition> {
        let runtime = match self.state.pods.handlers.current().default_readiness() {
            Readiness::Ready => condition(RUNTIME_READY, true, "", ""),
            Readiness::NotReady { reason, message } => {
                condition(RUNTIME_READY, false, &reason, &message)
            }
        };
        let network = match self.state.pods.network.readiness().await {
            Ok(()) => condition(NETWORK_READY, true, "", ""),
            Err(message) => condition(NETWORK_READY, false, "NetworkPluginNotReady", &message),
        };
        vec![runtime, network]
    }

    /// The live handlers, "" first as the default.
    fn handlers(&self) -> Vec<RuntimeHandler> {
        let handlers = self.state.pods.handlers.current();
        let features = |h: &crate::runtime::Handler| {
            Some(RuntimeHandlerFeatures {
                recursive_read_only_mounts: h.features.recursive_read_only_mounts,
                user_namespaces: h.features.user_namespaces,
            })
        };
        handlers
            .resolve("")
            .map(|default| RuntimeHandler {
                name: String::new(),
                features: features(default),
            })
            .into_iter()
            .chain(handlers.handlers().iter().map(|h| RuntimeHandler {
                name: h.name.clone(),
                features: features(h),
            }))
            .collect()
    }
}

fn condition(kind: &str, status: bool, reason: &str, message: &str) -> RuntimeCondition {
    RuntimeCondition {
        r#type: kind.into(),
        status,
        reason: reason.into(),
        message: message.into(),
    }
}

#[tonic::async_trait]
impl RuntimeService for RuntimeServiceImpl {
    async fn version(
        &self,
        _request: Request<VersionRequest>,
    ) -> Result<Response<VersionResponse>, Status> {
        Ok(Response::new(VersionResponse {
            // The kubelet's remote runtime API version, kept at "0.1.0" by every runtime.
            version: "0.1.0".into(),
            runtime_name: RUNTIME_NAME.into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            runtime_api_version: CRI_API_VERSION.into(),
        }))
    }

    async fn status(
        &self,
        request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let mut info = HashMap::new();
        if request.get_ref().verbose {
            info = self.verbose_info()?;
        }
        Ok(Response::new(StatusResponse {
            status: Some(RuntimeStatus {
                conditions: self.conditions().await,
            }),
            info,
            runtime_handlers: self.handlers(),
            features: Some(RuntimeFeatures {
                supplemental_groups_policy: true,
                user_namespaces_host_network: false,
            }),
        }))
    }

    async fn runtime_config(
        &self,
        _request: Request<RuntimeConfigRequest>,
    ) -> Result<Response<RuntimeConfigResponse>, Status> {
        let driver = match self.state.config.crio.runtime.cgroup_manager.as_str() {
            "systemd" => CgroupDriver::Systemd,
            _ => CgroupDriver::Cgroupfs,
        };
        Ok(Response::new(RuntimeConfigResponse {
            linux: Some(LinuxRuntimeConfiguration {
                cgroup_driver: driver as i32,
            }),
        }))
    }

    async fn run_pod_sandbox(
        &self,
        request: Request<RunPodSandboxRequest>,
    ) -> Result<Response<RunPodSandboxResponse>, Status> {
        let request = request.into_inner();
        let config = request
            .config
            .ok_or_else(|| CriError::InvalidArgument("RunPodSandbox needs a config".into()))?;
        // A pod without a pause process needs no pause image.
        let infra = if self
            .state
            .pods
            .needs_infra(&config, &request.runtime_handler)
        {
            self.infra_image().await?
        } else {
            None
        };
        let id = self
            .state
            .pods
            .run_sandbox(
                &config,
                &request.runtime_handler,
                infra.as_ref().map(|(i, c)| (i, c)),
            )
            .await?;
        tracing::info!(pod = %id, "ran pod sandbox");
        Ok(Response::new(RunPodSandboxResponse { pod_sandbox_id: id }))
    }

    async fn stop_pod_sandbox(
        &self,
        request: Request<StopPodSandboxRequest>,
    ) -> Result<Response<StopPodSandboxResponse>, Status> {
        let id = request.into_inner().pod_sandbox_id;
        self.state.pods.stop_sandbox(&id).await?;
        Ok(Response::new(StopPodSandboxResponse {}))
    }

    async fn remove_pod_sandbox(
        &self,
        request: Request<RemovePodSandboxRequest>,
    ) -> Result<Response<RemovePodSandboxResponse>, Status> {
        let id = request.into_inner().pod_sandbox_id;
        let removed = self.state.pods.remove_sandbox(&id).await;
        // What the pod's records, logs and buffers held is free now.
        let _ = crate::memory::trim_soon();
        removed?;
        Ok(Response::new(RemovePodSandboxResponse {}))
    }

    async fn pod_sandbox_status(
        &self,
        request: Request<PodSandboxStatusRequest>,
    ) -> Result<Response<PodSandboxStatusResponse>, Status> {
        let id = request.into_inner().pod_sandbox_id;
        let pods = &self.state.pods;
        let record = pods
            .sandbox(&id)?
            .ok_or_else(|| CriError::NotFound(format!("pod sandbox {id} not found")))?;
        Ok(Response::new(PodSandboxStatusResponse {
            status: Some(pods.sandbox_status(&record)),
            ..Default::default()
        }))
    }

    async fn list_pod_sandbox(
        &self,
        request: Request<ListPodSandboxRequest>,
    ) -> Result<Response<ListPodSandboxResponse>, Status> {
        let filter = request.into_inner().filter;
        let items = self.state.pods.list_sandboxes(filter.as_ref())?;
        Ok(Response::new(ListPodSandboxResponse { items }))
    }

    async fn create_container(
        &self,
        request: Request<CreateContainerRequest>,
    ) -> Result<Response<CreateContainerResponse>, Status> {
        let request = request.into_inner();
        let config = request
            .config
            .ok_or_else(|| CriError::InvalidArgument("CreateContainer needs a config".into()))?;
        let spec = config
            .image
            .as_ref()
            .map(|i| i.image.as_str())
            .filter(|i| !i.is_empty())
            .ok_or_else(|| CriError::InvalidArgument("ContainerConfig.image is required".into()))?;
        let registries = self
            .state
            .registries
            .current()
            .map_err(CriError::internal)?;
        let pulled = |name: &str, what: String| {
            self.state
                .images
                .resolve(name, &registries)
                .map_err(CriError::from)?
                .ok_or_else(|| CriError::NotFound(format!("{what} not found: pull it first")))
        };
        let image = pulled(spec, format!("image {spec:?}"))?;
        let image_config = self.state.images.config(&image).map_err(CriError::from)?;
        // Image volumes name images the kubelet pulled (by the id PullImage returned).
        let mut volumes = Vec::new();
        for mount in config.mounts.iter().filter(|m| is_image_volume(m)) {
            let name = mount.image.as_ref().map_or("", |i| i.image.as_str());
            let what = format!("image volume {}: image {name:?}", mount.container_path);
            volumes.push(ImageVolume {
                container_path: mount.container_path.clone(),
                image: pulled(name, what)?,
                sub_path: mount.image_sub_path.clone(),
            });
        }
        let id = self
            .state
            .pods
            .create_container(
                &request.pod_sandbox_id,
                &config,
                &image,
                &image_config,
                &volumes,
            )
            .await?;
        tracing::info!(container = %id, pod = %request.pod_sandbox_id, "created container");
        Ok(Response::new(CreateContainerResponse { container_id: id }))
    }

    async fn start_container(
        &self,
        request: Request<StartContainerRequest>,
    ) -> Result<Response<StartContainerResponse>, Status> {
        let id = request.into_inner().container_id;
        self.state.pods.start_container(&id).await?;
        Ok(Response::new(StartContainerResponse {}))
    }

    async fn stop_container(
        &self,
        request: Request<StopContainerRequest>,
    ) -> Result<Response<StopContainerResponse>, Status> {
        let request = request.into_inner();
        self.state
            .pods
            .stop_container(&request.container_id, request.timeout)
            .await?;
        Ok(Response::new(StopContainerResponse {}))
    }

    async fn remove_container(
        &self,
        request: Request<RemoveContainerRequest>,
    ) -> Result<Response<RemoveContainerResponse>, Status> {
        let id = request.into_inner().container_id;
        let removed = self.state.pods.remove_container(&id).await;
        let _ = crate::memory::trim_soon();
        removed?;
        Ok(Response::new(RemoveContainerResponse {}))
    }

    async fn list_containers(
        &self,
        request: Request<ListContainersRequest>,
    ) -> Result<Response<ListContainersResponse>, Status> {
        let filter = request.into_inner().filter;
        let containers = self.state.pods.list_containers(filter.as_ref())?;
        Ok(Response::new(ListContainersResponse { containers }))
    }

    async fn container_status(
        &self,
        request: Request<ContainerStatusRequest>,
    ) -> Result<Response<ContainerStatusResponse>, Status> {
        let request = request.into_inner();
        let pods = &self.state.pods;
        let record = pods.container(&request.container_id)?;
        let mut info = std::collections::HashMap::new();
        if request.verbose {
            // What `crictl inspect` shows beyond the status (CRI-O's "info" key).
            let verbose = serde_json::json!({
                "sandboxID": record.sandbox_id,
                "pid": pods.pid_of(&record),
                "logPath": record.log_path,
                "logDroppedBytes": pods.log_dropped_bytes(&record.id),
            });
            info.insert("info".to_string(), verbose.to_string());
        }
        Ok(Response::new(ContainerStatusResponse {
            status: Some(pods.container_status(&record)),
            info,
        }))
    }

    async fn exec_sync(
        &self,
        request: Request<ExecSyncRequest>,
    ) -> Result<Response<ExecSyncResponse>, Status> {
        let request = request.into_inner();
        let timeout = std::time::Duration::from_secs(u64::try_from(request.timeout).unwrap_or(0));
        let out = self
            .state
            .pods
            .exec_sync(&request.container_id, &request.cmd, timeout)
            .await?;
        Ok(Response::new(ExecSyncResponse {
            stdout: out.stdout,
            stderr: out.stderr,
            exit_code: out.exit_code,
        }))
    }

    async fn exec(&self, request: Request<ExecRequest>) -> Result<Response<ExecResponse>, Status> {
        let r = request.into_inner();
        if r.cmd.is_empty() {
            return Err(CriError::InvalidArgument("Exec needs a command".into()).into());
        }
        // The kubelet's streaming server rules.
        Streams {
            stdin: r.stdin,
            stdout: r.stdout,
            stderr: r.stderr,
            tty: r.tty,
        }
        .validate()?;
        let container = self.state.pods.running_container(&r.container_id)?;
        let url = self
            .state
            .streaming
            .url_for(StreamRequest::Exec {
                container_id: container.id,
                cmd: r.cmd,
                tty: r.tty,
                stdin: r.stdin,
                stdout: r.stdout,
                stderr: r.stderr,
            })
            .map_err(CriError::from)?;
        Ok(Response::new(ExecResponse { url }))
    }

    async fn attach(
        &self,
        request: Request<AttachRequest>,
    ) -> Result<Response<AttachResponse>, Status> {
        let r = request.into_inner();
        Streams {
            stdin: r.stdin,
            stdout: r.stdout,
            stderr: r.stderr,
            tty: r.tty,
        }
        .validate()?;
        let container = self.state.pods.running_container(&r.container_id)?;
        if r.stdin && !container.stdin {
            return Err(CriError::InvalidArgument(format!(
                "container {} was not created with stdin",
                container.id
            ))
            .into());
        }
        let url = self
            .state
            .streaming
            .url_for(StreamRequest::Attach {
                container_id: container.id,
                tty: r.tty,
                stdin: r.stdin,
                stdout: r.stdout,
                stderr: r.stderr,
            })
            .map_err(CriError::from)?;
        Ok(Response::new(AttachResponse { url }))
    }

    async fn port_forward(
        &self,
        request: Request<PortForwardRequest>,
    ) -> Result<Response<PortForwardResponse>, Status> {
        let r = request.into_inner();
        let pod = self.state.pods.sandbox(&r.pod_sandbox_id)?.ok_or_else(|| {
            CriError::NotFound(format!("pod sandbox {:?} not found", r.pod_sandbox_id))
        })?;
        let ports = r
            .port
            .iter()
            .map(|p| {
                u16::try_from(*p)
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| CriError::InvalidArgument(format!("invalid port {p}")))
            })
            .collect::<Result<Vec<u16>, _>>()?;
        let url = self
            .state
            .streaming
            .url_for(StreamRequest::PortForward {
                pod_sandbox_id: pod.id,
                ports,
            })
            .map_err(CriError::from)?;
        Ok(Response::new(PortForwardResponse { url }))
    }

    async fn reopen_container_log(
        &self,
        request: Request<ReopenContainerLogRequest>,
    ) -> Result<Response<ReopenContainerLogResponse>, Status> {
        let id = request.into_inner().container_id;
        self.state.pods.reopen_container_log(&id)?;
        Ok(Response::new(ReopenContainerLogResponse {}))
    }

    async fn container_stats(
        &self,
        request: Request<ContainerStatsRequest>,
    ) -> Result<Response<ContainerStatsResponse>, Status> {
        let id = request.into_inner().container_id;
        let stats = self.state.pods.container_stats(&id).await?;
        Ok(Response::new(ContainerStatsResponse { stats: Some(stats) }))
    }

    async fn list_container_stats(
        &self,
        request: Request<ListContainerStatsRequest>,
    ) -> Result<Response<ListContainerStatsResponse>, Status> {
        let filter = request.into_inner().filter;
        let stats = self
            .state
            .pods
            .list_container_stats(filter.as_ref())
            .await?;
        Ok(Response::new(ListContainerStatsResponse { stats }))
    }

    async fn pod_sandbox_stats(
        &self,
        request: Request<PodSandboxStatsRequest>,
    ) -> Result<Response<PodSandboxStatsResponse>, Status> {
        let id = request.into_inner().pod_sandbox_id;
        let stats = self.state.pods.pod_sandbox_stats(&id).await?;
        Ok(Response::new(PodSandboxStatsResponse {
            stats: Some(stats),
        }))
    }

    async fn list_pod_sandbox_stats(
        &self,
        request: Request<ListPodSandboxStatsRequest>,
    ) -> Result<Response<ListPodSandboxStatsResponse>, Status> {
        let filter = request.into_inner().filter;
        let stats = self
            .state
            .pods
            .list_pod_sandbox_stats(filter.as_ref())
            .await?;
        Ok(Response::new(ListPodSandboxStatsResponse { stats }))
    }

    async fn update_container_resources(
        &self,
        request: Request<UpdateContainerResourcesRequest>,
    ) -> Result<Response<UpdateContainerResourcesResponse>, Status> {
        let request = request.into_inner();
        self.state
            .pods
            .update_container_resources(&request.container_id, request.linux.as_ref())
            .await?;
        Ok(Response::new(UpdateContainerResourcesResponse {}))
    }

    async fn update_runtime_config(
        &self,
        request: Request<UpdateRuntimeConfigRequest>,
    ) -> Result<Response<UpdateRuntimeConfigResponse>, Status> {
        let cidr = request
            .into_inner()
            .runtime_config
            .and_then(|c| c.network_config)
            .map(|n| n.pod_cidr)
            .unwrap_or_default();
        let cidrs = parse_pod_cidrs(&cidr)?;
        if !cidrs.is_empty() {
            tracing::info!(pod_cidr = %cidr, "pod CIDR from the kubelet");
            if let Ok(mut held) = self.state.pod_cidrs.lock() {
                *held = cidrs;
            }
        }
        Ok(Response::new(UpdateRuntimeConfigResponse {}))
    }

    async fn list_metric_descriptors(
        &self,
        _request: Request<ListMetricDescriptorsRequest>,
    ) -> Result<Response<ListMetricDescriptorsResponse>, Status> {
        Ok(Response::new(ListMetricDescriptorsResponse {
            descriptors: self.state.pods.metric_descriptors(),
        }))
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _request: Request<ListPodSandboxMetricsRequest>,
    ) -> Result<Response<ListPodSandboxMetricsResponse>, Status> {
        Ok(Response::new(ListPodSandboxMetricsResponse {
            pod_metrics: self.state.pods.pod_sandbox_metrics().await?,
        }))
    }

    async fn get_container_events(
        &self,
        _request: Request<GetEventsRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let rx = self.state.pods.subscribe_events();
        let metrics = self.state.metrics.clone();
        let stream = futures::stream::unfold((rx, metrics), |(mut rx, metrics)| async move {
            loop {
                match rx.recv().await {
                    Ok(event) => return Some((Ok(event), (rx, metrics))),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(dropped = n, "a GetContainerEvents client fell behind");
                        metrics.events_dropped(n);
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

/// `pod_cidr` as the kubelet sends it: one CIDR, or a comma-separated pair for
/// dual-stack; empty = nothing to change.
fn parse_pod_cidrs(text: &str) -> Result<Vec<String>, CriError> {
    text.split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(|c| {
            let (ip, len) = c.split_once('/').ok_or_else(|| {
                CriError::InvalidArgument(format!("pod_cidr {c:?} is not a CIDR"))
            })?;
            let ip: std::net::IpAddr = ip
                .parse()
                .map_err(|_| CriError::InvalidArgument(format!("pod_cidr {c:?} is not a CIDR")))?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            match len.parse::<u8>() {
                Ok(l) if l <= max => Ok(c.to_string()),
                _ => Err(CriError::InvalidArgument(format!(
                    "pod_cidr {c:?} has a bad prefix length"
                ))),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_cidrs_parse_single_and_dual_stack() {
        assert_eq!(parse_pod_cidrs("").expect("empty"), Vec::<String>::new());
        assert_eq!(
            parse_pod_cidrs("10.244.1.0/24, fd00:1::/64").expect("dual"),
            ["10.244.1.0/24", "fd00:1::/64"]
        );
        assert!(parse_pod_cidrs("10.244.1.0").is_err());
        assert!(parse_pod_cidrs("10.244.1.0/33").is_err());
        assert!(parse_pod_cidrs("nope/8").is_err());
    }
}
