#!/bin/bash
# Boot Debian's kernel with berth's own VMM (`berth vm run`) nested inside the qemu TCG
# test VM, where /dev/kvm is real (kvm-amd on emulated SVM). The inner guest loads the
# virtio modules, finds the devices through berth's ACPI tables, and checks: 2 CPUs
# (MADT), virtio-blk read + write, virtio-rng, virtio-net (ping over a tap to the outer
# VM), virtio-vsock both ways through the hybrid unix socket, then powers off through
# ACPI S5. Then the same kernel as a bzImage must reach
# the same init.
#
# Usage: vmm-nested.sh [--kver KVER] [--timeout SECONDS] [--log FILE]
# Exit: 0 when the inner guest did everything and `berth vm run` exited 0; otherwise the
# failing step is printed (see run-in-vm.sh for 124/125/120).
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
prog=vmm-nested

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
moddir=/lib/modules/$kver
[[ -r $moddir/modules.dep ]] || die $prog "$moddir/modules.dep: not found; install linux-image-$kver"
busybox=$(command -v busybox) || die $prog "busybox not found; install busybox-static"

build_berth_static $prog  # both go to /bin of the VM
vmlinux=$(ensure_vmlinux "$kver")

mkdir -p "$VM_BUILD/tmp"
work=$(mktemp -d "$VM_BUILD/tmp/vmm-nested.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Inner modules in load order: each module's dependencies (modules.dep lists them so
# that the last loads first) before the module itself.
declare -A dep_of path_of loaded
while IFS=: read -r path deps; do
    name=${path##*/}
    name=${name%.ko*}
    path_of[$name]=$path
    dep_of[$name]=$deps
done <"$moddir/modules.dep"
order=()
add_module() {
    local name=$1 deps i d
    [[ -n ${loaded[$name]:-} ]] && return
    [[ -n ${path_of[$name]:-} ]] || die $prog "module $name not in $moddir/modules.dep"
    read -ra deps <<<"${dep_of[$name]}"
    for ((i = ${#deps[@]} - 1; i >= 0; i--)); do
        d=${deps[i]##*/}
        add_module "${d%.ko*}"
    done
    loaded[$name]=1
    order+=("$name")
}
for m in virtio_mmio virtio_blk virtio-rng virtio_net vmw_vsock_virtio_transport; do add_module "$m"; done

gcc -static -O2 -Wall -o "$work/vsock-echo" "$VM_REPO_ROOT/crates/vmm/guests/vsock-echo.c" ||
    die $prog "gcc failed to build vsock-echo"

stage=$work/inner
mkdir -p "$stage"/{bin,dev,proc,sys,lib/modules}
cp "$busybox" "$stage/bin/busybox"
cp "$work/vsock-echo" "$stage/bin/vsock-echo"
for m in "${order[@]}"; do
    src=$moddir/${path_of[$m]}
    case $src in
    *.ko.xz) xz -dc "$src" >"$stage/lib/modules/$m.ko" ;;
    *.ko.zst) zstd -qdc "$src" >"$stage/lib/modules/$m.ko" ;;
    *) cp "$src" "$stage/lib/modules/$m.ko" ;;
    esac
    echo "$m" >>"$stage/lib/modules/order"
done
cat >"$stage/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t devtmpfs dev /dev
# The cpio has no /dev/console, so the kernel started us without stdio: attach it now.
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sys /sys
while read -r m; do insmod "/lib/modules/$m.ko" || echo "INNER-FAIL insmod $m"; done </lib/modules/order
echo "INNER cpus=$(grep -c ^processor /proc/cpuinfo)"
echo "INNER disk=$(head -c 16 /dev/vda)"
echo inner-wrote | dd of=/dev/vda bs=512 seek=1 conv=notrunc,fsync 2>/dev/null && echo "INNER write ok"
echo "INNER rng=$(cat /sys/class/misc/hw_random/rng_current) $(head -c 8 /dev/hwrng | od -An -tx1 | tr -d ' ')"
ip link set lo up
ip addr add 10.0.2.2/24 dev eth0 && ip link set eth0 up
# The outer side configures its end of the tap once berth has created it: retry.
for i in 1 2 3 4 5 6 7 8 9 10; do
    ping -c 1 -W 2 10.0.2.1 >/dev/null 2>&1 && { echo "INNER ping ok"; break; }
done
if ls /sys/bus/virtio/drivers/vmw_vsock_virtio_transport/ 2>/dev/null | grep -q virtio; then
    echo "INNER vsock $(vsock-echo guest-connect 5000 hi-from-guest)"
    timeout 60 vsock-echo guest-listen 6000 && echo "INNER vsock listen ok"
    echo "INNER vsock listen rc=$?"
fi
echo INNER-DONE
poweroff -f
INIT
chmod +x "$stage/init"
(cd "$stage" && find . | cpio -o -H newc --quiet) >"$work/inner.cpio"

cat >"$work/outer.sh" <<'OUTER'
set -u
dd if=/dev/zero of=/tmp/disk.img bs=1M count=4 2>/dev/null
printf 'berth-disk-head!' | dd of=/tmp/disk.img conv=notrunc 2>/dev/null
# vsock: the guest dials host port 5000 (-> /tmp/v.sock_5000), the host dials guest port
# 6000 through /tmp/v.sock (retrying until the guest listens).
vsock-echo host-listen /tmp/v.sock_5000 >/tmp/host-listen.log 2>&1 &
timeout 600 /bin/berth vm run --kernel /vm/vmlinux --initrd /vm/inner.cpio \
    --cmdline 'console=ttyS0 reboot=t pci=off quiet panic=-1' --cpus 2 --memory 256 \
    --disk /tmp/disk.img --rng --net tap0 --vsock 3,/tmp/v.sock --stats >/tmp/inner.log 2>&1 &
pid=$!
# berth creates tap0; give it an address on the inner guest's subnet.
for i in $(seq 1 100); do ip link show tap0 >/dev/null 2>&1 && break; sleep 0.2; done
ip addr add 10.0.2.1/24 dev tap0 && ip link set tap0 up
for i in $(seq 1 240); do
    echo "attempt $i" >>/tmp/host-connect.log
    timeout 10 vsock-echo host-connect /tmp/v.sock 6000 hi-from-host >>/tmp/host-connect.log 2>&1 && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.5
done
wait $pid
rc=$?
cat /tmp/inner.log
echo "berth vm run exit code: $rc"
fail=0
check() { grep -q "$1" /tmp/inner.log || { echo "vmm-nested: missing: $1"; fail=1; }; }
check 'INNER cpus=2'
check 'INNER disk=berth-disk-head!'
check 'INNER write ok'
check 'INNER rng=virtio_rng'
check 'INNER ping ok'
check 'INNER vsock reply: pong: hi-from-guest'
check 'INNER vsock listen ok'
grep -q 'reply: echo: hi-from-host' /tmp/host-connect.log || { echo "vmm-nested: host-initiated vsock failed:"; cat /tmp/host-connect.log; fail=1; }
check 'INNER-DONE'
check 'IoOut .*serial'
grep -q 'INNER-FAIL' /tmp/inner.log && fail=1
dd if=/tmp/disk.img bs=512 skip=1 count=1 2>/dev/null | grep -q inner-wrote || { echo "vmm-nested: disk write not on the image"; fail=1; }
[ "$rc" = 0 ] || fail=1

# The same kernel as a bzImage (boot protocol, 64-bit entry at load address + 0x200,
# decompressing itself in the guest), no devices: it must reach the same init.
timeout 600 /bin/berth vm run --kernel /vm/vmlinuz --initrd /vm/inner.cpio \
    --cmdline 'console=ttyS0 reboot=t pci=off quiet panic=-1' --memory 256 >/tmp/bz.log 2>&1
rc=$?
cat /tmp/bz.log
echo "berth vm run (bzImage) exit code: $rc"
grep -q 'INNER cpus=1' /tmp/bz.log && grep -q INNER-DONE /tmp/bz.log || { echo "vmm-nested: bzImage boot did not reach init"; fail=1; }
[ "$rc" = 0 ] || fail=1
exit $fail
OUTER

rc=0
"$VM_SCRIPTS/run-in-vm.sh" --modules kvm,tun --script "$work/outer.sh" \
    --add "$berth:/bin/berth" --add "$berth_vmm:/bin/berth-vmm" --add "$vmlinux:/vm/vmlinux" --add "/boot/vmlinuz-$kver:/vm/vmlinuz" \
    --add "$work/inner.cpio:/vm/inner.cpio" --add "$work/vsock-echo:/bin/vsock-echo" \
    --mem 2G --cpus 2 --timeout "$timeout" "${log_args[@]}" || rc=$?
exit $rc
