//! ContainerStats / PodSandboxStats and the metrics RPCs: read from each container's
//! cgroup (berth-cgroups' stats, v1 or v2), its overlay upper directory (the writable
//! layer) and, for pods, the network devices of the pod's network namespace.
//!
//! CPU usage in nano-cores needs two samples: the server keeps the previous sample of
//! each container in memory (a cache; a restarted server reports 0 until the next call).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use crate::api;
use crate::error::Result;
use crate::meta::{now_nanos, Container, Pod};
use crate::Cri;

/// The previous CPU sample of each container: (timestamp ns, usage ns).
#[derive(Default)]
pub(crate) struct CpuSamples(Mutex<HashMap<String, (i64, u64)>>);

fn u64v(v: u64) -> Option<api::UInt64Value> {
    Some(api::UInt64Value { value: v })
}

/// Bytes and inodes under `dir`, not following symlinks nor leaving its filesystem.
fn disk_usage(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let Ok(root) = std::fs::symlink_metadata(dir) else {
        return (0, 0);
    };
    let (mut bytes, mut inodes) = (0u64, 0u64);
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            inodes += 1;
            bytes += m.blocks() * 512;
            if m.is_dir() && m.dev() == root.dev() {
                todo.push(e.path());
            }
        }
    }
    (bytes, inodes)
}

/// `/proc/<pid>/net/dev`: (name, rx bytes, rx errors, tx bytes, tx errors) per device.
fn net_devices(pid: i32) -> Vec<(String, u64, u64, u64, u64)> {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/dev")) else {
        return Vec::new();
    };
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let f: Vec<u64> = rest
                .split_whitespace()
                .map(|n| n.parse().unwrap_or(0))
                .collect();
            (f.len() >= 11).then(|| (name.trim().to_string(), f[0], f[2], f[8], f[10]))
        })
        .filter(|d| d.0 != "lo")
        .collect()
}

impl Cri {
    fn attributes(c: &Container) -> api::ContainerAttributes {
        api::ContainerAttributes {
            id: c.id.clone(),
            metadata: Some(api::ContainerMetadata {
                name: c.names.name.clone(),
                attempt: c.names.attempt,
            }),
            labels: c.labels.clone().into_iter().collect(),
            annotations: c.annotations.clone().into_iter().collect(),
        }
    }

    /// The stats of one container; the cgroup parts are absent once it has exited.
    fn stats_of(&self, c: &Container) -> api::ContainerStats {
        let ts = now_nanos();
        let (bytes, inodes) = disk_usage(
            &self
                .layout
                .images()
                .join("containers")
                .join(&c.id)
                .join("upper"),
        );
        let mut out = api::ContainerStats {
            attributes: Some(Self::attributes(c)),
            writable_layer: Some(api::FilesystemUsage {
                timestamp: ts,
                fs_id: Some(api::FilesystemIdentifier {
                    mountpoint: self.layout.images().display().to_string(),
                }),
                used_bytes: u64v(bytes),
                inodes_used: u64v(inodes),
            }),
            ..Default::default()
        };
        let Ok(s) = self.runtime.stats(&c.id) else {
            return out;
        };
        let total = s.cpu.usage.total;
        let nano_cores = {
            let mut prev = self.cpu_samples.0.lock().unwrap_or_else(|p| p.into_inner());
            let rate = match prev.get(&c.id) {
                Some(&(t0, u0)) if ts > t0 && total >= u0 => {
                    ((total - u0) as u128 * 1_000_000_000 / (ts - t0) as u128) as u64
                }
                _ => 0,
            };
            prev.insert(c.id.clone(), (ts, total));
            rate
        };
        out.cpu = Some(api::CpuUsage {
            timestamp: ts,
            usage_core_nano_seconds: u64v(total),
            usage_nano_cores: u64v(nano_cores),
        });
        // v1 reports hierarchical totals as total_*, v2 has only the plain keys.
        let raw = |k: &str| {
            s.memory
                .raw
                .get(&format!("total_{k}"))
                .or_else(|| s.memory.raw.get(k))
                .copied()
                .unwrap_or(0)
        };
        let usage = s.memory.usage.usage;
        // kubelet's working set: usage less the inactive page cache.
        let working_set = usage.saturating_sub(raw("inactive_file"));
        let limit = s.memory.usage.limit;
        let rss = if s.memory.raw.contains_key("anon") {
            raw("anon")
        } else {
            raw("rss")
        };
        out.memory = Some(api::MemoryUsage {
            timestamp: ts,
            working_set_bytes: u64v(working_set),
            // No limit reads as u64::MAX-ish on v1 and 0 on v2: then nothing is "available".
            available_bytes: (limit > 0 && limit < (1 << 62)).then(|| api::UInt64Value {
                value: limit.saturating_sub(working_set),
            }),
            usage_bytes: u64v(usage),
            rss_bytes: u64v(rss),
            page_faults: u64v(raw("pgfault")),
            major_page_faults: u64v(raw("pgmajfault")),
        });
        out.swap = Some(api::SwapUsage {
            timestamp: ts,
            swap_available_bytes: None,
            swap_usage_bytes: u64v(s.memory.swap.usage.saturating_sub(usage)),
        });
        out
    }

