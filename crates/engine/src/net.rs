//! The engine's network step: for `--network bridge|NAME`, a persistent network
//! namespace under `<runtime-root>/netns/<id>` attached to the CNI network before the
//! container exists (the spec joins it by path), and detached (CNI DEL, namespace
//! removed) when the exit is recorded, on `rm`, or when `create` fails. Every mode gets
//! generated /etc/hosts, /etc/hostname and /etc/resolv.conf bind-mounted from the
//! container directory.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use berth_net::dns::{Aardvark, Record};
use berth_net::{Cni, NetNs, Network as CniNetwork, Networks, PortMapping, Request};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::{Error, IoContext, Result};
use crate::options::{Network, RunOptions};

/// The container's interface name on its network.
pub const IFNAME: &str = "eth0";

/// Where CNI plugins and network configurations are found, and where berth keeps its
/// own networks, IP leases and the CNI result cache.
#[derive(Clone, Debug)]
pub struct NetSettings {
    pub networks: Networks,
    pub cni: Cni,
    /// `<runtime-root>/netns`: the containers' network namespaces.
    pub netns_dir: PathBuf,
    /// Names on user networks (none when aardvark-dns is not installed).
    pub dns: Option<Aardvark>,
}

impl NetSettings {
    pub fn new(data_root: &Path, runtime_root: &Path) -> NetSettings {
        NetSettings {
            networks: Networks {
                own_dir: data_root.join("networks"),
                cni_config_dir: PathBuf::from(berth_net::DEFAULT_CONFIG_DIR),
                ipam_dir: data_root.join("cni/networks"),
            },
            cni: Cni::new(
                berth_net::DEFAULT_PLUGIN_DIRS
                    .iter()
                    .map(PathBuf::from)
                    .collect(),
                data_root.join("cni/results"),
            ),
            netns_dir: runtime_root.join("netns"),
            dns: Aardvark::find(&runtime_root.join("aardvark-dns")),
        }
    }
}

/// A container's attachment, kept in its metadata until it is detached.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NetState {
    pub network: String,
    pub netns: PathBuf,
    /// CIDR, e.g. `10.88.0.2/16`.
    pub address: Option<String>,
    pub gateway: Option<String>,
    pub mac: Option<String>,
    /// With the host ports picked for `-p CTRPORT`.
    pub ports: Vec<PortMapping>,
    /// CNI ADD done and not yet undone.
    pub attached: bool,
    /// On a dual-stack network: CIDR, e.g. `fd5e:1::2/64`, and the IPv6 gateway.
    #[serde(default)]
    pub address6: Option<String>,
    #[serde(default)]
    pub gateway6: Option<String>,
    /// Registered with aardvark-dns, which answers on this address (the gateway).
    #[serde(default)]
    pub dns_server: Option<String>,
}

impl NetState {
    pub fn ip(&self) -> Option<IpAddr> {
        self.address.as_deref()?.split('/').next()?.parse().ok()
    }
}

/// Set `lo` up in the network namespace of `pid` (`--network none`).
pub(crate) fn loopback_up(pid: Pid) -> Result<()> {
    Ok(NetNs {
        path: PathBuf::from(format!("/proc/{pid}/ns/net")),
    }
    .loopback_up()?)
}

fn request(id: &str, netns: &Path) -> Request {
    Request {
        container_id: id.to_string(),
        netns: Some(netns.to_path_buf()),
        ifname: IFNAME.into(),
        ..Default::default()
    }
}

/// The CNI network `--network` names (`bridge` is berth's default network).
pub(crate) fn resolve(s: &NetSettings, mode: &Network) -> Result<Option<CniNetwork>> {
    let name = match mode {
        Network::None | Network::Host | Network::Container(_) | Network::Path(_) => {
            return Ok(None)
        }
        Network::Bridge => berth_net::DEFAULT_NETWORK,
        Network::Named(n) => n.as_str(),
    };
    Ok(Some(s.networks.get(name)?))
}

