#!/usr/bin/env bash
# tests/package-install.sh [--fast] [BINS]: builds both packages of
# packaging/package.sh from the binaries in BINS (default target/dist; the suite
# passes --fast target/debug: --fast packs them with quick compression), installs
# each into a fresh Debian 12 base root (debootstrap --variant=minbase) and runs a
# pod there with the installed daemon:
#
#   deb     apt-get install --no-install-recommends /tmp/crio-rs_*.deb in the root
#           (its Depends resolved from the mirror; the postinst runs without
#           systemd and must enable the unit for the next boot), dpkg --verify
#   bundle  apt-get install runc crun containernetworking-plugins iptables
#           ca-certificates (what the bundle does not carry), then
#           tar xf crio-rs.*.tar.gz && cd crio-rs && ./install
#
# Then, in namespaces of its own (unshare --mount --pid --net: the mounts, the CNI
# bridge and the iptables rules live and die there; the host's cgroups are bound
# in), it starts crio as the installed unit's ExecStart says, with the root as its /
# (pivot_root) and the installed config (plus a registries.conf for the test's
# registry), and drives it with tests/package-pod.py over the CRI: Status ready
# (runtime and network), PullImage of a busybox image from a registry on the
# namespace's loopback, RunPodSandbox ready with an IP from the packaged CNI
# network, a container running whose output is read back from its log, ExecSync,
# the pod's removal, and a kata pod refused (no guest in the packages) while the
# daemon serves on. Last, it removes the package (apt-get purge; the bundle's
# uninstall) and checks the binaries are gone. One PASS/FAIL line per artifact;
# exits 1 on any failure.
#
# The base root is cached as /var/cache/crio-rs/debian-bookworm-minbase.tar.gz
# (CRIO_PKGTEST_CACHE), downloaded .debs in apt-archives/ beside it: a second run
# downloads nothing. The mirror is this machine's apt mirror (DEBIAN_MIRROR
# overrides it). Runs as root; uses nothing outside its temp dir, its cache and the
# cgroups its own pods get (/sys/fs/cgroup/*/crio-pkgtest-*).
set -euo pipefail
SELF=$(readlink -f "$0")
cd "$(dirname "$SELF")/.."
REPO=$(pwd)

SUITE=bookworm
CACHE=${CRIO_PKGTEST_CACHE:-/var/cache/crio-rs}
BASE=$CACHE/debian-$SUITE-minbase.tar.gz
ARCHIVES=$CACHE/apt-archives
REGISTRY=127.0.0.1:5000
IMAGE=$REGISTRY/pkgtest/busybox:latest
APT_INSTALL=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends)
# What the bundle leaves to the distribution (its install script names them).
BUNDLE_DEPS=(runc crun containernetworking-plugins iptables ca-certificates)
# The root's PATH, as systemd gives a unit.
ROOT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

log() { echo "==> $*"; }

# ---------------------------------------------------------------------------------
# Run inside `unshare`: new mount (private), PID and maybe network namespaces.

# mount_root ROOT [net]: what the root needs, in this mount namespace only.
mount_root() {
    local root=$1
    # The root a mount of its own, as / is on a node: runc makes / a slave mount
    # and pivot_roots, which both fail on a plain directory chrooted into.
    mount --bind "$root" "$root"
    mount -t proc proc "$root/proc"
    mount --rbind /dev "$root/dev"
    if [[ ${2:-} == net ]]; then
        mount -t sysfs sysfs "$root/sys"
        # The host's cgroups (v1 here, v2 or hybrid elsewhere): the pods' cgroups
        # are made there, under the test's own parent.
        mount --rbind /sys/fs/cgroup "$root/sys/fs/cgroup"
        mount -t tmpfs -o mode=0755 tmpfs "$root/run"
        mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
    fi
}

