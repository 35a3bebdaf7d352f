use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{json, Map, Value};

use super::*;
use crate::network::cni_config::NetworkList;

/// Records every run and answers from a script: (binary name, command) -> outcome.
#[derive(Debug, Default)]
struct FakeExec {
    calls: Mutex<Vec<Call>>,
    fail: Option<(&'static str, &'static str, &'static [u8])>,
}

#[derive(Debug, Clone)]
struct Call {
    plugin: String,
    env: Vec<(&'static str, String)>,
    conf: Value,
}

impl Call {
    fn env(&self, key: &str) -> &str {
        self.env
            .iter()
            .find(|(k, _)| *k == key)
            .map_or("", |(_, v)| v.as_str())
    }
}

#[async_trait::async_trait]
impl PluginExec for FakeExec {
    async fn run(
        &self,
        binary: &Path,
        env: &[(&'static str, String)],
        stdin: Vec<u8>,
    ) -> Result<Vec<u8>, PluginRunError> {
        let plugin = binary
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let conf: Value = serde_json::from_slice(&stdin).expect("plugin config is JSON");
        let call = Call {
            plugin: plugin.clone(),
            env: env.to_vec(),
            conf: conf.clone(),
        };
        let command = call.env("CNI_COMMAND").to_string();
        self.calls.lock().expect("calls").push(call);
        if let Some((p, c, out)) = self.fail {
            if p == plugin && c == command {
                return Err(PluginRunError::Failed {
                    status: Some(1),
                    stdout: out.to_vec(),
                    stderr: b"stderr text".to_vec(),
                });
            }
        }
        // Each plugin appends its own IP to the previous result.
        let mut result = conf
            .get("prevResult")
            .cloned()
            .unwrap_or_else(|| json!({"cniVersion": "1.0.0", "ips": []}));
        if command == "ADD" {
            let n = result["ips"].as_array().map_or(0, Vec::len);
            result["ips"]
                .as_array_mut()
                .expect("ips")
                .push(json!({"address": format!("10.0.0.{}/24", n + 2)}));
            Ok(result.to_string().into_bytes())
        } else {
            Ok(Vec::new())
        }
    }
}

fn network(version: &str, extra: Value) -> CniNetwork {
    let mut list = json!({
        "cniVersion": version,
        "name": "pods",
        "plugins": [
            {"type": "bridge", "bridge": "b0", "prevResult": "stale", "runtimeConfig": {"x": 1}},
            {"type": "portmap", "capabilities": {"portMappings": true, "bandwidth": false}},
        ]
    });
    if let (Value::Object(l), Value::Object(e)) = (&mut list, extra) {
        l.extend(e);
    }
    let list = NetworkList::parse(list.to_string().as_bytes()).expect("parse");
    CniNetwork {
        binaries: list
            .types()
            .map(|t| PathBuf::from("/cni").join(t))
            .collect(),
        list,
        file: PathBuf::from("/net.d/pods.conflist"),
    }
}

fn attachment() -> Attachment {
    let mut runtime = Map::new();
    runtime.insert("portMappings".into(), json!([{"hostPort": 8080}]));
    runtime.insert("bandwidth".into(), json!({"ingressRate": 1000}));
    Attachment {
        container_id: "pod1".into(),
        netns: Some(PathBuf::from("/run/netns/pod1")),
        ifname: "eth0".into(),
        args: vec![
            ("IgnoreUnknown".into(), "1".into()),
            ("K8S_POD_NAME".into(), "web".into()),
        ],
        runtime_config: runtime,
    }
}

fn cni(exec: &FakeExec) -> Cni<'_> {
    const DIRS: &[PathBuf] = &[];
    Cni {
        exec,
        plugin_dirs: DIRS,
    }
}

#[tokio::test]
async fn add_chains_results_and_grants_only_declared_capabilities() {
    let exec = FakeExec::default();
    let net = network("1.0.0", json!({}));
    let result = cni(&exec).add(&net, &attachment()).await.expect("add");
    assert_eq!(
        result["ips"],
        json!([{"address": "10.0.0.2/24"}, {"address": "10.0.0.3/24"}])
    );
    let calls = exec.calls.lock().expect("calls").clone();
    assert_eq!(calls.len(), 2);
    let (bridge, portmap) = (&calls[0], &calls[1]);
    assert_eq!(bridge.plugin, "bridge");
    assert_eq!(bridge.env("CNI_COMMAND"), "ADD");
    assert_eq!(bridge.env("CNI_CONTAINERID"), "pod1");
    assert_eq!(bridge.env("CNI_NETNS"), "/run/netns/pod1");
    assert_eq!(bridge.env("CNI_IFNAME"), "eth0");
    assert_eq!(bridge.env("CNI_ARGS"), "IgnoreUnknown=1;K8S_POD_NAME=web");
    assert_eq!(bridge.conf["name"], "pods");
    assert_eq!(bridge.conf["cniVersion"], "1.0.0");
    // Nothing stale from the file reaches the plugin; no capabilities, no runtime config.
    assert!(bridge.conf.get("prevResult").is_none(), "{}", bridge.conf);
    assert!(
        bridge.conf.get("runtimeConfig").is_none(),
        "{}",
        bridge.conf
    );
    assert_eq!(
        portmap.conf["prevResult"]["ips"],
        json!([{"address": "10.0.0.2/24"}])
    );
    assert_eq!(
        portmap.conf["runtimeConfig"],
        json!({"portMappings": [{"hostPort": 8080}]}),
        "bandwidth is declared false"
    );
}

#[tokio::test]
async fn del_runs_in_reverse_with_the_add_result_and_keeps_going_on_errors() {
    let exec = FakeExec {
        fail: Some((
            "portmap",
            "DEL",
            b"{\"code\":999,\"msg\":\"iptables gone\"}",
        )),
        ..Default::default()
    };
    let net = network("0.4.0", json!({}));
    let added = json!({"cniVersion": "0.4.0", "ips": [{"version": "4", "address": "10.0.0.2/24"}]});
    let mut att = attachment();
    att.netns = None;
    let err = cni(&exec)
        .del(&net, &att, Some(&added))
        .await
        .expect_err("portmap fails");
    assert_eq!(
        err.to_string(),
        "CNI plugin portmap failed DEL (code 999): iptables gone"
    );
    let calls = exec.calls.lock().expect("calls").clone();
    let order: Vec<&str> = calls.iter().map(|c| c.plugin.as_str()).collect();
    assert_eq!(order, ["portmap", "bridge"], "bridge still releases its IP");
    assert!(calls.iter().all(|c| c.conf["prevResult"] == added));
    assert!(calls.iter().all(|c| c.env("CNI_NETNS").is_empty()));
}

#[tokio::test]
async fn del_of_an_old_list_has_no_prev_result() {
    let exec = FakeExec::default();
    let net = network("0.3.1", json!({}));
    cni(&exec)
        .del(&net, &attachment(), Some(&json!({"ips": []})))
        .await
        .expect("del");
    assert!(exec
        .calls
        .lock()
        .expect("calls")
        .iter()
        .all(|c| c.conf.get("prevResult").is_none()));
}

#[tokio::test]
async fn check_status_and_gc_follow_the_list_version() {
    let added = json!({"ips": []});
    let old = network("0.3.1", json!({}));
    let exec = FakeExec::default();
    assert!(!cni(&exec)
        .check(&old, &attachment(), &added)
        .await
        .expect("check"));
    assert!(!cni(&exec).status(&old).await.expect("status"));
    assert!(!cni(&exec).gc(&old, &[]).await.expect("gc"));
    let disabled = network("1.1.0", json!({"disableCheck": true, "disableGC": true}));
    assert!(!cni(&exec)
        .check(&disabled, &attachment(), &added)
        .await
        .expect("check"));
    assert!(!cni(&exec).gc(&disabled, &[]).await.expect("gc"));
    assert!(exec.calls.lock().expect("calls").is_empty());

    let net = network("1.1.0", json!({}));
    assert!(cni(&exec)
        .check(&net, &attachment(), &added)
        .await
        .expect("check"));
    assert!(cni(&exec).status(&net).await.expect("status"));
    let valid = [("pod1".to_string(), "eth0".to_string())];
    assert!(cni(&exec).gc(&net, &valid).await.expect("gc"));
    let calls = exec.calls.lock().expect("calls").clone();
    let commands: Vec<&str> = calls.iter().map(|c| c.env("CNI_COMMAND")).collect();
    assert_eq!(commands, ["CHECK", "CHECK", "STATUS", "STATUS", "GC", "GC"]);
    assert!(calls[..2].iter().all(|c| c.conf["prevResult"] == added));
    // STATUS and GC are not about one container.
    for call in &calls[2..] {
        assert_eq!(call.env("CNI_CONTAINERID"), "");
        assert!(call.conf.get("runtimeConfig").is_none());
    }
    assert_eq!(
        calls[4].conf["cni.dev/valid-attachments"],
        json!([{"containerID": "pod1", "ifname": "eth0"}])
    );
}

#[tokio::test]
async fn a_failure_names_the_plugin_and_its_message() {
    let exec = FakeExec {
        fail: Some((
            "bridge",
            "ADD",
            b"{\"cniVersion\":\"1.0.0\",\"code\":11,\"msg\":\"no IP addresses available\",\"details\":\"range 10.0.0.0/30\"}",
        )),
        ..Default::default()
    };
    let err = cni(&exec)
        .add(&network("1.0.0", json!({})), &attachment())
        .await
        .expect_err("fails");
    assert_eq!(
        err.to_string(),
        "CNI plugin bridge failed ADD (code 11): no IP addresses available: range 10.0.0.0/30"
    );
    let exec = FakeExec {
        fail: Some(("bridge", "ADD", b"panic: runtime error")),
        ..Default::default()
    };
    let err = cni(&exec)
        .add(&network("1.0.0", json!({})), &attachment())
        .await
        .expect_err("fails");
    assert_eq!(
        err.to_string(),
        "CNI plugin bridge failed ADD: exit status 1: stderr text"
    );
}

#[test]
fn versions_compare_numerically() {
    assert!(version_at_least("1.0.0", "0.4.0"));
    assert!(version_at_least("0.10.0", "0.4.0"));
    assert!(version_at_least("1.1.0", "1.1.0"));
    assert!(version_at_least("1.1", "1.1.0"));
    assert!(!version_at_least("0.3.1", "0.4.0"));
    assert!(!version_at_least("", "0.4.0"));
}
