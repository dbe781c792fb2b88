//! CNI 1.0 operations on a configuration list: ADD, DEL, CHECK and VERSION, with the
//! per-plugin `name`/`cniVersion`/`prevResult`/`runtimeConfig` injection the spec
//! describes, and libcni's result cache so DEL and CHECK work after the network's
//! configuration changed or was removed. The cache entry is written before the first
//! ADD (without a result), so a caller killed mid-chain leaves something to DEL.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::conf::Network;
use crate::error::{Error, IoContext, Result};
use crate::plugin::{self, Invocation, Verb};

/// Where plugins are found, where results are cached, how long a plugin may take.
#[derive(Clone, Debug)]
pub struct Cni {
    pub plugin_dirs: Vec<PathBuf>,
    /// `<dir>/<network>-<container>-<ifname>` hold the cached results.
    pub cache_dir: PathBuf,
    pub timeout: Duration,
}

/// Debian's plugin directory first, then the upstream default.
pub const DEFAULT_PLUGIN_DIRS: &[&str] = &["/usr/lib/cni", "/opt/cni/bin"];
pub const DEFAULT_CONFIG_DIR: &str = "/etc/cni/net.d";
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// One attachment request: the container, its namespace and interface, and the
/// capability arguments (`portMappings`, ...) handed to plugins that declare them.
#[derive(Clone, Debug, Default)]
pub struct Request {
    pub container_id: String,
    pub netns: Option<PathBuf>,
    pub ifname: String,
    pub args: Vec<(String, String)>,
    /// Capability name -> value, e.g. `"portMappings": [{"hostPort": 8080, ...}]`.
    pub capabilities: Map<String, Value>,
}

/// An IP address configured by ADD.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// CIDR notation, e.g. `10.88.0.2/16`.
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default)]
    pub mac: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
}

/// The typed part of a CNI result (the full JSON is kept in [`Attachment::raw`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniResult {
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    #[serde(default)]
    pub ips: Vec<IpConfig>,
}

/// A container attached to a network: what ADD returned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    pub network: String,
    pub container_id: String,
    pub ifname: String,
    pub result: CniResult,
    pub raw: Value,
}

impl Attachment {
    /// The first address on `ifname` inside the container (address, prefix length).
    pub fn ipv4(&self) -> Option<(std::net::Ipv4Addr, u8)> {
        let sandbox_if = self
            .result
            .interfaces
            .iter()
            .position(|i| i.name == self.ifname && i.sandbox.is_some());
        self.result
            .ips
            .iter()
            .filter(|ip| sandbox_if.is_none() || ip.interface == sandbox_if)
            .find_map(|ip| {
                let (a, p) = ip.address.split_once('/')?;
                Some((a.parse().ok()?, p.parse().ok()?))
            })
    }

    /// The container interface's first IPv6 address and prefix length.
    pub fn ipv6(&self) -> Option<(std::net::Ipv6Addr, u8)> {
        self.result.ips.iter().find_map(|ip| {
            let (a, p) = ip.address.split_once('/')?;
            Some((a.parse().ok()?, p.parse().ok()?))
        })
    }

    /// The IPv4 gateway.
    pub fn gateway(&self) -> Option<String> {
        self.gateway_of(|g| g.is_ipv4())
    }

    pub fn gateway6(&self) -> Option<String> {
        self.gateway_of(|g| g.is_ipv6())
    }

    fn gateway_of(&self, family: impl Fn(&std::net::IpAddr) -> bool) -> Option<String> {
        self.result
            .ips
            .iter()
            .filter_map(|ip| ip.gateway.as_deref()?.parse::<std::net::IpAddr>().ok())
            .find(family)
            .map(|g| g.to_string())
    }

    /// The MAC address of the container's interface.
    pub fn mac(&self) -> Option<String> {
        self.result
            .interfaces
            .iter()
            .find(|i| i.name == self.ifname && i.sandbox.is_some())
            .map(|i| i.mac.clone())
    }
}

