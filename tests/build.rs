//! Builds the static helpers test containers run (see `static/`).
use std::process::Command;

fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let binary = out.join("udp-echo");
    let status = Command::new(rustc)
        .args([
            "--edition=2021",
            "-O",
            "-Cpanic=abort",
            "-Ctarget-feature=+crt-static",
            "-Cstrip=symbols",
            "static/udp_echo.rs",
            "-o",
        ])
        .arg(&binary)
        .status()
        .expect("run rustc for udp-echo");
    assert!(status.success(), "building static/udp_echo.rs failed");
    println!("cargo:rustc-env=CRIO_TEST_UDP_ECHO={}", binary.display());
    println!("cargo:rerun-if-changed=static/udp_echo.rs");
}
