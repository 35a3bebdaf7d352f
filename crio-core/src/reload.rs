//! Reloading the configuration files. On SIGHUP, what CRI-O reloads is applied
//! live: `log_level`, the pause image (`pause_image`, `pause_image_auth_file`,
//! `pause_command`), the default seccomp and AppArmor profiles, `pinned_images` and
//! the runtime handlers. A change to the files themselves (watched) applies the
//! runtime handlers at once and names the SIGHUP keys as waiting for a signal.
//! Every other changed key is named in a warning saying it takes effect at the
//! next start. A configuration that no longer loads leaves everything as it is,
//! with the error (file, line, key) logged.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::{self, Config, LiveConfig, Overrides, Sources};
use crate::pods::{NodeDefaults, PodRuntime};
use crate::runtime::HandlerRegistry;
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
    pub pods: Arc<PodRuntime>,
    pub config: Arc<LiveConfig>,
    /// Whether the host has AppArmor (fixed): node defaults are loaded for it.
    pub apparmor: bool,
}

/// What asked for a reload.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Trigger {
    Signal,
    Files,
}

/// What a SIGHUP applies live, copied from `next` (as CRI-O reloads it); the
/// runtime handlers are [`copy_handlers`]'.
fn copy_signal_keys(into: &mut Config, next: &Config) {
    let (r, n) = (&mut into.crio.runtime, &next.crio.runtime);
    r.log_level = n.log_level.clone();
    r.seccomp_profile = n.seccomp_profile.clone();
    r.privileged_seccomp_profile = n.privileged_seccomp_profile.clone();
    r.apparmor_profile = n.apparmor_profile.clone();
    let (i, n) = (&mut into.crio.image, &next.crio.image);
    i.pause_image = n.pause_image.clone();
    i.pause_image_auth_file = n.pause_image_auth_file.clone();
    i.pause_command = n.pause_command.clone();
    i.pinned_images = n.pinned_images.clone();
}

/// The runtime handlers, which a change to the files applies as well as a SIGHUP.
fn copy_handlers(into: &mut Config, next: &Config) {
    let (r, n) = (&mut into.crio.runtime, &next.crio.runtime);
    r.runtimes = n.runtimes.clone();
    r.default_runtime = n.default_runtime.clone();
}

/// Reloads on every SIGHUP and every change to the configuration files, one at a
/// time, for the life of the runtime.
pub(crate) fn spawn(
    sources: Sources,
    overrides: Overrides,
    live: Live,
    notifier: crate::systemd::Notifier,
) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup())?;
    let mut files = config::watch::changes(&sources)?;
    tokio::spawn(async move {
        let mut watching = true;
        loop {
            let trigger = tokio::select! {
                signal = hup.recv() => match signal {
                    Some(()) => Trigger::Signal,
                    None => return,
                },
                change = files.recv(), if watching => match change {
                    Some(()) => {
                        // Editors and tools write a file in steps: settle first.
                        tokio::time::sleep(SETTLE).await;
                        while files.try_recv().is_ok() {}
                        Trigger::Files
                    }
                    None => {
                        watching = false;
                        continue;
                    }
                },
            };
            if trigger == Trigger::Signal {
                notifier.notify("RELOADING=1");
            }
            reload(trigger, &sources, &overrides, &live).await;
            if trigger == Trigger::Signal {
                notifier.notify("READY=1");
            }
        }
    });
    Ok(())
}

/// How long changes to the files settle before they are read.
const SETTLE: std::time::Duration = std::time::Duration::from_millis(200);

