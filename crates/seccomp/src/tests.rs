//! Compiler tests: every program is checked like the kernel would and run in the BPF
//! interpreter; its verdicts are compared with a direct evaluation of the OCI profile.

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction as Act, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompOperator as Op, LinuxSyscall,
};
use proptest::prelude::*;

use crate::arch::{Target, AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT};
use crate::codegen::BPF_JA;
use crate::interp::{check, run, SeccompData};
use crate::policy::{action_ret, RET_ALLOW, RET_ERRNO, RET_KILL_PROCESS};
use crate::{compile, default_profile, default_profile_for, parse_profile, Error};

fn arg(index: usize, op: Op, value: u64, value_two: Option<u64>) -> LinuxSeccompArg {
    let b = LinuxSeccompArgBuilder::default()
        .index(index)
        .op(op)
        .value(value);
    match value_two {
        Some(v) => b.value_two(v),
        None => b,
    }
    .build()
    .unwrap()
}

fn rule(
    names: &[&str],
    action: Act,
    errno: Option<u32>,
    args: Vec<LinuxSeccompArg>,
) -> LinuxSyscall {
    let mut r = LinuxSyscall::default();
    r.set_names(names.iter().map(|n| n.to_string()).collect());
    r.set_action(action);
    r.set_errno_ret(errno);
    if !args.is_empty() {
        r.set_args(Some(args));
    }
    r
}

fn profile(default: Act, arches: &[Arch], rules: Vec<LinuxSyscall>) -> LinuxSeccomp {
    let mut p = LinuxSeccomp::default();
    p.set_default_action(default);
    if !arches.is_empty() {
        p.set_architectures(Some(arches.to_vec()));
    }
    p.set_syscalls(Some(rules));
    p.set_listener_path(Some("/run/agent.sock".into()));
    p
}

/// The verdict for `d`, computed straight from the OCI profile without the compiler's
/// normalisation: arch lookup, then the first matching conditional rule in profile order,
/// then the first unconditional rule, then the default.
fn reference(p: &LinuxSeccomp, d: &SeccompData) -> u32 {
    let default = action_ret(p.default_action(), p.default_errno_ret(), String::new).unwrap();
    let listed: Vec<Target> = match p.architectures().as_deref() {
        None | Some([]) => vec![Target::X86_64],
        Some(l) => l.iter().map(|a| Target::from_oci(*a).unwrap()).collect(),
    };
    let target = match d.arch {
        // -1 (a tracer skipping the call) is neither x86_64 nor x32: the default applies.
        AUDIT_ARCH_X86_64 if d.nr == u32::MAX => {
            let amd64 = listed.contains(&Target::X86_64) || listed.contains(&Target::X32);
            return if amd64 { default } else { RET_KILL_PROCESS };
        }
        AUDIT_ARCH_X86_64 if d.nr & X32_SYSCALL_BIT != 0 => Target::X32,
        AUDIT_ARCH_X86_64 => Target::X86_64,
        AUDIT_ARCH_I386 => Target::X86,
        _ => return RET_KILL_PROCESS,
    };
    if !listed.contains(&target) {
        return RET_KILL_PROCESS;
    }
    let holds = |a: &LinuxSeccompArg| {
        let v = d.args[a.index()];
        match a.op() {
            Op::ScmpCmpNe => v != a.value(),
            Op::ScmpCmpLt => v < a.value(),
            Op::ScmpCmpLe => v <= a.value(),
            Op::ScmpCmpEq => v == a.value(),
            Op::ScmpCmpGe => v >= a.value(),
            Op::ScmpCmpGt => v > a.value(),
            Op::ScmpCmpMaskedEq => v & a.value() == a.value_two().unwrap_or(0),
        }
    };
    let mut fallback = None;
    for r in p.syscalls().iter().flatten() {
        if !r.names().iter().any(|n| target.syscall_nr(n) == Some(d.nr)) {
            continue;
        }
        let ret = action_ret(r.action(), r.errno_ret(), String::new).unwrap();
        match r.args().as_deref() {
            None | Some([]) => {
                fallback.get_or_insert(ret);
            }
            Some(args) if args.iter().all(holds) => return ret,
            Some(_) => {}
        }
    }
    fallback.unwrap_or(default)
}

/// Compiles, checks, and asserts the program agrees with the reference on `d`.
fn verdict(p: &LinuxSeccomp, d: &SeccompData) -> u32 {
    let filter = compile(p).unwrap();
    check(filter.instructions());
    let (got, _) = run(filter.instructions(), d);
    assert_eq!(got, reference(p, d), "data {d:?}");
    got
}

