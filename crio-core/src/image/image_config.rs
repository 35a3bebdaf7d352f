//! The image configuration blob (OCI image-spec `config.json`): the parts the runtime
//! uses, parsed leniently (unknown fields ignored) but with its layer list checked.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// An image's configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
    #[serde(default)]
    pub created: Option<String>,
    #[serde(default)]
    pub config: ContainerDefaults,
    pub rootfs: RootFs,
}

/// What a container of this image runs by default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerDefaults {
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub env: Option<Vec<String>>,
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub working_dir: String,
    #[serde(default)]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default)]
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub stop_signal: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImageConfigError {
    #[error("image config is not valid: {0}")]
    Json(String),
    #[error("image config rootfs type is {0:?}, expected \"layers\"")]
    RootFsType(String),
    #[error("image config has {diff_ids} diff_ids but the manifest has {layers} layers")]
    LayerCount { diff_ids: usize, layers: usize },
    #[error("image config has an invalid diff_id {0:?}")]
    DiffId(String),
}

impl ImageConfig {
    /// Parses and checks the config against the manifest's layer count.
    pub fn parse(bytes: &[u8], layers: usize) -> Result<Self, ImageConfigError> {
        let config: ImageConfig =
            serde_json::from_slice(bytes).map_err(|e| ImageConfigError::Json(e.to_string()))?;
        if config.rootfs.kind != "layers" {
            return Err(ImageConfigError::RootFsType(config.rootfs.kind));
        }
        if config.rootfs.diff_ids.len() != layers {
            return Err(ImageConfigError::LayerCount {
                diff_ids: config.rootfs.diff_ids.len(),
                layers,
            });
        }
        if let Some(bad) = config
            .rootfs
            .diff_ids
            .iter()
            .find(|d| !super::manifest::valid_digest(d))
        {
            return Err(ImageConfigError::DiffId(bad.clone()));
        }
        Ok(config)
    }

    /// The user as the CRI reports it: a numeric uid, or a user name.
    pub fn user(&self) -> ImageUser {
        ImageUser::parse(&self.config.user)
    }
}

/// `USER` of an image, split the way `ImageStatus` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageUser {
    Uid(i64),
    Name(String),
}

impl ImageUser {
    /// From a config `User` (`uid`, `name`, `uid:gid`, `name:group`; empty = root).
    pub fn parse(user: &str) -> Self {
        let user = user.split(':').next().unwrap_or_default();
        match user.parse::<i64>() {
            Ok(uid) => ImageUser::Uid(uid),
            Err(_) if user.is_empty() => ImageUser::Uid(0),
            Err(_) => ImageUser::Name(user.to_string()),
        }
    }
}

/// Chain IDs from diff IDs: `chain(0) = diff(0)`, `chain(n) = sha256(chain(n-1) + " " + diff(n))`.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    use sha2::{Digest, Sha256};
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff in diff_ids {
        let next = match out.last() {
            None => diff.clone(),
            Some(parent) => format!(
                "sha256:{}",
                hex::encode(Sha256::digest(format!("{parent} {diff}").as_bytes()))
            ),
        };
        out.push(next);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

    #[test]
    fn parses_and_checks_layers() {
        let json = format!(
            r#"{{"architecture":"amd64","os":"linux","config":{{"User":"1000:1000","Cmd":["sh"]}},"rootfs":{{"type":"layers","diff_ids":["{D}"]}}}}"#
        );
        let c = ImageConfig::parse(json.as_bytes(), 1).expect("parse");
        assert_eq!(c.user(), ImageUser::Uid(1000));
        assert_eq!(c.config.cmd.as_deref(), Some(&["sh".to_string()][..]));
        assert_eq!(
            ImageConfig::parse(json.as_bytes(), 2),
            Err(ImageConfigError::LayerCount {
                diff_ids: 1,
                layers: 2
            })
        );
    }

    #[test]
    fn user_names_and_default_root() {
        let mut c = ImageConfig::default();
        assert_eq!(c.user(), ImageUser::Uid(0));
        c.config.user = "www-data:www".into();
        assert_eq!(c.user(), ImageUser::Name("www-data".into()));
    }

    #[test]
    fn chain_ids_follow_the_spec() {
        // Values from the OCI image-spec's own example.
        let diffs = vec!["sha256:a".to_string(), "sha256:b".to_string()];
        let chain = chain_ids(&diffs);
        assert_eq!(chain[0], "sha256:a");
        use sha2::{Digest, Sha256};
        let expected = format!(
            "sha256:{}",
            hex::encode(Sha256::digest(b"sha256:a sha256:b"))
        );
        assert_eq!(chain[1], expected);
    }
}
