//! seccomp: compile an OCI seccomp profile into a classic BPF program and install it.
//!
//! ```no_run
//! # fn main() -> Result<(), berth_seccomp::Error> {
//! let filter = berth_seccomp::compile(&berth_seccomp::default_profile())?;
//! // in the container's init, after prctl(PR_SET_NO_NEW_PRIVS), right before execve:
//! let listener = filter.install()?;
//! # Ok(()) }
//! ```
//!
//! Invariants:
//! - One program covers every listed architecture. The first instructions check
//!   `seccomp_data.arch`; an architecture that is not listed gets SECCOMP_RET_KILL_PROCESS
//!   (libseccomp's bad-arch action). x86_64 and x32 share AUDIT_ARCH_X86_64 and are told
//!   apart by `X32_SYSCALL_BIT` in the syscall number: a number with that bit never reaches
//!   the x86_64 rules, and is killed unless SCMP_ARCH_X32 is listed. No `architectures`
//!   means the native architecture only, as libseccomp does.
//! - Syscall numbers come from the kernel UAPI headers at build time (build.rs). A syscall
//!   name unknown on an architecture is skipped with a `debug` log (runc's behaviour); an
//!   architecture without a table is an error naming it.
//! - Rule semantics are libseccomp's as runc uses them: conditions of one rule are ANDed,
//!   rules of one syscall are ORed; rules with conditions are tried in profile order before
//!   the syscall's first unconditional rule; otherwise `defaultAction`. Argument values are
//!   compared as unsigned 64-bit numbers (high and low words separately in BPF); 32-bit ABIs
//!   see zero-extended arguments.
//! - Dispatch on the syscall number is a binary search over intervals of equal verdict,
//!   never a linear chain; jumps beyond 255 instructions go through `ja` trampolines. A
//!   program longer than BPF_MAXINSNS (4096) is an error at compile time.
//! - `Filter::install` does not allocate and only calls seccomp(2); no_new_privs is the
//!   caller's job.

mod arch;
mod codegen;
mod default_profile;
mod error;
mod install;
mod listener;
mod policy;

#[cfg(test)]
mod interp;
#[cfg(test)]
mod tests;

use oci_spec::runtime::LinuxSeccomp;

pub use default_profile::{default_profile, default_profile_for, DEFAULT_CAPABILITIES};
pub use error::Error;
pub use listener::{send_listener, send_listener_on};

/// The kernel's limit on classic BPF program length (BPF_MAXINSNS).
pub const MAX_INSTRUCTIONS: usize = 4096;

/// A compiled seccomp program with the flags to install it with. It serializes (for the
/// trip from the runtime's parent process, which compiles, to the container's init, which
/// only installs) as packed instructions.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(into = "WireFilter", from = "WireFilter")]
pub struct Filter {
    program: Vec<libc::sock_filter>,
    /// SECCOMP_FILTER_FLAG_* bits the profile asks for (NEW_LISTENER is added at install).
    flags: libc::c_ulong,
    uses_notify: bool,
    /// `install::action_bit` of every action the program can return.
    action_mask: u32,
}

/// [`Filter`] as plain data: each instruction packed as code | jt << 16 | jf << 24 | k << 32.
#[derive(serde::Serialize, serde::Deserialize)]
struct WireFilter {
    program: Vec<u64>,
    flags: u64,
    uses_notify: bool,
    action_mask: u32,
}

impl From<Filter> for WireFilter {
    fn from(f: Filter) -> WireFilter {
        let program = f
            .program
            .iter()
            .map(|i| {
                u64::from(i.code)
                    | u64::from(i.jt) << 16
                    | u64::from(i.jf) << 24
                    | u64::from(i.k) << 32
            })
            .collect();
        WireFilter {
            program,
            flags: f.flags,
            uses_notify: f.uses_notify,
            action_mask: f.action_mask,
        }
    }
}

impl From<WireFilter> for Filter {
    fn from(w: WireFilter) -> Filter {
        let program = w
            .program
            .iter()
            .map(|&x| libc::sock_filter {
                code: x as u16,
                jt: (x >> 16) as u8,
                jf: (x >> 24) as u8,
                k: (x >> 32) as u32,
            })
            .collect();
        Filter {
            program,
            flags: w.flags as libc::c_ulong,
            uses_notify: w.uses_notify,
            action_mask: w.action_mask,
        }
    }
}

impl Filter {
    /// The BPF program, for tests and dumps.
    pub fn instructions(&self) -> &[libc::sock_filter] {
        &self.program
    }

    /// Whether the profile uses SCMP_ACT_NOTIFY, i.e. `install` returns a listener fd.
    pub fn uses_notify(&self) -> bool {
        self.uses_notify
    }
}

/// Compiles an OCI seccomp profile for every architecture it lists.
pub fn compile(profile: &LinuxSeccomp) -> Result<Filter, Error> {
    let policy = policy::Policy::from_profile(profile)?;
    let uses_notify = policy.uses_notify();
    if uses_notify && profile.listener_path().is_none() {
        return Err(Error::NotifyWithoutListener);
    }
    let flags = install::FLAGS
        .iter()
        .filter(|(flag, _, _)| policy.flags.contains(flag))
        .fold(0, |acc, (_, _, bit)| acc | bit);
    let action_mask = policy.rets().fold(0, |m, r| m | install::action_bit(r));
    let program = codegen::generate(&policy);
    if program.len() > MAX_INSTRUCTIONS {
        return Err(Error::TooManyInstructions {
            count: program.len(),
            max: MAX_INSTRUCTIONS,
        });
    }
    Ok(Filter {
        program,
        flags,
        uses_notify,
        action_mask,
    })
}

/// Parses a seccomp profile from JSON (the `linux.seccomp` object of config.json); an
/// unknown action, operator, architecture or flag is an error naming the field and value.
pub fn parse_profile(json: &str) -> Result<LinuxSeccomp, Error> {
    let de = &mut serde_json::Deserializer::from_str(json);
    serde_path_to_error::deserialize(de).map_err(|e| Error::Parse {
        path: e.path().to_string(),
        message: e.inner().to_string(),
    })
}

/// Action names this crate compiles (for `berth features`).
pub fn supported_actions() -> &'static [&'static str] {
    const NAMES: [&str; 9] = {
        let mut names = [""; 9];
        let mut i = 0;
        while i < 9 {
            names[i] = install::ACTIONS[i].0;
            i += 1;
        }
        names
    };
    &NAMES
}

/// Filter flag names this crate knows; whether the kernel has them is checked at install
/// (see [`kernel_supports_flag`]).
pub fn supported_flags() -> &'static [&'static str] {
    const NAMES: [&str; 4] = {
        let mut names = [""; 4];
        let mut i = 0;
        while i < 4 {
            names[i] = install::FLAGS[i].1;
            i += 1;
        }
        names
    };
    &NAMES
}

/// Architectures this crate has syscall tables for.
pub fn supported_archs() -> &'static [&'static str] {
    &["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
}

/// Whether the running kernel accepts the filter flag (probed with seccomp(2), no side effect).
pub fn kernel_supports_flag(flag: oci_spec::runtime::LinuxSeccompFilterFlag) -> bool {
    install::FLAGS
        .iter()
        .find(|(f, _, _)| *f == flag)
        .is_some_and(|(_, _, bit)| install::kernel_has_flag(*bit))
}
