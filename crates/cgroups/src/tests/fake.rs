//! A fake cgroup tree in a temp dir: the control files each controller has, so plans can be
//! checked file by file without root. It cannot be confused with the real tree: it lives in
//! a directory named `berth-fake-cgroup-root*` and refuses to exist under /sys.

use crate::layout::{Layout, Mount};
use crate::manager::FsManager;
use crate::{resolve, CgroupConfig, Hierarchy, Manager};
use oci_spec::runtime::*;
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

const V1_FILES: &[(&str, &[(&str, &str)])] = &[
    (
        "cpuset",
        &[("cpuset.cpus", "0-1\n"), ("cpuset.mems", "0\n")],
    ),
    (
        "cpu",
        &[
            ("cpu.shares", "1024\n"),
            ("cpu.cfs_period_us", "100000\n"),
            ("cpu.cfs_quota_us", "-1\n"),
            ("cpu.cfs_burst_us", "0\n"),
            ("cpu.rt_period_us", "1000000\n"),
            ("cpu.rt_runtime_us", "0\n"),
            ("cpu.idle", "0\n"),
            (
                "cpu.stat",
                "nr_periods 4\nnr_throttled 2\nthrottled_time 900\n",
            ),
        ],
    ),
    (
        "cpuacct",
        &[
            ("cpuacct.usage", "5000\n"),
            ("cpuacct.usage_percpu", "3000 2000 \n"),
            ("cpuacct.stat", "user 3\nsystem 1\n"),
        ],
    ),
    (
        "memory",
        &[
            ("memory.limit_in_bytes", "9223372036854771712\n"),
            ("memory.memsw.limit_in_bytes", "9223372036854771712\n"),
            ("memory.soft_limit_in_bytes", "9223372036854771712\n"),
            ("memory.kmem.limit_in_bytes", "9223372036854771712\n"),
            ("memory.kmem.tcp.limit_in_bytes", "9223372036854771712\n"),
            ("memory.swappiness", "60\n"),
            ("memory.oom_control", "oom_kill_disable 0\nunder_oom 0\n"),
            ("memory.use_hierarchy", "1\n"),
            ("memory.usage_in_bytes", "4096\n"),
            ("memory.max_usage_in_bytes", "8192\n"),
            ("memory.failcnt", "3\n"),
            ("memory.stat", "cache 100\nrss 200\n"),
        ],
    ),
    ("pids", &[("pids.max", "max\n"), ("pids.current", "2\n")]),
    (
        "blkio",
        &[
            ("blkio.weight", "500\n"),
            ("blkio.leaf_weight", "500\n"),
            ("blkio.weight_device", ""),
            ("blkio.leaf_weight_device", ""),
            ("blkio.throttle.read_bps_device", ""),
            ("blkio.throttle.write_bps_device", ""),
            ("blkio.throttle.read_iops_device", ""),
            ("blkio.throttle.write_iops_device", ""),
            (
                "blkio.throttle.io_service_bytes_recursive",
                "8:0 Read 4096\n8:0 Write 0\nTotal 4096\n",
            ),
            (
                "blkio.throttle.io_serviced_recursive",
                "8:0 Read 1\nTotal 1\n",
            ),
        ],
    ),
    ("devices", &[("devices.allow", ""), ("devices.deny", "")]),
    ("freezer", &[("freezer.state", "THAWED\n")]),
    (
        "hugetlb",
        &[("hugetlb.2MB.limit_in_bytes", "9223372036854771712\n")],
    ),
    ("net_cls", &[("net_cls.classid", "0\n")]),
    ("net_prio", &[("net_prio.ifpriomap", "")]),
];

const V2_FILES: &[(&str, &str)] = &[
    ("cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma\n"),
    ("cgroup.subtree_control", ""),
    ("cgroup.freeze", "0\n"),
    ("cgroup.events", "populated 0\nfrozen 0\n"),
    ("cpu.weight", "100\n"),
    ("cpu.max", "max 100000\n"),
    ("cpu.max.burst", "0\n"),
    ("cpu.idle", "0\n"),
    ("cpu.stat", "usage_usec 7\nuser_usec 5\nsystem_usec 2\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\n"),
    ("cpuset.cpus", ""),
    ("cpuset.mems", ""),
    ("memory.max", "max\n"),
    ("memory.swap.max", "max\n"),
    ("memory.low", "0\n"),
    ("memory.high", "max\n"),
    ("memory.current", "4096\n"),
    ("memory.events", "low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\n"),
    ("memory.stat", "anon 10\nfile 20\n"),
    ("pids.max", "max\n"),
    ("pids.current", "1\n"),
    ("io.weight", "default 100\n"),
    ("io.max", ""),
    ("io.stat", "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n"),
    ("hugetlb.2MB.max", "max\n"),
    ("rdma.max", ""),
];

