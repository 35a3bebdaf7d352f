//! The test images, built from Debian's `busybox-static`.

use std::path::Path;

use serde_json::json;

use crate::images::{Entry, ImageSpec, LayerCompression, OciLayout};

/// Where Debian's busybox-static puts the binary.
pub const BUSYBOX: &str = "/bin/busybox";

/// The busybox applets linked into `/bin` of every test image.
pub const APPLETS: &[&str] = &[
    "sh",
    "ash",
    "sleep",
    "echo",
    "cat",
    "ls",
    "id",
    "wget",
    "nc",
    "httpd",
    "true",
    "false",
    "env",
    "mkdir",
    "rm",
    "ps",
    "stty",
    "hostname",
    "printf",
    "test",
    "[",
    "touch",
    "grep",
    "head",
    "tail",
    "date",
    "ip",
    "ifconfig",
    "kill",
    "mount",
    "umount",
    "sed",
    "stat",
    "uname",
    "whoami",
    "chmod",
    "chown",
    "ln",
    "cp",
    "mv",
    "pwd",
    "tee",
    "wc",
    "yes",
    "dd",
    "df",
    "du",
    "find",
    "sync",
    "seq",
    "timeout",
    "nslookup",
    "netstat",
    "route",
    "ping",
    "hexdump",
    "md5sum",
    "sha256sum",
    "readlink",
    "xargs",
    "awk",
    "tr",
    "cut",
    "sort",
    "uniq",
    "basename",
    "dirname",
    "mktemp",
    "nproc",
    "free",
    "top",
    "vi",
    "less",
    "more",
    "which",
    "realpath",
];

/// An image the registry fixture serves: repository, tag and what it is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestImage {
    /// busybox with the applets above; OCI manifest.
    Busybox,
    /// The same image pushed as a Docker schema 2 manifest.
    BusyboxDocker,
    /// `httpd` serving `/www` on port 80.
    Web,
    /// Config `User` 1000:1000 (`user` in /etc/passwd).
    NonRoot,
    /// 4 layers: a later layer deletes a file and makes a directory opaque.
    Whiteout,
    /// An image index with linux/amd64 and linux/arm64 manifests.
    MultiArch,
    /// busybox plus three layers of 8 MiB of incompressible data each.
    Big,
    /// Layers compressed three ways: gzip (busybox), zstd and uncompressed.
    Mixed,
    /// An infra image: the project's static pause as `/pause`, its Entrypoint.
    Pause,
    /// busybox plus two layers written by Debian's `umoci insert`, whose tar streams
    /// end right after the last file's data (no padding, no end-of-archive blocks):
    /// `/umoci/{a,b,c}` and the 9-byte `/hello.txt` ([`UMOCI_HELLO`]).
    Umoci,
}

impl TestImage {
    pub const ALL: [TestImage; 10] = [
        TestImage::Busybox,
        TestImage::BusyboxDocker,
        TestImage::Web,
        TestImage::NonRoot,
        TestImage::Whiteout,
        TestImage::MultiArch,
        TestImage::Big,
        TestImage::Mixed,
        TestImage::Pause,
        TestImage::Umoci,
    ];

    /// `repository:tag` on the test registry.
    pub fn repo_tag(self) -> &'static str {
        match self {
            TestImage::Busybox => "test/busybox:latest",
            TestImage::BusyboxDocker => "test/busybox:docker",
            TestImage::Web => "test/web:latest",
            TestImage::NonRoot => "test/nonroot:latest",
            TestImage::Whiteout => "test/whiteout:latest",
            TestImage::MultiArch => "test/multiarch:latest",
            TestImage::Big => "test/big:latest",
            TestImage::Mixed => "test/mixed:latest",
            TestImage::Pause => "test/pause:latest",
            TestImage::Umoci => "test/umoci:latest",
        }
    }

    /// Name of the layout ref it is written under.
    fn layout_ref(self) -> &'static str {
        match self {
            TestImage::Busybox | TestImage::BusyboxDocker => "busybox",
            TestImage::Web => "web",
            TestImage::NonRoot => "nonroot",
            TestImage::Whiteout => "whiteout",
            TestImage::MultiArch => "multiarch",
            TestImage::Big => "big",
            TestImage::Mixed => "mixed",
            TestImage::Pause => "pause",
            TestImage::Umoci => "umoci",
        }
    }
}

