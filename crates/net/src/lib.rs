//! net: container networking for berth — network namespaces that outlive their
//! creator, CNI 1.0 plugin invocation (ADD, DEL, CHECK, VERSION over configuration
//! lists), berth's own bridge networks, port mappings, and the per-container
//! hosts/hostname/resolv.conf files.
//!
//! Invariants:
//! * A plugin runs with the CNI_* environment and its configuration on stdin, in its
//!   own process group, for at most [`Cni::timeout`]; past it the group is killed. Its
//!   error reaches the caller as one line naming the plugin, the command, the network
//!   and the plugin's `msg`/`details`.
//! * Each plugin of a list gets the list's `name` and `cniVersion`, the previous
//!   plugin's result as `prevResult`, and `runtimeConfig` only for capabilities it
//!   declares. ADD that fails part-way DELs the plugins already run (reverse order).
//! * A successful ADD is cached (`<cache>/<network>-<container>-<ifname>`, with the
//!   configuration list and arguments), and DEL and CHECK use the cache, so they work
//!   after the network's file changed or was removed. DEL removes the entry only once
//!   every plugin succeeded. The entry is written (without a result) before the first
//!   ADD, so a caller killed mid-chain leaves a record a later DEL can use.
//! * A namespace made by [`NetNs::create`] is an nsfs bind mount on a file; it lives
//!   until [`NetNs::remove`], independent of any process.
//! * Names on user networks are served by one aardvark-dns for all networks
//!   ([`dns::Aardvark`]), fed and reloaded the way netavark does it.
//! * Plugins configure the network namespace of the calling process as "the host"
//!   (bridges, iptables rules, port maps): callers pick it by where they run.

mod bridge;
mod cni;
mod conf;
pub mod dns;
pub mod error;
pub mod files;
pub mod masq;
mod netns;
pub mod plugin;
mod ports;
pub mod subnet;

pub use bridge::{
    conflist, delete_bridge, link_exists, summary, NetworkSpec, Networks, Summary, DEFAULT_BRIDGE,
    DEFAULT_NETWORK, DEFAULT_OWN_DIR,
};
pub use cni::{
    plugin_dirs_from, Attachment, Cni, CniResult, Interface, IpConfig, Request, DEFAULT_CONFIG_DIR,
    DEFAULT_PLUGIN_DIRS, DEFAULT_TIMEOUT,
};
pub use conf::{validate_name, Network};
pub use error::{Error, Result};
pub use netns::NetNs;
pub use ports::{check_unique, parse_publish, PortMapping, Protocol};
pub use subnet::{Subnet, Subnet6};
