//! The Kubernetes channel protocol over WebSocket (apimachinery's `wsstream`): every
//! message starts with its channel number, as a byte (binary protocols) or as an
//! ASCII digit followed by base64 data (`base64.` protocols).

use base64::Engine;
use futures::stream::SplitStream;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// How channel messages are carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    Binary,
    Base64,
}

/// A negotiated subprotocol: its name and what it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChannelProtocol {
    pub name: &'static str,
    /// The remotecommand version (1, 4 or 5); port-forward protocols say 4.
    pub version: u8,
    pub encoding: Encoding,
}

/// Remotecommand (exec, attach) over WebSocket, newest first.
pub(crate) const REMOTECOMMAND: &[ChannelProtocol] = &[
    ChannelProtocol {
        name: "v5.channel.k8s.io",
        version: 5,
        encoding: Encoding::Binary,
    },
    ChannelProtocol {
        name: "v4.channel.k8s.io",
        version: 4,
        encoding: Encoding::Binary,
    },
    ChannelProtocol {
        name: "v4.base64.channel.k8s.io",
        version: 4,
        encoding: Encoding::Base64,
    },
    ChannelProtocol {
        name: "channel.k8s.io",
        version: 1,
        encoding: Encoding::Binary,
    },
    ChannelProtocol {
        name: "base64.channel.k8s.io",
        version: 1,
        encoding: Encoding::Base64,
    },
];

/// Port-forward over WebSocket.
pub(crate) const PORTFORWARD: &[ChannelProtocol] = &[
    ChannelProtocol {
        name: "v4.channel.k8s.io",
        version: 4,
        encoding: Encoding::Binary,
    },
    ChannelProtocol {
        name: "v4.base64.channel.k8s.io",
        version: 4,
        encoding: Encoding::Base64,
    },
    ChannelProtocol {
        name: "channel.k8s.io",
        version: 1,
        encoding: Encoding::Binary,
    },
    ChannelProtocol {
        name: "base64.channel.k8s.io",
        version: 1,
        encoding: Encoding::Base64,
    },
];

/// The first protocol the client offers (in its order) that we support; a client
/// that offers none gets the plain binary channel protocol, as wsstream does.
pub(crate) fn negotiate(offered: &str, supported: &[ChannelProtocol]) -> Option<ChannelProtocol> {
    let offered: Vec<&str> = offered
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    if offered.is_empty() {
        return supported
            .iter()
            .copied()
            .find(|p| p.name == "channel.k8s.io");
    }
    offered
        .iter()
        .find_map(|o| supported.iter().copied().find(|p| p.name == *o))
}

/// Splits a session's WebSocket: its incoming messages, and a sender whose
/// messages one task writes in order (the socket is closed when every sender is
/// gone; await the task to know it is).
pub(crate) fn split_with_writer<S>(
    ws: WebSocketStream<S>,
) -> (
    SplitStream<WebSocketStream<S>>,
    mpsc::Sender<Message>,
    tokio::task::JoinHandle<()>,
)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, source) = ws.split();
    let (tx, mut rx) = mpsc::channel::<Message>(64);
    let writer = tokio::spawn(async move {
        while let Some(message) = rx.recv().await {
            if sink.send(message).await.is_err() {
                return;
            }
        }
        let _ = sink.close().await;
    });
    (source, tx, writer)
}

pub(crate) fn encode(encoding: Encoding, channel: u8, data: &[u8]) -> Message {
    match encoding {
        Encoding::Binary => {
            let mut frame = Vec::with_capacity(data.len() + 1);
            frame.push(channel);
            frame.extend_from_slice(data);
            Message::Binary(frame.into())
        }
        Encoding::Base64 => {
            let mut text = String::with_capacity(data.len() * 4 / 3 + 4);
            text.push(char::from(b'0' + channel));
            base64::engine::general_purpose::STANDARD.encode_string(data, &mut text);
            Message::Text(text.into())
        }
    }
}

/// A data message's channel and payload; `None` for control messages and
/// malformed ones.
pub(crate) fn decode(encoding: Encoding, message: &Message) -> Option<(u8, Vec<u8>)> {
    match (encoding, message) {
        (Encoding::Binary, Message::Binary(frame)) => {
            let (&channel, data) = frame.split_first()?;
            Some((channel, data.to_vec()))
        }
        (Encoding::Base64, Message::Text(text)) => {
            let text = text.as_str();
            let channel = text.as_bytes().first()?.checked_sub(b'0')?;
            let data = base64::engine::general_purpose::STANDARD
                .decode(&text[1..])
                .ok()?;
            Some((channel, data))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clients_first_supported_protocol_wins() {
        let p = negotiate("v5.channel.k8s.io, v4.channel.k8s.io", REMOTECOMMAND).expect("v5");
        assert_eq!((p.version, p.encoding), (5, Encoding::Binary));
        let p = negotiate("v9.channel.k8s.io,v4.base64.channel.k8s.io", REMOTECOMMAND)
            .expect("v4 base64");
        assert_eq!(p.name, "v4.base64.channel.k8s.io");
        assert_eq!(
            negotiate("", REMOTECOMMAND).map(|p| p.name),
            Some("channel.k8s.io")
        );
        assert_eq!(negotiate("spdy", REMOTECOMMAND), None);
        assert!(negotiate("v5.channel.k8s.io", PORTFORWARD).is_none());
    }

    #[test]
    fn messages_round_trip_in_both_encodings() {
        for encoding in [Encoding::Binary, Encoding::Base64] {
            let m = encode(encoding, 2, b"hello\x00world");
            assert_eq!(decode(encoding, &m), Some((2, b"hello\x00world".to_vec())));
            let empty = encode(encoding, 1, b"");
            assert_eq!(decode(encoding, &empty), Some((1, Vec::new())));
        }
        assert_eq!(
            encode(Encoding::Base64, 1, b"hi"),
            Message::Text("1aGk=".into())
        );
        assert_eq!(decode(Encoding::Base64, &Message::Text("x!!".into())), None);
        assert_eq!(
            decode(Encoding::Binary, &Message::Binary(Vec::new().into())),
            None
        );
    }
}