/// The busybox layer every test image starts from.
pub fn base_layer() -> Vec<Entry> {
    let busybox = std::fs::read(BUSYBOX).unwrap_or_else(|e| {
        panic!("{BUSYBOX}: {e} (install Debian's busybox-static: tests/setup.sh does)")
    });
    let mut entries = vec![
        Entry::dir("bin"),
        Entry::executable("bin/busybox", busybox),
        Entry::dir("etc"),
        Entry::file(
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        ),
        Entry::file(
            "etc/group",
            "root:x:0:\nuser:x:1000:\nextra:x:2000:user\nmember:x:50000:nobody,user\nnogroup:x:65534:\n",
        ),
        Entry::dir("root"),
        Entry::dir("home"),
        Entry::Dir {
            path: "home/user".into(),
            mode: 0o755,
        },
        Entry::Dir {
            path: "tmp".into(),
            mode: 0o1777,
        },
        Entry::dir("var"),
    ];
    entries.extend(
        APPLETS
            .iter()
            .map(|applet| Entry::symlink(&format!("bin/{applet}"), "busybox")),
    );
    entries
}

/// An amd64 Linux image of `layers` with `config`.
pub fn spec(config: serde_json::Value, layers: Vec<Vec<Entry>>) -> ImageSpec {
    ImageSpec {
        architecture: "amd64".into(),
        os: "linux".into(),
        config,
        layers,
        compression: Vec::new(),
    }
}

const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Writes every test image into one OCI layout at `dir`.
pub fn build_layout(dir: &Path) -> OciLayout {
    let mut layout = OciLayout::create(dir);
    let busybox = spec(
        json!({"Env": [PATH_ENV], "Cmd": ["sh"]}),
        vec![base_layer()],
    );
    let d = layout.add_image(&busybox);
    layout.tag(&d, TestImage::Busybox.layout_ref());

    let web = spec(
        json!({
            "Env": [PATH_ENV],
            "Cmd": ["httpd", "-f", "-v", "-p", "80", "-h", "/www"],
            "ExposedPorts": {"80/tcp": {}},
        }),
        vec![
            base_layer(),
            vec![
                Entry::dir("www"),
                Entry::file("www/index.html", "hello from crio-tests web\n"),
            ],
        ],
    );
    let d = layout.add_image(&web);
    layout.tag(&d, TestImage::Web.layout_ref());

    let nonroot = spec(
        json!({
            "Env": [PATH_ENV],
            "Cmd": ["id"],
            "User": "1000:1000",
            "WorkingDir": "/home/user",
            "Volumes": {"/data-volume": {}},
        }),
        vec![base_layer()],
    );
    let d = layout.add_image(&nonroot);
    layout.tag(&d, TestImage::NonRoot.layout_ref());

    let whiteout = spec(
        json!({"Env": [PATH_ENV], "Cmd": ["ls", "-la", "/data", "/opaque"]}),
        vec![
            base_layer(),
            vec![
                Entry::dir("data"),
                Entry::file("data/keep", "kept\n"),
                Entry::file("data/remove-me", "should be deleted\n"),
                Entry::dir("opaque"),
                Entry::file("opaque/old-file", "hidden by the opaque dir\n"),
            ],
            vec![Entry::Whiteout {
                path: "data/remove-me".into(),
            }],
            vec![
                Entry::dir("opaque"),
                Entry::Opaque {
                    dir: "opaque".into(),
                },
                Entry::file("opaque/new-file", "from the top layer\n"),
            ],
        ],
    );
    let d = layout.add_image(&whiteout);
    layout.tag(&d, TestImage::Whiteout.layout_ref());

    // The arm64 image holds no arm64 binary: a marker file tells which one was chosen.
    let amd64 = spec(
        json!({"Env": [PATH_ENV], "Cmd": ["cat", "/platform"]}),
        vec![base_layer(), vec![Entry::file("platform", "linux/amd64\n")]],
    );
    let arm64 = ImageSpec {
        architecture: "arm64".into(),
        layers: vec![vec![Entry::file("platform", "linux/arm64\n")]],
        ..amd64.clone()
    };
    let d = layout.add_index(&[amd64, arm64]);
    layout.tag(&d, TestImage::MultiArch.layout_ref());

    let mut big_layers = vec![base_layer()];
    for i in 0..3u64 {
        big_layers.push(vec![
            Entry::dir("data"),
            Entry::file(&format!("data/blob{i}"), noise(8 << 20, i)),
        ]);
    }
    let big = spec(json!({"Env": [PATH_ENV], "Cmd": ["sh"]}), big_layers);
    let d = layout.add_image(&big);
    layout.tag(&d, TestImage::Big.layout_ref());

    let mixed = ImageSpec {
        compression: vec![
            LayerCompression::Gzip,
            LayerCompression::Zstd,
            LayerCompression::None,
        ],
        ..spec(
            json!({"Env": [PATH_ENV], "Cmd": ["cat", "/zstd", "/plain"]}),
            vec![
                base_layer(),
                vec![Entry::file("zstd", "from a zstd layer\n")],
                vec![Entry::file("plain", "from an uncompressed layer\n")],
            ],
        )
    };
    let d = layout.add_image(&mixed);
    layout.tag(&d, TestImage::Mixed.layout_ref());

    let pause = spec(
        json!({"Entrypoint": ["/pause"]}),
        vec![vec![Entry::executable(
            "pause",
            crio_core::pods::sandbox::pause::PAUSE_BINARY.to_vec(),
        )]],
    );
    let d = layout.add_image(&pause);
    layout.tag(&d, TestImage::Pause.layout_ref());
    // Last: umoci rewrites index.json, which `tag` would overwrite.
    umoci_image(dir);
    layout
}

