//! Layer unpacking: the security boundary of image storage.
//!
//! A layer tar comes from a registry, so every entry is hostile until proven
//! otherwise. Nothing an entry names may be created, changed or followed outside the
//! destination: `..` components are refused, absolute paths are taken relative to the
//! destination, parent directories are walked component by component and a symlink
//! among them is refused (a layer that plants `a -> /etc` and then writes `a/passwd`
//! fails), an existing final path is replaced rather than written through, and
//! hard links may only point inside. OCI whiteouts become overlayfs whiteouts (char
//! device 0:0) and opaque markers the `trusted.overlay.opaque` xattr, so the layer dir
//! can serve directly as an overlayfs lower dir; overlay xattrs the layer carries
//! itself (redirects, metacopy) are dropped, since overlayfs would act on them.
//! Directory times, set at the end, are applied only to the very directory made
//! earlier, re-resolved without following links (a later entry may have replaced a
//! parent with a symlink). A layer is unpacked by one thread into a fresh private
//! directory, so checks cannot race another writer.

use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{Mode, SFlag};

use super::tar_stream::{check_end, Position, TarStream};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
const PAX_XATTR_PREFIX: &str = "SCHILY.xattr.";
/// Xattrs overlayfs interprets (redirects, metacopy, whiteout and opaque markers, with
/// or without the `userxattr` mount option). A layer may not set them itself: only
/// the whiteout conversion here writes overlay xattrs.
const OVERLAY_XATTR_PREFIXES: [&str; 2] = ["trusted.overlay.", "user.overlay."];
/// Runs of zeros this long are left as holes, so sparse files stay sparse.
const HOLE_BLOCK: usize = 4096;

/// What one unpack did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnpackStats {
    pub entries: u64,
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("reading the layer archive at byte {offset}: {source}")]
    Archive { offset: u64, source: io::Error },
    #[error("entry {0:?} climbs out of the layer with '..'")]
    Traversal(String),
    #[error("entry {entry:?} goes through symlink {through:?}: refusing to follow it")]
    SymlinkParent { entry: String, through: String },
    #[error("entry {entry:?}: {parent:?} is not a directory")]
    NotADirectory { entry: String, parent: String },
    #[error("whiteout {0:?} names no file")]
    BadWhiteout(String),
    #[error("hard link {entry:?} points at {target:?}, which is not in this layer")]
    LinkTarget { entry: String, target: String },
    #[error("entry {entry:?}: {action}: {source}")]
    Io {
        entry: String,
        action: &'static str,
        source: io::Error,
    },
}

impl UnpackError {
    /// An archive error found below the parser, given the stream's offset.
    fn at(self, position: &Position) -> Self {
        match self {
            UnpackError::Archive { source, .. } => UnpackError::Archive {
                offset: position.offset(),
                source,
            },
            other => other,
        }
    }
}

fn io_err<'a>(entry: &'a str, action: &'static str) -> impl FnOnce(io::Error) -> UnpackError + 'a {
    move |source| UnpackError::Io {
        entry: entry.to_string(),
        action,
        source,
    }
}

fn nix_err<'a>(
    entry: &'a str,
    action: &'static str,
) -> impl FnOnce(nix::Error) -> UnpackError + 'a {
    move |errno| UnpackError::Io {
        entry: entry.to_string(),
        action,
        source: io::Error::from(errno),
    }
}

