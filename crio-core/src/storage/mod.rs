//! Image storage: the content store (blobs by digest), the layer store (layers
//! unpacked once by chain ID), and container rootfs mounts (overlayfs).

pub mod content;
pub mod layers;
pub mod overlay;
pub mod unpack;
pub mod usage;
