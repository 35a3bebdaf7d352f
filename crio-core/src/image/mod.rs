//! Images: names, registries.conf, registry auth and TLS, manifests, pulls and image
//! records.

pub(crate) mod auth;
pub mod image_config;
pub(crate) mod images;
pub(crate) mod insecure;
pub mod manifest;
pub(crate) mod pinned;
pub mod policy;
pub(crate) mod pull;
pub(crate) mod reference;
pub(crate) mod registries;
pub(crate) mod tls;
