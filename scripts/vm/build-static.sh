#!/bin/bash
# Build statically linked (glibc crt-static) binaries of this workspace for the test VM,
# whose initramfs has no libc. Prints the absolute path of each executable built.
#
# Usage: build-static.sh [CARGO BUILD ARGS...]        release binaries (cargo build --release)
#        build-static.sh --tests [CARGO TEST ARGS...]  test executables (cargo test --no-run)
# e.g.   build-static.sh -p berth-cli --bin berth
#        build-static.sh --tests -p berth-cgroups
#
# --target is passed explicitly so RUSTFLAGS reach only target artifacts: build scripts and
# proc-macros stay dynamic host binaries, as they must. The separate target directory
# (target/static) keeps these flags from invalidating the normal build cache.
# glibc warns when a static binary uses NSS (getpwnam...); such calls only work in the VM
# if they need no NSS module, which holds for the files-only /etc/passwd there.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
prog=build-static

mode=build
if [[ ${1:-} == --tests ]]; then
    mode="test"
    shift
fi
command -v jq >/dev/null || die $prog "jq not found; install jq"

export RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-C target-feature=+crt-static"
export CARGO_TARGET_DIR=$VM_REPO_ROOT/target/static
target=x86_64-unknown-linux-gnu

cd "$VM_REPO_ROOT"
if [[ $mode == build ]]; then
    cmd=(cargo build --release --target "$target" --message-format=json-render-diagnostics "$@")
    filter='select(.reason == "compiler-artifact" and .executable != null) | .executable'
else
    cmd=(cargo test --no-run --target "$target" --message-format=json-render-diagnostics "$@")
    filter='select(.reason == "compiler-artifact" and .executable != null and .profile.test) | .executable'
fi
json=$("${cmd[@]}") || die $prog "${cmd[*]} failed"
exes=$(jq -r "$filter" <<<"$json")
[[ -n $exes ]] || die $prog "${cmd[*]} produced no executable"
while IFS= read -r exe; do
    # Rust's crt-static on gnu yields "static-pie linked"; "dynamically linked" means the
    # flag did not apply (e.g. RUSTFLAGS overridden by a cargo config).
    file -L "$exe" | grep -Eq 'static(-pie)? linked|statically linked' ||
        die $prog "$exe is not statically linked"
    echo "$exe"
done <<<"$exes"
