//! The CNI protocol (spec 1.1, with 0.4 and 1.0 lists): running a network list's
//! plugins for ADD, DEL, CHECK, STATUS and GC, chaining results and handing each
//! plugin the runtime config its `capabilities` ask for.

use std::path::PathBuf;

use serde_json::{Map, Value};

use super::cni_config::CniNetwork;
use super::plugin_exec::{PluginExec, PluginRunError};

/// One attachment of a pod to a network.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Attachment {
    pub container_id: String,
    /// The pinned namespace; `None` when it is already gone (a DEL then only
    /// releases what the plugins hold outside it).
    pub netns: Option<PathBuf>,
    pub ifname: String,
    /// `CNI_ARGS` pairs (`K8S_POD_NAME`...).
    pub args: Vec<(String, String)>,
    /// Runtime config by capability name (`portMappings`, `bandwidth`, `ips`...).
    pub runtime_config: Map<String, Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum CniError {
    /// The plugin's own error object (CNI spec "Error").
    #[error("CNI plugin {plugin} failed {command} (code {code}): {msg}{details}")]
    Plugin {
        plugin: String,
        command: &'static str,
        code: u64,
        msg: String,
        /// ": details", or empty.
        details: String,
    },
    #[error("CNI plugin {plugin} failed {command}: {reason}")]
    Run {
        plugin: String,
        command: &'static str,
        reason: String,
    },
}

/// `a >= b` for CNI versions (`major.minor.patch`); an unparsable version is old.
pub(crate) fn version_at_least(a: &str, b: &str) -> bool {
    let parse = |v: &str| -> Option<(u32, u32, u32)> {
        let mut it = v.split('.').map(|p| p.parse::<u32>());
        Some((
            it.next()?.ok()?,
            it.next().unwrap_or(Ok(0)).ok()?,
            it.next().unwrap_or(Ok(0)).ok()?,
        ))
    };
    match (parse(a), parse(b)) {
        (Some(a), Some(b)) => a >= b,
        _ => false,
    }
}

/// Runs a list's plugins. Holds the exec effect and `CNI_PATH`.
#[derive(Debug)]
pub(crate) struct Cni<'a> {
    pub exec: &'a dyn PluginExec,
    pub plugin_dirs: &'a [PathBuf],
}

