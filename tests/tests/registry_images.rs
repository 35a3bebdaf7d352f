//! The harness's registries and test images: every image is pushed, and its manifest
//! (or index) can be fetched over HTTP and says what the image is meant to be.

use crio_tests::http;
use crio_tests::images::{sha256_digest, OCI_INDEX, OCI_MANIFEST};
use crio_tests::{Registry, TestImage};

const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

fn fetch(registry: &Registry, repo: &str, reference: &str) -> http::HttpResponse {
    let url = format!("http://{}/v2/{repo}/manifests/{reference}", registry.addr);
    let resp = http::get(&url, &[("Accept", ACCEPT)], None).expect("GET manifest");
    assert_eq!(
        resp.status,
        200,
        "{url}: {}",
        String::from_utf8_lossy(&resp.body)
    );
    assert_eq!(
        resp.header("Docker-Content-Digest"),
        Some(sha256_digest(&resp.body).as_str()),
        "{url}: digest header must match the body"
    );
    resp
}

fn blob_json(registry: &Registry, repo: &str, digest: &str) -> serde_json::Value {
    let url = format!("http://{}/v2/{repo}/blobs/{digest}", registry.addr);
    let resp = http::get(&url, &[], None).expect("GET blob");
    assert_eq!(resp.status, 200, "{url}");
    assert_eq!(sha256_digest(&resp.body), digest, "{url}: blob digest");
    resp.json()
}

fn split(image: TestImage) -> (&'static str, &'static str) {
    image.repo_tag().split_once(':').expect("repo:tag")
}

/// The image config of a single-platform manifest, after checking its layers.
fn manifest_config(registry: &Registry, image: TestImage, media_type: &str) -> serde_json::Value {
    let (repo, tag) = split(image);
    let resp = fetch(registry, repo, tag);
    assert_eq!(resp.header("Content-Type"), Some(media_type), "{image:?}");
    let manifest = resp.json();
    let layers = manifest["layers"].as_array().expect("layers");
    for layer in layers {
        let digest = layer["digest"].as_str().expect("digest");
        let url = format!("http://{}/v2/{repo}/blobs/{digest}", registry.addr);
        let blob = http::get(&url, &[], None).expect("GET layer");
        assert_eq!(blob.status, 200);
        assert_eq!(sha256_digest(&blob.body), digest);
        assert_eq!(
            blob.body.len() as u64,
            layer["size"].as_u64().expect("size")
        );
    }
    let config = blob_json(
        registry,
        repo,
        manifest["config"]["digest"]
            .as_str()
            .expect("config digest"),
    );
    assert_eq!(
        config["rootfs"]["diff_ids"].as_array().map(Vec::len),
        Some(layers.len())
    );
    config
}

#[test]
fn every_test_image_is_served_with_the_expected_manifest() {
    crio_tests::require_root();
    let registry = Registry::with_test_images();

    let config = manifest_config(&registry, TestImage::Busybox, OCI_MANIFEST);
    assert_eq!(config["config"]["Cmd"][0], "sh");
    assert_eq!(config["architecture"], "amd64");

    let config = manifest_config(&registry, TestImage::BusyboxDocker, DOCKER_MANIFEST);
    assert_eq!(config["config"]["Cmd"][0], "sh");

    let config = manifest_config(&registry, TestImage::Web, OCI_MANIFEST);
    assert!(config["config"]["ExposedPorts"]["80/tcp"].is_object());
    assert_eq!(config["config"]["Cmd"][0], "httpd");

    let config = manifest_config(&registry, TestImage::NonRoot, OCI_MANIFEST);
    assert_eq!(config["config"]["User"], "1000:1000");

    let config = manifest_config(&registry, TestImage::Whiteout, OCI_MANIFEST);
    assert!(
        config["rootfs"]["diff_ids"]
            .as_array()
            .expect("diff ids")
            .len()
            >= 3
    );

    let (repo, tag) = split(TestImage::MultiArch);
    let resp = fetch(&registry, repo, tag);
    assert_eq!(resp.header("Content-Type"), Some(OCI_INDEX));
    let index = resp.json();
    let mut platforms = Vec::new();
    for m in index["manifests"].as_array().expect("manifests") {
        let arch = m["platform"]["architecture"]
            .as_str()
            .expect("arch")
            .to_string();
        let digest = m["digest"].as_str().expect("digest");
        let manifest = fetch(&registry, repo, digest).json();
        let config = blob_json(
            &registry,
            repo,
            manifest["config"]["digest"].as_str().expect("config"),
        );
        assert_eq!(
            config["architecture"],
            arch.as_str(),
            "platform matches config"
        );
        platforms.push(arch);
    }
    platforms.sort();
    assert_eq!(platforms, ["amd64", "arm64"]);
}

#[test]
fn whiteout_image_layers_hold_the_whiteout_and_opaque_markers() {
    crio_tests::require_root();
    let registry = Registry::with_test_images();
    let (repo, tag) = split(TestImage::Whiteout);
    let manifest = fetch(&registry, repo, tag).json();
    let mut names = Vec::new();
    for layer in manifest["layers"].as_array().expect("layers") {
        let digest = layer["digest"].as_str().expect("digest");
        let url = format!("http://{}/v2/{repo}/blobs/{digest}", registry.addr);
        let blob = http::get(&url, &[], None).expect("GET layer").body;
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(blob.as_slice()));
        for entry in archive.entries().expect("tar") {
            names.push(
                entry
                    .expect("entry")
                    .path()
                    .expect("path")
                    .display()
                    .to_string(),
            );
        }
    }
    for expected in [
        "data/remove-me",
        "data/.wh.remove-me",
        "opaque/.wh..wh..opq",
        "opaque/new-file",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing: {names:?}"
        );
    }
}

#[test]
fn auth_registry_requires_basic_auth() {
    crio_tests::require_root();
    let registry = Registry::start_with_auth("crio", "s3cret");
    registry.push_test_images(&[TestImage::Busybox]);
    let (repo, tag) = split(TestImage::Busybox);
    let url = format!("http://{}/v2/{repo}/manifests/{tag}", registry.addr);

    let anonymous = http::get(&url, &[("Accept", ACCEPT)], None).expect("GET");
    assert_eq!(anonymous.status, 401);
    let challenge = anonymous.header("WWW-Authenticate").unwrap_or_default();
    assert!(challenge.starts_with("Basic"), "{challenge}");

    let wrong = http::get(&url, &[("Accept", ACCEPT)], Some(("crio", "wrong"))).expect("GET");
    assert_eq!(wrong.status, 401);

    let ok = http::get(&url, &[("Accept", ACCEPT)], Some(("crio", "s3cret"))).expect("GET");
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("Content-Type"), Some(OCI_MANIFEST));
}
