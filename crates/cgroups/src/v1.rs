//! cgroup v1: which files each `LinuxResources` field goes to, in which order, and where
//! the statistics come from. Each write's file prefix names its controller directory.

use crate::devices;
use crate::error::{Error, Result};
use crate::fsutil::{self, Write};
use crate::resources::{self as res, invalid, mem_str, mem_value, Probe};
use crate::stats::{self, BlkioEntry, Stats};
use oci_spec::runtime::LinuxResources;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The ordered writes for `r`. Order: cpuset, memory, cpu, pids, blkio, hugetlb, network,
/// rdma, devices.
pub(crate) fn plan(r: &LinuxResources, probe: &Probe) -> Result<Vec<Write>> {
    if r.unified().as_ref().is_some_and(|u| !u.is_empty()) {
        return Err(Error::Unsupported {
            field: "unified".into(),
            hierarchy: "v1",
        });
    }
    let mut p = Vec::new();
    if let Some(cpu) = r.cpu() {
        if let Some(c) = cpu.cpus() {
            p.push(Write::new("cpu.cpus", "cpuset.cpus", c));
        }
        if let Some(m) = cpu.mems() {
            p.push(Write::new("cpu.mems", "cpuset.mems", m));
        }
    }
    memory(r, probe, &mut p)?;
    cpu(r, &mut p)?;
    if let Some(pids) = r.pids() {
        let v = if pids.limit() > 0 {
            pids.limit().to_string()
        } else {
            "max".into()
        };
        p.push(Write::new("pids.limit", "pids.max", v));
    }
    blkio(r, probe, &mut p)?;
    for (i, h) in r.hugepage_limits().iter().flatten().enumerate() {
        res::check_pagesize(i, h.page_size())?;
        p.push(Write::new(
            "hugepageLimits",
            format!("hugetlb.{}.limit_in_bytes", h.page_size()),
            h.limit(),
        ));
    }
    if let Some(net) = r.network() {
        if let Some(id) = net.class_id() {
            p.push(Write::new("network.classID", "net_cls.classid", id));
        }
        for prio in net.priorities().iter().flatten() {
            p.push(Write::new(
                "network.priorities",
                "net_prio.ifpriomap",
                format!("{} {}", prio.name(), prio.priority()),
            ));
        }
    }
    p.extend(res::rdma_writes(r));
    if let Some(d) = r.devices() {
        let lines = devices::v1_writes(&devices::parse_rules(d)?);
        // Knowing the current list, write only the difference: re-applying a list that
        // starts with "deny all" would briefly deny everything to running processes.
        match &probe.devices_list {
            Some(cur) => p.extend(devices::v1_transition(cur, &lines)),
            None => p.extend(lines),
        }
    }
    Ok(p)
}

fn memory(r: &LinuxResources, probe: &Probe, p: &mut Vec<Write>) -> Result<()> {
    let Some(m) = r.memory() else { return Ok(()) };
    let limit = mem_value("memory.limit", m.limit())?;
    let mut swap = mem_value("memory.swap", m.swap())?;
    // Unlimited memory without an explicit swap value also lifts the memsw limit (runc).
    if limit == Some(-1) && swap.is_none() && (probe.has)("memory.memsw.limit_in_bytes") {
        swap = Some(-1);
    }
    if let (Some(l), Some(s)) = (limit, swap) {
        if l > 0 && s > 0 && s < l {
            return Err(invalid(
                "memory.swap",
                format!("memory+swap {s} must be >= memory.limit {l}"),
            ));
        }
    }
    let lw = limit.map(|l| Write::new("memory.limit", "memory.limit_in_bytes", mem_str(l, false)));
    let sw = swap.map(|s| {
        Write::new(
            "memory.swap",
            "memory.memsw.limit_in_bytes",
            mem_str(s, false),
        )
    });
    // The kernel keeps memsw >= limit at every step: when raising, write memsw first.
    let swap_first = match (limit, swap) {
        (Some(_), Some(s)) => s == -1 || probe.mem_limit.is_some_and(|cur| cur < s as u64),
        _ => false,
    };
    if swap_first {
        p.extend(sw);
        p.extend(lw);
    } else {
        p.extend(lw);
        p.extend(sw);
    }
    if let Some(v) = mem_value("memory.reservation", m.reservation())? {
        p.push(Write::new(
            "memory.reservation",
            "memory.soft_limit_in_bytes",
            v,
        ));
    }
    #[allow(deprecated)]
    if let Some(v) = mem_value("memory.kernel", m.kernel())? {
        p.push(Write::new("memory.kernel", "memory.kmem.limit_in_bytes", v));
    }
    if let Some(v) = mem_value("memory.kernelTCP", m.kernel_tcp())? {
        p.push(Write::new(
            "memory.kernelTCP",
            "memory.kmem.tcp.limit_in_bytes",
            v,
        ));
    }
    if let Some(s) = m.swappiness() {
        if s > 100 {
            return Err(invalid(
                "memory.swappiness",
                format!("{s} is outside 0..=100"),
            ));
        }
        p.push(Write::new("memory.swappiness", "memory.swappiness", s));
    }
    if let Some(d) = m.disable_oom_killer() {
        p.push(Write::new(
            "memory.disableOOMKiller",
            "memory.oom_control",
            u8::from(d),
        ));
    }
    if let Some(h) = m.use_hierarchy() {
        p.push(Write::new(
            "memory.useHierarchy",
            "memory.use_hierarchy",
            u8::from(h),
        ));
    }
    Ok(())
}