/// Check the flags against the mode before anything is made.
pub(crate) fn check_flags(opts: &RunOptions, net: Option<&CniNetwork>) -> Result<()> {
    let conflict = |flag: &'static str, value: String, needs: &str| Error::BadFlag {
        flag,
        value,
        reason: format!("{needs}, not --network {}", opts.network),
    };
    if let Network::Container(_) = opts.network {
        // The namespace and its hosts/hostname/resolv.conf are the other container's.
        let shared = "the joined container's namespace decides this";
        if let Some(h) = &opts.hostname {
            return Err(conflict("--hostname", h.clone(), shared));
        }
        if let Some(d) = opts.dns.first() {
            return Err(conflict("--dns", d.to_string(), shared));
        }
        if let Some((n, a)) = opts.add_hosts.first() {
            return Err(conflict("--add-host", format!("{n}:{a}"), shared));
        }
    }
    let Some(n) = net else {
        let bridge = "needs a bridge network";
        if let Some(ip) = opts.ip {
            return Err(conflict("--ip", ip.to_string(), bridge));
        }
        if let Some(mac) = &opts.mac {
            return Err(conflict("--mac-address", mac.clone(), bridge));
        }
        if let Some(p) = opts.ports.first() {
            return Err(conflict(
                "-p",
                p.to_string(),
                "port maps need a bridge network",
            ));
        }
        return Ok(());
    };
    if let Some(ip) = opts.ip {
        check_ip(ip, n)?;
    }
    if let Some(p) = opts.ports.first() {
        if !n
            .plugins
            .iter()
            .any(|p| p["capabilities"]["portMappings"] == true)
        {
            return Err(Error::BadFlag {
                flag: "-p",
                value: p.to_string(),
                reason: format!(
                    "network {} has no portmap plugin (an --internal network has no way in)",
                    n.name
                ),
            });
        }
    }
    Ok(berth_net::check_unique(&opts.ports)?)
}

/// `--ip` must be a host address of the network's subnet other than its gateway (for
/// networks whose subnet berth can read; host-local judges the others).
fn check_ip(ip: IpAddr, net: &CniNetwork) -> Result<()> {
    let summary = berth_net::summary(net);
    let Some(subnet) = summary
        .subnet
        .as_deref()
        .and_then(|s| s.parse::<berth_net::Subnet>().ok())
    else {
        return Ok(());
    };
    let bad = |reason: String| Error::BadFlag {
        flag: "--ip",
        value: ip.to_string(),
        reason,
    };
    let IpAddr::V4(v4) = ip else {
        return Err(bad(format!("network {} has no IPv6 subnet", net.name)));
    };
    let broadcast = u32::from(subnet.addr) | (u32::MAX >> subnet.prefix);
    if !subnet.contains(v4) || v4 == subnet.addr || u32::from(v4) == broadcast {
        return Err(bad(format!(
            "not a host address of network {} ({subnet})",
            net.name
        )));
    }
    if summary.gateway.as_deref() == Some(v4.to_string().as_str()) {
        return Err(bad(format!("is network {}'s gateway", net.name)));
    }
    Ok(())
}

/// Refuse a host port that another container of this data root maps already (portmap
/// only writes DNAT rules, so nothing else would notice; the later rule would be shadowed).
pub(crate) fn check_ports_taken<'a>(
    ports: &[PortMapping],
    others: impl IntoIterator<Item = (&'a str, &'a NetState)>,
) -> Result<()> {
    for (name, st) in others {
        if !st.attached {
            continue;
        }
        if let Some(p) = ports.iter().find(|p| {
            st.ports.iter().any(|o| {
                p.host_port != 0
                    && o.host_port == p.host_port
                    && o.protocol == p.protocol
                    && (o.host_ip.is_none() || p.host_ip.is_none() || o.host_ip == p.host_ip)
            })
        }) {
            return Err(Error::BadFlag {
                flag: "-p",
                value: p.to_string(),
                reason: format!(
                    "host port {}/{} is mapped by container {name} already",
                    p.host_port, p.protocol
                ),
            });
        }
    }
    Ok(())
}

