//! SIGHUP: the configuration files are read again. What changed and can change
//! live is applied (`log_level`, `pinned_images`); every other changed key is named in a warning
//! saying it takes effect at the next start. A configuration that no longer
//! loads leaves everything as it is, with the error logged.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::{self, Config, Overrides, Sources};

/// Sets the daemon's log level (`log_level`'s values), from the binary's logger.
pub type LogLevelHook = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// The dotted keys whose values differ between two configurations.
pub(crate) fn changed_keys(old: &Config, new: &Config) -> Vec<String> {
    fn flatten(prefix: &str, value: &toml::Value, out: &mut BTreeMap<String, String>) {
        match value {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    flatten(&key, v, out);
                }
            }
            other => {
                out.insert(prefix.to_string(), other.to_string());
            }
        }
    }
    let table = |c: &Config| {
        let mut out = BTreeMap::new();
        if let Ok(v) = toml::Value::try_from(c) {
            flatten("", &v, &mut out);
        }
        out
    };
    let (a, b) = (table(old), table(new));
    let mut keys: Vec<String> = a
        .iter()
        .filter(|(k, v)| b.get(*k) != Some(v))
        .map(|(k, _)| k.clone())
        .chain(b.keys().filter(|k| !a.contains_key(*k)).cloned())
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// What a reload can change in the running daemon.
pub(crate) struct Live {
    pub log_level: Option<LogLevelHook>,
    pub images: Arc<crate::image::images::ImageStore>,
}

/// Reloads on every SIGHUP for the life of the runtime.
pub(crate) fn spawn(
    sources: Sources,
    overrides: Overrides,
    running: Config,
    live: Live,
    notifier: crate::systemd::Notifier,
) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        let mut current = running;
        while hup.recv().await.is_some() {
            notifier.notify("RELOADING=1");
            current = reload(&sources, &overrides, current, &live);
            notifier.notify("READY=1");
        }
    });
    Ok(())
}

fn reload(sources: &Sources, overrides: &Overrides, current: Config, live: &Live) -> Config {
    let loaded = match config::load(sources, overrides) {
        Ok(loaded) => loaded,
        Err(e) => {
            tracing::error!("SIGHUP: the configuration is not reloaded, nothing changes: {e}");
            return current;
        }
    };
    let changed = changed_keys(&current, &loaded.config);
    let mut applied = current.clone();
    for key in &changed {
        if key.starts_with("crio.image.pinned_images") {
            let patterns = &loaded.config.crio.image.pinned_images;
            if applied.crio.image.pinned_images != *patterns {
                live.images
                    .set_pinned(crate::image::pinned::PinnedImages::new(
                        patterns,
                        &current.crio.image.pause_image,
                    ));
                applied.crio.image.pinned_images = patterns.clone();
                tracing::info!("SIGHUP: pinned_images is now {patterns:?}");
            }
        } else if key == "crio.runtime.log_level" {
            let level = &loaded.config.crio.runtime.log_level;
            match live.log_level.as_ref().map(|set| set(level)) {
                Some(Ok(())) => {
                    applied.crio.runtime.log_level = level.clone();
                    tracing::info!("SIGHUP: log_level is now {level}");
                }
                Some(Err(e)) => tracing::warn!("SIGHUP: log_level {level}: {e}"),
                None => tracing::warn!("SIGHUP: log_level changed; CRIO_LOG decides the log level"),
            }
        } else {
            tracing::warn!("SIGHUP: {key} changed; it takes effect at the next start");
        }
    }
    if changed.is_empty() {
        tracing::info!("SIGHUP: the configuration is unchanged");
    }
    applied
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_keys_are_named_by_their_path() {
        let old = Config::default();
        let mut new = old.clone();
        new.crio.runtime.log_level = "debug".into();
        new.crio.image.pinned_images = vec!["x*".into()];
        assert_eq!(
            changed_keys(&old, &new),
            ["crio.image.pinned_images", "crio.runtime.log_level"]
        );
        assert!(changed_keys(&old, &old).is_empty());
    }
}