/// A temp dir shaped like /sys/fs/cgroup for one hierarchy type.
pub(crate) struct FakeCgroupRoot {
    dir: tempfile::TempDir,
    hierarchy: Hierarchy,
    /// v1 controllers left out of this fake (to test "controller missing").
    missing: Vec<&'static str>,
}

impl FakeCgroupRoot {
    pub fn new(hierarchy: Hierarchy) -> FakeCgroupRoot {
        Self::without(hierarchy, &[])
    }

    pub fn without(hierarchy: Hierarchy, missing: &[&'static str]) -> FakeCgroupRoot {
        let dir = tempfile::Builder::new()
            .prefix("berth-fake-cgroup-root")
            .tempdir()
            .unwrap();
        assert!(
            !dir.path().starts_with("/sys"),
            "a fake cgroup root must never live under /sys"
        );
        let fake = FakeCgroupRoot {
            dir,
            hierarchy,
            missing: missing.to_vec(),
        };
        for d in fake.hierarchy_roots() {
            fake.populate(&d);
        }
        fake
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    fn v1_controllers(
        &self,
    ) -> impl Iterator<Item = &(&'static str, &'static [(&'static str, &'static str)])> {
        V1_FILES.iter().filter(|(c, _)| !self.missing.contains(c))
    }

    fn hierarchy_roots(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = Vec::new();
        if self.hierarchy != Hierarchy::V2 {
            v.extend(self.v1_controllers().map(|(c, _)| self.path().join(c)));
        }
        match self.hierarchy {
            Hierarchy::V2 => v.push(self.path().to_path_buf()),
            Hierarchy::Hybrid => v.push(self.path().join("unified")),
            Hierarchy::V1 => {}
        }
        v
    }

    /// Creates `dir` (if needed) and the files the kernel would put in it.
    pub fn populate(&self, dir: &Path) {
        assert!(dir.starts_with(self.path()));
        fs::create_dir_all(dir).unwrap();
        let rel = dir.strip_prefix(self.path()).unwrap();
        let first = rel
            .components()
            .next()
            .map(|c| c.as_os_str().to_string_lossy().into_owned());
        let mut files: Vec<(&str, &str)> = vec![("cgroup.procs", "")];
        match (self.hierarchy, first.as_deref()) {
            (Hierarchy::V2, _) | (Hierarchy::Hybrid, Some("unified")) => {
                if self.hierarchy == Hierarchy::V2 {
                    files.extend_from_slice(V2_FILES);
                } else {
                    files.extend_from_slice(&[
                        ("cgroup.freeze", "0\n"),
                        ("cgroup.events", "frozen 0\n"),
                    ]);
                }
            }
            (_, Some(ctrl)) => {
                let (_, f) = V1_FILES.iter().find(|(c, _)| *c == ctrl).unwrap();
                files.extend_from_slice(f);
            }
            (_, None) => unreachable!("v1 fakes have no files at the top"),
        }
        for (name, content) in files {
            let p = dir.join(name);
            if !p.exists() {
                fs::write(p, content).unwrap();
            }
        }
    }

    /// A manager for `path` (None: the default /berth-<id>) in this fake tree.
    pub fn manager(&self, id: &str, path: Option<&str>) -> FsManager {
        let mount = |p: PathBuf| Mount {
            mountpoint: p,
            mount_root: "/".into(),
            own: "/".into(),
        };
        let mut v1 = BTreeMap::new();
        if self.hierarchy != Hierarchy::V2 {
            for (c, _) in self.v1_controllers() {
                v1.insert(c.to_string(), mount(self.path().join(c)));
            }
        }
        let unified = match self.hierarchy {
            Hierarchy::V2 => Some(mount(self.path().to_path_buf())),
            Hierarchy::Hybrid => Some(mount(self.path().join("unified"))),
            Hierarchy::V1 => None,
        };
        let layout = Layout {
            hierarchy: self.hierarchy,
            v1,
            unified,
        };
        let mut cfg = CgroupConfig::new(id, path.map(str::to_string));
        cfg.root = self.path().to_path_buf();
        FsManager::new(resolve(&cfg, &layout).unwrap())
    }

    /// Creates the cgroup and fills its directories like the kernel would.
    pub fn create(&self, m: &FsManager) {
        m.create().unwrap();
        for d in m.paths() {
            self.populate(&d);
        }
    }

    pub fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.path().join(rel))
            .unwrap()
            .trim()
            .to_string()
    }
}

