//! berth's own networks: bridge + host-local IPAM + portmap + tuning
//! configuration lists written to berth's config directory. The default network
//! `berth` is written on first use with a subnet that overlaps no other network and no
//! route of the caller's namespace.
//!
//! Bridge devices live in the host's namespace, which every data root on the host
//! shares, so a bridge's name is derived from the data root and the network name
//! ([`Networks::bridge_name`]): two data roots never drive (or delete) each other's
//! bridge. Only the default data root's default network keeps the short `berth0`.

use std::fs::File;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::conf::{validate_name, Network};
use crate::error::{sys, Error, IoContext, Result};
use crate::subnet::{self, Subnet, Subnet6};

/// The network `--network bridge` (and no `--network`) means.
pub const DEFAULT_NETWORK: &str = "berth";
pub const DEFAULT_BRIDGE: &str = "berth0";
/// The networks directory of berth's default data root (`/var/lib/berth`): its
/// default network's bridge is [`DEFAULT_BRIDGE`].
pub const DEFAULT_OWN_DIR: &str = "/var/lib/berth/networks";
/// Linux interface names hold at most this many bytes (IFNAMSIZ 16, with the NUL).
const IFNAME_MAX: usize = 15;
pub const CNI_VERSION: &str = "1.0.0";

/// `berth network create` flags.
#[derive(Clone, Debug, Default)]
pub struct NetworkSpec {
    pub name: String,
    pub subnet: Option<Subnet>,
    pub gateway: Option<Ipv4Addr>,
    /// No gateway, no default route, no masquerade, no port maps: traffic stays on the
    /// bridge.
    pub internal: bool,
    /// Dual stack: an IPv6 range beside the IPv4 one (the default network always).
    pub ipv6: bool,
    /// The IPv6 subnet (implies `ipv6`); default: a unique local /64 derived from the
    /// data root and the name.
    pub subnet6: Option<Subnet6>,
}

/// What `network ls/inspect` show about a network.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Summary {
    pub name: String,
    /// `bridge` for berth's networks, the first plugin's type otherwise.
    pub driver: String,
    pub bridge: Option<String>,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subnet6: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<String>,
    pub internal: bool,
    /// berth makes the network's forward and masquerade rules itself ([`crate::masq`]),
    /// not the bridge (ipMasq) and firewall plugins.
    pub own_rules: bool,
    /// Written by berth (removable with `network rm`).
    pub managed: bool,
    pub config_file: Option<PathBuf>,
}

/// berth's network directories: its own (written by `network create`) first, then the
/// system's CNI configuration directory (read only).
#[derive(Clone, Debug)]
pub struct Networks {
    pub own_dir: PathBuf,
    pub cni_config_dir: PathBuf,
    /// host-local's `dataDir` for berth's networks (the IP leases).
    pub ipam_dir: PathBuf,
}

impl Networks {
    pub fn dirs(&self) -> Vec<PathBuf> {
        vec![self.own_dir.clone(), self.cni_config_dir.clone()]
    }

    fn lock(&self) -> Result<Flock<File>> {
        std::fs::create_dir_all(&self.own_dir).at(&self.own_dir)?;
        let p = self.own_dir.join(".lock");
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .at(&p)?;
        Flock::lock(f, FlockArg::LockExclusive)
            .map_err(|(_, e)| sys(format!("flock {}", p.display()))(e))
    }

    pub fn list(&self) -> Result<Vec<Network>> {
        Network::list(&self.dirs())
    }

    /// The bridge device network `name` of this data root gets: `berth0` for the
    /// default network of the default data root, else `berth-` and 9 hex digits of
    /// SHA-256(networks dir, NUL, name), which fits IFNAMSIZ and differs between data
    /// roots (and between networks of one data root).
    pub fn bridge_name(&self, name: &str) -> String {
        if name == DEFAULT_NETWORK && self.own_dir == Path::new(DEFAULT_OWN_DIR) {
            return DEFAULT_BRIDGE.to_string();
        }
        let hex: String = self
            .digest(name)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let prefix = "berth-";
        format!("{prefix}{}", &hex[..IFNAME_MAX - prefix.len()])
    }