fn x86_64(name: &str, args: [u64; 6]) -> SeccompData {
    SeccompData {
        nr: Target::X86_64.syscall_nr(name).unwrap(),
        arch: AUDIT_ARCH_X86_64,
        args,
        ..Default::default()
    }
}

#[test]
fn errno_values_and_defaults() {
    let p = profile(
        Act::ScmpActAllow,
        &[],
        vec![
            rule(&["getppid"], Act::ScmpActErrno, Some(42), vec![]),
            rule(&["getpid"], Act::ScmpActErrno, None, vec![]),
        ],
    );
    assert_eq!(verdict(&p, &x86_64("getppid", [0; 6])), RET_ERRNO | 42);
    assert_eq!(
        verdict(&p, &x86_64("getpid", [0; 6])),
        RET_ERRNO | libc::EPERM as u32
    );
    assert_eq!(verdict(&p, &x86_64("read", [0; 6])), RET_ALLOW);
}

#[test]
fn sixty_four_bit_comparisons_use_both_words() {
    let big = 0x0000_0001_0000_0005;
    let cases = [
        (Op::ScmpCmpEq, None),
        (Op::ScmpCmpNe, None),
        (Op::ScmpCmpLt, None),
        (Op::ScmpCmpLe, None),
        (Op::ScmpCmpGt, None),
        (Op::ScmpCmpGe, None),
        (Op::ScmpCmpMaskedEq, Some(0x0000_0001_0000_0004)),
    ];
    let probes = [
        0,
        4,
        5,
        6,
        0x1_0000_0004,
        big,
        0x1_0000_0006,
        0x2_0000_0005,
        0x5,
        u64::MAX,
    ];
    for (op, two) in cases {
        let p = profile(
            Act::ScmpActAllow,
            &[],
            vec![rule(
                &["getppid"],
                Act::ScmpActErrno,
                Some(7),
                vec![arg(3, op, big, two)],
            )],
        );
        for v in probes {
            verdict(&p, &x86_64("getppid", [0, 0, 0, v, 0, 0]));
        }
    }
}

#[test]
fn conditions_are_anded_and_rules_ored() {
    let p = profile(
        Act::ScmpActErrno,
        &[],
        vec![
            rule(
                &["ioctl"],
                Act::ScmpActAllow,
                None,
                vec![
                    arg(0, Op::ScmpCmpEq, 1, None),
                    arg(1, Op::ScmpCmpEq, 2, None),
                ],
            ),
            rule(
                &["ioctl"],
                Act::ScmpActLog,
                None,
                vec![arg(0, Op::ScmpCmpEq, 9, None)],
            ),
        ],
    );
    assert_eq!(verdict(&p, &x86_64("ioctl", [1, 2, 0, 0, 0, 0])), RET_ALLOW);
    assert_eq!(
        verdict(&p, &x86_64("ioctl", [1, 3, 0, 0, 0, 0])),
        RET_ERRNO | 1
    );
    assert_eq!(
        verdict(&p, &x86_64("ioctl", [9, 3, 0, 0, 0, 0])),
        0x7ffc_0000
    );
}

#[test]
fn x32_bit_never_reaches_x86_64_rules() {
    let getpid32 = Target::X32.syscall_nr("getpid").unwrap();
    let p = profile(Act::ScmpActAllow, &[Arch::ScmpArchX86_64], vec![]);
    let d = SeccompData {
        nr: getpid32,
        arch: AUDIT_ARCH_X86_64,
        ..Default::default()
    };
    assert_eq!(verdict(&p, &d), RET_KILL_PROCESS);
    // Every number with the bit set is rejected, whatever its low bits.
    for nr in [X32_SYSCALL_BIT, X32_SYSCALL_BIT | 39, u32::MAX - 1] {
        let d = SeccompData {
            nr,
            arch: AUDIT_ARCH_X86_64,
            ..Default::default()
        };
        assert_eq!(verdict(&p, &d), RET_KILL_PROCESS);
    }
    let p = profile(
        Act::ScmpActAllow,
        &[Arch::ScmpArchX86_64, Arch::ScmpArchX32],
        vec![rule(&["getpid"], Act::ScmpActErrno, Some(5), vec![])],
    );
    let d = SeccompData {
        nr: getpid32,
        arch: AUDIT_ARCH_X86_64,
        ..Default::default()
    };
    assert_eq!(verdict(&p, &d), RET_ERRNO | 5);
    assert_eq!(verdict(&p, &x86_64("getpid", [0; 6])), RET_ERRNO | 5);
}

