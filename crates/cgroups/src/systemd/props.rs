//! `LinuxResources` -> the unit properties systemd knows, converted as runc converts them.
//! Pure logic: the D-Bus side (`bus`) turns each [`Prop`] into a variant.
//!
//! systemd writes these files itself and rewrites them whenever it re-applies the unit, so
//! they must agree with what the cgroupfs plan writes afterwards (the plan is still run in
//! full, as runc does: it covers what systemd has no property for, and exact values where
//! systemd rounds, e.g. CPUQuotaPerSecUSec to 10 ms).

use crate::error::Result;
use crate::resources::{self as res, invalid, mem_value};
use oci_spec::runtime::LinuxResources;

/// systemd's "infinity" for byte and count limits (UINT64_MAX).
pub(crate) const INFINITY: u64 = u64::MAX;
/// The CFS period systemd and the kernel assume when only a quota is given.
const DEFAULT_PERIOD_US: u64 = 100_000;

/// One property value, in the D-Bus type systemd expects for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Prop {
    /// `t`
    U64(u64),
    /// `b`
    Bool(bool),
    /// `s`
    Str(String),
    /// `au`
    U32s(Vec<u32>),
    /// `ay`
    Bytes(Vec<u8>),
}

pub(crate) type Props = Vec<(&'static str, Prop)>;

fn mem_prop(v: i64) -> u64 {
    if v == -1 {
        INFINITY
    } else {
        v as u64
    }
}

/// A cpuset list (`0-3,8`) as systemd's CPU bitmask: byte i bit j is CPU 8*i+j.
pub(crate) fn cpuset_to_mask(field: &str, list: &str) -> Result<Vec<u8>> {
    let mut mask: Vec<u8> = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a, b),
            None => (part, part),
        };
        let parse = |s: &str| {
            s.trim()
                .parse::<usize>()
                .map_err(|_| invalid(field, format!("{list:?} is not a list like 0-3,5")))
        };
        let (lo, hi) = (parse(lo)?, parse(hi)?);
        if lo > hi || hi >= 8192 {
            return Err(invalid(
                field,
                format!("range {part:?} in {list:?} is reversed or beyond 8191"),
            ));
        }
        for cpu in lo..=hi {
            if mask.len() <= cpu / 8 {
                mask.resize(cpu / 8 + 1, 0);
            }
            mask[cpu / 8] |= 1 << (cpu % 8);
        }
    }
    Ok(mask)
}

/// runc's CPUQuotaPerSecUSec: quota per second of wall time, rounded up to 10 ms (systemd
/// stores it as a whole percentage); a quota of -1 (or none) is infinity.
pub(crate) fn quota_per_sec(quota: Option<i64>, period: Option<u64>) -> u64 {
    match quota {
        Some(q) if q > 0 => {
            let period = period.filter(|&p| p != 0).unwrap_or(DEFAULT_PERIOD_US);
            let per_sec = (q as u64).saturating_mul(1_000_000) / period;
            per_sec.div_ceil(10_000) * 10_000
        }
        _ => INFINITY,
    }
}

