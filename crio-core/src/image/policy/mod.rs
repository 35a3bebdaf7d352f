//! Which images may be pulled: containers-policy.json(5) as containers/image
//! applies it to the docker transport. The most specific scope of the pulled
//! name (`host/ns/repo:tag`, `host/ns/repo`, `host/ns`, `host`, `*.domain`, the
//! transport's `""`) else `default` gives a list of requirements, all of which
//! must allow the image: `insecureAcceptAnything`, `reject`, or `signedBy` (a
//! GPG simple-signing signature from the lookaside storage registries.d names,
//! by a key of the given keyring, for this manifest and this name). The files
//! are read at each pull, so an edit applies to the next one.

mod config;
mod lookaside;
mod simple_signing;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;

pub(crate) use config::{Identity, Requirement};
use lookaside::RegistriesD;

use super::reference::ImageName;

/// containers/image's system policy.
pub(crate) const DEFAULT_POLICY: &str = "/etc/containers/policy.json";
/// containers/image's registries.d for root.
pub(crate) const DEFAULT_REGISTRIES_D: &str = "/etc/containers/registries.d";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("signature policy {}: {message}", file.display())]
    Invalid { file: PathBuf, message: String },
    #[error("image {image} is rejected by the signature policy ({}, scope {scope:?}): {reason}", file.display())]
    Rejected {
        image: String,
        file: PathBuf,
        scope: String,
        reason: String,
    },
}

/// A parsed policy file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Policy {
    file: PathBuf,
    default: Vec<Requirement>,
    docker: BTreeMap<String, Vec<Requirement>>,
}

/// A docker reference's policy identity: `host/repo:tag` or `host/repo@digest`.
pub(crate) fn scope_identity(name: &ImageName) -> String {
    name.to_string()
}

/// The less specific scopes of a name, most specific first: the repository,
/// its parent namespaces, the host, then `*.domain` wildcards of the host
/// without its port.
pub(crate) fn scope_namespaces(name: &ImageName) -> Vec<String> {
    let mut out = Vec::new();
    let mut repo = format!("{}/{}", name.registry, name.repository);
    out.push(repo.clone());
    while let Some((parent, _)) = repo.rsplit_once('/') {
        out.push(parent.to_string());
        repo = parent.to_string();
    }
    let host = name.registry.split(':').next().unwrap_or_default();
    let mut rest = host;
    while let Some((_, tail)) = rest.split_once('.') {
        out.push(format!("*.{tail}"));
        rest = tail;
    }
    out
}

impl Policy {
    pub(crate) fn parse(file: &Path, text: &str) -> Result<Self, PolicyError> {
        let invalid = |message: String| PolicyError::Invalid {
            file: file.to_path_buf(),
            message,
        };
        let raw: config::RawPolicy =
            serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
        config::check(&raw).map_err(invalid)?;
        let mut transports = raw.transports;
        Ok(Self {
            file: file.to_path_buf(),
            default: raw.default,
            docker: transports.remove("docker").unwrap_or_default(),
        })
    }

    pub(crate) fn read(file: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(file).map_err(|e| PolicyError::Invalid {
            file: file.to_path_buf(),
            message: e.to_string(),
        })?;
        Self::parse(file, &text)
    }

    /// The scope that applies to `name` and its requirements.
    pub(crate) fn requirements_for(&self, name: &ImageName) -> (String, &[Requirement]) {
        let scopes = std::iter::once(scope_identity(name))
            .chain(scope_namespaces(name))
            .chain(std::iter::once(String::new()));
        for scope in scopes {
            if let Some(list) = self.docker.get(&scope) {
                return (scope, list);
            }
        }
        ("default".to_string(), &self.default)
    }
}

/// Where the policy comes from (`signature_policy`, `signature_policy_dir`) and
/// where signatures are looked for.
#[derive(Debug, Clone)]
pub(crate) struct PolicySource {
    /// The policy file; `explicit` = the operator named it, so it must exist.
    pub file: PathBuf,
    pub explicit: bool,
    /// `<dir>/<namespace>.json` replaces the file for a pod's namespace.
    pub namespace_dir: Option<PathBuf>,
    pub registries_d: PathBuf,
}

impl PolicySource {
    /// The policy for a pull made for a pod of `namespace` (if any); `None` when
    /// no policy is configured (every image is accepted, as before policies).
    pub(crate) fn policy(&self, namespace: Option<&str>) -> Result<Option<Policy>, PolicyError> {
        if let (Some(dir), Some(ns)) = (&self.namespace_dir, namespace) {
            let file = dir.join(format!("{ns}.json"));
            if file.exists() {
                return Policy::read(&file).map(Some);
            }
        }
        if !self.explicit && !self.file.exists() {
            return Ok(None);
        }
        Policy::read(&self.file).map(Some)
    }

