//! Container root filesystems: an overlayfs mount over an image's layers with a
//! private upper and work dir.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    #[error("overlay mount on {target}: {source}")]
    Mount { target: PathBuf, source: nix::Error },
    #[error("unmount {target}: {source}")]
    Unmount { target: PathBuf, source: nix::Error },
    #[error(
        "overlay mount options for {target} are {len} bytes, over the kernel's page-size limit"
    )]
    OptionsTooLong { target: PathBuf, len: usize },
    #[error("creating {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("an image with no layers has no root filesystem")]
    NoLayers,
}

/// The kernel copies mount data into one page.
const MAX_OPTIONS: usize = 4095;

/// The `lowerdir=...,upperdir=...,workdir=...` option string. `lowers` are bottom
/// layer first (image order); overlayfs wants the top first.
pub fn overlay_options(lowers: &[PathBuf], upper: &Path, work: &Path) -> String {
    let lower: Vec<String> = lowers
        .iter()
        .rev()
        .map(|p| p.display().to_string())
        .collect();
    format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        upper.display(),
        work.display()
    )
}

/// Mounts `target` as overlay of `lowers` (bottom first) with `upper` and `work`
/// (created if missing).
pub fn mount_rootfs(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> Result<(), OverlayError> {
    if lowers.is_empty() {
        return Err(OverlayError::NoLayers);
    }
    for dir in [upper, work, target] {
        std::fs::create_dir_all(dir).map_err(|source| OverlayError::Dir {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let options = overlay_options(lowers, upper, work);
    if options.len() > MAX_OPTIONS {
        return Err(OverlayError::OptionsTooLong {
            target: target.to_path_buf(),
            len: options.len(),
        });
    }
    nix::mount::mount(
        Some("overlay"),
        target,
        Some("overlay"),
        nix::mount::MsFlags::empty(),
        Some(options.as_str()),
    )
    .map_err(|source| OverlayError::Mount {
        target: target.to_path_buf(),
        source,
    })
}

/// The deepest directory holding every path of `paths`.
fn common_parent(paths: &[PathBuf]) -> Option<PathBuf> {
    let first = paths.first()?.parent()?.to_path_buf();
    let mut common = first;
    for p in &paths[1..] {
        while !p.starts_with(&common) {
            common = common.parent()?.to_path_buf();
        }
    }
    Some(common)
}

/// [`mount_rootfs`] for a pod with its own user namespace: the layers are seen
/// through one read-only ID-mapped clone of their common parent, attached at
/// `stage` only while overlayfs is mounted (it keeps private clones of its layers),
/// and `upper`'s root belongs to the pod's root (`root`, host IDs), so the
/// container's root owns its files and can write its root directory.
pub fn mount_rootfs_idmapped(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
    stage: &Path,
    userns: &std::fs::File,
    root: (u32, u32),
) -> Result<(), OverlayError> {
    let parent = common_parent(lowers).ok_or(OverlayError::NoLayers)?;
    let dir_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| OverlayError::Dir { path, source }
    };
    std::fs::create_dir_all(upper).map_err(dir_err(upper))?;
    std::os::unix::fs::chown(upper, Some(root.0), Some(root.1)).map_err(dir_err(upper))?;
    super::idmap::unmount(stage).map_err(dir_err(stage))?;
    // Not recursive: nothing mounted below the layer store belongs in a rootfs.
    super::idmap::mount_idmapped(&parent, stage, userns, false, true).map_err(dir_err(stage))?;
    let through_stage: Vec<PathBuf> = lowers
        .iter()
        .map(|l| stage.join(l.strip_prefix(&parent).unwrap_or(l)))
        .collect();
    let mounted = mount_rootfs(&through_stage, upper, work, target);
    let detached = super::idmap::unmount(stage).map_err(dir_err(stage));
    mounted?;
    detached?;
    let _ = std::fs::remove_dir(stage);
    Ok(())
}

/// Unmounts a rootfs (idempotent: not mounted is fine).
pub fn unmount_rootfs(target: &Path) -> Result<(), OverlayError> {
    match nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => Ok(()),
        Err(source) => Err(OverlayError::Unmount {
            target: target.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_share_their_store_as_parent() {
        let lowers: Vec<PathBuf> = ["/s/layers/a/diff", "/s/layers/b/diff"]
            .iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(common_parent(&lowers), Some(PathBuf::from("/s/layers")));
        assert_eq!(
            common_parent(&lowers[..1]),
            Some(PathBuf::from("/s/layers/a"))
        );
    }

    #[test]
    fn top_layer_comes_first() {
        let opts = overlay_options(
            &["/l/bottom".into(), "/l/top".into()],
            Path::new("/u"),
            Path::new("/w"),
        );
        assert_eq!(opts, "lowerdir=/l/top:/l/bottom,upperdir=/u,workdir=/w");
    }
}
