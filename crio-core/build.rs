//! Records the git commit and compiler for `crio version`, and builds the static
//! pause binary that `crio` embeds (see `pause/pause.rs`).
use std::process::Command;

fn output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    let commit = output("git", &["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty = output("git", &["status", "--porcelain", "--untracked-files=no"])
        .map_or("unknown", |s| if s.is_empty() { "clean" } else { "dirty" });
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version = output(&rustc, &["--version"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=CRIO_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=CRIO_GIT_TREE_STATE={dirty}");
    println!("cargo:rustc-env=CRIO_RUSTC_VERSION={rustc_version}");
    build_pause(&rustc);
    println!("cargo:rerun-if-changed=../.git/HEAD");
    println!("cargo:rerun-if-changed=../.git/index");
}

/// A static, dependency-free binary: it runs in an otherwise empty rootfs.
fn build_pause(rustc: &str) {
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let status = Command::new(rustc)
        .args([
            "--edition=2021",
            "-O",
            "-Cpanic=abort",
            "-Ctarget-feature=+crt-static",
            "-Cstrip=symbols",
            "pause/pause.rs",
            "-o",
        ])
        .arg(out.join("pause"))
        .env("CARGO_PKG_VERSION_OVERRIDE", version)
        .status()
        .expect("run rustc for pause");
    assert!(status.success(), "building pause/pause.rs failed");
    let binary = std::fs::read(out.join("pause")).expect("read pause");
    let digest: String =
        sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(&binary))
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
    println!("cargo:rustc-env=CRIO_PAUSE_SHA256={digest}");
    println!("cargo:rerun-if-changed=pause/pause.rs");
}
