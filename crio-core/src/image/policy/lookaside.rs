//! Where an image's simple-signing signatures are: registries.d(5)'s lookaside
//! URLs (`lookaside`, or the older `sigstore`), by the most specific scope that
//! names one, else `default-docker`, else containers/image's built-in
//! `file:///var/lib/containers/sigstore`. A signature is
//! `<base>/<repository>@<algo>=<hex>/signature-<N>`, N from 1 to the first
//! missing one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::image::reference::ImageName;

/// containers/image's default for root when nothing is configured.
const BUILT_IN: &str = "file:///var/lib/containers/sigstore";
/// containers/image's limits.
const MAX_SIGNATURES: usize = 128;
const MAX_SIGNATURE_BYTES: u64 = 4 << 20;

#[derive(Debug, Default, Deserialize)]
struct Section {
    lookaside: Option<String>,
    sigstore: Option<String>,
}

impl Section {
    fn url(&self) -> Option<&str> {
        self.lookaside
            .as_deref()
            .filter(|u| !u.is_empty())
            .or(self.sigstore.as_deref().filter(|u| !u.is_empty()))
    }
}

#[derive(Debug, Default, Deserialize)]
struct File {
    #[serde(rename = "default-docker")]
    default_docker: Option<Section>,
    #[serde(default)]
    docker: BTreeMap<String, Section>,
}

/// The merged `*.yaml` files of a registries.d directory.
#[derive(Debug, Default)]
pub(crate) struct RegistriesD {
    default_docker: Option<Section>,
    docker: BTreeMap<String, Section>,
}

impl RegistriesD {
    /// Reads `dir` (missing = nothing configured). A file that does not parse, or
    /// a scope defined twice, is an error naming the file.
    pub(crate) fn load(dir: &Path) -> Result<Self, String> {
        let mut out = Self::default();
        let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(entries) => entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(format!("{}: {e}", dir.display())),
        };
        files.sort();
        for path in files {
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let file: File =
                serde_yaml_ng::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            if let Some(d) = file.default_docker {
                if out.default_docker.is_some() {
                    return Err(format!(
                        "{}: default-docker is defined twice",
                        path.display()
                    ));
                }
                out.default_docker = Some(d);
            }
            for (scope, section) in file.docker {
                if out.docker.contains_key(&scope) {
                    return Err(format!(
                        "{}: docker scope {scope:?} is defined twice",
                        path.display()
                    ));
                }
                out.docker.insert(scope, section);
            }
        }
        Ok(out)
    }

    /// The lookaside base URL for `name`: the most specific scope with one.
    pub(crate) fn base_url(&self, name: &ImageName) -> String {
        let identity = super::scope_identity(name);
        std::iter::once(identity)
            .chain(super::scope_namespaces(name))
            .find_map(|scope| self.docker.get(&scope).and_then(Section::url))
            .or_else(|| self.default_docker.as_ref().and_then(Section::url))
            .unwrap_or(BUILT_IN)
            .trim_end_matches('/')
            .to_string()
    }
}

/// The signatures at `base` for `repository` and manifest `digest`.
pub(crate) async fn fetch(
    base: &str,
    repository: &str,
    digest: &str,
) -> Result<Vec<Vec<u8>>, String> {
    let dir = format!("{base}/{repository}@{}", digest.replacen(':', "=", 1));
    let mut out = Vec::new();
    for n in 1..=MAX_SIGNATURES + 1 {
        if n > MAX_SIGNATURES {
            return Err(format!("{dir}: more than {MAX_SIGNATURES} signatures"));
        }
        let url = format!("{dir}/signature-{n}");
        let found = if let Some(path) = url.strip_prefix("file://") {
            read_file(Path::new(path))?
        } else if url.starts_with("http://") || url.starts_with("https://") {
            read_http(&url).await?
        } else {
            return Err(format!(
                "lookaside {base}: unsupported scheme (file, http, https)"
            ));
        };
        match found {
            Some(bytes) => out.push(bytes),
            None => break,
        }
    }
    Ok(out)
}

fn read_file(path: &Path) -> Result<Option<Vec<u8>>, String> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
        Ok(m) if m.len() > MAX_SIGNATURE_BYTES => {
            Err(format!("{}: too large for a signature", path.display()))
        }
        Ok(_) => std::fs::read(path)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display())),
    }
}

async fn read_http(url: &str) -> Result<Option<Vec<u8>>, String> {
    let response = reqwest::get(url).await.map_err(|e| format!("{url}: {e}"))?;
    match response.status() {
        reqwest::StatusCode::NOT_FOUND => Ok(None),
        reqwest::StatusCode::OK => {
            let bytes = response.bytes().await.map_err(|e| format!("{url}: {e}"))?;
            if bytes.len() as u64 > MAX_SIGNATURE_BYTES {
                return Err(format!("{url}: too large for a signature"));
            }
            Ok(Some(bytes.to_vec()))
        }
        status => Err(format!("{url}: HTTP {status}")),
    }
}
