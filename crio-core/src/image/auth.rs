//! Registry credentials: from a containers-auth.json(5) file, or from the CRI pull
//! request's `AuthConfig`.
//!
//! Username/password credentials (the file's `auth` entries and the request's
//! `username`/`password`/`auth` fields) are sent to the registry's token server
//! (bearer-token registries) or as basic auth. The request's `registry_token` is a
//! bearer token sent to the registry as it is. Identity tokens (OAuth2 refresh
//! tokens: the request's `identity_token`, the file's `identitytoken`) need a token
//! exchange this daemon does not implement.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use serde::Deserialize;

const ENV_AUTH_FILE: &str = "REGISTRY_AUTH_FILE";
const DEFAULT_AUTH_FILE: &str = "/etc/containers/auth.json";

/// Docker's and Go's encoders pad; hand-written files and secrets sometimes do not.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A username and password for one registry.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub username: String,
    pub password: String,
}

/// By hand, so that a logged request or error never shows the password.
impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// What a pull request authenticates with.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum CriAuth {
    /// Username and password: for the registry's token server, or basic auth.
    Basic(Credentials),
    /// A bearer token for the registry (CRI `registry_token`), sent as it is.
    RegistryToken(String),
}

/// By hand: neither the password nor the token may reach a log.
impl fmt::Debug for CriAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CriAuth::Basic(creds) => f.debug_tuple("Basic").field(creds).finish(),
            CriAuth::RegistryToken(_) => f.write_str("RegistryToken(<redacted>)"),
        }
    }
}

/// Why credentials could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AuthError {
    #[error("cannot read auth file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("auth file {path} is not valid containers-auth.json (accepted: {{\"auths\": {{\"registry[/repository]\": {{\"auth\": \"<base64 of username:password>\"}}}}}}): {message}")]
    Json { path: PathBuf, message: String },
    #[error("pull request auth: {0}")]
    InvalidAuth(String),
    #[error("pull request auth: {field} is not supported (accepted: username and password, auth = base64 of \"username:password\", or registry_token)")]
    Unsupported { field: &'static str },
}

/// A loaded auth file: credentials by key (`registry[/namespace[/repository]]`
/// as written in the file).
#[derive(Debug, Clone, Default)]
pub(crate) struct AuthFile {
    entries: BTreeMap<String, Credentials>,
}

#[derive(Deserialize)]
struct RawFile {
    #[serde(default)]
    auths: BTreeMap<String, RawEntry>,
}

#[derive(Deserialize)]
struct RawEntry {
    #[serde(default)]
    auth: String,
    #[serde(default)]
    identitytoken: String,
}

impl AuthFile {
    /// `$REGISTRY_AUTH_FILE` if set, else the daemon-wide file (CRI-O's
    /// `global_auth_file` overrides both).
    pub(crate) fn default_path() -> PathBuf {
        path_from(std::env::var_os(ENV_AUTH_FILE))
    }

