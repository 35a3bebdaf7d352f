use std::ffi::OsString;

use super::file::*;
use super::*;

const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }
    fn file(&self) -> PathBuf {
        self.dir.path().join("registries.conf")
    }
    fn dropin_dir(&self) -> PathBuf {
        self.dir.path().join("registries.conf.d")
    }
    fn main(&self, text: &str) -> &Self {
        std::fs::write(self.file(), text).expect("write main");
        self
    }
    fn dropin(&self, name: &str, text: &str) -> &Self {
        std::fs::create_dir_all(self.dropin_dir()).expect("mkdir");
        std::fs::write(self.dropin_dir().join(name), text).expect("write drop-in");
        self
    }
    fn load(&self) -> Result<RegistriesConf, RegistriesError> {
        RegistriesConf::load(&self.file(), &self.dropin_dir())
    }
    fn conf(&self) -> RegistriesConf {
        self.load().expect("load")
    }
}

fn conf(text: &str) -> RegistriesConf {
    Fixture::new().main(text).conf()
}

fn name(input: &str) -> ImageName {
    match ImageName::parse(input) {
        Ok(ParsedName::Qualified(n)) => n,
        other => panic!("{input}: {other:?}"),
    }
}

fn sources(conf: &RegistriesConf, image: &str) -> Vec<(String, bool, bool)> {
    conf.pull_sources(&name(image))
        .expect("pull sources")
        .into_iter()
        .map(|s| (s.name.to_string(), s.insecure, s.mirror))
        .collect()
}

fn strings(names: Vec<ImageName>) -> Vec<String> {
    names.iter().map(ToString::to_string).collect()
}

fn error_text(text: &str) -> String {
    Fixture::new()
        .main(text)
        .load()
        .expect_err("should be rejected")
        .to_string()
}

#[test]
fn missing_file_and_dir_are_an_empty_config() {
    let fixture = Fixture::new();
    let conf = fixture.conf();
    assert_eq!(conf, RegistriesConf::default());
    assert_eq!(conf.short_name_mode(), ShortNameMode::Permissive);
    assert!(conf.files().is_empty());
}

#[test]
fn short_names_fall_back_to_docker_hub() {
    let none = RegistriesConf::default();
    assert_eq!(
        strings(none.resolve_short_name("busybox", None, None)),
        ["docker.io/library/busybox:latest"]
    );
    assert_eq!(
        strings(none.resolve_short_name("library/busybox", Some("1.36"), None)),
        ["docker.io/library/busybox:1.36"]
    );
    let digest = format!("sha256:{HEX}");
    assert_eq!(
        strings(none.resolve_short_name("busybox", None, Some(&digest))),
        [format!("docker.io/library/busybox@{digest}")]
    );
    // An explicitly empty list behaves like none.
    let empty = conf("unqualified-search-registries = []");
    assert_eq!(empty.resolve_short_name("x", None, None).len(), 1);
}

