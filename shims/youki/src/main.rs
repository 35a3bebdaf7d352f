//! `containerd-shim-youki-v2`: a shim v2 whose containers run through youki's
//! `libcontainer`, with no container runtime binary on the node.
//!
//! The task service is the one the runc shim uses (`shim_support::task`). Its
//! runtime commands (`create`, `start`, `exec`, `kill`...) are answered by this same
//! binary ([`cli`]), re-executed as a short-lived single-threaded helper: libcontainer
//! clones the calling process, which is only safe in a process without other
//! threads, and changes process-wide state (working directory, `oom_score_adj`,
//! dumpability) that must not leak into the long-lived shim. The container's init
//! is the helper's child and passes to the shim (a subreaper) when the helper exits,
//! as with runc.

use shim_support::task::{entry, Flavor};
use youki_cli::cli;

static YOUKI: Flavor = Flavor {
    runtime_name: "io.containerd.youki.v2",
    default_binary: own_binary,
    default_root: "/run/containerd/youki",
    features: Some(FEATURES),
};

/// What libcontainer runs, as an OCI `features` document: only what is used and
/// tested here. No `user` namespace: libcontainer 0.7 enters a container's other
/// namespaces for an exec but not its user namespace
/// (`container/tenant_builder.rs`, `NAMESPACE_TYPES`), so an exec'd process of a
/// `hostUsers: false` pod would run as the host's root. Pods that ask for their own
/// user namespace are refused on this handler.
const FEATURES: &str = r#"{"ociVersionMin":"1.0.0","ociVersionMax":"1.2.0","linux":{"namespaces":["cgroup","ipc","mount","network","pid","uts"]}}"#;

/// This binary, as the runtime the task service runs.
fn own_binary() -> String {
    std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "containerd-shim-youki-v2".into())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // The task service always starts runtime commands with `--root`; containerd's
    // shim flags never do.
    if args.get(1).map(String::as_str) == Some("--root") {
        std::process::exit(cli::run(&args[1..]));
    }
    entry::main(&YOUKI);
}
