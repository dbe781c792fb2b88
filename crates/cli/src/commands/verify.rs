//! `berth verify`: a running container's live kernel state against its spec.
//! Exit status: 0 everything matches, 1 a difference, 2 bad input (no such container,
//! not running, exited during verify).

use std::path::Path;

use std::path::PathBuf;

use super::check::{bad_input, engine_container, Format};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Container ID (under --root), or an engine container's name or id.
    pub id: String,
    /// Verify this process of the container instead of its init (e.g. an exec'd one).
    #[arg(long)]
    pub pid: Option<i32>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// The engine's image store and container directory (`berth container`'s).
    #[arg(long, default_value = "/var/lib/berth", env = "BERTH_DATA_ROOT")]
    pub data_root: PathBuf,
}

pub fn run(root: &Path, a: &Args) -> anyhow::Result<u8> {
    let mut id = a.id.clone();
    if berth_policy::target::container(&id, root).is_err() {
        if let Some(c) = engine_container(&a.data_root, root, &a.id) {
            id = c.id;
        }
    }
    let report = match berth_policy::verify::verify_container(&id, root, a.pid) {
        Ok(r) => r,
        Err(e) => return Ok(bad_input(e)),
    };
    match a.format {
        Format::Json => out!("{}", serde_json::to_string_pretty(&report)?),
        Format::Text => out!("{}", report.text().trim_end()),
    }
    Ok(report.exit_code())
}
