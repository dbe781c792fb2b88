//! cgroup v2: which files each `LinuxResources` field goes to, in which order, where the
//! statistics come from, and how controllers are delegated down the tree. Devices are not
//! files on v2: see `devices::compile` and `bpf`.

use crate::error::{Error, Result};
use crate::fsutil::{self, Write};
use crate::resources::{self as res, invalid, mem_str, mem_value, Probe};
use crate::stats::{self, BlkioEntry, Stats};
use oci_spec::runtime::LinuxResources;
use std::path::Path;

fn unsupported(field: &str) -> Error {
    Error::Unsupported {
        field: field.into(),
        hierarchy: "v2",
    }
}

/// The ordered writes for `r` (devices excluded). `unified` comes last so it can override.
pub(crate) fn plan(r: &LinuxResources, probe: &Probe) -> Result<Vec<Write>> {
    let mut p = Vec::new();
    if let Some(cpu) = r.cpu() {
        if let Some(c) = cpu.cpus() {
            p.push(Write::new("cpu.cpus", "cpuset.cpus", c));
        }
        if let Some(m) = cpu.mems() {
            p.push(Write::new("cpu.mems", "cpuset.mems", m));
        }
    }
    memory(r, &mut p)?;
    cpu(r, &mut p)?;
    if let Some(pids) = r.pids() {
        let v = if pids.limit() > 0 {
            pids.limit().to_string()
        } else {
            "max".into()
        };
        p.push(Write::new("pids.limit", "pids.max", v));
    }
    io(r, probe, &mut p)?;
    for (i, h) in r.hugepage_limits().iter().flatten().enumerate() {
        res::check_pagesize(i, h.page_size())?;
        let v = if h.limit() < 0 {
            "max".to_string()
        } else {
            h.limit().to_string()
        };
        p.push(Write::new(
            "hugepageLimits",
            format!("hugetlb.{}.max", h.page_size()),
            v,
        ));
    }
    if let Some(n) = r.network() {
        if n.class_id().is_some() || n.priorities().as_ref().is_some_and(|p| !p.is_empty()) {
            return Err(unsupported("network"));
        }
    }
    p.extend(res::rdma_writes(r));
    if let Some(u) = r.unified() {
        let mut keys: Vec<_> = u.iter().collect();
        keys.sort();
        for (k, v) in keys {
            if k.is_empty() || k.contains('/') || k == "." || k == ".." {
                return Err(invalid(
                    &format!("unified[{k:?}]"),
                    "is not a control file name",
                ));
            }
            p.push(Write::new("unified", k.clone(), v));
        }
    }
    Ok(p)
}

fn memory(r: &LinuxResources, p: &mut Vec<Write>) -> Result<()> {
    let Some(m) = r.memory() else { return Ok(()) };
    let limit = mem_value("memory.limit", m.limit())?;
    let swap = mem_value("memory.swap", m.swap())?;
    // Unlimited memory without an explicit swap value also lifts the swap limit (runc).
    let swap = match (swap, limit) {
        (None, Some(-1)) => Some(-1),
        (Some(s), l) => Some(res::swap_v2(s, l)?),
        (None, _) => None,
    };
    // No cross-check between the two on v2; runc writes swap first.
    if let Some(s) = swap {
        p.push(Write::new(
            "memory.swap",
            "memory.swap.max",
            mem_str(s, true),
        ));
    }
    if let Some(l) = limit {
        p.push(Write::new("memory.limit", "memory.max", mem_str(l, true)));
    }
    if let Some(v) = mem_value("memory.reservation", m.reservation())? {
        p.push(Write::new(
            "memory.reservation",
            "memory.low",
            mem_str(v, true),
        ));
    }
    #[allow(deprecated)]
    if m.kernel().is_some() {
        return Err(unsupported("memory.kernel"));
    }
    if m.kernel_tcp().is_some() {
        return Err(unsupported("memory.kernelTCP"));
    }
    if m.swappiness().is_some() {
        return Err(unsupported("memory.swappiness"));
    }
    if m.disable_oom_killer() == Some(true) {
        return Err(unsupported("memory.disableOOMKiller"));
    }
    Ok(())
}

