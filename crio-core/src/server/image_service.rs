//! CRI `ImageService`: thin adapters from CRI messages to the image store and puller.

use std::collections::HashMap;
use std::sync::Arc;

use protocols::cri::image_service_server::ImageService;
use protocols::cri::{
    FilesystemIdentifier, FilesystemUsage, Image, ImageFsInfoRequest, ImageFsInfoResponse,
    ImageSpec, ImageStatusRequest, ImageStatusResponse, Int64Value, ListImagesRequest,
    ListImagesResponse, PullImageRequest, PullImageResponse, RemoveImageRequest,
    RemoveImageResponse, UInt64Value,
};
use tonic::{Request, Response, Status};

use super::State;
use crate::error::CriError;
use crate::image::auth;
use crate::image::image_config::ImageUser;
use crate::image::tls::CertsDirs;
use crate::storage::usage::disk_usage;
use crate::store::ImageRecord;

#[derive(Debug, Clone)]
pub(crate) struct ImageServiceImpl {
    state: Arc<State>,
}

impl ImageServiceImpl {
    pub(crate) fn new(state: Arc<State>) -> Self {
        Self { state }
    }

    fn to_cri(&self, record: &ImageRecord) -> Image {
        let (uid, username) = match ImageUser::parse(&record.user) {
            ImageUser::Uid(uid) => (Some(Int64Value { value: uid }), String::new()),
            ImageUser::Name(name) => (None, name),
        };
        Image {
            id: record.id.clone(),
            repo_tags: record.repo_tags.clone(),
            repo_digests: record.repo_digests.clone(),
            size: record.size,
            uid,
            username,
            spec: Some(ImageSpec {
                image: record.id.clone(),
                ..Default::default()
            }),
            pinned: self.state.images.is_pinned(record),
        }
    }

    fn resolve(&self, spec: &str) -> Result<Option<ImageRecord>, CriError> {
        let registries = self
            .state
            .registries
            .current()
            .map_err(CriError::internal)?;
        Ok(self.state.images.resolve(spec, &registries)?)
    }
}

fn image_name(spec: Option<&ImageSpec>) -> Result<&str, CriError> {
    match spec.map(|s| s.image.trim()) {
        Some(name) if !name.is_empty() => Ok(name),
        _ => Err(CriError::InvalidArgument(
            "image name must not be empty".into(),
        )),
    }
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

#[tonic::async_trait]
impl ImageService for ImageServiceImpl {
    async fn list_images(
        &self,
        request: Request<ListImagesRequest>,
    ) -> Result<Response<ListImagesResponse>, Status> {
        let filter = request
            .into_inner()
            .filter
            .and_then(|f| f.image)
            .map(|s| s.image)
            .filter(|s| !s.is_empty());
        let records = match filter {
            Some(spec) => self.resolve(&spec)?.into_iter().collect(),
            None => self.state.images.list().map_err(CriError::from)?,
        };
        Ok(Response::new(ListImagesResponse {
            images: records.iter().map(|r| self.to_cri(r)).collect(),
        }))
    }

    async fn image_status(
        &self,
        request: Request<ImageStatusRequest>,
    ) -> Result<Response<ImageStatusResponse>, Status> {
        let request = request.into_inner();
        let name = image_name(request.image.as_ref())?;
        // An unknown image is not an error: the kubelet asks before pulling.
        let Some(record) = self.resolve(name)? else {
            return Ok(Response::new(ImageStatusResponse::default()));
        };
        let mut info = HashMap::new();
        if request.verbose {
            let config = self.state.images.config(&record).map_err(CriError::from)?;
            let verbose = serde_json::json!({
                "id": record.id,
                "manifests": record.manifests,
                "layers": record.layers,
                "pulledAt": record.pulled_at,
                "imageSpec": config,
            });
            info.insert("info".to_string(), verbose.to_string());
        }
        Ok(Response::new(ImageStatusResponse {
            image: Some(self.to_cri(&record)),
            info,
        }))
    }

    async fn pull_image(
        &self,
        request: Request<PullImageRequest>,
    ) -> Result<Response<PullImageResponse>, Status> {
        let request = request.into_inner();
        let name = image_name(request.image.as_ref())?.to_string();
        let auth = match &request.auth {
            Some(a) => auth::from_cri_with_tokens(
                &a.username,
                &a.password,
                &a.auth,
                &a.identity_token,
                &a.registry_token,
            )
            .map_err(|e| CriError::InvalidArgument(e.to_string()))?,
            None => None,
        };
        // certs.d is read at every pull (containers/image does the same).
        let certs = CertsDirs::from_config(&self.state.config.crio.image.certs_dir);
        let namespace = request
            .sandbox_config
            .as_ref()
            .and_then(|c| c.metadata.as_ref())
            .map(|m| m.namespace.as_str())
            .filter(|n| !n.is_empty());
        let pulled = self
            .state
            .puller
            .pull_with(&name, auth, &certs, namespace)
            .await;
        // A pull's buffers are freed now, whatever its outcome.
        let _ = crate::memory::trim_soon();
        let record = pulled.map_err(CriError::from)?;
        tracing::info!(image = %name, id = %record.id, "pulled");
        Ok(Response::new(PullImageResponse {
            image_ref: record.id,
        }))
    }

    async fn remove_image(
        &self,
        request: Request<RemoveImageRequest>,
    ) -> Result<Response<RemoveImageResponse>, Status> {
        let request = request.into_inner();
        let name = image_name(request.image.as_ref())?;
        let registries = self
            .state
            .registries
            .current()
            .map_err(CriError::internal)?;
        // Removing an image that is not there succeeds: the kubelet retries.
        // The commit waits on fsync: off the async workers.
        let images = Arc::clone(&self.state.images);
        let name = name.to_string();
        tokio::task::spawn_blocking(move || images.remove(&name, &registries))
            .await
            .map_err(|e| CriError::internal_in("RemoveImage did not run", e))?
            .map_err(CriError::from)?;
        let _ = crate::memory::trim_soon();
        Ok(Response::new(RemoveImageResponse {}))
    }

    async fn image_fs_info(
        &self,
        _request: Request<ImageFsInfoRequest>,
    ) -> Result<Response<ImageFsInfoResponse>, Status> {
        let image_root = self.state.image_root.clone();
        let container_root = self.state.container_root.clone();
        let (images, containers) = tokio::task::spawn_blocking(move || {
            (disk_usage(&image_root), disk_usage(&container_root))
        })
        .await
        .map_err(CriError::internal)?;
        let usage = |path: &std::path::Path, (bytes, inodes): (u64, u64)| FilesystemUsage {
            timestamp: now_nanos(),
            fs_id: Some(FilesystemIdentifier {
                mountpoint: path.display().to_string(),
            }),
            used_bytes: Some(UInt64Value { value: bytes }),
            inodes_used: Some(UInt64Value { value: inodes }),
        };
        Ok(Response::new(ImageFsInfoResponse {
            image_filesystems: vec![usage(&self.state.image_root, images)],
            container_filesystems: vec![usage(&self.state.container_root, containers)],
        }))
    }
}