impl Cni<'_> {
    /// ADD: each plugin in order, each getting the previous one's result; the last
    /// result is the attachment's.
    pub(crate) async fn add(&self, net: &CniNetwork, att: &Attachment) -> Result<Value, CniError> {
        let mut prev: Option<Value> = None;
        for i in 0..net.binaries.len() {
            let conf = plugin_config(net, i, prev.as_ref(), Some(&att.runtime_config));
            let out = self.invoke(net, i, "ADD", Some(att), conf).await?;
            let result: Value = serde_json::from_slice(&out).map_err(|e| CniError::Run {
                plugin: plugin_type(net, i),
                command: "ADD",
                reason: format!("its result is not JSON: {e}"),
            })?;
            prev = Some(result);
        }
        Ok(prev.unwrap_or(Value::Null))
    }

    /// DEL: each plugin in reverse order, with the ADD result as `prevResult`.
    /// Every plugin runs even if one fails (so one broken plugin does not keep the
    /// others' resources), and the first error is returned.
    pub(crate) async fn del(
        &self,
        net: &CniNetwork,
        att: &Attachment,
        added: Option<&Value>,
    ) -> Result<(), CniError> {
        let prev = added.filter(|_| version_at_least(&net.list.cni_version, "0.4.0"));
        let mut first_error = None;
        for i in (0..net.binaries.len()).rev() {
            let conf = plugin_config(net, i, prev, Some(&att.runtime_config));
            if let Err(e) = self.invoke(net, i, "DEL", Some(att), conf).await {
                tracing::warn!("{e}");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// CHECK (0.4.0 and later, unless the list has `disableCheck`): each plugin in
    /// order with the ADD result. `Ok(false)` = not applicable.
    pub(crate) async fn check(
        &self,
        net: &CniNetwork,
        att: &Attachment,
        added: &Value,
    ) -> Result<bool, CniError> {
        if net.list.disable_check || !version_at_least(&net.list.cni_version, "0.4.0") {
            return Ok(false);
        }
        for i in 0..net.binaries.len() {
            let conf = plugin_config(net, i, Some(added), Some(&att.runtime_config));
            self.invoke(net, i, "CHECK", Some(att), conf).await?;
        }
        Ok(true)
    }

    /// STATUS (1.1.0 lists): whether every plugin is ready for ADDs.
    /// `Ok(false)` = not applicable.
    pub(crate) async fn status(&self, net: &CniNetwork) -> Result<bool, CniError> {
        if !version_at_least(&net.list.cni_version, "1.1.0") {
            return Ok(false);
        }
        for i in 0..net.binaries.len() {
            let conf = plugin_config(net, i, None, None);
            self.invoke(net, i, "STATUS", None, conf).await?;
        }
        Ok(true)
    }

    /// GC (1.1.0 lists, unless `disableGC`): plugins release whatever they hold for
    /// attachments not in `valid` (container id, ifname). `Ok(false)` = not applicable.
    pub(crate) async fn gc(
        &self,
        net: &CniNetwork,
        valid: &[(String, String)],
    ) -> Result<bool, CniError> {
        if net.list.disable_gc || !version_at_least(&net.list.cni_version, "1.1.0") {
            return Ok(false);
        }
        let attachments: Vec<Value> = valid
            .iter()
            .map(|(id, ifname)| serde_json::json!({"containerID": id, "ifname": ifname}))
            .collect();
        let mut first_error = None;
        for i in 0..net.binaries.len() {
            let mut conf = plugin_config(net, i, None, None);
            conf.insert(
                "cni.dev/valid-attachments".into(),
                Value::Array(attachments.clone()),
            );
            if let Err(e) = self.invoke(net, i, "GC", None, conf).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(true), Err)
    }

    async fn invoke(
        &self,
        net: &CniNetwork,
        index: usize,
        command: &'static str,
        att: Option<&Attachment>,
        conf: Map<String, Value>,
    ) -> Result<Vec<u8>, CniError> {
        let env = environment(command, att, self.plugin_dirs);
        let stdin = Value::Object(conf).to_string().into_bytes();
        let started = std::time::Instant::now();
        let result = self.exec.run(&net.binaries[index], &env, stdin).await;
        tracing::debug!(
            plugin = %plugin_type(net, index),
            command,
            elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
            ok = result.is_ok(),
            "CNI plugin ran"
        );
        result.map_err(|e| plugin_error(plugin_type(net, index), command, e))
    }
}

fn plugin_type(net: &CniNetwork, index: usize) -> String {
    net.list.types().nth(index).unwrap_or("").to_string()
}

/// The configuration one plugin reads on stdin: its own object plus the list's name
/// and version, the previous result, and the runtime config its capabilities name.
pub(super) fn plugin_config(
    net: &CniNetwork,
    index: usize,
    prev: Option<&Value>,
    runtime: Option<&Map<String, Value>>,
) -> Map<String, Value> {
    let mut conf = net.list.plugins[index].clone();
    conf.insert("name".into(), net.list.name.clone().into());
    conf.insert("cniVersion".into(), net.list.cni_version.clone().into());
    conf.remove("prevResult");
    conf.remove("runtimeConfig");
    if let Some(prev) = prev {
        conf.insert("prevResult".into(), prev.clone());
    }
    if let (Some(runtime), Some(Value::Object(caps))) = (runtime, conf.get("capabilities")) {
        let granted: Map<String, Value> = runtime
            .iter()
            .filter(|(k, _)| caps.get(k.as_str()) == Some(&Value::Bool(true)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !granted.is_empty() {
            conf.insert("runtimeConfig".into(), Value::Object(granted));
        }
    }
    conf
}

/// The CNI_* variables: STATUS and GC get only the command and the path.
fn environment(
    command: &'static str,
    att: Option<&Attachment>,
    plugin_dirs: &[PathBuf],
) -> Vec<(&'static str, String)> {
    let path = plugin_dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    let mut env = vec![("CNI_COMMAND", command.to_string()), ("CNI_PATH", path)];
    if let Some(att) = att {
        let args = att
            .args
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(";");
        env.extend([
            ("CNI_CONTAINERID", att.container_id.clone()),
            (
                "CNI_NETNS",
                att.netns
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            ),
            ("CNI_IFNAME", att.ifname.clone()),
            ("CNI_ARGS", args),
        ]);
    }
    env
}

/// A failed run as the plugin explained it: its error object's code, msg and
/// details when it printed one, else its stderr.
fn plugin_error(plugin: String, command: &'static str, err: PluginRunError) -> CniError {
    match err {
        PluginRunError::Io(e) => CniError::Run {
            plugin,
            command,
            reason: e.to_string(),
        },
        PluginRunError::Failed {
            status,
            stdout,
            stderr,
        } => {
            let object: Option<Map<String, Value>> = serde_json::from_slice(&stdout).ok();
            match object {
                Some(obj) if obj.contains_key("code") || obj.contains_key("msg") => {
                    let details = obj
                        .get("details")
                        .and_then(Value::as_str)
                        .filter(|d| !d.is_empty())
                        .map(|d| format!(": {d}"))
                        .unwrap_or_default();
                    CniError::Plugin {
                        plugin,
                        command,
                        code: obj.get("code").and_then(Value::as_u64).unwrap_or(0),
                        msg: obj
                            .get("msg")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                        details,
                    }
                }
                _ => {
                    let text =
                        String::from_utf8_lossy(if stderr.is_empty() { &stdout } else { &stderr })
                            .trim()
                            .to_string();
                    CniError::Run {
                        plugin,
                        command,
                        reason: format!(
                            "exit status {}: {text}",
                            status.map_or("signal".to_string(), |s| s.to_string())
                        ),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "cni_tests.rs"]
mod tests;
