//! Tying two links together with tc: every frame arriving on one is sent out of
//! the other (an ingress qdisc on each, a catch-all `u32` filter with a `mirred`
//! egress redirect), so the pod's CNI interface and the VM's tap act as one wire.
//! `u32` rather than `matchall`: kernels without `cls_matchall` have it.

use netlink_packet_route::tc::{
    TcAction, TcActionAttribute, TcActionGeneric, TcActionMirrorOption, TcActionOption,
    TcActionType, TcAttribute, TcFilterU32Option, TcHandle, TcMessage, TcMirror,
    TcMirrorActionType, TcOption, TcU32Key, TcU32Selector, TcU32SelectorFlags,
};
use netlink_packet_route::RouteNetlinkMessage;

use crate::rtnl::{Kind, Rtnl};
use crate::NetError;

/// The ingress qdisc's handle (`ffff:`).
const INGRESS_HANDLE: TcHandle = TcHandle {
    major: 0xffff,
    minor: 0,
};

fn tc_message(index: u32) -> TcMessage {
    // Link indexes are positive `int`s in the kernel.
    TcMessage::with_index(index as i32)
}

/// The ingress qdisc for link `index`.
pub fn ingress_qdisc(index: u32) -> TcMessage {
    let mut message = tc_message(index);
    message.header.handle = INGRESS_HANDLE;
    message.header.parent = TcHandle::INGRESS;
    message.attributes.push(TcAttribute::Kind("ingress".into()));
    message
}

/// A filter on link `from`'s ingress that redirects every frame (any
/// protocol) to link `to`'s egress.
pub fn redirect_filter(from: u32, to: u32) -> TcMessage {
    let mut message = tc_message(from);
    message.header.parent = INGRESS_HANDLE;
    // Priority 1, protocol ETH_P_ALL in network order (tc's `protocol all`).
    let all = u16::to_be(libc::ETH_P_ALL as u16);
    message.header.info = (1 << 16) | u32::from(all);
    // One key matching every packet: no bits compared.
    let mut selector = TcU32Selector::default();
    selector.flags = TcU32SelectorFlags::Terminal;
    selector.nkeys = 1;
    selector.keys = vec![TcU32Key::default()];
    let mut mirror = TcMirror::default();
    mirror.generic = TcActionGeneric::default();
    mirror.generic.action = TcActionType::Stolen;
    mirror.eaction = TcMirrorActionType::EgressRedir;
    mirror.ifindex = to;
    let mut action = TcAction::default();
    action.tab = 1;
    action.attributes = vec![
        TcActionAttribute::Kind("mirred".into()),
        TcActionAttribute::Options(vec![TcActionOption::Mirror(TcActionMirrorOption::Parms(
            mirror,
        ))]),
    ];
    message.attributes = vec![
        TcAttribute::Kind("u32".into()),
        TcAttribute::Options(vec![
            TcOption::U32(TcFilterU32Option::Selector(selector)),
            TcOption::U32(TcFilterU32Option::Action(vec![action])),
        ]),
    ];
    message
}

impl Rtnl {
    /// Sends every frame arriving on either link out of the other.
    pub fn tie(&mut self, a: u32, b: u32) -> Result<(), NetError> {
        for (from, to) in [(a, b), (b, a)] {
            self.request(
                RouteNetlinkMessage::NewQueueDiscipline(ingress_qdisc(from)),
                Kind::Create,
                &format!("add an ingress qdisc to link {from}"),
            )?;
            self.request(
                RouteNetlinkMessage::NewTrafficFilter(redirect_filter(from, to)),
                Kind::Create,
                &format!("redirect link {from}'s ingress to link {to}"),
            )?;
        }
        Ok(())
    }
}
