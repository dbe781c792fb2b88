#!/bin/bash
# AppArmor enforced for real: the systemd test VM (init-systemd.sh: Debian's own root over
# 9p, so apparmor_parser is there) boots with `apparmor=1 security=apparmor`, loads a
# profile with a deny rule, and berth runs busybox containers under it, checking that
# process.apparmorProfile confines init and `berth exec` processes (attr/current shows the
# profile, the deny rule holds), that an unloaded profile is refused in one line, and
# that a bind mount over /proc/self/attr (CVE-2019-16884) makes berth refuse instead of
# writing the request into a fake file.
#
# Usage: scripts/vm/apparmor.sh [--timeout SECONDS]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
timeout=300
[[ ${1:-} == --timeout ]] && timeout=${2:?--timeout needs seconds}
command -v apparmor_parser >/dev/null || { echo "apparmor.sh: apparmor_parser not found; install apparmor (scripts/setup.sh)" >&2; exit 1; }

(cd "$repo" && cargo build -q -p berth --bin berth)
target=$(cd "$repo" && cargo metadata -q --format-version 1 --no-deps | jq -r .target_directory)
berth=$target/debug/berth
mkdir -p "$repo/build/vm/tmp"
work=$(mktemp -d "$repo/build/vm/tmp/apparmor.XXXXXX")
trap 'rm -rf "$work"' EXIT
sh "$repo/scripts/busybox-rootfs.sh" "$work/bundle/rootfs"
"$berth" spec --bundle "$work/bundle"
jq '.process.terminal = false | .root.readonly = false' "$work/bundle/config.json" >"$work/config.json"
mv "$work/config.json" "$work/bundle/config.json"

{
    echo '#!/bin/bash'
    printf 'BERTH=%q\nBUNDLE=%q\n' "$berth" "$work/bundle"
    cat <<'GUEST'
set -u
fail=0
check() { if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi; }
B=$BERTH
T=/run/berth-test
[ "$(cat /sys/module/apparmor/parameters/enabled 2>/dev/null)" = Y ] || { echo "AppArmor is not enabled in the guest kernel"; exit 3; }
mountpoint -q /sys/kernel/security || mount -t securityfs securityfs /sys/kernel/security
mkdir -p $T && cp -a "$BUNDLE" $T/bundle && cd $T/bundle || exit 3
cat >$T/berth-test.profile <<'PROFILE'
profile berth-test flags=(attach_disconnected,mediate_deleted) {
  file,
  capability,
  network,
  signal,
  unix,
  ptrace,
  mount,
  umount,
  pivot_root,
  deny /tmp/** w,
}
PROFILE
apparmor_parser -r -K $T/berth-test.profile || { echo "FAIL load profile"; exit 1; }
check "profile loaded" 'aa-status 2>/dev/null | grep -qx "   berth-test"'
check "features: apparmor enabled" '[ "$($B features | jq .linux.apparmor.enabled)" = true ]'

# 1. process.apparmorProfile confines the container's init; the deny rule holds.
jq '.process.apparmorProfile = "berth-test"
    | .process.args = ["sh", "-c", "cat /proc/self/attr/current; echo x >/tmp/f && echo WROTE-TMP; echo y >/root/f && echo WROTE-ROOT"]' \
    config.json >c1.json && cp config.json base.json && cp c1.json config.json
out=$($B run c1 2>&1)
echo "$out" | sed 's/^/  | /'
check "init: attr/current is the profile" 'echo "$out" | grep -qx "berth-test (enforce)"'
check "init: deny /tmp/** w enforced" '! echo "$out" | grep -q WROTE-TMP && echo "$out" | grep -q "Permission denied"'
check "init: other writes allowed" 'echo "$out" | grep -q WROTE-ROOT'

# 2. berth exec: inherits the container's profile, --apparmor picks one.
jq '.process.args = ["sleep", "600"]' base.json >config.json
$B run -d c2
check "exec --apparmor: confined" '[ "$($B exec --apparmor berth-test c2 cat /proc/self/attr/current)" = "berth-test (enforce)" ]'
check "exec --apparmor: deny enforced" '! $B exec --apparmor berth-test c2 sh -c "echo x >/tmp/g" 2>/dev/null && ! $B exec c2 test -e /tmp/g'
check "exec without a profile: unconfined" '[ "$($B exec c2 cat /proc/self/attr/current)" = unconfined ]'
$B delete --force c2
jq '.process.apparmorProfile = "berth-test" | .process.args = ["sleep", "600"]' base.json >config.json
$B run -d c3
check "exec inherits the container's profile" '[ "$($B exec c3 cat /proc/self/attr/current)" = "berth-test (enforce)" ]'
$B delete --force c3

# 3. A profile that is not loaded: one line, nothing left.
jq '.process.apparmorProfile = "no-such-profile"' c1.json >config.json
err=$($B run c4 2>&1)
check "unloaded profile refused in one line" '[ $(printf "%s\n" "$err" | wc -l) = 1 ] && printf "%s" "$err" | grep -q "no-such-profile\" is not loaded"'
echo "  ($err)"
check "refusal leaves no state" '[ ! -e /run/berth/c4 ]'

# 4. CVE-2019-16884: a bind mount over /proc/self/attr must not receive the request.
mkdir -p $T/fakeattr/apparmor
echo fake >$T/fakeattr/exec
echo fake >$T/fakeattr/apparmor/exec
echo fake >$T/fakeattr/current
jq --arg src $T/fakeattr '.process.apparmorProfile = "berth-test"
    | .mounts += [{"destination": "/proc/self/attr", "type": "bind", "source": $src, "options": ["rbind"]}]' \
    c1.json >config.json
err=$($B run c5 2>&1); rc=$?
check "attr bind mount: berth refuses" '[ $rc -ne 0 ] && ! printf "%s" "$err" | grep -q WROTE'
check "attr bind mount: fake files untouched" '[ "$(cat $T/fakeattr/exec $T/fakeattr/apparmor/exec)" = "fake
fake" ]'
check "attr bind mount: one line naming it" '[ $(printf "%s\n" "$err" | wc -l) = 1 ] && printf "%s" "$err" | grep -q "/proc/self/attr\|procfs"'
echo "  ($err)"
check "no container left" '[ -z "$($B list -q)" ]'
apparmor_parser -R $T/berth-test.profile
exit $fail
GUEST
} >"$work/test.sh"

exec "$here/run-in-vm.sh" --pid1 "$here/init-systemd.sh" --share-root \
    --modules virtio_pci,9pnet_virtio,9p,overlay --script "$work/test.sh" \
    --append "apparmor=1 security=apparmor" --mem 1G --cpus 2 --timeout "$timeout"
