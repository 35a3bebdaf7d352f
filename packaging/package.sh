#!/usr/bin/env bash
# package.sh [--bins DIR] [--no-build] [--out DIR] [--fast]: builds the two packages of
# crio-rs into target/packages/ (or --out DIR):
#
#   crio-rs_<version>_<arch>.deb   Debian package: /usr/bin/crio and the shims,
#                                  /etc/crio/crio.conf.d/00-default.conf and
#                                  /etc/cni/net.d/11-crio-bridge.conflist (conffiles),
#                                  /lib/systemd/system/crio.service; Depends on runc,
#                                  crun, containernetworking-plugins, iptables,
#                                  libseccomp2, ca-certificates and the binaries'
#                                  libraries.
#   crio-rs.<version>.tar.gz       bundle as CRI-O's: crio-rs/{bin,etc,contrib} with
#                                  an install script (DESTDIR, PREFIX=/usr/local),
#                                  uninstall and README.md.
#
# The binaries come from target/dist, built first by packaging/build.sh (release
# crio, static shims) unless --no-build; --bins DIR packages the binaries in DIR as
# they are (the tests pass target/debug) and builds nothing. --fast compresses
# quickly rather than well (gzip -1 instead of xz and gzip -9: for tests of debug
# binaries). The kata handler's guest (packaging/kata/build-guest.sh) is in neither
# package. Prints the two paths.
set -euo pipefail
cd "$(dirname "$0")/.."

BINS=target/dist
BUILD=1
OUT=target/packages
DEB_COMPRESS=(-Zxz)
GZIP_LEVEL=-9
usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit "${1:-2}"
}
while (($#)); do
    case $1 in
    --bins)
        BINS=${2:?--bins needs a directory}
        BUILD=0
        shift 2
        ;;
    --no-build) BUILD=0 && shift ;;
    --fast)
        DEB_COMPRESS=(-Zgzip -z1)
        GZIP_LEVEL=-1
        shift
        ;;
    --out)
        OUT=${2:?--out needs a directory}
        shift 2
        ;;
    -h | --help) usage 0 ;;
    *) echo "package.sh: unknown argument $1" >&2 && usage ;;
    esac
done

BINARIES=(crio containerd-shim-runc-rs-v2 containerd-shim-youki-v2 containerd-shim-kata-rs-v2)
NAME=crio-rs
# dpkg-deb, dpkg-shlibdeps (the Depends of the binaries' libraries).
packaging/apt-install.sh dpkg-dev

if ((BUILD)); then
    packaging/build.sh
fi
for bin in "${BINARIES[@]}"; do
    if [[ ! -x $BINS/$bin ]]; then
        echo "package.sh: $BINS/$bin is missing (packaging/build.sh builds target/dist)" >&2
        exit 1
    fi
done

# Binaries older than the config they ship with would ignore its newer keys (with a
# warning at each start): say so now.
unknown=$("$BINS/crio" -c /nonexistent -d conf.d config 2>&1 >/dev/null | grep -c 'unknown key' || true)
if ((unknown)); then
    echo "package.sh: warning: $BINS/crio does not know $unknown keys of conf.d/00-default.conf" \
        "(built before the config changed? packaging/build.sh rebuilds target/dist)" >&2
fi

