//! Loading CNI network configurations from `network_dir`, as libcni does: files ending
//! in `.conflist`, `.conf` or `.json`, in lexical order; the first valid one is the
//! default unless `cni_default_network` names another.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A usable CNI network: its conflist and the plugin binaries it needs, all present.
#[derive(Debug, Clone, PartialEq)]
pub struct CniNetwork {
    pub name: String,
    pub file: PathBuf,
    pub cni_version: String,
    /// Each plugin `type` resolved to its binary.
    pub plugins: Vec<PathBuf>,
}

/// Why no network is ready.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CniConfigError {
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
}

#[derive(Deserialize)]
struct RawList {
    #[serde(default, rename = "cniVersion")]
    cni_version: String,
    name: String,
    #[serde(default)]
    plugins: Vec<RawPlugin>,
    /// A single-plugin `.conf` has its `type` at the top level.
    #[serde(default, rename = "type")]
    plugin_type: Option<String>,
}

#[derive(Deserialize)]
struct RawPlugin {
    #[serde(rename = "type")]
    plugin_type: String,
}

/// Finds the network to use. Invalid files are skipped, as libcni skips them;
/// `wanted` empty = the first valid file.
pub fn find_network(
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
        let raw: RawList = serde_json::from_slice(&std::fs::read(file).ok()?).ok()?;
        let types: Vec<String> = match raw.plugin_type {
            Some(t) if raw.plugins.is_empty() => vec![t],
            _ => raw.plugins.into_iter().map(|p| p.plugin_type).collect(),
        };
        if types.is_empty() || (!wanted.is_empty() && raw.name != wanted) {
            return None;
        }
        Some((file.clone(), raw.name, raw.cni_version, types))
    });
    let Some((file, name, cni_version, types)) = candidate else {
        return Err(if wanted.is_empty() {
            CniConfigError::NoConfig(dir.to_path_buf())
        } else {
            CniConfigError::NamedNetworkMissing {
                name: wanted.to_string(),
                dir: dir.to_path_buf(),
            }
        });
    };
    let mut plugins = Vec::new();
    for plugin in types {
        let found = plugin_dirs
            .iter()
            .map(|d| d.join(&plugin))
            .find(|p| p.is_file());
        match found {
            Some(path) => plugins.push(path),
            None => {
                return Err(CniConfigError::PluginMissing {
                    file,
                    plugin,
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
        name,
        file,
        cni_version,
        plugins,
    })
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
        assert_eq!(net.name, "pods");
        assert_eq!(net.plugins, [bin.join("bridge"), bin.join("portmap")]);
        let other = find_network(&conf, std::slice::from_ref(&bin), "other").expect("named");
        assert_eq!(other.cni_version, "0.4.0");
        assert!(matches!(
            find_network(&conf, &[bin], "missing"),
            Err(CniConfigError::NamedNetworkMissing { .. })
        ));
    }
}
