use berth_runtime::Runtime;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Output format.
    #[arg(long, short = 'f', value_parser = ["table", "json"], default_value = "table")]
    pub format: String,
    /// Print only container IDs.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

pub fn run(rt: &Runtime, a: &Args) -> anyhow::Result<u8> {
    let states = rt.list()?;
    if a.quiet {
        for s in &states {
            out!("{}", s.id);
        }
    } else if a.format == "json" {
        out!("{}", serde_json::to_string(&states)?);
    } else {
        let width = states.iter().map(|s| s.id.len()).max().unwrap_or(2).max(2) + 3;
        out!(
            "{:width$}{:<10}{:<10}{:<40}{:<32}OWNER",
            "ID",
            "PID",
            "STATUS",
            "BUNDLE",
            "CREATED"
        );
        for s in &states {
            out!(
                "{:width$}{:<10}{:<10}{:<40}{:<32}{}",
                s.id,
                s.pid,
                s.status.to_string(),
                s.bundle.display(),
                s.created,
                s.owner
            );
        }
    }
    Ok(0)
}
