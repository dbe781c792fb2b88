//! `berth check`: what isolates a container config and what does not, barrier by barrier.
//!
//! The input is a parsed OCI spec (already checked for types by the runtime's parser);
//! the rules read it as the JSON the runtime spec defines, so each finding can name the
//! field it is about. Every rule of [`crate::rules::RULES`] yields at least one finding.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;

use serde::Serialize;
use serde_json::Value;

use crate::caps;
use crate::rules::{self, Severity};

/// Whether a barrier holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The barrier is in place.
    Pass,
    /// In place but weaker than it could be (e.g. a namespace joined from another process).
    Warn,
    /// The barrier is missing.
    Fail,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
        })
    }
}

/// One finding: a rule applied to one part of the config.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub rule: &'static str,
    pub barrier: &'static str,
    /// Seed (theory.md) section(s) the rule comes from.
    pub source: &'static str,
    pub status: Status,
    /// Severity of this finding (for a pass: the severity a failure would have).
    pub severity: Severity,
    /// The config field the finding is about (JSON path).
    pub field: String,
    pub message: String,
}

struct Out(Vec<Finding>);

impl Out {
    fn add(&mut self, id: &'static str, status: Status, field: &str, message: String) {
        let r = rules::find(id).expect("rule ids used here are in the catalogue");
        self.add_sev(id, status, r.severity, field, message);
    }

    fn add_sev(
        &mut self,
        id: &'static str,
        status: Status,
        severity: Severity,
        field: &str,
        message: String,
    ) {
        let r = rules::find(id).expect("rule ids used here are in the catalogue");
        self.0.push(Finding {
            rule: r.id,
            barrier: r.barrier,
            source: r.source,
            status,
            severity,
            field: field.to_string(),
            message,
        });
    }
}

/// Syscalls the seed lists as blocked by Docker's default profile (§2.4.2), split by how
/// much an unconditional allow matters. The first group reaches mounts, namespaces,
/// modules, keys, kexec, BPF, swap, raw I/O or time: an escape or host-wide effect.
pub const DANGEROUS_SYSCALLS: &[&str] = &[
    "acct",
    "add_key",
    "bpf",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "get_kernel_syms",
    "init_module",
    "ioperm",
    "iopl",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mount",
    "open_by_handle_at",
    "perf_event_open",
    "pivot_root",
    "query_module",
    "quotactl",
    "reboot",
    "request_key",
    "setns",
    "settimeofday",
    "stime",
    "swapoff",
    "swapon",
    "_sysctl",
    "sysfs",
    "umount",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
    "ustat",
    "vm86",
    "vm86old",
];

/// The rest of the seed's list: the kernel guards these with a capability or a ptrace
/// access check, and Docker's current profile (and berth's default) allows them, so an
/// unconditional allow is reported at low severity.
pub const GUARDED_SYSCALLS: &[&str] = &[
    "clock_adjtime",
    "get_mempolicy",
    "kcmp",
    "mbind",
    "move_pages",
    "name_to_handle_at",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    "set_mempolicy",
];

/// runc's and berth's default masked paths.
pub const STANDARD_MASKED: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
];

/// runc's and berth's default read-only paths.
pub const STANDARD_READONLY: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Device nodes every container gets anyway.
const STANDARD_DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
    "/dev/console",
    "/dev/ptmx",
];

/// Host paths whose bind mount hands the container the host (read-only or not).
const SENSITIVE_HOST_PATHS: &[&str] = &[
    "/", "/proc", "/sys", "/dev", "/etc", "/boot", "/root", "/run", "/var/run", "/var/lib", "/usr",
    "/lib", "/bin", "/sbin", "/home",
];

const NAMESPACES: &[(&str, &str, &str)] = &[
    ("pid", "ns.pid", "pid"),
    ("network", "ns.network", "net"),
    ("mount", "ns.mount", "mnt"),
    ("ipc", "ns.ipc", "ipc"),
    ("uts", "ns.uts", "uts"),
    ("cgroup", "ns.cgroup", "cgroup"),
    ("user", "ns.user", "user"),
];

