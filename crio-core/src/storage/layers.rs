//! The layer store: each layer unpacked once, keyed by its chain ID, shared by every
//! image that has it. A layer is unpacked into a temp dir while both its blob digest
//! and its diff ID are computed; only a layer whose digests match and whose data is
//! synced to disk is renamed into place, so a visible layer is always whole.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::sync_dir;
use super::unpack::{unpack_layer, UnpackError};
use super::Compression;

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("layer store: {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("layer {blob}: {source}")]
    Unpack { blob: String, source: UnpackError },
    #[error("layer {blob}: reading the stream: {source}")]
    Read { blob: String, source: io::Error },
    #[error("layer blob digest mismatch: expected {expected}, got {actual}")]
    BlobDigest { expected: String, actual: String },
    #[error(
        "layer {blob}: diff ID mismatch: the image config says {expected}, the content is {actual}"
    )]
    DiffId {
        blob: String,
        expected: String,
        actual: String,
    },
    #[error("invalid chain ID {0:?}")]
    ChainId(String),
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> LayerError + 'a {
    move |source| LayerError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// What the caller expects of a layer blob.
#[derive(Debug, Clone)]
pub(crate) struct LayerSource<'a> {
    pub chain_id: &'a str,
    pub blob_digest: &'a str,
    pub diff_id: &'a str,
    pub compression: Compression,
}

/// Layers under `<dir>/<chain hex>/{diff,size}`.
#[derive(Debug, Clone)]
pub struct LayerStore {
    dir: PathBuf,
    tmp: PathBuf,
}

impl LayerStore {
    pub(crate) fn open(dir: &Path, tmp: &Path) -> Result<Self, LayerError> {
        fs::create_dir_all(dir).map_err(io_err("create", dir))?;
        fs::create_dir_all(tmp).map_err(io_err("create", tmp))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            tmp: tmp.to_path_buf(),
        })
    }

    fn layer_dir(&self, chain_id: &str) -> Result<PathBuf, LayerError> {
        if !super::valid_digest(chain_id) {
            return Err(LayerError::ChainId(chain_id.to_string()));
        }
        Ok(self.dir.join(chain_id.trim_start_matches("sha256:")))
    }

    /// The directory holding the layer's files (an overlayfs lower dir).
    pub(crate) fn diff_path(&self, chain_id: &str) -> Result<PathBuf, LayerError> {
        Ok(self.layer_dir(chain_id)?.join("diff"))
    }

    /// The lower dirs of an image whose layers are `chain_ids` (bottom first).
    pub(crate) fn diff_paths(&self, chain_ids: &[String]) -> Result<Vec<PathBuf>, LayerError> {
        chain_ids.iter().map(|c| self.diff_path(c)).collect()
    }

    pub(crate) fn contains(&self, chain_id: &str) -> bool {
        self.diff_path(chain_id).is_ok_and(|p| p.is_dir())
    }

    /// Unpacked size in bytes (file contents), as recorded at unpack time.
    pub(crate) fn size(&self, chain_id: &str) -> u64 {
        self.layer_dir(chain_id)
            .ok()
            .and_then(|d| fs::read_to_string(d.join("size")).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Unpacks a compressed layer stream (blocking: call from a blocking thread).
    /// Returns the unpacked size. A layer that is already there is not touched.
    pub(crate) fn install(
        &self,
        source: &LayerSource<'_>,
        blob: impl Read,
    ) -> Result<u64, LayerError> {
        let final_dir = self.layer_dir(source.chain_id)?;
        if final_dir.join("diff").is_dir() {
            return Ok(self.size(source.chain_id));
        }
        let work = tempfile::Builder::new()
            .prefix("layer-")
            .tempdir_in(&self.tmp)
            .map_err(io_err("create temp dir in", &self.tmp))?;
        let diff = work.path().join("diff");
        fs::create_dir(&diff).map_err(io_err("create", &diff))?;

        let blob_name = source.blob_digest.to_string();
        let mut blob = HashingReader::new(blob);
        let (stats, diff_digest) = {
            let decompressed: Box<dyn Read + '_> = match source.compression {
                Compression::None => Box::new(&mut blob),
                Compression::Gzip => Box::new(flate2::read::GzDecoder::new(&mut blob)),
                Compression::Zstd => {
                    Box::new(zstd::stream::read::Decoder::new(&mut blob).map_err(|e| {
                        LayerError::Read {
                            blob: blob_name.clone(),
                            source: e,
                        }
                    })?)
                }
            };
            let mut tar = HashingReader::new(decompressed);
            let stats = unpack_layer(&mut tar, &diff).map_err(|e| LayerError::Unpack {
                blob: blob_name.clone(),
                source: e,
            })?;
            // The tar may end before its stream does (padding): hash every byte.
            io::copy(&mut tar, &mut io::sink()).map_err(|e| LayerError::Read {
                blob: blob_name.clone(),
                source: e,
            })?;
            (stats, tar.digest())
        };
        io::copy(&mut blob, &mut io::sink()).map_err(|e| LayerError::Read {
            blob: blob_name.clone(),
            source: e,
        })?;
        let blob_digest = blob.digest();
        if blob_digest != source.blob_digest {
            return Err(LayerError::BlobDigest {
                expected: source.blob_digest.to_string(),
                actual: blob_digest,
            });
        }
        if diff_digest != source.diff_id {
            return Err(LayerError::DiffId {
                blob: blob_name,
                expected: source.diff_id.to_string(),
                actual: diff_digest,
            });
        }
        let size_file = work.path().join("size");
        fs::write(&size_file, stats.bytes.to_string()).map_err(io_err("write", &size_file))?;
        syncfs(work.path())?;
        let work_path = work.keep();
        match fs::rename(&work_path, &final_dir) {
            Ok(()) => {}
            // Another pull finished the same layer first: theirs is as good as ours.
            Err(e) if final_dir.join("diff").is_dir() => {
                tracing::debug!("layer {} appeared concurrently: {e}", source.chain_id);
                let _ = fs::remove_dir_all(&work_path);
            }
            Err(e) => {
                let _ = fs::remove_dir_all(&work_path);
                return Err(io_err("rename into", &final_dir)(e));
            }
        }
        sync_dir(&self.dir).map_err(io_err("fsync", &self.dir))?;
        Ok(stats.bytes)
    }

    /// Removes a layer (idempotent). The dir is renamed away first, so a crash mid-way
    /// never leaves a half-deleted layer under its real name.
    pub(crate) fn remove(&self, chain_id: &str) -> Result<(), LayerError> {
        let dir = self.layer_dir(chain_id)?;
        let doomed = self.tmp.join(format!(
            "removing-{}",
            chain_id.trim_start_matches("sha256:")
        ));
        match fs::rename(&dir, &doomed) {
            Ok(()) => fs::remove_dir_all(&doomed).map_err(io_err("remove", &doomed)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("remove", &dir)(e)),
        }
    }

    /// Chain IDs of every complete layer.
    pub(crate) fn list(&self) -> Result<Vec<String>, LayerError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io_err("list", &self.dir))? {
            let entry = entry.map_err(io_err("list", &self.dir))?;
            out.push(format!("sha256:{}", entry.file_name().to_string_lossy()));
        }
        Ok(out)
    }
}

