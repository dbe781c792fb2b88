//! `berth verify`: a running container's kernel state against the spec it was created
//! from. Everything is read from the live kernel: /proc/PID/{ns,status,uid_map,gid_map,
//! mountinfo,limits}, the cgroup's `cgroup.procs` and limit files.
//!
//! The verifying process is the reference for "the host": its own namespaces, its
//! bounding set (a container cannot hold a capability its creator's host lacks), and its
//! seccomp filter count (filters are inherited).
//!
//! A difference is a result, not an error. Each says whether the live state is narrower
//! than the spec (the container dropped rights or lowered limits itself, which the
//! delegation model allows), wider (it holds more than it was given), or just different.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use berth_runtime::state::Record;

use crate::caps;
use crate::error::{Error, Result};

pub const VERIFY_SCHEMA: &str = "berth.verify/v1";

/// How the live state relates to the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Match,
    /// Fewer rights or lower limits than the spec gives.
    Narrowed,
    /// More rights or higher limits than the spec gives.
    Widened,
    /// Different, neither narrower nor wider.
    Differs,
}

/// One compared item.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    /// What was compared: `ns.pid`, `caps.effective`, `nnp`, `seccomp.mode`, `uid_map`,
    /// `cgroup.procs`, `cgroup.memory`, `mount.masked`, `rlimit.RLIMIT_NOFILE`, ...
    pub check: String,
    pub outcome: Outcome,
    pub expected: String,
    pub actual: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifySummary {
    pub matched: usize,
    pub differences: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub schema: &'static str,
    pub id: String,
    pub pid: i32,
    pub items: Vec<Item>,
    pub summary: VerifySummary,
}

impl VerifyReport {
    pub fn differences(&self) -> impl Iterator<Item = &Item> {
        self.items.iter().filter(|i| i.outcome != Outcome::Match)
    }

    /// 0 when everything matches, 1 when something differs.
    pub fn exit_code(&self) -> u8 {
        u8::from(self.summary.differences > 0)
    }

    pub fn text(&self) -> String {
        let mut s = format!("container {} (pid {})\n", self.id, self.pid);
        for i in &self.items {
            let mark = match i.outcome {
                Outcome::Match => "ok",
                Outcome::Narrowed => "NARROWED",
                Outcome::Widened => "WIDENED",
                Outcome::Differs => "DIFFERS",
            };
            if i.outcome == Outcome::Match {
                s += &format!("  {mark:<8} {:<24} {}\n", i.check, i.actual);
            } else {
                s += &format!(
                    "  {mark:<8} {:<24} spec: {}; live: {}\n",
                    i.check, i.expected, i.actual
                );
            }
        }
        s += &format!(
            "{} matched, {} difference(s)\n",
            self.summary.matched, self.summary.differences
        );
        s
    }
}

/// Reads one process's /proc files; a vanished process becomes [`Error::Exited`].
struct Proc<'a> {
    id: &'a str,
    pid: i32,
}

impl Proc<'_> {
    fn path(&self, file: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/{file}", self.pid))
    }

    fn gone(&self, file: &str) -> Error {
        Error::Exited {
            id: self.id.to_string(),
            what: self.path(file).display().to_string(),
        }
    }

    fn read(&self, file: &str) -> Result<String> {
        std::fs::read_to_string(self.path(file)).map_err(|e| self.io(file, e))
    }

    fn io(&self, file: &str, e: std::io::Error) -> Error {
        match e.raw_os_error() {
            // ENOENT, ESRCH: the process is gone.
            Some(libc::ENOENT | libc::ESRCH) => self.gone(file),
            _ => Error::Io {
                path: self.path(file),
                source: e,
            },
        }
    }

    fn ns(&self, name: &str) -> Result<(u64, u64, String)> {
        let file = format!("ns/{name}");
        let p = self.path(&file);
        let meta = std::fs::metadata(&p).map_err(|e| self.io(&file, e))?;
        let link = std::fs::read_link(&p).map_err(|e| self.io(&file, e))?;
        Ok((meta.dev(), meta.ino(), link.to_string_lossy().into_owned()))
    }
}

fn items_of(
    items: &mut Vec<Item>,
    check: impl Into<String>,
    outcome: Outcome,
    expected: String,
    actual: String,
) {
    items.push(Item {
        check: check.into(),
        outcome,
        expected,
        actual,
    });
}

