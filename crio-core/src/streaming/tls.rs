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

/// The acceptor for `cert` and `key` (PEM), requiring client certificates signed
/// by `ca` when given.
pub(crate) fn acceptor(
    cert: &Path,
    key: &Path,
    ca: Option<&Path>,
) -> Result<TlsAcceptor, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
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
        .with_safe_default_protocol_versions()
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
