//! kill -9 a writer at random moments: the store always reopens, every acknowledged
//! commit is there, and no transaction is half-applied.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crio_core::store::{ContainerRecord, SandboxRecord, Store};

#[test]
fn kill_9_during_writes_leaves_a_readable_consistent_store() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("metadata.redb");
    let mut acknowledged: i64 = -1;
    for round in 0..12u64 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_store-writer"))
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn store-writer");
        let stdout = child.stdout.take().expect("stdout");
        // Kill after a pseudo-random number of commits (and mid-commit, at random time).
        let wanted = 3 + (round * 7919 % 23);
        let mut lines = BufReader::new(stdout).lines();
        let mut seen = 0;
        let deadline = Instant::now() + Duration::from_secs(30);
        while seen < wanted {
            let line = lines.next().expect("writer output").expect("line");
            let n: i64 = line
                .strip_prefix("committed ")
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("unexpected line {line:?}"));
            acknowledged = acknowledged.max(n);
            seen += 1;
            assert!(Instant::now() < deadline, "writer too slow");
        }
        std::thread::sleep(Duration::from_micros(round * 397 % 3000));
        child.kill().expect("kill -9");
        // Lines already printed but not yet read were acknowledged too.
        for line in lines.map_while(Result::ok) {
            if let Some(n) = line.strip_prefix("committed ").and_then(|n| n.parse().ok()) {
                acknowledged = acknowledged.max(n);
            }
        }
        child.wait().expect("reap");

        let store = Store::open(&path).unwrap_or_else(|e| panic!("round {round}: reopen: {e}"));
        let sandboxes = store.list::<SandboxRecord>().expect("list sandboxes");
        let containers = store.list::<ContainerRecord>().expect("list containers");
        assert!(
            sandboxes.len() as i64 > acknowledged,
            "round {round}: acknowledged commit {acknowledged} lost ({} records)",
            sandboxes.len()
        );
        assert_eq!(
            sandboxes.len(),
            containers.len(),
            "round {round}: half-applied transaction"
        );
        for (i, (s, c)) in sandboxes.iter().zip(&containers).enumerate() {
            assert_eq!(s.id, format!("{i:08}"), "round {round}: gap in ids");
            assert_eq!(c.sandbox_id, s.id);
            assert_eq!(s.uid.len(), 16 * 1024, "round {round}: torn record");
        }
    }
}
