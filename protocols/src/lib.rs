//! Generated protocol bindings, and nothing else.
//!
//! * [`cri`]: the Kubernetes CRI `runtime.v1` API, compiled with tonic from the
//!   vendored `proto/runtime/v1/api.proto` of `k8s.io/cri-api` **v0.36.3**.
//! * [`shim`]: containerd's shim v2 task and events API, re-exported from
//!   `containerd-shim-protos` (rust-protobuf, ttrpc).

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
