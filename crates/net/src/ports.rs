//! `-p [IP:][HOSTPORT:]CTRPORT[/tcp|udp]` port mappings, handed to the portmap plugin
//! as its `portMappings` capability.

use std::net::{IpAddr, Ipv4Addr, TcpListener, UdpSocket};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// `None`: every address of the host.
    pub host_ip: Option<IpAddr>,
    /// 0 until [`PortMapping::assign`] picks a free port.
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
}

impl FromStr for PortMapping {
    type Err = Error;
    /// One mapping; a range (`8000-8001:80-81`) is refused here, see [`parse_publish`].
    fn from_str(s: &str) -> Result<PortMapping> {
        let mut all = parse_publish(s)?;
        if all.len() != 1 {
            return Err(Error::Invalid {
                what: "-p",
                value: s.to_string(),
                reason: "expected one port, not a range".into(),
            });
        }
        Ok(all.remove(0))
    }
}

/// Most ports one `-p` range may publish (each is a portmap rule pair).
const MAX_RANGE: u32 = 1024;

/// `-p [IP:][HOSTPORT[-END]:]CTRPORT[-END][/tcp|udp]`: one mapping per container port.
/// A host range must be as long as the container range; without host ports each
/// container port gets a free one later ([`PortMapping::assign`]).
pub fn parse_publish(s: &str) -> Result<Vec<PortMapping>> {
    let bad = |reason: &str| Error::Invalid {
        what: "-p",
        value: s.to_string(),
        reason: reason.to_string(),
    };
    let (spec, proto) = match s.rsplit_once('/') {
        Some((a, "tcp")) => (a, Protocol::Tcp),
        Some((a, "udp")) => (a, Protocol::Udp),
        Some(_) => return Err(bad("protocol must be tcp or udp")),
        None => (s, Protocol::Tcp),
    };
    let port = |p: &str, what: &str| -> Result<u16> {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| bad(&format!("{what} must be a port number 1-65535")))
    };
    // `A` or `A-B` with A <= B: (first, count).
    let range = |r: &str, what: &str| -> Result<(u16, u16)> {
        let (a, b) = match r.split_once('-') {
            Some((a, b)) => (port(a, what)?, port(b, what)?),
            None => (port(r, what)?, port(r, what)?),
        };
        if a > b {
            return Err(bad(&format!("{what} range {a}-{b} runs backwards")));
        }
        let count = u32::from(b - a) + 1;
        if count > MAX_RANGE {
            return Err(bad(&format!("at most {MAX_RANGE} ports per range")));
        }
        Ok((a, count as u16))
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let (ip, host, ctr) = match parts.as_slice() {
        [c] => (None, None, *c),
        [h, c] => (None, Some(*h), *c),
        [ip, h, c] => (Some(*ip), Some(*h), *c),
        _ => return Err(bad("expected [IP:][HOSTPORT:]CONTAINERPORT[/tcp|udp]")),
    };
    let host_ip = match ip {
        None | Some("") => None,
        Some(ip) => Some(ip.parse::<IpAddr>().map_err(|_| bad("not an IP address"))?),
    };
    if matches!(host_ip, Some(IpAddr::V6(_))) {
        return Err(bad("IPv6 host addresses are not supported yet"));
    }
    let (ctr_first, count) = range(ctr, "container port")?;
    let host_first = match host {
        None | Some("") => None,
        Some(h) => {
            let (first, n) = range(h, "host port")?;
            if n != count {
                return Err(bad(&format!(
                    "{n} host ports for {count} container ports: give ranges of one length"
                )));
            }
            Some(first)
        }
    };
    Ok((0..count)
        .map(|i| PortMapping {
            host_ip,
            host_port: host_first.map_or(0, |h| h + i),
            container_port: ctr_first + i,
            protocol: proto,
        })
        .collect())
}

impl std::fmt::Display for PortMapping {
    /// docker ps's form: `0.0.0.0:8080->80/tcp`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ip = self.host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        write!(
            f,
            "{ip}:{}->{}/{}",
            self.host_port, self.container_port, self.protocol
        )
    }
}