/// `-P`: the image's ExposedPorts (`80/tcp`, `53/udp`, `8000-8001/tcp`) on free host
/// ports, except those `-p` maps already. Keys that do not parse are skipped: the image
/// is not the user's input.
pub(crate) fn exposed_ports(
    exposed: impl IntoIterator<Item = String>,
    mapped: &[PortMapping],
) -> Vec<PortMapping> {
    let mut keys: Vec<String> = exposed.into_iter().collect();
    keys.sort();
    let mut out: Vec<PortMapping> = Vec::new();
    for key in keys {
        match berth_net::parse_publish(&key) {
            Ok(ports) => {
                for p in ports {
                    let taken = |m: &PortMapping| {
                        m.container_port == p.container_port && m.protocol == p.protocol
                    };
                    if !mapped.iter().chain(out.iter()).any(taken) {
                        out.push(p);
                    }
                }
            }
            Err(e) => tracing::warn!(port = key, error = %e, "skipping an ExposedPorts entry"),
        }
    }
    out
}

/// Make the namespace and ADD it to `net`. Nothing is left when this fails.
pub(crate) fn attach(
    s: &NetSettings,
    id: &str,
    name: &str,
    net: &CniNetwork,
    opts: &RunOptions,
) -> Result<NetState> {
    let mut ports = opts.ports.clone();
    for p in &mut ports {
        p.assign()?;
    }
    berth_net::masq::ensure(net)?;
    let ns = NetNs::create(&s.netns_dir, id)?;
    let mut req = request(id, &ns.path);
    // host-local reads IP, bridge and tuning read MAC; IgnoreUnknown lets each plugin
    // skip the keys it does not know (CNI spec, CNI_ARGS).
    if opts.ip.is_some() || opts.mac.is_some() {
        req.args.push(("IgnoreUnknown".into(), "1".into()));
    }
    if let Some(ip) = opts.ip {
        req.args.push(("IP".into(), ip.to_string()));
    }
    if let Some(mac) = &opts.mac {
        req.args.push(("MAC".into(), mac.clone()));
    }
    if !ports.is_empty() {
        req.capabilities.insert(
            "portMappings".into(),
            Value::Array(ports.iter().map(PortMapping::to_cni).collect()),
        );
    }
    let a = match s.cni.attach(net, &req) {
        Ok(a) => a,
        Err(e) => {
            let _ = ns.remove();
            return Err(e.into());
        }
    };
    let mut st = NetState {
        network: net.name.clone(),
        netns: ns.path,
        address: a.ipv4().map(|(ip, p)| format!("{ip}/{p}")),
        gateway: a.gateway(),
        mac: a.mac(),
        ports,
        attached: true,
        dns_server: None,
        address6: a.ipv6().map(|(ip, p)| format!("{ip}/{p}")),
        gateway6: a.gateway6(),
    };
    if let Err(e) = register_name(s, id, name, net, &mut st) {
        let _ = detach(s, id, &mut st);
        return Err(e);
    }
    Ok(st)
}

/// User networks with a gateway (not the default one, as with Docker; not internal
/// ones, whose bridge has no address) resolve their containers' names.
fn register_name(
    s: &NetSettings,
    id: &str,
    name: &str,
    net: &CniNetwork,
    st: &mut NetState,
) -> Result<()> {
    let Some(dns) = &s.dns else { return Ok(()) };
    let gateway = st.gateway.as_deref().and_then(|g| g.parse().ok());
    let ip = st.ip().and_then(|ip| match ip {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(_) => None,
    });
    let (Some(gateway), Some(ip)) = (gateway, ip) else {
        return Ok(());
    };
    if net.name == berth_net::DEFAULT_NETWORK || berth_net::summary(net).internal {
        return Ok(());
    }
    let record = Record {
        id: id.to_string(),
        ip,
        names: vec![name.to_string(), id[..12.min(id.len())].to_string()],
    };
    dns.add(&net.name, gateway, &record)?;
    st.dns_server = Some(gateway.to_string());
    Ok(())
}

