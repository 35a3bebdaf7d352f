//! ID-mapped mounts (Linux 5.12; overlayfs layers 5.19, tmpfs 6.3): a clone of a
//! directory tree whose file owners appear shifted by a user namespace's mapping, so
//! files owned by root on disk are owned by the pod's root inside a pod with its own
//! user namespace, and what it writes lands on disk as the pod sees it. The daemon
//! makes them itself (open_tree, mount_setattr, move_mount), so a runtime only has to
//! join the pod's user namespace: bind mounts of an ID-mapped mount keep the mapping.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

const OPEN_TREE_CLONE: libc::c_uint = 1;
const OPEN_TREE_CLOEXEC: libc::c_uint = libc::O_CLOEXEC as libc::c_uint;
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

/// `struct mount_attr` of `mount_setattr(2)`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::other("path holds a NUL byte"))
}

/// A detached clone of `source` (its whole tree when `recursive`), ID-mapped
/// through `userns` (a user namespace file), read-only when asked.
pub(crate) fn idmapped_clone(
    source: &Path,
    userns: &File,
    recursive: bool,
    readonly: bool,
) -> io::Result<OwnedFd> {
    let path = c_path(source)?;
    let recursive_flag = if recursive {
        libc::AT_RECURSIVE as libc::c_uint
    } else {
        0
    };
    // SAFETY: open_tree reads the NUL-terminated path, which outlives the call, and
    // returns a new file descriptor or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            path.as_ptr(),
            OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | recursive_flag,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::other("open_tree: fd out of range"))?;
    // SAFETY: open_tree returned a file descriptor nothing else owns.
    let tree = unsafe { OwnedFd::from_raw_fd(fd) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP | if readonly { MOUNT_ATTR_RDONLY } else { 0 },
        attr_clr: 0,
        propagation: 0,
        userns_fd: u64::try_from(userns.as_raw_fd()).unwrap_or_default(),
    };
    let empty = c"";
    let flags = libc::AT_EMPTY_PATH as libc::c_uint | recursive_flag;
    // SAFETY: mount_setattr reads `attr` (of the size passed) and the empty path, both
    // alive for the call; the fds are open.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            empty.as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(tree)
}

/// Attaches a detached mount (from [`idmapped_clone`]) at `target`.
pub(crate) fn attach(tree: &OwnedFd, target: &Path) -> io::Result<()> {
    let to = c_path(target)?;
    let empty = c"";
    // SAFETY: move_mount reads the two NUL-terminated paths, alive for the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Mounts an ID-mapped clone of `source` at `target` (created, as a directory or an
/// empty file like `source`).
pub(crate) fn mount_idmapped(
    source: &Path,
    target: &Path,
    userns: &File,
    recursive: bool,
    readonly: bool,
) -> io::Result<()> {
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if std::fs::metadata(source)?.is_dir() {
        std::fs::create_dir_all(target)?;
    } else if !target.exists() {
        File::create(target)?;
    }
    let tree = idmapped_clone(source, userns, recursive, readonly)?;
    attach(&tree, target)
}

/// Detaches a mount made here (idempotent).
pub(crate) fn unmount(target: &Path) -> io::Result<()> {
    match nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