#[test]
fn foreign_arch_gets_kill_process() {
    let p = profile(Act::ScmpActAllow, &[Arch::ScmpArchX86_64], vec![]);
    for arch in [AUDIT_ARCH_I386, 0xc000_00b7, 0] {
        let d = SeccompData {
            nr: 20,
            arch,
            ..Default::default()
        };
        assert_eq!(verdict(&p, &d), RET_KILL_PROCESS);
    }
}

#[test]
fn default_profile_is_a_shallow_search_and_right() {
    let p = default_profile();
    let filter = compile(&p).unwrap();
    check(filter.instructions());
    let mut deepest = 0;
    for target in [Target::X86_64, Target::X86, Target::X32] {
        let (arch, base) = match target {
            Target::X86 => (AUDIT_ARCH_I386, 0),
            Target::X32 => (AUDIT_ARCH_X86_64, X32_SYSCALL_BIT),
            Target::X86_64 => (AUDIT_ARCH_X86_64, 0),
        };
        for nr in base..base + 600 {
            let d = SeccompData {
                nr,
                arch,
                ..Default::default()
            };
            let (got, steps) = run(filter.instructions(), &d);
            assert_eq!(got, reference(&p, &d), "{target:?} nr {nr}");
            deepest = deepest.max(steps);
        }
    }
    // ~350 allowed syscalls: a linear chain would take hundreds of steps.
    assert!(deepest <= 24, "deepest path {deepest} instructions");

    let ns = |flags: u64| x86_64("clone", [flags, 0, 0, 0, 0, 0]);
    assert_eq!(verdict(&p, &ns(libc::SIGCHLD as u64)), RET_ALLOW);
    assert_eq!(verdict(&p, &ns(libc::CLONE_NEWUSER as u64)), RET_ERRNO | 1);
    assert_eq!(
        verdict(&p, &x86_64("clone3", [0; 6])),
        RET_ERRNO | libc::ENOSYS as u32
    );
    assert_eq!(verdict(&p, &x86_64("unshare", [0; 6])), RET_ERRNO | 1);
    assert_eq!(
        verdict(&p, &x86_64("personality", [0xffff_ffff, 0, 0, 0, 0, 0])),
        RET_ALLOW
    );
    assert_eq!(
        verdict(&p, &x86_64("personality", [0x1, 0, 0, 0, 0, 0])),
        RET_ERRNO | 1
    );
    assert_eq!(verdict(&p, &x86_64("chroot", [0; 6])), RET_ALLOW);

    let admin = default_profile_for(&["CAP_SYS_ADMIN".to_string()]);
    assert_eq!(verdict(&admin, &ns(libc::CLONE_NEWUSER as u64)), RET_ALLOW);
    assert_eq!(verdict(&admin, &x86_64("unshare", [0; 6])), RET_ALLOW);
    assert_eq!(verdict(&admin, &x86_64("chroot", [0; 6])), RET_ERRNO | 1);
}

/// Many distinct verdicts and conditional blocks: the tree spans well over 255
/// instructions, so long jumps must go through trampolines.
#[test]
fn long_jumps_use_trampolines() {
    let names: Vec<&str> = ["read", "write", "open", "close", "getppid", "mmap", "ioctl"]
        .into_iter()
        .collect();
    let mut rules = Vec::new();
    let mut nr_names = Vec::new();
    for nr in 0..330u32 {
        let name = Target::X86_64.name_of(nr);
        let Some(name) = name else { continue };
        nr_names.push(name);
        let args = if nr.is_multiple_of(5) {
            vec![
                arg(0, Op::ScmpCmpGt, nr as u64, None),
                arg(1, Op::ScmpCmpNe, 3, None),
            ]
        } else {
            vec![]
        };
        rules.push(rule(&[name], Act::ScmpActErrno, Some(nr % 4000 + 1), args));
    }
    let p = profile(
        Act::ScmpActKillProcess,
        &[Arch::ScmpArchX86_64, Arch::ScmpArchX86],
        rules,
    );
    let filter = compile(&p).unwrap();
    let prog = filter.instructions();
    check(prog);
    assert!(
        prog.len() > 600,
        "program has only {} instructions",
        prog.len()
    );
    assert!(
        prog.iter().any(|i| i.code == BPF_JA),
        "no trampoline emitted"
    );
    for name in nr_names.iter().chain(names.iter()) {
        for args in [[0; 6], [1000, 3, 0, 0, 0, 0], [1000, 4, 0, 0, 0, 0]] {
            verdict(&p, &x86_64(name, args));
        }
    }
    for nr in 0..400 {
        for arch in [AUDIT_ARCH_X86_64, AUDIT_ARCH_I386] {
            let d = SeccompData {
                nr,
                arch,
                args: [500, 4, 0, 0, 0, 0],
                ..Default::default()
            };
            assert_eq!(run(prog, &d).0, reference(&p, &d));
        }
    }
}

