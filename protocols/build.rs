//! Compiles the vendored CRI `api.proto` with protox (pure Rust, no `protoc`).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/runtime/v1/api.proto";
    println!("cargo:rerun-if-changed={proto}");
    let fds = protox::compile([proto], ["proto"])?;
    tonic_prost_build::configure()
        // RPCs not implemented yet answer `Unimplemented`, never a fake success.
        .generate_default_stubs(true)
        .compile_fds(fds)?;
    Ok(())
}
