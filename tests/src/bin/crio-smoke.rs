//! Runs one pod (the built-in pause, no image or registry needed) on a running
//! daemon, checks it is Ready and got an IP from the node's CNI network, then
//! removes it: the check after installing.
//!
//! `crio-smoke [SOCKET] [HANDLER]` (default /var/run/crio/crio.sock and the
//! default handler; `kata` runs the pod in a VM).

use std::path::PathBuf;

use crio_tests::cri::CriClient;
use crio_tests::pods::pod_config;
use protocols::cri::{PodSandboxState, PodSandboxStatusRequest, RemovePodSandboxRequest};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let socket = std::env::args()
        .nth(1)
        .map_or_else(|| PathBuf::from("/var/run/crio/crio.sock"), PathBuf::from);
    let handler = std::env::args().nth(2).unwrap_or_default();
    let mut cri = CriClient::connect(&socket).await?;
    let pod = pod_config("crio-smoke", &std::env::temp_dir());
    let id = cri.run_pod(&pod, &handler).await?;
    let status = cri
        .runtime
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: id.clone(),
            verbose: false,
        })
        .await?
        .into_inner()
        .status
        .unwrap_or_default();
    let ready = status.state == PodSandboxState::SandboxReady as i32;
    let ip = status.network.map(|n| n.ip).unwrap_or_default();
    cri.runtime
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: id.clone(),
        })
        .await?;
    anyhow::ensure!(ready, "pod {id} did not become ready");
    anyhow::ensure!(
        !ip.is_empty(),
        "pod {id} got no IP: is there a CNI network with an IPAM in /etc/cni/net.d?"
    );
    println!(
        "pod {id} ran (handler {:?}, IP {ip}) and was removed",
        status.runtime_handler
    );
    Ok(())
}
