//! Reading a namespace's interfaces and routes: what CNI gave the pod.

use std::collections::BTreeMap;
use std::net::IpAddr;

use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteType,
};
use netlink_packet_route::RouteNetlinkMessage;

use crate::rtnl::{Kind, Rtnl};
use crate::{Interface, IpNet, NetError, Route};

/// The pod's network as the guest is to have it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodNetwork {
    pub interfaces: Vec<Interface>,
    pub routes: Vec<Route>,
}

/// Whether an address belongs in the guest: not IPv6 link-local (the guest's
/// kernel makes its own from the MAC).
fn global(addr: &IpAddr) -> bool {
    match addr {
        IpAddr::V4(_) => true,
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) != 0xfe80,
    }
}

fn ip_of(address: &RouteAddress) -> Option<IpAddr> {
    match address {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// A route of the main table worth copying, with its device's name.
fn route_of(message: &RouteMessage, names: &BTreeMap<u32, String>) -> Option<Route> {
    let header = &message.header;
    if header.table != RouteHeader::RT_TABLE_MAIN
        || header.kind != RouteType::Unicast
        || header.protocol == RouteProtocol::Kernel
    {
        return None;
    }
    let mut route = Route {
        destination: None,
        gateway: None,
        device: String::new(),
        source: None,
        scope: header.scope.into(),
    };
    for attribute in &message.attributes {
        match attribute {
            RouteAttribute::Destination(d) => {
                route.destination = ip_of(d).map(|addr| IpNet {
                    addr,
                    prefix: header.destination_prefix_length,
                })
            }
            RouteAttribute::Gateway(g) => route.gateway = ip_of(g),
            RouteAttribute::PrefSource(s) => route.source = ip_of(s),
            RouteAttribute::Oif(index) => route.device = names.get(index)?.clone(),
            _ => {}
        }
    }
    if route.destination.is_some_and(|d| !global(&d.addr)) || route.device.is_empty() {
        return None;
    }
    Some(route)
}

impl Rtnl {
    /// Every address of the namespace, by link index.
    pub fn addresses(&mut self) -> Result<BTreeMap<u32, Vec<IpNet>>, NetError> {
        let answer = self.request(
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            Kind::Dump,
            "list addresses",
        )?;
        let mut by_link: BTreeMap<u32, Vec<IpNet>> = BTreeMap::new();
        for message in &answer {
            let RouteNetlinkMessage::NewAddress(a) = message else {
                continue;
            };
            let addr = a.attributes.iter().find_map(|attr| match attr {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            });
            if let Some(addr) = addr.filter(global) {
                by_link.entry(a.header.index).or_default().push(IpNet {
                    addr,
                    prefix: a.header.prefix_len,
                });
            }
        }
        Ok(by_link)
    }

    /// The namespace's routes worth giving a guest (main table, unicast, not the
    /// kernel's own), both families.
    pub fn routes(&mut self, names: &BTreeMap<u32, String>) -> Result<Vec<Route>, NetError> {
        let answer = self.request(
            RouteNetlinkMessage::GetRoute(RouteMessage::default()),
            Kind::Dump,
            "list routes",
        )?;
        Ok(answer
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) => route_of(r, names),
                _ => None,
            })
            .collect())
    }

    /// The pod's network in this namespace: every link but loopback (and those
    /// named in `skip`, our own taps) with an Ethernet address, its addresses,
    /// and the routes through them.
    pub fn pod_network(&mut self, skip: &[String]) -> Result<PodNetwork, NetError> {
        let links = self.links()?;
        let mut addresses = self.addresses()?;
        let mut names = BTreeMap::new();
        let mut interfaces = Vec::new();
        for link in links {
            if link.loopback || skip.contains(&link.name) {
                continue;
            }
            let Some(mac) = link.mac else { continue };
            names.insert(link.index, link.name.clone());
            interfaces.push(Interface {
                name: link.name,
                mac,
                mtu: link.mtu,
                addresses: addresses.remove(&link.index).unwrap_or_default(),
            });
        }
        let routes = self.routes(&names)?;
        Ok(PodNetwork { interfaces, routes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::route::RouteScope;

    fn names() -> BTreeMap<u32, String> {
        BTreeMap::from([(2, "eth0".to_string())])
    }

    fn route(protocol: RouteProtocol, attributes: Vec<RouteAttribute>) -> RouteMessage {
        let mut m = RouteMessage::default();
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.header.kind = RouteType::Unicast;
        m.header.protocol = protocol;
        m.header.scope = RouteScope::Universe;
        m.attributes = attributes;
        m
    }

    #[test]
    fn the_default_route_is_kept_and_the_kernels_own_are_not() {
        let gateway = RouteAttribute::Gateway(RouteAddress::Inet([10, 88, 0, 1].into()));
        let default = route(
            RouteProtocol::Boot,
            vec![gateway.clone(), RouteAttribute::Oif(2)],
        );
        assert_eq!(
            route_of(&default, &names()),
            Some(Route {
                destination: None,
                gateway: Some("10.88.0.1".parse().expect("ip")),
                device: "eth0".into(),
                source: None,
                scope: 0,
            })
        );
        let connected = route(
            RouteProtocol::Kernel,
            vec![
                RouteAttribute::Destination(RouteAddress::Inet([10, 88, 0, 0].into())),
                RouteAttribute::Oif(2),
            ],
        );
        assert_eq!(route_of(&connected, &names()), None);
        let elsewhere = route(RouteProtocol::Boot, vec![gateway, RouteAttribute::Oif(9)]);
        assert_eq!(route_of(&elsewhere, &names()), None, "not a pod interface");
    }

    #[test]
    fn link_local_addresses_stay_behind() {
        assert!(!global(&"fe80::1".parse().expect("ip")));
        assert!(global(&"fd00::1".parse().expect("ip")));
        assert!(global(&"10.0.0.1".parse().expect("ip")));
    }
}
