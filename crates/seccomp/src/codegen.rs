//! Classic BPF code generation: an assembler with forward labels and long-jump trampolines,
//! and the generator that lays out the arch dispatch and the per-arch binary search tree.
//!
//! Program shape:
//! ```text
//!   ld arch; jeq AUDIT_ARCH_X86_64 -> amd64; jeq AUDIT_ARCH_I386 -> i386; ret bad_arch
//! amd64: ld nr; jeq -1 -> (x86_64 tree); jge X32_SYSCALL_BIT -> x32
//!        x86_64 tree   (or ret bad_arch when x86_64 is not listed)
//! x32:   x32 tree      (or ret bad_arch when x32 is not listed)
//! i386:  ld nr; i386 tree
//! ```
//! A tree splits the syscall-number space into intervals with one verdict each (adjacent
//! intervals with the same unconditional verdict merged) and finds the interval with `jge`
//! comparisons only, so dispatch costs O(log n) jumps instead of a linear chain.

use std::collections::BTreeMap;

use libc::sock_filter;
use oci_spec::runtime::LinuxSeccompOperator as Op;

use crate::arch::{Target, AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT};
use crate::policy::{Cond, Policy, SyscallPolicy};

pub(crate) const BPF_LD_W_ABS: u16 = 0x20;
pub(crate) const BPF_ALU_AND_K: u16 = 0x54;
pub(crate) const BPF_JA: u16 = 0x05;
pub(crate) const BPF_JEQ_K: u16 = 0x15;
pub(crate) const BPF_JGT_K: u16 = 0x25;
pub(crate) const BPF_JGE_K: u16 = 0x35;
pub(crate) const BPF_RET_K: u16 = 0x06;

/// Offsets into `struct seccomp_data` (x86 is little-endian: low word first).
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
fn off_arg_lo(index: u8) -> u32 {
    16 + 8 * u32::from(index)
}
fn off_arg_hi(index: u8) -> u32 {
    off_arg_lo(index) + 4
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Label(usize);

/// Where a conditional jump goes: the next instruction or a label further down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dest {
    Next,
    To(Label),
}

enum Insn {
    Stmt(sock_filter),
    Jump {
        code: u16,
        k: u32,
        jt: Dest,
        jf: Dest,
    },
    Mark(Label),
}

/// Builds a program with symbolic forward jumps; `assemble` resolves them.
#[derive(Default)]
struct Asm {
    insns: Vec<Insn>,
    labels: usize,
}

impl Asm {
    fn label(&mut self) -> Label {
        self.labels += 1;
        Label(self.labels - 1)
    }
    fn mark(&mut self, l: Label) {
        self.insns.push(Insn::Mark(l));
    }
    fn stmt(&mut self, code: u16, k: u32) {
        self.insns.push(Insn::Stmt(sock_filter {
            code,
            jt: 0,
            jf: 0,
            k,
        }));
    }
    fn load(&mut self, offset: u32) {
        self.stmt(BPF_LD_W_ABS, offset);
    }
    fn ret(&mut self, value: u32) {
        self.stmt(BPF_RET_K, value);
    }
    fn jump(&mut self, code: u16, k: u32, jt: Dest, jf: Dest) {
        self.insns.push(Insn::Jump { code, k, jt, jf });
    }

    /// Positions of instructions and labels when jump `i` carries `far[i]` trampolines.
    fn layout(&self, far: &[[bool; 2]]) -> (Vec<usize>, Vec<usize>) {
        let mut pos = vec![0; self.insns.len()];
        let mut label_pos = vec![usize::MAX; self.labels];
        let mut p = 0;
        for (i, insn) in self.insns.iter().enumerate() {
            pos[i] = p;
            match insn {
                Insn::Mark(l) => label_pos[l.0] = p,
                Insn::Stmt(_) => p += 1,
                Insn::Jump { .. } => p += 1 + far[i].iter().filter(|f| **f).count(),
            }
        }
        (pos, label_pos)
    }

