//! Watching the configuration files: the main file and the drop-in directory's
//! `*.conf` files, through inotify, so a handler dropped in takes effect without
//! a signal.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use tokio::sync::mpsc;

use super::Sources;

/// What changes a file: written and closed, created, removed, renamed in or out.
const CHANGES: AddWatchFlags = AddWatchFlags::IN_CLOSE_WRITE
    .union(AddWatchFlags::IN_CREATE)
    .union(AddWatchFlags::IN_DELETE)
    .union(AddWatchFlags::IN_MOVED_TO)
    .union(AddWatchFlags::IN_MOVED_FROM)
    .union(AddWatchFlags::IN_ATTRIB);

/// Which events name a configuration file.
#[derive(Debug)]
struct Filter {
    main_dir: PathBuf,
    main_name: Option<OsString>,
    drop_in_dir: PathBuf,
}

impl Filter {
    fn matches(&self, dir: &Path, name: &Path) -> bool {
        (dir == self.drop_in_dir && name.extension().is_some_and(|e| e == "conf"))
            || (dir == self.main_dir && Some(name.as_os_str()) == self.main_name.as_deref())
    }
}

/// One message per batch of changes to the configuration files, for the life of
/// the process. A directory that does not exist is not watched (named in a
/// warning).
pub(crate) fn changes(sources: &Sources) -> std::io::Result<mpsc::UnboundedReceiver<()>> {
    let inotify = Inotify::init(InitFlags::IN_CLOEXEC).map_err(std::io::Error::from)?;
    let filter = Filter {
        main_dir: sources
            .file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf(),
        main_name: sources.file.file_name().map(OsString::from),
        drop_in_dir: sources.dir.clone(),
    };
    let mut dirs = Vec::new();
    for dir in [&filter.main_dir, &filter.drop_in_dir] {
        if dirs.iter().any(|(d, _)| d == dir) {
            continue;
        }
        match inotify.add_watch(dir.as_path(), CHANGES | AddWatchFlags::IN_ONLYDIR) {
            Ok(wd) => dirs.push((dir.clone(), wd)),
            Err(e) => tracing::warn!(
                "not watching {} for configuration changes ({e}): changes there need a SIGHUP",
                dir.display()
            ),
        }
    }
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("config-watch".into())
        .spawn(move || loop {
            let events = match inotify.read_events() {
                Ok(events) => events,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    tracing::warn!("watching the configuration files stopped: {e}");
                    return;
                }
            };
            let relevant = events.iter().any(|event| {
                let dir = dirs.iter().find(|(_, wd)| *wd == event.wd);
                match (dir, &event.name) {
                    (Some((dir, _)), Some(name)) => filter.matches(dir, Path::new(name)),
                    _ => event.mask.contains(AddWatchFlags::IN_Q_OVERFLOW),
                }
            });
            if relevant && tx.send(()).is_err() {
                return;
            }
        })?;
    Ok(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_main_file_and_drop_in_conf_files_count() {
        let filter = Filter {
            main_dir: "/etc/crio".into(),
            main_name: Some("crio.conf".into()),
            drop_in_dir: "/etc/crio/crio.conf.d".into(),
        };
        let d = Path::new("/etc/crio/crio.conf.d");
        assert!(filter.matches(d, Path::new("10-kata.conf")));
        assert!(!filter.matches(d, Path::new(".10-kata.conf.swp")));
        assert!(!filter.matches(d, Path::new("10-kata.conf~")));
        assert!(filter.matches(Path::new("/etc/crio"), Path::new("crio.conf")));
        assert!(!filter.matches(Path::new("/etc/crio"), Path::new("other.conf")));
    }

    #[tokio::test]
    async fn a_dropped_file_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let drop_in = dir.path().join("crio.conf.d");
        std::fs::create_dir(&drop_in).expect("mkdir");
        let mut rx = changes(&Sources {
            file: dir.path().join("crio.conf"),
            dir: drop_in.clone(),
        })
        .expect("watch");
        let ms = std::time::Duration::from_millis;
        std::fs::write(drop_in.join("notes.txt"), "x").expect("write");
        let none = tokio::time::timeout(ms(300), rx.recv()).await;
        assert!(none.is_err(), "a .txt file is not configuration");
        std::fs::write(drop_in.join("10-new.conf"), "[crio]\n").expect("write");
        let change = tokio::time::timeout(ms(5000), rx.recv()).await;
        assert_eq!(change.expect("a change within 5 s"), Some(()));
    }
}
