//! `berth verify`: a running container's live kernel state against its spec.
//! Exit status: 0 everything matches, 1 a difference, 2 bad input (no such container,
//! not running, exited during verify).

use std::path::Path;

use super::check::{bad_input, Format};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Container ID (under --root).
    pub id: String,
    /// Verify this process of the container instead of its init (e.g. an exec'd one).
    #[arg(long)]
    pub pid: Option<i32>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

pub fn run(root: &Path, a: &Args) -> anyhow::Result<u8> {
    let report = match berth_policy::verify::verify_container(&a.id, root, a.pid) {
        Ok(r) => r,
        Err(e) => return Ok(bad_input(e)),
    };
    match a.format {
        Format::Json => out!("{}", serde_json::to_string_pretty(&report)?),
        Format::Text => out!("{}", report.text().trim_end()),
    }
    Ok(report.exit_code())
}
