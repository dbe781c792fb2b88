#!/bin/bash
# Stage: VM containers (`berth run --isolation vm`) under nested KVM inside the qemu TCG
# test VM, as vmm-nested.sh boots berth's VMM there. The outer VM gets static berth,
# berth-vmm, Debian's vmlinux, the agent initramfs (mkagent-initramfs.sh: static
# berth-agent as /init + virtio/vsock/ext4/overlay modules), the busybox test image, and
# mkfs.ext4 with its libraries (the engine copies the rootfs into an ext4 disk). Checks:
# output and exit code, -e/-w/-u, --memory (the guest cgroup's memory.max) and --cpus
# (vCPUs and cpu.max), --rm leaving no container, disk, socket or VMM process.
#
# Usage: vm-containers.sh [--kver KVER] [--timeout SECONDS] [--log FILE]
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
prog=vm-containers

kver=$(default_kver)
timeout=900
log_args=()
while (($#)); do
    case $1 in
    --kver) kver=${2:?"--kver needs a value"}; shift 2 ;;
    --timeout) timeout=${2:?"--timeout needs a value"}; shift 2 ;;
    --log) log_args=(--log "${2:?"--log needs a file"}"); shift 2 ;;
    *) die $prog "unknown argument $1 (see the header of $0)" ;;
    esac
done
[[ -n $kver ]] || die $prog "no /boot/vmlinuz-* found; install linux-image-amd64"

build_berth_static $prog
agent=$("$VM_SCRIPTS/build-static.sh" -p berth-agent --bin berth-agent) ||
    die $prog "static build of berth-agent failed"
vmlinux=$(ensure_vmlinux "$kver")

mkdir -p "$VM_BUILD/tmp"
work=$(mktemp -d "$VM_BUILD/tmp/vm-containers.XXXXXX")
trap 'rm -rf "$work"' EXIT
"$VM_SCRIPTS/mkagent-initramfs.sh" "$work/agent.cpio" "$agent" --kver "$kver" >/dev/null
sh "$VM_REPO_ROOT/scripts/build-test-image.sh" "$work/image" >/dev/null

# mkfs.ext4 is dynamic: bring its libraries and loader at their own paths.
mkfs=$(command -v mkfs.ext4) || die $prog "mkfs.ext4 not found; install e2fsprogs"
adds=(--add "$mkfs:/sbin/mkfs.ext4" --add /etc/mke2fs.conf:/etc/mke2fs.conf)
for lib in $(ldd "$mkfs" | grep -o '/[^ ]*'); do
    adds+=(--add "$lib:$lib")
done

cat >"$work/outer.sh" <<'OUTER'
set -u
export BERTH_DATA_ROOT=/tmp/data BERTH_VM_KERNEL=/vm/vmlinux BERTH_VM_INITRD=/vm/agent.cpio
fail=0
check() { # NAME EXPECTED ACTUAL
    if [ "$2" = "$3" ]; then echo "ok: $1"; else echo "FAIL: $1: expected [$2], got [$3]"; fail=1; fi
}
/bin/berth import /vm/image busybox:vm >/dev/null || { echo "FAIL: import"; exit 1; }

start=$(date +%s)
out=$(/bin/berth run --rm --isolation vm busybox:vm sh -c 'echo hello from the guest; echo to-stderr >&2; exit 3' 2>/tmp/err)
rc=$?
echo "first VM container: $(( $(date +%s) - start )) s"
check "stdout" "hello from the guest" "$out"
check "exit code" 3 "$rc"
check "stderr" "to-stderr" "$(cat /tmp/err)"

out=$(/bin/berth run --rm --isolation vm -e GREETING=hi -w /tmp -u 1000:1000 busybox:vm \
    sh -c 'echo $GREETING $(pwd) $(id -u):$(id -g)' 2>&1)
check "-e -w -u" "hi /tmp 1000:1000" "$out"

out=$(/bin/berth run --rm --isolation vm --memory 64m --cpus 2 busybox:vm \
    sh -c 'echo $(cat /sys/fs/cgroup/memory.max) $(nproc) $(cat /sys/fs/cgroup/cpu.max)' 2>&1)
check "--memory --cpus" "67108864 2 200000 100000" "$out"

# The kernel boundary: the guest's kernel runs the container, not the outer VM's.
out=$(/bin/berth run --rm --isolation vm busybox:vm cat /proc/cmdline 2>&1)
case $out in *pci=off*) echo "ok: guest kernel command line" ;; *) echo "FAIL: cmdline [$out]"; fail=1 ;; esac

check "no container left" "" "$(ls /tmp/data/containers)"
check "no VMM left" 0 "$(ps | grep -c '[b]erth-vmm')"
exit $fail
OUTER

rc=0
"$VM_SCRIPTS/run-in-vm.sh" --modules kvm,overlay --script "$work/outer.sh" \
    --add "$berth:/bin/berth" --add "$berth_vmm:/bin/berth-vmm" --add "$vmlinux:/vm/vmlinux" \
    --add "$work/agent.cpio:/vm/agent.cpio" --add "$work/image:/vm/image" "${adds[@]}" \
    --mem 2G --cpus 2 --timeout "$timeout" "${log_args[@]}" || rc=$?
exit $rc
