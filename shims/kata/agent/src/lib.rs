//! The guest agent of crio-rs's VM pods.
//!
//! It runs as PID 1 of the pod's VM (the `/init` of the initramfs that
//! `packaging/kata/build-initramfs.sh` makes): it mounts what a Linux userland
//! needs ([`init`]), finds its virtio-serial port by name ([`port`]) and serves the
//! agent API of `protocols/proto/agent` on it ([`service`]) to the pod's shim on
//! the host. Containers run with youki's `libcontainer` ([`containers`]), from
//! bundles in the pod's directory the host shares with the guest (virtio-9p).

pub mod containers;
pub mod init;
pub mod network;
pub mod port;
pub mod ports;
pub mod service;
pub mod sysctl;

pub use protocols::agent::{HELLO, PORT_NAME};
