//! Reloading: the files are stamped, and a change to any of them (or a new or
//! removed drop-in) reloads the whole configuration at the next use.

use super::file::dropins;
use super::*;

/// Identity of one file's content, cheap to take: a rewrite changes at least one
/// of these (the inode when replaced by rename, the ctime when edited in place).
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
    ctime: (i64, i64),
}

/// The files that make up the configuration and their stamps (`None` = absent).
type Stamp = Vec<(PathBuf, Option<FileStamp>)>;

#[derive(Debug, Default)]
struct WatchState {
    stamp: Option<Stamp>,
    /// The configuration loaded for `stamp`; `None` when that load failed.
    conf: Option<Arc<RegistriesConf>>,
}

/// The configuration, reloaded whenever one of its files changes (checked on every
/// call, with one `stat` per file).
#[derive(Debug)]
pub struct RegistriesWatcher {
    file: PathBuf,
    dir: PathBuf,
    state: Mutex<WatchState>,
}

impl RegistriesWatcher {
    pub(crate) fn new(file: PathBuf, dir: PathBuf) -> Self {
        Self {
            file,
            dir,
            state: Mutex::new(WatchState::default()),
        }
    }

    /// The current configuration. A failed reload is returned (and logged once per
    /// change of the files) rather than hidden behind the previous configuration:
    /// pulling with stale mirrors or blocks would be worse than failing clearly.
    pub(crate) fn current(&self) -> Result<Arc<RegistriesConf>, RegistriesError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let stamp = self.stamp();
        if state.stamp.as_ref() == Some(&stamp) {
            if let Some(conf) = &state.conf {
                return Ok(conf.clone());
            }
        }
        let first_failure = state.stamp.as_ref() != Some(&stamp) || state.conf.is_some();
        let loaded = RegistriesConf::load(&self.file, &self.dir);
        state.stamp = Some(stamp);
        match loaded {
            Ok(conf) => {
                let conf = Arc::new(conf);
                tracing::info!(files = ?conf.files(), "registries configuration loaded");
                state.conf = Some(conf.clone());
                Ok(conf)
            }
            Err(e) => {
                if first_failure {
                    tracing::error!("registries configuration not loaded: {e}");
                }
                state.conf = None;
                Err(e)
            }
        }
    }

    fn stamp(&self) -> Stamp {
        let mut files = vec![self.file.clone()];
        // A listing error shows up again, with its cause, when loading.
        files.extend(dropins(&self.dir).unwrap_or_default());
        files
            .into_iter()
            .map(|path| {
                let stamp = file_stamp(&path);
                (path, stamp)
            })
            .collect()
    }
}

fn file_stamp(path: &Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        len: meta.len(),
        modified: meta.modified().ok(),
        inode: meta.ino(),
        ctime: (meta.ctime(), meta.ctime_nsec()),
    })
}
