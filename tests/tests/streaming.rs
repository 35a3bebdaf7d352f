//! Exec and port-forward through the streaming server, over WebSocket as kubectl
//! speaks it (`v5.channel.k8s.io`, `v4.channel.k8s.io`, `v4.base64.channel.k8s.io`,
//! `channel.k8s.io`), with the test client in `crio_tests::streaming`.

use std::time::{Duration, Instant};

use crio_tests::cri::CriClient;
use crio_tests::pods::{container_config, pod_config};
use crio_tests::streaming::{text, ChannelClient};
use crio_tests::{Daemon, Registry, TestImage};
use protocols::cri::{ExecRequest, PortForwardRequest};
use serde_json::Value;
use tonic::Code;

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;

struct Fixture {
    _registry: Registry,
    daemon: Daemon,
    cri: CriClient,
    pod_id: String,
    container: String,
}

/// A pod with a running busybox container, or (`web`) the web image's httpd.
async fn fixture(web: bool) -> Fixture {
    let registry = Registry::with_test_images();
    let daemon = Daemon::builder()
        .registries_conf(&format!(
            "[[registry]]\nlocation = \"{}\"\ninsecure = true\n",
            registry.addr
        ))
        .start();
    let mut cri = daemon.client().await;
    let image = registry.reference(if web {
        TestImage::Web
    } else {
        TestImage::Busybox
    });
    cri.pull(&image, None).await.expect("pull");
    let pod = pod_config("stream", &daemon.dirs.log_dir);
    let pod_id = cri.run_pod(&pod, "").await.expect("RunPodSandbox");
    let mut config = container_config("c", &image, "sleep 3600");
    if web {
        config.command.clear();
    }
    let container = cri
        .create_container(&pod_id, &config, &pod)
        .await
        .expect("CreateContainer");
    cri.start_container(&container)
        .await
        .expect("StartContainer");
    Fixture {
        _registry: registry,
        daemon,
        cri,
        pod_id,
        container,
    }
}

