//! Manifests and indexes (OCI image-spec and Docker schema 2), parsed strictly enough
//! to trust: every descriptor's digest is well formed, every layer type is known.

use serde::Deserialize;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// What we ask registries for, in preference order.
pub const ACCEPTED_MEDIA_TYPES: &[&str] = &[OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST];

pub use crate::storage::{valid_digest, Compression};

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

/// A layer descriptor with its compression resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub descriptor: Descriptor,
    pub compression: Compression,
}

/// The platform of an index entry, or the node's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// The node's platform, in OCI (GOARCH) names.
    pub fn host() -> Self {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            "s390x" => "s390x",
            "riscv64" => "riscv64",
            other => other,
        };
        let variant = (architecture == "arm64").then(|| "v8".to_string());
        Self {
            os: "linux".into(),
            architecture: architecture.into(),
            variant,
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// A parsed manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manifest {
    Image {
        media_type: String,
        config: Descriptor,
        layers: Vec<Layer>,
    },
    Index {
        media_type: String,
        manifests: Vec<(Descriptor, Option<Platform>)>,
    },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error("manifest is not valid JSON: {0}")]
    Json(String),
    #[error("unsupported manifest schema version {0} (only 2 is supported)")]
    SchemaVersion(i64),
    #[error("docker schema 1 manifests are not supported: push the image with a schema 2 or OCI manifest")]
    Schema1,
    #[error("unsupported manifest media type {0:?}")]
    MediaType(String),
    #[error("invalid digest {0:?}: expected sha256:<64 lower-case hex>")]
    Digest(String),
    #[error("unsupported layer media type {0:?}")]
    LayerType(String),
    #[error("manifest has no config")]
    NoConfig,
    #[error("no manifest for platform {wanted} in the index (it has: {available})")]
    NoPlatform { wanted: String, available: String },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    #[serde(default)]
    media_type: String,
    digest: String,
    size: i64,
    #[serde(default)]
    platform: Option<RawPlatform>,
}

#[derive(Deserialize)]
struct RawPlatform {
    os: String,
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: i64,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<RawDescriptor>,
    #[serde(default)]
    layers: Option<Vec<RawDescriptor>>,
    #[serde(default)]
    manifests: Option<Vec<RawDescriptor>>,
}

fn descriptor(raw: &RawDescriptor) -> Result<Descriptor, ManifestError> {
    if !valid_digest(&raw.digest) {
        return Err(ManifestError::Digest(raw.digest.clone()));
    }
    let size = u64::try_from(raw.size).map_err(|_| ManifestError::Digest(raw.digest.clone()))?;
    Ok(Descriptor {
        media_type: raw.media_type.clone(),
        digest: raw.digest.clone(),
        size,
    })
}

/// Layer media types we can unpack.
pub fn layer_compression(media_type: &str) -> Option<Compression> {
    match media_type {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.docker.image.rootfs.diff.tar" => Some(Compression::None),
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip" => Some(Compression::Gzip),
        "application/vnd.oci.image.layer.v1.tar+zstd" => Some(Compression::Zstd),
        _ => None,
    }
}

/// Parses a manifest or index. `content_type` is the registry's `Content-Type`, used
/// when the document itself does not say.
pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Manifest, ManifestError> {
    let raw: RawManifest =
        serde_json::from_slice(bytes).map_err(|e| ManifestError::Json(e.to_string()))?;
    let media_type = raw
        .media_type
        .clone()
        .or_else(|| content_type.map(|c| c.split(';').next().unwrap_or(c).trim().to_string()))
        .unwrap_or_default();
    if raw.schema_version == 1
        || media_type == DOCKER_SCHEMA1
        || media_type == DOCKER_SCHEMA1_SIGNED
    {
        return Err(ManifestError::Schema1);
    }
    if raw.schema_version != 2 {
        return Err(ManifestError::SchemaVersion(raw.schema_version));
    }
    let is_index = match media_type.as_str() {
        OCI_INDEX | DOCKER_LIST => true,
        OCI_MANIFEST | DOCKER_MANIFEST => false,
        // OCI allows omitting mediaType: decide by shape.
        "" | "application/json" => raw.manifests.is_some(),
        other => return Err(ManifestError::MediaType(other.to_string())),
    };
    if is_index {
        let manifests = raw
            .manifests
            .unwrap_or_default()
            .iter()
            .map(|m| {
                let platform = m.platform.as_ref().map(|p| Platform {
                    os: p.os.clone(),
                    architecture: p.architecture.clone(),
                    variant: p.variant.clone(),
                });
                Ok((descriptor(m)?, platform))
            })
            .collect::<Result<_, ManifestError>>()?;
        let media_type = if media_type.is_empty() {
            OCI_INDEX.to_string()
        } else {
            media_type
        };
        return Ok(Manifest::Index {
            media_type,
            manifests,
        });
    }
    let config = descriptor(raw.config.as_ref().ok_or(ManifestError::NoConfig)?)?;
    let layers = raw
        .layers
        .unwrap_or_default()
        .iter()
        .map(|l| {
            let compression = layer_compression(&l.media_type)
                .ok_or_else(|| ManifestError::LayerType(l.media_type.clone()))?;
            Ok(Layer {
                descriptor: descriptor(l)?,
                compression,
            })
        })
        .collect::<Result<_, ManifestError>>()?;
    let media_type = if media_type.is_empty() {
        OCI_MANIFEST.to_string()
    } else {
        media_type
    };
    Ok(Manifest::Image {
        media_type,
        config,
        layers,
    })
}

