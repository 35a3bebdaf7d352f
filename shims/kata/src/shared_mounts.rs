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

/// Makes `dir` the container's bundle for the guest: `rootfs` bound from the
/// host's rootfs, each of `bundle`'s binds beside it, and the fitted
/// `config.json`. On failure what was made is undone.
pub fn bind_bundle(dir: &Path, rootfs: &Path, bundle: &GuestBundle) -> Result<(), Error> {
    let made = (|| {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        bind(rootfs, &dir.join("rootfs"))?;
        for (source, name) in &bundle.binds {
            bind(source, &dir.join(name))?;
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

/// Unmounts everything below `dir` and removes it.
pub fn release(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let _ = umount2(&entry.path(), MntFlags::MNT_DETACH);
        }
    }
    if let Err(e) = std::fs::remove_dir_all(dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(dir = %dir.display(), "remove: {e}");
        }
    }
}
