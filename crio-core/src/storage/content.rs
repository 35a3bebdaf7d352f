//! The content store: small blobs (manifests, indexes, configs) by digest. A blob is
//! written to a temp file, verified, fsynced and renamed into place, so a reader never
//! sees a partial or wrong blob, whatever crashes when.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error("content store: {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: String, actual: String },
    #[error("invalid digest {0:?}")]
    BadDigest(String),
}

pub(crate) fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> ContentError + 'a {
    move |source| ContentError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// `sha256:<hex>` of `bytes`.
pub(crate) fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Blobs under `<dir>/sha256/<hex>`, temp files under `<tmp>`.
#[derive(Debug, Clone)]
pub struct ContentStore {
    dir: PathBuf,
    tmp: PathBuf,
}

impl ContentStore {
    pub(crate) fn open(dir: &Path, tmp: &Path) -> Result<Self, ContentError> {
        let blobs = dir.join("sha256");
        fs::create_dir_all(&blobs).map_err(io_err("create", &blobs))?;
        fs::create_dir_all(tmp).map_err(io_err("create", tmp))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            tmp: tmp.to_path_buf(),
        })
    }

    pub(crate) fn path(&self, digest: &str) -> Result<PathBuf, ContentError> {
        let hex = digest
            .strip_prefix("sha256:")
            .filter(|_| super::valid_digest(digest))
            .ok_or_else(|| ContentError::BadDigest(digest.to_string()))?;
        Ok(self.dir.join("sha256").join(hex))
    }

    pub(crate) fn contains(&self, digest: &str) -> bool {
        self.path(digest).is_ok_and(|p| p.is_file())
    }

    /// Verifies `bytes` against `digest` and stores them durably.
    pub(crate) fn put(&self, digest: &str, bytes: &[u8]) -> Result<(), ContentError> {
        let target = self.path(digest)?;
        let actual = sha256(bytes);
        if actual != digest {
            return Err(ContentError::DigestMismatch {
                expected: digest.to_string(),
                actual,
            });
        }
        if target.is_file() {
            return Ok(());
        }
        let mut tmp = tempfile::NamedTempFile::new_in(&self.tmp)
            .map_err(io_err("create temp in", &self.tmp))?;
        tmp.write_all(bytes).map_err(io_err("write", tmp.path()))?;
        tmp.as_file()
            .sync_all()
            .map_err(io_err("fsync", tmp.path()))?;
        tmp.persist(&target).map_err(|e| ContentError::Io {
            action: "rename into",
            path: target.clone(),
            source: e.error,
        })?;
        let dir = target.parent().unwrap_or(&self.dir);
        super::sync_dir(dir).map_err(io_err("fsync", dir))
    }

    /// Reads a blob, re-verifying its digest (a bit flip on disk is an error, not data).
    pub(crate) fn get(&self, digest: &str) -> Result<Vec<u8>, ContentError> {
        let path = self.path(digest)?;
        let bytes = fs::read(&path).map_err(io_err("read", &path))?;
        let actual = sha256(&bytes);
        if actual != digest {
            return Err(ContentError::DigestMismatch {
                expected: digest.to_string(),
                actual,
            });
        }
        Ok(bytes)
    }

    pub(crate) fn delete(&self, digest: &str) -> Result<(), ContentError> {
        let path = self.path(digest)?;
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err("remove", &path)(e)),
            _ => Ok(()),
        }
    }

    /// Every stored digest.
    pub(crate) fn list(&self) -> Result<Vec<String>, ContentError> {
        let dir = self.dir.join("sha256");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err("list", &dir))? {
            let entry = entry.map_err(io_err("list", &dir))?;
            out.push(format!("sha256:{}", entry.file_name().to_string_lossy()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_verify_delete() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            ContentStore::open(&dir.path().join("blobs"), &dir.path().join("tmp")).expect("open");
        let digest = sha256(b"hello");
        store.put(&digest, b"hello").expect("put");
        assert!(store.contains(&digest));
        assert_eq!(store.get(&digest).expect("get"), b"hello");
        assert_eq!(store.list().expect("list"), vec![digest.clone()]);
        let wrong = sha256(b"other");
        assert!(matches!(
            store.put(&wrong, b"hello"),
            Err(ContentError::DigestMismatch { .. })
        ));
        assert!(!store.contains(&wrong));
        std::fs::write(store.path(&digest).expect("path"), b"corrupt").expect("write");
        assert!(matches!(
            store.get(&digest),
            Err(ContentError::DigestMismatch { .. })
        ));
        store.delete(&digest).expect("delete");
        store.delete(&digest).expect("delete is idempotent");
        assert!(matches!(
            store.put("md5:x", b""),
            Err(ContentError::BadDigest(_))
        ));
        // Nothing left in tmp.
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp"))
                .expect("tmp")
                .count(),
            0
        );
    }
}
