#!/bin/bash
# Build an initramfs and boot it in one step (mkinitramfs.sh + run.sh); exits with the
# guest script's exit code (124 timeout, 125 no exit marker: see run.sh).
#
# Usage: run-in-vm.sh (--script FILE | --cmd 'SHELL COMMAND') [--add HOST:GUEST]...
#                     [--modules NAME,...] [--kver KVER] [--pid1 FILE] [--share-root]
#                     [--mem 2G] [--cpus 2] [--timeout 300] [--append ARGS] [--log FILE]
# e.g.   run-in-vm.sh --add "$(scripts/vm/build-static.sh --tests -p berth-cgroups | head -1):/bin/t" \
#                     --cmd '/bin/t --test-threads=1'
# The initramfs is a per-call temp file under build/vm/tmp, deleted on exit, so concurrent
# calls do not interfere.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
prog=run-in-vm

build_args=()
run_args=()
cmd=
script_given=
while (($#)); do
    case $1 in
    --script) script_given=1; build_args+=("$1" "${2:?"$1 needs a file"}"); shift 2 ;;
    --add | --modules | --kver | --pid1) build_args+=("$1" "${2:?"$1 needs a value"}"); shift 2 ;;
    --mem | --cpus | --timeout | --append | --log) run_args+=("$1" "${2?"$1 needs a value"}"); shift 2 ;;
    --share-root) run_args+=("$1"); shift ;;
    --cmd) cmd=${2:?"--cmd needs a command"}; shift 2 ;;
    *) die $prog "unknown argument $1 (see the header of $0)" ;;
    esac
done
[[ -n $cmd || -n $script_given ]] || die $prog "give --script FILE or --cmd COMMAND"
[[ -z $cmd || -z $script_given ]] || die $prog "--script and --cmd exclude each other"

mkdir -p "$VM_BUILD/tmp"
work=$(mktemp -d "$VM_BUILD/tmp/run.XXXXXX")
trap 'rm -rf "$work"' EXIT
if [[ -n $cmd ]]; then
    printf '#!/bin/sh\n%s\n' "$cmd" >"$work/cmd.sh"
    build_args+=(--script "$work/cmd.sh")
fi
"$VM_SCRIPTS/mkinitramfs.sh" "$work/initramfs.cpio" ${build_args[@]+"${build_args[@]}"} >/dev/null
# Last command: its status (the guest's exit code) is this script's; the trap cleans up.
"$VM_SCRIPTS/run.sh" --initramfs "$work/initramfs.cpio" ${run_args[@]+"${run_args[@]}"}