#[test]
fn search_registries_in_order_with_library_only_on_docker_hub() {
    let conf =
        conf(r#"unqualified-search-registries = ["quay.io", "docker.io", "localhost:5000/"]"#);
    assert_eq!(
        conf.unqualified_search_registries(),
        ["quay.io", "docker.io", "localhost:5000"]
    );
    assert_eq!(
        strings(conf.resolve_short_name("busybox", Some("1"), None)),
        [
            "quay.io/busybox:1",
            "docker.io/library/busybox:1",
            "localhost:5000/busybox:1"
        ]
    );
    assert_eq!(
        strings(conf.resolve_short_name("org/app", None, None))[1],
        "docker.io/org/app:latest"
    );
}

#[test]
fn invalid_search_registries_are_rejected() {
    for bad in [
        r#"["https://quay.io"]"#,
        r#"["quay.io/ns"]"#,
        r#"["myregistry"]"#,
    ] {
        let text = error_text(&format!("unqualified-search-registries = {bad}"));
        assert!(text.contains("unqualified-search-registries[0]"), "{text}");
        assert!(text.contains("accepted"), "{text}");
    }
}

#[test]
fn short_name_mode_is_recorded_and_checked() {
    for (value, mode) in [
        ("enforcing", ShortNameMode::Enforcing),
        ("permissive", ShortNameMode::Permissive),
        ("disabled", ShortNameMode::Disabled),
    ] {
        assert_eq!(
            conf(&format!("short-name-mode = {value:?}")).short_name_mode(),
            mode
        );
    }
    let text = error_text(r#"short-name-mode = "prompt""#);
    assert!(
        text.contains("short-name-mode") && text.contains("enforcing, permissive, disabled"),
        "{text}"
    );
}

#[test]
fn aliases_are_the_only_candidate() {
    let conf = conf(
        r#"
unqualified-search-registries = ["quay.io"]
[aliases]
"busybox" = "docker.io/busybox"
"tools/jq" = "registry.example.com/jq/jq"
"#,
    );
    assert_eq!(
        strings(conf.resolve_short_name("busybox", None, None)),
        ["docker.io/library/busybox:latest"]
    );
    assert_eq!(
        strings(conf.resolve_short_name("tools/jq", Some("1.7"), None)),
        ["registry.example.com/jq/jq:1.7"]
    );
    assert_eq!(
        strings(conf.resolve_short_name("alpine", None, None)),
        ["quay.io/alpine:latest"]
    );
}

#[test]
fn invalid_aliases_are_rejected() {
    let cases = [
        (r#""quay.io/x" = "quay.io/x""#, "invalid alias name"),
        (r#""x:1" = "quay.io/x""#, "invalid alias name"),
        (r#""x" = "quay.io/x:1""#, "invalid alias value"),
        (r#""x" = "y""#, "invalid alias value"),
    ];
    for (entry, expected) in cases {
        let text = error_text(&format!("[aliases]\n{entry}\n"));
        assert!(
            text.contains(expected) && text.contains("aliases."),
            "{text}"
        );
    }
}

#[test]
fn no_matching_registry_pulls_the_name_itself() {
    let conf = conf("[[registry]]\nlocation = \"quay.io\"\n");
    assert_eq!(
        sources(&conf, "docker.io/library/busybox:1"),
        [("docker.io/library/busybox:1".to_string(), false, false)]
    );
}

#[test]
fn location_rewrites_the_prefix() {
    let conf = conf(
        r#"
[[registry]]
prefix = "example.com/foo"
location = "internal.example.com:5000/bar/foo"
insecure = true
"#,
    );
    assert_eq!(
        sources(&conf, "example.com/foo/app:v1"),
        [(
            "internal.example.com:5000/bar/foo/app:v1".to_string(),
            true,
            false
        )]
    );
    // Whole components only.
    assert_eq!(
        sources(&conf, "example.com/foobar/app")[0].0,
        "example.com/foobar/app"
    );
    // A prefix names a host, not a host with any port.
    assert_eq!(
        sources(&conf, "example.com:5000/foo/app")[0].0,
        "example.com:5000/foo/app"
    );
}

#[test]
fn longest_prefix_wins() {
    let conf = conf(
        r#"
[[registry]]
location = "docker.io"
[[registry.mirror]]
location = "mirror.example.com"

[[registry]]
prefix = "docker.io/library"
location = "hub-mirror.example.com/library"
"#,
    );
    assert_eq!(
        sources(&conf, "docker.io/library/busybox:1"),
        [(
            "hub-mirror.example.com/library/busybox:1".to_string(),
            false,
            false
        )]
    );
    assert_eq!(
        sources(&conf, "docker.io/org/app:1"),
        [
            ("mirror.example.com/org/app:1".to_string(), false, true),
            ("docker.io/org/app:1".to_string(), false, false)
        ]
    );
}

#[test]
fn wildcard_prefixes_match_subdomains() {
    let conf = conf(
        r#"
[[registry]]
prefix = "*.example.com"
insecure = true

[[registry]]
prefix = "*.corp.example.com"
location = "proxy.example.net/corp"

[[registry]]
prefix = "team.corp.example.com"
location = "team.example.net"
"#,
    );
    // No location: the name as it is, with the registry's settings.
    assert_eq!(
        sources(&conf, "a.example.com/x:1"),
        [("a.example.com/x:1".to_string(), true, false)]
    );
    assert!(sources(&conf, "a.b.example.com:5000/x")[0].1);
    assert_eq!(
        sources(&conf, "example.com/x")[0],
        ("example.com/x".to_string(), false, false)
    );
    assert!(!sources(&conf, "evilexample.com/x")[0].1);
    assert_eq!(
        sources(&conf, "git.corp.example.com:5000/ns/x:1")[0].0,
        "proxy.example.net/corp/ns/x:1"
    );
    assert_eq!(
        sources(&conf, "team.corp.example.com/x")[0].0,
        "team.example.net/x"
    );
}

#[test]
fn invalid_wildcards_and_locations_are_rejected() {
    let cases = [
        ("prefix = \"*.example.com/ns\"\nlocation = \"x.io\"", "registry[0].prefix"),
        ("prefix = \"*.example.com:5000\"", "registry[0].prefix"),
        ("prefix = \"example.com\"", "registry[0].prefix"),
        ("location = \"https://quay.io\"", "registry[0].location"),
        ("location = \"quay.io/Upper\"", "registry[0].location"),
        ("insecure = true", "registry[0]"),
        ("location = \"quay.io\"\npull-from-mirror = \"all\"", "registry[0].pull-from-mirror"),
        ("location = \"quay.io\"\n[[registry.mirror]]\ninsecure = true", "registry[0].mirror[0].location"),
        (
            "location = \"quay.io\"\n[[registry.mirror]]\nlocation = \"m.io\"\npull-from-mirror = \"sometimes\"",
            "registry[0].mirror[0].pull-from-mirror",
        ),
        (
            "location = \"quay.io\"\nmirror-by-digest-only = true\n[[registry.mirror]]\nlocation = \"m.io\"\npull-from-mirror = \"tag-only\"",
            "registry[0].mirror[0].pull-from-mirror",
        ),
    ];
    for (body, key) in cases {
        let text = error_text(&format!("[[registry]]\n{body}\n"));
        assert!(text.contains(&format!("key {key}:")), "{body}: {text}");
        assert!(text.contains("registries.conf"), "{text}");
    }
}

#[test]
fn blocked_registry_is_an_error_naming_its_config() {
    let fixture = Fixture::new();
    fixture.main("[[registry]]\nlocation = \"evil.example.com\"\nblocked = true\n");
    let conf = fixture.conf();
    let err = conf
        .pull_sources(&name("evil.example.com/x:1"))
        .expect_err("blocked");
    let text = err.to_string();
    assert!(matches!(err, RegistriesError::Blocked { .. }));
    assert!(text.contains("evil.example.com/x:1"), "{text}");
    assert!(text.contains("prefix \"evil.example.com\""), "{text}");
    assert!(
        text.contains(&fixture.file().display().to_string()),
        "{text}"
    );
    assert!(text.contains("blocked = true"), "{text}");
}

#[test]
fn mirrors_come_first_in_order_with_their_own_insecure() {
    let conf = conf(
        r#"
[[registry]]
location = "docker.io"

[[registry.mirror]]
location = "first.example.com:5000"
insecure = true

[[registry.mirror]]
location = "second.example.com/hub/"
"#,
    );
    assert_eq!(
        sources(&conf, "docker.io/library/busybox:1"),
        [
            (
                "first.example.com:5000/library/busybox:1".to_string(),
                true,
                true
            ),
            (
                "second.example.com/hub/library/busybox:1".to_string(),
                false,
                true
            ),
            ("docker.io/library/busybox:1".to_string(), false, false),
        ]
    );
}

#[test]
fn digest_only_mirrors_serve_only_digests() {
    let conf = conf(
        r#"
[[registry]]
location = "quay.io"
mirror-by-digest-only = true
[[registry.mirror]]
location = "m.example.com"
"#,
    );
    let digest = format!("sha256:{HEX}");
    assert_eq!(
        sources(&conf, "quay.io/x:1"),
        [("quay.io/x:1".to_string(), false, false)]
    );
    let by_digest = sources(&conf, &format!("quay.io/x:1@{digest}"));
    assert_eq!(by_digest.len(), 2);
    assert_eq!(by_digest[0].0, format!("m.example.com/x:1@{digest}"));
}

#[test]
fn pull_from_mirror_filters_each_mirror() {
    let conf = conf(
        r#"
[[registry]]
location = "quay.io"
[[registry.mirror]]
location = "digests.example.com"
pull-from-mirror = "digest-only"
[[registry.mirror]]
location = "tags.example.com"
pull-from-mirror = "tag-only"
[[registry.mirror]]
location = "any.example.com"
pull-from-mirror = "all"
"#,
    );
    let digest = format!("sha256:{HEX}");
    let hosts = |image: &str| -> Vec<String> {
        sources(&conf, image)
            .into_iter()
            .map(|(n, _, _)| n.split('/').next().unwrap_or_default().to_string())
            .collect()
    };
    assert_eq!(
        hosts("quay.io/x:1"),
        ["tags.example.com", "any.example.com", "quay.io"]
    );
    assert_eq!(
        hosts(&format!("quay.io/x@{digest}")),
        ["digests.example.com", "any.example.com", "quay.io"]
    );
}

#[test]
fn dropins_merge_in_lexical_order() {
    let fixture = Fixture::new();
    fixture
        .main(
            r#"
unqualified-search-registries = ["quay.io"]
short-name-mode = "enforcing"
[[registry]]
location = "quay.io"
insecure = true
[[registry]]
location = "keep.example.com"
[aliases]
"a" = "quay.io/a"
"b" = "quay.io/b"
"#,
        )
        .dropin(
            "20-second.conf",
            r#"
unqualified-search-registries = ["registry.fedoraproject.org", "docker.io"]
[[registry]]
location = "quay.io"
[[registry.mirror]]
location = "m.example.com"
[aliases]
"b" = "docker.io/b"
"c" = "quay.io/c"
"#,
        )
        .dropin(
            "10-first.conf",
            "unqualified-search-registries = [\"ignored.example.com\"]\n[aliases]\n\"a\" = \"\"\n",
        )
        .dropin("30-not-a-conf.txt", "this is = not toml [")
        .dropin("05-no-mode.conf", "# nothing\n");
    std::fs::create_dir_all(fixture.dropin_dir().join("sub.conf")).expect("mkdir");
    let conf = fixture.conf();
    let names: Vec<String> = conf
        .files()
        .iter()
        .map(|p| {
            p.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(
        names,
        [
            "registries.conf",
            "05-no-mode.conf",
            "10-first.conf",
            "20-second.conf"
        ]
    );
    assert_eq!(
        conf.unqualified_search_registries(),
        ["registry.fedoraproject.org", "docker.io"]
    );
    // Set once, never reset by files that do not mention it.
    assert_eq!(conf.short_name_mode(), ShortNameMode::Enforcing);
    // The later [[registry]] with the same prefix replaced the whole entry.
    assert_eq!(
        sources(&conf, "quay.io/x:1"),
        [
            ("m.example.com/x:1".to_string(), false, true),
            ("quay.io/x:1".to_string(), false, false)
        ]
    );
    assert_eq!(conf.registries().count(), 2);
    // Aliases: "a" reset (search registries again), "b" replaced, "c" added.
    assert_eq!(
        strings(conf.resolve_short_name("a", None, None))[0],
        "registry.fedoraproject.org/a:latest"
    );
    assert_eq!(
        strings(conf.resolve_short_name("b", None, None)),
        ["docker.io/library/b:latest"]
    );
    assert_eq!(
        strings(conf.resolve_short_name("c", None, None)),
        ["quay.io/c:latest"]
    );
}

#[test]
fn dropins_apply_without_a_main_file() {
    let fixture = Fixture::new();
    fixture.dropin("01.conf", "unqualified-search-registries = [\"quay.io\"]\n");
    assert_eq!(fixture.conf().unqualified_search_registries(), ["quay.io"]);
}

#[test]
fn first_registry_of_a_prefix_wins_within_a_file() {
    let conf = conf(
        "[[registry]]\nprefix = \"quay.io\"\nlocation = \"one.example.com\"\n[[registry]]\nprefix = \"quay.io\"\nlocation = \"two.example.com\"\n",
    );
    assert_eq!(sources(&conf, "quay.io/x")[0].0, "one.example.com/x");
}

#[test]
fn conflicting_settings_for_one_location_are_rejected() {
    let text = error_text(
        "[[registry]]\nprefix = \"a.example.com\"\nlocation = \"quay.io\"\ninsecure = true\n[[registry]]\nprefix = \"b.example.com\"\nlocation = \"quay.io\"\n",
    );
    assert!(
        text.contains("registry[1].insecure") && text.contains("conflicting"),
        "{text}"
    );
}

#[test]
fn v1_format_is_rejected_clearly() {
    let text = error_text("[registries.search]\nregistries = ['docker.io']\n");
    assert!(
        text.contains("v1 format") && text.contains("not supported"),
        "{text}"
    );
    // Drop-ins too.
    let fixture = Fixture::new();
    fixture.dropin("a.conf", "[registries.block]\nregistries = []\n");
    assert!(matches!(fixture.load(), Err(RegistriesError::V1 { .. })));
}

#[test]
fn bad_toml_names_file_and_line() {
    let fixture = Fixture::new();
    fixture.dropin(
        "50-bad.conf",
        "# comment\nunqualified-search-registries = [\n",
    );
    let err = fixture.load().expect_err("bad toml");
    let text = err.to_string();
    assert!(
        text.contains("50-bad.conf") && text.contains("invalid TOML"),
        "{text}"
    );
    assert!(
        matches!(err, RegistriesError::Syntax { line, .. } if line >= 2),
        "{text}"
    );
}

#[test]
fn wrong_types_name_the_key() {
    let text = error_text("[[registry]]\nlocation = \"quay.io\"\ninsecure = \"yes\"\n");
    assert!(text.contains("key registry[0].insecure"), "{text}");
    let text = error_text("unqualified-search-registries = \"quay.io\"\n");
    assert!(text.contains("key unqualified-search-registries"), "{text}");
    let text =
        error_text("[[registry]]\nlocation = \"quay.io\"\n[[registry.mirror]]\nlocation = 5\n");
    assert!(
        text.contains("key registry[0].mirror[0].location"),
        "{text}"
    );
}

#[test]
fn unknown_and_unsupported_keys_are_ignored() {
    let conf = conf(
        "credential-helpers = [\"containers-auth.json\"]\nsomething-new = 1\n[[registry]]\nlocation = \"quay.io\"\nfuture = true\n",
    );
    assert_eq!(conf.registries().count(), 1);
}

#[test]
fn default_paths_follow_the_environment() {
    let defaults = (PathBuf::from(DEFAULT_FILE), PathBuf::from(DEFAULT_DIR));
    assert_eq!(paths_from(None), defaults);
    assert_eq!(paths_from(Some(OsString::new())), defaults);
    assert_eq!(
        paths_from(Some("/tmp/test-registries.conf".into())),
        (
            PathBuf::from("/tmp/test-registries.conf"),
            PathBuf::from(DEFAULT_DIR)
        )
    );
}

#[test]
fn watcher_reloads_on_change() {
    let fixture = Fixture::new();
    fixture.main("unqualified-search-registries = [\"quay.io\"]\n");
    let watcher = RegistriesWatcher::new(fixture.file(), fixture.dropin_dir());
    let first = watcher.current().expect("load");
    assert_eq!(first.unqualified_search_registries(), ["quay.io"]);
    // Unchanged files: the same Arc, no reload.
    assert!(Arc::ptr_eq(&first, &watcher.current().expect("cached")));

    fixture.main("unqualified-search-registries = [\"registry.example.com\"]\n");
    assert_eq!(
        watcher
            .current()
            .expect("reload")
            .unqualified_search_registries(),
        ["registry.example.com"]
    );

    // A new drop-in is noticed too.
    fixture.dropin("10-x.conf", "short-name-mode = \"disabled\"\n");
    assert_eq!(
        watcher.current().expect("reload").short_name_mode(),
        ShortNameMode::Disabled
    );
}

#[test]
fn watcher_reports_a_failed_reload_until_fixed() {
    let fixture = Fixture::new();
    fixture.main("unqualified-search-registries = [\"quay.io\"]\n");
    let watcher = RegistriesWatcher::new(fixture.file(), fixture.dropin_dir());
    watcher.current().expect("load");
    fixture.main("unqualified-search-registries = [\n");
    assert!(matches!(
        watcher.current(),
        Err(RegistriesError::Syntax { .. })
    ));
    // Still failing while the files stay broken, not silently the old config.
    assert!(watcher.current().is_err());
    fixture.main("unqualified-search-registries = [\"docker.io\"]\n");
    assert_eq!(
        watcher
            .current()
            .expect("fixed")
            .unqualified_search_registries(),
        ["docker.io"]
    );
    // Removing the file is a change as well: back to the empty config.
    std::fs::remove_file(fixture.file()).expect("remove");
    assert!(watcher
        .current()
        .expect("empty")
        .unqualified_search_registries()
        .is_empty());
}
