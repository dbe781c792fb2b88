use berth_runtime::Runtime;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Container ID.
    pub id: String,
}

pub fn run(rt: &Runtime, a: &Args) -> anyhow::Result<u8> {
    let state = rt.state(&a.id)?;
    out!("{}", serde_json::to_string_pretty(&state)?);
    Ok(0)
}
