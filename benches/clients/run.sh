#!/bin/bash
# Client-level speed: N sequential `run --rm IMAGE true` per client and runtime, berth beside
# runc and crun, in one run; prints mean ms per run and the ratio to runc.
#   benches/clients/run.sh [-n RUNS] [podman|containerd|docker ...]   (default: 50, all three)
# Each runtime sits behind an identical one-line `exec` shim script (berth's also sets its
# private BERTH_ROOT), so the clients see the same kind of path for every runtime. Runs are
# interleaved in rounds of 10 (berth, runc, crun, berth, ...) so drift in machine load
# spreads evenly. BERTH_BIN picks the binary (default: target/release/berth; build it with
# `cargo build --release -p berth` first).
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@" # also when started with sh
set -u
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
. "$repo/scripts/clients/lib.sh"
runs=50
if [ "${1:-}" = -n ]; then runs=$2; shift 2; fi
[ "$(id -u)" -eq 0 ] || { echo "benches/clients/run.sh: needs root" >&2; exit 1; }
: "${BERTH_BIN:=$repo/target/release/berth}"
cl_init || exit 1
echo "berth: $BERTH_BIN ($("$BERTH_BIN" --version)); $runs runs per client and runtime"
clients=("$@")
[ ${#clients[@]} -gt 0 ] || clients=(podman containerd docker)
runtimes=(berth runc)
command -v crun >/dev/null && runtimes+=(crun)

# shim NAME BINARY [BERTH_ROOT]
shim() {
    mkdir -p "$CL_WORK/shims"
    printf '#!/bin/sh\n%sexec %s "$@"\n' "${3:+export BERTH_ROOT=$3; }" "$2" >"$CL_WORK/shims/$1"
    chmod +x "$CL_WORK/shims/$1"
}
shim berth "$BERTH_BIN" "$CL_WORK/berth-state"
shim runc "$(command -v runc)"
command -v crun >/dev/null && shim crun "$(command -v crun)"
cl_on_exit 'for id in $("$BERTH_BIN" --root "$CL_WORK/berth-state" list -q); do "$BERTH_BIN" --root "$CL_WORK/berth-state" delete --force "$id"; done'

# one_run CLIENT RUNTIME I: one `run --rm IMAGE true`
one_run() {
    case $1 in
    podman) pm --runtime "$CL_WORK/shims/$2" run --rm --network none "$PM_IMG" true ;;
    containerd) ct run --rm --runc-binary "$CL_WORK/shims/$2" --runc-root "$CT_DIR/bench-$2" "$CT_IMG" "bench-$2-$3" true ;;
    docker) dk run --runtime "bench-$2" --rm --network none "$DK_IMG" true ;;
    esac
}

now_ns() { date +%s%N; }
printf '%-11s %-6s %6s %10s %8s\n' client runtime runs "ms/run" "x runc"
for c in "${clients[@]}"; do
    . "$repo/tests/clients/$c.sh"
    case $c in
    docker)
        docker_installed || { echo "SKIP docker: docker.io not installed"; continue; }
        extra=()
        for rt in "${runtimes[@]}"; do extra+=("bench-$rt=$CL_WORK/shims/$rt"); done
        docker_setup "${extra[@]}" ;;
    *) "${c}_setup" ;;
    esac || { echo "SKIP $c: setup failed (see $CL_WORK/logs)"; continue; }
    declare -A total=() done_runs=()
    ok=()
    for rt in "${runtimes[@]}"; do
        if one_run "$c" "$rt" warm >/dev/null 2>"$CL_WORK/logs/bench-$c-$rt.err"; then
            ok+=("$rt")
            total[$rt]=0
            done_runs[$rt]=0
        else
            echo "SKIP $c/$rt: warm-up run failed: $(tail -n 1 "$CL_WORK/logs/bench-$c-$rt.err")"
        fi
    done
    i=0
    while [ "$i" -lt "$runs" ]; do
        for rt in "${ok[@]}"; do
            for ((k = 0; k < 10 && i + k < runs; k++)); do
                t0=$(now_ns)
                if ! one_run "$c" "$rt" "$((i + k))" >/dev/null 2>>"$CL_WORK/logs/bench-$c-$rt.err"; then
                    echo "FAIL $c/$rt run $((i + k)): $(tail -n 1 "$CL_WORK/logs/bench-$c-$rt.err")"
                    exit 1
                fi
                total[$rt]=$((total[$rt] + $(now_ns) - t0))
                done_runs[$rt]=$((done_runs[$rt] + 1))
            done
        done
        i=$((i + 10))
    done
    for rt in "${ok[@]}"; do
        ms=$(awk -v t="${total[$rt]}" -v n="${done_runs[$rt]}" 'BEGIN { printf "%.1f", t / n / 1e6 }')
        ratio=-
        if [ -n "${total[runc]:-}" ]; then
            ratio=$(awk -v a="${total[$rt]}" -v b="${total[runc]}" -v na="${done_runs[$rt]}" -v nb="${done_runs[runc]}" \
                'BEGIN { printf "%.2f", (a / na) / (b / nb) }')
        fi
        printf '%-11s %-6s %6s %10s %8s\n' "$c" "$rt" "${done_runs[$rt]}" "$ms" "$ratio"
    done
    unset total done_runs
done
