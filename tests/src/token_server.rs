//! A minimal Docker registry token server (the "token" auth of CNCF distribution,
//! docs/spec/auth/token.md) on a loopback port, for registries started with
//! [`crate::registry::RegistryOptions::token_auth`].
//!
//! `GET /token?service=...&scope=...` with HTTP basic credentials answers a JWT
//! signed ES256 by a key whose self-signed certificate is the registry's
//! `rootcertbundle`, with the certificate in the header's `x5c` (distribution 2.8
//! verifies the chain against the bundle). The claims are what distribution 2.8's
//! `registry/auth/token/token.go` checks: `iss` (the registry's `issuer`), `aud`
//! (one string: the registry's `service`), `exp`/`nbf` (with 60 s leeway), plus
//! `sub`, `iat`, `jti` and `access` (`[{type, name, actions}]`). The right user and
//! password get every action they ask for; no credentials get a token with no
//! access (as public token servers do); wrong ones get 401. Every request is
//! recorded for the tests to check. The server thread stops on drop.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::json;

use crate::registry::openssl;

/// How long issued tokens live.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(300);

/// One request the token server answered.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRequest {
    /// The basic-auth user, if credentials were sent.
    pub user: Option<String>,
    /// `service` query parameter.
    pub service: String,
    /// Every scope asked for (`repository:test/busybox:pull`).
    pub scopes: Vec<String>,
    /// The HTTP status answered.
    pub status: u16,
}

/// The signing half, shared with the server thread.
#[derive(Debug)]
struct Issuer {
    key: EcdsaKeyPair,
    cert_der: Vec<u8>,
    issuer: String,
    service: String,
    serial: AtomicU64,
}

/// A running token server.
#[derive(Debug)]
pub struct TokenServer {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// The registry's `service` (the tokens' audience).
    pub service: String,
    /// The tokens' `iss`.
    pub issuer: String,
    /// The signing certificate, PEM: the registry's `rootcertbundle`.
    pub cert_path: PathBuf,
    user: String,
    password: String,
    signer: Arc<Issuer>,
    requests: Arc<Mutex<Vec<TokenRequest>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl TokenServer {
    /// Starts a token server that accepts `user` / `password`.
    pub fn start(user: &str, password: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("crio-token-")
            .tempdir()
            .expect("token server dir");
        let p = |name: &str| dir.path().join(name);
        let s = |path: &PathBuf| path.to_str().expect("utf-8 temp path").to_string();
        let (key_pem, cert_pem, key_der, cert_der) = (
            p("token.key"),
            p("token.crt"),
            p("token.pk8"),
            p("token.der"),
        );
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=crio-tests token issuer",
            "-keyout",
            &s(&key_pem),
            "-out",
            &s(&cert_pem),
        ]);
        openssl(&[
            "pkcs8",
            "-topk8",
            "-nocrypt",
            "-in",
            &s(&key_pem),
            "-outform",
            "DER",
            "-out",
            &s(&key_der),
        ]);
        openssl(&[
            "x509",
            "-in",
            &s(&cert_pem),
            "-outform",
            "DER",
            "-out",
            &s(&cert_der),
        ]);
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &std::fs::read(&key_der).expect("read key"),
            &rng,
        )
        .expect("ring accepts the openssl P-256 key");
        let service = "crio-test-registry".to_string();
        let issuer = "crio-tests-token-issuer".to_string();
        let signer = Arc::new(Issuer {
            key,
            cert_der: std::fs::read(&cert_der).expect("read cert"),
            issuer: issuer.clone(),
            service: service.clone(),
            serial: AtomicU64::new(0),
        });

        let listener = TcpListener::bind("127.0.0.1:0").expect("bind token server");
        let addr = listener.local_addr().expect("addr").to_string();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (signer, requests, stop) = (signer.clone(), requests.clone(), stop.clone());
            let (user, password) = (user.to_string(), password.to_string());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    if let Some(request) = serve(stream, &signer, &user, &password) {
                        requests
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(request);
                    }
                }
            })
        };
        Self {
            addr,
            service,
            issuer,
            cert_path: cert_pem,
            user: user.to_string(),
            password: password.to_string(),
            signer,
            requests,
            stop,
            thread: Some(thread),
            _dir: dir,
        }
    }

    /// The registry's `realm`.
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// The user and password it accepts.
    pub fn credentials(&self) -> (String, String) {
        (self.user.clone(), self.password.clone())
    }

    /// Every request answered so far.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A token granting `scopes` (`repository:NAME:ACTIONS`) to `subject`, as the
    /// server would issue it (for the CRI `registry_token`).
    pub fn issue(&self, subject: &str, scopes: &[&str]) -> String {
        let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
        self.signer.token(subject, &access(&scopes))
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the blocking accept.
        let _ = TcpStream::connect(&self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Issuer {
    fn token(&self, subject: &str, access: &serde_json::Value) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs();
        let header = json!({
            "typ": "JWT",
            "alg": "ES256",
            "x5c": [STANDARD.encode(&self.cert_der)],
        });
        let claims = json!({
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + TOKEN_LIFETIME.as_secs(),
            "nbf": now - 10,
            "iat": now,
            "jti": format!("crio-tests-{}", self.serial.fetch_add(1, Ordering::SeqCst)),
            "access": access,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .key
            .sign(&SystemRandom::new(), signing_input.as_bytes())
            .expect("ECDSA signing");
        format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        )
    }
}

/// `[{type, name, actions}]` for `type:name:actions` scopes (names may hold `:`).
fn access(scopes: &[String]) -> serde_json::Value {
    let entries: Vec<serde_json::Value> = scopes
        .iter()
        .filter_map(|scope| {
            let (kind, rest) = scope.split_once(':')?;
            let (name, actions) = rest.rsplit_once(':')?;
            let actions: Vec<&str> = actions.split(',').filter(|a| !a.is_empty()).collect();
            Some(json!({"type": kind, "name": name, "actions": actions}))
        })
        .collect();
    serde_json::Value::Array(entries)
}

/// Answers one connection (one request, then close).
fn serve(stream: TcpStream, signer: &Issuer, user: &str, password: &str) -> Option<TokenRequest> {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
    let mut authorization = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            break;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("authorization") {
                authorization = Some(value.trim().to_string());
            }
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next()?, parts.next()?);
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut stream = stream;
    if method != "GET" || path != "/token" {
        respond(&mut stream, 404, &json!({"details": "not found"}));
        return None;
    }
    let mut service = String::new();
    let mut scopes = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value);
        match key {
            "service" => service = value,
            "scope" => scopes.extend(value.split(' ').filter(|s| !s.is_empty()).map(String::from)),
            _ => {}
        }
    }
    let sent = authorization
        .as_deref()
        .and_then(|a| a.strip_prefix("Basic "))
        .and_then(|b| STANDARD.decode(b.trim()).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|t| {
            t.split_once(':')
                .map(|(u, p)| (u.to_string(), p.to_string()))
        });
    let (status, body, who) = match &sent {
        Some((u, p)) if u == user && p == password => {
            let token = signer.token(u, &access(&scopes));
            (200, token_body(&token), Some(u.clone()))
        }
        Some((u, _)) => (
            401,
            json!({"errors": [{"code": "UNAUTHORIZED", "message": "invalid username or password"}]}),
            Some(u.clone()),
        ),
        // Anonymous: a token that grants nothing.
        None => (200, token_body(&signer.token("", &json!([]))), None),
    };
    respond(&mut stream, status, &body);
    Some(TokenRequest {
        user: who,
        service,
        scopes,
        status,
    })
}

