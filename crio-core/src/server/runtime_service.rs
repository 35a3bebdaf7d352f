//! CRI `RuntimeService`: thin adapters from CRI messages to the core. RPCs whose work
//! has not landed keep the generated default, which answers `Unimplemented`.

use std::collections::HashMap;
use std::sync::Arc;

use protocols::cri::runtime_service_server::RuntimeService;
use protocols::cri::{
    CgroupDriver, LinuxRuntimeConfiguration, RuntimeCondition, RuntimeConfigRequest,
    RuntimeConfigResponse, RuntimeFeatures, RuntimeHandler, RuntimeHandlerFeatures, RuntimeStatus,
    StatusRequest, StatusResponse, VersionRequest, VersionResponse,
};
use tonic::{Request, Response, Status};

use super::State;
use crate::runtime::Readiness;
use crate::version::{CRI_API_VERSION, RUNTIME_NAME};

/// CRI condition types.
const RUNTIME_READY: &str = "RuntimeReady";
const NETWORK_READY: &str = "NetworkReady";

#[derive(Debug, Clone)]
pub struct RuntimeServiceImpl {
    state: Arc<State>,
}

impl RuntimeServiceImpl {
    pub fn new(state: Arc<State>) -> Self {
        Self { state }
    }

    fn conditions(&self) -> Vec<RuntimeCondition> {
        let runtime = match self.state.handlers.default_readiness() {
            Readiness::Ready => condition(RUNTIME_READY, true, "", ""),
            Readiness::NotReady { reason, message } => {
                condition(RUNTIME_READY, false, &reason, &message)
            }
        };
        let net = &self.state.config.crio.network;
        let network = match crate::network::find_network(
            &net.network_dir,
            &net.plugin_dirs,
            &net.cni_default_network,
        ) {
            Ok(_) => condition(NETWORK_READY, true, "", ""),
            Err(e) => condition(
                NETWORK_READY,
                false,
                "NetworkPluginNotReady",
                &e.to_string(),
            ),
        };
        vec![runtime, network]
    }

    fn handlers(&self) -> Vec<RuntimeHandler> {
        // No handler supports these yet: reported as they are, never assumed.
        let features = RuntimeHandlerFeatures {
            recursive_read_only_mounts: false,
            user_namespaces: false,
        };
        let mut out = vec![RuntimeHandler {
            name: String::new(),
            features: Some(features),
        }];
        out.extend(
            self.state
                .handlers
                .handlers()
                .iter()
                .map(|h| RuntimeHandler {
                    name: h.name.clone(),
                    features: Some(features),
                }),
        );
        out
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
            let config = serde_json::to_string(&self.state.config)
                .map_err(|e| Status::internal(format!("encoding config: {e}")))?;
            info.insert("config".to_string(), config);
        }
        Ok(Response::new(StatusResponse {
            status: Some(RuntimeStatus {
                conditions: self.conditions(),
            }),
            info,
            runtime_handlers: self.handlers(),
            features: Some(RuntimeFeatures {
                supplemental_groups_policy: false,
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
}
