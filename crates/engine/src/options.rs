//! `berth run` flags and how they change the spec [`crate::spec`] built from the image
//! config (Docker's rules: caps, seccomp, resources, binds, network, read-only root).

use std::path::{Path, PathBuf};
use std::str::FromStr;

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::{Error, IoContext, Result};
use crate::spec::DEFAULT_CAPABILITIES;

/// `--network`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Network {
    /// berth's default bridge network `berth` (Docker's default `bridge`).
    #[default]
    Bridge,
    /// A new network namespace holding only loopback.
    None,
    /// The host's network namespace.
    Host,
    /// A CNI network by name (`berth network create`, or a file in the CNI config dir).
    Named(String),
    /// `container:NAME|ID`: the network namespace of that running container.
    Container(String),
    /// `ns:PATH`: the network namespace bound at PATH (as podman's).
    Path(PathBuf),
}

impl FromStr for Network {
    type Err = Error;
    fn from_str(s: &str) -> Result<Network> {
        match s {
            "bridge" | "default" => Ok(Network::Bridge),
            "none" => Ok(Network::None),
            "host" => Ok(Network::Host),
            _ if s.starts_with("container:") => {
                let c = &s["container:".len()..];
                if c.is_empty() {
                    return Err(bad(
                        "--network",
                        s,
                        "expected container:NAME or container:ID",
                    ));
                }
                Ok(Network::Container(c.to_string()))
            }
            _ if s.starts_with("ns:") => {
                let p = Path::new(&s["ns:".len()..]);
                if !p.is_absolute() {
                    return Err(bad("--network", s, "expected ns:/ABSOLUTE/PATH"));
                }
                Ok(Network::Path(p.to_path_buf()))
            }
            _ => {
                berth_net::validate_name(s).map_err(|_| {
                    bad(
                        "--network",
                        s,
                        "expected bridge, none, host, container:ID, ns:PATH or a network name",
                    )
                })?;
                Ok(Network::Named(s.to_string()))
            }
        }
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Network::Bridge => f.write_str("bridge"),
            Network::None => f.write_str("none"),
            Network::Host => f.write_str("host"),
            Network::Named(n) => f.write_str(n),
            Network::Container(c) => write!(f, "container:{c}"),
            Network::Path(p) => write!(f, "ns:{}", p.display()),
        }
    }
}

impl Serialize for Network {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Network {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Network, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// `--security-opt seccomp=...`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Seccomp {
    /// Docker's default profile, adjusted to the final capability set.
    #[default]
    Default,
    Unconfined,
    /// A profile file (OCI or Docker JSON).
    File(PathBuf),
}

impl Seccomp {
    /// Parse one `--security-opt` value; only `seccomp=` is supported.
    pub fn from_security_opt(opt: &str) -> Result<Seccomp> {
        match opt.split_once(['=', ':']) {
            Some(("seccomp", "unconfined")) => Ok(Seccomp::Unconfined),
            Some(("seccomp", "")) | None => Err(bad(
                "--security-opt",
                opt,
                "expected seccomp=unconfined or seccomp=PROFILE.json",
            )),
            Some(("seccomp", file)) => Ok(Seccomp::File(PathBuf::from(file))),
            Some(_) => Err(bad(
                "--security-opt",
                opt,
                "only seccomp=... is supported (no-new-privileges is always on)",
            )),
        }
    }
}

/// `-v SRC:DST[:ro|rw]`: a host directory or file bound into the container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bind {
    pub source: PathBuf,
    pub destination: String,
    pub read_only: bool,
}

impl FromStr for Bind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Bind> {
        let parts: Vec<&str> = s.split(':').collect();
        let (src, dst, mode) = match parts.as_slice() {
            [src, dst] => (*src, *dst, "rw"),
            [src, dst, mode] => (*src, *dst, *mode),
            _ => return Err(bad("-v", s, "expected SRC:DST[:ro|rw]")),
        };
        let read_only = match mode {
            "ro" => true,
            "rw" => false,
            _ => return Err(bad("-v", s, "mode must be ro or rw")),
        };
        if !src.starts_with('/') {
            return Err(bad(
                "-v",
                s,
                "source must be an absolute host path (named volumes are not supported)",
            ));
        }
        if !dst.starts_with('/') {
            return Err(bad("-v", s, "destination must be an absolute path"));
        }
        let source = std::fs::canonicalize(src).at(src)?;
        Ok(Bind {
            source,
            destination: dst.to_string(),
            read_only,
        })
    }
}

