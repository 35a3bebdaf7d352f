//! The shim host: RuntimeClass handler -> shim binary and options, the shim launcher
//! (containerd's bootstrap protocol), the Task API client (v2 and v3) and the events
//! server shims report exits and OOMs to.

pub(crate) mod bootstrap;
pub(crate) mod bundle;
pub(crate) mod cgroup_kill;
pub mod events;
pub(crate) mod features;
mod handlers;
pub(crate) mod launcher;
pub(crate) mod live;
pub(crate) mod orphans;
pub(crate) mod shims;
pub(crate) mod task;

pub(crate) use bootstrap::ShimAddress;
pub(crate) use events::{EventServer, RuntimeEvent};
pub(crate) use features::HandlerFeatures;
pub(crate) use handlers::{Handler, HandlerRegistry, Readiness};
pub(crate) use live::LiveHandlers;
pub(crate) use shims::{PodShim, ShimError, ShimHost};
pub(crate) use task::TaskError;
