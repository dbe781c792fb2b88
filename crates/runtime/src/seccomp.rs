//! Bridge to the seccomp crate: the profile travels to init inside the spec and is compiled
//! there (and once in the parent, so a bad profile fails `create` before anything exists).

use oci_spec::runtime::LinuxSeccomp;

use crate::error::Result;

pub use berth_seccomp::Filter;

pub fn compile(profile: &LinuxSeccomp) -> Result<Filter> {
    Ok(berth_seccomp::compile(profile)?)
}

/// Install the filter; with SCMP_ACT_NOTIFY, hand the listener fd to the agent at
/// `listenerPath` together with the container state.
pub fn install(filter: &Filter, profile: &LinuxSeccomp, state: &serde_json::Value) -> Result<()> {
    if let Some(fd) = filter.install()? {
        use std::os::fd::AsFd;
        let path = profile.listener_path().clone().unwrap_or_default();
        let metadata = profile.listener_metadata().clone().unwrap_or_default();
        berth_seccomp::send_listener(&path, &metadata, state, fd.as_fd())?;
    }
    Ok(())
}

/// The `linux.seccomp` part of `berth features`.
pub fn features() -> serde_json::Value {
    serde_json::json!({
        "enabled": true,
        "actions": berth_seccomp::supported_actions(),
        "operators": ["SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ"],
        "archs": berth_seccomp::supported_archs(),
        "knownFlags": berth_seccomp::supported_flags(),
        "supportedFlags": berth_seccomp::supported_flags().iter().filter(|f| f.parse().is_ok_and(berth_seccomp::kernel_supports_flag)).collect::<Vec<_>>(),
    })
}
