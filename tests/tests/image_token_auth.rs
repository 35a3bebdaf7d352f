//! Pulls from a registry with bearer-token auth (distribution's `auth: token:`): the
//! daemon trades the request's or the auth file's credentials for a JWT at the
//! harness's token server, or sends the request's `registry_token` as it is.

use crio_tests::registry::RegistryOptions;
use crio_tests::token_server::{TokenRequest, TokenServer};
use crio_tests::{Daemon, Registry, TestImage};
use protocols::cri::AuthConfig;
use tonic::Code;

const USER: &str = "crio";
const PASSWORD: &str = "t0ken-s3cret";

fn token_registry(tokens: &TokenServer) -> Registry {
    let registry = Registry::start_with(RegistryOptions {
        token_auth: Some(tokens),
        ..RegistryOptions::default()
    });
    registry.push_test_images(&[TestImage::Busybox]);
    registry
}

fn basic(user: &str, password: &str) -> Option<AuthConfig> {
    Some(AuthConfig {
        username: user.into(),
        password: password.into(),
        ..Default::default()
    })
}

/// Requests the daemon made (the harness's push asked for push scopes before).
fn pull_requests(tokens: &TokenServer) -> Vec<TokenRequest> {
    tokens
        .requests()
        .into_iter()
        .filter(|r| r.scopes.iter().all(|s| s.ends_with(":pull")) && !r.scopes.is_empty())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn request_credentials_are_traded_for_a_token() {
    let tokens = TokenServer::start(USER, PASSWORD);
    let registry = token_registry(&tokens);
    let name = registry.reference(TestImage::Busybox);
    let daemon = Daemon::builder()
        .registries_conf(&registry.insecure_conf())
        .start();
    let mut cri = daemon.client().await;

    // Anonymous: the token server grants nothing, the registry refuses.
    let err = cri.pull(&name, None).await.expect_err("anonymous");
    assert_eq!(err.code(), Code::Unauthenticated, "{err}");
    assert!(err.message().contains("not authorized"), "{err}");

    let err = cri
        .pull(&name, basic(USER, "wrong"))
        .await
        .expect_err("wrong password");
    assert_eq!(err.code(), Code::Unauthenticated, "{err}");
    assert!(
        tokens
            .requests()
            .iter()
            .any(|r| r.user.as_deref() == Some(USER) && r.status == 401),
        "the wrong password reached the token server: {:?}",
        tokens.requests()
    );
    assert!(cri.images().await.is_empty(), "failed pulls keep nothing");

    let before = pull_requests(&tokens).len();
    let id = cri
        .pull(&name, basic(USER, PASSWORD))
        .await
        .expect("pull with a token");
    let issued: Vec<TokenRequest> = pull_requests(&tokens)
        .into_iter()
        .skip(before)
        .filter(|r| r.status == 200 && r.user.as_deref() == Some(USER))
        .collect();
    assert!(
        !issued.is_empty(),
        "a token was issued for the pull: {:?}",
        tokens.requests()
    );
    assert_eq!(issued[0].service, tokens.service);
    assert_eq!(issued[0].scopes, ["repository:test/busybox:pull"]);
    let images = cri.images().await;
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].id, id);
    // The registry served the manifest to the token holder.
    assert!(registry.get_count("/v2/test/busybox/manifests/latest") >= 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_file_credentials_are_traded_for_a_token() {
    let tokens = TokenServer::start(USER, PASSWORD);
    let registry = token_registry(&tokens);
    let dir = tempfile::tempdir().expect("tempdir");
    let auth_file = dir.path().join("auth.json");
    let encoded = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
    };
    std::fs::write(
        &auth_file,
        format!(
            r#"{{"auths":{{"{}":{{"auth":"{encoded}"}}}}}}"#,
            registry.addr
        ),
    )
    .expect("auth.json");
    let daemon = Daemon::builder()
        .registries_conf(&registry.insecure_conf())
        .env("REGISTRY_AUTH_FILE", auth_file.to_str().expect("utf-8"))
        .start();
    let mut cri = daemon.client().await;
    cri.pull(&registry.reference(TestImage::Busybox), None)
        .await
        .expect("credentials from the auth file");
    assert!(
        pull_requests(&tokens)
            .iter()
            .any(|r| r.status == 200 && r.user.as_deref() == Some(USER)),
        "{:?}",
        tokens.requests()
    );
    assert_eq!(cri.images().await.len(), 1);

    // Request credentials win over the file: wrong ones fail even with a good file.
    let err = cri
        .pull(
            &registry.reference(TestImage::Busybox),
            basic(USER, "wrong"),
        )
        .await
        .expect_err("request credentials win");
    assert_eq!(err.code(), Code::Unauthenticated, "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn registry_token_is_sent_as_it_is() {
    let tokens = TokenServer::start(USER, PASSWORD);
    let registry = token_registry(&tokens);
    let name = registry.reference(TestImage::Busybox);
    let daemon = Daemon::builder()
        .registries_conf(&registry.insecure_conf())
        .start();
    let mut cri = daemon.client().await;

    let wrong_repo = tokens.issue(USER, &["repository:test/other:pull"]);
    let err = cri
        .pull(
            &name,
            Some(AuthConfig {
                registry_token: wrong_repo,
                ..Default::default()
            }),
        )
        .await
        .expect_err("token for another repository");
    assert_eq!(err.code(), Code::Unauthenticated, "{err}");

    let asked = tokens.requests().len();
    let good = tokens.issue(USER, &["repository:test/busybox:pull"]);
    cri.pull(
        &name,
        Some(AuthConfig {
            registry_token: good,
            ..Default::default()
        }),
    )
    .await
    .expect("pull with the registry token");
    assert_eq!(
        tokens.requests().len(),
        asked,
        "the token server is not asked when the request brings a token"
    );
    assert_eq!(cri.images().await.len(), 1);

    let err = cri
        .pull(
            &name,
            Some(AuthConfig {
                identity_token: "refresh-token".into(),
                ..Default::default()
            }),
        )
        .await
        .expect_err("identity tokens are not supported");
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    assert!(err.message().contains("identity_token"), "{err}");
}