/// Unpacks an uncompressed layer tar stream into `dest` (an existing, empty directory
/// that will become one overlayfs lower dir), converting OCI whiteouts to overlayfs form.
pub fn unpack_layer<R: Read>(reader: R, dest: &Path) -> Result<UnpackStats, UnpackError> {
    let (stream, position) = TarStream::new(reader);
    let archive_err = |source| UnpackError::Archive {
        offset: position.offset(),
        source,
    };
    let mut archive = tar::Archive::new(stream);
    let mut stats = UnpackStats::default();
    // Directory times are set last: creating their children changes them.
    let mut dir_times: Vec<DirTime> = Vec::new();
    for entry in archive.entries().map_err(archive_err)? {
        let mut entry = entry.map_err(archive_err)?;
        position.entry_data(archive_data_len(&mut entry));
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let Some(relative) = clean_path(&raw, &name)? else {
            // The layer root itself ("./"): nothing to create.
            continue;
        };
        stats.entries += 1;
        let file_name = relative
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let parent = prepare_parent(dest, &relative, &name)?;
        if file_name == OPAQUE_MARKER {
            set_xattr(&parent, OPAQUE_XATTR, b"y", &name)?;
            continue;
        }
        if let Some(hidden) = file_name.strip_prefix(WHITEOUT_PREFIX) {
            // `.wh.` alone would name the directory itself, `.wh..` its parent.
            if hidden.is_empty() || hidden == "." || hidden == ".." {
                return Err(UnpackError::BadWhiteout(name));
            }
            let target = parent.join(hidden);
            remove_existing(&target, &name)?;
            make_node(&target, SFlag::S_IFCHR, 0o000, 0, &name)?;
            continue;
        }
        let target = parent.join(&file_name);
        let header = entry.header().clone();
        let kind = match header.entry_type() {
            // Go's archive/tar (which wrote most layers) reads a pre-POSIX entry (type
            // '\0') whose name ends in '/' as a directory.
            tar::EntryType::Regular if header.as_old().linkflag[0] == 0 && raw.ends_with(b"/") => {
                tar::EntryType::Directory
            }
            other => other,
        };
        // Empty numeric fields mean 0, as Go's archive/tar (which wrote most layers) reads them.
        let mode = header.mode().unwrap_or(0o644) & 0o7777;
        let uid = header.uid().unwrap_or(0);
        let gid = header.gid().unwrap_or(0);
        let mtime = header.mtime().unwrap_or(0) as i64;
        match kind {
            tar::EntryType::Directory => match fs::symlink_metadata(&target) {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => {
                    remove_existing(&target, &name)?;
                    fs::create_dir(&target).map_err(io_err(&name, "create directory"))?;
                }
                Err(_) => fs::create_dir(&target).map_err(io_err(&name, "create directory"))?,
            },
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                remove_existing(&target, &name)?;
                stats.bytes +=
                    write_file(&mut entry, &target, &name).map_err(|e| e.at(&position))?;
            }
            tar::EntryType::GNUSparse => {
                remove_existing(&target, &name)?;
                stats.bytes += write_sparse(&mut entry, &target, &name)?;
            }
            tar::EntryType::Symlink => {
                remove_existing(&target, &name)?;
                let link = entry
                    .link_name_bytes()
                    .map(|l| l.into_owned())
                    .unwrap_or_default();
                std::os::unix::fs::symlink(OsStr::from_bytes(&link), &target)
                    .map_err(io_err(&name, "create symlink"))?;
            }
            tar::EntryType::Link => {
                let link = entry
                    .link_name_bytes()
                    .map(|l| l.into_owned())
                    .unwrap_or_default();
                let source = link_source(dest, &link, &name)?;
                remove_existing(&target, &name)?;
                // linkat without AT_SYMLINK_FOLLOW: a symlink is linked, never followed.
                fs::hard_link(&source, &target).map_err(io_err(&name, "create hard link"))?;
                // A hard link shares its target's inode and metadata: nothing more to set.
                continue;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                remove_existing(&target, &name)?;
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                let flag = match kind {
                    tar::EntryType::Char => SFlag::S_IFCHR,
                    tar::EntryType::Block => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                make_node(
                    &target,
                    flag,
                    mode,
                    nix::sys::stat::makedev(major.into(), minor.into()),
                    &name,
                )?;
            }
            other => {
                tracing::debug!(entry = %name, "skipping tar entry of type {other:?}");
                continue;
            }
        }
        lchown(&target, uid, gid, &name)?;
        if kind != tar::EntryType::Symlink {
            // After chown, which clears setuid/setgid.
            chmod(&target, mode, &name)?;
        }
        if let Some(extensions) = entry.pax_extensions().map_err(archive_err)? {
            for ext in extensions {
                let ext = ext.map_err(archive_err)?;
                let Ok(key) = ext.key() else { continue };
                if let Some(attr) = key.strip_prefix(PAX_XATTR_PREFIX) {
                    if OVERLAY_XATTR_PREFIXES.iter().any(|p| attr.starts_with(p)) {
                        tracing::warn!(entry = %name, "layer sets overlay xattr {attr}: ignored");
                        continue;
                    }
                    set_xattr(&target, attr, ext.value_bytes(), &name)?;
                }
            }
        }
        if kind == tar::EntryType::Directory {
            let meta = fs::symlink_metadata(&target).map_err(io_err(&name, "inspect"))?;
            dir_times.push(DirTime {
                relative,
                name,
                mtime,
                dev: meta.dev(),
                ino: meta.ino(),
            });
        } else {
            set_times(&target, mtime, &name)?;
        }
    }
    // In archive order, so a directory listed twice gets its last time.
    for dir in &dir_times {
        // A later entry may have replaced this directory or one of its parents, even
        // with a symlink to somewhere outside: resolve again without following
        // anything, and touch only the very directory this unpack made.
        let Some(parent) = existing_parent(dest, &dir.relative) else {
            continue;
        };
        let Some(file_name) = dir.relative.file_name() else {
            continue;
        };
        let path = parent.join(file_name);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() && meta.dev() == dir.dev && meta.ino() == dir.ino => {
                set_times(&path, dir.mtime, &dir.name)?;
            }
            _ => {}
        }
    }
    // Errors here point at the block after the first zero block.
    let end_at = position.offset();
    check_end(&position, &mut archive.into_inner()).map_err(|source| UnpackError::Archive {
        offset: end_at,
        source,
    })?;
    Ok(stats)
}

/// How many bytes of data follow the entry's header in the archive: the PAX `size`
/// if there is one, else the header's (for a GNU sparse file, the stored chunks, not
/// the file size), as the tar crate reads it.
fn archive_data_len<R: Read>(entry: &mut tar::Entry<'_, R>) -> u64 {
    let pax_size = entry.pax_extensions().ok().flatten().and_then(|exts| {
        exts.filter_map(Result::ok)
            .find(|e| e.key() == Ok("size"))
            .and_then(|e| e.value().ok()?.parse::<u64>().ok())
    });
    pax_size
        .or_else(|| entry.header().entry_size().ok())
        .unwrap_or(0)
}

/// A directory whose time is set after all entries, and the inode it was made as.
struct DirTime {
    relative: PathBuf,
    name: String,
    mtime: i64,
    dev: u64,
    ino: u64,
}

