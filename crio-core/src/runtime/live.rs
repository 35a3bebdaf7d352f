//! The handler set new pods are started with, replaced whole by a reload, and the
//! handlers pods already running keep when theirs is changed or removed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use super::{Handler, HandlerRegistry};

/// What a reload changed, by handler name.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct HandlerChanges {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    /// Pods that keep the handler they were started with.
    pub kept_for: Vec<String>,
}

/// The live handlers.
#[derive(Debug)]
pub(crate) struct LiveHandlers {
    current: RwLock<Arc<HandlerRegistry>>,
    /// By pod ID: the handler a pod was started with, once a reload changed or
    /// removed it. Dropped with the pod.
    kept: Mutex<HashMap<String, Handler>>,
}

impl LiveHandlers {
    pub(crate) fn new(registry: HandlerRegistry) -> Self {
        Self {
            current: RwLock::new(Arc::new(registry)),
            kept: Mutex::default(),
        }
    }

    /// The set new pods are started with.
    pub(crate) fn current(&self) -> Arc<HandlerRegistry> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The handler of an existing pod (`handler_name` as its record holds it).
    pub(crate) fn for_pod(&self, pod_id: &str, handler_name: &str) -> Option<Handler> {
        let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(handler) = kept.get(pod_id) {
            return Some(handler.clone());
        }
        self.current().resolve(handler_name).cloned()
    }

    /// Replaces the set. `pods` are the existing pods (ID, handler name as
    /// recorded): each whose handler the new set changes or lacks keeps the one it
    /// has.
    pub(crate) fn replace(
        &self,
        next: HandlerRegistry,
        pods: impl IntoIterator<Item = (String, String)>,
    ) -> HandlerChanges {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        let mut changes = HandlerChanges::default();
        for old in current.handlers() {
            match next.resolve(&old.name) {
                None => changes.removed.push(old.name.clone()),
                Some(new) if !new.same_config(old) => changes.changed.push(old.name.clone()),
                Some(_) => {}
            }
        }
        changes.added = next
            .handlers()
            .iter()
            .filter(|h| current.resolve(&h.name).is_none())
            .map(|h| h.name.clone())
            .collect();
        for (pod_id, name) in pods {
            if kept.contains_key(&pod_id) {
                continue;
            }
            let Some(old) = current.resolve(&name) else {
                continue;
            };
            if next.resolve(&name).is_none_or(|new| !new.same_config(old)) {
                kept.insert(pod_id.clone(), old.clone());
                changes.kept_for.push(pod_id);
            }
        }
        *current = Arc::new(next);
        changes
    }

    /// Forgets what a removed pod kept.
    pub(crate) fn forget_pod(&self, pod_id: &str) {
        self.kept
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(pod_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, RuntimeHandler};

    fn registry(handlers: &[(&str, &str)]) -> HandlerRegistry {
        let mut config = Config::default();
        for (name, path) in handlers {
            config.crio.runtime.runtimes.insert(
                name.to_string(),
                RuntimeHandler {
                    runtime_path: path.to_string(),
                    ..Default::default()
                },
            );
        }
        HandlerRegistry::from_config(&config)
    }

    #[test]
    fn running_pods_keep_a_changed_or_removed_handler_new_pods_get_the_new_set() {
        let live = LiveHandlers::new(registry(&[("a", "/bin/a"), ("b", "/bin/b")]));
        let changes = live.replace(
            registry(&[("a", "/bin/a2"), ("c", "/bin/c")]),
            [
                ("pod-a".to_string(), "a".to_string()),
                ("pod-b".to_string(), "b".to_string()),
                ("pod-runc".to_string(), String::new()),
            ],
        );
        assert_eq!(changes.added, ["c"]);
        assert_eq!(changes.changed, ["a"]);
        assert_eq!(changes.removed, ["b"]);
        assert_eq!(
            changes.kept_for,
            ["pod-a", "pod-b"],
            "the default is unchanged"
        );
        let path = |h: Option<Handler>| h.map(|h| h.config.runtime_path);
        assert_eq!(path(live.for_pod("pod-a", "a")).as_deref(), Some("/bin/a"));
        assert_eq!(path(live.for_pod("pod-b", "b")).as_deref(), Some("/bin/b"));
        assert_eq!(path(live.for_pod("new", "a")).as_deref(), Some("/bin/a2"));
        assert!(live.current().resolve("b").is_none(), "no new pod on b");
        live.forget_pod("pod-b");
        assert!(live.for_pod("pod-b", "b").is_none());
        // A second change keeps what the pod was started with, not the interim set.
        live.replace(
            registry(&[("a", "/bin/a3")]),
            [("pod-a".to_string(), "a".to_string())],
        );
        assert_eq!(path(live.for_pod("pod-a", "a")).as_deref(), Some("/bin/a"));
    }
}
