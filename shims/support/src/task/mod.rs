//! The shim v2 task service for runtimes with runc's command line, shared by the
//! runc shim (runc, crun) and the youki shim (whose own binary answers runc's
//! commands through libcontainer): a binary picks its [`Flavor`] and calls
//! [`entry::main`].

pub mod entry;
mod exits;
pub mod oci_cli;
mod process;
pub mod service;
mod telemetry;

/// What differs between the shims built on this service.
#[derive(Debug)]
pub struct Flavor {
    /// The runtime type containerd knows the shim by (`io.containerd.runc-rs.v2`).
    pub runtime_name: &'static str,
    /// The runtime binary when the manager's options name none.
    pub default_binary: fn() -> String,
    /// Where runtime state lives when the options name no root (a namespace
    /// directory below it).
    pub default_root: &'static str,
    /// The OCI runtime `features` document `-info` reports (`None`: the manager asks
    /// the runtime binary itself, as for runc).
    pub features: Option<&'static str>,
}
