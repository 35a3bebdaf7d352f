//! The pod's network in the guest: the agent API's interfaces and routes, read
//! into [`kata_net`]'s and set up over rtnetlink.

use kata_net::rtnl::Rtnl;
use kata_net::scan::PodNetwork;
use kata_net::{parse_mac, Interface, IpNet, Route};
use protocols::agent::ConfigureNetworkRequest;
use shim_support::Error;

fn net(what: &str, text: &str) -> Result<IpNet, Error> {
    text.parse()
        .map_err(|e| Error::InvalidArgument(format!("{what}: {e}")))
}

fn ip(what: &str, text: &str) -> Result<Option<std::net::IpAddr>, Error> {
    if text.is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|e| Error::InvalidArgument(format!("{what} {text:?}: {e}")))
}

/// The request as a [`PodNetwork`]; a malformed field is `InvalidArgument`.
pub fn pod_network(req: &ConfigureNetworkRequest) -> Result<PodNetwork, Error> {
    let interfaces = req
        .interfaces
        .iter()
        .map(|i| {
            let what = format!("interface {:?}", i.name);
            Ok(Interface {
                name: i.name.clone(),
                mac: parse_mac(&i.mac).ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "{what}: MAC {:?} is not aa:bb:cc:dd:ee:ff",
                        i.mac
                    ))
                })?,
                mtu: i.mtu,
                addresses: i
                    .addresses
                    .iter()
                    .map(|a| net(&what, a))
                    .collect::<Result<_, _>>()?,
            })
        })
        .collect::<Result<_, Error>>()?;
    let routes = req
        .routes
        .iter()
        .map(|r| {
            let what = format!("route via {:?}", r.device);
            Ok(Route {
                destination: match r.destination.as_str() {
                    "" => None,
                    d => Some(net(&what, d)?),
                },
                gateway: ip(&what, &r.gateway)?,
                device: r.device.clone(),
                source: ip(&what, &r.source)?,
                scope: u8::try_from(r.scope).map_err(|_| {
                    Error::InvalidArgument(format!("{what}: scope {} out of range", r.scope))
                })?,
            })
        })
        .collect::<Result<_, Error>>()?;
    Ok(PodNetwork { interfaces, routes })
}

/// Sets up `network` in the guest (blocking: rtnetlink requests).
pub fn configure(network: &PodNetwork) -> Result<(), Error> {
    Rtnl::open()
        .and_then(|mut rtnl| rtnl.configure(network))
        .map_err(|e| Error::Other(format!("configure the pod network: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocols::agent;

    #[test]
    fn a_request_reads_into_interfaces_and_routes() {
        let req = ConfigureNetworkRequest {
            interfaces: vec![agent::Interface {
                name: "eth0".into(),
                mac: "0a:58:0a:58:00:05".into(),
                mtu: 1500,
                addresses: vec!["10.88.0.5/16".into()],
                ..Default::default()
            }],
            routes: vec![agent::Route {
                gateway: "10.88.0.1".into(),
                device: "eth0".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let network = pod_network(&req).expect("valid");
        assert_eq!(
            network.interfaces[0].addresses[0].to_string(),
            "10.88.0.5/16"
        );
        assert_eq!(network.routes[0].destination, None);
        assert_eq!(
            network.routes[0].gateway,
            Some("10.88.0.1".parse().expect("ip"))
        );
    }

    #[test]
    fn a_bad_mac_or_address_is_invalid_argument() {
        let mut req = ConfigureNetworkRequest {
            interfaces: vec![agent::Interface {
                name: "eth0".into(),
                mac: "0a:58".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let err = pod_network(&req).expect_err("bad mac");
        assert!(
            matches!(err, Error::InvalidArgument(ref m) if m.contains("0a:58")),
            "{err}"
        );
        req.interfaces[0].mac = "0a:58:0a:58:00:05".into();
        req.interfaces[0].addresses = vec!["10.88.0.5".into()];
        let err = pod_network(&req).expect_err("no prefix");
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    }
}
