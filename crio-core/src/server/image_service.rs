//! CRI `ImageService`. Every RPC answers `Unimplemented` (the generated default) until
//! the image store lands: never a fake success.

use std::sync::Arc;

use protocols::cri::image_service_server::ImageService;

use super::State;

#[derive(Debug, Clone)]
pub struct ImageServiceImpl {
    #[allow(dead_code)] // used as the image RPCs land
    state: Arc<State>,
}

impl ImageServiceImpl {
    pub fn new(state: Arc<State>) -> Self {
        Self { state }
    }
}

#[tonic::async_trait]
impl ImageService for ImageServiceImpl {}
