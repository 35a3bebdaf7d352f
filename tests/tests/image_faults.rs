//! Pulls that go wrong: the daemon killed mid-pull, the disk filling up, a registry
//! that stops sending. Each must leave the store consistent and the next pull working.

use std::time::Duration;

use crio_tests::registry::insecure_registry_conf;
use crio_tests::{Daemon, Registry, TestImage};
use protocols::cri::{ImageSpec, PullImageRequest};
use tonic::Code;

async fn pull(daemon: &Daemon, image: &str) -> Result<String, tonic::Status> {
    daemon.client().await.pull(image, None).await
}

async fn image_count(daemon: &Daemon) -> usize {
    daemon.client().await.images().await.len()
}

fn leftovers(daemon: &Daemon) -> usize {
    std::fs::read_dir(daemon.dirs.root.join("images/tmp"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_at_random_points_of_a_pull_leaves_no_half_image() {
    let registry = Registry::start();
    registry.push_test_images(&[TestImage::Big]);
    let name = registry.reference(TestImage::Big);
    let mut daemon = Daemon::builder()
        .registries_conf(&insecure_registry_conf(&registry.addr))
        .start();
    for round in 0..6u64 {
        let name2 = name.clone();
        let socket = daemon.dirs.socket.clone();
        let pulling = tokio::spawn(async move {
            let mut cri = crio_tests::cri::CriClient::connect(&socket)
                .await
                .expect("connect");
            let _ = cri
                .image
                .pull_image(PullImageRequest {
                    image: Some(ImageSpec {
                        image: name2,
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .await;
        });
        tokio::time::sleep(Duration::from_millis(20 + round * 70)).await;
        daemon.kill9();
        let _ = pulling.await;
        daemon.restart();
        assert_eq!(
            leftovers(&daemon),
            0,
            "round {round}: temp data survived the restart"
        );
        let count = image_count(&daemon).await;
        if count == 1 {
            // The pull finished before the kill: it must be whole.
            let layers = std::fs::read_dir(daemon.dirs.root.join("images/layers"))
                .expect("layers")
                .count();
            assert_eq!(layers, 4, "round {round}");
            let mut cri = daemon.client().await;
            cri.image
                .remove_image(protocols::cri::RemoveImageRequest {
                    image: Some(ImageSpec {
                        image: name.clone(),
                        ..Default::default()
                    }),
                })
                .await
                .expect("remove");
        } else {
            assert_eq!(count, 0, "round {round}");
            // Unrecorded layers were collected at start-up.
            let layers = std::fs::read_dir(daemon.dirs.root.join("images/layers"))
                .expect("layers")
                .count();
            assert_eq!(layers, 0, "round {round}: orphan layers kept");
        }
    }
    pull(&daemon, &name)
        .await
        .expect("a pull after the crashes works");
    assert_eq!(image_count(&daemon).await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn disk_full_fails_the_pull_clearly_and_keeps_the_store_consistent() {
    let registry = Registry::start();
    registry.push_test_images(&[TestImage::Big, TestImage::Busybox]);
    // 12 MiB: the metadata store and busybox fit, the 24 MiB image does not.
    let daemon = Daemon::builder()
        .registries_conf(&insecure_registry_conf(&registry.addr))
        .root_on_tmpfs(12 << 20)
        .start();
    let err = pull(&daemon, &registry.reference(TestImage::Big))
        .await
        .expect_err("no space");
    assert!(
        err.message().contains("No space left on device"),
        "{}: {}",
        err.code(),
        err.message()
    );
    assert_eq!(image_count(&daemon).await, 0);
    assert_eq!(
        leftovers(&daemon),
        0,
        "a failed pull cleans up after itself"
    );
    pull(&daemon, &registry.reference(TestImage::Busybox))
        .await
        .expect("room for a small image");
    assert_eq!(image_count(&daemon).await, 1);
}

/// A TCP proxy in front of the real registry that stops forwarding a response after
/// `limit` bytes and keeps the connection open: a registry that stalls mid-blob.
async fn stalling_proxy(upstream: String, limit: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut cr, &mut sw).await;
                });
                let mut sent = 0;
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    let Ok(n) = sr.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    let n = n.min(limit.saturating_sub(sent));
                    if n == 0 {
                        // Stall: hold the connection, send nothing more.
                        tokio::time::sleep(Duration::from_secs(600)).await;
                        return;
                    }
                    if cw.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                    sent += n;
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_pull_is_cancelled_after_pull_progress_timeout() {
    let registry = Registry::start();
    registry.push_test_images(&[TestImage::Big]);
    let proxy = stalling_proxy(registry.addr.clone(), 512 * 1024).await;
    let daemon = Daemon::builder()
        .registries_conf(&insecure_registry_conf(&proxy))
        .dropin(
            "50-timeout.conf",
            "[crio.image]\npull_progress_timeout = \"2s\"\n",
        )
        .start();
    let started = std::time::Instant::now();
    let err = pull(&daemon, &format!("{proxy}/{}", TestImage::Big.repo_tag()))
        .await
        .expect_err("stalls");
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err}");
    assert!(err.message().contains("pull_progress_timeout"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(image_count(&daemon).await, 0);
    assert_eq!(leftovers(&daemon), 0);
}
