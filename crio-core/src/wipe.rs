//! CRI-O's wipe rules. `version_file` lives on a tmpfs: when it is missing the
//! node rebooted (or crio never ran), and pods and containers from before are
//! wiped; when `version_file_persist` (off by default) is missing or names another
//! major.minor version, crio was upgraded, and images are wiped too. A missing
//! `clean_shutdown_file` next to its `.supported` marker means crio did not stop
//! cleanly: the store is checked and repaired first (`internal_repair`).
//! `internal_wipe` (the default) lets the daemon wipe at start; `crio wipe` does
//! the same offline, and `--force` wipes whatever the files say.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{CrioConfig, Loaded};
use crate::daemon::{self, DaemonError};
use crate::image::images::ImageStore;
use crate::image::registries::RegistriesConf;
use crate::pods::PodRuntime;
use crate::store::Store;

/// What the marker files say should be wiped, and why.
#[derive(Debug, Default, PartialEq)]
pub struct WipePlan {
    pub containers: bool,
    pub images: bool,
    /// crio did not stop cleanly last time.
    pub unclean: bool,
    pub reasons: Vec<String>,
}

/// Reads the marker files (`force`: wipe whatever they say).
pub fn plan(c: &CrioConfig, force: bool) -> WipePlan {
    let mut plan = WipePlan {
        unclean: shutdown_was_unclean(&c.clean_shutdown_file),
        ..WipePlan::default()
    };
    if force {
        plan.containers = true;
        plan.images = true;
        plan.reasons.push("--force".into());
    } else {
        if let Some(reason) = version_changed(&c.version_file, env!("CARGO_PKG_VERSION")) {
            plan.containers = true;
            plan.reasons.push(format!("containers: {reason}"));
        }
        if let Some(reason) = version_changed(&c.version_file_persist, env!("CARGO_PKG_VERSION")) {
            plan.images = true;
            plan.reasons.push(format!("images: {reason}"));
        }
    }
    if plan.images && !plan.containers {
        // As CRI-O: images go only with the pods that may use them, after a reboot.
        plan.images = false;
        plan.reasons
            .push("images: kept, since the pods are (images are wiped with them)".into());
    }
    if plan.unclean {
        plan.reasons.push(format!(
            "{} is missing: crio did not stop cleanly",
            c.clean_shutdown_file
        ));
    }
    plan
}

/// Why `file` (empty = not kept) says the state is from another crio: missing,
/// unreadable, or another major.minor version than `ours`.
fn version_changed(file: &str, ours: &str) -> Option<String> {
    if file.is_empty() {
        return None;
    }
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) => return Some(format!("version file {file}: {e}")),
    };
    // CRI-O writes a JSON string ("1.31.0"); a bare version reads the same.
    let theirs = text.trim().trim_matches('"');
    match (major_minor(theirs), major_minor(ours)) {
        (Some(a), Some(b)) if a == b => None,
        (Some(_), _) => Some(format!("version file {file} says {theirs}, this is {ours}")),
        (None, _) => Some(format!("version file {file} is malformed: {text:?}")),
    }
}