fn exec_request(container: &str, cmd: &[&str], tty: bool, stdin: bool) -> ExecRequest {
    ExecRequest {
        container_id: container.to_string(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        tty,
        stdin,
        stdout: true,
        stderr: !tty,
    }
}

async fn exec_url(cri: &mut CriClient, request: ExecRequest) -> String {
    cri.runtime
        .exec(request)
        .await
        .expect("Exec")
        .into_inner()
        .url
}

fn status(channels: &std::collections::BTreeMap<u8, Vec<u8>>) -> Value {
    serde_json::from_str(&text(channels, ERROR)).expect("a Status on the error channel")
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_output_and_exit_code_in_every_websocket_protocol() {
    let mut f = fixture(false).await;
    let cmd = ["sh", "-c", "echo out; echo err >&2; exit 3"];
    for protocol in [
        "v5.channel.k8s.io",
        "v4.channel.k8s.io",
        "v4.base64.channel.k8s.io",
        "channel.k8s.io",
    ] {
        let url = exec_url(&mut f.cri, exec_request(&f.container, &cmd, false, false)).await;
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        let mut client = ChannelClient::connect(&url, &[protocol])
            .await
            .expect("connect");
        assert_eq!(client.protocol, protocol);
        let got = client.collect().await;
        assert_eq!(text(&got, STDOUT), "out\n", "{protocol}");
        assert_eq!(text(&got, STDERR), "err\n", "{protocol}");
        if protocol == "channel.k8s.io" {
            assert!(
                text(&got, ERROR).contains("exit code 3"),
                "{protocol}: {:?}",
                text(&got, ERROR)
            );
        } else {
            let s = status(&got);
            assert_eq!(s["status"], "Failure", "{protocol}");
            assert_eq!(s["reason"], "NonZeroExitCode");
            assert_eq!(s["details"]["causes"][0]["reason"], "ExitCode");
            assert_eq!(s["details"]["causes"][0]["message"], "3");
        }
    }
    // Success is a Success status.
    let url = exec_url(
        &mut f.cri,
        exec_request(&f.container, &["true"], false, false),
    )
    .await;
    let mut client = ChannelClient::connect(&url, &["v4.channel.k8s.io"])
        .await
        .expect("connect");
    assert_eq!(status(&client.collect().await)["status"], "Success");
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_with_stdin_until_the_client_closes_it() {
    let mut f = fixture(false).await;
    let url = exec_url(
        &mut f.cri,
        exec_request(&f.container, &["cat"], false, true),
    )
    .await;
    let mut client = ChannelClient::connect(&url, &["v5.channel.k8s.io"])
        .await
        .expect("connect");
    client.send(STDIN, b"hello ").await;
    client.send(STDIN, b"from stdin\n").await;
    // v5: close stdin; cat sees end-of-file and exits 0.
    client.send(255, &[STDIN]).await;
    let got = client.collect().await;
    assert_eq!(text(&got, STDOUT), "hello from stdin\n");
    assert_eq!(status(&got)["status"], "Success");
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_with_a_tty_follows_resizes() {
    let mut f = fixture(false).await;
    // The shell waits for a line, then reports the terminal's size.
    let url = exec_url(
        &mut f.cri,
        exec_request(&f.container, &["sh", "-c", "read x; stty size"], true, true),
    )
    .await;
    let mut client = ChannelClient::connect(&url, &["v5.channel.k8s.io"])
        .await
        .expect("connect");
    client.send(RESIZE, br#"{"Width":123,"Height":45}"#).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    client.send(STDIN, b"go\r").await;
    let got = client.collect().await;
    let out = text(&got, STDOUT);
    assert!(out.contains("45 123"), "stty size saw the resize: {out:?}");
    assert!(!got.contains_key(&STDERR), "a tty has no separate stderr");
    assert_eq!(status(&got)["status"], "Success");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_url_is_single_use_and_bad_requests_are_refused() {
    let mut f = fixture(false).await;
    let url = exec_url(
        &mut f.cri,
        exec_request(&f.container, &["true"], false, false),
    )
    .await;
    let mut first = ChannelClient::connect(&url, &["v4.channel.k8s.io"])
        .await
        .expect("connect");
    first.collect().await;
    let again = ChannelClient::connect(&url, &["v4.channel.k8s.io"]).await;
    assert!(
        matches!(&again, Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 404),
        "a used token is gone: {:?}",
        again.as_ref().err()
    );

    let mut bad = exec_request(&f.container, &["true"], true, false);
    bad.stderr = true;
    let err = f.cri.runtime.exec(bad).await.expect_err("tty+stderr");
    assert_eq!(err.code(), Code::InvalidArgument);
    let mut none = exec_request(&f.container, &["true"], false, false);
    none.stdout = false;
    none.stderr = false;
    let err = f.cri.runtime.exec(none).await.expect_err("no streams");
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = f
        .cri
        .runtime
        .exec(exec_request("no-such-container", &["true"], false, false))
        .await
        .expect_err("unknown container");
    assert_eq!(err.code(), Code::NotFound);
    let err = f
        .cri
        .runtime
        .port_forward(PortForwardRequest {
            pod_sandbox_id: "no-such-pod".into(),
            port: vec![80],
        })
        .await
        .expect_err("unknown pod");
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_disconnects_frees_its_exec_process() {
    let mut f = fixture(false).await;
    let url = exec_url(
        &mut f.cri,
        exec_request(&f.container, &["sleep", "4242"], false, false),
    )
    .await;
    let client = ChannelClient::connect(&url, &["v5.channel.k8s.io"])
        .await
        .expect("connect");
    let running = |ps: &str| ps.lines().any(|l| l.contains("sleep 4242"));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ps = f.cri.exec(&f.container, &["ps", "-o", "args"]).await;
        if running(&String::from_utf8_lossy(&ps.stdout)) {
            break;
        }
        assert!(Instant::now() < deadline, "the exec never started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    client.close().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ps = f.cri.exec(&f.container, &["ps", "-o", "args"]).await;
        let ps = String::from_utf8_lossy(&ps.stdout).to_string();
        if !running(&ps) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still running after the client left:\n{ps}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn port_forward_reaches_a_port_inside_the_pod() {
    let mut f = fixture(true).await;
    let url = f
        .cri
        .runtime
        .port_forward(PortForwardRequest {
            pod_sandbox_id: f.pod_id.clone(),
            port: vec![80],
        })
        .await
        .expect("PortForward")
        .into_inner()
        .url;
    // httpd may still be starting: retry whole sessions.
    let deadline = Instant::now() + Duration::from_secs(15);
    let response = loop {
        let url = f
            .cri
            .runtime
            .port_forward(PortForwardRequest {
                pod_sandbox_id: f.pod_id.clone(),
                port: vec![80],
            })
            .await
            .expect("PortForward")
            .into_inner()
            .url;
        let mut client = ChannelClient::connect(&format!("{url}?port=80"), &["v4.channel.k8s.io"])
            .await
            .expect("connect");
        // The server announces the port on the data and the error channel.
        assert_eq!(client.recv().await, Some((0, 80u16.to_le_bytes().to_vec())));
        assert_eq!(client.recv().await, Some((1, 80u16.to_le_bytes().to_vec())));
        client
            .send(0, b"GET /index.html HTTP/1.0\r\nHost: pod\r\n\r\n")
            .await;
        let got = client.collect().await;
        let data = text(&got, 0);
        if data.contains("hello from crio-tests web") {
            break data;
        }
        assert!(
            Instant::now() < deadline,
            "no page through port-forward: data {data:?}, error {:?}",
            text(&got, 1)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(response.starts_with("HTTP/1."), "{response}");
    drop(url);

    // A port nothing listens on: the error channel says so.
    let url = f
        .cri
        .runtime
        .port_forward(PortForwardRequest {
            pod_sandbox_id: f.pod_id.clone(),
            port: vec![81],
        })
        .await
        .expect("PortForward")
        .into_inner()
        .url;
    let mut client = ChannelClient::connect(&url, &["v4.channel.k8s.io"])
        .await
        .expect("connect");
    let got = client.collect().await;
    let error = text(&got, 1);
    assert!(error.contains("localhost:81"), "{error:?}");
    let _ = &f.daemon;
}
