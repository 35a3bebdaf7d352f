//! The host side of crio-rs's VM pods (RuntimeClass handler `kata`).
//!
//! One VM per pod: [`vmm`] starts it through a [`Hypervisor`](vmm::Hypervisor)
//! (qemu today, with room for Cloud Hypervisor or Firecracker), and
//! [`agent_channel`] reaches our guest agent (`shims/kata/agent`, the VM's PID 1)
//! over the VM's virtio-serial port.
//!
//! [`service`] is the shim v2 task service of such a pod (the binary
//! `containerd-shim-kata-rs-v2`); `docs/kata.md` says how it differs from runc pods.

pub mod agent_channel;
pub mod boot;
pub mod config;
pub mod guest_bundle;
pub mod host_hooks;
pub mod pod_network;
pub mod port_relay;
pub mod service;
pub mod shared_mounts;
pub mod vmm;
