#!/bin/sh
# Reduce logging-wrapper logs to the distinct runtime commands and their flags:
#   scripts/clients/distinct-commands.sh WRAPPER.log...
# Prints "subcommand: flags..." (values dropped, global flags before the subcommand kept
# in front), one line per distinct shape, with the number of calls.
for f in "$@"; do
    sed "s/^berth //; s/'//g" "$f"
done | awk '
{
    pre = ""; cmd = ""; flags = ""
    for (i = 1; i <= NF; i++) {
        t = $i
        if (t ~ /^-/) {
            sub(/=.*/, "=", t)
            if (cmd == "") pre = pre " " t; else flags = flags " " t
            # a flag followed by a value that is not itself a flag: skip the value
            # (boolean flags such as --force, --detach, --all, --tty take none)
            if (t !~ /=$/ && t !~ /^--?(force|detach|d|all|a|tty|t|no-pivot|no-new-keyring|rootless|systemd-cgroup|debug)$/ && i < NF && $(i + 1) !~ /^-/) i++
        } else if (cmd == "") cmd = t
    }
    print cmd ":" pre " |" flags
}' | sort | uniq -c | sort -k2
