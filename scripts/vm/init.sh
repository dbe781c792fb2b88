#!/bin/sh
# /init of the berth test VM (runs as PID 1 under busybox sh; installed by mkinitramfs.sh).
#
# Contract with run.sh: prints "BERTH-VM-READY" once the system is set up, runs
# /berth/script, prints "BERTH-VM-EXIT=<code>" on its own line and powers off. Anything that
# goes wrong before the script runs is reported as a non-zero code (never a hang): setup
# failures print "berth-init: ..." and exit code 120.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root TERM=vt100
umask 022

finish() {
    sync
    # Leading newline: keep the marker on a line of its own even after partial output.
    printf '\nBERTH-VM-EXIT=%s\n' "$1" >/dev/console
    poweroff -f
    # ACPI poweroff failed: a reset also ends qemu, which runs with -no-reboot.
    reboot -f
}

fail() {
    echo "berth-init: $*" >/dev/console
    finish 120
}

mount -t devtmpfs devtmpfs /dev || fail "mount devtmpfs on /dev failed"
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc || fail "mount proc on /proc failed"
mount -t sysfs sysfs /sys || fail "mount sysfs on /sys failed"
mkdir -p /dev/pts /dev/shm /tmp /run /root
mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts || fail "mount devpts failed"
mount -t tmpfs -o mode=1777 tmpfs /dev/shm || fail "mount tmpfs on /dev/shm failed"
mount -t tmpfs -o mode=1777 tmpfs /tmp || fail "mount tmpfs on /tmp failed"
mount -t tmpfs -o mode=0755 tmpfs /run || fail "mount tmpfs on /run failed"
[ -e /dev/ptmx ] || ln -s pts/ptmx /dev/ptmx
ln -sf /proc/self/fd /dev/fd

# cgroup v2 as the only hierarchy: nothing mounts v1, so every controller is free for v2.
mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup || fail "mount cgroup2 on /sys/fs/cgroup failed"
read -r controllers </sys/fs/cgroup/cgroup.controllers
for c in $controllers; do
    echo "+$c" >/sys/fs/cgroup/cgroup.subtree_control ||
        fail "enable controller $c in /sys/fs/cgroup/cgroup.subtree_control failed"
done

# Kernel modules, in dependency order (written by mkinitramfs.sh). The vendor KVM modules
# load only on a CPU with their virtualization extension (qemu -cpu max emulates AMD SVM).
if [ -f /berth/modules ]; then
    while read -r ko; do
        case ${ko##*/} in
        kvm-amd.ko) grep -qw svm /proc/cpuinfo || continue ;;
        kvm-intel.ko) grep -qw vmx /proc/cpuinfo || continue ;;
        esac
        insmod "$ko" || fail "insmod $ko failed"
    done </berth/modules
fi

ip link set lo up 2>/dev/null
hostname berth-vm

echo "BERTH-VM-READY uptime=$(cut -d' ' -f1 /proc/uptime)s"
if [ -x /berth/script ]; then
    cd /tmp && /berth/script
    rc=$?
else
    echo "berth-init: /berth/script missing or not executable"
    rc=127
fi
cd /
finish "$rc"
