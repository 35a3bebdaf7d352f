//! SPDY/3.1 streams, as client-go (crictl, the kubelet's clients) uses them for
//! exec and port-forward: the framing (`frame`), the connection (`conn`) and the
//! two sessions that run over it.

pub(crate) mod conn;
pub(crate) mod dictionary;
pub(crate) mod exec;
pub(crate) mod frame;
pub(crate) mod portforward;

/// Remotecommand versions over SPDY, newest first (`X-Stream-Protocol-Version`).
pub(crate) const REMOTECOMMAND: &[(&str, u8)] = &[
    ("v4.channel.k8s.io", 4),
    ("v3.channel.k8s.io", 3),
    ("v2.channel.k8s.io", 2),
];

pub(crate) const PORTFORWARD: &[(&str, u8)] = &[("portforward.k8s.io", 1)];

/// The first protocol the client lists (in its order) that we support.
pub(crate) fn negotiate(
    offered: &[String],
    supported: &[(&'static str, u8)],
) -> Option<(&'static str, u8)> {
    offered
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find_map(|o| supported.iter().copied().find(|(name, _)| *name == o))
}

/// Waits for the next event of a stream that may be gone (then never).
pub(crate) async fn next_event<T>(
    rx: &mut Option<tokio::sync::mpsc::UnboundedReceiver<T>>,
) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clients_first_supported_version_wins() {
        let offered = vec![
            "v5.channel.k8s.io".to_string(),
            "v4.channel.k8s.io, v3.channel.k8s.io".to_string(),
        ];
        assert_eq!(
            negotiate(&offered, REMOTECOMMAND),
            Some(("v4.channel.k8s.io", 4))
        );
        assert_eq!(negotiate(&["channel.k8s.io".into()], REMOTECOMMAND), None);
        assert_eq!(
            negotiate(&["portforward.k8s.io".into()], PORTFORWARD).map(|p| p.0),
            Some("portforward.k8s.io")
        );
    }
}