/// The identity of a namespace file (device and inode), if it can be read.
fn ns_id(path: &str) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn list(items: &BTreeSet<String>) -> String {
    items.iter().cloned().collect::<Vec<_>>().join(", ")
}

/// Apply every rule to `spec` (the OCI config as JSON).
pub fn check(spec: &Value) -> Vec<Finding> {
    let mut out = Out(Vec::new());
    let linux = &spec["linux"];
    let process = &spec["process"];
    namespaces(&mut out, linux);
    user(&mut out, spec);
    capabilities(&mut out, process);
    if process["noNewPrivileges"].as_bool() == Some(true) {
        out.add("nnp", Status::Pass, "process.noNewPrivileges", "set".into());
    } else {
        out.add(
            "nnp",
            Status::Fail,
            "process.noNewPrivileges",
            "not set: setuid-root binaries and file capabilities can raise privileges".into(),
        );
    }
    seccomp(&mut out, &linux["seccomp"]);
    paths(&mut out, spec);
    mounts(&mut out, spec);
    devices(&mut out, linux);
    cgroup_limits(&mut out, &linux["resources"]);
    lsm(&mut out, process);
    out.0
}

fn namespaces(out: &mut Out, linux: &Value) {
    let listed = linux["namespaces"].as_array().cloned().unwrap_or_default();
    for (typ, rule, proc_name) in NAMESPACES {
        let field = "linux.namespaces";
        let entry = listed.iter().find(|n| n["type"] == *typ);
        match entry.map(|n| n["path"].as_str()) {
            None => out.add(
                rule,
                Status::Fail,
                field,
                format!("shared with the host: no {typ} namespace is listed"),
            ),
            Some(None) => out.add(rule, Status::Pass, field, format!("new {typ} namespace")),
            Some(Some(path)) => {
                let host = ns_id(&format!("/proc/self/ns/{proc_name}"));
                let joined = ns_id(path);
                if joined.is_some() && joined == host {
                    out.add(
                        rule,
                        Status::Fail,
                        field,
                        format!("joins {path}, which is the host's {typ} namespace"),
                    );
                } else {
                    out.add(
                        rule,
                        Status::Warn,
                        field,
                        format!("joins the {typ} namespace at {path}, shared with whoever else is in it"),
                    );
                }
            }
        }
    }
}

/// The host id that container id `id` maps to, if any.
fn map_id(maps: &Value, id: u64) -> Option<u64> {
    maps.as_array()?.iter().find_map(|m| {
        let c = m["containerID"].as_u64()?;
        let h = m["hostID"].as_u64()?;
        let s = m["size"].as_u64()?;
        (id >= c && id < c + s).then(|| h + (id - c))
    })
}

