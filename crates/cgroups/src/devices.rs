//! Device access rules: OCI `linux.resources.devices` normalised once, then rendered as
//! v1 `devices.allow`/`devices.deny` lines or compiled into a cgroup v2 eBPF program.

use crate::error::{Error, Result};
use crate::fsutil::Write;
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

pub(crate) const ACC_MKNOD: u8 = 1;
pub(crate) const ACC_READ: u8 = 2;
pub(crate) const ACC_WRITE: u8 = 4;
const ACC_ALL: u8 = ACC_MKNOD | ACC_READ | ACC_WRITE;

/// Device kind as the kernel numbers it in `bpf_cgroup_dev_ctx` (BPF_DEVCG_DEV_*).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    All,
    Block = 1,
    Char = 2,
}

/// One validated rule. `None` major/minor is the `*` wildcard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rule {
    pub allow: bool,
    pub kind: Kind,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: u8,
}

fn number(field: &str, v: Option<i64>) -> Result<Option<u32>> {
    match v {
        None | Some(-1) => Ok(None),
        Some(n) => u32::try_from(n).map(Some).map_err(|_| Error::InvalidValue {
            field: field.to_string(),
            reason: format!("{n} is not a device number (0..=4294967295 or -1 for any)"),
        }),
    }
}

impl Rule {
    pub fn from_oci(i: usize, d: &LinuxDeviceCgroup) -> Result<Rule> {
        let field = |f: &str| format!("devices[{i}].{f}");
        let kind = match d.typ().unwrap_or(LinuxDeviceType::A) {
            LinuxDeviceType::A => Kind::All,
            LinuxDeviceType::B => Kind::Block,
            // 'u' (unbuffered char) is a char device to the kernel.
            LinuxDeviceType::C | LinuxDeviceType::U => Kind::Char,
            LinuxDeviceType::P => {
                return Err(Error::InvalidValue {
                    field: field("type"),
                    reason: "fifos ('p') are not subject to the device cgroup".into(),
                })
            }
        };
        let mut access = 0;
        for ch in d.access().as_deref().unwrap_or("rwm").chars() {
            access |= match ch {
                'r' => ACC_READ,
                'w' => ACC_WRITE,
                'm' => ACC_MKNOD,
                other => {
                    return Err(Error::InvalidValue {
                        field: field("access"),
                        reason: format!("{other:?} is not one of r, w, m"),
                    })
                }
            };
        }
        if access == 0 {
            access = ACC_ALL;
        }
        Ok(Rule {
            allow: d.allow(),
            kind,
            major: number(&field("major"), d.major())?,
            minor: number(&field("minor"), d.minor())?,
            access,
        })
    }

    fn is_everything(&self) -> bool {
        self.kind == Kind::All
            && self.major.is_none()
            && self.minor.is_none()
            && self.access == ACC_ALL
    }
}

pub(crate) fn parse_rules(devices: &[LinuxDeviceCgroup]) -> Result<Vec<Rule>> {
    devices
        .iter()
        .enumerate()
        .map(|(i, d)| Rule::from_oci(i, d))
        .collect()
}

fn access_str(a: u8) -> String {
    let mut s = String::new();
    if a & ACC_READ != 0 {
        s.push('r');
    }
    if a & ACC_WRITE != 0 {
        s.push('w');
    }
    if a & ACC_MKNOD != 0 {
        s.push('m');
    }
    s
}

/// v1 lines, in rule order (the kernel applies them one by one: a later line overrides).
/// `a` with specific numbers or partial access cannot be said to the v1 kernel (it treats
/// any `a` line as "everything"), so it becomes one `b` and one `c` line.
pub(crate) fn v1_writes(rules: &[Rule]) -> Vec<Write> {
    let mut out = Vec::new();
    for r in rules {
        let file = if r.allow {
            "devices.allow"
        } else {
            "devices.deny"
        };
        if r.is_everything() {
            out.push(Write::new("devices", file, "a"));
            continue;
        }
        let kinds: &[char] = match r.kind {
            Kind::All => &['b', 'c'],
            Kind::Block => &['b'],
            Kind::Char => &['c'],
        };
        let num = |n: Option<u32>| n.map_or("*".to_string(), |n| n.to_string());
        for k in kinds {
            out.push(Write::new(
                "devices",
                file,
                format!(
                    "{k} {}:{} {}",
                    num(r.major),
                    num(r.minor),
                    access_str(r.access)
                ),
            ));
        }
    }
    out
}

