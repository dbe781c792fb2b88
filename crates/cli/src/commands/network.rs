//! `berth network create|ls|inspect|rm`: berth's CNI networks. Parsing and printing
//! only; the work is in berth-engine and berth-net.

use std::path::PathBuf;

use berth_engine::cni::{summary, NetworkSpec};

use super::container::{open_engine, NetFlags};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Image store and container directory (networks live under it).
    #[arg(
        long,
        global = true,
        default_value = "/var/lib/berth",
        env = "BERTH_DATA_ROOT"
    )]
    pub data_root: PathBuf,
    #[command(flatten)]
    pub net: NetFlags,
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(clap::Subcommand, Debug)]
pub enum Cmd {
    /// Create a bridge network.
    Create(CreateArgs),
    /// List networks.
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Print networks' details as JSON.
    Inspect(NamesArgs),
    /// Remove networks no container is attached to.
    #[command(alias = "remove")]
    Rm(NamesArgs),
    /// Remove every network of berth's that no container is attached to.
    Prune,
}

#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// Subnet in CIDR form, IPv4 (default: a free 10.x.0.0/16) or IPv6 (implies
    /// --ipv6); give it twice for both.
    #[arg(long)]
    pub subnet: Vec<String>,
    /// Dual stack: also an IPv6 subnet (default: a unique local /64).
    #[arg(long)]
    pub ipv6: bool,
    /// Gateway address (default: the subnet's first address).
    #[arg(long)]
    pub gateway: Option<String>,
    /// No way out: no gateway, no default route, no masquerade, no port maps.
    #[arg(long)]
    pub internal: bool,
    /// Accepted for docker compatibility; only `bridge` exists.
    #[arg(long, short = 'd', default_value = "bridge")]
    pub driver: String,
    pub name: String,
}

#[derive(clap::Args, Debug)]
pub struct LsArgs {
    /// Only print names.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

#[derive(clap::Args, Debug)]
pub struct NamesArgs {
    #[arg(required = true)]
    pub names: Vec<String>,
}

pub fn run(root: &std::path::Path, a: &Args) -> anyhow::Result<u8> {
    let engine = open_engine(&a.data_root, root, &a.net)?;
    match &a.command {
        Cmd::Create(c) => {
            if c.driver != "bridge" {
                anyhow::bail!("--driver {:?}: only bridge is supported", c.driver);
            }
            let (v6, v4): (Vec<&String>, Vec<&String>) =
                c.subnet.iter().partition(|s| s.contains(':'));
            if v4.len() > 1 || v6.len() > 1 {
                anyhow::bail!("--subnet: at most one IPv4 and one IPv6 subnet");
            }
            let spec = NetworkSpec {
                name: c.name.clone(),
                subnet: v4.first().map(|s| s.parse()).transpose()?,
                subnet6: v6.first().map(|s| s.parse()).transpose()?,
                ipv6: c.ipv6,
                gateway: c
                    .gateway
                    .as_deref()
                    .map(|g| {
                        g.parse()
                            .map_err(|_| anyhow::anyhow!("--gateway {g:?}: not an IPv4 address"))
                    })
                    .transpose()?,
                internal: c.internal,
            };
            let n = engine.network_create(&spec)?;
            out!("{}", n.name);
            Ok(0)
        }
        Cmd::Ls(l) => {
            let nets = engine.network_list()?;
            if l.quiet {
                for n in &nets {
                    out!("{}", n.name);
                }
                return Ok(0);
            }
            let mut rows =
                vec![["NAME", "DRIVER", "SUBNET", "GATEWAY", "INTERNAL"].map(String::from)];
            for n in &nets {
                let s = summary(n);
                rows.push([
                    s.name,
                    s.driver,
                    s.subnet.unwrap_or_default(),
                    s.gateway.unwrap_or_default(),
                    s.internal.to_string(),
                ]);
            }
            let widths: Vec<usize> = (0..5)
                .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
                .collect();
            for r in &rows {
                let mut line = String::new();
                for (i, cell) in r.iter().enumerate().take(4) {
                    line += &format!("{cell:<w$}   ", w = widths[i]);
                }
                out!("{line}{}", r[4]);
            }
            Ok(0)
        }
        Cmd::Inspect(n) => {
            let all: Vec<serde_json::Value> = n
                .names
                .iter()
                .map(|n| engine.network_inspect(n))
                .collect::<Result<_, _>>()?;
            out!("{}", serde_json::to_string_pretty(&all)?);
            Ok(0)
        }
        Cmd::Prune => {
            for name in engine.network_prune()? {
                out!("{name}");
            }
            Ok(0)
        }
        Cmd::Rm(n) => {
            let mut code = 0;
            for name in &n.names {
                match engine.network_remove(name) {
                    Ok(_) => out!("{name}"),
                    Err(e) => {
                        eprintln!("berth: {e}");
                        code = 1;
                    }
                }
            }
            Ok(code)
        }
    }
}
