//! The net crate's error type: each message is one line naming the network, plugin,
//! path or field that failed.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A plugin exited non-zero (or printed no result): its CNI error, on one line.
    #[error("CNI plugin {plugin} ({command}, network {network}): {message}")]
    Plugin {
        plugin: String,
        command: &'static str,
        network: String,
        message: String,
    },
    /// A plugin ran longer than the per-plugin timeout and was killed.
    #[error(
        "CNI plugin {plugin} ({command}, network {network}): no answer after {secs:.1} s, killed"
    )]
    Timeout {
        plugin: String,
        command: &'static str,
        network: String,
        secs: f64,
    },
    /// No executable of this plugin type in the plugin directories.
    #[error("CNI plugin {plugin} (network {network}): not found in {dirs} (install containernetworking-plugins or set --cni-path)")]
    PluginNotFound {
        plugin: String,
        network: String,
        dirs: String,
    },
    /// A network configuration that does not follow the CNI spec.
    #[error("network config {path}: {reason}")]
    Config { path: String, reason: String },
    /// No network of this name in the config directories.
    #[error("no such network: {0} (see `berth network ls`)")]
    NoSuchNetwork(String),
    /// `network create` of a name that exists.
    #[error("network {0} already exists")]
    NetworkExists(String),
    /// A malformed or conflicting value given by the user (`--subnet`, `-p`, ...).
    #[error("{what} {value:?}: {reason}")]
    Invalid {
        what: &'static str,
        value: String,
        reason: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Sys { what: String, source: nix::Error },
    /// An iptables/ip6tables command berth runs itself failed.
    #[error("{command}: {message}")]
    Firewall { command: String, message: String },
}

berth_fsutil::io_context!(Error);

pub(crate) fn sys(what: impl Into<String>) -> impl FnOnce(nix::Error) -> Error {
    let what = what.into();
    move |source| Error::Sys { what, source }
}

/// Squash a multi-line message to one line.
pub(crate) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