# in_install KIND ROOT WORK: installs the artifact (host network: the mirror).
in_install() {
    local kind=$1 root=$2 work=$3
    mount_root "$root"
    # Downloaded .debs kept across runs.
    mount --bind "$ARCHIVES" "$root/var/cache/apt/archives"
    cp -L /etc/resolv.conf "$root/etc/resolv.conf"
    apt_in_root() {
        chroot "$root" "${APT_INSTALL[@]}" "$@" || {
            # The cached package lists may name versions the mirror no longer has.
            chroot "$root" apt-get update -q && chroot "$root" "${APT_INSTALL[@]}" "$@"
        }
    }
    case $kind in
    deb)
        local deb
        deb=$(basename "$(echo "$work"/packages/crio-rs_*.deb)")
        cp "$work/packages/$deb" "$root/tmp/"
        apt_in_root "/tmp/$deb"
        # shellcheck disable=SC2016 # dpkg-query's fields
        chroot "$root" dpkg-query -W -f '${Package} ${Version} ${Status}\n' crio-rs
        # Every file as packaged (dpkg --verify prints the ones that differ).
        local changed
        changed=$(chroot "$root" dpkg --verify crio-rs)
        [[ -z $changed ]] || {
            echo "dpkg --verify crio-rs: $changed" >&2
            return 1
        }
        # No systemd here: the postinst enabled the unit for the next boot only.
        [[ -L $root/etc/systemd/system/multi-user.target.wants/crio.service ]] || {
            echo "the postinst did not enable crio.service (deb-systemd-helper)" >&2
            return 1
        }
        echo "==> dpkg --verify: clean; crio.service enabled for the next boot"
        ;;
    bundle)
        apt_in_root "${BUNDLE_DEPS[@]}"
        cp "$work"/packages/crio-rs.*.tar.gz "$root/root/"
        chroot "$root" /bin/bash -c 'cd /root && tar xf crio-rs.*.tar.gz && cd crio-rs && ./install'
        ;;
    esac
}

# in_pod KIND ROOT WORK CRIO CGROUP: runs the installed daemon and a pod (own netns).
in_pod() {
    local kind=$1 root=$2 work=$3 crio=$4 cgroup=$5
    ip link set lo up
    mount_root "$root" net

    log "[$kind] the test image on a registry at $REGISTRY (this namespace's loopback)"
    docker-registry serve "$work/registry.yml" >"$work/$kind-registry.log" 2>&1 &
    local registry=$!
    for _ in $(seq 100); do
        (exec 3<>/dev/tcp/127.0.0.1/5000) 2>/dev/null && break
        sleep 0.1
    done
    skopeo --policy "$work/policy.json" copy --quiet --dest-tls-verify=false \
        "oci:$work/image:latest" "docker://$IMAGE"
    # The test's registry serves plain HTTP (the root has no registries.conf).
    mkdir -p "$root/etc/containers"
    printf '[[registry]]\nlocation = "%s"\ninsecure = true\n' "$REGISTRY" \
        >"$root/etc/containers/registries.conf"

    log "[$kind] starting $crio in the root"
    # In a mount namespace of its own whose / is the root (pivot_root, then the host's
    # tree detached), as on a node: a chroot would not do, since runc exec joins a
    # container's mount namespace at that namespace's /. Every step execs: $! is crio.
    mkdir -p "$root/.pkgtest-oldroot"
    # shellcheck disable=SC2016 # expanded by the inner shells
    unshare --mount /bin/sh -c 'cd "$1" && pivot_root . .pkgtest-oldroot &&
        exec /usr/sbin/chroot . /bin/sh -c "umount -l /.pkgtest-oldroot && rmdir /.pkgtest-oldroot &&
            exec /usr/bin/env -i PATH=$2 HOME=/root $3"' sh "$root" "$ROOT_PATH" "$crio" \
        >"$work/$kind-crio.log" 2>&1 </dev/null &
    local daemon=$!
    local socket
    socket=$(chroot "$root" "$crio" config 2>/dev/null | sed -n 's/^listen = "\(.*\)"$/\1/p' || true)
    # The root's /var/run is a symlink to /run: resolved inside the root.
    socket=$root$(chroot "$root" readlink -m "${socket:-/var/run/crio/crio.sock}")
    for _ in $(seq 300); do
        [[ -S $socket ]] && break
        kill -0 "$daemon" 2>/dev/null || break
        sleep 0.1
    done
    local status=0
    if [[ ! -S $socket ]]; then
        echo "crio did not serve $socket" >&2
        status=1
    else
        /usr/bin/python3 "$REPO/tests/package-pod.py" --socket "$socket" --root "$root" \
            --image "$IMAGE" --cgroup-parent "$cgroup" --pb "$work/pb" || status=$?
    fi
    kill -TERM "$daemon" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$daemon" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$daemon" 2>/dev/null || true
    wait "$daemon" 2>/dev/null || true
    kill -TERM "$registry" 2>/dev/null || true
    wait "$registry" 2>/dev/null || true
    rm -f "$root/etc/containers/registries.conf"
    if ((status)); then
        echo "crio's log (last lines):" >&2
        tail -n 20 "$work/$kind-crio.log" >&2
    fi
    # Everything still running in these namespaces dies with this process.
    return "$status"
}