impl PortMapping {
    /// A mapping without a host port gets a free ephemeral one from the kernel; a given
    /// one must be free (a host process listening there would never see its traffic, the
    /// DNAT rule takes it): both are found by binding it, as Docker's proxy would.
    pub fn assign(&mut self) -> Result<()> {
        let ip = self.host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let port = match self.protocol {
            Protocol::Tcp => TcpListener::bind((ip, self.host_port)).and_then(|l| l.local_addr()),
            Protocol::Udp => UdpSocket::bind((ip, self.host_port)).and_then(|l| l.local_addr()),
        };
        let reason = if self.host_port == 0 {
            "no free host port"
        } else {
            "host port in use"
        };
        self.host_port = port
            .map_err(|e| Error::Invalid {
                what: "-p",
                value: self.to_string(),
                reason: format!("{reason}: {e}"),
            })?
            .port();
        Ok(())
    }

    /// The portmap plugin's `runtimeConfig.portMappings` entry.
    pub fn to_cni(&self) -> Value {
        let mut v = json!({
            "hostPort": self.host_port,
            "containerPort": self.container_port,
            "protocol": self.protocol.to_string(),
        });
        if let Some(ip) = self.host_ip {
            v["hostIP"] = json!(ip.to_string());
        }
        v
    }
}

/// Refuse two mappings of one host port and protocol.
pub fn check_unique(ports: &[PortMapping]) -> Result<()> {
    for (i, a) in ports.iter().enumerate() {
        if a.host_port == 0 {
            continue;
        }
        if ports[..i].iter().any(|b| {
            b.host_port == a.host_port
                && b.protocol == a.protocol
                && (b.host_ip.is_none() || a.host_ip.is_none() || b.host_ip == a.host_ip)
        }) {
            return Err(Error::Invalid {
                what: "-p",
                value: a.to_string(),
                reason: format!("host port {}/{} is mapped twice", a.host_port, a.protocol),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_forms() {
        let p: PortMapping = "8080:80".parse().unwrap();
        assert_eq!(
            (p.host_port, p.container_port, p.protocol),
            (8080, 80, Protocol::Tcp)
        );
        assert_eq!(p.to_string(), "0.0.0.0:8080->80/tcp");
        let p: PortMapping = "127.0.0.1:53:53/udp".parse().unwrap();
        assert_eq!(
            p.to_cni(),
            json!({"hostPort":53,"containerPort":53,"protocol":"udp","hostIP":"127.0.0.1"})
        );
        let p: PortMapping = "80".parse().unwrap();
        assert_eq!(p.host_port, 0);
        let p: PortMapping = "::80".parse().unwrap();
        assert_eq!((p.host_ip, p.host_port), (None, 0));
        for bad in [
            "",
            "x",
            "0",
            "70000",
            "80/sctp",
            "1:2:3:4",
            "a.b:1:2",
            "8080:",
            "::1:80:80",
        ] {
            let e = bad.parse::<PortMapping>().unwrap_err().to_string();
            assert!(e.starts_with("-p "), "{bad}: {e}");
        }
        let r = parse_publish("127.0.0.1:8000-8002:80-82/udp").unwrap();
        assert_eq!(
            r.iter().map(ToString::to_string).collect::<Vec<_>>(),
            [
                "127.0.0.1:8000->80/udp",
                "127.0.0.1:8001->81/udp",
                "127.0.0.1:8002->82/udp"
            ]
        );
        let r = parse_publish("80-81").unwrap();
        assert_eq!(
            r.iter()
                .map(|p| (p.host_port, p.container_port))
                .collect::<Vec<_>>(),
            [(0, 80), (0, 81)]
        );
        assert!("80-81".parse::<PortMapping>().is_err());
        for bad in [
            "8000-8001:80",
            "8000:80-81",
            "81-80",
            "1-2000",
            "8000-:80",
            "-80",
            "8000-8001:80-81-82",
            "65535-65536:1-2",
        ] {
            let e = parse_publish(bad).unwrap_err().to_string();
            assert!(e.starts_with("-p "), "{bad}: {e}");
        }
        let two = ["8080:80".parse().unwrap(), "8080:81".parse().unwrap()];
        assert!(check_unique(&two).is_err());
        let ok = ["8080:80".parse().unwrap(), "8080:80/udp".parse().unwrap()];
        assert!(check_unique(&ok).is_ok());
        // A host port some process listens on is refused.
        let busy = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = busy.local_addr().unwrap().port();
        let mut p: PortMapping = format!("127.0.0.1:{port}:80").parse().unwrap();
        let e = p.assign().unwrap_err().to_string();
        assert!(e.contains("host port in use"), "{e}");
        drop(busy);
        p.assign().unwrap();
        assert_eq!(p.host_port, port);
    }
}
