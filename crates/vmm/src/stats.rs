//! VM-exit accounting: how many exits of each kind, per device, and how long the VMM
//! spent handling them (from KVM_RUN returning to the next KVM_RUN).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// Why a vCPU left KVM_RUN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ExitKind {
    IoIn,
    IoOut,
    MmioRead,
    MmioWrite,
    Hlt,
    Shutdown,
    SystemEvent,
    /// KVM_RUN interrupted by a signal (a kick from another vCPU).
    Interrupted,
    FailEntry,
    InternalError,
    Other,
}

/// Count and VMM time for one (kind, target) pair.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExitCounter {
    pub count: u64,
    pub vmm_time: Duration,
}

/// Exits by kind and target (device name, or "-" for exits without one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExitStats {
    entries: BTreeMap<(ExitKind, String), ExitCounter>,
}

impl ExitStats {
    pub fn get(&self, kind: ExitKind, target: &str) -> Option<ExitCounter> {
        self.entries.get(&(kind, target.to_string())).copied()
    }

    /// Sum over all targets of one kind.
    pub fn kind_total(&self, kind: ExitKind) -> ExitCounter {
        self.entries.iter().filter(|((k, _), _)| *k == kind).fold(
            ExitCounter::default(),
            |mut acc, (_, c)| {
                acc.count += c.count;
                acc.vmm_time += c.vmm_time;
                acc
            },
        )
    }

    pub fn total(&self) -> ExitCounter {
        self.entries
            .values()
            .fold(ExitCounter::default(), |mut acc, c| {
                acc.count += c.count;
                acc.vmm_time += c.vmm_time;
                acc
            })
    }

    pub fn iter(&self) -> impl Iterator<Item = (ExitKind, &str, ExitCounter)> {
        self.entries.iter().map(|((k, t), c)| (*k, t.as_str(), *c))
    }

    pub(crate) fn add(&mut self, kind: ExitKind, target: &str, c: ExitCounter) {
        let e = self.entries.entry((kind, target.to_string())).or_default();
        e.count += c.count;
        e.vmm_time += c.vmm_time;
    }
}

impl fmt::Display for ExitStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<14} {:<22} {:>10} {:>12} {:>10}",
            "EXIT", "TARGET", "COUNT", "VMM TIME", "AVG"
        )?;
        let rows = self
            .iter()
            .chain(std::iter::once((ExitKind::Other, "TOTAL", self.total())));
        for (kind, target, c) in rows {
            let kind = if target == "TOTAL" {
                String::new()
            } else {
                format!("{kind:?}")
            };
            let avg = c
                .vmm_time
                .checked_div(c.count.max(1) as u32)
                .unwrap_or_default();
            writeln!(
                f,
                "{kind:<14} {target:<22} {:>10} {:>10.3}ms {:>8.1}us",
                c.count,
                c.vmm_time.as_secs_f64() * 1e3,
                avg.as_secs_f64() * 1e6
            )?;
        }
        Ok(())
    }
}

/// Per-vCPU recorder keyed by device index, so recording an exit does not allocate.
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    counts: std::collections::HashMap<(ExitKind, Option<usize>), ExitCounter>,
}

impl Recorder {
    pub(crate) fn record(&mut self, kind: ExitKind, dev: Option<usize>, t: Duration) {
        let e = self.counts.entry((kind, dev)).or_default();
        e.count += 1;
        e.vmm_time += t;
    }

    /// Folds this recorder into `stats`, naming devices with `name`.
    pub(crate) fn merge_into(
        &self,
        stats: &mut ExitStats,
        name: impl Fn(ExitKind, usize) -> String,
    ) {
        for (&(kind, dev), &c) in &self.counts {
            let target = dev.map_or_else(|| "-".to_string(), |d| name(kind, d));
            stats.add(kind, &target, c);
        }
    }
}
