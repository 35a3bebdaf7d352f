//! Image names as docker/distribution's reference grammar and containers/image
//! define them: `[registry/]repository[:tag][@digest]`.
//!
//! A name is *qualified* when its first path component is a registry host (it
//! contains `.` or `:`, or is `localhost`); otherwise it is a *short name* and
//! registries.conf decides where it comes from. Qualified `docker.io` names are
//! normalised the way Docker does it (`docker.io/busybox` is
//! `docker.io/library/busybox`, `index.docker.io` is `docker.io`), so that the same
//! image always has the same name in the store.

use std::fmt;

/// Docker Hub's canonical registry name.
pub(crate) const DOCKER_HUB: &str = "docker.io";
/// The legacy Docker Hub name, normalised to [`DOCKER_HUB`].
const LEGACY_DOCKER_HUB: &str = "index.docker.io";
/// Namespace of Docker Hub's official images.
const OFFICIAL_NAMESPACE: &str = "library/";
/// docker/distribution's `NameTotalLengthMax`.
const NAME_MAX: usize = 255;
/// Tags are one word character then up to 127 more.
const TAG_MAX: usize = 128;

/// A fully qualified image name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ImageName {
    /// `host[:port]`, e.g. `docker.io`, `localhost:5000`.
    pub registry: String,
    /// Path inside the registry, e.g. `library/busybox`.
    pub repository: String,
    pub tag: Option<String>,
    /// `algorithm:hex`, e.g. `sha256:…`.
    pub digest: Option<String>,
}

/// What [`ImageName::parse`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ParsedName {
    /// The name carries its registry.
    Qualified(ImageName),
    /// No registry: registries.conf (aliases, search registries) decides. The
    /// repository is kept as written (no `library/` added).
    Short {
        repository: String,
        tag: Option<String>,
        digest: Option<String>,
    },
}

/// Why a string is not an image name.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum ReferenceError {
    #[error("image name is empty")]
    Empty,
    #[error("{input:?} is an image ID (64 hex characters), not an image name")]
    LooksLikeId { input: String },
    #[error("image name {input:?} is {len} characters long (accepted: at most {NAME_MAX} for registry/repository)")]
    TooLong { input: String, len: usize },
    #[error("image name {input:?} has no repository")]
    MissingRepository { input: String },
    #[error("image name {input:?}: invalid registry {registry:?} (accepted: host[:port], e.g. quay.io or localhost:5000)")]
    Registry { input: String, registry: String },
    #[error("image name {input:?}: repository {repository:?} must be lower-case")]
    UpperCase { input: String, repository: String },
    #[error("image name {input:?}: invalid repository component {component:?} (accepted: lower-case letters and digits, separated by '.', '_', '__' or dashes)")]
    Component { input: String, component: String },
    #[error("image name {input:?}: invalid tag {tag:?} (accepted: a letter, digit or '_' then up to 127 letters, digits, '_', '.' or '-')")]
    Tag { input: String, tag: String },
    #[error("image name {input:?}: invalid digest {digest:?}: {reason}")]
    Digest {
        input: String,
        digest: String,
        reason: String,
    },
}

impl ImageName {
    /// Parses a fully qualified or short name. The only defaults applied are
    /// Docker Hub's (`index.docker.io` -> `docker.io`, `library/` for single-component
    /// repositories on `docker.io`); no `latest` tag is added.
    pub(crate) fn parse(input: &str) -> Result<ParsedName, ReferenceError> {
        if input.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if looks_like_id(input) {
            return Err(ReferenceError::LooksLikeId {
                input: input.to_string(),
            });
        }
        let (rest, digest) = match input.split_once('@') {
            Some((rest, digest)) => (rest, Some(check_digest(input, digest)?)),
            None => (input, None),
        };
        let (name, tag) = split_tag(rest);
        let tag = tag.map(|t| check_tag(input, t)).transpose()?;
        if name.len() > NAME_MAX {
            return Err(ReferenceError::TooLong {
                input: input.to_string(),
                len: name.len(),
            });
        }
        match split_registry(name) {
            Some((registry, repository)) => {
                check_registry(input, registry)?;
                check_repository(input, repository)?;
                Ok(ParsedName::Qualified(normalize(
                    registry, repository, tag, digest,
                )))
            }
            None => {
                check_repository(input, name)?;
                Ok(ParsedName::Short {
                    repository: name.to_string(),
                    tag,
                    digest,
                })
            }
        }
    }