/// Everything `berth run` accepts besides the image; stored in the container metadata.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunOptions {
    pub image: String,
    /// Arguments after the image: replace the image's Cmd.
    pub cmd: Vec<String>,
    pub name: Option<String>,
    pub detach: bool,
    pub auto_remove: bool,
    pub interactive: bool,
    pub tty: bool,
    /// `-e` values, then `--env-file` lines already merged in order.
    pub env: Vec<String>,
    pub binds: Vec<Bind>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    /// `--entrypoint`: one program (Docker does not split it).
    pub entrypoint: Option<String>,
    pub hostname: Option<String>,
    /// Bytes.
    pub memory: Option<i64>,
    /// CPUs as a CFS quota over a 100 ms period.
    pub cpus: Option<f64>,
    pub pids_limit: Option<i64>,
    pub read_only: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub seccomp: Seccomp,
    pub network: Network,
    /// `-p`: host ports to the container's (bridge networks only).
    #[serde(default)]
    pub ports: Vec<berth_net::PortMapping>,
    /// `--dns`: nameservers replacing the host's.
    #[serde(default)]
    pub dns: Vec<std::net::IpAddr>,
    /// `--add-host NAME:IP` lines for /etc/hosts.
    #[serde(default)]
    pub add_hosts: Vec<(String, std::net::IpAddr)>,
    /// `--ip`: the address host-local gives the container (within the network's range).
    #[serde(default)]
    pub ip: Option<std::net::IpAddr>,
    /// `--mac-address`: eth0's MAC (lowercase `aa:bb:cc:dd:ee:ff`).
    #[serde(default)]
    pub mac: Option<String>,
    /// `-P`: every port the image exposes, on free host ports.
    #[serde(default)]
    pub publish_all: bool,
    /// `--isolation vm`: run inside a berth microVM.
    #[serde(default)]
    pub isolation: crate::vm::Isolation,
}

/// `--mac-address`: six hex octets of a unicast address, normalised to lowercase.
pub fn parse_mac(s: &str) -> Result<String> {
    let octets: Vec<&str> = s.split(':').collect();
    let valid = octets.len() == 6
        && octets
            .iter()
            .all(|o| o.len() == 2 && o.bytes().all(|b| b.is_ascii_hexdigit()));
    if !valid {
        return Err(bad(
            "--mac-address",
            s,
            "expected six hex octets like 02:42:ac:11:00:02",
        ));
    }
    let first = u8::from_str_radix(octets[0], 16).unwrap_or(1);
    if first & 1 == 1 {
        return Err(bad(
            "--mac-address",
            s,
            "a multicast address (first octet odd)",
        ));
    }
    if octets.iter().all(|o| *o == "00") {
        return Err(bad("--mac-address", s, "the zero address"));
    }
    Ok(s.to_ascii_lowercase())
}

