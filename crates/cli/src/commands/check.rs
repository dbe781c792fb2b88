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
    /// A bundle directory, a config.json file, a container id (under --root), or an
    /// engine container's name or id (under --data-root).
    pub target: String,
    /// A TOML policy that turns findings into violations (see docs/policy.md).
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// The engine's image store and container directory (`berth container`'s).
    #[arg(long, default_value = "/var/lib/berth", env = "BERTH_DATA_ROOT")]
    pub data_root: PathBuf,
}

/// Print a bad-input error as one line; the caller exits with status 2.
pub fn bad_input(e: impl std::fmt::Display) -> u8 {
    eprintln!("berth: {e}");
    2
}

/// The engine container `reference` (name, id or unique id prefix), if the engine's data
/// root exists (it is never created here) and knows it.
pub fn engine_container(
    data_root: &Path,
    root: &Path,
    reference: &str,
) -> Option<berth_engine::Container> {
    if !data_root.join("containers").is_dir() {
        return None;
    }
    berth_engine::Engine::open(data_root, root)
        .ok()?
        .get(reference)
        .ok()
}

pub fn run(root: &Path, a: &Args) -> anyhow::Result<u8> {
    let policy = match a.policy.as_deref().map(Policy::load).transpose() {
        Ok(p) => p,
        Err(e) => return Ok(bad_input(e)),
    };
    let target = match berth_policy::resolve(&a.target, root) {
        Err(berth_policy::Error::NotFound { .. })
            if engine_container(&a.data_root, root, &a.target).is_some() =>
        {
            let c = engine_container(&a.data_root, root, &a.target).expect("found just now");
            berth_policy::target::engine_bundle(&a.target, &c.bundle)
        }
        other => other,
    };
    let target = match target {
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
