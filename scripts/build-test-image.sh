#!/bin/sh
# Build a small busybox OCI image layout, offline and reproducibly, from Debian's
# busybox-static (/bin/busybox) with umoci.
#
#   scripts/build-test-image.sh OUT_DIR [--multi-layer]
#
# OUT_DIR becomes an OCI image layout with the tag "latest" (skopeo: oci:OUT_DIR:latest).
# Layer 1: /bin/busybox, its applet symlinks, /etc/passwd, /etc/group, /etc/motd,
#          /opt/a, /opt/b, empty /tmp /proc /sys /dev /root /home.
# --multi-layer adds layer 2 for whiteout tests: removes /etc/motd (a .wh. whiteout),
#          empties /opt and adds /opt/c, adds /data/file2.
# All mtimes and the config's timestamps are fixed, so the digests only depend on the
# busybox binary: running the script twice gives the same manifest digest.
set -eu

out=${1:?usage: build-test-image.sh OUT_DIR [--multi-layer]}
multi=${2:-}
busybox=${BUSYBOX:-/bin/busybox}
[ -x "$busybox" ] || { echo "build-test-image.sh: $busybox missing (apt-get install busybox-static)" >&2; exit 1; }
command -v umoci >/dev/null || { echo "build-test-image.sh: umoci missing (apt-get install umoci)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
epoch=1970-01-01T00:00:00Z
export SOURCE_DATE_EPOCH=0

fix_times() { find "$1" -exec touch -h -d @0 {} +; }

rm -rf "$out"
umoci init --layout "$out"
umoci new --image "$out:latest"
umoci unpack --image "$out:latest" "$work/bundle" >/dev/null
root="$work/bundle/rootfs"

mkdir -p "$root/bin" "$root/etc" "$root/opt" "$root/proc" "$root/sys" "$root/dev" "$root/root" "$root/home"
mkdir -m 1777 -p "$root/tmp"
cp "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list-full); do
    case "$applet" in bin/busybox) continue ;; esac
    mkdir -p "$root/$(dirname "$applet")"
    # Relative links, so the image works wherever its rootfs is mounted.
    depth=$(echo "$applet" | tr -cd / | wc -c)
    up=$(i=0; while [ "$i" -lt "$depth" ]; do printf '../'; i=$((i + 1)); done)
    ln -sf "${up}bin/busybox" "$root/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\nwww:x:33:33:www:/var/www:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\nwww:x:33:\nstaff:x:50:www\n' >"$root/etc/group"
echo "berth test image" >"$root/etc/motd"
echo a >"$root/opt/a"
echo b >"$root/opt/b"
fix_times "$root"
umoci repack --refresh-bundle --history.created "$epoch" --history.created_by "build-test-image.sh: busybox" \
    --image "$out:latest" "$work/bundle"

if [ "$multi" = "--multi-layer" ]; then
    rm -f "$root/etc/motd" "$root/opt/a" "$root/opt/b"
    echo c >"$root/opt/c"
    mkdir -p "$root/data"
    echo 2 >"$root/data/file2"
    fix_times "$root"
    umoci repack --history.created "$epoch" --history.created_by "build-test-image.sh: whiteouts" \
        --image "$out:latest" "$work/bundle"
fi

umoci config --history.created "$epoch" --history.created_by "build-test-image.sh: config" --image "$out:latest" --created "$epoch" --author berth \
    --config.cmd /bin/sh --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --config.workingdir / --config.label org.berth.test=busybox --config.stopsignal SIGTERM \
    --architecture amd64 --os linux
umoci gc --layout "$out"