    /// Whether `name` (as asked; its signatures are looked up as `source`, a
    /// mirror or the registry itself) with manifest `digest` may be pulled.
    pub(crate) async fn check(
        &self,
        policy: &Policy,
        name: &ImageName,
        source: &ImageName,
        digest: &str,
    ) -> Result<(), PolicyError> {
        let (scope, requirements) = policy.requirements_for(name);
        let rejected = |reason: String| PolicyError::Rejected {
            image: name.to_string(),
            file: policy.file.clone(),
            scope: scope.clone(),
            reason,
        };
        let mut signatures: Option<Vec<Vec<u8>>> = None;
        for requirement in requirements {
            match requirement {
                Requirement::InsecureAcceptAnything {} => {}
                Requirement::Reject {} => {
                    return Err(rejected("the scope rejects every image".into()))
                }
                Requirement::SigstoreSigned { .. } => return Err(rejected(
                    "sigstoreSigned requirements are not supported by crio-rs (GPG signedBy is)"
                        .into(),
                )),
                Requirement::SignedBy {
                    key_type,
                    key_path,
                    key_paths,
                    key_data,
                    signed_identity,
                } => {
                    if key_type != "GPGKeys" && key_type != "signedByGPGKeys" {
                        return Err(rejected(format!("keyType {key_type:?} is not implemented")));
                    }
                    let keys = load_keys(
                        key_path.as_deref(),
                        key_paths.as_deref(),
                        key_data.as_deref(),
                    )
                    .map_err(&rejected)?;
                    if signatures.is_none() {
                        let registries =
                            RegistriesD::load(&self.registries_d).map_err(&rejected)?;
                        let base = registries.base_url(source);
                        let found = lookaside::fetch(&base, &source.repository, digest)
                            .await
                            .map_err(&rejected)?;
                        signatures = Some(found);
                    }
                    let sigs = signatures.as_deref().unwrap_or_default();
                    let identity = signed_identity.clone().unwrap_or_default();
                    accept_one(sigs, &keys, &identity, name, digest).map_err(&rejected)?;
                }
            }
        }
        Ok(())
    }
}

fn load_keys(
    path: Option<&str>,
    paths: Option<&[String]>,
    data: Option<&str>,
) -> Result<Vec<pgp::composed::SignedPublicKey>, String> {
    let mut keys = Vec::new();
    let files: Vec<&str> = path
        .into_iter()
        .chain(paths.unwrap_or_default().iter().map(String::as_str))
        .collect();
    for file in files {
        let bytes = std::fs::read(file).map_err(|e| format!("key file {file}: {e}"))?;
        keys.extend(simple_signing::keyring(&bytes).map_err(|e| format!("key file {file}: {e}"))?);
    }
    if let Some(data) = data {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map_err(|e| format!("keyData: {e}"))?;
        keys.extend(simple_signing::keyring(&bytes).map_err(|e| format!("keyData: {e}"))?);
    }
    Ok(keys)
}

/// containers/image's rule: one signature that passes every check is enough;
/// the others are ignored.
fn accept_one(
    signatures: &[Vec<u8>],
    keys: &[pgp::composed::SignedPublicKey],
    identity: &Identity,
    name: &ImageName,
    digest: &str,
) -> Result<(), String> {
    if signatures.is_empty() {
        return Err(format!(
            "a signature was required, but no signature exists (manifest {digest})"
        ));
    }
    let mut reasons = Vec::new();
    for blob in signatures {
        let verdict = simple_signing::verify(blob, keys).and_then(|claim| {
            if claim.manifest_digest != digest {
                return Err(format!(
                    "the signature is for manifest {}, not {digest}",
                    claim.manifest_digest
                ));
            }
            identity_matches(identity, name, &claim.docker_reference).map(|()| claim)
        });
        match verdict {
            Ok(claim) => {
                tracing::info!(image = %name, signer = %claim.signer, "signature accepted");
                return Ok(());
            }
            Err(e) => reasons.push(e),
        }
    }
    Err(match reasons.len() {
        1 => reasons.remove(0),
        _ => format!(
            "none of the signatures were accepted: {}",
            reasons.join("; ")
        ),
    })
}

/// Whether a signature's `docker-reference` fits the pulled name.
fn identity_matches(identity: &Identity, name: &ImageName, signed: &str) -> Result<(), String> {
    let parsed = match ImageName::parse(signed) {
        Ok(super::reference::ParsedName::Qualified(n)) => n,
        _ => {
            return Err(format!(
                "the signed identity {signed:?} is not a fully qualified name"
            ))
        }
    };
    let repo = |n: &ImageName| format!("{}/{}", n.registry, n.repository);
    let tagged = |n: &ImageName| n.tag.is_some() || n.digest.is_some();
    let ok = match identity {
        Identity::MatchExact => tagged(&parsed) && parsed.to_string() == name.to_string(),
        Identity::MatchRepoDigestOrExact => {
            if name.digest.is_some() && name.tag.is_none() {
                repo(&parsed) == repo(name)
            } else {
                tagged(&parsed) && parsed.to_string() == name.to_string()
            }
        }
        Identity::MatchRepository => repo(&parsed) == repo(name),
        Identity::ExactReference { docker_reference } => {
            tagged(&parsed) && parsed.to_string() == normalized(docker_reference)
        }
        Identity::ExactRepository { docker_repository } => {
            repo(&parsed) == normalized(docker_repository)
        }
        Identity::RemapIdentity {
            prefix,
            signed_prefix,
        } => {
            let full = name.to_string();
            let remapped = match full.strip_prefix(prefix.as_str()) {
                Some(rest) if rest.is_empty() || rest.starts_with(['/', ':', '@']) => {
                    format!("{signed_prefix}{rest}")
                }
                _ => full,
            };
            match ImageName::parse(&remapped) {
                Ok(super::reference::ParsedName::Qualified(n)) => {
                    return identity_matches(&Identity::MatchRepoDigestOrExact, &n, signed)
                }
                _ => false,
            }
        }
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "the signature is for {signed:?}, which does not match {name} ({identity:?})"
        ))
    }
}

fn normalized(reference: &str) -> String {
    match ImageName::parse(reference) {
        Ok(super::reference::ParsedName::Qualified(n)) => n.to_string(),
        _ => reference.to_string(),
    }
}