# in_remove KIND ROOT: removes the artifact and checks its binaries are gone.
in_remove() {
    local kind=$1 root=$2 bin
    mount_root "$root"
    case $kind in
    deb)
        chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get purge -y -q crio-rs
        if [[ -e $root/etc/systemd/system/multi-user.target.wants/crio.service ||
            -e $root/etc/crio/crio.conf.d/00-default.conf ]]; then
            echo "the purge left the unit enabled or the config behind" >&2
            return 1
        fi
        ;;
    bundle) chroot "$root" /usr/local/share/crio-rs/uninstall ;;
    esac
    for bin in crio containerd-shim-runc-rs-v2 containerd-shim-youki-v2 containerd-shim-kata-rs-v2; do
        if [[ -e $root/usr/bin/$bin || -e $root/usr/local/bin/$bin ]]; then
            echo "$bin is still installed after the removal" >&2
            return 1
        fi
    done
}

# ---------------------------------------------------------------------------------
# One artifact, in a process of its own (set -e holds there): a fresh root from the
# base, install, pod, removal. run_artifact KIND WORK
run_artifact() {
    local kind=$1 work=$2 root=$2/$1 crio unit exec_start id=${2##*.}
    log "[$kind] a fresh $SUITE root in $root"
    mkdir -p "$root"
    tar -C "$root" --numeric-owner -xzf "$BASE"
    log "[$kind] installing"
    if ! unshare --mount --pid --fork --mount-proc "$SELF" __install "$kind" "$root" "$work" \
        >"$work/$kind-install.log" 2>&1; then
        tail -n 30 "$work/$kind-install.log" >&2
        echo "installing the $kind failed" >&2
        return 1
    fi
    grep -E '^(crio-rs |==> |Need to get)' "$work/$kind-install.log" || true
    case $kind in
    deb) crio=/usr/bin/crio unit=/lib/systemd/system/crio.service ;;
    bundle) crio=/usr/local/bin/crio unit=/usr/local/lib/systemd/system/crio.service ;;
    esac
    exec_start=$(sed -n 's/^ExecStart=//p' "$root$unit" 2>/dev/null || true)
    if [[ $exec_start != "$crio" || ! -x $root$crio ]]; then
        echo "the $kind's unit $unit says ExecStart=$exec_start; expected the installed $crio" >&2
        return 1
    fi
    log "[$kind] $unit: ExecStart=$exec_start"
    unshare --mount --pid --net --fork --mount-proc "$SELF" __pod "$kind" "$root" "$work" \
        "$exec_start" "/crio-pkgtest-$id-$kind"
    log "[$kind] removing"
    if ! unshare --mount --pid --fork --mount-proc "$SELF" __remove "$kind" "$root" \
        >"$work/$kind-remove.log" 2>&1; then
        tail -n 20 "$work/$kind-remove.log" >&2
        echo "removing the $kind failed" >&2
        return 1
    fi
    grep -E '^(==> |Removing|Purging)' "$work/$kind-remove.log" || true
}

