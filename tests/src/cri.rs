//! CRI clients over the daemon's unix socket, from the protocols crate.

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use protocols::cri::image_service_client::ImageServiceClient;
use protocols::cri::runtime_service_client::RuntimeServiceClient;
use protocols::cri::{
    AuthConfig, Image, ImageSpec, ListImagesRequest, PullImageRequest, StatusRequest,
    StatusResponse,
};
use tonic::transport::{Channel, Endpoint, Uri};

/// Both CRI services on one channel.
#[derive(Debug, Clone)]
pub struct CriClient {
    pub runtime: RuntimeServiceClient<Channel>,
    pub image: ImageServiceClient<Channel>,
    pub channel: Channel,
}

/// A channel to a unix socket (the URI is a placeholder tonic requires).
pub async fn channel(socket: &Path) -> Result<Channel, tonic::transport::Error> {
    let socket: PathBuf = socket.to_path_buf();
    Endpoint::from_static("http://[::1]:0")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(socket).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }))
        .await
}

impl CriClient {
    pub async fn connect(socket: &Path) -> Result<Self, tonic::transport::Error> {
        let channel = channel(socket).await?;
        Ok(Self {
            runtime: RuntimeServiceClient::new(channel.clone()),
            image: ImageServiceClient::new(channel.clone()),
            channel,
        })
    }
}

impl CriClient {
    /// PullImage by name; the image ID on success.
    pub async fn pull(
        &mut self,
        image: &str,
        auth: Option<AuthConfig>,
    ) -> Result<String, tonic::Status> {
        self.image
            .pull_image(PullImageRequest {
                image: Some(ImageSpec {
                    image: image.to_string(),
                    ..Default::default()
                }),
                auth,
                sandbox_config: None,
            })
            .await
            .map(|r| r.into_inner().image_ref)
    }

    /// The runtime's Status (with its `info` map when `verbose`).
    pub async fn status(&mut self, verbose: bool) -> StatusResponse {
        self.runtime
            .status(StatusRequest { verbose })
            .await
            .expect("Status")
            .into_inner()
    }

    /// Every image ListImages reports.
    pub async fn images(&mut self) -> Vec<Image> {
        self.image
            .list_images(ListImagesRequest::default())
            .await
            .expect("ListImages")
            .into_inner()
            .images
    }
}
