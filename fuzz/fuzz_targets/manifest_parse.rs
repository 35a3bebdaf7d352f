//! Any byte string as a registry manifest: parsing must return, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for content_type in [
        None,
        Some("application/vnd.oci.image.index.v1+json"),
        Some("application/vnd.docker.distribution.manifest.v2+json"),
    ] {
        let _ = crio_core::image::manifest::parse(data, content_type);
    }
    let _ = crio_core::image::image_config::ImageConfig::parse(data, 1);
});
