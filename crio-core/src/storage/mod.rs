//! Image storage: the content store (blobs by digest), the layer store (layers
//! unpacked once by chain ID), and container root filesystems (overlayfs mounts, or
//! vfs copies where overlayfs is unavailable).

pub(crate) mod content;
pub(crate) mod idmap;
pub(crate) mod layers;
pub mod overlay;
pub mod rootfs;
mod tar_stream;
pub mod trash;
pub mod unpack;
pub(crate) mod usage;

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// `sha256:` and 64 lower-case hex digits: what blob and layer names must be.
pub fn valid_digest(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Creates `dir` (and its parents) readable by root only: mode 0700, or, when a
/// pod in its own user namespace must reach through it (its root is `group` on the
/// host), 0710 with that group, as containerd keeps bundles. An existing directory
/// gets the same mode.
pub fn private_dir(dir: &std::path::Path, group: Option<u32>) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    let mode = match group {
        Some(gid) => {
            std::os::unix::fs::chown(dir, None, Some(gid))?;
            0o710
        }
        None => 0o700,
    };
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
}

/// fsync a directory so a rename in it is durable.
pub fn sync_dir(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Copies a file, or a directory tree, following symlinks, keeping each file's
/// and directory's mode (containers/common's copy of mounts.conf sources).
pub(crate) fn copy_tree(src: &std::path::Path, dst: &std::path::Path) -> std::io::Result<()> {
    let meta = std::fs::metadata(src)?;
    if let Some(parent) = dst.parent() {
        std::fs::create_dir_all(parent)?;
    }
    if meta.is_dir() {
        std::fs::create_dir_all(dst)?;
        for entry in std::fs::read_dir(src)? {
            let entry = entry?;
            match copy_tree(&entry.path(), &dst.join(entry.file_name())) {
                // A dangling symlink is skipped, as containers/common does.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                other => other?,
            }
        }
        std::fs::set_permissions(dst, meta.permissions())
    } else if meta.is_file() {
        std::fs::copy(src, dst).map(|_| ())
    } else {
        Err(std::io::Error::other(format!(
            "{} is neither a file nor a directory",
            src.display()
        )))
    }
}
