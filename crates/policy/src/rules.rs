//! The rules `berth check` applies: one entry per rule id, with the barrier it belongs
//! to, the seed section it comes from, and how bad a failure is. The ids are the stable
//! names a policy file uses.

use serde::Serialize;

/// How bad a failing finding is. Ordered: `Info < Low < Medium < High < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        })
    }
}

/// One rule of the catalogue.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Rule {
    pub id: &'static str,
    /// The barrier of the seed's §6.2 corollary the rule checks.
    pub barrier: &'static str,
    /// Where in the seed (theory.md) the rule comes from.
    pub source: &'static str,
    /// Severity of a failure.
    pub severity: Severity,
    pub summary: &'static str,
}

const fn rule(
    id: &'static str,
    barrier: &'static str,
    source: &'static str,
    severity: Severity,
    summary: &'static str,
) -> Rule {
    Rule {
        id,
        barrier,
        source,
        severity,
        summary,
    }
}

use Severity::*;

/// Every rule, in report order.
pub const RULES: &[Rule] = &[
    rule(
        "ns.pid",
        "namespace",
        "2.1.2, 4.3.2",
        High,
        "a pid namespace of its own: host processes are invisible",
    ),
    rule(
        "ns.network",
        "namespace",
        "2.1.3, 6.2",
        High,
        "a network namespace of its own",
    ),
    rule(
        "ns.mount",
        "namespace",
        "2.1.4, 4.3.3",
        Critical,
        "a mount namespace of its own: its mounts never reach the host",
    ),
    rule(
        "ns.ipc",
        "namespace",
        "2.1.1",
        Medium,
        "an ipc namespace of its own: no shared SysV IPC or POSIX queues",
    ),
    rule(
        "ns.uts",
        "namespace",
        "2.1.1",
        Low,
        "a uts namespace of its own: hostname changes stay inside",
    ),
    rule(
        "ns.cgroup",
        "namespace",
        "2.1.1",
        Low,
        "a cgroup namespace of its own: the host's cgroup tree is hidden",
    ),
    rule(
        "ns.user",
        "user",
        "2.4.4",
        Medium,
        "a user namespace of its own",
    ),
    rule(
        "user.root",
        "user",
        "2.4.4",
        High,
        "container root is not host root",
    ),
    rule(
        "user.idmap",
        "user",
        "2.4.4, 1.4.2",
        High,
        "uid and gid maps are injective and do not overlap",
    ),
    rule(
        "caps.escape",
        "capabilities",
        "2.4.1",
        Critical,
        "no capability the seed marks as an escape route (SYS_ADMIN, SYS_MODULE, SYS_RAWIO, ...)",
    ),
    rule(
        "caps.least",
        "capabilities",
        "2.4.1, 4.4.2",
        Medium,
        "no capability beyond Docker's 14 defaults (least privilege)",
    ),
    rule(
        "caps.ambient",
        "capabilities",
        "2.4.1",
        Low,
        "no ambient capabilities (they survive exec of unprivileged programs)",
    ),
    rule(
        "seccomp.enabled",
        "seccomp",
        "2.4.2, 6.2",
        High,
        "a seccomp filter is installed",
    ),
    rule(
        "seccomp.default_deny",
        "seccomp",
        "2.4.2",
        High,
        "the filter's default action denies (errno, kill or trap)",
    ),
    rule(
        "seccomp.dangerous",
        "seccomp",
        "2.4.2",
        High,
        "the dangerous syscalls the seed lists are not allowed unconditionally",
    ),
    rule(
        "nnp",
        "capabilities",
        "2.4.1, 4.4.2",
        Medium,
        "noNewPrivileges: setuid binaries and file capabilities cannot add rights",
    ),
    rule(
        "paths.masked",
        "filesystem",
        "4.3.3",
        Medium,
        "the standard kernel-information paths are masked",
    ),
    rule(
        "paths.readonly",
        "filesystem",
        "4.3.3",
        Medium,
        "the standard kernel-tunable paths are read-only",
    ),
    rule(
        "rootfs.readonly",
        "filesystem",
        "2.3, 4.3.3",
        Low,
        "the root filesystem is read-only",
    ),
    rule(
        "devices.cgroup",
        "devices",
        "2.2.1",
        Critical,
        "the device cgroup does not allow every device",
    ),
    rule(
        "devices.extra",
        "devices",
        "2.2.1",
        Medium,
        "no device nodes beyond the standard ones",
    ),
    rule(
        "mounts.host",
        "filesystem",
        "2.1.4, 4.3.3",
        High,
        "no writable or sensitive host path is bind-mounted",
    ),
    rule(
        "mounts.propagation",
        "filesystem",
        "2.1.4",
        High,
        "no mount propagates back to the host (shared)",
    ),
    rule(
        "cgroup.memory",
        "cgroup",
        "2.2.3, 6.2",
        Medium,
        "a memory limit (denial of service)",
    ),
    rule(
        "cgroup.pids",
        "cgroup",
        "2.2.5, 6.3",
        Medium,
        "a pids limit (fork bombs; density is bounded by pids)",
    ),
    rule(
        "cgroup.cpu",
        "cgroup",
        "2.2.2",
        Low,
        "a cpu quota or weight",
    ),
    rule(
        "lsm.profile",
        "lsm",
        "2.4.3",
        Low,
        "an AppArmor profile or SELinux label",
    ),
];

/// The rule with this id.
pub fn find(id: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique() {
        let mut ids: Vec<_> = RULES.iter().map(|r| r.id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), RULES.len());
    }
}
