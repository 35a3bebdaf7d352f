use std::process::Command;

use super::*;
use crate::image::reference::ParsedName;

fn name(s: &str) -> ImageName {
    match ImageName::parse(s).expect("name") {
        ParsedName::Qualified(n) => n,
        ParsedName::Short { .. } => panic!("{s} is short"),
    }
}

fn policy(text: &str) -> Result<Policy, PolicyError> {
    Policy::parse(Path::new("/etc/containers/policy.json"), text)
}

#[test]
fn debian_s_policy_loads_and_accepts() {
    let text = r#"{"default": [{"type": "insecureAcceptAnything"}],
        "transports": {"docker-daemon": {"": [{"type": "insecureAcceptAnything"}]}}}"#;
    let p = policy(text).expect("valid");
    let (scope, reqs) = p.requirements_for(&name("quay.io/a/b:1"));
    assert_eq!(scope, "default");
    assert_eq!(reqs, [Requirement::InsecureAcceptAnything {}]);
}

#[test]
fn bad_policies_name_the_file_and_the_fault() {
    for (text, expected) in [
        ("{}", "missing field `default`"),
        (r#"{"default": []}"#, "must not be empty"),
        (r#"{"default": [{"type": "foo"}]}"#, "unknown variant `foo`"),
        (r#"{"default": [{"type": "reject", "extra": 1}]}"#, "extra"),
        (
            r#"{"default": [{"type": "signedBy", "keyType": "GPGKeys"}]}"#,
            "exactly one of keyPath",
        ),
        (
            r#"{"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/a", "keyData": "eA=="}]}"#,
            "exactly one of keyPath",
        ),
        (
            r#"{"default": [{"type": "signedBy", "keyType": "PGP", "keyPath": "/a"}]}"#,
            "keyType \"PGP\"",
        ),
        (
            r#"{"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/a", "signedIdentity": {"type": "matchFoo"}}]}"#,
            "matchFoo",
        ),
    ] {
        let err = policy(text).expect_err(text).to_string();
        assert!(
            err.contains("/etc/containers/policy.json") && err.contains(expected),
            "{text}: {err}"
        );
    }
}

#[test]
fn the_most_specific_scope_wins() {
    let p = policy(
        r#"{"default": [{"type": "reject"}], "transports": {"docker": {
            "registry.local:5000/team/app:v1": [{"type": "insecureAcceptAnything"}],
            "registry.local:5000/team": [{"type": "reject"}],
            "*.example.com": [{"type": "insecureAcceptAnything"}],
            "": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/k"}]}}}"#,
    )
    .expect("valid");
    let scope = |n: &str| p.requirements_for(&name(n)).0;
    assert_eq!(
        scope("registry.local:5000/team/app:v1"),
        "registry.local:5000/team/app:v1"
    );
    assert_eq!(
        scope("registry.local:5000/team/app:v2"),
        "registry.local:5000/team"
    );
    assert_eq!(
        scope("registry.local:5000/team/sub/app:v2"),
        "registry.local:5000/team"
    );
    assert_eq!(scope("quay.example.com/x/y:1"), "*.example.com");
    assert_eq!(scope("quay.io/x/y:1"), "");
}

#[test]
fn scope_namespaces_are_containers_image_s() {
    assert_eq!(
        scope_namespaces(&name("reg.example.com:5000/ns/sub/repo:tag")),
        [
            "reg.example.com:5000/ns/sub/repo",
            "reg.example.com:5000/ns/sub",
            "reg.example.com:5000/ns",
            "reg.example.com:5000",
            "*.example.com",
            "*.com"
        ]
    );
}

#[test]
fn identities_match_as_containers_image_matches_them() {
    let tagged = name("quay.io/ns/app:v1");
    let by_digest = name(&format!("quay.io/ns/app@sha256:{}", "a".repeat(64)));
    let m = |id: &Identity, n: &ImageName, signed: &str| identity_matches(id, n, signed).is_ok();
    let default = Identity::default();
    assert!(m(&default, &tagged, "quay.io/ns/app:v1"));
    assert!(!m(&default, &tagged, "quay.io/ns/app:v2"));
    assert!(!m(&default, &tagged, "quay.io/ns/app"), "no tag");
    assert!(
        m(&default, &by_digest, "quay.io/ns/app:anything"),
        "by digest: the repository"
    );
    assert!(m(&Identity::MatchRepository, &tagged, "quay.io/ns/app:v9"));
    assert!(!m(&Identity::MatchExact, &by_digest, "quay.io/ns/app:v1"));
    let exact = Identity::ExactReference {
        docker_reference: "quay.io/ns/app:stable".into(),
    };
    assert!(m(&exact, &tagged, "quay.io/ns/app:stable"));
    let remap = Identity::RemapIdentity {
        prefix: "mirror.local/quay".into(),
        signed_prefix: "quay.io".into(),
    };
    assert!(m(
        &remap,
        &name("mirror.local/quay/ns/app:v1"),
        "quay.io/ns/app:v1"
    ));
    assert!(!m(
        &remap,
        &name("mirror.local/quay/ns/app:v1"),
        "quay.io/ns/app:v2"
    ));
}

/// A GPG home with one passphrase-less key, as an operator makes one.
struct Gpg {
    home: tempfile::TempDir,
    fingerprint: String,
}

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (install gnupg and skopeo)"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

impl Gpg {
    fn new(email: &str) -> Self {
        let home = tempfile::tempdir().expect("tempdir");
        let params = home.path().join("params");
        std::fs::write(
            &params,
            format!("%no-protection\nKey-Type: default\nSubkey-Type: default\nName-Real: Test\nName-Email: {email}\nExpire-Date: 0\n%commit\n"),
        )
        .expect("params");
        run(Command::new("gpg")
            .arg("--homedir")
            .arg(home.path())
            .args(["--batch", "--gen-key"])
            .arg(&params));
        let listing = run(Command::new("gpg").arg("--homedir").arg(home.path()).args([
            "--list-keys",
            "--with-colons",
            email,
        ]));
        let fingerprint = String::from_utf8_lossy(&listing)
            .lines()
            .find_map(|l| {
                l.strip_prefix("fpr:")
                    .map(|r| r.trim_matches(':').to_string())
            })
            .expect("fingerprint");
        Self { home, fingerprint }
    }

    fn public_key(&self, armor: bool) -> Vec<u8> {
        let mut cmd = Command::new("gpg");
        cmd.arg("--homedir").arg(self.home.path()).arg("--export");
        if armor {
            cmd.arg("--armor");
        }
        run(cmd.arg(&self.fingerprint))
    }

    /// skopeo's own signature of `manifest` as `reference`.
    fn skopeo_sign(&self, manifest: &[u8], reference: &str) -> Vec<u8> {
        let dir = self.home.path();
        std::fs::write(dir.join("manifest.json"), manifest).expect("manifest");
        let out = dir.join("signature");
        run(Command::new("skopeo")
            .env("GNUPGHOME", dir)
            .args(["standalone-sign"])
            .arg(dir.join("manifest.json"))
            .arg(reference)
            .arg(&self.fingerprint)
            .arg("-o")
            .arg(&out));
        std::fs::read(out).expect("signature")
    }
}

#[tokio::test]
async fn skopeo_signatures_verify_against_the_key_and_the_claim() {
    let signer = Gpg::new("signer@example.com");
    let other = Gpg::new("other@example.com");
    let manifest =
        br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#;
    let digest = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(manifest))
    );
    let signature = signer.skopeo_sign(manifest, "registry.local:5000/team/app:v1");

    for armor in [false, true] {
        let keys = simple_signing::keyring(&signer.public_key(armor)).expect("keyring");
        let claim = simple_signing::verify(&signature, &keys).expect("verified");
        assert_eq!(claim.manifest_digest, digest);
        assert_eq!(claim.docker_reference, "registry.local:5000/team/app:v1");
        assert_eq!(claim.signer, signer.fingerprint);
    }
    let untrusted = simple_signing::keyring(&other.public_key(false)).expect("keyring");
    let err = simple_signing::verify(&signature, &untrusted).expect_err("other key");
    assert!(err.contains("not made by a trusted key"), "{err}");
    let mut tampered = signature.clone();
    let last = tampered.len() - 10;
    tampered[last] ^= 0xff;
    assert!(simple_signing::verify(
        &tampered,
        &simple_signing::keyring(&signer.public_key(false)).expect("k")
    )
    .is_err());

    // Through a policy and a file:// lookaside, as a pull checks it.
    let store = tempfile::tempdir().expect("lookaside");
    let sig_dir = store
        .path()
        .join(format!("team/app@{}", digest.replacen(':', "=", 1)));
    std::fs::create_dir_all(&sig_dir).expect("mkdir");
    std::fs::write(sig_dir.join("signature-1"), b"garbage").expect("bad signature");
    std::fs::write(sig_dir.join("signature-2"), &signature).expect("signature");
    let regd = tempfile::tempdir().expect("registries.d");
    std::fs::write(
        regd.path().join("local.yaml"),
        format!(
            "docker:\n  registry.local:5000:\n    lookaside: file://{}\n",
            store.path().display()
        ),
    )
    .expect("registries.d");
    let key_file = store.path().join("key.gpg");
    std::fs::write(&key_file, signer.public_key(false)).expect("key");
    let source = PolicySource {
        file: PathBuf::from("/unused"),
        explicit: false,
        namespace_dir: None,
        registries_d: regd.path().to_path_buf(),
    };
    let signed = policy(&format!(
        r#"{{"default": [{{"type": "reject"}}], "transports": {{"docker": {{"registry.local:5000/team": [
            {{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "{}"}}]}}}}}}"#,
        key_file.display()
    ))
    .expect("policy");
    let v1 = name("registry.local:5000/team/app:v1");
    source
        .check(&signed, &v1, &v1, &digest)
        .await
        .expect("the second signature is good");
    let v2 = name("registry.local:5000/team/app:v2");
    let err = source
        .check(&signed, &v2, &v2, &digest)
        .await
        .expect_err("other tag")
        .to_string();
    assert!(
        err.contains("does not match") && err.contains("scope \"registry.local:5000/team\""),
        "{err}"
    );
    let other_digest = format!("sha256:{}", "b".repeat(64));
    let err = source
        .check(&signed, &v1, &v1, &other_digest)
        .await
        .expect_err("unsigned")
        .to_string();
    assert!(err.contains("no signature exists"), "{err}");
    let elsewhere = name("quay.io/team/app:v1");
    let err = source
        .check(&signed, &elsewhere, &elsewhere, &digest)
        .await
        .expect_err("default")
        .to_string();
    assert!(err.contains("rejects every image"), "{err}");
}
