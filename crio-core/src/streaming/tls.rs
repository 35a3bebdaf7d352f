//! TLS for the streaming server (`stream_enable_tls`): its certificate and key,
//! and, with `stream_tls_ca`, client certificates signed by that CA required.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

#[derive(Debug, thiserror::Error)]
#[error("streaming TLS: {key} ({path}): {reason}")]
pub struct TlsError {
    pub key: &'static str,
    pub path: String,
    pub reason: String,
}

fn err<'a>(key: &'static str, path: &'a Path) -> impl Fn(String) -> TlsError + 'a {
    move |reason| TlsError {
        key,
        path: path.display().to_string(),
        reason,
    }
}

/// The cipher suite names `tls_cipher_suites` accepts: Go's (IANA) names of what
/// rustls implements, and Go's two short ChaCha20 aliases. TLS 1.3's suites are
/// accepted and, as in Go, always on.
pub(crate) const CIPHER_SUITE_NAMES: &[&str] = &[
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
];

/// What a `tls_cipher_suites` name selects.
#[derive(Debug, Clone, Copy)]
pub(crate) enum CipherChoice {
    Tls12(rustls::SupportedCipherSuite),
    /// A TLS 1.3 suite: always offered.
    Tls13,
}

pub(crate) fn cipher_suite(name: &str) -> Option<CipherChoice> {
    use rustls::crypto::ring::cipher_suite as cs;
    Some(CipherChoice::Tls12(match name {
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"
        | "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305" => {
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        }
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" | "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" => {
            cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        }
        "TLS_AES_128_GCM_SHA256" | "TLS_AES_256_GCM_SHA384" | "TLS_CHACHA20_POLY1305_SHA256" => {
            return Some(CipherChoice::Tls13)
        }
        _ => return None,
    }))
}

/// `tls_min_version` and `tls_cipher_suites`, as validated.
#[derive(Debug, Clone, Default)]
pub(crate) struct TlsPolicy {
    pub min_tls13: bool,
    /// The TLS 1.2 suites offered; empty = all of rustls's.
    pub tls12_suites: Vec<rustls::SupportedCipherSuite>,
}

impl TlsPolicy {
    /// From the config's values (validated: unknown names are skipped).
    pub(crate) fn from_config(min_version: &str, suites: &[String]) -> Self {
        let min_tls13 = min_version == "VersionTLS13";
        if min_tls13 && !suites.is_empty() {
            tracing::warn!(
                "tls_cipher_suites is ignored with tls_min_version = VersionTLS13 (as in CRI-O)"
            );
        }
        let tls12_suites = if min_tls13 {
            Vec::new()
        } else {
            suites
                .iter()
                .filter_map(|n| match cipher_suite(n) {
                    Some(CipherChoice::Tls12(s)) => Some(s),
                    _ => None,
                })
                .collect()
        };
        Self {
            min_tls13,
            tls12_suites,
        }
    }

    fn provider(&self) -> rustls::crypto::CryptoProvider {
        let mut provider = rustls::crypto::ring::default_provider();
        if !self.tls12_suites.is_empty() {
            let chosen = &self.tls12_suites;
            provider.cipher_suites.retain(|s| {
                s.version() == &rustls::version::TLS13
                    || chosen.iter().any(|c| c.suite() == s.suite())
            });
        }
        provider
    }

    fn versions(&self) -> &'static [&'static rustls::SupportedProtocolVersion] {
        static TLS13_ONLY: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
        if self.min_tls13 {
            TLS13_ONLY
        } else {
            rustls::DEFAULT_VERSIONS
        }
    }
}

/// The acceptor for `cert` and `key` (PEM), requiring client certificates signed
/// by `ca` when given, with `policy`'s versions and suites.
pub(crate) fn acceptor(
    cert: &Path,
    key: &Path,
    ca: Option<&Path>,
    policy: &TlsPolicy,
) -> Result<TlsAcceptor, TlsError> {
    let provider = Arc::new(policy.provider());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| err("crio.api.stream_tls_cert", cert)(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| err("crio.api.stream_tls_cert", cert)(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("crio.api.stream_tls_cert", cert)(
            "no certificate in the file".into(),
        ));
    }
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| err("crio.api.stream_tls_key", key)(e.to_string()))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(policy.versions())
        .map_err(|e| err("crio.api.stream_tls_cert", cert)(e.to_string()))?;
    let builder = match ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca)
                .map_err(|e| err("crio.api.stream_tls_ca", ca)(e.to_string()))?
            {
                let c = c.map_err(|e| err("crio.api.stream_tls_ca", ca)(e.to_string()))?;
                roots
                    .add(c)
                    .map_err(|e| err("crio.api.stream_tls_ca", ca)(e.to_string()))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| err("crio.api.stream_tls_ca", ca)(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, private)
        .map_err(|e| err("crio.api.stream_tls_key", key)(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
