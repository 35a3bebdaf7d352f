//! Images: names, registries.conf, registry auth, manifests, pulls and image records.

pub mod auth;
pub mod reference;
pub mod registries;