fn bad(flag: &'static str, value: &str, reason: &str) -> Error {
    Error::BadFlag {
        flag,
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

/// Docker's size syntax: a number with an optional b/k/m/g/t suffix (powers of 1024).
pub fn parse_memory(s: &str) -> Result<i64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').filter(|r| !r.is_empty()).unwrap_or(&t);
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let shift = match unit {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return Err(bad("--memory", s, "unknown unit (use b, k, m, g or t)")),
    };
    let n: i64 = num
        .parse()
        .map_err(|_| bad("--memory", s, "expected a number with an optional unit"))?;
    let bytes = n
        .checked_mul(1 << shift)
        .ok_or_else(|| bad("--memory", s, "too large"))?;
    if bytes < 6 << 20 {
        return Err(bad("--memory", s, "the minimum is 6m"));
    }
    Ok(bytes)
}

/// `--cpus`: a positive decimal.
pub fn parse_cpus(s: &str) -> Result<f64> {
    match s.parse::<f64>() {
        Ok(c) if c.is_finite() && c > 0.0 && c <= 1024.0 => Ok(c),
        _ => Err(bad("--cpus", s, "expected a positive number such as 1.5")),
    }
}

/// `--env-file`: KEY=VALUE lines; `#` comments and blank lines skipped; a bare KEY takes
/// the caller's value (Docker's rule) and is dropped when the caller has none.
pub fn read_env_file(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).at(path)?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once('=') {
            Some(("", _)) => {
                return Err(Error::BadFlag {
                    flag: "--env-file",
                    value: path.display().to_string(),
                    reason: format!("line {}: variable name is empty", n + 1),
                })
            }
            Some(_) => out.push(line.to_string()),
            None => {
                if let Ok(v) = std::env::var(line.trim_end()) {
                    out.push(format!("{}={v}", line.trim_end()));
                }
            }
        }
    }
    Ok(out)
}

/// `net_admin` / `CAP_NET_ADMIN` -> `CAP_NET_ADMIN`, checked against the kernel's list.
fn cap_name(flag: &'static str, c: &str) -> Result<String> {
    let up = c.to_ascii_uppercase();
    if up == "ALL" {
        return Ok(up);
    }
    let full = if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    };
    caps::Capability::from_str(&full).map_err(|_| bad(flag, c, "unknown capability"))?;
    Ok(full)
}

/// Docker's defaults with `--cap-drop` applied first, then `--cap-add` (ALL allowed).
pub fn capabilities(add: &[String], drop: &[String]) -> Result<Vec<String>> {
    let add: Vec<String> = add
        .iter()
        .map(|c| cap_name("--cap-add", c))
        .collect::<Result<_>>()?;
    let drop: Vec<String> = drop
        .iter()
        .map(|c| cap_name("--cap-drop", c))
        .collect::<Result<_>>()?;
    let mut caps: Vec<String> = if drop.iter().any(|c| c == "ALL") {
        Vec::new()
    } else {
        DEFAULT_CAPABILITIES
            .iter()
            .map(|c| c.to_string())
            .filter(|c| !drop.contains(c))
            .collect()
    };
    if add.iter().any(|c| c == "ALL") {
        let mut all: Vec<String> = caps::all().iter().map(|c| c.to_string()).collect();
        all.sort();
        return Ok(all);
    }
    for c in add {
        if !caps.contains(&c) {
            caps.push(c);
        }
    }
    Ok(caps)
}

impl RunOptions {
    /// The image crate's overrides: what it folds into the spec while building it.
    pub fn overrides(&self) -> crate::spec::RunOverrides {
        crate::spec::RunOverrides {
            entrypoint: self.entrypoint.as_ref().map(|e| vec![e.clone()]),
            cmd: self.cmd.clone(),
            env: self.env.clone(),
            user: self.user.clone(),
            workdir: self.workdir.clone(),
            tty: self.tty,
            hostname: self.hostname.clone(),
        }
    }

    /// Apply the flags the image crate does not know about to `spec`.
    pub fn apply(&self, spec: &Spec) -> Result<Spec> {
        let mut v = serde_json::to_value(spec).expect("spec serializes");
        let caps = capabilities(&self.cap_add, &self.cap_drop)?;
        v["process"]["capabilities"] =
            json!({"bounding": caps, "effective": caps, "permitted": caps});
        v["root"]["readonly"] = json!(self.read_only);
        let mounts = v["mounts"]
            .as_array_mut()
            .expect("the image crate sets mounts");
        for b in &self.binds {
            let mode = if b.read_only { "ro" } else { "rw" };
            mounts.push(json!({"destination": b.destination, "type": "bind", "source": b.source, "options": ["rbind", "rprivate", mode]}));
        }
        let linux = &mut v["linux"];
        if self.network == Network::Host {
            if let Some(ns) = linux["namespaces"].as_array_mut() {
                ns.retain(|n| n["type"] != "network");
            }
        }
        let res = &mut linux["resources"];
        if let Some(m) = self.memory {
            res["memory"] = json!({"limit": m});
        }
        if let Some(c) = self.cpus {
            res["cpu"] = json!({"quota": (c * 100_000.0).round() as i64, "period": 100_000});
        }
        if let Some(p) = self.pids_limit {
            res["pids"] = json!({"limit": p});
        }
        let profile = match &self.seccomp {
            Seccomp::Unconfined => None,
            Seccomp::Default => Some(berth_seccomp::default_profile_for(&caps)),
            Seccomp::File(p) => Some(berth_seccomp::parse_profile(
                &std::fs::read_to_string(p).at(p)?,
            )?),
        };
        if let Some(p) = profile {
            linux["seccomp"] = serde_json::to_value(p).expect("profile serializes");
        }
        serde_json::from_value::<Spec>(v).map_err(|e| Error::BadFlag {
            flag: "run",
            value: self.image.clone(),
            reason: format!("the flags give an invalid spec: {e}"),
        })
    }
}

