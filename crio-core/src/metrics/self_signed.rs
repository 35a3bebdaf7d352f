//! CRI-O's fallback for `metrics_cert`/`metrics_key`: when neither file exists,
//! a self-signed certificate is generated and written there (the key 0600), so
//! the endpoint serves TLS from the first start.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum SelfSignedError {
    #[error("generating a self-signed certificate for the metrics endpoint: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("writing {path} ([crio.metrics] metrics_cert, metrics_key): {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// Writes a self-signed certificate and its key when both files are missing;
/// `Ok(true)` when it did. `names` are the certificate's subject alternative
/// names (host names or IP addresses).
pub(crate) fn ensure(cert: &Path, key: &Path, names: &[String]) -> Result<bool, SelfSignedError> {
    if cert.exists() || key.exists() {
        return Ok(false);
    }
    let generated = rcgen::generate_simple_self_signed(names.to_vec())?;
    write_new(key, generated.key_pair.serialize_pem().as_bytes(), 0o600)?;
    write_new(cert, generated.cert.pem().as_bytes(), 0o644)?;
    Ok(true)
}

fn write_new(path: &Path, data: &[u8], mode: u32) -> Result<(), SelfSignedError> {
    let error = |source| SelfSignedError::Write {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(error)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(error)?;
    file.write_all(data).map_err(error)?;
    file.sync_all().map_err(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_when_both_are_missing_and_never_over_a_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = (
            dir.path().join("tls/cert.pem"),
            dir.path().join("tls/key.pem"),
        );
        assert!(ensure(&cert, &key, &["localhost".into()]).expect("generate"));
        let pem = std::fs::read_to_string(&cert).expect("cert");
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).expect("key").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!ensure(&cert, &key, &["localhost".into()]).expect("kept"));
        assert_eq!(std::fs::read_to_string(&cert).expect("cert"), pem);
        // One file without the other is the operator's: left for the TLS setup
        // to name.
        std::fs::remove_file(&cert).expect("rm");
        assert!(!ensure(&cert, &key, &["localhost".into()]).expect("kept"));
    }
}
