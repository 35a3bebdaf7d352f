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
    registry: Registry,
    daemon: Daemon,
    cri: CriClient,
    pod_id: String,
    container: String,
}

/// A pod with a running busybox container, or (`web`) the web image's httpd.
async fn fixture(web: bool) -> Fixture {
    fixture_with_on("", web, None).await
}

/// The same on `handler` (empty: the default).
async fn fixture_on(handler: &str, web: bool) -> Fixture {
    fixture_with_on(handler, web, None).await
}

/// The same, with a drop-in for the daemon.
async fn fixture_with(web: bool, dropin: Option<&str>) -> Fixture {
    fixture_with_on("", web, dropin).await
}

/// A pod on `handler` with a drop-in for the daemon (the `kata` handler gets the
/// test guest).
async fn fixture_with_on(handler: &str, web: bool, dropin: Option<&str>) -> Fixture {
    let registry = Registry::with_test_images();
    let mut builder = Daemon::builder().dropin("10-kata.conf", &crio_tests::kata::handler_dropin());
    if let Some(text) = dropin {
        builder = builder.dropin("50-streaming.conf", text);
    }
    let daemon = builder.registries_conf(&registry.insecure_conf()).start();
    let mut cri = daemon.client().await;
    let image = registry.reference(if web {
        TestImage::Web
    } else {
        TestImage::Busybox
    });
    cri.pull(&image, None).await.expect("pull");
    let pod = pod_config("stream", &daemon.dirs.log_dir);
    let pod_id = cri.run_pod(&pod, handler).await.expect("RunPodSandbox");
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
        registry,
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

async fn exec_output_and_exit_code_in_every_websocket_protocol(handler: &str) {
    let mut f = fixture_on(handler, false).await;
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

async fn exec_with_stdin_until_the_client_closes_it(handler: &str) {
    let mut f = fixture_on(handler, false).await;
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

async fn exec_with_a_tty_follows_resizes(handler: &str) {
    let mut f = fixture_on(handler, false).await;
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

async fn a_client_that_disconnects_frees_its_exec_process(handler: &str) {
    let mut f = fixture_on(handler, false).await;
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

async fn port_forward_reaches_a_port_inside_the_pod(handler: &str) {
    let mut f = fixture_on(handler, true).await;
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

// ---- SPDY/3.1, as crictl and the kubelet's clients speak it ----

use crio_tests::spdy::SpdyClient;

async fn spdy_exec_output_stdin_and_exit_codes(handler: &str) {
    let mut f = fixture_on(handler, false).await;
    let cmd = ["sh", "-c", "echo out; echo err >&2; exit 3"];
    for (protocol, json) in [("v4.channel.k8s.io", true), ("v2.channel.k8s.io", false)] {
        let url = exec_url(&mut f.cri, exec_request(&f.container, &cmd, false, false)).await;
        let mut client = SpdyClient::connect(&url, &["v5.channel.k8s.io", protocol])
            .await
            .expect("upgrade");
        assert_eq!(client.protocol, protocol, "v5 is not served over SPDY");
        let error = client
            .open(&[("streamtype", "error")], false)
            .await
            .expect("error");
        let stdout = client
            .open(&[("streamtype", "stdout")], false)
            .await
            .expect("stdout");
        let stderr = client
            .open(&[("streamtype", "stderr")], false)
            .await
            .expect("stderr");
        let got = client.collect().await;
        assert_eq!(got.text(stdout), "out\n", "{protocol}");
        assert_eq!(got.text(stderr), "err\n", "{protocol}");
        assert!(got.fin.contains(&stdout) && got.fin.contains(&stderr));
        assert!(got.go_away, "the server says goodbye");
        if json {
            let s: Value = serde_json::from_str(&got.text(error)).expect("status JSON");
            assert_eq!(s["reason"], "NonZeroExitCode");
            assert_eq!(s["details"]["causes"][0]["message"], "3");
        } else {
            assert!(
                got.text(error).contains("exit code 3"),
                "{}",
                got.text(error)
            );
        }
    }

    // stdin, ended with a FIN.
    let url = exec_url(
        &mut f.cri,
        exec_request(&f.container, &["cat"], false, true),
    )
    .await;
    let mut client = SpdyClient::connect(&url, &["v4.channel.k8s.io"])
        .await
        .expect("upgrade");
    let error = client
        .open(&[("streamtype", "error")], false)
        .await
        .expect("error");
    let stdin = client
        .open(&[("streamtype", "stdin")], false)
        .await
        .expect("stdin");
    let stdout = client
        .open(&[("streamtype", "stdout")], false)
        .await
        .expect("stdout");
    client
        .open(&[("streamtype", "stderr")], false)
        .await
        .expect("stderr");
    client.send(stdin, b"over spdy\n", true).await;
    let got = client.collect().await;
    assert_eq!(got.text(stdout), "over spdy\n");
    let s: Value = serde_json::from_str(&got.text(error)).expect("status JSON");
    assert_eq!(s["status"], "Success");
}

// The client sends its size as the session opens and its input 300 ms later;
// under TCG a VM's exec takes longer to start, so both are queued when it runs:
// the size must still reach the terminal first.
async fn spdy_exec_with_a_tty_follows_resizes(handler: &str) {
    let mut f = fixture_on(handler, false).await;
    let url = exec_url(
        &mut f.cri,
        exec_request(&f.container, &["sh", "-c", "read x; stty size"], true, true),
    )
    .await;
    let mut client = SpdyClient::connect(&url, &["v4.channel.k8s.io"])
        .await
        .expect("upgrade");
    let error = client
        .open(&[("streamtype", "error")], false)
        .await
        .expect("error");
    let stdin = client
        .open(&[("streamtype", "stdin")], false)
        .await
        .expect("stdin");
    let stdout = client
        .open(&[("streamtype", "stdout")], false)
        .await
        .expect("stdout");
    let resize = client
        .open(&[("streamtype", "resize")], false)
        .await
        .expect("resize");
    client
        .send(resize, b"{\"Width\":101,\"Height\":33}\n", false)
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    client.send(stdin, b"go\r", false).await;
    let got = client.collect().await;
    assert!(
        got.text(stdout).contains("33 101"),
        "{:?}",
        got.text(stdout)
    );
    let s: Value = serde_json::from_str(&got.text(error)).expect("status JSON");
    assert_eq!(s["status"], "Success");
}

#[tokio::test(flavor = "multi_thread")]
async fn spdy_upgrades_without_a_common_protocol_are_refused() {
    let mut f = fixture(false).await;
    let url = exec_url(
        &mut f.cri,
        exec_request(&f.container, &["true"], false, false),
    )
    .await;
    let err = SpdyClient::connect(&url, &["v9.channel.k8s.io"])
        .await
        .expect_err("403");
    assert!(err.starts_with("HTTP/1.1 403"), "{err}");
    assert!(
        err.to_ascii_lowercase()
            .contains("x-accepted-stream-protocol-versions: v4.channel.k8s.io"),
        "{err}"
    );
    let url = exec_url(
        &mut f.cri,
        exec_request(&f.container, &["true"], false, false),
    )
    .await;
    let err = SpdyClient::connect(&url, &[]).await.expect_err("400");
    assert!(err.starts_with("HTTP/1.1 400"), "{err}");
}

async fn spdy_port_forward_pairs_streams_by_request_id(handler: &str) {
    let mut f = fixture_on(handler, true).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let url = f
            .cri
            .runtime
            .port_forward(PortForwardRequest {
                pod_sandbox_id: f.pod_id.clone(),
                port: vec![],
            })
            .await
            .expect("PortForward")
            .into_inner()
            .url;
        let mut client = SpdyClient::connect(&url, &["portforward.k8s.io"])
            .await
            .expect("upgrade");
        assert_eq!(client.protocol, "portforward.k8s.io");
        // Two requests on one connection: port 80, and port 81 where nothing listens.
        let error = client
            .open(
                &[("streamtype", "error"), ("port", "80"), ("requestid", "0")],
                true,
            )
            .await
            .expect("error stream");
        let data = client
            .open(
                &[("streamtype", "data"), ("port", "80"), ("requestid", "0")],
                false,
            )
            .await
            .expect("data stream");
        client
            .send(data, b"GET /index.html HTTP/1.0\r\nHost: pod\r\n\r\n", true)
            .await;
        let got = client.collect_stream(data).await;
        let page = got.text(data);
        if page.contains("hello from crio-tests web") {
            assert!(got.text(error).is_empty(), "{}", got.text(error));
            let closed = client
                .open(
                    &[("streamtype", "error"), ("port", "81"), ("requestid", "1")],
                    true,
                )
                .await
                .expect("error stream");
            client
                .open(
                    &[("streamtype", "data"), ("port", "81"), ("requestid", "1")],
                    false,
                )
                .await
                .expect("data stream");
            let got = client.collect_stream(closed).await;
            assert!(
                got.text(closed)
                    .contains(&format!("error forwarding port 81 to pod {}", f.pod_id)),
                "{:?}",
                got.text(closed)
            );
            // A stream without a port is refused.
            assert_eq!(client.open(&[("streamtype", "data")], false).await, None);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no page through SPDY port-forward: {page:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

// ---- attach ----

use protocols::cri::AttachRequest;

/// A container created with stdin (`once`: stdin_once) running `script`.
async fn stdin_container(f: &mut Fixture, name: &str, script: &str, once: bool) -> String {
    let pod = pod_config("stream", &f.daemon.dirs.log_dir);
    let image = f.registry.reference(TestImage::Busybox);
    let mut config = container_config(name, &image, script);
    config.stdin = true;
    config.stdin_once = once;
    let id = f
        .cri
        .create_container(&f.pod_id, &config, &pod)
        .await
        .expect("CreateContainer");
    f.cri.start_container(&id).await.expect("StartContainer");
    id
}

async fn attach_url(
    cri: &mut CriClient,
    container: &str,
    stdin: bool,
) -> Result<String, tonic::Status> {
    cri.runtime
        .attach(AttachRequest {
            container_id: container.to_string(),
            stdin,
            tty: false,
            stdout: true,
            stderr: true,
        })
        .await
        .map(|r| r.into_inner().url)
}

/// Reads channel messages until each `(channel, needle)` has been received (the
/// channels interleave in any order).
async fn read_until(client: &mut ChannelClient, wanted: &[(u8, &str)]) {
    let mut seen: std::collections::BTreeMap<u8, String> = Default::default();
    while !wanted
        .iter()
        .all(|(c, needle)| seen.get(c).is_some_and(|t| t.contains(needle)))
    {
        match client.recv().await {
            Some((c, data)) => seen
                .entry(c)
                .or_default()
                .push_str(&String::from_utf8_lossy(&data)),
            None => panic!("closed before {wanted:?}; got {seen:?}"),
        }
    }
}

async fn attach_joins_the_containers_own_stdio_and_leaves_it_running(handler: &str) {
    let mut f = fixture_on(handler, false).await;
    let id = stdin_container(
        &mut f,
        "echoer",
        "while read line; do echo \"got $line\"; echo \"err $line\" >&2; done",
        false,
    )
    .await;
    for round in ["one", "two"] {
        let url = attach_url(&mut f.cri, &id, true).await.expect("Attach");
        let mut client = ChannelClient::connect(&url, &["v5.channel.k8s.io"])
            .await
            .expect("connect");
        client.send(STDIN, format!("{round}\n").as_bytes()).await;
        read_until(
            &mut client,
            &[
                (STDOUT, format!("got {round}").as_str()),
                (STDERR, format!("err {round}").as_str()),
            ],
        )
        .await;
        client.close().await;
        // Leaving does not stop the container, and stdin stays open for the next.
        let status = f.cri.container_status(&id).await.expect("status");
        assert_eq!(
            status.state,
            protocols::cri::ContainerState::ContainerRunning as i32
        );
    }
    // Without stdin at create, stdin cannot be attached.
    let err = attach_url(&mut f.cri, &f.container, true)
        .await
        .expect_err("no stdin");
    assert_eq!(err.code(), Code::InvalidArgument);
}

async fn attach_with_stdin_once_ends_with_the_container(handler: &str) {
    let mut f = fixture_on(handler, false).await;
    let id = stdin_container(&mut f, "once", "cat; echo stdin-closed", true).await;
    let url = attach_url(&mut f.cri, &id, true).await.expect("Attach");
    let mut client = ChannelClient::connect(&url, &["v5.channel.k8s.io"])
        .await
        .expect("connect");
    client.send(STDIN, b"through cat\n").await;
    read_until(&mut client, &[(STDOUT, "through cat")]).await;
    // Closing stdin (stdin_once) is the container's end-of-file: cat ends, the
    // container exits, the session ends with Success.
    client.send(255, &[STDIN]).await;
    let got = client.collect().await;
    assert!(text(&got, STDOUT).contains("stdin-closed"), "{got:?}");
    assert_eq!(status(&got)["status"], "Success");
    let exited = f.cri.wait_exited(&id, Duration::from_secs(10)).await;
    assert_eq!(exited.exit_code, 0);
}

async fn attach_over_spdy(handler: &str) {
    let mut f = fixture_on(handler, false).await;
    let id = stdin_container(&mut f, "spdy", "read line; echo \"spdy $line\"", false).await;
    let url = attach_url(&mut f.cri, &id, true).await.expect("Attach");
    let mut client = SpdyClient::connect(&url, &["v4.channel.k8s.io"])
        .await
        .expect("upgrade");
    let error = client
        .open(&[("streamtype", "error")], false)
        .await
        .expect("error");
    let stdin = client
        .open(&[("streamtype", "stdin")], false)
        .await
        .expect("stdin");
    let stdout = client
        .open(&[("streamtype", "stdout")], false)
        .await
        .expect("stdout");
    client
        .open(&[("streamtype", "stderr")], false)
        .await
        .expect("stderr");
    client.send(stdin, b"hi\n", false).await;
    let got = client.collect().await;
    assert!(
        got.text(stdout).contains("spdy hi"),
        "{:?}",
        got.text(stdout)
    );
    let s: Value = serde_json::from_str(&got.text(error)).expect("status JSON");
    assert_eq!(s["status"], "Success");
}

// ---- idle sessions, TLS ----

async fn an_idle_session_is_closed_and_its_process_killed(handler: &str) {
    let mut f = fixture_with_on(
        handler,
        false,
        Some("[crio.api]\nstream_idle_timeout = \"2s\"\n"),
    )
    .await;
    let url = exec_url(
        &mut f.cri,
        exec_request(&f.container, &["sleep", "4244"], false, false),
    )
    .await;
    let mut client = ChannelClient::connect(&url, &["v4.channel.k8s.io"])
        .await
        .expect("connect");
    let started = Instant::now();
    // Nothing flows: the server ends the session after the idle timeout.
    let _ = client.collect().await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(15),
        "closed after {waited:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ps = f.cri.exec(&f.container, &["ps", "-o", "args"]).await;
        let ps = String::from_utf8_lossy(&ps.stdout).to_string();
        if !ps.contains("sleep 4244") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the idle session's process still runs:\n{ps}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_streaming_server_serves_tls_and_requires_client_certificates() {
    use crio_tests::registry::TestCa;
    use crio_tests::streaming::ClientTls;
    let ca = TestCa::new();
    let (client_cert, client_key) = ca.client_cert("kubelet");
    let dropin = format!(
        "[crio.api]\nstream_enable_tls = true\nstream_tls_cert = {:?}\nstream_tls_key = {:?}\nstream_tls_ca = {:?}\n",
        ca.server_cert, ca.server_key, ca.ca_cert
    );
    let mut f = fixture_with(false, Some(&dropin)).await;
    let url = exec_url(
        &mut f.cri,
        exec_request(&f.container, &["echo", "over tls"], false, false),
    )
    .await;
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    // Without a client certificate the handshake is refused (the token is not
    // consumed: TLS fails before any HTTP).
    let anonymous = ClientTls {
        ca_pem: ca.ca_pem(),
        client: None,
    };
    let refused = ChannelClient::connect_with(&url, &["v4.channel.k8s.io"], Some(&anonymous)).await;
    assert!(refused.is_err(), "a client without a certificate got in");
    let kubelet = ClientTls {
        ca_pem: ca.ca_pem(),
        client: Some((client_cert, client_key)),
    };
    let mut client = ChannelClient::connect_with(&url, &["v4.channel.k8s.io"], Some(&kubelet))
        .await
        .expect("connect with a client certificate");
    let got = client.collect().await;
    assert_eq!(text(&got, STDOUT), "over tls\n");
    assert_eq!(status(&got)["status"], "Success");
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_without_its_files_is_a_named_config_error() {
    let daemon = Daemon::builder()
        .dropin("50-tls.conf", "[crio.api]\nstream_enable_tls = true\n")
        .spawn();
    let mut daemon = daemon;
    let status = daemon
        .wait_exit(Duration::from_secs(10))
        .expect("crio refuses to start");
    assert!(!status.success());
    let log = daemon.log();
    assert!(
        log.contains("crio.api.stream_tls_cert") && log.contains("stream_enable_tls"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_beyond_the_limit_are_refused_until_one_ends() {
    let mut f = fixture_with(false, Some("[crio.api]\nstream_max_sessions = 1\n")).await;
    let long = exec_url(
        &mut f.cri,
        exec_request(&f.container, &["sleep", "4245"], false, false),
    )
    .await;
    let first = ChannelClient::connect(&long, &["v4.channel.k8s.io"])
        .await
        .expect("connect");
    let url = exec_url(
        &mut f.cri,
        exec_request(&f.container, &["true"], false, false),
    )
    .await;
    let refused = ChannelClient::connect(&url, &["v4.channel.k8s.io"]).await;
    assert!(
        matches!(&refused, Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 429),
        "{:?}",
        refused.as_ref().err()
    );
    first.close().await;
    // Once the first session has ended, a new one gets in.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let url = exec_url(
            &mut f.cri,
            exec_request(&f.container, &["true"], false, false),
        )
        .await;
        match ChannelClient::connect(&url, &["v4.channel.k8s.io"]).await {
            Ok(mut client) => {
                assert_eq!(status(&client.collect().await)["status"], "Success");
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "still refused: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

crio_tests::on_runc_and_kata!(
    exec_output_and_exit_code_in_every_websocket_protocol,
    exec_with_stdin_until_the_client_closes_it,
    exec_with_a_tty_follows_resizes,
    a_client_that_disconnects_frees_its_exec_process,
    port_forward_reaches_a_port_inside_the_pod,
    spdy_exec_output_stdin_and_exit_codes,
    spdy_exec_with_a_tty_follows_resizes,
    spdy_port_forward_pairs_streams_by_request_id,
    attach_joins_the_containers_own_stdio_and_leaves_it_running,
    attach_with_stdin_once_ends_with_the_container,
    attach_over_spdy,
    an_idle_session_is_closed_and_its_process_killed
);

/// Whether openssl completes a TLS handshake with `addr` given `args`.
fn openssl_handshake(addr: &str, args: &[&str]) -> bool {
    std::process::Command::new("openssl")
        .args(["s_client", "-brief", "-connect", addr])
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl")
        .status
        .success()
}

/// `tls_min_version` and `tls_cipher_suites` (CRI-O 1.35's keys) as a TLS client
/// (openssl) meets them.
#[tokio::test(flavor = "multi_thread")]
async fn tls_min_version_and_cipher_suites_bound_the_streaming_server() {
    use crio_tests::registry::TestCa;
    let ca = TestCa::new();
    let files = format!(
        "[crio.api]\nstream_enable_tls = true\nstream_tls_cert = {:?}\nstream_tls_key = {:?}\n",
        ca.server_cert, ca.server_key
    );
    let address = |url: &str| {
        url.trim_start_matches("https://")
            .split('/')
            .next()
            .expect("host:port")
            .to_string()
    };
    let mut tls13 = fixture_with(
        false,
        Some(&format!("{files}tls_min_version = \"VersionTLS13\"\n")),
    )
    .await;
    let url = exec_url(
        &mut tls13.cri,
        exec_request(&tls13.container, &["true"], false, false),
    )
    .await;
    let addr = address(&url);
    assert!(!openssl_handshake(&addr, &["-tls1_2"]), "TLS 1.2 refused");
    assert!(openssl_handshake(&addr, &["-tls1_3"]), "TLS 1.3 served");
    drop(tls13);

    let mut one_suite = fixture_with(
        false,
        Some(&format!(
            "{files}tls_cipher_suites = [\"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384\"]\n"
        )),
    )
    .await;
    let url = exec_url(
        &mut one_suite.cri,
        exec_request(&one_suite.container, &["true"], false, false),
    )
    .await;
    let addr = address(&url);
    assert!(
        !openssl_handshake(
            &addr,
            &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"]
        ),
        "a suite not listed is refused"
    );
    assert!(
        openssl_handshake(
            &addr,
            &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384"]
        ),
        "the listed suite is served"
    );
    assert!(
        openssl_handshake(&addr, &["-tls1_3"]),
        "TLS 1.3 suites stay on"
    );
}
