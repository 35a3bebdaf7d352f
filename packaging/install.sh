#!/usr/bin/env bash
# Installs what crio needs from Debian, builds the release binaries, installs them
# and the default config, and starts the daemon. Safe to run again (re-installs and
# restarts). Run as root on Debian 12 (bookworm).
set -euo pipefail
cd "$(dirname "$0")/.."

PREFIX=${PREFIX:-/usr/local}
CONF_DIR=/etc/crio/crio.conf.d
LOG=/var/log/crio/crio.log
PIDFILE=/run/crio/crio.pid
CNI_DIR=/etc/cni/net.d
CNI_CONFLIST=11-crio-bridge.conflist

# Runtime parts (runc/crun, CNI plugins) and what the build needs.
PACKAGES=(runc crun containernetworking-plugins iptables pkg-config gcc make libseccomp-dev
    libelf-dev zlib1g-dev)
SHIM=containerd-shim-runc-rs-v2
YOUKI_SHIM=containerd-shim-youki-v2
KATA_SHIM=containerd-shim-kata-rs-v2
# Where the default config's `kata` handler finds the VM pods' guest.
KATA_GUEST_DIR=/usr/local/share/crio-rs/kata

packaging/apt-install.sh "${PACKAGES[@]}"
# The `kata` handler: qemu, and what building its guest kernel needs.
packaging/kata/apt-install.sh

packaging/build.sh

echo "==> building the VM pods' guest (kernel and initramfs; cached after the first time)"
mapfile -t guest < <(packaging/kata/build-guest.sh)

echo "==> installing to $PREFIX/bin, $CONF_DIR and $KATA_GUEST_DIR"
for bin in crio "$SHIM" "$YOUKI_SHIM" "$KATA_SHIM"; do
    install -D -m 0755 "target/dist/$bin" "$PREFIX/bin/$bin"
done
install -D -m 0644 "${guest[0]}" "$KATA_GUEST_DIR/vmlinux"
install -D -m 0644 "${guest[1]}" "$KATA_GUEST_DIR/initramfs.cpio"
install -d -m 0755 "$CONF_DIR"
install -m 0644 conf.d/00-default.conf "$CONF_DIR/00-default.conf"

# The default pod network (bridge crio0, 10.85.0.0/16), unless another network
# provider already put its conflist there: the first file in lexical order wins.
install -d -m 0755 "$CNI_DIR"
others=$(find "$CNI_DIR" -maxdepth 1 -type f \( -name '*.conflist' -o -name '*.conf' -o -name '*.json' \) \
    ! -name "$CNI_CONFLIST" | wc -l)
if [[ $others == 0 ]]; then
    echo "==> installing the default pod network $CNI_DIR/$CNI_CONFLIST"
    install -m 0644 "packaging/cni/$CNI_CONFLIST" "$CNI_DIR/$CNI_CONFLIST"
else
    echo "==> $CNI_DIR already has a network config: not adding $CNI_CONFLIST"
fi

# Stop a daemon this script started before (by its recorded PID, never by name).
if [[ -f $PIDFILE ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    echo "==> stopping the running crio (pid $(cat "$PIDFILE"))"
    kill -TERM "$(cat "$PIDFILE")"
    for _ in $(seq 100); do kill -0 "$(cat "$PIDFILE")" 2>/dev/null || break; sleep 0.1; done
fi

if [[ -d /run/systemd/system ]]; then
    install -m 0644 packaging/crio.service /etc/systemd/system/crio.service
    sed -i "s|/usr/local/bin/crio|$PREFIX/bin/crio|" /etc/systemd/system/crio.service
    systemctl daemon-reload
    systemctl enable --now crio.service
    systemctl restart crio.service
else
    echo "==> no systemd: starting crio in the background (log: $LOG)"
    install -d -m 0755 /var/log/crio /run/crio
    setsid "$PREFIX/bin/crio" >>"$LOG" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
fi

socket=$("$PREFIX/bin/crio" config 2>/dev/null | sed -n 's/^listen = "\(.*\)"$/\1/p')
for _ in $(seq 200); do
    [[ -S $socket ]] && "$PREFIX/bin/crio" status info >/dev/null 2>&1 && break
    sleep 0.05
done
if ! "$PREFIX/bin/crio" status info >/dev/null 2>&1; then
    echo "crio did not come up; see $LOG" >&2
    tail -n 20 "$LOG" >&2 || true
    exit 1
fi
echo "==> crio is serving CRI on $socket"
"$PREFIX/bin/crio" version
