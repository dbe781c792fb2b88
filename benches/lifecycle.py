#!/usr/bin/env python3
"""Container lifecycle benchmark: berth beside crun and runc, in one run.

Each iteration is `RUNTIME run --bundle B ID` of /bin/true (create + start + wait +
delete, which all three runtimes implement the same way), with the same config.json.
Prints the median and p90 wall time per container, the peak RSS of the runtime process
(max over iterations, from GNU time), and ratios against berth.

    python3 benches/lifecycle.py [--iterations 200] [--resources] [--berth PATH]

crun 1.8 refuses this host's hybrid cgroup layout; it runs in a private mount namespace
with /sys/fs/cgroup/unified replaced by an empty tmpfs (without the tmpfs it leaves
directories on the host). --resources adds memory, pids and cpu limits to the config.
"""
import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_bundle(root, resources):
    bundle = os.path.join(root, "bundle")
    subprocess.run(["sh", os.path.join(REPO, "scripts/busybox-rootfs.sh"), os.path.join(bundle, "rootfs")], check=True)
    subprocess.run(["runc", "spec", "--bundle", bundle], check=True)
    with open(os.path.join(bundle, "config.json")) as f:
        spec = json.load(f)
    spec["process"]["terminal"] = False
    spec["process"]["args"] = ["/bin/true"]
    if resources:
        spec["linux"]["resources"].update({
            "memory": {"limit": 256 << 20},
            "pids": {"limit": 128},
            "cpu": {"shares": 512, "quota": 50000, "period": 100000},
        })
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(spec, f)
    return bundle


def measure(cmd_prefix, bundle, iterations, tag):
    """Run the lifecycle `iterations` times; return (durations, peak rss KiB)."""
    times, peak = [], 0
    for i in range(iterations):
        cid = f"bench-{tag}-{os.getpid()}-{i}"
        start = time.perf_counter()
        # GNU time reports the runtime's own peak RSS (a fork of this Python process would
        # inflate rusage's high-water mark); its own cost is the same for every runtime.
        proc = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd_prefix + ["run", "--bundle", bundle, cid],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"{tag}: iteration {i} failed ({proc.returncode}): {proc.stderr.strip()}")
        times.append(elapsed)
        peak = max(peak, int(proc.stderr.strip().splitlines()[-1]))
    return times, peak


def child_mode(args):
    """Measure one runtime and print JSON (used to run crun in its own mount namespace)."""
    times, peak = measure(json.loads(args.child_cmd), args.child_bundle, args.iterations, args.child_tag)
    print(json.dumps({"times": times, "rss": peak}))


def run_isolated(cmd, bundle, iterations, tag, private_cgroup_ns):
    me = [sys.executable, os.path.abspath(__file__), "--child-cmd", json.dumps(cmd), "--child-bundle", bundle,
          "--child-tag", tag, "--iterations", str(iterations)]
    if private_cgroup_ns:
        script = ("umount -l /sys/fs/cgroup/unified && mount -t tmpfs tmpfs /sys/fs/cgroup/unified && exec " +
                  " ".join(f"'{a}'" for a in me))
        me = ["unshare", "-m", "--propagation", "private", "sh", "-c", script]
    out = subprocess.run(me, check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--iterations", type=int, default=200)
    p.add_argument("--resources", action="store_true")
    p.add_argument("--berth", default=os.path.join(REPO, "target/release/berth"))
    p.add_argument("--child-cmd")
    p.add_argument("--child-bundle")
    p.add_argument("--child-tag")
    args = p.parse_args()
    if args.child_cmd:
        return child_mode(args)
    with tempfile.TemporaryDirectory(prefix="berth-bench-") as tmp:
        bundle = make_bundle(tmp, args.resources)
        runtimes = [
            ("berth", [args.berth, "--root", os.path.join(tmp, "berth")], False),
            ("crun", ["crun", "--root", os.path.join(tmp, "crun")], True),
            ("runc", ["runc", "--root", os.path.join(tmp, "runc")], False),
        ]
        results = {}
        for name, cmd, private in runtimes:
            if not shutil.which(cmd[0]):
                print(f"{name}: not installed, skipped")
                continue
            run_isolated(cmd, bundle, 5, name + "-warm", private)  # warm caches
            results[name] = run_isolated(cmd, bundle, args.iterations, name, private)
        base = statistics.median(results["berth"]["times"])
        print(f"lifecycle of /bin/true ({'with' if args.resources else 'without'} linux.resources), {args.iterations} iterations")
        print(f"{'runtime':8} {'median ms':>10} {'p90 ms':>8} {'peak RSS MB':>12} {'time vs berth':>14}")
        for name, r in results.items():
            t = sorted(r["times"])
            med = statistics.median(t)
            p90 = t[int(len(t) * 0.9) - 1]
            print(f"{name:8} {med * 1e3:10.2f} {p90 * 1e3:8.2f} {r['rss'] / 1024:12.1f} {med / base:13.2f}x")


if __name__ == "__main__":
    main()