fn major_minor(version: &str) -> Option<(u64, u64)> {
    let mut parts = version.trim_start_matches('v').split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The marker CRI-O writes at start so an absent clean-shutdown file means
/// something.
fn supported_marker(clean_shutdown_file: &str) -> PathBuf {
    PathBuf::from(format!("{clean_shutdown_file}.supported"))
}

fn shutdown_was_unclean(clean_shutdown_file: &str) -> bool {
    !clean_shutdown_file.is_empty()
        && supported_marker(clean_shutdown_file).exists()
        && !Path::new(clean_shutdown_file).exists()
}

/// At start, after any wipe: both version files name this crio, and the clean
/// shutdown file goes until the next clean stop.
pub(crate) fn mark_started(c: &CrioConfig) -> std::io::Result<()> {
    let version = format!("\"{}\"", env!("CARGO_PKG_VERSION"));
    for file in [&c.version_file, &c.version_file_persist] {
        if !file.is_empty() {
            write_synced(Path::new(file), version.as_bytes())?;
        }
    }
    if !c.clean_shutdown_file.is_empty() {
        match std::fs::remove_file(&c.clean_shutdown_file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        write_synced(&supported_marker(&c.clean_shutdown_file), b"")?;
    }
    Ok(())
}

/// At a clean stop (`[crio] clean_shutdown_file`): the store is committed, say so.
pub(crate) fn mark_clean_shutdown(clean_shutdown_file: &str) -> std::io::Result<()> {
    if clean_shutdown_file.is_empty() {
        return Ok(());
    }
    write_synced(Path::new(clean_shutdown_file), b"")
}

fn write_synced(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::File::create(path)?;
    file.write_all(data)?;
    file.sync_all()
}

/// Removes every pod (and its containers) and, when `plan` says so, every
/// unpinned image, as CRI-O's wipe does.
pub(crate) async fn remove_all(pods: &Arc<PodRuntime>, images: &Arc<ImageStore>, plan: &WipePlan) {
    if plan.containers {
        match pods.store.list::<crate::store::SandboxRecord>() {
            Ok(records) => {
                for pod in records {
                    match pods.remove_sandbox(&pod.id).await {
                        Ok(()) => tracing::info!(pod = %pod.id, "wiped pod"),
                        Err(e) => tracing::error!(pod = %pod.id, "cannot wipe pod: {e}"),
                    }
                }
            }
            Err(e) => tracing::error!("cannot list pods to wipe: {e}"),
        }
    }
    if plan.images {
        let registries = RegistriesConf::default();
        for image in images.list().unwrap_or_default() {
            if images.is_pinned(&image) {
                tracing::info!(image = %image.id, "pinned: not wiped");
                continue;
            }
            match images.remove(&image.id, &registries) {
                Ok(_) => tracing::info!(image = %image.id, "wiped image"),
                Err(e) => tracing::error!(image = %image.id, "cannot wipe image: {e}"),
            }
        }
    }
}

/// `crio wipe`: with the daemon stopped, wipes what the marker files say (all of
/// it with `force`), as CRI-O's command; with `internal_wipe` on (the default)
/// and no `force`, only repairs the store and leaves the wipe to the next start.
/// Returns what it did, for the terminal.
pub async fn offline(loaded: Loaded, force: bool) -> Result<Vec<String>, DaemonError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = loaded.config;
    let c = &config.crio;
    let plan = plan(c, force);
    let mut said = plan.reasons.clone();
    let wipe_now = plan.containers && (force || !c.internal_wipe);
    let repair_now = plan.containers && plan.unclean;
    let leave_to_daemon = "internal_wipe is on: crio wipes at its next start";
    if !wipe_now && !repair_now {
        said.push(if plan.containers {
            leave_to_daemon.into()
        } else {
            "version unchanged and node not rebooted: nothing to wipe".into()
        });
        return Ok(said);
    }
    daemon::create_state_dir(&c.root)?;
    // Nothing is touched while a daemon has the store.
    drop(Store::open(&c.root.join(daemon::STORE_FILE)).map_err(DaemonError::StoreBusy)?);
    if repair_now {
        daemon::repair_store(&c.root)?;
        said.push("the store was checked and repaired".into());
    }
    if !wipe_now {
        said.push(leave_to_daemon.into());
        return Ok(said);
    }
    daemon::create_state_dir(&c.runroot)?;
    let metrics = crate::metrics::Metrics::new(false, &[], &c.runtime.default_runtime);
    let opened = daemon::open(&config, &metrics).await?;
    remove_all(&opened.pods, &opened.images, &plan).await;
    let left = opened.store.list::<crate::store::SandboxRecord>()?.len();
    opened.events.stop().await;
    said.push(if plan.images {
        format!("wiped pods and containers ({left} left) and images")
    } else {
        format!("wiped pods and containers ({left} left)")
    });
    Ok(said)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> CrioConfig {
        CrioConfig {
            version_file: dir.join("run/version").display().to_string(),
            version_file_persist: dir.join("lib/version").display().to_string(),
            clean_shutdown_file: dir.join("lib/clean.shutdown").display().to_string(),
            ..CrioConfig::default()
        }
    }

    #[test]
    fn a_first_start_or_reboot_wipes_containers_an_upgrade_images() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = config(dir.path());
        let first = plan(&c, false);
        assert!(
            first.containers && first.images && !first.unclean,
            "{first:?}"
        );
        mark_started(&c).expect("mark");
        let running = plan(&c, false);
        assert!(!running.containers && !running.images, "{running:?}");
        assert!(running.unclean, "no clean stop yet");
        // A reboot empties the tmpfs; the persistent file stays.
        std::fs::remove_file(&c.version_file).expect("reboot");
        let rebooted = plan(&c, false);
        assert!(rebooted.containers && !rebooted.images, "{rebooted:?}");
        assert!(rebooted.unclean, "no clean stop was recorded");
        // An upgrade from another minor version, after a clean stop.
        mark_started(&c).expect("mark");
        mark_clean_shutdown(&c.clean_shutdown_file).expect("clean");
        std::fs::write(&c.version_file_persist, "\"0.0.9\"").expect("old");
        let upgraded = plan(&c, false);
        assert!(
            !upgraded.containers && !upgraded.images,
            "only with pods: {upgraded:?}"
        );
        assert!(!upgraded.unclean);
        std::fs::remove_file(&c.version_file).expect("reboot");
        let upgraded = plan(&c, false);
        assert!(upgraded.containers && upgraded.images, "{upgraded:?}");
        assert!(plan(&c, true).containers && plan(&c, true).images);
    }

    #[test]
    fn versions_compare_by_major_and_minor() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("version");
        let name = file.display().to_string();
        std::fs::write(&file, "\"1.31.4\"").expect("write");
        assert_eq!(version_changed(&name, "1.31.0"), None);
        assert!(version_changed(&name, "1.32.0").is_some());
        std::fs::write(&file, "garbage").expect("write");
        assert!(version_changed(&name, "1.31.0").is_some_and(|r| r.contains("malformed")));
        assert_eq!(version_changed("", "1.31.0"), None, "not kept");
    }

    #[test]
    fn without_the_supported_marker_a_missing_file_says_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = config(dir.path());
        assert!(!shutdown_was_unclean(&c.clean_shutdown_file));
        assert!(!shutdown_was_unclean(""));
    }
}
