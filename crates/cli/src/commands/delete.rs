use berth_runtime::Runtime;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Kill the container first if it is still running.
    #[arg(long, short = 'f')]
    pub force: bool,
    /// Container ID.
    pub id: String,
}

pub fn run(rt: &Runtime, a: &Args) -> anyhow::Result<u8> {
    match rt.delete(&a.id, a.force) {
        // runc treats deleting a missing container with --force as success.
        Err(berth_runtime::Error::NotFound(_)) if a.force => Ok(0),
        r => r.map(|_| 0).map_err(Into::into),
    }
}