/// Compare two sets of rights: equal, a subset (narrowed), a superset (widened).
fn compare_sets<T: Ord>(expected: &BTreeSet<T>, actual: &BTreeSet<T>) -> Outcome {
    if expected == actual {
        Outcome::Match
    } else if actual.is_subset(expected) {
        Outcome::Narrowed
    } else if actual.is_superset(expected) {
        Outcome::Widened
    } else {
        Outcome::Differs
    }
}

fn compare_num(expected: u64, actual: u64) -> Outcome {
    match actual.cmp(&expected) {
        std::cmp::Ordering::Equal => Outcome::Match,
        std::cmp::Ordering::Less => Outcome::Narrowed,
        std::cmp::Ordering::Greater => Outcome::Widened,
    }
}

fn show_set(s: &BTreeSet<String>) -> String {
    if s.is_empty() {
        "(none)".into()
    } else {
        s.iter().cloned().collect::<Vec<_>>().join(",")
    }
}

fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(str::trim)
}

fn hex_field(status: &str, key: &str, path: &Path) -> Result<u64> {
    status_field(status, key)
        .and_then(|v| u64::from_str_radix(v, 16).ok())
        .ok_or_else(|| Error::Parse {
            path: path.to_path_buf(),
            why: format!("no {key} line"),
        })
}

const NS: &[(&str, &str)] = &[
    ("pid", "pid"),
    ("network", "net"),
    ("mount", "mnt"),
    ("ipc", "ipc"),
    ("uts", "uts"),
    ("cgroup", "cgroup"),
    ("user", "user"),
    ("time", "time"),
];

fn namespaces(p: &Proc, spec: &Value, items: &mut Vec<Item>) -> Result<()> {
    let listed = spec["linux"]["namespaces"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for (typ, name) in NS {
        let me = format!("/proc/self/ns/{name}");
        let Ok(host) = std::fs::metadata(&me) else {
            continue; // the kernel lacks this namespace type
        };
        let host = (host.dev(), host.ino());
        let (dev, ino, link) = p.ns(name)?;
        let live = (dev, ino);
        let entry = listed.iter().find(|n| n["type"] == *typ);
        let check = format!("ns.{typ}");
        let (expected, ok) = match entry.map(|n| n["path"].as_str()) {
            None => ("the host's (not listed)".to_string(), live == host),
            Some(None) => ("a new namespace".to_string(), live != host),
            Some(Some(path)) => {
                let want = std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()));
                (format!("joined {path}"), want == Some(live))
            }
        };
        let actual = if live == host {
            format!("{link} (the host's)")
        } else {
            link
        };
        let outcome = if ok { Outcome::Match } else { Outcome::Differs };
        items_of(items, check, outcome, expected, actual);
        // pid and user namespaces are hierarchical (§4.2.1's partial order): a new one
        // must be a direct child of the host's.
        if matches!(*typ, "pid" | "user") && entry.is_some_and(|n| n["path"].is_null()) {
            let file = format!("ns/{name}");
            let parent = ns_parent(&p.path(&file)).map_err(|e| p.io(&file, e))?;
            let outcome = if parent == host {
                Outcome::Match
            } else {
                Outcome::Differs
            };
            let show = |(d, i): (u64, u64)| {
                if (d, i) == host {
                    "the host's".to_string()
                } else {
                    format!("{name}:[{i}]")
                }
            };
            items_of(
                items,
                format!("ns.{typ}.parent"),
                outcome,
                "the host's".into(),
                show(parent),
            );
        }
    }
    Ok(())
}

