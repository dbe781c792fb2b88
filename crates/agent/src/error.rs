//! Errors of the host side (client) of the agent protocol.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("agent socket {path}: {source}")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("agent socket {path}: vsock port {port}: {why}")]
    Handshake {
        path: PathBuf,
        port: u32,
        why: String,
    },
    #[error("agent: {call} did not answer within {after:?}")]
    Timeout { call: &'static str, after: Duration },
    #[error("agent speaks protocol {agent} (berth-agent {agent_version}), this berth speaks {host}: install matching berth and berth-agent binaries")]
    Version {
        host: u32,
        agent: u32,
        agent_version: String,
    },
    #[error("agent: {call}: {message}")]
    Rpc { call: &'static str, message: String },
    #[error("agent connection: {0}")]
    Transport(#[from] tonic::transport::Error),
}

impl Error {
    pub(crate) fn rpc(call: &'static str, status: tonic::Status) -> Error {
        Error::Rpc {
            call,
            message: status.message().to_string(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
