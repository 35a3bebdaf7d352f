//! Compiles the vendored CRI `api.proto` with protox (pure Rust, no `protoc`), and
//! our VM agent's `agent.proto` with ttrpc-codegen (pure Rust as well).
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/runtime/v1/api.proto";
    println!("cargo:rerun-if-changed={proto}");
    let fds = protox::compile([proto], ["proto"])?;
    tonic_prost_build::configure()
        // RPCs not implemented yet answer `Unimplemented`, never a fake success.
        .generate_default_stubs(true)
        .compile_fds(fds)?;
    agent()
}

/// `agent.proto` into `$OUT_DIR/agent/`: messages (rust-protobuf, as the shim API's)
/// and the async ttrpc client and server; containerd's `runtimeoptions.proto` beside it.
fn agent() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/agent/v1/agent.proto";
    let options = "proto/runtimeoptions/v1/runtimeoptions.proto";
    println!("cargo:rerun-if-changed={proto}");
    println!("cargo:rerun-if-changed={options}");
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("agent");
    std::fs::create_dir_all(&out)?;
    ttrpc_codegen::Codegen::new()
        .input(proto)
        .input(options)
        .include("proto")
        .rust_protobuf()
        .customize(ttrpc_codegen::Customize {
            async_all: true,
            ..Default::default()
        })
        .out_dir(&out)
        .run()?;
    // `include!` cannot take a file with inner attributes.
    for entry in std::fs::read_dir(&out)? {
        let path = entry?.path();
        let text = std::fs::read_to_string(&path)?;
        let kept: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with("#!") && !l.starts_with("//!"))
            .collect();
        std::fs::write(&path, kept.join("\n"))?;
    }
    Ok(())
}