fn token_body(token: &str) -> serde_json::Value {
    let issued = chrono_like_now();
    json!({
        "token": token,
        "access_token": token,
        "expires_in": TOKEN_LIFETIME.as_secs(),
        "issued_at": issued,
    })
}

/// RFC 3339 UTC time of now (token responses carry one; nothing parses it here).
fn chrono_like_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn respond(stream: &mut TcpStream, status: u16, body: &serde_json::Value) {
    let body = body.to_string();
    let reason = match status {
        200 => "OK",
        401 => "Unauthorized",
        _ => "Not Found",
    };
    let extra = if status == 401 {
        "WWW-Authenticate: Basic realm=\"crio-tests\"\r\n"
    } else {
        ""
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.flush();
}

/// `application/x-www-form-urlencoded` value decoding.
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(byte) => {
                        out.push(byte);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_become_access_entries() {
        let a = access(&[
            "repository:test/busybox:pull,push".to_string(),
            "repository:127.0.0.1:5000/x:pull".to_string(),
            "garbage".to_string(),
        ]);
        assert_eq!(
            a,
            json!([
                {"type": "repository", "name": "test/busybox", "actions": ["pull", "push"]},
                {"type": "repository", "name": "127.0.0.1:5000/x", "actions": ["pull"]},
            ])
        );
    }

    #[test]
    fn query_values_are_decoded() {
        assert_eq!(
            percent_decode("repository%3Atest%2Fbusybox%3Apull%2Cpush"),
            "repository:test/busybox:pull,push"
        );
        assert_eq!(percent_decode("a+b%zz"), "a b%zz");
    }

    #[test]
    fn dates_are_rfc3339() {
        let now = chrono_like_now();
        assert_eq!(now.len(), 20, "{now}");
        assert!(now.starts_with("20") && now.ends_with('Z'), "{now}");
    }

    #[test]
    fn tokens_are_three_parts_with_the_claims_distribution_checks() {
        let server = TokenServer::start("u", "p");
        let token = server.issue("u", &["repository:a/b:pull"]);
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).expect("b64")).expect("json");
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["x5c"].as_array().map(Vec::len), Some(1));
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("b64")).expect("json");
        assert_eq!(
            claims["aud"],
            server.service.as_str(),
            "one string, as 2.8 wants"
        );
        assert_eq!(claims["iss"], server.issuer.as_str());
        assert_eq!(claims["access"][0]["name"], "a/b");
        // An ES256 JWS signature is r || s, 64 bytes.
        assert_eq!(URL_SAFE_NO_PAD.decode(parts[2]).expect("b64").len(), 64);
    }
}