/// The v1 kernel's view of a cgroup's device list: a default plus exceptions keyed by
/// (type char, major, minor) with access bits. Emulated to compute minimal updates.
#[derive(Debug, Clone, PartialEq, Eq)]
struct V1State {
    default_allow: bool,
    exceptions: std::collections::BTreeMap<(char, Option<u32>, Option<u32>), u8>,
}

/// Parses "c 1:3 rwm" (a devices.list line or a devices.allow/deny value).
fn parse_line(line: &str) -> Option<(char, Option<u32>, Option<u32>, u8)> {
    let mut f = line.split_whitespace();
    let t = f.next()?.chars().next()?;
    let (ma, mi) = f.next()?.split_once(':')?;
    let num = |s: &str| {
        if s == "*" {
            Some(None)
        } else {
            s.parse().ok().map(Some)
        }
    };
    let mut acc = 0;
    for ch in f.next()?.chars() {
        acc |= match ch {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            _ => return None,
        };
    }
    Some((t, num(ma)?, num(mi)?, acc))
}

impl V1State {
    /// From devices.list: "a *:* rwm" alone means allow-all, anything else is default deny
    /// with the listed exceptions.
    fn from_list(list: &str) -> Option<V1State> {
        let mut st = V1State {
            default_allow: false,
            exceptions: Default::default(),
        };
        for line in list.lines().filter(|l| !l.trim().is_empty()) {
            let (t, ma, mi, acc) = parse_line(line)?;
            if t == 'a' {
                st.default_allow = true;
                st.exceptions.clear();
            } else {
                *st.exceptions.entry((t, ma, mi)).or_default() |= acc;
            }
        }
        Some(st)
    }

    /// Applies one devices.allow/deny write as the kernel does: "a" resets; a rule of the
    /// default's kind removes access from the exact exception; the other kind adds it.
    fn apply(&mut self, w: &Write) {
        let allow = w.file == "devices.allow";
        if w.value == "a" {
            self.default_allow = allow;
            self.exceptions.clear();
            return;
        }
        let Some((t, ma, mi, acc)) = parse_line(&w.value) else {
            return;
        };
        if allow == self.default_allow {
            if let Some(e) = self.exceptions.get_mut(&(t, ma, mi)) {
                *e &= !acc;
                if *e == 0 {
                    self.exceptions.remove(&(t, ma, mi));
                }
            }
        } else {
            *self.exceptions.entry((t, ma, mi)).or_default() |= acc;
        }
    }
}

fn line((t, ma, mi): (char, Option<u32>, Option<u32>), acc: u8) -> String {
    let num = |n: Option<u32>| n.map_or("*".to_string(), |n| n.to_string());
    format!("{t} {}:{} {}", num(ma), num(mi), access_str(acc))
}

/// The writes that take a cgroup from `current` (its devices.list) to the state `lines`
/// produce on a fresh cgroup, without a reset unless the default itself changes.
/// Unparseable current lists fall back to writing `lines` as they are.
pub(crate) fn v1_transition(current: &str, lines: &[Write]) -> Vec<Write> {
    let Some(cur) = V1State::from_list(current) else {
        return lines.to_vec();
    };
    // A new v1 cgroup inherits its parent's list; OCI lists are meant from "allow all".
    let mut target = V1State {
        default_allow: true,
        exceptions: Default::default(),
    };
    for w in lines {
        target.apply(w);
    }
    let (grant, revoke) = if target.default_allow {
        ("devices.deny", "devices.allow")
    } else {
        ("devices.allow", "devices.deny")
    };
    let mut out = Vec::new();
    let base = if cur.default_allow != target.default_allow {
        out.push(Write::new("devices", revoke, "a"));
        V1State {
            default_allow: target.default_allow,
            exceptions: Default::default(),
        }
    } else {
        cur
    };
    // Exceptions to shrink or drop first, then the ones to add or widen.
    for (k, &have) in &base.exceptions {
        let want = target.exceptions.get(k).copied().unwrap_or(0);
        if have & !want != 0 {
            out.push(Write::new("devices", revoke, line(*k, have & !want)));
        }
    }
    // Added in the order the rules name them (the kernel lists exceptions in the order
    // they were first added), so devices.list reads back in the config's order, as with
    // crun.
    let mut order: Vec<(char, Option<u32>, Option<u32>)> = lines
        .iter()
        .filter_map(|w| parse_line(&w.value).map(|(t, ma, mi, _)| (t, ma, mi)))
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    order.retain(|k| seen.insert(*k));
    for k in &order {
        let Some(&want) = target.exceptions.get(k) else {
            continue;
        };
        let have = base.exceptions.get(k).copied().unwrap_or(0);
        if want & !have != 0 {
            out.push(Write::new("devices", grant, line(*k, want & !have)));
        }
    }
    out
}

