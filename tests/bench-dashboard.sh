#!/usr/bin/env bash
# The benchmark dashboard, in one command: builds the binaries as installed
# (packaging/build.sh), runs every benchmark that has a containerd equivalent side
# by side with Debian's containerd in one run, and writes docs/benchmarks.md (a
# table per benchmark: figure, ours, containerd, ratio, goal; the date and the
# machine) and a PNG plot per benchmark in docs/benchmarks/.
#
#   tests/bench-dashboard.sh            # about 10 minutes on 2 cores
#   BENCH_PODS=20 BENCH_ROUNDS=20 BENCH_PULLS=3 tests/bench-dashboard.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $(id -u) != 0 ]]; then
    echo "tests/bench-dashboard.sh must run as root (the benchmarks run pods)" >&2
    exit 1
fi
# Through crio: BENCH_PODS pods of each of our two handlers (the daemon's RSS is
# read once 2 x BENCH_PODS pods came and went; issue 18 asks for 100).
PODS=${BENCH_PODS:-50}
ROUNDS=${BENCH_ROUNDS:-30}
PULLS=${BENCH_PULLS:-3}

packaging/apt-install.sh runc crun containerd containernetworking-plugins iptables \
    docker-registry skopeo umoci busybox-static fonts-dejavu-core \
    pkg-config gcc make libseccomp-dev libelf-dev zlib1g-dev
packaging/build.sh
cargo build --release --locked -p crio-tests --bins

results=$(mktemp)
trap 'rm -f "$results"' EXIT
export CRIO_BINARY=target/dist/crio BENCH_RESULTS=$results
echo "==> pod start, stop and remove, shim memory, daemon memory ($PODS pods per handler)"
BENCH_NETWORK=1 target/release/bench-pods "$PODS" runc youki containerd
echo "==> container create, start, stop and remove ($ROUNDS rounds)"
target/release/bench-containers "$ROUNDS" runc youki go containerd
echo "==> image pull ($PULLS runs)"
target/release/bench-pull "$PULLS"
target/release/bench-report "$results" docs/benchmarks.md docs/benchmarks
