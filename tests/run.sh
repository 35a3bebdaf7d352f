#!/usr/bin/env bash
# Runs every test: installs what the tests need from Debian (runc, the CNI plugins,
# the registry, skopeo, busybox-static...), checks formatting and lints, builds, and
# runs the unit and integration suites as root against the real daemon.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $(id -u) != 0 ]]; then
    echo "tests/run.sh must run as root (integration tests create sockets, mounts, namespaces)" >&2
    exit 1
fi

# A fresh debug build of the workspace (about 3 GiB with clippy's) plus the tests'
# registries and temporary roots: say so up front rather than fail mid-build with
# ENOSPC.
NEED_GIB=8
free_gib=$(df -P --block-size=1G . | awk 'NR == 2 { print $4 }')
if (( free_gib < NEED_GIB )); then
    echo "tests/run.sh: ${free_gib} GiB free on $(df -P . | awk 'NR == 2 { print $6 }'), the build and tests need about ${NEED_GIB} GiB" >&2
    exit 1
fi
# A one-off build gains nothing from incremental data, which is most of target/.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

PACKAGES=(
    runc crun containerd containernetworking-plugins iptables iproute2  # runtime parts
    docker-registry skopeo umoci apache2-utils         # registry, pushing, htpasswd
    gnupg openssl                                      # image signatures, TLS clients
    busybox-static                                     # test images
    pkg-config gcc make libseccomp-dev                 # building the youki shim
    libelf-dev zlib1g-dev                              # (libbpf: v2 device rules)
)
packaging/apt-install.sh "${PACKAGES[@]}"
# VM pods: qemu, and what building their guest (kernel, agent, initramfs) takes.
packaging/kata/apt-install.sh

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "==> cargo build"
# Integration tests run the crio binary: build it first.
cargo build --workspace --bins --tests --locked
echo "==> VM pods' guest (cached under /var/cache/crio-rs/kata)"
guest=$(packaging/kata/build-guest.sh dev)
CRIO_KATA_KERNEL=$(sed -n 1p <<<"$guest")
CRIO_KATA_INITRAMFS=$(sed -n 2p <<<"$guest")
export CRIO_KATA_KERNEL CRIO_KATA_INITRAMFS
echo "==> cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked --no-fail-fast -- "$@" 2>&1 | tee "$log" || status=$?
echo "==> pod lifecycle unit tests as an unprivileged user"
# They run on a shim in memory: proof that the lifecycle needs no root.
unit=$(cargo test -p crio-core --lib --locked --no-run 2>&1 |
    sed -n 's|.*Executable unittests src/lib.rs (\(.*\))|\1|p')
nobody_dir=$(mktemp -d)
trap 'rm -f "$log"; rm -rf "$nobody_dir"' EXIT
install -m 0755 "$unit" "$nobody_dir/crio-core-unit"
chmod 0777 "$nobody_dir"
(cd "$nobody_dir" && TMPDIR="$nobody_dir" setpriv --reuid=nobody --regid=nogroup --clear-groups \
    ./crio-core-unit pods::lifecycle_tests) 2>&1 | tee -a "$log" || status=$?
echo "==> packages: each installed into a fresh Debian root, a pod run there"
# The suite's debug binaries, packed quickly: what is tested is the packaging.
tests/package-install.sh --fast target/debug 2>&1 | tee -a "$log" || status=$?
# One closing line over every test binary.
awk '/^test result:/ { p += $4; f += $6 } END { printf "all tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