    /// Reads `path`; a missing file means no credentials. Entries that cannot be
    /// used (bad base64, identity tokens) are skipped with a log line rather than
    /// failing every pull, as containers/image only reports them when used.
    pub(crate) fn load(path: &Path) -> Result<Self, AuthError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self {
                    entries: BTreeMap::new(),
                })
            }
            Err(source) => {
                return Err(AuthError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let raw: RawFile = if text.trim().is_empty() {
            RawFile {
                auths: BTreeMap::new(),
            }
        } else {
            serde_json::from_str(&text).map_err(|e| AuthError::Json {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?
        };
        let entries = raw
            .auths
            .into_iter()
            .filter_map(|(key, entry)| usable_entry(path, key, entry))
            .collect();
        Ok(Self { entries })
    }

    /// Credentials for `registry/repository`: the most specific key first
    /// (`registry/ns/repo`, `registry/ns`, `registry`), then any key that
    /// normalises to the registry (`https://` URLs, `/v1/` suffixes, Docker Hub's
    /// host names).
    pub(crate) fn lookup(&self, registry: &str, repository: &str) -> Option<Credentials> {
        if let Some(found) = lookup_keys(registry, repository)
            .iter()
            .find_map(|key| self.entries.get(key))
        {
            return Some(found.clone());
        }
        let wanted = normalize_registry(registry);
        self.entries
            .iter()
            .find(|(key, _)| normalize_key(key) == wanted)
            .map(|(_, creds)| creds.clone())
    }
}

/// Credentials from a CRI `AuthConfig`'s `username`, `password` and `auth`; `None`
/// when they carry no username. For the token fields see [`from_cri_with_tokens`].
#[cfg(test)]
pub(crate) fn from_cri(
    username: &str,
    password: &str,
    auth: &str,
) -> Result<Option<Credentials>, AuthError> {
    Ok(
        match from_cri_with_tokens(username, password, auth, "", "")? {
            Some(CriAuth::Basic(creds)) => Some(creds),
            _ => None,
        },
    )
}

/// The whole CRI `AuthConfig`. As in CRI-O, `auth` wins over `username`/`password`
/// and a username is what makes credentials; without one, `registry_token` is
/// used as the registry's bearer token. `identity_token` is an error only when it
/// would be the credential.
pub(crate) fn from_cri_with_tokens(
    username: &str,
    password: &str,
    auth: &str,
    identity_token: &str,
    registry_token: &str,
) -> Result<Option<CriAuth>, AuthError> {
    let (username, password) = if auth.is_empty() {
        (username.to_string(), password.to_string())
    } else {
        decode_auth(auth).map_err(|reason| AuthError::InvalidAuth(format!("auth {reason}")))?
    };
    if !username.is_empty() {
        return Ok(Some(CriAuth::Basic(Credentials { username, password })));
    }
    if !registry_token.is_empty() {
        return Ok(Some(CriAuth::RegistryToken(registry_token.to_string())));
    }
    if !identity_token.is_empty() {
        return Err(AuthError::Unsupported {
            field: "identity_token",
        });
    }
    if !password.is_empty() {
        tracing::warn!("pull request auth has a password but no username: pulling anonymously");
    }
    Ok(None)
}

fn path_from(env: Option<OsString>) -> PathBuf {
    env.filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_AUTH_FILE), PathBuf::from)
}

fn usable_entry(path: &Path, key: String, entry: RawEntry) -> Option<(String, Credentials)> {
    if entry.auth.is_empty() {
        if entry.identitytoken.is_empty() {
            tracing::debug!(file = %path.display(), key, "auth file entry has no auth: ignored");
        } else {
            tracing::debug!(file = %path.display(), key, "auth file entry uses an identitytoken, which is not supported: ignored");
        }
        return None;
    }
    match decode_auth(&entry.auth) {
        Ok((username, password)) if !username.is_empty() => {
            Some((key, Credentials { username, password }))
        }
        Ok(_) => {
            tracing::warn!(file = %path.display(), key, "auth file entry has an empty username: ignored");
            None
        }
        Err(reason) => {
            tracing::warn!(file = %path.display(), key, "auth file entry ignored: auth {reason}");
            None
        }
    }
}

/// base64 `username:password`; the reason completes "auth …" on failure.
fn decode_auth(encoded: &str) -> Result<(String, String), String> {
    let bytes = BASE64
        .decode(encoded.trim())
        .map_err(|e| format!("is not valid base64 ({e})"))?;
    let text = String::from_utf8(bytes).map_err(|_| "does not decode to UTF-8 text".to_string())?;
    let Some((username, password)) = text.split_once(':') else {
        return Err("does not decode to \"username:password\"".into());
    };
    // Docker pads some stored passwords with NULs; containers/image strips them.
    Ok((
        username.to_string(),
        password.trim_matches('\0').to_string(),
    ))
}

/// `registry/a/b/c`, `registry/a/b`, `registry/a`, `registry`.
fn lookup_keys(registry: &str, repository: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut key = format!("{registry}/{repository}");
    keys.push(key.clone());
    while let Some(cut) = key.rfind('/') {
        key.truncate(cut);
        keys.push(key.clone());
    }
    keys
}

/// Docker Hub answers to several names; the auth file uses its legacy one.
fn normalize_registry(registry: &str) -> &str {
    match registry {
        "docker.io" | "registry-1.docker.io" => "index.docker.io",
        other => other,
    }
}