    fn container_matches(c: &Container, f: Option<&api::ContainerStatsFilter>) -> bool {
        f.is_none_or(|f| {
            c.id.starts_with(&f.id)
                && c.pod_id.starts_with(&f.pod_sandbox_id)
                && f.label_selector
                    .iter()
                    .all(|(k, v)| c.labels.get(k) == Some(v))
        })
    }

    pub fn container_stats(&self, id: &str) -> Result<api::ContainerStats> {
        let c = self.layout.container(id)?;
        Ok(self.stats_of(&c))
    }

    /// Stats of the running containers the filter selects (as containerd lists them).
    pub fn list_container_stats(
        &self,
        f: Option<&api::ContainerStatsFilter>,
    ) -> Result<Vec<api::ContainerStats>> {
        let mut out = Vec::new();
        for c in self.layout.containers()? {
            if Self::container_matches(&c, f)
                && self.observe(&c)?.state == api::ContainerState::ContainerRunning
            {
                out.push(self.stats_of(&c));
            }
        }
        Ok(out)
    }

    fn pod_stats_of(&self, p: &Pod, all: &[Container]) -> Result<api::PodSandboxStats> {
        let ts = now_nanos();
        let mut containers = Vec::new();
        let (mut cpu, mut ws, mut usage, mut rss, mut procs) = (0u64, 0u64, 0u64, 0u64, 0u64);
        let mut net_pid = None;
        for c in all.iter().filter(|c| c.pod_id == p.id) {
            let o = self.observe(c)?;
            if o.state != api::ContainerState::ContainerRunning {
                continue;
            }
            if o.pid > 0 {
                net_pid.get_or_insert(o.pid);
            }
            let s = self.stats_of(c);
            let v = |x: &Option<api::UInt64Value>| x.as_ref().map_or(0, |v| v.value);
            if let Some(c) = &s.cpu {
                cpu += v(&c.usage_core_nano_seconds);
            }
            if let Some(m) = &s.memory {
                ws += v(&m.working_set_bytes);
                usage += v(&m.usage_bytes);
                rss += v(&m.rss_bytes);
            }
            procs += self.runtime.pids(&c.id).map_or(0, |p| p.len() as u64);
            containers.push(s);
        }
        // The pod's devices, seen through a process inside its network namespace.
        let network = net_pid.filter(|_| p.netns.is_some()).map(|pid| {
            let mut devs = net_devices(pid)
                .into_iter()
                .map(|(name, rx, rxe, tx, txe)| api::NetworkInterfaceUsage {
                    name,
                    rx_bytes: u64v(rx),
                    rx_errors: u64v(rxe),
                    tx_bytes: u64v(tx),
                    tx_errors: u64v(txe),
                });
            let all: Vec<_> = devs.by_ref().collect();
            let (default, rest): (Vec<_>, Vec<_>) = all.into_iter().partition(|d| d.name == "eth0");
            api::NetworkUsage {
                timestamp: ts,
                default_interface: default.into_iter().next(),
                interfaces: rest,
            }
        });
        Ok(api::PodSandboxStats {
            attributes: Some(api::PodSandboxAttributes {
                id: p.id.clone(),
                metadata: Some(api::PodSandboxMetadata {
                    name: p.names.name.clone(),
                    uid: p.names.uid.clone(),
                    namespace: p.names.namespace.clone(),
                    attempt: p.names.attempt,
                }),
                labels: p.labels.clone().into_iter().collect(),
                annotations: p.annotations.clone().into_iter().collect(),
            }),
            linux: Some(api::LinuxPodSandboxStats {
                cpu: Some(api::CpuUsage {
                    timestamp: ts,
                    usage_core_nano_seconds: u64v(cpu),
                    usage_nano_cores: None,
                }),
                memory: Some(api::MemoryUsage {
                    timestamp: ts,
                    working_set_bytes: u64v(ws),
                    usage_bytes: u64v(usage),
                    rss_bytes: u64v(rss),
                    ..Default::default()
                }),
                network,
                process: Some(api::ProcessUsage {
                    timestamp: ts,
                    process_count: u64v(procs),
                }),
                containers,
            }),
            windows: None,
        })
    }

