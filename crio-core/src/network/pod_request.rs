//! What a pod asks of its network, from its `PodSandboxConfig`, as CRI-O passes it
//! to CNI: the `K8S_*` args and the runtime config for the `portMappings`,
//! `bandwidth`, `ips`, `cgroupPath` and `io.kubernetes.cri.pod-annotations`
//! capabilities.

use protocols::cri;
use serde_json::{json, Map, Value};

/// Pod annotations the kubelet sets from the pod's bandwidth annotations.
pub(crate) const INGRESS_BANDWIDTH: &str = "kubernetes.io/ingress-bandwidth";
pub(crate) const EGRESS_BANDWIDTH: &str = "kubernetes.io/egress-bandwidth";
/// Requested addresses for the `ips` capability: a comma-separated list of IPs or
/// CIDRs. Kubernetes has no field for it; this annotation is ours.
pub(crate) const IPS_ANNOTATION: &str = "crio-rs.io/ips";

/// The burst CRI-O gives a bandwidth limit: just under the plugin's 4 GiB cap.
const BANDWIDTH_BURST: u64 = u32::MAX as u64 * 8 - 1;

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("pod annotation {key}: {reason}")]
pub(crate) struct PodRequestError {
    pub key: &'static str,
    pub reason: String,
}

/// `CNI_ARGS` for a pod, as CRI-O and containerd send them.
pub(crate) fn cni_args(meta: &cri::PodSandboxMetadata, pod_id: &str) -> Vec<(String, String)> {
    [
        ("IgnoreUnknown", "1"),
        ("K8S_POD_NAMESPACE", meta.namespace.as_str()),
        ("K8S_POD_NAME", meta.name.as_str()),
        ("K8S_POD_INFRA_CONTAINER_ID", pod_id),
        ("K8S_POD_UID", meta.uid.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The runtime config by capability name. Fails on an annotation that cannot be
/// honoured, before anything of the pod exists.
pub(crate) fn runtime_config(
    config: &cri::PodSandboxConfig,
    cgroup_parent: &str,
) -> Result<Map<String, Value>, PodRequestError> {
    let mut out = Map::new();
    let ports: Vec<Value> = config
        .port_mappings
        .iter()
        .filter(|p| p.host_port > 0)
        .map(|p| {
            let protocol = match cri::Protocol::try_from(p.protocol) {
                Ok(cri::Protocol::Udp) => "udp",
                Ok(cri::Protocol::Sctp) => "sctp",
                _ => "tcp",
            };
            let mut m = json!({
                "hostPort": p.host_port,
                "containerPort": p.container_port,
                "protocol": protocol,
            });
            if !p.host_ip.is_empty() {
                m["hostIP"] = p.host_ip.clone().into();
            }
            m
        })
        .collect();
    if !ports.is_empty() {
        out.insert("portMappings".into(), Value::Array(ports));
    }
    let rate = |key: &'static str| -> Result<Option<u64>, PodRequestError> {
        config
            .annotations
            .get(key)
            .map(|v| {
                parse_quantity(v).map_err(|reason| PodRequestError {
                    key,
                    reason: format!("{v:?}: {reason}"),
                })
            })
            .transpose()
            .map(|r| r.filter(|&bits| bits > 0))
    };
    let (ingress, egress) = (rate(INGRESS_BANDWIDTH)?, rate(EGRESS_BANDWIDTH)?);
    if ingress.is_some() || egress.is_some() {
        let mut bw = Map::new();
        if let Some(r) = ingress {
            bw.insert("ingressRate".into(), r.into());
            bw.insert("ingressBurst".into(), BANDWIDTH_BURST.into());
        }
        if let Some(r) = egress {
            bw.insert("egressRate".into(), r.into());
            bw.insert("egressBurst".into(), BANDWIDTH_BURST.into());
        }
        out.insert("bandwidth".into(), Value::Object(bw));
    }
    if let Some(list) = config.annotations.get(IPS_ANNOTATION) {
        let ips = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|ip| {
                let addr = ip.split_once('/').map_or(ip, |(a, _)| a);
                addr.parse::<std::net::IpAddr>()
                    .map(|_| Value::from(ip))
                    .map_err(|_| PodRequestError {
                        key: IPS_ANNOTATION,
                        reason: format!("{ip:?} is not an IP address or CIDR"),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !ips.is_empty() {
            out.insert("ips".into(), Value::Array(ips));
        }
    }
    if !cgroup_parent.is_empty() {
        out.insert("cgroupPath".into(), cgroup_parent.into());
    }
    out.insert(
        "io.kubernetes.cri.pod-annotations".into(),
        Value::Object(
            config
                .annotations
                .iter()
                .map(|(k, v)| (k.clone(), v.clone().into()))
                .collect(),
        ),
    );
    Ok(out)
}

/// A Kubernetes quantity (`10M`, `1Gi`, `500k`, `1e6`, `1.5M`) as a whole number:
/// bits per second for the bandwidth annotations.
pub(crate) fn parse_quantity(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| "not a Kubernetes quantity (like 10M or 1Gi)".to_string())?;
    let multiplier: f64 = match suffix {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        s if s.starts_with(['e', 'E']) => {
            let exp: i32 = s[1..].parse().map_err(|_| format!("bad exponent {s:?}"))?;
            10f64.powi(exp)
        }
        other => return Err(format!("unknown suffix {other:?}")),
    };
    let value = number * multiplier;
    if !value.is_finite() || value >= u64::MAX as f64 {
        return Err("too large".into());
    }
    Ok(value.ceil() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn pod(annotations: &[(&str, &str)]) -> cri::PodSandboxConfig {
        cri::PodSandboxConfig {
            annotations: annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>(),
            ..Default::default()
        }
    }

    #[test]
    fn port_mappings_with_host_ports_only() {
        let mut config = pod(&[]);
        config.port_mappings = vec![
            cri::PortMapping {
                protocol: cri::Protocol::Tcp as i32,
                container_port: 80,
                host_port: 8080,
                host_ip: "127.0.0.1".into(),
            },
            cri::PortMapping {
                protocol: cri::Protocol::Udp as i32,
                container_port: 53,
                host_port: 5353,
                host_ip: String::new(),
            },
            cri::PortMapping {
                protocol: cri::Protocol::Tcp as i32,
                container_port: 9000,
                host_port: 0,
                host_ip: String::new(),
            },
        ];
        let rc = runtime_config(&config, "").expect("config");
        assert_eq!(
            rc["portMappings"],
            json!([
                {"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": "127.0.0.1"},
                {"hostPort": 5353, "containerPort": 53, "protocol": "udp"}
            ])
        );
        assert!(rc.get("bandwidth").is_none());
        assert!(rc.get("cgroupPath").is_none());
    }

    #[test]
    fn bandwidth_ips_and_cgroup_from_the_pod() {
        let config = pod(&[
            (INGRESS_BANDWIDTH, "10M"),
            (EGRESS_BANDWIDTH, "1Mi"),
            (IPS_ANNOTATION, "10.9.0.7/24, fd85::7"),
        ]);
        let rc = runtime_config(&config, "/kubepods/pod1").expect("config");
        assert_eq!(
            rc["bandwidth"],
            json!({
                "ingressRate": 10_000_000u64, "ingressBurst": BANDWIDTH_BURST,
                "egressRate": 1_048_576u64, "egressBurst": BANDWIDTH_BURST
            })
        );
        assert_eq!(rc["ips"], json!(["10.9.0.7/24", "fd85::7"]));
        assert_eq!(rc["cgroupPath"], "/kubepods/pod1");
        assert_eq!(
            rc["io.kubernetes.cri.pod-annotations"][INGRESS_BANDWIDTH],
            "10M"
        );
    }

    #[test]
    fn bad_annotations_are_refused_by_name() {
        let err = runtime_config(&pod(&[(INGRESS_BANDWIDTH, "fast")]), "").expect_err("bad");
        assert_eq!(err.key, INGRESS_BANDWIDTH);
        assert!(err.to_string().contains("\"fast\""), "{err}");
        let err = runtime_config(&pod(&[(IPS_ANNOTATION, "10.0.0.300")]), "").expect_err("bad");
        assert_eq!(err.key, IPS_ANNOTATION);
    }

    #[test]
    fn quantities() {
        for (text, want) in [
            ("100", 100),
            ("1k", 1000),
            ("1.5M", 1_500_000),
            ("2Gi", 2 << 30),
            ("1e6", 1_000_000),
            ("1E3", 1000),
        ] {
            assert_eq!(parse_quantity(text), Ok(want), "{text}");
        }
        for bad in ["", "M", "10X", "1e", "-5"] {
            assert!(parse_quantity(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn k8s_args() {
        let meta = cri::PodSandboxMetadata {
            name: "web".into(),
            namespace: "prod".into(),
            uid: "u-1".into(),
            attempt: 0,
        };
        let args = cni_args(&meta, "abc");
        let text: Vec<String> = args.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(
            text.join(";"),
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=prod;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=u-1"
        );
    }
}
