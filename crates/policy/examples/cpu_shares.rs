//! The seed's CPU allocation model (§2.2.6: guarantee, then weight share, capped by limit;
//! `models::cgroup::allocate`) against the kernel: busy processes pinned to one CPU in
//! sibling cgroups with given shares, their CPU time measured, and the model's split
//! printed beside the measured one. Two, three and four siblings, and a nested group.
//!
//! Run as root: `cargo run --release -p berth-policy --example cpu_shares [SECONDS]`.
//! cgroup v1 (`cpu.shares` under /sys/fs/cgroup/cpu) or v2 (`cpu.weight`, converted from
//! shares as runc and crun do). A benchmark, not a test: it asserts nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a measuring tool: fail loudly

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_policy::models::cgroup::{allocate, Node};

/// A cgroup made for the run, removed (with its processes killed) on drop.
struct Group {
    path: PathBuf,
    busy: Vec<Child>,
}

impl Drop for Group {
    fn drop(&mut self) {
        for c in &mut self.busy {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = fs::remove_dir(&self.path);
    }
}

enum Hierarchy {
    V1(PathBuf),
    V2(PathBuf),
}

impl Hierarchy {
    fn detect() -> Hierarchy {
        let v2 = Path::new("/sys/fs/cgroup");
        match fs::read_to_string(v2.join("cgroup.controllers")) {
            Ok(c) if c.split_whitespace().any(|x| x == "cpu") => Hierarchy::V2(v2.into()),
            _ => Hierarchy::V1("/sys/fs/cgroup/cpu".into()),
        }
    }

    fn root(&self) -> &Path {
        match self {
            Hierarchy::V1(p) | Hierarchy::V2(p) => p,
        }
    }

    fn make(&self, path: &Path, shares: u64) -> Group {
        fs::create_dir(path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        let (file, value) = match self {
            Hierarchy::V1(_) => ("cpu.shares", shares),
            // runc's conversion of shares [2, 262144] to weight [1, 10000].
            Hierarchy::V2(_) => ("cpu.weight", 1 + ((shares.max(2) - 2) * 9999) / 262142),
        };
        fs::write(path.join(file), value.to_string()).unwrap();
        if let Hierarchy::V2(_) = self {
            // Children of a v2 group need the cpu controller enabled in it.
            let _ = fs::write(path.join("cgroup.subtree_control"), "+cpu");
        }
        Group {
            path: path.into(),
            busy: Vec::new(),
        }
    }
}

/// A process spinning on CPU 0, placed in `g` before it starts spinning.
fn spin(g: &mut Group) {
    let child = Command::new("taskset")
        .args(["-c", "0", "sh", "-c", "read x; while :; do :; done"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("taskset (util-linux)");
    fs::write(g.path.join("cgroup.procs"), child.id().to_string()).unwrap();
    g.busy.push(child);
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat: 12 and 13 after "(comm)".
    f.get(11).and_then(|u| u.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn group_ticks(g: &Group) -> u64 {
    g.busy.iter().map(|c| cpu_ticks(c.id())).sum()
}

fn go(groups: &mut [&mut Group]) {
    for g in groups.iter_mut() {
        for c in &mut g.busy {
            use std::io::Write;
            let _ = writeln!(c.stdin.as_mut().unwrap());
        }
    }
}

fn leaf(weight: u64) -> Node {
    Node {
        limit: None,
        guarantee: 0,
        weight,
        children: vec![],
    }
}

fn pct(part: u64, total: u64) -> f64 {
    100.0 * part as f64 / total.max(1) as f64
}

/// Siblings with `shares`, one busy process each (nested: the first sibling holds a
/// second level with `inner` shares instead).
fn scenario(h: &Hierarchy, base: &Path, name: &str, shares: &[u64], inner: &[u64], secs: f64) {
    let dir = base.join(name);
    let _top = h.make(&dir, 1024);
    let mut sibs: Vec<Group> = shares
        .iter()
        .enumerate()
        .map(|(i, s)| h.make(&dir.join(format!("s{i}")), *s))
        .collect();
    let mut nested: Vec<Group> = inner
        .iter()
        .enumerate()
        .map(|(i, s)| h.make(&dir.join("s0").join(format!("n{i}")), *s))
        .collect();
    for (i, g) in sibs.iter_mut().enumerate() {
        if i > 0 || inner.is_empty() {
            spin(g);
        }
    }
    for g in &mut nested {
        spin(g);
    }
    let before: Vec<u64> = sibs.iter().chain(&nested).map(group_ticks).collect();
    {
        let mut all: Vec<&mut Group> = sibs.iter_mut().chain(nested.iter_mut()).collect();
        go(&mut all);
    }
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    let used: Vec<u64> = sibs
        .iter()
        .chain(&nested)
        .map(group_ticks)
        .zip(&before)
        .map(|(a, b)| a - b)
        .collect();
    let elapsed = t.elapsed().as_secs_f64();
    let (top_used, nested_used) = used.split_at(sibs.len());
    let mut top_used = top_used.to_vec();
    if !inner.is_empty() {
        top_used[0] = nested_used.iter().sum();
    }
    let total: u64 = top_used.iter().sum();
    let nodes: Vec<Node> = shares.iter().map(|s| leaf(*s)).collect();
    let model = allocate(total, &nodes);
    println!("{name} ({elapsed:.1} s, {total} ticks on CPU 0):");
    println!(
        "  {:<10} {:>7} {:>9} {:>9} {:>14}",
        "group", "shares", "model %", "measured %", "measured/model"
    );
    for (i, s) in shares.iter().enumerate() {
        let (m, u) = (pct(model[i], total), pct(top_used[i], total));
        println!(
            "  {:<10} {:>7} {:>8.1}% {:>9.1}% {:>14.2}",
            format!("s{i}"),
            s,
            m,
            u,
            u / m.max(0.001)
        );
    }
    if !inner.is_empty() {
        let inner_model = allocate(
            model[0],
            &inner.iter().map(|s| leaf(*s)).collect::<Vec<_>>(),
        );
        for (i, s) in inner.iter().enumerate() {
            let (m, u) = (pct(inner_model[i], total), pct(nested_used[i], total));
            println!(
                "  {:<10} {:>7} {:>8.1}% {:>9.1}% {:>14.2}",
                format!("s0/n{i}"),
                s,
                m,
                u,
                u / m.max(0.001)
            );
        }
    }
    drop(nested);
    drop(sibs);
}

fn main() {
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let h = Hierarchy::detect();
    let base = h
        .root()
        .join(format!("berth-cpu-shares-{}", std::process::id()));
    let _base = h.make(&base, 1024);
    println!(
        "CPU shares, model (berth_policy::models::cgroup::allocate) vs measured ({}):",
        match h {
            Hierarchy::V1(_) => "cgroup v1 cpu.shares",
            Hierarchy::V2(_) => "cgroup v2 cpu.weight",
        }
    );
    scenario(&h, &base, "two", &[1024, 512], &[], secs);
    scenario(&h, &base, "three", &[1024, 512, 256], &[], secs);
    scenario(&h, &base, "four", &[2048, 1024, 1024, 512], &[], secs);
    scenario(&h, &base, "nested", &[1024, 1024], &[1024, 512], secs);
}
