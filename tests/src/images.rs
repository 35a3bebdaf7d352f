//! Writes OCI image layouts (image-spec v1.1) from a description: deterministic tar
//! layers (gzip), configs, manifests and indexes. `skopeo` then pushes them.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerCompression {
    Gzip,
    Zstd,
    None,
}

/// Fixed timestamps keep digests stable from run to run.
const MTIME: u64 = 1_700_000_000;

/// One entry of a layer.
#[derive(Debug, Clone)]
pub enum Entry {
    Dir {
        path: String,
        mode: u32,
    },
    File {
        path: String,
        data: Vec<u8>,
        mode: u32,
    },
    Symlink {
        path: String,
        target: String,
    },
    /// Deletes `path` from lower layers (`dir/.wh.name`).
    Whiteout {
        path: String,
    },
    /// Hides everything lower layers put in `dir` (`dir/.wh..wh..opq`).
    Opaque {
        dir: String,
    },
}

impl Entry {
    pub fn dir(path: &str) -> Self {
        Entry::Dir {
            path: path.into(),
            mode: 0o755,
        }
    }
    pub fn file(path: &str, data: impl Into<Vec<u8>>) -> Self {
        Entry::File {
            path: path.into(),
            data: data.into(),
            mode: 0o644,
        }
    }
    pub fn executable(path: &str, data: Vec<u8>) -> Self {
        Entry::File {
            path: path.into(),
            data,
            mode: 0o755,
        }
    }
    pub fn symlink(path: &str, target: &str) -> Self {
        Entry::Symlink {
            path: path.into(),
            target: target.into(),
        }
    }
}

/// An image for one platform.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    pub architecture: String,
    pub os: String,
    /// The OCI config's `config` object (`User`, `Cmd`, `Env`, `ExposedPorts`...).
    pub config: Value,
    /// Bottom layer first.
    pub layers: Vec<Vec<Entry>>,
    /// Per layer; layers past the end of this list are gzip.
    pub compression: Vec<LayerCompression>,
}

/// A blob descriptor.
#[derive(Debug, Clone, PartialEq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

impl Descriptor {
    fn to_json(&self) -> Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.size})
    }
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Builds an uncompressed layer tar.
pub fn layer_tar(entries: &[Entry]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(MTIME);
        header.set_uid(0);
        header.set_gid(0);
        let (path, data): (String, &[u8]) = match entry {
            Entry::Dir { path, mode } => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(*mode);
                (format!("{}/", path.trim_end_matches('/')), &[])
            }
            Entry::File { path, data, mode } => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(*mode);
                (path.clone(), data)
            }
            Entry::Symlink { path, target } => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                header.set_link_name(target).expect("link name");
                (path.clone(), &[])
            }
            Entry::Whiteout { path } => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(0o644);
                let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
                let wh = if dir.is_empty() {
                    format!(".wh.{name}")
                } else {
                    format!("{dir}/.wh.{name}")
                };
                (wh, &[])
            }
            Entry::Opaque { dir } => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(0o644);
                (format!("{}/.wh..wh..opq", dir.trim_end_matches('/')), &[])
            }
        };
        header.set_size(data.len() as u64);
        builder
            .append_data(&mut header, path.trim_start_matches('/'), data)
            .expect("append tar entry");
    }
    builder.into_inner().expect("finish tar")
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).expect("gzip");
    enc.finish().expect("gzip")
}

/// An OCI image layout directory being written.
#[derive(Debug)]
pub struct OciLayout {
    dir: PathBuf,
    refs: Vec<Value>,
}

