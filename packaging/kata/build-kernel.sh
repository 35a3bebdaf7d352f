#!/usr/bin/env bash
# Builds the guest kernel of VM pods (issue 19; build-guest.sh calls it): Debian's
# linux-source-6.1, tinyconfig plus what a pod VM needs (virtio-mmio for
# `-M microvm`, PVH boot of the uncompressed vmlinux, serial console, initramfs,
# namespaces, cgroups (device rules as cgroup BPF), seccomp, overlayfs, virtio-fs, 9p, virtio-net,
# virtio-serial). Cached by its option list's hash under $CRIO_KATA_CACHE (default
# /var/cache/crio-rs/kata), outside the checkout; prints the vmlinux path.
# Needs: linux-source-6.1 bison flex libelf-dev bc (apt). ~3.5 min with 2 cores.
#
# Without CONFIG_ACPI, qemu must run `-M microvm,acpi=off`: only then does it put
# the virtio-mmio devices on the kernel command line (`virtio_mmio.device=`).
set -euo pipefail
CACHE=${CRIO_KATA_CACHE:-/var/cache/crio-rs/kata}
SRC_TAR=/usr/src/linux-source-6.1.tar.xz
OPTIONS=(
  64BIT SMP PRINTK PRINTK_TIME EARLY_PRINTK TTY SERIAL_8250 SERIAL_8250_CONSOLE
  BLK_DEV_INITRD RD_GZIP BINFMT_ELF BINFMT_SCRIPT MULTIUSER FUTEX EPOLL SIGNALFD
  TIMERFD EVENTFD SHMEM AIO FILE_LOCKING INOTIFY_USER FHANDLE POSIX_MQUEUE SYSVIPC
  PROC_FS PROC_SYSCTL SYSFS TMPFS TMPFS_POSIX_ACL DEVTMPFS DEVTMPFS_MOUNT UNIX98_PTYS
  HYPERVISOR_GUEST PARAVIRT PVH KVM_GUEST
  VIRTIO_MENU VIRTIO VIRTIO_MMIO VIRTIO_MMIO_CMDLINE_DEVICES
  VIRTIO_CONSOLE HW_RANDOM HW_RANDOM_VIRTIO VIRTIO_BLK BLOCK
  NET NET_CORE INET IPV6 UNIX PACKET NETDEVICES VIRTIO_NET VETH BRIDGE
  NAMESPACES UTS_NS IPC_NS PID_NS NET_NS USER_NS
  CGROUPS MEMCG CGROUP_PIDS CPUSETS CGROUP_SCHED FAIR_GROUP_SCHED CFS_BANDWIDTH
  CGROUP_DEVICE CGROUP_FREEZER CGROUP_CPUACCT BLK_CGROUP CGROUP_HUGETLB HUGETLBFS
  BPF_SYSCALL CGROUP_BPF
  SECCOMP SECCOMP_FILTER KEYS
  OVERLAY_FS FUSE_FS VIRTIO_FS NETWORK_FILESYSTEMS NET_9P NET_9P_VIRTIO 9P_FS
  9P_FS_POSIX_ACL EXT4_FS
)
hash=$(printf '%s\n' "${OPTIONS[@]}" | sha256sum | cut -c1-12)
out="$CACHE/vmlinux-6.1-$hash"
if [[ -f $out ]]; then echo "$out"; exit 0; fi
mkdir -p "$CACHE/src"
if [[ ! -d $CACHE/src/linux-source-6.1 ]]; then
  tar -C "$CACHE/src" -xf "$SRC_TAR"
fi
cd "$CACHE/src/linux-source-6.1"
make -s tinyconfig >/dev/null
for o in "${OPTIONS[@]}"; do scripts/config --enable "$o"; done
make -s olddefconfig >/dev/null
make -s -j"$(nproc)" vmlinux >&2
cp vmlinux "$out.tmp" && mv "$out.tmp" "$out"
echo "$out"
