//! `containerd-shim-runc-rs-v2`: crio-rs's shim v2 for runc and crun. The task
//! service is shared with the youki shim (`shim_support::task`).

use shim_support::task::{entry, Flavor};

static RUNC: Flavor = Flavor {
    runtime_name: "io.containerd.runc-rs.v2",
    default_binary: || "runc".to_string(),
    default_root: "/run/containerd/runc",
    features: None,
};

fn main() {
    entry::main(&RUNC);
}
