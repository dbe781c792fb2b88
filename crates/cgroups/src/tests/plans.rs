//! Write order and validation of the v1/v2 plans (pure: no files involved).

use crate::resources::Probe;
use crate::{v1, v2};
use oci_spec::runtime::*;

fn has_only(files: &'static [&'static str]) -> impl Fn(&str) -> bool {
    move |f: &str| files.contains(&f)
}

fn files(plan: &[crate::fsutil::Write]) -> Vec<(&str, &str)> {
    plan.iter()
        .map(|w| (w.file.as_str(), w.value.as_str()))
        .collect()
}

fn mem(limit: i64, swap: Option<i64>) -> LinuxResources {
    let mut m = LinuxMemoryBuilder::default().limit(limit);
    if let Some(s) = swap {
        m = m.swap(s);
    }
    LinuxResourcesBuilder::default()
        .memory(m.build().unwrap())
        .build()
        .unwrap()
}

#[test]
fn v1_memsw_written_first_when_raising() {
    let has = has_only(&["memory.memsw.limit_in_bytes"]);
    // Current limit 100 MiB, raising both to 200/300: memsw first or the kernel refuses
    // limit > memsw.
    let raise = v1::plan(
        &mem(200 << 20, Some(300 << 20)),
        &Probe {
            has: &has,
            mem_limit: Some(100 << 20),
            devices_list: None,
        },
    )
    .unwrap();
    assert_eq!(
        files(&raise),
        vec![
            ("memory.memsw.limit_in_bytes", "314572800"),
            ("memory.limit_in_bytes", "209715200")
        ]
    );
    // Lowering below the current limit: limit first.
    let lower = v1::plan(
        &mem(50 << 20, Some(60 << 20)),
        &Probe {
            has: &has,
            mem_limit: Some(100 << 20),
            devices_list: None,
        },
    )
    .unwrap();
    assert_eq!(files(&lower)[0].0, "memory.limit_in_bytes");
    // Unlimited memory with no swap value lifts memsw too, memsw first.
    let unl = v1::plan(
        &mem(-1, None),
        &Probe {
            has: &has,
            mem_limit: Some(100 << 20),
            devices_list: None,
        },
    )
    .unwrap();
    assert_eq!(
        files(&unl),
        vec![
            ("memory.memsw.limit_in_bytes", "-1"),
            ("memory.limit_in_bytes", "-1")
        ]
    );
    let e = v1::plan(
        &mem(100, Some(50)),
        &Probe {
            has: &has,
            mem_limit: None,
            devices_list: None,
        },
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "memory.swap: memory+swap 50 must be >= memory.limit 100"
    );
}

#[test]
fn v1_cpu_order_and_retry_marks() {
    let has = has_only(&[]);
    let r = LinuxResourcesBuilder::default()
        .cpu(
            LinuxCpuBuilder::default()
                .realtime_period(1_000_000u64)
                .realtime_runtime(5000)
                .shares(100u64)
                .period(50_000u64)
                .quota(-1)
                .cpus("0-1")
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let p = v1::plan(
        &r,
        &Probe {
            has: &has,
            mem_limit: None,
            devices_list: None,
        },
    )
    .unwrap();
    assert_eq!(
        files(&p),
        vec![
            ("cpuset.cpus", "0-1"),
            ("cpu.rt_period_us", "1000000"),
            ("cpu.rt_runtime_us", "5000"),
            ("cpu.shares", "100"),
            ("cpu.cfs_period_us", "50000"),
            ("cpu.cfs_quota_us", "-1"),
        ]
    );
    let retry: Vec<&str> = p
        .iter()
        .filter(|w| w.retry_on_einval)
        .map(|w| w.file.as_str())
        .collect();
    assert_eq!(retry, vec!["cpu.rt_period_us", "cpu.cfs_period_us"]);
}

#[test]
fn v1_blkio_falls_back_to_bfq_and_devices_come_last() {
    let has = has_only(&["blkio.bfq.weight"]);
    let r = LinuxResourcesBuilder::default()
        .block_io(
            LinuxBlockIoBuilder::default()
                .weight(200u16)
                .build()
                .unwrap(),
        )
        .devices(vec![LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .access("rwm")
            .build()
            .unwrap()])
        .pids(LinuxPidsBuilder::default().limit(-1).build().unwrap())
        .build()
        .unwrap();
    let p = v1::plan(
        &r,
        &Probe {
            has: &has,
            mem_limit: None,
            devices_list: None,
        },
    )
    .unwrap();
    assert_eq!(
        files(&p),
        vec![
            ("pids.max", "max"),
            ("blkio.bfq.weight", "200"),
            ("devices.deny", "a")
        ]
    );
}

#[test]
fn v2_refuses_what_it_cannot_express() {
    let has = has_only(&[]);
    let pr = Probe {
        has: &has,
        mem_limit: None,
        devices_list: None,
    };
    let cases: Vec<(LinuxResources, &str)> = vec![
        (
            LinuxResourcesBuilder::default()
                .cpu(
                    LinuxCpuBuilder::default()
                        .realtime_runtime(10)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
            "cpu.realtimeRuntime/realtimePeriod: not supported on cgroup v2",
        ),
        (
            LinuxResourcesBuilder::default()
                .memory(
                    LinuxMemoryBuilder::default()
                        .swappiness(5u64)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
            "memory.swappiness: not supported on cgroup v2",
        ),
        (
            LinuxResourcesBuilder::default()
                .network(
                    LinuxNetworkBuilder::default()
                        .class_id(1u32)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
            "network: not supported on cgroup v2",
        ),
        (
            LinuxResourcesBuilder::default()
                .cpu(LinuxCpuBuilder::default().shares(1u64).build().unwrap())
                .build()
                .unwrap(),
            "cpu.shares: 1 is outside 2..=262144",
        ),
        (
            mem(100, Some(50)),
            "memory.swap: memory+swap 50 must be >= memory.limit 100",
        ),
        (
            LinuxResourcesBuilder::default()
                .unified(std::collections::HashMap::from([(
                    "../x".to_string(),
                    "1".to_string(),
                )]))
                .build()
                .unwrap(),
            "unified[\"../x\"]: is not a control file name",
        ),
    ];
    for (r, want) in cases {
        assert_eq!(v2::plan(&r, &pr).unwrap_err().to_string(), want);
    }
}

#[test]
fn v2_swap_then_limit_and_cpu_max_forms() {
    let has = has_only(&[]);
    let pr = Probe {
        has: &has,
        mem_limit: None,
        devices_list: None,
    };
    assert_eq!(
        files(&v2::plan(&mem(-1, None), &pr).unwrap()),
        vec![("memory.swap.max", "max"), ("memory.max", "max")]
    );
    let period_only = LinuxResourcesBuilder::default()
        .cpu(
            LinuxCpuBuilder::default()
                .period(20_000u64)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    assert_eq!(
        files(&v2::plan(&period_only, &pr).unwrap()),
        vec![("cpu.max", "max 20000")]
    );
    let throttle = LinuxResourcesBuilder::default()
        .block_io(
            LinuxBlockIoBuilder::default()
                .throttle_write_iops_device(vec![LinuxThrottleDeviceBuilder::default()
                    .major(259)
                    .minor(1)
                    .rate(0u64)
                    .build()
                    .unwrap()])
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    assert_eq!(
        files(&v2::plan(&throttle, &pr).unwrap()),
        vec![("io.max", "259:1 wiops=max")]
    );
}
