//! The integration harness every suite uses: the real `crio` binary on a private
//! root per test, a real OCI registry on loopback, and locally built test images.
//! Everything a test starts is stopped, and everything it mounts is unmounted, when
//! its handle drops — also when the test panics.

pub mod bench_results;
pub mod bundle;
pub mod cleanup;
pub mod containerd;
pub mod cri;
pub mod cri_containerd;
pub mod daemon;
pub mod http;
pub mod images;
pub mod kata;
pub mod network;
pub mod pods;
pub mod process;
pub mod registry;
pub mod shim_harness;
pub mod spdy;
pub mod streaming;
pub mod test_images;
pub mod token_server;

pub use daemon::{Daemon, DaemonBuilder};

/// containerd's Go shim, configured the way an operator drops in a third-party shim
/// (handler `go`).
pub const GO_SHIM_DROPIN: &str = "[crio.runtime.runtimes.go]\nruntime_type = \"vm\"\nruntime_path = \"/usr/bin/containerd-shim-runc-v2\"\n";

/// Runs each `async fn scenario(handler: &str)` once per shim: `runc_shim::scenario`
/// (ours, handler `runc`), `youki_shim::scenario` (libcontainer, handler `youki`)
/// and `go_shim::scenario` (containerd's Go shim as a drop-in, handler `go`).
#[macro_export]
macro_rules! per_handler {
    ($($scenario:ident),*) => {
        /// Our shim (`containerd-shim-runc-rs-v2`), the default `runc` handler.
        mod runc_shim {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $scenario() {
                    super::$scenario("runc").await;
                }
            )*
        }
        /// Our youki shim (`containerd-shim-youki-v2`): libcontainer, no runtime binary.
        mod youki_shim {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $scenario() {
                    super::$scenario("youki").await;
                }
            )*
        }
        /// containerd's Go shim as a drop-in handler: the cross-check.
        mod go_shim {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $scenario() {
                    super::$scenario("go").await;
                }
            )*
        }
    };
    ($($scenario:ident),*; kata: $($vm_scenario:ident),*) => {
        $crate::per_handler!($($scenario),*);
        /// Our VM shim (`containerd-shim-kata-rs-v2`, the `kata` handler): the pod
        /// in a qemu microvm, the test guest given by `kata::handler_dropin`.
        mod kata_shim {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $vm_scenario() {
                    super::$vm_scenario("kata").await;
                }
            )*
        }
    };
}
/// Each scenario (an `async fn(handler: &str)`) on our runc shim (the default
/// handler, `""`) and in a VM pod (`kata`, the test guest given by
/// `kata::handler_dropin`).
#[macro_export]
macro_rules! on_runc_and_kata {
    ($($scenario:ident),* $(,)?) => {
        mod runc_shim {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $scenario() {
                    super::$scenario("").await;
                }
            )*
        }
        mod kata_shim {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $scenario() {
                    super::$scenario("kata").await;
                }
            )*
        }
    };
}

pub use registry::{Registry, TestImage};

/// Runs the test only as root; says so loudly instead of passing silently.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "integration tests must run as root (they create sockets, mounts and namespaces)"
    );
}