/// The properties for `r`; only fields `r` sets appear (so an update changes only those).
/// Values are validated as the cgroupfs plan validates them.
pub(crate) fn resources(r: &LinuxResources) -> Result<Props> {
    let mut p: Props = Vec::new();
    if let Some(m) = r.memory() {
        let limit = mem_value("memory.limit", m.limit())?;
        if let Some(l) = limit {
            p.push(("MemoryMax", Prop::U64(mem_prop(l))));
        }
        if let Some(v) = mem_value("memory.reservation", m.reservation())? {
            p.push(("MemoryLow", Prop::U64(mem_prop(v))));
        }
        match (mem_value("memory.swap", m.swap())?, limit) {
            (Some(s), l) => {
                p.push(("MemorySwapMax", Prop::U64(mem_prop(res::swap_v2(s, l)?))));
            }
            (None, Some(-1)) => p.push(("MemorySwapMax", Prop::U64(INFINITY))),
            (None, _) => {}
        }
    }
    if let Some(c) = r.cpu() {
        if let Some(s) = c.shares().filter(|&s| s != 0) {
            res::check_shares(s)?;
            p.push(("CPUWeight", Prop::U64(res::shares_to_weight(s))));
        }
        let quota = c.quota().filter(|&q| q != 0);
        let period = c.period().filter(|&v| v != 0);
        if let Some(per) = period {
            p.push(("CPUQuotaPeriodUSec", Prop::U64(per)));
        }
        if quota.is_some() || period.is_some() {
            p.push((
                "CPUQuotaPerSecUSec",
                Prop::U64(quota_per_sec(quota, period)),
            ));
        }
        if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.trim().is_empty()) {
            p.push((
                "AllowedCPUs",
                Prop::Bytes(cpuset_to_mask("cpu.cpus", cpus)?),
            ));
        }
        if let Some(mems) = c.mems().as_deref().filter(|s| !s.trim().is_empty()) {
            p.push((
                "AllowedMemoryNodes",
                Prop::Bytes(cpuset_to_mask("cpu.mems", mems)?),
            ));
        }
    }
    if let Some(pids) = r.pids() {
        let v = if pids.limit() > 0 {
            pids.limit() as u64
        } else {
            INFINITY
        };
        p.push(("TasksMax", Prop::U64(v)));
    }
    if let Some(w) = r
        .block_io()
        .as_ref()
        .and_then(|b| b.weight())
        .filter(|&w| w != 0)
    {
        res::check_blkio_weight("blockIO.weight", w)?;
        p.push(("IOWeight", Prop::U64(res::blkio_weight_to_io_weight(w))));
    }
    if let Some(high) = r.unified().as_ref().and_then(|u| u.get("memory.high")) {
        let v = match high.trim() {
            "max" => INFINITY,
            n => n.parse::<u64>().map_err(|_| {
                invalid(
                    "unified[\"memory.high\"]",
                    format!("{n:?} is not bytes or max"),
                )
            })?,
        };
        p.push(("MemoryHigh", Prop::U64(v)));
    }
    Ok(p)
}