    /// Resolves labels. A conditional jump reaches at most 255 instructions ahead; a target
    /// further away goes through an unconditional `ja` (32-bit offset) placed right after the
    /// jump. Adding trampolines lengthens other jumps, so iterate to a fixed point (each
    /// jump side only ever turns far, so this terminates).
    fn assemble(self) -> Vec<sock_filter> {
        let mut far = vec![[false; 2]; self.insns.len()];
        let (pos, label_pos) = loop {
            let (pos, label_pos) = self.layout(&far);
            let mut changed = false;
            for (i, insn) in self.insns.iter().enumerate() {
                if let Insn::Jump { jt, jf, .. } = insn {
                    for (side, dest) in [jt, jf].into_iter().enumerate() {
                        if let Dest::To(l) = dest {
                            if !far[i][side] && label_pos[l.0] - pos[i] - 1 > 255 {
                                far[i][side] = true;
                                changed = true;
                            }
                        }
                    }
                }
            }
            if !changed {
                break (pos, label_pos);
            }
        };

        let mut out = Vec::with_capacity(pos.last().map_or(0, |p| p + 3));
        for (i, insn) in self.insns.iter().enumerate() {
            match insn {
                Insn::Mark(_) => {}
                Insn::Stmt(s) => out.push(*s),
                Insn::Jump { code, k, jt, jf } => {
                    let p = pos[i];
                    let [far_t, far_f] = far[i];
                    let tramps = usize::from(far_t) + usize::from(far_f);
                    // Every label is marked after the jumps that use it (forward only).
                    let target = |d: &Dest| match d {
                        Dest::Next => p + 1 + tramps,
                        Dest::To(l) => label_pos[l.0],
                    };
                    let near = |d: &Dest| (target(d) - p - 1) as u8;
                    out.push(sock_filter {
                        code: *code,
                        k: *k,
                        jt: if far_t { 0 } else { near(jt) },
                        jf: if far_f { u8::from(far_t) } else { near(jf) },
                    });
                    let mut at = p + 1;
                    for (is_far, dest) in [(far_t, jt), (far_f, jf)] {
                        if is_far {
                            out.push(sock_filter {
                                code: BPF_JA,
                                jt: 0,
                                jf: 0,
                                k: (target(dest) - at - 1) as u32,
                            });
                            at += 1;
                        }
                    }
                }
            }
        }
        out
    }
}

/// What an interval of syscall numbers leads to.
#[derive(Clone, Copy)]
enum Leaf<'a> {
    Ret(u32),
    Rules(&'a SyscallPolicy),
}

/// Compiles a policy into BPF (unchecked length).
pub(crate) fn generate(policy: &Policy) -> Vec<sock_filter> {
    let mut a = Asm::default();
    let table = |t: Target| policy.arches.get(&t);
    let amd64 = table(Target::X86_64).is_some() || table(Target::X32).is_some();
    let i386 = table(Target::X86);
    let (l_amd64, l_i386) = (a.label(), a.label());

    a.load(OFF_ARCH);
    if amd64 {
        a.jump(BPF_JEQ_K, AUDIT_ARCH_X86_64, Dest::To(l_amd64), Dest::Next);
    }
    if i386.is_some() {
        a.jump(BPF_JEQ_K, AUDIT_ARCH_I386, Dest::To(l_i386), Dest::Next);
    }
    a.ret(policy.bad_arch);

    if amd64 {
        let (lo, hi) = (a.label(), a.label());
        a.mark(l_amd64);
        a.load(OFF_NR);
        // nr == -1 (a tracer skipping the syscall) is not an x32 call: it gets the default.
        let minus_one = if table(Target::X86_64).is_some() {
            lo
        } else {
            hi
        };
        a.jump(BPF_JEQ_K, u32::MAX, Dest::To(minus_one), Dest::Next);
        // A number with the x32 bit must never reach the x86_64 tree.
        a.jump(BPF_JGE_K, X32_SYSCALL_BIT, Dest::To(hi), Dest::Next);
        a.mark(lo);
        match table(Target::X86_64) {
            Some(t) => tree(&mut a, &intervals(t, 0, policy.default), policy.default),
            None => a.ret(policy.bad_arch),
        }
        a.mark(hi);
        match table(Target::X32) {
            Some(t) => tree(
                &mut a,
                &intervals(t, X32_SYSCALL_BIT, policy.default),
                policy.default,
            ),
            None => a.ret(policy.bad_arch),
        }
    }
    if let Some(t) = i386 {
        a.mark(l_i386);
        a.load(OFF_NR);
        tree(&mut a, &intervals(t, 0, policy.default), policy.default);
    }
    a.assemble()
}

/// Splits `[start, 2^32)` into intervals `(first_nr, leaf)`, merging adjacent equal verdicts.
fn intervals(
    table: &BTreeMap<u32, SyscallPolicy>,
    start: u32,
    default: u32,
) -> Vec<(u32, Leaf<'_>)> {
    let mut out = vec![(start, Leaf::Ret(default))];
    for (&nr, rules) in table.range(start..) {
        let leaf = match rules.unconditional(default) {
            Some(r) => Leaf::Ret(r),
            None => Leaf::Rules(rules),
        };
        push_interval(&mut out, nr, leaf);
        if let Some(next) = nr.checked_add(1) {
            push_interval(&mut out, next, Leaf::Ret(default));
        }
    }
    out
}

