//! Errors of the seccomp crate. Every message is one line naming the field or path at fault.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while parsing, compiling, installing or handing over a filter.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The profile JSON does not match the OCI schema (unknown action, operator, arch, flag...).
    #[error("seccomp profile: {path}: {message}")]
    Parse { path: String, message: String },

    /// An architecture the profile lists but for which no syscall table is compiled in.
    #[error("seccomp profile: architectures: {arch} is not supported (supported: SCMP_ARCH_X86_64, SCMP_ARCH_X86, SCMP_ARCH_X32)")]
    UnsupportedArch { arch: String },

    /// `args[].index` outside 0..=5.
    #[error("seccomp profile: syscalls[{rule}].args[{arg}].index: {index} is out of range 0..=5")]
    ArgIndex {
        rule: usize,
        arg: usize,
        index: usize,
    },

    /// An errno or trace value that does not fit the action's return data.
    #[error("seccomp profile: {field}: {value} exceeds the maximum {max}")]
    ReturnData { field: String, value: u32, max: u32 },

    /// `defaultAction: SCMP_ACT_NOTIFY` would make the container's own init block on itself.
    #[error("seccomp profile: defaultAction: SCMP_ACT_NOTIFY cannot be the default action")]
    NotifyDefault,

    /// The OCI spec requires `listenerPath` whenever SCMP_ACT_NOTIFY is used.
    #[error("seccomp profile: listenerPath: must be set when a rule uses SCMP_ACT_NOTIFY")]
    NotifyWithoutListener,

    /// The compiled program is longer than the kernel accepts (BPF_MAXINSNS).
    #[error("seccomp profile: compiles to {count} BPF instructions, more than the kernel limit of {max}")]
    TooManyInstructions { count: usize, max: usize },

    /// The running kernel does not know a filter flag the profile asks for.
    #[error("seccomp flags: {flag} is not supported by the running kernel")]
    UnsupportedFlag { flag: &'static str },

    /// The running kernel does not know an action the profile uses.
    #[error("seccomp actions: {action} is not supported by the running kernel")]
    UnsupportedAction { action: &'static str },

    /// seccomp(2) refused with EACCES: the caller has neither no_new_privs nor CAP_SYS_ADMIN.
    #[error("seccomp(SECCOMP_SET_MODE_FILTER): permission denied: set no_new_privs first or hold CAP_SYS_ADMIN")]
    NeedNoNewPrivs,

    /// SECCOMP_FILTER_FLAG_TSYNC could not synchronise another thread.
    #[error("seccomp(SECCOMP_SET_MODE_FILTER): flags: SECCOMP_FILTER_FLAG_TSYNC failed for thread {tid}")]
    Tsync { tid: i64 },

    /// Any other failure of seccomp(2).
    #[error("seccomp(SECCOMP_SET_MODE_FILTER): {0}")]
    Install(#[source] io::Error),

    /// The container state handed to [`crate::send_listener`] lacks a required field.
    #[error("seccomp listener: state.{field}: {problem}")]
    ListenerState {
        field: &'static str,
        problem: &'static str,
    },

    /// Connecting or sending to the seccomp agent's socket failed.
    #[error("seccomp listener: {}: {source}", path.display())]
    Listener {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}
