//! The vfs storage driver: a container rootfs copied from the pulled layer dirs must
//! show exactly what the overlayfs mount of the same layers shows (whiteouts,
//! opaque dirs, hard links, owners, modes, xattrs, devices), and `[crio]
//! storage_driver` is validated and reported by `crio status info`.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crio_core::storage::rootfs::{prepare_rootfs, release_rootfs, StorageDriver};
use crio_tests::images::{OciLayout, OCI_CONFIG, OCI_LAYER_TAR, OCI_MANIFEST};
use crio_tests::{Daemon, Registry, TestImage};
use protocols::cri::{ImageFsInfoRequest, ImageSpec, ImageStatusRequest};

/// The image's layer dirs, bottom first, from the verbose ImageStatus.
async fn layer_dirs(daemon: &Daemon, image: &str) -> Vec<PathBuf> {
    let mut cri = daemon.client().await;
    let status = cri
        .image
        .image_status(ImageStatusRequest {
            image: Some(ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            verbose: true,
        })
        .await
        .expect("ImageStatus")
        .into_inner();
    let verbose: serde_json::Value =
        serde_json::from_str(&status.info["info"]).expect("verbose info");
    verbose["layers"]
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
        .collect()
}

#[derive(Debug, PartialEq)]
struct Node {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    rdev: u64,
    content: Vec<u8>,
    xattrs: BTreeMap<String, Vec<u8>>,
    mtime: i64,
}

/// What a container sees below `root` (the root's own metadata aside: overlayfs
/// shows its upper dir's), and the hard-link groups.
fn snapshot(root: &Path) -> (BTreeMap<PathBuf, Node>, Vec<Vec<PathBuf>>) {
    let mut nodes = BTreeMap::new();
    let mut inodes: BTreeMap<u64, Vec<PathBuf>> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            let meta = std::fs::symlink_metadata(&path).expect("stat");
            let rel = path.strip_prefix(root).expect("below").to_path_buf();
            let kind = meta.file_type();
            let (name, content) = if kind.is_dir() {
                stack.push(path.clone());
                ("dir", Vec::new())
            } else if kind.is_symlink() {
                let target = std::fs::read_link(&path).expect("readlink");
                ("symlink", target.into_os_string().into_encoded_bytes())
            } else if kind.is_file() {
                inodes.entry(meta.ino()).or_default().push(rel.clone());
                ("file", std::fs::read(&path).expect("read"))
            } else if kind.is_char_device() {
                ("char", Vec::new())
            } else if kind.is_block_device() {
                ("block", Vec::new())
            } else if kind.is_fifo() {
                ("fifo", Vec::new())
            } else {
                ("other", Vec::new())
            };
            let xattrs = xattr_list(&path);
            nodes.insert(
                rel,
                Node {
                    kind: name,
                    mode: meta.mode() & 0o7777,
                    uid: meta.uid(),
                    gid: meta.gid(),
                    rdev: meta.rdev(),
                    content,
                    xattrs,
                    mtime: meta.mtime(),
                },
            );
        }
    }
    let mut groups: Vec<Vec<PathBuf>> = inodes
        .into_values()
        .filter(|g| g.len() > 1)
        .map(|mut g| {
            g.sort();
            g
        })
        .collect();
    groups.sort();
    (nodes, groups)
}

/// Extended attributes but overlayfs's own (never following symlinks).
fn xattr_list(path: &Path) -> BTreeMap<String, Vec<u8>> {
    xattr::list(path)
        .expect("list xattrs")
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("trusted.overlay."))
        .map(|n| {
            let value = xattr::get(path, &n).expect("xattr").unwrap_or_default();
            (n, value)
        })
        .collect()
}