/// Parse a `--pids-limit` value (Docker: 0 or -1 mean unlimited).
pub fn parse_pids_limit(s: &str) -> Result<Option<i64>> {
    match s.parse::<i64>() {
        Ok(n) if n > 0 => Ok(Some(n)),
        Ok(0 | -1) => Ok(None),
        _ => Err(bad("--pids-limit", s, "expected a positive number, or -1")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes_follow_docker() {
        assert_eq!(parse_memory("512m").unwrap(), 512 << 20);
        assert_eq!(parse_memory("1G").unwrap(), 1 << 30);
        assert_eq!(parse_memory("64mb").unwrap(), 64 << 20);
        assert_eq!(parse_memory("10485760").unwrap(), 10 << 20);
        for badv in ["", "m", "12q", "-5m", "1m", "99999999999t"] {
            let e = parse_memory(badv).unwrap_err().to_string();
            assert!(e.starts_with("--memory"), "{badv}: {e}");
        }
    }

    #[test]
    fn cpus_and_pids() {
        assert_eq!(parse_cpus("1.5").unwrap(), 1.5);
        assert!(parse_cpus("0").is_err() && parse_cpus("x").is_err() && parse_cpus("NaN").is_err());
        assert_eq!(parse_pids_limit("-1").unwrap(), None);
        assert_eq!(parse_pids_limit("20").unwrap(), Some(20));
        assert!(parse_pids_limit("-7").is_err());
    }

    #[test]
    fn binds_are_checked() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().display().to_string();
        let b: Bind = format!("{src}:/data:ro").parse().unwrap();
        assert!(b.read_only && b.destination == "/data");
        assert!(!format!("{src}:/data").parse::<Bind>().unwrap().read_only);
        for badv in [
            "rel:/x".to_string(),
            format!("{src}:rel"),
            format!("{src}:/x:rx"),
            "/x".into(),
            "/nonexistent-berth-src:/x".into(),
        ] {
            assert!(badv.parse::<Bind>().is_err(), "{badv}");
        }
    }

    #[test]
    fn capability_arithmetic() {
        let c = capabilities(&["net_admin".into()], &["chown".into(), "CAP_KILL".into()]).unwrap();
        assert!(c.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!c.contains(&"CAP_CHOWN".to_string()) && !c.contains(&"CAP_KILL".to_string()));
        assert_eq!(c.len(), 13);
        assert_eq!(
            capabilities(&["sys_time".into()], &["all".into()]).unwrap(),
            ["CAP_SYS_TIME"]
        );
        assert!(capabilities(&["ALL".into()], &[]).unwrap().len() > 30);
        assert!(capabilities(&["bogus".into()], &[]).is_err());
    }

    #[test]
    fn env_file_lines() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("env");
        std::fs::write(&p, "# c\nA=1\n\nB=x=y\nBERTH_SURELY_UNSET_VAR\n").unwrap();
        assert_eq!(read_env_file(&p).unwrap(), ["A=1", "B=x=y"]);
        std::fs::write(&p, "=1\n").unwrap();
        assert!(read_env_file(&p)
            .unwrap_err()
            .to_string()
            .contains("line 1"));
    }

    /// The spec the image crate builds for a bare image, with `o` applied.
    fn applied(o: &RunOptions) -> serde_json::Value {
        let root = tempfile::tempdir().unwrap();
        let cfg = berth_image::oci::RunConfig {
            cmd: Some(vec!["true".into()]),
            ..Default::default()
        };
        let spec = crate::spec::build_spec(&cfg, &o.overrides(), root.path(), "c1", &[]).unwrap();
        serde_json::to_value(o.apply(&spec).unwrap()).unwrap()
    }

    #[test]
    fn flags_reach_the_spec() {
        let d = tempfile::tempdir().unwrap();
        let v = applied(&RunOptions::default());
        assert_eq!(
            v["process"]["capabilities"]["bounding"]
                .as_array()
                .unwrap()
                .len(),
            14
        );
        assert_eq!(v["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
        assert!(v["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["type"] == "network"));
        assert!(v["linux"]["resources"].get("memory").is_none());
        assert_eq!(v["root"]["readonly"], false);

        let o = RunOptions {
            memory: Some(64 << 20),
            cpus: Some(1.5),
            pids_limit: Some(7),
            read_only: true,
            network: Network::Host,
            seccomp: Seccomp::Unconfined,
            cap_drop: vec!["ALL".into()],
            binds: vec![format!("{}:/data:ro", d.path().display()).parse().unwrap()],
            ..Default::default()
        };
        let v = applied(&o);
        assert_eq!(v["linux"]["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(v["linux"]["resources"]["cpu"]["quota"], 150_000);
        assert_eq!(v["linux"]["resources"]["cpu"]["period"], 100_000);
        assert_eq!(v["linux"]["resources"]["pids"]["limit"], 7);
        assert_eq!(v["root"]["readonly"], true);
        assert!(v["linux"].get("seccomp").is_none_or(|s| s.is_null()));
        assert_eq!(
            v["process"]["capabilities"]["bounding"],
            serde_json::json!([])
        );
        assert!(!v["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["type"] == "network"));
        let bind = v["mounts"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(bind["destination"], "/data");
        assert_eq!(
            bind["options"],
            serde_json::json!(["rbind", "rprivate", "ro"])
        );
    }

    #[test]
    fn security_opts() {
        assert_eq!(
            Seccomp::from_security_opt("seccomp=unconfined").unwrap(),
            Seccomp::Unconfined
        );
        assert_eq!(
            Seccomp::from_security_opt("seccomp=/p.json").unwrap(),
            Seccomp::File("/p.json".into())
        );
        assert!(Seccomp::from_security_opt("apparmor=x").is_err());
        assert!(Seccomp::from_security_opt("seccomp=").is_err());
        assert_eq!("bridge".parse::<Network>().unwrap(), Network::Bridge);
        assert_eq!(
            "net1".parse::<Network>().unwrap(),
            Network::Named("net1".into())
        );
        assert!("a/b".parse::<Network>().is_err());
        for (text, mode) in [
            ("container:web", Network::Container("web".into())),
            ("ns:/run/netns/x", Network::Path("/run/netns/x".into())),
        ] {
            let parsed: Network = text.parse().unwrap();
            assert_eq!((&parsed, parsed.to_string()), (&mode, text.to_string()));
        }
        for bad in ["container:", "ns:", "ns:rel/path"] {
            assert!(bad.parse::<Network>().is_err(), "{bad}");
        }
        assert_eq!(parse_mac("02:42:AC:11:00:02").unwrap(), "02:42:ac:11:00:02");
        for bad in [
            "",
            "02:42:ac:11:00",
            "01:00:5e:00:00:01",
            "00:00:00:00:00:00",
            "02:42:ac:11:00:0g",
            "2:42:ac:11:00:02",
        ] {
            assert!(parse_mac(bad).is_err(), "{bad}");
        }
        // Metadata written before named networks existed still reads.
        let n: Network = serde_json::from_str("\"none\"").unwrap();
        assert_eq!(
            (n.clone(), serde_json::to_string(&n).unwrap()),
            (Network::None, "\"none\"".into())
        );
    }
}
