//! Giving the guest the pod's network: each interface (found by its MAC, which
//! the hypervisor gave the guest's NIC) renamed, sized and brought up with the
//! pod's addresses, then the pod's routes.

use std::net::IpAddr;

use netlink_packet_route::address::{AddressAttribute, AddressHeaderFlags, AddressMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::links::LinkChange;
use crate::rtnl::{Kind, Rtnl};
use crate::scan::PodNetwork;
use crate::{mac_text, IpNet, NetError, Route};

fn family(addr: &IpAddr) -> AddressFamily {
    match addr {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

/// `RTM_NEWADDR` for `net` on link `index`. IPv6 addresses skip duplicate
/// address detection: CNI made them unique, and DAD would hold them back.
pub fn address_message(index: u32, net: &IpNet) -> AddressMessage {
    let mut message = AddressMessage::default();
    message.header.family = family(&net.addr);
    message.header.prefix_len = net.prefix;
    message.header.index = index;
    message.attributes.push(AddressAttribute::Local(net.addr));
    message.attributes.push(AddressAttribute::Address(net.addr));
    if net.addr.is_ipv6() {
        message.header.flags = AddressHeaderFlags::Nodad;
    }
    message
}

/// `RTM_NEWROUTE` for `route` through link `index`.
pub fn route_message(index: u32, route: &Route) -> RouteMessage {
    let mut message = RouteMessage::default();
    let any = route
        .destination
        .map(|d| d.addr)
        .or(route.gateway)
        .unwrap_or(IpAddr::V4([0, 0, 0, 0].into()));
    message.header.address_family = family(&any);
    message.header.table = RouteHeader::RT_TABLE_MAIN;
    message.header.protocol = RouteProtocol::Boot;
    message.header.scope = route.scope.into();
    message.header.kind = RouteType::Unicast;
    if let Some(destination) = route.destination {
        message.header.destination_prefix_length = destination.prefix;
        message
            .attributes
            .push(RouteAttribute::Destination(RouteAddress::from(
                destination.addr,
            )));
    }
    if let Some(gateway) = route.gateway {
        message
            .attributes
            .push(RouteAttribute::Gateway(RouteAddress::from(gateway)));
    }
    if let Some(source) = route.source {
        message
            .attributes
            .push(RouteAttribute::PrefSource(RouteAddress::from(source)));
    }
    message.attributes.push(RouteAttribute::Oif(index));
    message
}

/// Routes in the order they can be added: those without a gateway (which make
/// gateways reachable) first.
pub fn in_order(routes: &[Route]) -> Vec<&Route> {
    let mut ordered: Vec<&Route> = routes.iter().collect();
    ordered.sort_by_key(|r| r.gateway.is_some());
    ordered
}

fn exists(e: &NetError) -> bool {
    e.errno() == Some(libc::EEXIST)
}

impl Rtnl {
    /// Sets up loopback and `network` in this namespace.
    pub fn configure(&mut self, network: &PodNetwork) -> Result<(), NetError> {
        let links = self.links()?;
        let up = LinkChange {
            up: Some(true),
            ..Default::default()
        };
        for lo in links.iter().filter(|l| l.loopback && !l.up) {
            self.change_link(lo.index, &up)?;
        }
        for interface in &network.interfaces {
            let link = links
                .iter()
                .find(|l| l.mac == Some(interface.mac))
                .ok_or_else(|| {
                    NetError::new(
                        format!(
                            "find the NIC of {} ({})",
                            interface.name,
                            mac_text(&interface.mac)
                        ),
                        std::io::Error::from_raw_os_error(libc::ENODEV),
                    )
                })?;
            let change = LinkChange {
                name: (link.name != interface.name).then(|| interface.name.clone()),
                mtu: (interface.mtu != 0 && link.mtu != interface.mtu).then_some(interface.mtu),
                up: None,
            };
            if change != LinkChange::default() {
                self.change_link(link.index, &change)?;
            }
            self.change_link(link.index, &up)?;
            for net in &interface.addresses {
                match self.request(
                    RouteNetlinkMessage::NewAddress(address_message(link.index, net)),
                    Kind::Create,
                    &format!("add address {net} to {}", interface.name),
                ) {
                    Err(e) if !exists(&e) => return Err(e),
                    _ => {}
                }
            }
        }
        let links = self.links()?;
        for route in in_order(&network.routes) {
            let index = links
                .iter()
                .find(|l| l.name == route.device)
                .map(|l| l.index)
                .ok_or_else(|| {
                    NetError::new(
                        format!("route {route:?}: no link {}", route.device),
                        std::io::Error::from_raw_os_error(libc::ENODEV),
                    )
                })?;
            match self.request(
                RouteNetlinkMessage::NewRoute(route_message(index, route)),
                Kind::Create,
                &format!("add route {route:?}"),
            ) {
                Err(e) if !exists(&e) => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_routes_come_after_the_routes_that_reach_them() {
        let link = Route {
            destination: Some("10.88.0.0/16".parse().expect("net")),
            gateway: None,
            device: "eth0".into(),
            source: None,
            scope: 253,
        };
        let default = Route {
            destination: None,
            gateway: Some("10.88.0.1".parse().expect("ip")),
            device: "eth0".into(),
            source: None,
            scope: 0,
        };
        let routes = [default.clone(), link.clone()];
        assert_eq!(in_order(&routes), vec![&link, &default]);
        let message = route_message(2, &default);
        assert_eq!(message.header.address_family, AddressFamily::Inet);
        assert_eq!(message.header.destination_prefix_length, 0);
        assert!(message.attributes.contains(&RouteAttribute::Oif(2)));
    }

    #[test]
    fn ipv6_addresses_skip_dad() {
        let v6 = address_message(3, &"fd00::5/64".parse().expect("net"));
        assert_eq!(v6.header.family, AddressFamily::Inet6);
        assert!(v6.header.flags.contains(AddressHeaderFlags::Nodad));
        let v4 = address_message(3, &"10.88.0.5/16".parse().expect("net"));
        assert_eq!(v4.header.prefix_len, 16);
        assert!(!v4.header.flags.contains(AddressHeaderFlags::Nodad));
    }
}
