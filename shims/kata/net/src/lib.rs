//! The network of a VM pod. On the host, the interfaces CNI put in the pod's
//! network namespace are read ([`scan`]) and each is tied to a tap device the
//! hypervisor gets ([`tap`], [`tc`]: every frame arriving on one leaves by the
//! other, Kata's `tcfilter` model). In the guest, the same interfaces (found by
//! MAC address) get the pod's addresses and routes ([`guest`]).

pub mod guest;
pub mod links;
pub mod netns;
pub mod rtnl;
pub mod scan;
pub mod tap;
pub mod tc;

use std::net::IpAddr;

/// An address with its prefix length (`10.88.0.5/16`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl std::fmt::Display for IpNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl std::str::FromStr for IpNet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?}: not ADDRESS/PREFIX"))?;
        let addr: IpAddr = addr.parse().map_err(|e| format!("{s:?}: {e}"))?;
        let prefix: u8 = prefix.parse().map_err(|e| format!("{s:?}: {e}"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(format!("{s:?}: prefix longer than {max}"));
        }
        Ok(IpNet { addr, prefix })
    }
}

/// One of the pod's interfaces, as the guest is to have it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub mac: [u8; 6],
    pub mtu: u32,
    pub addresses: Vec<IpNet>,
}

/// One route of the pod's main table (those the kernel makes for an address are
/// left out: the guest's kernel makes them too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// `None` for the default route.
    pub destination: Option<IpNet>,
    pub gateway: Option<IpAddr>,
    /// The interface's name.
    pub device: String,
    pub source: Option<IpAddr>,
    /// The route's scope (`RT_SCOPE_*`: 0 universe, 253 link).
    pub scope: u8,
}

/// A MAC address as `aa:bb:cc:dd:ee:ff`.
pub fn mac_text(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Why a network step failed: what was being done, and the kernel's answer.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct NetError {
    pub what: String,
    #[source]
    pub source: std::io::Error,
}

impl NetError {
    pub fn new(what: impl Into<String>, source: std::io::Error) -> Self {
        NetError {
            what: what.into(),
            source,
        }
    }

    /// The errno the kernel answered with, if any.
    pub fn errno(&self) -> Option<i32> {
        self.source.raw_os_error()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_macs_round_trip() {
        let net: IpNet = "10.88.0.5/16".parse().expect("v4");
        assert_eq!(net.to_string(), "10.88.0.5/16");
        assert_eq!(net.prefix, 16);
        let v6: IpNet = "fd00::5/64".parse().expect("v6");
        assert_eq!(v6.to_string(), "fd00::5/64");
        assert!("10.0.0.1/33".parse::<IpNet>().is_err());
        assert!("10.0.0.1".parse::<IpNet>().is_err());
        let mac = parse_mac("0a:58:0A:58:00:05").expect("mac");
        assert_eq!(mac_text(&mac), "0a:58:0a:58:00:05");
        assert_eq!(parse_mac("0a:58:0a:58:00"), None);
        assert_eq!(parse_mac("0a:58:0a:58:00:05:01"), None);
    }
}
