//! `berth policy blp LEVELS.toml`: Bell-LaPadula security levels of workloads as
//! Kubernetes NetworkPolicy YAML (docs/policy.md). Exit status 2 on bad input.

use std::path::PathBuf;

use super::check::bad_input;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub command: Sub,
}

#[derive(clap::Subcommand, Debug)]
pub enum Sub {
    /// NetworkPolicies that let information flow only up the lattice (no read up, no
    /// write down).
    Blp {
        /// Levels, categories and workloads (TOML; see docs/policy.md).
        levels: PathBuf,
        /// Write the YAML here instead of stdout.
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
    },
}

pub fn run(a: &Args) -> anyhow::Result<u8> {
    let Sub::Blp { levels, output } = &a.command;
    let docs = match berth_policy::blp::Lattice::load(levels)
        .and_then(|l| berth_policy::blp::network_policies(&l))
    {
        Ok(d) => d,
        Err(e) => return Ok(bad_input(e)),
    };
    let yaml = berth_policy::blp::to_yaml(&docs);
    match output {
        Some(path) => {
            if let Err(e) = berth_fsutil::replace_file(path, yaml.as_bytes()) {
                return Ok(bad_input(e));
            }
        }
        None => out!("{}", yaml.trim_end()),
    }
    Ok(0)
}
