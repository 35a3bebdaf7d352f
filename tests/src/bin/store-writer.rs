//! Test helper for the store crash test: commits sandbox + container pairs to a store
//! in a loop and prints `committed N` after each commit returns, until killed.

use crio_core::store::{ContainerRecord, SandboxRecord, Store};

fn main() -> anyhow::Result<()> {
    let path = std::env::args_os()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: store-writer <store path>"))?;
    let store = Store::open(std::path::Path::new(&path))?;
    let start = store.list::<SandboxRecord>()?.len();
    // Big enough that a commit spans several pages.
    let payload = "x".repeat(16 * 1024);
    for n in start.. {
        let id = format!("{n:08}");
        let sandbox = SandboxRecord {
            id: id.clone(),
            name: format!("pod-{n}"),
            namespace: "crash".into(),
            uid: payload.clone(),
            attempt: 0,
            runtime_handler: "runc".into(),
            created_at: n as i64,
            state: crio_core::store::SandboxState::Ready,
            labels: Default::default(),
            annotations: Default::default(),
            ..Default::default()
        };
        let container = ContainerRecord {
            id: format!("c{id}"),
            sandbox_id: id.clone(),
            name: "c".into(),
            attempt: 0,
            image_ref: payload.clone(),
            created_at: n as i64,
            state: crio_core::store::ContainerState::Created,
            exit_code: None,
            labels: Default::default(),
            annotations: Default::default(),
            ..Default::default()
        };
        store.write(|tx| {
            tx.put(&sandbox)?;
            tx.put(&container)
        })?;
        println!("committed {n}");
    }
    Ok(())
}
