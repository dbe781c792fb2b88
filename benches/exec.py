#!/usr/bin/env python3
"""`exec` benchmark: berth beside crun and runc, in one run.

One running container per runtime (busybox `sleep`, the same config.json for all), then
`RUNTIME exec ID /bin/true` repeatedly, interleaved across runtimes and cycling through
all their orders (see lifecycle.py for why). Prints the median and p90 wall time per exec,
the peak RSS of the exec'ing runtime process (GNU time), and ratios against berth.

    python3 benches/exec.py [--iterations 200] [--berth PATH] [--peers crun,runc]

Runs in the same private mount namespace as lifecycle.py (crun and the hybrid host).
"""
import argparse
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lifecycle  # noqa: E402


def timed(cmd):
    start = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return elapsed, int(proc.stderr.strip().splitlines()[-1])


def bench(args):
    with tempfile.TemporaryDirectory(prefix="berth-bench-") as tmp, \
            tempfile.TemporaryDirectory(prefix="berth-bench-", dir="/run") as state:
        bundle = lifecycle.make_bundle(tmp, args=["sleep", "100000"])
        runtimes = lifecycle.runtime_commands(args, state)
        ids = {name: f"bench-exec-{name}-{os.getpid()}" for name in runtimes}
        try:
            for name, cmd in runtimes.items():
                subprocess.run(cmd + ["run", "--detach", "--bundle", bundle, ids[name]], check=True,
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
            times = {name: [] for name in runtimes}
            rss = {name: 0 for name in runtimes}
            orders = list(itertools.permutations(runtimes))
            for i in range(-3, args.iterations):  # three warm-up rounds
                for name in orders[i % len(orders)]:
                    t, r = timed(runtimes[name] + ["exec", ids[name], "/bin/true"])
                    if i >= 0:
                        times[name].append(t)
                        rss[name] = max(rss[name], r)
        finally:
            for name, cmd in runtimes.items():
                subprocess.run(cmd + ["delete", "--force", ids[name]], stderr=subprocess.DEVNULL)
        base = statistics.median(times["berth"])
        print(f"exec of /bin/true into a running container, {args.iterations} interleaved iterations")
        print(f"{'runtime':8} {'median ms':>10} {'p90 ms':>8} {'peak RSS MB':>12} {'time vs berth':>14}")
        for name, t in times.items():
            t = sorted(t)
            med = statistics.median(t)
            print(f"{name:8} {med * 1e3:10.2f} {lifecycle.percentile_90(t) * 1e3:8.2f} "
                  f"{rss[name] / 1024:12.1f} {med / base:13.2f}x")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--iterations", type=int, default=200)
    lifecycle.common_arguments(p)
    args = p.parse_args()
    lifecycle.parse_peers(p, args)
    if args.inside:
        return bench(args)
    lifecycle.enter_private_cgroup_view(__file__)


if __name__ == "__main__":
    main()
