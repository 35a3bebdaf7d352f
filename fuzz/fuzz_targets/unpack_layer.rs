//! Any byte string as a layer tar: the unpacker may fail, but nothing outside its
//! destination directory may be created, removed or changed.
//!
//! Next to `dest` sits `outside/` (a file, a subdirectory, an xattr) as bait for
//! relative escapes such as `a -> ../outside` then `a/file`; the dictionary
//! (`unpack_layer.dict`) offers those names. Times and modes are compared too, since
//! a path resolved through a planted symlink changes them without creating anything.
#![no_main]

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use libfuzzer_sys::fuzz_target;

/// Everything about `path` an escape could change (atime aside: reads change it).
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    ino: u64,
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    names: Vec<std::ffi::OsString>,
    content: Vec<u8>,
    xattrs: Vec<(std::ffi::OsString, Option<Vec<u8>>)>,
}

fn snapshot(path: &Path) -> Snapshot {
    let meta = fs::symlink_metadata(path).expect("lstat bait");
    let mut names: Vec<_> = if meta.is_dir() {
        fs::read_dir(path)
            .expect("read dir")
            .map(|e| e.expect("dir entry").file_name())
            .collect()
    } else {
        Vec::new()
    };
    names.sort();
    let content = if meta.is_file() {
        fs::read(path).expect("read bait")
    } else {
        Vec::new()
    };
    let mut xattrs: Vec<_> = xattr::list(path)
        .expect("list xattrs")
        .map(|name| {
            let value = xattr::get(path, &name).expect("get xattr");
            (name, value)
        })
        .collect();
    xattrs.sort();
    Snapshot {
        ino: meta.ino(),
        mode: meta.mode(),
        uid: meta.uid(),
        gid: meta.gid(),
        nlink: meta.nlink(),
        size: meta.size(),
        mtime: (meta.mtime(), meta.mtime_nsec()),
        ctime: (meta.ctime(), meta.ctime_nsec()),
        names,
        content,
        xattrs,
    }
}

/// `data` with the checksum of each header it walks over recomputed, so mutations
/// reach the unpacker instead of dying at the tar crate's checksum check. Data
/// blocks are skipped by the header's octal size; where that guess is wrong the
/// input is garbage either way.
fn fix_checksums(data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    let mut pos = 0usize;
    while let Some(block) = pos.checked_add(512).and_then(|end| out.get_mut(pos..end)) {
        pos += 512;
        if block.iter().all(|&b| b == 0) {
            continue;
        }
        block[148..156].fill(b' ');
        let sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
        block[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        let size = block[124..136]
            .iter()
            .skip_while(|&&b| b == b' ')
            .take_while(|&&b| (b'0'..=b'7').contains(&b))
            .fold(0usize, |n, &b| {
                n.saturating_mul(8).saturating_add(usize::from(b - b'0'))
            });
        pos = pos.saturating_add(size.div_ceil(512).saturating_mul(512));
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let data = fix_checksums(data);
    let parent = tempfile::tempdir().expect("tempdir");
    let dest = parent.path().join("dest");
    fs::create_dir(&dest).expect("dest");
    let outside = parent.path().join("outside");
    fs::create_dir_all(outside.join("sub")).expect("outside/sub");
    fs::write(outside.join("file"), b"bait").expect("outside/file");
    // Where user xattrs are unsupported this is simply absent both times.
    let _ = xattr::set(outside.join("file"), "user.bait", b"bait");
    let baits = [
        parent.path().to_path_buf(),
        outside.clone(),
        outside.join("sub"),
        outside.join("file"),
    ];
    let before: Vec<_> = baits.iter().map(|p| snapshot(p)).collect();

    let _ = crio_core::storage::unpack::unpack_layer(data.as_slice(), &dest);

    let after: Vec<_> = baits.iter().map(|p| snapshot(p)).collect();
    for ((path, b), a) in baits.iter().zip(&before).zip(&after) {
        assert_eq!(
            b,
            a,
            "{} changed: something escaped the layer dir",
            path.display()
        );
    }
});
