//! The image records: lookup by id, tag or digest, tag re-pointing, removal with
//! reference checks, and garbage collection of unreferenced layers and blobs.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::image_config::ImageConfig;
use super::reference::{ImageName, ParsedName, ReferenceError};
use super::registries::RegistriesConf;
use crate::storage::content::{ContentError, ContentStore};
use crate::storage::layers::{LayerError, LayerStore};
use crate::store::{ContainerRecord, ImageRecord, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error(transparent)]
    Layer(#[from] LayerError),
    #[error("image {image} is in use by container(s) {containers}: remove them first")]
    InUse { image: String, containers: String },
    #[error("image {image} is pinned ([crio.image] pinned_images, or the pause image): it is not removed")]
    Pinned { image: String },
    #[error("image config of {image}: {message}")]
    Config { image: String, message: String },
}

/// Images, their layers and blobs.
#[derive(Debug)]
pub struct ImageStore {
    store: Arc<Store>,
    pub content: ContentStore,
    pub layers: LayerStore,
    /// Layers a pull has installed but not yet recorded: GC must leave them alone.
    in_flight: Mutex<HashSet<String>>,
    /// Images RemoveImage keeps (`pinned_images`; SIGHUP replaces them).
    pinned: std::sync::RwLock<super::pinned::PinnedImages>,
}

/// The `name:tag` a pull of `name` records, if any (a digest-only pull records none).
pub(crate) fn tag_of(name: &ImageName) -> Option<String> {
    match (&name.tag, &name.digest) {
        (Some(tag), _) => Some(format!("{}:{tag}", name.repo())),
        (None, None) => Some(format!("{}:latest", name.repo())),
        (None, Some(_)) => None,
    }
}

/// The fully qualified names `spec` may mean: itself, or a short name's candidates
/// from registries.conf (aliases, then search registries).
pub(crate) fn candidates(
    spec: &str,
    registries: &RegistriesConf,
) -> Result<Vec<ImageName>, ReferenceError> {
    Ok(match ImageName::parse(spec)? {
        ParsedName::Qualified(name) => vec![name],
        ParsedName::Short {
            repository,
            tag,
            digest,
        } => registries.resolve_short_name(&repository, tag.as_deref(), digest.as_deref()),
    })
}

fn looks_like_id(spec: &str) -> Option<String> {
    let hex = spec.strip_prefix("sha256:").unwrap_or(spec);
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| format!("sha256:{}", hex.to_ascii_lowercase()))
}

impl ImageStore {
    pub(crate) fn open(store: Arc<Store>, root: &Path) -> Result<Self, ImageError> {
        let tmp = root.join("tmp");
        Ok(Self {
            content: ContentStore::open(&root.join("blobs"), &tmp)?,
            layers: LayerStore::open(&root.join("layers"), &tmp)?,
            store,
            in_flight: Mutex::new(HashSet::new()),
            pinned: Default::default(),
        })
    }

    /// The store with `pinned` images kept.
    pub(crate) fn with_pinned(self, pinned: super::pinned::PinnedImages) -> Self {
        self.set_pinned(pinned);
        self
    }

    /// Replaces the pinned patterns (a SIGHUP with a new `pinned_images`).
    pub(crate) fn set_pinned(&self, pinned: super::pinned::PinnedImages) {
        if let Ok(mut p) = self.pinned.write() {
            *p = pinned;
        }
    }

    /// Whether the image is pinned (ListImages' and ImageStatus' `pinned`).
    pub(crate) fn is_pinned(&self, image: &ImageRecord) -> bool {
        self.pinned.read().is_ok_and(|p| p.pins(image))
    }

    pub(crate) fn list(&self) -> Result<Vec<ImageRecord>, ImageError> {
        Ok(self.store.list::<ImageRecord>()?)
    }

    /// Finds the image `spec` names: an image ID (with or without `sha256:`), a
    /// `name:tag`, a `name@digest`, or a short name resolved through registries.conf.
    pub(crate) fn resolve(
        &self,
        spec: &str,
        registries: &RegistriesConf,
    ) -> Result<Option<ImageRecord>, ImageError> {
        if let Some(id) = looks_like_id(spec) {
            if let Some(record) = self.store.get::<ImageRecord>(&id)? {
                return Ok(Some(record));
            }
        }
        let Ok(candidates) = candidates(spec, registries) else {
            return Ok(None);
        };
        let images = self.list()?;
        for name in candidates {
            let found = images.iter().find(|image| match &name.digest {
                Some(digest) => image
                    .repo_digests
                    .contains(&format!("{}@{digest}", name.repo())),
                None => tag_of(&name).is_some_and(|tag| image.repo_tags.contains(&tag)),
            });
            if let Some(image) = found {
                return Ok(Some(image.clone()));
            }
        }
        Ok(None)
    }

    /// The image's config, from the content store.
    pub(crate) fn config(&self, image: &ImageRecord) -> Result<ImageConfig, ImageError> {
        let bytes = self.content.get(&image.id)?;
        ImageConfig::parse(&bytes, image.layers.len()).map_err(|e| ImageError::Config {
            image: image.id.clone(),
            message: e.to_string(),
        })
    }

    /// Marks layers as in use by a pull until [`ImageStore::release`].
    pub(crate) fn hold(&self, chain_ids: &[String]) {
        if let Ok(mut held) = self.in_flight.lock() {
            held.extend(chain_ids.iter().cloned());
        }
    }

