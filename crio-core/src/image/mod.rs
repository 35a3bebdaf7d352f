//! Images: names, registries.conf, registry auth and TLS, manifests, pulls and image
//! records.

pub mod auth;
pub mod image_config;
pub mod images;
pub mod manifest;
pub mod pull;
pub mod reference;
pub mod registries;
pub mod tls;
