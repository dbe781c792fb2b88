//! A classic BPF interpreter for tests, restricted to what seccomp accepts. It checks the
//! program the way the kernel's checker does (jump bounds, final RET, aligned loads inside
//! seccomp_data) and then runs it on a synthetic `seccomp_data`.

use libc::sock_filter;

use crate::codegen::{
    BPF_ALU_AND_K, BPF_JA, BPF_JEQ_K, BPF_JGE_K, BPF_JGT_K, BPF_LD_W_ABS, BPF_RET_K,
};

/// `struct seccomp_data` as the kernel fills it.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SeccompData {
    pub(crate) nr: u32,
    pub(crate) arch: u32,
    pub(crate) instruction_pointer: u64,
    pub(crate) args: [u64; 6],
}

impl SeccompData {
    fn word(&self, offset: u32) -> u32 {
        match offset {
            0 => self.nr,
            4 => self.arch,
            8 => self.instruction_pointer as u32,
            12 => (self.instruction_pointer >> 32) as u32,
            16..=63 => {
                let arg = self.args[(offset as usize - 16) / 8];
                if offset.is_multiple_of(8) {
                    arg as u32
                } else {
                    (arg >> 32) as u32
                }
            }
            _ => panic!("load at offset {offset} outside seccomp_data"),
        }
    }
}

/// Panics unless the kernel would accept `prog`.
pub(crate) fn check(prog: &[sock_filter]) {
    assert!(
        !prog.is_empty() && prog.len() <= crate::MAX_INSTRUCTIONS,
        "bad length {}",
        prog.len()
    );
    for (pc, insn) in prog.iter().enumerate() {
        let in_bounds = |off: u32| pc + 1 + (off as usize) < prog.len();
        match insn.code {
            BPF_LD_W_ABS => assert!(
                insn.k % 4 == 0 && insn.k < 64,
                "pc {pc}: bad load {}",
                insn.k
            ),
            BPF_ALU_AND_K | BPF_RET_K => {}
            BPF_JA => assert!(in_bounds(insn.k), "pc {pc}: ja out of bounds"),
            BPF_JEQ_K | BPF_JGT_K | BPF_JGE_K => assert!(
                in_bounds(insn.jt.into()) && in_bounds(insn.jf.into()),
                "pc {pc}: jump out of bounds"
            ),
            code => panic!("pc {pc}: opcode {code:#x} not allowed"),
        }
    }
    assert_eq!(
        prog.last().unwrap().code,
        BPF_RET_K,
        "program must end with RET"
    );
}

/// Runs a checked program; returns the verdict and the number of instructions executed.
pub(crate) fn run(prog: &[sock_filter], data: &SeccompData) -> (u32, usize) {
    let mut acc: u32 = 0;
    let mut pc = 0;
    let mut steps = 0;
    loop {
        let insn = prog[pc];
        steps += 1;
        let cond = |taken: bool| {
            if taken {
                insn.jt as usize
            } else {
                insn.jf as usize
            }
        };
        pc += 1 + match insn.code {
            BPF_LD_W_ABS => {
                acc = data.word(insn.k);
                0
            }
            BPF_ALU_AND_K => {
                acc &= insn.k;
                0
            }
            BPF_RET_K => return (insn.k, steps),
            BPF_JA => insn.k as usize,
            BPF_JEQ_K => cond(acc == insn.k),
            BPF_JGT_K => cond(acc > insn.k),
            BPF_JGE_K => cond(acc >= insn.k),
            code => panic!("pc {pc}: opcode {code:#x} not allowed"),
        };
    }
}