    /// SHA-256(networks dir, NUL, name): what tells this data root's network `name`
    /// from every other on the host.
    fn digest(&self, name: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.own_dir.as_os_str().as_bytes());
        h.update([0]);
        h.update(name.as_bytes());
        h.finalize().into()
    }

    /// The network called `name`; `berth` is created on first use.
    pub fn get(&self, name: &str) -> Result<Network> {
        match Network::find(&self.dirs(), name) {
            Err(Error::NoSuchNetwork(_)) if name == DEFAULT_NETWORK => {
                let _lock = self.lock()?;
                match Network::find(&self.dirs(), name) {
                    Err(Error::NoSuchNetwork(_)) => self.write(&NetworkSpec {
                        name: DEFAULT_NETWORK.into(),
                        ipv6: true,
                        ..Default::default()
                    }),
                    other => other,
                }
            }
            other => other,
        }
    }

    /// `network create`: checks the name, the subnet (free among networks; when picked
    /// automatically, also free of routes) and the gateway, then writes the conflist.
    pub fn create(&self, spec: &NetworkSpec) -> Result<Network> {
        validate_name(&spec.name)?;
        if matches!(spec.name.as_str(), "bridge" | "none" | "host" | "default") {
            return Err(Error::Invalid {
                what: "network name",
                value: spec.name.clone(),
                reason: "reserved for --network modes".into(),
            });
        }
        let _lock = self.lock()?;
        if self.list()?.iter().any(|n| n.name == spec.name) {
            return Err(Error::NetworkExists(spec.name.clone()));
        }
        self.write(spec)
    }

    fn write(&self, spec: &NetworkSpec) -> Result<Network> {
        let existing = self.list()?;
        let taken: Vec<(String, Subnet)> = existing
            .iter()
            .filter_map(|n| Some((n.name.clone(), summary(n).subnet?.parse().ok()?)))
            .collect();
        let subnet = match spec.subnet {
            Some(s) => {
                if let Some((other, o)) = taken.iter().find(|(_, t)| t.overlaps(s)) {
                    return Err(Error::Invalid {
                        what: "--subnet",
                        value: s.to_string(),
                        reason: format!("overlaps network {other} ({o})"),
                    });
                }
                s
            }
            None => {
                let mut all: Vec<Subnet> = taken.iter().map(|(_, s)| *s).collect();
                all.extend(subnet::routes());
                subnet::pick_free(&all).ok_or_else(|| Error::Invalid {
                    what: "--subnet",
                    value: String::new(),
                    reason: "no free 10.x.0.0/16 left: give one".into(),
                })?
            }
        };
        let gateway = spec.gateway.unwrap_or_else(|| subnet.first_host());
        let broadcast = Ipv4Addr::from(u32::from(subnet.addr) | (u32::MAX >> subnet.prefix));
        if !subnet.contains(gateway) || gateway == subnet.addr || gateway == broadcast {
            return Err(Error::Invalid {
                what: "--gateway",
                value: gateway.to_string(),
                reason: format!("not a host address of {subnet}"),
            });
        }
        let v6 = if spec.ipv6 || spec.subnet6.is_some() {
            let s6 = self.subnet6(spec, &existing)?;
            Some((s6, s6.first_host()))
        } else {
            None
        };
        let bridge = self.bridge_name(&spec.name);
        if let Some(other) = existing
            .iter()
            .find(|n| summary(n).bridge.as_deref() == Some(bridge.as_str()))
        {
            return Err(Error::Invalid {
                what: "network",
                value: spec.name.clone(),
                reason: format!("its bridge {bridge} is network {}'s already", other.name),
            });
        }
        let conf = conflist(
            &spec.name,
            &bridge,
            (subnet, gateway),
            v6,
            spec.internal,
            &self.ipam_dir,
        );
        let path = self.own_dir.join(format!("{}.conflist", spec.name));
        let tmp = self.own_dir.join(format!(".{}.tmp", spec.name));
        std::fs::write(&tmp, serde_json::to_vec_pretty(&conf).expect("json")).at(&tmp)?;
        std::fs::rename(&tmp, &path).at(&path)?;
        Network::load(&path)
    }

    /// The IPv6 subnet of a new network: the given one if it overlaps no network's, else
    /// the first free unique local /64 out of this network's digest.
    fn subnet6(&self, spec: &NetworkSpec, existing: &[Network]) -> Result<Subnet6> {
        let taken: Vec<(String, Subnet6)> = existing
            .iter()
            .filter_map(|n| Some((n.name.clone(), summary(n).subnet6?.parse().ok()?)))
            .collect();
        if let Some(s6) = spec.subnet6 {
            if let Some((other, o)) = taken.iter().find(|(_, t)| t.overlaps(s6)) {
                return Err(Error::Invalid {
                    what: "--subnet",
                    value: s6.to_string(),
                    reason: format!("overlaps network {other} ({o})"),
                });
            }
            return Ok(s6);
        }
        let d = self.digest(&spec.name);
        d.chunks_exact(5)
            .filter_map(|c| <[u8; 5]>::try_from(c).ok())
            .map(|seed| Subnet6::unique_local(&seed))
            .find(|s6| !taken.iter().any(|(_, t)| t.overlaps(*s6)))
            .ok_or_else(|| Error::Invalid {
                what: "--subnet",
                value: String::new(),
                reason: "no free IPv6 /64 found: give one".into(),
            })
    }

    /// `network rm`: only networks berth wrote; the caller checks that no container uses
    /// it. Removes the config, the leases directory and the bridge device.
    pub fn remove(&self, name: &str) -> Result<Network> {
        let _lock = self.lock()?;
        let net = Network::find(&self.dirs(), name)?;
        let s = summary(&net);
        if !s.managed
            || net.source.as_deref().and_then(Path::parent) != Some(self.own_dir.as_path())
        {
            return Err(Error::Invalid {
                what: "network",
                value: name.to_string(),
                reason: format!(
                    "defined in {}, not by berth: remove the file there",
                    net.source.as_deref().unwrap_or(Path::new("?")).display()
                ),
            });
        }
        crate::masq::remove(&net)?;
        if let Some(src) = &net.source {
            std::fs::remove_file(src).at(src)?;
        }
        let leases = self.ipam_dir.join(name);
        if let Err(e) = std::fs::remove_dir_all(&leases) {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(e).at(leases);
            }
        }
        if let Some(b) = s.bridge {
            delete_bridge(&b)?;
        }
        Ok(net)
    }
}

