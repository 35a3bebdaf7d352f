//! Pod and container configs as the kubelet sends them, and waiting on their states.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use protocols::cri::{
    ContainerConfig, ContainerMetadata, ContainerState, ContainerStatus, ContainerStatusRequest,
    CreateContainerRequest, ImageSpec, LinuxPodSandboxConfig, LinuxSandboxSecurityContext,
    NamespaceMode, NamespaceOption, PodSandboxConfig, PodSandboxMetadata, RunPodSandboxRequest,
    StartContainerRequest,
};

use crate::cri::CriClient;

/// A pod config with a unique uid, logging under `log_dir`.
pub fn pod_config(name: &str, log_dir: &Path) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.to_string(),
            uid: format!("uid-{name}-{}", std::process::id()),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: name.to_string(),
        log_directory: log_dir.join(name).display().to_string(),
        labels: HashMap::from([("app".to_string(), name.to_string())]),
        // As the kubelet sends every pod: each container in a PID namespace of its
        // own unless the pod shares one.
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    pid: NamespaceMode::Container as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The pod's namespace options, as the kubelet repeats them for each container.
fn kubelet_namespaces(pod: &PodSandboxConfig) -> NamespaceOption {
    pod.linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.clone())
        .unwrap_or_default()
}

/// Whether a kubelet-shaped pod (no shared PID namespace) of `handler` runs a pause
/// process: our shims serve pods without one (`drop_infra_ctr`); containerd's Go
/// shim, which never said it can, gets one.
pub fn has_pause(handler: &str) -> bool {
    handler == "go"
}

