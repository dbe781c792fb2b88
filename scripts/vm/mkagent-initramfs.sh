#!/bin/bash
# Build the initramfs of a berth VM container: a static berth-agent as /init, the modules
# it loads in order (/berth/modules: virtio-mmio, virtio-blk, the vsock transport, ext4,
# overlay, with their dependencies) and busybox (the agent uses `ip` for lo). Built from
# Debian's kernel package: the modules must be those of the kernel the VM boots.
#
# Usage: mkagent-initramfs.sh OUT.cpio AGENT [--kver KVER]
#   AGENT  a static berth-agent (scripts/vm/build-static.sh -p berth-agent)
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
prog=mkagent-initramfs

out=${1:?usage: mkagent-initramfs.sh OUT.cpio AGENT [--kver KVER]}
agent=${2:?usage: mkagent-initramfs.sh OUT.cpio AGENT [--kver KVER]}
shift 2
kver=$(default_kver)
while (($#)); do
    case $1 in
    --kver) kver=${2:?"--kver needs a value"}; shift 2 ;;
    *) die $prog "unknown argument $1" ;;
    esac
done
file -L "$agent" | grep -Eq 'static(-pie)? linked|statically linked' || die $prog "$agent: not a static executable"
# The agent looks for /berth/modules, the list mkinitramfs.sh writes.
exec "$VM_SCRIPTS/mkinitramfs.sh" "$out" --pid1 "$agent" --kver "$kver" \
    --modules virtio_mmio,virtio_blk,vmw_vsock_virtio_transport,ext4,overlay
