//! Links (network interfaces) of the socket's namespace: listed, and changed.

use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;

use crate::rtnl::{Kind, Rtnl};
use crate::NetError;

/// A link as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// `None` for links without an Ethernet address (loopback has all zeros).
    pub mac: Option<[u8; 6]>,
    pub mtu: u32,
    pub up: bool,
    pub loopback: bool,
}

fn link_of(message: &LinkMessage) -> Link {
    let mut link = Link {
        index: message.header.index,
        name: String::new(),
        mac: None,
        mtu: 0,
        up: message.header.flags.contains(LinkFlags::Up),
        loopback: message.header.flags.contains(LinkFlags::Loopback),
    };
    for attribute in &message.attributes {
        match attribute {
            LinkAttribute::IfName(name) => link.name = name.clone(),
            LinkAttribute::Mtu(mtu) => link.mtu = *mtu,
            LinkAttribute::Address(bytes) => {
                link.mac = <[u8; 6]>::try_from(bytes.as_slice())
                    .ok()
                    .filter(|m| m != &[0; 6]);
            }
            _ => {}
        }
    }
    link
}

/// What to change of a link; `None` leaves it as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkChange {
    pub name: Option<String>,
    pub mtu: Option<u32>,
    pub up: Option<bool>,
}

impl Rtnl {
    /// Every link of the namespace.
    pub fn links(&mut self) -> Result<Vec<Link>, NetError> {
        let answer = self.request(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            Kind::Dump,
            "list links",
        )?;
        Ok(answer
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(link) => Some(link_of(link)),
                _ => None,
            })
            .collect())
    }

    /// The link named `name`.
    pub fn link_named(&mut self, name: &str) -> Result<Link, NetError> {
        self.links()?
            .into_iter()
            .find(|l| l.name == name)
            .ok_or_else(|| {
                NetError::new(
                    format!("find link {name}"),
                    std::io::Error::from_raw_os_error(libc::ENODEV),
                )
            })
    }

    /// Changes link `index` (a rename needs the link down: done before `up`).
    pub fn change_link(&mut self, index: u32, change: &LinkChange) -> Result<(), NetError> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        if let Some(name) = &change.name {
            message.attributes.push(LinkAttribute::IfName(name.clone()));
        }
        if let Some(mtu) = change.mtu {
            message.attributes.push(LinkAttribute::Mtu(mtu));
        }
        if let Some(up) = change.up {
            message.header.change_mask = LinkFlags::Up;
            if up {
                message.header.flags = LinkFlags::Up;
            }
        }
        self.request(
            RouteNetlinkMessage::SetLink(message),
            Kind::Change,
            &format!("change link {index} ({change:?})"),
        )
        .map(drop)
    }
}
