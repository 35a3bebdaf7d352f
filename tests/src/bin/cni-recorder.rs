//! A CNI plugin for tests that records what the runtime sends it: each invocation
//! (command, `CNI_*` variables, the config on stdin) is appended as one JSON line
//! to the file its config names in `logFile`. It speaks spec 1.1.0, which Debian's
//! plugins (1.1.1, spec 1.0.0) do not, so STATUS and GC can be driven for real.
//!
//! Config keys: `logFile`, `address` (the CIDR ADD reports), `failStatus` (STATUS
//! reports code 50).

use std::io::{Read, Write};

use serde_json::{json, Value};

fn main() {
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let command = var("CNI_COMMAND");
    if command == "VERSION" {
        println!(r#"{{"cniVersion":"1.1.0","supportedVersions":["0.4.0","1.0.0","1.1.0"]}}"#);
        return;
    }
    let mut stdin = String::new();
    let _ = std::io::stdin().read_to_string(&mut stdin);
    let conf: Value = serde_json::from_str(&stdin).unwrap_or(Value::Null);
    let record = json!({
        "command": command,
        "containerId": var("CNI_CONTAINERID"),
        "netns": var("CNI_NETNS"),
        "ifname": var("CNI_IFNAME"),
        "args": var("CNI_ARGS"),
        "path": var("CNI_PATH"),
        "config": conf,
    });
    if let Some(log) = conf.get("logFile").and_then(Value::as_str) {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            // One write per record: a reader never sees half a line next to another.
            let _ = f.write_all(format!("{record}\n").as_bytes());
        }
    }
    let version = conf.get("cniVersion").cloned().unwrap_or(json!("1.1.0"));
    match command.as_str() {
        "ADD" => {
            let mut result = conf
                .get("prevResult")
                .cloned()
                .unwrap_or_else(|| json!({"cniVersion": version, "interfaces": [], "ips": []}));
            let interfaces = result["interfaces"].as_array().map_or(0, Vec::len);
            if let Some(list) = result["interfaces"].as_array_mut() {
                list.push(json!({"name": var("CNI_IFNAME"), "sandbox": var("CNI_NETNS")}));
            }
            if let (Some(address), Some(list)) = (conf.get("address"), result["ips"].as_array_mut())
            {
                list.push(json!({"address": address, "interface": interfaces}));
            }
            println!("{result}");
        }
        "STATUS" if conf.get("failStatus") == Some(&Value::Bool(true)) => {
            println!(
                "{}",
                json!({"cniVersion": version, "code": 50, "msg": "recorder not ready", "details": "told to fail"})
            );
            std::process::exit(1);
        }
        _ => {}
    }
}
