#!/usr/bin/env bash
# What VM pods need from Debian: qemu (7.2) to run them, and what building their
# guest takes (linux-source-6.1 and the kernel's build tools, cpio).
set -euo pipefail
cd "$(dirname "$0")/../.."
packaging/apt-install.sh linux-source-6.1 bison flex libelf-dev bc cpio gcc make
if ! dpkg -s qemu-system-x86 >/dev/null 2>&1; then
    # Some machines carry a newer qemu-utils (backports) that conflicts with
    # bookworm's qemu-system-x86: pin it to the same version.
    apt-get update -qq
    version=$(apt-cache policy qemu-system-x86 | sed -n 's/^ *Candidate: //p')
    echo "==> apt-get install qemu-system-x86 qemu-utils=$version"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --allow-downgrades \
        qemu-system-x86 "qemu-utils=$version" >/dev/null
fi