/// Builds the vfs and the overlay rootfs of `lowers` under the daemon's dir (the
/// daemon's drop unmounts whatever a failing test leaves mounted there), compares
/// them, and returns the vfs snapshot.
fn vfs_equals_overlay(daemon: &Daemon, lowers: &[PathBuf]) -> BTreeMap<PathBuf, Node> {
    let vfs_dir = daemon.dirs.base.join("vfs-ctr");
    let ovl_dir = daemon.dirs.base.join("overlay-ctr");
    let vfs = prepare_rootfs(StorageDriver::Vfs, lowers, &vfs_dir).expect("vfs rootfs");
    let ovl = prepare_rootfs(StorageDriver::Overlay, lowers, &ovl_dir).expect("overlay rootfs");
    let (ovl_nodes, ovl_links) = snapshot(&ovl);
    let (vfs_nodes, vfs_links) = snapshot(&vfs);
    release_rootfs(StorageDriver::Overlay, &ovl_dir).expect("release overlay");
    assert!(!ovl.exists(), "overlay rootfs removed");
    let only_ovl: Vec<_> = ovl_nodes
        .keys()
        .filter(|k| !vfs_nodes.contains_key(*k))
        .collect();
    let only_vfs: Vec<_> = vfs_nodes
        .keys()
        .filter(|k| !ovl_nodes.contains_key(*k))
        .collect();
    assert!(
        only_ovl.is_empty() && only_vfs.is_empty(),
        "only in overlay: {only_ovl:?}; only in vfs: {only_vfs:?}"
    );
    for (path, node) in &ovl_nodes {
        assert_eq!(vfs_nodes.get(path), Some(node), "{}", path.display());
    }
    assert_eq!(vfs_links, ovl_links, "hard-link groups");
    // The vfs copy stays until released.
    assert!(!vfs_nodes.is_empty() && vfs.is_dir());
    release_rootfs(StorageDriver::Vfs, &vfs_dir).expect("release vfs");
    assert!(!vfs.exists(), "vfs rootfs removed");
    vfs_nodes
}

#[tokio::test(flavor = "multi_thread")]
async fn vfs_rootfs_of_the_whiteout_image_equals_the_overlay_mount() {
    let registry = Registry::start();
    registry.push_test_images(&[TestImage::Whiteout]);
    let daemon = Daemon::builder()
        .registries_conf(&registry.insecure_conf())
        .start();
    let name = registry.reference(TestImage::Whiteout);
    daemon.client().await.pull(&name, None).await.expect("pull");
    let lowers = layer_dirs(&daemon, &name).await;
    assert_eq!(lowers.len(), 4);
    let nodes = vfs_equals_overlay(&daemon, &lowers);
    let p = |s: &str| PathBuf::from(s);
    assert_eq!(nodes[&p("data/keep")].content, b"kept\n");
    assert!(
        !nodes.contains_key(&p("data/remove-me")),
        "whiteout applied"
    );
    let opaque: Vec<_> = nodes
        .keys()
        .filter(|k| k.starts_with("opaque") && k.as_path() != Path::new("opaque"))
        .collect();
    assert_eq!(
        opaque,
        [&p("opaque/new-file")],
        "opaque dir holds the top layer's only"
    );
    assert_eq!(nodes[&p("bin/sh")].kind, "symlink");
    assert_eq!(nodes[&p("bin/sh")].content, b"busybox");
    assert_eq!(nodes[&p("tmp")].mode, 0o1777);
}

/// A tar header with fixed times and owners.
fn header(kind: tar::EntryType, mode: u32, uid: u64, gid: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(uid);
    h.set_gid(gid);
    h.set_mtime(1_700_000_000);
    h.set_size(0);
    h
}

fn add_dir(b: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32) {
    let mut h = header(tar::EntryType::Directory, mode, 0, 0);
    b.append_data(&mut h, path, &[][..]).expect("dir");
}

fn add_file(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8], mode: u32, owner: (u64, u64)) {
    let mut h = header(tar::EntryType::Regular, mode, owner.0, owner.1);
    h.set_size(data.len() as u64);
    b.append_data(&mut h, path, data).expect("file");
}

fn add_link(b: &mut tar::Builder<Vec<u8>>, kind: tar::EntryType, path: &str, target: &str) {
    let mut h = header(kind, 0o777, 0, 0);
    b.append_link(&mut h, path, target).expect("link");
}

