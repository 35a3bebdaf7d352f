use super::*;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write hook file");
    path
}

fn hook_json(when: &str, stages: &str) -> String {
    format!(
        r#"{{"version": "1.0.0", "hook": {{"path": "/bin/true", "args": ["true", "x"], "timeout": 5}},
            "when": {when}, "stages": {stages}}}"#
    )
}

fn target<'a>(
    annotations: &'a BTreeMap<String, String>,
    command: &'a str,
    binds: bool,
) -> Target<'a> {
    Target {
        annotations,
        command,
        has_bind_mounts: binds,
    }
}

#[test]
fn every_condition_that_is_set_must_hold() {
    let dir = tempfile::tempdir().expect("tempdir");
    let read = |when: &str| {
        OciHook::read(&write(
            dir.path(),
            "h.json",
            &hook_json(when, r#"["prestart"]"#),
        ))
        .expect("valid")
    };
    let mut annotations = BTreeMap::new();
    annotations.insert("io.example/trace".to_string(), "on".to_string());
    let none = BTreeMap::new();

    assert!(read(r#"{"always": true}"#).matches(&target(&none, "/bin/sh", false)));
    assert!(!read(r#"{"always": false}"#).matches(&target(&annotations, "/bin/sh", true)));
    let binds = read(r#"{"hasBindMounts": true}"#);
    assert!(binds.matches(&target(&none, "sh", true)));
    assert!(!binds.matches(&target(&none, "sh", false)));
    let annotated = read(r#"{"annotations": {"^io\\.example/trace$": "^on$"}}"#);
    assert!(annotated.matches(&target(&annotations, "sh", false)));
    assert!(!annotated.matches(&target(&none, "sh", false)));
    let command = read(r#"{"commands": ["sh$", "^/usr/bin/python"]}"#);
    assert!(command.matches(&target(&none, "/bin/sh", false)));
    assert!(!command.matches(&target(&none, "/bin/bash -c", false)));
    let both = read(r#"{"always": true, "annotations": {"trace": "on"}}"#);
    assert!(both.matches(&target(&annotations, "sh", false)));
    assert!(!both.matches(&target(&none, "sh", false)), "AND, not OR");
}

#[test]
fn bad_files_name_the_file_and_the_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (text, expected) in [
        ("{", "EOF"),
        (
            r#"{"version": "0.1.0", "hook": "/bin/true", "stages": ["prestart"]}"#,
            "0.1.0",
        ),
        (&hook_json("{}", r#"["prestart"]"#), "at least one of"),
        (
            &hook_json(r#"{"always": true}"#, r#"["prestop"]"#),
            "unknown stage \"prestop\"",
        ),
        (
            &hook_json(r#"{"always": true}"#, "[]"),
            "at least one stage",
        ),
        (
            &hook_json(r#"{"commands": ["("]}"#, r#"["prestart"]"#),
            "when.commands",
        ),
        (
            &hook_json(r#"{"always": true}"#, r#"["prestart"]"#)
                .replace("/bin/true", "/nonexistent/hook"),
            "/nonexistent/hook",
        ),
        (
            &hook_json(r#"{"always": true, "sometimes": 1}"#, r#"["prestart"]"#),
            "unknown field `sometimes`",
        ),
    ] {
        let path = write(dir.path(), "bad.json", text);
        let err = OciHook::read(&path).expect_err(text).to_string();
        assert!(
            err.contains("bad.json") && err.contains(expected),
            "{text}: {err}"
        );
    }
}

#[test]
fn later_directories_replace_same_named_files_and_order_is_by_name() {
    let (a, b) = (
        tempfile::tempdir().expect("a"),
        tempfile::tempdir().expect("b"),
    );
    let always = hook_json(r#"{"always": true}"#, r#"["prestart", "poststop"]"#);
    write(a.path(), "20-b.json", &always);
    write(a.path(), "10-a.json", &always);
    write(
        b.path(),
        "10-a.json",
        &hook_json(r#"{"always": false}"#, r#"["prestart"]"#),
    );
    write(a.path(), "notes.txt", "not a hook");
    let dirs = vec![
        a.path().to_path_buf(),
        b.path().to_path_buf(),
        PathBuf::from("/nonexistent"),
    ];
    let (hooks, errors) = load(&dirs);
    assert!(errors.is_empty(), "{errors:?}");
    let files: Vec<_> = hooks.iter().map(|h| h.file.clone()).collect();
    assert_eq!(
        files,
        [b.path().join("10-a.json"), a.path().join("20-b.json")]
    );

    let none = BTreeMap::new();
    let mut spec_hooks = None;
    let applied = apply(&hooks, &target(&none, "sh", false), &mut spec_hooks);
    assert_eq!(
        applied,
        [a.path().join("20-b.json")],
        "b's 10-a says always: false"
    );
    let spec_hooks = spec_hooks.expect("hooks");
    let prestart = spec_hooks
        .create_runtime()
        .clone()
        .expect("prestart runs as createRuntime");
    assert_eq!(prestart[0].path(), Path::new("/bin/true"));
    assert_eq!(
        prestart[0].args().as_deref(),
        Some(&["true".to_string(), "x".to_string()][..])
    );
    assert_eq!(prestart[0].timeout(), Some(5));
    assert_eq!(spec_hooks.poststop().as_ref().map(Vec::len), Some(1));
}

#[test]
fn a_broken_file_stops_the_start_and_is_skipped_later() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "bad.json", "{");
    let err = HooksDirs::open(vec![dir.path().to_path_buf()]).expect_err("broken");
    assert!(err.to_string().contains("bad.json"), "{err}");
    std::fs::remove_file(dir.path().join("bad.json")).expect("rm");
    let dirs = HooksDirs::open(vec![dir.path().to_path_buf()]).expect("empty dir");
    write(dir.path(), "bad.json", "{");
    write(
        dir.path(),
        "good.json",
        &hook_json(r#"{"always": true}"#, r#"["poststart"]"#),
    );
    let hooks = dirs.current();
    assert_eq!(hooks.len(), 1, "the good file still applies");
}
