//! The host side of crio-rs's VM pods (RuntimeClass handler `kata`).
//!
//! One VM per pod: [`vmm`] starts it through a [`Hypervisor`](vmm::Hypervisor)
//! (qemu today, with room for Cloud Hypervisor or Firecracker), and
//! [`agent_channel`] reaches our guest agent (`shims/kata/agent`, the VM's PID 1)
//! over the VM's virtio-serial port.
//!
//! Work in progress (issue 19): the VM boots and its agent answers; the shim v2
//! binary that runs pods on it comes next.

pub mod agent_channel;
pub mod boot;
pub mod vmm;
