//! runc's command line answered with youki's `libcontainer` ([`cli`]): what the
//! youki shim runs as its runtime, and what the VM pods' guest agent
//! (`shims/kata/agent`) runs containers with inside the VM.

pub mod cli;
mod mounts;
