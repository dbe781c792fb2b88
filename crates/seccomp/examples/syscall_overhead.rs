//! Per-syscall cost of seccomp filters: no filter vs berth's default profile vs the same
//! profile compiled by libseccomp (loaded with dlopen, as runc and crun would use it; skipped
//! when libseccomp.so.2 is missing).
//!
//! `cargo run --release -p berth-seccomp --example syscall_overhead [iterations]`
//!
//! Two calls are timed in a tight loop in a forked child per configuration:
//! - `getppid()`: allowed unconditionally. Since Linux 5.11 the kernel caches such
//!   verdicts per syscall number (SECCOMP_CACHE) and skips the filter entirely, so a good
//!   compiler should cost ~nothing here.
//! - `personality(0xffffffff)`: allowed by an argument rule, so the filter runs every time;
//!   this measures the program's dispatch (tree vs chain) and argument check.

use std::ffi::{c_char, c_int, c_void, CString};
use std::time::Instant;

use oci_spec::runtime::LinuxSeccomp;

#[derive(Clone, Copy)]
enum Setup {
    None,
    Berth,
    Libseccomp { optimize_tree: bool },
}

impl Setup {
    fn name(self) -> &'static str {
        match self {
            Setup::None => "no filter",
            Setup::Berth => "berth default profile",
            Setup::Libseccomp {
                optimize_tree: false,
            } => "libseccomp (runc's settings)",
            Setup::Libseccomp {
                optimize_tree: true,
            } => "libseccomp (binary tree opt.)",
        }
    }
}

fn main() {
    let iterations: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("iterations must be a number"))
        .unwrap_or(1_000_000);
    let profile = berth_seccomp::default_profile();
    let filter = berth_seccomp::compile(&profile).expect("default profile compiles");
    let have_libseccomp = Libseccomp::open().is_some();
    println!(
        "berth program: {} instructions; {iterations} calls per run, best of {ROUNDS} interleaved runs",
        filter.instructions().len()
    );

    let mut setups = vec![Setup::None, Setup::Berth];
    if have_libseccomp {
        setups.push(Setup::Libseccomp {
            optimize_tree: false,
        });
        setups.push(Setup::Libseccomp {
            optimize_tree: true,
        });
    } else {
        println!("libseccomp.so.2 not found: libseccomp rows skipped");
    }
    let calls: [(&str, i64, u64); 2] = [
        ("getppid()", libc::SYS_getppid, 0),
        (
            "personality(0xffffffff)",
            libc::SYS_personality,
            0xffff_ffff,
        ),
    ];
    println!(
        "{:<32} {:>24} {:>11} {:>8} {:>6}",
        "filter", "syscall", "ns/syscall", "vs none", "insns"
    );
    for (call, nr, arg) in calls {
        // Rounds interleave the setups so that load from other processes hits all alike;
        // the minimum over rounds is the least disturbed run.
        let mut best = vec![(f64::MAX, None); setups.len()];
        for _ in 0..ROUNDS {
            for (i, setup) in setups.iter().enumerate() {
                let (ns, insns) = measure(*setup, &filter, &profile, nr, arg, iterations);
                best[i] = (best[i].0.min(ns), insns);
            }
        }
        for (setup, (ns, insns)) in setups.iter().zip(&best) {
            println!(
                "{:<32} {:>24} {:>11.1} {:>7.2}x {:>6}",
                setup.name(),
                call,
                ns,
                ns / best[0].0,
                insns.map_or("-".to_string(), |n| n.to_string())
            );
        }
    }
}

const ROUNDS: usize = 7;

/// Forks a child that installs `setup` and times the loop; returns (ns per call, program size).
fn measure(
    setup: Setup,
    filter: &berth_seccomp::Filter,
    profile: &LinuxSeccomp,
    nr: i64,
    arg: u64,
    iterations: u64,
) -> (f64, Option<usize>) {
    let mut fds = [0; 2];
    // SAFETY: pipe fills the array; this example is single-threaded, so fork is safe.
    unsafe {
        assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
        let pid = libc::fork();
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let insns = match setup {
                Setup::None => 0,
                Setup::Berth => {
                    libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
                    filter.install().expect("install berth filter");
                    filter.instructions().len()
                }
                Setup::Libseccomp { optimize_tree } => Libseccomp::open()
                    .expect("libseccomp")
                    .load(profile, optimize_tree),
            };
            let start = Instant::now();
            for _ in 0..iterations {
                libc::syscall(nr, arg);
            }
            let report = [
                start.elapsed().as_nanos() as f64 / iterations as f64,
                insns as f64,
            ];
            libc::write(fds[1], report.as_ptr().cast(), 16);
            libc::_exit(0);
        }
        libc::close(fds[1]);
        let mut report = [0f64; 2];
        let n = libc::read(fds[0], report.as_mut_ptr().cast(), 16);
        libc::close(fds[0]);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
        assert_eq!(n, 16, "{} child failed", setup.name());
        let insns = (report[1] > 0.0).then_some(report[1] as usize);
        (report[0], insns)
    }
}

