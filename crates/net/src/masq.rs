//! Masquerade per network, as netavark does it: one `POSTROUTING` rule per subnet of a
//! berth network (`-s SUBNET ! -d SUBNET -j MASQUERADE`, commented `berth:NAME`), made
//! on the network's first attach and removed with the network. The bridge plugin's
//! `ipMasq` instead builds a chain per container and family on every ADD and tears it
//! down on every DEL: about twenty iptables runs, most of an attach's time.

use std::process::Command;

use crate::bridge::summary;
use crate::conf::Network;
use crate::error::{Error, Result};

/// The rules `net` needs: (program, rule spec after the chain), none for a network that
/// does not ask berth to masquerade (internal ones, CNI-dir ones, older berth ones whose
/// bridge plugin still does it).
fn rules(net: &Network) -> Vec<(&'static str, Vec<String>)> {
    let s = summary(net);
    if !s.masquerade {
        return Vec::new();
    }
    let comment = format!("berth:{}", net.name);
    [("iptables", s.subnet), ("ip6tables", s.subnet6)]
        .into_iter()
        .filter_map(|(prog, subnet)| {
            let subnet = subnet?;
            let spec = [
                "-s",
                &subnet,
                "!",
                "-d",
                &subnet,
                "-m",
                "comment",
                "--comment",
                &comment,
                "-j",
                "MASQUERADE",
            ];
            Some((prog, spec.iter().map(|a| a.to_string()).collect()))
        })
        .collect()
}

/// Run `prog -w -t nat OP POSTROUTING SPEC`; `Ok(false)` when it exits 1 (for `-C`: the
/// rule is absent; for `-D`: nothing left to delete).
fn nat(prog: &str, op: &str, spec: &[String]) -> Result<bool> {
    let mut cmd = Command::new(prog);
    cmd.args(["-w", "-t", "nat", op, "POSTROUTING"]).args(spec);
    let shown = || format!("{prog} -t nat {op} POSTROUTING {}", spec.join(" "));
    let out = cmd.output().map_err(|e| Error::Firewall {
        command: shown(),
        message: format!("{e} (install iptables)"),
    })?;
    match out.status.code() {
        Some(0) => Ok(true),
        Some(1) if op != "-A" => Ok(false),
        _ => Err(Error::Firewall {
            command: shown(),
            message: String::from_utf8_lossy(&out.stderr)
                .trim()
                .replace('\n', "; "),
        }),
    }
}

/// Make `net`'s masquerade rules if they are missing (one `-C` each when present).
pub fn ensure(net: &Network) -> Result<()> {
    for (prog, spec) in rules(net) {
        if !nat(prog, "-C", &spec)? {
            nat(prog, "-A", &spec)?;
        }
    }
    Ok(())
}

/// Remove `net`'s masquerade rules (every copy; none is fine).
pub fn remove(net: &Network) -> Result<()> {
    for (prog, spec) in rules(net) {
        while nat(prog, "-D", &spec)? {}
    }
    Ok(())
}
