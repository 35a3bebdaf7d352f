//! Shared pieces of crio-rs's containerd shim v2 binaries.
//!
//! A shim binary (`containerd-shim-<name>-v2`) is started by a container manager
//! (containerd, or crio-rs's own core) with the `start` action in the bundle
//! directory; it launches a long-lived server of itself, answers the manager with
//! the server's ttrpc address, and that server implements the task API for every
//! container of one pod. This crate holds what does not depend on the OCI runtime
//! behind the shim:
//!
//! - [`launch`]: the `start` action (including the reply format every containerd
//!   generation understands), the serve loop, and registration of one task service
//!   under both `containerd.task.v2.Task` and `containerd.task.v3.Task`;
//! - [`grouping`]: which shim a container belongs to (one shim per pod);
//! - [`reaper`]: reaping children as a subreaper, exit codes, running helper
//!   commands without racing the reaper;
//! - [`stdio`] and [`console`]: the process stdio containerd asks for (FIFOs,
//!   `file://`, `binary://`, terminals);
//! - [`events`]: publishing task events back to the manager;
//! - [`oom`]: OOM notifications from cgroup v1 and v2;
//! - [`restrict`]: fitting a spec to what this host lets the shim grant;
//! - [`task`]: the task service over a runtime with runc's command line, and a
//!   shim binary's `main`.

pub mod cgroup_stats;
pub mod console;
pub mod error;
pub mod events;
pub mod grouping;
pub mod launch;
pub mod logging;
pub mod memory;
pub mod oom;
pub mod reaper;
pub mod restrict;
pub mod stdio;
pub mod task;

pub use error::{Error, Result};

/// Re-exported so shims name one version of the protocol crates.
pub use containerd_shim;
pub use containerd_shim_protos as protos;