/// The entry's path relative to the layer root; `None` for the root itself.
fn clean_path(raw: &[u8], name: &str) -> Result<Option<PathBuf>, UnpackError> {
    let mut out = PathBuf::new();
    for component in Path::new(OsStr::from_bytes(raw)).components() {
        match component {
            Component::Normal(part) => out.push(part),
            // A leading '/' is the layer's root, as containerd treats it.
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => return Err(UnpackError::Traversal(name.to_string())),
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// Walks (and creates) the parent directories of `relative` under `dest`, refusing
/// symlinks and non-directories on the way. Returns the parent's real path.
fn prepare_parent(dest: &Path, relative: &Path, name: &str) -> Result<PathBuf, UnpackError> {
    let mut current = dest.to_path_buf();
    let Some(parent) = relative.parent() else {
        return Ok(current);
    };
    for part in parent.components() {
        current.push(part);
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(UnpackError::SymlinkParent {
                    entry: name.to_string(),
                    through: shown(dest, &current),
                })
            }
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(UnpackError::NotADirectory {
                    entry: name.to_string(),
                    parent: shown(dest, &current),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&current).map_err(io_err(name, "create parent directory"))?;
            }
            Err(e) => return Err(io_err(name, "inspect parent directory")(e)),
        }
    }
    Ok(current)
}

/// The existing file a hard link names, checked like any entry path.
fn link_source(dest: &Path, link: &[u8], name: &str) -> Result<PathBuf, UnpackError> {
    let link_name = String::from_utf8_lossy(link).into_owned();
    let outside = || UnpackError::LinkTarget {
        entry: name.to_string(),
        target: link_name.clone(),
    };
    let relative = clean_path(link, name)
        .map_err(|_| outside())?
        .ok_or_else(outside)?;
    let parent = existing_parent(dest, &relative).ok_or_else(outside)?;
    let source = parent.join(relative.file_name().ok_or_else(outside)?);
    let meta = fs::symlink_metadata(&source).map_err(|_| outside())?;
    if meta.is_dir() {
        return Err(outside());
    }
    Ok(source)
}

/// The real path of `relative`'s parent under `dest` if every parent component exists
/// as a directory; `None` if one is missing, not a directory, or a symlink.
fn existing_parent(dest: &Path, relative: &Path) -> Option<PathBuf> {
    let mut current = dest.to_path_buf();
    if let Some(parent) = relative.parent() {
        for part in parent.components() {
            current.push(part);
            let meta = fs::symlink_metadata(&current).ok()?;
            // symlink_metadata never reports a symlink as a directory.
            if !meta.is_dir() {
                return None;
            }
        }
    }
    Some(current)
}

fn shown(dest: &Path, path: &Path) -> String {
    path.strip_prefix(dest)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Removes whatever is at `path` (never following a symlink), if anything.
fn remove_existing(path: &Path, name: &str) -> Result<(), UnpackError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => {
            fs::remove_dir_all(path).map_err(io_err(name, "replace directory"))
        }
        Ok(_) => fs::remove_file(path).map_err(io_err(name, "replace file")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(name, "inspect")(e)),
    }
}

/// Writes a regular file without following anything, leaving zero blocks as holes.
/// Each run of data blocks is one `write`, each run of zero blocks one `seek`.
fn write_file(data: &mut impl Read, path: &Path, name: &str) -> Result<u64, UnpackError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(io_err(name, "create file"))?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut total: u64 = 0;
    let mut pending_hole = false;
    loop {
        let n = read_full(data, &mut buf)
            .map_err(|source| UnpackError::Archive { offset: 0, source })?;
        if n == 0 {
            break;
        }
        for (is_hole, run) in block_runs(&buf[..n]) {
            if is_hole {
                file.seek(SeekFrom::Current(run.len() as i64))
                    .map_err(io_err(name, "seek"))?;
            } else {
                file.write_all(run).map_err(io_err(name, "write"))?;
            }
            pending_hole = is_hole;
        }
        total += n as u64;
    }
    if pending_hole {
        file.set_len(total).map_err(io_err(name, "extend"))?;
    }
    Ok(total)
}

/// Splits `data` into runs of whole zero blocks (`true`) and of anything else.
fn block_runs(data: &[u8]) -> Vec<(bool, &[u8])> {
    let mut runs: Vec<(bool, &[u8])> = Vec::new();
    let mut start = 0;
    let mut current = None;
    for (i, block) in data.chunks(HOLE_BLOCK).enumerate() {
        let hole = block.len() == HOLE_BLOCK && all_zero(block);
        match current {
            Some(kind) if kind == hole => {}
            Some(kind) => {
                runs.push((kind, &data[start..i * HOLE_BLOCK]));
                start = i * HOLE_BLOCK;
                current = Some(hole);
            }
            None => current = Some(hole),
        }
    }
    if let Some(kind) = current {
        runs.push((kind, &data[start..]));
    }
    runs
}

/// Whether a block is all zeros: the first bytes decide most data blocks at once;
/// the rest is OR-folded, which the compiler vectorises.
fn all_zero(block: &[u8]) -> bool {
    let (head, rest) = block.split_at(block.len().min(16));
    head.iter().all(|&b| b == 0) && rest.iter().fold(0u8, |acc, &b| acc | b) == 0
}

/// Writes a GNU sparse entry. Its holes reach us through `Read` only as zeros, and a
/// few header bytes can declare an exabyte of them, so the tar crate writes it: it
/// seeks over holes. It opens with `create_new` (O_CREAT|O_EXCL), which never
/// follows a symlink at `path`; metadata is set by the caller as for any file.
fn write_sparse<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    path: &Path,
    name: &str,
) -> Result<u64, UnpackError> {
    let size = entry.size();
    entry
        .unpack(path)
        .map_err(io_err(name, "write sparse file"))?;
    Ok(size)
}

