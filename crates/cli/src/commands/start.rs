use berth_runtime::Runtime;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Container ID.
    pub id: String,
}

pub fn run(rt: &Runtime, a: &Args) -> anyhow::Result<u8> {
    rt.start(&a.id)?;
    Ok(0)
}