/// A file key as a registry: `https://host/v1/` (Docker's legacy API URLs) and
/// `host/v1/` become `host`. Other keys with a path stay as they are: they name a
/// namespace, not a registry.
fn normalize_key(key: &str) -> &str {
    let stripped = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"));
    let host = match stripped {
        Some(url) => url.split('/').next().unwrap_or_default(),
        None => {
            let trimmed = key.trim_end_matches('/');
            trimmed
                .strip_suffix("/v1")
                .or_else(|| trimmed.strip_suffix("/v2"))
                .unwrap_or(trimmed)
        }
    };
    normalize_registry(host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose;

    fn b64(text: &str) -> String {
        general_purpose::STANDARD.encode(text)
    }

    fn creds(username: &str, password: &str) -> Credentials {
        Credentials {
            username: username.into(),
            password: password.into(),
        }
    }

    fn auth_file(json: &str) -> (tempfile::TempDir, AuthFile) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("auth.json");
        std::fs::write(&path, json).expect("write");
        let file = AuthFile::load(&path).expect("load");
        (dir, file)
    }

    #[test]
    fn debug_redacts_the_password() {
        let text = format!("{:?}", creds("alice", "s3cret"));
        assert!(
            text.contains("alice") && text.contains("<redacted>"),
            "{text}"
        );
        assert!(!text.contains("s3cret"), "{text}");
    }

    #[test]
    fn missing_file_has_no_credentials() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = AuthFile::load(&dir.path().join("absent.json")).expect("load");
        assert_eq!(file.lookup("quay.io", "a/b"), None);
    }

    #[test]
    fn empty_file_has_no_credentials() {
        let (_dir, file) = auth_file("\n");
        assert_eq!(file.lookup("quay.io", "a"), None);
    }

    #[test]
    fn most_specific_key_wins() {
        let json = format!(
            r#"{{"auths": {{
                "quay.io": {{"auth": "{}"}},
                "quay.io/team": {{"auth": "{}"}},
                "quay.io/team/app": {{"auth": "{}"}}
            }}}}"#,
            b64("registry:r"),
            b64("namespace:n"),
            b64("repo:p")
        );
        let (_dir, file) = auth_file(&json);
        assert_eq!(file.lookup("quay.io", "team/app"), Some(creds("repo", "p")));
        assert_eq!(
            file.lookup("quay.io", "team/other"),
            Some(creds("namespace", "n"))
        );
        assert_eq!(
            file.lookup("quay.io", "team/deep/app"),
            Some(creds("namespace", "n"))
        );
        assert_eq!(
            file.lookup("quay.io", "elsewhere"),
            Some(creds("registry", "r"))
        );
        assert_eq!(file.lookup("ghcr.io", "team/app"), None);
        // A repository key is an exact match, not a prefix of other repositories.
        assert_eq!(
            file.lookup("quay.io", "team/application"),
            Some(creds("namespace", "n"))
        );
    }

    #[test]
    fn legacy_keys_are_normalised() {
        let json = format!(
            r#"{{"auths": {{
                "https://index.docker.io/v1/": {{"auth": "{}"}},
                "http://registry.example.com:5000/": {{"auth": "{}"}},
                "other.example.com/v1/": {{"auth": "{}"}}
            }}}}"#,
            b64("hub:h"),
            b64("local:l"),
            b64("other:o")
        );
        let (_dir, file) = auth_file(&json);
        assert_eq!(
            file.lookup("docker.io", "library/busybox"),
            Some(creds("hub", "h"))
        );
        assert_eq!(
            file.lookup("registry-1.docker.io", "x/y"),
            Some(creds("hub", "h"))
        );
        assert_eq!(
            file.lookup("registry.example.com:5000", "x"),
            Some(creds("local", "l"))
        );
        assert_eq!(file.lookup("registry.example.com", "x"), None);
        assert_eq!(
            file.lookup("other.example.com", "x"),
            Some(creds("other", "o"))
        );
    }

    #[test]
    fn docker_io_key_matches_docker_hub_names() {
        let json = format!(
            r#"{{"auths": {{"docker.io": {{"auth": "{}"}}}}}}"#,
            b64("u:p")
        );
        let (_dir, file) = auth_file(&json);
        assert_eq!(
            file.lookup("docker.io", "library/busybox"),
            Some(creds("u", "p"))
        );
        assert_eq!(
            file.lookup("index.docker.io", "library/busybox"),
            Some(creds("u", "p"))
        );
    }

    #[test]
    fn exact_match_beats_normalised_match() {
        let json = format!(
            r#"{{"auths": {{"https://quay.io": {{"auth": "{}"}}, "quay.io": {{"auth": "{}"}}}}}}"#,
            b64("url:u"),
            b64("plain:p")
        );
        let (_dir, file) = auth_file(&json);
        assert_eq!(file.lookup("quay.io", "x"), Some(creds("plain", "p")));
    }

    #[test]
    fn unusable_entries_are_skipped() {
        let json = format!(
            r#"{{"auths": {{
                "quay.io": {{"auth": "{}"}},
                "quay.io/token": {{"identitytoken": "abc"}},
                "quay.io/bad": {{"auth": "!!not base64!!"}},
                "quay.io/nocolon": {{"auth": "{}"}},
                "quay.io/empty": {{}}
            }}, "credHelpers": {{"gcr.io": "gcloud"}}}}"#,
            b64("fallback:f"),
            b64("justauser")
        );
        let (_dir, file) = auth_file(&json);
        for repo in ["token/x", "bad/x", "nocolon/x", "empty/x"] {
            assert_eq!(
                file.lookup("quay.io", repo),
                Some(creds("fallback", "f")),
                "{repo}"
            );
        }
    }

    #[test]
    fn passwords_keep_colons_and_lose_nul_padding() {
        let json = format!(
            r#"{{"auths": {{"quay.io": {{"auth": "{}"}}}}}}"#,
            b64("user:pa:ss\0\0")
        );
        let (_dir, file) = auth_file(&json);
        assert_eq!(file.lookup("quay.io", "x"), Some(creds("user", "pa:ss")));
    }

    #[test]
    fn invalid_json_names_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("auth.json");
        std::fs::write(&path, "{\"auths\": [").expect("write");
        let err = AuthFile::load(&path).expect_err("invalid");
        let text = err.to_string();
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.contains("containers-auth.json"), "{text}");
    }

    #[test]
    fn unreadable_path_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            AuthFile::load(dir.path()),
            Err(AuthError::Read { .. })
        ));
    }

    #[test]
    fn default_path_follows_the_environment() {
        assert_eq!(path_from(None), PathBuf::from(DEFAULT_AUTH_FILE));
        assert_eq!(
            path_from(Some(OsString::new())),
            PathBuf::from(DEFAULT_AUTH_FILE)
        );
        assert_eq!(
            path_from(Some("/run/auth.json".into())),
            PathBuf::from("/run/auth.json")
        );
    }

    #[test]
    fn cri_username_and_password() {
        assert_eq!(from_cri("u", "p", "").expect("ok"), Some(creds("u", "p")));
        assert_eq!(from_cri("u", "", "").expect("ok"), Some(creds("u", "")));
    }

    #[test]
    fn cri_auth_field_wins() {
        assert_eq!(
            from_cri("ignored", "ignored", &b64("a:b")).expect("ok"),
            Some(creds("a", "b"))
        );
        // Unpadded base64 is accepted too.
        let unpadded = b64("ab:c").trim_end_matches('=').to_string();
        assert_eq!(
            from_cri("", "", &unpadded).expect("ok"),
            Some(creds("ab", "c"))
        );
    }

    #[test]
    fn cri_empty_is_none() {
        assert_eq!(from_cri("", "", "").expect("ok"), None);
        assert_eq!(from_cri("", "password-only", "").expect("ok"), None);
    }

    #[test]
    fn cri_bad_auth_is_an_error() {
        let err = from_cri("", "", "%%%").expect_err("bad base64");
        assert!(err.to_string().contains("not valid base64"), "{err}");
        let err = from_cri("", "", &b64("nocolon")).expect_err("no colon");
        assert!(err.to_string().contains("username:password"), "{err}");
    }

    #[test]
    fn cri_identity_tokens_are_unsupported() {
        let err = from_cri_with_tokens("", "", "", "idtoken", "").expect_err("identity token");
        assert!(matches!(
            err,
            AuthError::Unsupported {
                field: "identity_token"
            }
        ));
        assert!(err.to_string().contains("not supported"), "{err}");
        // With a username the token is not needed, as in CRI-O.
        assert_eq!(
            from_cri_with_tokens("u", "p", "", "idtoken", "").expect("ok"),
            Some(CriAuth::Basic(creds("u", "p")))
        );
    }

    #[test]
    fn cri_registry_token_is_a_bearer_token() {
        assert_eq!(
            from_cri_with_tokens("", "", "", "", "bearer").expect("ok"),
            Some(CriAuth::RegistryToken("bearer".into()))
        );
        // A registry token beats an identity token; a username beats both.
        assert_eq!(
            from_cri_with_tokens("", "", "", "idtoken", "bearer").expect("ok"),
            Some(CriAuth::RegistryToken("bearer".into()))
        );
        assert_eq!(
            from_cri_with_tokens("u", "p", "", "", "bearer").expect("ok"),
            Some(CriAuth::Basic(creds("u", "p")))
        );
        let shown = format!("{:?}", CriAuth::RegistryToken("s3cret-token".into()));
        assert!(!shown.contains("s3cret"), "{shown}");
        // from_cri ignores tokens.
        assert_eq!(from_cri("", "", "").expect("ok"), None);
    }
}
