#!/bin/bash
# Build the test VM's initramfs: an uncompressed newc cpio holding busybox-static with its
# applet links, the requested kernel modules with their dependencies, scripts/vm/init.sh
# as /init, the user's script as /berth/script and any extra host files.
#
# Usage: mkinitramfs.sh OUT.cpio [--script SCRIPT] [--add HOSTPATH:GUESTPATH]...
#                       [--modules NAME[,NAME...]]... [--kver KVER] [--pid1 FILE]
#   --script  file run by /init after setup (alias: --init); its exit code is the VM's.
#   --pid1    install FILE as /init instead of init.sh (init-systemd.sh: boot systemd).
#   --add     copy a host file or directory into the image (GUESTPATH absolute).
#   --modules module names as in modules.dep (kvm_amd or kvm-amd) or "kvm", which means
#             kvm-amd and kvm-intel (/init loads the one the guest CPU supports).
#   --kver    kernel release whose /lib/modules to use (default: newest /boot/vmlinuz-*).
# The archive is uncompressed on purpose: decompressing in a TCG guest costs boot time.
# OUT is replaced atomically. Prints OUT on success.
set -euo pipefail
export LC_ALL=C
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
prog=mkinitramfs

out=
script=
pid1=$VM_SCRIPTS/init.sh
adds=()
modules=()
kver=$(default_kver)
while (($#)); do
    case $1 in
    --script | --init) script=${2:?"--script needs a file"}; shift 2 ;;
    --add) adds+=("${2:?"--add needs HOSTPATH:GUESTPATH"}"); shift 2 ;;
    --modules) IFS=, read -ra m <<<"${2:?"--modules needs names"}"; modules+=("${m[@]}"); shift 2 ;;
    --kver) kver=${2:?"--kver needs a release"}; shift 2 ;;
    --pid1) pid1=${2:?"--pid1 needs a file"}; shift 2 ;;
    -*) die $prog "unknown option $1" ;;
    *) [[ -z $out ]] || die $prog "more than one output given: $out and $1"; out=$1; shift ;;
    esac
done
[[ -n $out ]] || die $prog "usage: mkinitramfs.sh OUT.cpio [--script F] [--add H:G]... [--modules M,...]"
[[ -z $script || -r $script ]] || die $prog "--script $script: not readable"
[[ -r $pid1 ]] || die $prog "--pid1 $pid1: not readable"

busybox=$(command -v busybox || true)
[[ -n $busybox ]] || die $prog "busybox not found; install busybox-static"
file -L "$busybox" | grep -q 'statically linked' ||
    die $prog "$busybox is not statically linked; install busybox-static"

stage=$(mktemp -d "${TMPDIR:-/tmp}/berth-initramfs.XXXXXX")
tmp=
trap 'rm -rf "$stage" ${tmp:+"$tmp"}' EXIT

mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,run,root,etc,berth,lib/modules}
cp "$busybox" "$stage/bin/busybox"
for applet in $("$busybox" --list-full); do
    [[ -e $stage/$applet ]] || ln -s /bin/busybox "$stage/$applet"
done
# devtmpfs is mounted over /dev, but the kernel opens /dev/console before /init runs.
mknod -m 600 "$stage/dev/console" c 5 1
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$stage/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$stage/etc/group"
printf '127.0.0.1 localhost berth-vm\n::1 localhost\n' >"$stage/etc/hosts"
install -m 0755 "$pid1" "$stage/init"
[[ -z $script ]] || install -m 0755 "$script" "$stage/berth/script"

# Kernel modules: resolve dependencies through modules.dep (each line "mod.ko: deps...",
# deps listed so that the last must load first), install them decompressed (busybox insmod
# does not read .ko.xz/.ko.zst) and write the load order to /berth/modules.
if ((${#modules[@]})); then
    moddir=/lib/modules/$kver
    [[ -r $moddir/modules.dep ]] || die $prog "$moddir/modules.dep: not found (kernel $kver); install linux-image-$kver"
    declare -A dep_of=() path_of=() loaded=()
    while IFS= read -r line; do
        mod=${line%%:*}
        name=${mod##*/}
        name=${name%%.ko*}
        name=${name//-/_}
        path_of[$name]=$mod
        dep_of[$name]=${line#*:}
    done <"$moddir/modules.dep"
    order=()
    add_module() {
        local name=${1//-/_} dname i
        [[ -n ${loaded[$name]:-} ]] && return
        [[ -n ${path_of[$name]:-} ]] || die $prog "--modules $1: no such module in $moddir/modules.dep"
        local deps
        read -ra deps <<<"${dep_of[$name]}"
        for ((i = ${#deps[@]} - 1; i >= 0; i--)); do
            dname=${deps[i]##*/}
            add_module "${dname%%.ko*}"
        done
        loaded[$name]=1
        order+=("${path_of[$name]}")
    }
    for m in "${modules[@]}"; do
        case $m in
        kvm) add_module kvm_amd; add_module kvm_intel ;;
        *) add_module "$m" ;;
        esac
    done
    for mod in "${order[@]}"; do
        dest=$stage/lib/modules/${mod##*/}
        dest=${dest%%.ko*}.ko
        case $mod in
        *.ko) cp "$moddir/$mod" "$dest" ;;
        *.ko.xz) xz -dc "$moddir/$mod" >"$dest" ;;
        *.ko.zst) zstd -dcq "$moddir/$mod" >"$dest" ;;
        *.ko.gz) gzip -dc "$moddir/$mod" >"$dest" ;;
        *) die $prog "$moddir/$mod: unknown module compression" ;;
        esac
        echo "/lib/modules/${dest##*/}" >>"$stage/berth/modules"
    done
fi

for spec in ${adds[@]+"${adds[@]}"}; do
    host=${spec%%:*}
    guest=${spec#*:}
    [[ $spec == *:* && -n $host && $guest == /* ]] || die $prog "--add $spec: expected HOSTPATH:/GUESTPATH"
    [[ -e $host ]] || die $prog "--add $spec: $host does not exist"
    mkdir -p "$stage$(dirname "$guest")"
    cp -a --dereference "$host" "$stage$guest"
done

mkdir -p "$(dirname "$out")"
tmp=$(mktemp "$out.tmp.XXXXXX")
(cd "$stage" && find . -mindepth 1 | sort | cpio --quiet -o -H newc -R 0:0 --reproducible) >"$tmp"
chmod 0644 "$tmp"
mv -f "$tmp" "$out"
tmp=
echo "$out"
