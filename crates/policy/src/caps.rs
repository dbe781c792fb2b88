//! Capability names and numbers (linux/capability.h), and the sets the seed (§2.4.1)
//! names: Docker's 14 defaults and the ones an escape needs.

use std::collections::BTreeSet;

/// Every capability the kernel defines, by number.
pub const ALL: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The capabilities Docker keeps by default (seed §2.4.1, "Docker默认保留的capabilities").
pub const DOCKER_DEFAULT: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_RAW",
    "CAP_SYS_CHROOT",
    "CAP_MKNOD",
    "CAP_AUDIT_WRITE",
    "CAP_SETFCAP",
];

/// Capabilities that let a process leave or subvert its container: the seed marks
/// SYS_ADMIN, SYS_MODULE and SYS_RAWIO "最危险" (most dangerous); the others reach the
/// host kernel, other processes or the MAC policy directly.
pub const ESCAPE: [&str; 12] = [
    "CAP_SYS_ADMIN",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_PTRACE",
    "CAP_SYS_BOOT",
    "CAP_DAC_READ_SEARCH",
    "CAP_NET_ADMIN",
    "CAP_MAC_ADMIN",
    "CAP_MAC_OVERRIDE",
    "CAP_BPF",
    "CAP_PERFMON",
    "CAP_SYS_TIME",
];

/// A capability's number, from its name with or without the `CAP_` prefix (any case).
pub fn number(name: &str) -> Option<u32> {
    let up = name.to_ascii_uppercase();
    let full = if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    };
    ALL.iter().position(|c| *c == full).map(|i| i as u32)
}

/// The canonical name (`CAP_…`) of a capability given by any accepted spelling.
pub fn canonical(name: &str) -> Option<&'static str> {
    number(name).map(|n| ALL[n as usize])
}

/// A set of capabilities as the kernel's bit mask.
pub fn mask<'a>(names: impl IntoIterator<Item = &'a str>) -> u64 {
    names
        .into_iter()
        .filter_map(number)
        .fold(0, |m, n| m | 1 << n)
}

/// The names of the bits set in `mask` (unknown bits as `cap_N`).
pub fn names(mask: u64) -> BTreeSet<String> {
    (0..64)
        .filter(|b| mask & (1 << b) != 0)
        .map(|b| {
            ALL.get(b)
                .map_or_else(|| format!("cap_{b}"), |n| n.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_the_kernel_header() {
        assert_eq!(number("CAP_CHOWN"), Some(0));
        assert_eq!(number("sys_admin"), Some(21));
        assert_eq!(number("CAP_SYS_MODULE"), Some(16));
        assert_eq!(number("CAP_MAC_OVERRIDE"), Some(32));
        assert_eq!(number("CAP_CHECKPOINT_RESTORE"), Some(40));
        assert_eq!(number("CAP_NOPE"), None);
        assert_eq!(names(mask(["CAP_KILL", "CAP_SETFCAP"])).len(), 2);
        assert_eq!(mask(DOCKER_DEFAULT).count_ones(), 14);
    }
}
