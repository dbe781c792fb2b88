#!/bin/sh
# /init of the systemd test VM (installed by mkinitramfs.sh --pid1; busybox sh as PID 1
# until it execs systemd). The root file system is the host's own / read-only over
# virtio-9p (run.sh --share-root) under a tmpfs overlay, so the guest runs Debian's
# systemd, dbus, podman, apparmor and the host's berth build without copying them.
#
# It mounts that root, adds a target that runs /berth/script once (and the drop-ins that
# keep the boot minimal), then execs /lib/systemd/systemd as PID 1 on pure cgroup v2.
# Contract with run.sh as in init.sh: "BERTH-VM-READY" once systemd runs the script,
# "BERTH-VM-EXIT=<code>" after it, then an immediate poweroff; setup failures before
# systemd print "berth-init: ..." and exit code 120.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
umask 022

fail() {
    echo "berth-init: $*" >/dev/console
    printf '\nBERTH-VM-EXIT=120\n' >/dev/console
    poweroff -f
    reboot -f
}

mount -t devtmpfs devtmpfs /dev || fail "mount devtmpfs on /dev failed"
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc || fail "mount proc failed"
mount -t sysfs sysfs /sys || fail "mount sysfs failed"
if [ -f /berth/modules ]; then
    while read -r ko; do
        insmod "$ko" || fail "insmod $ko failed"
    done </berth/modules
fi

mkdir -p /lower /rw /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose hostroot /lower ||
    fail "mount of the host root (9p tag hostroot) failed: run.sh --share-root given?"
mount -t tmpfs -o mode=0755 tmpfs /rw || fail "mount tmpfs on /rw failed"
mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /newroot ||
    fail "overlay root (9p lower, tmpfs upper) failed"
# The host's directories under /tmp and /var/tmp (a checkout may live there, as CI's
# can) stay reachable through the overlay: keep a handle on them before the tmpfs covers
# them, and bind each back inside the fresh tmpfs.
mkdir -p /hostdirs/tmp /hostdirs/var/tmp
for d in tmp var/tmp; do
    mkdir -p "/newroot/$d"
    mount --bind "/newroot/$d" "/hostdirs/$d" || fail "bind of the host's /$d failed"
done
for d in tmp var/tmp var/lib/containers; do
    mkdir -p "/newroot/$d"
    mount -t tmpfs -o mode=1777 tmpfs "/newroot/$d" || fail "mount tmpfs on /$d failed"
done
for d in tmp var/tmp; do
    for e in "/hostdirs/$d"/*/; do
        [ -d "$e" ] || continue
        n=$(basename "$e")
        mkdir -p "/newroot/$d/$n"
        mount --bind "$e" "/newroot/$d/$n" || fail "bind of the host's /$d/$n failed"
    done
done

# The host's configuration stays out of the guest: no fstab, no enabled services.
r=/newroot
: >$r/etc/fstab
rm -rf $r/etc/systemd/system/*.wants $r/etc/systemd/system/*.target.d
# No generators (each is an exec over 9p, and fstab/getty/gpt-auto have nothing to do
# here); no boot-time tmpfiles run, which would empty /tmp if a unit pulls sysinit.target.
rm -rf $r/lib/systemd/system-generators/* $r/usr/lib/systemd/system-generators/*
ln -sf /dev/null $r/etc/systemd/system/systemd-tmpfiles-setup.service
mkdir -p $r/etc/systemd/system $r/berth
cp -a /berth/. $r/berth/
echo berth-vm >$r/etc/hostname
cat >$r/etc/systemd/system/berth-test.target <<'UNIT'
[Unit]
Description=berth VM test
DefaultDependencies=no
Requires=berth-test.service
AllowIsolate=yes
UNIT
cat >$r/etc/systemd/system/berth-test.service <<'UNIT'
[Unit]
Description=berth VM test script
DefaultDependencies=no
Requires=dbus.socket
After=dbus.socket

[Service]
Type=oneshot
ExecStart=/berth/run-script
StandardInput=null
StandardOutput=tty
StandardError=tty
TTYPath=/dev/console
UNIT
# dbus normally waits for sysinit.target and basic.target (udev, tmpfiles, journald...):
# none of that is needed to talk to PID 1, and under TCG it costs tens of seconds.
for u in dbus.service dbus.socket; do
    mkdir -p "$r/etc/systemd/system/$u.d"
    printf '[Unit]\nDefaultDependencies=no\n' >"$r/etc/systemd/system/$u.d/berth-vm.conf"
done
cat >$r/berth/run-script <<'SH'
#!/bin/sh
echo "BERTH-VM-READY uptime=$(cut -d' ' -f1 /proc/uptime)s"
cd /tmp && /berth/script
rc=$?
sync
printf '\nBERTH-VM-EXIT=%s\n' "$rc" >/dev/console
systemctl poweroff --force --force
SH
chmod 0755 $r/berth/run-script

# systemd mounts /proc, /sys and /dev itself; the console stays open across the switch.
umount /sys /proc
mount --move /dev $r/dev || fail "mount --move /dev failed"
exec switch_root $r /lib/systemd/systemd --unit=berth-test.target --log-level=warning \
    --show-status=false --log-target=console
