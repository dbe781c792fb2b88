use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use berth_runtime::Runtime;
use serde_json::{json, Value};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// JSON file with a linux.resources object ("-" for stdin); flags below override it.
    #[arg(long, short = 'r')]
    pub resources: Option<PathBuf>,
    /// Memory limit in bytes.
    #[arg(long)]
    pub memory: Option<i64>,
    /// Memory reservation (soft limit) in bytes.
    #[arg(long)]
    pub memory_reservation: Option<i64>,
    /// Memory plus swap limit in bytes (-1: unlimited).
    #[arg(long)]
    pub memory_swap: Option<i64>,
    /// Relative CPU weight (shares).
    #[arg(long)]
    pub cpu_shares: Option<u64>,
    /// CFS quota in microseconds per period.
    #[arg(long)]
    pub cpu_quota: Option<i64>,
    /// CFS period in microseconds.
    #[arg(long)]
    pub cpu_period: Option<u64>,
    /// CPUs the container may use (e.g. 0-1).
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes the container may use.
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    /// Maximum number of processes.
    #[arg(long)]
    pub pids_limit: Option<i64>,
    /// Block I/O weight (10-1000).
    #[arg(long)]
    pub blkio_weight: Option<u16>,
    /// Container ID.
    pub id: String,
}

fn set(v: &mut Value, section: &str, key: &str, value: Option<Value>) {
    if let Some(value) = value {
        if !v[section].is_object() {
            v[section] = json!({});
        }
        v[section][key] = value;
    }
}

pub fn run(rt: &Runtime, a: &Args) -> anyhow::Result<u8> {
    let mut v: Value = match &a.resources {
        Some(p) if p.as_os_str() == "-" => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            serde_json::from_str(&s).context("--resources from stdin")?
        }
        Some(p) => {
            serde_json::from_slice(&std::fs::read(p).with_context(|| p.display().to_string())?)
                .with_context(|| p.display().to_string())?
        }
        None => json!({}),
    };
    set(&mut v, "memory", "limit", a.memory.map(|x| json!(x)));
    set(
        &mut v,
        "memory",
        "reservation",
        a.memory_reservation.map(|x| json!(x)),
    );
    set(&mut v, "memory", "swap", a.memory_swap.map(|x| json!(x)));
    set(&mut v, "cpu", "shares", a.cpu_shares.map(|x| json!(x)));
    set(&mut v, "cpu", "quota", a.cpu_quota.map(|x| json!(x)));
    set(&mut v, "cpu", "period", a.cpu_period.map(|x| json!(x)));
    set(
        &mut v,
        "cpu",
        "cpus",
        a.cpuset_cpus.clone().map(|x| json!(x)),
    );
    set(
        &mut v,
        "cpu",
        "mems",
        a.cpuset_mems.clone().map(|x| json!(x)),
    );
    set(&mut v, "pids", "limit", a.pids_limit.map(|x| json!(x)));
    set(
        &mut v,
        "blockIO",
        "weight",
        a.blkio_weight.map(|x| json!(x)),
    );
    let resources =
        serde_json::from_value(v).map_err(|e| anyhow::anyhow!("update: resources: {e}"))?;
    rt.update(&a.id, &resources)?;
    Ok(0)
}
