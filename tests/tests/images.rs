//! ImageService against the real daemon and the harness registries: pull every test
//! image, list, inspect, remove, mirrors, auth, insecure registries, and every error
//! with its gRPC status.

use std::path::PathBuf;

use crio_tests::{Daemon, Registry, TestImage};
use protocols::cri::{
    AuthConfig, ImageFilter, ImageFsInfoRequest, ImageSpec, ImageStatusRequest, ListImagesRequest,
    RemoveImageRequest,
};
use tonic::Code;

fn spec(image: &str) -> Option<ImageSpec> {
    Some(ImageSpec {
        image: image.to_string(),
        ..Default::default()
    })
}

async fn pull(
    cri: &mut crio_tests::cri::CriClient,
    image: &str,
    auth: Option<AuthConfig>,
) -> Result<String, tonic::Status> {
    cri.pull(image, auth).await
}

async fn status(
    cri: &mut crio_tests::cri::CriClient,
    image: &str,
    verbose: bool,
) -> Option<(
    protocols::cri::Image,
    std::collections::HashMap<String, String>,
)> {
    let resp = cri
        .image
        .image_status(ImageStatusRequest {
            image: spec(image),
            verbose,
        })
        .await
        .expect("ImageStatus")
        .into_inner();
    resp.image.map(|i| (i, resp.info))
}

async fn list(cri: &mut crio_tests::cri::CriClient) -> Vec<protocols::cri::Image> {
    cri.images().await
}