/// The configuration list of a berth network.
pub fn conflist(
    name: &str,
    bridge: &str,
    (subnet, gateway): (Subnet, Ipv4Addr),
    v6: Option<(Subnet6, Ipv6Addr)>,
    internal: bool,
    ipam_dir: &Path,
) -> Value {
    let mut ranges = vec![json!([{"subnet": subnet.to_string(), "gateway": gateway.to_string()}])];
    let mut routes = vec![json!({"dst": "0.0.0.0/0"})];
    if let Some((s6, g6)) = v6 {
        ranges.push(json!([{"subnet": s6.to_string(), "gateway": g6.to_string()}]));
        routes.push(json!({"dst": "::/0"}));
    }
    let mut ipam = json!({
        "type": "host-local",
        "ranges": ranges,
        "dataDir": ipam_dir,
    });
    if !internal {
        ipam["routes"] = json!(routes);
    }
    let mut plugins = vec![json!({
        "type": "bridge",
        "bridge": bridge,
        "isGateway": !internal,
        // berth adds one masquerade rule per subnet instead (crate::masq).
        "ipMasq": false,
        "hairpinMode": true,
        "ipam": ipam,
    })];
    if !internal {
        plugins.push(json!({"type": "portmap", "capabilities": {"portMappings": true}}));
    }
    // No firewall plugin: crate::masq accepts the network's forwarded traffic per subnet.
    plugins.push(json!({"type": "tuning"}));
    json!({
        "cniVersion": CNI_VERSION,
        "name": name,
        "berth": {"internal": internal, "rules": true},
        "plugins": plugins,
    })
}

