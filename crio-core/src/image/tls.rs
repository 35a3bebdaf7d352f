//! Per-registry TLS files, as containers/image reads them (containers-certs.d(5)):
//! `<dir>/<host[:port]>/` holds `*.crt` files (extra CA certificates trusted for that
//! registry, beside the system's), and `*.cert` + `*.key` pairs (client
//! certificates). The directory used is the first of `/etc/containers/certs.d`,
//! `/etc/docker/certs.d` that has a `<host[:port]>` subdirectory, or the one
//! `[crio.image] certs_dir` names. It is read at every pull, so a new CA needs no
//! restart.
//!
//! Client certificates are found and checked (every `.cert` needs its `.key` and
//! the other way round, as containers/image requires), but cannot be presented:
//! oci-client 0.18 offers no client identity. A pull from such a registry logs a
//! warning, and a TLS failure there says so.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

use oci_client::client::{Certificate, CertificateEncoding};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// containers/image's system-wide per-host directories, in the order it tries them.
pub(crate) const DEFAULT_CERTS_DIRS: [&str; 2] = ["/etc/containers/certs.d", "/etc/docker/certs.d"];

#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsError {
    #[error("reading registry certificates in {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error(
        "missing key {key} for client certificate {cert} (CA certificates use the extension .crt)"
    )]
    MissingKey { cert: PathBuf, key: PathBuf },
    #[error("missing client certificate {cert} for key {key}")]
    MissingCert { cert: PathBuf, key: PathBuf },
}

/// Where per-registry TLS directories are looked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CertsDirs(Vec<PathBuf>);

impl Default for CertsDirs {
    fn default() -> Self {
        Self(DEFAULT_CERTS_DIRS.iter().map(PathBuf::from).collect())
    }
}

impl CertsDirs {
    /// `[crio.image] certs_dir`: empty = [`DEFAULT_CERTS_DIRS`], else that one dir.
    pub(crate) fn from_config(certs_dir: &str) -> Self {
        if certs_dir.is_empty() {
            Self::default()
        } else {
            Self(vec![PathBuf::from(certs_dir)])
        }
    }

    /// The TLS files for `host` (`host[:port]`, as in image names). No directory
    /// for it means no extra settings.
    pub(crate) fn load(&self, host: &str) -> Result<RegistryTls, TlsError> {
        // A host name never holds a path separator; refuse rather than escape the dir.
        if host.is_empty() || host.contains('/') || host == "." || host == ".." {
            return Ok(RegistryTls::default());
        }
        for base in &self.0 {
            let dir = base.join(host);
            match std::fs::metadata(&dir) {
                Ok(meta) if meta.is_dir() => return RegistryTls::read(&dir),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(TlsError::Read { path: dir, source }),
            }
        }
        Ok(RegistryTls::default())
    }
}

/// What one registry's certs.d directory holds.
#[derive(Debug, Clone, Default)]
pub(crate) struct RegistryTls {
    /// The directory read, if there was one.
    pub dir: Option<PathBuf>,
    /// Extra CA certificates (DER), trusted beside the system's.
    pub roots: Vec<Vec<u8>>,
    /// The `.crt` files the roots came from, with how many certificates each held.
    pub ca_files: Vec<(PathBuf, usize)>,
    /// `(cert, key)` client certificate pairs (not presented: see the module docs).
    pub client_pairs: Vec<(PathBuf, PathBuf)>,
}

impl RegistryTls {
    fn read(dir: &Path) -> Result<Self, TlsError> {
        let read_err = |source| TlsError::Read {
            path: dir.to_path_buf(),
            source,
        };
        let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(read_err)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(read_err)?;
        names.sort();
        let mut tls = RegistryTls {
            dir: Some(dir.to_path_buf()),
            ..Self::default()
        };
        for path in &names {
            let ext = path
                .extension()
                .and_then(|e| e.to_str())
                .unwrap_or_default();
            match ext {
                "crt" => {
                    let bytes = match std::fs::read(path) {
                        Ok(bytes) => bytes,
                        // A dangling symlink, or removed since the listing: as containers/image.
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {
                            tracing::warn!(file = %path.display(), "registry CA file vanished: skipped");
                            continue;
                        }
                        Err(source) => {
                            return Err(TlsError::Read {
                                path: path.clone(),
                                source,
                            })
                        }
                    };
                    let certs: Vec<CertificateDer<'static>> =
                        CertificateDer::pem_slice_iter(&bytes)
                            .filter_map(Result::ok)
                            .collect();
                    if certs.is_empty() {
                        tracing::warn!(file = %path.display(), "registry CA file holds no PEM certificate: skipped");
                    }
                    tls.ca_files.push((path.clone(), certs.len()));
                    tls.roots.extend(certs.into_iter().map(|c| c.to_vec()));
                }
                "cert" => {
                    let key = path.with_extension("key");
                    if !names.contains(&key) {
                        return Err(TlsError::MissingKey {
                            cert: path.clone(),
                            key,
                        });
                    }
                    tls.client_pairs.push((path.clone(), key));
                }
                "key" => {
                    let cert = path.with_extension("cert");
                    if !names.contains(&cert) {
                        return Err(TlsError::MissingCert {
                            cert,
                            key: path.clone(),
                        });
                    }
                }
                _ => {}
            }
        }
        Ok(tls)
    }

    /// The extra roots in oci-client's form.
    pub(crate) fn certificates(&self) -> Vec<Certificate> {
        self.roots
            .iter()
            .map(|der| Certificate {
                encoding: CertificateEncoding::Der,
                data: der.clone(),
            })
            .collect()
    }