# The version: the workspace's, else crio-core's own. A Cargo pre-release
# (0.2.0-rc.1) sorts before its release in Debian as 0.2.0~rc.1.
version=$(awk '/^\[/ { s = ($0 == "[workspace.package]") }
    s && /^version *=/ { gsub(/^version *= *"|".*$/, ""); print; exit }' Cargo.toml)
if [[ -z $version ]]; then
    version=$(awk '/^\[/ { s = ($0 == "[package]") }
        s && /^version *=/ { gsub(/^version *= *"|".*$/, ""); print; exit }' crio-core/Cargo.toml)
fi
if [[ ! $version =~ ^[0-9][0-9A-Za-z.+~-]*$ ]]; then
    echo "package.sh: no usable version in Cargo.toml ([workspace.package] or crio-core's): '$version'" >&2
    exit 1
fi
deb_version=${version//-/\~}
arch=$(dpkg --print-architecture)
# Files dated by the last commit, owned by root: the same tree packs the same way.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
work=$(mktemp -d "$OUT/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT

# The unit as packaged: crio and its docs where the package puts them. The source
# unit names packaging/install.sh's /usr/local paths.
unit_for() { # BINDIR DOCDIR
    sed -e "s|^ExecStart=.*|ExecStart=$1/crio|" \
        -e "s|^Documentation=.*|Documentation=file://$2/README.md|" packaging/crio.service
}

# ---- the .deb ----
# Staged as debian/<package> (with its DEBIAN/) beside a debian/control: where
# dpkg-shlibdeps looks.
deb=$work/debian/$NAME
install -d -m 0755 "$deb/DEBIAN"
doc=$deb/usr/share/doc/$NAME
for bin in "${BINARIES[@]}"; do
    install -D -m 0755 "$BINS/$bin" "$deb/usr/bin/$bin"
done
install -D -m 0644 conf.d/00-default.conf "$deb/etc/crio/crio.conf.d/00-default.conf"
install -D -m 0644 packaging/cni/11-crio-bridge.conflist "$deb/etc/cni/net.d/11-crio-bridge.conflist"
install -d -m 0755 "$deb/lib/systemd/system"
unit_for /usr/bin "/usr/share/doc/$NAME" >"$deb/lib/systemd/system/crio.service"
chmod 0644 "$deb/lib/systemd/system/crio.service"
install -D -m 0644 README.md "$doc/README.md"
install -d -m 0755 "$doc/docs"
install -m 0644 docs/*.md "$doc/docs/"
gzip -9n <CHANGELOG.md >"$doc/changelog.gz"
chmod 0644 "$doc/changelog.gz"
cat >"$doc/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: $NAME

Files: *
License: Apache-2.0
 On Debian systems the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
EOF
chmod 0644 "$doc/copyright"

# What the binaries link against, as Debian's own packages compute it (from the
# libraries' symbols files); static binaries add nothing.
dynamic=()
for bin in "${BINARIES[@]}"; do
    if readelf -l "$BINS/$bin" | grep -q INTERP; then
        dynamic+=("-edebian/$NAME/usr/bin/$bin")
    fi
done
shlibs=
if ((${#dynamic[@]})); then
    printf 'Source: %s\n\nPackage: %s\nArchitecture: any\n' "$NAME" "$NAME" >"$work/debian/control"
    shlibs=$(cd "$work" && dpkg-shlibdeps -O "${dynamic[@]}" |
        sed -n 's/^shlibs:Depends=//p')
fi
# runc (the default handler's OCI runtime) and crun (runtime_path = "crun", or a
# crun handler, as CRI-O's), the CNI plugins of the default network (Debian's install to /usr/lib/cni, on plugin_dirs), iptables
# for its masquerade and port mappings, libseccomp (the youki shim, when it is not
# linked statically), ca-certificates (crio reads the system's CAs for every pull and
# fails without any, even from a plain-HTTP registry). Merged with the libraries' list, a package named twice
# keeping the first (versioned) entry.
depends=$({
    [[ -n $shlibs ]] && printf '%s\n' "${shlibs//, /$'\n'}"
    printf '%s\n' runc crun containernetworking-plugins iptables libseccomp2 ca-certificates
} | awk 'NF && !seen[$1]++' | paste -sd, - | sed 's/,/, /g')

cat >"$deb/DEBIAN/control" <<EOF
Package: $NAME
Version: $deb_version
Architecture: $arch
Maintainer: crio-rs maintainers <maintainers@crio-rs.invalid>
Installed-Size: $(du -sk --exclude=DEBIAN "$deb" | cut -f1)
Depends: $depends
Suggests: qemu-system-x86
Section: admin
Priority: optional
Description: Kubernetes CRI runtime running every container through a shim v2
 crio-rs serves the kubelet's CRI (runtime.v1) on /var/run/crio/crio.sock,
 pulls images, sets up pod networks through CNI and runs containers through
 shim v2 binaries chosen by the pod's RuntimeClass: its own runc/crun shim
 (containerd-shim-runc-rs-v2, the default), a youki shim and a VM shim (kata).
 Its configuration keys are CRI-O's (/etc/crio/crio.conf.d).
 .
 The kata handler's guest kernel and initramfs are not in this package: build
 them with packaging/kata/build-guest.sh from the source tree and install them
 in /usr/local/share/crio-rs/kata (with qemu-system-x86). Until then the daemon
 and its other handlers run, and kata pods are refused with the missing file
 named.
EOF
printf '%s\n' /etc/crio/crio.conf.d/00-default.conf /etc/cni/net.d/11-crio-bridge.conflist \
    >"$deb/DEBIAN/conffiles"
# For dpkg --verify (conffiles have their own checksums).
(cd "$deb" && find . -type f ! -path './DEBIAN/*' ! -path './etc/*' -printf '%P\0' |
    sort -z | xargs -0 md5sum) >"$deb/DEBIAN/md5sums"
chmod 0644 "$deb/DEBIAN/md5sums"
for script in postinst prerm postrm; do
    install -m 0755 "packaging/deb/$script" "$deb/DEBIAN/$script"
done
find "$deb" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
deb_file=$OUT/${NAME}_${deb_version}_${arch}.deb
dpkg-deb --root-owner-group "${DEB_COMPRESS[@]}" --build "$deb" "$deb_file" >/dev/null

# ---- the bundle ----
bundle=$work/bundle/$NAME
for bin in "${BINARIES[@]}"; do
    install -D -m 0755 "$BINS/$bin" "$bundle/bin/$bin"
done
install -D -m 0644 conf.d/00-default.conf "$bundle/etc/crio.conf.d/00-default.conf"
install -D -m 0644 packaging/cni/11-crio-bridge.conflist "$bundle/etc/cni/11-crio-bridge.conflist"
install -D -m 0644 packaging/crio.service "$bundle/contrib/crio.service"
install -m 0755 packaging/bundle/install packaging/bundle/uninstall "$bundle/"
install -m 0644 packaging/bundle/README.md "$bundle/README.md"
echo "$version" >"$bundle/VERSION"
chmod 0644 "$bundle/VERSION"
bundle_file=$OUT/$NAME.$version.tar.gz
tar -C "$work/bundle" --sort=name --owner=0 --group=0 --numeric-owner \
    --mtime="@$SOURCE_DATE_EPOCH" -cf - "$NAME" | gzip "$GZIP_LEVEL" -n >"$bundle_file"

echo "$deb_file"
echo "$bundle_file"