#[tokio::test(flavor = "multi_thread")]
async fn pulls_lists_inspects_and_removes_every_test_image() {
    let registry = Registry::with_test_images();
    let daemon = Daemon::builder()
        .registries_conf(&registry.insecure_conf())
        .start();
    let mut cri = daemon.client().await;

    let mut ids = Vec::new();
    for image in TestImage::ALL {
        let name = registry.reference(image);
        let id = pull(&mut cri, &name, None)
            .await
            .unwrap_or_else(|e| panic!("pull {name}: {e}\n{}", daemon.log()));
        assert!(id.starts_with("sha256:"), "{id}");
        let (img, _) = status(&mut cri, &name, false).await.expect("present");
        assert_eq!(img.id, id);
        assert!(img.repo_tags.contains(&name), "{:?}", img.repo_tags);
        // busybox:latest and :docker share an image but not a manifest: two digests.
        let repo = name.rsplit_once(':').expect("tag").0;
        assert!(!img.repo_digests.is_empty());
        for digest in &img.repo_digests {
            assert!(digest.starts_with(&format!("{repo}@sha256:")), "{digest}");
        }
        assert!(img.size > 0);
        ids.push(id);
    }
    let listed = list(&mut cri).await;
    // busybox:latest and :docker are the same image (same config digest).
    assert_eq!(
        ids[0], ids[1],
        "OCI and Docker manifests of one image share its id"
    );
    assert_eq!(listed.len(), TestImage::ALL.len() - 1);

    // USER 1000:1000 -> uid 1000; root images report uid 0.
    let (nonroot, _) = status(&mut cri, &registry.reference(TestImage::NonRoot), false)
        .await
        .expect("nonroot");
    assert_eq!(nonroot.uid.map(|u| u.value), Some(1000));
    assert!(nonroot.username.is_empty());
    let (busybox, _) = status(&mut cri, &registry.reference(TestImage::Busybox), false)
        .await
        .expect("busybox");
    assert_eq!(busybox.uid.map(|u| u.value), Some(0));
    assert_eq!(
        busybox.repo_tags.len(),
        2,
        "both tags point at it: {:?}",
        busybox.repo_tags
    );

    // The index resolves to the node's platform.
    let (multi, info) = status(&mut cri, &registry.reference(TestImage::MultiArch), true)
        .await
        .expect("multiarch");
    let verbose: serde_json::Value =
        serde_json::from_str(&info["info"]).expect("verbose info is JSON");
    assert_eq!(verbose["imageSpec"]["architecture"], "amd64");
    assert_eq!(
        verbose["manifests"].as_array().map(Vec::len),
        Some(2),
        "index + manifest kept"
    );
    assert_eq!(multi.repo_digests.len(), 1);

    // Lookups by id, by id without prefix, by digest, and the list filter.
    for key in [
        ids[2].clone(),
        ids[2].trim_start_matches("sha256:").to_string(),
    ] {
        let (img, _) = status(&mut cri, &key, false).await.expect("by id");
        assert_eq!(img.id, ids[2]);
    }
    let (web, _) = status(&mut cri, &registry.reference(TestImage::Web), false)
        .await
        .expect("web");
    let (by_digest, _) = status(&mut cri, &web.repo_digests[0], false)
        .await
        .expect("by digest");
    assert_eq!(by_digest.id, web.id);
    let filtered = cri
        .image
        .list_images(ListImagesRequest {
            filter: Some(ImageFilter {
                image: spec(&registry.reference(TestImage::Web)),
            }),
        })
        .await
        .expect("filter")
        .into_inner()
        .images;
    assert_eq!(
        filtered.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
        [web.id.as_str()]
    );

    // zstd and uncompressed layers unpack like gzip ones.
    let (_, info) = status(&mut cri, &registry.reference(TestImage::Mixed), true)
        .await
        .expect("mixed");
    let verbose: serde_json::Value = serde_json::from_str(&info["info"]).expect("json");
    let layer_file = |i: usize, file: &str| {
        let chain = verbose["layers"][i]
            .as_str()
            .expect("chain id")
            .trim_start_matches("sha256:")
            .to_string();
        std::fs::read_to_string(
            daemon
                .dirs
                .root
                .join("images/layers")
                .join(chain)
                .join("diff")
                .join(file),
        )
        .unwrap_or_default()
    };
    assert_eq!(layer_file(1, "zstd"), "from a zstd layer\n");
    assert_eq!(layer_file(2, "plain"), "from an uncompressed layer\n");

    // ImageFsInfo counts real bytes.
    let fs = cri
        .image
        .image_fs_info(ImageFsInfoRequest {})
        .await
        .expect("fs info")
        .into_inner();
    let used = fs.image_filesystems[0].used_bytes.expect("bytes").value;
    assert!(
        used > 24 << 20,
        "the big image alone is 24 MiB, reported {used}"
    );
    assert!(fs.image_filesystems[0].inodes_used.expect("inodes").value > 100);
    assert_eq!(fs.container_filesystems.len(), 1);

    // Removing one tag of a two-tag image untags; removing the last tag removes it.
    let docker_tag = registry.reference(TestImage::BusyboxDocker);
    cri.image
        .remove_image(RemoveImageRequest {
            image: spec(&docker_tag),
        })
        .await
        .expect("untag");
    assert!(status(&mut cri, &docker_tag, false).await.is_none());
    let (still, _) = status(&mut cri, &registry.reference(TestImage::Busybox), false)
        .await
        .expect("kept");
    assert_eq!(still.repo_tags, [registry.reference(TestImage::Busybox)]);
    let layers_before = layer_dirs(&daemon).len();
    for image in TestImage::ALL {
        cri.image
            .remove_image(RemoveImageRequest {
                image: spec(&registry.reference(image)),
            })
            .await
            .expect("remove");
    }
    assert!(list(&mut cri).await.is_empty());
    assert!(
        layer_dirs(&daemon).is_empty(),
        "{layers_before} layers before, none should remain"
    );
    // Idempotent.
    cri.image
        .remove_image(RemoveImageRequest {
            image: spec(&registry.reference(TestImage::Web)),
        })
        .await
        .expect("removing a removed image succeeds");
}

