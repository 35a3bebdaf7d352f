//! Container root filesystems from an image's layers, by storage driver
//! (`[crio] storage_driver`):
//!
//! - `overlay`: an overlayfs mount of the layer dirs with a private upper and work
//!   dir (see [`super::overlay`]); nothing is copied.
//! - `vfs`: for hosts without overlayfs, a private copy. The layer dirs are copied
//!   bottom layer first into one directory, applying the layers' overlayfs whiteouts
//!   as overlayfs would show them: a 0:0 character device deletes that name from the
//!   layers below, a directory with `trusted.overlay.opaque=y` hides what the layers
//!   below had in it. Ownership, modes (setuid included), times, extended attributes
//!   (except overlayfs's own), hard links, symlinks, device nodes and FIFOs are kept.
//!   The copy is built under `rootfs.partial` and renamed into place, so a
//!   `rootfs` that exists is whole.
//!
//! Every container gets its own `container_dir`; inside it this module owns
//! `rootfs` (the root filesystem handed to the runtime), `upper`/`work` (overlay)
//! and `rootfs.partial` (vfs, while copying).
//!
//! The life of a rootfs: [`prepare_rootfs`] when the container is created (again
//! after a daemon restart: it is idempotent and keeps what the container wrote),
//! [`unmount_rootfs`] when it stops (the data stays), [`release_rootfs`] when it is
//! removed (unmounted and deleted).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use nix::sys::stat::{Mode, SFlag};
use nix::sys::time::TimeSpec;

use super::overlay::{self, OverlayError};
use crate::config::{STORAGE_DRIVERS, STORAGE_DRIVER_OVERLAY, STORAGE_DRIVER_VFS};

/// The root filesystem's directory inside a container dir.
pub const ROOTFS_DIR: &str = "rootfs";
/// Overlay's upper dir (what the container wrote) inside a container dir.
pub const UPPER_DIR: &str = "upper";
/// Overlay's work dir inside a container dir.
pub const WORK_DIR: &str = "work";
/// Where a vfs copy is built before it is renamed to [`ROOTFS_DIR`].
pub const PARTIAL_DIR: &str = "rootfs.partial";
/// Where ID-mapped layers are attached while an overlay is mounted over them.
pub const STAGE_DIR: &str = "lowers";
/// ID-mapped clones of a container's volume sources, one per mount.
pub const IDMAPPED_DIR: &str = "idmapped";

/// The overlayfs xattr marking an opaque directory (set by the layer unpacker).
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// Xattrs overlayfs interprets: never copied into a vfs rootfs.
const OVERLAY_XATTR_PREFIXES: [&str; 2] = ["trusted.overlay.", "user.overlay."];

/// How container root filesystems are built (`[crio] storage_driver`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StorageDriver {
    /// An overlayfs mount over the layer dirs.
    #[default]
    Overlay,
    /// A private copy of the layers (no overlayfs needed).
    Vfs,
}

impl StorageDriver {
    /// The name CRI-O uses for it (and `/info` reports).
    pub fn name(self) -> &'static str {
        match self {
            StorageDriver::Overlay => STORAGE_DRIVER_OVERLAY,
            StorageDriver::Vfs => STORAGE_DRIVER_VFS,
        }
    }
}

impl fmt::Display for StorageDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for StorageDriver {
    type Err = RootfsError;

    /// A `storage_driver` value; empty means `overlay` (CRI-O's empty value means
    /// containers/storage's default driver).
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "" => Ok(StorageDriver::Overlay),
            v if v == STORAGE_DRIVER_OVERLAY => Ok(StorageDriver::Overlay),
            v if v == STORAGE_DRIVER_VFS => Ok(StorageDriver::Vfs),
            other => Err(RootfsError::UnknownDriver(other.to_string())),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("unknown storage driver {0:?} (accepted: {accepted})", accepted = STORAGE_DRIVERS.join(", "))]
    UnknownDriver(String),
    #[error(transparent)]
    Overlay(#[from] OverlayError),
    #[error("an image with no layers has no root filesystem")]
    NoLayers,
    #[error("vfs rootfs: {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("a pod with its own user namespace needs the overlay storage driver (its layers are ID-mapped; a vfs copy is not)")]
    IdmapNeedsOverlay,
    #[error("removing the rootfs of {dir}: {mount} is still mounted")]
    Busy { dir: PathBuf, mount: PathBuf },
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> RootfsError + 'a {
    move |source| RootfsError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

fn nix_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(nix::Error) -> RootfsError + 'a {
    move |errno| io_err(action, path)(io::Error::from(errno))
}

/// Builds the root filesystem of one container from its image's layer dirs
/// (`layers`: bottom layer first, as [`overlay::mount_rootfs`] takes them) in
/// `container_dir` (created if missing) and returns its path, `<container_dir>/rootfs`.
///
/// Idempotent: an overlay that is mounted already, or a vfs copy that exists
/// already, is returned as it is, with whatever the container wrote. Blocking (a
/// vfs copy reads and writes the whole image): call it from a blocking thread.
pub fn prepare_rootfs(
    driver: StorageDriver,
    layers: &[PathBuf],
    container_dir: &Path,
) -> Result<PathBuf, RootfsError> {
    prepare(driver, layers, container_dir, None)
}