/// The content of `/hello.txt` in [`TestImage::Umoci`].
pub const UMOCI_HELLO: &str = "umoci 9b!";

/// Builds [`TestImage::Umoci`] on the busybox image with Debian's `umoci insert`,
/// and checks that its layers still end the way that makes the image worth having.
fn umoci_image(layout: &Path) {
    let work = tempfile::tempdir().expect("temp dir");
    let dir = work.path().join("umoci");
    std::fs::create_dir(&dir).expect("umoci dir");
    std::fs::write(dir.join("a"), "a\n").expect("a");
    std::fs::write(dir.join("b"), noise(1000, 7)).expect("b");
    std::fs::write(dir.join("c"), "ccc").expect("c");
    let hello = work.path().join("hello.txt");
    std::fs::write(&hello, UMOCI_HELLO).expect("hello.txt");
    let image = |tag: &str| format!("{}:{tag}", layout.display());
    let umoci = |args: &[&std::ffi::OsStr]| {
        let out = std::process::Command::new("umoci")
            .args(args)
            .output()
            .expect("umoci must be installed (tests/run.sh installs it)");
        assert!(
            out.status.success(),
            "umoci {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let os = std::ffi::OsStr::new;
    let (from, to) = (image(TestImage::Busybox.layout_ref()), image("umoci"));
    let to_tag = TestImage::Umoci.layout_ref();
    umoci(&[
        os("insert"),
        os("--image"),
        os(&from),
        os("--tag"),
        os(to_tag),
        dir.as_os_str(),
        os("/umoci"),
    ]);
    umoci(&[
        os("insert"),
        os("--image"),
        os(&to),
        hello.as_os_str(),
        os("/hello.txt"),
    ]);
    for tar in top_layers(layout, to_tag, 2) {
        assert!(
            tar.len() % 512 != 0,
            "umoci now pads its layers ({} bytes): TestImage::Umoci no longer tests \
             layers that end right after the data",
            tar.len()
        );
    }
}

/// The uncompressed tars of the top `n` layers of the image tagged `tag`.
fn top_layers(layout: &Path, tag: &str, n: usize) -> Vec<Vec<u8>> {
    use std::io::Read;
    let read_json = |path: std::path::PathBuf| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(&path).expect("layout file")).expect("json")
    };
    let blob = |digest: &str| {
        layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let index = read_json(layout.join("index.json"));
    let manifest = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("{tag} in index.json"));
    let manifest = read_json(blob(manifest["digest"].as_str().expect("digest")));
    let layers = manifest["layers"].as_array().expect("layers");
    layers[layers.len() - n..]
        .iter()
        .map(|l| {
            let gz = std::fs::read(blob(l["digest"].as_str().expect("digest"))).expect("blob");
            let mut tar = Vec::new();
            flate2::read::GzDecoder::new(gz.as_slice())
                .read_to_end(&mut tar)
                .expect("gunzip");
            tar
        })
        .collect()
}

/// Deterministic incompressible bytes (xorshift), so gzip cannot shrink them.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// How skopeo pushes `image` out of the layout: `(layout ref, --all, --format)`.
pub fn push_plan(image: TestImage) -> (&'static str, bool, Option<&'static str>) {
    match image {
        TestImage::MultiArch => (image.layout_ref(), true, None),
        TestImage::BusyboxDocker => (image.layout_ref(), false, Some("v2s2")),
        _ => (image.layout_ref(), false, None),
    }
}
