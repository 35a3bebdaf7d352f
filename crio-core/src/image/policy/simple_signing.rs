//! "Simple signing" (containers-signature(5)): an OpenPGP signed message whose
//! literal data is a JSON claim that a manifest digest is a docker reference.
//! Checked in containers/image's order: the OpenPGP signature by a trusted key
//! (or one of its subkeys), then the claim's shape, then the manifest digest,
//! then the identity.

use pgp::composed::{Message, PublicOrSecret, SignedPublicKey};
use pgp::types::{KeyDetails, PublicKeyTrait};
use serde::Deserialize;

/// The `critical.type` of a simple-signing claim.
const SIGNATURE_TYPE: &str = "atomic container signature";

/// Parses a keyring (binary or ASCII-armoured, one or more keys).
pub(crate) fn keyring(bytes: &[u8]) -> Result<Vec<SignedPublicKey>, String> {
    let (keys, _) = PublicOrSecret::from_reader_many(bytes)
        .map_err(|e| format!("not an OpenPGP keyring: {e}"))?;
    let mut out = Vec::new();
    for key in keys {
        let key = match key.map_err(|e| format!("not an OpenPGP keyring: {e}"))? {
            PublicOrSecret::Public(key) => key,
            PublicOrSecret::Secret(_) => {
                return Err("the keyring holds a secret key: give the public key".into())
            }
        };
        key.verify().map_err(|e| {
            format!(
                "key {}: invalid self-signature: {e}",
                hex::encode_upper(key.fingerprint().as_bytes())
            )
        })?;
        out.push(key);
    }
    if out.is_empty() {
        return Err("no public keys in the keyring".into());
    }
    Ok(out)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Claim {
    critical: Critical,
    #[allow(dead_code)]
    optional: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Critical {
    #[serde(rename = "type")]
    kind: String,
    image: ClaimImage,
    identity: ClaimIdentity,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClaimImage {
    #[serde(rename = "docker-manifest-digest")]
    digest: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClaimIdentity {
    #[serde(rename = "docker-reference")]
    reference: String,
}

/// What a verified signature claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Verified {
    pub manifest_digest: String,
    pub docker_reference: String,
    /// The trusted primary key's fingerprint (upper-case hex).
    pub signer: String,
}

/// Verifies `blob` (a binary OpenPGP signed message) against `keys`.
pub(crate) fn verify(blob: &[u8], keys: &[SignedPublicKey]) -> Result<Verified, String> {
    if blob.starts_with(b"-----BEGIN") {
        return Err("an ASCII-armoured signature is not a simple-signing signature".into());
    }
    let message = Message::from_bytes(blob).map_err(|e| format!("not an OpenPGP message: {e}"))?;
    let mut message = message
        .decompress()
        .map_err(|e| format!("not an OpenPGP message: {e}"))?;
    if !message.is_signed() {
        return Err("the OpenPGP message is not signed".into());
    }
    let payload = message
        .as_data_vec()
        .map_err(|e| format!("reading the signed data: {e}"))?;
    let now = chrono::Utc::now();
    let mut signer = None;
    'keys: for key in keys {
        if key.expires_at().is_some_and(|t| t < now) {
            continue;
        }
        let candidates = std::iter::once(&key.primary_key as &dyn PublicKeyTrait).chain(
            key.public_subkeys
                .iter()
                .map(|s| &s.key as &dyn PublicKeyTrait),
        );
        for candidate in candidates {
            if let Ok(signature) = message.verify(candidate) {
                if signature
                    .signature_expiration_time()
                    .zip(signature.created())
                    .is_some_and(|(valid_for, created)| {
                        !valid_for.is_zero() && *created + *valid_for < now
                    })
                {
                    return Err("the signature has expired".into());
                }
                signer = Some(hex::encode_upper(key.fingerprint().as_bytes()));
                break 'keys;
            }
        }
    }
    let Some(signer) = signer else {
        return Err("the signature is not made by a trusted key".into());
    };
    let claim: Claim = serde_json::from_slice(&payload)
        .map_err(|e| format!("the signed claim is invalid: {e}"))?;
    if claim.critical.kind != SIGNATURE_TYPE {
        return Err(format!(
            "the signed claim's type is {:?}, not {SIGNATURE_TYPE:?}",
            claim.critical.kind
        ));
    }
    Ok(Verified {
        manifest_digest: claim.critical.image.digest,
        docker_reference: claim.critical.identity.reference,
        signer,
    })
}
