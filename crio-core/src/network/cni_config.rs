//! Loading CNI network configurations from `network_dir`, as libcni does: files ending
//! in `.conflist`, `.conf` or `.json`, in lexical order; the first valid one is the
//! default unless `cni_default_network` names another. A single-plugin `.conf` is
//! read as a list of one.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// A network configuration list, as loaded (and as cached in a pod's record so its
/// teardown uses the configuration its setup used, as libcni's cache does).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NetworkList {
    pub name: String,
    pub cni_version: String,
    pub disable_check: bool,
    pub disable_gc: bool,
    /// Each plugin's configuration object, in order (each has a string `type`).
    pub plugins: Vec<Map<String, Value>>,
}

/// A usable CNI network: its list and the plugin binaries it needs, all present.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CniNetwork {
    pub list: NetworkList,
    /// Where the list was read from (empty for a cached list).
    pub file: PathBuf,
    /// Each plugin's binary, in the list's order.
    pub binaries: Vec<PathBuf>,
}

impl CniNetwork {
    pub(crate) fn name(&self) -> &str {
        &self.list.name
    }
}

/// Why no network is ready.
#[derive(Debug, thiserror::Error, PartialEq)]
pub(crate) enum CniConfigError {
    #[error("no CNI configuration file in {0}; has your network provider started?")]
    NoConfig(PathBuf),
    #[error("CNI network {name:?} not found in {dir}")]
    NamedNetworkMissing { name: String, dir: PathBuf },
    #[error("CNI config {file}: plugin {plugin:?} not found in {dirs}")]
    PluginMissing {
        file: PathBuf,
        plugin: String,
        dirs: String,
    },
    #[error("CNI config {file}: {reason}")]
    Invalid { file: PathBuf, reason: String },
}

impl NetworkList {
    /// Parses a `.conflist`, or a `.conf` holding one plugin.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, String> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let Value::Object(mut top) = value else {
            return Err("not a JSON object".into());
        };
        let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_string();
        let name = text(top.get("name"));
        if name.is_empty() {
            return Err("\"name\" is missing".into());
        }
        let cni_version = text(top.get("cniVersion"));
        let flag = |top: &Map<String, Value>, key: &str| {
            top.get(key).and_then(Value::as_bool).unwrap_or(false)
        };
        let disable_check = flag(&top, "disableCheck");
        let disable_gc = flag(&top, "disableGC");
        let plugins = match top.remove("plugins") {
            Some(Value::Array(items)) => items
                .into_iter()
                .map(|item| match item {
                    Value::Object(map) => Ok(map),
                    _ => Err("a plugin is not a JSON object".to_string()),
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(_) => return Err("\"plugins\" is not a list".into()),
            // A `.conf`: the whole object is the one plugin.
            None if top.contains_key("type") => vec![top],
            None => return Err("no \"plugins\" and no \"type\"".into()),
        };
        if plugins.is_empty() {
            return Err("\"plugins\" is empty".into());
        }
        if let Some(i) = plugins.iter().position(|p| {
            p.get("type")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
        }) {
            return Err(format!("plugin {i} has no \"type\""));
        }
        Ok(Self {
            name,
            cni_version,
            disable_check,
            disable_gc,
            plugins,
        })
    }

    /// The plugin types, in order.
    pub(crate) fn types(&self) -> impl Iterator<Item = &str> {
        self.plugins
            .iter()
            .map(|p| p.get("type").and_then(Value::as_str).unwrap_or(""))
    }

    /// The list as a `.conflist` document (what a pod's record caches).
    pub(crate) fn to_json(&self) -> String {
        let mut top = Map::new();
        top.insert("cniVersion".into(), self.cni_version.clone().into());
        top.insert("name".into(), self.name.clone().into());
        if self.disable_check {
            top.insert("disableCheck".into(), true.into());
        }
        if self.disable_gc {
            top.insert("disableGC".into(), true.into());
        }
        top.insert(
            "plugins".into(),
            Value::Array(self.plugins.iter().cloned().map(Value::Object).collect()),
        );
        Value::Object(top).to_string()
    }

    /// Finds every plugin's binary in `plugin_dirs`.
    pub(crate) fn resolve(
        self,
        file: &Path,
        plugin_dirs: &[PathBuf],
    ) -> Result<CniNetwork, CniConfigError> {
        let mut binaries = Vec::new();
        for plugin in self.types() {
            let found = plugin_dirs
                .iter()
                .map(|d| d.join(plugin))
                .find(|p| p.is_file());
            match found {
                Some(path) => binaries.push(path),
                None => {
                    return Err(CniConfigError::PluginMissing {
                        file: file.to_path_buf(),
                        plugin: plugin.to_string(),
                        dirs: plugin_dirs
                            .iter()
                            .map(|d| d.display().to_string())
                            .collect::<Vec<_>>()
                            .join(":"),
                    })
                }
            }
        }
        Ok(CniNetwork {
            list: self,
            file: file.to_path_buf(),
            binaries,
        })
    }
}