fn cpu(r: &LinuxResources, p: &mut Vec<Write>) -> Result<()> {
    let Some(c) = r.cpu() else { return Ok(()) };
    if c.realtime_period().is_some_and(|v| v != 0) || c.realtime_runtime().is_some_and(|v| v != 0) {
        return Err(unsupported("cpu.realtimeRuntime/realtimePeriod"));
    }
    if let Some(s) = c.shares().filter(|&s| s != 0) {
        res::check_shares(s)?;
        p.push(Write::new(
            "cpu.shares",
            "cpu.weight",
            res::shares_to_weight(s),
        ));
    }
    let quota = c.quota().filter(|&q| q != 0);
    let period = c.period().filter(|&v| v != 0);
    if quota.is_some() || period.is_some() {
        let mut v = match quota {
            Some(q) if q > 0 => q.to_string(),
            _ => "max".to_string(),
        };
        if let Some(per) = period {
            v += &format!(" {per}");
        }
        p.push(Write::new("cpu.quota", "cpu.max", v));
    }
    if let Some(b) = c.burst() {
        p.push(Write::new("cpu.burst", "cpu.max.burst", b));
    }
    if let Some(i) = c.idle() {
        p.push(Write::new("cpu.idle", "cpu.idle", i));
    }
    Ok(())
}

fn io(r: &LinuxResources, probe: &Probe, p: &mut Vec<Write>) -> Result<()> {
    let Some(b) = r.block_io() else { return Ok(()) };
    if b.leaf_weight().is_some_and(|w| w != 0) {
        return Err(unsupported("blockIO.leafWeight"));
    }
    // BFQ takes blkio-style weights (1..=1000) as they are; io.weight needs converting.
    let bfq = (probe.has)("io.bfq.weight");
    let conv = |w: u16| {
        if bfq {
            u64::from(w)
        } else {
            res::blkio_weight_to_io_weight(w)
        }
    };
    let wfile = if bfq { "io.bfq.weight" } else { "io.weight" };
    // 0 means "not set" (dockerd sends it that way), as runc treats it.
    if let Some(w) = b.weight().filter(|&w| w != 0) {
        res::check_blkio_weight("blockIO.weight", w)?;
        p.push(Write::new("blockIO.weight", wfile, conv(w)));
    }
    for (i, d) in b.weight_device().iter().flatten().enumerate() {
        let field = format!("blockIO.weightDevice[{i}]");
        let dev = res::devnum(&field, d.major(), d.minor())?;
        if d.leaf_weight().is_some() {
            return Err(unsupported(&format!("{field}.leafWeight")));
        }
        if let Some(w) = d.weight() {
            res::check_blkio_weight(&field, w)?;
            p.push(Write::new(
                "blockIO.weightDevice",
                wfile,
                format!("{dev} {}", conv(w)),
            ));
        }
    }
    for (field, _, key, list) in res::throttles(b) {
        for (i, t) in list.iter().flatten().enumerate() {
            let dev = res::devnum(&format!("{field}[{i}]"), t.major(), t.minor())?;
            // A rate of 0 removes the limit on v1; v2 spells that "max".
            let rate = if t.rate() == 0 {
                "max".to_string()
            } else {
                t.rate().to_string()
            };
            p.push(Write::new(field, "io.max", format!("{dev} {key}={rate}")));
        }
    }
    Ok(())
}

/// Writes `+ctrl` for every available controller into each ancestor's
/// cgroup.subtree_control, from just below `mount` down to `dir`'s parent, so the
/// container's directory gets the controllers. A controller the kernel refuses to delegate
/// (e.g. cpu with realtime tasks) is skipped; writing it later reports the missing file.
pub(crate) fn enable_controllers(mount: &Path, dir: &Path) -> Result<()> {
    let Some(rel) = dir.parent().and_then(|p| p.strip_prefix(mount).ok()) else {
        return Ok(());
    };
    let mut cur = mount.to_path_buf();
    enable_all(&cur)?;
    for c in rel.components() {
        cur.push(c);
        enable_all(&cur)?;
    }
    Ok(())
}