/// `struct scmp_arg_cmp` from <seccomp.h>.
#[repr(C)]
struct ScmpArgCmp {
    arg: u32,
    op: u32,
    datum_a: u64,
    datum_b: u64,
}

type InitFn = unsafe extern "C" fn(u32) -> *mut c_void;
type ArchAddFn = unsafe extern "C" fn(*mut c_void, u32) -> c_int;
type AttrSetFn = unsafe extern "C" fn(*mut c_void, c_int, u32) -> c_int;
type ResolveFn = unsafe extern "C" fn(*const c_char) -> c_int;
type RuleAddArrayFn =
    unsafe extern "C" fn(*mut c_void, u32, c_int, u32, *const ScmpArgCmp) -> c_int;
type ExportFn = unsafe extern "C" fn(*mut c_void, c_int) -> c_int;
type LoadFn = unsafe extern "C" fn(*mut c_void) -> c_int;

/// The few libseccomp entry points we need, resolved with dlopen (no link-time dependency).
struct Libseccomp {
    init: InitFn,
    arch_add: ArchAddFn,
    attr_set: AttrSetFn,
    resolve: ResolveFn,
    rule_add_array: RuleAddArrayFn,
    export_bpf: ExportFn,
    load: LoadFn,
}

/// Looks up `name` in `lib` as a function of type `F`.
///
/// # Safety
/// `F` must be the function pointer type matching the symbol's C signature.
unsafe fn sym<F: Copy>(lib: *mut c_void, name: &std::ffi::CStr) -> Option<F> {
    // SAFETY: dlsym with a valid handle and NUL-terminated name; the caller vouches for F.
    unsafe {
        let p = libc::dlsym(lib, name.as_ptr());
        (!p.is_null()).then(|| std::mem::transmute_copy::<*mut c_void, F>(&p))
    }
}

/// SCMP_FLTATR_CTL_OPTIMIZE (libseccomp >= 2.5): 2 selects the binary tree layout.
const SCMP_FLTATR_CTL_OPTIMIZE: c_int = 8;

impl Libseccomp {
    fn open() -> Option<Self> {
        // SAFETY: dlopen/dlsym with NUL-terminated names; each symbol is cast to the
        // signature documented in seccomp.h for libseccomp 2.5.
        unsafe {
            let lib = libc::dlopen(c"libseccomp.so.2".as_ptr(), libc::RTLD_NOW);
            if lib.is_null() {
                return None;
            }
            Some(Libseccomp {
                init: sym(lib, c"seccomp_init")?,
                arch_add: sym(lib, c"seccomp_arch_add")?,
                attr_set: sym(lib, c"seccomp_attr_set")?,
                resolve: sym(lib, c"seccomp_syscall_resolve_name")?,
                rule_add_array: sym(lib, c"seccomp_rule_add_array")?,
                export_bpf: sym(lib, c"seccomp_export_bpf")?,
                load: sym(lib, c"seccomp_load")?,
            })
        }
    }

    /// Builds the profile the way runc does (names resolved on the native arch, rules whose
    /// name libseccomp does not know skipped) and loads it; returns the program length.
    fn load(&self, profile: &LinuxSeccomp, optimize_tree: bool) -> usize {
        // SAFETY: calls into libseccomp with a context it created and valid pointers.
        unsafe {
            let default = profile.default_action().as_u32(profile.default_errno_ret());
            let ctx = (self.init)(default);
            assert!(!ctx.is_null(), "seccomp_init failed");
            if optimize_tree {
                assert_eq!((self.attr_set)(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2), 0);
            }
            for arch in profile.architectures().iter().flatten() {
                // -EEXIST for the native arch is expected.
                (self.arch_add)(ctx, *arch as u32);
            }
            for rule in profile.syscalls().iter().flatten() {
                let action = rule.action().as_u32(rule.errno_ret());
                let args: Vec<ScmpArgCmp> = rule
                    .args()
                    .iter()
                    .flatten()
                    .map(|a| ScmpArgCmp {
                        arg: a.index() as u32,
                        op: a.op() as u32,
                        datum_a: a.value(),
                        datum_b: a.value_two().unwrap_or(0),
                    })
                    .collect();
                for name in rule.names() {
                    let name = CString::new(name.as_str()).expect("syscall names have no NUL");
                    let nr = (self.resolve)(name.as_ptr());
                    if nr == -1 {
                        continue;
                    }
                    (self.rule_add_array)(ctx, action, nr, args.len() as u32, args.as_ptr());
                }
            }
            let memfd = libc::memfd_create(c"bpf".as_ptr(), 0);
            assert_eq!(
                (self.export_bpf)(ctx, memfd),
                0,
                "seccomp_export_bpf failed"
            );
            let len = libc::lseek(memfd, 0, libc::SEEK_END) as usize / 8;
            assert_eq!((self.load)(ctx), 0, "seccomp_load failed");
            len
        }
    }
}