fn user(out: &mut Out, spec: &Value) {
    let linux = &spec["linux"];
    let uid = spec["process"]["user"]["uid"].as_u64().unwrap_or(0);
    let in_userns = linux["namespaces"]
        .as_array()
        .is_some_and(|a| a.iter().any(|n| n["type"] == "user"));
    let field = "linux.uidMappings";
    if !in_userns {
        if uid == 0 {
            out.add(
                "user.root",
                Status::Fail,
                "process.user.uid",
                "the process runs as uid 0 without a user namespace: container root is host root"
                    .into(),
            );
        } else {
            out.add_sev(
                "user.root",
                Status::Warn,
                Severity::Low,
                "process.user.uid",
                format!("runs as host uid {uid} (no user namespace)"),
            );
        }
    } else if let Some(path) = linux["namespaces"]
        .as_array()
        .and_then(|a| a.iter().find(|n| n["type"] == "user"))
        .and_then(|n| n["path"].as_str())
    {
        out.add_sev(
            "user.root",
            Status::Warn,
            Severity::Medium,
            "linux.namespaces",
            format!("joins the user namespace at {path}: its maps decide who container root is"),
        );
    } else {
        match map_id(&linux["uidMappings"], 0) {
            Some(0) => out.add(
                "user.root",
                Status::Fail,
                field,
                "container uid 0 maps to host uid 0".into(),
            ),
            Some(h) => out.add(
                "user.root",
                Status::Pass,
                field,
                format!("container uid 0 is host uid {h}"),
            ),
            None => out.add(
                "user.root",
                Status::Pass,
                field,
                "container uid 0 is not mapped (it is the overflow uid on the host)".into(),
            ),
        }
    }
    let no_maps = ["uidMappings", "gidMappings"]
        .iter()
        .all(|k| linux[k].as_array().is_none_or(Vec::is_empty));
    if no_maps {
        out.add(
            "user.idmap",
            Status::Pass,
            "linux.uidMappings",
            "no id maps (identity on the host)".into(),
        );
    }
    for (kind, key) in [("uid", "uidMappings"), ("gid", "gidMappings")] {
        let maps: Vec<oci_spec::runtime::LinuxIdMapping> =
            serde_json::from_value(linux[key].clone()).unwrap_or_default();
        if maps.is_empty() {
            continue;
        }
        let field = format!("linux.{key}");
        match berth_runtime::config::validate_id_map(key, &maps) {
            Ok(()) => out.add(
                "user.idmap",
                Status::Pass,
                &field,
                format!("{} {kind} extent(s), injective", maps.len()),
            ),
            Err(e) => out.add("user.idmap", Status::Fail, &field, e.to_string()),
        }
    }
}

/// The union of the five capability sets of a process.
pub fn spec_caps(process: &Value) -> BTreeSet<String> {
    [
        "bounding",
        "effective",
        "permitted",
        "inheritable",
        "ambient",
    ]
    .iter()
    .flat_map(|set| strings(&process["capabilities"][set]))
    .map(|c| caps::canonical(&c).map_or(c, str::to_string))
    .collect()
}

fn capabilities(out: &mut Out, process: &Value) {
    let all = spec_caps(process);
    let field = "process.capabilities";
    let escape: BTreeSet<String> = all
        .iter()
        .filter(|c| caps::ESCAPE.contains(&c.as_str()))
        .cloned()
        .collect();
    if escape.is_empty() {
        out.add("caps.escape", Status::Pass, field, "none granted".into());
    } else {
        out.add(
            "caps.escape",
            Status::Fail,
            field,
            format!("granted: {}", list(&escape)),
        );
    }
    let extra: BTreeSet<String> = all
        .iter()
        .filter(|c| !caps::DOCKER_DEFAULT.contains(&c.as_str()))
        .cloned()
        .collect();
    if extra.is_empty() {
        out.add(
            "caps.least",
            Status::Pass,
            field,
            format!(
                "{} capabilities, all within Docker's 14 defaults",
                all.len()
            ),
        );
    } else {
        out.add(
            "caps.least",
            Status::Fail,
            field,
            format!("{} beyond Docker's defaults: {}", extra.len(), list(&extra)),
        );
    }
    let ambient: BTreeSet<String> = strings(&process["capabilities"]["ambient"])
        .into_iter()
        .collect();
    if ambient.is_empty() {
        out.add(
            "caps.ambient",
            Status::Pass,
            "process.capabilities.ambient",
            "empty".into(),
        );
    } else {
        out.add(
            "caps.ambient",
            Status::Fail,
            "process.capabilities.ambient",
            format!("ambient: {}", list(&ambient)),
        );
    }
}

fn allows(action: &str) -> bool {
    matches!(action, "SCMP_ACT_ALLOW" | "SCMP_ACT_LOG")
}

/// What a profile does with a syscall, ignoring arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyscallVerdict {
    Allowed,
    /// Allowed only for some arguments (or decided by a user-space notifier).
    Conditional,
    Denied,
}

