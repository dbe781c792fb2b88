use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Directory to write config.json into.
    #[arg(long, short = 'b', default_value = ".")]
    pub bundle: PathBuf,
    /// Write a spec for an unprivileged caller (user namespace mapping the caller's ids).
    #[arg(long)]
    pub rootless: bool,
}

pub fn run(a: &Args) -> anyhow::Result<u8> {
    let path = a.bundle.join("config.json");
    if path.exists() {
        anyhow::bail!("{}: already exists; remove it first", path.display());
    }
    let spec = berth_runtime::spec::default_spec(a.rootless);
    std::fs::write(&path, serde_json::to_string_pretty(&spec)? + "\n")
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(0)
}
