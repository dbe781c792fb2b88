use berth_runtime::Runtime;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Container ID.
    pub id: String,
}

/// `pause`: freeze every process of the container.
pub fn pause(rt: &Runtime, a: &Args) -> anyhow::Result<u8> {
    rt.pause(&a.id)?;
    Ok(0)
}

/// `resume`: thaw a paused container.
pub fn resume(rt: &Runtime, a: &Args) -> anyhow::Result<u8> {
    rt.resume(&a.id)?;
    Ok(0)
}