case ${1:-} in
__install | __pod | __remove | __artifact)
    mode=${1#__}
    shift
    [[ $mode == artifact ]] && mode=run_artifact || mode=in_$mode
    "$mode" "$@"
    exit
    ;;
esac

# ---------------------------------------------------------------------------------
# The driver.

if [[ $(id -u) != 0 ]]; then
    echo "tests/package-install.sh must run as root (chroot, namespaces, mounts)" >&2
    exit 1
fi
PACKAGE_OPTS=()
if [[ ${1:-} == --fast ]]; then
    PACKAGE_OPTS+=(--fast)
    shift
fi
BINS=${1:-target/dist}
start=$SECONDS

# debootstrap; the CRI client (grpcio, protobuf, protoc for the CRI's api.proto); the
# test image (busybox-static) and its registry (docker-registry, skopeo); unshare,
# findmnt, ip.
packaging/apt-install.sh debootstrap python3-grpcio python3-protobuf protobuf-compiler \
    busybox-static docker-registry skopeo util-linux mount iproute2

work=$(mktemp -d "${TMPDIR:-/var/tmp}/crio-pkgtest.XXXXXX")
id=${work##*.}

# mounted_under DIR: mounts at or below DIR in this (the host's) mount namespace.
mounted_under() {
    findmnt -rn -o TARGET | awk -v d="$1" 'index($0, d "/") == 1 || $0 == d'
}
# remove_tree DIR: rm -rf, only once nothing is mounted below it.
remove_tree() {
    local dir=$1
    [[ -e $dir ]] || return 0
    if [[ -n $(mounted_under "$dir") ]]; then
        echo "package-install: still mounted under $dir, not removing it:" >&2
        mounted_under "$dir" >&2
        return 1
    fi
    rm -rf "$dir"
}
# remove_cgroups KIND: the cgroups the pods of this run got (their processes died
# with the PID namespace).
remove_cgroups() {
    local dir
    for dir in /sys/fs/cgroup/*/"crio-pkgtest-$id-$1" /sys/fs/cgroup/"crio-pkgtest-$id-$1"; do
        [[ -d $dir ]] && find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null
    done
    return 0
}
cleanup() {
    local kind
    for kind in deb bundle; do remove_cgroups "$kind"; done
    remove_tree "$work" || true
}
trap cleanup EXIT

log "packaging the binaries in $BINS"
t=$SECONDS
packaging/package.sh --bins "$BINS" --no-build --out "$work/packages" "${PACKAGE_OPTS[@]}"
log "packaged in $((SECONDS - t)) s"

# The base root: debootstrap once, then from the cache.
mkdir -p "$CACHE" "$ARCHIVES/partial"
if [[ ! -f $BASE ]]; then
    mirror=${DEBIAN_MIRROR:-}
    if [[ -z $mirror ]]; then
        # This machine's mirror for the suite: deb822 .sources first, then one-line
        # entries.
        mirror=$(awk 'BEGIN { RS = "" } {
                types = suites = uris = ""
                n = split($0, lines, "\n")
                for (i = 1; i <= n; i++) {
                    if (lines[i] ~ /^Types:/) types = lines[i]
                    if (lines[i] ~ /^Suites:/) suites = lines[i]
                    if (lines[i] ~ /^URIs:/) uris = lines[i]
                }
                if (types ~ /[ \t]deb([ \t]|$)/ && suites ~ /[ \t]'"$SUITE"'([ \t]|$)/) {
                    sub(/^URIs:[ \t]*/, "", uris); split(uris, u, /[ \t]+/); print u[1]; exit
                }
            }' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
    fi
    if [[ -z $mirror ]]; then
        mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
            sed -E 's/\[[^]]*\]//' | awk -v s="$SUITE" '$1 == "deb" && $3 == s { print $2; exit }')
    fi
    mirror=${mirror:-http://deb.debian.org/debian}
    log "debootstrap --variant=minbase $SUITE from $mirror (cached as $BASE)"
    t=$SECONDS
    debootstrap --variant=minbase "$SUITE" "$work/base" "$mirror" >"$work/debootstrap.log" 2>&1 || {
        tail -n 20 "$work/debootstrap.log" >&2
        exit 1
    }
    # Downloaded .debs go to the shared archive cache, not into every root.
    find "$work/base/var/cache/apt/archives" -maxdepth 1 -name '*.deb' -exec mv -t "$ARCHIVES" {} +
    tar -C "$work/base" --numeric-owner -czf "$BASE.tmp.$$" .
    mv "$BASE.tmp.$$" "$BASE"
    remove_tree "$work/base"
    log "base root ready in $((SECONDS - t)) s"
fi

# The test image: an OCI layout with busybox-static's /bin/busybox as sh, cat, sleep.
log "building the test image and the CRI client"
layer=$work/layer
mkdir -p "$layer/bin" "$layer/etc" "$work/image/blobs/sha256" "$work/pb"
install -m 0755 "$(dpkg -L busybox-static | grep -m1 '/bin/busybox$')" "$layer/bin/busybox"
for applet in sh cat sleep echo hostname ls; do ln -s busybox "$layer/bin/$applet"; done
blob() { # FILE -> moves it into the layout, prints "sha256:<hex> <size>"
    local sum size
    sum=$(sha256sum "$1" | cut -d' ' -f1)
    size=$(stat -c %s "$1")
    mv "$1" "$work/image/blobs/sha256/$sum"
    echo "sha256:$sum $size"
}
tar -C "$layer" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -cf "$work/layer.tar" .
diff_id=sha256:$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
gzip -n "$work/layer.tar"
read -r layer_digest layer_size < <(blob "$work/layer.tar.gz")
printf '{"architecture":"%s","os":"linux","config":{"Env":["PATH=/bin"]},"rootfs":{"type":"layers","diff_ids":["%s"]}}' \
    "$(dpkg --print-architecture)" "$diff_id" >"$work/config.json"
read -r config_digest config_size < <(blob "$work/config.json")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"%s","size":%s}]}' \
    "$config_digest" "$config_size" "$layer_digest" "$layer_size" >"$work/manifest.json"
