//! A berth network's own iptables rules, made once per network as netavark does, not per
//! container: for each subnet (IPv4 with iptables, IPv6 with ip6tables)
//! * `filter FORWARD -d SUBNET -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT` and
//!   `filter FORWARD -s SUBNET -j ACCEPT` (what the firewall plugin adds per container
//!   address, so a host whose FORWARD policy is DROP, as Docker sets it, still forwards);
//! * for networks with a way out, `nat POSTROUTING -s SUBNET ! -d SUBNET -j MASQUERADE`
//!   (what the bridge plugin's `ipMasq` builds as a chain per container and family).
//!
//! Each rule is commented `berth:NAME`, made on the network's first attach when missing
//! (one `-C` each when present) and removed with the network. The plugins' per-container
//! chains cost about thirty iptables runs per ADD+DEL: most of an attach's time.

use std::process::Command;

use crate::bridge::summary;
use crate::conf::Network;
use crate::error::{Error, Result};

/// One rule: program, table, chain, spec.
struct Rule {
    prog: &'static str,
    table: &'static str,
    chain: &'static str,
    spec: Vec<String>,
}

/// The rules `net` needs; none for a network that does not ask berth for them (CNI-dir
/// ones, and older berth ones whose plugins still do it).
fn rules(net: &Network) -> Vec<Rule> {
    let s = summary(net);
    if !s.own_rules {
        return Vec::new();
    }
    let comment = format!("berth:{}", net.name);
    let mut out = Vec::new();
    for (prog, subnet) in [("iptables", s.subnet), ("ip6tables", s.subnet6)] {
        let Some(subnet) = subnet else { continue };
        let rule = |table, chain, spec: &[&str]| Rule {
            prog,
            table,
            chain,
            spec: spec
                .iter()
                .copied()
                .chain(["-m", "comment", "--comment", &comment])
                .map(String::from)
                .collect(),
        };
        out.push(rule(
            "filter",
            "FORWARD",
            &[
                "-d",
                &subnet,
                "-m",
                "conntrack",
                "--ctstate",
                "RELATED,ESTABLISHED",
                "-j",
                "ACCEPT",
            ],
        ));
        out.push(rule("filter", "FORWARD", &["-s", &subnet, "-j", "ACCEPT"]));
        if !s.internal {
            out.push(rule(
                "nat",
                "POSTROUTING",
                &["-s", &subnet, "!", "-d", &subnet, "-j", "MASQUERADE"],
            ));
        }
    }
    out
}

/// Run `prog -w -t TABLE OP CHAIN [1] SPEC`; `Ok(false)` when it exits 1 (for `-C`: the
/// rule is absent; for `-D`: nothing left to delete).
fn run(r: &Rule, op: &str) -> Result<bool> {
    let mut cmd = Command::new(r.prog);
    cmd.args(["-w", "-t", r.table, op, r.chain]);
    if op == "-I" {
        // Ahead of whatever DROP or jump the host has in FORWARD.
        cmd.arg("1");
    }
    cmd.args(&r.spec);
    let shown = || {
        format!(
            "{} -t {} {op} {} {}",
            r.prog,
            r.table,
            r.chain,
            r.spec.join(" ")
        )
    };
    let out = cmd.output().map_err(|e| Error::Firewall {
        command: shown(),
        message: format!("{e} (install iptables)"),
    })?;
    match out.status.code() {
        Some(0) => Ok(true),
        Some(1) if op == "-C" || op == "-D" => Ok(false),
        _ => Err(Error::Firewall {
            command: shown(),
            message: String::from_utf8_lossy(&out.stderr)
                .trim()
                .replace('\n', "; "),
        }),
    }
}

/// Make `net`'s rules where missing.
pub fn ensure(net: &Network) -> Result<()> {
    for r in rules(net) {
        if !run(&r, "-C")? {
            run(&r, if r.table == "filter" { "-I" } else { "-A" })?;
        }
    }
    Ok(())
}

/// Remove `net`'s rules (every copy; none is fine).
pub fn remove(net: &Network) -> Result<()> {
    for r in rules(net) {
        while run(&r, "-D")? {}
    }
    Ok(())
}
