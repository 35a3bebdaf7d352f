//! Image storage: the content store (blobs by digest), the layer store (layers
//! unpacked once by chain ID), and container rootfs mounts (overlayfs).

pub mod unpack;