/// A layer with everything a copy can get wrong, and one above it with whiteouts.
fn rich_layers() -> Vec<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    add_dir(&mut b, "bin/", 0o755);
    add_file(&mut b, "bin/tool", b"#!/bin/tool\n", 0o755, (0, 0));
    add_link(&mut b, tar::EntryType::Link, "bin/tool-a", "bin/tool");
    add_link(&mut b, tar::EntryType::Link, "bin/tool-b", "bin/tool");
    add_link(&mut b, tar::EntryType::Symlink, "bin/sh", "tool");
    add_file(&mut b, "bin/su", b"setuid\n", 0o4750, (0, 42));
    add_dir(&mut b, "home/", 0o755);
    let mut h = header(tar::EntryType::Directory, 0o700, 1000, 1000);
    b.append_data(&mut h, "home/user/", &[][..]).expect("dir");
    add_file(
        &mut b,
        "home/user/.profile",
        b"export A=1\n",
        0o600,
        (1000, 1000),
    );
    b.append_pax_extensions([("SCHILY.xattr.user.label", &b"tagged"[..])])
        .expect("pax");
    add_file(&mut b, "labelled", b"with an xattr\n", 0o644, (0, 0));
    add_dir(&mut b, "dev/", 0o755);
    let mut h = header(tar::EntryType::Char, 0o666, 0, 0);
    h.set_device_major(1).expect("major");
    h.set_device_minor(3).expect("minor");
    b.append_data(&mut h, "dev/null", &[][..]).expect("char");
    let mut h = header(tar::EntryType::Fifo, 0o600, 0, 0);
    b.append_data(&mut h, "dev/fifo", &[][..]).expect("fifo");
    add_dir(&mut b, "cache/", 0o755);
    add_file(&mut b, "cache/old-1", b"old\n", 0o644, (0, 0));
    add_dir(&mut b, "cache/sub/", 0o755);
    add_file(&mut b, "cache/sub/old-2", b"old\n", 0o644, (0, 0));
    add_link(&mut b, tar::EntryType::Symlink, "etc-link", "/etc");
    let lower = b.into_inner().expect("tar");

    let mut b = tar::Builder::new(Vec::new());
    add_dir(&mut b, "bin/", 0o755);
    add_file(&mut b, "bin/.wh.tool-b", b"", 0o644, (0, 0));
    add_dir(&mut b, "cache/", 0o755);
    add_file(&mut b, "cache/.wh..wh..opq", b"", 0o644, (0, 0));
    add_file(&mut b, "cache/new", b"new\n", 0o644, (0, 0));
    add_dir(&mut b, "etc-link/", 0o755);
    add_file(
        &mut b,
        "etc-link/passwd",
        b"not the host's\n",
        0o644,
        (0, 0),
    );
    add_file(&mut b, ".wh.labelled", b"", 0o644, (0, 0));
    let upper = b.into_inner().expect("tar");
    vec![lower, upper]
}

#[tokio::test(flavor = "multi_thread")]
async fn vfs_keeps_hard_links_owners_modes_xattrs_and_devices() {
    let registry = Registry::start();
    let layout_dir = tempfile::tempdir().expect("layout");
    let mut layout = OciLayout::create(layout_dir.path());
    let tars = rich_layers();
    let diff_ids: Vec<String> = tars
        .iter()
        .map(|t| crio_tests::images::sha256_digest(t))
        .collect();
    let layers: Vec<serde_json::Value> = tars
        .iter()
        .map(|t| {
            let d = layout.put_blob(OCI_LAYER_TAR, t);
            serde_json::json!({"mediaType": d.media_type, "digest": d.digest, "size": d.size})
        })
        .collect();
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config = layout.put_blob(OCI_CONFIG, config.to_string().as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": config.media_type, "digest": config.digest, "size": config.size},
        "layers": layers,
    });
    let manifest = layout.put_blob(OCI_MANIFEST, manifest.to_string().as_bytes());
    layout.tag(&manifest, "rich");
    registry.push(layout_dir.path(), "rich", "test/rich:latest", false, None);

    let daemon = Daemon::builder()
        .registries_conf(&registry.insecure_conf())
        .start();
    let name = format!("{}/test/rich:latest", registry.addr);
    daemon.client().await.pull(&name, None).await.expect("pull");
    let lowers = layer_dirs(&daemon, &name).await;
    assert_eq!(lowers.len(), 2);
    let nodes = vfs_equals_overlay(&daemon, &lowers);
    let p = |s: &str| PathBuf::from(s);
    assert!(
        !nodes.contains_key(&p("bin/tool-b")),
        "whiteout of one link name"
    );
    assert!(!nodes.contains_key(&p("labelled")), "whiteout of a file");
    assert_eq!(nodes[&p("bin/tool-a")].content, b"#!/bin/tool\n");
    let su = &nodes[&p("bin/su")];
    assert_eq!((su.mode, su.uid, su.gid), (0o4750, 0, 42));
    let home = &nodes[&p("home/user")];
    assert_eq!(
        (home.kind, home.mode, home.uid, home.gid),
        ("dir", 0o700, 1000, 1000)
    );
    assert_eq!(nodes[&p("dev/null")].kind, "char");
    assert_eq!(nodes[&p("dev/null")].rdev, nix::sys::stat::makedev(1, 3));
    assert_eq!(nodes[&p("dev/fifo")].kind, "fifo");
    assert_eq!(nodes[&p("bin/tool")].mtime, 1_700_000_000);
    let cache: Vec<_> = nodes
        .keys()
        .filter(|k| k.starts_with("cache") && k.as_path() != Path::new("cache"))
        .collect();
    assert_eq!(cache, [&p("cache/new")]);
    assert_eq!(
        nodes[&p("etc-link")].kind,
        "dir",
        "a dir above replaces the symlink"
    );
    assert_eq!(nodes[&p("etc-link/passwd")].content, b"not the host's\n");
}

