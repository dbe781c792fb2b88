# Shared helpers for scripts/vm/*.sh (sourced, not executed).
# shellcheck shell=bash

# The repository root, found from this file's location (scripts/vm/lib.sh).
VM_REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VM_SCRIPTS=$VM_REPO_ROOT/scripts/vm
VM_BUILD=$VM_REPO_ROOT/build/vm

# die PROGRAM MESSAGE...: one line on stderr, exit 1.
die() {
    local prog=$1
    shift
    echo "$prog: $*" >&2
    exit 1
}

# The kernel release of the newest /boot/vmlinuz-* (e.g. 6.1.0-57-amd64), or empty.
default_kver() {
    local k
    for k in /boot/vmlinuz-*; do
        [[ -e $k ]] && echo "${k#/boot/vmlinuz-}"
    done | sort -V | tail -n 1
}

# ensure_vmlinux KVER: print the path of the cached ELF vmlinux for KVER, extracting it
# from /boot/vmlinuz-KVER on first use.
ensure_vmlinux() {
    "$VM_SCRIPTS/extract-vmlinux.sh" "/boot/vmlinuz-$1" "$VM_BUILD/vmlinux-$1"
}

# build_berth_static PROG: static builds of berth and berth-vmm (which `berth vm run`
# executes from berth's own directory: copy both into the same directory of a VM); sets
# $berth and $berth_vmm to their paths.
build_berth_static() {
    local built
    built=$("$VM_SCRIPTS/build-static.sh" -p berth --bin berth --bin berth-vmm) ||
        die "$1" "static build of berth failed"
    berth=$(grep '/berth$' <<<"$built")
    berth_vmm=$(grep '/berth-vmm$' <<<"$built")
}