    pub(crate) fn release(&self, chain_ids: &[String]) {
        if let Ok(mut held) = self.in_flight.lock() {
            for id in chain_ids {
                held.remove(id);
            }
        }
    }

    /// Records a pulled image in one transaction: its tags move to it from any other
    /// image, and an image left with no tag and no digest keeps existing (kubelet GC
    /// removes it by id) — as CRI-O and containerd do.
    pub(crate) fn commit(&self, mut record: ImageRecord) -> Result<ImageRecord, ImageError> {
        self.store.write(|tx| {
            for other in self.store.list::<ImageRecord>()? {
                if other.id == record.id {
                    merge_unique(&mut record.repo_tags, &other.repo_tags);
                    merge_unique(&mut record.repo_digests, &other.repo_digests);
                    merge_unique(&mut record.manifests, &other.manifests);
                    continue;
                }
                let before = other.repo_tags.len();
                let mut moved = other.clone();
                moved.repo_tags.retain(|t| !record.repo_tags.contains(t));
                if moved.repo_tags.len() != before {
                    tx.put(&moved)?;
                }
            }
            tx.put(&record)
        })?;
        Ok(record)
    }

    /// Removes what `spec` names. A tag is untagged (the image goes when its last tag
    /// does); an ID or digest removes the image. Refused while a container uses it.
    /// Returns whether anything was removed.
    pub(crate) fn remove(
        &self,
        spec: &str,
        registries: &RegistriesConf,
    ) -> Result<bool, ImageError> {
        let Some(image) = self.resolve(spec, registries)? else {
            return Ok(false);
        };
        let by_tag = looks_like_id(spec).is_none() && !spec.contains('@');
        let remaining_tags: Vec<String> = if by_tag {
            let names = self.tags_named_by(spec, registries);
            image
                .repo_tags
                .iter()
                .filter(|t| !names.contains(t))
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        let pinned = || ImageError::Pinned {
            image: spec.to_string(),
        };
        if !remaining_tags.is_empty() {
            // Untagging keeps the image: only a pinned name may not go.
            let removed = image
                .repo_tags
                .iter()
                .filter(|t| !remaining_tags.contains(t));
            let pinned_name = self
                .pinned
                .read()
                .map(|p| removed.into_iter().any(|t| p.matches(t)));
            if pinned_name.unwrap_or(true) {
                return Err(pinned());
            }
            let mut untagged = image.clone();
            untagged.repo_tags = remaining_tags;
            self.store.put(&untagged)?;
            return Ok(true);
        }
        if self.is_pinned(&image) {
            return Err(pinned());
        }
        let users: Vec<String> = self
            .store
            .list::<ContainerRecord>()?
            .into_iter()
            .filter(|c| c.image_ref == image.id || c.image_volumes.contains(&image.id))
            .map(|c| c.id)
            .collect();
        if !users.is_empty() {
            return Err(ImageError::InUse {
                image: image.repo_tags.first().cloned().unwrap_or(image.id),
                containers: users.join(", "),
            });
        }
        self.store.delete::<ImageRecord>(&image.id)?;
        self.collect_garbage()?;
        Ok(true)
    }

    fn tags_named_by(&self, spec: &str, registries: &RegistriesConf) -> Vec<String> {
        candidates(spec, registries)
            .unwrap_or_default()
            .iter()
            .filter_map(tag_of)
            .collect()
    }

    /// Removes layers and blobs no image record names (and no pull holds), and
    /// leftovers of interrupted work in the temp dir. Run at start-up and after removals.
    pub(crate) fn collect_garbage(&self) -> Result<(), ImageError> {
        let (layers, blobs) = self.unreferenced()?;
        for layer in layers {
            tracing::debug!(layer, "removing unreferenced layer");
            self.layers.remove(&layer)?;
        }
        for blob in blobs {
            self.content.delete(&blob)?;
        }
        Ok(())
    }

    /// The layers and blobs no image record names (and no pull holds; no blob
    /// while any pull runs, since its manifests are not recorded yet).
    pub(crate) fn unreferenced(&self) -> Result<(Vec<String>, Vec<String>), ImageError> {
        let images = self.list()?;
        let held = self.in_flight.lock().map(|h| h.clone()).unwrap_or_default();
        let used_layers: HashSet<&String> = images.iter().flat_map(|i| &i.layers).collect();
        let layers = self
            .layers
            .list()?
            .into_iter()
            .filter(|l| !used_layers.contains(l) && !held.contains(l))
            .collect();
        let used_blobs: HashSet<&String> = images
            .iter()
            .flat_map(|i| i.manifests.iter().chain(std::iter::once(&i.id)))
            .collect();
        let blobs = if held.is_empty() {
            self.content
                .list()?
                .into_iter()
                .filter(|b| !used_blobs.contains(b))
                .collect()
        } else {
            Vec::new()
        };
        Ok((layers, blobs))
    }

    /// Start-up cleanup: interrupted pulls leave temp files and unrecorded layers.
    pub(crate) fn recover(&self, tmp: &Path) -> Result<(), ImageError> {
        if let Ok(entries) = std::fs::read_dir(tmp) {
            for entry in entries.flatten() {
                let path = entry.path();
                let removed = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                if let Err(e) = removed {
                    tracing::warn!("cannot remove leftover {}: {e}", path.display());
                }
            }
        }
        self.collect_garbage()
    }
}

fn merge_unique(into: &mut Vec<String>, from: &[String]) {
    for item in from {
        if !into.contains(item) {
            into.push(item.clone());
        }
    }
}