/// The user namespace a rootfs is seen from (a pod with `hostUsers: false`): its
/// file, and the host IDs of its root.
#[derive(Debug)]
pub struct RootIdmap<'a> {
    pub userns: &'a fs::File,
    pub root: (u32, u32),
}

/// [`prepare_rootfs`] for a pod with its own user namespace: the layers are
/// ID-mapped through it (overlay only: a vfs copy would have to be chowned).
pub fn prepare_rootfs_idmapped(
    driver: StorageDriver,
    layers: &[PathBuf],
    container_dir: &Path,
    idmap: &RootIdmap<'_>,
) -> Result<PathBuf, RootfsError> {
    prepare(driver, layers, container_dir, Some(idmap))
}

fn prepare(
    driver: StorageDriver,
    layers: &[PathBuf],
    container_dir: &Path,
    idmap: Option<&RootIdmap<'_>>,
) -> Result<PathBuf, RootfsError> {
    if idmap.is_some() && driver != StorageDriver::Overlay {
        return Err(RootfsError::IdmapNeedsOverlay);
    }
    if layers.is_empty() {
        return Err(RootfsError::NoLayers);
    }
    fs::create_dir_all(container_dir).map_err(io_err("create", container_dir))?;
    let target = container_dir.join(ROOTFS_DIR);
    match driver {
        StorageDriver::Overlay => {
            // A rootfs directory not made yet is not mounted: only a retry reads
            // mountinfo, which grows with every pod of the node.
            if target.exists() && is_mounted(&target) {
                return Ok(target);
            }
            let (upper, work) = (container_dir.join(UPPER_DIR), container_dir.join(WORK_DIR));
            match idmap {
                None => overlay::mount_rootfs(layers, &upper, &work, &target)?,
                Some(m) => overlay::mount_rootfs_idmapped(
                    layers,
                    &upper,
                    &work,
                    &target,
                    &container_dir.join(STAGE_DIR),
                    m.userns,
                    m.root,
                )?,
            }
        }
        StorageDriver::Vfs => {
            if fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()) {
                return Ok(target);
            }
            let partial = container_dir.join(PARTIAL_DIR);
            // Left by an interrupted copy: never reused.
            remove_tree(&partial)?;
            fs::create_dir(&partial).map_err(io_err("create", &partial))?;
            let copied = copy_layers(layers, &partial).and_then(|()| {
                // One syncfs instead of an fsync per file: the rename below must not
                // become durable before the data it publishes.
                let dir = fs::File::open(&partial).map_err(io_err("open", &partial))?;
                nix::unistd::syncfs(&dir).map_err(nix_err("sync", &partial))
            });
            if let Err(e) = copied {
                let _ = remove_tree(&partial);
                return Err(e);
            }
            fs::rename(&partial, &target).map_err(io_err("rename into place", &target))?;
            super::sync_dir(container_dir).map_err(io_err("sync", container_dir))?;
            tracing::debug!(rootfs = %target.display(), layers = layers.len(), "vfs rootfs copied");
        }
    }
    Ok(target)
}

/// Mounts an ID-mapped clone of a volume `source` (seen through `userns`) as the
/// `index`th of the container's, and returns where: a bind of it keeps the mapping.
pub fn stage_idmapped_volume(
    container_dir: &Path,
    index: usize,
    source: &Path,
    userns: &fs::File,
) -> Result<PathBuf, RootfsError> {
    let target = container_dir.join(IDMAPPED_DIR).join(index.to_string());
    super::idmap::unmount(&target).map_err(io_err("unmount", &target))?;
    super::idmap::mount_idmapped(source, &target, userns, true, false)
        .map_err(io_err("ID-map a clone of the volume at", &target))?;
    Ok(target)
}

/// Unmounts and removes the ID-mapped volume clones of a container (idempotent).
fn release_idmapped_volumes(container_dir: &Path) -> Result<(), RootfsError> {
    let dir = container_dir.join(IDMAPPED_DIR);
    let Ok(entries) = fs::read_dir(&dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let path = entry.path();
        super::idmap::unmount(&path).map_err(io_err("unmount", &path))?;
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => fs::remove_dir(&path),
            Ok(_) => fs::remove_file(&path),
            Err(_) => Ok(()),
        }
        .map_err(io_err("remove", &path))?;
    }
    let _ = fs::remove_dir(&dir);
    Ok(())
}

/// Stops using a container's rootfs but keeps its data (a stopped container):
/// `overlay` unmounts it, `vfs` has nothing to do. Idempotent.
pub fn unmount_rootfs(driver: StorageDriver, container_dir: &Path) -> Result<(), RootfsError> {
    match driver {
        StorageDriver::Overlay => Ok(overlay::unmount_rootfs(&container_dir.join(ROOTFS_DIR))?),
        StorageDriver::Vfs => Ok(()),
    }
}