/// The (device, inode) of the parent of the namespace at `path` (ioctl NS_GET_PARENT).
fn ns_parent(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    const NS_GET_PARENT: libc::c_ulong = 0xb702; // _IO(0xb7, 0x2)
    let ns = std::fs::File::open(path)?;
    // SAFETY: NS_GET_PARENT takes no argument and returns a new fd or -1; `ns` is open.
    let fd = unsafe { libc::ioctl(ns.as_raw_fd(), NS_GET_PARENT) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd to us; nothing else owns it.
    let parent = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let meta = parent.metadata()?;
    Ok((meta.dev(), meta.ino()))
}

/// The sets the process should hold once it has exec'd its program: the runtime sets the
/// spec's five sets (within the host's bounding set), then the kernel's execve rules apply
/// (root in its namespace gets permitted = inheritable | bounding, a non-root user keeps
/// only its ambient set, no_new_privs caps permitted at the old one). The program is
/// assumed to carry no file capabilities and no setuid bit.
pub fn after_exec(spec: &Value, host_bounding: u64) -> crate::models::capset::Creds {
    use crate::models::capset::{Creds, File, Transition};
    let set = |name: &str| {
        let names: Vec<&str> = spec["process"]["capabilities"][name]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        caps::mask(names) & host_bounding
    };
    let uid = spec["process"]["user"]["uid"].as_u64().unwrap_or(0) as u32;
    let before = Creds {
        uid,
        euid: uid,
        inheritable: set("inheritable"),
        permitted: set("permitted"),
        effective: set("effective"),
        bounding: set("bounding"),
        ambient: set("ambient"),
        no_new_privs: spec["process"]["noNewPrivileges"].as_bool() == Some(true),
    };
    let exec = Transition::Exec(File {
        setuid_root: false,
        caps: None,
    });
    before.apply(exec).unwrap_or(before)
}

fn capabilities(p: &Proc, spec: &Value, items: &mut Vec<Item>) -> Result<()> {
    let status = p.read("status")?;
    let path = p.path("status");
    let own = std::fs::read_to_string("/proc/self/status").map_err(|source| Error::Io {
        path: "/proc/self/status".into(),
        source,
    })?;
    let host_bounding = hex_field(&own, "CapBnd", Path::new("/proc/self/status"))?;
    let predicted = after_exec(spec, host_bounding);
    for (set, key) in [
        ("bounding", "CapBnd"),
        ("effective", "CapEff"),
        ("permitted", "CapPrm"),
        ("inheritable", "CapInh"),
        ("ambient", "CapAmb"),
    ] {
        let want = match set {
            "bounding" => predicted.bounding,
            "effective" => predicted.effective,
            "permitted" => predicted.permitted,
            "inheritable" => predicted.inheritable,
            _ => predicted.ambient,
        };
        let live = hex_field(&status, key, &path)?;
        let (w, l) = (caps::names(want), caps::names(live));
        items_of(
            items,
            format!("caps.{set}"),
            compare_sets(&w, &l),
            show_set(&w),
            show_set(&l),
        );
    }
    let nnp_want = spec["process"]["noNewPrivileges"].as_bool() == Some(true);
    let nnp = status_field(&status, "NoNewPrivs") == Some("1");
    let outcome = match (nnp_want, nnp) {
        (a, b) if a == b => Outcome::Match,
        (false, true) => Outcome::Narrowed,
        _ => Outcome::Widened,
    };
    items_of(items, "nnp", outcome, nnp_want.to_string(), nnp.to_string());

    let own_filters: u64 = status_field(&own, "Seccomp_filters")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let want_seccomp = !spec["linux"]["seccomp"].is_null();
    let mode = status_field(&status, "Seccomp").unwrap_or("?").to_string();
    let want_mode = if want_seccomp || own_filters > 0 {
        "2"
    } else {
        "0"
    };
    let outcome = if mode == want_mode {
        Outcome::Match
    } else if mode == "2" {
        Outcome::Narrowed
    } else {
        Outcome::Widened
    };
    items_of(items, "seccomp.mode", outcome, want_mode.into(), mode);
    if let Some(filters) =
        status_field(&status, "Seccomp_filters").and_then(|v| v.parse::<u64>().ok())
    {
        let want = own_filters + u64::from(want_seccomp);
        items_of(
            items,
            "seccomp.filters",
            compare_num(want, filters),
            want.to_string(),
            filters.to_string(),
        );
    }
    Ok(())
}

fn parse_map(text: &str) -> BTreeSet<(u64, u64, u64)> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<u64> = l
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            (f.len() == 3).then(|| (f[0], f[1], f[2]))
        })
        .collect()
}