/// The verdict of `profile` (OCI `linux.seccomp`) on syscall `name`.
pub fn syscall_verdict(profile: &Value, name: &str) -> SyscallVerdict {
    let mut conditional = false;
    let mut denied = false;
    for rule in profile["syscalls"].as_array().into_iter().flatten() {
        if !strings(&rule["names"]).iter().any(|n| n == name) {
            continue;
        }
        let action = rule["action"].as_str().unwrap_or("");
        let has_args = rule["args"].as_array().is_some_and(|a| !a.is_empty());
        if action == "SCMP_ACT_NOTIFY" {
            conditional = true;
        } else if allows(action) {
            if !has_args {
                return SyscallVerdict::Allowed;
            }
            conditional = true;
        } else if !has_args {
            denied = true;
        }
    }
    if conditional {
        SyscallVerdict::Conditional
    } else if denied || !allows(profile["defaultAction"].as_str().unwrap_or("")) {
        SyscallVerdict::Denied
    } else {
        SyscallVerdict::Allowed
    }
}

fn seccomp(out: &mut Out, profile: &Value) {
    let field = "linux.seccomp";
    if profile.is_null() {
        for id in [
            "seccomp.enabled",
            "seccomp.default_deny",
            "seccomp.dangerous",
        ] {
            out.add(
                id,
                Status::Fail,
                field,
                "no seccomp profile: every syscall is allowed".into(),
            );
        }
        return;
    }
    out.add(
        "seccomp.enabled",
        Status::Pass,
        field,
        "a profile is given".into(),
    );
    let default = profile["defaultAction"].as_str().unwrap_or("");
    if allows(default) {
        out.add(
            "seccomp.default_deny",
            Status::Fail,
            "linux.seccomp.defaultAction",
            format!("{default}: an allow-by-default profile (a deny-list)"),
        );
    } else {
        out.add(
            "seccomp.default_deny",
            Status::Pass,
            "linux.seccomp.defaultAction",
            default.to_string(),
        );
    }
    let open = |names: &[&str]| -> BTreeSet<String> {
        names
            .iter()
            .filter(|n| syscall_verdict(profile, n) == SyscallVerdict::Allowed)
            .map(|n| n.to_string())
            .collect()
    };
    let dangerous = open(DANGEROUS_SYSCALLS);
    let guarded = open(GUARDED_SYSCALLS);
    if !dangerous.is_empty() {
        out.add(
            "seccomp.dangerous",
            Status::Fail,
            field,
            format!("allowed unconditionally: {}", list(&dangerous)),
        );
    }
    if dangerous.is_empty() {
        out.add(
            "seccomp.dangerous",
            Status::Pass,
            field,
            format!(
                "all {} escape syscalls of the seed's list are denied or argument-checked",
                DANGEROUS_SYSCALLS.len()
            ),
        );
    }
    if !guarded.is_empty() {
        out.add_sev(
            "seccomp.dangerous",
            Status::Warn,
            Severity::Low,
            field,
            format!(
                "allowed, guarded by the kernel's capability and ptrace checks: {}",
                list(&guarded)
            ),
        );
    }
}

fn paths(out: &mut Out, spec: &Value) {
    let linux = &spec["linux"];
    for (id, key, standard) in [
        ("paths.masked", "maskedPaths", STANDARD_MASKED),
        ("paths.readonly", "readonlyPaths", STANDARD_READONLY),
    ] {
        let have = strings(&linux[key]);
        let missing: BTreeSet<String> = standard
            .iter()
            .filter(|p| !have.iter().any(|h| h == *p))
            .map(|p| p.to_string())
            .collect();
        let field = format!("linux.{key}");
        if missing.is_empty() {
            out.add(
                id,
                Status::Pass,
                &field,
                format!("all {} standard paths", standard.len()),
            );
        } else {
            out.add(
                id,
                Status::Fail,
                &field,
                format!("missing: {}", list(&missing)),
            );
        }
    }
    if spec["root"]["readonly"].as_bool() == Some(true) {
        out.add(
            "rootfs.readonly",
            Status::Pass,
            "root.readonly",
            "read-only".into(),
        );
    } else {
        out.add(
            "rootfs.readonly",
            Status::Fail,
            "root.readonly",
            "the root filesystem is writable".into(),
        );
    }
}