/// The properties of a new scope: what it is, where it goes, the pids it starts with, and
/// `r`'s limits. `Delegate` lets the container manage its own subtree (systemd enables
/// every controller for the scope and leaves the cgroup below it alone);
/// `DefaultDependencies=false` keeps the scope out of shutdown ordering, as runc does.
pub(crate) fn scope(
    slice: &str,
    description: String,
    pids: &[u32],
    r: Option<&LinuxResources>,
) -> Result<Props> {
    let mut p: Props = vec![
        ("Description", Prop::Str(description)),
        ("Slice", Prop::Str(slice.to_string())),
        ("Delegate", Prop::Bool(true)),
        ("DefaultDependencies", Prop::Bool(false)),
        ("PIDs", Prop::U32s(pids.to_vec())),
    ];
    if let Some(r) = r {
        p.extend(resources(r)?);
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(j: serde_json::Value) -> LinuxResources {
        serde_json::from_value(j).unwrap()
    }

    fn get<'a>(p: &'a Props, k: &str) -> Option<&'a Prop> {
        p.iter().find(|(n, _)| *n == k).map(|(_, v)| v)
    }

    #[test]
    fn cpu_masks_are_little_endian_bytes() {
        assert_eq!(cpuset_to_mask("cpu.cpus", "0").unwrap(), vec![1]);
        assert_eq!(
            cpuset_to_mask("cpu.cpus", "0-3,5").unwrap(),
            vec![0b10_1111]
        );
        assert_eq!(cpuset_to_mask("cpu.cpus", "9").unwrap(), vec![0, 0b10]);
        assert_eq!(cpuset_to_mask("cpu.cpus", "1,8-9").unwrap(), vec![2, 3]);
        for bad in ["a", "3-1", "1-", "99999"] {
            let e = cpuset_to_mask("cpu.cpus", bad).unwrap_err().to_string();
            assert!(e.starts_with("cpu.cpus:"), "{bad}: {e}");
        }
    }

    #[test]
    fn quota_rounds_up_to_ten_ms_like_runc() {
        assert_eq!(quota_per_sec(Some(20_000), Some(100_000)), 200_000);
        assert_eq!(quota_per_sec(Some(50_000), None), 500_000);
        // 1234 us per 100 ms = 12340 us/s -> 20000 (next 10 ms).
        assert_eq!(quota_per_sec(Some(1234), Some(100_000)), 20_000);
        assert_eq!(quota_per_sec(Some(-1), Some(100_000)), INFINITY);
        assert_eq!(quota_per_sec(None, Some(50_000)), INFINITY);
    }

    #[test]
    fn resources_map_to_runc_properties() {
        let r = res(serde_json::json!({
            "memory": {"limit": 67108864, "reservation": 1048576, "swap": 134217728},
            "cpu": {"shares": 512, "quota": 20000, "period": 100000, "cpus": "0-1", "mems": "0"},
            "pids": {"limit": 32},
            "blockIO": {"weight": 500},
            "unified": {"memory.high": "50331648"}
        }));
        let p = resources(&r).unwrap();
        assert_eq!(get(&p, "MemoryMax"), Some(&Prop::U64(67108864)));
        assert_eq!(get(&p, "MemoryLow"), Some(&Prop::U64(1048576)));
        assert_eq!(get(&p, "MemorySwapMax"), Some(&Prop::U64(67108864)));
        assert_eq!(get(&p, "CPUWeight"), Some(&Prop::U64(20)));
        assert_eq!(get(&p, "CPUQuotaPeriodUSec"), Some(&Prop::U64(100_000)));
        assert_eq!(get(&p, "CPUQuotaPerSecUSec"), Some(&Prop::U64(200_000)));
        assert_eq!(get(&p, "AllowedCPUs"), Some(&Prop::Bytes(vec![3])));
        assert_eq!(get(&p, "AllowedMemoryNodes"), Some(&Prop::Bytes(vec![1])));
        assert_eq!(get(&p, "TasksMax"), Some(&Prop::U64(32)));
        assert_eq!(get(&p, "IOWeight"), Some(&Prop::U64(4950)));
        assert_eq!(get(&p, "MemoryHigh"), Some(&Prop::U64(50331648)));

        let unl = resources(&res(serde_json::json!({
            "memory": {"limit": -1}, "pids": {"limit": -1}
        })))
        .unwrap();
        assert_eq!(get(&unl, "MemoryMax"), Some(&Prop::U64(INFINITY)));
        assert_eq!(get(&unl, "MemorySwapMax"), Some(&Prop::U64(INFINITY)));
        assert_eq!(get(&unl, "TasksMax"), Some(&Prop::U64(INFINITY)));

        // Only what is set: an update of the memory limit touches nothing else.
        let only = resources(&res(serde_json::json!({"memory": {"limit": 33554432}}))).unwrap();
        assert_eq!(only, vec![("MemoryMax", Prop::U64(33554432))]);
    }

    #[test]
    fn invalid_values_fail_like_the_plan() {
        for (j, field) in [
            (serde_json::json!({"cpu": {"shares": 1}}), "cpu.shares"),
            (
                serde_json::json!({"memory": {"limit": 100, "swap": 50}}),
                "memory.swap",
            ),
            (serde_json::json!({"memory": {"limit": -5}}), "memory.limit"),
            (
                serde_json::json!({"blockIO": {"weight": 5}}),
                "blockIO.weight",
            ),
            (serde_json::json!({"cpu": {"cpus": "x"}}), "cpu.cpus"),
        ] {
            let e = resources(&res(j)).unwrap_err().to_string();
            assert!(e.starts_with(field), "{field}: {e}");
        }
    }

    #[test]
    fn a_scope_is_delegated_and_has_its_pids() {
        let p = scope("system.slice", "berth container c1".into(), &[42], None).unwrap();
        assert_eq!(get(&p, "Delegate"), Some(&Prop::Bool(true)));
        assert_eq!(get(&p, "DefaultDependencies"), Some(&Prop::Bool(false)));
        assert_eq!(get(&p, "PIDs"), Some(&Prop::U32s(vec![42])));
        assert_eq!(get(&p, "Slice"), Some(&Prop::Str("system.slice".into())));
    }
}
