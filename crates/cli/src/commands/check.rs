//! `berth check`: what isolates a bundle's or a container's config, rule by rule.
//! Exit status: 0 no violation, 1 a policy violation, 2 bad input.

use std::path::{Path, PathBuf};

use berth_policy::{CheckReport, Policy};

#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A bundle directory, a config.json file, or a container id (under --root).
    pub target: String,
    /// A TOML policy that turns findings into violations (see docs/policy.md).
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

/// Print a bad-input error as one line; the caller exits with status 2.
pub fn bad_input(e: impl std::fmt::Display) -> u8 {
    eprintln!("berth: {e}");
    2
}

pub fn run(root: &Path, a: &Args) -> anyhow::Result<u8> {
    let policy = match a.policy.as_deref().map(Policy::load).transpose() {
        Ok(p) => p,
        Err(e) => return Ok(bad_input(e)),
    };
    let target = match berth_policy::resolve(&a.target, root) {
        Ok(t) => t,
        Err(e) => return Ok(bad_input(e)),
    };
    let findings = berth_policy::check(&target.spec);
    let violations = policy.map(|p| p.evaluate(&target.spec, &findings));
    let report = CheckReport::new(target, findings, violations);
    match a.format {
        Format::Json => out!("{}", serde_json::to_string_pretty(&report)?),
        Format::Text => out!("{}", report.text().trim_end()),
    }
    Ok(report.exit_code())
}
