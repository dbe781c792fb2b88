//! Normalisation of an OCI profile into per-architecture, per-syscall-number rules.
//!
//! Semantics (libseccomp as runc drives it): the conditions of one rule are ANDed; several
//! rules for one syscall are ORed. When rules for one syscall disagree on the action, rules
//! with conditions are tried first, in profile order, and the first rule without conditions
//! is the syscall's fallback; a syscall with no matching rule gets `defaultAction`.

use std::collections::BTreeMap;

use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};

use crate::arch::Target;
use crate::Error;

pub(crate) const RET_KILL_PROCESS: u32 = 0x8000_0000;
pub(crate) const RET_KILL_THREAD: u32 = 0x0000_0000;
pub(crate) const RET_TRAP: u32 = 0x0003_0000;
pub(crate) const RET_ERRNO: u32 = 0x0005_0000;
pub(crate) const RET_USER_NOTIF: u32 = 0x7fc0_0000;
pub(crate) const RET_TRACE: u32 = 0x7ff0_0000;
pub(crate) const RET_LOG: u32 = 0x7ffc_0000;
pub(crate) const RET_ALLOW: u32 = 0x7fff_0000;
/// `SECCOMP_RET_ACTION_FULL`: the action part of a return value.
pub(crate) const RET_ACTION_FULL: u32 = 0xffff_0000;

/// The kernel clamps errno values to MAX_ERRNO; we reject larger ones instead.
const MAX_ERRNO: u32 = 4095;
/// SECCOMP_RET_DATA is 16 bits wide.
const MAX_TRACE_DATA: u32 = 0xffff;

/// One argument comparison: `op(args[index], value[, value_two])`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cond {
    pub(crate) index: u8,
    pub(crate) op: LinuxSeccompOperator,
    pub(crate) value: u64,
    pub(crate) value_two: u64,
}

/// A conditional rule: all `conds` hold -> return `ret`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Rule {
    pub(crate) conds: Vec<Cond>,
    pub(crate) ret: u32,
}

/// Everything a filter decides for one syscall number.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SyscallPolicy {
    pub(crate) conditional: Vec<Rule>,
    pub(crate) fallback: Option<u32>,
}

impl SyscallPolicy {
    /// `Some(ret)` when the syscall's verdict does not depend on its arguments.
    pub(crate) fn unconditional(&self, default: u32) -> Option<u32> {
        self.conditional
            .is_empty()
            .then(|| self.fallback.unwrap_or(default))
    }
}

/// A validated, name-resolved profile.
#[derive(Clone, Debug)]
pub(crate) struct Policy {
    pub(crate) default: u32,
    pub(crate) bad_arch: u32,
    pub(crate) arches: BTreeMap<Target, BTreeMap<u32, SyscallPolicy>>,
    pub(crate) flags: Vec<LinuxSeccompFilterFlag>,
}

impl Policy {
    pub(crate) fn from_profile(profile: &LinuxSeccomp) -> Result<Self, Error> {
        if profile.default_action() == LinuxSeccompAction::ScmpActNotify {
            return Err(Error::NotifyDefault);
        }
        let default = action_ret(
            profile.default_action(),
            profile.default_errno_ret(),
            || "defaultErrnoRet".to_string(),
        )?;

        let mut arches: BTreeMap<Target, BTreeMap<u32, SyscallPolicy>> = BTreeMap::new();
        match profile.architectures().as_deref() {
            None | Some([]) => {
                let native = Target::from_oci(oci_spec::runtime::Arch::ScmpArchNative)?;
                arches.insert(native, BTreeMap::new());
            }
            Some(list) => {
                for arch in list {
                    arches.insert(Target::from_oci(*arch)?, BTreeMap::new());
                }
            }
        }

        for (i, syscall) in profile.syscalls().iter().flatten().enumerate() {
            let ret = action_ret(syscall.action(), syscall.errno_ret(), || {
                format!("syscalls[{i}].errnoRet")
            })?;
            let conds = syscall
                .args()
                .iter()
                .flatten()
                .enumerate()
                .map(|(j, arg)| {
                    if arg.index() > 5 {
                        return Err(Error::ArgIndex {
                            rule: i,
                            arg: j,
                            index: arg.index(),
                        });
                    }
                    Ok(Cond {
                        index: arg.index() as u8,
                        op: arg.op(),
                        value: arg.value(),
                        value_two: arg.value_two().unwrap_or(0),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            for (target, table) in arches.iter_mut() {
                for name in syscall.names() {
                    let Some(nr) = target.syscall_nr(name) else {
                        tracing::debug!(
                            syscall = name.as_str(),
                            arch = target.oci_name(),
                            "seccomp: syscall unknown on this architecture, rule skipped"
                        );
                        continue;
                    };
                    let entry = table.entry(nr).or_default();
                    if !conds.is_empty() {
                        entry.conditional.push(Rule {
                            conds: conds.clone(),
                            ret,
                        });
                    } else if entry.fallback.is_none() {
                        entry.fallback = Some(ret);
                    } else if entry.fallback != Some(ret) {
                        tracing::debug!(
                            syscall = name.as_str(),
                            "seccomp: later unconditional rule with another action ignored"
                        );
                    }
                }
            }
        }

        Ok(Policy {
            default,
            bad_arch: RET_KILL_PROCESS,
            arches,
            flags: profile.flags().clone().unwrap_or_default(),
        })
    }

    /// True when any reachable verdict is SCMP_ACT_NOTIFY.
    pub(crate) fn uses_notify(&self) -> bool {
        self.rets().any(|r| r & RET_ACTION_FULL == RET_USER_NOTIF)
    }

    /// Every return value the program can produce.
    pub(crate) fn rets(&self) -> impl Iterator<Item = u32> + '_ {
        let per_syscall = self
            .arches
            .values()
            .flat_map(|t| t.values())
            .flat_map(|p| p.conditional.iter().map(|r| r.ret).chain(p.fallback));
        [self.default, self.bad_arch].into_iter().chain(per_syscall)
    }
}

/// The SECCOMP_RET_* value of an OCI action; `field` names the errnoRet field for errors.
pub(crate) fn action_ret(
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    field: impl Fn() -> String,
) -> Result<u32, Error> {
    let with_data = |base: u32, max: u32| {
        // runc uses EPERM when errnoRet is absent, for ERRNO and TRACE alike.
        let value = errno_ret.unwrap_or(libc::EPERM as u32);
        if value > max {
            return Err(Error::ReturnData {
                field: field(),
                value,
                max,
            });
        }
        Ok(base | value)
    };
    match action {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            Ok(RET_KILL_THREAD)
        }
        LinuxSeccompAction::ScmpActKillProcess => Ok(RET_KILL_PROCESS),
        LinuxSeccompAction::ScmpActTrap => Ok(RET_TRAP),
        LinuxSeccompAction::ScmpActErrno => with_data(RET_ERRNO, MAX_ERRNO),
        LinuxSeccompAction::ScmpActTrace => with_data(RET_TRACE, MAX_TRACE_DATA),
        LinuxSeccompAction::ScmpActNotify => Ok(RET_USER_NOTIF),
        LinuxSeccompAction::ScmpActLog => Ok(RET_LOG),
        LinuxSeccompAction::ScmpActAllow => Ok(RET_ALLOW),
    }
}
