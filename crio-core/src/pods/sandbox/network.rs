//! A pod's attachment to the node's CNI network: ADD on RunPodSandbox (while its
//! pause task starts), DEL on StopPodSandbox and on removal, CHECK and GC when a
//! restarted daemon recovers its pods.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use protocols::cri;
use serde_json::Value;

use super::PodRuntime;
use crate::error::CriError;
use crate::network::{pinned_ns, pod_ips, pod_request, Attachment, CniNetwork, POD_IFNAME};
use crate::store::SandboxRecord;
use crate::store::SandboxState;

/// What RunPodSandbox attaches a pod with, checked before anything is created.
#[derive(Debug)]
pub(super) struct NetworkPlan {
    pub network: CniNetwork,
    pub runtime_config: serde_json::Map<String, Value>,
}

/// An ADD that finished: its result and how long the plugins took.
pub(super) struct Added {
    pub result: Result<Value, CriError>,
    pub elapsed: Duration,
}

impl PodRuntime {
    /// For a pod with its own network: the node's network (ready or a
    /// FailedPrecondition naming what is missing) and the runtime config its
    /// annotations and port mappings ask for (InvalidArgument when they are wrong).
    pub(super) fn plan_network(
        &self,
        config: &cri::PodSandboxConfig,
        cgroup_parent: &str,
    ) -> Result<NetworkPlan, CriError> {
        let mut runtime_config = pod_request::runtime_config(config, cgroup_parent)
            .map_err(|e| CriError::InvalidArgument(e.to_string()))?;
        if !self.config.hostport_mapping {
            // `disable_hostport_mapping`: accepted, left to whatever maps them.
            runtime_config.remove("portMappings");
        }
        let network = self
            .network
            .current()
            .map_err(|e| CriError::FailedPrecondition(format!("pod network is not ready: {e}")))?;
        Ok(NetworkPlan {
            network,
            runtime_config,
        })
    }

    /// Notes in the record the attachment about to be made (the caller commits it
    /// before ADD runs, so a crash during ADD leaves a DEL to run).
    pub(super) fn record_attachment(record: &mut SandboxRecord, plan: &NetworkPlan) {
        record.network_config = plan.network.list.to_json();
        record.network_runtime_config = Value::Object(plan.runtime_config.clone()).to_string();
    }

    /// CNI ADD of the pod into `record`'s pinned network namespace, as recorded.
    pub(super) fn attach(
        &self,
        record: &SandboxRecord,
        plan: NetworkPlan,
    ) -> impl std::future::Future<Output = Added> + Send + 'static {
        let attachment = Attachment {
            container_id: record.id.clone(),
            netns: Some(PathBuf::from(&record.netns_path)),
            ifname: POD_IFNAME.into(),
            args: pod_request::cni_args(&super::sandbox_metadata(record), &record.id),
            runtime_config: plan.runtime_config,
        };
        let networks = self.network.clone();
        async move {
            let started = Instant::now();
            let result = networks
                .cni()
                .add(&plan.network, &attachment)
                .await
                .map_err(CriError::from);
            Added {
                result,
                elapsed: started.elapsed(),
            }
        }
    }

    /// Keeps an ADD's outcome in the record: the result and the pod's IPs.
    pub(super) fn finish_attach(record: &mut SandboxRecord, added: &Added) {
        if let Ok(result) = &added.result {
            record.network_result = result.to_string();
            record.ips = pod_ips::from_result(result)
                .iter()
                .map(ToString::to_string)
                .collect();
            tracing::info!(
                pod = %record.id,
                ips = ?record.ips,
                cni_add_ms = crate::pods::ms(added.elapsed),
                "pod network attached"
            );
        }
    }

    /// DEL with the list and result the pod was attached with; idempotent, and
    /// works when the namespace is already gone. On success the record no longer
    /// holds an attachment (the caller persists it).
    pub(super) async fn detach_network(&self, record: &mut SandboxRecord) -> Result<(), CriError> {
        if record.network_config.is_empty() {
            return Ok(());
        }
        let (net, attachment, added) = self.attachment_of(record)?;
        self.network
            .cni()
            .del(&net, &attachment, added.as_ref())
            .await?;
        tracing::info!(pod = %record.id, "pod network detached");
        record.network_config.clear();
        record.network_result.clear();
        record.network_runtime_config.clear();
        Ok(())
    }

    fn attachment_of(
        &self,
        record: &SandboxRecord,
    ) -> Result<(CniNetwork, Attachment, Option<Value>), CriError> {
        let net = self
            .network
            .cached(&record.network_config)
            .map_err(|e| CriError::FailedPrecondition(e.to_string()))?;
        let runtime_config = match serde_json::from_str(&record.network_runtime_config) {
            Ok(Value::Object(map)) => map,
            _ => Default::default(),
        };
        let netns = Path::new(&record.netns_path);
        let attachment = Attachment {
            container_id: record.id.clone(),
            netns: (!record.netns_path.is_empty() && pinned_ns::is_pinned(netns))
                .then(|| netns.to_path_buf()),
            ifname: POD_IFNAME.into(),
            args: pod_request::cni_args(&super::sandbox_metadata(record), &record.id),
            runtime_config,
        };
        let added = serde_json::from_str(&record.network_result).ok();
        Ok((net, attachment, added))
    }

    /// PortForward's dial: a TCP connection to `port` on the pod's loopback, made
    /// inside its network namespace (the host's for a host-network pod), or, for
    /// a pod whose network ends in a VM, through its shim's relay to the guest's
    /// loopback.
    pub(crate) async fn dial_pod_port(
        &self,
        pod_id: &str,
        port: u16,
    ) -> Result<PodConnection, CriError> {
        let record = self
            .sandbox(pod_id)?
            .ok_or_else(|| CriError::NotFound(format!("pod sandbox {pod_id:?} not found")))?;
        if record.state != SandboxState::Ready {
            return Err(CriError::FailedPrecondition(format!(
                "pod sandbox {} is not ready",
                record.id
            )));
        }
        if self
            .pod_handler(&record)
            .is_ok_and(|h| h.features.pod_in_vm)
        {
            return dial_relay(&record, port).await.map(PodConnection::Relay);
        }
        let netns = (!record.netns_path.is_empty()).then(|| PathBuf::from(&record.netns_path));
        let dialed =
            tokio::task::spawn_blocking(move || pinned_ns::connect_in(netns.as_deref(), port))
                .await
                .map_err(CriError::internal)?;
        let stream = dialed
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .and_then(tokio::net::TcpStream::from_std)
            .map_err(|e| {
                CriError::Unavailable(format!(
                    "failed to connect to localhost:{port} inside pod sandbox {}: {e}",
                    record.id
                ))
            })?;
        Ok(PodConnection::Tcp(stream))
    }

    /// After a restart: CHECK every ready pod's attachment, then GC what no pod
    /// holds. In the background; failures are logged for the operator.
    pub(in crate::pods) fn spawn_network_recovery(self: &Arc<Self>) {
        let pods = self.clone();
        tokio::spawn(async move {
            let Ok(records) = pods.store.list::<SandboxRecord>() else {
                return;
            };
            for record in records
                .iter()
                .filter(|r| r.state == SandboxState::Ready && !r.network_result.is_empty())
            {
                let checked = match pods.attachment_of(record) {
                    Ok((net, att, Some(added))) => pods
                        .network
                        .cni()
                        .check(&net, &att, &added)
                        .await
                        .map_err(|e| e.to_string()),
                    Ok(_) => Ok(false),
                    Err(e) => Err(e.to_string()),
                };
                match checked {
                    Ok(true) => tracing::info!(pod = %record.id, "pod network checked"),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(pod = %record.id, "pod network check failed: {e}"),
                }
            }
            let Ok(net) = pods.network.current() else {
                return;
            };
            let valid: Vec<(String, String)> = records
                .iter()
                .filter(|r| !r.network_config.is_empty())
                .map(|r| (r.id.clone(), POD_IFNAME.to_string()))
                .collect();
            match pods.network.cni().gc(&net, &valid).await {
                Ok(true) => tracing::info!(network = %net.name(), "CNI garbage collected"),
                Ok(false) => {}
                Err(e) => tracing::warn!(network = %net.name(), "CNI GC: {e}"),
            }
        });
    }
}