fn cpu(r: &LinuxResources, p: &mut Vec<Write>) -> Result<()> {
    let Some(c) = r.cpu() else { return Ok(()) };
    // rt period and runtime are checked against each other (and cfs period against
    // quota): if the first is rejected with EINVAL it is retried after the second.
    if let Some(v) = c.realtime_period().filter(|&v| v != 0) {
        let w = Write::new("cpu.realtimePeriod", "cpu.rt_period_us", v);
        p.push(if c.realtime_runtime().is_some() {
            w.retrying()
        } else {
            w
        });
    }
    if let Some(v) = c.realtime_runtime().filter(|&v| v != 0) {
        p.push(Write::new("cpu.realtimeRuntime", "cpu.rt_runtime_us", v));
    }
    if let Some(s) = c.shares().filter(|&s| s != 0) {
        res::check_shares(s)?;
        p.push(Write::new("cpu.shares", "cpu.shares", s));
    }
    if let Some(v) = c.period().filter(|&v| v != 0) {
        let w = Write::new("cpu.period", "cpu.cfs_period_us", v);
        p.push(if c.quota().is_some() { w.retrying() } else { w });
    }
    if let Some(q) = c.quota().filter(|&q| q != 0) {
        p.push(Write::new(
            "cpu.quota",
            "cpu.cfs_quota_us",
            if q < 0 { -1 } else { q },
        ));
    }
    if let Some(b) = c.burst() {
        p.push(Write::new("cpu.burst", "cpu.cfs_burst_us", b));
    }
    if let Some(i) = c.idle() {
        p.push(Write::new("cpu.idle", "cpu.idle", i));
    }
    Ok(())
}

fn blkio(r: &LinuxResources, probe: &Probe, p: &mut Vec<Write>) -> Result<()> {
    let Some(b) = r.block_io() else { return Ok(()) };
    // CFQ's blkio.weight is gone from modern kernels; BFQ exposes blkio.bfq.weight.
    let (wfile, wdev) = if !(probe.has)("blkio.weight") && (probe.has)("blkio.bfq.weight") {
        ("blkio.bfq.weight", "blkio.bfq.weight_device")
    } else {
        ("blkio.weight", "blkio.weight_device")
    };
    // 0 means "not set" (dockerd sends it that way), as runc treats it.
    if let Some(w) = b.weight().filter(|&w| w != 0) {
        res::check_blkio_weight("blockIO.weight", w)?;
        p.push(Write::new("blockIO.weight", wfile, w));
    }
    if let Some(w) = b.leaf_weight().filter(|&w| w != 0) {
        res::check_blkio_weight("blockIO.leafWeight", w)?;
        p.push(Write::new("blockIO.leafWeight", "blkio.leaf_weight", w));
    }
    for (i, d) in b.weight_device().iter().flatten().enumerate() {
        let field = format!("blockIO.weightDevice[{i}]");
        let dev = res::devnum(&field, d.major(), d.minor())?;
        if let Some(w) = d.weight() {
            res::check_blkio_weight(&field, w)?;
            p.push(Write::new(
                "blockIO.weightDevice",
                wdev,
                format!("{dev} {w}"),
            ));
        }
        if let Some(w) = d.leaf_weight() {
            res::check_blkio_weight(&field, w)?;
            p.push(Write::new(
                "blockIO.weightDevice",
                "blkio.leaf_weight_device",
                format!("{dev} {w}"),
            ));
        }
    }
    for (field, file, _, list) in res::throttles(b) {
        for (i, t) in list.iter().flatten().enumerate() {
            let dev = res::devnum(&format!("{field}[{i}]"), t.major(), t.minor())?;
            p.push(Write::new(field, file, format!("{dev} {}", t.rate())));
        }
    }
    Ok(())
}

