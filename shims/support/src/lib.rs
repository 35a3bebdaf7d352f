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
//!
//! # Why not the `containerd-shim` crate's runner, monitor and publisher
//!
//! We use the crate (0.12) for flags, mounts and cgroup metrics, not for its
//! `asynchronous::run` runner, its global exit monitor or its `RemotePublisher`:
//!
//! - **Bootstrap and task API version.** The runner always answers `start` with
//!   task API version 3 (JSON or `BootstrapResult`), and the generated service is
//!   registered only as `containerd.task.v3.Task`. containerd 1.6 (Debian 12's)
//!   reads the reply as a bare address and calls `containerd.task.v2.Task`;
//!   containerd 1.7 refuses a version above 2. [`launch`] answers each caller in the
//!   format it reads and serves the one task service under both names, so our
//!   shims run under containerd 1.6, 1.7 and 2.x and under crio-rs.
//! - **Publisher.** `RemotePublisher::new` connects when the server starts, so the
//!   shim fails to serve when the manager is restarting; it packs events through
//!   protobuf reflection. [`events`] connects lazily, queues and retries, and names
//!   event types by topic: no reflection descriptors in every pod's heap.
//! - **Monitor.** The crate's monitor is a process-wide lock fanning every exit out
//!   to unbounded channels, fed only by the runner's SIGCHLD loop: without the
//!   runner it has no source of exits. [`reaper`] is one reaping task of our own,
//!   whose subscribers subscribe before they spawn, so no exit is lost.
//! - **Memory per pod.** A shim lives as long as its pod, so what it holds idle is
//!   paid per pod: ours runs one current-thread tokio runtime in one malloc arena
//!   ([`memory`]). Measured with `bench-pods` (10 pods per handler, one busybox
//!   container each, the release-profile shim, same run, this 2-core cgroup-v1 host,
//!   2026-12-05): our runc shim 6.1 MiB RSS, 1.3 MiB PSS, 1 thread; containerd's Go
//!   shim 13.3 MiB RSS, 3.2 MiB PSS, 11 threads (0.46x RSS, 0.42x PSS). We did not
//!   build the crate's runner to measure it alone; these are the whole shim's.

pub mod cgroup_stats;
pub mod console;
pub mod error;
pub mod events;
pub mod grouping;
pub mod launch;
pub mod logging;
pub mod memory;
pub mod mounts;
pub mod oom;
pub mod reaper;
pub mod restrict;
pub mod stdio;
pub mod task;

pub use error::{Error, Result};

/// Re-exported so shims name one version of the protocol crates.
pub use containerd_shim;
pub use containerd_shim_protos as protos;
