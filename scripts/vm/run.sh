#!/bin/bash
# Boot the test VM under qemu (pure software emulation) and exit with the guest script's
# exit code.
#
# Usage: run.sh --initramfs F [--kernel VMLINUX] [--mem 2G] [--cpus 2] [--timeout 300]
#               [--append ARGS] [--log FILE] [--share-root]
#   --kernel  ELF vmlinux (default: build/vm/vmlinux-KVER extracted from the newest
#             /boot/vmlinuz-*; the initramfs's modules must match its release).
#   --append  extra kernel command line arguments.
#   --log     console log (default: build/vm/logs/run-<time>-<pid>.log).
#   --share-root  export the host's / read-only over virtio-9p (mount tag "hostroot"),
#             for init-systemd.sh, which boots it as the guest's root under an overlay.
# Exit status: the code in the guest's "BERTH-VM-EXIT=<code>" marker; 124 when the timeout
# expired (qemu is killed); 125 when qemu ended without a marker (crash, panic, bad setup).
#
# Why TCG: the host /dev/kvm is PVM, on which a stock guest kernel does not boot; -cpu max
# emulates AMD SVM, so the guest can load kvm-amd and offer a real nested /dev/kvm.
set -euo pipefail
export LC_ALL=C
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
prog=berth-vm

initramfs=
kernel=
mem=2G
cpus=2
timeout=300
append=
log=
share_root=
while (($#)); do
    case $1 in
    --initramfs) initramfs=${2:?"--initramfs needs a file"}; shift 2 ;;
    --kernel) kernel=${2:?"--kernel needs a file"}; shift 2 ;;
    --mem) mem=${2:?"--mem needs a size"}; shift 2 ;;
    --cpus) cpus=${2:?"--cpus needs a count"}; shift 2 ;;
    --timeout) timeout=${2:?"--timeout needs seconds"}; shift 2 ;;
    --append) append=${2?"--append needs arguments"}; shift 2 ;;
    --log) log=${2:?"--log needs a file"}; shift 2 ;;
    --share-root) share_root=1; shift ;;
    *) die $prog "unknown argument $1 (see the header of $0)" ;;
    esac
done
[[ -n $initramfs ]] || die $prog "--initramfs is required"
[[ -r $initramfs ]] || die $prog "--initramfs $initramfs: not readable"
[[ $cpus =~ ^[1-9][0-9]*$ ]] || die $prog "--cpus $cpus: expected a positive integer"
[[ $timeout =~ ^[1-9][0-9]*$ ]] || die $prog "--timeout $timeout: expected positive seconds"
[[ $mem =~ ^[1-9][0-9]*[MG]?$ ]] || die $prog "--mem $mem: expected a size like 512M or 2G"
command -v qemu-system-x86_64 >/dev/null || die $prog "qemu-system-x86_64 not found; install qemu-system-x86"
qboot=/usr/share/qemu/qboot.rom
[[ -r $qboot ]] || die $prog "$qboot not found; install qemu-system-data"
if [[ -z $kernel ]]; then
    kver=$(default_kver)
    [[ -n $kver ]] || die $prog "no /boot/vmlinuz-* found; install linux-image-amd64 or pass --kernel"
    kernel=$(ensure_vmlinux "$kver")
fi
[[ -r $kernel ]] || die $prog "--kernel $kernel: not readable"
if [[ -z $log ]]; then
    mkdir -p "$VM_BUILD/logs"
    log=$VM_BUILD/logs/run-$(date +%Y%m%d-%H%M%S)-$$.log
fi
: >"$log"

# console=ttyS0: the script's output and the markers arrive on the emulated 16550 UART.
# quiet: keep kernel chatter from interleaving with the markers. panic=-1: a panic resets
# at once, and -no-reboot turns that reset into a qemu exit instead of a hang.
cmdline="console=ttyS0 quiet panic=-1 ${append}"
# qboot (from qemu-system-data) instead of SeaBIOS: it prints nothing on the serial port,
# so the console carries only the guest's lines (SeaBIOS emits escape codes and a banner
# without a newline), and it loads the PVH kernel just as well.
# shellcheck disable=SC2054 # commas belong to qemu option values
qemu=(qemu-system-x86_64 -nodefaults -no-user-config -nographic -no-reboot
    -bios "$qboot" -accel tcg,thread=multi -M q35 -cpu max -m "$mem" -smp "$cpus"
    -kernel "$kernel" -initrd "$initramfs" -append "$cmdline"
    -serial stdio -monitor none)
if [[ -n $share_root ]]; then
    # readonly=on: the guest can never write to the host; its writes go to a tmpfs upper.
    qemu+=(-fsdev local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap
        -device virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot)
fi

echo "$prog: booting (log $log): ${qemu[*]}" >&2
start=$(date +%s%N)
elapsed() { local now; now=$(date +%s%N); printf '%d.%02d' $(((now - start) / 1000000000)) $(((now - start) / 10000000 % 100)); }

set +e
# stdin from /dev/null: qemu's stdio backend must not grab the caller's terminal.
# Lines go to stdout and the log through builtins only: no fork per console line.
exec 3>>"$log"
timeout --kill-after=10 "$timeout" "${qemu[@]}" </dev/null 2>&1 |
    while IFS= read -r line || [[ -n $line ]]; do
        line=${line%$'\r'}
        printf '%s\n' "$line"
        printf '%s\n' "$line" >&3
        [[ $line == *BERTH-VM-READY* ]] && echo "$prog: guest ready after $(elapsed)s (host clock)" >&2
    done
qemu_status=${PIPESTATUS[0]}
exec 3>&-
set -e

code=$(grep -ao 'BERTH-VM-EXIT=[0-9]*' "$log" | tail -n 1 | cut -d= -f2 || true)
if [[ $qemu_status -eq 124 || $qemu_status -eq 137 ]]; then
    echo "$prog: timeout: guest did not finish within ${timeout}s, qemu killed (log $log)" >&2
    exit 124
fi
if [[ -z $code ]]; then
    echo "$prog: no BERTH-VM-EXIT marker on the console (qemu exit status $qemu_status; kernel panic or setup failure?), log $log" >&2
    exit 125
fi
echo "$prog: guest script exited with $code after $(elapsed)s (host clock)" >&2
exit "$code"
