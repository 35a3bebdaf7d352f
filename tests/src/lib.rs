//! The integration harness every suite uses: the real `crio` binary on a private
//! root per test, a real OCI registry on loopback, and locally built test images.
//! Everything a test starts is stopped, and everything it mounts is unmounted, when
//! its handle drops — also when the test panics.

pub mod bundle;
pub mod cleanup;
pub mod containerd;
pub mod cri;
pub mod cri_containerd;
pub mod daemon;
pub mod http;
pub mod images;
pub mod network;
pub mod pods;
pub mod process;
pub mod registry;
pub mod spdy;
pub mod streaming;
pub mod test_images;
pub mod token_server;

pub use daemon::{Daemon, DaemonBuilder};
pub use registry::{Registry, TestImage};

/// Runs the test only as root; says so loudly instead of passing silently.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "integration tests must run as root (they create sockets, mounts and namespaces)"
    );
}
