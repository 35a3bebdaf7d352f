//! Disk usage of a directory tree, as `ImageFsInfo` reports it: allocated bytes and
//! inodes, hard links counted once, not following symlinks or other filesystems.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// `(bytes, inodes)` used under `root`; unreadable parts are skipped.
pub(crate) fn disk_usage(root: &Path) -> (u64, u64) {
    let Ok(meta) = std::fs::symlink_metadata(root) else {
        return (0, 0);
    };
    let device = meta.dev();
    let mut seen = HashSet::new();
    let mut bytes = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.dev() != device || !seen.insert(meta.ino()) {
            continue;
        }
        bytes += meta.blocks() * 512;
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&path) {
                stack.extend(entries.flatten().map(|e| e.path()));
            }
        }
    }
    (bytes, seen.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_hardlinks_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a"), vec![1u8; 100_000]).expect("write");
        std::fs::hard_link(dir.path().join("a"), dir.path().join("b")).expect("link");
        let (bytes, inodes) = disk_usage(dir.path());
        assert_eq!(inodes, 2, "dir + one file");
        assert!((100_000..200_000).contains(&bytes), "{bytes}");
    }
}
