//! The shim host: RuntimeClass handler -> shim binary and options, the shim launcher
//! (containerd's bootstrap protocol), the Task API client (v2 and v3) and the events
//! server shims report exits and OOMs to.

pub mod bootstrap;
pub mod bundle;
pub mod cgroup_kill;
pub mod events;
pub mod features;
mod handlers;
pub mod launcher;
pub mod orphans;
pub mod shims;
pub mod task;

pub use bootstrap::ShimAddress;
pub use events::{EventServer, RuntimeEvent};
pub use features::HandlerFeatures;
pub use handlers::{find_executable, Handler, HandlerRegistry, Readiness, RUNC_SHIM_BINARY};
pub use shims::{PodShim, ProcessLauncher, ShimError, ShimHost, ShimLauncher};
pub use task::{TaskApi, TaskClient, TaskError};
