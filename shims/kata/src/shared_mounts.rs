//! Binding a container's rootfs and host files into the VM's shared directory
//! (the one OS effect of preparing a guest bundle), and undoing it.

use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use shim_support::Error;

use crate::guest_bundle::GuestBundle;

fn bind(source: &Path, target: &Path) -> Result<(), Error> {
    let is_dir = std::fs::metadata(source)
        .map_err(|e| Error::io(format!("bind source {}", source.display()), e))?
        .is_dir();
    let made = if is_dir {
        std::fs::create_dir_all(target)
    } else {
        std::fs::File::create(target).map(drop)
    };
    made.map_err(|e| Error::io(format!("create {}", target.display()), e))?;
    mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| {
        Error::io(
            format!("bind {} on {}", source.display(), target.display()),
            e.into(),
        )
    })
}

/// Makes the bind at `target` a slave of its source's peers (later host mounts
/// below it reach the guest) or private (none do).
fn set_propagation(target: &Path, slave: bool) -> Result<(), Error> {
    let flags = if slave {
        MsFlags::MS_SLAVE
    } else {
        MsFlags::MS_PRIVATE
    };
    mount(
        None::<&str>,
        target,
        None::<&str>,
        flags | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| Error::io(format!("set propagation of {}", target.display()), e.into()))
}

/// Makes `dir` the container's bundle for the guest: `rootfs` bound from the
/// host's rootfs, each of `bundle`'s binds beside it, and the fitted
/// `config.json`. On failure what was made is undone.
pub fn bind_bundle(dir: &Path, rootfs: &Path, bundle: &GuestBundle) -> Result<(), Error> {
    let made = (|| {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        bind(rootfs, &dir.join("rootfs"))?;
        for b in &bundle.binds {
            let target = dir.join(&b.name);
            bind(&b.source, &target)?;
            set_propagation(&target, b.slave)?;
        }
        let spec = serde_json::to_vec(&bundle.spec)?;
        std::fs::write(dir.join("config.json"), spec)
            .map_err(|e| Error::io(format!("write {}/config.json", dir.display()), e))
    })();
    if made.is_err() {
        release(dir);
    }
    made
}

/// Unmounts everything in a container's directory `dir` and removes it.
pub fn release(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let _ = umount2(&entry.path(), MntFlags::MNT_DETACH);
        }
    }
    remove_unmounted(dir);
}

/// Makes `dir` a shared mount of its own (bound onto itself): a process that
/// copies the mount table into a namespace of its own and makes it a slave
/// (virtiofsd) still receives what is mounted below `dir` afterwards, whatever
/// the propagation of the host's mount holding it.
pub fn share(dir: &Path) -> Result<(), Error> {
    let err = |e: nix::Error| Error::io(format!("share {}", dir.display()), e.into());
    mount(Some(dir), dir, None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(err)?;
    mount(
        None::<&str>,
        dir,
        None::<&str>,
        MsFlags::MS_SHARED,
        None::<&str>,
    )
    .map_err(err)
}

/// Removes a VM's directory: its containers' mounts first, then the shared
/// directory's own mount (see [`share`]), never through a mount left.
pub fn remove_vm_dir(run_dir: &Path, shared: &Path) {
    release_all(shared);
    // Not a mount point (9p, or never shared): EINVAL, nothing to do.
    let _ = umount2(shared, MntFlags::MNT_DETACH);
    remove_unmounted(run_dir);
}

/// Releases every container directory in the VM's shared directory `shared`.
pub fn release_all(shared: &Path) {
    if let Ok(entries) = std::fs::read_dir(shared) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                release(&entry.path());
            }
        }
    }
}

/// Removes `dir` unless a mount is still below it: removing through a mount
/// would delete what it shows (a container's volume is a host directory).
pub fn remove_unmounted(dir: &Path) {
    if let Some(mount) = shim_support::mounts::mounted_below(dir) {
        tracing::warn!(dir = %dir.display(), %mount, "not removed: a mount is still below it");
        return;
    }
    if let Err(e) = std::fs::remove_dir_all(dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(dir = %dir.display(), "remove: {e}");
        }
    }
}