/// Flushes the whole filesystem holding `path` (one call instead of an fsync per file).
fn syncfs(path: &Path) -> Result<(), LayerError> {
    use std::os::fd::AsRawFd;
    let dir = fs::File::open(path).map_err(io_err("open", path))?;
    // SAFETY: syncfs only reads the descriptor, which stays open for the call.
    let rc = unsafe { libc::syncfs(dir.as_raw_fd()) };
    if rc != 0 {
        return Err(io_err("syncfs", path)(io::Error::last_os_error()));
    }
    Ok(())
}

/// Passes bytes through while hashing them.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> HashingReader<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
        }
    }

    fn digest(&self) -> String {
        format!("sha256:{}", hex::encode(self.hasher.clone().finalize()))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::content::sha256;

    fn tar_with(name: &str, data: &[u8]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, data).expect("append");
        b.into_inner().expect("tar")
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).expect("gz");
        e.finish().expect("gz")
    }

    #[test]
    fn installs_verified_layers_once_in_every_compression() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            LayerStore::open(&dir.path().join("layers"), &dir.path().join("tmp")).expect("open");
        let tar = tar_with("hello.txt", b"hi there");
        let diff_id = sha256(&tar);
        for (compression, blob) in [
            (Compression::None, tar.clone()),
            (Compression::Gzip, gzip(&tar)),
            (
                Compression::Zstd,
                zstd::encode_all(tar.as_slice(), 3).expect("zstd"),
            ),
        ] {
            let chain_id = sha256(format!("{compression:?}").as_bytes());
            let src = LayerSource {
                chain_id: &chain_id,
                blob_digest: &sha256(&blob),
                diff_id: &diff_id,
                compression,
            };
            assert_eq!(store.install(&src, blob.as_slice()).expect("install"), 8);
            let file = store.diff_path(&chain_id).expect("path").join("hello.txt");
            assert_eq!(fs::read(file).expect("read"), b"hi there");
            assert_eq!(store.size(&chain_id), 8);
        }
        assert_eq!(store.list().expect("list").len(), 3);
        assert_eq!(
            fs::read_dir(dir.path().join("tmp")).expect("tmp").count(),
            0
        );
    }

    #[test]
    fn wrong_digests_leave_nothing_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            LayerStore::open(&dir.path().join("layers"), &dir.path().join("tmp")).expect("open");
        let tar = tar_with("a", b"a");
        let chain = sha256(b"chain");
        let bad_blob = LayerSource {
            chain_id: &chain,
            blob_digest: &sha256(b"something else"),
            diff_id: &sha256(&tar),
            compression: Compression::None,
        };
        assert!(matches!(
            store.install(&bad_blob, tar.as_slice()),
            Err(LayerError::BlobDigest { .. })
        ));
        let bad_diff = LayerSource {
            blob_digest: &sha256(&tar),
            diff_id: &sha256(b"other"),
            ..bad_blob.clone()
        };
        assert!(matches!(
            store.install(&bad_diff, tar.as_slice()),
            Err(LayerError::DiffId { .. })
        ));
        assert!(!store.contains(&chain));
        assert_eq!(
            fs::read_dir(dir.path().join("tmp")).expect("tmp").count(),
            0
        );
        store.remove(&chain).expect("remove missing is fine");
    }
}