fn show_map(m: &BTreeSet<(u64, u64, u64)>) -> String {
    m.iter()
        .map(|(c, h, s)| format!("{c} {h} {s}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn id_maps(p: &Proc, spec: &Value, items: &mut Vec<Item>) -> Result<()> {
    let new_userns = spec["linux"]["namespaces"]
        .as_array()
        .is_some_and(|a| a.iter().any(|n| n["type"] == "user" && n["path"].is_null()));
    for (file, key) in [("uid_map", "uidMappings"), ("gid_map", "gidMappings")] {
        let live = parse_map(&p.read(file)?);
        let want: BTreeSet<(u64, u64, u64)> = if new_userns {
            spec["linux"][key]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| {
                    Some((
                        m["containerID"].as_u64()?,
                        m["hostID"].as_u64()?,
                        m["size"].as_u64()?,
                    ))
                })
                .collect()
        } else {
            let own = format!("/proc/self/{file}");
            parse_map(&std::fs::read_to_string(&own).map_err(|source| Error::Io {
                path: own.into(),
                source,
            })?)
        };
        let outcome = if live == want {
            Outcome::Match
        } else {
            Outcome::Differs
        };
        items_of(items, file, outcome, show_map(&want), show_map(&live));
    }
    Ok(())
}

fn read_trim(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// "max", "-1" or a huge v1 value mean no limit.
fn limit_value(raw: &str) -> Option<u64> {
    match raw {
        "max" | "-1" => None,
        n => n.parse::<u64>().ok().filter(|v| *v < 1 << 62),
    }
}

fn show_limit(v: Option<u64>) -> String {
    v.map_or_else(|| "unlimited".into(), |v| v.to_string())
}

fn compare_limit(want: Option<u64>, live: Option<u64>) -> Outcome {
    match (want, live) {
        (None, None) => Outcome::Match,
        (None, Some(_)) => Outcome::Narrowed,
        (Some(_), None) => Outcome::Widened,
        (Some(w), Some(l)) => compare_num(w, l),
    }
}

fn cgroup(p: &Proc, rec: &Record, spec: &Value, items: &mut Vec<Item>) -> Result<()> {
    let Some(state) = rec
        .cgroup
        .clone()
        .and_then(|v| serde_json::from_value::<berth_cgroups::CgroupState>(v).ok())
    else {
        items_of(
            items,
            "cgroup.procs",
            Outcome::Match,
            "no cgroup (rootless)".into(),
            "no cgroup recorded".into(),
        );
        return Ok(());
    };
    for dir in state.paths.dirs() {
        let procs = dir.join("cgroup.procs");
        let text = std::fs::read_to_string(&procs).map_err(|source| Error::Io {
            path: procs.clone(),
            source,
        })?;
        let member = text.split_whitespace().any(|x| x == p.pid.to_string());
        let outcome = if member {
            Outcome::Match
        } else {
            Outcome::Differs
        };
        let actual = if member {
            format!("pid {} in {}", p.pid, dir.display())
        } else {
            let own = p.read("cgroup").unwrap_or_default();
            format!(
                "pid {} not in {}; /proc/PID/cgroup: {}",
                p.pid,
                procs.display(),
                own.lines().collect::<Vec<_>>().join(" ")
            )
        };
        items_of(
            items,
            "cgroup.procs",
            outcome,
            format!("member of {}", dir.display()),
            actual,
        );
    }
    let res = &spec["linux"]["resources"];
    let v1 = |c: &str| state.paths.v1.get(c).cloned();
    let v2 = state
        .paths
        .unified
        .clone()
        .filter(|_| state.hierarchy == berth_cgroups::Hierarchy::V2);
    let positive = |v: &Value| v.as_i64().filter(|x| *x > 0).map(|x| x as u64);

    // memory: v1 rounds the limit down to whole pages.
    let page = 4096;
    let want_mem = positive(&res["memory"]["limit"]);
    let live_mem = match (&v2, v1("memory")) {
        (Some(d), _) => read_trim(&d.join("memory.max")),
        (None, Some(d)) => read_trim(&d.join("memory.limit_in_bytes")),
        _ => None,
    };
    if let Some(raw) = live_mem {
        let want = want_mem.map(|w| w / page * page);
        let live = limit_value(&raw).map(|l| l / page * page);
        items_of(
            items,
            "cgroup.memory",
            compare_limit(want, live),
            show_limit(want),
            show_limit(live),
        );
    }
    let pids_dir = v2.clone().or_else(|| v1("pids"));
    if let Some(raw) = pids_dir.and_then(|d| read_trim(&d.join("pids.max"))) {
        let want = positive(&res["pids"]["limit"]);
        let live = limit_value(&raw);
        items_of(
            items,
            "cgroup.pids",
            compare_limit(want, live),
            show_limit(want),
            show_limit(live),
        );
    }
    let want_quota = positive(&res["cpu"]["quota"]);
    let want_period = res["cpu"]["period"].as_u64().unwrap_or(100_000);
    let live_cpu = match (&v2, v1("cpu")) {
        (Some(d), _) => read_trim(&d.join("cpu.max")).map(|s| {
            let mut f = s.split_whitespace();
            let q = f.next().and_then(limit_value);
            let per = f.next().and_then(|x| x.parse().ok()).unwrap_or(100_000);
            (q, per)
        }),
        (None, Some(d)) => {
            let q = read_trim(&d.join("cpu.cfs_quota_us"));
            let per = read_trim(&d.join("cpu.cfs_period_us"))
                .and_then(|x| x.parse().ok())
                .unwrap_or(100_000);
            q.map(|q| (limit_value(&q), per))
        }
        _ => None,
    };
    if let Some((q, per)) = live_cpu {
        // Compare quotas scaled to the spec's period.
        let want = want_quota;
        let live = q.map(|q| q * want_period / per.max(1));
        let show =
            |v: Option<u64>, per: u64| v.map_or("unlimited".into(), |v| format!("{v}/{per} us"));
        items_of(
            items,
            "cgroup.cpu",
            compare_limit(want, live),
            show(want, want_period),
            show(q, per),
        );
    }
    // v1's device controller lists what it allows; `a *:* rwm` is every device. (On v2
    // the rules are a BPF program, not readable as a list.)
    if let (None, Some(d)) = (&v2, v1("devices")) {
        if let Some(list) = read_trim(&d.join("devices.list")) {
            let want_all = crate::check::check(spec)
                .iter()
                .any(|f| f.rule == "devices.cgroup" && f.status != crate::check::Status::Pass);
            let all = list.lines().any(|l| l.trim() == "a *:* rwm");
            let show = |all: bool| {
                if all {
                    "every device"
                } else {
                    "listed devices only"
                }
            };
            let outcome = match (want_all, all) {
                (a, b) if a == b => Outcome::Match,
                (true, false) => Outcome::Narrowed,
                _ => Outcome::Widened,
            };
            items_of(
                items,
                "cgroup.devices",
                outcome,
                show(want_all).into(),
                show(all).into(),
            );
        }
    }
    if let (None, Some(d), Some(shares)) = (&v2, v1("cpu"), res["cpu"]["shares"].as_u64()) {
        if let Some(live) = read_trim(&d.join("cpu.shares")).and_then(|s| s.parse().ok()) {
            items_of(
                items,
                "cgroup.cpu_shares",
                compare_num(shares, live),
                shares.to_string(),
                live.to_string(),
            );
        }
    }
    Ok(())
}

/// Undo mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b.get(i + 1..i + 4).and_then(|d| {
            let d = std::str::from_utf8(d).ok()?;
            u8::from_str_radix(d, 8).ok()
        });
        match octal {
            Some(v) if b[i] == b'\\' => {
                out.push(v);
                i += 4;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mount point -> per-mount options of the topmost mount there.
fn mount_table(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut t = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        if f.len() > 5 {
            t.insert(
                unescape(f[4]),
                f[5].split(',').map(str::to_string).collect(),
            );
        }
    }
    t
}

fn mounts(p: &Proc, spec: &Value, items: &mut Vec<Item>) -> Result<()> {
    let table = mount_table(&p.read("mountinfo")?);
    // Paths are resolved inside the container's root (its symlinks cannot lead out).
    let root = berth_runtime::fs::Root::open(&p.path("root")).map_err(|_| p.gone("root"))?;
    let exists = |path: &str| {
        use nix::fcntl::OFlag;
        root.open_in(
            Path::new(path),
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        )
        .is_ok()
    };
    let strs = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect()
    };
    let mut unmasked = BTreeSet::new();
    let mut masked = 0;
    for m in strs(&spec["linux"]["maskedPaths"]) {
        if table.contains_key(&m) {
            masked += 1;
        } else if exists(&m) {
            unmasked.insert(m);
        }
    }
    let outcome = if unmasked.is_empty() {
        Outcome::Match
    } else {
        Outcome::Widened
    };
    items_of(
        items,
        "mount.masked",
        outcome,
        "every masked path that exists has a mask mounted on it".into(),
        if unmasked.is_empty() {
            format!("{masked} masked")
        } else {
            format!("not masked: {}", show_set(&unmasked))
        },
    );
    let mut writable = BTreeSet::new();
    let mut ro = 0;
    for r in strs(&spec["linux"]["readonlyPaths"]) {
        match table.get(&r) {
            Some(o) if o.iter().any(|x| x == "ro") => ro += 1,
            Some(_) => {
                writable.insert(r);
            }
            None if exists(&r) => {
                writable.insert(r);
            }
            None => {}
        }
    }
    let outcome = if writable.is_empty() {
        Outcome::Match
    } else {
        Outcome::Widened
    };
    items_of(
        items,
        "mount.readonly",
        outcome,
        "every read-only path that exists is mounted ro".into(),
        if writable.is_empty() {
            format!("{ro} read-only")
        } else {
            format!("writable: {}", show_set(&writable))
        },
    );
    let want_ro = spec["root"]["readonly"].as_bool() == Some(true);
    let live_ro = table.get("/").is_some_and(|o| o.iter().any(|x| x == "ro"));
    let outcome = match (want_ro, live_ro) {
        (a, b) if a == b => Outcome::Match,
        (false, true) => Outcome::Narrowed,
        _ => Outcome::Widened,
    };
    let show = |ro: bool| {
        if ro {
            "ro".to_string()
        } else {
            "rw".to_string()
        }
    };
    items_of(items, "mount.root", outcome, show(want_ro), show(live_ro));
    Ok(())
}

