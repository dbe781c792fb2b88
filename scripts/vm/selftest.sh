#!/bin/bash
# Self-test of the VM harness. Boots the VM and checks inside that:
#   - cgroup2 is mounted at /sys/fs/cgroup with cpuset, cpu, io, memory and pids available
#     and enabled for children, and a child cgroup gets memory.max/cpu.max/pids.max files;
#   - /dev/kvm appears after loading the KVM modules and runs guest code (kvmcheck.c);
#   - a Rust binary and a libtest test binary built by build-static.sh run (the initramfs
#     has no libc) and the test passes;
# then that the same checks fail without the KVM modules, and the harness's own failure
# paths: a guest exit code propagates, a kernel panic yields 125 and an expired timeout
# yields 124. Prints timings. Exit 0 = all passed.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
prog=selftest

mkdir -p "$VM_BUILD/tmp"
work=$(mktemp -d "$VM_BUILD/tmp/selftest.XXXXXX")
trap 'rm -rf "$work"' EXIT
now() { date +%s%N; }
secs() { printf '%d.%02d' $((($2 - $1) / 1000000000)) $((($2 - $1) / 10000000 % 100)); }

# Static fixtures, rebuilt only when their source changed.
kvmcheck=$VM_BUILD/kvmcheck
if [[ ! -x $kvmcheck || $VM_SCRIPTS/kvmcheck.c -nt $kvmcheck ]]; then
    gcc -static -O2 -Wall -Wextra -Werror -o "$kvmcheck.tmp" "$VM_SCRIPTS/kvmcheck.c" ||
        die $prog "gcc -static kvmcheck.c failed; install gcc and libc6-dev"
    mv -f "$kvmcheck.tmp" "$kvmcheck"
fi
hello_src=$VM_BUILD/hello-rs
mkdir -p "$hello_src/src"
# An empty [workspace] keeps this throwaway package out of the repository's workspace.
printf '[package]\nname = "berth-vm-hello"\nversion = "0.0.0"\nedition = "2021"\n\n[workspace]\n' \
    >"$work/Cargo.toml"
cmp -s "$work/Cargo.toml" "$hello_src/Cargo.toml" || mv "$work/Cargo.toml" "$hello_src/Cargo.toml"
cat >"$work/main.rs" <<'RS'
fn main() {
    let worker = std::thread::spawn(|| std::process::id());
    let pid = worker.join().expect("thread");
    println!("hello from a static rust binary, pid {pid}");
}

#[cfg(test)]
mod tests {
    // Meaningful only inside the VM: the host's hybrid hierarchy has no such file.
    #[test]
    fn cgroup2_root_offers_memory_controller() {
        let ctl = std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers").unwrap();
        assert!(ctl.split_whitespace().any(|c| c == "memory"), "controllers: {ctl}");
    }
}
RS
cmp -s "$work/main.rs" "$hello_src/src/main.rs" || mv "$work/main.rs" "$hello_src/src/main.rs"
t0=$(now)
hello=$("$VM_SCRIPTS/build-static.sh" --manifest-path "$hello_src/Cargo.toml" --quiet)
hello_test=$("$VM_SCRIPTS/build-static.sh" --tests --manifest-path "$hello_src/Cargo.toml" --quiet)
echo "$prog: build-static.sh built $hello and $hello_test in $(secs "$t0" "$(now)")s"

cat >"$work/guest.sh" <<'SH'
#!/bin/sh
set -e
check() { echo "selftest-guest: $*"; }
read -r ctl </sys/fs/cgroup/cgroup.controllers
read -r sub </sys/fs/cgroup/cgroup.subtree_control
check "cgroup.controllers: $ctl"
for c in cpuset cpu io memory pids; do
    case " $ctl " in *" $c "*) ;; *) check "FAIL: controller $c missing"; exit 1 ;; esac
    case " $sub " in *" $c "*) ;; *) check "FAIL: controller $c not in subtree_control"; exit 1 ;; esac
done
mkdir /sys/fs/cgroup/selftest
for f in memory.max cpu.max pids.max io.max cpuset.cpus; do
    [ -f /sys/fs/cgroup/selftest/$f ] || { check "FAIL: child cgroup lacks $f"; exit 1; }
done
echo 4 >/sys/fs/cgroup/selftest/pids.max
rmdir /sys/fs/cgroup/selftest
[ -c /dev/kvm ] || { check "FAIL: /dev/kvm missing (KVM modules not loaded?)"; exit 1; }
/bin/kvmcheck
/bin/hello
/bin/hello-test --test-threads=1
check "uptime $(cut -d' ' -f1 /proc/uptime)s"
SH

failures=0
expect() {
    local want=$1 what=$2 got
    shift 2
    local t0 t1
    t0=$(now)
    set +e
    "$@" >"$work/out" 2>&1
    got=$?
    set -e
    t1=$(now)
    if [[ $got -eq $want ]]; then
        echo "$prog: ok: $what (exit $got, $(secs "$t0" "$t1")s)"
        grep -E 'FAIL|selftest-guest|kvmcheck|hello from|test result|guest ready' "$work/out" | sed 's/^/    /' || true
    else
        echo "$prog: FAIL: $what: exit $got, want $want; console:"
        sed 's/^/    /' "$work/out"
        failures=$((failures + 1))
    fi
}

expect 0 "cgroup2 controllers, nested /dev/kvm, static binaries" \
    "$VM_SCRIPTS/run-in-vm.sh" --script "$work/guest.sh" --modules kvm \
    --add "$kvmcheck:/bin/kvmcheck" --add "$hello:/bin/hello" \
    --add "$hello_test:/bin/hello-test" --timeout 120
# The same checks without the modules must fail (on /dev/kvm): the KVM check can fail.
expect 1 "without --modules kvm the guest checks fail" \
    "$VM_SCRIPTS/run-in-vm.sh" --script "$work/guest.sh" \
    --add "$kvmcheck:/bin/kvmcheck" --add "$hello:/bin/hello" \
    --add "$hello_test:/bin/hello-test" --timeout 120
expect 7 "guest exit code propagates" \
    "$VM_SCRIPTS/run-in-vm.sh" --cmd 'exit 7' --mem 256M --cpus 1 --timeout 120
expect 125 "kernel panic (no init) reported as missing marker" \
    "$VM_SCRIPTS/run-in-vm.sh" --cmd 'exit 0' --append rdinit=/nonexistent --mem 256M --cpus 1 --timeout 120
expect 124 "timeout kills qemu" \
    "$VM_SCRIPTS/run-in-vm.sh" --cmd 'sleep 600' --mem 256M --cpus 1 --timeout 10

if ((failures)); then
    echo "$prog: $failures check(s) failed"
    exit 1
fi
echo "$prog: all checks passed"