/// libcni's cache record (kind `cniCacheV1`): enough to DEL without the config file.
#[derive(Serialize, Deserialize)]
struct Cached {
    kind: String,
    #[serde(rename = "containerId")]
    container_id: String,
    #[serde(rename = "ifName")]
    if_name: String,
    #[serde(rename = "networkName")]
    network_name: String,
    config: Value,
    #[serde(rename = "cniArgs", default)]
    cni_args: Vec<(String, String)>,
    #[serde(rename = "capabilityArgs", default)]
    capability_args: Map<String, Value>,
    result: Value,
}

impl Cni {
    pub fn new(plugin_dirs: Vec<PathBuf>, cache_dir: PathBuf) -> Cni {
        Cni {
            plugin_dirs,
            cache_dir,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    fn cache_path(&self, network: &str, container_id: &str, ifname: &str) -> PathBuf {
        self.cache_dir
            .join(format!("{network}-{container_id}-{ifname}"))
    }

    /// The plugin's configuration as the spec says the runtime must pass it: the list's
    /// `name` and `cniVersion`, the previous result, and `runtimeConfig` for each
    /// capability the plugin declares and the request carries.
    fn plugin_config(net: &Network, plugin: &Value, prev: Option<&Value>, req: &Request) -> Value {
        let mut conf = plugin.clone();
        conf["name"] = json!(net.name);
        conf["cniVersion"] = json!(net.cni_version);
        if let Some(p) = prev.filter(|p| !p.is_null()) {
            conf["prevResult"] = p.clone();
        }
        let mut runtime = Map::new();
        if let Some(caps) = plugin.get("capabilities").and_then(Value::as_object) {
            for (cap, on) in caps {
                if on.as_bool() == Some(true) {
                    if let Some(v) = req.capabilities.get(cap) {
                        runtime.insert(cap.clone(), v.clone());
                    }
                }
            }
        }
        if let Some(obj) = conf.as_object_mut() {
            obj.remove("capabilities");
            if runtime.is_empty() {
                obj.remove("runtimeConfig");
            } else {
                obj.insert("runtimeConfig".into(), Value::Object(runtime));
            }
        }
        conf
    }

    fn run(
        &self,
        net: &Network,
        plugin: &Value,
        verb: Verb,
        conf: &Value,
        req: &Request,
    ) -> Result<Value> {
        let kind = plugin["type"].as_str().unwrap_or_default();
        let exe = plugin::find(kind, &self.plugin_dirs, &net.name)?;
        let inv = Invocation {
            container_id: req.container_id.clone(),
            netns: req.netns.clone(),
            ifname: req.ifname.clone(),
            args: req.args.clone(),
        };
        plugin::exec(
            &exe,
            verb,
            &inv,
            &self.plugin_dirs,
            conf,
            &net.name,
            self.timeout,
        )
    }

    /// ADD every plugin in order, each getting the previous one's result; the last
    /// result is cached and returned. When a plugin fails, the plugins already run are
    /// deleted again (in reverse order), so nothing is left half-attached.
    pub fn attach(&self, net: &Network, req: &Request) -> Result<Attachment> {
        // Every plugin must exist before any runs.
        for p in &net.plugins {
            plugin::find(
                p["type"].as_str().unwrap_or_default(),
                &self.plugin_dirs,
                &net.name,
            )?;
        }
        // Cached before the first plugin runs (with no result yet), so a caller killed
        // in the middle of the chain leaves a record that a later DEL can undo.
        let mut cached = Cached {
            kind: "cniCacheV1".into(),
            container_id: req.container_id.clone(),
            if_name: req.ifname.clone(),
            network_name: net.name.clone(),
            config: net.to_json(),
            cni_args: req.args.clone(),
            capability_args: req.capabilities.clone(),
            result: Value::Null,
        };
        self.write_cache(&cached)?;
        let mut prev: Option<Value> = None;
        for (i, p) in net.plugins.iter().enumerate() {
            let conf = Cni::plugin_config(net, p, prev.as_ref(), req);
            match self.run(net, p, Verb::Add, &conf, req) {
                Ok(r) => prev = Some(r),
                Err(e) => {
                    let undo = Network {
                        plugins: net.plugins[..=i].to_vec(),
                        ..net.clone()
                    };
                    if let Err(u) = self.del_chain(&undo, req, prev.as_ref()) {
                        tracing::debug!(error = %u, "undoing a failed ADD");
                    }
                    // Every plugin was asked to undo; the record only served a caller
                    // killed before this point.
                    let _ = self.remove_cache(&net.name, req);
                    return Err(e);
                }
            }
        }
        let raw = prev.unwrap_or(Value::Null);
        let result: CniResult = serde_json::from_value(raw.clone()).unwrap_or_default();
        cached.result = raw.clone();
        if let Err(e) = self.write_cache(&cached) {
            let _ = self.del_chain(net, req, Some(&raw));
            let _ = self.remove_cache(&net.name, req);
            return Err(e);
        }
        Ok(Attachment {
            network: net.name.clone(),
            container_id: req.container_id.clone(),
            ifname: req.ifname.clone(),
            result,
            raw,
        })
    }

    fn write_cache(&self, c: &Cached) -> Result<()> {
        std::fs::create_dir_all(&self.cache_dir).at(&self.cache_dir)?;
        let path = self.cache_path(&c.network_name, &c.container_id, &c.if_name);
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec(c).expect("cache serializes")).at(&tmp)?;
        std::fs::rename(&tmp, &path).at(&path)
    }

    fn remove_cache(&self, network: &str, req: &Request) -> Result<()> {
        let path = self.cache_path(network, &req.container_id, &req.ifname);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).at(path),
            _ => Ok(()),
        }
    }

    fn read_cache(&self, network: &str, req: &Request) -> Result<Option<Cached>> {
        let path = self.cache_path(network, &req.container_id, &req.ifname);
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| Error::Config {
                    path: path.display().to_string(),
                    reason: format!("corrupt result cache: {e}"),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).at(path),
        }
    }

    /// DEL in reverse order with the cached result as `prevResult`.
    fn del_chain(&self, net: &Network, req: &Request, prev: Option<&Value>) -> Result<()> {
        let mut first = None;
        for p in net.plugins.iter().rev() {
            let conf = Cni::plugin_config(net, p, prev, req);
            if let Err(e) = self.run(net, p, Verb::Del, &conf, req) {
                tracing::debug!(error = %e, "CNI DEL");
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// DEL the container from network `name`: with the configuration and arguments
    /// cached at ADD when there is a cache entry (so a changed or removed config file
    /// does not matter), else with `fallback`. Every plugin is asked even if one fails;
    /// the cache entry goes once all succeeded. Nothing cached and no fallback: done.
    pub fn detach(&self, name: &str, req: &Request, fallback: Option<&Network>) -> Result<()> {
        let cached = self.read_cache(name, req)?;
        let (net, req, prev) = match &cached {
            Some(c) => {
                let net = Network::parse(&serde_json::to_vec(&c.config).expect("json"), None)?;
                let req = Request {
                    args: c.cni_args.clone(),
                    capabilities: c.capability_args.clone(),
                    ..req.clone()
                };
                (net, req, Some(c.result.clone()))
            }
            None => match fallback {
                Some(n) => (n.clone(), req.clone(), None),
                None => return Ok(()),
            },
        };
        // A record cached before an ADD that never finished has no result: DEL without
        // prevResult, as the spec allows.
        let prev = prev.filter(|p| !p.is_null());
        self.del_chain(&net, &req, prev.as_ref())?;
        self.remove_cache(name, &req)
    }

    /// CHECK the attachment against the cached result (spec 0.4.0+; skipped when the
    /// list sets `disableCheck`).
    pub fn check(&self, name: &str, req: &Request) -> Result<()> {
        let c = self
            .read_cache(name, req)?
            .filter(|c| !c.result.is_null())
            .ok_or_else(|| Error::Invalid {
                what: "CNI CHECK",
                value: format!("{name}/{}", req.container_id),
                reason: "no cached ADD result for this container".into(),
            })?;
        let net = Network::parse(&serde_json::to_vec(&c.config).expect("json"), None)?;
        if !net.supports_check() {
            return Ok(());
        }
        let req = Request {
            args: c.cni_args.clone(),
            capabilities: c.capability_args.clone(),
            ..req.clone()
        };
        for p in &net.plugins {
            let conf = Cni::plugin_config(&net, p, Some(&c.result), &req);
            self.run(&net, p, Verb::Check, &conf, &req)?;
        }
        Ok(())
    }

    /// VERSION of plugin `kind`: the CNI versions it supports.
    pub fn versions(&self, kind: &str) -> Result<Vec<String>> {
        let exe = plugin::find(kind, &self.plugin_dirs, "-")?;
        let v = plugin::exec(
            &exe,
            Verb::Version,
            &Invocation::default(),
            &self.plugin_dirs,
            &json!({"cniVersion": "1.0.0"}),
            "-",
            self.timeout,
        )?;
        Ok(v["supportedVersions"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The (network, ifname) pairs with a cached result for this container: what a
    /// sweep after an interrupted create must DEL.
    pub fn cached_for(&self, container_id: &str) -> Vec<(String, String)> {
        let mid = format!("-{container_id}-");
        let Ok(dir) = std::fs::read_dir(&self.cache_dir) else {
            return Vec::new();
        };
        dir.flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let at = name.find(&mid)?;
                let ifname = &name[at + mid.len()..];
                (!ifname.is_empty() && !ifname.ends_with(".tmp"))
                    .then(|| (name[..at].to_string(), ifname.to_string()))
            })
            .collect()
    }

    /// The container IDs with a cached result (the cache entry's `containerId`).
    pub fn cached_ids(&self) -> Vec<String> {
        let Ok(dir) = std::fs::read_dir(&self.cache_dir) else {
            return Vec::new();
        };
        let mut ids: Vec<String> = dir
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().ends_with(".tmp"))
            .filter_map(|e| {
                let v: Value = serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok()?;
                Some(v["containerId"].as_str()?.to_string())
            })
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// Whether a result is cached for this container on `network`.
    pub fn is_attached(&self, network: &str, container_id: &str, ifname: &str) -> bool {
        self.cache_path(network, container_id, ifname).exists()
    }
}

/// Split a `:`-separated plugin path (CNI_PATH syntax), dropping empty entries.
pub fn plugin_dirs_from(spec: &str) -> Vec<PathBuf> {
    std::env::split_paths(spec)
        .filter(|p| p != Path::new(""))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn injection_follows_the_spec() {
        let net = Network::parse(
            br#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge"},{"type":"portmap","capabilities":{"portMappings":true,"ips":false}}]}"#,
            None,
        )
        .unwrap();
        let mut req = Request::default();
        req.capabilities
            .insert("portMappings".into(), json!([{"hostPort": 1}]));
        req.capabilities.insert("ips".into(), json!(["1.2.3.4"]));
        let c0 = Cni::plugin_config(&net, &net.plugins[0], None, &req);
        assert_eq!(c0, json!({"type":"bridge","name":"n","cniVersion":"1.0.0"}));
        let prev = json!({"ips": []});
        let c1 = Cni::plugin_config(&net, &net.plugins[1], Some(&prev), &req);
        assert_eq!(c1["prevResult"], prev);
        assert_eq!(
            c1["runtimeConfig"],
            json!({"portMappings": [{"hostPort": 1}]})
        );
        assert!(c1.get("capabilities").is_none());
    }
}
