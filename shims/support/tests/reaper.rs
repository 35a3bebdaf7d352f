//! The reaper reaps every child of the process: it runs in its own test binary
//! so it cannot steal the children other tests wait for.

use std::process::Command;

use shim_support::reaper::Reaper;

#[tokio::test]
async fn runs_commands_without_losing_exits() {
    let reaper = Reaper::start().expect("reaper");
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", "echo out; echo err >&2; exit 7"]);
    let out = reaper.run_output(cmd).await.expect("run");
    assert_eq!(out.status, 7);
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(out.stderr, b"err\n");

    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", "kill -9 $$"]);
    assert_eq!(reaper.run_status(cmd).await.expect("run"), 137);

    // A grandchild orphaned to us (the subreaper) is reaped and reported too.
    let mut sub = reaper.subscribe();
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", "sh -c 'sleep 0.2; exit 5' & echo $!"]);
    let out = reaper.run_output(cmd).await.expect("run");
    let grandchild: i32 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("pid");
    let exit = tokio::time::timeout(std::time::Duration::from_secs(5), sub.wait_for(grandchild))
        .await
        .expect("in time")
        .expect("exit");
    assert_eq!(exit.status, 5);
}
