//! Image volumes (KEP-4639, `Mount.image`): an image the kubelet pulled, mounted
//! read-only into a container, whole or one path of it (`image_sub_path`). Each is
//! built like a rootfs (an overlay of the image's layers, or a vfs copy) under
//! `<container storage>/image-volumes/<n>`, bind-mounted read-only, `noexec`,
//! `nosuid` and `nodev` into the container (as CRI-O does), and torn down with the
//! container.

use std::path::{Path, PathBuf};

use super::spec_input::secure_join;
use crate::error::CriError;
use crate::spec::BindMount;
use crate::storage::layers::LayerStore;
use crate::storage::{overlay, rootfs};
use crate::store::ImageRecord;

const VOLUMES_DIR: &str = "image-volumes";

/// One `Mount.image`, with its image resolved.
#[derive(Debug, Clone)]
pub(crate) struct ImageVolume {
    pub container_path: String,
    pub image: ImageRecord,
    /// A path inside the image (empty = its root).
    pub sub_path: String,
}

/// Mounts every volume's image under `storage` and returns the bind mounts that put
/// them in the container. Blocking (a vfs copy reads the whole image).
pub(crate) fn prepare(
    driver: rootfs::StorageDriver,
    layers: &LayerStore,
    storage: &Path,
    volumes: &[ImageVolume],
) -> Result<Vec<BindMount>, CriError> {
    let mut mounts = Vec::new();
    for (n, volume) in volumes.iter().enumerate() {
        let lowers = layers
            .diff_paths(&volume.image.layers)
            .map_err(CriError::internal)?;
        if lowers.is_empty() {
            return Err(CriError::InvalidArgument(format!(
                "image volume {}: image {} has no layers",
                volume.container_path, volume.image.id
            )));
        }
        let dir = storage.join(VOLUMES_DIR).join(n.to_string());
        let root = rootfs::prepare_rootfs(driver, &lowers, &dir).map_err(|e| {
            CriError::internal_in(format!("image volume {}", volume.container_path), e)
        })?;
        let source = source_in(&root, &volume.sub_path).ok_or_else(|| {
            CriError::InvalidArgument(format!(
                "image volume {}: image_sub_path {:?} does not exist in image {}",
                volume.container_path, volume.sub_path, volume.image.id
            ))
        })?;
        mounts.push(BindMount {
            host_path: source,
            container_path: PathBuf::from(&volume.container_path),
            readonly: true,
            propagation: "rprivate",
            recursive_readonly: false,
            // As CRI-O mounts them (KEP-4639 itself now asks only for `ro`).
            hardened: true,
            idmapped: false,
        });
    }
    Ok(mounts)
}

/// The sub path inside the image's root, symlinks resolved within it; None if it
/// does not exist.
fn source_in(root: &Path, sub_path: &str) -> Option<PathBuf> {
    if sub_path.is_empty() {
        return Some(root.to_path_buf());
    }
    let path = secure_join(root, Path::new(sub_path));
    std::fs::symlink_metadata(&path).is_ok().then_some(path)
}

/// Unmounts and deletes every image volume of a container. Idempotent.
pub(crate) fn release(driver: rootfs::StorageDriver, storage: &Path) {
    let Ok(entries) = std::fs::read_dir(storage.join(VOLUMES_DIR)) else {
        return;
    };
    for dir in entries.flatten().map(|e| e.path()) {
        // Whatever driver made it (the daemon may have restarted with another one).
        let _ = overlay::unmount_rootfs(&dir.join("rootfs"));
        if let Err(e) = rootfs::release_rootfs(driver, &dir) {
            tracing::warn!("image volume {}: {e}", dir.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_paths_resolve_inside_the_image() {
        let root = tempfile::tempdir().expect("tmp");
        std::fs::create_dir_all(root.path().join("etc/app")).expect("mkdir");
        std::fs::write(root.path().join("etc/app/conf"), "x").expect("write");
        std::os::unix::fs::symlink("/etc/app", root.path().join("link")).expect("symlink");
        let r = root.path();
        assert_eq!(source_in(r, ""), Some(r.to_path_buf()));
        assert_eq!(source_in(r, "etc/app/conf"), Some(r.join("etc/app/conf")));
        // An absolute symlink points into the image, not the host.
        assert_eq!(source_in(r, "link/conf"), Some(r.join("etc/app/conf")));
        assert_eq!(source_in(r, "../../etc/passwd"), None);
        assert_eq!(source_in(r, "missing"), None);
    }
}
