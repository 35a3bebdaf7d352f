//! Generated protocol bindings, and nothing else.
//!
//! * [`cri`]: the Kubernetes CRI `runtime.v1` API, compiled with tonic from the
//!   vendored `proto/runtime/v1/api.proto` of `k8s.io/cri-api` **v0.36.3**.
//! * [`shim`]: containerd's shim v2 task and events API, re-exported from
//!   `containerd-shim-protos` (rust-protobuf, ttrpc).
//! * [`agent`]: the guest agent API of VM pods (`proto/agent/v1/agent.proto`),
//!   compiled with ttrpc-codegen (rust-protobuf, async ttrpc).

/// Kubernetes CRI `runtime.v1` (cri-api v0.36.3).
pub mod cri {
    #![allow(missing_docs, clippy::all, missing_debug_implementations)]
    tonic::include_proto!("runtime.v1");
}

/// containerd shim v2: task API, events API and their ttrpc clients/servers.
pub mod shim {
    pub use containerd_shim_protos::{
        api, bootstrap_api, cgroups, cgroups_v2, events, protobuf, shim, ttrpc, types,
    };
    pub use containerd_shim_protos::{shim_async, Events, Task, TaskClient};
}

/// containerd's `runtimeoptions.v1.Options`: a file-configured shim's Create
/// options (`proto/runtimeoptions/v1/runtimeoptions.proto`).
#[allow(
    missing_debug_implementations,
    clippy::all,
    clippy::pedantic,
    unused,
    nonstandard_style
)]
pub mod runtimeoptions {
    include!(concat!(env!("OUT_DIR"), "/agent/runtimeoptions.rs"));

    /// The type URL of [`Options`] in a Create request's `options`.
    pub const TYPE_URL: &str = "runtimeoptions.v1.Options";
}

/// The guest agent API of VM pods (`proto/agent/v1/agent.proto`): its messages,
/// the async ttrpc [`AgentClient`](agent::AgentClient) and the [`Agent`](agent::Agent)
/// server trait with [`create_agent`](agent::create_agent).
pub mod agent {
    /// The messages (the generated code names this module `agent`).
    #[allow(
        missing_docs,
        clippy::all,
        missing_debug_implementations,
        unused,
        nonstandard_style
    )]
    pub mod agent {
        include!(concat!(env!("OUT_DIR"), "/agent/agent.rs"));
    }
    /// The ttrpc client and server.
    #[allow(
        missing_docs,
        clippy::all,
        missing_debug_implementations,
        unused,
        nonstandard_style
    )]
    pub mod agent_ttrpc {
        include!(concat!(env!("OUT_DIR"), "/agent/agent_ttrpc.rs"));
    }
    pub use agent::*;
    pub use agent_ttrpc::{create_agent, Agent, AgentClient};
    pub use ttrpc;

    /// The virtio-serial port's name (qemu's `virtserialport,name=`).
    pub const PORT_NAME: &str = "agent";

    /// The line the agent writes on its port each time the host end connects,
    /// before any ttrpc frame. The host reads it before sending a request: bytes
    /// written while the guest has the port closed are dropped by virtio-serial.
    pub const HELLO: &str = "crio-rs-agent ready\n";

    /// Where the guest mounts the pod's shared directory (the containers'
    /// bundles, from the host).
    pub const GUEST_SHARED_DIR: &str = "/run/crio-rs/shared";

    /// Where the guest mounts the pod's /dev/shm (`ConfigurePod`), a tmpfs its
    /// containers bind.
    pub const GUEST_SHM_DIR: &str = "/run/crio-rs/shm";

    /// The guest kernel command line's word that tells the agent to mount the
    /// shared directory with virtio-fs (tag `shared`); without it, virtio-9p.
    pub const VIRTIOFS_CMDLINE: &str = "crio_rs.shared_fs=virtiofs";

    /// virtio-fs's daemon when a handler names none (Debian's
    /// qemu-system-common): the VM shim runs it, crio checks it is there.
    pub const DEFAULT_VIRTIOFSD: &str = "/usr/lib/qemu/virtiofsd";
}
