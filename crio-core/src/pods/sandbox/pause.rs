//! The built-in infra rootfs: the project's static `pause` (embedded in `crio`) and
//! the mount points runc needs, so pods run with no image and no registry.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The pause binary built by `build.rs` from `pause/pause.rs`.
pub static PAUSE_BINARY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pause"));

/// The command of the built-in infra container.
pub const PAUSE_COMMAND: &str = "/pause";

/// Directories the infra spec mounts over (the rootfs is read-only, so they must exist).
const MOUNT_POINTS: &[&str] = &["proc", "dev", "sys", "etc", "tmp"];

/// Writes `<dir>/rootfs` (idempotent; the binary is replaced when it changed) and
/// returns the rootfs path.
pub(crate) fn install(dir: &Path) -> std::io::Result<PathBuf> {
    let rootfs = dir.join("rootfs");
    for d in MOUNT_POINTS {
        std::fs::create_dir_all(rootfs.join(d))?;
    }
    let target = rootfs.join("pause");
    // Compared by digest: reading the embedded copy would keep its 1.2 MB resident
    // in the daemon for nothing.
    let current = std::fs::read(&target).ok().map(|bytes| sha256_hex(&bytes));
    if current.as_deref() != Some(PAUSE_SHA256) {
        let tmp = rootfs.join(".pause.tmp");
        std::fs::write(&tmp, PAUSE_BINARY)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
        std::fs::rename(&tmp, &target)?;
        release_embedded_copy();
    }
    Ok(rootfs)
}

/// The digest of [`PAUSE_BINARY`], computed when it was built.
const PAUSE_SHA256: &str = env!("CRIO_PAUSE_SHA256");

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Unmaps the pages of the embedded copy just written out: they are the
/// executable's read-only data, so a later read (there is none) would fault them
/// back in from the file.
fn release_embedded_copy() {
    let page = 4096usize;
    let start = PAUSE_BINARY.as_ptr() as usize;
    let first = start.div_ceil(page) * page;
    let end = (start + PAUSE_BINARY.len()) / page * page;
    if end > first {
        // SAFETY: [first, end) lies inside PAUSE_BINARY, a static in the
        // executable's read-only, file-backed mapping; MADV_DONTNEED on such pages
        // only drops them from this process, and any later access refaults them
        // unchanged from the file.
        unsafe {
            libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_DONTNEED);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether an ELF64 file names a program interpreter (PT_INTERP = 3).
    fn has_interpreter(elf: &[u8]) -> bool {
        let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
        let mut off = [0u8; 8];
        off.copy_from_slice(&elf[0x20..0x28]);
        let phoff = u64::from_le_bytes(off) as usize;
        let (size, count) = (u16_at(0x36), u16_at(0x38));
        (0..count).any(|i| elf[phoff + i * size..][..4] == 3u32.to_le_bytes())
    }

    #[test]
    fn installs_a_static_executable_pause() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rootfs = install(dir.path()).expect("install");
        let pause = rootfs.join("pause");
        let meta = std::fs::metadata(&pause).expect("pause");
        assert_eq!(meta.permissions().mode() & 0o777, 0o755);
        // Static: no program interpreter to find in an empty rootfs.
        let bytes = std::fs::read(&pause).expect("read");
        assert_eq!(&bytes[..4], b"\x7fELF");
        assert!(!has_interpreter(&bytes), "pause is dynamically linked");
        let out = std::process::Command::new(&pause)
            .arg("-v")
            .output()
            .expect("run pause -v");
        assert!(String::from_utf8_lossy(&out.stdout).starts_with("pause (crio-rs)"));
        install(dir.path()).expect("idempotent");
        assert_eq!(sha256_hex(PAUSE_BINARY), PAUSE_SHA256, "the build's digest");
        assert_eq!(std::fs::read(&pause).expect("read"), PAUSE_BINARY);
    }
}