async fn reload(trigger: Trigger, sources: &Sources, overrides: &Overrides, live: &Live) {
    let what = match trigger {
        Trigger::Signal => "SIGHUP",
        Trigger::Files => "configuration files changed",
    };
    let next = match config::load(sources, overrides) {
        Ok(loaded) => loaded.config,
        Err(e) => {
            tracing::error!("{what}: the configuration is not reloaded, nothing changes: {e}");
            return;
        }
    };
    let current = live.config.current();
    let changed = changed_keys(&current, &next);
    if changed.is_empty() {
        tracing::info!("{what}: the configuration is unchanged");
        return;
    }
    let signal = trigger == Trigger::Signal;
    // Which changed keys each kind of reload applies, derived from what it copies.
    let mut with_signal = (*current).clone();
    copy_signal_keys(&mut with_signal, &next);
    let mut with_handlers = (*current).clone();
    copy_handlers(&mut with_handlers, &next);
    let (signal_keys, handler_keys) = (
        changed_keys(&current, &with_signal),
        changed_keys(&current, &with_handlers),
    );
    for key in changed.iter().filter(|k| !handler_keys.contains(k)) {
        if !signal_keys.contains(key) {
            tracing::warn!("{what}: {key} changed; it takes effect at the next start");
        } else if !signal {
            tracing::info!("{what}: {key} changed; a SIGHUP applies it");
        }
    }
    let mut wanted = if signal {
        with_signal
    } else {
        (*current).clone()
    };
    copy_handlers(&mut wanted, &next);
    // The log level is the logger's to change (below), once the rest applied.
    wanted.crio.runtime.log_level = current.crio.runtime.log_level.clone();
    if let Err(e) = apply(what, &current, &wanted, live).await {
        tracing::error!("{what}: nothing changes: {e}");
        return;
    }
    if signal && next.crio.runtime.log_level != current.crio.runtime.log_level {
        let level = &next.crio.runtime.log_level;
        match live.log_level.as_ref().map(|set| set(level)) {
            Some(Ok(())) => {
                wanted.crio.runtime.log_level = level.clone();
                tracing::info!("{what}: log_level is now {level}");
            }
            Some(Err(e)) => tracing::warn!("{what}: log_level {level}: {e}"),
            None => tracing::warn!("{what}: log_level changed; CRIO_LOG decides the log level"),
        }
    }
    live.config.replace(wanted);
}

/// Puts `wanted`'s node defaults, handlers and pinned images in place of
/// `current`'s: all of them or, when one does not load, none.
async fn apply(what: &str, current: &Config, wanted: &Config, live: &Live) -> Result<(), String> {
    let (r, w) = (&current.crio.runtime, &wanted.crio.runtime);
    // Node defaults come from the runtime table (handlers' own seccomp profiles
    // too) and the pause command.
    let node_changed =
        r != w || current.crio.image.pause_command != wanted.crio.image.pause_command;
    let node = if node_changed {
        let node = NodeDefaults::load(&wanted.crio.runtime, &wanted.crio.image, live.apparmor)
            .map_err(|e| e.to_string())?;
        Some(node)
    } else {
        None
    };
    let handlers_changed = r.runtimes != w.runtimes || r.default_runtime != w.default_runtime;
    let handlers = if handlers_changed {
        let running = live.pods.handlers.current();
        Some(
            HandlerRegistry::from_config(wanted)
                .probed(Some(&running))
                .await,
        )
    } else {
        None
    };
    if let Some(handlers) = handlers {
        let changes = live
            .pods
            .replace_handlers(handlers)
            .map_err(|e| e.to_string())?;
        tracing::info!(
            added = ?changes.added,
            changed = ?changes.changed,
            removed = ?changes.removed,
            pods_keeping_theirs = changes.kept_for.len(),
            default = %wanted.crio.runtime.default_runtime,
            "{what}: runtime handlers reloaded"
        );
    }
    if let Some(node) = node {
        live.pods.config.node.replace(node);
        tracing::info!("{what}: the node's default profiles and pause command are reloaded");
    }
    let (old, new) = (&current.crio.image, &wanted.crio.image);
    if old.pinned_images != new.pinned_images || old.pause_image != new.pause_image {
        live.images
            .set_pinned(crate::image::pinned::PinnedImages::new(
                &new.pinned_images,
                &new.pause_image,
            ));
        tracing::info!(
            "{what}: pinned images are now {:?} and the pause image {:?}",
            new.pinned_images,
            new.pause_image
        );
    }
    Ok(())
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

    #[test]
    fn a_signal_applies_what_cri_o_reloads_and_files_the_handlers() {
        let old = Config::default();
        let mut next = old.clone();
        next.crio.runtime.seccomp_profile = "/p.json".into();
        next.crio.runtime.default_env = vec!["A=1".into()];
        next.crio.runtime.default_runtime = "crun".into();
        let mut with_signal = old.clone();
        copy_signal_keys(&mut with_signal, &next);
        assert_eq!(
            changed_keys(&old, &with_signal),
            ["crio.runtime.seccomp_profile"]
        );
        let mut with_handlers = old.clone();
        copy_handlers(&mut with_handlers, &next);
        assert_eq!(
            changed_keys(&old, &with_handlers),
            ["crio.runtime.default_runtime"]
        );
    }
}