/// Tears down what [`prepare_rootfs`] made: unmounts (overlay) and deletes the
/// rootfs and everything the container wrote to it. `container_dir` itself and
/// anything else in it stay. Idempotent. Refuses, without deleting anything, while
/// something is still mounted inside the rootfs (deleting would reach through the
/// mount).
pub fn release_rootfs(driver: StorageDriver, container_dir: &Path) -> Result<(), RootfsError> {
    let target = container_dir.join(ROOTFS_DIR);
    if driver == StorageDriver::Overlay {
        overlay::unmount_rootfs(&target)?;
    }
    // Either driver: a daemon restarted with the other driver still cleans up.
    let _ = super::idmap::unmount(&container_dir.join(STAGE_DIR));
    release_idmapped_volumes(container_dir)?;
    for dir in [ROOTFS_DIR, PARTIAL_DIR, UPPER_DIR, WORK_DIR, STAGE_DIR] {
        let path = container_dir.join(dir);
        if let Some(mount) = mounts_at_or_below(&path).into_iter().next() {
            return Err(RootfsError::Busy {
                dir: container_dir.to_path_buf(),
                mount,
            });
        }
    }
    for dir in [ROOTFS_DIR, PARTIAL_DIR, UPPER_DIR, WORK_DIR, STAGE_DIR] {
        remove_tree(&container_dir.join(dir))?;
    }
    Ok(())
}

/// Removes a container's storage directory from its path: undoes the mounts
/// [`prepare_rootfs`] made (whatever driver made them: the daemon may have restarted
/// with another one), then renames the directory into the trash
/// ([`super::trash`]) and says where it went, for the caller to delete off the
/// request path. Refuses, moving nothing, while something is still mounted inside it.
pub fn retire_container_dir(container_dir: &Path) -> Result<Option<PathBuf>, RootfsError> {
    // A failure (no rootfs mount to undo, no privilege to) is left to the check below.
    let _ = overlay::unmount_rootfs(&container_dir.join(ROOTFS_DIR));
    let _ = super::idmap::unmount(&container_dir.join(STAGE_DIR));
    release_idmapped_volumes(container_dir)?;
    if let Some(mount) = mounts_at_or_below(container_dir).into_iter().next() {
        return Err(RootfsError::Busy {
            dir: container_dir.to_path_buf(),
            mount,
        });
    }
    super::trash::move_to_trash(container_dir).map_err(io_err("move to the trash", container_dir))
}

/// Copies `layers` (bottom first) into the empty directory `dest` as overlayfs
/// would merge them.
pub fn copy_layers(layers: &[PathBuf], dest: &Path) -> Result<(), RootfsError> {
    let mut copier = Copier::default();
    for layer in layers {
        copier.apply_layer(layer, dest)?;
    }
    copier.finish()
}

/// What copying remembers across entries and layers.
#[derive(Default)]
struct Copier {
    /// Source inode `(dev, ino)` of a multiply linked file -> its first copy.
    links: HashMap<(u64, u64), PathBuf>,
    /// Directory times, set last (creating children changes them). A higher
    /// layer's directory replaces a lower one's entry.
    dir_times: HashMap<PathBuf, (TimeSpec, TimeSpec)>,
}

impl Copier {
    fn apply_layer(&mut self, layer: &Path, dest: &Path) -> Result<(), RootfsError> {
        let meta = fs::symlink_metadata(layer).map_err(io_err("read layer", layer))?;
        if !meta.is_dir() {
            return Err(io_err("read layer", layer)(io::Error::other(
                "not a directory",
            )));
        }
        // Depth-first without recursion: a hostile image may nest thousands deep.
        let mut stack = vec![(layer.to_path_buf(), dest.to_path_buf())];
        self.enter_dir(layer, &meta, dest)?;
        while let Some((src_dir, dst_dir)) = stack.pop() {
            let entries = fs::read_dir(&src_dir).map_err(io_err("read", &src_dir))?;
            for entry in entries {
                let entry = entry.map_err(io_err("read", &src_dir))?;
                let src = entry.path();
                let dst = dst_dir.join(entry.file_name());
                let meta = fs::symlink_metadata(&src).map_err(io_err("stat", &src))?;
                let kind = meta.file_type();
                if kind.is_char_device() && meta.rdev() == 0 {
                    // A whiteout: the name is gone from the layers below.
                    remove_tree(&dst)?;
                } else if kind.is_dir() {
                    match fs::symlink_metadata(&dst) {
                        Ok(existing) if existing.is_dir() => {}
                        Ok(_) => {
                            // A directory over a non-directory hides it.
                            remove_tree(&dst)?;
                            fs::create_dir(&dst).map_err(io_err("create", &dst))?;
                        }
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {
                            fs::create_dir(&dst).map_err(io_err("create", &dst))?;
                        }
                        Err(e) => return Err(io_err("stat", &dst)(e)),
                    }
                    self.enter_dir(&src, &meta, &dst)?;
                    stack.push((src, dst));
                } else {
                    remove_tree(&dst)?;
                    self.copy_entry(&src, &meta, &dst)?;
                }
            }
        }
        Ok(())
    }