/// Whether a device cgroup rule matches every device (no type or `a`, no major/minor).
fn wildcard(rule: &Value) -> bool {
    let typ = rule["type"].as_str().unwrap_or("a");
    let any = |v: &Value| v.is_null() || v.as_i64() == Some(-1);
    typ == "a" && any(&rule["major"]) && any(&rule["minor"])
}

fn devices(out: &mut Out, linux: &Value) {
    // The kernel's device cgroup starts from its parent's rules (the root allows all);
    // rules apply in order. Track whether read+write of every device is allowed.
    let mut all_open = true;
    for rule in linux["resources"]["devices"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if !wildcard(rule) {
            continue;
        }
        let access = rule["access"].as_str().unwrap_or("rwm");
        let allow = rule["allow"].as_bool().unwrap_or(false);
        if allow && access.contains('r') && access.contains('w') {
            all_open = true;
        } else if !allow && (access.contains('r') || access.contains('w')) {
            all_open = false;
        }
    }
    let field = "linux.resources.devices";
    let new_userns = linux["namespaces"]
        .as_array()
        .is_some_and(|a| a.iter().any(|n| n["type"] == "user" && n["path"].is_null()));
    if all_open && new_userns {
        out.add_sev(
            "devices.cgroup",
            Status::Warn,
            Severity::Low,
            field,
            "no device rules; in its own user namespace the container cannot create device nodes"
                .into(),
        );
    } else if all_open {
        out.add(
            "devices.cgroup",
            Status::Fail,
            field,
            "every device is readable and writable (no deny-all rule first)".into(),
        );
    } else {
        out.add(
            "devices.cgroup",
            Status::Pass,
            field,
            "deny by default".into(),
        );
    }
    let extra: BTreeSet<String> = linux["devices"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["path"].as_str())
        .filter(|p| !STANDARD_DEVICES.contains(p))
        .map(str::to_string)
        .collect();
    if extra.is_empty() {
        out.add(
            "devices.extra",
            Status::Pass,
            "linux.devices",
            "only standard devices".into(),
        );
    } else {
        out.add(
            "devices.extra",
            Status::Fail,
            "linux.devices",
            format!("extra devices: {}", list(&extra)),
        );
    }
}

fn mounts(out: &mut Out, spec: &Value) {
    let mut host_ok = true;
    let mut prop_ok = true;
    for (i, m) in spec["mounts"].as_array().into_iter().flatten().enumerate() {
        let opts = strings(&m["options"]);
        let has = |o: &str| opts.iter().any(|x| x == o);
        let bind = has("bind") || has("rbind") || m["type"] == "bind";
        let field = format!("mounts[{i}]");
        let dest = m["destination"].as_str().unwrap_or("?");
        if bind {
            let src = m["source"].as_str().unwrap_or("");
            let src_clean = src.trim_end_matches('/');
            let src_clean = if src_clean.is_empty() { "/" } else { src_clean };
            let ro = has("ro");
            if SENSITIVE_HOST_PATHS.contains(&src_clean) {
                host_ok = false;
                let sev = if ro {
                    Severity::High
                } else {
                    Severity::Critical
                };
                out.add_sev(
                    "mounts.host",
                    Status::Fail,
                    sev,
                    &field,
                    format!(
                        "host {src} bind-mounted at {dest}{}",
                        if ro { " (read-only)" } else { " writable" }
                    ),
                );
            } else if !ro {
                host_ok = false;
                out.add(
                    "mounts.host",
                    Status::Warn,
                    &field,
                    format!("host {src} bind-mounted writable at {dest}"),
                );
            }
        }
        if has("shared") || has("rshared") {
            prop_ok = false;
            out.add(
                "mounts.propagation",
                Status::Fail,
                &field,
                format!("{dest} is shared: mounts under it propagate to the host"),
            );
        }
    }
    if host_ok {
        out.add(
            "mounts.host",
            Status::Pass,
            "mounts",
            "no writable or sensitive host bind mounts".into(),
        );
    }
    if let Some(p @ ("shared" | "rshared")) = spec["linux"]["rootfsPropagation"].as_str() {
        prop_ok = false;
        out.add(
            "mounts.propagation",
            Status::Fail,
            "linux.rootfsPropagation",
            format!("{p}: mounts in the container propagate to the host"),
        );
    }
    if prop_ok {
        out.add(
            "mounts.propagation",
            Status::Pass,
            "mounts",
            "nothing propagates to the host".into(),
        );
    }
}