/// The /proc/PID/limits row of each RLIMIT_* name.
const RLIMIT_ROWS: &[(&str, &str)] = &[
    ("RLIMIT_CPU", "Max cpu time"),
    ("RLIMIT_FSIZE", "Max file size"),
    ("RLIMIT_DATA", "Max data size"),
    ("RLIMIT_STACK", "Max stack size"),
    ("RLIMIT_CORE", "Max core file size"),
    ("RLIMIT_RSS", "Max resident set"),
    ("RLIMIT_NPROC", "Max processes"),
    ("RLIMIT_NOFILE", "Max open files"),
    ("RLIMIT_MEMLOCK", "Max locked memory"),
    ("RLIMIT_AS", "Max address space"),
    ("RLIMIT_LOCKS", "Max file locks"),
    ("RLIMIT_SIGPENDING", "Max pending signals"),
    ("RLIMIT_MSGQUEUE", "Max msgqueue size"),
    ("RLIMIT_NICE", "Max nice priority"),
    ("RLIMIT_RTPRIO", "Max realtime priority"),
    ("RLIMIT_RTTIME", "Max realtime timeout"),
];

fn rlimit_num(s: &str) -> u64 {
    if s == "unlimited" {
        u64::MAX
    } else {
        s.parse().unwrap_or(u64::MAX)
    }
}