    /// Says, for an error message, which TLS files were used for `host`.
    pub(crate) fn describe(&self, host: &str, dirs: &CertsDirs) -> String {
        let mut out = String::new();
        match &self.dir {
            None => {
                let wanted: Vec<String> = dirs
                    .0
                    .iter()
                    .map(|d| d.join(host).display().to_string())
                    .collect();
                let _ = write!(
                    out,
                    "no extra CA is configured for {host} (put the CA certificate that signed its certificate in {}/ca.crt)",
                    wanted.first().map_or("<certs.d>/<host:port>", String::as_str)
                );
            }
            Some(dir) => {
                let files: Vec<String> = self
                    .ca_files
                    .iter()
                    .map(|(f, n)| {
                        format!(
                            "{} ({n} certificate{})",
                            f.display(),
                            if *n == 1 { "" } else { "s" }
                        )
                    })
                    .collect();
                if files.is_empty() {
                    let _ = write!(out, "{} holds no *.crt CA file", dir.display());
                } else {
                    let _ = write!(out, "extra CAs trusted for {host}: {}", files.join(", "));
                }
                if !self.client_pairs.is_empty() {
                    let _ = write!(
                        out,
                        "; client certificate {} was not presented (client certificates are not supported)",
                        self.client_pairs[0].0.display()
                    );
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real certificate (any will do: the test checks parsing, not trust).
    fn pem_cert(dir: &Path, name: &str) -> Vec<u8> {
        let key = dir.join(format!("{name}.key.pem"));
        let cert = dir.join(format!("{name}.pem"));
        let status = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "1",
                "-subj",
            ])
            .arg(format!("/CN={name}"))
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl");
        assert!(status.success());
        std::fs::read(cert).expect("read cert")
    }

    #[test]
    fn no_directory_means_no_settings() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dirs = CertsDirs::from_config(&tmp.path().display().to_string());
        let tls = dirs.load("registry.example:5000").expect("load");
        assert!(tls.dir.is_none() && tls.roots.is_empty());
        let text = tls.describe("registry.example:5000", &dirs);
        assert!(
            text.contains(&format!(
                "{}/registry.example:5000/ca.crt",
                tmp.path().display()
            )),
            "{text}"
        );
        assert!(dirs.load("../etc").expect("load").dir.is_none());
    }

    #[test]
    fn crt_files_are_roots_and_bundles_count_every_certificate() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let host = tmp.path().join("certs.d/127.0.0.1:5000");
        std::fs::create_dir_all(&host).expect("mkdir");
        let a = pem_cert(tmp.path(), "a");
        let b = pem_cert(tmp.path(), "b");
        std::fs::write(host.join("ca.crt"), &a).expect("write");
        std::fs::write(host.join("bundle.crt"), [a.clone(), b].concat()).expect("write");
        std::fs::write(host.join("empty.crt"), "not a certificate\n").expect("write");
        std::fs::write(host.join("README"), "ignored\n").expect("write");
        let dirs = CertsDirs::from_config(&tmp.path().join("certs.d").display().to_string());
        let tls = dirs.load("127.0.0.1:5000").expect("load");
        assert_eq!(tls.roots.len(), 3);
        assert_eq!(tls.certificates().len(), 3);
        let counts: Vec<usize> = tls.ca_files.iter().map(|(_, n)| *n).collect();
        assert_eq!(
            counts,
            [2, 1, 0],
            "bundle.crt, ca.crt, empty.crt in name order"
        );
        assert!(tls.client_pairs.is_empty());
        let text = tls.describe("127.0.0.1:5000", &dirs);
        assert!(text.contains("bundle.crt (2 certificates)"), "{text}");
        // Another port is another registry.
        assert!(dirs.load("127.0.0.1:5001").expect("load").dir.is_none());
    }

    #[test]
    fn the_first_directory_with_the_host_wins() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let first = tmp.path().join("containers");
        let second = tmp.path().join("docker");
        std::fs::create_dir_all(second.join("quay.io")).expect("mkdir");
        std::fs::write(second.join("quay.io/ca.crt"), pem_cert(tmp.path(), "q")).expect("write");
        let dirs = CertsDirs(vec![first.clone(), second.clone()]);
        assert_eq!(
            dirs.load("quay.io").expect("load").dir,
            Some(second.join("quay.io"))
        );
        std::fs::create_dir_all(first.join("quay.io")).expect("mkdir");
        let tls = dirs.load("quay.io").expect("load");
        assert_eq!(tls.dir, Some(first.join("quay.io")));
        assert!(
            tls.roots.is_empty(),
            "only one directory is read, as containers/image does"
        );
        assert_eq!(
            CertsDirs::default(),
            CertsDirs(vec![
                "/etc/containers/certs.d".into(),
                "/etc/docker/certs.d".into()
            ])
        );
    }

    #[test]
    fn client_certificates_need_their_keys() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let host = tmp.path().join("r.example");
        std::fs::create_dir_all(&host).expect("mkdir");
        let dirs = CertsDirs::from_config(&tmp.path().display().to_string());
        std::fs::write(host.join("client.cert"), "x").expect("write");
        let err = dirs.load("r.example").expect_err("no key");
        assert!(matches!(err, TlsError::MissingKey { .. }), "{err}");
        assert!(err.to_string().contains("client.key"), "{err}");
        std::fs::write(host.join("client.key"), "x").expect("write");
        let tls = dirs.load("r.example").expect("pair");
        assert_eq!(tls.client_pairs.len(), 1);
        assert!(tls.describe("r.example", &dirs).contains("not presented"));
        std::fs::write(host.join("other.key"), "x").expect("write");
        let err = dirs.load("r.example").expect_err("no cert");
        assert!(err.to_string().contains("other.cert"), "{err}");
    }
}