/// Appends the interval starting at `first`, replacing an empty predecessor and merging
/// with an equal unconditional verdict before it.
fn push_interval<'a>(out: &mut Vec<(u32, Leaf<'a>)>, first: u32, leaf: Leaf<'a>) {
    if out.last().is_some_and(|(s, _)| *s == first) {
        out.pop();
    }
    if let (Some((_, Leaf::Ret(prev))), Leaf::Ret(r)) = (out.last(), leaf) {
        if *prev == r {
            return;
        }
    }
    out.push((first, leaf));
}

/// Binary search over the intervals: `jge first_of_right_half` at each node.
fn tree(a: &mut Asm, iv: &[(u32, Leaf<'_>)], default: u32) {
    if let [(_, leaf)] = iv {
        match leaf {
            Leaf::Ret(r) => a.ret(*r),
            Leaf::Rules(rules) => syscall_rules(a, rules, default),
        }
        return;
    }
    let mid = iv.len() / 2;
    let right = a.label();
    a.jump(BPF_JGE_K, iv[mid].0, Dest::To(right), Dest::Next);
    tree(a, &iv[..mid], default);
    a.mark(right);
    tree(a, &iv[mid..], default);
}

/// The rules of one syscall: conditional rules in order, then its fallback verdict.
fn syscall_rules(a: &mut Asm, rules: &SyscallPolicy, default: u32) {
    for rule in &rules.conditional {
        let next_rule = a.label();
        for cond in &rule.conds {
            compare(a, cond, next_rule);
        }
        a.ret(rule.ret);
        a.mark(next_rule);
    }
    a.ret(rules.fallback.unwrap_or(default));
}

/// Emits a 64-bit comparison of one argument as two 32-bit word comparisons (BPF compares
/// unsigned 32-bit values). Falls through when `cond` holds, jumps to `fail` otherwise.
fn compare(a: &mut Asm, cond: &Cond, fail: Label) {
    let (hi, lo) = (off_arg_hi(cond.index), off_arg_lo(cond.index));
    let (v_hi, v_lo) = ((cond.value >> 32) as u32, cond.value as u32);
    let fail = Dest::To(fail);
    let pass = a.label();
    match cond.op {
        Op::ScmpCmpEq => {
            a.load(hi);
            a.jump(BPF_JEQ_K, v_hi, Dest::Next, fail);
            a.load(lo);
            a.jump(BPF_JEQ_K, v_lo, Dest::Next, fail);
        }
        Op::ScmpCmpNe => {
            a.load(hi);
            a.jump(BPF_JEQ_K, v_hi, Dest::Next, Dest::To(pass));
            a.load(lo);
            a.jump(BPF_JEQ_K, v_lo, fail, Dest::Next);
        }
        Op::ScmpCmpMaskedEq => {
            let (e_hi, e_lo) = ((cond.value_two >> 32) as u32, cond.value_two as u32);
            a.load(hi);
            a.stmt(BPF_ALU_AND_K, v_hi);
            a.jump(BPF_JEQ_K, e_hi, Dest::Next, fail);
            a.load(lo);
            a.stmt(BPF_ALU_AND_K, v_lo);
            a.jump(BPF_JEQ_K, e_lo, Dest::Next, fail);
        }
        // hi > v_hi decides; hi == v_hi defers to the low words; hi < v_hi decides.
        Op::ScmpCmpGt | Op::ScmpCmpGe => {
            let lo_op = if cond.op == Op::ScmpCmpGt {
                BPF_JGT_K
            } else {
                BPF_JGE_K
            };
            a.load(hi);
            a.jump(BPF_JGT_K, v_hi, Dest::To(pass), Dest::Next);
            a.jump(BPF_JEQ_K, v_hi, Dest::Next, fail);
            a.load(lo);
            a.jump(lo_op, v_lo, Dest::Next, fail);
        }
        // LT is "not GE", LE is "not GT".
        Op::ScmpCmpLt | Op::ScmpCmpLe => {
            let lo_op = if cond.op == Op::ScmpCmpLe {
                BPF_JGT_K
            } else {
                BPF_JGE_K
            };
            a.load(hi);
            a.jump(BPF_JGT_K, v_hi, fail, Dest::Next);
            a.jump(BPF_JEQ_K, v_hi, Dest::Next, Dest::To(pass));
            a.load(lo);
            a.jump(lo_op, v_lo, fail, Dest::Next);
        }
    }
    a.mark(pass);
}