fn cgroup_limits(out: &mut Out, resources: &Value) {
    let mem = resources["memory"]["limit"].as_i64().filter(|l| *l > 0);
    match mem {
        Some(l) => out.add(
            "cgroup.memory",
            Status::Pass,
            "linux.resources.memory.limit",
            format!("{l} bytes"),
        ),
        None => out.add(
            "cgroup.memory",
            Status::Fail,
            "linux.resources.memory.limit",
            "no memory limit".into(),
        ),
    }
    match resources["pids"]["limit"].as_i64().filter(|l| *l > 0) {
        Some(l) => out.add(
            "cgroup.pids",
            Status::Pass,
            "linux.resources.pids.limit",
            format!("{l} processes"),
        ),
        None => out.add(
            "cgroup.pids",
            Status::Fail,
            "linux.resources.pids.limit",
            "no pids limit: a fork bomb takes the host".into(),
        ),
    }
    let cpu = &resources["cpu"];
    match (
        cpu["quota"].as_i64().filter(|q| *q > 0),
        cpu["shares"].as_u64(),
    ) {
        (Some(q), _) => {
            let period = cpu["period"].as_u64().unwrap_or(100_000);
            out.add(
                "cgroup.cpu",
                Status::Pass,
                "linux.resources.cpu.quota",
                format!("quota {q}/{period} us"),
            );
        }
        (None, Some(s)) => out.add_sev(
            "cgroup.cpu",
            Status::Warn,
            Severity::Low,
            "linux.resources.cpu.shares",
            format!("only a weight ({s} shares), no quota"),
        ),
        (None, None) => out.add(
            "cgroup.cpu",
            Status::Fail,
            "linux.resources.cpu",
            "no cpu quota or weight".into(),
        ),
    }
}

fn lsm(out: &mut Out, process: &Value) {
    let aa = process["apparmorProfile"]
        .as_str()
        .filter(|s| !s.is_empty());
    let se = process["selinuxLabel"].as_str().filter(|s| !s.is_empty());
    match (aa, se) {
        (Some(p), _) if p != "unconfined" => out.add(
            "lsm.profile",
            Status::Pass,
            "process.apparmorProfile",
            p.to_string(),
        ),
        (_, Some(l)) => out.add(
            "lsm.profile",
            Status::Pass,
            "process.selinuxLabel",
            l.to_string(),
        ),
        _ => out.add(
            "lsm.profile",
            Status::Fail,
            "process.apparmorProfile",
            "no AppArmor profile or SELinux label".into(),
        ),
    }
}

/// Capability sets named in the policy and granted by the spec.
pub fn granted(process: &Value, wanted: &[String]) -> BTreeSet<String> {
    let all = spec_caps(process);
    wanted
        .iter()
        .filter_map(|c| caps::canonical(c))
        .filter(|c| all.contains(*c))
        .map(str::to_string)
        .collect()
}