    /// A layer's directory over the existing directory `dst`: an opaque one first
    /// empties it, then its owner, mode and xattrs win.
    fn enter_dir(
        &mut self,
        src: &Path,
        meta: &fs::Metadata,
        dst: &Path,
    ) -> Result<(), RootfsError> {
        if is_opaque(src)? {
            let entries = fs::read_dir(dst).map_err(io_err("read", dst))?;
            for entry in entries {
                let entry = entry.map_err(io_err("read", dst))?;
                remove_tree(&entry.path())?;
            }
        }
        set_owner(dst, meta)?;
        fs::set_permissions(dst, fs::Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(io_err("chmod", dst))?;
        copy_xattrs(src, dst)?;
        self.dir_times.insert(dst.to_path_buf(), times(meta));
        Ok(())
    }

    /// Copies one non-directory (`dst` does not exist).
    fn copy_entry(
        &mut self,
        src: &Path,
        meta: &fs::Metadata,
        dst: &Path,
    ) -> Result<(), RootfsError> {
        let key = (meta.dev(), meta.ino());
        if meta.nlink() > 1 {
            if let Some(first) = self.links.get(&key) {
                // Still there: a layer cannot delete what it adds itself.
                if fs::symlink_metadata(first).is_ok() {
                    return fs::hard_link(first, dst).map_err(io_err("hard link", dst));
                }
            }
        }
        let kind = meta.file_type();
        let perm = meta.mode() & 0o7777;
        if kind.is_file() {
            let mut from = fs::File::open(src).map_err(io_err("open", src))?;
            let mut to = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(dst)
                .map_err(io_err("create", dst))?;
            // copy_file_range where the filesystem has it.
            io::copy(&mut from, &mut to).map_err(io_err("copy to", dst))?;
        } else if kind.is_symlink() {
            let target = fs::read_link(src).map_err(io_err("read link", src))?;
            std::os::unix::fs::symlink(&target, dst).map_err(io_err("create symlink", dst))?;
        } else {
            let node = if kind.is_char_device() {
                SFlag::S_IFCHR
            } else if kind.is_block_device() {
                SFlag::S_IFBLK
            } else if kind.is_fifo() {
                SFlag::S_IFIFO
            } else {
                SFlag::S_IFSOCK
            };
            nix::sys::stat::mknod(dst, node, Mode::from_bits_truncate(perm), meta.rdev())
                .map_err(nix_err("create node", dst))?;
        }
        // Owner before mode: chown clears setuid/setgid bits; xattrs after chown,
        // which drops security.capability.
        set_owner(dst, meta)?;
        if !kind.is_symlink() {
            fs::set_permissions(dst, fs::Permissions::from_mode(perm))
                .map_err(io_err("chmod", dst))?;
        }
        copy_xattrs(src, dst)?;
        let (atime, mtime) = times(meta);
        set_times(dst, &atime, &mtime)?;
        if meta.nlink() > 1 {
            self.links.insert(key, dst.to_path_buf());
        }
        Ok(())
    }

    /// Directory times, once every layer is in. A path that a higher layer turned
    /// into something else (or deleted) is skipped; links are never followed.
    fn finish(self) -> Result<(), RootfsError> {
        for (dir, (atime, mtime)) in &self.dir_times {
            if fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()) {
                set_times(dir, atime, mtime)?;
            }
        }
        Ok(())
    }
}

fn times(meta: &fs::Metadata) -> (TimeSpec, TimeSpec) {
    (
        TimeSpec::new(meta.atime(), meta.atime_nsec()),
        TimeSpec::new(meta.mtime(), meta.mtime_nsec()),
    )
}

fn set_times(path: &Path, atime: &TimeSpec, mtime: &TimeSpec) -> Result<(), RootfsError> {
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        atime,
        mtime,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .map_err(nix_err("set times of", path))
}

