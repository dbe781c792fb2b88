#!/bin/sh
# A runtime binary that records each command line a client sends, then runs berth with it.
#   BERTH_WRAPPER_LOG  file that gets one line per invocation (default /tmp/berth-wrapper.log)
#   BERTH_BIN          the berth binary (default: target/release/berth, else target/debug/berth,
#                      beside this script's repository)
# Clients such as podman and containerd pass a bare path as the runtime, so configuration
# goes through the environment or through a copy of this script with the values baked in
# (see scripts/clients/lib.sh: make_wrapper).
log=${BERTH_WRAPPER_LOG:-/tmp/berth-wrapper.log}
if [ -z "${BERTH_BIN:-}" ]; then
    repo=$(cd "$(dirname "$0")/../.." && pwd)
    BERTH_BIN=$repo/target/release/berth
    [ -x "$BERTH_BIN" ] || BERTH_BIN=$repo/target/debug/berth
fi
# One line per call: the arguments, each quoted, so flags with spaces stay readable.
{
    printf '%s' "berth"
    for a in "$@"; do printf " '%s'" "$a"; done
    printf '\n'
} >>"$log"
exec "$BERTH_BIN" "$@"
