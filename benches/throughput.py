#!/usr/bin/env python3
"""Container throughput: berth beside crun and runc, in one run.

Each round, each runtime creates, starts and deletes (`delete --force`) COUNT containers
of /bin/true, PARALLEL at a time (ten workers, each taking the next container), with the
same config.json. Rounds cycle through the orders of the runtimes. After each batch the
script checks that nothing is left behind: no container in `list`, no entry in the state
root, no cgroup directory named after a container in any hierarchy. Prints containers
per second (median over rounds) and ratios against berth.

    python3 benches/throughput.py [--rounds 6] [--count 100] [--parallel 10]
                                  [--berth PATH] [--peers crun,runc]

Runs in the same private mount namespace as lifecycle.py (crun and the hybrid host).
"""
import argparse
import concurrent.futures
import glob
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lifecycle  # noqa: E402


def one_container(cmd, bundle, cid):
    # stderr goes to a file, not a pipe: the container's init inherits it, and reading a
    # pipe to its end would wait for the container.
    with tempfile.TemporaryFile("w+") as err:
        for step in (["create", "--bundle", bundle, cid], ["start", cid], ["delete", "--force", cid]):
            proc = subprocess.run(cmd + step, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=err)
            if proc.returncode != 0:
                err.seek(0)
                raise RuntimeError(f"{cmd[0]} {step[0]} {cid} failed: {err.read().strip()}")


def leftovers(cmd, state_root, ids):
    """What a batch left behind: listed containers, state entries, cgroup directories."""
    left = []
    listed = subprocess.run(cmd + ["list", "-q"], capture_output=True, text=True).stdout.split()
    left += [f"listed: {c}" for c in listed if c in ids]
    if os.path.isdir(state_root):
        left += [f"state: {e}" for e in os.listdir(state_root) if any(i in e for i in ids)]
    for d in glob.glob("/sys/fs/cgroup/*/*") + glob.glob("/sys/fs/cgroup/*/*/*"):
        name = os.path.basename(d)
        # /sys/fs/cgroup/unified is the bench's own tmpfs (crun makes directories there).
        if d.startswith("/sys/fs/cgroup/unified/"):
            continue
        if os.path.isdir(d) and any(i in name for i in ids):
            left.append(f"cgroup: {d}")
    return left


def batch(name, cmd, state_root, bundle, count, parallel, tag):
    ids = [f"bench-tp-{name}-{tag}-{n}" for n in range(count)]
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
        for f in [pool.submit(one_container, cmd, bundle, cid) for cid in ids]:
            f.result()
    elapsed = time.perf_counter() - start
    left = leftovers(cmd, state_root, set(ids))
    if left:
        sys.exit(f"{name} left {len(left)} things behind: {left[:5]}")
    return count / elapsed


def bench(args):
    with tempfile.TemporaryDirectory(prefix="berth-bench-") as tmp, \
            tempfile.TemporaryDirectory(prefix="berth-bench-", dir="/run") as state:
        bundle = lifecycle.make_bundle(tmp)
        runtimes = lifecycle.runtime_commands(args, state)
        rates = {name: [] for name in runtimes}
        orders = list(itertools.permutations(runtimes))
        for r in range(-1, args.rounds):  # one warm-up round
            for name in orders[r % len(orders)]:
                rate = batch(name, runtimes[name], os.path.join(state, name), bundle,
                             args.count, args.parallel, f"{os.getpid()}-{r + 1}")
                if r >= 0:
                    rates[name].append(rate)
        base = statistics.median(rates["berth"])
        print(f"{args.count} containers of /bin/true created, started and deleted "
              f"{args.parallel} at a time, {args.rounds} rounds; nothing left behind")
        print(f"{'runtime':8} {'containers/s':>13} {'min':>7} {'max':>7} {'berth vs it':>12}")
        for name, rs in rates.items():
            med = statistics.median(rs)
            print(f"{name:8} {med:13.1f} {min(rs):7.1f} {max(rs):7.1f} {base / med:11.2f}x")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--parallel", type=int, default=10)
    lifecycle.common_arguments(p)
    args = p.parse_args()
    lifecycle.parse_peers(p, args)
    if args.inside:
        return bench(args)
    lifecycle.enter_private_cgroup_view(__file__)


if __name__ == "__main__":
    main()