read -r manifest_digest manifest_size < <(blob "$work/manifest.json")
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"latest"}}]}' \
    "$manifest_digest" "$manifest_size" >"$work/image/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' >"$work/image/oci-layout"
echo '{"default":[{"type":"insecureAcceptAnything"}]}' >"$work/policy.json"
cat >"$work/registry.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: $REGISTRY
  secret: crio-pkgtest
EOF
# Debian 12's protoc (3.21) predates the debug_redact field option (no wire effect).
sed 's/ *\[debug_redact = true\]//' protocols/proto/runtime/v1/api.proto >"$work/pb/api.proto"
protoc -I "$work/pb" --python_out="$work/pb" "$work/pb/api.proto"

passed=0
failed=0
results=()
for kind in deb bundle; do
    t=$SECONDS
    if "$SELF" __artifact "$kind" "$work"; then
        results+=("PASS $kind: installed into a fresh $SUITE root, ran a pod and a container, removed ($((SECONDS - t)) s)")
        passed=$((passed + 1))
    else
        logs=${TMPDIR:-/var/tmp}/crio-pkgtest-logs.$id
        mkdir -p "$logs"
        cp "$work"/*.log "$logs/" 2>/dev/null || true
        results+=("FAIL $kind: see the output above; the logs are in $logs ($((SECONDS - t)) s)")
        failed=$((failed + 1))
    fi
    remove_cgroups "$kind"
    remove_tree "$work/$kind" || true
done

echo
printf '%s\n' "${results[@]}"
# As cargo's test binaries end, so that tests/run.sh counts these two.
verdict=ok
((failed == 0)) || verdict=FAILED
echo "test result: $verdict. $passed passed; $failed failed; package-install ($((SECONDS - start)) s)"
((failed == 0))
