//! The IPs a pod reports: from a CNI result (1.x and 0.3/0.4 `ips`, 0.1/0.2
//! `ip4`/`ip6`), or the host's own for a host-network pod.

use std::net::IpAddr;

use serde_json::Value;

/// The pod's addresses in the result, in the result's order: those on the pod's
/// side (an `interface` index naming an interface with a `sandbox`, or none), not
/// loopback, without duplicates.
pub(crate) fn from_result(result: &Value) -> Vec<IpAddr> {
    let interfaces = result.get("interfaces").and_then(Value::as_array);
    let in_sandbox = |index: Option<u64>| match (index, interfaces) {
        (Some(i), Some(list)) => list
            .get(i as usize)
            .and_then(|iface| iface.get("sandbox"))
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty()),
        _ => true,
    };
    let mut cidrs: Vec<&str> = Vec::new();
    if let Some(ips) = result.get("ips").and_then(Value::as_array) {
        for ip in ips {
            if in_sandbox(ip.get("interface").and_then(Value::as_u64)) {
                cidrs.extend(ip.get("address").and_then(Value::as_str));
            }
        }
    }
    for legacy in ["ip4", "ip6"] {
        cidrs.extend(
            result
                .get(legacy)
                .and_then(|v| v.get("ip"))
                .and_then(Value::as_str),
        );
    }
    let mut out: Vec<IpAddr> = Vec::new();
    for cidr in cidrs {
        let addr = cidr.split('/').next().unwrap_or(cidr);
        if let Ok(ip) = addr.parse::<IpAddr>() {
            if !ip.is_loopback() && !out.contains(&ip) {
                out.push(ip);
            }
        }
    }
    out
}

/// The host's addresses for a host-network pod: a global IPv4 and IPv6 address of
/// an interface that is up, preferring the interfaces of the default routes,
/// IPv4 first (the kubelet's node-IP order).
pub(crate) fn host_ips() -> Vec<IpAddr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    let defaults = default_route_interfaces();
    let mut candidates: Vec<(bool, IpAddr)> = Vec::new();
    for ifa in addrs {
        if !ifa.flags.contains(nix::net::if_::InterfaceFlags::IFF_UP)
            || ifa
                .flags
                .contains(nix::net::if_::InterfaceFlags::IFF_LOOPBACK)
        {
            continue;
        }
        let Some(addr) = ifa.address else { continue };
        let ip = if let Some(sin) = addr.as_sockaddr_in() {
            IpAddr::V4(sin.ip())
        } else if let Some(sin6) = addr.as_sockaddr_in6() {
            IpAddr::V6(sin6.ip())
        } else {
            continue;
        };
        if is_global(ip) {
            candidates.push((!defaults.contains(&ifa.interface_name), ip));
        }
    }
    // Stable: default-route interfaces first, then the kernel's order.
    candidates.sort_by_key(|(not_default, _)| *not_default);
    let v4 = candidates.iter().map(|c| c.1).find(IpAddr::is_ipv4);
    let v6 = candidates.iter().map(|c| c.1).find(IpAddr::is_ipv6);
    v4.into_iter().chain(v6).collect()
}

fn is_global(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_link_local() && !v4.is_unspecified(),
        // fe80::/10 is link-local: not an address anyone else can reach.
        IpAddr::V6(v6) => {
            !v6.is_loopback() && !v6.is_unspecified() && (v6.segments()[0] & 0xffc0) != 0xfe80
        }
    }
}

/// Interfaces holding an IPv4 or IPv6 default route (from /proc/net).
fn default_route_interfaces() -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(text) = std::fs::read_to_string("/proc/net/route") {
        // Iface Destination Gateway ...: the default route's destination is 0.
        out.extend(text.lines().skip(1).filter_map(|l| {
            let mut f = l.split_whitespace();
            let iface = f.next()?;
            (f.next()? == "00000000").then(|| iface.to_string())
        }));
    }
    if let Ok(text) = std::fs::read_to_string("/proc/net/ipv6_route") {
        // dest prefixlen ... iface: ::/0 is the default route.
        out.extend(text.lines().filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 10 && f[0].bytes().all(|b| b == b'0') && f[1] == "00" && f[9] != "lo")
                .then(|| f[9].to_string())
        }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_1_0_result_gives_the_sandbox_side_addresses() {
        let result = json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "cni0", "mac": "00:11"},
                {"name": "veth1", "mac": "00:12"},
                {"name": "eth0", "mac": "00:13", "sandbox": "/run/netns/x"},
                {"name": "lo", "sandbox": "/run/netns/x"}
            ],
            "ips": [
                {"address": "10.88.0.1/16", "interface": 0},
                {"address": "10.88.0.5/16", "gateway": "10.88.0.1", "interface": 2},
                {"address": "fd85::5/64", "interface": 2},
                {"address": "127.0.0.1/8", "interface": 3},
                {"address": "10.88.0.5/16", "interface": 2}
            ]
        });
        let ips: Vec<String> = from_result(&result)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(ips, ["10.88.0.5", "fd85::5"]);
    }

    #[test]
    fn a_0_4_result_without_interfaces_and_a_0_2_result() {
        let v04 =
            json!({"cniVersion": "0.4.0", "ips": [{"version": "4", "address": "10.1.0.9/24"}]});
        assert_eq!(
            from_result(&v04),
            ["10.1.0.9".parse::<IpAddr>().expect("ip")]
        );
        let v02 = json!({"cniVersion": "0.2.0", "ip4": {"ip": "10.2.0.3/16"}, "ip6": {"ip": "fd00::3/64"}});
        let ips: Vec<String> = from_result(&v02).iter().map(ToString::to_string).collect();
        assert_eq!(ips, ["10.2.0.3", "fd00::3"]);
        assert!(from_result(&json!({})).is_empty());
    }

    #[test]
    fn the_host_has_a_global_address() {
        let ips = host_ips();
        assert!(
            ips.iter().all(|ip| !ip.is_loopback()),
            "no loopback among {ips:?}"
        );
    }
}