/// The facts `ls`/`inspect` show, read from the first (main) plugin.
pub fn summary(n: &Network) -> Summary {
    let main = &n.plugins[0];
    let range = &main["ipam"]["ranges"][0][0];
    // A dual-stack berth network lists its IPv6 range second.
    let range6 = &main["ipam"]["ranges"][1][0];
    let subnet = range["subnet"]
        .as_str()
        .or_else(|| main["ipam"]["subnet"].as_str())
        .map(String::from);
    let raw: Value = n
        .source
        .as_ref()
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    Summary {
        name: n.name.clone(),
        driver: main["type"].as_str().unwrap_or("?").to_string(),
        bridge: main["bridge"].as_str().map(String::from),
        subnet,
        gateway: range["gateway"].as_str().map(String::from),
        subnet6: range6["subnet"].as_str().map(String::from),
        gateway6: range6["gateway"].as_str().map(String::from),
        internal: raw["berth"]["internal"].as_bool().unwrap_or(false)
            || (main["type"] == "bridge" && main["isGateway"] == false),
        own_rules: raw["berth"]["rules"].as_bool().unwrap_or(false),
        managed: raw.get("berth").is_some(),
        config_file: n.source.clone(),
    }
}

/// Whether a link of this name exists in the caller's namespace.
pub fn link_exists(name: &str) -> bool {
    let Ok(c) = std::ffi::CString::new(name) else {
        return false;
    };
    // SAFETY: if_nametoindex reads a NUL-terminated string we own.
    unsafe { libc::if_nametoindex(c.as_ptr()) != 0 }
}