fn set_owner(path: &Path, meta: &fs::Metadata) -> Result<(), RootfsError> {
    nix::unistd::fchownat(
        nix::fcntl::AT_FDCWD,
        path,
        Some(nix::unistd::Uid::from_raw(meta.uid())),
        Some(nix::unistd::Gid::from_raw(meta.gid())),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(nix_err("chown", path))
}

/// Whether the layer marked `dir` opaque (the unpacker's `.wh..wh..opq` conversion).
fn is_opaque(dir: &Path) -> Result<bool, RootfsError> {
    match xattr::get(dir, OPAQUE_XATTR) {
        Ok(value) => Ok(value.as_deref() == Some(b"y".as_slice())),
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => Ok(false),
        Err(e) => Err(io_err("read xattrs of", dir)(e)),
    }
}

/// Every xattr but overlayfs's own (the xattr crate never follows symlinks).
fn copy_xattrs(src: &Path, dst: &Path) -> Result<(), RootfsError> {
    let names = match xattr::list(src) {
        Ok(names) => names,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(()),
        Err(e) => return Err(io_err("list xattrs of", src)(e)),
    };
    for name in names {
        let text = name.to_string_lossy();
        if OVERLAY_XATTR_PREFIXES.iter().any(|p| text.starts_with(p)) {
            continue;
        }
        let Some(value) = xattr::get(src, &name).map_err(io_err("read xattrs of", src))? else {
            continue;
        };
        match xattr::set(dst, &name, &value) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => {
                tracing::warn!(path = %dst.display(), "xattr {text} not supported here: skipped");
            }
            Err(e) => return Err(io_err("set xattrs of", dst)(e)),
        }
    }
    Ok(())
}

/// Removes a file, symlink or whole directory tree (never following symlinks); a
/// missing path is fine.
fn remove_tree(path: &Path) -> Result<(), RootfsError> {
    let result = match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("remove", path)(e)),
    }
}

/// Whether `path` itself is a mount point (from /proc/self/mountinfo).
fn is_mounted(path: &Path) -> bool {
    mounts_at_or_below(path).iter().any(|m| m == path)
}