#[test]
fn too_many_instructions_is_an_error() {
    let six = |v: u64| {
        (0..6)
            .map(|i| arg(i, Op::ScmpCmpEq, v, None))
            .collect::<Vec<_>>()
    };
    let rules = (0..330u32)
        .filter_map(|nr| Target::X86_64.name_of(nr))
        .map(|n| rule(&[n], Act::ScmpActAllow, None, six(7)))
        .collect();
    let p = profile(
        Act::ScmpActErrno,
        &[Arch::ScmpArchX86_64, Arch::ScmpArchX86],
        rules,
    );
    match compile(&p) {
        Err(Error::TooManyInstructions { count, max: 4096 }) => assert!(count > 4096),
        other => panic!("expected TooManyInstructions, got {other:?}"),
    }
}

#[test]
fn bad_input_is_an_error_naming_it() {
    let expect = |json: &str, needles: &[&str]| {
        let err = parse_profile(json).unwrap_err().to_string();
        for n in needles {
            assert!(err.contains(n), "{err:?} lacks {n:?}");
        }
        assert!(!err.contains('\n'), "{err:?} is not one line");
    };
    expect(
        r#"{"defaultAction":"SCMP_ACT_FOO"}"#,
        &["defaultAction", "SCMP_ACT_FOO"],
    );
    expect(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_VAX"]}"#,
        &["architectures", "SCMP_ARCH_VAX"],
    );
    expect(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","flags":["SECCOMP_FILTER_FLAG_BOGUS"]}"#,
        &["flags", "SECCOMP_FILTER_FLAG_BOGUS"],
    );
    expect(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":1,"op":"SCMP_CMP_ALMOST"}]}]}"#,
        &["syscalls[0].args[0].op", "SCMP_CMP_ALMOST"],
    );

    let compile_err = |p: &LinuxSeccomp| compile(p).unwrap_err().to_string();
    let p = profile(
        Act::ScmpActAllow,
        &[],
        vec![rule(
            &["read"],
            Act::ScmpActErrno,
            None,
            vec![arg(6, Op::ScmpCmpEq, 0, None)],
        )],
    );
    assert!(
        compile_err(&p).contains("syscalls[0].args[0].index: 6"),
        "{}",
        compile_err(&p)
    );
    let p = profile(
        Act::ScmpActAllow,
        &[Arch::ScmpArchX86_64, Arch::ScmpArchAarch64],
        vec![],
    );
    assert!(compile_err(&p).contains("SCMP_ARCH_AARCH64"));
    let p = profile(
        Act::ScmpActAllow,
        &[],
        vec![rule(&["read"], Act::ScmpActErrno, Some(5000), vec![])],
    );
    assert!(compile_err(&p).contains("syscalls[0].errnoRet: 5000"));
    let p = profile(Act::ScmpActNotify, &[], vec![]);
    assert!(matches!(compile(&p), Err(Error::NotifyDefault)));
    let mut p = profile(
        Act::ScmpActAllow,
        &[],
        vec![rule(&["read"], Act::ScmpActNotify, None, vec![])],
    );
    assert!(compile(&p).unwrap().uses_notify());
    p.set_listener_path(None);
    assert!(matches!(compile(&p), Err(Error::NotifyWithoutListener)));
}

#[test]
fn unknown_syscall_names_are_skipped() {
    let p = profile(
        Act::ScmpActAllow,
        &[Arch::ScmpArchX86_64, Arch::ScmpArchX86],
        vec![rule(
            &["no_such_call", "socketcall", "getppid"],
            Act::ScmpActErrno,
            Some(3),
            vec![],
        )],
    );
    assert_eq!(verdict(&p, &x86_64("getppid", [0; 6])), RET_ERRNO | 3);
    let d = SeccompData {
        nr: 102,
        arch: AUDIT_ARCH_I386,
        ..Default::default()
    };
    assert_eq!(verdict(&p, &d), RET_ERRNO | 3);
}

// ---- property test: compiled program == reference evaluation ----