/// Delete the bridge (netlink RTM_DELLINK by index); absent is fine.
pub fn delete_bridge(name: &str) -> Result<()> {
    let Ok(c) = std::ffi::CString::new(name) else {
        return Ok(());
    };
    // SAFETY: if_nametoindex reads a NUL-terminated string we own.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        return Ok(());
    }
    let what = || format!("delete bridge {name}");
    // SAFETY: socket(2) with constant arguments; the fd is owned right after.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if raw < 0 {
        return Err(sys(what())(nix::Error::last()));
    }
    // SAFETY: `raw` is a fresh fd nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    #[repr(C)]
    struct DelLink {
        hdr: libc::nlmsghdr,
        info: IfInfoMsg,
    }
    #[repr(C)]
    struct IfInfoMsg {
        family: u8,
        pad: u8,
        kind: u16,
        index: i32,
        flags: u32,
        change: u32,
    }
    let msg = DelLink {
        hdr: libc::nlmsghdr {
            nlmsg_len: std::mem::size_of::<DelLink>() as u32,
            nlmsg_type: libc::RTM_DELLINK,
            nlmsg_flags: (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16,
            nlmsg_seq: 1,
            nlmsg_pid: 0,
        },
        info: IfInfoMsg {
            family: libc::AF_UNSPEC as u8,
            pad: 0,
            kind: 0,
            index: index as i32,
            flags: 0,
            change: 0,
        },
    };
    // SAFETY: sends the bytes of a repr(C) message we own to the kernel.
    let sent = unsafe {
        libc::send(
            sock.as_raw_fd(),
            std::ptr::addr_of!(msg).cast(),
            std::mem::size_of::<DelLink>(),
            0,
        )
    };
    if sent < 0 {
        return Err(sys(what())(nix::Error::last()));
    }
    let mut buf = [0u8; 1024];
    // SAFETY: receives into a buffer we own, at most its length.
    let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        return Err(sys(what())(nix::Error::last()));
    }
    // The ack: nlmsghdr (16 bytes) of type NLMSG_ERROR, then the (negative) errno.
    let hdr = std::mem::size_of::<libc::nlmsghdr>();
    if (n as usize) >= hdr + 4 {
        let kind = u16::from_ne_bytes([buf[4], buf[5]]);
        let errno = i32::from_ne_bytes([buf[hdr], buf[hdr + 1], buf[hdr + 2], buf[hdr + 3]]);
        if kind == libc::NLMSG_ERROR as u16 && errno != 0 && -errno != libc::ENODEV {
            return Err(sys(what())(nix::Error::from_raw(-errno)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(d: &Path) -> Networks {
        Networks {
            own_dir: d.join("own"),
            cni_config_dir: d.join("cni"),
            ipam_dir: d.join("ipam"),
        }
    }

    #[test]
    fn bridge_names_differ_per_data_root_and_fit_ifnamsiz() {
        let default = Networks {
            own_dir: DEFAULT_OWN_DIR.into(),
            cni_config_dir: "/etc/cni/net.d".into(),
            ipam_dir: "/var/lib/berth/cni/networks".into(),
        };
        assert_eq!(default.bridge_name(DEFAULT_NETWORK), "berth0");
        let (a, b) = (nets(Path::new("/srv/a")), nets(Path::new("/srv/b")));
        let mut names = vec![default.bridge_name("web")];
        for n in [&a, &b] {
            names.push(n.bridge_name(DEFAULT_NETWORK));
            names.push(n.bridge_name("web"));
        }
        for name in &names {
            assert!(
                name.len() <= IFNAME_MAX && name.starts_with("berth-"),
                "{name}"
            );
            assert!(name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-'));
        }
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        assert_eq!(
            a.bridge_name("web"),
            nets(Path::new("/srv/a")).bridge_name("web")
        );
    }

    #[test]
    fn create_checks_and_writes() {
        let d = tempfile::tempdir().unwrap();
        let n = nets(d.path());
        let def = n.get("berth").unwrap();
        let s = summary(&def);
        assert_eq!(s.bridge, Some(n.bridge_name("berth")));
        assert!(s.managed && !s.internal);
        let sub: Subnet = s.subnet.unwrap().parse().unwrap();
        assert!(!subnet::routes().iter().any(|r| r.overlaps(sub)));
        // Dual stack by default: a unique local /64 and its ::1.
        let s6: Subnet6 = s.subnet6.unwrap().parse().unwrap();
        assert_eq!(s6.addr.octets()[0], 0xfd);
        assert_eq!(s.gateway6, Some(s6.first_host().to_string()));
        let routes = &def.plugins[0]["ipam"]["routes"];
        assert_eq!(routes, &json!([{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]));
        let a = n
            .create(&NetworkSpec {
                name: "a".into(),
                subnet: Some("10.200.0.0/24".parse().unwrap()),
                internal: true,
                ..Default::default()
            })
            .unwrap();
        let sa = summary(&a);
        assert_eq!(
            (sa.bridge, sa.gateway.as_deref()),
            (Some(n.bridge_name("a")), Some("10.200.0.1"))
        );
        assert!(sa.internal);
        assert_eq!(sa.subnet6, None, "IPv4 only unless --ipv6");
        assert!(!a.plugins.iter().any(|p| p["type"] == "portmap"));
        let v6 = n
            .create(&NetworkSpec {
                name: "six".into(),
                subnet: Some("10.210.0.0/24".parse().unwrap()),
                subnet6: Some("fd00:210::/64".parse().unwrap()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(summary(&v6).gateway6.as_deref(), Some("fd00:210::1"));
        let e = n
            .create(&NetworkSpec {
                name: "seven".into(),
                subnet6: Some("fd00:210::/48".parse().unwrap()),
                ..Default::default()
            })
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "--subnet \"fd00:210::/48\": overlaps network six (fd00:210::/64)"
        );
        let e = n
            .create(&NetworkSpec {
                name: "b".into(),
                subnet: Some("10.200.0.128/25".parse().unwrap()),
                ..Default::default()
            })
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "--subnet \"10.200.0.128/25\": overlaps network a (10.200.0.0/24)"
        );
        let e = n
            .create(&NetworkSpec {
                name: "b".into(),
                subnet: Some("10.201.0.0/24".parse().unwrap()),
                gateway: Some("10.202.0.1".parse().unwrap()),
                ..Default::default()
            })
            .unwrap_err();
        assert!(e.to_string().starts_with("--gateway"), "{e}");
        assert!(matches!(
            n.create(&NetworkSpec {
                name: "a".into(),
                ..Default::default()
            }),
            Err(Error::NetworkExists(_))
        ));
        assert!(n
            .create(&NetworkSpec {
                name: "host".into(),
                ..Default::default()
            })
            .is_err());
        assert_eq!(n.list().unwrap().len(), 3);
        // remove() deletes the bridge device too (none exists: nothing was attached).
        if !link_exists(&n.bridge_name("a")) {
            n.remove("a").unwrap();
            assert!(matches!(n.remove("a"), Err(Error::NoSuchNetwork(_))));
        }
    }
}
