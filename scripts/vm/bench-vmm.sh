#!/bin/bash
# microVM boot time: berth's VMM beside qemu `-M microvm`, both on the nested /dev/kvm
# (kvm-amd on emulated SVM) of the qemu TCG test VM, on the same kernel (Debian's ELF
# vmlinux), the same initramfs (busybox; /init prints a marker and does `reboot -f`), the
# same command line, 1 vCPU and 128 MiB each, the same legacy devices (serial, CMOS RTC,
# PIT, in-kernel irqchip). N boots of each, interleaved; for every boot
# the time from fork until the marker line appears on the serial console and until the
# VMM process exits (benches/vmm/boottime.c). Prints the medians and the ratios, then one
# boot of berth with its VM-exit table (--stats). Absolute times are slow (the outer VM is
# software-emulated): compare the ratios.
#
# Usage: scripts/vm/bench-vmm.sh [--kver KVER] [--timeout SECONDS] [--log FILE] [N]  (N: 10)
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
prog=bench-vmm

kver=$(default_kver)
timeout=1800
n=10
log_args=()
while (($#)); do
    case $1 in
    --kver) kver=${2:?"--kver needs a value"}; shift 2 ;;
    --timeout) timeout=${2:?"--timeout needs a value"}; shift 2 ;;
    --log) log_args=(--log "${2:?"--log needs a file"}"); shift 2 ;;
    [1-9]*) n=$1; shift ;;
    *) die $prog "unknown argument $1 (see the header of $0)" ;;
    esac
done
[[ $n =~ ^[1-9][0-9]*$ ]] || die $prog "N $n: expected a positive integer"
[[ -n $kver ]] || die $prog "no /boot/vmlinuz-* found; install linux-image-amd64"
busybox=$(command -v busybox) || die $prog "busybox not found; install busybox-static"
qemu=$(command -v qemu-system-x86_64) || die $prog "qemu-system-x86_64 not found; install qemu-system-x86"
qemu_data=/usr/share/qemu
for f in bios-microvm.bin pvh.bin; do
    [[ -r $qemu_data/$f ]] || die $prog "$qemu_data/$f: not found; install qemu-system-data"
done

build_berth_static $prog  # both go to /bin of the VM
vmlinux=$(ensure_vmlinux "$kver")

mkdir -p "$VM_BUILD/tmp"
work=$(mktemp -d "$VM_BUILD/tmp/bench-vmm.XXXXXX")
trap 'rm -rf "$work"' EXIT
gcc -static -O2 -Wall -o "$work/boottime" "$VM_REPO_ROOT/benches/vmm/boottime.c" ||
    die $prog "gcc failed to build boottime"

# The inner initramfs: busybox and an /init that prints the marker and resets at once
# (reboot=t: a triple fault; qemu runs with -no-reboot so both VMMs exit on it).
stage=$work/inner
mkdir -p "$stage"/{bin,dev}
cp "$busybox" "$stage/bin/busybox"
mknod -m 600 "$stage/dev/console" c 5 1
printf '#!/bin/busybox sh\n/bin/busybox echo BERTH-BOOT-MARKER\n/bin/busybox reboot -f\n' >"$stage/init"
chmod +x "$stage/init"
(cd "$stage" && find . | cpio -o -H newc --quiet) >"$work/inner.cpio"

# qemu is dynamically linked: bring its libraries and the two firmware files microvm
# loads (qboot as bios-microvm.bin, pvh.bin for the PVH kernel entry).
adds=(--add "$berth:/bin/berth" --add "$berth_vmm:/bin/berth-vmm" --add "$vmlinux:/vm/vmlinux" --add "$work/inner.cpio:/vm/inner.cpio"
    --add "$work/boottime:/bin/boottime" --add "$qemu:/usr/bin/qemu-system-x86_64")
for lib in $(ldd "$qemu" | grep -o '/[^ ]*\.so[^ ]*'); do
    adds+=(--add "$(readlink -f "$lib"):$lib")
done
for f in bios-microvm.bin pvh.bin; do
    adds+=(--add "$(readlink -f "$qemu_data/$f"):$qemu_data/$f")
done

cat >"$work/bench.sh" <<GUEST
n=$n
GUEST
cat >>"$work/bench.sh" <<'GUEST'
set -u
# quiet keeps kernel chatter off the console (each byte is a VM exit); the CMOS RTC,
# serial and PIT exist in both VMMs; no PCI in either. rtc=on: microvm's default (auto)
# leaves the RTC out under KVM, and Debian's kernel then spends ~5 s here probing it.
cmdline='console=ttyS0 reboot=t pci=off quiet panic=-1'
run_berth() {
    boottime BERTH-BOOT-MARKER timeout 120 berth vm run --kernel /vm/vmlinux --initrd /vm/inner.cpio \
        --cmdline "$cmdline" --cpus 1 --memory 128 "$@"
}
run_qemu() {
    boottime BERTH-BOOT-MARKER timeout 120 qemu-system-x86_64 -M microvm,rtc=on -accel kvm -cpu host \
        -nodefaults -no-user-config -nographic -no-reboot -serial stdio \
        -m 128 -smp 1 -kernel /vm/vmlinux -initrd /vm/inner.cpio -append "$cmdline"
}
: >/tmp/berth.txt
: >/tmp/qemu.txt
fail=0
for i in $(seq 1 "$n"); do
    for vmm in berth qemu; do
        echo "--- boot $i" >>/tmp/$vmm.log
        r=$(run_$vmm 2>>/tmp/$vmm.log)
        case $r in
        -1*|*" 124") echo "$vmm boot $i: no marker or timeout ($r); console:"; tail -n 15 /tmp/$vmm.log; fail=1; continue ;;
        esac
        echo "$vmm boot $i: $r"
        echo "$r" >>/tmp/$vmm.txt
    done
done
# Median of column $2 of file $1 (the middle value, or the mean of the two middle ones).
median() {
    sort -n -k "$2,$2" "$1" | awk -v c="$2" '{v[NR] = $c} END {
        if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2];
        else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
bm=$(median /tmp/berth.txt 1); be=$(median /tmp/berth.txt 2)
qm=$(median /tmp/qemu.txt 1); qe=$(median /tmp/qemu.txt 2)
echo "boot to /init marker and to VMM exit, nested KVM in qemu TCG, median of $n (ms):"
echo "$bm $be $qm $qe" | awk '{
    printf "  berth vm run        marker %8.1f  exit %8.1f\n", $1, $2
    printf "  qemu -M microvm     marker %8.1f  exit %8.1f\n", $3, $4
    printf "  ratio qemu/berth    marker %8.2fx exit %8.2fx\n", $3 / $1, $4 / $2 }'
echo "one berth boot with --stats:"
run_berth --stats 2>&1 >/dev/null | grep -v BERTH-BOOT-MARKER | grep -A100 '^EXIT'
exit $fail
GUEST

"$VM_SCRIPTS/run-in-vm.sh" --modules kvm --script "$work/bench.sh" "${adds[@]}" \
    --mem 2G --cpus 2 --timeout "$timeout" "${log_args[@]}"