/// Reads until `buf` is full or the entry ends.
fn read_full(data: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match data.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn make_node(path: &Path, kind: SFlag, mode: u32, dev: u64, name: &str) -> Result<(), UnpackError> {
    nix::sys::stat::mknod(path, kind, Mode::from_bits_truncate(mode), dev)
        .map_err(nix_err(name, "create device node"))
}

fn lchown(path: &Path, uid: u64, gid: u64, name: &str) -> Result<(), UnpackError> {
    let uid = u32::try_from(uid)
        .map_err(|_| io_err(name, "chown")(io::Error::other("uid out of range")))?;
    let gid = u32::try_from(gid)
        .map_err(|_| io_err(name, "chown")(io::Error::other("gid out of range")))?;
    nix::unistd::fchownat(
        nix::fcntl::AT_FDCWD,
        path,
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(nix_err(name, "chown"))
}

fn chmod(path: &Path, mode: u32, name: &str) -> Result<(), UnpackError> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_err(name, "chmod"))
}

/// Sets atime and mtime of `path` itself (never of a symlink's target).
fn set_times(path: &Path, mtime: i64, name: &str) -> Result<(), UnpackError> {
    let time = nix::sys::time::TimeSpec::new(mtime, 0);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &time,
        &time,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .map_err(nix_err(name, "set times"))
}

