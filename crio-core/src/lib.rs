//! crio-core: the CRI daemon. It serves the CRI, handles images and storage, and hands
//! every container operation to a shim v2 over ttrpc (see `shared/design.md`).

pub mod cdi;
pub mod config;
pub mod daemon;
pub mod duration;
pub mod error;
pub mod failpoint;
pub mod image;
pub mod logs;
pub mod network;
pub mod pods;
pub mod runtime;
pub mod server;
pub mod size;
pub mod socket;
pub mod spec;
pub mod storage;
pub mod store;
pub mod streaming;
pub mod version;
