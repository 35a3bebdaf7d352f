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
    fn top_layer_comes_first() {
        let opts = overlay_options(
            &["/l/bottom".into(), "/l/top".into()],
            Path::new("/u"),
            Path::new("/w"),
        );
        assert_eq!(opts, "lowerdir=/l/top:/l/bottom,upperdir=/u,workdir=/w");
    }
}
