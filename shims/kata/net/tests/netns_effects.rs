//! The network effects for real, as root, in a network namespace of the test's
//! own (made by `unshare` on a thread, gone with it): taps created and tied with
//! tc, a pod network configured and read back.

use std::net::IpAddr;

use kata_net::rtnl::Rtnl;
use kata_net::scan::PodNetwork;
use kata_net::{tap, Interface, Route};

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Runs `work` on a thread in a new, empty network namespace.
fn in_new_netns<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare");
        work()
    })
    .join()
    .expect("the namespace's thread")
}

/// `tc filter show` of a link's ingress, run in the calling thread's namespace.
fn ingress_filters(link: &str) -> String {
    let ns = format!(
        "/proc/{}/task/{}/ns/net",
        std::process::id(),
        nix::unistd::gettid()
    );
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net={ns}"))
        .args(["tc", "filter", "show", "dev", link, "ingress"])
        .output()
        .expect("tc");
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn taps_are_tied_both_ways_and_a_pod_network_reads_back_as_configured() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let (network, filters_a, filters_b) = in_new_netns(|| {
        let _a = tap::create("tapa").expect("tap a");
        let _b = tap::create("tapb").expect("tap b");
        let mut rtnl = Rtnl::open().expect("rtnetlink");
        let a = rtnl.link_named("tapa").expect("a");
        let b = rtnl.link_named("tapb").expect("b");
        rtnl.tie(a.index, b.index).expect("tie");
        let wanted = PodNetwork {
            interfaces: vec![Interface {
                name: "eth0".into(),
                mac: a.mac.expect("a tap has a MAC"),
                mtu: 1400,
                addresses: vec![
                    "10.99.0.5/24".parse().expect("v4"),
                    "fd99::5/64".parse().expect("v6"),
                ],
            }],
            routes: vec![Route {
                destination: None,
                gateway: Some("10.99.0.1".parse().expect("gw")),
                device: "eth0".into(),
                source: None,
                scope: 0,
            }],
        };
        rtnl.configure(&wanted).expect("configure");
        // Configuring again changes nothing and fails nothing.
        rtnl.configure(&wanted).expect("configure again");
        let got = rtnl.pod_network(&["tapb".to_string()]).expect("scan");
        (got, ingress_filters("eth0"), ingress_filters("tapb"))
    });
    assert_eq!(network.interfaces.len(), 1, "{network:?}");
    let eth0 = &network.interfaces[0];
    assert_eq!(eth0.name, "eth0");
    assert_eq!(eth0.mtu, 1400);
    let addrs: Vec<String> = eth0.addresses.iter().map(ToString::to_string).collect();
    assert!(addrs.contains(&"10.99.0.5/24".to_string()), "{addrs:?}");
    assert!(addrs.contains(&"fd99::5/64".to_string()), "{addrs:?}");
    let gateway: IpAddr = "10.99.0.1".parse().expect("gw");
    assert!(
        network
            .routes
            .iter()
            .any(|r| r.destination.is_none() && r.gateway == Some(gateway) && r.device == "eth0"),
        "{:?}",
        network.routes
    );
    for (link, filters, to) in [("eth0", &filters_a, "tapb"), ("tapb", &filters_b, "eth0")] {
        assert!(
            filters.contains("mirred") && filters.contains(&format!("Redirect to device {to}")),
            "{link}: {filters}"
        );
    }
}

#[test]
fn a_tap_name_too_long_is_refused() {
    let err = tap::create("a-name-longer-than-ifnamsiz").expect_err("too long");
    assert_eq!(err.errno(), Some(libc::EINVAL), "{err}");
}