/// Soft and hard limit of each row of /proc/PID/limits.
pub fn parse_limits(text: &str) -> BTreeMap<String, (u64, u64)> {
    let mut out = BTreeMap::new();
    for line in text.lines().skip(1) {
        if line.len() < 26 {
            continue;
        }
        let (name, rest) = line.split_at(26);
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.len() >= 2 {
            out.insert(
                name.trim().to_string(),
                (rlimit_num(f[0]), rlimit_num(f[1])),
            );
        }
    }
    out
}

fn rlimits(p: &Proc, spec: &Value, items: &mut Vec<Item>) -> Result<()> {
    let live = parse_limits(&p.read("limits")?);
    let show = |v: u64| {
        if v == u64::MAX {
            "unlimited".to_string()
        } else {
            v.to_string()
        }
    };
    for rl in spec["process"]["rlimits"].as_array().into_iter().flatten() {
        let typ = rl["type"].as_str().unwrap_or("");
        let Some((_, row)) = RLIMIT_ROWS.iter().find(|(t, _)| *t == typ) else {
            continue;
        };
        let want = (
            rl["soft"].as_u64().unwrap_or(0),
            rl["hard"].as_u64().unwrap_or(0),
        );
        let Some(&have) = live.get(*row) else {
            continue;
        };
        let outcome = if have == want {
            Outcome::Match
        } else if have.0 <= want.0 && have.1 <= want.1 {
            Outcome::Narrowed
        } else if have.0 >= want.0 && have.1 >= want.1 {
            Outcome::Widened
        } else {
            Outcome::Differs
        };
        items_of(
            items,
            format!("rlimit.{typ}"),
            outcome,
            format!("soft {} hard {}", show(want.0), show(want.1)),
            format!("soft {} hard {}", show(have.0), show(have.1)),
        );
    }
    Ok(())
}

