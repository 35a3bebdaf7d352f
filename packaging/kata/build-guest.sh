#!/usr/bin/env bash
# build-guest.sh [PROFILE]: the guest of VM pods (issue 19), built and cached:
#   - the agent (shims/kata/agent), static, with cargo PROFILE (default: shim;
#     the tests use dev, quicker to build);
#   - the kernel (build-kernel.sh, cached by its option list);
#   - the initramfs whose /init is the agent (cached by the agent's hash).
# Prints two lines: the kernel's path, then the initramfs's. Everything cached
# lives under $CRIO_KATA_CACHE (default /var/cache/crio-rs/kata), outside the
# checkout. Needs: cpio, libseccomp-dev, and build-kernel.sh's packages.
set -euo pipefail
cd "$(dirname "$0")/../.."
PROFILE=${1:-shim}
CACHE=${CRIO_KATA_CACHE:-/var/cache/crio-rs/kata}
HOST=$(rustc -vV | sed -n 's/^host: //p')

# Static: the initramfs holds no libc (libseccomp, for the containers' seccomp
# filters, is linked in too). An explicit --target keeps RUSTFLAGS away from build
# scripts and proc macros (and its output from target/debug).
RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static" \
    LIBSECCOMP_LINK_TYPE=static LIBSECCOMP_LIB_PATH="/usr/lib/$(gcc -dumpmachine)" \
    cargo build --locked -q --profile "$PROFILE" -p crio-kata-agent --target "$HOST" >&2
dir=$PROFILE
[[ $PROFILE == dev ]] && dir=debug
agent="target/$HOST/$dir/crio-kata-agent"
if readelf -l "$agent" | grep -q INTERP; then
    echo "build-guest.sh: $agent is not static" >&2
    exit 1
fi

kernel=$(packaging/kata/build-kernel.sh)

mkdir -p "$CACHE"
hash=$(sha256sum "$agent" | cut -c1-12)
initramfs="$CACHE/initramfs-$PROFILE-$hash.cpio"
if [[ ! -f $initramfs ]]; then
    root=$(mktemp -d)
    trap 'rm -rf "$root"' EXIT
    mkdir -p "$root"/{dev,proc,sys,run,tmp}
    # Stripped: every byte of the initramfs is copied at each boot.
    install -m 0755 -s "$agent" "$root/init"
    # The kernel opens /dev/console for init's output before /dev is mounted.
    mknod -m 0600 "$root/dev/console" c 5 1
    (cd "$root" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet) >"$initramfs.tmp"
    mv "$initramfs.tmp" "$initramfs"
    # Older agents' images (of this profile) are of no more use.
    find "$CACHE" -maxdepth 1 -name "initramfs-$PROFILE-*.cpio" ! -name "initramfs-$PROFILE-$hash.cpio" -delete
fi
echo "$kernel"
echo "$initramfs"
