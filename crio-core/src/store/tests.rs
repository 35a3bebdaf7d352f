use super::*;

fn sandbox(id: &str) -> SandboxRecord {
    SandboxRecord {
        id: id.into(),
        name: format!("pod-{id}"),
        namespace: "default".into(),
        uid: "uid".into(),
        attempt: 0,
        runtime_handler: "runc".into(),
        created_at: 1,
        state: SandboxState::Ready,
        labels: Default::default(),
        annotations: Default::default(),
        ..Default::default()
    }
}

fn container(id: &str, sandbox_id: &str) -> ContainerRecord {
    ContainerRecord {
        id: id.into(),
        sandbox_id: sandbox_id.into(),
        name: "c".into(),
        attempt: 0,
        image_ref: "sha256:00".into(),
        created_at: 2,
        state: ContainerState::Created,
        exit_code: None,
        labels: Default::default(),
        annotations: Default::default(),
        ..Default::default()
    }
}

#[test]
fn put_get_list_delete_survive_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sub/meta.redb");
    {
        let store = Store::open(&path).expect("open");
        store.put(&sandbox("b")).expect("put");
        store.put(&sandbox("a")).expect("put");
        store.put(&container("c1", "a")).expect("put");
        assert!(store.delete::<SandboxRecord>("b").expect("delete"));
        assert!(!store.delete::<SandboxRecord>("b").expect("delete again"));
    }
    let store = Store::open(&path).expect("reopen");
    assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
    let ids: Vec<_> = store
        .list::<SandboxRecord>()
        .expect("list")
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(ids, ["a"]);
    assert_eq!(
        store.get::<ContainerRecord>("c1").expect("get"),
        Some(container("c1", "a"))
    );
    assert_eq!(store.get::<ImageRecord>("nope").expect("get"), None);
}

#[test]
fn failed_transaction_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("m.redb")).expect("open");
    let result: Result<(), StoreError> = store.write(|tx| {
        tx.put(&sandbox("x"))?;
        tx.put(&container("y", "x"))?;
        Err(StoreError::SchemaTooNew {
            path: "/simulated".into(),
            found: 0,
        })
    });
    assert!(result.is_err());
    assert!(store.list::<SandboxRecord>().expect("list").is_empty());
    assert!(store.list::<ContainerRecord>().expect("list").is_empty());
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("m.redb");
    {
        let db = Database::create(&path).expect("create");
        let tx = db.begin_write().expect("tx");
        tx.open_table(META)
            .expect("meta")
            .insert(SCHEMA_KEY, SCHEMA_VERSION + 1)
            .expect("insert");
        tx.commit().expect("commit");
    }
    let err = Store::open(&path).expect_err("too new");
    assert!(matches!(err, StoreError::SchemaTooNew { .. }), "{err}");
    assert!(err.to_string().contains("newer than this build"));
}

#[test]
fn second_opener_is_refused_while_the_first_holds_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("m.redb");
    let _first = Store::open(&path).expect("open");
    let err = Store::open(&path).expect_err("locked");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn corrupt_record_is_reported_with_its_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("m.redb")).expect("open");
    {
        let tx = store.db.begin_write().expect("tx");
        tx.open_table(table::<SandboxRecord>())
            .expect("t")
            .insert("bad", b"{not json".as_slice())
            .expect("insert");
        tx.commit().expect("commit");
    }
    let err = store.get::<SandboxRecord>("bad").expect_err("corrupt");
    assert!(err.to_string().contains("sandboxes record bad"), "{err}");
}

/// Typed states keep the names records were written with: no migration.
#[test]
fn states_are_stored_by_their_old_names() {
    let json = serde_json::to_value(sandbox("s")).expect("encode");
    assert_eq!(json["state"], "ready");
    let mut c = container("c", "s");
    assert_eq!(
        serde_json::to_value(&c).expect("encode")["state"],
        "created"
    );
    assert!(c.mark_running());
    assert!(!c.mark_running(), "once");
    assert!(c.mark_exited(0, 5));
    assert!(!c.mark_exited(1, 6), "the first exit wins");
    assert_eq!((c.exit_code, c.reason.as_str()), (Some(0), "Completed"));
    assert!(!c.mark_running(), "an exited container stays exited");
    let json = serde_json::to_value(&c).expect("encode");
    assert_eq!(json["state"], "exited");
    let old: SandboxRecord =
        serde_json::from_str(r#"{"id":"x","name":"n","namespace":"d","uid":"u","attempt":0,"runtime_handler":"runc","created_at":1,"state":"notready"}"#)
            .expect("a record written before the enums");
    assert_eq!(old.state, SandboxState::NotReady);
}