/// CNI DEL (from the cache; the current config file as a fallback) and remove the
/// namespace. Safe to call again.
pub(crate) fn detach(s: &NetSettings, id: &str, st: &mut NetState) -> Result<()> {
    if !st.attached {
        return Ok(());
    }
    if let (Some(dns), Some(_)) = (&s.dns, &st.dns_server) {
        if let Err(e) = dns.remove(&st.network, id) {
            tracing::warn!(id, error = %e, "removing the container's name from aardvark-dns");
        }
        st.dns_server = None;
    }
    let fallback = CniNetwork::find(&s.networks.dirs(), &st.network).ok();
    let mut req = request(id, &st.netns);
    if !st.netns.exists() {
        // Gone (a reboot emptied the runtime root): the spec allows DEL without one.
        req.netns = None;
    }
    let del = s.cni.detach(&st.network, &req, fallback.as_ref());
    let rm = NetNs {
        path: st.netns.clone(),
    }
    .remove();
    st.attached = false;
    del?;
    Ok(rm?)
}

/// Undo whatever a create killed half way may have left for container `id` without
/// recording it: cached CNI attachments (DEL from the cache), its aardvark-dns records,
/// its namespace.
pub(crate) fn sweep(s: &NetSettings, id: &str) -> Result<()> {
    let netns = s.netns_dir.join(id);
    let mut first = None;
    for (network, ifname) in s.cni.cached_for(id) {
        if let Some(dns) = &s.dns {
            let _ = dns.remove(&network, id);
        }
        let req = Request {
            container_id: id.to_string(),
            netns: netns.exists().then(|| netns.clone()),
            ifname,
            ..Default::default()
        };
        if let Err(e) = s.cni.detach(&network, &req, None) {
            first.get_or_insert(e);
        }
    }
    let rm = NetNs { path: netns }.remove();
    match first {
        Some(e) => Err(e.into()),
        None => Ok(rm?),
    }
}

/// Write hosts, hostname and resolv.conf into `dir` and bind them over the image's.
/// With `--network container:ID`, `shared` is that container's directory: its files
/// (and hostname) are copied, as Docker shares them.
pub(crate) fn etc_files(
    spec: &mut Value,
    dir: &Path,
    opts: &RunOptions,
    st: Option<&NetState>,
    shared: Option<&Path>,
) -> Result<()> {
    let mut hostname = spec["hostname"].as_str().unwrap_or("localhost").to_string();
    let (hosts, resolv) = if let Some(from) = shared {
        let read = |f: &str| {
            let p = from.join(f);
            std::fs::read_to_string(&p).at(&p)
        };
        hostname = read("hostname")?.trim().to_string();
        spec["hostname"] = json!(hostname);
        (read("hosts")?, read("resolv.conf")?)
    } else if opts.network == Network::Host {
        let host = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let mut hosts = host("/etc/hosts");
        for (n, a) in &opts.add_hosts {
            hosts += &format!("{a}\t{n}\n");
        }
        let resolv = if opts.dns.is_empty() {
            host("/etc/resolv.conf")
        } else {
            berth_net::files::resolv_conf("", &opts.dns)
        };
        (hosts, resolv)
    } else {
        let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let resolv = match st.and_then(|s| s.dns_server.as_deref()) {
            // aardvark-dns answers the network's names and forwards the rest.
            Some(server) if opts.dns.is_empty() => {
                berth_net::files::resolv_conf_via(&host_resolv, server)
            }
            _ => berth_net::files::resolv_conf(&host_resolv, &opts.dns),
        };
        (
            berth_net::files::hosts(&hostname, st.and_then(NetState::ip), &opts.add_hosts),
            resolv,
        )
    };
    let mounts = spec["mounts"]
        .as_array_mut()
        .expect("the image crate sets mounts");
    for (file, text) in [
        ("hosts", hosts),
        ("hostname", format!("{hostname}\n")),
        ("resolv.conf", resolv),
    ] {
        let p = dir.join(file);
        std::fs::write(&p, text).at(&p)?;
        let dest = format!("/etc/{file}");
        mounts.retain(|m| m["destination"] != dest.as_str());
        mounts.push(json!({"destination": dest, "type": "bind", "source": p, "options": ["rbind", "rprivate", "rw"]}));
    }
    Ok(())
}

/// Point the spec's network namespace at `netns`.
pub(crate) fn join_netns(spec: &mut Value, netns: &Path) {
    if let Some(ns) = spec["linux"]["namespaces"].as_array_mut() {
        ns.retain(|n| n["type"] != "network");
        ns.push(json!({"type": "network", "path": netns}));
    }
}
