//! Image storage: the content store (blobs by digest), the layer store (layers
//! unpacked once by chain ID), and container root filesystems (overlayfs mounts, or
//! vfs copies where overlayfs is unavailable).

pub mod content;
pub mod idmap;
pub mod layers;
pub mod overlay;
pub mod rootfs;
mod tar_stream;
pub mod unpack;
pub mod usage;

/// fsync a directory so a rename in it is durable.
pub fn sync_dir(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}
