//! A pod VM's start: the hypervisor launched and the agent's hello awaited, with
//! the hypervisor's exit watched meanwhile, so every failure is named by its
//! cause and leaves no hypervisor running.

use std::time::{Duration, Instant};

use crate::agent_channel::{self, Agent, ChannelError};
use crate::vmm::{last_line, Hypervisor, RunningVm, VmSpec, VmmError};

/// How long a channel failure waits for the hypervisor's exit.
const EXIT_GRACE: Duration = Duration::from_secs(1);

/// A VM whose agent answered.
#[derive(Debug)]
pub struct BootedVm {
    pub vm: RunningVm,
    pub agent: Agent,
    /// From launch to the agent's hello.
    pub boot_time: Duration,
}

/// Why a VM did not come up.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error(transparent)]
    Vmm(#[from] VmmError),
    #[error("{source}; the guest console's last line: {console}")]
    Agent {
        source: ChannelError,
        console: String,
    },
}

/// Launches `spec` with `hypervisor` and waits up to `timeout` for its agent. On
/// any failure the hypervisor is stopped before this returns.
pub async fn boot(
    hypervisor: &dyn Hypervisor,
    spec: &VmSpec,
    timeout: Duration,
) -> Result<BootedVm, BootError> {
    let started = Instant::now();
    let mut vm = hypervisor.launch(spec).await?;
    let socket = spec.agent_socket();
    let outcome = tokio::select! {
        agent = agent_channel::connect(&socket, timeout) => Ok(agent),
        status = vm.exit() => Err(status),
    };
    match outcome {
        Ok(Ok(agent)) => Ok(BootedVm {
            vm,
            agent,
            boot_time: started.elapsed(),
        }),
        Ok(Err(source)) => {
            // A hypervisor that is ending closes the channel first: its own words
            // are the better cause.
            if let Some(status) = vm.wait_exit(EXIT_GRACE).await? {
                return Err(vm.exited(status).into());
            }
            vm.stop().await?;
            Err(BootError::Agent {
                source,
                console: last_line(&spec.console_log()).unwrap_or_else(|| "(empty)".into()),
            })
        }
        // The hypervisor ended first (a late option error, a crash): its own words.
        Err(status) => Err(vm.exited(status?).into()),
    }
}