impl OciLayout {
    pub fn create(dir: &Path) -> Self {
        fs::create_dir_all(dir.join("blobs/sha256")).expect("layout dir");
        fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).expect("oci-layout");
        Self {
            dir: dir.to_path_buf(),
            refs: Vec::new(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stores a blob by its digest.
    pub fn put_blob(&self, media_type: &str, bytes: &[u8]) -> Descriptor {
        let digest = sha256_digest(bytes);
        let hex = digest.trim_start_matches("sha256:");
        fs::write(self.dir.join("blobs/sha256").join(hex), bytes).expect("write blob");
        Descriptor {
            media_type: media_type.into(),
            digest,
            size: bytes.len() as u64,
        }
    }

    /// Writes layers, config and manifest; returns the manifest's descriptor.
    pub fn add_image(&self, spec: &ImageSpec) -> Descriptor {
        let tars = spec
            .layers
            .iter()
            .map(|entries| layer_tar(entries))
            .collect();
        self.add_image_from_tars(spec, tars)
    }

    /// [`add_image`](Self::add_image) with layer tars given as bytes (`spec.layers`
    /// only counts the history entries), for layers no tar writer would make.
    pub fn add_image_from_tars(&self, spec: &ImageSpec, tars: Vec<Vec<u8>>) -> Descriptor {
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        for (i, tar) in tars.iter().enumerate() {
            diff_ids.push(sha256_digest(tar));
            let blob = match spec
                .compression
                .get(i)
                .copied()
                .unwrap_or(LayerCompression::Gzip)
            {
                LayerCompression::Gzip => self.put_blob(OCI_LAYER_GZIP, &gzip(tar)),
                LayerCompression::Zstd => self.put_blob(
                    OCI_LAYER_ZSTD,
                    &zstd::encode_all(tar.as_slice(), 3).expect("zstd"),
                ),
                LayerCompression::None => self.put_blob(OCI_LAYER_TAR, tar),
            };
            layers.push(blob.to_json());
        }
        let config = json!({
            "created": "2023-11-14T22:13:20Z",
            "architecture": spec.architecture,
            "os": spec.os,
            "config": spec.config,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": tars.iter().map(|_| json!({"created_by": "crio-tests image builder"})).collect::<Vec<_>>(),
        });
        let config = self.put_blob(OCI_CONFIG, &to_bytes(&config));
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.to_json(),
            "layers": layers,
        });
        self.put_blob(OCI_MANIFEST, &to_bytes(&manifest))
    }

    /// Writes an image index over per-platform images.
    pub fn add_index(&self, specs: &[ImageSpec]) -> Descriptor {
        let manifests: Vec<Value> = specs
            .iter()
            .map(|spec| {
                let mut d = self.add_image(spec).to_json();
                d["platform"] = json!({"architecture": spec.architecture, "os": spec.os});
                d
            })
            .collect();
        let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
        self.put_blob(OCI_INDEX, &to_bytes(&index))
    }

    /// Names a manifest or index in `index.json` (`org.opencontainers.image.ref.name`).
    pub fn tag(&mut self, descriptor: &Descriptor, name: &str) {
        let mut d = descriptor.to_json();
        d["annotations"] = json!({"org.opencontainers.image.ref.name": name});
        self.refs.push(d);
        let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.refs});
        fs::write(self.dir.join("index.json"), to_bytes(&index)).expect("index.json");
    }
}

fn to_bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_are_deterministic_and_carry_whiteouts() {
        let entries = vec![
            Entry::dir("data"),
            Entry::file("data/a", "x"),
            Entry::Whiteout {
                path: "data/gone".into(),
            },
            Entry::Opaque { dir: "opq".into() },
            Entry::symlink("bin/sh", "busybox"),
        ];
        let a = layer_tar(&entries);
        assert_eq!(a, layer_tar(&entries));
        let mut archive = tar::Archive::new(a.as_slice());
        let names: Vec<String> = archive
            .entries()
            .expect("entries")
            .map(|e| {
                e.expect("entry")
                    .path()
                    .expect("path")
                    .display()
                    .to_string()
            })
            .collect();
        assert_eq!(
            names,
            [
                "data/",
                "data/a",
                "data/.wh.gone",
                "opq/.wh..wh..opq",
                "bin/sh"
            ]
        );
    }
}