/// Builds a vfs rootfs with xattrs from a layer tar in the test process, to check
/// xattrs survive (the busybox test images carry none).
#[tokio::test(flavor = "multi_thread")]
async fn vfs_copies_xattrs_of_the_layers() {
    let registry = Registry::start();
    let layout_dir = tempfile::tempdir().expect("layout");
    let mut layout = OciLayout::create(layout_dir.path());
    let mut b = tar::Builder::new(Vec::new());
    b.append_pax_extensions([("SCHILY.xattr.user.label", &b"tagged"[..])])
        .expect("pax");
    add_file(&mut b, "labelled", b"x\n", 0o644, (0, 0));
    let tar = b.into_inner().expect("tar");
    let blob = layout.put_blob(OCI_LAYER_TAR, &tar);
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [crio_tests::images::sha256_digest(&tar)]},
    });
    let config = layout.put_blob(OCI_CONFIG, config.to_string().as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": config.media_type, "digest": config.digest, "size": config.size},
        "layers": [{"mediaType": blob.media_type, "digest": blob.digest, "size": blob.size}],
    });
    let manifest = layout.put_blob(OCI_MANIFEST, manifest.to_string().as_bytes());
    layout.tag(&manifest, "xattr");
    registry.push(layout_dir.path(), "xattr", "test/xattr:latest", false, None);
    let daemon = Daemon::builder()
        .registries_conf(&registry.insecure_conf())
        .start();
    let name = format!("{}/test/xattr:latest", registry.addr);
    daemon.client().await.pull(&name, None).await.expect("pull");
    let lowers = layer_dirs(&daemon, &name).await;
    let nodes = vfs_equals_overlay(&daemon, &lowers);
    assert_eq!(
        nodes[&PathBuf::from("labelled")].xattrs.get("user.label"),
        Some(&b"tagged".to_vec())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn storage_driver_is_validated_and_reported() {
    let daemon = Daemon::builder().start();
    assert_eq!(daemon.status_info()["storage_driver"], "overlay");

    let daemon = Daemon::builder()
        .dropin("50-vfs.conf", "[crio]\nstorage_driver = \"vfs\"\n")
        .start();
    assert_eq!(daemon.status_info()["storage_driver"], "vfs");
    let fs_info = daemon
        .client()
        .await
        .image
        .image_fs_info(ImageFsInfoRequest {})
        .await
        .expect("ImageFsInfo")
        .into_inner();
    assert_eq!(
        fs_info.image_filesystems[0]
            .fs_id
            .as_ref()
            .map(|f| f.mountpoint.clone()),
        Some(daemon.dirs.root.join("images").display().to_string())
    );

    let mut daemon = Daemon::builder()
        .dropin(
            "50-btrfs.conf",
            "[crio]\n# CRI-O accepts this one\nstorage_driver = \"btrfs\"\n",
        )
        .spawn();
    let status = daemon
        .wait_exit(std::time::Duration::from_secs(20))
        .expect("crio refuses the config");
    assert!(!status.success());
    let log = daemon.log();
    assert!(
        log.contains("50-btrfs.conf:3: key crio.storage_driver"),
        "{log}"
    );
    assert!(log.contains("accepted: overlay, vfs"), "{log}");
}