/// A raw eBPF instruction (struct bpf_insn).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Insn {
    code: u8,
    regs: u8, // dst in the low nibble, src in the high nibble
    off: i16,
    imm: i32,
}

// Opcode pieces from linux/bpf_common.h and linux/bpf.h.
const BPF_LDX: u8 = 0x01;
const BPF_ALU: u8 = 0x04;
const BPF_JMP: u8 = 0x05;
const BPF_JMP32: u8 = 0x06;
const BPF_ALU64: u8 = 0x07;
const BPF_W: u8 = 0x00;
const BPF_MEM: u8 = 0x60;
const BPF_K: u8 = 0x00;
const BPF_X: u8 = 0x08;
const BPF_AND: u8 = 0x50;
const BPF_RSH: u8 = 0x70;
const BPF_MOV: u8 = 0xb0;
const BPF_JNE: u8 = 0x50;
const BPF_EXIT: u8 = 0x90;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | (dst & 0xf),
        off,
        imm,
    }
}
fn ldx_w(dst: u8, src: u8, off: i16) -> Insn {
    insn(BPF_LDX | BPF_MEM | BPF_W, dst, src, off, 0)
}
fn alu32_k(op: u8, dst: u8, imm: i32) -> Insn {
    insn(BPF_ALU | op | BPF_K, dst, 0, 0, imm)
}
fn mov32_x(dst: u8, src: u8) -> Insn {
    insn(BPF_ALU | BPF_MOV | BPF_X, dst, src, 0, 0)
}
fn jne32_k(dst: u8, imm: u32, off: i16) -> Insn {
    // JMP32 compares the low 32 bits, so the immediate's bit pattern is what counts.
    insn(BPF_JMP32 | BPF_JNE | BPF_K, dst, 0, off, imm as i32)
}
fn mov64_k(dst: u8, imm: i32) -> Insn {
    insn(BPF_ALU64 | BPF_MOV | BPF_K, dst, 0, 0, imm)
}
fn exit() -> Insn {
    insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)
}

// Registers after the prologue.
const R_TYPE: u8 = 2;
const R_ACCESS: u8 = 3;
const R_MAJOR: u8 = 4;
const R_MINOR: u8 = 5;
const R_TMP: u8 = 1; // the context pointer is dead after the prologue

/// Compiles rules into a BPF_PROG_TYPE_CGROUP_DEVICE program. Like the v1 kernel list,
/// the last matching rule decides, so rules are tested from last to first; no match denies.
pub(crate) fn compile(rules: &[Rule]) -> Vec<Insn> {
    // struct bpf_cgroup_dev_ctx { u32 access_type /* access << 16 | type */; u32 major; u32 minor; }
    let mut p = vec![
        ldx_w(R_TYPE, 1, 0),
        alu32_k(BPF_AND, R_TYPE, 0xffff),
        ldx_w(R_ACCESS, 1, 0),
        alu32_k(BPF_RSH, R_ACCESS, 16),
        ldx_w(R_MAJOR, 1, 4),
        ldx_w(R_MINOR, 1, 8),
    ];
    for r in rules.iter().rev() {
        let mut checks: Vec<Insn> = Vec::new();
        // Each check is a conditional jump to the next rule; offsets are fixed up below.
        if r.kind != Kind::All {
            checks.push(jne32_k(R_TYPE, r.kind as u32, 0));
        }
        if r.access != ACC_ALL {
            // Requested access must be a subset of the rule's: (req & !rule) == 0.
            checks.push(mov32_x(R_TMP, R_ACCESS));
            checks.push(alu32_k(BPF_AND, R_TMP, i32::from(!r.access & ACC_ALL)));
            checks.push(jne32_k(R_TMP, 0, 0));
        }
        if let Some(m) = r.major {
            checks.push(jne32_k(R_MAJOR, m, 0));
        }
        if let Some(m) = r.minor {
            checks.push(jne32_k(R_MINOR, m, 0));
        }
        let unconditional = checks.is_empty();
        checks.push(mov64_k(0, i32::from(r.allow)));
        checks.push(exit());
        let len = checks.len();
        for (i, c) in checks.iter_mut().enumerate() {
            if c.code == BPF_JMP32 | BPF_JNE | BPF_K {
                // Jump past the rest of this block (offsets count from the next insn).
                c.off = (len - i - 1) as i16;
            }
        }
        p.extend(checks);
        if unconditional {
            // Matches everything: earlier rules and the default are unreachable, and the
            // verifier rejects unreachable instructions.
            return p;
        }
    }
    p.push(mov64_k(0, 0));
    p.push(exit());
    p
}

