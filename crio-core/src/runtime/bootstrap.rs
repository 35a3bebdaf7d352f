//! The shim `start` reply in every form real shims give, and the task API version it
//! implies.
//!
//! * containerd 1.x shims (Debian's Go `containerd-shim-runc-v2` 1.6) print a plain
//!   address and speak task API v2;
//! * containerd 2.0–2.2 shims print JSON `{"version":N,"address":..,"protocol":..}`;
//! * containerd 2.3+ shims that were given `BootstrapParams` on stdin answer a protobuf
//!   `BootstrapResult` with the same three fields.

use protocols::shim::protobuf::Message;
use serde::Deserialize;

/// Task API versions the core can speak.
pub(crate) const TASK_API_MIN: i32 = 2;
pub(crate) const TASK_API_MAX: i32 = 3;

/// Where a shim serves its task API, and which version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShimAddress {
    /// The address as the shim gave it (`unix:///...` or a bare path).
    pub address: String,
    pub version: i32,
}

impl ShimAddress {
    /// The ttrpc service name of the Task API at this version.
    pub(crate) fn task_service(&self) -> &'static str {
        task_service(self.version)
    }

    /// The socket path without its `unix://` scheme.
    pub(crate) fn socket_path(&self) -> &str {
        self.address
            .strip_prefix("unix://")
            .unwrap_or(&self.address)
    }
}

pub(crate) fn task_service(version: i32) -> &'static str {
    if version >= 3 {
        "containerd.task.v3.Task"
    } else {
        "containerd.task.v2.Task"
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BootstrapError {
    #[error("shim printed nothing on start")]
    Empty,
    #[error("shim start reply is not an address, JSON or a BootstrapResult: {0:?}")]
    Garbage(String),
    #[error("shim speaks task API version {0}; this core speaks {TASK_API_MIN} to {TASK_API_MAX}")]
    UnsupportedVersion(i32),
    #[error("shim serves protocol {0:?}; only ttrpc is supported")]
    UnsupportedProtocol(String),
}

#[derive(Deserialize)]
struct JsonReply {
    version: i32,
    address: String,
    #[serde(default)]
    protocol: String,
}

/// Parses what a shim printed on stdout for `start`.
pub(crate) fn parse_start_reply(out: &[u8]) -> Result<ShimAddress, BootstrapError> {
    let text = String::from_utf8_lossy(out);
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(BootstrapError::Empty);
    }
    let (address, version, protocol) = if trimmed.starts_with('{') {
        let reply: JsonReply =
            serde_json::from_str(trimmed).map_err(|_| BootstrapError::Garbage(excerpt(trimmed)))?;
        (reply.address, reply.version, reply.protocol)
    } else if looks_like_address(trimmed) {
        (trimmed.to_string(), 2, String::new())
    } else {
        let result = protocols::shim::bootstrap_api::BootstrapResult::parse_from_bytes(out)
            .map_err(|_| BootstrapError::Garbage(excerpt(trimmed)))?;
        (result.address, result.version, result.protocol)
    };
    if !looks_like_address(&address) {
        return Err(BootstrapError::Garbage(excerpt(trimmed)));
    }
    if !(TASK_API_MIN..=TASK_API_MAX).contains(&version) {
        return Err(BootstrapError::UnsupportedVersion(version));
    }
    if !protocol.is_empty() && protocol != "ttrpc" {
        return Err(BootstrapError::UnsupportedProtocol(protocol));
    }
    Ok(ShimAddress { address, version })
}

fn looks_like_address(s: &str) -> bool {
    let path = s.strip_prefix("unix://").unwrap_or(s);
    path.starts_with('/') && !path.contains(char::is_whitespace) && !path.contains(char::is_control)
}

fn excerpt(s: &str) -> String {
    s.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_address_is_a_v2_shim() {
        let a = parse_start_reply(b"unix:///run/containerd/s/abc\n").expect("parse");
        assert_eq!(a.version, 2);
        assert_eq!(a.socket_path(), "/run/containerd/s/abc");
        assert_eq!(a.task_service(), "containerd.task.v2.Task");
    }

    #[test]
    fn json_reply_carries_the_version() {
        let a = parse_start_reply(
            br#"{"version":3,"address":"unix:///run/x.sock","protocol":"ttrpc"}"#,
        )
        .expect("parse");
        assert_eq!(a.version, 3);
        assert_eq!(a.task_service(), "containerd.task.v3.Task");
    }

    #[test]
    fn bootstrap_result_protobuf_is_understood() {
        let result = protocols::shim::bootstrap_api::BootstrapResult {
            version: 3,
            address: "unix:///run/y.sock".into(),
            protocol: "ttrpc".into(),
            ..Default::default()
        };
        let bytes = result.write_to_bytes().expect("encode");
        let a = parse_start_reply(&bytes).expect("parse");
        assert_eq!(a.address, "unix:///run/y.sock");
        assert_eq!(a.version, 3);
    }

    #[test]
    fn garbage_and_unsupported_replies_are_refused() {
        assert_eq!(parse_start_reply(b"  \n"), Err(BootstrapError::Empty));
        assert!(matches!(
            parse_start_reply(b"hello world"),
            Err(BootstrapError::Garbage(_))
        ));
        assert!(matches!(
            parse_start_reply(br#"{"version":3}"#),
            Err(BootstrapError::Garbage(_))
        ));
        assert_eq!(
            parse_start_reply(br#"{"version":4,"address":"unix:///x"}"#),
            Err(BootstrapError::UnsupportedVersion(4))
        );
        assert_eq!(
            parse_start_reply(br#"{"version":3,"address":"unix:///x","protocol":"grpc"}"#),
            Err(BootstrapError::UnsupportedProtocol("grpc".into()))
        );
    }
}
