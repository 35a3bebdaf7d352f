//! Directories to delete later: a removed container's storage and bundle are
//! renamed into a trash (one rename, so they are gone from their paths at once and
//! RemoveContainer does not wait for a tree removal), then deleted off the request
//! path. Whatever a crash leaves in a trash is deleted at the next start.
//!
//! The trash of the entries of a directory `<parent>/<name>` is
//! `<parent>/trash/<name>`: beside it, so on the same filesystem, and not among the
//! entries the daemon and its users list.

use std::io;
use std::path::{Path, PathBuf};

/// The trash for the entries of `dir`.
pub fn trash_for(dir: &Path) -> Option<PathBuf> {
    Some(dir.parent()?.join("trash").join(dir.file_name()?))
}

/// Renames `entry` into the trash for its directory and says where it went
/// (nothing, when `entry` was already gone). Where no rename can take it (another
/// filesystem), it is deleted here.
pub fn move_to_trash(entry: &Path) -> io::Result<Option<PathBuf>> {
    let (Some(trash), Some(name)) = (entry.parent().and_then(trash_for), entry.file_name()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} has no directory to hold a trash beside",
                entry.display()
            ),
        ));
    };
    let target = trash.join(name);
    match std::fs::rename(entry, &target) {
        Ok(()) => Ok(Some(target)),
        Err(e) if e.kind() == io::ErrorKind::NotFound && !entry.exists() => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            super::private_dir(&trash, None)?;
            std::fs::rename(entry, &target).map(|()| Some(target))
        }
        // An earlier, unfinished removal of the same name: delete it first.
        Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => {
            std::fs::remove_dir_all(&target)?;
            std::fs::rename(entry, &target).map(|()| Some(target))
        }
        Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {
            std::fs::remove_dir_all(entry).map(|()| None)
        }
        Err(e) => Err(e),
    }
}

/// Deletes one trashed directory. Blocking; a failure is logged, and what is left
/// goes at the next start.
pub fn delete(trashed: &Path) {
    if let Err(e) = std::fs::remove_dir_all(trashed) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!("deleting {}: {e}", trashed.display());
        }
    }
}

/// Deletes everything in the trash for the entries of `dir` (at start: what a
/// crash left). Blocking.
pub fn empty(dir: &Path) {
    let Some(trash) = trash_for(dir) else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(&trash) else {
        return;
    };
    for entry in entries.flatten() {
        delete(&entry.path());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trashed_directory_leaves_its_path_at_once_and_goes_when_deleted() {
        let root = tempfile::tempdir().expect("tmp");
        let dir = root.path().join("bundles/c1");
        std::fs::create_dir_all(dir.join("upper/etc")).expect("mkdir");
        std::fs::write(dir.join("upper/etc/x"), "data").expect("write");
        let trashed = move_to_trash(&dir).expect("trash");
        assert!(!dir.exists());
        let expected = root.path().join("trash/bundles/c1");
        assert_eq!(trashed.as_deref(), Some(expected.as_path()));
        assert!(expected.join("upper/etc/x").exists());
        // Nothing is left among the directory's entries.
        let entries = std::fs::read_dir(root.path().join("bundles")).expect("dir");
        assert_eq!(entries.count(), 0);
        delete(&expected);
        assert!(!expected.exists());
    }

    #[test]
    fn a_missing_directory_is_already_gone() {
        let root = tempfile::tempdir().expect("tmp");
        let trashed = move_to_trash(&root.path().join("bundles/never-made")).expect("nothing");
        assert_eq!(trashed, None);
    }

    #[test]
    fn a_leftover_of_the_same_name_in_the_trash_is_replaced_and_emptied_at_start() {
        let root = tempfile::tempdir().expect("tmp");
        let trash = root.path().join("trash/bundles");
        std::fs::create_dir_all(trash.join("c1/old")).expect("leftover");
        std::fs::create_dir_all(trash.join("c2/old")).expect("leftover");
        std::fs::create_dir_all(root.path().join("bundles/c1/new")).expect("mkdir");
        move_to_trash(&root.path().join("bundles/c1")).expect("trash");
        assert!(trash.join("c1/new").exists());
        assert!(!trash.join("c1/old").exists());
        empty(&root.path().join("bundles"));
        assert_eq!(std::fs::read_dir(&trash).expect("trash").count(), 0);
    }
}