fn layer_dirs(daemon: &Daemon) -> Vec<PathBuf> {
    std::fs::read_dir(daemon.dirs.root.join("images/layers"))
        .map(|e| e.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn whiteout_image_merges_as_overlayfs_would_show_it() {
    let registry = Registry::start();
    registry.push_test_images(&[TestImage::Whiteout]);
    let daemon = Daemon::builder()
        .registries_conf(&registry.insecure_conf())
        .start();
    let mut cri = daemon.client().await;
    let name = registry.reference(TestImage::Whiteout);
    pull(&mut cri, &name, None).await.expect("pull");
    let (_, info) = status(&mut cri, &name, true).await.expect("status");
    let verbose: serde_json::Value = serde_json::from_str(&info["info"]).expect("json");
    let lowers: Vec<PathBuf> = verbose["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|c| {
            daemon
                .dirs
                .root
                .join("images/layers")
                .join(c.as_str().expect("chain id").trim_start_matches("sha256:"))
                .join("diff")
        })
        .collect();
    assert_eq!(lowers.len(), 4);
    let base = daemon.dirs.base.join("rootfs-check");
    let merged = base.join("merged");
    crio_core::storage::overlay::mount_rootfs(
        &lowers,
        &base.join("upper"),
        &base.join("work"),
        &merged,
    )
    .expect("overlay mount");
    let exists = |p: &str| merged.join(p).exists();
    let read = |p: &str| std::fs::read_to_string(merged.join(p)).unwrap_or_default();
    let result = std::panic::catch_unwind(|| {
        assert_eq!(read("data/keep"), "kept\n");
        assert!(
            !exists("data/remove-me"),
            "whiteout must hide data/remove-me"
        );
        assert!(
            !exists("opaque/old-file"),
            "opaque dir must hide the lower layer's files"
        );
        assert_eq!(read("opaque/new-file"), "from the top layer\n");
        assert!(merged.join("bin/busybox").is_file());
        assert_eq!(
            std::fs::read_link(merged.join("bin/sh")).expect("symlink"),
            PathBuf::from("busybox")
        );
    });
    crio_core::storage::overlay::unmount_rootfs(&merged).expect("unmount");
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_auth_from_the_request_or_the_auth_file() {
    let registry = Registry::start_with_auth("crio", "s3cret");
    registry.push_test_images(&[TestImage::Busybox]);
    let name = registry.reference(TestImage::Busybox);

    let daemon = Daemon::builder()
        .registries_conf(&registry.insecure_conf())
        .start();
    let mut cri = daemon.client().await;
    let err = pull(&mut cri, &name, None).await.expect_err("anonymous");
    assert_eq!(err.code(), Code::Unauthenticated, "{err}");
    let wrong = AuthConfig {
        username: "crio".into(),
        password: "nope".into(),
        ..Default::default()
    };
    assert_eq!(
        pull(&mut cri, &name, Some(wrong))
            .await
            .expect_err("wrong")
            .code(),
        Code::Unauthenticated
    );
    assert!(list(&mut cri).await.is_empty(), "failed pulls keep nothing");
    let right = AuthConfig {
        username: "crio".into(),
        password: "s3cret".into(),
        ..Default::default()
    };
    pull(&mut cri, &name, Some(right))
        .await
        .expect("with credentials");
    // The `auth` field (base64 user:pass) works too.
    let encoded = AuthConfig {
        auth: "Y3JpbzpzM2NyZXQ=".into(),
        ..Default::default()
    };
    pull(&mut cri, &name, Some(encoded))
        .await
        .expect("with auth field");

    // containers-auth.json through REGISTRY_AUTH_FILE.
    let dir = tempfile::tempdir().expect("tempdir");
    let auth_file = dir.path().join("auth.json");
    std::fs::write(
        &auth_file,
        format!(
            r#"{{"auths":{{"{}":{{"auth":"Y3JpbzpzM2NyZXQ="}}}}}}"#,
            registry.addr
        ),
    )
    .expect("auth.json");
    let daemon = Daemon::builder()
        .registries_conf(&registry.insecure_conf())
        .env("REGISTRY_AUTH_FILE", auth_file.to_str().expect("utf-8"))
        .start();
    let mut cri = daemon.client().await;
    pull(&mut cri, &name, None)
        .await
        .expect("credentials from the auth file");
}

#[tokio::test(flavor = "multi_thread")]
async fn mirror_serves_the_image_under_its_original_name() {
    let registry = Registry::start();
    registry.push_test_images(&[TestImage::Busybox]);
    // The origin does not exist (and is never contacted: the mirror answers first).
    let conf = format!(
        "[[registry]]\nprefix = \"registry.origin.test\"\nlocation = \"registry.origin.test\"\n[[registry.mirror]]\nlocation = \"{}\"\ninsecure = true\n",
        registry.addr
    );
    let daemon = Daemon::builder().registries_conf(&conf).start();
    let mut cri = daemon.client().await;
    let name = "registry.origin.test/test/busybox:latest";
    let id = pull(&mut cri, name, None)
        .await
        .expect("pull through the mirror");
    let (img, _) = status(&mut cri, name, false).await.expect("listed");
    assert_eq!(img.id, id);
    assert_eq!(img.repo_tags, [name]);
    assert!(img.repo_digests[0].starts_with("registry.origin.test/test/busybox@sha256:"));
    assert!(registry.get_count("/v2/test/busybox/manifests/latest") >= 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn registries_conf_blocks_and_tls_is_required_unless_insecure() {
    let registry = Registry::start();
    registry.push_test_images(&[TestImage::Busybox]);
    let name = registry.reference(TestImage::Busybox);

    let blocked = format!(
        "[[registry]]\nlocation = \"{}\"\nblocked = true\n",
        registry.addr
    );
    let daemon = Daemon::builder().registries_conf(&blocked).start();
    let mut cri = daemon.client().await;
    let err = pull(&mut cri, &name, None).await.expect_err("blocked");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    assert!(err.message().contains("blocked"), "{err}");

    // Not marked insecure: TLS is attempted against a plain-HTTP registry and fails.
    let daemon = Daemon::builder().start();
    let mut cri = daemon.client().await;
    let err = pull(&mut cri, &name, None).await.expect_err("no TLS");
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(list(&mut cri).await.is_empty());

    // Changing registries.conf takes effect without a restart.
    std::fs::write(
        daemon.dirs.base.join("registries.conf"),
        registry.insecure_conf(),
    )
    .expect("rewrite");
    pull(&mut cri, &name, None)
        .await
        .expect("reloaded registries.conf");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_the_right_status_and_change_nothing() {
    let registry = Registry::start();
    registry.push_test_images(&[TestImage::Busybox]);
    let daemon = Daemon::builder()
        .registries_conf(&registry.insecure_conf())
        .start();
    let mut cri = daemon.client().await;

    assert_eq!(
        pull(&mut cri, "", None).await.expect_err("empty").code(),
        Code::InvalidArgument
    );
    assert_eq!(
        pull(&mut cri, "UPPER/case", None)
            .await
            .expect_err("bad name")
            .code(),
        Code::InvalidArgument
    );
    let missing = format!("{}/test/nothing:here", registry.addr);
    assert_eq!(
        pull(&mut cri, &missing, None)
            .await
            .expect_err("missing")
            .code(),
        Code::NotFound
    );
    let missing_tag = format!("{}/test/busybox:nope", registry.addr);
    assert_eq!(
        pull(&mut cri, &missing_tag, None)
            .await
            .expect_err("missing tag")
            .code(),
        Code::NotFound
    );
    let bad_digest = format!("{}/test/busybox@sha256:{}", registry.addr, "0".repeat(64));
    assert_eq!(
        pull(&mut cri, &bad_digest, None)
            .await
            .expect_err("unknown digest")
            .code(),
        Code::NotFound
    );
    assert!(list(&mut cri).await.is_empty());

    let err = cri
        .image
        .image_status(ImageStatusRequest {
            image: None,
            verbose: false,
        })
        .await
        .expect_err("no image");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(status(&mut cri, "never/pulled:1", false).await.is_none());
    let err = cri
        .image
        .remove_image(RemoveImageRequest { image: None })
        .await
        .expect_err("no image");
    assert_eq!(err.code(), Code::InvalidArgument);
}

/// A registry that serves a layer whose bytes do not match its digest: the pull fails
/// naming the mismatch, and nothing of the image is kept, not even the layers that
/// were fine.
#[tokio::test(flavor = "multi_thread")]
async fn a_blob_failing_its_digest_fails_the_pull_and_keeps_nothing() {
    let registry = Registry::start();
    registry.push_test_images(&[TestImage::Mixed]);
    // The uncompressed layer: a flipped byte of a file's content unpacks fine, so
    // only the digest check can catch it.
    let blobs = registry.blob_files();
    let layer = blobs
        .iter()
        .find(|p| {
            let bytes = std::fs::read(p).unwrap_or_default();
            bytes.len() > 1024 && bytes.get(257..262) == Some(b"ustar")
        })
        .unwrap_or_else(|| panic!("the mixed image's uncompressed layer among {blobs:?}"));
    let mut bytes = std::fs::read(layer).expect("read blob");
    let content = b"from an uncompressed layer";
    let at = bytes
        .windows(content.len())
        .position(|w| w == content)
        .expect("the file's content in the layer");
    bytes[at] ^= 0x20;
    std::fs::write(layer, bytes).expect("tamper with the blob");

    let daemon = Daemon::builder()
        .registries_conf(&registry.insecure_conf())
        .start();
    let mut cri = daemon.client().await;
    let err = pull(&mut cri, &registry.reference(TestImage::Mixed), None)
        .await
        .expect_err("a tampered layer");
    assert_eq!(err.code(), Code::Internal, "{err:?}");
    assert!(
        err.message().contains("digest mismatch"),
        "names the mismatch: {}",
        err.message()
    );
    assert!(list(&mut cri).await.is_empty());
    let layers = daemon.dirs.root.join("images/layers");
    let kept: Vec<_> = std::fs::read_dir(&layers)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        kept.is_empty(),
        "layers kept after the failed pull: {kept:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_used_by_a_container_is_not_removed() {
    let registry = Registry::start();
    registry.push_test_images(&[TestImage::Busybox]);
    let mut daemon = Daemon::builder()
        .registries_conf(&registry.insecure_conf())
        .start();
    let name = registry.reference(TestImage::Busybox);
    let id = {
        let mut cri = daemon.client().await;
        pull(&mut cri, &name, None).await.expect("pull")
    };
    assert!(daemon.stop().success());
    {
        // A container record naming the image, as CreateContainer will write it.
        let store =
            crio_core::store::Store::open(&daemon.dirs.root.join("metadata.redb")).expect("store");
        store
            .put(&crio_core::store::ContainerRecord {
                id: "c1".into(),
                sandbox_id: "s1".into(),
                name: "c".into(),
                attempt: 0,
                image_ref: id.clone(),
                created_at: 0,
                state: crio_core::store::ContainerState::Created,
                exit_code: None,
                labels: Default::default(),
                annotations: Default::default(),
                ..Default::default()
            })
            .expect("put");
    }
    daemon.restart();
    let mut cri = daemon.client().await;
    let err = cri
        .image
        .remove_image(RemoveImageRequest { image: spec(&id) })
        .await
        .expect_err("in use");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("c1"), "{err}");
    assert!(
        status(&mut cri, &name, false).await.is_some(),
        "still there"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pulling_a_moved_tag_repoints_it_and_keeps_the_old_image() {
    let registry = Registry::start();
    let layout = tempfile::tempdir().expect("tempdir");
    crio_tests::test_images::build_layout(layout.path());
    registry.push(layout.path(), "busybox", "test/moving:v1", false, None);
    let daemon = Daemon::builder()
        .registries_conf(&registry.insecure_conf())
        .start();
    let mut cri = daemon.client().await;
    let name = format!("{}/test/moving:v1", registry.addr);
    let first = pull(&mut cri, &name, None).await.expect("first");
    registry.push(layout.path(), "web", "test/moving:v1", false, None);
    let second = pull(&mut cri, &name, None).await.expect("second");
    assert_ne!(first, second);
    let images = list(&mut cri).await;
    let old = images
        .iter()
        .find(|i| i.id == first)
        .expect("old image kept");
    assert!(
        old.repo_tags.is_empty(),
        "tag moved away: {:?}",
        old.repo_tags
    );
    let new = images.iter().find(|i| i.id == second).expect("new image");
    assert_eq!(new.repo_tags, [name]);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_pulls_download_each_layer_once() {
    let registry = Registry::start();
    registry.push_test_images(&[TestImage::Big]);
    let daemon = Daemon::builder()
        .registries_conf(&registry.insecure_conf())
        .start();
    let name = registry.reference(TestImage::Big);
    let mut a = daemon.client().await;
    let mut b = daemon.client().await;
    let (x, y) = tokio::join!(pull(&mut a, &name, None), pull(&mut b, &name, None));
    assert_eq!(x.expect("a"), y.expect("b"));
    let (_, info) = status(&mut a, &name, true).await.expect("status");
    let verbose: serde_json::Value = serde_json::from_str(&info["info"]).expect("json");
    assert_eq!(verbose["layers"].as_array().map(Vec::len), Some(4));
    let log = registry.log();
    let blob_gets = log.matches("\"GET /v2/test/big/blobs/sha256:").count();
    // 4 layers + 1 config per pull at most: layers exactly once.
    assert!(
        blob_gets >= 4,
        "the access log must show the layer downloads:\n{log}"
    );
    assert!(blob_gets <= 4 + 2, "{blob_gets} blob downloads:\n{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn short_names_resolve_through_search_registries_and_aliases() {
    let registry = Registry::start();
    registry.push_test_images(&[TestImage::Busybox, TestImage::Web]);
    let conf = format!(
        "unqualified-search-registries = [\"{addr}\"]\n[aliases]\n\"mybox\" = \"{addr}/test/web\"\n{}",
        registry.insecure_conf(),
        addr = registry.addr
    );
    let daemon = Daemon::builder().registries_conf(&conf).start();
    let mut cri = daemon.client().await;
    let id = pull(&mut cri, "test/busybox", None)
        .await
        .expect("short name");
    let (img, _) = status(&mut cri, "test/busybox", false)
        .await
        .expect("found by short name");
    assert_eq!(img.id, id);
    assert_eq!(
        img.repo_tags,
        [format!("{}/test/busybox:latest", registry.addr)]
    );
    let web = pull(&mut cri, "mybox:latest", None).await.expect("alias");
    let (img, _) = status(
        &mut cri,
        &format!("{}/test/web:latest", registry.addr),
        false,
    )
    .await
    .expect("alias target");
    assert_eq!(img.id, web);
}

/// Debian's `umoci insert` ends its layers right after the last file's data (no
/// padding, no end-of-archive blocks), as Go's archive/tar accepts: such an image
/// pulls and its files are there in a running container.
#[tokio::test(flavor = "multi_thread")]
async fn an_image_built_by_umoci_pulls_and_runs() {
    let registry = Registry::start();
    registry.push_test_images(&[TestImage::Umoci]);
    let daemon = Daemon::builder()
        .registries_conf(&registry.insecure_conf())
        .start();
    let mut cri = daemon.client().await;
    let image = registry.reference(TestImage::Umoci);
    pull(&mut cri, &image, None)
        .await
        .unwrap_or_else(|e| panic!("pull {image}: {e}"));
    let pod = crio_tests::pods::pod_config("umoci", &daemon.dirs.log_dir);
    let pod_id = cri.run_pod(&pod, "runc").await.expect("RunPodSandbox");
    let config = crio_tests::pods::container_config(
        "app",
        &image,
        "cat /hello.txt; echo; wc -c /umoci/b; cat /umoci/a /umoci/c; echo",
    );
    let id = cri
        .create_container(&pod_id, &config, &pod)
        .await
        .expect("CreateContainer");
    cri.start_container(&id).await.expect("StartContainer");
    let status = cri
        .wait_exited(&id, std::time::Duration::from_secs(20))
        .await;
    assert_eq!(status.exit_code, 0, "{}", daemon.log());
    let log = std::fs::read_to_string(&status.log_path).expect("log");
    let out: Vec<&str> = log
        .lines()
        .filter_map(|l| l.splitn(4, ' ').nth(3))
        .collect();
    assert_eq!(
        out,
        [
            crio_tests::test_images::UMOCI_HELLO,
            "1000 /umoci/b",
            "a",
            "ccc"
        ],
        "{log}"
    );
}

/// A layer whose tar stream stops inside a file's data (digests that match the cut
/// bytes, so only the unpacker can tell) is refused with the layer digest and the
/// offset, and nothing of the image is kept.
#[tokio::test(flavor = "multi_thread")]
async fn a_layer_cut_inside_a_file_is_refused_and_leaves_nothing() {
    use crio_tests::images::{layer_tar, Entry, OciLayout};
    use crio_tests::test_images::{base_layer, spec};
    let work = tempfile::tempdir().expect("temp dir");
    let mut layout = OciLayout::create(&work.path().join("layout"));
    let top = layer_tar(&[Entry::file("data", vec![b'x'; 2000])]);
    let cut = top[..512 + 1000].to_vec();
    let image = spec(
        serde_json::json!({"Cmd": ["sh"]}),
        vec![base_layer(), Vec::new()],
    );
    let manifest = layout.add_image_from_tars(&image, vec![layer_tar(&base_layer()), cut]);
    layout.tag(&manifest, "cut");
    let registry = Registry::start();
    registry.push(layout.dir(), "cut", "test/cut:latest", false, None);

    let daemon = Daemon::builder()
        .registries_conf(&registry.insecure_conf())
        .start();
    let mut cri = daemon.client().await;
    let err = pull(
        &mut cri,
        &format!("{}/test/cut:latest", registry.addr),
        None,
    )
    .await
    .expect_err("a cut layer");
    assert_eq!(err.code(), Code::Internal, "{err:?}");
    let msg = err.message();
    assert!(
        msg.contains("layer sha256:") && msg.contains("at byte 1512") && msg.contains("inside"),
        "names the layer and the offset: {msg}"
    );
    assert!(list(&mut cri).await.is_empty());
    assert!(
        layer_dirs(&daemon).is_empty(),
        "layers kept after the failed pull: {:?}",
        layer_dirs(&daemon)
    );
    let tmp: Vec<_> = std::fs::read_dir(daemon.dirs.root.join("images/tmp"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(tmp.is_empty(), "unpack leftovers: {tmp:?}");
}

/// `crio check` on a store broken on purpose (a layer deleted by hand, as a full
/// disk or an admin might): it names the image, `--repair` removes its record
/// and the leftovers, and the image pulls again whole. It refuses a running
/// daemon's store.
#[tokio::test(flavor = "multi_thread")]
async fn crio_check_finds_and_repairs_a_broken_image() {
    let registry = Registry::with_test_images();
    let mut daemon = Daemon::builder()
        .registries_conf(&registry.insecure_conf())
        .start();
    let mut cri = daemon.client().await;
    let busybox = registry.reference(TestImage::Busybox);
    let web = registry.reference(TestImage::Web);
    cri.pull(&busybox, None).await.expect("pull");
    cri.pull(&web, None).await.expect("pull");
    drop(cri);
    let check = |daemon: &Daemon, repair: bool| {
        let mut cmd = daemon.command();
        cmd.arg("check");
        if repair {
            cmd.arg("--repair");
        }
        let out = cmd.output().expect("crio check");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, text) = check(&daemon, false);
    assert!(
        !ok && text.contains("stop it first"),
        "a running daemon's store: {text}"
    );
    daemon.stop();
    let (ok, text) = check(&daemon, false);
    assert!(ok && text.contains("the store is consistent"), "{text}");

    // The layer only web has (its last), deleted by hand.
    let newest = daemon.dirs.newest_layer();
    std::fs::remove_dir_all(&newest).expect("break the store");
    let (ok, text) = check(&daemon, false);
    assert!(!ok, "{text}");
    assert!(
        text.contains("problem: image") && text.contains("test/web") && text.contains("is missing"),
        "{text}"
    );
    let (ok, text) = check(&daemon, true);
    assert!(ok && text.contains("repaired: removed image"), "{text}");
    let (ok, text) = check(&daemon, false);
    assert!(ok && text.contains("the store is consistent"), "{text}");

    daemon.restart();
    let mut cri = daemon.client().await;
    let tags: Vec<String> = cri
        .images()
        .await
        .into_iter()
        .flat_map(|i| i.repo_tags)
        .collect();
    assert!(tags.contains(&busybox) && !tags.contains(&web), "{tags:?}");
    cri.pull(&web, None).await.expect("pulled again, whole");
    let pod = crio_tests::pods::pod_config("checked", &daemon.dirs.log_dir);
    let pod_id = cri.run_pod(&pod, "").await.expect("RunPodSandbox");
    let mut config = crio_tests::pods::container_config("web", &web, "echo whole");
    config.command = vec!["sh".into(), "-c".into(), "echo whole".into()];
    let id = cri.started_container(&pod_id, &config, &pod).await;
    assert_eq!(
        cri.wait_exited(&id, std::time::Duration::from_secs(30))
            .await
            .exit_code,
        0
    );
    cri.stop_and_remove_pod(&pod_id).await;
}