/// Picks the index entry for `wanted`, as containerd's platform matcher does: same os
/// and architecture; a variant must match when both sides name one (arm64 with no
/// variant is v8).
pub fn select_platform<'a>(
    manifests: &'a [(Descriptor, Option<Platform>)],
    wanted: &Platform,
) -> Result<&'a Descriptor, ManifestError> {
    let norm = |p: &Platform| -> Option<String> {
        match (&p.variant, p.architecture.as_str()) {
            (Some(v), _) => Some(v.clone()),
            (None, "arm64") => Some("v8".into()),
            (None, _) => None,
        }
    };
    let matches = |p: &Platform| {
        p.os == wanted.os
            && p.architecture == wanted.architecture
            && match (norm(p), norm(wanted)) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    };
    manifests
        .iter()
        .find(|(_, p)| p.as_ref().is_some_and(matches))
        .map(|(d, _)| d)
        .ok_or_else(|| ManifestError::NoPlatform {
            wanted: wanted.to_string(),
            available: manifests
                .iter()
                .filter_map(|(_, p)| p.as_ref().map(Platform::to_string))
                .collect::<Vec<_>>()
                .join(", "),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn image(media_type: &str, layer_type: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{media_type}","config":{{"mediaType":"c","digest":"{D1}","size":3}},"layers":[{{"mediaType":"{layer_type}","digest":"{D2}","size":10}}]}}"#
        )
    }

    #[test]
    fn parses_oci_and_docker_manifests() {
        for (mt, lt, c) in [
            (
                OCI_MANIFEST,
                "application/vnd.oci.image.layer.v1.tar+gzip",
                Compression::Gzip,
            ),
            (
                OCI_MANIFEST,
                "application/vnd.oci.image.layer.v1.tar+zstd",
                Compression::Zstd,
            ),
            (
                OCI_MANIFEST,
                "application/vnd.oci.image.layer.v1.tar",
                Compression::None,
            ),
            (
                DOCKER_MANIFEST,
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                Compression::Gzip,
            ),
        ] {
            match parse(image(mt, lt).as_bytes(), None).expect("parse") {
                Manifest::Image {
                    config,
                    layers,
                    media_type,
                } => {
                    assert_eq!(media_type, mt);
                    assert_eq!(config.digest, D1);
                    assert_eq!(layers[0].compression, c);
                    assert_eq!(layers[0].descriptor.size, 10);
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn refuses_bad_digests_layer_types_and_schema1() {
        let bad =
            image(OCI_MANIFEST, "application/vnd.oci.image.layer.v1.tar").replace(D2, "sha256:zz");
        assert!(matches!(
            parse(bad.as_bytes(), None),
            Err(ManifestError::Digest(_))
        ));
        let foreign = image(
            DOCKER_MANIFEST,
            "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        );
        assert!(matches!(
            parse(foreign.as_bytes(), None),
            Err(ManifestError::LayerType(_))
        ));
        assert_eq!(
            parse(br#"{"schemaVersion":1,"name":"x"}"#, None),
            Err(ManifestError::Schema1)
        );
        assert!(matches!(parse(b"{", None), Err(ManifestError::Json(_))));
        assert!(matches!(
            parse(br#"{"schemaVersion":2,"mediaType":"text/plain"}"#, None),
            Err(ManifestError::MediaType(_))
        ));
    }

    #[test]
    fn index_platform_selection() {
        let index = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{D1}","size":1,"platform":{{"os":"linux","architecture":"arm64"}}}},{{"mediaType":"{OCI_MANIFEST}","digest":"{D2}","size":1,"platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#
        );
        let Manifest::Index {
            manifests,
            media_type,
        } = parse(index.as_bytes(), None).expect("parse")
        else {
            panic!("not an index")
        };
        assert_eq!(media_type, OCI_INDEX);
        let amd64 = Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        };
        assert_eq!(
            select_platform(&manifests, &amd64).expect("amd64").digest,
            D2
        );
        let arm = Platform {
            os: "linux".into(),
            architecture: "arm64".into(),
            variant: Some("v8".into()),
        };
        assert_eq!(select_platform(&manifests, &arm).expect("arm64").digest, D1);
        let s390 = Platform {
            os: "linux".into(),
            architecture: "s390x".into(),
            variant: None,
        };
        let err = select_platform(&manifests, &s390).expect_err("none");
        assert!(
            err.to_string().contains("linux/arm64, linux/amd64"),
            "{err}"
        );
    }
}