    /// `registry/repository`, without tag or digest.
    pub(crate) fn repo(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// What to pull by: the digest if there is one, else the tag (`latest` if none).
    #[cfg(test)]
    pub(crate) fn reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// The same repository, tag and digest on another registry (a mirror). Moving
    /// onto Docker Hub adds `library/` as parsing would.
    #[cfg(test)]
    pub(crate) fn with_registry(&self, registry: &str) -> ImageName {
        normalize(
            registry,
            &self.repository,
            self.tag.clone(),
            self.digest.clone(),
        )
    }

    /// `:tag@digest`, whichever are present: what follows `repo()` in `to_string()`.
    pub(crate) fn suffix(&self) -> String {
        let mut out = String::new();
        if let Some(tag) = &self.tag {
            out.push(':');
            out.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            out.push('@');
            out.push_str(digest);
        }
        out
    }
}

impl fmt::Display for ImageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}{}", self.registry, self.repository, self.suffix())
    }
}

/// Builds a name, applying Docker Hub's normalisation.
fn normalize(
    registry: &str,
    repository: &str,
    tag: Option<String>,
    digest: Option<String>,
) -> ImageName {
    let registry = if registry == LEGACY_DOCKER_HUB {
        DOCKER_HUB
    } else {
        registry
    };
    let repository = if registry == DOCKER_HUB && !repository.contains('/') {
        format!("{OFFICIAL_NAMESPACE}{repository}")
    } else {
        repository.to_string()
    };
    ImageName {
        registry: registry.to_string(),
        repository,
        tag,
        digest,
    }
}

/// A bare image ID, with or without `sha256:`. Without the check `sha256:<hex>`
/// would parse as the repository `sha256` with a 64-character tag.
fn looks_like_id(input: &str) -> bool {
    let hex = input.strip_prefix("sha256:").unwrap_or(input);
    hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Splits `name[:tag]`; a `:` before the last `/` belongs to a registry port.
fn split_tag(rest: &str) -> (&str, Option<&str>) {
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    }
}

/// Splits off the first component when it names a registry host.
fn split_registry(name: &str) -> Option<(&str, &str)> {
    let (first, rest) = name.split_once('/')?;
    let is_host = first.contains('.') || first.contains(':') || first == "localhost";
    is_host.then_some((first, rest))
}

fn check_tag(input: &str, tag: &str) -> Result<String, ReferenceError> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    let valid = !bytes.is_empty()
        && bytes.len() <= TAG_MAX
        && word(bytes[0])
        && bytes[1..]
            .iter()
            .all(|&b| word(b) || b == b'.' || b == b'-');
    if valid {
        Ok(tag.to_string())
    } else {
        Err(ReferenceError::Tag {
            input: input.to_string(),
            tag: tag.to_string(),
        })
    }
}

fn check_digest(input: &str, digest: &str) -> Result<String, ReferenceError> {
    validate_digest(digest)
        .map(|()| digest.to_string())
        .map_err(|reason| ReferenceError::Digest {
            input: input.to_string(),
            digest: digest.to_string(),
            reason,
        })
}

/// go-digest's rules: a registered algorithm and its exact lower-case hex length.
pub(crate) fn validate_digest(digest: &str) -> Result<(), String> {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return Err("expected algorithm:hex, e.g. sha256:<64 hex digits>".into());
    };
    let expected = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        other => {
            return Err(format!(
                "unsupported algorithm {other:?} (accepted: sha256, sha384, sha512)"
            ))
        }
    };
    let lower_hex = hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if hex.len() != expected || !lower_hex {
        return Err(format!(
            "{algorithm} needs {expected} lower-case hex digits"
        ));
    }
    Ok(())
}