/// lsetxattr (the xattr crate never follows symlinks); attributes the filesystem
/// does not support are skipped with a warning, as containerd does.
fn set_xattr(path: &Path, attr: &str, value: &[u8], name: &str) -> Result<(), UnpackError> {
    match xattr::set(path, attr, value) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => {
            tracing::warn!(entry = %name, "xattr {attr} not supported here: skipped");
            Ok(())
        }
        Err(e) => Err(io_err(name, "set xattr")(e)),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn zero_blocks_become_runs_of_holes() {
        let b = HOLE_BLOCK;
        let mut data = vec![0u8; 5 * b + 10];
        data[2 * b + 7] = 1;
        data[3 * b] = 9;
        let runs: Vec<(bool, usize)> = block_runs(&data)
            .into_iter()
            .map(|(hole, run)| (hole, run.len()))
            .collect();
        assert_eq!(
            runs,
            vec![(true, 2 * b), (false, 2 * b), (true, b), (false, 10)]
        );
        assert!(block_runs(&[]).is_empty());
        assert!(all_zero(&[0u8; 100]));
        assert!(!all_zero(&[
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3
        ]));
    }

    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

    use super::*;

    /// A tar header whose name bytes are written raw (tar::Builder refuses `..`).
    fn header(name: &[u8], kind: tar::EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        h.set_mtime(1_600_000_000);
        h.set_cksum();
        h
    }

    fn with_link(mut h: tar::Header, link: &[u8]) -> tar::Header {
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        h.set_cksum();
        h
    }

    struct Archive(tar::Builder<Vec<u8>>);

    impl Archive {
        fn new() -> Self {
            Self(tar::Builder::new(Vec::new()))
        }
        fn raw(mut self, h: tar::Header, data: &[u8]) -> Self {
            self.0.append(&h, data).expect("append");
            self
        }
        fn file(self, name: &str, data: &[u8]) -> Self {
            let h = header(name.as_bytes(), tar::EntryType::Regular, data.len() as u64);
            self.raw(h, data)
        }
        fn dir(self, name: &str) -> Self {
            let h = header(name.as_bytes(), tar::EntryType::Directory, 0);
            self.raw(h, &[])
        }
        fn symlink(self, name: &str, target: &str) -> Self {
            let h = with_link(
                header(name.as_bytes(), tar::EntryType::Symlink, 0),
                target.as_bytes(),
            );
            self.raw(h, &[])
        }
        fn hardlink(self, name: &str, target: &str) -> Self {
            let h = with_link(
                header(name.as_bytes(), tar::EntryType::Link, 0),
                target.as_bytes(),
            );
            self.raw(h, &[])
        }
        fn bytes(self) -> Vec<u8> {
            self.0.into_inner().expect("finish")
        }
    }

    /// `parent/dest` to unpack into, and `parent` to check nothing escaped into.
    struct Sandbox {
        parent: tempfile::TempDir,
        dest: PathBuf,
    }

    impl Sandbox {
        fn new() -> Self {
            let parent = tempfile::tempdir().expect("tempdir");
            let dest = parent.path().join("dest");
            fs::create_dir(&dest).expect("dest");
            Self { parent, dest }
        }
        fn unpack(&self, tar: Vec<u8>) -> Result<UnpackStats, UnpackError> {
            unpack_layer(tar.as_slice(), &self.dest)
        }
        fn assert_nothing_escaped(&self) {
            let names: Vec<_> = fs::read_dir(self.parent.path())
                .expect("read parent")
                .map(|e| e.expect("entry").file_name())
                .collect();
            assert_eq!(names, ["dest"], "something escaped the layer dir");
        }
    }

    #[test]
    fn dot_dot_paths_are_refused() {
        for name in ["../escaped", "a/../../escaped", "./../escaped"] {
            let s = Sandbox::new();
            let tar = Archive::new().file(name, b"x").bytes();
            assert!(
                matches!(s.unpack(tar), Err(UnpackError::Traversal(_))),
                "{name}"
            );
            s.assert_nothing_escaped();
        }
    }

    #[test]
    fn absolute_paths_land_inside() {
        let s = Sandbox::new();
        s.unpack(Archive::new().file("/etc/x", b"inside").bytes())
            .expect("unpack");
        assert_eq!(fs::read(s.dest.join("etc/x")).expect("read"), b"inside");
        s.assert_nothing_escaped();
    }

    #[test]
    fn symlinked_parents_are_never_followed() {
        for target in ["..", "/tmp", "../..", "/"] {
            let s = Sandbox::new();
            let outside = s.parent.path().display().to_string();
            let target = if target == "/tmp" {
                outside.as_str()
            } else {
                target
            };
            let tar = Archive::new()
                .symlink("a", target)
                .file("a/escaped", b"x")
                .bytes();
            let err = s.unpack(tar).expect_err("must refuse");
            assert!(
                matches!(err, UnpackError::SymlinkParent { .. }),
                "{target}: {err}"
            );
            s.assert_nothing_escaped();
        }
    }

    #[test]
    fn deferred_directory_times_do_not_follow_a_later_symlink() {
        // `d/sub` is created (its time deferred), then `d` is replaced by a symlink to
        // a directory outside that also has a `sub`: setting the deferred time must not
        // resolve through `d`.
        let s = Sandbox::new();
        let outside = s.parent.path().join("outside");
        fs::create_dir_all(outside.join("sub")).expect("outside/sub");
        let old = nix::sys::time::TimeSpec::new(1_000, 0);
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            &outside.join("sub"),
            &old,
            &old,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .expect("set old time");
        let tar = Archive::new()
            .dir("d")
            .dir("d/sub")
            .symlink("d", outside.to_str().expect("utf-8"))
            .bytes();
        s.unpack(tar).expect("unpack");
        assert!(fs::symlink_metadata(s.dest.join("d"))
            .expect("d")
            .file_type()
            .is_symlink());
        assert_eq!(
            fs::metadata(outside.join("sub")).expect("sub").mtime(),
            1_000,
            "a time was set outside the layer"
        );
    }

    #[test]
    fn a_symlink_to_etc_cannot_be_written_through() {
        let before = fs::read("/etc/passwd").expect("/etc/passwd");
        let s = Sandbox::new();
        let tar = Archive::new()
            .symlink("a", "/etc")
            .file("a/passwd", b"root::0:0::/:/bin/sh\n")
            .bytes();
        let err = s.unpack(tar).expect_err("must refuse");
        assert!(matches!(err, UnpackError::SymlinkParent { .. }), "{err}");
        assert!(err.to_string().contains("a/passwd"), "{err}");
        assert_eq!(fs::read("/etc/passwd").expect("/etc/passwd"), before);
        s.assert_nothing_escaped();
    }

    #[test]
    fn a_directory_listed_twice_gets_its_last_time() {
        let s = Sandbox::new();
        let mut first = header(b"d", tar::EntryType::Directory, 0);
        first.set_mtime(1_100_000_000);
        first.set_cksum();
        let mut second = header(b"d/", tar::EntryType::Directory, 0);
        second.set_mtime(1_200_000_000);
        second.set_cksum();
        let tar = Archive::new()
            .raw(first, &[])
            .file("d/f", b"x")
            .raw(second, &[])
            .bytes();
        s.unpack(tar).expect("unpack");
        assert_eq!(
            fs::metadata(s.dest.join("d")).expect("d").mtime(),
            1_200_000_000
        );
    }

    #[test]
    fn a_pre_posix_entry_ending_in_a_slash_is_a_directory() {
        let s = Sandbox::new();
        let mut h = header(b"old/", tar::EntryType::Regular, 0);
        h.as_old_mut().linkflag[0] = 0;
        h.set_cksum();
        s.unpack(Archive::new().raw(h, &[]).file("old/f", b"x").bytes())
            .expect("unpack");
        assert!(fs::symlink_metadata(s.dest.join("old"))
            .expect("old")
            .is_dir());
    }

    #[test]
    fn a_planted_symlink_is_replaced_not_written_through() {
        let s = Sandbox::new();
        let victim = s.parent.path().join("victim");
        fs::write(&victim, "original").expect("victim");
        let tar = Archive::new()
            .symlink("f", victim.to_str().expect("utf-8"))
            .file("f", b"new content")
            .bytes();
        s.unpack(tar).expect("unpack");
        assert_eq!(fs::read_to_string(&victim).expect("victim"), "original");
        assert_eq!(fs::read(s.dest.join("f")).expect("f"), b"new content");
        assert!(!fs::symlink_metadata(s.dest.join("f"))
            .expect("f")
            .file_type()
            .is_symlink());
    }

    #[test]
    fn hard_links_must_stay_inside() {
        for target in ["../outside", "/etc/passwd", "missing"] {
            let s = Sandbox::new();
            fs::write(s.parent.path().join("outside"), "x").expect("outside");
            let tar = Archive::new().hardlink("link", target).bytes();
            let err = s.unpack(tar).expect_err("must refuse");
            assert!(
                matches!(err, UnpackError::LinkTarget { .. }),
                "{target}: {err}"
            );
            assert_eq!(
                fs::metadata(s.parent.path().join("outside"))
                    .expect("outside")
                    .nlink(),
                1
            );
        }
        // Through a symlinked parent.
        let s = Sandbox::new();
        fs::write(s.parent.path().join("secret"), "x").expect("secret");
        let tar = Archive::new()
            .symlink("up", "..")
            .hardlink("link", "up/secret")
            .bytes();
        assert!(matches!(s.unpack(tar), Err(UnpackError::LinkTarget { .. })));
        assert_eq!(
            fs::metadata(s.parent.path().join("secret"))
                .expect("secret")
                .nlink(),
            1
        );
    }

    #[test]
    fn a_hard_link_to_a_symlink_links_the_symlink_itself() {
        let s = Sandbox::new();
        let outside = s.parent.path().join("outside");
        fs::write(&outside, "x").expect("outside");
        let tar = Archive::new()
            .symlink("s", outside.to_str().expect("utf-8"))
            .hardlink("h", "s")
            .bytes();
        s.unpack(tar).expect("unpack");
        let h = fs::symlink_metadata(s.dest.join("h")).expect("h");
        assert!(h.file_type().is_symlink());
        assert_eq!(
            h.ino(),
            fs::symlink_metadata(s.dest.join("s")).expect("s").ino()
        );
        assert_eq!(fs::metadata(&outside).expect("outside").nlink(), 1);
    }

    #[test]
    fn hard_links_inside_share_the_inode() {
        let s = Sandbox::new();
        let tar = Archive::new().file("a", b"data").hardlink("b", "a").bytes();
        s.unpack(tar).expect("unpack");
        let a = fs::metadata(s.dest.join("a")).expect("a");
        let b = fs::metadata(s.dest.join("b")).expect("b");
        assert_eq!(a.ino(), b.ino());
        assert_eq!(a.nlink(), 2);
    }

    #[test]
    fn device_nodes_and_fifos_are_created() {
        let s = Sandbox::new();
        let mut chr = header(b"dev/null", tar::EntryType::Char, 0);
        chr.set_device_major(1).expect("major");
        chr.set_device_minor(3).expect("minor");
        chr.set_mode(0o666);
        chr.set_cksum();
        let mut blk = header(b"dev/loop9", tar::EntryType::Block, 0);
        blk.set_device_major(7).expect("major");
        blk.set_device_minor(9).expect("minor");
        blk.set_cksum();
        let fifo = header(b"run/fifo", tar::EntryType::Fifo, 0);
        s.unpack(
            Archive::new()
                .raw(chr, &[])
                .raw(blk, &[])
                .raw(fifo, &[])
                .bytes(),
        )
        .expect("unpack");
        let null = fs::symlink_metadata(s.dest.join("dev/null")).expect("null");
        assert!(null.file_type().is_char_device());
        assert_eq!(null.rdev(), nix::sys::stat::makedev(1, 3));
        assert_eq!(null.permissions().mode() & 0o777, 0o666);
        let lp = fs::symlink_metadata(s.dest.join("dev/loop9")).expect("loop");
        assert!(lp.file_type().is_block_device());
        assert_eq!(lp.rdev(), nix::sys::stat::makedev(7, 9));
        assert!(fs::symlink_metadata(s.dest.join("run/fifo"))
            .expect("fifo")
            .file_type()
            .is_fifo());
    }

    #[test]
    fn long_names_and_long_link_targets_survive() {
        let s = Sandbox::new();
        let long_dir = "d".repeat(120);
        let long = format!("{long_dir}/{}/{}", "e".repeat(100), "f".repeat(90));
        let long_target = format!("/{}", "t".repeat(299));
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(4);
        h.set_mode(0o644);
        b.append_data(&mut h, &long, &b"long"[..])
            .expect("gnu longname");
        let mut l = tar::Header::new_gnu();
        l.set_entry_type(tar::EntryType::Symlink);
        l.set_size(0);
        b.append_link(&mut l, "link", &long_target)
            .expect("gnu longlink");
        s.unpack(b.into_inner().expect("tar")).expect("unpack");
        assert_eq!(fs::read(s.dest.join(&long)).expect("long"), b"long");
        assert_eq!(
            fs::read_link(s.dest.join("link")).expect("link"),
            PathBuf::from(long_target)
        );
        // And a PAX path.
        let s = Sandbox::new();
        let mut b = tar::Builder::new(Vec::new());
        let pax_name = format!("{}/pax-file", "p".repeat(200));
        b.append_pax_extensions([("path", pax_name.as_bytes())])
            .expect("pax");
        let h = header(b"short-fallback", tar::EntryType::Regular, 3);
        b.append(&h, &b"pax"[..]).expect("append");
        s.unpack(b.into_inner().expect("tar")).expect("unpack");
        assert_eq!(fs::read(s.dest.join(&pax_name)).expect("pax"), b"pax");
    }

    #[test]
    fn sparse_files_keep_their_holes() {
        let s = Sandbox::new();
        let src_dir = tempfile::tempdir().expect("tempdir");
        let src = src_dir.path().join("sparse");
        {
            let mut f = fs::File::create(&src).expect("create");
            f.write_all(b"head").expect("write");
            f.seek(SeekFrom::Start(64 << 20)).expect("seek");
            f.write_all(b"tail").expect("write");
        }
        let mut b = tar::Builder::new(Vec::new());
        b.sparse(true);
        b.append_path_with_name(&src, "sparse")
            .expect("append sparse");
        let tar = b.into_inner().expect("tar");
        assert!(
            tar.len() < 1 << 20,
            "the archive itself is sparse: {}",
            tar.len()
        );
        s.unpack(tar).expect("unpack");
        let out = s.dest.join("sparse");
        let meta = fs::metadata(&out).expect("meta");
        assert_eq!(meta.len(), (64 << 20) + 4);
        assert!(
            meta.blocks() * 512 < 1 << 20,
            "holes kept: {} blocks",
            meta.blocks()
        );
        let data = fs::read(&out).expect("read");
        assert_eq!(&data[..4], b"head");
        assert_eq!(&data[data.len() - 4..], b"tail");
    }

    /// A GNU sparse entry: `hole` bytes of hole, then 512 bytes of data.
    fn sparse_entry(name: &[u8], hole: u64) -> tar::Header {
        let mut h = header(name, tar::EntryType::GNUSparse, 512);
        let gnu = h.as_gnu_mut().expect("gnu header");
        gnu.sparse[0].set_offset(hole);
        gnu.sparse[0].set_length(512);
        gnu.set_real_size(hole + 512);
        h.set_cksum();
        h
    }

    #[test]
    fn huge_sparse_holes_are_seeked_over_not_read() {
        // A few header bytes can declare an exabyte of hole: reading it as zeros would
        // never end.
        let s = Sandbox::new();
        let hole = 1u64 << 40;
        let tar = Archive::new()
            .raw(sparse_entry(b"tib", hole), &[7u8; 512])
            .bytes();
        let started = std::time::Instant::now();
        let stats = s.unpack(tar).expect("unpack");
        assert!(started.elapsed().as_secs() < 10, "{:?}", started.elapsed());
        assert_eq!(stats.bytes, hole + 512);
        let out = s.dest.join("tib");
        let meta = fs::metadata(&out).expect("meta");
        assert_eq!(meta.len(), hole + 512);
        assert!(meta.blocks() * 512 < 1 << 20, "{} blocks", meta.blocks());
        let mut tail = [0u8; 512];
        let mut f = fs::File::open(&out).expect("open");
        f.seek(SeekFrom::Start(hole)).expect("seek");
        f.read_exact(&mut tail).expect("read");
        assert_eq!(tail, [7u8; 512]);

        // Past what the filesystem allows: an error, promptly.
        let s = Sandbox::new();
        let tar = Archive::new()
            .raw(sparse_entry(b"eib", 1 << 62), &[7u8; 512])
            .bytes();
        let started = std::time::Instant::now();
        let _ = s.unpack(tar);
        assert!(started.elapsed().as_secs() < 10, "{:?}", started.elapsed());
        s.assert_nothing_escaped();
    }

    #[test]
    fn ownership_modes_times_and_xattrs_are_kept() {
        let s = Sandbox::new();
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([("SCHILY.xattr.user.test", &b"hello"[..])])
            .expect("pax");
        let mut h = header(b"bin/suid", tar::EntryType::Regular, 2);
        h.set_mode(0o4755);
        h.set_uid(1234);
        h.set_gid(5678);
        h.set_cksum();
        b.append(&h, &b"#!"[..]).expect("append");
        let mut d = header(b"sticky", tar::EntryType::Directory, 0);
        d.set_mode(0o1777);
        d.set_mtime(1_500_000_000);
        d.set_cksum();
        b.append(&d, &[][..]).expect("dir");
        b.append(
            &header(b"sticky/child", tar::EntryType::Regular, 0),
            &[][..],
        )
        .expect("child");
        s.unpack(b.into_inner().expect("tar")).expect("unpack");
        let f = fs::metadata(s.dest.join("bin/suid")).expect("suid");
        assert_eq!(f.permissions().mode() & 0o7777, 0o4755);
        assert_eq!((f.uid(), f.gid()), (1234, 5678));
        assert_eq!(f.mtime(), 1_600_000_000);
        let x = xattr::get(s.dest.join("bin/suid"), "user.test").expect("xattr");
        // The temp dir is on a filesystem with user xattrs (ext4 here).
        assert_eq!(x.as_deref(), Some(&b"hello"[..]));
        let d = fs::metadata(s.dest.join("sticky")).expect("sticky");
        assert_eq!(d.permissions().mode() & 0o7777, 0o1777);
        assert_eq!(d.mtime(), 1_500_000_000, "dir mtime set after its children");
    }

    #[test]
    fn whiteouts_become_overlay_whiteouts_and_opaque_xattrs() {
        let s = Sandbox::new();
        let tar = Archive::new()
            .dir("data")
            .file("data/.wh.gone", b"")
            .file("opq/.wh..wh..opq", b"")
            .file("opq/new", b"n")
            .bytes();
        let stats = s.unpack(tar).expect("unpack");
        assert_eq!(stats.entries, 4);
        let wh = fs::symlink_metadata(s.dest.join("data/gone")).expect("whiteout");
        assert!(wh.file_type().is_char_device());
        assert_eq!(wh.rdev(), 0);
        assert!(!s.dest.join("data/.wh.gone").exists());
        assert!(!s.dest.join("opq/.wh..wh..opq").exists());
        assert_eq!(
            xattr::get(s.dest.join("opq"), OPAQUE_XATTR).expect("xattr"),
            Some(b"y".to_vec())
        );
        assert_eq!(fs::read(s.dest.join("opq/new")).expect("new"), b"n");
    }

    #[test]
    fn whiteouts_of_the_dir_itself_or_its_parent_are_refused() {
        // Found by the fuzzer: `.wh.` removed the layer dir, `.wh..` would remove its parent.
        for name in [".wh.", ".wh..", "sub/.wh..", "sub/.wh."] {
            let s = Sandbox::new();
            let err = s
                .unpack(Archive::new().file(name, b"").bytes())
                .expect_err("refuse");
            assert!(matches!(err, UnpackError::BadWhiteout(_)), "{name}: {err}");
            assert!(s.dest.is_dir(), "{name}: the layer dir survives");
            s.assert_nothing_escaped();
        }
    }

    #[test]
    fn a_layer_cannot_set_overlay_xattrs_itself() {
        let s = Sandbox::new();
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([
            ("SCHILY.xattr.trusted.overlay.redirect", &b"/etc"[..]),
            ("SCHILY.xattr.trusted.overlay.metacopy", &b""[..]),
            ("SCHILY.xattr.user.overlay.redirect", &b"/etc"[..]),
            ("SCHILY.xattr.user.kept", &b"yes"[..]),
        ])
        .expect("pax");
        b.append(&header(b"d", tar::EntryType::Directory, 0), &[][..])
            .expect("dir");
        s.unpack(b.into_inner().expect("tar")).expect("unpack");
        let d = s.dest.join("d");
        for attr in [
            "trusted.overlay.redirect",
            "trusted.overlay.metacopy",
            "user.overlay.redirect",
        ] {
            assert_eq!(xattr::get(&d, attr).expect("xattr"), None, "{attr}");
        }
        assert_eq!(
            xattr::get(&d, "user.kept").expect("xattr"),
            Some(b"yes".to_vec())
        );
    }

    #[test]
    fn escaping_whiteouts_are_refused() {
        for name in ["../.wh.x", "a/../../.wh..wh..opq"] {
            let s = Sandbox::new();
            fs::write(s.parent.path().join("x"), "keep").ok();
            let err = s
                .unpack(Archive::new().file(name, b"").bytes())
                .expect_err("refuse");
            assert!(matches!(err, UnpackError::Traversal(_)), "{name}: {err}");
            assert_eq!(
                fs::read_to_string(s.parent.path().join("x")).expect("x"),
                "keep"
            );
        }
    }

    #[test]
    fn a_file_in_place_of_a_directory_is_refused_as_parent() {
        let s = Sandbox::new();
        let tar = Archive::new().file("f", b"x").file("f/child", b"y").bytes();
        assert!(matches!(
            s.unpack(tar),
            Err(UnpackError::NotADirectory { .. })
        ));
    }

    #[test]
    fn stats_count_entries_and_bytes() {
        let s = Sandbox::new();
        let stats = s
            .unpack(
                Archive::new()
                    .dir("d")
                    .file("d/a", b"abc")
                    .file("b", b"de")
                    .bytes(),
            )
            .expect("unpack");
        assert_eq!(
            stats,
            UnpackStats {
                entries: 3,
                bytes: 5
            }
        );
    }

    /// A one-file layer (`f`, 9 bytes) followed by `tail`, as tar writers end them.
    fn one_file_then(tail: &[u8]) -> Vec<u8> {
        let mut tar = header(b"f", tar::EntryType::Regular, 9).as_bytes().to_vec();
        tar.extend_from_slice(b"123456789");
        tar.extend_from_slice(tail);
        tar
    }

    #[test]
    fn layer_ends_that_go_accepts_are_accepted() {
        let padding = [0u8; 512 - 9];
        let zero_block = [0u8; 512];
        let mut padded = padding.to_vec();
        let ends: [(&str, Vec<u8>); 6] = [
            ("right after the data (umoci)", Vec::new()),
            ("inside the padding", padding[..100].to_vec()),
            ("after the padding, no zero block", padded.clone()),
            ("after one zero block", {
                padded.extend_from_slice(&zero_block);
                padded.clone()
            }),
            ("after two zero blocks", {
                padded.extend_from_slice(&zero_block);
                padded.clone()
            }),
            ("after more zeros than two blocks", {
                padded.extend_from_slice(&zero_block);
                padded.clone()
            }),
        ];
        for (what, tail) in ends {
            let s = Sandbox::new();
            s.unpack(one_file_then(&tail))
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(
                fs::read(s.dest.join("f")).expect("f"),
                b"123456789",
                "{what}"
            );
        }
    }

    #[test]
    fn layer_ends_that_go_refuses_say_where() {
        let padded_with = |extra: &[u8]| {
            let mut tail = vec![0u8; 512 - 9 + 512];
            tail.extend_from_slice(extra);
            one_file_then(&tail)
        };
        let mut junk = [0u8; 512];
        junk[0] = b'x';
        let cut_in_data = one_file_then(&[])[..512 + 4].to_vec();
        let cut_in_header = {
            let mut t = one_file_then(&[0u8; 512 - 9]);
            t.extend_from_slice(&header(b"g", tar::EntryType::Regular, 0).as_bytes()[..300]);
            t
        };
        let cases: [(&str, Vec<u8>, u64, &str); 4] = [
            (
                "inside the data",
                cut_in_data,
                516,
                "inside an entry's data",
            ),
            ("inside a header", cut_in_header, 1324, ""),
            (
                "a zero block then data",
                padded_with(&junk),
                1536,
                "zero block is followed",
            ),
            (
                "inside the second zero block",
                padded_with(&[0u8; 100]),
                1536,
                "end-of-archive",
            ),
        ];
        for (what, tar, at, says) in cases {
            let s = Sandbox::new();
            match s.unpack(tar) {
                Err(UnpackError::Archive { offset, source }) => {
                    assert_eq!(offset, at, "{what}: {source}");
                    assert!(source.to_string().contains(says), "{what}: {source}");
                }
                other => panic!("{what}: {other:?}"),
            }
        }
    }
}