fn enable_all(dir: &Path) -> Result<()> {
    let avail = fsutil::read_string(&dir.join("cgroup.controllers"))?;
    let enabled = fsutil::read_string(&dir.join("cgroup.subtree_control"))?;
    for ctrl in avail.split_whitespace() {
        if !enabled.split_whitespace().any(|e| e == ctrl) {
            // One at a time: one refusal must not block the others.
            let _ = fsutil::write_file(
                dir,
                "cgroup.subtree_control",
                &format!("+{ctrl}"),
                "controllers",
            );
        }
    }
    Ok(())
}

/// Statistics from one v2 directory; files of controllers that are not enabled are skipped.
pub(crate) fn stats(dir: &Path) -> Result<Stats> {
    let mut s = Stats::default();
    let cpu_stat = dir.join("cpu.stat");
    if cpu_stat.exists() {
        for (k, v) in fsutil::read_keyed(&cpu_stat)? {
            match k.as_str() {
                "usage_usec" => s.cpu.usage.total = v * 1000,
                "user_usec" => s.cpu.usage.user = v * 1000,
                "system_usec" => s.cpu.usage.kernel = v * 1000,
                "nr_periods" => s.cpu.throttling.periods = v,
                "nr_throttled" => s.cpu.throttling.throttled_periods = v,
                "throttled_usec" => s.cpu.throttling.throttled_time = v * 1000,
                _ => {}
            }
        }
    }
    if dir.join("memory.current").exists() {
        let usage = fsutil::read_u64(&dir.join("memory.current"))?;
        s.memory.usage = stats::MemoryEntry {
            usage,
            limit: fsutil::read_u64(&dir.join("memory.max"))?,
            max: fsutil::read_u64_opt(&dir.join("memory.peak"))?.unwrap_or(0),
            failcnt: fsutil::keyed_value(&dir.join("memory.events"), "max")?.unwrap_or(0),
        };
        // runc reports v2 swap as memory+swap, like v1's memsw.
        if let Some(sw) = fsutil::read_u64_opt(&dir.join("memory.swap.current"))? {
            let max = fsutil::read_u64(&dir.join("memory.swap.max"))?;
            s.memory.swap = stats::MemoryEntry {
                usage: sw + usage,
                limit: if max == u64::MAX {
                    max
                } else {
                    max.saturating_add(s.memory.usage.limit)
                },
                ..Default::default()
            };
        }
        s.memory.raw = fsutil::read_keyed(&dir.join("memory.stat"))?
            .into_iter()
            .collect();
        s.memory.cache = s.memory.raw.get("file").copied().unwrap_or(0);
    }
    if dir.join("pids.current").exists() {
        s.pids = stats::pids(dir)?;
    }
    let io_stat = dir.join("io.stat");
    if io_stat.exists() {
        let text = fsutil::read_string(&io_stat)?;
        for line in text.lines() {
            let mut f = line.split_whitespace();
            let Some((maj, min)) = f.next().and_then(|d| d.split_once(':')) else {
                continue;
            };
            let (major, minor) = (
                fsutil::parse_u64(&io_stat, maj)?,
                fsutil::parse_u64(&io_stat, min)?,
            );
            for kv in f {
                let Some((k, v)) = kv.split_once('=') else {
                    continue;
                };
                let value = fsutil::parse_u64(&io_stat, v)?;
                let (list, op) = match k {
                    "rbytes" => (&mut s.blkio.io_service_bytes_recursive, "Read"),
                    "wbytes" => (&mut s.blkio.io_service_bytes_recursive, "Write"),
                    "rios" => (&mut s.blkio.io_serviced_recursive, "Read"),
                    "wios" => (&mut s.blkio.io_serviced_recursive, "Write"),
                    _ => continue,
                };
                list.push(BlkioEntry {
                    major,
                    minor,
                    op: op.into(),
                    value,
                });
            }
        }
    }
    for size in stats::hugepage_sizes() {
        let cur = dir.join(format!("hugetlb.{size}.current"));
        if cur.exists() {
            s.hugetlb.insert(
                size.clone(),
                stats::Hugetlb {
                    usage: fsutil::read_u64(&cur)?,
                    max: 0,
                    failcnt: fsutil::keyed_value(
                        &dir.join(format!("hugetlb.{size}.events")),
                        "max",
                    )?
                    .unwrap_or(0),
                },
            );
        }
    }
    Ok(s)
}
