//! A blocking rtnetlink socket: one request at a time, its answer read to the
//! kernel's acknowledgement or the end of its dump.

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket};

use crate::NetError;

/// An rtnetlink socket of the calling thread's network namespace (the one it
/// was in when the socket was opened).
#[derive(Debug)]
pub struct Rtnl {
    socket: Socket,
    sequence: u32,
}

/// How a request is to be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Read every object of a kind.
    Dump,
    /// Create a new object; an existing one is an error (`EEXIST`).
    Create,
    /// Change an existing object.
    Change,
}

impl Rtnl {
    pub fn open() -> Result<Self, NetError> {
        let io = |e| NetError::new("open an rtnetlink socket", e);
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(io)?;
        socket.bind_auto().map_err(io)?;
        Ok(Rtnl {
            socket,
            sequence: 0,
        })
    }

    /// Sends `message` and returns what the kernel answered with (the dumped
    /// objects; nothing for an acknowledged change). `what` names the request
    /// in errors.
    pub fn request(
        &mut self,
        message: RouteNetlinkMessage,
        kind: Kind,
        what: &str,
    ) -> Result<Vec<RouteNetlinkMessage>, NetError> {
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST
            | match kind {
                Kind::Dump => NLM_F_DUMP,
                Kind::Create => NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
                Kind::Change => NLM_F_ACK,
            };
        self.sequence = self.sequence.wrapping_add(1);
        header.sequence_number = self.sequence;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.socket
            .send(&buf, 0)
            .map_err(|e| NetError::new(what, e))?;
        self.answer(what)
    }

    fn answer(&mut self, what: &str) -> Result<Vec<RouteNetlinkMessage>, NetError> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = self
                .socket
                .recv(&mut &mut buf[..], 0)
                .map_err(|e| NetError::new(what, e))?;
            let mut offset = 0;
            while offset < n {
                let packet = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[offset..n])
                    .map_err(|e| {
                        NetError::new(what, std::io::Error::other(format!("bad answer: {e}")))
                    })?;
                let length = packet.header.length as usize;
                if packet.header.sequence_number != self.sequence {
                    // A stale answer to an earlier request: not ours.
                } else {
                    match packet.payload {
                        NetlinkPayload::Error(e) => {
                            return match e.code {
                                None => Ok(out),
                                Some(_) => Err(NetError::new(what, e.to_io())),
                            }
                        }
                        NetlinkPayload::Done(_) => return Ok(out),
                        NetlinkPayload::InnerMessage(m) => out.push(m),
                        _ => {}
                    }
                }
                if length == 0 {
                    break;
                }
                offset += length;
            }
        }
    }
}
