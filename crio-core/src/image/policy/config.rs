//! containers-policy.json(5), parsed as strictly as containers/image parses it:
//! unknown keys, unknown requirement types and empty requirement lists are
//! errors; key files are read only when a signature is checked.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    pub default: Vec<Requirement>,
    #[serde(default)]
    pub transports: BTreeMap<String, BTreeMap<String, Vec<Requirement>>>,
}

/// One requirement of a scope.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub(crate) enum Requirement {
    // Empty struct variants: serde denies unknown fields only in those.
    #[serde(rename = "insecureAcceptAnything")]
    InsecureAcceptAnything {},
    #[serde(rename = "reject")]
    Reject {},
    #[serde(rename = "signedBy")]
    SignedBy {
        #[serde(rename = "keyType")]
        key_type: String,
        #[serde(rename = "keyPath")]
        key_path: Option<String>,
        #[serde(rename = "keyPaths")]
        key_paths: Option<Vec<String>>,
        #[serde(rename = "keyData")]
        key_data: Option<String>,
        #[serde(rename = "signedIdentity", default)]
        signed_identity: Option<Identity>,
    },
    /// Parsed so a policy that has one loads; refused at evaluation (crio-rs
    /// verifies GPG signatures only).
    #[serde(rename = "sigstoreSigned")]
    SigstoreSigned {
        #[serde(flatten)]
        rest: BTreeMap<String, serde_json::Value>,
    },
}

/// How a signature's `docker-reference` must relate to the pulled name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(tag = "type", deny_unknown_fields)]
#[allow(clippy::enum_variant_names)] // containers/image's names
pub(crate) enum Identity {
    #[serde(rename = "matchExact")]
    MatchExact,
    #[default]
    #[serde(rename = "matchRepoDigestOrExact")]
    MatchRepoDigestOrExact,
    #[serde(rename = "matchRepository")]
    MatchRepository,
    #[serde(rename = "exactReference")]
    ExactReference {
        #[serde(rename = "dockerReference")]
        docker_reference: String,
    },
    #[serde(rename = "exactRepository")]
    ExactRepository {
        #[serde(rename = "dockerRepository")]
        docker_repository: String,
    },
    #[serde(rename = "remapIdentity")]
    RemapIdentity {
        prefix: String,
        #[serde(rename = "signedPrefix")]
        signed_prefix: String,
    },
}

/// The key types containers/image knows; only GPG keys are implemented there too.
pub(super) const KEY_TYPES: &[&str] = &[
    "GPGKeys",
    "signedByGPGKeys",
    "X509Certificates",
    "signedByX509CAs",
];

/// Checks what serde cannot: non-empty lists, one key source, a key type.
pub(super) fn check(raw: &RawPolicy) -> Result<(), String> {
    let lists = std::iter::once(("default".to_string(), &raw.default)).chain(
        raw.transports.iter().flat_map(|(t, scopes)| {
            scopes
                .iter()
                .map(move |(s, l)| (format!("transports.{t}.{s:?}"), l))
        }),
    );
    for (place, list) in lists {
        if list.is_empty() {
            return Err(format!("{place}: a list of requirements must not be empty"));
        }
        for r in list {
            if let Requirement::SignedBy {
                key_type,
                key_path,
                key_paths,
                key_data,
                ..
            } = r
            {
                if !KEY_TYPES.contains(&key_type.as_str()) {
                    return Err(format!(
                        "{place}: keyType {key_type:?} is not one of {}",
                        KEY_TYPES.join(", ")
                    ));
                }
                let sources = [key_path.is_some(), key_paths.is_some(), key_data.is_some()]
                    .iter()
                    .filter(|s| **s)
                    .count();
                if sources != 1 {
                    return Err(format!(
                        "{place}: signedBy needs exactly one of keyPath, keyPaths and keyData ({sources} given)"
                    ));
                }
            }
        }
    }
    Ok(())
}