/// Statistics from the v1 controller directories (controller name -> directory).
pub(crate) fn stats(dirs: &BTreeMap<String, PathBuf>) -> Result<Stats> {
    let mut s = Stats::default();
    if let Some(d) = dirs.get("cpuacct") {
        s.cpu.usage.total = fsutil::read_u64(&d.join("cpuacct.usage"))?;
        let percpu = fsutil::read_string(&d.join("cpuacct.usage_percpu"))?;
        s.cpu.usage.percpu = percpu
            .split_whitespace()
            .map(|v| fsutil::parse_u64(&d.join("cpuacct.usage_percpu"), v))
            .collect::<Result<_>>()?;
        // cpuacct.stat is in USER_HZ ticks.
        let tick_ns = 1_000_000_000 / stats::user_hz();
        for (k, v) in fsutil::read_keyed(&d.join("cpuacct.stat"))? {
            match k.as_str() {
                "user" => s.cpu.usage.user = v * tick_ns,
                "system" => s.cpu.usage.kernel = v * tick_ns,
                _ => {}
            }
        }
    }
    if let Some(d) = dirs.get("cpu") {
        for (k, v) in fsutil::read_keyed(&d.join("cpu.stat"))? {
            match k.as_str() {
                "nr_periods" => s.cpu.throttling.periods = v,
                "nr_throttled" => s.cpu.throttling.throttled_periods = v,
                "throttled_time" => s.cpu.throttling.throttled_time = v,
                _ => {}
            }
        }
    }
    if let Some(d) = dirs.get("memory") {
        let entry = |prefix: &str| -> Result<stats::MemoryEntry> {
            let f = |n: &str| d.join(format!("{prefix}.{n}"));
            Ok(stats::MemoryEntry {
                usage: fsutil::read_u64_opt(&f("usage_in_bytes"))?.unwrap_or(0),
                max: fsutil::read_u64_opt(&f("max_usage_in_bytes"))?.unwrap_or(0),
                failcnt: fsutil::read_u64_opt(&f("failcnt"))?.unwrap_or(0),
                limit: fsutil::read_u64_opt(&f("limit_in_bytes"))?.unwrap_or(0),
            })
        };
        s.memory.usage = entry("memory")?;
        s.memory.swap = entry("memory.memsw")?;
        s.memory.kernel = entry("memory.kmem")?;
        s.memory.kernel_tcp = entry("memory.kmem.tcp")?;
        s.memory.raw = fsutil::read_keyed(&d.join("memory.stat"))?
            .into_iter()
            .collect();
        s.memory.cache = s.memory.raw.get("cache").copied().unwrap_or(0);
    }
    if let Some(d) = dirs.get("pids") {
        s.pids = stats::pids(d)?;
    }
    if let Some(d) = dirs.get("blkio") {
        s.blkio.io_service_bytes_recursive =
            blkio_entries(&d.join("blkio.throttle.io_service_bytes_recursive"))?;
        s.blkio.io_serviced_recursive =
            blkio_entries(&d.join("blkio.throttle.io_serviced_recursive"))?;
    }
    if let Some(d) = dirs.get("hugetlb") {
        for size in stats::hugepage_sizes() {
            let f = |n: &str| d.join(format!("hugetlb.{size}.{n}"));
            if !f("usage_in_bytes").exists() {
                continue;
            }
            s.hugetlb.insert(
                size.clone(),
                stats::Hugetlb {
                    usage: fsutil::read_u64(&f("usage_in_bytes"))?,
                    max: fsutil::read_u64(&f("max_usage_in_bytes"))?,
                    failcnt: fsutil::read_u64(&f("failcnt"))?,
                },
            );
        }
    }
    Ok(s)
}

/// "8:0 Read 4096" lines; the trailing "Total N" line is skipped.
fn blkio_entries(path: &Path) -> Result<Vec<BlkioEntry>> {
    let text = fsutil::read_string(path)?;
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != 3 {
            continue;
        }
        let Some((maj, min)) = f[0].split_once(':') else {
            continue;
        };
        out.push(BlkioEntry {
            major: fsutil::parse_u64(path, maj)?,
            minor: fsutil::parse_u64(path, min)?,
            op: f[1].to_string(),
            value: fsutil::parse_u64(path, f[2])?,
        });
    }
    Ok(out)
}
