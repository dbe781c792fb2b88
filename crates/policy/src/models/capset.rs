//! The five capability sets of a process (§2.4.1) and the transitions that change them,
//! after the kernel's rules (security/commoncap.c): capset, dropping from the bounding
//! set, raising/lowering ambient capabilities, setuid, and execve of a file that may be
//! setuid-root or carry file capabilities. Sets are bit masks.

/// CAP_SETPCAP's bit: needed to drop from the bounding set and to add to the inheritable
/// set beyond the permitted one.
pub const CAP_SETPCAP: u32 = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Creds {
    pub uid: u32,
    pub euid: u32,
    pub inheritable: u64,
    pub permitted: u64,
    pub effective: u64,
    pub bounding: u64,
    pub ambient: u64,
    pub no_new_privs: bool,
}

/// A program to exec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct File {
    pub setuid_root: bool,
    /// File capabilities: inheritable, permitted, and the effective bit.
    pub caps: Option<(u64, u64, bool)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// capset(2) with new inheritable, permitted, effective sets.
    Capset {
        i: u64,
        p: u64,
        e: u64,
    },
    /// prctl(PR_CAPBSET_DROP).
    DropBounding(u32),
    /// prctl(PR_CAP_AMBIENT_RAISE / LOWER).
    RaiseAmbient(u32),
    LowerAmbient(u32),
    /// prctl(PR_SET_NO_NEW_PRIVS, 1).
    SetNoNewPrivs,
    /// setuid(2) to a non-root uid (drops all permitted/effective/ambient caps).
    SetuidNonRoot(u32),
    Exec(File),
}

/// Why a transition is refused (the kernel's EPERM).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused;

impl Creds {
    pub fn root(bounding: u64) -> Creds {
        Creds {
            uid: 0,
            euid: 0,
            inheritable: 0,
            permitted: bounding,
            effective: bounding,
            bounding,
            ambient: 0,
            no_new_privs: false,
        }
    }

    fn has(&self, cap: u32) -> bool {
        self.effective & (1 << cap) != 0
    }

    /// The kernel's invariants: effective ⊆ permitted, ambient ⊆ permitted ∩ inheritable.
    pub fn well_formed(&self) -> bool {
        self.effective & !self.permitted == 0
            && self.ambient & !(self.permitted & self.inheritable) == 0
    }

    pub fn apply(&self, t: Transition) -> Result<Creds, Refused> {
        let mut n = *self;
        match t {
            Transition::Capset { i, p, e } => {
                // new P ⊆ old P; new E ⊆ new P; new I ⊆ old I ∪ (old P, or bounding with SETPCAP),
                // and always new I ⊆ old I ∪ bounding.
                let i_limit = if self.has(CAP_SETPCAP) {
                    self.inheritable | self.bounding
                } else {
                    self.inheritable | self.permitted
                };
                if p & !self.permitted != 0
                    || e & !p != 0
                    || i & !i_limit != 0
                    || i & !(self.inheritable | self.bounding) != 0
                {
                    return Err(Refused);
                }
                n.inheritable = i;
                n.permitted = p;
                n.effective = e;
                // ambient caps no longer in P ∩ I are dropped
                n.ambient &= p & i;
            }
            Transition::DropBounding(c) => {
                if !self.has(CAP_SETPCAP) {
                    return Err(Refused);
                }
                n.bounding &= !(1 << c);
            }
            Transition::RaiseAmbient(c) => {
                let bit = 1 << c;
                if self.permitted & bit == 0 || self.inheritable & bit == 0 {
                    return Err(Refused);
                }
                n.ambient |= bit;
            }
            Transition::LowerAmbient(c) => n.ambient &= !(1 << c),
            Transition::SetNoNewPrivs => n.no_new_privs = true,
            Transition::SetuidNonRoot(uid) => {
                if uid == 0 {
                    return Err(Refused);
                }
                if self.euid != 0 && self.uid != uid {
                    return Err(Refused);
                }
                n.uid = uid;
                n.euid = uid;
                // leaving root clears permitted, effective and ambient (no SECBIT_KEEP_CAPS)
                n.permitted = 0;
                n.effective = 0;
                n.ambient = 0;
            }
            Transition::Exec(f) => {
                // With no_new_privs, setuid bits and file capabilities are not honoured
                // as gains (the kernel caps the new permitted set at the old one).
                let euid = if f.setuid_root && !self.no_new_privs {
                    0
                } else {
                    self.euid
                };
                let root = euid == 0;
                let (fi, fp, fe) = if root {
                    (u64::MAX, u64::MAX, true)
                } else {
                    f.caps.unwrap_or((0, 0, false))
                };
                // The ambient set survives unless the exec changes the effective uid
                // (a honoured setuid) or the file carries capabilities.
                let is_setid = euid != self.uid;
                let ambient = if is_setid || f.caps.is_some() {
                    0
                } else {
                    self.ambient
                };
                let mut permitted = (self.inheritable & fi) | (fp & self.bounding) | ambient;
                if self.no_new_privs {
                    permitted &= self.permitted;
                }
                let effective = if fe { permitted } else { ambient & permitted };
                n.euid = euid;
                n.permitted = permitted;
                n.effective = effective;
                n.ambient = ambient & permitted;
            }
        }
        Ok(n)
    }
}