/// Evaluates a compiled program the way the kernel would, for unit tests of the emitter.
#[cfg(test)]
pub(crate) fn interpret(prog: &[Insn], kind: u32, access: u32, major: u32, minor: u32) -> u64 {
    let ctx = [(access << 16) | kind, major, minor];
    let mut r = [0u64; 11];
    let mut pc = 0usize;
    loop {
        let i = prog[pc];
        let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
        pc += 1;
        match i.code {
            c if c == BPF_LDX | BPF_MEM | BPF_W => {
                assert_eq!(src, 1);
                r[dst] = u64::from(ctx[(i.off / 4) as usize]);
            }
            c if c == BPF_ALU | BPF_AND | BPF_K => r[dst] = (r[dst] as u32 & i.imm as u32) as u64,
            c if c == BPF_ALU | BPF_RSH | BPF_K => r[dst] = ((r[dst] as u32) >> i.imm) as u64,
            c if c == BPF_ALU | BPF_MOV | BPF_X => r[dst] = r[src] as u32 as u64,
            c if c == BPF_ALU64 | BPF_MOV | BPF_K => r[dst] = i.imm as i64 as u64,
            c if c == BPF_JMP32 | BPF_JNE | BPF_K => {
                if r[dst] as u32 != i.imm as u32 {
                    pc = (pc as i64 + i64::from(i.off)) as usize;
                }
            }
            c if c == BPF_JMP | BPF_EXIT => return r[0],
            c => panic!("unknown opcode {c:#x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxDeviceCgroupBuilder;

    fn dev(
        allow: bool,
        t: LinuxDeviceType,
        maj: Option<i64>,
        min: Option<i64>,
        acc: &str,
    ) -> LinuxDeviceCgroup {
        let mut b = LinuxDeviceCgroupBuilder::default()
            .allow(allow)
            .typ(t)
            .access(acc);
        if let Some(m) = maj {
            b = b.major(m);
        }
        if let Some(m) = min {
            b = b.minor(m);
        }
        b.build().unwrap()
    }

    fn typical() -> Vec<Rule> {
        parse_rules(&[
            dev(false, LinuxDeviceType::A, None, None, "rwm"),
            dev(true, LinuxDeviceType::C, Some(1), Some(3), "rwm"), // /dev/null
            dev(true, LinuxDeviceType::C, Some(1), Some(5), "r"),   // /dev/zero read only
            dev(true, LinuxDeviceType::C, Some(136), None, "rw"),   // ptys
            dev(false, LinuxDeviceType::C, Some(136), Some(7), "w"),
        ])
        .unwrap()
    }

    #[test]
    fn v1_lines_in_order() {
        let w: Vec<(String, String)> = v1_writes(&typical())
            .into_iter()
            .map(|w| (w.file, w.value))
            .collect();
        let s = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(
            w,
            vec![
                s("devices.deny", "a"),
                s("devices.allow", "c 1:3 rwm"),
                s("devices.allow", "c 1:5 r"),
                s("devices.allow", "c 136:* rw"),
                s("devices.deny", "c 136:7 w"),
            ]
        );
        let partial = parse_rules(&[dev(true, LinuxDeviceType::A, Some(8), None, "rm")]).unwrap();
        let w: Vec<String> = v1_writes(&partial).into_iter().map(|w| w.value).collect();
        assert_eq!(w, vec!["b 8:* rm", "c 8:* rm"]);
    }

    fn pairs(w: &[Write]) -> Vec<(String, String)> {
        w.iter()
            .map(|w| (w.file.clone(), w.value.clone()))
            .collect()
    }

    #[test]
    fn v1_transition_writes_only_the_difference() {
        let s = |a: &str, b: &str| (a.to_string(), b.to_string());
        let lines = v1_writes(&typical());
        // From the inherited allow-all: the default changes, so one reset then exceptions.
        assert_eq!(
            pairs(&v1_transition("a *:* rwm\n", &lines)),
            vec![
                s("devices.deny", "a"),
                s("devices.allow", "c 1:3 rwm"),
                s("devices.allow", "c 1:5 r"),
                s("devices.allow", "c 136:* rw"),
            ]
        );
        // Already in that state: nothing to write, in particular no deny-all.
        let now = "c 1:3 rwm\nc 1:5 r\nc 136:* rw\n";
        assert!(v1_transition(now, &lines).is_empty());
        // /dev/zero gains w, 136:* goes away, 1:3 loses m: no reset either.
        let next = parse_rules(&[
            dev(false, LinuxDeviceType::A, None, None, "rwm"),
            dev(true, LinuxDeviceType::C, Some(1), Some(3), "rw"),
            dev(true, LinuxDeviceType::C, Some(1), Some(5), "rw"),
        ])
        .unwrap();
        assert_eq!(
            pairs(&v1_transition(now, &v1_writes(&next))),
            vec![
                s("devices.deny", "c 1:3 m"),
                s("devices.deny", "c 136:* rw"),
                s("devices.allow", "c 1:5 w"),
            ]
        );
        // Back to allow-all.
        let all = parse_rules(&[dev(true, LinuxDeviceType::A, None, None, "rwm")]).unwrap();
        assert_eq!(
            pairs(&v1_transition(now, &v1_writes(&all))),
            vec![s("devices.allow", "a")]
        );
        // Garbage in devices.list: fall back to the plain list.
        assert_eq!(v1_transition("x y z\n", &lines), lines);
    }

    #[test]
    fn program_semantics() {
        let p = compile(&typical());
        let (c, b) = (Kind::Char as u32, Kind::Block as u32);
        let (r, w, m) = (ACC_READ as u32, ACC_WRITE as u32, ACC_MKNOD as u32);
        assert_eq!(interpret(&p, c, r | w, 1, 3), 1, "/dev/null rw");
        assert_eq!(interpret(&p, c, m, 1, 3), 1, "/dev/null mknod");
        assert_eq!(interpret(&p, b, r, 1, 3), 0, "block 1:3 is another device");
        assert_eq!(interpret(&p, c, r, 1, 5), 1, "/dev/zero read");
        assert_eq!(
            interpret(&p, c, r | w, 1, 5),
            0,
            "/dev/zero write is not granted"
        );
        assert_eq!(interpret(&p, c, r | w, 136, 2), 1, "pty wildcard minor");
        assert_eq!(interpret(&p, c, w, 136, 7), 0, "later deny wins");
        assert_eq!(interpret(&p, c, r, 136, 7), 1, "deny covers only w");
        assert_eq!(interpret(&p, c, r, 4, 1), 0, "default deny");
        let allow_all = parse_rules(&[dev(true, LinuxDeviceType::A, None, None, "rwm")]).unwrap();
        assert_eq!(interpret(&compile(&allow_all), b, r | w | m, 8, 0), 1);
        assert_eq!(
            compile(&allow_all).len(),
            8,
            "no unreachable default after a catch-all"
        );
        assert_eq!(interpret(&compile(&[]), c, r, 1, 3), 0, "no rules: deny");
        // Large device numbers compare as unsigned 32-bit values.
        let big = parse_rules(&[dev(
            true,
            LinuxDeviceType::C,
            Some(4_000_000_000),
            Some(1),
            "r",
        )])
        .unwrap();
        assert_eq!(interpret(&compile(&big), c, r, 4_000_000_000, 1), 1);
        assert_eq!(interpret(&compile(&big), c, r, 4_000_000_001, 1), 0);
    }

    #[test]
    fn bad_rules_name_the_field() {
        let e = parse_rules(&[dev(true, LinuxDeviceType::C, Some(1), Some(3), "rx")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "devices[0].access: 'x' is not one of r, w, m"
        );
        let e = parse_rules(&[
            dev(true, LinuxDeviceType::C, Some(1), Some(3), "r"),
            dev(true, LinuxDeviceType::C, Some(-5), None, "r"),
        ])
        .unwrap_err();
        assert!(e.to_string().starts_with("devices[1].major: -5"), "{e}");
        let e = parse_rules(&[dev(true, LinuxDeviceType::P, None, None, "r")]).unwrap_err();
        assert!(e.to_string().starts_with("devices[0].type"), "{e}");
    }
}
