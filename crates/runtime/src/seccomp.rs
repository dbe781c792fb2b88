//! Bridge to the seccomp crate: the profile travels to init inside the spec and is compiled
//! there (and once in the parent, so a bad profile fails `create` before anything exists).

use oci_spec::runtime::LinuxSeccomp;

use crate::error::Result;

/// A compiled profile and where to send its notify listener. Compiled once by the parent
/// (a bad profile fails `create` before anything exists) and installed by init.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Compiled {
    filter: berth_seccomp::Filter,
    listener_path: Option<std::path::PathBuf>,
    listener_metadata: String,
    /// The agent's socket, connected before pivot_root (never serialized).
    #[serde(skip)]
    listener: Option<std::sync::Arc<std::os::unix::net::UnixStream>>,
}

pub fn compile(profile: &LinuxSeccomp) -> Result<Compiled> {
    Ok(Compiled {
        filter: berth_seccomp::compile(profile)?,
        listener_path: profile.listener_path().clone(),
        listener_metadata: profile.listener_metadata().clone().unwrap_or_default(),
        listener: None,
    })
}

impl Compiled {
    /// With SCMP_ACT_NOTIFY, connect to the agent at `listenerPath` now, while the path
    /// is reachable (init calls this before pivot_root); the fd is sent at install.
    pub fn connect_listener(&mut self) -> Result<()> {
        if self.filter.uses_notify() && self.listener.is_none() {
            let path = self.listener_path.clone().unwrap_or_default();
            let stream = std::os::unix::net::UnixStream::connect(&path).map_err(|source| {
                crate::error::Error::Io {
                    path: path.clone(),
                    source,
                }
            })?;
            self.listener = Some(std::sync::Arc::new(stream));
        }
        Ok(())
    }
}

/// Install the filter; with SCMP_ACT_NOTIFY, hand the listener fd to the agent together
/// with the container state.
pub fn install(c: &Compiled, state: &serde_json::Value) -> Result<()> {
    if let Some(fd) = c.filter.install()? {
        use std::os::fd::AsFd;
        let path = c.listener_path.clone().unwrap_or_default();
        match &c.listener {
            Some(stream) => berth_seccomp::send_listener_on(
                stream,
                &path,
                &c.listener_metadata,
                state,
                fd.as_fd(),
            )?,
            None => berth_seccomp::send_listener(&path, &c.listener_metadata, state, fd.as_fd())?,
        }
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
