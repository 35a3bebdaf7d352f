#!/usr/bin/env bash
# Builds the binaries packaging/install.sh installs, as they are installed, into
# target/dist/: crio (release) and the runc, youki and kata shims (static, built
# for size). Benchmarks measure these (CRIO_BINARY=target/dist/crio).
set -euo pipefail
cd "$(dirname "$0")/.."

SHIM=containerd-shim-runc-rs-v2
YOUKI_SHIM=containerd-shim-youki-v2
KATA_SHIM=containerd-shim-kata-rs-v2
# An explicit --target keeps RUSTFLAGS away from build scripts and proc macros.
HOST=$(rustc -vV | sed -n 's/^host: //p')

echo "==> cargo build --release (crio: no PIE)"
# No PIE: the loader has no relocations to apply to crio's read-only data, whose
# pages then stay clean and shared with the page cache (0.7 MB less of the daemon's
# private memory).
# Only the binary is built so (`cargo rustc` passes the flag to the last crate):
# dependencies stay PIC, as a dependency that is also a cdylib (pgp) must be.
cargo rustc --release --locked -p crio-core --bin crio --target "$HOST" -- -C relocation-model=static

echo "==> cargo build --profile shim ($SHIM, $YOUKI_SHIM, $KATA_SHIM: static, built for size)"
# Static (no PIE: no relocations to apply) and size-optimised: one shim runs per
# pod, so its pages count per pod. libseccomp is linked statically into the youki
# shim as well.
RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static" \
    LIBSECCOMP_LINK_TYPE=static LIBSECCOMP_LIB_PATH="/usr/lib/$(gcc -dumpmachine)" \
    cargo build --profile shim --locked -p "$SHIM" -p "$YOUKI_SHIM" -p "$KATA_SHIM" --target "$HOST"

install -d target/dist
install -m 0755 "target/$HOST/release/crio" target/dist/crio
install -m 0755 "target/$HOST/shim/$SHIM" "target/dist/$SHIM"
install -m 0755 "target/$HOST/shim/$YOUKI_SHIM" "target/dist/$YOUKI_SHIM"
install -m 0755 "target/$HOST/shim/$KATA_SHIM" "target/dist/$KATA_SHIM"
echo "==> built into target/dist: crio $SHIM $YOUKI_SHIM $KATA_SHIM"
