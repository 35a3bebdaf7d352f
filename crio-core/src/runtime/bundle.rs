//! A task's bundle as the daemon writes it for a shim: the OCI spec.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Writes `<bundle>/config.json`, readable by root only (it holds the container's
/// environment: secrets), whole or not at all.
pub(crate) fn write_spec(bundle: &Path, spec: &oci_spec::runtime::Spec) -> std::io::Result<()> {
    let path = bundle.join("config.json");
    let tmp = bundle.join(".config.json.tmp");
    let bytes = serde_json::to_vec(spec).map_err(std::io::Error::other)?;
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(&bytes)?;
    drop(file);
    std::fs::rename(&tmp, &path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_spec_is_written_whole_and_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = oci_spec::runtime::Spec::default();
        write_spec(dir.path(), &spec).expect("write");
        write_spec(dir.path(), &spec).expect("rewrite");
        let path = dir.path().join("config.json");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let read: oci_spec::runtime::Spec =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("parse");
        assert_eq!(read, spec);
        assert!(!dir.path().join(".config.json.tmp").exists());
    }
}
