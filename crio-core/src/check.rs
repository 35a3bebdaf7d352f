//! `crio check` (CRI-O's subcommand): the store, read while the daemon is
//! stopped, checked for what a crash, a full disk or a hand edit can break: an
//! image whose layers or blobs are gone, a container whose image is gone, layers
//! and blobs no image names. `--repair` removes the broken image records (a
//! later pull brings them back whole) and the leftovers; containers are only
//! reported, since removing one is the kubelet's decision.

use std::path::Path;
use std::sync::Arc;

use crate::image::images::{ImageError, ImageStore};
use crate::store::{ContainerRecord, ImageRecord, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{0} (is crio running? stop it first)")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Images(#[from] ImageError),
}

impl From<crate::storage::layers::LayerError> for CheckError {
    fn from(e: crate::storage::layers::LayerError) -> Self {
        CheckError::Images(e.into())
    }
}

impl From<crate::storage::content::ContentError> for CheckError {
    fn from(e: crate::storage::content::ContentError) -> Self {
        CheckError::Images(e.into())
    }
}

/// What was found, and what `--repair` did.
#[derive(Debug, Default)]
pub struct CheckReport {
    pub problems: Vec<String>,
    pub repaired: Vec<String>,
}

/// The problems of the store under `root` (`[crio] root`); with `repair`, fixed.
pub fn check(root: &Path, repair: bool) -> Result<CheckReport, CheckError> {
    let store = Arc::new(Store::open(&root.join(crate::daemon::STORE_FILE))?);
    let images = ImageStore::open(store.clone(), &root.join("images"))?;
    let mut report = CheckReport::default();
    let records = images.list()?;
    let mut broken: Vec<ImageRecord> = Vec::new();
    for image in &records {
        let name = image
            .repo_tags
            .first()
            .cloned()
            .unwrap_or_else(|| image.id.clone());
        let mut faults: Vec<String> = image
            .layers
            .iter()
            .filter(|l| !images.layers.contains(l))
            .map(|l| format!("layer {l} is missing"))
            .collect();
        faults.extend(
            std::iter::once(&image.id)
                .chain(&image.manifests)
                .filter(|d| !images.content.contains(d))
                .map(|d| format!("blob {d} is missing")),
        );
        if !faults.is_empty() {
            report
                .problems
                .push(format!("image {name}: {}", faults.join(", ")));
            broken.push(image.clone());
        }
    }
    let known: std::collections::HashSet<&str> = records.iter().map(|i| i.id.as_str()).collect();
    let broken_ids: std::collections::HashSet<&str> =
        broken.iter().map(|i| i.id.as_str()).collect();
    for c in store.list::<ContainerRecord>()? {
        if !known.contains(c.image_ref.as_str()) || broken_ids.contains(c.image_ref.as_str()) {
            report.problems.push(format!(
                "container {} ({}): its image {} is gone or broken (not repaired: remove the container)",
                c.id, c.name, c.image_ref
            ));
        }
    }
    // What the daemon's own GC would remove (no pull runs while crio is stopped).
    let (layers, blobs) = images.unreferenced()?;
    let (orphan_layers, orphan_blobs) = (layers.len(), blobs.len());
    if orphan_layers + orphan_blobs > 0 {
        report.problems.push(format!(
            "{orphan_layers} layer(s) and {orphan_blobs} blob(s) belong to no image"
        ));
    }
    if repair {
        for image in &broken {
            store.delete::<ImageRecord>(&image.id)?;
            report.repaired.push(format!(
                "removed image {} (pull it again)",
                image.repo_tags.first().unwrap_or(&image.id)
            ));
        }
        images.collect_garbage()?;
        if orphan_layers + orphan_blobs > 0 || !broken.is_empty() {
            report
                .repaired
                .push("removed the layers and blobs no image names".into());
        }
    }
    Ok(report)
}
