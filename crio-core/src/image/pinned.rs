//! `[crio.image] pinned_images`: images RemoveImage keeps and ListImages reports
//! `pinned` (so the kubelet's image GC leaves them). Patterns are CRI-O's: an
//! exact name, `text*` (CRI-O matches the text anywhere, not only as a prefix)
//! or `*keyword*`, case-insensitive, against every name of an image. The pause
//! image is always pinned, as in CRI-O and containerd.

use crate::store::ImageRecord;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Exact(String),
    Contains(String),
}

/// The configured patterns (lower-cased).
#[derive(Debug, Clone, Default)]
pub(crate) struct PinnedImages {
    patterns: Vec<Pattern>,
}

impl PinnedImages {
    /// From `pinned_images` (validated: none is empty or a lone `*`) and the
    /// pause image (empty = the built-in one, which is no image).
    pub(crate) fn new(patterns: &[String], pause_image: &str) -> Self {
        let mut out: Vec<Pattern> = patterns
            .iter()
            .map(|p| {
                let p = p.to_lowercase();
                if let Some(keyword) = p.strip_prefix('*').and_then(|k| k.strip_suffix('*')) {
                    Pattern::Contains(keyword.to_string())
                } else if let Some(text) = p.strip_suffix('*') {
                    Pattern::Contains(text.to_string())
                } else {
                    Pattern::Exact(p)
                }
            })
            .collect();
        if !pause_image.is_empty() {
            out.push(Pattern::Exact(pause_image.to_lowercase()));
        }
        Self { patterns: out }
    }

    /// Whether the name `name` is pinned.
    pub(crate) fn matches(&self, name: &str) -> bool {
        let name = name.to_lowercase();
        self.patterns.iter().any(|p| match p {
            Pattern::Exact(e) => *e == name,
            Pattern::Contains(k) => name.contains(k.as_str()),
        })
    }

    /// Whether any of the image's names (tags or digests) is pinned.
    pub(crate) fn pins(&self, image: &ImageRecord) -> bool {
        image
            .repo_tags
            .iter()
            .chain(&image.repo_digests)
            .any(|n| self.matches(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(tags: &[&str]) -> ImageRecord {
        ImageRecord {
            repo_tags: tags.iter().map(|t| t.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn cri_o_patterns() {
        let pinned = PinnedImages::new(
            &[
                "quay.io/app/db:1.0".into(),
                "registry.local/infra*".into(),
                "*Monitor*".into(),
            ],
            "registry.k8s.io/pause:3.10",
        );
        assert!(pinned.pins(&image(&["quay.io/app/db:1.0"])));
        assert!(!pinned.pins(&image(&["quay.io/app/db:1.1"])), "exact");
        assert!(pinned.pins(&image(&["registry.local/infra/agent:2"])));
        assert!(
            pinned.pins(&image(&["x/registry.local/infra:1"])),
            "CRI-O: anywhere"
        );
        assert!(
            pinned.pins(&image(&["quay.io/team/node-monitor:3"])),
            "case-insensitive"
        );
        assert!(
            pinned.pins(&image(&["other:1", "registry.k8s.io/pause:3.10"])),
            "pause"
        );
        assert!(!pinned.pins(&image(&["quay.io/app/web:1"])));
        let digests = ImageRecord {
            repo_digests: vec!["quay.io/app/db@sha256:00".into()],
            ..Default::default()
        };
        assert!(PinnedImages::new(&["quay.io/app/db*".into()], "").pins(&digests));
        assert!(!PinnedImages::default().pins(&image(&["a:1"])));
    }
}