/// Names present on some or all of the three tables, plus one present on none.
const NAMES: &[&str] = &[
    "read",
    "write",
    "getppid",
    "getpid",
    "ioctl",
    "clone",
    "personality",
    "socketcall",
    "_llseek",
    "rt_sigaction",
    "kexec_load",
    "mmap2",
    "exit_group",
    "statx",
    "not_a_syscall",
];
const VALUES: &[u64] = &[
    0,
    1,
    2,
    0xff,
    0xffff_ffff,
    0x1_0000_0000,
    0x1_0000_0001,
    u64::MAX,
];

fn action() -> impl Strategy<Value = (Act, Option<u32>)> {
    prop_oneof![
        Just((Act::ScmpActAllow, None)),
        (0u32..4096).prop_map(|e| (Act::ScmpActErrno, Some(e))),
        Just((Act::ScmpActErrno, None)),
        Just((Act::ScmpActKillProcess, None)),
        Just((Act::ScmpActKillThread, None)),
        Just((Act::ScmpActTrap, None)),
        Just((Act::ScmpActLog, None)),
        (0u32..0x10000).prop_map(|e| (Act::ScmpActTrace, Some(e))),
        Just((Act::ScmpActNotify, None)),
    ]
}

fn value() -> impl Strategy<Value = u64> {
    prop_oneof![proptest::sample::select(VALUES), any::<u64>()]
}

fn cond() -> impl Strategy<Value = LinuxSeccompArg> {
    let op = proptest::sample::select(vec![
        Op::ScmpCmpNe,
        Op::ScmpCmpLt,
        Op::ScmpCmpLe,
        Op::ScmpCmpEq,
        Op::ScmpCmpGe,
        Op::ScmpCmpGt,
        Op::ScmpCmpMaskedEq,
    ]);
    (0usize..6, op, value(), proptest::option::of(value()))
        .prop_map(|(i, op, v, two)| arg(i, op, v, two))
}

fn syscall_rule() -> impl Strategy<Value = LinuxSyscall> {
    (
        proptest::sample::subsequence(NAMES, 1..3),
        action(),
        proptest::collection::vec(cond(), 0..3),
    )
        .prop_map(|(names, (act, errno), args)| rule(&names, act, errno, args))
}

fn any_profile() -> impl Strategy<Value = LinuxSeccomp> {
    let arches = proptest::sample::subsequence(
        vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32],
        0..=3,
    );
    let default = action().prop_filter("notify is no default", |(a, _)| *a != Act::ScmpActNotify);
    (
        default,
        arches,
        proptest::collection::vec(syscall_rule(), 0..25),
    )
        .prop_map(|((act, errno), arches, rules)| {
            let mut p = profile(act, &arches, rules);
            p.set_default_errno_ret(errno);
            p
        })
}

/// Data aimed at the profile: syscalls it names, on every arch, with nearby numbers.
fn data_for(p: &LinuxSeccomp) -> impl Strategy<Value = SeccompData> {
    let mut nrs: Vec<u32> = vec![0, 1, u32::MAX, X32_SYSCALL_BIT, X32_SYSCALL_BIT - 1];
    for r in p.syscalls().iter().flatten() {
        for n in r.names() {
            for t in [Target::X86_64, Target::X86, Target::X32] {
                if let Some(nr) = t.syscall_nr(n) {
                    nrs.extend([nr, nr.wrapping_sub(1), nr + 1]);
                }
            }
        }
    }
    let mut vals = VALUES.to_vec();
    for r in p.syscalls().iter().flatten() {
        for a in r.args().iter().flatten() {
            vals.extend([
                a.value(),
                a.value().wrapping_add(1),
                a.value().wrapping_sub(1),
            ]);
            vals.extend(a.value_two());
        }
    }
    let arch = proptest::sample::select(vec![AUDIT_ARCH_X86_64, AUDIT_ARCH_I386, 0xc000_00b7]);
    let args = proptest::array::uniform6(prop_oneof![proptest::sample::select(vals), any::<u64>()]);
    (proptest::sample::select(nrs), arch, args).prop_map(|(nr, arch, args)| SeccompData {
        nr,
        arch,
        args,
        ..Default::default()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn compiled_program_matches_reference(
        (p, data) in any_profile().prop_flat_map(|p| {
            let d = proptest::collection::vec(data_for(&p), 64);
            (Just(p), d)
        })
    ) {
        let filter = compile(&p).unwrap();
        check(filter.instructions());
        for d in &data {
            prop_assert_eq!(run(filter.instructions(), d).0, reference(&p, d), "data {:?}", d);
        }
    }
}
