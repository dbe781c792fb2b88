//! Turning `LinuxResources` into ordered control-file writes: the conversions and checks
//! shared by v1 and v2, and the per-hierarchy plans.

use crate::error::{Error, Result};
use crate::fsutil::Write;
use oci_spec::runtime::{LinuxResources, LinuxThrottleDevice};

/// What a plan may need to know about the target cgroup before deciding what to write.
pub(crate) struct Probe<'a> {
    /// Does this control file exist (for files that depend on kernel config)?
    pub has: &'a dyn Fn(&str) -> bool,
    /// Current memory limit in bytes (v1 `memory.limit_in_bytes`), if readable.
    pub mem_limit: Option<u64>,
    /// Current v1 `devices.list`, to write only the difference to the new rules.
    pub devices_list: Option<String>,
}

pub(crate) fn invalid(field: &str, reason: impl Into<String>) -> Error {
    Error::InvalidValue {
        field: field.to_string(),
        reason: reason.into(),
    }
}

/// cpu.shares (2..=262144) -> cpu.weight (1..=10000), runc/crun's linear mapping.
pub fn shares_to_weight(shares: u64) -> u64 {
    1 + ((shares - 2) * 9999) / 262142
}

/// blkio.weight (10..=1000) -> io.weight (1..=10000), as crun and runc convert.
pub fn blkio_weight_to_io_weight(w: u16) -> u64 {
    1 + (u64::from(w) - 10) * 9999 / 990
}

pub(crate) fn check_shares(shares: u64) -> Result<()> {
    if !(2..=262144).contains(&shares) {
        return Err(invalid(
            "cpu.shares",
            format!("{shares} is outside 2..=262144"),
        ));
    }
    Ok(())
}

pub(crate) fn check_blkio_weight(field: &str, w: u16) -> Result<()> {
    if !(10..=1000).contains(&w) {
        return Err(invalid(field, format!("{w} is outside 10..=1000")));
    }
    Ok(())
}

/// Memory byte values: -1 means unlimited, 0 means "not set" (runc), other negatives are
/// errors. Returns None for "not set".
pub(crate) fn mem_value(field: &str, v: Option<i64>) -> Result<Option<i64>> {
    match v {
        None | Some(0) => Ok(None),
        Some(v) if v < -1 => Err(invalid(
            field,
            format!("{v} is negative (use -1 for unlimited)"),
        )),
        Some(v) => Ok(Some(v)),
    }
}

/// How a memory value is written: -1 is `max` on v2 and `-1` on v1.
pub(crate) fn mem_str(v: i64, v2: bool) -> String {
    if v == -1 && v2 {
        "max".into()
    } else {
        v.to_string()
    }
}

/// OCI `memory.swap` is memory+swap; v2 `memory.swap.max` is swap alone.
pub fn swap_v2(swap: i64, limit: Option<i64>) -> Result<i64> {
    if swap == -1 {
        return Ok(-1);
    }
    match limit {
        None | Some(-1) => Err(invalid(
            "memory.swap",
            "a swap limit needs a memory limit (memory.limit)",
        )),
        Some(l) if swap < l => Err(invalid(
            "memory.swap",
            format!("memory+swap {swap} must be >= memory.limit {l}"),
        )),
        Some(l) => Ok(swap - l),
    }
}

/// Checks a hugepage size string such as `2MB` or `1GB` (it becomes part of a file name).
pub(crate) fn check_pagesize(i: usize, size: &str) -> Result<()> {
    let digits = size.trim_end_matches(['K', 'M', 'G', 'B']);
    let unit = &size[digits.len()..];
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || !matches!(unit, "KB" | "MB" | "GB")
    {
        return Err(invalid(
            &format!("hugepageLimits[{i}].pageSize"),
            format!("{size:?} is not like 2MB or 1GB"),
        ));
    }
    Ok(())
}

/// The `maj:min` prefix of a per-device line.
pub(crate) fn devnum(field: &str, major: i64, minor: i64) -> Result<String> {
    if major < 0 || minor < 0 || major > u32::MAX as i64 || minor > u32::MAX as i64 {
        return Err(invalid(
            field,
            format!("{major}:{minor} is not a device number"),
        ));
    }
    Ok(format!("{major}:{minor}"))
}

/// The throttle lists with their OCI field names and v1 file / v2 io.max key.
pub(crate) fn throttles(
    r: &oci_spec::runtime::LinuxBlockIo,
) -> [(
    &'static str,
    &'static str,
    &'static str,
    &Option<Vec<LinuxThrottleDevice>>,
); 4] {
    [
        (
            "blockIO.throttleReadBpsDevice",
            "blkio.throttle.read_bps_device",
            "rbps",
            r.throttle_read_bps_device(),
        ),
        (
            "blockIO.throttleWriteBpsDevice",
            "blkio.throttle.write_bps_device",
            "wbps",
            r.throttle_write_bps_device(),
        ),
        (
            "blockIO.throttleReadIOPSDevice",
            "blkio.throttle.read_iops_device",
            "riops",
            r.throttle_read_iops_device(),
        ),
        (
            "blockIO.throttleWriteIOPSDevice",
            "blkio.throttle.write_iops_device",
            "wiops",
            r.throttle_write_iops_device(),
        ),
    ]
}

/// `rdma.max` lines (same format on v1 and v2), sorted by device for a stable order.
pub(crate) fn rdma_writes(r: &LinuxResources) -> Vec<Write> {
    let Some(rdma) = r.rdma() else {
        return Vec::new();
    };
    let mut devs: Vec<_> = rdma.iter().collect();
    devs.sort_by(|a, b| a.0.cmp(b.0));
    devs.into_iter()
        .filter_map(|(dev, lim)| {
            let mut line = dev.clone();
            if let Some(h) = lim.hca_handles() {
                line += &format!(" hca_handle={h}");
            }
            if let Some(o) = lim.hca_objects() {
                line += &format!(" hca_object={o}");
            }
            (line.len() > dev.len()).then(|| Write::new("rdma", "rdma.max", line))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_match_runc_and_crun() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262144), 10000);
        assert_eq!(blkio_weight_to_io_weight(10), 1);
        assert_eq!(blkio_weight_to_io_weight(500), 4950);
        assert_eq!(blkio_weight_to_io_weight(1000), 10000);
        assert_eq!(swap_v2(-1, Some(100)).unwrap(), -1);
        assert_eq!(swap_v2(300, Some(100)).unwrap(), 200);
        assert_eq!(swap_v2(100, Some(100)).unwrap(), 0);
        assert!(swap_v2(50, Some(100))
            .unwrap_err()
            .to_string()
            .starts_with("memory.swap:"));
        assert!(swap_v2(50, None).is_err());
    }

    #[test]
    fn value_checks() {
        assert!(check_shares(1).is_err());
        assert!(check_shares(262145).is_err());
        check_shares(2).unwrap();
        assert!(check_blkio_weight("blockIO.weight", 5).is_err());
        check_pagesize(0, "2MB").unwrap();
        check_pagesize(0, "1GB").unwrap();
        for bad in ["2mb", "MB", "2M", "../x", "2MB/"] {
            assert!(check_pagesize(3, bad)
                .unwrap_err()
                .to_string()
                .starts_with("hugepageLimits[3].pageSize"));
        }
        assert_eq!(mem_value("memory.limit", Some(0)).unwrap(), None);
        assert!(mem_value("memory.limit", Some(-2)).is_err());
        assert!(devnum("x", -1, 0).is_err());
    }
}
