//! crio-core: the CRI daemon. It serves the CRI, handles images and storage, and hands
//! every container operation to a shim v2 over ttrpc (see `shared/design.md`).

// The public API is what the `crio` binary, the tests and the fuzzers use; the
// rest is the crate's own, so dead code shows.
#![warn(unreachable_pub)]
// The architecture is in the crate's own items: read it with
// `cargo doc -p crio-core --document-private-items`.
#![allow(rustdoc::private_intra_doc_links)]

pub(crate) mod blocking;
pub(crate) mod cdi;
pub mod check;
pub mod config;
pub mod daemon;
pub(crate) mod duration;
pub(crate) mod error;
pub mod failpoint;
pub mod image;
pub(crate) mod logs;
pub mod memory;
pub mod metrics;
pub mod network;
pub(crate) mod oci_hooks;
pub mod pods;
pub mod reload;
pub mod runtime;
pub mod server;
pub(crate) mod size;
pub(crate) mod socket;
pub(crate) mod spec;
pub mod storage;
pub mod store;
pub(crate) mod streaming;
pub(crate) mod systemd;
pub mod version;
pub mod wipe;