/// Verify process `pid` of runtime container `id` (its init unless `pid` is given)
/// against `spec`, the config the container was created from.
pub fn verify(id: &str, rec: &Record, spec: &Value, pid: Option<i32>) -> Result<VerifyReport> {
    let pid = pid.unwrap_or(rec.pid);
    let p = Proc { id, pid };
    let start = berth_runtime::state::proc_stat(pid)
        .map(|s| s.0)
        .ok_or_else(|| p.gone("stat"))?;
    if pid == rec.pid && start != rec.pid_start_time {
        return Err(p.gone("stat"));
    }
    if pid != rec.pid {
        // Only the container's own processes: the pid namespace of its init (which
        // every exec'd process joins).
        let init = Proc { id, pid: rec.pid };
        let (d, i, _) = init.ns("pid")?;
        let (pd, pi, _) = p.ns("pid")?;
        if (d, i) != (pd, pi) {
            return Err(Error::NotInContainer {
                id: id.to_string(),
                pid,
            });
        }
    }
    let mut items = Vec::new();
    namespaces(&p, spec, &mut items)?;
    capabilities(&p, spec, &mut items)?;
    id_maps(&p, spec, &mut items)?;
    cgroup(&p, rec, spec, &mut items)?;
    mounts(&p, spec, &mut items)?;
    rlimits(&p, spec, &mut items)?;
    // Everything read must come from the same process: if it exited (or its pid was
    // reused) meanwhile, the report would mix two processes.
    if !berth_runtime::state::process_alive(pid, start) {
        return Err(p.gone("stat"));
    }
    let differences = items.iter().filter(|i| i.outcome != Outcome::Match).count();
    Ok(VerifyReport {
        schema: VERIFY_SCHEMA,
        id: id.to_string(),
        pid,
        summary: VerifySummary {
            matched: items.len() - differences,
            differences,
        },
        items,
    })
}

/// Verify runtime container `id` under the state root `root`.
pub fn verify_container(id: &str, root: &Path, pid: Option<i32>) -> Result<VerifyReport> {
    let (dir, rec) = crate::target::container(id, root)?;
    let status = berth_runtime::Runtime::new(root).state(id)?.status;
    use berth_runtime::Status;
    if !matches!(status, Status::Running | Status::Paused) {
        return Err(Error::NotLive {
            id: id.to_string(),
            status: status.to_string(),
        });
    }
    let target = crate::target::resolve_config(&dir)?;
    verify(id, &rec, &target, pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse() {
        let text =
            "Limit                     Soft Limit           Hard Limit           Units     \n\
Max cpu time              unlimited            unlimited            seconds   \n\
Max open files            1024                 4096                 files     \n";
        let l = parse_limits(text);
        assert_eq!(l["Max open files"], (1024, 4096));
        assert_eq!(l["Max cpu time"], (u64::MAX, u64::MAX));
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
        let t = mount_table("36 35 98:0 / / ro,relatime master:1 - ext3 /dev/root rw\n37 36 0:1 / /proc/sys ro - proc proc rw\n");
        assert!(t["/"].contains(&"ro".to_string()));
        assert!(t.contains_key("/proc/sys"));
    }

    #[test]
    fn set_comparison() {
        let a: BTreeSet<u32> = [1, 2].into();
        let b: BTreeSet<u32> = [1].into();
        assert_eq!(compare_sets(&a, &a), Outcome::Match);
        assert_eq!(compare_sets(&a, &b), Outcome::Narrowed);
        assert_eq!(compare_sets(&b, &a), Outcome::Widened);
    }
}