    pub fn pod_sandbox_stats(&self, id: &str) -> Result<api::PodSandboxStats> {
        let p = self.layout.pod(id)?;
        self.pod_stats_of(&p, &self.layout.containers()?)
    }

    pub fn list_pod_sandbox_stats(
        &self,
        f: Option<&api::PodSandboxStatsFilter>,
    ) -> Result<Vec<api::PodSandboxStats>> {
        let all = self.layout.containers()?;
        let mut out = Vec::new();
        for p in self.layout.pods()? {
            let keep = f.is_none_or(|f| {
                p.id.starts_with(&f.id)
                    && f.label_selector
                        .iter()
                        .all(|(k, v)| p.labels.get(k) == Some(v))
            });
            if keep && p.state == crate::meta::PodState::Ready {
                out.push(self.pod_stats_of(&p, &all)?);
            }
        }
        Ok(out)
    }
}

/// The metrics ListPodSandboxMetrics reports, as cAdvisor names them.
pub(crate) const METRICS: [(&str, &str, api::MetricType); 4] = [
    (
        "container_cpu_usage_seconds_total",
        "Cumulative cpu time consumed in seconds.",
        api::MetricType::Counter,
    ),
    (
        "container_memory_working_set_bytes",
        "Current working set in bytes.",
        api::MetricType::Gauge,
    ),
    (
        "container_memory_usage_bytes",
        "Current memory usage in bytes, including all memory regardless of when it was accessed.",
        api::MetricType::Gauge,
    ),
    (
        "container_fs_usage_bytes",
        "Number of bytes that are consumed by the container on this filesystem.",
        api::MetricType::Gauge,
    ),
];

/// Labels of every metric.
pub(crate) const METRIC_LABELS: [&str; 3] = ["container", "pod", "namespace"];

impl Cri {
    pub fn list_metric_descriptors(&self) -> Vec<api::MetricDescriptor> {
        METRICS
            .iter()
            .map(|(name, help, _)| api::MetricDescriptor {
                name: name.to_string(),
                help: help.to_string(),
                label_keys: METRIC_LABELS.iter().map(|s| s.to_string()).collect(),
            })
            .collect()
    }

    pub fn list_pod_sandbox_metrics(&self) -> Result<Vec<api::PodSandboxMetrics>> {
        let mut out = Vec::new();
        for ps in self.list_pod_sandbox_stats(None)? {
            let attrs = ps.attributes.unwrap_or_default();
            let md = attrs.metadata.unwrap_or_default();
            let mut pm = api::PodSandboxMetrics {
                pod_sandbox_id: attrs.id,
                ..Default::default()
            };
            for cs in ps.linux.map(|l| l.containers).unwrap_or_default() {
                let ca = cs.attributes.clone().unwrap_or_default();
                let name = ca.metadata.map(|m| m.name).unwrap_or_default();
                let v = |x: Option<&api::UInt64Value>| x.map_or(0, |v| v.value);
                let ts = cs.cpu.as_ref().map_or_else(now_nanos, |c| c.timestamp);
                let values = [
                    v(cs.cpu
                        .as_ref()
                        .and_then(|c| c.usage_core_nano_seconds.as_ref()))
                        / 1_000_000_000,
                    v(cs.memory
                        .as_ref()
                        .and_then(|m| m.working_set_bytes.as_ref())),
                    v(cs.memory.as_ref().and_then(|m| m.usage_bytes.as_ref())),
                    v(cs.writable_layer
                        .as_ref()
                        .and_then(|w| w.used_bytes.as_ref())),
                ];
                let metrics = METRICS
                    .iter()
                    .zip(values)
                    .map(|((n, _, t), value)| api::Metric {
                        name: n.to_string(),
                        timestamp: ts,
                        metric_type: *t as i32,
                        label_values: vec![name.clone(), md.name.clone(), md.namespace.clone()],
                        value: u64v(value),
                    })
                    .collect();
                pm.container_metrics.push(api::ContainerMetrics {
                    container_id: ca.id,
                    metrics,
                });
            }
            out.push(pm);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_usage_counts_files_and_dirs() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("sub/f"), vec![1u8; 10_000]).unwrap();
        std::os::unix::fs::symlink("/", d.path().join("escape")).unwrap();
        let (bytes, inodes) = disk_usage(d.path());
        assert_eq!(inodes, 3);
        assert!(bytes >= 10_000, "{bytes}");
        assert_eq!(disk_usage(&d.path().join("missing")), (0, 0));
    }

    #[test]
    fn net_dev_is_parsed() {
        let devs = net_devices(std::process::id() as i32);
        assert!(devs.iter().all(|d| d.0 != "lo"));
    }
}
