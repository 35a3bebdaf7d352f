//! The persisted records, schema version 1. Fields added later carry
//! `#[serde(default)]` so older records still decode; removing or retyping a field
//! needs a schema bump and a migration.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Record;

/// A pod sandbox as persisted before RunPodSandbox is acknowledged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SandboxRecord {
    pub id: String,
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub attempt: u32,
    pub runtime_handler: String,
    /// Unix nanoseconds.
    pub created_at: i64,
    /// Lifecycle state name (`ready`, `notready`).
    pub state: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

impl Record for SandboxRecord {
    const TABLE: &'static str = "sandboxes";
    fn id(&self) -> &str {
        &self.id
    }
}

/// A container as persisted before CreateContainer is acknowledged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub sandbox_id: String,
    pub name: String,
    pub attempt: u32,
    pub image_ref: String,
    pub created_at: i64,
    /// Lifecycle state name (`created`, `running`, `exited`, `unknown`).
    pub state: String,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

impl Record for ContainerRecord {
    const TABLE: &'static str = "containers";
    fn id(&self) -> &str {
        &self.id
    }
}

/// A pulled image: its config digest is its id. Written only once every blob and
/// layer it names is complete on disk.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ImageRecord {
    pub id: String,
    /// `registry/repository:tag` names pointing at it (a name points at one image).
    #[serde(default)]
    pub repo_tags: Vec<String>,
    /// `registry/repository@sha256:...` of the manifest (or index) pulled.
    #[serde(default)]
    pub repo_digests: Vec<String>,
    /// Compressed size of config and layers, as the registry reported.
    pub size: u64,
    /// Layer chain IDs, bottom first.
    #[serde(default)]
    pub layers: Vec<String>,
    /// Digests of the manifest (and index) blobs kept in the content store.
    #[serde(default)]
    pub manifests: Vec<String>,
    /// Unix nanoseconds of the pull.
    #[serde(default)]
    pub pulled_at: i64,
    /// Pinned images are never garbage-collected (the kubelet is told so).
    #[serde(default)]
    pub pinned: bool,
    /// The config's `User`, kept here so listing images reads no blob.
    #[serde(default)]
    pub user: String,
}

impl Record for ImageRecord {
    const TABLE: &'static str = "images";
    fn id(&self) -> &str {
        &self.id
    }
}
