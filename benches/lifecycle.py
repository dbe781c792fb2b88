#!/usr/bin/env python3
"""Container lifecycle benchmark: berth beside crun and runc, in one run.

Each iteration is `RUNTIME run --bundle B ID` of /bin/true (create + start + wait +
delete, which all three runtimes implement the same way), with the same config.json.
Iterations are interleaved across runtimes so background load hits all of them alike,
and each iteration takes the next of all orders of the runtimes: a run pays for work the
previous runtime left to the kernel (measured: whichever runtime follows runc is about
5 ms slower), so each runtime must follow each other one equally often (a fixed or merely
rotated order would always put the same runtime after runc).
Prints the median and p90 wall time per container, the peak RSS of the runtime process
(max over iterations, from GNU time), and ratios against berth.

    python3 benches/lifecycle.py [--iterations 200] [--resources] [--berth PATH]
                                 [--peers crun,runc] [--gap-ms 50]

crun 1.8 refuses this host's hybrid cgroup layout, so the whole benchmark runs in a
private mount namespace where /sys/fs/cgroup/unified is an empty tmpfs: all three
runtimes then see the same cgroup v1 hierarchies. --resources adds memory, pids and cpu
limits to the config.
"""
import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_bundle(root, resources=False, args=("/bin/true",)):
    """A busybox bundle from `runc spec` running `args`; shared by the runtime benches."""
    bundle = os.path.join(root, "bundle")
    subprocess.run(["sh", os.path.join(REPO, "scripts/busybox-rootfs.sh"), os.path.join(bundle, "rootfs")], check=True)
    subprocess.run(["runc", "spec", "--bundle", bundle], check=True)
    with open(os.path.join(bundle, "config.json")) as f:
        spec = json.load(f)
    spec["process"]["terminal"] = False
    spec["process"]["args"] = list(args)
    if resources:
        spec["linux"]["resources"].update({
            "memory": {"limit": 256 << 20},
            "pids": {"limit": 128},
            "cpu": {"shares": 512, "quota": 50000, "period": 100000},
        })
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(spec, f)
    return bundle


def one_run(cmd, bundle, cid):
    """One lifecycle; returns (seconds, peak RSS KiB of the runtime process)."""
    start = time.perf_counter()
    # GNU time reports the runtime's own peak RSS; its own cost is the same for all.
    proc = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd + ["run", "--bundle", bundle, cid],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{cmd[0]} run {cid} failed ({proc.returncode}): {proc.stderr.strip()}")
    return elapsed, int(proc.stderr.strip().splitlines()[-1])


def runtime_commands(args, state):
    """Command prefix of berth and each peer, each with its own state root under `state`."""
    runtimes = {
        "berth": [args.berth, "--root", os.path.join(state, "berth")],
        "crun": ["crun", "--root", os.path.join(state, "crun")],
        "runc": ["runc", "--root", os.path.join(state, "runc")],
    }
    chosen = {name: runtimes[name] for name in ["berth"] + args.peers}
    if args.baseline:
        chosen["baseline"] = [args.baseline, "--root", os.path.join(state, "baseline")]
    return chosen


def common_arguments(p):
    """--berth and --peers, as every runtime bench takes them."""
    built = [os.path.join(REPO, b) for b in ("build/bin/berth", "target/release/berth")]
    p.add_argument("--berth", default=next((b for b in built if os.path.exists(b)), built[0]),
                   help="berth binary (default: build/bin/berth from `make build`, else target/release/berth)")
    p.add_argument("--peers", default="crun,runc",
                   help="comma-separated peers to run beside berth (crun, runc)")
    p.add_argument("--baseline", help="another berth binary (e.g. a build of the previous "
                   "commit) to run beside, as \"baseline\"")
    p.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)


def parse_peers(p, args):
    args.peers = [x for x in args.peers.split(",") if x]
    if any(x not in ("crun", "runc") for x in args.peers):
        p.error("--peers: only crun and runc are known")


def enter_private_cgroup_view(script_path):
    """Re-execute `script_path` (with this process's arguments and --inside) in a private
    mount namespace whose /sys/fs/cgroup/unified is an empty tmpfs (crun 1.8 refuses the
    hybrid layout otherwise); all runtimes then see the same v1 hierarchies."""
    script = ("umount -l /sys/fs/cgroup/unified && mount -t tmpfs tmpfs /sys/fs/cgroup/unified && exec \"$0\" \"$@\" --inside")
    os.execvp("unshare", ["unshare", "-m", "--propagation", "private", "sh", "-c", script,
                          sys.executable, os.path.abspath(script_path)] + sys.argv[1:])


def percentile_90(sorted_values):
    return sorted_values[max(0, int(len(sorted_values) * 0.9) - 1)]


def bench(args):
    # State roots on /run (tmpfs), where all three keep state by default.
    with tempfile.TemporaryDirectory(prefix="berth-bench-") as tmp, \
            tempfile.TemporaryDirectory(prefix="berth-bench-", dir="/run") as state:
        bundle = make_bundle(tmp, args.resources)
        runtimes = runtime_commands(args, state)
        times = {name: [] for name in runtimes}
        rss = {name: 0 for name in runtimes}
        orders = list(itertools.permutations(runtimes))
        for i in range(-3, args.iterations):  # three warm-up rounds
            for name in orders[i % len(orders)]:
                time.sleep(args.gap_ms / 1000)
                cmd = runtimes[name]
                t, r = one_run(cmd, bundle, f"bench-{name}-{os.getpid()}-{i + 3}")
                if i >= 0:
                    times[name].append(t)
                    rss[name] = max(rss[name], r)
        base = statistics.median(times["berth"])
        print(f"lifecycle of /bin/true ({'with' if args.resources else 'without'} linux.resources), "
              f"{args.iterations} interleaved iterations")
        print(f"{'runtime':8} {'median ms':>10} {'p90 ms':>8} {'peak RSS MB':>12} {'time vs berth':>14}")
        for name, t in times.items():
            t = sorted(t)
            med = statistics.median(t)
            p90 = percentile_90(t)
            print(f"{name:8} {med * 1e3:10.2f} {p90 * 1e3:8.2f} {rss[name] / 1024:12.1f} {med / base:13.2f}x")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--iterations", type=int, default=200)
    p.add_argument("--resources", action="store_true")
    p.add_argument("--gap-ms", type=float, default=0,
                   help="pause before each run (e.g. 50: containers started apart, not back to back)")
    common_arguments(p)
    args = p.parse_args()
    parse_peers(p, args)
    if args.inside:
        return bench(args)
    enter_private_cgroup_view(__file__)


if __name__ == "__main__":
    main()
