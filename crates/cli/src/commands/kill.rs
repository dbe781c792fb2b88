use berth_runtime::Runtime;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Signal every process in the container, not only its init.
    #[arg(long, short = 'a')]
    pub all: bool,
    /// Container ID.
    pub id: String,
    /// Signal name (KILL or SIGKILL) or number.
    #[arg(default_value = "SIGTERM")]
    pub signal: String,
}

pub fn run(rt: &Runtime, a: &Args) -> anyhow::Result<u8> {
    let sig = berth_runtime::signal::parse(&a.signal)?;
    rt.kill(&a.id, sig, a.all)?;
    Ok(0)
}
