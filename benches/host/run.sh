#!/bin/sh
# Host memory-management and mount costs (see mm.c):  sh benches/host/run.sh   (root)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
gcc -O2 -o "$work/mm" "$here/mm.c"
cp /bin/busybox "$work/true"   # a static binary (busybox-static, scripts/setup.sh)
"$work/mm" "$work"
