//! Pod networking: pinned network namespaces, and attaching them to the node's CNI
//! network (the CRI `NetworkReady` condition, ADD/DEL/CHECK/STATUS/GC).

mod cni;
mod cni_config;
pub mod pinned_ns;
mod plugin_exec;
pub(crate) mod pod_ips;
pub(crate) mod pod_request;
pub(crate) mod userns;

use std::path::PathBuf;
use std::sync::Arc;

pub(crate) use cni::{Attachment, Cni, CniError};
pub(crate) use cni_config::{find_network, CniConfigError, CniNetwork, NetworkList};
pub(crate) use plugin_exec::{PluginExec, ProcessExec};

use crate::config::NetworkConfig;

/// The interface every pod gets on the network.
pub const POD_IFNAME: &str = "eth0";

/// The node's CNI network as `[crio.network]` configures it. The conf dir is read
/// at each use, so a conflist that appears (or changes) takes effect without a
/// restart; a pod already attached keeps the list it was attached with.
#[derive(Debug, Clone)]
pub struct PodNetworks {
    config: NetworkConfig,
    exec: Arc<dyn PluginExec>,
    health: Arc<std::sync::Mutex<Health>>,
    /// `cni_status_grace_period` (validated at load).
    grace: std::time::Duration,
}

/// What `cni_status_grace_period` needs to remember.
#[derive(Debug, Default)]
struct Health {
    /// The network was ready once: before that, no grace.
    was_ready: bool,
    /// When the failures since the last ready answer began.
    failing_since: Option<std::time::Instant>,
}

impl PodNetworks {
    pub(crate) fn new(config: NetworkConfig, exec: Arc<dyn PluginExec>) -> Self {
        Self {
            grace: crate::duration::parse(&config.cni_status_grace_period).unwrap_or_default(),
            config,
            exec,
            health: Default::default(),
        }
    }

    /// CRI-O's `cni_status_grace_period`: a network that was ready stays
    /// reported ready while its failures are younger than the period.
    fn graced(&self, result: Result<(), String>) -> Result<(), String> {
        let grace = self.grace;
        let Ok(mut health) = self.health.lock() else {
            return result;
        };
        match result {
            Ok(()) => {
                health.was_ready = true;
                health.failing_since = None;
                Ok(())
            }
            Err(message) => {
                let since = *health
                    .failing_since
                    .get_or_insert_with(std::time::Instant::now);
                if health.was_ready && since.elapsed() < grace {
                    tracing::warn!(
                        "network not ready ({message}); still reported ready for the rest of \
                         cni_status_grace_period ({grace:?})"
                    );
                    return Ok(());
                }
                Err(message)
            }
        }
    }

    /// The network new pods attach to.
    pub(crate) fn current(&self) -> Result<CniNetwork, CniConfigError> {
        find_network(
            &self.config.network_dir,
            &self.config.plugin_dirs,
            &self.config.cni_default_network,
        )
    }

    /// A network from the list a pod's record cached at ADD.
    pub(crate) fn cached(&self, list_json: &str) -> Result<CniNetwork, CniConfigError> {
        let file = PathBuf::from("(cached in the pod's record)");
        let list =
            NetworkList::parse(list_json.as_bytes()).map_err(|reason| CniConfigError::Invalid {
                file: file.clone(),
                reason,
            })?;
        list.resolve(&file, &self.config.plugin_dirs)
    }

    pub(crate) fn cni(&self) -> Cni<'_> {
        Cni {
            exec: self.exec.as_ref(),
            plugin_dirs: &self.config.plugin_dirs,
        }
    }

    /// `Ok` when new pods can get a network: a valid list whose plugins are all
    /// present, and (1.1.0 lists) whose plugins all report STATUS ready.
    pub(crate) async fn readiness(&self) -> Result<(), String> {
        let result = match self.current() {
            Ok(net) => self
                .cni()
                .status(&net)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        self.graced(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_graced_only_after_the_network_was_ready() {
        let config = NetworkConfig {
            cni_status_grace_period: "1h".into(),
            ..NetworkConfig::default()
        };
        let graced = PodNetworks::new(config, Arc::new(ProcessExec));
        assert!(
            graced.graced(Err("down".into())).is_err(),
            "never ready: no grace"
        );
        assert!(graced.graced(Ok(())).is_ok());
        assert!(
            graced.graced(Err("down".into())).is_ok(),
            "within the period"
        );
        let strict = PodNetworks::new(NetworkConfig::default(), Arc::new(ProcessExec));
        assert!(strict.graced(Ok(())).is_ok());
        assert!(strict.graced(Err("down".into())).is_err(), "0s: at once");
    }
}
