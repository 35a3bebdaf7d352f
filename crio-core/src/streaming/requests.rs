//! Pending streaming requests: each Exec/Attach/PortForward RPC stores its request
//! under a single-use token that expires, as the kubelet's streaming request cache
//! does (at most 1000 in flight, a minute to connect).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a client has to connect to the URL an RPC returned.
pub(crate) const TOKEN_TTL: Duration = Duration::from_secs(60);
/// Requests waiting for their client, at most.
pub(crate) const MAX_IN_FLIGHT: usize = 1000;

/// What a token stands for.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamRequest {
    Exec {
        container_id: String,
        cmd: Vec<String>,
        tty: bool,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    },
    Attach {
        container_id: String,
        tty: bool,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    },
    PortForward {
        pod_sandbox_id: String,
        /// From the RPC; the URL's `port` query takes precedence.
        ports: Vec<u16>,
    },
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("maximum number of in-flight streaming requests ({MAX_IN_FLIGHT}) exceeded")]
pub struct TooManyInFlight;

#[derive(Debug, Default)]
pub(crate) struct RequestCache {
    entries: Mutex<HashMap<String, (StreamRequest, Instant)>>,
}

impl RequestCache {
    /// Stores `request`; returns its token (URL-safe, 8 random bytes).
    pub(crate) fn insert(&self, request: StreamRequest) -> Result<String, TooManyInFlight> {
        self.insert_at(request, Instant::now())
    }

    fn insert_at(&self, request: StreamRequest, now: Instant) -> Result<String, TooManyInFlight> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|_, (_, expires)| *expires > now);
        if entries.len() >= MAX_IN_FLIGHT {
            return Err(TooManyInFlight);
        }
        let token = loop {
            let token = new_token();
            if !entries.contains_key(&token) {
                break token;
            }
        };
        entries.insert(token.clone(), (request, now + TOKEN_TTL));
        Ok(token)
    }

    /// The request for `token`, once: a second use or an expired token finds nothing.
    pub(crate) fn consume(&self, token: &str) -> Option<StreamRequest> {
        self.consume_at(token, Instant::now())
    }

    fn consume_at(&self, token: &str, now: Instant) -> Option<StreamRequest> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let (request, expires) = entries.remove(token)?;
        (expires > now).then_some(request)
    }
}

fn new_token() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 8];
    // The kernel's CSPRNG: a token is a capability to run a command.
    if let Err(e) = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
    {
        panic!("reading /dev/urandom: {e}");
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forward() -> StreamRequest {
        StreamRequest::PortForward {
            pod_sandbox_id: "p".into(),
            ports: vec![80],
        }
    }

    #[test]
    fn a_token_is_used_once() {
        let cache = RequestCache::default();
        let token = cache.insert(forward()).expect("insert");
        assert_eq!(token.len(), 11);
        assert_eq!(cache.consume(&token), Some(forward()));
        assert_eq!(cache.consume(&token), None);
        assert_eq!(cache.consume("nonsense"), None);
    }

    #[test]
    fn a_token_expires() {
        let cache = RequestCache::default();
        let now = Instant::now();
        let token = cache.insert_at(forward(), now).expect("insert");
        assert_eq!(cache.consume_at(&token, now + TOKEN_TTL), None);
    }

    #[test]
    fn in_flight_requests_are_bounded_and_expired_ones_make_room() {
        let cache = RequestCache::default();
        let now = Instant::now();
        for _ in 0..MAX_IN_FLIGHT {
            cache.insert_at(forward(), now).expect("insert");
        }
        assert_eq!(cache.insert_at(forward(), now), Err(TooManyInFlight));
        assert!(cache.insert_at(forward(), now + TOKEN_TTL).is_ok());
    }
}