/// Mount points at or below `dir`, from /proc/self/mountinfo.
fn mounts_at_or_below(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut seen = HashSet::new();
    info.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape_mountinfo(field)))
        .filter(|p| p.starts_with(dir) && seen.insert(p.clone()))
        .collect()
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(field: &str) -> String {
    let mut out = Vec::with_capacity(field.len());
    let bytes = field.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .and_then(|o| std::str::from_utf8(o).ok())
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::os::unix::fs::symlink;

    use super::*;

    fn whiteout(path: &Path) {
        nix::sys::stat::mknod(path, SFlag::S_IFCHR, Mode::empty(), 0).expect("whiteout");
    }

    fn write(path: &Path, text: &str) {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("mkdir");
        }
        fs::write(path, text).expect("write");
    }

    /// Two layer dirs in the layer store's (overlayfs) form.
    fn layers(base: &Path) -> Vec<PathBuf> {
        let l1 = base.join("l1");
        let l2 = base.join("l2");
        write(&l1.join("data/keep"), "kept\n");
        write(&l1.join("data/remove-me"), "deleted above\n");
        write(&l1.join("opaque/old-file"), "hidden above\n");
        write(&l1.join("opaque/sub/deep"), "hidden above too\n");
        write(&l1.join("bin/busybox"), "#!binary\n");
        fs::set_permissions(l1.join("bin/busybox"), fs::Permissions::from_mode(0o755))
            .expect("chmod");
        fs::hard_link(l1.join("bin/busybox"), l1.join("bin/ls")).expect("link");
        fs::hard_link(l1.join("bin/busybox"), l1.join("bin/cat")).expect("link");
        symlink("busybox", l1.join("bin/sh")).expect("symlink");
        write(&l1.join("bin/suid"), "setuid\n");
        nix::unistd::chown(
            &l1.join("bin/suid"),
            Some(nix::unistd::Uid::from_raw(1000)),
            Some(nix::unistd::Gid::from_raw(1001)),
        )
        .expect("chown");
        fs::set_permissions(l1.join("bin/suid"), fs::Permissions::from_mode(0o4750))
            .expect("chmod");
        xattr::set(l1.join("bin/suid"), "user.test", b"hello").expect("xattr");
        fs::create_dir_all(l1.join("dev")).expect("mkdir");
        nix::sys::stat::mknod(
            &l1.join("dev/null"),
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(1, 3),
        )
        .expect("mknod");
        nix::unistd::mkfifo(&l1.join("dev/fifo"), Mode::from_bits_truncate(0o600)).expect("mkfifo");
        write(&l1.join("file-then-dir"), "a file below\n");
        write(&l1.join("dir-then-file/inner"), "a dir below\n");
        symlink("/etc", l1.join("link-then-dir")).expect("symlink");
        let tmp = l1.join("tmp");
        fs::create_dir(&tmp).expect("mkdir");
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o1777)).expect("chmod");

        whiteout(&{
            fs::create_dir_all(l2.join("data")).expect("mkdir");
            l2.join("data/remove-me")
        });
        whiteout(&l2.join("never-existed"));
        write(&l2.join("opaque/new-file"), "from the top layer\n");
        xattr::set(l2.join("opaque"), OPAQUE_XATTR, b"y").expect("opaque xattr");
        fs::create_dir_all(l2.join("bin")).expect("mkdir");
        whiteout(&l2.join("bin/cat"));
        write(&l2.join("file-then-dir/now"), "a dir above\n");
        write(&l2.join("dir-then-file"), "a file above\n");
        write(&l2.join("link-then-dir/passwd"), "not /etc/passwd\n");
        vec![l1, l2]
    }

    #[derive(Debug, PartialEq)]
    struct Node {
        kind: &'static str,
        mode: u32,
        uid: u32,
        gid: u32,
        rdev: u64,
        content: Vec<u8>,
        xattrs: BTreeMap<String, Vec<u8>>,
        mtime: (i64, i64),
    }

    /// Everything a container would see in a tree (the root's own metadata aside:
    /// overlayfs shows its upper dir's), with hard-link groups.
    fn snapshot(root: &Path) -> (BTreeMap<PathBuf, Node>, Vec<Vec<PathBuf>>) {
        let mut nodes = BTreeMap::new();
        let mut inodes: BTreeMap<u64, Vec<PathBuf>> = BTreeMap::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(&dir).expect("read_dir") {
                let path = entry.expect("entry").path();
                let meta = fs::symlink_metadata(&path).expect("stat");
                let rel = path.strip_prefix(root).expect("below").to_path_buf();
                let kind = meta.file_type();
                let (kind_name, content) = if kind.is_dir() {
                    stack.push(path.clone());
                    ("dir", Vec::new())
                } else if kind.is_symlink() {
                    let target = fs::read_link(&path).expect("readlink");
                    ("symlink", target.into_os_string().into_encoded_bytes())
                } else if kind.is_file() {
                    inodes.entry(meta.ino()).or_default().push(rel.clone());
                    ("file", fs::read(&path).expect("read"))
                } else if kind.is_char_device() {
                    ("char", Vec::new())
                } else if kind.is_fifo() {
                    ("fifo", Vec::new())
                } else {
                    ("other", Vec::new())
                };
                let xattrs = xattr::list(&path)
                    .expect("xattrs")
                    .filter(|n| !n.to_string_lossy().starts_with("trusted.overlay."))
                    .map(|n| {
                        let value = xattr::get(&path, &n).expect("xattr").unwrap_or_default();
                        (n.to_string_lossy().into_owned(), value)
                    })
                    .collect();
                nodes.insert(
                    rel,
                    Node {
                        kind: kind_name,
                        mode: meta.mode() & 0o7777,
                        uid: meta.uid(),
                        gid: meta.gid(),
                        rdev: meta.rdev(),
                        content,
                        xattrs,
                        mtime: (meta.mtime(), meta.mtime_nsec()),
                    },
                );
            }
        }
        let mut groups: Vec<Vec<PathBuf>> = inodes
            .into_values()
            .filter(|g| g.len() > 1)
            .map(|mut g| {
                g.sort();
                g
            })
            .collect();
        groups.sort();
        (nodes, groups)
    }

    #[test]
    fn driver_names_parse_and_print() {
        assert_eq!(
            "overlay".parse::<StorageDriver>().ok(),
            Some(StorageDriver::Overlay)
        );
        assert_eq!(
            "".parse::<StorageDriver>().ok(),
            Some(StorageDriver::Overlay)
        );
        assert_eq!(
            "vfs".parse::<StorageDriver>().ok(),
            Some(StorageDriver::Vfs)
        );
        assert_eq!(StorageDriver::Vfs.to_string(), "vfs");
        let err = "btrfs".parse::<StorageDriver>().expect_err("unknown");
        assert_eq!(
            err.to_string(),
            "unknown storage driver \"btrfs\" (accepted: overlay, vfs)"
        );
    }

    #[test]
    fn vfs_copy_applies_whiteouts_and_opaque_dirs_and_keeps_metadata() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let lowers = layers(tmp.path());
        let container = tmp.path().join("ctr");
        let rootfs = prepare_rootfs(StorageDriver::Vfs, &lowers, &container).expect("vfs");
        assert_eq!(rootfs, container.join("rootfs"));
        let read = |p: &str| fs::read_to_string(rootfs.join(p)).unwrap_or_default();
        let exists = |p: &str| fs::symlink_metadata(rootfs.join(p)).is_ok();

        assert_eq!(read("data/keep"), "kept\n");
        assert!(!exists("data/remove-me"), "whiteout deletes");
        assert!(
            !exists("never-existed"),
            "a whiteout of nothing creates nothing"
        );
        let opaque: Vec<_> = fs::read_dir(rootfs.join("opaque"))
            .expect("opaque")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(
            opaque,
            ["new-file"],
            "an opaque dir holds only the upper's entries"
        );
        assert_eq!(
            xattr::get(rootfs.join("opaque"), OPAQUE_XATTR).expect("xattr"),
            None,
            "overlay xattrs are not copied"
        );
        // Hard links stay links; a whiteout of one name keeps the others.
        let busybox = fs::metadata(rootfs.join("bin/busybox")).expect("busybox");
        let ls = fs::metadata(rootfs.join("bin/ls")).expect("ls");
        assert_eq!(busybox.ino(), ls.ino());
        assert_eq!(busybox.nlink(), 2);
        assert!(!exists("bin/cat"));
        assert_eq!(
            fs::read_link(rootfs.join("bin/sh")).expect("link"),
            Path::new("busybox")
        );
        let suid = fs::metadata(rootfs.join("bin/suid")).expect("suid");
        assert_eq!((suid.uid(), suid.gid()), (1000, 1001));
        assert_eq!(suid.mode() & 0o7777, 0o4750, "setuid survives the chown");
        assert_eq!(
            xattr::get(rootfs.join("bin/suid"), "user.test").expect("xattr"),
            Some(b"hello".to_vec())
        );
        let null = fs::symlink_metadata(rootfs.join("dev/null")).expect("null");
        assert!(null.file_type().is_char_device());
        assert_eq!(null.rdev(), nix::sys::stat::makedev(1, 3));
        assert!(fs::symlink_metadata(rootfs.join("dev/fifo"))
            .expect("fifo")
            .file_type()
            .is_fifo());
        assert_eq!(
            fs::metadata(rootfs.join("tmp")).expect("tmp").mode() & 0o7777,
            0o1777
        );
        assert_eq!(read("file-then-dir/now"), "a dir above\n");
        assert_eq!(read("dir-then-file"), "a file above\n");
        assert!(fs::symlink_metadata(rootfs.join("link-then-dir"))
            .expect("dir")
            .is_dir());
        assert_eq!(read("link-then-dir/passwd"), "not /etc/passwd\n");
        // Times are the layers', not the copy's.
        let src = fs::metadata(lowers[0].join("data/keep")).expect("src");
        let dst = fs::metadata(rootfs.join("data/keep")).expect("dst");
        assert_eq!(
            (dst.mtime(), dst.mtime_nsec()),
            (src.mtime(), src.mtime_nsec())
        );
        assert!(!container.join(PARTIAL_DIR).exists());
    }

    #[test]
    fn vfs_copy_matches_the_overlay_mount() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let lowers = layers(tmp.path());
        let vfs =
            prepare_rootfs(StorageDriver::Vfs, &lowers, &tmp.path().join("vfs")).expect("vfs");
        let ovl_dir = tmp.path().join("ovl");
        let ovl = prepare_rootfs(StorageDriver::Overlay, &lowers, &ovl_dir).expect("overlay");
        let (ovl_nodes, ovl_links) = snapshot(&ovl);
        let (vfs_nodes, vfs_links) = snapshot(&vfs);
        release_rootfs(StorageDriver::Overlay, &ovl_dir).expect("release");
        assert!(ovl_nodes.contains_key(Path::new("opaque/new-file")));
        let ovl_paths: Vec<_> = ovl_nodes.keys().collect();
        let vfs_paths: Vec<_> = vfs_nodes.keys().collect();
        assert_eq!(vfs_paths, ovl_paths);
        for (path, node) in &ovl_nodes {
            assert_eq!(vfs_nodes.get(path), Some(node), "{}", path.display());
        }
        assert_eq!(vfs_links, ovl_links);
        assert_eq!(
            vfs_links,
            [vec![PathBuf::from("bin/busybox"), PathBuf::from("bin/ls")]]
        );
    }

    #[test]
    fn idmapped_layers_and_volumes_read_as_on_disk_from_the_pod() {
        use crate::network::userns::{create_pinned_userns, IdMapping, UsernsMappings};
        let tmp = tempfile::tempdir().expect("tempdir");
        let lowers = layers(tmp.path());
        let range = IdMapping {
            container_id: 0,
            host_id: 3 << 20,
            length: 65536,
        };
        let pin = tmp.path().join("userns");
        create_pinned_userns(
            &pin,
            &[],
            &UsernsMappings {
                uids: range,
                gids: range,
            },
            "",
        )
        .expect("user namespace");
        let userns = fs::File::open(&pin).expect("open userns");
        let container = tmp.path().join("ctr");
        let idmap = RootIdmap {
            userns: &userns,
            root: (range.host_id, range.host_id),
        };
        let result = std::panic::catch_unwind(|| {
            assert!(matches!(
                prepare_rootfs_idmapped(StorageDriver::Vfs, &lowers, &container, &idmap),
                Err(RootfsError::IdmapNeedsOverlay)
            ));
            let rootfs =
                prepare_rootfs_idmapped(StorageDriver::Overlay, &lowers, &container, &idmap)
                    .expect("idmapped overlay");
            // On-disk 0 reads as the pod's root (host 3 << 20) through the mount.
            let busybox = fs::symlink_metadata(rootfs.join("bin/busybox")).expect("busybox");
            assert_eq!(busybox.uid(), range.host_id);
            let upper = fs::metadata(container.join(UPPER_DIR)).expect("upper");
            assert_eq!(
                upper.uid(),
                range.host_id,
                "the pod's root owns its upper dir"
            );
            assert!(!container.join(STAGE_DIR).exists(), "the stage is detached");
            let volume = tmp.path().join("volume");
            fs::create_dir(&volume).expect("volume");
            fs::write(volume.join("f"), "x").expect("file");
            let staged = stage_idmapped_volume(&container, 0, &volume, &userns).expect("stage");
            let f = fs::metadata(staged.join("f")).expect("staged file");
            assert_eq!(f.uid(), range.host_id);
        });
        release_rootfs(StorageDriver::Overlay, &container).expect("release");
        crate::network::pinned_ns::remove_pinned(&pin).expect("unpin");
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
        assert!(!container.join(IDMAPPED_DIR).exists());
        assert!(!container.join(ROOTFS_DIR).exists());
    }

    #[test]
    fn vfs_prepare_is_idempotent_and_release_removes_the_copy() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let lowers = layers(tmp.path());
        let container = tmp.path().join("ctr");
        fs::create_dir_all(container.join(PARTIAL_DIR)).expect("mkdir");
        fs::write(container.join(PARTIAL_DIR).join("junk"), "interrupted").expect("write");
        let rootfs = prepare_rootfs(StorageDriver::Vfs, &lowers, &container).expect("vfs");
        assert!(
            !rootfs.join("junk").exists(),
            "an interrupted copy is not reused"
        );
        fs::write(rootfs.join("written-by-the-container"), "x").expect("write");
        let again = prepare_rootfs(StorageDriver::Vfs, &lowers, &container).expect("again");
        assert_eq!(again, rootfs);
        assert!(rootfs.join("written-by-the-container").exists(), "kept");
        unmount_rootfs(StorageDriver::Vfs, &container).expect("unmount is a no-op");
        assert!(rootfs.join("written-by-the-container").exists());
        fs::write(container.join("config.json"), "{}").expect("write");
        release_rootfs(StorageDriver::Vfs, &container).expect("release");
        assert!(!rootfs.exists());
        assert!(
            container.join("config.json").exists(),
            "only the rootfs goes"
        );
        release_rootfs(StorageDriver::Vfs, &container).expect("release twice");
    }

    #[test]
    fn overlay_prepare_mounts_once_and_release_unmounts_and_deletes() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let lowers = layers(tmp.path());
        let container = tmp.path().join("ctr");
        let rootfs = prepare_rootfs(StorageDriver::Overlay, &lowers, &container).expect("mount");
        let result = std::panic::catch_unwind(|| {
            assert!(is_mounted(&rootfs));
            fs::write(rootfs.join("written"), "x").expect("write");
            prepare_rootfs(StorageDriver::Overlay, &lowers, &container).expect("again");
            let info = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
            let target = rootfs.display().to_string();
            assert_eq!(
                info.lines()
                    .filter(|l| l.split(' ').nth(4) == Some(&target))
                    .count(),
                1,
                "mounted once"
            );
            unmount_rootfs(StorageDriver::Overlay, &container).expect("unmount");
            assert!(!is_mounted(&rootfs));
            assert!(
                container.join("upper/written").exists(),
                "data kept on stop"
            );
            prepare_rootfs(StorageDriver::Overlay, &lowers, &container).expect("remount");
            assert!(rootfs.join("written").exists());
        });
        release_rootfs(StorageDriver::Overlay, &container).expect("release");
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
        assert!(!is_mounted(&rootfs));
        assert!(!container.join("upper").exists());
        assert!(!rootfs.exists());
        assert!(lowers[0].join("data/keep").exists(), "layers untouched");
        release_rootfs(StorageDriver::Overlay, &container).expect("release twice");
    }

    #[test]
    fn release_refuses_while_something_is_mounted_inside() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let lowers = layers(tmp.path());
        let container = tmp.path().join("ctr");
        let rootfs = prepare_rootfs(StorageDriver::Vfs, &lowers, &container).expect("vfs");
        let volume = tmp.path().join("volume");
        write(&volume.join("precious"), "data");
        let inside = rootfs.join("tmp");
        nix::mount::mount(
            Some(&volume),
            &inside,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .expect("bind mount");
        let err = release_rootfs(StorageDriver::Vfs, &container);
        let _ = nix::mount::umount2(&inside, nix::mount::MntFlags::MNT_DETACH);
        match err {
            Err(RootfsError::Busy { mount, .. }) => assert_eq!(mount, inside),
            other => panic!("expected Busy, got {other:?}"),
        }
        assert!(
            volume.join("precious").exists(),
            "nothing deleted through the mount"
        );
        release_rootfs(StorageDriver::Vfs, &container).expect("release after unmount");
    }

    #[test]
    fn no_layers_is_an_error() {
        let tmp = tempfile::tempdir().expect("tempdir");
        for driver in [StorageDriver::Overlay, StorageDriver::Vfs] {
            assert!(matches!(
                prepare_rootfs(driver, &[], tmp.path()),
                Err(RootfsError::NoLayers)
            ));
        }
    }

    #[test]
    fn mountinfo_fields_are_unescaped() {
        assert_eq!(unescape_mountinfo(r"/a\040b\134c\011d"), "/a b\\c\td");
        assert_eq!(unescape_mountinfo(r"/plain\x"), r"/plain\x");
    }
}