/// The IPs a pod status reports: primary, then the others.
pub(super) fn network_status(record: &SandboxRecord) -> cri::PodSandboxNetworkStatus {
    let mut ips = record.ips.iter();
    cri::PodSandboxNetworkStatus {
        ip: ips.next().cloned().unwrap_or_default(),
        additional_ips: ips.map(|ip| cri::PodIp { ip: ip.clone() }).collect(),
    }
}

/// A connection to a pod's port.
#[derive(Debug)]
pub(crate) enum PodConnection {
    /// Dialled in the pod's network namespace.
    Tcp(tokio::net::TcpStream),
    /// Through a VM shim's relay (its `<task socket>.pf`) to the guest.
    Relay(tokio::net::UnixStream),
}

pub(crate) type PodReader = Box<dyn tokio::io::AsyncRead + Send + Unpin>;
pub(crate) type PodWriter = Box<dyn tokio::io::AsyncWrite + Send + Unpin>;

impl PodConnection {
    pub(crate) fn into_split(self) -> (PodReader, PodWriter) {
        match self {
            PodConnection::Tcp(s) => {
                let (r, w) = s.into_split();
                (Box::new(r), Box::new(w))
            }
            PodConnection::Relay(s) => {
                let (r, w) = s.into_split();
                (Box::new(r), Box::new(w))
            }
        }
    }
}

/// The longest answer line a relay may send.
const RELAY_ANSWER_MAX: usize = 4096;

/// Asks the pod's VM shim for a connection to `port` in the guest: the port as a
/// line, then `OK` (the connection follows) or `ERR <why>`.
async fn dial_relay(record: &SandboxRecord, port: u16) -> Result<tokio::net::UnixStream, CriError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let failed = |why: String| {
        CriError::Unavailable(format!(
            "failed to connect to localhost:{port} inside pod sandbox {} (in its VM): {why}",
            record.id
        ))
    };
    let socket = crate::runtime::ShimAddress {
        address: record.shim_address.clone(),
        version: record.task_version,
    };
    let path = format!("{}.pf", socket.socket_path());
    let mut stream = tokio::net::UnixStream::connect(&path)
        .await
        .map_err(|e| failed(format!("the shim's relay {path}: {e}")))?;
    stream
        .write_all(format!("{port}\n").as_bytes())
        .await
        .map_err(|e| failed(e.to_string()))?;
    // Byte by byte: what follows the line is the connection's.
    let mut line = Vec::new();
    loop {
        let byte = stream.read_u8().await.map_err(|e| failed(e.to_string()))?;
        if byte == b'\n' {
            break;
        }
        if line.len() >= RELAY_ANSWER_MAX {
            return Err(failed("the relay's answer is too long".into()));
        }
        line.push(byte);
    }
    let line = String::from_utf8_lossy(&line);
    match line.strip_prefix("ERR ") {
        None if line == "OK" => Ok(stream),
        Some(why) => Err(failed(why.to_string())),
        None => Err(failed(format!("the relay answered {line:?}"))),
    }
}