fn full_resources() -> LinuxResources {
    LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(64 << 20)
                .swap(96 << 20)
                .reservation(32 << 20)
                .swappiness(10u64)
                .disable_oom_killer(true)
                .build()
                .unwrap(),
        )
        .cpu(
            LinuxCpuBuilder::default()
                .shares(512u64)
                .quota(50_000)
                .period(100_000u64)
                .burst(1000u64)
                .cpus("0")
                .mems("0")
                .build()
                .unwrap(),
        )
        .pids(LinuxPidsBuilder::default().limit(42).build().unwrap())
        .block_io(
            LinuxBlockIoBuilder::default()
                .weight(500u16)
                .weight_device(vec![LinuxWeightDeviceBuilder::default()
                    .major(8)
                    .minor(0)
                    .weight(300u16)
                    .build()
                    .unwrap()])
                .throttle_read_bps_device(vec![LinuxThrottleDeviceBuilder::default()
                    .major(8)
                    .minor(0)
                    .rate(1_048_576u64)
                    .build()
                    .unwrap()])
                .build()
                .unwrap(),
        )
        .hugepage_limits(vec![LinuxHugepageLimitBuilder::default()
            .page_size("2MB")
            .limit(4 << 21)
            .build()
            .unwrap()])
        .build()
        .unwrap()
}

#[test]
fn fake_root_is_not_under_sys() {
    let f = FakeCgroupRoot::new(Hierarchy::V1);
    assert!(f
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with("berth-fake-cgroup-root"));
    assert!(!f.path().starts_with("/sys"));
}

#[test]
fn default_and_explicit_paths() {
    let f = FakeCgroupRoot::new(Hierarchy::Hybrid);
    let m = f.manager("c1", None);
    let p = m.paths();
    assert!(p.contains(&f.path().join("memory/berth-c1")));
    assert!(p.contains(&f.path().join("unified/berth-c1")));
    let m = f.manager("c1", Some("/pods/p1/c1"));
    assert!(m.paths().contains(&f.path().join("cpu/pods/p1/c1")));
    let v2 = FakeCgroupRoot::new(Hierarchy::V2);
    assert_eq!(
        v2.manager("c1", Some("a/b")).paths(),
        vec![v2.path().join("a/b")]
    );
}

