//! The per-container /etc/hosts, /etc/hostname and /etc/resolv.conf, as Docker writes
//! them: resolvers are the host's minus loopback ones (unreachable from another network
//! namespace), with Google's public resolvers as the fallback when none is left.

use std::net::IpAddr;

use crate::error::{Error, Result};

/// `--add-host NAME:IP`.
pub fn parse_add_host(s: &str) -> Result<(String, IpAddr)> {
    let bad = |reason: &str| Error::Invalid {
        what: "--add-host",
        value: s.to_string(),
        reason: reason.to_string(),
    };
    // NAME:IP where the IP may be IPv6 (with colons); docker also accepts NAME=IP.
    let (name, ip) = s
        .split_once('=')
        .or_else(|| s.split_once(':'))
        .ok_or_else(|| bad("expected NAME:IP"))?;
    let valid = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-._".contains(&c));
    if !valid {
        return Err(bad("not a host name"));
    }
    let ip = ip
        .trim_matches(['[', ']'])
        .parse()
        .map_err(|_| bad("not an IP address"))?;
    Ok((name.to_string(), ip))
}

/// `--dns IP`.
pub fn parse_dns(s: &str) -> Result<IpAddr> {
    s.parse().map_err(|_| Error::Invalid {
        what: "--dns",
        value: s.to_string(),
        reason: "not an IP address".into(),
    })
}

pub fn hosts(hostname: &str, ip: Option<IpAddr>, extra: &[(String, IpAddr)]) -> String {
    let mut s = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    for (n, a) in extra {
        s += &format!("{a}\t{n}\n");
    }
    if let Some(ip) = ip {
        s += &format!("{ip}\t{hostname}\n");
    }
    s
}

/// The container's resolv.conf from the host's: `dns` replaces the nameservers; without
/// it, loopback nameservers (systemd-resolved's 127.0.0.53, dnsmasq) are dropped.
pub fn resolv_conf(host: &str, dns: &[IpAddr]) -> String {
    let mut out = String::new();
    let mut servers = 0;
    for line in host.lines() {
        let t = line.trim();
        if let Some(ns) = t.strip_prefix("nameserver") {
            let keep = dns.is_empty()
                && ns
                    .trim()
                    .split('%')
                    .next()
                    .and_then(|a| a.parse::<IpAddr>().ok())
                    .is_some_and(|a| !a.is_loopback());
            if keep {
                out += &format!("nameserver {}\n", ns.trim());
                servers += 1;
            }
        } else if t.starts_with("search") || t.starts_with("domain") || t.starts_with("options") {
            out += t;
            out.push('\n');
        }
    }
    for d in dns {
        out += &format!("nameserver {d}\n");
        servers += 1;
    }
    if servers == 0 {
        out += "nameserver 8.8.8.8\nnameserver 8.8.4.4\n";
    }
    out
}

/// resolv.conf for a network with a DNS server of its own (aardvark-dns on the
/// gateway): that server, its `dns.podman` domain (the one aardvark-dns 1.4 serves), and
/// the host's options.
pub fn resolv_conf_via(host: &str, server: &str) -> String {
    let mut out = format!("search dns.podman\nnameserver {server}\n");
    for line in host.lines().map(str::trim) {
        if line.starts_with("options") {
            out += line;
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolvers_like_docker() {
        let host = "# x\nnameserver 127.0.0.53\nnameserver 192.0.2.53\nsearch lan\noptions edns0\n";
        assert_eq!(
            resolv_conf(host, &[]),
            "nameserver 192.0.2.53\nsearch lan\noptions edns0\n"
        );
        assert_eq!(
            resolv_conf("nameserver 127.0.0.1\n", &[]),
            "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
        assert_eq!(
            resolv_conf(host, &["1.1.1.1".parse().unwrap()]),
            "search lan\noptions edns0\nnameserver 1.1.1.1\n"
        );
    }

    #[test]
    fn resolver_of_a_named_network() {
        assert_eq!(
            resolv_conf_via(
                "nameserver 192.0.2.53\nsearch lan\noptions ndots:2\n",
                "10.9.0.1"
            ),
            "search dns.podman\nnameserver 10.9.0.1\noptions ndots:2\n"
        );
    }

    #[test]
    fn hosts_and_flags() {
        let h = hosts(
            "c1",
            Some("10.88.0.2".parse().unwrap()),
            &[parse_add_host("db:10.0.0.9").unwrap()],
        );
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(h.contains("10.0.0.9\tdb\n") && h.ends_with("10.88.0.2\tc1\n"));
        assert_eq!(
            parse_add_host("v6:::1").unwrap().1,
            "::1".parse::<IpAddr>().unwrap()
        );
        assert!(parse_add_host("nocolon").is_err() && parse_add_host("a b:1.2.3.4").is_err());
        assert!(parse_add_host("x:300.1.1.1").is_err());
        assert!(parse_dns("8.8.8.8").is_ok() && parse_dns("dns.google").is_err());
    }
}