/// The same pod on the host's network.
pub fn host_network(mut config: PodSandboxConfig) -> PodSandboxConfig {
    config.linux = Some(LinuxPodSandboxConfig {
        security_context: Some(LinuxSandboxSecurityContext {
            namespace_options: Some(NamespaceOption {
                network: NamespaceMode::Node as i32,
                pid: NamespaceMode::Container as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    config
}

/// The same pod with one PID namespace shared by its containers (pause is PID 1).
pub fn shared_pid(mut config: PodSandboxConfig) -> PodSandboxConfig {
    config.linux = Some(LinuxPodSandboxConfig {
        security_context: Some(LinuxSandboxSecurityContext {
            namespace_options: Some(NamespaceOption {
                pid: NamespaceMode::Pod as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    config
}

/// A container running `sh -c script` from `image`, logging to `<name>.log`.
pub fn container_config(name: &str, image: &str, script: &str) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.to_string(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: image.to_string(),
            ..Default::default()
        }),
        command: vec!["sh".into(), "-c".into(), script.to_string()],
        log_path: format!("{name}.log"),
        ..Default::default()
    }
}

impl CriClient {
    pub async fn run_pod(
        &mut self,
        config: &PodSandboxConfig,
        handler: &str,
    ) -> Result<String, tonic::Status> {
        self.runtime
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: handler.to_string(),
            })
            .await
            .map(|r| r.into_inner().pod_sandbox_id)
    }

    /// CreateContainer as the kubelet sends it: a config that names no namespace
    /// options gets the pod's (the kubelet always sends them; a request without them
    /// means POD for the PID namespace, see `create_container_raw`).
    pub async fn create_container(
        &mut self,
        pod_id: &str,
        config: &ContainerConfig,
        pod: &PodSandboxConfig,
    ) -> Result<String, tonic::Status> {
        let mut config = config.clone();
        let sc = config
            .linux
            .get_or_insert_with(Default::default)
            .security_context
            .get_or_insert_with(Default::default);
        if sc.namespace_options.is_none() {
            sc.namespace_options = Some(kubelet_namespaces(pod));
        }
        self.create_container_raw(pod_id, &config, pod).await
    }

    /// CreateContainer with `config` exactly as given.
    pub async fn create_container_raw(
        &mut self,
        pod_id: &str,
        config: &ContainerConfig,
        pod: &PodSandboxConfig,
    ) -> Result<String, tonic::Status> {
        self.runtime
            .create_container(CreateContainerRequest {
                pod_sandbox_id: pod_id.to_string(),
                config: Some(config.clone()),
                sandbox_config: Some(pod.clone()),
            })
            .await
            .map(|r| r.into_inner().container_id)
    }

    /// StopPodSandbox then RemovePodSandbox. Panics on failure.
    pub async fn stop_and_remove_pod(&mut self, pod_id: &str) {
        self.runtime
            .stop_pod_sandbox(protocols::cri::StopPodSandboxRequest {
                pod_sandbox_id: pod_id.to_string(),
            })
            .await
            .expect("StopPodSandbox");
        self.runtime
            .remove_pod_sandbox(protocols::cri::RemovePodSandboxRequest {
                pod_sandbox_id: pod_id.to_string(),
            })
            .await
            .expect("RemovePodSandbox");
    }

    /// A container created (kubelet-shaped) and started; its id. Panics on failure.
    pub async fn started_container(
        &mut self,
        pod_id: &str,
        config: &ContainerConfig,
        pod: &PodSandboxConfig,
    ) -> String {
        let id = self
            .create_container(pod_id, config, pod)
            .await
            .expect("CreateContainer");
        self.start_container(&id).await.expect("StartContainer");
        id
    }

    pub async fn start_container(&mut self, id: &str) -> Result<(), tonic::Status> {
        self.runtime
            .start_container(StartContainerRequest {
                container_id: id.to_string(),
            })
            .await
            .map(|_| ())
    }

    pub async fn container_status(&mut self, id: &str) -> Result<ContainerStatus, tonic::Status> {
        self.runtime
            .container_status(ContainerStatusRequest {
                container_id: id.to_string(),
                verbose: false,
            })
            .await
            .map(|r| r.into_inner().status.unwrap_or_default())
    }

    /// PodSandboxStatus of a pod that must exist.
    pub async fn pod_status(&mut self, id: &str) -> protocols::cri::PodSandboxStatus {
        self.runtime
            .pod_sandbox_status(protocols::cri::PodSandboxStatusRequest {
                pod_sandbox_id: id.to_string(),
                verbose: false,
            })
            .await
            .expect("PodSandboxStatus")
            .into_inner()
            .status
            .expect("status")
    }

    /// Every pod ListPodSandbox reports.
    pub async fn pods(&mut self) -> Vec<protocols::cri::PodSandbox> {
        self.runtime
            .list_pod_sandbox(protocols::cri::ListPodSandboxRequest::default())
            .await
            .expect("ListPodSandbox")
            .into_inner()
            .items
    }

    /// Every container ListContainers reports.
    pub async fn containers(&mut self) -> Vec<protocols::cri::Container> {
        self.runtime
            .list_containers(protocols::cri::ListContainersRequest::default())
            .await
            .expect("ListContainers")
            .into_inner()
            .containers
    }

    /// ExecSync with a 10 s timeout.
    pub async fn exec(&mut self, id: &str, cmd: &[&str]) -> protocols::cri::ExecSyncResponse {
        self.try_exec(id, cmd).await.expect("ExecSync")
    }

    /// ExecSync with a 10 s timeout, its error returned.
    pub async fn try_exec(
        &mut self,
        id: &str,
        cmd: &[&str],
    ) -> Result<protocols::cri::ExecSyncResponse, tonic::Status> {
        self.runtime
            .exec_sync(protocols::cri::ExecSyncRequest {
                container_id: id.to_string(),
                cmd: cmd.iter().map(|s| s.to_string()).collect(),
                timeout: 10,
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// Polls ContainerStatus until the container has exited.
    pub async fn wait_exited(&mut self, id: &str, timeout: Duration) -> ContainerStatus {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.container_status(id).await.expect("ContainerStatus");
            if status.state == ContainerState::ContainerExited as i32 {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "container {id} still {:?} after {timeout:?}",
                ContainerState::try_from(status.state)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Polls `path` until it contains `needle`.
pub async fn wait_for_file_text(path: &Path, needle: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{} never contained {needle:?}; it holds:\n{text}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Writes a seccomp profile in the containers/Docker format that allows
/// everything but `syscalls` (they fail with an errno).
pub fn refusing_seccomp_profile(path: &Path, syscalls: &[&str]) {
    let names: Vec<String> = syscalls.iter().map(|s| format!("{s:?}")).collect();
    let profile = format!(
        r#"{{"defaultAction": "SCMP_ACT_ALLOW", "archMap": [{{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]}}],
            "syscalls": [{{"names": [{}], "action": "SCMP_ACT_ERRNO"}}]}}"#,
        names.join(", ")
    );
    std::fs::write(path, profile).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}