/// Finds the network to use. Invalid files are skipped, as libcni skips them;
/// `wanted` empty = the first valid file.
pub(crate) fn find_network(
    dir: &Path,
    plugin_dirs: &[PathBuf],
    wanted: &str,
) -> Result<CniNetwork, CniConfigError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension()
                        .is_some_and(|e| e == "conflist" || e == "conf" || e == "json")
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let candidate = files.iter().find_map(|file| {
        let list = match NetworkList::parse(&std::fs::read(file).ok()?) {
            Ok(list) => list,
            Err(reason) => {
                tracing::debug!(file = %file.display(), "skipping CNI config: {reason}");
                return None;
            }
        };
        (wanted.is_empty() || list.name == wanted).then(|| (file.clone(), list))
    });
    let Some((file, list)) = candidate else {
        return Err(if wanted.is_empty() {
            CniConfigError::NoConfig(dir.to_path_buf())
        } else {
            CniConfigError::NamedNetworkMissing {
                name: wanted.to_string(),
                dir: dir.to_path_buf(),
            }
        });
    };
    list.resolve(&file, plugin_dirs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let conf = tmp.path().join("net.d");
        let bin = tmp.path().join("bin");
        std::fs::create_dir_all(&conf).expect("mkdir");
        std::fs::create_dir_all(&bin).expect("mkdir");
        (tmp, conf, bin)
    }

    const LIST: &str =
        r#"{"cniVersion":"1.0.0","name":"pods","plugins":[{"type":"bridge"},{"type":"portmap"}]}"#;

    #[test]
    fn empty_dir_is_not_ready() {
        let (_t, conf, bin) = setup();
        let err = find_network(&conf, &[bin], "").expect_err("empty");
        assert_eq!(err, CniConfigError::NoConfig(conf));
    }

    #[test]
    fn first_valid_file_wins_and_plugins_resolve() {
        let (_t, conf, bin) = setup();
        std::fs::write(conf.join("05-broken.conflist"), "{").expect("write");
        std::fs::write(conf.join("10-pods.conflist"), LIST).expect("write");
        std::fs::write(
            conf.join("20-other.conf"),
            r#"{"cniVersion":"0.4.0","name":"other","type":"bridge"}"#,
        )
        .expect("write");
        let err = find_network(&conf, std::slice::from_ref(&bin), "").expect_err("no plugins");
        assert!(
            matches!(&err, CniConfigError::PluginMissing { plugin, .. } if plugin == "bridge"),
            "{err}"
        );
        std::fs::write(bin.join("bridge"), "").expect("write");
        std::fs::write(bin.join("portmap"), "").expect("write");
        let net = find_network(&conf, std::slice::from_ref(&bin), "").expect("ready");
        assert_eq!(net.name(), "pods");
        assert_eq!(net.binaries, [bin.join("bridge"), bin.join("portmap")]);
        let other = find_network(&conf, std::slice::from_ref(&bin), "other").expect("named");
        assert_eq!(other.list.cni_version, "0.4.0");
        assert_eq!(other.list.types().collect::<Vec<_>>(), ["bridge"]);
        assert!(matches!(
            find_network(&conf, &[bin], "missing"),
            Err(CniConfigError::NamedNetworkMissing { .. })
        ));
    }

    #[test]
    fn a_list_round_trips_through_its_cached_form() {
        let list = NetworkList::parse(
            br#"{"cniVersion":"1.0.0","name":"n","disableCheck":true,"plugins":[{"type":"bridge","bridge":"b0"}]}"#,
        )
        .expect("parse");
        assert!(list.disable_check && !list.disable_gc);
        let again = NetworkList::parse(list.to_json().as_bytes()).expect("reparse");
        assert_eq!(again, list);
    }

    #[test]
    fn malformed_lists_say_what_is_wrong() {
        for (text, want) in [
            (r#"[]"#, "not a JSON object"),
            (r#"{"plugins":[{"type":"x"}]}"#, "\"name\" is missing"),
            (r#"{"name":"n","plugins":[]}"#, "\"plugins\" is empty"),
            (
                r#"{"name":"n","plugins":[{"type":""}]}"#,
                "plugin 0 has no \"type\"",
            ),
            (r#"{"name":"n"}"#, "no \"plugins\" and no \"type\""),
        ] {
            assert_eq!(NetworkList::parse(text.as_bytes()).expect_err(text), want);
        }
    }
}
