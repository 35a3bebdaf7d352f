//! `[crio.image] insecure_registries` (CRI-O up to 1.34, Docker's "insecure
//! registries"): registries pulled from without TLS verification, falling back to
//! plain HTTP, named exactly (`host[:port]`) or by an IP range their host resolves
//! into (`10.0.0.0/8`). registries.conf's `insecure = true` is the same thing
//! for one registry; either makes a registry insecure.

use std::net::IpAddr;

/// One entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Entry {
    Host(String),
    Range { net: IpAddr, prefix: u8 },
}

/// The configured list.
#[derive(Debug, Clone, Default)]
pub(crate) struct InsecureRegistries {
    entries: Vec<Entry>,
}

fn in_range(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

impl InsecureRegistries {
    /// An entry: a CIDR, else a `host[:port]` (no scheme, no path).
    pub(crate) fn parse_entry(text: &str) -> Option<Entry> {
        if let Some((net, prefix)) = text.split_once('/') {
            let net: IpAddr = net.parse().ok()?;
            let prefix: u8 = prefix.parse().ok()?;
            let max = if net.is_ipv4() { 32 } else { 128 };
            return (prefix <= max).then_some(Entry::Range { net, prefix });
        }
        let valid = !text.is_empty()
            && !text.contains("://")
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b));
        valid.then(|| Entry::Host(text.to_string()))
    }

    /// From the (validated) config list.
    pub(crate) fn new(list: &[String]) -> Self {
        Self {
            entries: list.iter().filter_map(|e| Self::parse_entry(e)).collect(),
        }
    }

    /// Whether `registry` (`host[:port]`) is insecure: named exactly, or its host
    /// (an address, or a name resolved now) is in a range.
    pub(crate) async fn contains(&self, registry: &str) -> bool {
        if self.entries.is_empty() {
            return false;
        }
        if self.entries.contains(&Entry::Host(registry.to_string())) {
            return true;
        }
        let ranges: Vec<(IpAddr, u8)> = self
            .entries
            .iter()
            .filter_map(|e| match e {
                Entry::Range { net, prefix } => Some((*net, *prefix)),
                Entry::Host(_) => None,
            })
            .collect();
        if ranges.is_empty() {
            return false;
        }
        let host = strip_port(registry);
        let addresses: Vec<IpAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => match tokio::net::lookup_host((host, 0)).await {
                Ok(found) => found.map(|a| a.ip()).collect(),
                Err(_) => Vec::new(),
            },
        };
        addresses.iter().any(|ip| {
            ranges
                .iter()
                .any(|(net, prefix)| in_range(*ip, *net, *prefix))
        })
    }
}

/// `host` of `host[:port]`, `[v6]:port` or a bare v6 address.
fn strip_port(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match registry.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            host
        }
        _ => registry,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hosts_match_exactly_and_ranges_by_address() {
        let list = InsecureRegistries::new(&[
            "registry.local:5000".into(),
            "10.0.0.0/8".into(),
            "fd00::/8".into(),
        ]);
        assert!(list.contains("registry.local:5000").await);
        assert!(!list.contains("registry.local").await, "exact host[:port]");
        assert!(list.contains("10.1.2.3:5000").await);
        assert!(!list.contains("11.1.2.3").await);
        assert!(list.contains("[fd00::1]:5000").await);
        assert!(
            !list.contains("localhost:5000").await,
            "127.0.0.1 is not in 10/8"
        );
        assert!(!InsecureRegistries::default().contains("10.0.0.1").await);
    }

    #[test]
    fn entries_are_checked() {
        assert!(InsecureRegistries::parse_entry("10.0.0.0/33").is_none());
        assert!(InsecureRegistries::parse_entry("https://r.io").is_none());
        assert!(InsecureRegistries::parse_entry("r.io/path").is_none());
        assert!(InsecureRegistries::parse_entry("").is_none());
        assert_eq!(
            InsecureRegistries::parse_entry("r.io:5000"),
            Some(Entry::Host("r.io:5000".into()))
        );
    }
}