fn check_registry(input: &str, registry: &str) -> Result<(), ReferenceError> {
    if valid_registry(registry) {
        Ok(())
    } else {
        Err(ReferenceError::Registry {
            input: input.to_string(),
            registry: registry.to_string(),
        })
    }
}

/// `host[:port]`: DNS-style labels or a bracketed IPv6 address, then an optional
/// numeric port.
pub(crate) fn valid_registry(registry: &str) -> bool {
    let (host, port) = match registry.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((addr, after)) => {
                let ok = !addr.is_empty()
                    && addr
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
                if !ok {
                    return false;
                }
                (None, after)
            }
            None => return false,
        },
        None => match registry.split_once(':') {
            Some((host, _)) => (Some(host), &registry[host.len()..]),
            None => (Some(registry), ""),
        },
    };
    let port_ok = match port.strip_prefix(':') {
        Some(digits) => !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()),
        None => port.is_empty(),
    };
    port_ok && host.is_none_or(|h| !h.is_empty() && h.split('.').all(valid_label))
}

/// One DNS label: alphanumerics, with dashes only inside.
fn valid_label(label: &str) -> bool {
    let bytes = label.as_bytes();
    !bytes.is_empty()
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

fn check_repository(input: &str, repository: &str) -> Result<(), ReferenceError> {
    if repository.is_empty() {
        return Err(ReferenceError::MissingRepository {
            input: input.to_string(),
        });
    }
    if repository.bytes().any(|b| b.is_ascii_uppercase())
        && repository
            .to_ascii_lowercase()
            .split('/')
            .all(valid_component)
    {
        return Err(ReferenceError::UpperCase {
            input: input.to_string(),
            repository: repository.to_string(),
        });
    }
    match repository.split('/').find(|c| !valid_component(c)) {
        Some(component) => Err(ReferenceError::Component {
            input: input.to_string(),
            component: component.to_string(),
        }),
        None => Ok(()),
    }
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*`: alphanumeric runs joined by one
/// separator (`.`, `_`, `__` or any number of dashes).
pub(crate) fn valid_component(component: &str) -> bool {
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = component.as_bytes();
    let mut i = 0;
    loop {
        let start = i;
        while i < bytes.len() && alnum(&bytes[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == bytes.len() {
            return true;
        }
        let sep_start = i;
        while i < bytes.len() && !alnum(&bytes[i]) {
            i += 1;
        }
        if !valid_separator(&component[sep_start..i]) {
            return false;
        }
    }
}

fn valid_separator(sep: &str) -> bool {
    matches!(sep, "." | "_" | "__") || (!sep.is_empty() && sep.bytes().all(|b| b == b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn qualified(input: &str) -> ImageName {
        match ImageName::parse(input) {
            Ok(ParsedName::Qualified(name)) => name,
            other => panic!("{input}: expected a qualified name, got {other:?}"),
        }
    }

    fn short(input: &str) -> (String, Option<String>, Option<String>) {
        match ImageName::parse(input) {
            Ok(ParsedName::Short {
                repository,
                tag,
                digest,
            }) => (repository, tag, digest),
            other => panic!("{input}: expected a short name, got {other:?}"),
        }
    }

    fn name(
        registry: &str,
        repository: &str,
        tag: Option<&str>,
        digest: Option<&str>,
    ) -> ImageName {
        ImageName {
            registry: registry.into(),
            repository: repository.into(),
            tag: tag.map(Into::into),
            digest: digest.map(Into::into),
        }
    }

    #[test]
    fn short_names_keep_their_repository_as_written() {
        assert_eq!(short("busybox"), ("busybox".into(), None, None));
        assert_eq!(
            short("library/busybox"),
            ("library/busybox".into(), None, None)
        );
        assert_eq!(
            short("busybox:1.36"),
            ("busybox".into(), Some("1.36".into()), None)
        );
        // No registry-like first component: still short, even with a namespace.
        assert_eq!(short("foo/bar/baz"), ("foo/bar/baz".into(), None, None));
        // A lone host-like word is a repository: Docker reads it the same way.
        assert_eq!(short("localhost"), ("localhost".into(), None, None));
        assert_eq!(short("quay.io"), ("quay.io".into(), None, None));
    }

    #[test]
    fn docker_hub_gets_library_and_canonical_host() {
        assert_eq!(
            qualified("docker.io/busybox"),
            name("docker.io", "library/busybox", None, None)
        );
        assert_eq!(
            qualified("index.docker.io/busybox:1"),
            name("docker.io", "library/busybox", Some("1"), None)
        );
        assert_eq!(
            qualified("docker.io/library/busybox"),
            name("docker.io", "library/busybox", None, None)
        );
        assert_eq!(
            qualified("docker.io/myorg/app"),
            name("docker.io", "myorg/app", None, None)
        );
        // Only Docker Hub gets `library/`.
        assert_eq!(qualified("quay.io/x"), name("quay.io", "x", None, None));
    }

    #[test]
    fn localhost_and_ports_are_registries() {
        assert_eq!(qualified("localhost/x"), name("localhost", "x", None, None));
        assert_eq!(
            qualified("localhost:5000/a/b:t"),
            name("localhost:5000", "a/b", Some("t"), None)
        );
        let digest = format!("sha256:{HEX}");
        assert_eq!(
            qualified(&format!("127.0.0.1:5000/x@{digest}")),
            name("127.0.0.1:5000", "x", None, Some(&digest))
        );
        assert_eq!(
            qualified("[::1]:5000/x:v1"),
            name("[::1]:5000", "x", Some("v1"), None)
        );
        assert_eq!(
            qualified("Registry.Example.COM/app"),
            name("Registry.Example.COM", "app", None, None)
        );
    }

    #[test]
    fn tag_and_digest_together_keep_both() {
        let digest = format!("sha256:{HEX}");
        assert_eq!(
            short(&format!("x:t@{digest}")),
            ("x".into(), Some("t".into()), Some(digest.clone()))
        );
        let n = qualified(&format!("quay.io/a/b:v2@{digest}"));
        assert_eq!(n.tag.as_deref(), Some("v2"));
        assert_eq!(n.digest.as_deref(), Some(digest.as_str()));
        assert_eq!(n.reference(), digest);
        assert_eq!(n.to_string(), format!("quay.io/a/b:v2@{digest}"));
    }

    #[test]
    fn digest_without_tag_adds_no_latest() {
        let digest = format!("sha256:{HEX}");
        let n = qualified(&format!("docker.io/busybox@{digest}"));
        assert_eq!(n.tag, None);
        assert_eq!(n.to_string(), format!("docker.io/library/busybox@{digest}"));
    }

    #[test]
    fn display_repo_and_reference() {
        let n = qualified("docker.io/busybox");
        assert_eq!(n.to_string(), "docker.io/library/busybox");
        assert_eq!(n.repo(), "docker.io/library/busybox");
        assert_eq!(n.reference(), "latest");
        let t = qualified("quay.io/a/b:v1");
        assert_eq!(t.to_string(), "quay.io/a/b:v1");
        assert_eq!(t.reference(), "v1");
    }

    #[test]
    fn display_round_trips() {
        let digest = format!("sha256:{HEX}");
        for input in [
            "quay.io/a/b".to_string(),
            "localhost:5000/a/b:t".to_string(),
            format!("docker.io/library/busybox:1@{digest}"),
        ] {
            assert_eq!(qualified(&input).to_string(), input);
        }
    }

    #[test]
    fn with_registry_moves_the_name() {
        let n = qualified("docker.io/library/busybox:1");
        assert_eq!(
            n.with_registry("mirror.local:5000"),
            name("mirror.local:5000", "library/busybox", Some("1"), None)
        );
        let quay = qualified("quay.io/busybox");
        assert_eq!(
            quay.with_registry("docker.io").repository,
            "library/busybox"
        );
    }

    #[test]
    fn repository_components_follow_the_grammar() {
        for ok in [
            "a",
            "a.b",
            "a_b",
            "a__b",
            "a-b",
            "a---b",
            "a1.b2_c3__d4-e5",
            "0",
        ] {
            assert!(valid_component(ok), "{ok} should be valid");
        }
        for bad in [
            "", "-a", "a-", ".a", "a.", "a..b", "a___b", "a._b", "a.-b", "A", "a b",
        ] {
            assert!(!valid_component(bad), "{bad} should be invalid");
        }
    }

    #[test]
    fn image_ids_are_not_names() {
        for input in [HEX.to_string(), format!("sha256:{HEX}"), HEX.to_uppercase()] {
            assert_eq!(
                ImageName::parse(&input),
                Err(ReferenceError::LooksLikeId {
                    input: input.clone()
                })
            );
        }
        // 63 characters is a (strange but valid) repository.
        assert!(matches!(
            ImageName::parse(&HEX[1..]),
            Ok(ParsedName::Short { .. })
        ));
    }

    #[test]
    fn errors_name_the_input() {
        assert_eq!(ImageName::parse(""), Err(ReferenceError::Empty));
        assert_eq!(
            ImageName::parse("quay.io/Foo/bar"),
            Err(ReferenceError::UpperCase {
                input: "quay.io/Foo/bar".into(),
                repository: "Foo/bar".into()
            })
        );
        assert!(matches!(
            ImageName::parse("Busybox"),
            Err(ReferenceError::UpperCase { .. })
        ));
        assert!(matches!(
            ImageName::parse("busybox:-bad"),
            Err(ReferenceError::Tag { tag, .. }) if tag == "-bad"
        ));
        assert!(matches!(
            ImageName::parse("busybox:"),
            Err(ReferenceError::Tag { .. })
        ));
        let long_tag = format!("busybox:{}", "a".repeat(129));
        assert!(matches!(
            ImageName::parse(&long_tag),
            Err(ReferenceError::Tag { .. })
        ));
        assert!(matches!(
            ImageName::parse("busybox@sha256:abc"),
            Err(ReferenceError::Digest { .. })
        ));
        assert!(matches!(
            ImageName::parse(&format!("busybox@sha256:{}", HEX.to_uppercase())),
            Err(ReferenceError::Digest { .. })
        ));
        assert!(matches!(
            ImageName::parse(&format!("busybox@md5:{HEX}")),
            Err(ReferenceError::Digest { reason, .. }) if reason.contains("md5")
        ));
        assert!(matches!(
            ImageName::parse("busybox@"),
            Err(ReferenceError::Digest { .. })
        ));
        assert!(matches!(
            ImageName::parse("quay.io/"),
            Err(ReferenceError::MissingRepository { .. })
        ));
        assert!(matches!(
            ImageName::parse("a//b"),
            Err(ReferenceError::Component { .. })
        ));
        assert!(matches!(
            ImageName::parse("bad_host.io/x"),
            Err(ReferenceError::Registry { .. })
        ));
        assert!(matches!(
            ImageName::parse("host.io:port/x"),
            Err(ReferenceError::Registry { .. })
        ));
        let long = format!("quay.io/{}", "a".repeat(250));
        assert!(matches!(
            ImageName::parse(&long),
            Err(ReferenceError::TooLong { .. })
        ));
    }

    #[test]
    fn error_messages_are_helpful() {
        let err = ImageName::parse("busybox:-x").expect_err("bad tag");
        let text = err.to_string();
        assert!(
            text.contains("\"busybox:-x\"") && text.contains("accepted"),
            "{text}"
        );
        let err = ImageName::parse(HEX).expect_err("id");
        assert!(err.to_string().contains("image ID"), "{err}");
    }

    #[test]
    fn registries_are_validated() {
        for ok in [
            "quay.io",
            "localhost:5000",
            "a-b.c:1",
            "[::1]",
            "[fe80::1]:443",
            "Example.COM",
        ] {
            assert!(valid_registry(ok), "{ok} should be valid");
        }
        for bad in [
            "", "-a.io", "a..io", "a.io:", "a.io:x", "[::1", "[]:5000", "a_b.io",
        ] {
            assert!(!valid_registry(bad), "{bad} should be invalid");
        }
    }
}
