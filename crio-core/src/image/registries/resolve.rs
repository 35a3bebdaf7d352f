//! Answers from the merged configuration: the candidates a short name stands
//! for, and the endpoints (mirrors, then the location) to pull a name from.

use super::*;

impl RegistriesConf {
    /// Candidates for a short name, in the order to try them. An `[aliases]` entry
    /// is the only candidate; otherwise one per unqualified-search registry, and
    /// with none configured `docker.io` (what CRI-O users expect of `busybox`). A
    /// name with neither tag nor digest gets `latest`, as containers/image's
    /// short-name resolution does.
    pub(crate) fn resolve_short_name(
        &self,
        repository: &str,
        tag: Option<&str>,
        digest: Option<&str>,
    ) -> Vec<ImageName> {
        let tag = tag
            .map(str::to_string)
            .or_else(|| digest.is_none().then(|| "latest".to_string()));
        let digest = digest.map(str::to_string);
        if let Some((alias, target)) = self
            .aliases
            .get(repository)
            .and_then(|a| a.target.as_ref().map(|t| (a, t)))
        {
            tracing::debug!(short_name = repository, target = %target, file = %alias.file.display(), "short name resolved by alias");
            return vec![ImageName {
                tag,
                digest,
                ..target.clone()
            }];
        }
        let search: Vec<&str> = if self.search.is_empty() {
            vec![DOCKER_HUB]
        } else {
            self.search.iter().map(String::as_str).collect()
        };
        let mut out: Vec<ImageName> = Vec::new();
        for registry in search {
            if let Some(name) = search_candidate(registry, repository, &tag, &digest) {
                if !out.contains(&name) {
                    out.push(name);
                }
            }
        }
        out
    }

    /// Where to pull `name` from, in order: the mirrors of the `[[registry]]` with
    /// the longest matching prefix (those its pull-from-mirror settings allow for
    /// this kind of reference), then its location. No matching `[[registry]]`:
    /// the name itself, over TLS.
    pub(crate) fn pull_sources(
        &self,
        name: &ImageName,
    ) -> Result<Vec<PullSource>, RegistriesError> {
        let Some((registry, matched)) = self.find_registry(name) else {
            return Ok(vec![PullSource {
                name: name.clone(),
                insecure: false,
                mirror: false,
            }]);
        };
        if registry.blocked {
            return Err(RegistriesError::Blocked {
                image: name.to_string(),
                prefix: registry.prefix.clone(),
                path: registry.file.clone(),
            });
        }
        let digested = name.digest.is_some();
        let mut sources = Vec::new();
        for mirror in registry
            .mirrors
            .iter()
            .filter(|m| mirror_applies(registry, m, digested))
        {
            sources.push(PullSource {
                name: rewrite(name, matched, &mirror.location, registry)?,
                insecure: mirror.insecure,
                mirror: true,
            });
        }
        let primary = if registry.location.is_empty() {
            name.clone()
        } else {
            rewrite(name, matched, &registry.location, registry)?
        };
        sources.push(PullSource {
            name: primary,
            insecure: registry.insecure,
            mirror: false,
        });
        Ok(sources)
    }

    /// The `[[registry]]` with the longest prefix matching `name`, and how many
    /// bytes of `name.repo()` the prefix covers. On a tie a plain prefix beats a
    /// wildcard: it names the registry explicitly.
    fn find_registry(&self, name: &ImageName) -> Option<(&Registry, usize)> {
        let repo = name.repo();
        let mut best: Option<(&Registry, usize)> = None;
        for registry in self.registries.values() {
            let Some(matched) = prefix_match(name, &repo, &registry.prefix) else {
                continue;
            };
            let better = match best {
                None => true,
                Some((current, _)) => {
                    let (len, cur_len) = (registry.prefix.len(), current.prefix.len());
                    len > cur_len || (len == cur_len && current.prefix.starts_with("*."))
                }
            };
            if better {
                best = Some((registry, matched));
            }
        }
        best
    }
}

pub(super) fn is_plain_short_name(name: &str) -> bool {
    matches!(
        ImageName::parse(name),
        Ok(ParsedName::Short {
            tag: None,
            digest: None,
            ..
        })
    )
}

/// A fully qualified name without tag or digest.
pub(super) fn alias_target(value: &str) -> Option<ImageName> {
    match ImageName::parse(value) {
        Ok(ParsedName::Qualified(target)) if target.tag.is_none() && target.digest.is_none() => {
            Some(target)
        }
        _ => None,
    }
}

pub(super) fn search_candidate(
    registry: &str,
    repository: &str,
    tag: &Option<String>,
    digest: &Option<String>,
) -> Option<ImageName> {
    match ImageName::parse(&format!("{registry}/{repository}")) {
        Ok(ParsedName::Qualified(name)) => Some(ImageName {
            tag: tag.clone(),
            digest: digest.clone(),
            ..name
        }),
        other => {
            // Search registries are validated on load, so this is not expected.
            tracing::warn!(
                registry,
                repository,
                "short name does not qualify on this search registry: {other:?}"
            );
            None
        }
    }
}

/// How many bytes of `repo` (`registry/repository`) `prefix` covers, if it matches.
/// A plain prefix matches whole path components only (so `example.com` does not
/// match `example.com:5000`); `*.example.com` matches any sub-domain's registry,
/// whatever its port.
pub(super) fn prefix_match(name: &ImageName, repo: &str, prefix: &str) -> Option<usize> {
    if let Some(domain) = prefix.strip_prefix('*') {
        let host = name.registry.split(':').next().unwrap_or_default();
        let sub = host.len() > domain.len() && host.ends_with(domain);
        return sub.then_some(name.registry.len());
    }
    let matches = repo == prefix
        || (repo.starts_with(prefix) && repo.as_bytes().get(prefix.len()) == Some(&b'/'));
    matches.then_some(prefix.len())
}

pub(super) fn mirror_applies(registry: &Registry, mirror: &Mirror, digested: bool) -> bool {
    if registry.mirror_by_digest_only {
        return digested;
    }
    match mirror.pull_from_mirror {
        PullFromMirror::All => true,
        PullFromMirror::DigestOnly => digested,
        PullFromMirror::TagOnly => !digested,
    }
}

/// `name` with the `matched` part of its `registry/repository` replaced by `location`.
pub(super) fn rewrite(
    name: &ImageName,
    matched: usize,
    location: &str,
    registry: &Registry,
) -> Result<ImageName, RegistriesError> {
    let repo = name.repo();
    let rewritten = format!("{location}{}{}", &repo[matched..], name.suffix());
    let fail = |message: String| RegistriesError::Rewrite {
        image: name.to_string(),
        prefix: registry.prefix.clone(),
        path: registry.file.clone(),
        rewritten: rewritten.clone(),
        message,
    };
    match ImageName::parse(&rewritten) {
        Ok(ParsedName::Qualified(out)) => Ok(out),
        Ok(ParsedName::Short { .. }) => Err(fail("it has no registry".into())),
        Err(e) => Err(fail(e.to_string())),
    }
}

// ---- reloading ---------------------------------------------------------------