#[test]
fn v1_files_get_the_values() {
    let f = FakeCgroupRoot::new(Hierarchy::V1);
    let m = f.manager("c1", None);
    f.create(&m);
    m.apply(&full_resources()).unwrap();
    let r = |p: &str| f.read(p);
    assert_eq!(
        r("memory/berth-c1/memory.limit_in_bytes"),
        (64u64 << 20).to_string()
    );
    assert_eq!(
        r("memory/berth-c1/memory.memsw.limit_in_bytes"),
        (96u64 << 20).to_string()
    );
    assert_eq!(
        r("memory/berth-c1/memory.soft_limit_in_bytes"),
        (32u64 << 20).to_string()
    );
    assert_eq!(r("memory/berth-c1/memory.swappiness"), "10");
    assert_eq!(r("memory/berth-c1/memory.oom_control"), "1");
    assert_eq!(r("cpu/berth-c1/cpu.shares"), "512");
    assert_eq!(r("cpu/berth-c1/cpu.cfs_quota_us"), "50000");
    assert_eq!(r("cpu/berth-c1/cpu.cfs_period_us"), "100000");
    assert_eq!(r("cpu/berth-c1/cpu.cfs_burst_us"), "1000");
    assert_eq!(r("cpuset/berth-c1/cpuset.cpus"), "0");
    assert_eq!(r("pids/berth-c1/pids.max"), "42");
    assert_eq!(r("blkio/berth-c1/blkio.weight"), "500");
    assert_eq!(r("blkio/berth-c1/blkio.weight_device"), "8:0 300");
    assert_eq!(
        r("blkio/berth-c1/blkio.throttle.read_bps_device"),
        "8:0 1048576"
    );
    assert_eq!(
        r("hugetlb/berth-c1/hugetlb.2MB.limit_in_bytes"),
        (4u64 << 21).to_string()
    );
    // Nothing leaked into the hierarchy roots.
    assert_eq!(r("cpu/cpu.shares"), "1024");

    let net = LinuxResourcesBuilder::default()
        .network(
            LinuxNetworkBuilder::default()
                .class_id(0x100001u32)
                .priorities(vec![LinuxInterfacePriorityBuilder::default()
                    .name("eth0")
                    .priority(5u32)
                    .build()
                    .unwrap()])
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    m.update(&net).unwrap();
    assert_eq!(r("net_cls/berth-c1/net_cls.classid"), "1048577");
    assert_eq!(r("net_prio/berth-c1/net_prio.ifpriomap"), "eth0 5");
}

#[test]
fn v2_files_get_converted_values() {
    let f = FakeCgroupRoot::new(Hierarchy::V2);
    let m = f.manager("c1", None);
    f.create(&m);
    let mut r = full_resources();
    r.memory_mut()
        .as_mut()
        .unwrap()
        .set_swappiness(None)
        .set_disable_oom_killer(None);
    r.set_unified(Some(HashMap::from([(
        "memory.high".to_string(),
        "50000000".to_string(),
    )])));
    m.apply(&r).unwrap();
    let rd = |p: &str| f.read(&format!("berth-c1/{p}"));
    assert_eq!(rd("memory.max"), (64u64 << 20).to_string());
    assert_eq!(
        rd("memory.swap.max"),
        (32u64 << 20).to_string(),
        "swap - limit"
    );
    assert_eq!(rd("memory.low"), (32u64 << 20).to_string());
    assert_eq!(rd("cpu.weight"), crate::shares_to_weight(512).to_string());
    assert_eq!(rd("cpu.weight"), "20");
    assert_eq!(rd("cpu.max"), "50000 100000");
    assert_eq!(rd("cpu.max.burst"), "1000");
    assert_eq!(rd("cpuset.cpus"), "0");
    assert_eq!(rd("pids.max"), "42");
    assert_eq!(
        rd("io.weight"),
        format!("8:0 {}", crate::blkio_weight_to_io_weight(300)),
        "the last io.weight write is the device weight, converted"
    );
    assert_eq!(rd("io.max"), "8:0 rbps=1048576");
    assert_eq!(rd("hugetlb.2MB.max"), (4u64 << 21).to_string());
    assert_eq!(rd("memory.high"), "50000000");
    // A unified key naming no control file: the controller is off or the key is wrong.
    let bad = LinuxResourcesBuilder::default()
        .unified(HashMap::from([(
            "nosuch.file".to_string(),
            "1".to_string(),
        )]))
        .build()
        .unwrap();
    let e = m.update(&bad).unwrap_err().to_string();
    assert!(e.starts_with("unified: no /"), "{e}");
    assert!(
        e.ends_with(
            "berth-c1/nosuch.file (controller nosuch absent on this host or not enabled here)"
        ),
        "{e}"
    );
    // The ancestors delegated controllers down to the container.
    assert!(f.read("cgroup.subtree_control").starts_with('+'));
}

#[test]
fn v2_uses_bfq_weight_unconverted_when_present() {
    let f = FakeCgroupRoot::new(Hierarchy::V2);
    let m = f.manager("c1", None);
    f.create(&m);
    fs::write(f.path().join("berth-c1/io.bfq.weight"), "default 100\n").unwrap();
    let r = LinuxResourcesBuilder::default()
        .block_io(
            LinuxBlockIoBuilder::default()
                .weight(500u16)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    m.apply(&r).unwrap();
    assert_eq!(f.read("berth-c1/io.bfq.weight"), "500");
    assert_eq!(f.read("berth-c1/io.weight"), "default 100");
}

#[test]
fn unified_is_refused_on_v1_with_a_clear_error() {
    let f = FakeCgroupRoot::new(Hierarchy::Hybrid);
    let m = f.manager("c1", None);
    f.create(&m);
    let r = LinuxResourcesBuilder::default()
        .unified(HashMap::from([(
            "memory.high".to_string(),
            "1".to_string(),
        )]))
        .build()
        .unwrap();
    let e = m.apply(&r).unwrap_err();
    assert_eq!(e.to_string(), "unified: not supported on cgroup v1");
}

#[test]
fn missing_controller_names_field_and_file() {
    let f = FakeCgroupRoot::without(Hierarchy::V1, &["hugetlb"]);
    let m = f.manager("c1", Some("/a/b/c1"));
    f.create(&m);
    let e = m.apply(&full_resources()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "hugepageLimits: no hugetlb.2MB.limit_in_bytes (controller hugetlb absent on this host or not enabled here)"
    );
}

#[test]
fn v2_write_error_names_field_and_file() {
    let f = FakeCgroupRoot::new(Hierarchy::V2);
    let m = f.manager("c1", None);
    f.create(&m);
    // A directory where the control file should be makes the write fail like EINVAL would.
    fs::remove_file(f.path().join("berth-c1/pids.max")).unwrap();
    fs::create_dir(f.path().join("berth-c1/pids.max")).unwrap();
    let r = LinuxResourcesBuilder::default()
        .pids(LinuxPidsBuilder::default().limit(5).build().unwrap())
        .build()
        .unwrap();
    let e = m.update(&r).unwrap_err().to_string();
    assert!(e.starts_with("pids.limit: writing \"5\" to "), "{e}");
    assert!(e.contains("berth-c1/pids.max"), "{e}");
}

#[test]
fn create_failure_removes_what_it_made() {
    let f = FakeCgroupRoot::new(Hierarchy::V1);
    // A regular file where the memory hierarchy's "pool" dir would go makes mkdir fail.
    fs::write(f.path().join("memory/pool"), "").unwrap();
    let m = f.manager("c1", Some("/pool/c1"));
    let e = m.create().unwrap_err().to_string();
    assert!(e.starts_with("mkdir "), "{e}");
    for c in ["cpu", "cpuset", "pids", "blkio"] {
        assert!(
            !f.path().join(c).join("pool").exists(),
            "{c}/pool left behind"
        );
    }
}

#[test]
fn cpuset_is_seeded_from_the_parent() {
    let f = FakeCgroupRoot::new(Hierarchy::V1);
    for d in ["cpuset/pool", "cpuset/pool/c1"] {
        f.populate(&f.path().join(d));
        fs::write(f.path().join(d).join("cpuset.cpus"), "\n").unwrap();
        fs::write(f.path().join(d).join("cpuset.mems"), "").unwrap();
    }
    let m = f.manager("c1", Some("/pool/c1"));
    m.create().unwrap();
    assert_eq!(f.read("cpuset/pool/cpuset.cpus"), "0-1");
    assert_eq!(f.read("cpuset/pool/c1/cpuset.cpus"), "0-1");
    assert_eq!(f.read("cpuset/pool/c1/cpuset.mems"), "0");
}

#[test]
fn destroy_is_idempotent_and_keeps_preexisting_ancestors() {
    let f = FakeCgroupRoot::new(Hierarchy::Hybrid);
    fs::create_dir(f.path().join("memory/shared")).unwrap();
    let m = f.manager("c1", Some("/shared/mine/c1"));
    m.create().unwrap();
    // A nested cgroup made by the container itself.
    fs::create_dir(f.path().join("memory/shared/mine/c1/inner")).unwrap();
    // Reopen from stored state, as a later `berth delete` would.
    let json = serde_json::to_string(&m.state()).unwrap();
    let again = crate::manager_from_state(serde_json::from_str(&json).unwrap());
    again.destroy().unwrap();
    again.destroy().unwrap();
    assert!(!f.path().join("memory/shared/mine").exists());
    assert!(!f.path().join("unified/shared").exists());
    assert!(
        f.path().join("memory/shared").exists(),
        "existed before create"
    );
}

#[test]
fn stats_v1_and_v2_from_files() {
    let f = FakeCgroupRoot::new(Hierarchy::V1);
    let m = f.manager("c1", None);
    f.create(&m);
    let s = m.stats().unwrap();
    assert_eq!(s.cpu.usage.total, 5000);
    assert_eq!(s.cpu.usage.percpu, vec![3000, 2000]);
    assert_eq!(
        s.cpu.usage.user,
        3 * 1_000_000_000 / crate::stats::user_hz()
    );
    assert_eq!(s.cpu.throttling.throttled_periods, 2);
    assert_eq!(s.memory.usage.usage, 4096);
    assert_eq!(s.memory.usage.failcnt, 3);
    assert_eq!(s.memory.cache, 100);
    assert_eq!(s.pids.current, 2);
    assert_eq!(s.pids.limit, 0, "max reads as 0");
    assert_eq!(
        s.blkio.io_service_bytes_recursive.len(),
        2,
        "Total line skipped"
    );

    let f = FakeCgroupRoot::new(Hierarchy::V2);
    let m = f.manager("c1", None);
    f.create(&m);
    let s = m.stats().unwrap();
    assert_eq!(s.cpu.usage.total, 7000);
    assert_eq!(s.memory.usage.failcnt, 5);
    assert_eq!(s.memory.usage.limit, u64::MAX);
    assert_eq!(s.memory.cache, 20);
    assert_eq!(s.blkio.io_service_bytes_recursive[1].op, "Write");
    assert_eq!(s.blkio.io_service_bytes_recursive[1].value, 8192);
}
