use berth_runtime::Runtime;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Output format.
    #[arg(long, short = 'f', value_parser = ["table", "json"], default_value = "table")]
    pub format: String,
    /// Container ID.
    pub id: String,
    /// Arguments for ps(1), e.g. `-- -ef` (table format only).
    #[arg(last = true)]
    pub ps_args: Vec<String>,
}

/// List the container's processes: their host pids as JSON, or ps(1) output limited to them.
pub fn run(rt: &Runtime, a: &Args) -> anyhow::Result<u8> {
    let pids = rt.pids(&a.id)?;
    if a.format == "json" {
        out!("{}", serde_json::to_string(&pids)?);
        return Ok(0);
    }
    let args = if a.ps_args.is_empty() {
        vec!["-ef".to_string()]
    } else {
        a.ps_args.clone()
    };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .map_err(|e| anyhow::anyhow!("ps: {e}"))?;
    if !out.status.success() {
        anyhow::bail!(
            "ps {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let pid_col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or_else(|| anyhow::anyhow!("ps output has no PID column"))?;
    out!("{header}");
    for line in lines {
        if let Some(pid) = line
            .split_whitespace()
            .nth(pid_col)
            .and_then(|p| p.parse::<i32>().ok())
        {
            if pids.contains(&pid) {
                out!("{line}");
            }
        }
    }
    Ok(0)
}
