#!/bin/sh
# Build a minimal root filesystem from Debian's busybox-static, offline and reproducibly:
#   scripts/busybox-rootfs.sh DEST
# DEST gets bin/busybox, a symlink per applet, /etc/passwd and /etc/group, and the empty
# directories a container expects. Existing DEST is replaced.
set -eu
dest=${1:?usage: busybox-rootfs.sh DEST}
bb=/bin/busybox
if ! "$bb" --list >/dev/null 2>&1 || ! file -L "$bb" 2>/dev/null | grep -q 'statically linked'; then
    echo "busybox-rootfs.sh: $bb is missing or not static; install busybox-static (scripts/setup.sh does)" >&2
    exit 1
fi
rm -rf "$dest"
mkdir -p "$dest"
cd "$dest"
mkdir -p bin sbin usr/bin usr/sbin etc proc sys dev tmp root home var/tmp run
chmod 1777 tmp var/tmp
cp "$bb" bin/busybox
for applet in $("$bb" --list); do
    [ "$applet" = busybox ] || ln -s busybox "bin/$applet"
done
cat > etc/passwd <<'P'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
user:x:1000:1000:user:/home/user:/bin/sh
P
cat > etc/group <<'G'
root:x:0:
daemon:x:1:
tty:x:5:
users:x:100:user
user:x:1000:
nogroup:x:65534:
G
echo berth > etc/hostname
# Fixed timestamps so two builds produce the same tree.
find . -exec touch -h -d '2000-01-01 00:00:00 UTC' {} +
