//! The pod's network for its VM: in the pod's network namespace (which CNI has
//! set up before the sandbox task is created), each interface gets a tap the
//! hypervisor's NIC uses, tied to it by tc redirects; the guest NIC gets the
//! interface's MAC, and the agent gives it the interface's addresses and routes.
//! The interface keeps its addresses in the namespace: frames arriving on it go to
//! the tap before the namespace's own stack sees them.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use kata_net::rtnl::Rtnl;
use kata_net::scan::PodNetwork;
use kata_net::{mac_text, tap, NetError};
use protocols::agent;

/// A tap's name: the index of the pod interface it serves, and our suffix.
pub fn tap_name(index: usize) -> String {
    format!("tap{index}_kata")
}

fn is_tap(name: &str) -> bool {
    name.starts_with("tap") && name.ends_with("_kata")
}

/// The pod's interfaces, with a tap for each (same order), the taps tied to them.
#[derive(Debug)]
pub struct PodNics {
    pub network: PodNetwork,
    pub taps: Vec<OwnedFd>,
}

/// The network namespace a pod's spec (its `config.json`) names, if any: `None`
/// for a pod in the host's network.
pub fn netns_of(spec: &serde_json::Value) -> Option<PathBuf> {
    spec.pointer("/linux/namespaces")?
        .as_array()?
        .iter()
        .find(|ns| ns.get("type").and_then(|t| t.as_str()) == Some("network"))?
        .get("path")?
        .as_str()
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
}

/// Reads the pod's network in `netns` and makes a tap for each interface, tied to
/// it. Blocking (rtnetlink on a thread in the namespace).
pub fn prepare(netns: &Path) -> Result<PodNics, NetError> {
    kata_net::netns::run_in(netns, || {
        let mut rtnl = Rtnl::open()?;
        let existing: Vec<String> = rtnl
            .links()?
            .into_iter()
            .map(|l| l.name)
            .filter(|n| is_tap(n))
            .collect();
        let network = rtnl.pod_network(&existing)?;
        let mut taps = Vec::new();
        for (index, interface) in network.interfaces.iter().enumerate() {
            let name = tap_name(index);
            taps.push(tap::create(&name)?);
            let tap = rtnl.link_named(&name)?;
            let pod = rtnl.link_named(&interface.name)?;
            let up = kata_net::links::LinkChange {
                mtu: Some(interface.mtu).filter(|m| *m != 0),
                up: Some(true),
                ..Default::default()
            };
            rtnl.change_link(tap.index, &up)?;
            rtnl.tie(pod.index, tap.index)?;
        }
        Ok(PodNics { network, taps })
    })
}

/// The agent's request for `network`.
pub fn request(network: &PodNetwork) -> agent::ConfigureNetworkRequest {
    let text = |ip: Option<std::net::IpAddr>| ip.map(|a| a.to_string()).unwrap_or_default();
    agent::ConfigureNetworkRequest {
        interfaces: network
            .interfaces
            .iter()
            .map(|i| agent::Interface {
                name: i.name.clone(),
                mac: mac_text(&i.mac),
                mtu: i.mtu,
                addresses: i.addresses.iter().map(ToString::to_string).collect(),
                ..Default::default()
            })
            .collect(),
        routes: network
            .routes
            .iter()
            .map(|r| agent::Route {
                destination: r.destination.map(|d| d.to_string()).unwrap_or_default(),
                gateway: text(r.gateway),
                device: r.device.clone(),
                source: text(r.source),
                scope: r.scope.into(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_network_namespace_comes_from_the_spec() {
        let spec = serde_json::json!({"linux": {"namespaces": [
            {"type": "pid"},
            {"type": "network", "path": "/var/run/netns/pod"},
        ]}});
        assert_eq!(netns_of(&spec), Some(PathBuf::from("/var/run/netns/pod")));
        let host = serde_json::json!({"linux": {"namespaces": [{"type": "pid"}]}});
        assert_eq!(netns_of(&host), None);
        let new = serde_json::json!({"linux": {"namespaces": [{"type": "network"}]}});
        assert_eq!(netns_of(&new), None, "a new namespace has no pod network");
    }

    #[test]
    fn taps_are_ours_by_name() {
        assert_eq!(tap_name(0), "tap0_kata");
        assert!(is_tap(&tap_name(3)));
        assert!(!is_tap("eth0"));
    }

    #[test]
    fn the_request_carries_addresses_and_routes_as_text() {
        let network = PodNetwork {
            interfaces: vec![kata_net::Interface {
                name: "eth0".into(),
                mac: [0x0a, 0x58, 0x0a, 0x58, 0, 5],
                mtu: 1500,
                addresses: vec!["10.88.0.5/16".parse().expect("net")],
            }],
            routes: vec![kata_net::Route {
                destination: None,
                gateway: Some("10.88.0.1".parse().expect("ip")),
                device: "eth0".into(),
                source: None,
                scope: 0,
            }],
        };
        let req = request(&network);
        assert_eq!(req.interfaces[0].mac, "0a:58:0a:58:00:05");
        assert_eq!(req.interfaces[0].addresses, ["10.88.0.5/16"]);
        assert_eq!(req.routes[0].destination, "");
        assert_eq!(req.routes[0].gateway, "10.88.0.1");
    }
}
