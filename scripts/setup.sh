#!/bin/sh
# Install everything berth's demo, tests and benchmarks need on a fresh Debian 12 machine.
# Idempotent; run as root. Used by the README's commands and by .ci/run.
set -eu
PACKAGES="busybox-static file jq cpio xz-utils zstd binutils gcc libc6-dev
  runc crun skopeo umoci uidmap iproute2 hyperfine time strace curl tmux
  qemu-system-x86 linux-image-amd64 protobuf-compiler e2fsprogs
  podman containerd docker.io containernetworking-plugins docker-registry
  iptables netavark aardvark-dns util-linux iperf3
  systemd dbus apparmor apparmor-utils"
missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "setup: installing$missing" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust (rustup) first" >&2; exit 1; }
# The Kubernetes API schema validator the policy crate's NetworkPolicy test runs
# (crates/policy/tests/blp.rs), from PyPI.
if ! python3 -c 'import kubernetes_validate' 2>/dev/null; then
    echo "setup: installing kubernetes-validate (pip)" >&2
    python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore kubernetes-validate==1.37.0
fi
